//! A bare Debian host without Docker, reachable over SSH, for testing
//! `deployer setup` (the recipe of /work/shared/BARE-HOST.md): a minimal
//! bookworm root filesystem (debootstrap, built once and cached as a
//! tarball) in its own network, mount, UTS and PID namespaces, with `sshd` as
//! its PID 1, a user `deploy` with a key of the test's, and apt reaching the
//! Debian mirror only through a relay in the test process. `apt-get install
//! docker.io` and `dockerd` (overlay2) really run in it.
//!
//! Beyond the recipe: the root filesystem is extracted into a tmpfs mounted
//! inside the host's own mount namespace (about 1 s, never visible outside,
//! freed with the host's last process, so teardown takes under a second and
//! a killed test leaks no gigabyte); the host's cgroups sit below the test's
//! own; the launcher dies with the test's thread and takes the host along.
//!
//! Every name is per run (`dbh<pid>x<n>`: network namespace, host-side veth,
//! cgroups, hostname; a 10.78.X.0/24 checked to be unused), so other
//! sessions can run the same lab at once. Teardown signals only the recorded
//! PID 1 and removes only its own paths; `shutdown` says what, if anything,
//! was left behind.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{mounts_under, run};

/// Where the root filesystem tarball is kept between runs.
const CACHE: &str = "/var/cache/deployer-bare-host";
/// Bump when the debootstrap line changes, so the cache is rebuilt.
const TARBALL: &str = "bookworm-minbase-v1.tar.zst";
const PACKAGES: &str = "openssh-server,sudo,ca-certificates,iproute2";
/// The lab's /24s are 10.78.X.0/24.
const NET: [u8; 2] = [10, 78];

fn sh(script: &str) -> String {
    run("sh", &["-c", script])
}

/// What the lab needs from the machine, checked up front so a missing piece
/// is named rather than failing halfway.
fn check_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the bare-host lab needs root (namespaces, veths, cgroups), as scripts/test runs"
    );
    let missing: Vec<&str> = [
        ("debootstrap", "debootstrap"),
        ("zstd", "zstd"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ]
    .into_iter()
    .filter(|(program, _)| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|(_, package)| package)
    .collect();
    assert!(
        missing.is_empty(),
        "the bare-host lab needs the Debian packages {missing:?} (scripts/test installs them)"
    );
    assert!(
        Path::new("/sys/fs/cgroup/cpuset").is_dir(),
        "the bare-host lab expects cgroup v1 controllers under /sys/fs/cgroup (as on Debian 12 \
         with the hybrid layout)"
    );
}

/// The hosts and URIs apt uses here, from /etc/apt/sources.list.d.
fn mirror() -> (String, Vec<String>) {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .expect("/etc/apt/sources.list.d/debian.sources (the lab copies the mirror from it)");
    let uris: Vec<String> = sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned))
        .collect();
    let hosts = uris
        .iter()
        .filter_map(|u| u.strip_prefix("http://"))
        .filter_map(|u| u.split('/').next())
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        !hosts.is_empty(),
        "no http:// mirror in /etc/apt/sources.list.d/debian.sources"
    );
    (uris[0].clone(), hosts)
}

/// The cached root filesystem, built on first use. A lock keeps concurrent
/// test processes from building it twice; a half-written tarball is never
/// seen under the final name.
fn rootfs_tarball() -> PathBuf {
    let cache = Path::new(CACHE);
    let tarball = cache.join(TARBALL);
    if tarball.is_file() {
        return tarball;
    }
    std::fs::create_dir_all(cache).unwrap();
    let lock = File::create(cache.join("build.lock")).unwrap();
    lock.lock().unwrap();
    if tarball.is_file() {
        return tarball;
    }
    let started = Instant::now();
    let build = cache.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&build);
    let (mirror, _) = mirror();
    run(
        "debootstrap",
        &[
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            "bookworm",
            build.to_str().unwrap(),
            &mirror,
        ],
    );
    run("chroot", &[build.to_str().unwrap(), "apt-get", "clean"]);
    let _ = std::fs::remove_dir_all(build.join("var/lib/apt/lists"));
    std::fs::create_dir_all(build.join("var/lib/apt/lists/partial")).unwrap();
    let partial = cache.join(format!("{TARBALL}.tmp-{}", std::process::id()));
    sh(&format!(
        "tar --numeric-owner --xattrs -C {} -cf - . | zstd -q -T0 -3 -o {}",
        build.display(),
        partial.display()
    ));
    std::fs::rename(&partial, &tarball).unwrap();
    std::fs::remove_dir_all(&build).unwrap();
    eprintln!(
        "bare host: built {} in {:.1?}",
        tarball.display(),
        started.elapsed()
    );
    tarball
}

