//! `pipeline.yaml`: what compose cannot say — how each image is built, the
//! data to seed, and the acceptance checks. Unknown keys are errors; secrets
//! only ever come from the environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::ConfigError;
use super::interpolate::{interpolate, interpolate_recording};
pub use super::swarm::{SwarmHost, SwarmSettings};
use crate::platform::Platform;
use crate::stack::{EdgeSpec, EdgeTarget, Service, Stack, VolumeFile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    compose: Option<String>,
    images: BTreeMap<String, ImageDef>,
    /// What `release` builds for: `amd64`, `arm64`.
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(default)]
    seed: Vec<SeedDef>,
    #[serde(default)]
    files: Vec<FileDef>,
    test: TestDef,
    registry: Option<RegistryDef>,
    deploy: Option<DeployDef>,
    #[serde(default)]
    urls: Vec<UrlDef>,
    status: Option<StatusDef>,
    edge: Option<EdgeDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeDef {
    service: String,
    targets: BTreeMap<String, TargetDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetDef {
    port: u16,
    #[serde(default = "default_health_path")]
    health: String,
}

fn default_health_path() -> String {
    "/healthz".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlDef {
    name: String,
    service: String,
    path: String,
    #[serde(default)]
    auth: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusDef {
    records: String,
    service: String,
    request: String,
    #[serde(default)]
    auth: bool,
    count: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryDef {
    server: String,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployDef {
    host: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    credentials: Vec<String>,
    swarm: Option<super::swarm::SwarmDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageDef {
    package: String,
    binary: String,
    dockerfile: String,
    /// Extra files for the build context: name in the context → repo path.
    #[serde(default)]
    files: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedDef {
    volume: String,
    file: String,
    owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    volume: String,
    /// Interpolated when the stack is (a deploy's `deploy.env` first).
    file: String,
    path: String,
    owner: String,
    #[serde(default = "default_file_mode")]
    mode: String,
}

fn default_file_mode() -> String {
    "0644".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestDef {
    auth: AuthDef,
    checks: Vec<CheckDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthDef {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckDef {
    name: String,
    service: String,
    request: String,
    #[serde(default)]
    auth: bool,
    /// Sign in through the service's login form first.
    #[serde(default)]
    login: bool,
    body: Option<serde_json::Value>,
    expect: ExpectDef,
    /// Also run after a deploy, against the live host (default: for reads).
    deploy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDef {
    status: u16,
    #[serde(default)]
    json: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    body_contains: Vec<String>,
    /// JSON pointer → the kind of value there, whatever the value.
    #[serde(default)]
    shape: BTreeMap<String, JsonKind>,
}

/// The kind of a JSON value, for checks that must not depend on the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonKind {
    Object,
    Array,
    String,
    Number,
    Boolean,
    Null,
}

impl JsonKind {
    pub fn of(value: &serde_json::Value) -> JsonKind {
        match value {
            serde_json::Value::Object(_) => JsonKind::Object,
            serde_json::Value::Array(_) => JsonKind::Array,
            serde_json::Value::String(_) => JsonKind::String,
            serde_json::Value::Number(_) => JsonKind::Number,
            serde_json::Value::Bool(_) => JsonKind::Boolean,
            serde_json::Value::Null => JsonKind::Null,
        }
    }
}

/// The pipeline, resolved: paths absolute, variables interpolated.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    /// The directory holding `pipeline.yaml`: the workspace root.
    pub root: PathBuf,
    pub compose: PathBuf,
    pub images: Vec<ImageSpec>,
    /// The platforms `release` builds and pushes one image index of; this
    /// machine's own always among them, first.
    pub platforms: Vec<Platform>,
    pub seeds: Vec<Seed>,
    pub files: Vec<FileEntry>,
    pub auth: Auth,
    pub checks: Vec<Check>,
    pub registry: Option<RegistrySettings>,
    pub deploy: DeploySettings,
    pub urls: Vec<AppUrl>,
    pub status: Option<StatusProbe>,
    pub edge: Option<EdgeSpec>,
}

/// Where `push` sends images and `deploy` pulls them from.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `docker.io`, or `host[:port]`.
    pub server: String,
    pub username: String,
    pub password: SecretString,
}

/// The deploy target and what differs there.
#[derive(Debug, Clone, Default)]
pub struct DeploySettings {
    /// `[user@]host[:port]`, if the file names one.
    pub host: Option<String>,
    /// Variables for interpolating the compose file on the host (ports,
    /// image names): no secrets, they are written to the host's `.env`.
    pub env: Vec<(String, String)>,
    /// For each of `env`'s keys, the variables its value read
    /// (`EC2_API_PORT` for `API_PORT: ${EC2_API_PORT:-5000}`).
    sources: Vec<(String, Vec<String>)>,
    /// Variables a host deploy needs set: without them the compose file's
    /// local defaults (root/root) would guard a host others can reach.
    pub credentials: Vec<String>,
    /// A swarm of several hosts instead of one, if the file names one.
    pub swarm: Option<SwarmSettings>,
}

impl DeploySettings {
    /// For a compose variable set by `deploy.env`, what a user sets to
    /// change it on the host.
    pub fn sources(&self) -> HashMap<String, String> {
        self.sources
            .iter()
            .map(|(key, read)| {
                let setting = if read.is_empty() {
                    format!("deploy.env.{key} in pipeline.yaml")
                } else {
                    read.join(" / ")
                };
                (key.clone(), setting)
            })
            .collect()
    }
}

/// A URL of the application that `up` prints for people.
#[derive(Debug, Clone)]
pub struct AppUrl {
    pub name: String,
    pub service: String,
    pub path: String,
    /// It needs the API credentials (`up` prints a curl line for it).
    pub auth: bool,
}

/// How `status` asks the application how many records it holds.
#[derive(Debug, Clone)]
pub struct StatusProbe {
    /// What is counted, for people ("students").
    pub records: String,
    pub service: String,
    pub path: String,
    pub auth: bool,
    /// JSON pointer to the object or array whose size is the count.
    pub count: String,
}

/// How the image of one compose service is built.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The compose service whose `image:` names the repository.
    pub service: String,
    pub package: String,
    pub binary: String,
    pub dockerfile: PathBuf,
    /// Extra build-context files: (name in the context, absolute path).
    pub files: Vec<(String, PathBuf)>,
}

/// A file put into a named volume the first time the volume is created.
#[derive(Debug, Clone)]
pub struct Seed {
    pub volume: String,
    pub file: PathBuf,
    pub uid: u64,
    pub gid: u64,
}

/// A file from this machine put into a named volume on every `up` and
/// `deploy`, as pipeline.yaml's `files:` says; its source is resolved with
/// the stack ([`Pipeline::volume_files`]).
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub volume: String,
    /// As written, e.g. `${TLS_CERT_FILE:-}`.
    pub file: String,
    /// Relative to the volume's root.
    pub path: String,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
}

/// The API credentials the checks and `status` use.
#[derive(Debug, Clone)]
pub struct Auth {
    pub username: String,
    pub password: SecretString,
    /// How to show the password in an example command: `$VAR` when it
    /// comes from a variable that is set, else the file's own default.
    pub password_shown: String,
}

/// One acceptance check: a request and what the answer must hold.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub service: String,
    pub method: String,
    pub path: String,
    pub auth: bool,
    /// Sign in through the web form at `/login` (with `test.auth`'s user)
    /// and send the session cookie.
    pub login: bool,
    pub body: Option<serde_json::Value>,
    pub status: u16,
    /// JSON pointer (`/student_ages/alice`) → expected value.
    pub json: Vec<(String, serde_json::Value)>,
    pub body_contains: Vec<String>,
    /// JSON pointer → the kind of value it must hold.
    pub shape: Vec<(String, JsonKind)>,
    /// Run after a deploy too, against live data: only checks that read.
    pub on_deploy: bool,
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];

pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Pipeline, ConfigError> {
    let file: PipelineFile = super::load_yaml(path)?;
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let invalid = |key: String, message: String| ConfigError::invalid(path, key, message);
    let text = |key: &str, value: &str| {
        interpolate(value, env).map_err(|e| ConfigError::invalid(path, key, e.to_string()))
    };

    let compose = root.join(file.compose.as_deref().unwrap_or("docker-compose.yml"));
    let images = file
        .images
        .into_iter()
        .map(|(service, def)| ImageSpec {
            dockerfile: root.join(&def.dockerfile),
            files: def
                .files
                .iter()
                .map(|(name, path)| (name.clone(), root.join(path)))
                .collect(),
            service,
            package: def.package,
            binary: def.binary,
        })
        .collect();
    let mut platforms = vec![Platform::native()];
    for (i, name) in file.platforms.iter().enumerate() {
        let platform = Platform::parse(name).ok_or_else(|| {
            invalid(
                format!("platforms[{i}]"),
                format!("{name:?} is not a platform the images can be built for: amd64 or arm64"),
            )
        })?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    let seeds = file
        .seed
        .into_iter()
        .enumerate()
        .map(|(i, def)| {
            let (uid, gid) = parse_owner(&def.owner).ok_or_else(|| {
                invalid(
                    format!("seed[{i}].owner"),
                    format!("{:?} is not UID:GID, e.g. \"65532:65532\"", def.owner),
                )
            })?;
            Ok(Seed {
                volume: def.volume,
                file: root.join(def.file),
                uid,
                gid,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;

    let files = file
        .files
        .into_iter()
        .enumerate()
        .map(|(i, def)| {
            let (uid, gid) = parse_owner(&def.owner).ok_or_else(|| {
                invalid(
                    format!("files[{i}].owner"),
                    format!("{:?} is not UID:GID, e.g. \"65532:65532\"", def.owner),
                )
            })?;
            let mode = u32::from_str_radix(def.mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    invalid(
                        format!("files[{i}].mode"),
                        format!("{:?} is not a file mode in octal, e.g. \"0600\"", def.mode),
                    )
                })?;
            let relative = Path::new(&def.path);
            if def.path.is_empty()
                || relative.is_absolute()
                || relative
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(invalid(
                    format!("files[{i}].path"),
                    format!(
                        "{:?} must be a path inside the volume, relative and without `..`, \
                         e.g. tls/cert.pem",
                        def.path
                    ),
                ));
            }
            Ok(FileEntry {
                volume: def.volume,
                file: def.file,
                path: def.path,
                uid,
                gid,
                mode,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;

    if !file.test.auth.password.contains("${") {
        return Err(invalid(
            "test.auth.password".into(),
            "secrets never live in this file: write a reference such as \
             \"${API_PASSWORD}\" and set the variable in the environment"
                .into(),
        ));
    }
    let (password, read) = interpolate_recording(&file.test.auth.password, env)
        .map_err(|e| ConfigError::invalid(path, "test.auth.password", e.to_string()))?;
    let password_shown = match read.first() {
        Some(var) if env(var).is_some_and(|v| !v.is_empty()) => format!("${var}"),
        _ => password.clone(),
    };
    let auth = Auth {
        username: text("test.auth.username", &file.test.auth.username)?,
        password: password.into(),
        password_shown,
    };
    let checks = file
        .test
        .checks
        .into_iter()
        .enumerate()
        .map(|(i, def)| {
            let key = |field: &str| format!("test.checks[{i}].{field}");
            let (method, check_path) = def
                .request
                .split_once(' ')
                .filter(|(m, p)| METHODS.contains(m) && p.starts_with('/'))
                .ok_or_else(|| {
                    invalid(
                        key("request"),
                        format!(
                            "{:?} is not \"METHOD /path\" (methods: {})",
                            def.request,
                            METHODS.join(", ")
                        ),
                    )
                })?;
            for pointer in def.expect.json.keys().chain(def.expect.shape.keys()) {
                if !pointer.starts_with('/') {
                    return Err(invalid(
                        key("expect.json"),
                        format!("{pointer:?} is not a JSON pointer such as /student_ages/alice"),
                    ));
                }
            }
            let reads = method == "GET" || method == "HEAD";
            let on_deploy = def.deploy.unwrap_or(reads);
            if on_deploy && !reads {
                return Err(invalid(
                    key("deploy"),
                    format!("a {method} check writes, so it cannot run against a live host's data"),
                ));
            }
            Ok(Check {
                on_deploy,
                name: def.name,
                service: def.service,
                method: method.to_owned(),
                path: text(&key("request"), check_path)?,
                auth: def.auth,
                login: def.login,
                body: def.body,
                status: def.expect.status,
                json: def.expect.json.into_iter().collect(),
                body_contains: def.expect.body_contains,
                shape: def.expect.shape.into_iter().collect(),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let registry = match file.registry {
        None => None,
        Some(def) => {
            if def
                .password
                .as_deref()
                .is_some_and(|p| !p.is_empty() && !p.contains("${"))
            {
                return Err(invalid(
                    "registry.password".into(),
                    "secrets never live in this file: write \"${DOCKER_PASSWORD}\" and set \
                     the variable in the environment"
                        .into(),
                ));
            }
            let optional = |key: &str, value: &Option<String>| match value {
                Some(v) => text(key, v),
                None => Ok(String::new()),
            };
            // An empty server (DOCKER_REGISTRY unset) means no registry:
            // `deploy` then copies the images from this machine's daemon.
            let server = text("registry.server", &def.server)?;
            if server.trim().is_empty() {
                None
            } else {
                Some(RegistrySettings {
                    server,
                    username: optional("registry.username", &def.username)?,
                    password: optional("registry.password", &def.password)?.into(),
                })
            }
        }
    };
    let deploy = match file.deploy {
        None => DeploySettings::default(),
        Some(def) => {
            let mut env_vars = Vec::new();
            let mut sources = Vec::new();
            for (k, v) in &def.env {
                let (value, read) = interpolate_recording(v, env).map_err(|e| {
                    ConfigError::invalid(path, format!("deploy.env.{k}"), e.to_string())
                })?;
                env_vars.push((k.clone(), value));
                sources.push((k.clone(), read));
            }
            DeploySettings {
                host: match def.host {
                    Some(h) => Some(text("deploy.host", &h)?).filter(|h| !h.is_empty()),
                    None => None,
                },
                env: env_vars,
                sources,
                credentials: def.credentials,
                swarm: match def.swarm {
                    Some(swarm) => super::swarm::resolve(path, swarm, env)?,
                    None => None,
                },
            }
        }
    };
    let urls = file
        .urls
        .into_iter()
        .enumerate()
        .map(|(i, def)| {
            if !def.path.starts_with('/') {
                return Err(invalid(
                    format!("urls[{i}].path"),
                    format!("{:?} is not a path starting with /", def.path),
                ));
            }
            Ok(AppUrl {
                name: def.name,
                service: def.service,
                path: def.path,
                auth: def.auth,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let status = match file.status {
        None => None,
        Some(def) => {
            let path_part = def
                .request
                .strip_prefix("GET ")
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    invalid(
                        "status.request".into(),
                        format!("{:?} is not \"GET /path\" (status only reads)", def.request),
                    )
                })?;
            if !def.count.starts_with('/') {
                return Err(invalid(
                    "status.count".into(),
                    format!(
                        "{:?} is not a JSON pointer such as /student_ages",
                        def.count
                    ),
                ));
            }
            Some(StatusProbe {
                records: def.records,
                service: def.service,
                path: path_part.to_owned(),
                auth: def.auth,
                count: def.count,
            })
        }
    };
    let edge = match file.edge {
        None => None,
        Some(def) => {
            let mut targets = Vec::new();
            for (service, target) in def.targets {
                if !target.health.starts_with('/') {
                    return Err(invalid(
                        format!("edge.targets.{service}.health"),
                        format!("{:?} is not a path starting with /", target.health),
                    ));
                }
                targets.push(EdgeTarget {
                    service,
                    port: target.port,
                    health: target.health,
                });
            }
            Some(EdgeSpec {
                service: def.service,
                targets,
            })
        }
    };
    Ok(Pipeline {
        path: path.to_owned(),
        registry,
        deploy,
        urls,
        status,
        edge,
        root,
        compose,
        images,
        platforms,
        seeds,
        files,
        auth,
        checks,
    })
}

/// `UID:GID`, numbers.
fn parse_owner(owner: &str) -> Option<(u64, u64)> {
    let (u, g) = owner.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

impl Pipeline {
    /// The `files:` entries as the stack resolves with `lookup`: each whose
    /// `file` is not empty, with its source path (relative ones from the
    /// workspace root).
    pub fn volume_files(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<VolumeFile>, ConfigError> {
        let mut files = Vec::new();
        for (i, entry) in self.files.iter().enumerate() {
            let key = format!("files[{i}].file");
            let source = interpolate(&entry.file, lookup)
                .map_err(|e| ConfigError::invalid(&self.path, &key, e.to_string()))?;
            if source.trim().is_empty() {
                continue;
            }
            files.push(VolumeFile {
                volume: entry.volume.clone(),
                source: self.root.join(source.trim()),
                path: entry.path.clone(),
                uid: entry.uid,
                gid: entry.gid,
                mode: entry.mode,
                origin: format!("{} {key} ({})", self.path.display(), entry.file),
            });
        }
        Ok(files)
    }

    /// The services of `stack` whose images this pipeline builds, in the
    /// pipeline's order.
    pub fn built_services<'s>(&'s self, stack: &'s Stack) -> impl Iterator<Item = &'s Service> {
        self.images
            .iter()
            .filter_map(|image| stack.service(&image.service))
    }

    /// Checks that every service, volume and image named here exists in the
    /// stack, so a typo fails before anything runs.
    pub fn check_against(&self, stack: &Stack) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::invalid(&self.path, key, message);
        // Reached by a port it publishes, or through the edge.
        let published = |key: String, service: &str| match stack.service(service) {
            None => Err(invalid(
                key,
                format!("{} has no service {service:?}", self.compose.display()),
            )),
            Some(s)
                if s.ports.is_empty()
                    && self.edge.as_ref().and_then(|e| e.target(service)).is_none() =>
            {
                Err(invalid(
                    key,
                    format!("service {service:?} publishes no port and is not behind the edge"),
                ))
            }
            Some(_) => Ok(()),
        };
        let services: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
        for image in &self.images {
            if !services.contains(&image.service.as_str()) {
                return Err(invalid(
                    format!("images.{}", image.service),
                    format!(
                        "{} has no service {:?} (it has: {})",
                        self.compose.display(),
                        image.service,
                        services.join(", ")
                    ),
                ));
            }
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            if !stack.volumes.contains(&seed.volume) {
                return Err(invalid(
                    format!("seed[{i}].volume"),
                    format!(
                        "{} declares no volume {:?}",
                        self.compose.display(),
                        seed.volume
                    ),
                ));
            }
        }
        for (i, file) in self.files.iter().enumerate() {
            if !stack.volumes.contains(&file.volume) {
                return Err(invalid(
                    format!("files[{i}].volume"),
                    format!(
                        "{} declares no volume {:?}",
                        self.compose.display(),
                        file.volume
                    ),
                ));
            }
        }
        for (i, check) in self.checks.iter().enumerate() {
            published(format!("test.checks[{i}].service"), &check.service)?;
        }
        for (i, url) in self.urls.iter().enumerate() {
            published(format!("urls[{i}].service"), &url.service)?;
        }
        if let Some(status) = &self.status {
            published("status.service".into(), &status.service)?;
        }
        if let Some(edge) = &self.edge {
            let named = |key: String, service: &str| match stack.service(service) {
                Some(s) => Ok(s),
                None => Err(invalid(
                    key,
                    format!("{} has no service {service:?}", self.compose.display()),
                )),
            };
            let proxy = named("edge.service".into(), &edge.service)?;
            if proxy.network != crate::stack::Network::Host {
                return Err(invalid(
                    "edge.service".into(),
                    format!(
                        "service {:?} must run with network_mode: host, so its listening \
                         sockets outlive its container and can be handed to its successor",
                        edge.service
                    ),
                ));
            }
            for target in &edge.targets {
                let behind = named(format!("edge.targets.{}", target.service), &target.service)?;
                if !behind.ports.is_empty() {
                    return Err(invalid(
                        format!("edge.targets.{}", target.service),
                        format!(
                            "service {:?} is behind the edge, so it publishes no port of its \
                             own (two containers of it run side by side during a switch): \
                             remove its `ports:`",
                            target.service
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(yaml: &str) -> Result<Pipeline, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.yaml");
        std::fs::write(&path, yaml).unwrap();
        load(&path, &|key| {
            (key == "API_PASSWORD").then(|| "pw".to_owned())
        })
    }

    const GOOD: &str = r#"
images:
  api: {package: student-ages-api, binary: api, dockerfile: services/api/Dockerfile}
seed:
  - {volume: data, file: data/student_age.json, owner: "65532:65532"}
test:
  auth: {username: root, password: "${API_PASSWORD}"}
  checks:
    - name: list
      service: api
      request: GET /supmit/api/v1.0/get_student_ages
      auth: true
      expect: {status: 200, json: {/student_ages/alice: 12}}
"#;

    #[test]
    fn a_good_pipeline_resolves_paths_and_secrets_from_the_environment() {
        let p = load_str(GOOD).unwrap();
        assert!(p.compose.ends_with("docker-compose.yml"));
        assert_eq!(p.images[0].binary, "api");
        assert_eq!((p.seeds[0].uid, p.seeds[0].gid), (65532, 65532));
        assert_eq!(secrecy::ExposeSecret::expose_secret(&p.auth.password), "pw");
        assert_eq!(p.auth.password_shown, "$API_PASSWORD");
        assert_eq!(p.checks[0].method, "GET");
        assert_eq!(p.checks[0].json[0].1, serde_json::json!(12));
        assert!(!format!("{:?}", p.auth).contains("pw\""));
    }

    #[test]
    fn an_unknown_key_names_file_line_and_column() {
        let error = load_str(&GOOD.replace("auth: true", "auth: true\n      retries: 3"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("pipeline.yaml:13:7: "), "{error}");
        assert!(error.contains("unknown field `retries`"), "{error}");
    }

    #[test]
    fn a_password_written_in_the_file_is_refused() {
        let error = load_str(&GOOD.replace("\"${API_PASSWORD}\"", "hunter2"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.auth.password"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_malformed_request_or_owner_is_refused_naming_the_key() {
        let error = load_str(&GOOD.replace("GET /supmit", "FETCH /supmit")).unwrap_err();
        assert!(
            error.to_string().contains("test.checks[0].request"),
            "{error}"
        );
        let error = load_str(&GOOD.replace("65532:65532", "app")).unwrap_err();
        assert!(error.to_string().contains("seed[0].owner"), "{error}");
    }

    #[test]
    fn checks_may_expect_the_kind_of_a_value_and_the_app_has_urls_and_a_status_probe() {
        let yaml = GOOD.replace(
            "json: {/student_ages/alice: 12}",
            "shape: {/student_ages: object}",
        ) + "urls:\n  - {name: API, service: api, path: /x, auth: true}\nstatus:\n  records: students\n  service: api\n  request: GET /supmit/api/v1.0/get_student_ages\n  auth: true\n  count: /student_ages\n";
        let p = load_str(&yaml).unwrap();
        assert_eq!(
            p.checks[0].shape,
            [("/student_ages".to_owned(), JsonKind::Object)]
        );
        assert!(p.urls[0].auth);
        let status = p.status.unwrap();
        assert_eq!(
            (status.records.as_str(), status.count.as_str()),
            ("students", "/student_ages")
        );
        let error =
            load_str(&GOOD.replace("json: {/student_ages/alice: 12}", "shape: {/x: table}"))
                .unwrap_err()
                .to_string();
        assert!(error.contains("unknown variant `table`"), "{error}");
        let error = load_str(&format!(
            "{GOOD}status: {{records: r, service: api, request: PUT /x, count: /x}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("status.request"), "{error}");
    }

    #[test]
    fn deploy_env_remembers_which_variables_set_each_key() {
        let yaml = format!(
            "{GOOD}deploy:\n  env:\n    API_PORT: ${{EC2_API_PORT:-5000}}\n    FIXED: \"80\"\n"
        );
        let p = load_str(&yaml).unwrap();
        let sources = p.deploy.sources();
        assert_eq!(sources["API_PORT"], "EC2_API_PORT");
        assert_eq!(sources["FIXED"], "deploy.env.FIXED in pipeline.yaml");
        assert!(
            p.deploy
                .env
                .contains(&("API_PORT".to_owned(), "5000".to_owned()))
        );
    }

    #[test]
    fn files_resolve_with_the_stacks_variables_and_an_empty_one_is_skipped() {
        let yaml = format!(
            "{GOOD}files:\n  \
             - {{volume: certs, file: \"${{CERT:-}}\", path: tls/cert.pem, owner: \"1:2\"}}\n  \
             - {{volume: certs, file: \"${{KEY:-}}\", path: tls/key.pem, owner: \"1:2\", mode: \"0600\"}}\n"
        );
        let p = load_str(&yaml).unwrap();
        let files = p
            .volume_files(&|k| (k == "CERT").then(|| "certs/a.pem".to_owned()))
            .unwrap();
        assert_eq!(files.len(), 1, "KEY is unset: its entry is skipped");
        assert_eq!(files[0].source, p.root.join("certs/a.pem"));
        assert_eq!((files[0].uid, files[0].gid, files[0].mode), (1, 2, 0o644));
        assert!(files[0].origin.ends_with("files[0].file (${CERT:-})"));
        let both = p.volume_files(&|_| Some("/abs/x.pem".to_owned())).unwrap();
        assert_eq!(both[1].mode, 0o600);
        assert_eq!(both[1].source, PathBuf::from("/abs/x.pem"));
        let error = load_str(&yaml.replace("\"0600\"", "\"rw\"")).unwrap_err();
        assert!(error.to_string().contains("files[1].mode"), "{error}");
    }
}
