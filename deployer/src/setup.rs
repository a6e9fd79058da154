//! Preparing a host for deploys, over the same SSH connection a deploy uses:
//! `probe` reads what the host has (system, architecture, Docker, the SSH
//! user's access to it, log rotation, `~/student-ages`), `check_ready` is the
//! gate `deploy` passes before touching anything, and `setup` installs and
//! configures what is missing, with sudo, announced before it runs.
//!
//! A fresh EC2 instance has no Docker, and without this a deploy fails late
//! with a message about the `docker` group. Running `setup` again changes
//! nothing and says so.

use std::fmt;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

use crate::host::HOST_DIR;
use crate::progress::Progress;
use crate::remote::{ConnectOptions, Remote};

/// The CPU architecture, as Docker names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
    /// Anything else, as `uname -m` prints it.
    Other(String),
}

impl Arch {
    pub fn from_uname(machine: &str) -> Arch {
        match machine.trim() {
            "x86_64" | "amd64" => Arch::Amd64,
            "aarch64" | "arm64" => Arch::Arm64,
            other => Arch::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Amd64 => write!(f, "amd64"),
            Arch::Arm64 => write!(f, "arm64"),
            Arch::Other(machine) => write!(f, "{machine}"),
        }
    }
}

/// What the SSH user's `docker` gets from the daemon's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// It answers; the server's version.
    Answers(String),
    /// The socket is there but the SSH user may not use it.
    Forbidden,
    /// Nothing answers on the socket.
    Stopped,
    /// Something else went wrong; what `docker version` said.
    Failing(String),
}

/// Whether Docker keeps container logs bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRotation {
    /// Bounded; how.
    Bounded(String),
    /// json-file logs without `max-size`: they grow until the disk is full.
    Unbounded,
    /// /etc/docker/daemon.json exists but the SSH user cannot read it.
    Unknown,
}

/// `/etc/os-release`, the fields that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Os {
    /// `ID`: `ubuntu`, `debian`, `amzn`, ...
    pub id: String,
    /// `VERSION_ID`: `24.04`, `12`, `2023`.
    pub version_id: String,
    /// `ID_LIKE`, split.
    pub id_like: Vec<String>,
    /// `PRETTY_NAME`, for people.
    pub pretty_name: String,
}

/// What a host has, as far as deploys are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `user@host[:port]`, for messages.
    pub target: String,
    pub os: Os,
    pub arch: Arch,
    /// The SSH user, its uid and its home directory.
    pub user: String,
    pub uid: u32,
    pub home: String,
    /// The `docker` command is on the SSH user's PATH.
    pub docker_installed: bool,
    /// The socket asked (EC2_DOCKER_SOCKET, /var/run/docker.sock by default).
    pub docker_socket: String,
    pub daemon: Daemon,
    /// The `docker` group exists.
    pub docker_group_exists: bool,
    /// The SSH user is in the `docker` group (per /etc/group).
    pub in_docker_group: bool,
    /// This SSH session already has the group (a login made before the user
    /// joined it does not).
    pub session_in_docker_group: bool,
    /// systemd is PID 1 (the host was booted with it).
    pub systemd: bool,
    /// PID 1's name, for messages.
    pub pid1: String,
    /// `systemctl is-enabled docker` says enabled (false without systemd).
    pub docker_enabled_at_boot: bool,
    /// /etc/docker/daemon.json, when the SSH user can read it.
    pub daemon_json: Option<String>,
    pub log_rotation: LogRotation,
    /// `~/student-ages` exists.
    pub host_dir: bool,
}

/// One shell script, one round trip: prints `key=value` lines, then the
/// files after `@@name` lines. `$1` is the Docker socket.
const PROBE: &str = r#"
S=$1
echo @@facts
echo "arch=$(uname -m)"
echo "user=$(id -un)"
echo "uid=$(id -u)"
echo "home=$HOME"
echo "session_groups=$(id -nG)"
echo "db_groups=$(id -nG "$(id -un)")"
getent group docker >/dev/null 2>&1 && echo docker_group=yes
echo "pid1=$(cat /proc/1/comm 2>/dev/null)"
[ -d /run/systemd/system ] && echo systemd=yes
if [ -d /run/systemd/system ] && [ "$(systemctl is-enabled docker 2>/dev/null)" = enabled ]; then
  echo enabled=yes
fi
[ -d "$HOME/student-ages" ] && echo host_dir=yes
if command -v docker >/dev/null 2>&1; then
  echo docker=yes
  if out=$(DOCKER_HOST="unix://$S" docker version -f '{{.Server.Version}}' 2>&1); then
    echo "daemon=answers $out"
  else
    echo "daemon=failed $(echo "$out" | tr '\n' ' ')"
  fi
fi
[ -S "$S" ] && echo socket=yes
F=/etc/docker/daemon.json
if [ -e $F ]; then
  if [ -r $F ]; then echo daemon_json=readable; else echo daemon_json=unreadable; fi
fi
echo @@os-release
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo @@daemon.json
[ -r $F ] && cat $F
exit 0
"#;

/// Reads what the host has. Runs nothing with privileges and changes
/// nothing.
pub async fn probe(remote: &Remote, docker_socket: &str) -> anyhow::Result<HostFacts> {
    let out = remote
        .run("sh", &["-c", PROBE, "probe", docker_socket])
        .await
        .context("reading what the host has")?;
    parse_probe(&remote.target.to_string(), docker_socket, &out)
}

