//! The stack: what should run on a Docker daemon, resolved from
//! `docker-compose.yml` (names interpolated, paths absolute, services in
//! dependency order). The engine applies it; status reads it back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Labels every object the deployer creates carries, as docker compose sets
/// them, so `docker compose ps/logs` see the stack and `down` finds it by
/// label, never by name pattern.
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
    /// Marks the deployer's own short-lived helper containers (volume
    /// seeding), so it never mistakes someone's `docker compose run` for one.
    pub const HELPER: &str = "dev.student-ages.helper";
    /// Hash of an image's build inputs, so an unchanged image is not rebuilt.
    pub const INPUTS: &str = "dev.student-ages.inputs";
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// The compose project name: prefix of every object's name.
    pub project: String,
    /// Services, each after the services it depends on.
    pub services: Vec<Service>,
    /// Network keys as written in the compose file (`default`, ...).
    pub networks: Vec<String>,
    /// Named volume keys as written in the compose file.
    pub volumes: Vec<String>,
    /// The edge in front of the stack, if pipeline.yaml names one.
    pub edge: Option<EdgeSpec>,
    /// Per service, compose's `deploy:` (read only when the deploy target
    /// is a swarm). Kept out of [`Service`], whose every field is part of a
    /// one-host container's config hash.
    pub deploy: BTreeMap<String, Deploy>,
    /// Files from this machine to put into volumes on every apply
    /// (pipeline.yaml `files:`, resolved with the stack; Workspace sets it).
    pub files: Vec<VolumeFile>,
}

impl VolumeFile {
    /// Its content, or an error naming the file and where it was set.
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(&self.source).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {} (from {}): {e}; set the variable to a readable file, or unset it",
                self.source.display(),
                self.origin
            )
        })
    }
}

/// A file from this machine put into a named volume each time the stack is
/// applied: a certificate and key the edge reads, say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    pub volume: String,
    /// Where it is read from, here.
    pub source: PathBuf,
    /// Where it goes, relative to the volume's root.
    pub path: String,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    /// Where it was configured, for errors: `pipeline.yaml files[0].file
    /// (${TLS_CERT_FILE:-})`.
    pub origin: String,
}

/// The edge proxy in front of the stack: which compose service it is, and
/// where it reaches the services behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    pub service: String,
    /// Per service behind the edge: the port it listens on in its
    /// container and the path the edge health-checks.
    pub targets: Vec<EdgeTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTarget {
    pub service: String,
    pub port: u16,
    pub health: String,
}

impl EdgeSpec {
    pub fn target(&self, service: &str) -> Option<&EdgeTarget> {
        self.targets.iter().find(|t| t.service == service)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `KEY=value`, sorted by key.
    pub env: Vec<String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<Mount>,
    /// The network this service joins.
    pub network: Network,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Restart,
    pub depends_on: Vec<String>,
    pub user: Option<String>,
    pub logging: Logging,
    /// Linux capabilities added to and dropped from Docker's default set.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

/// How a swarm runs a service (compose's `deploy:` keys); each unset key
/// is left to the swarm deploy's defaults for that service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deploy {
    pub replicas: Option<u64>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub placement: Placement,
    pub resources: Resources,
}

/// `update_config:` or `rollback_config:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateConfig {
    pub parallelism: Option<u64>,
    pub delay: Option<Duration>,
    /// `continue`, `pause` or (updates only) `rollback`.
    pub failure_action: Option<String>,
    pub monitor: Option<Duration>,
    pub max_failure_ratio: Option<f64>,
    /// `start-first` or `stop-first`.
    pub order: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// `node.role==worker`, `node.labels.zone==a`, ...
    pub constraints: Vec<String>,
    /// Spread descriptors (`node.labels.zone`).
    pub spread: Vec<String>,
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub limits: Option<ResourceSet>,
    pub reservations: Option<ResourceSet>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSet {
    /// CPUs, `0.5` for half of one.
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// Limits only.
    pub pids: Option<u64>,
}

/// Where a service's containers are on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A network of the stack, by its key in the compose file: the service
    /// is reached by its name there.
    Stack(String),
    /// The host's own network namespace (`network_mode: host`): the edge,
    /// whose listening sockets must outlive its container.
    Host,
}

