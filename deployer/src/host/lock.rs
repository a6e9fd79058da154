//! The deploy lock on a host: a directory made with an atomic `mkdir`
//! (`~/student-ages/deploy.lock`), holding who took it, when, and the SSH
//! connection it came over. A deployer killed with SIGKILL cannot release
//! it; its SSH connection, though, ends within a minute (the control master
//! persists 60 s idle), so a lock whose connection is gone is stale and can
//! be released safely — and one whose connection is open never is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{HostDir, now};
use crate::remote::Remote;

/// Who holds a lock, as recorded in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Holder {
    pub who: String,
    pub pid: u32,
    pub since: String,
    /// `SSH_CONNECTION` of the holder's session on the host: `client_ip
    /// client_port server_ip server_port`. Absent in locks of older
    /// deployers.
    #[serde(default)]
    pub connection: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}) since {}", self.who, self.pid, self.since)
    }
}

/// A lock as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Free,
    /// Held; `connected` says whether the holder's SSH connection is still
    /// open (None: the lock does not say which connection it came over).
    Held {
        holder: Option<Holder>,
        connected: Option<bool>,
    },
}

/// The held deploy lock; `release` it when done.
pub(crate) struct Lock {
    path: String,
}

impl HostDir {
    fn lock_path(&self) -> String {
        self.file("deploy.lock")
    }

    /// Takes the deploy lock, or says who holds it and whether that holder
    /// is still connected.
    pub(crate) async fn lock(&self, remote: &Remote, who: &str) -> anyhow::Result<Lock> {
        let path = self.lock_path();
        if remote.try_run("mkdir", &[&path]).await?.is_none() {
            let found = self.find_lock(remote).await?;
            bail!(
                "another deploy to {} holds the lock {path}: {}",
                remote.target,
                explain(&found, remote)
            );
        }
        let holder = Holder {
            who: who.to_owned(),
            pid: std::process::id(),
            since: now(),
            connection: remote
                .try_run("printenv", &["SSH_CONNECTION"])
                .await?
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
        };
        let mut record = serde_json::to_vec(&holder)?;
        record.push(b'\n');
        if let Err(e) = remote
            .write_file(&format!("{path}/holder.json"), &record, "644")
            .await
        {
            let _ = remote.run("rm", &["-r", &path]).await;
            return Err(anyhow!(
                "cannot record the holder of the lock {path}: {e:#}"
            ));
        }
        Ok(Lock { path })
    }

    /// The lock as it is now.
    pub(crate) async fn find_lock(&self, remote: &Remote) -> anyhow::Result<Found> {
        let path = self.lock_path();
        if remote.try_run("test", &["-d", &path]).await?.is_none() {
            return Ok(Found::Free);
        }
        let holder = remote
            .try_run("cat", &[&format!("{path}/holder.json")])
            .await?
            .and_then(|text| serde_json::from_str::<Holder>(&text).ok());
        let connected = match holder.as_ref().and_then(|h| h.connection.as_deref()) {
            None => None,
            Some(connection) => {
                let tcp = remote.try_run("cat", &["/proc/net/tcp"]).await?;
                let tcp6 = remote.try_run("cat", &["/proc/net/tcp6"]).await?;
                Some(connection_open(
                    connection,
                    tcp.as_deref().unwrap_or_default(),
                    tcp6.as_deref().unwrap_or_default(),
                ))
            }
        };
        Ok(Found::Held { holder, connected })
    }

    /// Releases a lock left by a deployer that is gone (its SSH connection
    /// closed); refuses while the holder is connected. `unverifiable`
    /// allows releasing a lock that does not record its connection.
    pub(crate) async fn release_stale(
        &self,
        remote: &Remote,
        unverifiable: Unverifiable,
    ) -> anyhow::Result<Found> {
        let found = self.find_lock(remote).await?;
        match &found {
            Found::Free => {}
            Found::Held {
                connected: Some(true),
                ..
            } => bail!(
                "the lock on {} is live: {}. Wait for that deploy to finish.",
                remote.target,
                explain(&found, remote)
            ),
            Found::Held {
                connected: None, ..
            } if unverifiable == Unverifiable::Refuse => bail!(
                "the lock on {} does not record its SSH connection (an older deployer took it), \
                 so whether its deploy still runs cannot be checked: {}. If you are sure none \
                 runs, pass --force.",
                remote.target,
                explain(&found, remote)
            ),
            Found::Held { .. } => {
                remote.run("rm", &["-r", &self.lock_path()]).await?;
            }
        }
        Ok(found)
    }
}