fn sections(out: &str) -> Vec<(&str, String)> {
    let mut sections: Vec<(&str, String)> = Vec::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            sections.push((name, String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections
}

fn parse_probe(target: &str, docker_socket: &str, out: &str) -> anyhow::Result<HostFacts> {
    let sections = sections(out);
    let section = |name: &str| {
        sections
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| text.as_str())
    };
    let facts = section("facts").ok_or_else(|| {
        anyhow!("the probe of {target} printed nothing readable (is its shell POSIX sh?): {out}")
    })?;
    let fact = |key: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let yes = |key: &str| fact(key) == Some("yes");
    let has_group = |key: &str| {
        fact(key)
            .unwrap_or_default()
            .split_whitespace()
            .any(|g| g == "docker")
    };
    let docker_installed = yes("docker");
    let daemon = match fact("daemon") {
        Some(answer) if answer.starts_with("answers") => {
            Daemon::Answers(answer["answers".len()..].trim().to_owned())
        }
        Some(failure) => {
            let said = failure.strip_prefix("failed").unwrap_or(failure).trim();
            let lower = said.to_lowercase();
            if lower.contains("permission denied") {
                Daemon::Forbidden
            } else if lower.contains("cannot connect to the docker daemon")
                || lower.contains("no such file")
                || lower.contains("connection refused")
            {
                Daemon::Stopped
            } else {
                Daemon::Failing(said.to_owned())
            }
        }
        None if yes("socket") => Daemon::Failing(
            "the `docker` command is not installed, so the daemon could not be asked".into(),
        ),
        None => Daemon::Stopped,
    };
    let daemon_json = section("daemon.json")
        .filter(|_| fact("daemon_json") == Some("readable"))
        .map(str::to_owned);
    let log_rotation = match fact("daemon_json") {
        Some("unreadable") => LogRotation::Unknown,
        _ => match log_plan(daemon_json.as_deref()) {
            Ok(LogPlan::Keep(how)) => LogRotation::Bounded(how),
            Ok(LogPlan::Write(_)) => LogRotation::Unbounded,
            // Docker refuses to start with a broken file; setup says so.
            Err(_) => LogRotation::Unknown,
        },
    };
    Ok(HostFacts {
        target: target.to_owned(),
        os: parse_os_release(section("os-release").unwrap_or_default()),
        arch: Arch::from_uname(fact("arch").unwrap_or_default()),
        user: fact("user").unwrap_or_default().to_owned(),
        uid: fact("uid").and_then(|u| u.parse().ok()).unwrap_or(u32::MAX),
        home: fact("home").unwrap_or_default().to_owned(),
        docker_installed,
        docker_socket: docker_socket.to_owned(),
        daemon,
        docker_group_exists: yes("docker_group"),
        in_docker_group: has_group("db_groups"),
        session_in_docker_group: has_group("session_groups"),
        systemd: yes("systemd"),
        pid1: fact("pid1").unwrap_or("?").to_owned(),
        docker_enabled_at_boot: yes("enabled"),
        daemon_json,
        log_rotation,
        host_dir: yes("host_dir"),
    })
}

/// `KEY=value` lines, values optionally quoted (os-release(5)).
fn parse_os_release(text: &str) -> Os {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| {
                let v = v.trim();
                let unquoted = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                unquoted
                    .replace("\\\"", "\"")
                    .replace("\\$", "$")
                    .replace("\\`", "`")
                    .replace("\\\\", "\\")
            })
            .unwrap_or_default()
    };
    Os {
        id: value("ID"),
        version_id: value("VERSION_ID"),
        id_like: value("ID_LIKE")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        pretty_name: value("PRETTY_NAME"),
    }
}

impl HostFacts {
    fn system(&self) -> String {
        let name = if self.os.pretty_name.is_empty() {
            format!("{} {}", self.os.id, self.os.version_id)
        } else {
            self.os.pretty_name.clone()
        };
        format!("{}, {}", name.trim(), self.arch)
    }
}

impl fmt::Display for HostFacts {
    /// A table for `deployer setup --check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let docker = match (&self.daemon, self.docker_installed) {
            (_, false) => "not installed".to_owned(),
            (Daemon::Answers(version), _) => format!("{version}, answers {}", self.user),
            (Daemon::Forbidden, _) => format!("running, but {} may not use it", self.user),
            (Daemon::Stopped, _) => {
                format!("installed, daemon not running ({})", self.docker_socket)
            }
            (Daemon::Failing(said), _) => format!("installed, daemon failing: {said}"),
        };
        let group = match (self.in_docker_group, self.session_in_docker_group) {
            (true, true) => format!("{} is a member", self.user),
            (true, false) => format!("{} is a member (from its next login)", self.user),
            (false, _) if self.uid == 0 => "not needed (root)".to_owned(),
            (false, _) => format!("{} is not a member", self.user),
        };
        let boot = if !self.systemd {
            format!(
                "no systemd (PID 1 is {}): Docker does not start at boot",
                self.pid1
            )
        } else if self.docker_enabled_at_boot {
            "systemd, Docker enabled at boot".to_owned()
        } else {
            "systemd, Docker not enabled at boot".to_owned()
        };
        let logs = match &self.log_rotation {
            LogRotation::Bounded(how) => how.clone(),
            LogRotation::Unbounded => "none: container logs grow without bound".to_owned(),
            LogRotation::Unknown => "unknown (/etc/docker/daemon.json unreadable or broken)".into(),
        };
        let dir = if self.host_dir { "present" } else { "missing" };
        let rows = [
            ("host", self.target.clone()),
            ("system", self.system()),
            ("docker", docker),
            ("docker group", group),
            ("at boot", boot),
            ("log rotation", logs),
            (&format!("~/{HOST_DIR}"), dir.to_owned()),
        ];
        let lines: Vec<String> = rows
            .iter()
            .map(|(label, value)| format!("  {label:<16}{value}"))
            .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// One thing a deploy needs that the host lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Architecture(String),
    Docker,
    DaemonStopped { socket: String },
    DaemonFailing(String),
    DockerGroup { user: String, socket: String },
    SocketForbidden { user: String, socket: String },
}

