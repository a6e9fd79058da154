//! `deployer setup`: prepare the deploy host over SSH (install and start
//! Docker, let the SSH user use it, bound its logs, make ~/student-ages), or
//! with `--check` only say whether a deploy could run there. With a swarm
//! as the target (deploy.swarm in pipeline.yaml), make the swarm instead.

use crate::host::{DeployTarget, HostFlags, deploy_target};
use crate::progress::Progress;
use crate::remote::Remote;
use crate::setup;
use crate::swarm;
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
    let (target, connect) = match deploy_target(workspace, &options.host)? {
        DeployTarget::Host(target, connect) => (target, connect),
        DeployTarget::Swarm(settings, ssh) => {
            if options.check {
                let report = swarm::check(workspace, &settings, &ssh, progress).await?;
                println!("{report}");
                report.verdict()?;
                println!("the swarm of {} hosts is ready for a deploy.", report.hosts);
            } else {
                let report = swarm::setup(workspace, &settings, &ssh, progress).await?;
                println!("{report}");
            }
            return Ok(());
        }
    };
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