/// The per-run names.
#[derive(Debug, Clone)]
struct Names {
    /// `dbh<pid>x<n>`: the network namespace, the host-side veth (at most 15
    /// characters), the cgroups and the hostname.
    prefix: String,
    /// The third octet of 10.78.X.0/24.
    subnet: u8,
}

impl Names {
    fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, 1)
    }
    fn lab_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, 2)
    }
}

/// Picks a /24 no interface or route on this machine uses, and makes the
/// namespace and the veth holding it, under a lock so two runs that pick at
/// once do not pick the same.
fn make_network(prefix: &str) -> Names {
    let lock = File::create("/run/deployer-bare-host-net.lock").unwrap();
    lock.lock().unwrap();
    let used = format!(
        "{}{}",
        run("ip", &["-4", "-o", "addr", "show"]),
        run("ip", &["-4", "route", "show", "table", "all"])
    );
    let start = (std::process::id() as usize) % 250;
    let subnet = (0..250)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("{}.{}.{x}.", NET[0], NET[1])))
        .expect("a free 10.78.X.0/24 for the bare-host lab");
    let names = Names {
        prefix: prefix.to_owned(),
        subnet,
    };
    let ns = &names.prefix;
    run("ip", &["netns", "add", ns]);
    run(
        "ip",
        &[
            "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    );
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/24", names.host_addr()),
            "dev",
            ns,
        ],
    );
    run("ip", &["link", "set", ns, "up"]);
    run(
        "ip",
        &[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", names.lab_addr()),
            "dev",
            "eth0",
        ],
    );
    run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
    run("ip", &["-n", ns, "link", "set", "lo", "up"]);
    names
}

/// The apt relay: an HTTP proxy for the mirror's hosts only, on the lab's
/// host-side address. apt sends proxy-style absolute requests
/// (`GET http://deb.debian.org/...`), which the mirror accepts as they are,
/// so the relay only reads the first request's host, connects there and
/// copies bytes both ways. Nothing else is reachable from the lab.
struct Relay {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
}

impl Relay {
    fn start(addr: Ipv4Addr, allowed: Vec<String>) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind((addr, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, allowed.clone()));
            }
        });
        Relay {
            runtime: Some(runtime),
            port,
        }
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn relay(mut client: tokio::net::TcpStream, allowed: Vec<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // The request line names the host.
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let host = line
        .split_whitespace()
        .nth(1)
        .and_then(|uri| uri.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name.to_owned(), port.parse().unwrap_or(80)),
        None => (host.clone(), 80u16),
    };
    if !allowed.contains(&name) || port != 80 {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut upstream) = tokio::net::TcpStream::connect((name.as_str(), port)).await else {
        let _ = client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    if upstream.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// This process's cgroup in each v1 hierarchy (and the unified one), as
/// (mount name under /sys/fs/cgroup, path): the lab's cgroups go below
/// them, so the lab stays inside whatever cgroup this test runs in.
fn own_cgroups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let mount = match controllers {
                "" => "unified".to_owned(),
                c => c.strip_prefix("name=").unwrap_or(c).to_owned(),
            };
            Path::new("/sys/fs/cgroup")
                .join(&mount)
                .is_dir()
                .then(|| (mount, path.to_owned()))
        })
        .collect()
}

/// A running bare host.
pub struct BareHost {
    /// The bare host's address (10.78.X.2); sshd listens there on port 22.
    pub addr: Ipv4Addr,
    /// The SSH user (uid 1000 inside, with sudo).
    pub user: String,
    /// The user's private key (mode 600) and a known_hosts pinning the
    /// host's key.
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
    /// How long the root filesystem took to extract, and the whole start
    /// (network, extraction, sshd answering on port 22).
    pub extract_time: Duration,
    pub boot_time: Duration,
    names: Names,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    cgroups: Vec<PathBuf>,
    /// `unshare`, whose child is the host's PID 1.
    launcher: Option<Child>,
    init: u32,
    relay: Relay,
    torn_down: bool,
}