impl Missing {
    /// Whether `deployer setup` can fix it.
    fn fixable(&self) -> bool {
        !matches!(self, Missing::Architecture(_))
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Architecture(machine) => write!(
                f,
                "the host's architecture is {machine}; the stack's images are built for amd64 \
                 (x86_64) and arm64 (Graviton) only"
            ),
            Missing::Docker => write!(f, "Docker is not installed"),
            Missing::DaemonStopped { socket } => {
                write!(
                    f,
                    "the Docker daemon is not running (nothing answers on {socket})"
                )
            }
            Missing::DaemonFailing(said) => write!(f, "the Docker daemon does not answer: {said}"),
            Missing::DockerGroup { user, socket } => write!(
                f,
                "{user} is not in the `docker` group, so it may not use the Docker socket {socket}"
            ),
            Missing::SocketForbidden { user, socket } => write!(
                f,
                "{user} may not use the Docker socket {socket} (permission denied), although it \
                 is in the `docker` group: check the socket's owner and group (EC2_DOCKER_SOCKET \
                 names another socket)"
            ),
        }
    }
}

/// Why a host cannot take a deploy yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotReady {
    pub target: String,
    pub missing: Vec<Missing>,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not ready for a deploy:", self.target)?;
        for missing in &self.missing {
            write!(f, "\n  - {missing}")?;
        }
        if self.missing.iter().any(Missing::fixable) {
            write!(
                f,
                "\nRun `deployer setup --host {}` to prepare it (it installs and starts Docker \
                 with sudo and lets the SSH user use it). Nothing was changed.",
                self.target
            )
        } else {
            write!(f, "\nUse an x86_64 or arm64 instance. Nothing was changed.")
        }
    }
}

/// The gate before a deploy touches anything: Ok when the SSH user can use
/// the daemon on a supported architecture, else what is missing.
pub fn check_ready(facts: &HostFacts) -> Result<(), NotReady> {
    let mut missing = Vec::new();
    if let Arch::Other(machine) = &facts.arch {
        missing.push(Missing::Architecture(machine.clone()));
    }
    let not_member = !facts.in_docker_group && facts.uid != 0;
    match &facts.daemon {
        _ if !facts.docker_installed => missing.push(Missing::Docker),
        Daemon::Answers(_) => {}
        Daemon::Stopped => {
            missing.push(Missing::DaemonStopped {
                socket: facts.docker_socket.clone(),
            });
            if not_member {
                missing.push(Missing::DockerGroup {
                    user: facts.user.clone(),
                    socket: facts.docker_socket.clone(),
                });
            }
        }
        Daemon::Forbidden if not_member || !facts.session_in_docker_group => {
            missing.push(Missing::DockerGroup {
                user: facts.user.clone(),
                socket: facts.docker_socket.clone(),
            })
        }
        Daemon::Forbidden => missing.push(Missing::SocketForbidden {
            user: facts.user.clone(),
            socket: facts.docker_socket.clone(),
        }),
        Daemon::Failing(said) => missing.push(Missing::DaemonFailing(said.clone())),
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NotReady {
            target: facts.target.clone(),
            missing,
        })
    }
}

/// Probes the host and fails with what is missing when a deploy cannot run
/// there: what `deploy` calls right after connecting, before it forwards the
/// Docker socket, takes the lock or touches anything.
pub async fn ensure_ready(remote: &Remote, docker_socket: &str) -> anyhow::Result<HostFacts> {
    let facts = probe(remote, docker_socket).await?;
    check_ready(&facts)?;
    Ok(facts)
}

/// Docker's own log rotation for json-file logs, as Kamal sets it.
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILE: &str = "3";

/// What to do with /etc/docker/daemon.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPlan {
    /// Logs are bounded already (how); leave the file alone.
    Keep(String),
    /// Write this text: the same settings plus log rotation.
    Write(String),
}

