//! `docker-compose.yml`: the typed model of the compose features the
//! deployer supports, and its resolution into a [`Stack`].
//!
//! Unknown keys are refused, naming the key, rather than ignored: a compose
//! feature the deployer silently dropped would run a different stack from
//! `docker compose up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::interpolate::{interpolate, interpolate_recording};
use crate::stack::{
    Deploy, Healthcheck, Logging, Mount, Network, Placement, Port, ResourceSet, Resources, Restart,
    Service, Stack, UpdateConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeFile<S = ServiceDef> {
    name: Option<String>,
    services: BTreeMap<String, S>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<EmptyDef>>,
    #[serde(default)]
    networks: BTreeMap<String, Option<EmptyDef>>,
}

/// Top-level volumes and networks: only the default driver is supported.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyDef {}

/// A service's keys; `deploy:` only in [`ServiceDef`]: the one-host model
/// ([`OneHostServiceDef`]) refuses it as an unknown field, as it always has.
macro_rules! service_def {
    ($(#[$doc:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct $name {
            image: String,
            command: Option<Vec<String>>,
            #[serde(default)]
            environment: Environment,
            #[serde(default)]
            ports: Vec<Scalar>,
            #[serde(default)]
            volumes: Vec<String>,
            #[serde(default)]
            networks: Vec<String>,
            healthcheck: Option<HealthcheckDef>,
            restart: Option<String>,
            #[serde(default)]
            depends_on: DependsOn,
            user: Option<String>,
            logging: Option<LoggingDef>,
            network_mode: Option<String>,
            #[serde(default)]
            cap_add: Vec<String>,
            #[serde(default)]
            cap_drop: Vec<String>,
            $($extra)*
        }
    };
}

service_def!(ServiceDef {
    deploy: Option<DeployDef>,
});
service_def!(
    /// Parsed only to refuse `deploy:` with serde's own words and position.
    OneHostServiceDef {}
);

/// Compose's `deploy:`, for a swarm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployDef {
    replicas: Option<Scalar>,
    update_config: Option<UpdateConfigDef>,
    rollback_config: Option<UpdateConfigDef>,
    placement: Option<PlacementDef>,
    resources: Option<ResourcesDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConfigDef {
    parallelism: Option<Scalar>,
    delay: Option<String>,
    failure_action: Option<String>,
    monitor: Option<String>,
    max_failure_ratio: Option<Scalar>,
    order: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementDef {
    #[serde(default)]
    constraints: Vec<String>,
    #[serde(default)]
    preferences: Vec<PreferenceDef>,
    max_replicas_per_node: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferenceDef {
    spread: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesDef {
    limits: Option<ResourceSetDef>,
    reservations: Option<ResourceSetDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSetDef {
    cpus: Option<Scalar>,
    memory: Option<Scalar>,
    pids: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingDef {
    driver: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a map of NAME: value, or a list of NAME=value")]
enum Environment {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

impl Default for Environment {
    fn default() -> Self {
        Environment::List(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of service names, or a map of service name: {condition: ...}"
)]
enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, DependsOnDef>),
}

impl Default for DependsOn {
    fn default() -> Self {
        DependsOn::List(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DependsOnDef {
    condition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthcheckDef {
    test: Vec<String>,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    retries: Option<u32>,
}

/// A YAML scalar where compose accepts a string, number or boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
enum Scalar {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::String(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// How the project name is chosen, most specific first.
pub struct ProjectName<'a> {
    /// `--project-name`.
    pub flag: Option<&'a str>,
}

/// Whether services' `deploy:` keys are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployKeys {
    /// One host: refused, as any key the deployer does not support.
    Refuse,
    /// pipeline.yaml has a swarm: read into [`Stack::deploy`].
    Read,
}

/// Reads `path` and resolves it into a [`Stack`], interpolating variables
/// from `env`.
pub fn load(
    path: &Path,
    project: ProjectName<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    deploy_keys: DeployKeys,
) -> Result<Stack, ConfigError> {
    if deploy_keys == DeployKeys::Refuse {
        // The one-host model, without `deploy:`: its errors are the ones
        // one host has always given (`deploy` an unknown field).
        super::load_yaml::<ComposeFile<OneHostServiceDef>>(path)?;
    }
    let file: ComposeFile = super::load_yaml(path)?;
    resolve(path, file, project, env)
}

fn resolve(
    path: &Path,
    file: ComposeFile,
    project: ProjectName<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Stack, ConfigError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let text = |key: &str, value: &str| {
        interpolate(value, env).map_err(|e| ConfigError::invalid(path, key, e.to_string()))
    };
    let invalid = |key: String, message: String| ConfigError::invalid(path, key, message);

    let project = match project.flag {
        Some(name) => name.to_owned(),
        None => match env("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => match &file.name {
                Some(name) => text("name", name)?,
                // As compose does: the directory name, lower-cased, with
                // the characters a project name cannot hold dropped.
                None => dir
                    .file_name()
                    .map(|n| {
                        n.to_string_lossy()
                            .to_lowercase()
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                            .collect::<String>()
                            .trim_start_matches(['-', '_'])
                            .to_owned()
                    })
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "stack".into()),
            },
        },
    };
    let valid_project = !project.is_empty()
        && project.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_project {
        return Err(invalid(
            "name".into(),
            format!(
                "project name {project:?} must be lower-case letters, digits, `-` and `_`, \
                 starting with a letter or digit"
            ),
        ));
    }
    if file.services.is_empty() {
        return Err(invalid(
            "services".into(),
            "the stack has no services".into(),
        ));
    }

    let mut networks: Vec<String> = file.networks.keys().cloned().collect();
    let mut services = Vec::new();
    for (name, def) in &file.services {
        let key = |field: &str| format!("services.{name}.{field}");
        let image = text(&key("image"), &def.image)?;
        if image.is_empty() {
            return Err(invalid(key("image"), "is empty".into()));
        }
        let command = match &def.command {
            Some(args) => Some(
                args.iter()
                    .map(|a| text(&key("command"), a))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let mut env_vars = BTreeMap::new();
        match &def.environment {
            Environment::Map(map) => {
                for (var, value) in map {
                    let value = match value {
                        Some(v) => text(&key(&format!("environment.{var}")), &v.text())?,
                        // `KEY:` with no value passes the deployer's own
                        // variable through, and leaves it out when unset.
                        None => match env(var) {
                            Some(value) => value,
                            None => continue,
                        },
                    };
                    env_vars.insert(var.clone(), value);
                }
            }
            Environment::List(list) => {
                for item in list {
                    let (var, value) = match item.split_once('=') {
                        Some((var, value)) => (var, text(&key("environment"), value)?),
                        None => match env(item) {
                            Some(value) => (item.as_str(), value),
                            None => continue,
                        },
                    };
                    env_vars.insert(var.to_owned(), value);
                }
            }
        }
        let environment = env_vars
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();

        let ports = def
            .ports
            .iter()
            .map(|p| {
                // The variables a port reads are what a user changes when the
                // port is taken, so they are kept to name in that error.
                let (spec, variables) = interpolate_recording(&p.text(), env)
                    .map_err(|e| invalid(key("ports"), e.to_string()))?;
                let mut port = parse_port(&spec).map_err(|m| invalid(key("ports"), m))?;
                port.variables = variables;
                Ok(port)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut mounts = Vec::new();
        for volume in &def.volumes {
            let spec = text(&key("volumes"), volume)?;
            let home = env("HOME").unwrap_or_default();
            let mount = parse_mount(&spec, &dir, Path::new(&home))
                .map_err(|m| invalid(key("volumes"), m))?;
            if let Mount::Volume {
                key: volume_key, ..
            } = &mount
                && !file.volumes.contains_key(volume_key)
            {
                return Err(invalid(
                    key("volumes"),
                    format!(
                        "volume {volume_key:?} is not declared under the top-level `volumes:` key"
                    ),
                ));
            }
            mounts.push(mount);
        }

        let network = match (def.network_mode.as_deref(), def.networks.as_slice()) {
            (Some("host"), []) => {
                if !ports.is_empty() {
                    return Err(invalid(
                        key("ports"),
                        "a service with network_mode: host listens on the host's ports itself; \
                         `ports:` would be ignored: remove it"
                            .into(),
                    ));
                }
                Network::Host
            }
            (Some("host"), _) => {
                return Err(invalid(
                    key("network_mode"),
                    "network_mode: host and networks: cannot be combined".into(),
                ));
            }
            (Some(other), _) => {
                return Err(invalid(
                    key("network_mode"),
                    format!(
                        "{other:?} is not supported: use `host`, or leave it out for the stack's \
                         network"
                    ),
                ));
            }
            (None, []) => Network::Stack("default".to_owned()),
            (None, [one]) if file.networks.contains_key(one) => Network::Stack(one.clone()),
            (None, [one]) => {
                return Err(invalid(
                    key("networks"),
                    format!("network {one:?} is not declared under the top-level `networks:` key"),
                ));
            }
            (None, _) => {
                return Err(invalid(
                    key("networks"),
                    "the deployer supports one network per service".into(),
                ));
            }
        };
        if let Network::Stack(name) = &network
            && name == "default"
            && !networks.contains(name)
        {
            networks.push(name.clone());
        }

        let healthcheck = match &def.healthcheck {
            None => None,
            Some(h) => Some(resolve_healthcheck(
                h,
                &key("healthcheck"),
                &text,
                &invalid,
            )?),
        };

        let restart = match &def.restart {
            None => Restart::No,
            Some(r) => {
                let r = text(&key("restart"), r)?;
                Restart::parse(&r).ok_or_else(|| {
                    invalid(
                        key("restart"),
                        format!(
                            "{r:?} is not a restart policy: use no, always, unless-stopped \
                             or on-failure"
                        ),
                    )
                })?
            }
        };

        let depends_on = match &def.depends_on {
            DependsOn::List(list) => list.clone(),
            DependsOn::Map(map) => {
                for (dep, cond) in map {
                    if !["service_started", "service_healthy"].contains(&cond.condition.as_str()) {
                        return Err(invalid(
                            key(&format!("depends_on.{dep}.condition")),
                            format!(
                                "{:?} is not supported: use service_started or service_healthy \
                                 (the deployer waits for each service's health before the next)",
                                cond.condition
                            ),
                        ));
                    }
                }
                map.keys().cloned().collect()
            }
        };
        for dep in &depends_on {
            if !file.services.contains_key(dep) {
                return Err(invalid(
                    key("depends_on"),
                    format!("{dep:?} is not a service of this file"),
                ));
            }
        }
        let logging = match &def.logging {
            None => Logging::default(),
            Some(def) => {
                let driver = match &def.driver {
                    Some(d) => text(&key("logging.driver"), d)?,
                    None => "json-file".to_owned(),
                };
                let options = def
                    .options
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            text(&key(&format!("logging.options.{k}")), &v.text())?,
                        ))
                    })
                    .collect::<Result<_, ConfigError>>()?;
                Logging { driver, options }
            }
        };
        let user = match &def.user {
            Some(u) => Some(text(&key("user"), u)?),
            None => None,
        };

        services.push(Service {
            name: name.clone(),
            image,
            command,
            env: environment,
            ports,
            mounts,
            network,
            healthcheck,
            restart,
            depends_on,
            user,
            logging,
            cap_add: def.cap_add.clone(),
            cap_drop: def.cap_drop.clone(),
        });
    }
    let services = dependency_order(services).map_err(|m| invalid("depends_on".into(), m))?;
    let mut deploy = BTreeMap::new();
    for (name, def) in &file.services {
        if let Some(def) = &def.deploy {
            let key = format!("services.{name}.deploy");
            deploy.insert(name.clone(), resolve_deploy(def, &key, &text, &invalid)?);
        }
    }
    Ok(Stack {
        project,
        services,
        networks,
        volumes: file.volumes.keys().cloned().collect(),
        // pipeline.yaml says which service is the edge (Workspace sets it).
        edge: None,
        deploy,
        // pipeline.yaml's `files:` (Workspace sets them).
        files: Vec::new(),
    })
}

type Text<'a> = &'a dyn Fn(&str, &str) -> Result<String, ConfigError>;
type Invalid<'a> = &'a dyn Fn(String, String) -> ConfigError;

fn resolve_deploy(
    def: &DeployDef,
    key: &str,
    text: Text<'_>,
    invalid: Invalid<'_>,
) -> Result<Deploy, ConfigError> {
    let number = |field: String, value: &Option<Scalar>| -> Result<Option<u64>, ConfigError> {
        match value {
            None => Ok(None),
            Some(v) => {
                let v = text(&field, &v.text())?;
                v.trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| invalid(field, format!("{v:?} is not a whole number")))
            }
        }
    };
    let duration =
        |field: String, value: &Option<String>| -> Result<Option<Duration>, ConfigError> {
            match value {
                None => Ok(None),
                Some(v) => {
                    let v = text(&field, v)?;
                    humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
                        invalid(
                            field,
                            format!("{v:?} is not a duration like 5s or 1m30s: {e}"),
                        )
                    })
                }
            }
        };
    let fraction = |field: String, value: &Option<Scalar>| -> Result<Option<f64>, ConfigError> {
        match value {
            None => Ok(None),
            Some(v) => {
                let v = text(&field, &v.text())?;
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(Some)
                    .ok_or_else(|| invalid(field, format!("{v:?} is not a number of 0 or more")))
            }
        }
    };
    let update = |field: &str, def: &Option<UpdateConfigDef>, actions: &[&str]| {
        let Some(def) = def else {
            return Ok(None);
        };
        let key = |f: &str| format!("{key}.{field}.{f}");
        let one_of = |f: &str, value: &Option<String>, allowed: &[&str]| match value {
            None => Ok(None),
            Some(v) => {
                let v = text(&key(f), v)?;
                if allowed.contains(&v.as_str()) {
                    Ok(Some(v))
                } else {
                    Err(invalid(
                        key(f),
                        format!("{v:?} is not one of {}", allowed.join(", ")),
                    ))
                }
            }
        };
        Ok::<_, ConfigError>(Some(UpdateConfig {
            parallelism: number(key("parallelism"), &def.parallelism)?,
            delay: duration(key("delay"), &def.delay)?,
            failure_action: one_of("failure_action", &def.failure_action, actions)?,
            monitor: duration(key("monitor"), &def.monitor)?,
            max_failure_ratio: fraction(key("max_failure_ratio"), &def.max_failure_ratio)?,
            order: one_of("order", &def.order, &["start-first", "stop-first"])?,
        }))
    };
    let mut placement = Placement::default();
    if let Some(def) = &def.placement {
        for c in &def.constraints {
            let c = text(&format!("{key}.placement.constraints"), c)?;
            if !(c.contains("==") || c.contains("!=")) {
                return Err(invalid(
                    format!("{key}.placement.constraints"),
                    format!(
                        "{c:?} is not ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE (node.role==worker)"
                    ),
                ));
            }
            placement.constraints.push(c);
        }
        for p in &def.preferences {
            placement
                .spread
                .push(text(&format!("{key}.placement.preferences"), &p.spread)?);
        }
        placement.max_replicas_per_node = number(
            format!("{key}.placement.max_replicas_per_node"),
            &def.max_replicas_per_node,
        )?;
    }
    let set = |field: &str, def: &Option<ResourceSetDef>| {
        let Some(def) = def else {
            return Ok(None);
        };
        let key = |f: &str| format!("{key}.resources.{field}.{f}");
        let memory = match &def.memory {
            None => None,
            Some(v) => {
                let v = text(&key("memory"), &v.text())?;
                Some(parse_bytes(&v).ok_or_else(|| {
                    invalid(
                        key("memory"),
                        format!("{v:?} is not a size like 256M, 1G or 512k"),
                    )
                })?)
            }
        };
        Ok::<_, ConfigError>(Some(ResourceSet {
            cpus: fraction(key("cpus"), &def.cpus)?,
            memory_bytes: memory,
            pids: number(key("pids"), &def.pids)?,
        }))
    };
    let resources = match &def.resources {
        None => Resources::default(),
        Some(def) => Resources {
            limits: set("limits", &def.limits)?,
            reservations: set("reservations", &def.reservations)?,
        },
    };
    Ok(Deploy {
        replicas: number(format!("{key}.replicas"), &def.replicas)?,
        update_config: update(
            "update_config",
            &def.update_config,
            &["continue", "pause", "rollback"],
        )?,
        rollback_config: update(
            "rollback_config",
            &def.rollback_config,
            &["continue", "pause"],
        )?,
        placement,
        resources,
    })
}

/// Compose's byte values: `1024`, `512k`, `256M`, `1g` (also `kb`, `mb`, `gb`).
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn resolve_healthcheck(
    def: &HealthcheckDef,
    key: &str,
    text: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<Healthcheck, ConfigError> {
    let test = def
        .test
        .iter()
        .map(|t| text(&format!("{key}.test"), t))
        .collect::<Result<Vec<_>, _>>()?;
    if !matches!(test.first().map(String::as_str), Some("CMD" | "NONE")) {
        return Err(invalid(
            format!("{key}.test"),
            "must be a list starting with \"CMD\" (the images have no shell for CMD-SHELL)".into(),
        ));
    }
    let duration = |field: &str, value: &Option<String>, default: u64| {
        let field_key = format!("{key}.{field}");
        match value {
            None => Ok(Duration::from_secs(default)),
            Some(v) => {
                let v = text(&field_key, v)?;
                humantime::parse_duration(&v).map_err(|e| {
                    invalid(
                        field_key,
                        format!("{v:?} is not a duration like 2s or 1m30s: {e}"),
                    )
                })
            }
        }
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval", &def.interval, 30)?,
        timeout: duration("timeout", &def.timeout, 30)?,
        start_period: duration("start_period", &def.start_period, 0)?,
        retries: def.retries.unwrap_or(3),
    })
}

/// `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp]`.
fn parse_port(spec: &str) -> Result<Port, String> {
    let bare = spec.strip_suffix("/tcp").unwrap_or(spec);
    if bare.contains('/') {
        return Err(format!("{spec:?}: only tcp ports are supported"));
    }
    let parts: Vec<&str> = bare.split(':').collect();
    let (host_ip, host_port, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => {
            return Err(format!(
                "{spec:?} is not [HOST_IP:][HOST_PORT:]CONTAINER_PORT"
            ));
        }
    };
    let container_port = container
        .parse::<u16>()
        .map_err(|_| format!("{spec:?}: container port {container:?} is not a port number"))?;
    if !host_port.is_empty() && host_port.parse::<u16>().is_err() {
        return Err(format!(
            "{spec:?}: host port {host_port:?} is not a port number (ranges are not supported)"
        ));
    }
    Ok(Port {
        host_ip: host_ip.to_owned(),
        host_port: host_port.to_owned(),
        container_port,
        variables: Vec::new(),
    })
}

/// `VOLUME:/path[:ro]` or `./host/path:/path[:ro]` (relative to the file).
fn parse_mount(spec: &str, dir: &Path, home: &Path) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        _ => return Err(format!("{spec:?} is not SOURCE:TARGET[:ro]")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "{spec:?}: the target {target:?} must be an absolute path"
        ));
    }
    let target = target.to_owned();
    if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        let source = match source.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => dir.join(source),
        };
        Ok(Mount::Bind {
            source: normalize(&source),
            target,
            read_only,
        })
    } else if source.is_empty() {
        Err(format!(
            "{spec:?}: anonymous volumes are not supported; name the volume"
        ))
    } else {
        Ok(Mount::Volume {
            key: source.to_owned(),
            target,
            read_only,
        })
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Orders services so each comes after those it depends on; refuses cycles.
fn dependency_order(mut pending: Vec<Service>) -> Result<Vec<Service>, String> {
    let mut ordered: Vec<Service> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|s| {
            s.depends_on
                .iter()
                .all(|d| ordered.iter().any(|o| &o.name == d))
        });
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                let names: Vec<_> = pending.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "services {} depend on each other in a cycle",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Stack, ConfigError> {
        load_keys(yaml, env, DeployKeys::Refuse)
    }

    fn load_keys(yaml: &str, env: &[(&str, &str)], keys: DeployKeys) -> Result<Stack, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-compose.yml");
        std::fs::write(&path, yaml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        load(&path, ProjectName { flag: None }, &lookup, keys)
    }

    const SWARM: &str = r#"
services:
  web:
    image: web
    deploy:
      replicas: ${WEB_REPLICAS:-3}
      update_config: {parallelism: 1, order: start-first, monitor: 2s, failure_action: rollback}
      rollback_config: {order: stop-first, failure_action: pause}
      placement:
        constraints: ["node.role==worker"]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: "0.5", memory: 256M, pids: 100}
        reservations: {memory: 64m}
"#;

    #[test]
    fn deploy_keys_are_read_for_a_swarm_and_refused_for_one_host_as_before() {
        let stack = load_keys(SWARM, &[], DeployKeys::Read).unwrap();
        let web = &stack.deploy["web"];
        assert_eq!(web.replicas, Some(3));
        let update = web.update_config.as_ref().unwrap();
        assert_eq!(update.order.as_deref(), Some("start-first"));
        assert_eq!(update.monitor, Some(Duration::from_secs(2)));
        assert_eq!(update.failure_action.as_deref(), Some("rollback"));
        assert_eq!(web.placement.constraints, ["node.role==worker"]);
        assert_eq!(web.placement.spread, ["node.labels.zone"]);
        assert_eq!(web.placement.max_replicas_per_node, Some(1));
        let limits = web.resources.limits.as_ref().unwrap();
        assert_eq!(
            (limits.cpus, limits.memory_bytes, limits.pids),
            (Some(0.5), Some(256 << 20), Some(100))
        );
        assert_eq!(
            web.resources.reservations.as_ref().unwrap().memory_bytes,
            Some(64 << 20)
        );
        let stack = load_keys(SWARM, &[("WEB_REPLICAS", "5")], DeployKeys::Read).unwrap();
        assert_eq!(stack.deploy["web"].replicas, Some(5));

        let error = load_keys(SWARM, &[], DeployKeys::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("docker-compose.yml:5:5: services.web: unknown field `deploy`"),
            "{error}"
        );
        // Without `deploy:` there is nothing to read.
        assert!(
            load_keys(STACK, &[], DeployKeys::Read)
                .unwrap()
                .deploy
                .is_empty()
        );
    }

    #[test]
    fn bad_deploy_values_name_the_key() {
        for (change, key) in [
            (
                "order: start-first",
                "order: sideways",
                "services.web.deploy.update_config.order",
            ),
            (
                "failure_action: pause",
                "failure_action: rollback",
                "services.web.deploy.rollback_config.failure_action",
            ),
            (
                "memory: 256M",
                "memory: lots",
                "services.web.deploy.resources.limits.memory",
            ),
            (
                "node.role==worker",
                "node.role",
                "services.web.deploy.placement.constraints",
            ),
            (
                "monitor: 2s",
                "monitor: soon",
                "services.web.deploy.update_config.monitor",
            ),
        ]
        .map(|(from, to, key)| ((from, to), key))
        {
            let yaml = SWARM.replace(change.0, change.1);
            let error = load_keys(&yaml, &[], DeployKeys::Read)
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("`{key}`")), "{key}: {error}");
        }
    }

    /// The edge's listeners in the project's own docker-compose.yml,
    /// resolved with `env`.
    fn project_edge_listeners(env: &[(&str, &str)]) -> Vec<String> {
        let yaml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docker-compose.yml"
        ))
        .unwrap();
        let stack = load_str(&yaml, env).unwrap();
        let edge = stack.services.iter().find(|s| s.name == "edge").unwrap();
        let listen = edge
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("EDGE_LISTEN="))
            .unwrap();
        student_ages_edge_listen::parse_listeners(listen)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_project_edge_serves_https_only_when_tls_domains_are_set() {
        let plain = project_edge_listeners(&[]);
        assert_eq!(plain.len(), 3, "{plain:?}");
        assert!(
            plain[0].starts_with("web=http://0.0.0.0:8080 -> "),
            "{plain:?}"
        );
        assert!(!plain.iter().any(|l| l.contains("https")), "{plain:?}");

        let tls = project_edge_listeners(&[
            ("TLS_DOMAINS", "school.example.org"),
            ("HTTPS_PORT", "8443"),
            ("FRONTEND_PORT", "80"),
        ]);
        assert_eq!(tls.len(), 5, "{tls:?}");
        assert!(
            tls[2].starts_with("ui-local=http://127.0.0.1:8081 -> "),
            "{tls:?}"
        );
        assert!(
            tls[0].starts_with("web=http://0.0.0.0:80 redirect-https -> "),
            "{tls:?}"
        );
        assert!(
            tls[1].starts_with("tls=https://0.0.0.0:8443 -> ")
                && tls[1].contains("/supmit/=api")
                && tls[1].contains("/=frontend"),
            "{tls:?}"
        );
    }

    const STACK: &str = r#"