/// How the host's user may use sudo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    /// `NOPASSWD: ALL`, as on EC2's Ubuntu and Amazon Linux images.
    Passwordless,
    /// In the `sudo` group, so sudo asks for a password (there is none).
    WithPassword,
}

impl BareHost {
    pub fn start() -> BareHost {
        BareHost::start_with(Sudo::Passwordless)
    }

    pub fn start_with(sudo: Sudo) -> BareHost {
        static N: AtomicUsize = AtomicUsize::new(0);
        check_prerequisites();
        sweep_crashed_runs();
        let tarball = rootfs_tarball();
        let prefix = format!(
            "dbh{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(prefix.len() <= 15, "{prefix} is too long for a veth name");
        // The run's own small files: keys, known_hosts, logs, the files laid
        // over the root filesystem, and the root's mount point.
        std::fs::create_dir_all("/var/tmp").unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in("/var/tmp")
            .unwrap();
        let w = dir.path().to_owned();
        // Only a mount point: the host's root is a tmpfs mounted there inside
        // its own mount namespace, so it is never seen outside and goes with
        // the host's last process, however the test ends.
        let root = w.join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();

        // From here on, Drop tears down whatever was made.
        let mut host = BareHost {
            addr: Ipv4Addr::UNSPECIFIED,
            user: "deploy".into(),
            private_key: w.join("id"),
            known_hosts: w.join("known_hosts"),
            extract_time: Duration::ZERO,
            boot_time: Duration::ZERO,
            names: Names {
                prefix: prefix.clone(),
                subnet: 0,
            },
            dir: Some(dir),
            root: root.clone(),
            cgroups: Vec::new(),
            launcher: None,
            init: 0,
            relay: Relay {
                runtime: None,
                port: 0,
            },
            torn_down: false,
        };
        let started = Instant::now();
        host.names = make_network(&prefix);
        host.addr = host.names.lab_addr();
        let (_, mirror_hosts) = mirror();
        host.relay = Relay::start(host.names.host_addr(), mirror_hosts);
        host.write_files(sudo);
        host.make_cgroups();
        host.boot(&tarball);
        host.boot_time = started.elapsed();
        host.extract_time = std::fs::read_to_string(w.join("extract_ms"))
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        host
    }

    /// The run's own files, laid over the root filesystem at boot
    /// (`W/files/...`), and the user's key.
    fn write_files(&self, sudo: Sudo) {
        let w = self.dir();
        let files = w.join("files");
        let prefix = &self.names.prefix;
        let write = |path: &str, text: &str| {
            let file = files.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        };
        write("etc/hostname", &format!("{prefix}\n"));
        write(
            "etc/hosts",
            &format!("127.0.0.1 localhost\n127.0.1.1 {prefix}\n"),
        );
        // Nothing answers there: apt needs no DNS through a proxy.
        write(
            "etc/resolv.conf",
            &format!("nameserver {}\n", self.names.host_addr()),
        );
        // Lab-only speed-ups for the install setup runs (dpkg dominates
        // it): no fsync per file, no docs, man pages or translations. A
        // throw-away host loses nothing by them.
        write(
            "etc/dpkg/dpkg.cfg.d/lab",
            "force-unsafe-io\npath-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\n\
             path-exclude /usr/share/locale/*\n",
        );
        write("etc/apt/apt.conf.d/02lab", "Acquire::Languages \"none\";\n");
        write(
            "etc/apt/sources.list.d/debian.sources",
            &std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap(),
        );
        write(
            "etc/apt/apt.conf.d/01proxy",
            &format!(
                "Acquire::http::Proxy \"http://{}:{}\";\n",
                self.names.host_addr(),
                self.relay.port
            ),
        );
        if sudo == Sudo::Passwordless {
            write(
                "etc/sudoers.d/deploy",
                &format!("{} ALL=(ALL) NOPASSWD:ALL\n", self.user),
            );
            std::fs::set_permissions(
                files.join("etc/sudoers.d/deploy"),
                std::fs::Permissions::from_mode(0o440),
            )
            .unwrap();
        }
        write(
            "etc/ssh/sshd_config.d/bare.conf",
            &format!(
                "ListenAddress {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                self.addr
            ),
        );
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                prefix,
                "-f",
                w.join("id").to_str().unwrap(),
            ],
        );
    }

    fn make_cgroups(&mut self) {
        for (mount, path) in own_cgroups() {
            let parent = Path::new("/sys/fs/cgroup")
                .join(&mount)
                .join(path.trim_start_matches('/'));
            let dir = parent.join(&self.names.prefix);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            if mount == "cpuset" {
                // An empty cpuset refuses tasks.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file)).unwrap();
                    std::fs::write(dir.join(file), value).unwrap();
                }
            }
            self.cgroups.push(dir);
        }
    }

    /// The host's PID 1 script: its own mounts (never seen outside), then
    /// `exec sshd`.
    fn inner_script(&self, tarball: &Path) -> String {
        let r = self.root.display();
        let w = self.dir().display();
        let mut s = format!(
            "set -e\nR={r}\nW={w}\nhostname {prefix}\n\
             t0=$(date +%s%N)\n\
             mount -t tmpfs -o mode=755,size=4g {prefix}-root $R\n\
             zstd -q -dc {tarball} | tar --numeric-owner --xattrs -C $R -xf -\n\
             echo $(( ($(date +%s%N) - t0) / 1000000 )) > $W/extract_ms\n\
             rm -f $R/etc/apt/sources.list\n\
             cp -a $W/files/. $R/\n\
             chroot $R useradd -m -s /bin/bash -G sudo {user}\n\
             install -d -m 700 $R/home/{user}/.ssh\n\
             install -m 600 $W/id.pub $R/home/{user}/.ssh/authorized_keys\n\
             chroot $R chown -R {user}: /home/{user}/.ssh\n\
             mount -t proc proc $R/proc\n\
             mount -t sysfs sysfs $R/sys\n\
             mount -t tmpfs -o mode=755 cgroup $R/sys/fs/cgroup\n",
            prefix = self.names.prefix,
            tarball = tarball.display(),
            user = self.user,
        );
        for dir in &self.cgroups {
            // /sys/fs/cgroup/<mount>/.../<prefix> becomes the host's
            // /sys/fs/cgroup/<mount>.
            let mount = dir
                .strip_prefix("/sys/fs/cgroup")
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            s.push_str(&format!(
                "mkdir $R/sys/fs/cgroup/{mount}\nmount --bind {} $R/sys/fs/cgroup/{mount}\n",
                dir.display()
            ));
        }
        s.push_str(
            "mount -t tmpfs -o mode=755,nosuid tmpfs $R/dev\n\
             mknod -m 666 $R/dev/null c 1 3\nmknod -m 666 $R/dev/zero c 1 5\n\
             mknod -m 666 $R/dev/full c 1 7\nmknod -m 666 $R/dev/random c 1 8\n\
             mknod -m 666 $R/dev/urandom c 1 9\nmknod -m 666 $R/dev/tty c 5 0\n\
             mknod -m 666 $R/dev/fuse c 10 229\n\
             mkdir $R/dev/pts $R/dev/shm\n\
             mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts $R/dev/pts\n\
             ln -s pts/ptmx $R/dev/ptmx\nln -s /proc/self/fd $R/dev/fd\n\
             ln -s /proc/self/fd/0 $R/dev/stdin\nln -s /proc/self/fd/1 $R/dev/stdout\n\
             ln -s /proc/self/fd/2 $R/dev/stderr\n\
             mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm\n\
             mount -t tmpfs -o mode=1777 tmpfs $R/tmp\n\
             mount -t tmpfs -o mode=755 tmpfs $R/run\n\
             mkdir -p $R/run/sshd $R/run/lock\n\
             exec chroot $R /usr/sbin/sshd -D -e\n",
        );
        s
    }

    fn boot(&mut self, tarball: &Path) {
        let w = self.dir().to_owned();
        std::fs::create_dir_all(w.join("files")).unwrap();
        std::fs::set_permissions(w.join("files"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(w.join("inner.sh"), self.inner_script(tarball)).unwrap();
        let procs: Vec<String> = self
            .cgroups
            .iter()
            .map(|d| d.join("cgroup.procs").display().to_string())
            .collect();
        // The launcher joins the lab's cgroups first, so everything the host
        // starts is in them. It dies with the thread that started it
        // (pdeathsig) and takes the host's PID 1, and so the whole host,
        // along (--kill-child): a test killed mid-run leaves no processes.
        let script = format!(
            "for f in {}; do echo $$ > $f; done; exec setpriv --pdeathsig KILL -- \
             nsenter --net=/run/netns/{} -- unshare --mount --uts --pid --kill-child \
             --propagation private -- /bin/sh {}",
            procs.join(" "),
            self.names.prefix,
            w.join("inner.sh").display()
        );
        let log = File::create(w.join("host.log")).unwrap();
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the bare host");
        let launcher = child.id();
        self.launcher = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let ssh = SocketAddr::new(IpAddr::V4(self.addr), 22);
        loop {
            if TcpStream::connect_timeout(&ssh, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = self.launcher.as_mut().map(Child::try_wait) {
                panic!(
                    "the bare host exited ({status}) before sshd answered: {}",
                    std::fs::read_to_string(w.join("host.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the bare host's sshd did not answer on {ssh}: {}",
                std::fs::read_to_string(w.join("host.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let children =
            std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).unwrap();
        self.init = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the bare host's PID 1");
        assert!(
            self.init_is_ours(),
            "PID {} is not the bare host's sshd",
            self.init
        );
        let key = self.host_key();
        std::fs::write(&self.known_hosts, format!("{} {key}\n", self.addr)).unwrap();
    }

    /// The recorded PID 1 is still the host's sshd, rooted in our tree.
    fn init_is_ours(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.init)).unwrap_or_default();
        let root = std::fs::read_link(format!("/proc/{}/root", self.init)).unwrap_or_default();
        self.init != 0 && String::from_utf8_lossy(&cmdline).contains("sshd") && root == self.root
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("torn down").path()
    }

    /// `user@addr`, for `--host`.
    pub fn target(&self) -> String {
        format!("{}@{}", self.user, self.addr)
    }

    /// A path inside the host as seen from here (through its PID 1's root).
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init)).join(path.trim_start_matches('/'))
    }

    /// A file of the test's own, beside the host (not inside it).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The first line of the host's ed25519 public key, for `--host-key`.
    pub fn host_key(&self) -> String {
        let text =
            std::fs::read_to_string(self.inside("/etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        format!("{} {}", fields[0], fields[1])
    }

    /// Runs `script` as root inside the host (all its namespaces and its
    /// root), not through SSH.
    pub fn exec(&self, script: &str) -> Output {
        Command::new("nsenter")
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .args([
                "-t",
                &self.init.to_string(),
                "-m",
                "-u",
                "-n",
                "-p",
                "-r",
                "-w",
            ])
            .args(["--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `command` as the SSH user, through a fresh SSH login (so group
    /// changes apply).
    pub fn ssh(&self, command: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(&self.private_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg(self.target())
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes a file inside the host (owned by root), e.g. an
    /// /etc/docker/daemon.json of the administrator's before setup runs.
    pub fn write_file(&self, path: &str, text: &str) {
        let full = self.inside(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        File::create(&full)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap();
    }

    /// Stops the host's dockerd (by its pid file) and waits until it is
    /// gone: a host whose daemon is stopped.
    pub fn stop_docker(&self) {
        let out = self.exec(
            "P=$(cat /var/run/docker.pid) && kill $P && \
             for i in $(seq 1 150); do [ -d /proc/$P ] || exit 0; \
             grep -q '^State:.*Z' /proc/$P/status && exit 0; sleep 0.2; done; exit 1",
        );
        assert!(
            out.status.success(),
            "stopping the bare host's dockerd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Its socket goes with it; wait until nothing answers there.
        let out = self.exec(
            "for i in $(seq 1 50); do docker version >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1",
        );
        assert!(
            out.status.success(),
            "dockerd still answers after being stopped"
        );
    }

    /// Tears the host down and returns what was left behind (nothing, when
    /// all went well): processes rooted in or naming its directory, mounts
    /// under it, its namespace, veth or cgroups.
    pub fn shutdown(mut self) -> Vec<String> {
        let dir = self.dir().to_owned();
        let started = Instant::now();
        self.teardown();
        eprintln!(
            "bare host {}: teardown {:.1?}",
            self.names.prefix,
            started.elapsed()
        );
        leftovers(&self.names.prefix, &dir, &self.cgroups)
    }

    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // PID 1 gone: the kernel kills the rest of its PID namespace, and
        // with the last process its mounts go.
        if let Some(mut launcher) = self.launcher.take() {
            if self.init_is_ours() {
                let _ = Command::new("kill")
                    .args(["-TERM", &self.init.to_string()])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(launcher.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    if self.init_is_ours() {
                        let _ = Command::new("kill")
                            .args(["-KILL", &self.init.to_string()])
                            .status();
                    }
                    let _ = launcher.kill();
                    let _ = launcher.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.relay.stop();
        let ns = &self.names.prefix;
        if Path::new("/run/netns").join(ns).exists() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // The host-side veth goes when the namespace does (asynchronously).
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new("/sys/class/net").join(ns).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new("/sys/class/net").join(ns).exists() {
            let _ = Command::new("ip").args(["link", "del", ns]).status();
        }
        for dir in &self.cgroups {
            // Docker may have made cgroups below ours: deepest first, and a
            // moment for exiting tasks to leave them.
            let deadline = Instant::now() + Duration::from_secs(5);
            while dir.exists() && Instant::now() < deadline {
                let _ = Command::new("find")
                    .arg(dir)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .stderr(Stdio::null())
                    .status();
                if dir.exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        // Only once nothing runs in it and nothing is mounted under it.
        let dir = self.dir().to_owned();
        if processes_in(&dir).is_empty()
            && mounts_under(&dir).is_empty()
            && let Some(dir) = self.dir.take()
        {
            let _ = dir.close();
        }
    }
}

impl Drop for BareHost {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let root = std::fs::read_link(entry.path().join("root")).unwrap_or_default();
        let mut cmdline = String::new();
        let _ = File::open(entry.path().join("cmdline")).and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            cmdline = String::from_utf8_lossy(&bytes).replace('\0', " ");
            Ok(())
        });
        if root.starts_with(dir) || cmdline.contains(&*dir.to_string_lossy()) {
            found.push(format!("process {name}: {cmdline}"));
        }
    }
    found
}

fn leftovers(prefix: &str, dir: &Path, cgroups: &[PathBuf]) -> Vec<String> {
    let mut left = processes_in(dir);
    left.extend(mounts_under(dir).into_iter().map(|m| format!("mount {m}")));
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    if Path::new("/run/netns").join(prefix).exists() {
        left.push(format!("network namespace {prefix}"));
    }
    if Path::new("/sys/class/net").join(prefix).exists() {
        left.push(format!("veth {prefix}"));
    }
    left.extend(
        cgroups
            .iter()
            .filter(|c| c.exists())
            .map(|c| format!("cgroup {}", c.display())),
    );
    left
}

/// Removes what a run of this lab killed mid-way left behind: its
/// directory (with a root filesystem of up to 1 GB), namespace, veth and
/// cgroups, found by the `dbh<pid>x<n>` prefix of a pid that no longer
/// exists. Its processes died with it (pdeathsig); a directory something
/// still runs in or is mounted under is left alone.
fn sweep_crashed_runs() {
    // A rootfs build killed mid-way: its directory and partial tarball.
    if let Ok(entries) = std::fs::read_dir(CACHE) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("build-")
                .or_else(|| name.rsplit_once(".tmp-").map(|(_, pid)| pid));
            if let Some(pid) = pid
                && !pid.is_empty()
                && pid.chars().all(|c| c.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
                && mounts_under(&entry.path()).is_empty()
            {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
    let Ok(entries) = std::fs::read_dir("/var/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(prefix) = name.split('-').next().filter(|p| p.starts_with("dbh")) else {
            continue;
        };
        let Some(pid) = prefix[3..].split('x').next().filter(|p| !p.is_empty()) else {
            continue;
        };
        if !pid.chars().all(|c| c.is_ascii_digit()) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        if !processes_in(&dir).is_empty() || !mounts_under(&dir).is_empty() {
            continue;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", prefix])
            .stderr(Stdio::null())
            .status();
        if Path::new("/sys/class/net").join(prefix).exists() {
            let _ = Command::new("ip").args(["link", "del", prefix]).status();
        }
        for (mount, path) in own_cgroups() {
            let cgroup = Path::new("/sys/fs/cgroup")
                .join(mount)
                .join(path.trim_start_matches('/'))
                .join(prefix);
            if cgroup.exists() {
                let _ = Command::new("find")
                    .arg(&cgroup)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
