//! A three-node Docker Swarm lab on this one machine, reached the way a
//! deploy reaches real hosts (the recipe of /work/shared/SWARM-LAB.md,
//! sections 1-3 and 9-11): each node is its own `dockerd` in its own network
//! namespace, with its own `sshd` listening on the node's address there.
//! The namespaces hang off a bridge in a "hub" namespace, so bridged traffic
//! never meets this machine's iptables and its rules stay as they are; this
//! machine reaches the nodes at 10.77.X.11-13 through one veth into the hub.
//!
//! - One SSH user of the run's own (key login only, a known_hosts pinning
//!   every node's host key) may use every node's Docker socket (the
//!   daemons' `--group`); the sockets are at `/run/<node>.sock`, not
//!   `/var/run/docker.sock`, so a target names each node's socket.
//! - Each dockerd is started with `nsenter --net` (not `ip netns exec`,
//!   which remounts /sys and leaves dockerd without cgroups) and `unshare
//!   --uts` (a hostname of its own), with its own config file, data root,
//!   exec root, pid file, socket and cgroup parent, and the main daemon's
//!   storage driver. The process started is the dockerd itself (an exec
//!   chain), and it receives SIGTERM if the test's thread dies.
//! - Images come from the main daemon (export, then load into each node);
//!   nothing is pulled.
//!
//! Every name is the run's own (`dl<pid>x<n>`: namespaces, veths, exec
//! roots, sockets, cgroup parents, user), one lab runs at a time on the
//! machine (a flock), and the run's /24 is one this machine does not use.
//! Teardown (Drop, also when the test panics) signals only the recorded
//! pids, then removes only its own paths, mounts, namespaces, cgroups and
//! user; what a killed run left is removed by the next one, found by its
//! prefix and pid files.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::{ClientVersion, Docker};

use super::{mounts_under, run};

/// Docker 20.10 answers API 1.41 at most; bollard's default is newer.
const API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// The lab's /24s are 10.77.X.0/24.
const NET: [u8; 2] = [10, 77];
const NODES: usize = 3;
/// One lab at a time on this machine.
const LOCK: &str = "/run/deployer-swarm-lab.lock";

