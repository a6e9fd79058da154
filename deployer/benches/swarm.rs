//! Swarm timings on the three-node lab of the tests (support::swarm_lab:
//! three dockerds with their sshds in network namespaces, reached over SSH
//! as EC2 hosts would be), no registry:
//!
//! - `deployer setup` making a swarm of 3 fresh nodes (a new lab each run);
//! - a no-op `deployer deploy` (nothing changed);
//! - a rolling update of the frontend (3 replicas, start-first, one at a
//!   time): a deploy where only the frontend image changed (alternating
//!   between the built one and a copy with a LABEL, both already on every
//!   node, so no image is copied during it), under a bounded load through
//!   every node's edge (per node: an API reader, a signed-in UI reader, an
//!   API writer): requests served, failed, p99 during each update.
//!
//! Each repeated RUNS times (default 3). Prints figures; asserts nothing
//! about time (the machines are shared and noisy), only that every command
//! succeeded and the lab left nothing behind.
//!
//!   cargo bench -p deployer --bench swarm [-- RUNS]

#[path = "../tests/deployer/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::load::{Load, Report};
use support::swarm_lab::SwarmLab;
use support::swarm_target::{FRONTEND_REPLICAS, deployer_on, edge_loads, setup, swarm_files};
use support::{TestImage, summary, text};

/// Runs `command`, asserts it succeeded and its stdout holds `expected`;
/// how long it took.
fn timed(expected: &str, command: impl FnOnce() -> Output) -> Duration {
    let started = Instant::now();
    let out = command();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(expected),
        "expected {expected:?}:\n{}",
        text(&out)
    );
    took
}

/// Tears the lab down; panics naming what it left.
fn shut_down(lab: SwarmLab) {
    let left = lab.shutdown();
    assert!(left.is_empty(), "the swarm lab left behind: {left:#?}");
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    support::build_images();
    let v2 = TestImage::build(
        "bench-swarm-ui-v2",
        "FROM student-ages-frontend:latest\nLABEL bench=v2\n",
        &[],
    );
    let project = format!("swbench-{}", std::process::id());
    let mut setups = Vec::new();
    let mut lab_starts = Vec::new();
    for run in 0..runs {
        let lab = SwarmLab::start();
        lab_starts.push(lab.start_time);
        let work = tempfile::tempdir().unwrap();
        let pipeline = swarm_files(&lab, work.path());
        setups.push(timed("joined the swarm as a worker", || {
            setup(&lab, &pipeline, &project, &[])
        }));
        // The first lab also carries the deploys.
        if run == 0 {
            deploys(&lab, &pipeline, &project, &v2, runs);
        }
        shut_down(lab);
    }
    summary("swarm lab start (3 nodes, not deployer)", &lab_starts);
    summary("setup of 3 fresh nodes", &setups);
}

/// A first deploy, then per run a no-op deploy and a rolling update of the
/// frontend under load.
fn deploys(lab: &SwarmLab, pipeline: &Path, project: &str, v2: &TestImage, runs: usize) {
    let deploy = |env: &[(&str, &str)]| {
        deployer_on(lab, pipeline, project, &["deploy", "--tag", "latest"], env)
    };
    let first = timed("(3 of 3 services changed)", || deploy(&[]));
    summary("first deploy (images copied into 3 nodes)", &[first]);
    // Both frontend images on every node before the updates.
    lab.load_images(&[&v2.name()]);

    let loads = edge_loads(lab, "bench", 1, 1);
    std::thread::sleep(Duration::from_secs(2));
    let mut noop = Vec::new();
    let mut updates = Vec::new();
    let mut windows = Vec::new();
    let mut current: Vec<(&str, &str)> = Vec::new();
    for i in 0..runs {
        noop.push(timed("(0 of 3 services changed)", || deploy(&current)));
        current = if i % 2 == 0 {
            vec![("DOCKER_IMAGE_FRONTEND", v2.repository.as_str())]
        } else {
            Vec::new()
        };
        let from = Instant::now();
        updates.push(timed("(1 of 3 services changed)", || deploy(&current)));
        windows.push((from, Instant::now()));
        std::thread::sleep(Duration::from_secs(1));
    }
    let origin = loads[0].started;
    let shifts: Vec<Duration> = loads.iter().map(|l| l.started - origin).collect();
    let reports: Vec<Report> = loads.into_iter().map(Load::stop).collect();
    // One report of the three loads, its samples counted from `origin`.
    let mut all = Report::default();
    for (report, shift) in reports.into_iter().zip(shifts) {
        all.requests += report.requests;
        all.failures.extend(report.failures);
        all.samples.extend(
            report
                .samples
                .into_iter()
                .map(|(at, took)| (at + shift, took)),
        );
    }

    summary("no-op deploy (nothing changed)", &noop);
    summary(
        &format!("rolling update of the frontend ({FRONTEND_REPLICAS} replicas)"),
        &updates,
    );
    let ms = |d: Option<Duration>| match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "-".to_owned(),
    };
    let p99s: Vec<String> = windows
        .iter()
        .map(|(from, to)| ms(all.p99_between(*from - origin, *to - origin)))
        .collect();
    println!(
        "under load through the 3 edges: {} requests served, {} failed; p99 during each \
         update: {}; p99 overall {}",
        all.requests - all.failures.len(),
        all.failures.len(),
        p99s.join(", "),
        ms(all.p99_between(Duration::ZERO, Duration::MAX))
    );
    for failure in all.failures.iter().take(10) {
        println!("  failed: {failure}");
    }
    println!("rolling update target <= 15 s, zero failures");
}
