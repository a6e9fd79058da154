//! What a user reads, snapshotted so a change in wording shows up in review:
//! the help texts and the errors for broken files.

use crate::support;

use crate::support::deployer;

fn stdout(args: &[&str]) -> String {
    let out = deployer()
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help() {
    insta::assert_snapshot!(stdout(&["--help"]));
}

#[test]
fn deploy_help() {
    insta::assert_snapshot!(stdout(&["deploy", "--help"]));
}

#[test]
fn up_help() {
    insta::assert_snapshot!(stdout(&["up", "--help"]));
}

#[test]
fn errors_for_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |pipeline: &str, compose: &str| {
        std::fs::write(dir.path().join("pipeline.yaml"), pipeline).unwrap();
        std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
        let out = deployer()
            .args([
                "--file",
                dir.path().join("pipeline.yaml").to_str().unwrap(),
                "status",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr)
            .unwrap()
            .replace(dir.path().to_str().unwrap(), "[DIR]")
    };
    let pipeline =
        "images: {}\ntest:\n  auth: {username: root, password: \"${P:-x}\"}\n  checks: []\n";
    let compose = "services:\n  api:\n    image: api:latest\n";
    let cases = [
        run(&format!("{pipeline}registy: docker.io\n"), compose),
        run(pipeline, &format!("{compose}    privileged: true\n")),
        run(
            pipeline,
            "services:\n  api:\n    image: api\n    ports: [\"80:eighty\"]\n",
        ),
        run(
            pipeline,
            "services:\n  api:\n    image: ${IMAGE:?set IMAGE to the API image}\n",
        ),
        run(
            &pipeline.replace(
                "checks: []",
                "checks: [{name: x, service: api, request: FETCH /, expect: {status: 200}}]",
            ),
            compose,
        ),
        run(&pipeline.replace("\"${P:-x}\"", "hunter2"), compose),
    ];
    insta::assert_snapshot!(cases.join("\n"));
}

#[test]
fn setup_help() {
    insta::assert_snapshot!(stdout(&["setup", "--help"]));
}

#[test]
fn restore_refuses_a_file_that_is_not_a_data_file_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("class.json");
    std::fs::write(&backup, "{\"alice\": 12,\n \"bob\" 13}").unwrap();
    // --file names the pipeline; the FILE argument is the backup, not it.
    let out = deployer()
        .arg("--file")
        .arg(support::root().join("pipeline.yaml"))
        .arg("restore")
        .arg(&backup)
        .args(["--host", "nobody@127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("class.json is not a data file") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(stderr.contains("Nothing was changed"), "{stderr}");
}
