//! `deployer lock status|release`: see who holds the host's deploy lock and
//! whether that deploy is still connected; release a lock a killed deploy
//! left behind (as Kamal's `lock release`), never a live one. On a swarm,
//! the lock the first host keeps.

use crate::host::{self, DeployTarget, HostDir, HostFlags, Unverifiable, lock};
use crate::progress::Progress;
use crate::workspace::Workspace;

/// What to do with the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Status,
    Release(Unverifiable),
}

pub async fn run(
    workspace: &Workspace,
    flags: &HostFlags,
    verb: Verb,
    progress: &Progress,
) -> anyhow::Result<()> {
    // On a swarm, the first host keeps the lock, as a deploy takes it.
    let remote = match host::deploy_target(workspace, flags)? {
        DeployTarget::Host(..) => host::connect(workspace, flags).await?.0,
        DeployTarget::Swarm(swarm, ssh) => crate::swarm::connect_keeper(&swarm, &ssh).await?,
    };
    let result = async {
        let dir = HostDir::open(&remote).await?;
        match verb {
            Verb::Status => {
                let found = dir.find_lock(&remote).await?;
                progress.out(&format!(
                    "deploy lock on {}: {}",
                    remote.target,
                    lock::explain(&found, &remote)
                ));
            }
            Verb::Release(unverifiable) => {
                let found = dir.release_stale(&remote, unverifiable).await?;
                progress.out(&match found {
                    lock::Found::Free => format!("no lock to release on {}", remote.target),
                    lock::Found::Held { holder, .. } => format!(
                        "released the stale lock on {} (it was held by {})",
                        remote.target,
                        holder.map_or("someone".to_owned(), |h| h.to_string())
                    ),
                });
            }
        }
        Ok(())
    }
    .await;
    remote.close().await;
    result
}
