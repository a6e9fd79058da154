//! `deploy.swarm` in `pipeline.yaml`: a Docker Swarm of several hosts as
//! the deploy target instead of one host. Its hosts (`[user@]host[:port]`,
//! the first `managers` of them managers), which host keeps the data, and
//! where each host's Docker socket is.
//!
//! ```yaml
//! deploy:
//!   swarm:
//!     hosts: ${SWARM_HOSTS:-}          # "a b c", or a list:
//!     # hosts:
//!     #   - ubuntu@10.0.1.10
//!     #   - {host: ubuntu@10.0.1.11, docker_socket: /run/docker.sock, advertise_addr: 10.0.1.11}
//!     managers: 1
//!     data: ubuntu@10.0.1.10
//!     docker_socket: /var/run/docker.sock   # every host's, unless its entry says otherwise
//! ```
//!
//! Hosts that interpolate to nothing (`SWARM_HOSTS` unset) mean no swarm:
//! the target stays the one host of `deploy.host`.

use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;

use super::ConfigError;
use super::interpolate::interpolate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SwarmDef {
    /// A list of entries, or one string of hosts separated by spaces or
    /// commas (what one variable can hold).
    hosts: Value,
    managers: Option<usize>,
    data: Option<String>,
    docker_socket: Option<String>,
    /// Variables a deploy to the swarm needs set.
    #[serde(default)]
    require: Vec<String>,
}

/// The swarm, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmSettings {
    /// In the file's order: the first `managers` are the managers, the
    /// first of all is where the swarm is made.
    pub hosts: Vec<SwarmHost>,
    pub managers: usize,
    /// Index in `hosts` of the host that keeps the data.
    pub data: usize,
    /// Variables a deploy or rollback to the swarm refuses to run without
    /// (`deploy.swarm.require`).
    pub require: Vec<String>,
}

/// One host of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmHost {
    /// `[user@]host[:port]`, as written (checked to parse).
    pub target: String,
    /// The host's Docker socket, as the SSH user reaches it.
    pub docker_socket: String,
    /// The address (or interface) the host gives the other nodes; by
    /// default the address the SSH connection arrived at on the host.
    pub advertise_addr: Option<String>,
}

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
const ENTRY_FIELDS: [&str; 3] = ["host", "docker_socket", "advertise_addr"];

