//! The real test environment on one machine (ARCHITECTURE.md, "Tests"): a `docker-registry`
//! with htpasswd auth on loopback (standing in for Docker Hub), and an "EC2"
//! host made of its own sshd on a loopback port, its own user, and its own
//! Docker daemon (own data-root and socket, starting with no images).
//! Everything is started on free ports under one short temp directory and
//! torn down on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, run};

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped, so a
/// daemon can unmount and clean up.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A user made for the test, removed when dropped (after the processes
/// declared before it in `Host`).
struct User(String);

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.0])
            .status();
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

/// A registry with basic auth on 127.0.0.1.
pub struct Registry {
    pub server: String,
    pub username: String,
    pub password: String,
    _process: Process,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, "")
    }

    /// A registry in read-only maintenance mode: logins work, pushes are
    /// refused, as on a pull-through mirror.
    pub fn start_read_only(dir: &Path) -> Registry {
        Registry::start_with(dir, "  maintenance:\n    readonly:\n      enabled: true\n")
    }

    fn start_with(dir: &Path, storage_extra: &str) -> Registry {
        let port = free_port();
        let (username, password) = ("ci".to_owned(), format!("pw-{}", std::process::id()));
        let htpasswd = run("htpasswd", &["-Bbn", &username, &password]);
        std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
        std::fs::write(
            dir.join("registry.yml"),
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 {storage_extra}http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.join("registry").display(),
                dir.join("htpasswd").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("registry.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");
        wait_for("the registry", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry {
            server: format!("localhost:{port}"),
            username,
            password,
            _process: Process(child),
        }
    }
}

/// Lets containers of the host's daemon talk to each other: with
/// `--iptables=false` that daemon adds no rules, and the first daemon's
/// FORWARD policy (DROP) would drop bridged traffic between them. On a real
/// EC2 host the host's only daemon manages this itself. Removed on drop.
struct ForwardRule(String);

impl ForwardRule {
    fn add(subnet: &str) -> ForwardRule {
        run(
            "iptables",
            &[
                "-I",
                "DOCKER-USER",
                "-s",
                subnet,
                "-d",
                subnet,
                "-j",
                "ACCEPT",
            ],
        );
        ForwardRule(subnet.to_owned())
    }
}

impl Drop for ForwardRule {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args([
                "-D",
                "DOCKER-USER",
                "-s",
                &self.0,
                "-d",
                &self.0,
                "-j",
                "ACCEPT",
            ])
            .status();
    }
}

/// The "EC2" host: sshd + a user + a Docker daemon of its own.
pub struct Host {
    pub user: String,
    pub ssh_port: u16,
    pub docker_socket: PathBuf,
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
    pub frontend_port: u16,
    pub api_port: u16,
    dir: PathBuf,
    _sshd: Process,
    _dockerd: Process,
    _user: User,
    _forward: ForwardRule,
}

impl Host {
    fn start(dir: &Path) -> Host {
        let user = format!("sa{}", std::process::id());
        let home = dir.join("home");
        run(
            "useradd",
            &[
                "--create-home",
                "--home-dir",
                home.to_str().unwrap(),
                "--shell",
                "/bin/sh",
                &user,
            ],
        );
        // A locked password blocks key logins too; `*` means no password.
        let user_guard = User(user.clone());
        run("usermod", &["-p", "*", &user]);

        // Its own address pool, apart from the first daemon's.
        let subnet = format!("10.{}.0.0/16", 200 + std::process::id() % 50);
        let forward = ForwardRule::add(&subnet);
        let docker_socket = dir.join("docker.sock");
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let driver = run("docker", &["info", "-f", "{{.Driver}}"]);
        let dockerd = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("docker-data"))
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", docker_socket.display()))
            .args(["--group", &user, "--storage-driver", driver.trim()])
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
                "--mtu",
                "1400",
            ])
            .args(["--default-address-pool", &format!("base={subnet},size=24")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian package docker.io)");
        let dockerd = Process(dockerd);
        let socket = docker_socket.to_str().unwrap().to_owned();
        wait_for("the host's dockerd", || {
            Command::new("docker")
                .args(["-H", &format!("unix://{socket}"), "info"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });

        let keygen = |name: &str| {
            let path = dir.join(name);
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path.to_str().unwrap(),
                ],
            );
        };
        keygen("host_key");
        keygen("client_key");
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::copy(dir.join("client_key.pub"), ssh_dir.join("authorized_keys")).unwrap();
        run(
            "chown",
            &["-R", &format!("{user}:{user}"), home.to_str().unwrap()],
        );
        run("chmod", &["700", ssh_dir.to_str().unwrap()]);

        let ssh_port = free_port();
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().collect();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{ssh_port} {} {}\n", host_pub[0], host_pub[1]),
        )
        .unwrap();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {ssh_port}\nHostKey {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PubkeyAuthentication yes\nAllowStreamLocalForwarding yes\nAllowTcpForwarding yes\n\
                 AllowUsers {user}\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n",
                dir.join("host_key").display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd (Debian package openssh-server)");
        wait_for("sshd", || {
            std::net::TcpStream::connect(("127.0.0.1", ssh_port)).is_ok()
        });
        Host {
            user,
            ssh_port,
            docker_socket,
            private_key: dir.join("client_key"),
            known_hosts,
            frontend_port: free_port(),
            api_port: free_port(),
            dir: dir.to_owned(),
            _sshd: Process(sshd),
            _dockerd: dockerd,
            _user: user_guard,
            _forward: forward,
        }
    }

    pub fn target(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.ssh_port)
    }

    /// `docker ARGS` against the host's daemon.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.docker_socket.display()))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Containers first, so the daemon stops cleanly; then the daemon and
        // sshd (fields), then the user.
        for id in self.docker(&["ps", "-aq"]).split_whitespace() {
            self.docker(&["rm", "-f", id]);
        }
    }
}

