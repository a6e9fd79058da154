//! `deployer setup` with a swarm as the deploy target, against three real
//! Docker daemons reached over SSH as EC2 hosts would be: each node of the
//! lab (support::swarm_lab) is a dockerd with its own sshd in its own
//! network namespace, and its Docker socket at a path of its own.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bollard::query_parameters::LeaveSwarmOptions;

use crate::support::load::Load;
use crate::support::swarm_lab::{LabNode, SwarmLab};
use crate::support::swarm_target::{
    deployer_on, edge_loads, setup, setup_with, swarm_files, swarm_pipeline,
};
use crate::support::{self, TestImage, build_images, text};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node as the swarm's manager lists it.
#[derive(Debug)]
struct Listed {
    id: String,
    role: String,
    state: String,
    labels: Vec<(String, String)>,
}

/// The swarm as node 1 (the manager) lists it.
fn nodes(lab: &SwarmLab) -> Vec<Listed> {
    let listed = lab
        .block_on(lab.nodes[0].docker().list_nodes(None))
        .expect("node 1 lists the swarm's nodes");
    listed
        .into_iter()
        .map(|n| {
            let spec = n.spec.unwrap_or_default();
            let status = n.status.unwrap_or_default();
            Listed {
                id: n.id.unwrap_or_default(),
                role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
                state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                labels: spec.labels.unwrap_or_default().into_iter().collect(),
            }
        })
        .collect()
}

/// Node `i`'s own swarm node ID, as its daemon says.
fn node_id(lab: &SwarmLab, i: usize) -> String {
    lab.block_on(lab.nodes[i].docker().info())
        .unwrap()
        .swarm
        .and_then(|s| s.node_id)
        .unwrap_or_default()
}