/// The daemon.json that bounds container logs, merged into `current`
/// without dropping or reordering its other keys. A log driver other than
/// json-file is the administrator's choice and is kept.
pub fn log_plan(current: Option<&str>) -> Result<LogPlan, String> {
    let mut config = match current.map(str::trim).filter(|t| !t.is_empty()) {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("it is JSON, but not an object ({...})".into()),
            Err(e) => return Err(format!("it is not valid JSON: {e}")),
        },
    };
    let driver = match config.get("log-driver") {
        None => "json-file".to_owned(),
        Some(Value::String(driver)) => driver.clone(),
        Some(other) => return Err(format!("\"log-driver\" is {other}, not a string")),
    };
    let options = match config.get("log-opts") {
        None => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => return Err(format!("\"log-opts\" is {other}, not an object")),
    };
    match driver.as_str() {
        "json-file" => {}
        "local" => {
            return Ok(LogPlan::Keep(
                "the `local` log driver, which rotates".into(),
            ));
        }
        other => {
            return Ok(LogPlan::Keep(format!(
                "the `{other}` log driver (not json files on the host's disk)"
            )));
        }
    }
    if let Some(size) = options.get("max-size") {
        let files = options
            .get("max-file")
            .map_or("1".to_owned(), |v| v.as_str().unwrap_or("?").to_owned());
        let size = size.as_str().unwrap_or("?");
        return Ok(LogPlan::Keep(format!(
            "json-file, max-size {size}, max-file {files}"
        )));
    }
    let mut options = options;
    options.insert("max-size".into(), LOG_MAX_SIZE.into());
    if !options.contains_key("max-file") {
        options.insert("max-file".into(), LOG_MAX_FILE.into());
    }
    config.insert("log-driver".into(), "json-file".into());
    config.insert("log-opts".into(), Value::Object(options));
    let text = serde_json::to_string_pretty(&Value::Object(config))
        .expect("a map of JSON values always serializes");
    Ok(LogPlan::Write(text + "\n"))
}

/// What `setup` did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    /// Each change made, in order; empty when the host was ready.
    pub changes: Vec<String>,
    /// What a user should know but nothing could change (no systemd).
    pub notes: Vec<String>,
    /// The host as it is now.
    pub facts: HostFacts,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            writeln!(f, "{} was already set up; nothing changed.", self.target)?;
        } else {
            writeln!(f, "setup changed {}:", self.target)?;
            for change in &self.changes {
                writeln!(f, "  - {change}")?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        write!(f, "{}", self.facts)
    }
}

/// How Docker gets installed on this system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Installer {
    Apt,
    Dnf,
}

impl Installer {
    fn for_os(os: &Os, target: &str) -> anyhow::Result<Installer> {
        let like = |name: &str| os.id == name || os.id_like.iter().any(|l| l == name);
        if like("debian") || like("ubuntu") {
            Ok(Installer::Apt)
        } else if os.id == "amzn" && os.version_id == "2023" {
            Ok(Installer::Dnf)
        } else {
            bail!(
                "setup installs Docker on Ubuntu, Debian and Amazon Linux 2023; {target} runs {} \
                 ({} {}). Install Docker there by hand (https://docs.docker.com/engine/install/), \
                 then run `deployer setup --host {target}` again for the rest. Nothing was changed.",
                if os.pretty_name.is_empty() {
                    "an unknown system"
                } else {
                    &os.pretty_name
                },
                os.id,
                os.version_id
            )
        }
    }

    /// The commands, as a person would type them after `sudo`.
    fn commands(self) -> Vec<Vec<&'static str>> {
        match self {
            // Only what Docker needs: docker.io's recommends would bring
            // systemd-sysv (replacing a host's init system), git, perl and
            // 80 more packages. AppArmor's parser is needed where the kernel
            // enforces AppArmor (Ubuntu, Debian), certificates for pulling
            // over TLS, xz for xz-compressed image archives.
            Installer::Apt => vec![
                vec!["apt-get", "update"],
                vec![
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "docker.io",
                    "apparmor",
                    "ca-certificates",
                    "xz-utils",
                ],
            ],
            Installer::Dnf => vec![vec!["dnf", "install", "-y", "docker"]],
        }
    }
}

/// One step that needs root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Write /etc/docker/daemon.json with this text (before the daemon
    /// starts, so a fresh install needs no restart).
    LogRotation(String),
    Install(Installer),
    /// `systemctl enable --now docker`.
    Enable,
    /// Start dockerd in the background (no systemd).
    StartDirectly,
    /// Restart the daemon for a changed daemon.json.
    Restart,
    /// `usermod -aG docker USER`.
    JoinGroup,
}

impl Step {
    /// For the announcement and for a person doing it by hand.
    fn commands(&self, facts: &HostFacts) -> Vec<String> {
        match self {
            Step::LogRotation(_) => vec![format!(
                "write /etc/docker/daemon.json (json-file logs, max-size {LOG_MAX_SIZE}, \
                 max-file {LOG_MAX_FILE})"
            )],
            Step::Install(installer) => installer
                .commands()
                .into_iter()
                .map(|c| c.join(" "))
                .collect(),
            Step::Enable => vec!["systemctl enable --now docker".into()],
            Step::StartDirectly => {
                vec!["dockerd (in the background: systemd is not PID 1 there)".into()]
            }
            Step::Restart if facts.systemd => vec!["systemctl restart docker".into()],
            Step::Restart => vec!["restart dockerd".into()],
            Step::JoinGroup => vec![format!("usermod -aG docker {}", facts.user)],
        }
    }

