//! The steps `deploy` and `rollback` take on a locked host, each one small
//! and named: pull, reseed, apply and check, install, prune.

use std::collections::HashMap;

use anyhow::{Context, bail};
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use super::LockedHost;
use crate::engine::Applied;
use crate::images;
use crate::registry::Registry;
use crate::remote::put_if_changed;
use crate::stack::Stack;
use crate::transfer::{self, Copied};
use crate::workspace::Workspace;

impl LockedHost {
    /// Puts the release's images on the host while the running version
    /// serves: pulled from the registry, or, with none configured, copied
    /// from this machine's Docker (only those the host lacks). Then checks
    /// they are built for the host's architecture, before anything runs
    /// them. Returns their references.
    pub(crate) async fn fetch_images(
        &self,
        workspace: &Workspace,
        stack: &Stack,
        registry: Option<&Registry>,
        tag: &str,
    ) -> anyhow::Result<Vec<String>> {
        enum Source<'a> {
            Registry(&'a Registry),
            ThisMachine(bollard::Docker),
        }
        let source = match registry {
            Some(registry) => Source::Registry(registry),
            None => Source::ThisMachine(workspace.local_docker().await?),
        };
        let mut fetched = Vec::new();
        for service in workspace.pipeline.built_services(stack) {
            let repository = images::repository(&service.image);
            let progress = self.engine.progress();
            let reference = match &source {
                Source::Registry(registry) => {
                    registry
                        .pull(&self.docker, repository, tag, progress)
                        .await?
                }
                Source::ThisMachine(local) => {
                    let image = format!("{repository}:{tag}");
                    if transfer::copy_image(local, &self.docker, &image, progress).await?
                        == Copied::AlreadyThere
                    {
                        progress.println(&format!("{image}: already on the host"));
                    }
                    image
                }
            };
            let built_for = transfer::architecture(&self.docker, &reference).await?;
            if built_for != self.arch.to_string() {
                bail!(
                    "{reference} is built for {built_for}, but {} is {}: it would not start \
                     there (\"exec format error\"). Nothing was changed; deploy to an {built_for} \
                     host, or build the images for {}.",
                    self.remote.target,
                    self.arch,
                    self.arch
                );
            }
            fetched.push(reference);
        }
        Ok(fetched)
    }

    /// Replaces the live data files with the seed files, keeping backups.
    pub(crate) async fn reseed(&self, workspace: &Workspace, stack: &Stack) -> anyhow::Result<()> {
        for seed in &workspace.pipeline.seeds {
            self.engine.reseed(stack, seed).await?;
        }
        Ok(())
    }

    /// Fails unless every image of `stack` is on the host already.
    pub(crate) async fn require_images(&self, stack: &Stack, tag: &str) -> anyhow::Result<()> {
        for service in &stack.services {
            if self.docker.inspect_image(&service.image).await.is_err() {
                bail!(
                    "{} is no longer on {}: deploy it instead (`deployer deploy --tag {tag}`), \
                     which pulls it",
                    service.image,
                    self.remote.target
                );
            }
        }
        Ok(())
    }

    /// Applies `stack`, then runs the read-only acceptance checks through
    /// the SSH connection. A deploy must not write test data into the live
    /// file: only checks that read run here.
    pub(crate) async fn apply_and_check(
        &mut self,
        workspace: &Workspace,
        stack: &Stack,
    ) -> anyhow::Result<Applied> {
        let applied = self.engine.apply(stack, &workspace.pipeline.seeds).await?;
        let mut base_urls = HashMap::new();
        for service in &stack.services {
            if let Some(entry) = stack.entry(&service.name) {
                let local = self.remote.forward_tcp(&entry.host_ip, entry.port).await?;
                base_urls.insert(service.name.clone(), format!("http://127.0.0.1:{local}"));
            }
        }
        let read_only: Vec<_> = workspace
            .pipeline
            .checks
            .iter()
            .filter(|c| c.on_deploy)
            .cloned()
            .collect();
        let outcomes = crate::checks::run(&read_only, &base_urls, &workspace.pipeline.auth).await;
        let progress = self.engine.progress();
        let mut failed = Vec::new();
        for outcome in &outcomes {
            match &outcome.failure {
                None => progress.println(&format!("PASS  {}", outcome.name)),
                Some(why) => failed.push(format!("{}: {why}", outcome.name)),
            }
        }
        if !failed.is_empty() {
            bail!(
                "acceptance checks failed on the host:\n  {}",
                failed.join("\n  ")
            );
        }
        Ok(applied)
    }

    /// Leaves what `deployer status` needs on the host: the binary, the two
    /// files, and a `.env` naming the deployed version and what else the
    /// compose file resolves with there (pipeline.yaml's `deploy.env`, which
    /// holds no secrets).
    pub(crate) async fn install(&self, workspace: &Workspace, tag: &str) -> anyhow::Result<()> {
        let remote = &self.remote;
        let exe = std::env::current_exe().context("cannot find the deployer's own binary")?;
        put_if_changed(remote, &exe, &self.dir.file("deployer"), "755").await?;
        put_if_changed(
            remote,
            &workspace.pipeline.path,
            &self.dir.file("pipeline.yaml"),
            "644",
        )
        .await?;
        let compose_name = workspace
            .pipeline
            .compose
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "docker-compose.yml".into());
        put_if_changed(
            remote,
            &workspace.pipeline.compose,
            &self.dir.file(&compose_name),
            "644",
        )
        .await?;
        let mut env = format!(
            "# Written by `deployer deploy`: what runs here. No secrets.\nCOMPOSE_PROJECT_NAME={}\n",
            workspace.stack.project
        );
        for (key, value) in workspace.host_overlay(tag) {
            env.push_str(&format!("{key}={value}\n"));
        }
        remote
            .write_file(&self.dir.file(".env"), env.as_bytes(), "644")
            .await
    }

    /// Removes the host's tags of the stack's images that are not kept (by
    /// both their compose and registry names), so releases do not fill its
    /// disk. Best effort: a tag Docker refuses to remove (in use) stays.
    /// Returns how many tags were removed.
    pub(crate) async fn prune_images(
        &self,
        workspace: &Workspace,
        stack: &Stack,
        registry: Option<&Registry>,
        keep: &[String],
    ) -> usize {
        let mut removed = 0;
        for service in workspace.pipeline.built_services(stack) {
            let repository = images::repository(&service.image);
            let mut names = vec![repository.to_owned()];
            names.extend(registry.map(|r| r.name_of(repository)));
            for name in names {
                let listed = self
                    .docker
                    .list_images(Some(ListImagesOptions {
                        filters: Some(HashMap::from([(
                            "reference".to_owned(),
                            vec![name.clone()],
                        )])),
                        ..Default::default()
                    }))
                    .await
                    .unwrap_or_default();
                for reference in listed.into_iter().flat_map(|i| i.repo_tags) {
                    let Some(tag) = reference.strip_prefix(&format!("{name}:")) else {
                        continue;
                    };
                    if tag == "latest" || keep.iter().any(|k| k == tag) {
                        continue;
                    }
                    if self
                        .docker
                        .remove_image(&reference, None::<RemoveImageOptions>, None)
                        .await
                        .is_ok()
                    {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }
}
