//! Images sent from one Docker daemon straight to another, for deploys with
//! no registry: `docker save` on this machine streamed into `docker load` on
//! the host, through the SSH-forwarded socket, with progress. Only images
//! the host lacks travel; nothing is written to disk on either side but by
//! the daemons themselves.

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::ImportImageOptions;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::HumanBytes;

use crate::progress::Progress;

/// What [`copy_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The host has this very image (same ID) under this name already.
    AlreadyThere,
    /// Sent: this many bytes of image archive.
    Sent(u64),
}

/// The architecture of `image` in `docker`, as Docker names it (`amd64`,
/// `arm64`).
pub async fn architecture(docker: &Docker, image: &str) -> anyhow::Result<String> {
    let inspected = docker
        .inspect_image(image)
        .await
        .map_err(|e| anyhow!("cannot inspect {image}: {}", crate::docker::message(&e)))?;
    Ok(inspected.architecture.unwrap_or_default())
}

/// Makes `to` hold `image` (`name:tag`) as `from` has it: streams
/// `from`'s archive of it into `to` unless `to` has the same image ID.
pub async fn copy_image(
    from: &Docker,
    to: &Docker,
    image: &str,
    progress: &Progress,
) -> anyhow::Result<Copied> {
    let local = from.inspect_image(image).await.map_err(|e| {
        anyhow!(
            "{image} is not in this machine's Docker ({}): with no registry configured, deploy \
             copies images from here; build them first (`deployer build`), or set \
             DOCKER_REGISTRY to pull from a registry",
            crate::docker::message(&e)
        )
    })?;
    let id = local.id.clone().unwrap_or_default();
    if let Ok(there) = to.inspect_image(image).await
        && there.id.as_deref() == Some(id.as_str())
    {
        return Ok(Copied::AlreadyThere);
    }
    let size = local.size.unwrap_or(0).max(1) as u64;
    let task = progress.task(image, "copying to the host");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = {
        let sent = sent.clone();
        let task = task.clone();
        let mut shown = 0;
        from.export_image(image).inspect_ok(move |chunk| {
            let total = sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
                + chunk.len() as u64;
            // Ten steps at most, so a CI log gets ten lines, not thousands.
            let tenth = (total * 10 / size).min(10);
            if tenth > shown {
                shown = tenth;
                task.set(&format!(
                    "copying to the host: {} of about {}",
                    HumanBytes(total),
                    HumanBytes(size)
                ));
            }
        })
    };
    let mut loading = to.import_image_stream(ImportImageOptions::default(), counted, None);
    while let Some(item) = loading.next().await {
        if let Err(e) = item {
            task.fail("copy failed");
            bail!(
                "copying {image} to the host failed: {}",
                crate::docker::message(&e)
            );
        }
    }
    let there = to
        .inspect_image(image)
        .await
        .with_context(|| format!("{image} was sent but the host's Docker does not list it"))?;
    if there.id.as_deref() != Some(id.as_str()) {
        task.fail("copy failed");
        bail!("{image} was sent but the host's copy has another ID; try the deploy again");
    }
    let bytes = sent.load(std::sync::atomic::Ordering::Relaxed);
    task.done(&format!("copied ({})", HumanBytes(bytes)));
    Ok(Copied::Sent(bytes))
}