    /// Shell lines a person can paste on the host to do the same.
    fn by_hand(&self, facts: &HostFacts) -> Vec<String> {
        let start = format!("sudo sh -c 'setsid dockerd >>{DOCKERD_LOG} 2>&1 </dev/null &'");
        match self {
            // Unreadable as the SSH user: only root knows what to merge into.
            Step::LogRotation(text) if text.is_empty() => vec![format!(
                "sudo $EDITOR /etc/docker/daemon.json   # add \"log-driver\": \"json-file\", \
                 \"log-opts\": {{\"max-size\": \"{LOG_MAX_SIZE}\", \"max-file\": \"{LOG_MAX_FILE}\"}}"
            )],
            Step::LogRotation(text) => {
                let compact = serde_json::from_str::<Value>(text)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| text.trim().to_owned());
                vec![
                    "sudo mkdir -p /etc/docker".into(),
                    format!(
                        "echo '{}' | sudo tee /etc/docker/daemon.json",
                        compact.replace('\'', "'\\''")
                    ),
                ]
            }
            Step::StartDirectly => vec![start],
            Step::Restart if !facts.systemd => {
                vec!["sudo kill $(cat /var/run/docker.pid)".into(), start]
            }
            _ => self
                .commands(facts)
                .into_iter()
                .map(|c| format!("sudo {c}"))
                .collect(),
        }
    }
}

/// What needs root, from what the host has; in the order it runs.
fn plan(facts: &HostFacts, installer: Option<Installer>, log: &LogPlan) -> Vec<Step> {
    let mut steps = Vec::new();
    if let LogPlan::Write(text) = log {
        steps.push(Step::LogRotation(text.clone()));
    }
    if let Some(installer) = installer {
        steps.push(Step::Install(installer));
    }
    let running = matches!(facts.daemon, Daemon::Answers(_) | Daemon::Forbidden);
    if facts.systemd {
        // After an install the unit may or may not be enabled (Ubuntu
        // enables it, Amazon Linux does not): `enable --now` is harmless.
        if installer.is_some() || !facts.docker_enabled_at_boot || !running {
            steps.push(Step::Enable);
        }
    } else if installer.is_some() || !running {
        steps.push(Step::StartDirectly);
    }
    if running && installer.is_none() && matches!(log, LogPlan::Write(_)) {
        steps.push(Step::Restart);
    }
    if facts.uid != 0 && !facts.in_docker_group {
        steps.push(Step::JoinGroup);
    }
    steps
}

/// Runs `ARGS` as root: through `sudo -n` (never a password prompt: there
/// is no terminal), or directly for root.
fn privileged<'a>(facts: &HostFacts, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = if facts.uid == 0 {
        Vec::new()
    } else {
        vec!["sudo", "-n"]
    };
    all.extend_from_slice(args);
    all
}

