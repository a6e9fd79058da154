//! `deployer setup`: prepare the deploy host over SSH (install and start
//! Docker, let the SSH user use it, bound its logs, make ~/student-ages), or
//! with `--check` only say whether a deploy could run there.

use crate::host::{HostFlags, target};
use crate::progress::Progress;
use crate::remote::Remote;
use crate::setup;
use crate::workspace::Workspace;

pub struct Options {
    pub host: HostFlags,
    /// Only read what the host has and say whether a deploy could run.
    pub check: bool,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let (target, connect) = target(workspace, &options.host)?;
    let mut remote = Remote::connect(&target, &connect).await?;
    let result = async {
        if options.check {
            let facts = setup::probe(&remote, &connect.docker_socket).await?;
            println!("{facts}");
            setup::check_ready(&facts)?;
            println!("{target} is ready for a deploy.");
        } else {
            let report = setup::setup(&mut remote, &connect, progress).await?;
            println!("{report}");
        }
        Ok(())
    }
    .await;
    remote.close().await;
    result
}
