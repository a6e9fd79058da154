//! The stack's named volumes: created when missing, seeded once when new,
//! reseeded on request after keeping the live file as a backup, and their
//! live file read out for `deployer backup`. Files go in
//! and out through a created, never-started container (scratch images have
//! no shell to copy with).

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    DownloadFromContainerOptions, ListContainersOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;

use super::Engine;
use super::undo::Made;
use crate::config::pipeline::Seed;
use crate::docker::{is_not_found, message};
use crate::stack::{Mount, Stack, VolumeFile, labels};

impl Engine {
    /// Creates the volume if missing and seeds it from `seeds` then. A new
    /// volume counts as made only once it is seeded: an interrupted or
    /// failed seeding removes it, so the next run seeds it again rather than
    /// starting on no data.
    pub(super) async fn ensure_volume(
        &self,
        stack: &Stack,
        key: &str,
        seeds: &[Seed],
    ) -> anyhow::Result<()> {
        let name = stack.volume_name(key);
        match self.docker.inspect_volume(&name).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(anyhow!("cannot inspect the volume {name}: {}", message(&e))),
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(HashMap::from([
                    (labels::PROJECT.to_owned(), stack.project.clone()),
                    (labels::VOLUME.to_owned(), key.to_owned()),
                ])),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot create the volume {name}: {}", message(&e)))?;
        self.progress.println(&format!("volume {name} created"));
        let volume = Made::Volume(name);
        self.unfinished.add(volume.clone());
        for seed in seeds.iter().filter(|s| s.volume == key) {
            if let Err(error) = self.seed_volume(stack, seed).await {
                self.undo(&stack.project).await;
                return Err(error);
            }
        }
        self.unfinished.done(&volume);
        Ok(())
    }

    /// Creates and seeds the stack's seeded volumes on this daemon that it
    /// lacks (on a swarm: the data host's, where the service keeping the
    /// data runs), as `apply` does.
    pub(crate) async fn ensure_seeded_volumes(
        &self,
        stack: &Stack,
        seeds: &[Seed],
    ) -> anyhow::Result<()> {
        for key in &stack.volumes {
            if seeds.iter().any(|s| &s.volume == key) {
                self.ensure_volume(stack, key, seeds).await?;
            }
        }
        Ok(())
    }

    async fn seed_volume(&self, stack: &Stack, seed: &Seed) -> anyhow::Result<()> {
        let (image, target) = volume_user(stack, &seed.volume)?;
        let volume = stack.volume_name(&seed.volume);
        let id = self
            .helper_container(stack, &image, &volume, &target)
            .await?;
        let upload = match seed_tar(seed) {
            Ok(tar) => self.upload(&id, &target, tar).await,
            Err(e) => Err(e),
        };
        self.remove_container(&id).await?;
        self.unfinished.done(&Made::Container(id));
        upload.with_context(|| format!("cannot seed the volume {volume}"))?;
        self.progress.println(&format!(
            "volume {volume} seeded with {}",
            seed.file.display()
        ));
        Ok(())
    }

    /// Puts pipeline.yaml's `files:` into their volumes (created by now),
    /// replacing what is there: every apply, so a renewed certificate
    /// reaches the edge, which reloads it when it changes.
    pub(crate) async fn place_files(&self, stack: &Stack) -> anyhow::Result<()> {
        for key in &stack.volumes {
            let files: Vec<&VolumeFile> = stack.files.iter().filter(|f| &f.volume == key).collect();
            if files.is_empty() {
                continue;
            }
            let tar = files_tar(&files)?;
            let (image, target) = volume_user(stack, key)?;
            let volume = stack.volume_name(key);
            let id = self
                .helper_container(stack, &image, &volume, &target)
                .await?;
            let upload = self.upload(&id, &target, tar).await;
            self.remove_container(&id).await?;
            self.unfinished.done(&Made::Container(id));
            upload.with_context(|| format!("cannot put files into the volume {volume}"))?;
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            self.progress.println(&format!(
                "volume {volume}: {} put in place from this machine",
                paths.join(", ")
            ));
        }
        Ok(())
    }

    /// Replaces the seed file in an existing volume after copying the live
    /// file beside it as `<name>.backup-<time>` (`deploy --reseed-data`).
    /// A volume that does not exist yet is left to `apply`, which seeds it.
    /// Returns the backup's name, if there was a live file.
    pub(crate) async fn reseed(
        &self,
        stack: &Stack,
        seed: &Seed,
    ) -> anyhow::Result<Option<String>> {
        let volume = stack.volume_name(&seed.volume);
        if self.docker.inspect_volume(&volume).await.is_err() {
            return Ok(None);
        }
        let file_name = seed_file_name(seed);
        let (image, target) = volume_user(stack, &seed.volume)?;
        let id = self
            .helper_container(stack, &image, &volume, &target)
            .await?;
        let result = async {
            let archive = self
                .download(&id, &format!("{target}/{file_name}"))
                .await
                .with_context(|| format!("cannot read the live {file_name} in {volume}"))?;
            let backup = format!("{file_name}.backup-{}", crate::host::now().replace(':', ""));
            let mut entries = tar::Archive::new(archive.as_slice());
            let mut renamed = tar::Builder::new(Vec::new());
            if let Some(entry) = entries.entries()?.next() {
                let mut entry = entry?;
                let mut header = entry.header().clone();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                renamed.append_data(&mut header, &backup, data.as_slice())?;
            }
            // The backup first: if it cannot be written, the live file stays.
            self.upload(&id, &target, renamed.into_inner()?).await?;
            self.upload(&id, &target, seed_tar(seed)?).await?;
            Ok::<_, anyhow::Error>(backup)
        }
        .await;
        self.remove_container(&id).await?;
        self.unfinished.done(&Made::Container(id));
        let backup = result.with_context(|| format!("cannot reseed the volume {volume}"))?;
        self.progress.println(&format!(
            "volume {volume} reseeded from {}; the live file was kept as {backup}",
            seed.file.display()
        ));
        Ok(Some(backup))
    }