/// The last `n` lines of a command's error output, for an error message.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn as_root(remote: &Remote, facts: &HostFacts, args: &[&str]) -> anyhow::Result<String> {
    let all = privileged(facts, args);
    let out = remote.output(all[0], &all[1..]).await?;
    if !out.status.success() {
        bail!(
            "`{}` on {} failed ({}):\n{}",
            args.join(" "),
            facts.target,
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (on the host, one round trip) until the daemon answers root.
async fn wait_for_daemon(remote: &Remote, facts: &HostFacts) -> anyhow::Result<String> {
    let script = "for i in $(seq 1 120); do v=$(docker version -f '{{.Server.Version}}' 2>/dev/null) \
                  && echo \"$v\" && exit 0; sleep 0.5; done; exit 1";
    match as_root(remote, facts, &["sh", "-c", script]).await {
        Ok(version) => Ok(version.trim().to_owned()),
        Err(_) => {
            let log = if facts.systemd {
                as_root(
                    remote,
                    facts,
                    &["journalctl", "-u", "docker", "-n", "20", "--no-pager"],
                )
                .await
            } else {
                as_root(remote, facts, &["tail", "-n", "20", DOCKERD_LOG]).await
            };
            bail!(
                "the Docker daemon on {} did not answer within 60 s. Its last log lines:\n{}",
                facts.target,
                log.unwrap_or_else(|e| format!("(could not read them: {e:#})"))
            )
        }
    }
}

/// Where dockerd started without systemd writes its output.
const DOCKERD_LOG: &str = "/var/log/dockerd.log";

/// Starts dockerd without systemd, unless one answers already (an init
/// script may have started it): in its own session, so the SSH session
/// ending does not take it along. True when it started one.
async fn start_dockerd(remote: &Remote, facts: &HostFacts) -> anyhow::Result<bool> {
    let script = format!(
        "docker version >/dev/null 2>&1 && exit 0; \
         setsid dockerd >>{DOCKERD_LOG} 2>&1 </dev/null & echo started"
    );
    let out = as_root(remote, facts, &["sh", "-c", &script]).await?;
    Ok(out.contains("started"))
}

/// Stops a dockerd started without systemd, by its pid file.
async fn stop_dockerd(remote: &Remote, facts: &HostFacts) -> anyhow::Result<()> {
    let script = "P=$(cat /var/run/docker.pid 2>/dev/null) || exit 0; kill \"$P\" 2>/dev/null || exit 0; \
                  for i in $(seq 1 150); do [ -d /proc/$P ] || exit 0; \
                  grep -q '^State:.*Z' /proc/$P/status 2>/dev/null && exit 0; sleep 0.2; done; exit 1";
    as_root(remote, facts, &["sh", "-c", script])
        .await
        .context("stopping dockerd to restart it")?;
    Ok(())
}

async fn write_daemon_json(remote: &Remote, facts: &HostFacts, text: &str) -> anyhow::Result<()> {
    // Atomic: a daemon (re)starting never reads half a file.
    let script = "umask 022 && mkdir -p /etc/docker && cat > /etc/docker/daemon.json.deployer-tmp \
                  && mv -f /etc/docker/daemon.json.deployer-tmp /etc/docker/daemon.json";
    let all = privileged(facts, &["sh", "-c", script]);
    remote
        .run_with_input(all[0], &all[1..], text.as_bytes())
        .await
        .with_context(|| format!("writing /etc/docker/daemon.json on {}", facts.target))?;
    Ok(())
}

async fn restart_daemon(remote: &Remote, facts: &HostFacts) -> anyhow::Result<()> {
    if facts.systemd {
        as_root(remote, facts, &["systemctl", "restart", "docker"]).await?;
    } else {
        stop_dockerd(remote, facts).await?;
        start_dockerd(remote, facts).await?;
    }
    Ok(())
}

/// Says what will run as root, then makes sure it can: `sudo -n` must work
/// without a password (there is no terminal to type one). If not, nothing
/// has changed and the error lists the commands to run by hand.
async fn announce_and_check_sudo(
    remote: &Remote,
    facts: &HostFacts,
    steps: &[Step],
    progress: &Progress,
) -> anyhow::Result<()> {
    let target = &facts.target;
    let commands: Vec<String> = steps.iter().flat_map(|s| s.commands(facts)).collect();
    let how = if facts.uid == 0 {
        "as root"
    } else {
        "with sudo"
    };
    progress.println(&format!(
        "setup will run {how} on {target}: {}",
        commands.join(", ")
    ));
    if facts.uid == 0 {
        return Ok(());
    }
    let out = remote.output("sudo", &["-n", "true"]).await?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = if said.contains("not found") {
        "sudo is not installed".to_owned()
    } else {
        said.trim().to_owned()
    };
    let by_hand: Vec<String> = steps
        .iter()
        .flat_map(|s| s.by_hand(facts))
        .map(|line| format!("  {line}"))
        .collect();
    bail!(
        "sudo on {target} did not run without a password ({said}): setup runs without a \
         terminal, so it needs passwordless sudo for {user}. Either allow that (a line \
         `{user} ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/), or run these on the host \
         yourself:\n{}\nthen run `deployer setup --host {target}` again. Nothing was changed.",
        by_hand.join("\n"),
        user = facts.user,
    )
}

/// Prepares the host for deploys and reports what changed. `remote` is
/// replaced by a new connection when the SSH user joined the `docker` group
/// (a group applies from the next login); `options` are what it was opened
/// with.
pub async fn setup(
    remote: &mut Remote,
    options: &ConnectOptions,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let facts = probe(remote, &options.docker_socket).await?;
    let target = facts.target.clone();
    if let Arch::Other(machine) = &facts.arch {
        bail!("{}", Missing::Architecture(machine.clone()));
    }
    let installer = if facts.docker_installed {
        None
    } else {
        Some(Installer::for_os(&facts.os, &target)?)
    };
    // An unreadable daemon.json is read as root, after the announcement.
    let log_unknown = facts.log_rotation == LogRotation::Unknown && facts.daemon_json.is_none();
    let current_json = facts.daemon_json.clone();
    let log = if log_unknown {
        // Planned as a write; decided once the file is read.
        LogPlan::Write(String::new())
    } else {
        log_plan(current_json.as_deref()).map_err(|why| {
            anyhow!(
                "/etc/docker/daemon.json on {target} cannot be read as Docker's settings: {why}. \
                 Docker refuses to start with it too: fix it by hand, then run setup again. \
                 Nothing was changed."
            )
        })?
    };
    let steps = plan(&facts, installer, &log);
    let mut changes = Vec::new();
    let mut notes = Vec::new();

    if !steps.is_empty() {
        announce_and_check_sudo(remote, &facts, &steps, progress).await?;
    }

    let mut restart = steps.contains(&Step::Restart);
    for step in &steps {
        match step {
            Step::LogRotation(text) => {
                let (text, previous) = if log_unknown {
                    let previous =
                        as_root(remote, &facts, &["cat", "/etc/docker/daemon.json"]).await?;
                    match log_plan(Some(&previous)).map_err(|why| {
                        anyhow!(
                            "/etc/docker/daemon.json on {target} cannot be read as Docker's \
                             settings: {why}. Fix it by hand, then run setup again."
                        )
                    })? {
                        LogPlan::Keep(_) => {
                            restart = false;
                            continue;
                        }
                        LogPlan::Write(text) => (text, Some(previous)),
                    }
                } else {
                    (text.clone(), current_json.clone())
                };
                write_daemon_json(remote, &facts, &text).await?;
                changes.push(format!(
                    "set Docker's log rotation in /etc/docker/daemon.json (json-file, max-size \
                     {LOG_MAX_SIZE}, max-file {LOG_MAX_FILE}){}",
                    if previous.as_deref().is_some_and(|p| !p.trim().is_empty()) {
                        ", keeping its other settings"
                    } else {
                        ""
                    }
                ));
            }
            Step::Install(installer) => {
                let task = progress.task("docker", "installing");
                let result = install(remote, &facts, *installer).await;
                match &result {
                    Ok(()) => task.done("installed"),
                    Err(_) => task.fail("install failed"),
                }
                result?;
                changes.push(format!(
                    "installed Docker ({})",
                    installer
                        .commands()
                        .last()
                        .expect("every installer has a command")
                        .join(" ")
                ));
            }
            Step::Enable => {
                let was_active = remote
                    .try_run("systemctl", &["is-active", "--quiet", "docker"])
                    .await?
                    .is_some();
                let was_enabled = remote
                    .try_run("systemctl", &["is-enabled", "--quiet", "docker"])
                    .await?
                    .is_some();
                as_root(remote, &facts, &["systemctl", "enable", "--now", "docker"]).await?;
                match (was_enabled, was_active) {
                    (true, true) => {}
                    (true, false) => changes.push("started Docker (systemctl)".into()),
                    (false, true) => changes.push("enabled Docker at boot (systemctl)".into()),
                    (false, false) => {
                        changes.push("enabled Docker at boot and started it (systemctl)".into())
                    }
                }
                if !was_active {
                    // It started with the new daemon.json.
                    restart = false;
                }
            }
            Step::StartDirectly => {
                if start_dockerd(remote, &facts).await? {
                    changes.push(format!(
                        "started dockerd directly (output in {DOCKERD_LOG}), as systemd is not \
                         PID 1"
                    ));
                }
            }
            Step::Restart => {
                if restart {
                    restart_daemon(remote, &facts).await?;
                    if let Err(error) = wait_for_daemon(remote, &facts).await {
                        // Put the old settings back rather than leave the
                        // host without a daemon.
                        match &current_json {
                            Some(previous) => write_daemon_json(remote, &facts, previous).await?,
                            None => {
                                as_root(remote, &facts, &["rm", "-f", "/etc/docker/daemon.json"])
                                    .await?;
                            }
                        }
                        restart_daemon(remote, &facts).await?;
                        return Err(error.context(
                            "Docker did not come back with log rotation set, so the previous \
                             /etc/docker/daemon.json was put back and Docker restarted with it",
                        ));
                    }
                    changes.push("restarted Docker so the log rotation applies".into());
                }
            }
            Step::JoinGroup => {
                as_root(
                    remote,
                    &facts,
                    &["usermod", "-aG", "docker", facts.user.as_str()],
                )
                .await?;
                changes.push(format!(
                    "added {} to the `docker` group (and logged in again so it applies)",
                    facts.user
                ));
            }
        }
    }
    if !steps.is_empty() {
        wait_for_daemon(remote, &facts).await?;
    }
    if !facts.systemd {
        notes.push(format!(
            "systemd is not PID 1 on {target} (PID 1 is {}), so Docker will not start by itself \
             after a reboot: run `deployer setup --host {target}` again then",
            facts.pid1
        ));
    }
    if steps.contains(&Step::JoinGroup) || !facts.session_in_docker_group && facts.in_docker_group {
        // A group applies from the next login.
        let fresh = Remote::connect(&remote.target, options).await?;
        std::mem::replace(remote, fresh).close().await;
    }
    if !facts.host_dir {
        let dir = format!("{}/{HOST_DIR}", facts.home.trim_end_matches('/'));
        remote.run("mkdir", &["-p", "--", &dir]).await?;
        changes.push(format!("created ~/{HOST_DIR}"));
    }
    let now = probe(remote, &options.docker_socket).await?;
    check_ready(&now).map_err(|not_ready| anyhow!("setup finished, but {not_ready}"))?;
    Ok(Report {
        target,
        changes,
        notes,
        facts: now,
    })
}

async fn install(remote: &Remote, facts: &HostFacts, installer: Installer) -> anyhow::Result<()> {
    match installer {
        Installer::Apt => {
            // No prompts (there is no terminal), and wait for a boot-time
            // unattended upgrade holding the dpkg lock instead of failing.
            let apt = [
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "NEEDRESTART_MODE=a",
                "apt-get",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=300",
            ];
            for command in installer.commands() {
                let all = [&apt[..], &command[1..]].concat();
                as_root(remote, facts, &all).await?;
            }
        }
        Installer::Dnf => {
            as_root(remote, facts, &["dnf", "install", "-y", "-q", "docker"]).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(out: &str) -> HostFacts {
        parse_probe("deploy@h", "/var/run/docker.sock", out).unwrap()
    }

    const BARE: &str = "@@facts\narch=x86_64\nuser=deploy\nuid=1000\nhome=/home/deploy\n\
        session_groups=deploy sudo\ndb_groups=deploy sudo\npid1=sshd\n\
        @@os-release\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n\
        @@daemon.json\n";

    #[test]
    fn a_bare_host_lacks_docker_and_nothing_else_is_named() {
        let facts = facts(BARE);
        assert_eq!(facts.os.id, "debian");
        assert_eq!(facts.os.version_id, "12");
        assert_eq!(facts.arch, Arch::Amd64);
        assert!(!facts.systemd);
        assert_eq!(facts.log_rotation, LogRotation::Unbounded);
        let err = check_ready(&facts).unwrap_err();
        assert_eq!(err.missing, vec![Missing::Docker]);
        let text = err.to_string();
        assert!(text.contains("Docker is not installed"), "{text}");
        assert!(text.contains("deployer setup --host deploy@h"), "{text}");
    }

    #[test]
    fn a_stopped_daemon_and_a_missing_group_are_both_named() {
        let out = BARE.replace(
            "pid1=sshd\n",
            "pid1=sshd\ndocker=yes\ndocker_group=yes\ndaemon=failed Cannot connect to the Docker \
             daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        );
        let err = check_ready(&facts(&out)).unwrap_err();
        assert_eq!(
            err.missing,
            vec![
                Missing::DaemonStopped {
                    socket: "/var/run/docker.sock".into()
                },
                Missing::DockerGroup {
                    user: "deploy".into(),
                    socket: "/var/run/docker.sock".into()
                }
            ]
        );
    }

    #[test]
    fn a_forbidden_socket_names_the_group_and_a_usable_one_is_ready() {
        let forbidden = BARE.replace(
            "pid1=sshd\n",
            "pid1=sshd\ndocker=yes\nsocket=yes\ndaemon=failed permission denied while trying to \
             connect to the Docker daemon socket\n",
        );
        assert_eq!(
            check_ready(&facts(&forbidden)).unwrap_err().missing,
            vec![Missing::DockerGroup {
                user: "deploy".into(),
                socket: "/var/run/docker.sock".into()
            }]
        );
        // A socket the user may use through another group (the test "EC2"
        // host's) is enough: the `docker` group is not required as such.
        let usable = BARE.replace(
            "pid1=sshd\n",
            "pid1=sshd\ndocker=yes\ndaemon=answers 20.10.24\n",
        );
        let facts = facts(&usable);
        assert_eq!(facts.daemon, Daemon::Answers("20.10.24".into()));
        assert_eq!(check_ready(&facts), Ok(()));
    }

    #[test]
    fn an_unsupported_architecture_is_refused_without_suggesting_setup() {
        let out = BARE.replace("arch=x86_64", "arch=armv7l").replace(
            "pid1=sshd\n",
            "pid1=sshd\ndocker=yes\ndaemon=answers 20.10.24\n",
        );
        let err = check_ready(&facts(&out)).unwrap_err();
        assert_eq!(err.missing, vec![Missing::Architecture("armv7l".into())]);
        assert!(!err.to_string().contains("deployer setup"), "{err}");
        assert_eq!(Arch::from_uname("aarch64\n"), Arch::Arm64);
    }

    #[test]
    fn log_rotation_is_merged_keeping_other_settings_and_their_order() {
        let current =
            r#"{"debug": true, "log-opts": {"labels": "app"}, "data-root": "/data/docker"}"#;
        let LogPlan::Write(text) = log_plan(Some(current)).unwrap() else {
            panic!("expected a write")
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["debug"], true);
        assert_eq!(value["data-root"], "/data/docker");
        assert_eq!(value["log-driver"], "json-file");
        assert_eq!(value["log-opts"]["labels"], "app");
        assert_eq!(value["log-opts"]["max-size"], "10m");
        assert_eq!(value["log-opts"]["max-file"], "3");
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["debug", "log-opts", "data-root", "log-driver"]);
        // Once written, it is left alone.
        assert!(matches!(log_plan(Some(&text)), Ok(LogPlan::Keep(_))));
    }

    #[test]
    fn log_rotation_keeps_an_administrators_choices() {
        for (current, kept) in [
            (r#"{"log-opts": {"max-size": "50m"}}"#, "max-size 50m"),
            (r#"{"log-driver": "journald"}"#, "journald"),
            (r#"{"log-driver": "local"}"#, "local"),
        ] {
            match log_plan(Some(current)).unwrap() {
                LogPlan::Keep(how) => assert!(how.contains(kept), "{how}"),
                other => panic!("{current}: {other:?}"),
            }
        }
        assert!(matches!(log_plan(None), Ok(LogPlan::Write(_))));
        assert!(matches!(log_plan(Some("  \n")), Ok(LogPlan::Write(_))));
        let err = log_plan(Some("{ \"debug\": tru")).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        assert!(log_plan(Some("[1]")).unwrap_err().contains("not an object"));
    }

    #[test]
    fn the_plan_for_a_bare_host_without_systemd_starts_dockerd_itself() {
        let facts = facts(BARE);
        let log = log_plan(None).unwrap();
        let steps = plan(&facts, Some(Installer::Apt), &log);
        assert_eq!(
            steps,
            vec![
                Step::LogRotation(match &log {
                    LogPlan::Write(t) => t.clone(),
                    LogPlan::Keep(_) => unreachable!(),
                }),
                Step::Install(Installer::Apt),
                Step::StartDirectly,
                Step::JoinGroup
            ]
        );
    }

    #[test]
    fn the_installer_follows_the_system() {
        let os = |id: &str, version: &str, like: &[&str]| Os {
            id: id.into(),
            version_id: version.into(),
            id_like: like.iter().map(|s| s.to_string()).collect(),
            pretty_name: String::new(),
        };
        assert_eq!(
            Installer::for_os(&os("ubuntu", "24.04", &["debian"]), "h").unwrap(),
            Installer::Apt
        );
        assert_eq!(
            Installer::for_os(&os("amzn", "2023", &["fedora"]), "h").unwrap(),
            Installer::Dnf
        );
        let err = Installer::for_os(&os("amzn", "2", &["centos", "rhel", "fedora"]), "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("by hand"), "{err}");
    }
}
