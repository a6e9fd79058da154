//! The swarm lab (support::swarm_lab) as a deployer's deploy target: the
//! pipeline.yaml (and compose file) naming its nodes, the `deployer`
//! commands run against it as a CI job would run them, and a load through
//! every node's edge. Shared by tests/deployer/swarm.rs and
//! benches/swarm.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::load::{Load, Target};
use super::swarm_lab::SwarmLab;

/// A pipeline.yaml like the repository's whose deploy target is the lab's
/// swarm: every node with its own Docker socket, node 1 the manager, node
/// 2 the data host. Written beside the lab's files; `compose:` points back
/// at the repository's compose file.
pub fn swarm_pipeline(lab: &SwarmLab, dir: &Path) -> PathBuf {
    let root = super::root();
    let text = std::fs::read_to_string(root.join("pipeline.yaml")).unwrap();
    let mut pipeline: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    pipeline["compose"] = root.join("docker-compose.yml").to_string_lossy().into();
    let hosts: Vec<serde_yaml::Value> = lab
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut entry = serde_yaml::Mapping::new();
            entry.insert("host".into(), lab.target(i).into());
            entry.insert(
                "docker_socket".into(),
                node.socket.to_string_lossy().into_owned().into(),
            );
            entry.into()
        })
        .collect();
    let mut swarm = serde_yaml::Mapping::new();
    swarm.insert("hosts".into(), hosts.into());
    swarm.insert("managers".into(), 1.into());
    swarm.insert("data".into(), lab.target(1).into());
    pipeline["deploy"]["swarm"] = swarm.into();
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, serde_yaml::to_string(&pipeline).unwrap()).unwrap();
    path
}

/// How many frontend tasks [`swarm_files`]' compose file asks for.
pub const FRONTEND_REPLICAS: usize = 3;

/// The repository's compose file with a `deploy:` for the frontend
/// ([`FRONTEND_REPLICAS`] replicas, start-first, watched 2 s), and a
/// pipeline.yaml whose deploy target is the lab's swarm and whose paths
/// point back at the repository.
pub fn swarm_files(lab: &SwarmLab, dir: &Path) -> PathBuf {
    let root = super::root();
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&compose).unwrap();
    compose["services"]["frontend"]["deploy"] = serde_yaml::from_str(&format!(
        "replicas: {FRONTEND_REPLICAS}\nupdate_config: {{parallelism: 1, order: start-first, \
         monitor: 2s, failure_action: rollback}}\n",
    ))
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        serde_yaml::to_string(&compose).unwrap(),
    )
    .unwrap();
    let path = swarm_pipeline(lab, dir);
    let mut pipeline: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    pipeline["compose"] = dir
        .join("docker-compose.yml")
        .to_string_lossy()
        .into_owned()
        .into();
    for seed in pipeline["seed"].as_sequence_mut().unwrap() {
        let file = root.join(seed["file"].as_str().unwrap());
        seed["file"] = file.to_string_lossy().into_owned().into();
    }
    std::fs::write(&path, serde_yaml::to_string(&pipeline).unwrap()).unwrap();
    path
}

/// `deployer --file PIPELINE -p PROJECT` with the lab's key and
/// known_hosts, and none of the caller's variables that would name another
/// target.
fn lab_deployer(lab: &SwarmLab, pipeline: &Path, project: &str) -> Command {
    let mut command = super::deployer();
    command
        .arg("--file")
        .arg(pipeline)
        .args(["-p", project])
        .env("EC2_PRIVATE_KEY", &lab.private_key)
        .env("EC2_KNOWN_HOSTS", &lab.known_hosts)
        .env_remove("AWS_EC2_INSTANCE")
        .env_remove("EC2_DOCKER_SOCKET")
        .env_remove("EC2_HOST_KEY")
        .env_remove("EC2_ACCEPT_NEW_HOST_KEY")
        .env_remove("SWARM_HOSTS");
    command
}

/// `deployer setup ARGS` against the lab's swarm.
pub fn setup(lab: &SwarmLab, pipeline: &Path, project: &str, args: &[&str]) -> Output {
    setup_with(lab, pipeline, project, args, &[])
}

/// `deployer setup ARGS` against the lab's swarm, with `env` set.
pub fn setup_with(
    lab: &SwarmLab,
    pipeline: &Path,
    project: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    lab_deployer(lab, pipeline, project)
        .arg("setup")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run deployer setup")
}

/// The signing key every frontend replica shares (a session made by one
/// is good at all of them): base64 of 48 bytes.
pub const SESSION_KEY: &str = "c3dhcm0tbGFiLXNlc3Npb24ta2V5LWZvci10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm";

/// `deployer ARGS` against the lab's swarm, as a CI job would run it: the
/// API's credentials and the UI's session key set, no registry (images are
/// copied from this machine's Docker), `env` on top.
pub fn deployer_on(
    lab: &SwarmLab,
    pipeline: &Path,
    project: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    lab_deployer(lab, pipeline, project)
        .args(args)
        .env("API_USERNAME", "root")
        .env("API_PASSWORD", "root")
        .env("UI_SESSION_KEY", SESSION_KEY)
        .env_remove("DOCKER_REGISTRY")
        .envs(env.iter().copied())
        .output()
        .expect("run deployer")
}

/// A load through every node's edge (port 80 for the UI, 5000 for the
/// API): per node, one [`Load`] of `readers` API and UI readers and
/// `writers` writers, its students named `<prefix><node>-…`.
pub fn edge_loads(lab: &SwarmLab, prefix: &str, readers: usize, writers: usize) -> Vec<Load> {
    lab.nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            Load::start(
                Target {
                    api: format!("http://{}:5000", node.addr),
                    ui: format!("http://{}", node.addr),
                    https: None,
                },
                &format!("{prefix}{i}"),
                readers,
                writers,
            )
        })
        .collect()
}
