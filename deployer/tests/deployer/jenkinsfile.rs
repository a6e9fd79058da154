//! The Jenkinsfile, run: `jenkins/declarative.groovy` evaluates it with
//! Debian's Groovy under a small stand-in of Jenkins' declarative DSL and
//! prints each step a build would take, for a given job environment. So the
//! deploy guard and the environment handling the README describes are
//! checked as code, in a Multibranch job (BRANCH_NAME) and in a plain
//! Pipeline job (GIT_BRANCH), not only read.

use std::path::PathBuf;
use std::process::Command;

use crate::support;

/// The steps of a build of the Jenkinsfile with `env` as the job's
/// environment, one line each (`stage X`, `sh CMD`, `echo TEXT`, ...).
fn build(env: &[&str]) -> Vec<String> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/deployer/jenkins");
    let mut groovy = Command::new("groovy");
    groovy
        .arg(here.join("declarative.groovy"))
        .arg(support::root().join("Jenkinsfile"))
        .args(env)
        .current_dir(std::env::temp_dir());
    if std::env::var_os("JAVA_HOME").is_none()
        && !std::path::Path::new("/usr/lib/jvm/default-java").exists()
    {
        // Debian's groovy looks for default-java, which a JDK installed
        // without default-jre-headless does not provide.
        let java = std::fs::canonicalize("/usr/bin/java").expect("java is installed with groovy");
        groovy.env("JAVA_HOME", java.parent().unwrap().parent().unwrap());
    }
    let out = groovy
        .output()
        .expect("run groovy (scripts/test installs Debian's groovy package)");
    assert!(out.status.success(), "{}", support::text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stage<'a>(steps: &'a [String], name: &str) -> &'a [String] {
    let start = steps
        .iter()
        .position(|s| *s == format!("stage {name}"))
        .unwrap_or_else(|| panic!("no stage {name}: {steps:#?}"));
    let end = steps[start + 1..]
        .iter()
        .position(|s| s.starts_with("stage "))
        .map_or(steps.len(), |i| start + 1 + i);
    &steps[start + 1..end]
}

#[test]
fn a_multibranch_build_of_main_pushes_latest_and_deploys_with_the_api_credentials() {
    let steps = build(&["BRANCH_NAME=main"]);
    assert_eq!(
        stage(&steps, "Release").last().unwrap(),
        "sh $DEPLOYER push"
    );
    let deploy = stage(&steps, "Deploy");
    assert_eq!(deploy.last().unwrap(), "sh $DEPLOYER deploy");
    let credentials = &deploy[0];
    for binding in [
        "dockerhub-creds=DOCKER_USERNAME+DOCKER_PASSWORD",
        "api-creds=API_USERNAME+API_PASSWORD",
        "AWS_SSH_CREDENTIAL=EC2_PRIVATE_KEY",
    ] {
        assert!(credentials.contains(binding), "{credentials}");
    }
}

#[test]
fn a_plain_pipeline_job_of_main_deploys_too() {
    // A Pipeline job from SCM has no BRANCH_NAME; the git plugin sets GIT_BRANCH.
    let steps = build(&["GIT_BRANCH=origin/main"]);
    assert_eq!(
        stage(&steps, "Deploy").last().unwrap(),
        "sh $DEPLOYER deploy"
    );
    let steps = build(&["GIT_BRANCH=origin/release", "DEPLOY_BRANCH=release"]);
    assert_eq!(
        stage(&steps, "Deploy").last().unwrap(),
        "sh $DEPLOYER deploy"
    );
}

#[test]
fn other_branches_push_only_their_version_and_say_why_they_do_not_deploy() {
    for env in ["BRANCH_NAME=feature-x", "GIT_BRANCH=origin/feature-x"] {
        let steps = build(&[env]);
        assert_eq!(
            stage(&steps, "Release").last().unwrap(),
            "sh $DEPLOYER push --no-latest"
        );
        let deploy = stage(&steps, "Deploy");
        assert_eq!(
            deploy,
            [
                "echo Deploy skipped: this is a build of feature-x; only builds of main deploy \
              (DEPLOY_BRANCH)."
            ]
        );
    }
}

#[test]
fn a_job_that_tells_no_branch_says_so_and_does_not_deploy() {
    let steps = build(&[]);
    let deploy = stage(&steps, "Deploy");
    assert_eq!(deploy.len(), 1, "{deploy:?}");
    assert!(
        deploy[0].starts_with("echo Deploy skipped: this job tells no branch"),
        "{deploy:?}"
    );
    assert!(!steps.iter().any(|s| s == "sh $DEPLOYER deploy"));
}

#[test]
fn the_jenkinsfile_holds_no_job_settings_and_runs_only_the_deployer() {
    let steps = build(&["BRANCH_NAME=main"]);
    let env: Vec<&String> = steps.iter().filter(|s| s.starts_with("env ")).collect();
    assert_eq!(
        env,
        ["env DEPLOYER=target/x86_64-unknown-linux-gnu/release/deployer"],
        "settings of a job (host, images, host key) come from the job, not the file"
    );
    for command in steps.iter().filter_map(|s| s.strip_prefix("sh ")) {
        assert!(
            command.starts_with("$DEPLOYER ")
                || command.starts_with("RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build"),
            "a step other than the deployer: {command}"
        );
    }
}