/// Whether `lock release` may remove a lock whose holder cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverifiable {
    Refuse,
    Release,
}

impl Lock {
    pub(crate) async fn release(self, remote: &Remote) -> anyhow::Result<()> {
        remote.run("rm", &["-r", &self.path]).await.map(|_| ())
    }
}

/// What a user reads about a held lock.
pub(crate) fn explain(found: &Found, remote: &Remote) -> String {
    let Found::Held { holder, connected } = found else {
        return "no deploy holds it".into();
    };
    let who = holder
        .as_ref()
        .map_or("someone (no holder recorded)".to_owned(), Holder::to_string);
    match connected {
        Some(true) => {
            format!("held by {who}, whose SSH connection is still open: a deploy is running")
        }
        Some(false) => format!(
            "held by {who}, whose SSH connection is gone: that deploy was killed. Release the \
             stale lock with `deployer lock release --host {}`",
            remote.target
        ),
        None => format!(
            "held by {who}; whether it is still connected is not recorded. If no deploy runs, \
             `deployer lock release --host {} --force` removes it",
            remote.target
        ),
    }
}

/// Whether the TCP connection `ssh_connection` (`client_ip client_port
/// server_ip server_port`, as sshd sets SSH_CONNECTION) is established, by
/// the host's /proc/net/tcp and tcp6 tables.
pub(crate) fn connection_open(ssh_connection: &str, tcp: &str, tcp6: &str) -> bool {
    let fields: Vec<&str> = ssh_connection.split_whitespace().collect();
    let [client_ip, client_port, server_ip, server_port] = fields.as_slice() else {
        return false;
    };
    let parse = |ip: &str, port: &str| -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
    };
    let (Some(client), Some(server)) =
        (parse(client_ip, client_port), parse(server_ip, server_port))
    else {
        return false;
    };
    tcp.lines()
        .chain(tcp6.lines())
        .filter_map(parse_proc_line)
        .any(|(local, remote, state)| {
            // 01 is TCP_ESTABLISHED.
            state == 1 && same(local, server) && same(remote, client)
        })
}

/// Compares addresses, seeing an IPv4-mapped IPv6 address as its IPv4 one.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

/// `sl local_address rem_address st ...` → (local, remote, state).
fn parse_proc_line(line: &str) -> Option<(SocketAddr, SocketAddr, u8)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_proc_address(fields.next()?)?;
    let remote = parse_proc_address(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    Some((local, remote, state))
}

/// `0100007F:0016` (IPv4) or 32 hex digits `:PORT` (IPv6): the address in
/// 32-bit words of the kernel's (little-endian) byte order, the port in hex.
fn parse_proc_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..address.len() / 8)
        .map(|i| u32::from_str_radix(&address[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0016 0100007F:A1B2 01 00000000:00000000 02:0008F6B6 00000000     0        0 2 4 0 20 4 30 10 -1
   2: 0100007F:0016 0100007F:C3D4 06 00000000:00000000 03:00000B3E 00000000     0        0 0 3 0 0 0 0 0 0";

    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000A00000A:0016 0000000000000000FFFF00000200000A:D431 01 00000000:00000000";

    #[test]
    fn an_established_connection_is_found_in_either_table() {
        // 127.0.0.1:41394 -> 127.0.0.1:22, established.
        assert!(connection_open("127.0.0.1 41394 127.0.0.1 22", TCP, ""));
        // An IPv4 client of a dual-stack sshd shows in tcp6, v4-mapped:
        // 10.0.0.2:54321 -> 10.0.0.10:22.
        assert!(connection_open("10.0.0.2 54321 10.0.0.10 22", "", TCP6));
    }

    #[test]
    fn a_closing_or_absent_connection_is_not_open() {
        // 0xC3D4 = 50132 is in TIME_WAIT (06).
        assert!(!connection_open("127.0.0.1 50132 127.0.0.1 22", TCP, TCP6));
        assert!(!connection_open("127.0.0.1 1 127.0.0.1 22", TCP, TCP6));
        assert!(!connection_open("garbage", TCP, TCP6));
    }

    #[test]
    fn proc_addresses_are_little_endian_words() {
        assert_eq!(
            parse_proc_address("0100007F:0016"),
            Some("127.0.0.1:22".parse().unwrap())
        );
        assert_eq!(
            parse_proc_address("00000000000000000000000001000000:1F90"),
            Some("[::1]:8080".parse().unwrap())
        );
    }
}