#[test]
fn setup_makes_a_swarm_of_fresh_hosts_leaves_a_ready_one_alone_and_rejoins_a_host_that_left() {
    let lab = SwarmLab::start();
    let project = format!("swtest-{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let pipeline = swarm_pipeline(&lab, work.path());
    let (t1, t2, t3) = (lab.target(0), lab.target(1), lab.target(2));

    // The lab's own promise first (images come from this machine's
    // daemon), with a tiny image built here: nothing is pulled.
    let image = support::TestImage::build(
        "swarm-lab-probe",
        "FROM scratch\nCOPY probe.txt /probe.txt\n",
        &[("probe.txt", "probe\n")],
    );
    lab.load_images(&[&image.name()]);
    for node in &lab.nodes {
        lab.block_on(node.docker().inspect_image(&image.name()))
            .unwrap_or_else(|e| panic!("{} lacks {}: {e}", node.name, image.name()));
    }

    // Three fresh hosts become one swarm.
    let started = Instant::now();
    let out = setup(&lab, &pipeline, &project, &[]);
    let first = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    eprintln!("{said}");
    for expected in [
        format!("made a new swarm on {t1} (manager)"),
        format!("{t2} joined the swarm as a worker"),
        format!("{t3} joined the swarm as a worker"),
        "removed the `ingress` network".to_owned(),
        format!("created the overlay network {project}_default (attachable)"),
        format!("labelled {t2} as the data host ({project}.data=true)"),
    ] {
        assert!(said.contains(&expected), "missing {expected:?} in:\n{said}");
    }
    // The join tokens went to the daemons only.
    let swarm = lab.block_on(lab.nodes[0].docker().inspect_swarm()).unwrap();
    let tokens = swarm.join_tokens.unwrap();
    for token in [tokens.worker.unwrap(), tokens.manager.unwrap()] {
        assert!(!token.is_empty());
        assert!(!text(&out).contains(&token), "a join token was printed");
    }

    let listed = nodes(&lab);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|n| n.state == "ready"), "{listed:?}");
    let ids: Vec<String> = (0..3).map(|i| node_id(&lab, i)).collect();
    let role = |id: &str| listed.iter().find(|n| n.id == id).unwrap().role.clone();
    assert_eq!(
        [role(&ids[0]), role(&ids[1]), role(&ids[2])],
        ["manager", "worker", "worker"]
    );
    let label = (format!("{project}.data"), "true".to_owned());
    for (i, id) in ids.iter().enumerate() {
        let labels = &listed.iter().find(|n| &n.id == id).unwrap().labels;
        assert_eq!(labels.contains(&label), i == 1, "node {i}: {labels:?}");
    }
    let networks = lab
        .block_on(lab.nodes[0].docker().list_networks(None))
        .unwrap();
    assert!(
        !networks.iter().any(|n| n.ingress == Some(true)),
        "the ingress network is still there"
    );
    let overlay = networks
        .iter()
        .find(|n| n.name.as_deref() == Some(&format!("{project}_default")))
        .expect("the stack's overlay network");
    assert_eq!(overlay.driver.as_deref(), Some("overlay"));
    assert_eq!(overlay.scope.as_deref(), Some("swarm"));
    assert_eq!(overlay.attachable, Some(true));

    // A ready swarm: nothing to do, and it says so.
    let started = Instant::now();
    let out = setup(&lab, &pipeline, &project, &[]);
    let second = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("the swarm of 3 hosts was already set up; nothing changed."),
        "{said}"
    );
    assert_eq!((0..3).map(|i| node_id(&lab, i)).collect::<Vec<_>>(), ids);

    // A host that left (forced, as after a crash) is joined again, and the
    // record it left behind is removed.
    lab.block_on(
        lab.nodes[2]
            .docker()
            .leave_swarm(Some(LeaveSwarmOptions { force: true })),
    )
    .unwrap();
    let out = setup(&lab, &pipeline, &project, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{t3} is in no swarm (setup joins it as a worker)"))
            && stderr.contains("Nothing was changed."),
        "{stderr}"
    );
    let started = Instant::now();
    let out = setup(&lab, &pipeline, &project, &[]);
    let rejoin = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    eprintln!("{said}");
    assert!(
        said.contains(&format!("{t3} joined the swarm as a worker")),
        "{said}"
    );
    assert!(
        said.contains(&format!("removed the node record {}", &ids[2][..12])),
        "{said}"
    );
    let listed = nodes(&lab);
    let new_id = node_id(&lab, 2);
    assert_ne!(new_id, ids[2]);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|n| n.state == "ready"), "{listed:?}");
    assert!(listed.iter().any(|n| n.id == new_id), "{listed:?}");

    // --check agrees.
    let out = setup(&lab, &pipeline, &project, &["--check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("the swarm of 3 hosts is ready for a deploy."),
        "{}",
        text(&out)
    );

    // --host still means that one host, whatever deploy.swarm says.
    let socket = lab.nodes[0].socket.to_string_lossy().into_owned();
    let out = setup_with(
        &lab,
        &pipeline,
        &project,
        &["--check", "--host", &t1],
        &[("EC2_DOCKER_SOCKET", &socket)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("{t1} is ready for a deploy.")),
        "{}",
        text(&out)
    );

    eprintln!(
        "swarm setup: lab start {:.1?}, 3 fresh hosts {first:.1?}, ready swarm {second:.1?}, \
         rejoin {rejoin:.1?}",
        lab.start_time
    );
    let left = lab.shutdown();
    assert!(left.is_empty(), "the swarm lab left behind: {left:#?}");
}