    /// The live seeded file of `seed`'s volume (`deployer backup`), read
    /// out of a container that mounts the volume: the running one that
    /// serves it, or else a stopped one (Docker copies out of a stopped
    /// container's volumes too), so a backup needs no image and works
    /// while the service is down.
    pub(crate) async fn read_seeded_file(
        &self,
        stack: &Stack,
        seed: &Seed,
    ) -> anyhow::Result<Vec<u8>> {
        let volume = stack.volume_name(&seed.volume);
        let file_name = seed_file_name(seed);
        let (_, target) = volume_user(stack, &seed.volume)?;
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("volume".to_owned(), vec![volume.clone()])])),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow!("cannot list the containers of {volume}: {}", message(&e)))?;
        let Some(id) = containers
            .iter()
            .find(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .or(containers.first())
            .and_then(|c| c.id.clone())
        else {
            bail!(
                "no container mounts the volume {volume} here: is this the host that keeps the \
                 data? (`deployer status` says where the stack runs)"
            );
        };
        let archive = self
            .download(&id, &format!("{target}/{file_name}"))
            .await
            .with_context(|| format!("cannot read {file_name} in the volume {volume}"))?;
        let mut entries = tar::Archive::new(archive.as_slice());
        let mut entry = entries
            .entries()?
            .next()
            .ok_or_else(|| anyhow!("{file_name} in the volume {volume} came back empty"))??;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        Ok(data)
    }

    /// `path` in container `id`, as the tar stream Docker sends.
    async fn download(&self, id: &str, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut archive = Vec::new();
        let mut stream = self.docker.download_from_container(
            id,
            Some(DownloadFromContainerOptions {
                path: path.to_owned(),
            }),
        );
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.map_err(|e| anyhow!("{}", message(&e)))?);
        }
        Ok(archive)
    }

    async fn upload(&self, id: &str, target: &str, tar: Vec<u8>) -> anyhow::Result<()> {
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: target.to_owned(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| anyhow!("cannot write into {target}: {}", message(&e)))
    }

    /// A created, never-started container with `volume` mounted at
    /// `target`, for copying files in and out.
    async fn helper_container(
        &self,
        stack: &Stack,
        image: &str,
        volume: &str,
        target: &str,
    ) -> anyhow::Result<String> {
        static HELPERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "{}-seed-{}-{}-{}",
            stack.project,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            HELPERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let created = self
            .create(
                &name,
                ContainerCreateBody {
                    image: Some(image.to_owned()),
                    labels: Some(HashMap::from([
                        (labels::PROJECT.to_owned(), stack.project.clone()),
                        (labels::ONEOFF.to_owned(), "True".to_owned()),
                        (labels::HELPER.to_owned(), "seed".to_owned()),
                    ])),
                    host_config: Some(HostConfig {
                        binds: Some(vec![format!("{volume}:{target}")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the volume {volume}: creating a container from {image} failed: {} \
                     (build or pull the images first)",
                    message(&e)
                )
            })?;
        Ok(created.id)
    }
}

/// The image and mount point of the first service that mounts `volume`.
fn volume_user(stack: &Stack, volume: &str) -> anyhow::Result<(String, String)> {
    stack
        .services
        .iter()
        .find_map(|s| {
            s.mounts.iter().find_map(|m| match m {
                Mount::Volume { key, target, .. } if key == volume => {
                    Some((s.image.clone(), target.clone()))
                }
                _ => None,
            })
        })
        .ok_or_else(|| anyhow!("no service mounts the volume {volume:?}"))
}

fn seed_file_name(seed: &Seed) -> String {
    seed.file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "seed".into())
}

/// `files` as a tar: each with its parent directories, owned and with the
/// mode the pipeline says, stamped now (so a reader polling the file sees
/// a new version even when the content's size did not change).
fn files_tar(files: &[&VolumeFile]) -> anyhow::Result<Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for file in files {
        let data = file.read()?;
        let path = std::path::Path::new(&file.path);
        let parents: Vec<&std::path::Path> = path
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
            .collect();
        for dir in parents.into_iter().rev() {
            if dirs.insert(dir.to_owned()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
                header.set_uid(file.uid);
                header.set_gid(file.gid);
                header.set_mtime(now);
                header.set_cksum();
                tar.append_data(&mut header, dir, std::io::empty())?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(file.uid);
        header.set_gid(file.gid);
        header.set_mtime(now);
        header.set_cksum();
        tar.append_data(&mut header, path, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// The seed file as a one-entry tar, owned as the pipeline says.
fn seed_tar(seed: &Seed) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(&seed.file)
        .with_context(|| format!("cannot read the seed file {}", seed.file.display()))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(seed.uid);
    header.set_gid(seed.gid);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, seed_file_name(seed), data.as_slice())?;
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_tar_holds_one_file_owned_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("student_age.json");
        std::fs::write(&file, "{}").unwrap();
        let seed = Seed {
            volume: "data".into(),
            file,
            uid: 65532,
            gid: 65533,
        };
        let tar = seed_tar(&seed).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive.entries().unwrap().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1);
        let header = entries[0].header();
        assert_eq!(header.path().unwrap().to_str(), Some("student_age.json"));
        assert_eq!(
            (header.uid().unwrap(), header.gid().unwrap()),
            (65532, 65533)
        );
        assert_eq!(header.mode().unwrap(), 0o644);
    }
}
