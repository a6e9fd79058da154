//! Deploy timings on the one-machine "EC2" environment of the tests (a
//! registry with auth, an sshd, a second Docker daemon): a deploy that
//! changes one image, and a no-op deploy, each repeated. Prints figures;
//! asserts nothing about time (the machines are shared and noisy).
//!
//!   cargo bench -p deployer --bench deploy [-- RUNS]

#[path = "../tests/deployer/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::ec2::Ec2;
use support::text;

fn timed(env: &Ec2, tag: &str) -> Duration {
    let started = Instant::now();
    let out = env.deployer(&["deploy", "--tag", tag]).output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    took
}

fn summary(name: &str, runs: &[Duration]) {
    let secs: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let min = secs.iter().cloned().fold(f64::MAX, f64::min);
    let max = secs.iter().cloned().fold(0.0, f64::max);
    println!(
        "{name:<40} mean {mean:.2} s  min {min:.2} s  max {max:.2} s  ({} runs)",
        secs.len()
    );
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    support::build_images();
    let env = Ec2::start();
    // Two versions that differ in the API image only.
    let v2_api = support::TestImage::build(
        "bench-api-v2",
        "FROM student-ages-api:latest\nLABEL bench=v2\n",
        &[],
    );
    for (tag, api) in [
        ("v1", "student-ages-api:latest"),
        ("v2", v2_api.name().as_str()),
    ] {
        support::docker(&["tag", api, &format!("student-ages-api:{tag}")]);
        support::docker(&[
            "tag",
            "student-ages-frontend:latest",
            &format!("student-ages-frontend:{tag}"),
        ]);
        let out = env.deployer(&["push", "--tag", tag]).output().unwrap();
        support::docker(&[
            "rmi",
            &format!("student-ages-api:{tag}"),
            &format!("student-ages-frontend:{tag}"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }

    let cold = timed(&env, "v1");
    summary("first deploy onto the empty host", &[cold]);
    let mut one_image = Vec::new();
    let mut noop = Vec::new();
    for i in 0..runs {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        one_image.push(timed(&env, tag));
        noop.push(timed(&env, tag));
    }
    summary("deploy changing one image (warm host)", &one_image);
    summary("no-op deploy", &noop);
}