/// The log of `service`'s containers on `node`, once it holds `wanted`
/// (or after 10 s, as it is then).
fn wait_for_log(node: &LabNode, service: &str, wanted: &str) -> String {
    let host = format!("unix://{}", node.socket.display());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = support::run(
            "docker",
            &[
                "-H",
                &host,
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ],
        );
        let mut log = String::new();
        for id in ids.split_whitespace() {
            let out = Command::new("docker")
                .args(["-H", &host, "logs", id])
                .output()
                .expect("run docker logs");
            log.push_str(&String::from_utf8_lossy(&out.stdout));
            log.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        if log.contains(wanted) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_status(lab: &SwarmLab, pipeline: &Path, project: &str) -> serde_json::Value {
    let out = deployer_on(lab, pipeline, project, &["status", "--json"], &[]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", text(&out)))
}

#[test]
fn deploy_runs_the_stack_on_every_node_rolls_the_ui_without_a_failed_request_and_rolls_a_broken_image_back()
 {
    build_images();
    let broken = TestImage::build(
        "swarm-broken-ui",
        // It serves on another port than its healthcheck probes.
        "FROM student-ages-frontend:latest\n\
         ENTRYPOINT [\"/frontend\", \"--listen-addr\", \"0.0.0.0:8081\"]\n",
        &[],
    );
    let lab = SwarmLab::start();
    let project = format!("swdeploy-{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let pipeline = swarm_files(&lab, work.path());
    let deploy = |env: &[(&str, &str)]| {
        let started = Instant::now();
        let out = deployer_on(
            &lab,
            &pipeline,
            &project,
            &["deploy", "--tag", "latest"],
            env,
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        (out, started.elapsed())
    };

    let out = deployer_on(&lab, &pipeline, &project, &["setup"], &[]);
    assert!(out.status.success(), "{}", text(&out));

    // The first deploy: images copied into every node, the data seeded on
    // the data host, the services created and converged, the checks
    // passed through the data host's edge.
    let (out, first) = deploy(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("deployed latest to the swarm of 3 hosts (3 of 3 services changed)"),
        "{said}"
    );
    assert!(
        said.contains("PASS  frontend renders the student list"),
        "{said}"
    );

    // The UI on every node's port 80, the API through the data host's edge
    // (and any other's: every edge finds the API by DNS).
    for node in &lab.nodes {
        let (status, body) = support::get(&format!("http://{}/login", node.addr), false);
        assert_eq!(status, 200, "the UI on {}: {body}", node.name);
        let (status, body) = support::get(
            &format!("http://{}:5000/supmit/api/v1.0/get_student_ages", node.addr),
            true,
        );
        assert_eq!(status, 200, "the API through {}'s edge: {body}", node.name);
    }
    let data = &lab.nodes[1];
    let (status, body) = support::get(
        &format!(
            "http://{}:5000/supmit/api/v1.0/get_student_ages/alice",
            data.addr
        ),
        true,
    );
    assert_eq!(
        (status, body.trim()),
        (200, "12"),
        "the seed's data on the data host"
    );

    // A wrong password through another node's edge: the API, reached over
    // the overlay, trusts the edge's address there and logs the client's
    // (this machine's, on the lab's network), not the edge's.
    let (status, _) = support::get_with_password(
        &format!(
            "http://{}:5000/supmit/api/v1.0/get_student_ages",
            lab.nodes[0].addr
        ),
        "wrong",
    );
    assert_eq!(status, 401);
    let lab_net = {
        let octets = data.addr.octets();
        format!("client={}.{}.{}.", octets[0], octets[1], octets[2])
    };
    let api_log = wait_for_log(data, &format!("{project}_api"), "failed basic-auth attempt");
    let line = api_log
        .lines()
        .find(|l| l.contains("failed basic-auth attempt"))
        .unwrap_or_else(|| panic!("no failed attempt in the API's log:\n{api_log}"));
    assert!(line.contains(&lab_net), "the client, not the edge: {line}");

    // Its status: replicas, nodes with their tasks, the quorum.
    let status = json_status(&lab, &pipeline, &project);
    assert_eq!(status["healthy"], true, "{status:#}");
    let service = |name: &str| {
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            service("frontend")["running"].as_u64(),
            service("frontend")["desired"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(service("edge")["mode"], "global");
    assert_eq!(service("edge")["running"], 3);
    assert_eq!(service("api")["running"], 1);
    assert_eq!(status["swarm"]["quorum"]["ok"], true);
    let nodes = status["swarm"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let data_node = nodes.iter().find(|n| n["data"] == true).unwrap();
    assert!(
        data_node["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["service"] == "api" && t["health"] == "healthy"),
        "{data_node:#}"
    );
    assert!(status["students"].as_u64().is_some(), "{status:#}");
    let out = deployer_on(&lab, &pipeline, &project, &["status"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    assert!(
        table.contains("managers: 1 of 1 reachable, 1 needed for a quorum: ok")
            && table.contains("frontend  replicated  3/3      running  healthy"),
        "{table}"
    );

    // The deploy lock, which the first host keeps: free between deploys.
    let out = deployer_on(&lab, &pipeline, &project, &["lock", "status"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&lab.nodes[0].addr.to_string()) && said.contains("no deploy holds it"),
        "{said}"
    );

    // Its logs: every node's tasks of a service, each line prefixed by the
    // service and slot, the task and the node.
    let out = deployer_on(
        &lab,
        &pipeline,
        &project,
        &["logs", "frontend", "--tail", "3"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let logs = String::from_utf8_lossy(&out.stdout);
    for node in &lab.nodes {
        assert!(
            logs.lines()
                .any(|l| l.starts_with("frontend.") && l.contains(&format!("@{}", node.addr))),
            "a line from {}'s task: {logs}",
            node.name
        );
    }

    // A service of the stack that the compose file no longer has (none
    // of its tasks run): the next deploy removes it, once the rest serves.
    let retired = format!("{project}_retired");
    lab.block_on(lab.nodes[0].docker().create_service(
        bollard::models::ServiceSpec {
            name: Some(retired.clone()),
            labels: Some(std::collections::HashMap::from([(
                "com.docker.compose.project".to_owned(),
                project.clone(),
            )])),
            mode: Some(bollard::models::ServiceSpecMode {
                replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(0) }),
                ..Default::default()
            }),
            task_template: Some(bollard::models::TaskSpec {
                container_spec: Some(bollard::models::TaskSpecContainerSpec {
                    image: Some("student-ages-api:latest".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        None,
    ))
    .unwrap();

    // A rolling update of the UI (its log level changes, nothing else)
    // under load through every node's edge: no request fails.
    let loads = edge_loads(&lab, "sw", 1, 1);
    std::thread::sleep(Duration::from_secs(1));
    let (out, update) = deploy(&[("FRONTEND_LOG", "debug")]);
    // Then the API's (one task on the data host, replaced beside itself):
    // the edges check the new task before it gets a request and drain the
    // old one.
    let (api_out, api_update) = deploy(&[("FRONTEND_LOG", "debug"), ("API_LOG", "debug")]);
    std::thread::sleep(Duration::from_secs(1));
    let reports: Vec<_> = loads.into_iter().map(Load::stop).collect();
    assert!(api_out.status.success(), "{}", text(&api_out));
    assert!(
        String::from_utf8_lossy(&api_out.stdout).contains("(1 of 3 services changed)"),
        "{}",
        text(&api_out)
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(1 of 3 services changed)"), "{said}");
    assert!(
        said.contains(&format!(
            "removed 1 service(s) the compose file no longer has: {retired}"
        )),
        "{said}"
    );
    assert!(
        lab.block_on(lab.nodes[0].docker().inspect_service(
            &retired,
            None::<bollard::query_parameters::InspectServiceOptions>
        ))
        .is_err(),
        "{retired} is gone"
    );
    let api = format!("http://{}:5000", data.addr);
    for report in &reports {
        report.assert_nothing_failed_or_lost(&api);
    }
    let requests: usize = reports.iter().map(|r| r.requests).sum();

    // A broken UI image: its tasks never turn healthy; the swarm rolls the
    // update back, and the deploy says so with the task's node and log.
    let broken_repo = broken.repository.clone();
    let (out, failed) = deploy(&[
        ("FRONTEND_LOG", "debug"),
        ("API_LOG", "debug"),
        ("DOCKER_IMAGE_FRONTEND", &broken_repo),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        stderr.contains("the update of frontend failed and the swarm rolled it back"),
        "{stderr}"
    );
    assert!(stderr.contains("on node dl"), "the task's node: {stderr}");
    assert!(stderr.contains("0.0.0.0:8081"), "the task's log: {stderr}");
    assert!(
        stderr.contains("turned unhealthy"),
        "why it failed: {stderr}"
    );
    let status = json_status(&lab, &pipeline, &project);
    let frontend = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "frontend")
        .cloned()
        .unwrap();
    assert_eq!(frontend["running"], 3, "{status:#}");
    assert!(
        !frontend["image"].as_str().unwrap().contains(&broken_repo),
        "{status:#}"
    );
    for node in &lab.nodes {
        let (status, _) = support::get(&format!("http://{}/login", node.addr), false);
        assert_eq!(status, 200, "the UI on {} after the rollback", node.name);
    }

    // `backup` saves the data host's file here; after a change, `restore`
    // puts it back through the API there, saving the live file first.
    let saved = tempfile::tempdir().unwrap();
    let out_dir = saved.path().to_str().unwrap();
    let out = deployer_on(
        &lab,
        &pipeline,
        &project,
        &["backup", "--out", out_dir],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let files = || support::files_in(saved.path());
    let [backup] = &files()[..] else {
        panic!("one backup: {:?}", files())
    };
    let student = format!(
        "http://{}:5000/supmit/api/v1.0/student_ages/alice",
        lab.nodes[0].addr
    );
    lab.block_on(async {
        let response = reqwest::Client::new()
            .put(&student)
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 40}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    });
    let out = deployer_on(
        &lab,
        &pipeline,
        &project,
        &["restore", backup.to_str().unwrap(), "--out", out_dir],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, age) = support::get(&student.replace("student_ages/", "get_student_ages/"), true);
    assert_eq!(age.trim(), "12", "the backup's data is back");
    assert_eq!(files().len(), 2, "the live file was saved first");

    // `deploy --reseed-data`: the data host's file becomes the seed's
    // again (a student written since is gone), the live one kept beside
    // it, and the running API serves the new file.
    let (status, _) = lab.block_on(async {
        let response = reqwest::Client::new()
            .put(student.replace("/alice", "/reseedcheck"))
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 5}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    });
    assert_eq!(status, 201);
    let out = deployer_on(
        &lab,
        &pipeline,
        &project,
        &["deploy", "--reseed-data", "--tag", "latest"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("the live file was kept as student_age.json.backup-"),
        "{}",
        text(&out)
    );
    let (status, _) = support::get(
        &student.replace("student_ages/alice", "get_student_ages/reseedcheck"),
        true,
    );
    assert_eq!(status, 404, "the seed's data is back");

    // `rollback`: with only one version deployed there is nothing to go
    // back to; after a deploy of another tag, it puts `latest` back.
    let out = deployer_on(&lab, &pipeline, &project, &["rollback"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no earlier version"), "{}", text(&out));
    let v2 = format!("swv2-{}", std::process::id());
    let retagged: Vec<String> = ["api", "frontend", "edge"]
        .iter()
        .map(|service| {
            let tagged = format!("student-ages-{service}:{v2}");
            support::docker(&["tag", &format!("student-ages-{service}:latest"), &tagged]);
            tagged
        })
        .collect();
    let out = deployer_on(&lab, &pipeline, &project, &["deploy", "--tag", &v2], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let image_of = |name: &str| {
        json_status(&lab, &pipeline, &project)["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .unwrap()["image"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        image_of("frontend").contains(&v2),
        "{}",
        image_of("frontend")
    );
    let rolled = Instant::now();
    let out = deployer_on(&lab, &pipeline, &project, &["rollback"], &[]);
    let rollback = rolled.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hosts back to latest"),
        "{}",
        text(&out)
    );
    assert!(
        image_of("frontend").ends_with(":latest"),
        "{}",
        image_of("frontend")
    );
    assert!(image_of("api").ends_with(":latest"), "{}", image_of("api"));
    let (status, _) = support::get(&format!("http://{}/login", lab.nodes[2].addr), false);
    assert_eq!(status, 200, "the UI after the rollback");
    support::docker(
        &[
            &["rmi"],
            &retagged.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    );

    // Losing a node: the third (neither the manager nor the data host) is
    // cut off the network. The swarm marks it down, its UI task starts on
    // the others, their edges stop sending it requests, and `status` says
    // which node is down.
    let lost = lab.nodes[2].addr.to_string();
    let cut = Instant::now();
    lab.cut_off(2);
    let deadline = Instant::now() + Duration::from_secs(120);
    let moved = loop {
        let out = deployer_on(&lab, &pipeline, &project, &["status", "--json"], &[]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", text(&out)));
        let nodes = status["swarm"]["nodes"].as_array().unwrap();
        let down = nodes
            .iter()
            .any(|n| n["addr"] == lost.as_str() && n["state"] == "down");
        let ui_elsewhere = nodes
            .iter()
            .filter(|n| n["addr"] != lost.as_str())
            .flat_map(|n| n["tasks"].as_array().unwrap())
            .filter(|t| t["service"] == "frontend" && t["state"] == "running")
            .count();
        if down && ui_elsewhere == 3 {
            assert_eq!(out.status.code(), Some(1), "a node is down: {status:#}");
            assert_eq!(status["healthy"], false, "{status:#}");
            assert!(
                status["swarm"]["unreachable"][0]["host"]
                    .as_str()
                    .is_some_and(|h| h.ends_with(&lost)),
                "{status:#}"
            );
            break cut.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the UI's tasks did not move off the lost node: {status:#}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let out = deployer_on(&lab, &pipeline, &project, &["status"], &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!("({lost}) is down")) && table.contains("cannot be reached"),
        "{table}"
    );
    for node in &lab.nodes[..2] {
        for _ in 0..20 {
            let (status, _) = support::get(&format!("http://{}/login", node.addr), false);
            assert_eq!(
                status, 200,
                "the UI through {} without the lost node",
                node.name
            );
        }
    }
    lab.reconnect(2);

    eprintln!(
        "swarm deploy: lab start {:.1?}, first deploy {first:.1?}, rolling UI update \
         {update:.1?} then API update {api_update:.1?} under {requests} requests (0 failed), \
         broken image rolled back in \
         {failed:.1?}, rollback of three services {rollback:.1?}, the UI moved off a lost \
         node in {moved:.1?}",
        lab.start_time
    );
    let left = lab.shutdown();
    assert!(left.is_empty(), "the swarm lab left behind: {left:#?}");
}
