//! Deploy timings on the one-machine "EC2" environment of the tests (a
//! registry with auth, an sshd, a second Docker daemon): a first deploy onto
//! an empty host, a deploy that changes one image, and a no-op deploy, each
//! repeated — through the registry, then with no registry (images copied
//! from this machine's Docker over SSH) onto a second empty host; then
//! deploys that change the API image while a bounded load (API reads, UI
//! pages, API writes) runs: requests served, failed, p99 during the switch.
//! Prints figures; asserts nothing about time (the machines are shared and
//! noisy).
//!
//!   cargo bench -p deployer --bench deploy [-- RUNS]

#[path = "../tests/deployer/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::ec2::Ec2;
use support::{summary, text};

#[derive(Clone, Copy, PartialEq)]
enum Images {
    Registry,
    Copied,
}

fn timed(env: &Ec2, tag: &str, images: Images) -> Duration {
    let mut command = env.deployer(&["deploy", "--tag", tag]);
    if images == Images::Copied {
        command.env_remove("DOCKER_REGISTRY");
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    took
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    support::build_images();
    // Two versions that differ in the API image only, tagged here for the
    // whole run (the registry-less deploys copy them from here).
    let v2_api = support::TestImage::build(
        "bench-api-v2",
        "FROM student-ages-api:latest\nLABEL bench=v2\n",
        &[],
    );
    let mut tags = Vec::new();
    for (tag, api) in [
        ("v1", "student-ages-api:latest".to_owned()),
        ("v2", v2_api.name()),
    ] {
        for (service, image) in [
            ("api", api.as_str()),
            ("frontend", "student-ages-frontend:latest"),
            ("edge", "student-ages-edge:latest"),
        ] {
            let tagged = format!("student-ages-{service}:{tag}");
            support::docker(&["tag", image, &tagged]);
            tags.push(tagged);
        }
    }
    for images in [Images::Registry, Images::Copied] {
        let env = Ec2::start();
        if images == Images::Registry {
            for tag in ["v1", "v2"] {
                let out = env.deployer(&["push", "--tag", tag]).output().unwrap();
                assert!(out.status.success(), "{}", text(&out));
            }
        }
        let how = match images {
            Images::Registry => "registry",
            Images::Copied => "no registry",
        };
        let cold = timed(&env, "v1", images);
        summary(&format!("{how}: first deploy onto the empty host"), &[cold]);
        let mut one_image = Vec::new();
        let mut noop = Vec::new();
        for i in 0..runs {
            let tag = if i % 2 == 0 { "v2" } else { "v1" };
            one_image.push(timed(&env, tag, images));
            noop.push(timed(&env, tag, images));
        }
        summary(&format!("{how}: deploy changing one image"), &one_image);
        summary(&format!("{how}: no-op deploy"), &noop);
    }
    under_load(runs);
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    support::docker(&[&["rmi"], tags.as_slice()].concat());
}

/// Deploys alternating the API image between v1 and v2 on a warm host
/// (no registry) while a load runs.
fn under_load(runs: usize) {
    let env = Ec2::start();
    let deploy = |tag: &str| {
        let started = Instant::now();
        let out = env
            .deployer(&["deploy", "--tag", tag])
            .env_remove("DOCKER_REGISTRY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        started.elapsed()
    };
    deploy("v1");
    let load = support::load::Load::start(
        support::load::Target {
            api: format!("http://127.0.0.1:{}", env.host.api_port),
            ui: format!("http://127.0.0.1:{}", env.host.frontend_port),
            https: None,
        },
        "bench",
        3,
        2,
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut windows = Vec::new();
    for i in 0..runs {
        let from = load.started.elapsed();
        let took = deploy(if i % 2 == 0 { "v2" } else { "v1" });
        windows.push((from, load.started.elapsed(), took));
        std::thread::sleep(Duration::from_secs(1));
    }
    let report = load.stop();
    let took: Vec<Duration> = windows.iter().map(|w| w.2).collect();
    summary("under load: deploy changing one image", &took);
    let p99s: Vec<String> = windows
        .iter()
        .filter_map(|(from, to, _)| report.p99_between(*from, *to))
        .map(|p| format!("{:.1} ms", p.as_secs_f64() * 1000.0))
        .collect();
    let all = report.p99_between(Duration::ZERO, Duration::MAX);
    println!(
        "under load: {} requests, {} failed; p99 during each switch: {}; p99 overall {:.1} ms",
        report.requests,
        report.failures.len(),
        p99s.join(", "),
        all.unwrap_or_default().as_secs_f64() * 1000.0
    );
    for failure in report.failures.iter().take(10) {
        println!("  failed: {failure}");
    }
}