/// Where a container's output goes (compose's `logging:`). Bounded by
/// default: Docker's own default json-file log grows until the disk is full.
#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    pub driver: String,
    pub options: Vec<(String, String)>,
}

impl Default for Logging {
    /// json-file, at most three files of 10 MB (Kamal's default size).
    fn default() -> Logging {
        Logging {
            driver: "json-file".into(),
            options: vec![
                ("max-file".into(), "3".into()),
                ("max-size".into(), "10m".into()),
            ],
        }
    }
}

/// When Docker restarts a container that stopped, as compose's `restart:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl Restart {
    pub fn parse(text: &str) -> Option<Restart> {
        match text {
            "no" => Some(Restart::No),
            "always" => Some(Restart::Always),
            "unless-stopped" => Some(Restart::UnlessStopped),
            "on-failure" => Some(Restart::OnFailure),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// Host address to bind; empty for all addresses.
    pub host_ip: String,
    /// Host port; empty for one the daemon picks.
    pub host_port: String,
    pub container_port: u16,
    /// The variables the port's spec read (`API_PORT` in
    /// `${API_PORT:-5000}:5000`): what a user sets to move it.
    pub variables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mount {
    /// A named volume of the stack (the compose key, not the Docker name).
    Volume {
        key: String,
        target: String,
        read_only: bool,
    },
    /// A host directory or file.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

impl Healthcheck {
    /// How long the daemon may take to call a container unhealthy: the
    /// longest a health gate needs to wait.
    pub fn patience(&self) -> Duration {
        self.start_period + (self.interval + self.timeout) * (self.retries + 1)
    }
}

impl Stack {
    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{service}-1", self.project)
    }

    pub fn network_name(&self, key: &str) -> String {
        format!("{}_{key}", self.project)
    }

    pub fn volume_name(&self, key: &str) -> String {
        format!("{}_{key}", self.project)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Where a client on the machine that runs the stack reaches a service: a
/// host port it publishes, or the edge's plain-HTTP listener that sends
/// every path to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The address bound: empty or `0.0.0.0` for every address.
    pub host_ip: String,
    pub port: u16,
}

impl Entry {
    /// `http://HOST:PORT` for a client on the same machine.
    pub fn url(&self) -> String {
        let host = match self.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => "localhost",
            ip => ip,
        };
        format!("http://{host}:{}", self.port)
    }
}

impl Stack {
    /// The edge's listeners, from its `EDGE_LISTEN` (none without an edge).
    pub fn edge_listeners(
        &self,
    ) -> Result<Vec<student_ages_edge_listen::ListenerSpec>, student_ages_edge_listen::ListenError>
    {
        let Some(edge) = self.edge.as_ref().and_then(|e| self.service(&e.service)) else {
            return Ok(Vec::new());
        };
        match edge
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("EDGE_LISTEN="))
        {
            Some(text) => student_ages_edge_listen::parse_listeners(text),
            None => Ok(Vec::new()),
        }
    }

    /// Where `service` is reached on this machine, if anywhere.
    pub fn entry(&self, service: &str) -> Option<Entry> {
        if let Some(port) = self
            .service(service)?
            .ports
            .iter()
            .find(|p| !p.host_port.is_empty())
        {
            return Some(Entry {
                host_ip: port.host_ip.clone(),
                port: port.host_port.parse().ok()?,
            });
        }
        use student_ages_edge_listen::ListenAddress;
        self.edge_listeners()
            .ok()?
            .into_iter()
            .find_map(|listener| match listener.address {
                ListenAddress::Http(address)
                    if !listener.redirect_https
                        && listener.routes.iter().all(|r| r.service == service) =>
                {
                    Some(Entry {
                        host_ip: address.ip().to_string(),
                        port: address.port(),
                    })
                }
                _ => None,
            })
    }
}
