//! The EC2 host: one SSH connection (openssh, a ControlMaster) that
//! forwards a local unix socket to the host's Docker socket, so bollard
//! drives the remote daemon exactly as it drives the local one; and, over
//! the same connection, the few file operations the Docker API cannot do
//! (the deploy lock, the audit log, putting the deployer on the host).
//!
//! Host keys are always checked: against `EC2_KNOWN_HOSTS` or the user's
//! known_hosts; `--accept-new-host-key` trusts an unknown host once (and
//! records it), and nothing turns checking off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use tokio::io::AsyncWriteExt;

use crate::docker::ConnectError;

/// `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    pub(crate) fn parse(text: &str) -> anyhow::Result<Target> {
        let (user, rest) = match text.split_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => bail!("{text:?}: the user before `@` is empty"),
            None => (None, text),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(port.parse::<u16>().map_err(|_| {
                    anyhow!("{text:?}: {port:?} is not a port number; write [user@]host[:port]")
                })?),
            ),
            None => (rest, None),
        };
        if user.as_deref().is_some_and(|u| u.starts_with('-')) || host.starts_with('-') {
            bail!(
                "{text:?}: a user or host may not start with `-` (ssh would read it as an option)"
            );
        }
        if host.is_empty() || host.contains(char::is_whitespace) {
            bail!("{text:?} is not a host; write [user@]host[:port]");
        }
        Ok(Target {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// How to reach the host, from flags and the environment.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// `EC2_PRIVATE_KEY`: a private key file.
    pub key: Option<PathBuf>,
    /// `EC2_KNOWN_HOSTS`; the user's known_hosts when unset.
    pub known_hosts: Option<PathBuf>,
    /// `EC2_DOCKER_SOCKET`: the host's Docker socket.
    pub docker_socket: String,
    /// Trust a host that is not in known_hosts yet, once.
    pub accept_new_host_key: bool,
    /// Accept exactly this host key (`ssh-ed25519 AAAA...`), instead of a
    /// known_hosts file.
    pub host_key: Option<String>,
    /// Where the user names the target, for messages: `AWS_EC2_INSTANCE`,
    /// or `deploy.swarm.hosts` for a swarm's hosts.
    pub named_in: &'static str,
}

/// An open connection to the host.
pub(crate) struct Remote {
    pub target: Target,
    session: Session,
    /// Holds the control socket and the forwarded Docker socket; short, for
    /// the 108-byte unix socket path limit.
    dir: tempfile::TempDir,
    forwards: Vec<(Socket<'static>, Socket<'static>)>,
}

impl Remote {
    pub(crate) async fn connect(
        target: &Target,
        options: &ConnectOptions,
    ) -> anyhow::Result<Remote> {
        let dir = tempfile::Builder::new()
            .prefix("sa-")
            .tempdir_in("/tmp")
            .context("cannot make a directory for the SSH control socket")?;
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(if options.accept_new_host_key {
                KnownHosts::Add
            } else {
                KnownHosts::Strict
            })
            .control_directory(dir.path())
            .connect_timeout(Duration::from_secs(15))
            // If this process dies without closing it, the master (and the
            // forwarded Docker socket) goes away after a minute idle.
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(60).expect("60 is not zero"),
            ))
            .server_alive_interval(Duration::from_secs(15));
        if let Some(user) = &target.user {
            builder.user(user.clone());
        }
        if let Some(port) = target.port {
            builder.port(port);
        }
        if let Some(key) = &options.key {
            if !key.is_file() {
                bail!(
                    "the SSH key {} (EC2_PRIVATE_KEY) does not exist or is not a file",
                    key.display()
                );
            }
            builder.keyfile(key);
        }
        if let Some(key) = &options.host_key {
            // A one-line known_hosts of our own: checking stays strict.
            let fields: Vec<&str> = key.split_whitespace().collect();
            if fields.len() < 2
                || !fields[0].starts_with("ssh-") && !fields[0].starts_with("ecdsa-")
            {
                bail!(
                    "--host-key {key:?} is not a public key line such as \"ssh-ed25519 AAAA...\" \
                     (the host's /etc/ssh/ssh_host_ed25519_key.pub)"
                );
            }
            let host = match target.port {
                Some(port) if port != 22 => format!("[{}]:{port}", target.host),
                _ => target.host.clone(),
            };
            let file = dir.path().join("known_hosts");
            std::fs::write(&file, format!("{host} {} {}\n", fields[0], fields[1]))
                .context("cannot write the pinned host key")?;
            builder.user_known_hosts_file(file);
        } else if let Some(known_hosts) = &options.known_hosts {
            builder.user_known_hosts_file(known_hosts);
        }
        let session = builder
            .connect_mux(&target.host)
            .await
            .map_err(|e| explain_ssh(target, options, e))?;
        Ok(Remote {
            target: target.clone(),
            session,
            dir,
            forwards: Vec::new(),
        })
    }

    /// Forwards a local socket to the host's Docker socket and connects
    /// bollard to it.
    pub(crate) async fn docker(&mut self, remote_socket: &str) -> anyhow::Result<Docker> {
        let local = self.dir.path().join("docker.sock");
        let _ = std::fs::remove_file(&local);
        let listen = Socket::UnixSocket {
            path: local.clone().into(),
        };
        let connect = Socket::UnixSocket {
            path: PathBuf::from(remote_socket).into(),
        };
        self.session
            .request_port_forward(ForwardType::Local, listen.clone(), connect.clone())
            .await
            .map_err(|e| anyhow!("cannot forward the host's Docker socket {remote_socket}: {e}"))?;
        self.forwards.push((listen, connect));
        let socket = local.to_string_lossy().into_owned();
        crate::docker::connect_unix(&socket)
            .await
            .map_err(|error| match error {
                // Through the forward, sshd's own failure to reach the
                // socket (no permission, no such socket) arrives as a reset.
                ConnectError::PermissionDenied { .. }
                | ConnectError::Timeout { .. }
                | ConnectError::Other { .. } => anyhow!(
                    "the SSH user on {} cannot use the Docker socket {remote_socket}: add it to \
                     the `docker` group on the host (`sudo usermod -aG docker USER`) or set \
                     EC2_DOCKER_SOCKET to the daemon's socket. ({error})",
                    self.target
                ),
                other => anyhow::Error::new(other)
                    .context(format!("the Docker daemon on {}", self.target)),
            })
    }

    /// Forwards a local loopback TCP port to `host_ip:port` on the host
    /// (loopback when `host_ip` is empty or a wildcard); returns the local
    /// port.
    pub(crate) async fn forward_tcp(&mut self, host_ip: &str, port: u16) -> anyhow::Result<u16> {
        let host_ip = match host_ip {
            "" | "0.0.0.0" | "::" => "127.0.0.1",
            ip => ip,
        };
        let local_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = Socket::TcpSocket {
            host: "127.0.0.1".into(),
            port: local_port,
        };
        let connect = Socket::TcpSocket {
            host: host_ip.to_owned().into(),
            port,
        };
        self.session
            .request_port_forward(ForwardType::Local, listen.clone(), connect.clone())
            .await
            .map_err(|e| anyhow!("cannot forward port {port} of {}: {e}", self.target))?;
        self.forwards.push((listen, connect));
        Ok(local_port)
    }

    /// Runs a program on the host (no shell); its stdout, or an error with
    /// its stderr.
    pub(crate) async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .session
            .command(program)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {program} on {}", self.target))?;
        if !out.status.success() {
            bail!(
                "{program} {} on {} failed: {}",
                args.join(" "),
                self.target,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`Remote::run`], but a failure is an answer, not an error.
    pub(crate) async fn try_run(
        &self,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<Option<String>> {
        let out = self
            .session
            .command(program)
            .args(args)
            .stderr(openssh::Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {program} on {}", self.target))?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Writes `data` to `path` on the host atomically (temp file + rename).
    pub(crate) async fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: &str,
    ) -> anyhow::Result<()> {
        let tmp = format!("{path}.tmp-{}", std::process::id());
        self.pipe_into(&[&format!("of={tmp}"), "status=none"], data)
            .await
            .with_context(|| format!("writing {path} on {}", self.target))?;
        self.run("chmod", &[mode, &tmp]).await?;
        self.run("mv", &["-f", &tmp, path]).await?;
        Ok(())
    }

    /// Appends `data` to `path` on the host.
    pub(crate) async fn append_file(&self, path: &str, data: &[u8]) -> anyhow::Result<()> {
        self.pipe_into(
            &[
                &format!("of={path}"),
                "oflag=append",
                "conv=notrunc",
                "status=none",
            ],
            data,
        )
        .await
        .with_context(|| format!("appending to {path} on {}", self.target))
    }

    /// Streams `data` into `dd ARGS` on the host (no shell involved).
    async fn pipe_into(&self, dd_args: &[&str], data: &[u8]) -> anyhow::Result<()> {
        let mut child = self
            .session
            .command("dd")
            .args(dd_args)
            .stdin(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await?;
        let mut stdin = child.stdin().take().expect("stdin is piped");
        stdin.write_all(data).await?;
        stdin.shutdown().await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    pub(crate) async fn close(mut self) {
        for (listen, connect) in std::mem::take(&mut self.forwards) {
            let _ = self
                .session
                .close_port_forward(ForwardType::Local, listen, connect)
                .await;
        }
        let _ = self.session.close().await;
        let _ = self.dir.close();
    }
}

fn explain_ssh(target: &Target, options: &ConnectOptions, error: openssh::Error) -> anyhow::Error {
    let text = crate::errors::chain(&error);
    let known_hosts = options
        .known_hosts
        .as_deref()
        .map_or("~/.ssh/known_hosts".to_owned(), |p| p.display().to_string());
    let lower = text.to_lowercase();
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
    {
        if lower.contains("changed")
            || lower.contains("mismatch")
            || lower.contains("does not match")
        {
            anyhow!(
                "the host key of {target} does NOT match the one in {known_hosts}: this may be a \
                 different machine or an attack. If the host was really rebuilt, remove its old \
                 line from {known_hosts} and connect again. Nothing was changed."
            )
        } else {
            anyhow!(
                "the host key of {target} could not be verified against {known_hosts} (unknown or \
                 different key). Add the host's key there (EC2_KNOWN_HOSTS points at another file), \
                 or trust it once with --accept-new-host-key. Nothing was changed."
            )
        }
    } else if lower.contains("unprotected private key file") || lower.contains("bad permissions") {
        // ssh ignores such a key and then reports "Permission denied": say
        // why it was ignored, not that the key is not authorized.
        let key = options
            .key
            .as_deref()
            .map_or("the key".to_owned(), |k| k.display().to_string());
        let said = text
            .lines()
            .find(|l| l.contains("are too open") || l.contains("bad permissions"))
            .unwrap_or("bad permissions")
            .trim()
            .trim_end_matches('.');
        anyhow!(
            "ssh refused to use the SSH key {key}: other users can read it (ssh says: {said}). \
             Run `chmod 600 {key}` and try again. Nothing was changed."
        )
    } else if lower.contains("permission denied") {
        anyhow!(
            "{target} refused the SSH login: the key {} is not authorized for that user. Check \
             EC2_PRIVATE_KEY (Jenkins: the AWS_SSH_CREDENTIAL credential) and the user in \
             {}. Nothing was changed.",
            options
                .key
                .as_deref()
                .map_or("(the default keys)".to_owned(), |k| k.display().to_string()),
            options.named_in
        )
    } else if lower.contains("connection refused")
        || lower.contains("timed out")
        || lower.contains("no route")
        || lower.contains("could not resolve")
    {
        anyhow!(
            "cannot reach {target} over SSH: {text}. Check {} and that the host is up.",
            options.named_in
        )
    } else {
        anyhow!("cannot connect to {target} over SSH: {text}")
    }
}

/// Copies a local file's bytes for upload, checking the host's copy first
/// by size and sha256 to skip an unchanged one; true when it was copied.
pub(crate) async fn put_if_changed(
    remote: &Remote,
    local: &Path,
    path: &str,
    mode: &str,
) -> anyhow::Result<bool> {
    let data = std::fs::read(local).with_context(|| format!("cannot read {}", local.display()))?;
    let local_sum = crate::images::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data));
    let remote_sum = remote
        .try_run("sha256sum", &[path])
        .await?
        .and_then(|out| out.split_whitespace().next().map(str::to_owned));
    if remote_sum.as_deref() == Some(local_sum.as_str()) {
        return Ok(false);
    }
    remote.write_file(path, &data, mode).await?;
    Ok(true)
}

/// What `deployer setup` needs beyond running a program: its whole output
/// whatever the exit status, and a program fed on stdin.
impl Remote {
    /// Runs a program on the host (no shell) and returns its output, whether
    /// it succeeded or not.
    pub(crate) async fn output(
        &self,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        self.session
            .command(program)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {program} on {}", self.target))
    }

    /// Like [`Remote::run`], with `input` on the program's stdin.
    pub(crate) async fn run_with_input(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
    ) -> anyhow::Result<String> {
        let mut child = self
            .session
            .command(program)
            .args(args)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .with_context(|| format!("running {program} on {}", self.target))?;
        let mut stdin = child.stdin().take().expect("stdin is piped");
        stdin.write_all(input).await?;
        stdin.shutdown().await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "{program} {} on {} failed: {}",
                args.join(" "),
                self.target,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_user_and_port() {
        assert_eq!(
            Target::parse("ubuntu@ec2.example.com:2222").unwrap(),
            Target {
                user: Some("ubuntu".into()),
                host: "ec2.example.com".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            Target::parse("10.0.0.5").unwrap(),
            Target {
                user: None,
                host: "10.0.0.5".into(),
                port: None
            }
        );
        assert_eq!(
            Target::parse("ubuntu@h:22").unwrap().to_string(),
            "ubuntu@h:22"
        );
        for bad in ["", "@h", "u@", "h:port", "h :1", "-oProxyCommand=x", "-u@h"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
