//! Running a program inside a running container (`docker exec`), the way
//! the deployer talks to the edge: its image is `FROM scratch`, so the
//! program is the edge binary itself.

use anyhow::{Context, anyhow};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::message;

/// What a program run in a container said and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ran {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub(crate) fn success(&self) -> bool {
        self.code == 0
    }
}

/// Runs `argv` in `container` and waits for it to end.
pub(crate) async fn exec(docker: &Docker, container: &str, argv: &[&str]) -> anyhow::Result<Ran> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot run {} in {container}: {}",
                argv.join(" "),
                message(&e)
            )
        })?;
    let mut ran = Ran {
        code: -1,
        stdout: String::new(),
        stderr: String::new(),
    };
    match docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("cannot start {} in {container}", argv.join(" ")))?
    {
        StartExecResults::Attached { mut output, .. } => {
            while let Some(chunk) = output.next().await {
                match chunk.with_context(|| format!("reading {} in {container}", argv[0]))? {
                    LogOutput::StdOut { message } => {
                        ran.stdout.push_str(&String::from_utf8_lossy(&message))
                    }
                    LogOutput::StdErr { message } => {
                        ran.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    _ => {}
                }
            }
        }
        StartExecResults::Detached => unreachable!("the exec was started attached"),
    }
    let inspected = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| anyhow!("cannot read how {} ended: {}", argv[0], message(&e)))?;
    ran.code = inspected.exit_code.unwrap_or(-1);
    Ok(ran)
}