/// Runs a command whose failure teardown can only note.
fn quietly(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the lab needs from the machine, checked up front so a missing piece
/// is named rather than failing halfway.
fn check_prerequisites() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the swarm lab needs root (network namespaces, veths, dockerd, sshd, a user), as \
         scripts/test runs"
    );
    let missing: Vec<String> = [
        ("dockerd", "docker.io"),
        ("docker", "docker.io"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("useradd", "passwd"),
    ]
    .into_iter()
    .filter(|(program, _)| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|(program, package)| format!("{program} (Debian package {package})"))
    .collect();
    assert!(
        missing.is_empty(),
        "the swarm lab needs {} (scripts/test installs them)",
        missing.join(", ")
    );
    let driver = Command::new("docker")
        .args(["info", "-f", "{{.Driver}}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .expect(
            "the swarm lab reads the main Docker daemon (its storage driver, its images), and it \
             does not answer: start it (scripts/ensure-docker)",
        );
    if driver == "fuse-overlayfs" {
        assert!(
            Path::new("/dev/fuse").exists(),
            "the nodes use the main daemon's storage driver, fuse-overlayfs, which needs /dev/fuse"
        );
    }
    driver
}

/// One node: a dockerd and an sshd in the node's network namespace.
pub struct LabNode {
    /// `dl<pid>x<n>-<i>`: the namespace, the hostname, the exec root's and
    /// the socket's name, the cgroup parent.
    pub name: String,
    /// Its address in the lab's /24; sshd listens there on port 22.
    pub addr: Ipv4Addr,
    /// Its Docker socket, on this machine's filesystem.
    pub socket: PathBuf,
    /// Its Docker daemon, at API 1.41, once it answers.
    docker: Option<Docker>,
    exec_root: PathBuf,
    /// Config, data root, keys and logs.
    dir: PathBuf,
    dockerd: Option<Child>,
    sshd: Option<Child>,
}

impl LabNode {
    /// Its Docker daemon, at API 1.41.
    pub fn docker(&self) -> &Docker {
        self.docker
            .as_ref()
            .expect("the lab waits until every daemon answers")
    }
}

/// The running lab.
pub struct SwarmLab {
    /// `dl<pid>x<n>`.
    pub prefix: String,
    pub nodes: Vec<LabNode>,
    /// The SSH user on every node, its private key (mode 600) and a
    /// known_hosts with every node's host key.
    pub user: String,
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
    /// How long the start took (network, daemons, sshd).
    pub start_time: Duration,
    /// The third octet of 10.77.X.0/24.
    subnet: u8,
    dir: Option<tempfile::TempDir>,
    /// What was made, for teardown: namespaces, the host-side veth, the
    /// user.
    namespaces: Vec<String>,
    host_link: Option<String>,
    user_made: bool,
    runtime: tokio::runtime::Runtime,
    torn_down: bool,
    _one_at_a_time: File,
}

impl SwarmLab {
    pub fn start() -> SwarmLab {
        static N: AtomicUsize = AtomicUsize::new(0);
        let driver = check_prerequisites();
        let lock = File::create(LOCK).unwrap();
        lock.lock().unwrap();
        sweep_crashed_runs();
        let started = Instant::now();
        let prefix = format!(
            "dl{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // Veths are `<prefix>h` and `<prefix>v<i>`: at most 15 characters.
        assert!(prefix.len() <= 13, "{prefix} is too long for a veth name");
        std::fs::create_dir_all("/var/tmp").unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in("/var/tmp")
            .unwrap();
        // sshd reads the user's home below it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = dir.path().to_owned();
        // From here on, Drop tears down whatever was made.
        let mut lab = SwarmLab {
            prefix: prefix.clone(),
            nodes: Vec::new(),
            user: prefix.clone(),
            private_key: w.join("client_key"),
            known_hosts: w.join("known_hosts"),
            start_time: Duration::ZERO,
            subnet: 0,
            dir: Some(dir),
            namespaces: Vec::new(),
            host_link: None,
            user_made: false,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            torn_down: false,
            _one_at_a_time: lock,
        };
        lab.make_network();
        lab.make_user();
        for i in 1..=NODES {
            lab.start_dockerd(i, &driver);
        }
        lab.wait_for_daemons();
        for i in 0..NODES {
            lab.start_sshd(i);
        }
        lab.start_time = started.elapsed();
        eprintln!(
            "swarm lab {}: {NODES} nodes on 10.77.{}.0/24 up in {:.1?}",
            lab.prefix, lab.subnet, lab.start_time
        );
        lab
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("torn down").path()
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Section 1: the hub namespace with its bridge, this machine's veth
    /// into it (10.77.X.1), and one namespace per node (10.77.X.1i) with a
    /// veth into the hub.
    fn make_network(&mut self) {
        let used = format!(
            "{}{}",
            run("ip", &["-4", "-o", "addr", "show"]),
            run("ip", &["-4", "route", "show", "table", "all"])
        );
        let start = (std::process::id() as usize) % 250;
        self.subnet = (0..250)
            .map(|k| ((start + k) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!("{}.{}.{x}.", NET[0], NET[1])))
            .expect("a free 10.77.X.0/24 for the swarm lab");
        let hub = self.hub();
        run("ip", &["netns", "add", &hub]);
        self.namespaces.push(hub.clone());
        let ok = Command::new("ip")
            .args(["-n", &hub, "link", "add", "br0", "type", "bridge"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "the swarm lab needs bridges (CONFIG_BRIDGE)");
        // The overlay network is VXLAN: say so here rather than as a swarm
        // whose containers cannot reach each other.
        let ok = Command::new("ip")
            .args([
                "-n", &hub, "link", "add", "vxprobe", "type", "vxlan", "id", "42", "dstport",
                "4789",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the swarm lab needs VXLAN in the kernel (CONFIG_VXLAN) for overlay networks"
        );
        run("ip", &["-n", &hub, "link", "del", "vxprobe"]);
        run("ip", &["-n", &hub, "link", "set", "br0", "up"]);
        let host_link = format!("{}h", self.prefix);
        run(
            "ip",
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", "uplink", "netns", &hub,
            ],
        );
        self.host_link = Some(host_link.clone());
        run(
            "ip",
            &["-n", &hub, "link", "set", "uplink", "master", "br0", "up"],
        );
        let host_addr = format!("{}.{}.{}.1/24", NET[0], NET[1], self.subnet);
        run("ip", &["addr", "add", &host_addr, "dev", &host_link]);
        run("ip", &["link", "set", &host_link, "up"]);
        for i in 1..=NODES {
            let ns = format!("{}-{i}", self.prefix);
            let veth = format!("{}v{i}", self.prefix);
            run("ip", &["netns", "add", &ns]);
            self.namespaces.push(ns.clone());
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            run("ip", &["link", "set", &veth, "netns", &hub]);
            run(
                "ip",
                &["-n", &hub, "link", "set", &veth, "master", "br0", "up"],
            );
            let addr = format!("{}.{}.{}.{}/24", NET[0], NET[1], self.subnet, 10 + i);
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
    }

    /// The SSH user: key login only, in a group of its own that the
    /// daemons give their sockets to.
    fn make_user(&mut self) {
        let home = self.dir().join("home");
        run(
            "useradd",
            &[
                "--create-home",
                "--home-dir",
                home.to_str().unwrap(),
                "--shell",
                "/bin/sh",
                "--user-group",
                &self.user,
            ],
        );
        self.user_made = true;
        // A locked password blocks key logins too; `*` means no password.
        run("usermod", &["-p", "*", &self.user]);
        let key = self.private_key.to_str().unwrap().to_owned();
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &self.prefix,
                "-f",
                &key,
            ],
        );
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::copy(format!("{key}.pub"), ssh_dir.join("authorized_keys")).unwrap();
        run(
            "chown",
            &["-R", &format!("{0}:{0}", self.user), home.to_str().unwrap()],
        );
        run("chmod", &["700", ssh_dir.to_str().unwrap()]);
    }

    /// Section 2: node `i`'s dockerd, in its namespace, with a hostname of
    /// its own.
    fn start_dockerd(&mut self, i: usize, driver: &str) {
        let name = format!("{}-{i}", self.prefix);
        let dir = self.dir().join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Its own key.json, so each node has an engine ID of its own.
        std::fs::write(
            dir.join("daemon.json"),
            format!(
                "{{\"deprecated-key-path\": \"{}\"}}\n",
                dir.join("key.json").display()
            ),
        )
        .unwrap();
        let exec_root = PathBuf::from(format!("/run/{name}"));
        let socket = PathBuf::from(format!("/run/{name}.sock"));
        let log = File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "TERM", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{name}"))
            .args(["--", "unshare", "--uts", "--", "sh", "-c"])
            .arg("hostname \"$0\" && exec env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 \"$@\"")
            .arg(&name)
            .arg("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--storage-driver", driver])
            .arg("--cgroup-parent")
            .arg(format!("/{name}"))
            .args(["--group", &self.user])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a node's dockerd");
        self.nodes.push(LabNode {
            name,
            addr: Ipv4Addr::new(NET[0], NET[1], self.subnet, 10 + i as u8),
            socket,
            docker: None,
            exec_root,
            dir,
            dockerd: Some(child),
            sshd: None,
        });
    }

    fn wait_for_daemons(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..self.nodes.len() {
            loop {
                let node = &self.nodes[i];
                let docker = node
                    .socket
                    .exists()
                    .then(|| Docker::connect_with_unix(node.socket.to_str().unwrap(), 120, &API))
                    .and_then(Result::ok)
                    .filter(|docker| self.runtime.block_on(docker.ping()).is_ok());
                if docker.is_some() {
                    self.nodes[i].docker = docker;
                    break;
                }
                let (name, log) = (node.name.clone(), node.dir.join("dockerd.log"));
                let log = || tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30);
                if let Some(Ok(Some(status))) = self.nodes[i].dockerd.as_mut().map(Child::try_wait)
                {
                    panic!(
                        "node {name}'s dockerd exited ({status}) before it answered:\n{}",
                        log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "node {name}'s dockerd did not answer within 60 s:\n{}",
                    log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Section 11: node `i`'s sshd, on the node's address in its namespace,
    /// with its own host key and pid file; the key goes into known_hosts
    /// in the plain `addr` form (port 22).
    fn start_sshd(&mut self, i: usize) {
        let node = &self.nodes[i];
        let dir = node.dir.clone();
        let host_key = dir.join("host_key");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                host_key.to_str().unwrap(),
            ],
        );
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {}\nPort 22\nHostKey {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PubkeyAuthentication yes\nAllowStreamLocalForwarding yes\nAllowTcpForwarding yes\n\
                 AllowUsers {}\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n",
                node.addr,
                host_key.display(),
                dir.join("sshd.pid").display(),
                self.user
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "TERM", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{}", node.name))
            .args(["--", "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a node's sshd");
        self.nodes[i].sshd = Some(child);
        let addr = SocketAddr::from((self.nodes[i].addr, 22));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.nodes[i].sshd.as_mut().map(Child::try_wait) {
                panic!(
                    "node {}'s sshd exited ({status}): {}",
                    self.nodes[i].name,
                    std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {}'s sshd did not answer",
                addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let public = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let fields: Vec<&str> = public.split_whitespace().collect();
        let mut known = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        known.push_str(&format!("{} {} {}\n", addr.ip(), fields[0], fields[1]));
        std::fs::write(&self.known_hosts, known).unwrap();
    }

    /// `user@addr` of node `i` (0-based), for a deploy target.
    pub fn target(&self, i: usize) -> String {
        format!("{}@{}", self.user, self.nodes[i].addr)
    }

    /// Cuts node `i` off the lab's network (its veth down), as a lost host
    /// would be: nothing reaches it, it reaches nothing.
    pub fn cut_off(&self, i: usize) {
        self.set_link(i, "down");
    }

    /// Puts node `i` back on the network.
    pub fn reconnect(&self, i: usize) {
        self.set_link(i, "up");
    }

    fn set_link(&self, i: usize, state: &str) {
        // The veths are numbered as the namespaces are, from 1.
        let veth = format!("{}v{}", self.prefix, i + 1);
        run("ip", &["-n", &self.hub(), "link", "set", &veth, state]);
    }

    /// Runs a future (a bollard call on a node's `docker`) to completion.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Section 3: puts `images` (`name:tag`, in the main daemon) into every
    /// node: one export from the main daemon, loaded into each node.
    pub fn load_images(&self, images: &[&str]) {
        use futures_util::{StreamExt, TryStreamExt};
        let main = Docker::connect_with_unix("/var/run/docker.sock", 120, &API).unwrap();
        self.runtime.block_on(async {
            let names: Vec<&str> = images.to_vec();
            let archive: Vec<_> = main
                .export_images(&names)
                .try_collect()
                .await
                .unwrap_or_else(|e| panic!("exporting {images:?} from the main daemon: {e}"));
            for node in &self.nodes {
                let body = futures_util::stream::iter(
                    archive
                        .clone()
                        .into_iter()
                        .map(Ok::<_, std::convert::Infallible>),
                );
                let mut loading = node.docker().import_image_stream(
                    bollard::query_parameters::ImportImageOptions {
                        quiet: true,
                        ..Default::default()
                    },
                    body,
                    None,
                );
                while let Some(item) = loading.next().await {
                    item.unwrap_or_else(|e| panic!("loading {images:?} into {}: {e}", node.name));
                }
            }
        });
    }

    /// Tears the lab down and returns what was left behind (nothing, when
    /// all went well).
    pub fn shutdown(mut self) -> Vec<String> {
        let started = Instant::now();
        let dir = self.dir().to_owned();
        self.teardown();
        eprintln!(
            "swarm lab {}: teardown {:.1?}",
            self.prefix,
            started.elapsed()
        );
        let mut left = leftovers(&self.prefix, &self.node_names());
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        left
    }

    fn node_names(&self) -> Vec<String> {
        (1..=NODES)
            .map(|i| format!("{}-{i}", self.prefix))
            .collect()
    }

    /// Section 9: containers first, then the recorded daemons and sshds
    /// (TERM, KILL after 30 s), stray processes of the nodes, their mounts,
    /// the namespaces (and with them the veths), cgroups, the user, the
    /// paths.
    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // The API part on a thread of its own: Drop may run inside a test's
        // runtime, where this one cannot block.
        let sockets: Vec<PathBuf> = self.nodes.iter().map(|n| n.socket.clone()).collect();
        let _ = std::thread::spawn(move || remove_containers(&sockets)).join();

        for node in &mut self.nodes {
            for child in [&mut node.dockerd, &mut node.sshd].into_iter().flatten() {
                // Only our process, still running what we started.
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &mut self.nodes {
            for child in [node.dockerd.take(), node.sshd.take()]
                .into_iter()
                .flatten()
            {
                let mut child = child;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
        }
        let roots: Vec<(PathBuf, PathBuf)> = self
            .nodes
            .iter()
            .map(|n| (n.exec_root.clone(), n.dir.clone()))
            .collect();
        remove_node_remains(&roots);
        for ns in self.namespaces.drain(..).rev() {
            kill_processes_in(&ns);
            quietly("ip", &["netns", "del", &ns]);
        }
        if let Some(link) = self.host_link.take() {
            wait_gone(&Path::new("/sys/class/net").join(&link));
            if Path::new("/sys/class/net").join(&link).exists() {
                quietly("ip", &["link", "del", &link]);
            }
        }
        for name in self.node_names() {
            remove_cgroups(&name);
            let _ = std::fs::remove_dir_all(format!("/run/{name}"));
            let _ = std::fs::remove_file(format!("/run/{name}.sock"));
        }
        if self.user_made {
            self.user_made = false;
            quietly("userdel", &[&self.user]);
        }
        // Only once nothing runs in it and nothing is mounted under it.
        let dir = self.dir().to_owned();
        if processes_naming(&[dir.to_string_lossy().as_ref()]).is_empty()
            && mounts_under(&dir).is_empty()
            && let Some(dir) = self.dir.take()
        {
            let _ = dir.close();
        }
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Force-removes every container of the nodes, so the daemons stop at once
/// (a task container could take its stop timeout).
fn remove_containers(sockets: &[PathBuf]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        for socket in sockets {
            let Ok(docker) = Docker::connect_with_unix(&socket.to_string_lossy(), 10, &API) else {
                continue;
            };
            let Ok(containers) = docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
            else {
                continue;
            };
            for id in containers.into_iter().filter_map(|c| c.id) {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(bollard::query_parameters::RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        }
    });
}

/// Processes whose command line names one of `needles`.
fn processes_naming(needles: &[&str]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&bytes).replace('\0', " ");
        if needles.iter().any(|n| cmdline.contains(n)) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Steps 3 and 4 of section 9 for nodes given as (exec root, node dir):
/// any process still naming them is killed by pid, anything mounted under
/// them unmounted, deepest first.
fn remove_node_remains(roots: &[(PathBuf, PathBuf)]) {
    let needles: Vec<String> = roots
        .iter()
        .flat_map(|(exec, dir)| {
            [
                format!("{}/", exec.display()),
                format!("{}/", dir.display()),
            ]
        })
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    for (pid, _) in processes_naming(&needles) {
        if pid != std::process::id() {
            quietly("kill", &["-KILL", &pid.to_string()]);
        }
    }
    for (exec, dir) in roots {
        let mut mounts = mounts_under(exec);
        mounts.extend(mounts_under(dir));
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            if !quietly("umount", &[&mount]) {
                quietly("umount", &["-l", &mount]);
            }
        }
    }
}

/// Kills whatever still runs in the network namespace `ns` (sshd's
/// per-connection processes outlive the listener they came from).
fn kill_processes_in(ns: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(Path::new("/run/netns").join(ns)) else {
        return;
    };
    let ours = format!("net:[{}]", meta.ino());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let link = std::fs::read_link(entry.path().join("ns/net")).unwrap_or_default();
        if link.to_string_lossy() == ours && pid != std::process::id() {
            quietly("kill", &["-KILL", &pid.to_string()]);
        }
    }
}

fn wait_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node's cgroup parent in every hierarchy (dockerd made the
/// containers' cgroups below it): deepest first, with a moment for exiting
/// tasks to leave.
fn remove_cgroups(name: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(5);
        while dir.exists() && Instant::now() < deadline {
            let _ = Command::new("find")
                .arg(&dir)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
            if dir.exists() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn leftovers(prefix: &str, nodes: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for name in nodes {
        let exec = format!("/run/{name}/");
        for (pid, cmdline) in processes_naming(&[&exec]) {
            left.push(format!("process {pid}: {cmdline}"));
        }
        for path in [format!("/run/{name}"), format!("/run/{name}.sock")] {
            if Path::new(&path).exists() {
                left.push(path);
            }
        }
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in hierarchies.flatten() {
                if hierarchy.path().join(name).exists() {
                    left.push(format!("cgroup {}", hierarchy.path().join(name).display()));
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let ns = entry.file_name().to_string_lossy().into_owned();
            if ns.starts_with(&format!("{prefix}-")) {
                left.push(format!("network namespace {ns}"));
            }
        }
    }
    if Path::new("/sys/class/net")
        .join(format!("{prefix}h"))
        .exists()
    {
        left.push(format!("veth {prefix}h"));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd.lines().any(|l| l.split(':').next() == Some(prefix)) {
        left.push(format!("user {prefix}"));
    }
    left
}

/// Removes what a run of this lab killed mid-way left behind, found by the
/// `dl<pid>x<n>` prefix of a pid that no longer runs: its daemons (by their
/// pid files, if still running what the run started), their remains,
/// namespaces, veth, cgroups, user and directory.
fn sweep_crashed_runs() {
    let dead = |prefix: &str| -> bool {
        let Some(rest) = prefix.strip_prefix("dl") else {
            return false;
        };
        let Some((pid, n)) = rest.split_once('x') else {
            return false;
        };
        !pid.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
    };
    let mut prefixes: Vec<String> = Vec::new();
    for dir in ["/run/netns", "/var/tmp"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some((prefix, _)) = name.split_once('-')
                    && dead(prefix)
                    && !prefixes.iter().any(|p| p == prefix)
                {
                    prefixes.push(prefix.to_owned());
                }
            }
        }
    }
    for prefix in prefixes {
        eprintln!("swarm lab: removing what the killed run {prefix} left");
        let dirs: Vec<PathBuf> = std::fs::read_dir("/var/tmp")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{prefix}-")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<String> = (1..=NODES).map(|i| format!("{prefix}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            // The daemon a pid file names, if it still runs with this
            // node's exec root.
            for dir in &dirs {
                let pidfile = dir.join(format!("node{}", i + 1)).join("dockerd.pid");
                if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                    let pid = pid.trim();
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmdline).contains(&format!("/run/{name}")) {
                        quietly("kill", &["-TERM", pid]);
                        wait_gone(&PathBuf::from(format!("/proc/{pid}")));
                    }
                }
            }
        }
        let roots: Vec<(PathBuf, PathBuf)> = names
            .iter()
            .enumerate()
            .flat_map(|(i, name)| {
                dirs.iter().map(move |dir| {
                    (
                        PathBuf::from(format!("/run/{name}")),
                        dir.join(format!("node{}", i + 1)),
                    )
                })
            })
            .collect();
        remove_node_remains(&roots);
        for name in &names {
            kill_processes_in(name);
            quietly("ip", &["netns", "del", name]);
            remove_cgroups(name);
            let _ = std::fs::remove_dir_all(format!("/run/{name}"));
            let _ = std::fs::remove_file(format!("/run/{name}.sock"));
        }
        quietly("ip", &["netns", "del", &format!("{prefix}-hub")]);
        quietly("ip", &["link", "del", &format!("{prefix}h")]);
        quietly("userdel", &[&prefix]);
        for dir in dirs {
            if mounts_under(&dir).is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}