/// The whole environment, in one temp directory.
pub struct Ec2 {
    pub registry: Registry,
    pub host: Host,
    dir: tempfile::TempDir,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Ec2 {
    /// Starts the environment; one at a time per test binary (each host
    /// daemon takes the same address pool).
    pub fn start() -> Ec2 {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("sa-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        run("chmod", &["755", dir.path().to_str().unwrap()]);
        let registry = Registry::start(dir.path());
        let host = Host::start(dir.path());
        Ec2 {
            registry,
            host,
            dir,
            _one_at_a_time: guard,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Ends the SSH control masters of deployers run against this host
    /// (found by this environment's private key on their command line), as
    /// their ControlPersist would a minute after their deployer died.
    pub fn kill_ssh_masters(&self) {
        let key = self.host.private_key.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let master = args.first().is_some_and(|a| a.ends_with("ssh"))
                && args.iter().any(|a| a == "-M")
                && args.contains(&key);
            if master {
                let pid = entry.file_name().to_string_lossy().into_owned();
                run("kill", &[&pid]);
                // The killed deployer could not remove its directory in /tmp
                // (the control socket's, with the forwarded Docker socket).
                if let Some(control) = args
                    .iter()
                    .position(|a| a == "-S")
                    .and_then(|i| args.get(i + 1))
                    && let Some(dir) = Path::new(control)
                        .ancestors()
                        .find(|d| d.parent() == Some(Path::new("/tmp")))
                {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        // The host's sshd notices the closed connection at once; give it a
        // moment to drop the session from its tables.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// A `deployer` command set up as Jenkins would run it against this
    /// environment.
    pub fn deployer(&self, args: &[&str]) -> Command {
        let mut command = super::deployer();
        command
            .args(args)
            .env("DOCKER_REGISTRY", &self.registry.server)
            .env("DOCKER_USERNAME", &self.registry.username)
            .env("DOCKER_PASSWORD", &self.registry.password)
            .env("AWS_EC2_INSTANCE", self.host.target())
            .env("EC2_PRIVATE_KEY", &self.host.private_key)
            .env("EC2_KNOWN_HOSTS", &self.host.known_hosts)
            .env("EC2_DOCKER_SOCKET", &self.host.docker_socket)
            .env("EC2_FRONTEND_PORT", self.host.frontend_port.to_string())
            .env("EC2_API_PORT", self.host.api_port.to_string())
            // The host's API credentials (as Jenkins binds them); the tests
            // call the API with them.
            .env("API_USERNAME", "root")
            .env("API_PASSWORD", "root");
        command
    }
}

impl Drop for Ec2 {
    fn drop(&mut self) {
        // Host and registry stop first (fields drop after this body), so
        // remove the user and the pushed tags from the local daemon here.
        for image in super::docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
            if image.starts_with(&self.registry.server) {
                super::docker(&["rmi", image]);
            }
        }
    }
}