/// Resolves `deploy.swarm`: `None` when its hosts interpolate to nothing.
pub(super) fn resolve(
    path: &Path,
    def: SwarmDef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SwarmSettings>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
    let text = |key: &str, value: &str| {
        interpolate(value, env)
            .map(|v| v.trim().to_owned())
            .map_err(|e| invalid(key, e.to_string()))
    };
    let default_socket = match &def.docker_socket {
        Some(socket) => text("deploy.swarm.docker_socket", socket)?,
        None => String::new(),
    };
    let default_socket = if default_socket.is_empty() {
        DEFAULT_SOCKET.to_owned()
    } else {
        default_socket
    };
    let socket = |key: &str, value: String| {
        if value.starts_with('/') {
            Ok(value)
        } else {
            Err(invalid(
                key,
                format!(
                    "{value:?} is not a path to a unix socket, such as {DEFAULT_SOCKET} (the \
                     host's Docker socket, which the deployer forwards over SSH)"
                ),
            ))
        }
    };
    let default_socket = socket("deploy.swarm.docker_socket", default_socket)?;

    let mut hosts = Vec::new();
    match &def.hosts {
        Value::Null => {}
        Value::String(list) => {
            for target in text("deploy.swarm.hosts", list)?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
            {
                hosts.push(SwarmHost {
                    target: target.to_owned(),
                    docker_socket: default_socket.clone(),
                    advertise_addr: None,
                });
            }
        }
        Value::Sequence(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let key = format!("deploy.swarm.hosts[{i}]");
                match entry {
                    Value::String(target) => {
                        let target = text(&key, target)?;
                        // An entry made of an unset variable: no host.
                        if !target.is_empty() {
                            hosts.push(SwarmHost {
                                target,
                                docker_socket: default_socket.clone(),
                                advertise_addr: None,
                            });
                        }
                    }
                    Value::Mapping(map) => {
                        let mut host = None;
                        let mut docker_socket = None;
                        let mut advertise_addr = None;
                        for (name, value) in map {
                            let name = name.as_str().unwrap_or("?");
                            let field = format!("{key}.{name}");
                            let Some(value) = value.as_str() else {
                                return Err(invalid(&field, "expected a string".to_owned()));
                            };
                            let value = text(&field, value)?;
                            match name {
                                "host" => host = Some(value),
                                "docker_socket" => docker_socket = Some(socket(&field, value)?),
                                "advertise_addr" => {
                                    advertise_addr = Some(value).filter(|v| !v.is_empty())
                                }
                                other => {
                                    return Err(invalid(
                                        &key,
                                        format!(
                                            "unknown field `{other}`, expected one of {}",
                                            ENTRY_FIELDS
                                                .iter()
                                                .map(|f| format!("`{f}`"))
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    ));
                                }
                            }
                        }
                        let host = host.filter(|h| !h.is_empty()).ok_or_else(|| {
                            invalid(
                                &key,
                                "an entry with settings needs `host: [user@]host[:port]`"
                                    .to_owned(),
                            )
                        })?;
                        hosts.push(SwarmHost {
                            target: host,
                            docker_socket: docker_socket.unwrap_or_else(|| default_socket.clone()),
                            advertise_addr,
                        });
                    }
                    _ => {
                        return Err(invalid(
                            &key,
                            "expected \"[user@]host[:port]\" or {host: ..., docker_socket: ..., \
                             advertise_addr: ...}"
                                .to_owned(),
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(invalid(
                "deploy.swarm.hosts",
                "expected a list of hosts, or one string of hosts separated by spaces or commas \
                 (\"${SWARM_HOSTS:-}\")"
                    .to_owned(),
            ));
        }
    }
    if hosts.is_empty() {
        return Ok(None);
    }

    // Each host parses, and none is listed twice.
    let mut seen: Vec<(String, Option<u16>)> = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let target = crate::remote::Target::parse(&host.target)
            .map_err(|e| invalid(&format!("deploy.swarm.hosts[{i}]"), format!("{e:#}")))?;
        let place = (target.host, target.port.filter(|p| *p != 22));
        if seen.contains(&place) {
            return Err(invalid(
                &format!("deploy.swarm.hosts[{i}]"),
                format!("{} is listed twice", host.target),
            ));
        }
        seen.push(place);
    }

    let managers = def.managers.unwrap_or(1);
    if managers == 0 || managers > hosts.len() {
        return Err(invalid(
            "deploy.swarm.managers",
            format!(
                "{managers}, but the first `managers` of the {} hosts are the managers: use 1 to \
                 {} (an odd number: 1, 3 or 5 keep a majority when one is lost)",
                hosts.len(),
                hosts.len()
            ),
        ));
    }

    let listed = || {
        hosts
            .iter()
            .map(|h| h.target.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let data = match &def.data {
        Some(data) => text("deploy.swarm.data", data)?,
        None => String::new(),
    };
    if data.is_empty() {
        return Err(invalid(
            "deploy.swarm.data",
            format!(
                "name the host that keeps the API's data file (the JSON file is the database and \
                 lives on one host): one of {}",
                listed()
            ),
        ));
    }
    let data = data_index(&hosts, &data).map_err(|why| {
        invalid(
            "deploy.swarm.data",
            format!("{data:?} {why}: one of {}", listed()),
        )
    })?;
    Ok(Some(SwarmSettings {
        hosts,
        managers,
        data,
        require: def.require,
    }))
}

/// Which host `data` names: its entry as written, or its host[:port]
/// without the user.
fn data_index(hosts: &[SwarmHost], data: &str) -> Result<usize, &'static str> {
    if let Some(i) = hosts.iter().position(|h| h.target == data) {
        return Ok(i);
    }
    let without_user = |t: &str| t.split_once('@').map_or(t, |(_, rest)| rest).to_owned();
    let matches: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            let host = without_user(&h.target);
            host == data || host.split_once(':').is_some_and(|(name, _)| name == data)
        })
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err("is none of deploy.swarm.hosts"),
        _ => Err("names more than one of deploy.swarm.hosts: write the whole entry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_str(yaml: &str, vars: &[(&str, &str)]) -> Result<Option<SwarmSettings>, String> {
        let def: SwarmDef = serde_yaml::from_str(yaml).unwrap();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(Path::new("pipeline.yaml"), def, &|key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_from_one_variable_are_split_and_unset_means_no_swarm() {
        let yaml = "hosts: ${SWARM_HOSTS:-}\ndata: ${SWARM_DATA_HOST:-}\n";
        assert_eq!(resolve_str(yaml, &[]).unwrap(), None);
        let swarm = resolve_str(
            yaml,
            &[
                ("SWARM_HOSTS", "ubuntu@a, ubuntu@b:2222 c"),
                ("SWARM_DATA_HOST", "b"),
            ],
        )
        .unwrap()
        .unwrap();
        let targets: Vec<&str> = swarm.hosts.iter().map(|h| h.target.as_str()).collect();
        assert_eq!(targets, ["ubuntu@a", "ubuntu@b:2222", "c"]);
        assert_eq!((swarm.managers, swarm.data), (1, 1));
        assert!(
            swarm
                .hosts
                .iter()
                .all(|h| h.docker_socket == DEFAULT_SOCKET)
        );
    }

    #[test]
    fn entries_may_set_their_own_docker_socket_and_address() {
        let yaml = "hosts:\n  - {host: deploy@10.0.0.1, docker_socket: /run/sw1.sock, advertise_addr: eth1}\n  - deploy@10.0.0.2\nmanagers: 2\ndata: deploy@10.0.0.2\ndocker_socket: /run/all.sock\n";
        let swarm = resolve_str(yaml, &[]).unwrap().unwrap();
        assert_eq!(swarm.hosts[0].docker_socket, "/run/sw1.sock");
        assert_eq!(swarm.hosts[0].advertise_addr.as_deref(), Some("eth1"));
        assert_eq!(swarm.hosts[1].docker_socket, "/run/all.sock");
        assert_eq!((swarm.managers, swarm.data), (2, 1));
    }

    #[test]
    fn mistakes_name_the_key_and_what_to_write() {
        let base = "hosts: [a, b, c]\n";
        let cases = [
            (
                format!("{base}data: a\nmanagers: 4\n"),
                "`deploy.swarm.managers`: 4",
            ),
            (
                format!("{base}data: a\nmanagers: 0\n"),
                "`deploy.swarm.managers`: 0",
            ),
            (base.to_owned(), "`deploy.swarm.data`: name the host"),
            (
                format!("{base}data: d\n"),
                "\"d\" is none of deploy.swarm.hosts",
            ),
            (
                "hosts: [a, a]\ndata: a\n".to_owned(),
                "`deploy.swarm.hosts[1]`: a is listed twice",
            ),
            (
                "hosts: [\"a:port\"]\ndata: a\n".to_owned(),
                "`deploy.swarm.hosts[0]`",
            ),
            (
                "hosts: [{host: a, socket: /x}]\ndata: a\n".to_owned(),
                "unknown field `socket`, expected one of `host`, `docker_socket`",
            ),
            (
                "hosts: [{host: a, docker_socket: docker.sock}]\ndata: a\n".to_owned(),
                "`deploy.swarm.hosts[0].docker_socket`: \"docker.sock\" is not a path",
            ),
            (
                "hosts: [{docker_socket: /x}]\ndata: a\n".to_owned(),
                "needs `host: [user@]host[:port]`",
            ),
            (
                "hosts: {a: 1}\ndata: a\n".to_owned(),
                "expected a list of hosts",
            ),
            (
                "hosts: [u@a:22, v@a:2222]\ndata: a\n".to_owned(),
                "names more than one",
            ),
        ];
        for (yaml, expected) in cases {
            let error = resolve_str(&yaml, &[]).unwrap_err();
            assert!(error.contains(expected), "{yaml}: {error}");
            assert!(error.starts_with("pipeline.yaml: `deploy.swarm"), "{error}");
        }
    }
}