name: demo
services:
  web:
    image: ${WEB_IMAGE:-web}:${TAG:-latest}
    environment:
      API_URL: http://api:5000
      PORT: 8080
    ports: ["127.0.0.1:${WEB_PORT:-8080}:8080"]
    depends_on:
      api: {condition: service_healthy}
  api:
    image: api:latest
    environment: ["A=1", "B=${B:-two}"]
    ports: ["5000:5000", 6000]
    volumes: ["data:/data", "./seed:/seed:ro"]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/api", "healthcheck"]
      interval: 2s
      retries: 5
volumes:
  data:
"#;

    #[test]
    fn a_stack_resolves_with_interpolation_and_dependency_order() {
        let stack = load_str(STACK, &[("TAG", "abc123"), ("WEB_PORT", "9000")]).unwrap();
        assert_eq!(stack.project, "demo");
        let names: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let web = stack.service("web").unwrap();
        assert_eq!(web.image, "web:abc123");
        assert_eq!(web.env, ["API_URL=http://api:5000", "PORT=8080"]);
        assert_eq!(
            web.ports,
            [Port {
                host_ip: "127.0.0.1".into(),
                host_port: "9000".into(),
                container_port: 8080,
                variables: vec!["WEB_PORT".into()],
            }]
        );
        let api = stack.service("api").unwrap();
        assert_eq!(api.env, ["A=1", "B=two"]);
        assert_eq!(api.ports[1].host_port, "");
        assert!(
            matches!(&api.mounts[1], Mount::Bind { source, read_only: true, .. } if source.ends_with("seed"))
        );
        let health = api.healthcheck.as_ref().unwrap();
        assert_eq!(
            (health.interval, health.retries),
            (Duration::from_secs(2), 5)
        );
        assert_eq!(stack.networks, ["default"]);
        assert_eq!(stack.container_name("api"), "demo-api-1");
        assert_eq!(stack.volume_name("data"), "demo_data");
    }

    #[test]
    fn logs_are_bounded_unless_the_file_says_otherwise() {
        let stack = load_str(
            "services:\n  a:\n    image: x\n  b:\n    image: y\n    logging:\n      driver: local\n      options: {max-size: 1m}\n",
            &[],
        )
        .unwrap();
        assert_eq!(stack.service("a").unwrap().logging, Logging::default());
        let b = &stack.service("b").unwrap().logging;
        assert_eq!(b.driver, "local");
        assert_eq!(b.options, [("max-size".to_owned(), "1m".to_owned())]);
    }

    #[test]
    fn a_pass_through_variable_that_is_unset_is_left_out() {
        let yaml = "services:\n  api:\n    image: x\n    environment:\n      SET:\n      UNSET:\n      LISTED: x\n";
        let stack = load_str(yaml, &[("SET", "1")]).unwrap();
        assert_eq!(stack.services[0].env, ["LISTED=x", "SET=1"]);
        let yaml = "services:\n  api:\n    image: x\n    environment: [SET, UNSET]\n";
        let stack = load_str(yaml, &[("SET", "1")]).unwrap();
        assert_eq!(stack.services[0].env, ["SET=1"]);
    }

    #[test]
    fn the_project_name_comes_from_the_environment_before_the_file() {
        let stack = load_str(STACK, &[("COMPOSE_PROJECT_NAME", "other")]).unwrap();
        assert_eq!(stack.project, "other");
    }

    #[test]
    fn an_unsupported_compose_key_is_refused_with_its_location() {
        let yaml = "services:\n  api:\n    image: x\n    privileged: true\n";
        let error = load_str(yaml, &[]).unwrap_err().to_string();
        assert!(error.contains("docker-compose.yml:4:5"), "{error}");
        assert!(error.contains("unknown field `privileged`"), "{error}");
    }

    #[test]
    fn a_required_variable_that_is_missing_names_the_key() {
        let yaml = "services:\n  api:\n    image: x\n    environment:\n      P: ${P:?set P}\n";
        let error = load_str(yaml, &[]).unwrap_err().to_string();
        assert!(error.contains("services.api.environment.P"), "{error}");
        assert!(error.contains("set P"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (yaml, key) in [
            (
                "services:\n  a:\n    image: x\n    ports: [\"x:80\"]\n",
                "services.a.ports",
            ),
            (
                "services:\n  a:\n    image: x\n    volumes: [\"v:/d\"]\n",
                "services.a.volumes",
            ),
            (
                "services:\n  a:\n    image: x\n    restart: sometimes\n",
                "services.a.restart",
            ),
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n",
                "services.a.depends_on",
            ),
            (
                "services:\n  a:\n    image: x\n    healthcheck:\n      test: [\"CMD\"]\n      interval: soon\n",
                "services.a.healthcheck.interval",
            ),
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n",
                "depends_on",
            ),
            (
                "services:\n  a:\n    image: x\n    network_mode: host\n    ports: [\"80:80\"]\n",
                "services.a.ports",
            ),
            (
                "services:\n  a:\n    image: x\n    network_mode: bridge\n",
                "services.a.network_mode",
            ),
        ] {
            let error = load_str(yaml, &[]).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{key}: {error}");
        }
    }
}
