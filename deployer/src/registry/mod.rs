//! The image registry: checking credentials before any work, pushing the
//! stack's images with per-image progress, naming images there.
//!
//! Credentials go to the daemon inside the API request (bollard's
//! `DockerCredentials`), never on a command line, and never into a message.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions, TagImageOptions};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use crate::config::pipeline::RegistrySettings;
use crate::platform::Platform;
use crate::progress::{Progress, Task};

mod api;
mod index;
use bollard::models::ProgressDetail;

/// A registry and the credentials for it.
#[derive(Debug, Clone)]
pub struct Registry {
    pub settings: RegistrySettings,
}

/// Whether a `WWW-Authenticate` challenge asks for a bearer token.
fn is_bearer(challenge: &str) -> bool {
    challenge.to_lowercase().starts_with("bearer")
}

/// One parameter (`realm`, `service`) of a bearer challenge.
fn challenge_param(challenge: &str, name: &str) -> String {
    challenge
        .split(',')
        .find_map(|part| {
            let (k, v) = part.trim().trim_start_matches("Bearer ").split_once('=')?;
            (k.trim() == name).then(|| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default()
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Registry {
        Registry { settings }
    }

    fn is_docker_hub(&self) -> bool {
        matches!(
            self.settings.server.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    }

    /// The name of `repository` in this registry (`localhost:5000/x`, or
    /// `x` itself on Docker Hub).
    pub fn name_of(&self, repository: &str) -> String {
        if self.is_docker_hub() {
            repository.to_owned()
        } else {
            format!("{}/{repository}", self.settings.server)
        }
    }

    pub fn credentials(&self) -> Option<DockerCredentials> {
        if self.settings.username.is_empty() {
            return None;
        }
        Some(DockerCredentials {
            username: Some(self.settings.username.clone()),
            password: Some(self.settings.password.expose_secret().to_owned()),
            serveraddress: Some(if self.is_docker_hub() {
                "https://index.docker.io/v1/".to_owned()
            } else {
                self.settings.server.clone()
            }),
            ..Default::default()
        })
    }

    fn base_url(&self) -> String {
        let server = &self.settings.server;
        if self.is_docker_hub() {
            "https://registry-1.docker.io".to_owned()
        } else if server.starts_with("localhost") || server.starts_with("127.") {
            // Docker itself talks plain HTTP to a registry on loopback.
            format!("http://{server}")
        } else {
            format!("https://{server}")
        }
    }

    /// Asks a token realm (from a `WWW-Authenticate: Bearer` challenge) for
    /// a token, with the credentials, for `scope` if given. The outer error
    /// is the network's, the inner one a refusal to send the credentials.
    async fn token_response(
        &self,
        client: &reqwest::Client,
        challenge: &str,
        scope: Option<&str>,
    ) -> Result<anyhow::Result<reqwest::Response>, reqwest::Error> {
        let realm = challenge_param(challenge, "realm");
        // Credentials go only to a TLS realm (or one on loopback).
        let trusted = realm.starts_with("https://")
            || realm.starts_with("http://localhost")
            || realm.starts_with("http://127.");
        if !trusted {
            return Ok(Err(anyhow!(
                "the registry {} asks for credentials at {realm:?}, which is not https: refusing \
                 to send them there",
                self.settings.server
            )));
        }
        let mut query = vec![("service", challenge_param(challenge, "service"))];
        if let Some(scope) = scope {
            query.push(("scope", scope.to_owned()));
        }
        client
            .get(&realm)
            .query(&query)
            .basic_auth(
                &self.settings.username,
                Some(self.settings.password.expose_secret()),
            )
            .send()
            .await
            .map(Ok)
    }

    /// The repository's path in the registry's API (`library/x` for a
    /// one-part name on Docker Hub).
    fn api_path(&self, repository: &str) -> String {
        if self.is_docker_hub() && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        }
    }

    /// Checks that the user may push to each repository, before a build
    /// that takes minutes: starts a blob upload there (what a push does
    /// first) and cancels it. Nothing is written to the registry.
    pub async fn check_push(&self, repositories: &[&str]) -> anyhow::Result<()> {
        let server = &self.settings.server;
        let client = Registry::api_client()?;
        for repository in repositories {
            let path = self.api_path(repository);
            let url = format!("{}/v2/{path}/blobs/uploads/", self.base_url());
            let (response, authorization) = self
                .send_authorized(&client, &format!("repository:{path}:push,pull"), |c| {
                    c.post(&url)
                })
                .await?;
            match response.status().as_u16() {
                202 => {
                    // Cancel the upload: best effort, registries expire it anyway.
                    if let Some(location) = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                    {
                        let location = if location.starts_with('/') {
                            format!("{}{location}", self.base_url())
                        } else {
                            location.to_owned()
                        };
                        let _ = authorization
                            .apply(self, client.delete(&location))
                            .send()
                            .await;
                    }
                }
                405 => bail!(
                    "the registry {server} does not accept pushes to {path} (405 Method Not \
                     Allowed: a read-only registry or a mirror): set DOCKER_REGISTRY to one that \
                     does. Nothing was built or pushed."
                ),
                401 | 403 => bail!(
                    "user {:?} may not push to {}/{path} (the registry answered {}): give it \
                     write access to that repository, or name one it may push to \
                     (DOCKER_IMAGE_BACKEND, DOCKER_IMAGE_FRONTEND, DOCKER_IMAGE_EDGE). Nothing \
                     was built or pushed.",
                    self.settings.username,
                    server,
                    response.status()
                ),
                other => bail!(
                    "the registry {server} answered {other} when asked to start an upload to \
                     {path}; is DOCKER_REGISTRY right?"
                ),
            }
        }
        Ok(())
    }

    /// Asks the registry whether the credentials are good, so a wrong
    /// password or an unreachable registry fails before any build.
    pub async fn check_login(&self) -> anyhow::Result<()> {
        let server = &self.settings.server;
        if self.settings.username.is_empty() || self.settings.password.expose_secret().is_empty() {
            bail!(
                "no credentials for the registry {server}: set DOCKER_USERNAME and DOCKER_PASSWORD \
                 in the environment (Jenkins binds them from the dockerhub-creds credential)"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .context("cannot build the HTTP client")?;
        let url = format!("{}/v2/", self.base_url());
        let unreachable = |e: reqwest::Error| {
            anyhow!(
                "the registry {server} is unreachable ({url}): {}; check DOCKER_REGISTRY and the \
                 network",
                crate::errors::root_cause(&e)
            )
        };
        let response = client.get(&url).send().await.map_err(unreachable)?;
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = match response.status().as_u16() {
            200 => return Ok(()),
            401 if is_bearer(&challenge) => {
                // Token auth (Docker Hub): ask the realm for a token.
                self.token_response(&client, &challenge, None)
                    .await
                    .map_err(unreachable)??
                    .status()
            }
            401 => client
                .get(&url)
                .basic_auth(
                    &self.settings.username,
                    Some(self.settings.password.expose_secret()),
                )
                .send()
                .await
                .map_err(unreachable)?
                .status(),
            other => {
                bail!("the registry {server} answered {other} at {url}; is DOCKER_REGISTRY right?")
            }
        };
        match status.as_u16() {
            200 => Ok(()),
            401 | 403 => Err(anyhow!(
                "the registry {server} refused the login of user {:?}: wrong DOCKER_USERNAME or \
                 DOCKER_PASSWORD (check the dockerhub-creds credential)",
                self.settings.username
            )),
            other => Err(anyhow!(
                "the registry {server} answered {other} to the login"
            )),
        }
    }

    /// Tags the local `repository:from` with this registry's name as
    /// `tag` and pushes it, one progress bar per image; returns the pushed
    /// reference.
    async fn push(
        &self,
        docker: &Docker,
        repository: &str,
        from: &str,
        tag: &str,
        progress: &Progress,
    ) -> anyhow::Result<(String, Option<(String, u64)>)> {
        let local = format!("{repository}:{from}");
        let remote_repo = self.name_of(repository);
        let remote = format!("{remote_repo}:{tag}");
        tag_as(docker, &local, &remote_repo, tag)
            .await
            .map_err(|e| e.context("build it first: `deployer build`"))?;
        let task = progress.task(&remote, "pushing");
        let mut manifest = None;
        let mut stream = docker.push_image(
            &remote_repo,
            Some(PushImageOptions {
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            self.credentials(),
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                task.fail("push failed");
                anyhow!("pushing {remote} failed: {}", crate::docker::message(&e))
            })?;
            if let Some(detail) = info.error_detail {
                task.fail("push failed");
                bail!(
                    "pushing {remote} failed: {}",
                    detail.message.unwrap_or_default()
                );
            }
            if let Some(found) = info.status.as_deref().and_then(index::pushed_manifest) {
                manifest = Some(found);
            }
            show(&task, info.status, info.progress_detail.as_ref());
        }
        task.done("pushed");
        Ok((remote, manifest))
    }
}

/// Whether a `-dirty` version (built from uncommitted changes) may be
/// pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirty {
    Refuse,
    Allow,
}

/// Whether a release also moves `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    Push,
    Skip,
}

impl Registry {
    /// Pushes each of `repositories` as `version`, and that same image as
    /// `latest` unless skipped (never the local `latest`, which another
    /// build on this machine may have moved); returns the pushed references.
    /// When images of other `platforms` than this machine's were built
    /// (`<version>-<arch>`), each platform's image is pushed as
    /// `<version>-<arch>` and `version` (and `latest`) become an image index
    /// naming them all.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn push_release(
        &self,
        docker: &Docker,
        repositories: &[&str],
        platforms: &[Platform],
        version: &str,
        dirty: Dirty,
        latest: Latest,
        progress: &Progress,
    ) -> anyhow::Result<Vec<String>> {
        refuse_dirty(&[version], dirty)?;
        let built = built_platforms(docker, repositories, platforms, version).await?;
        let mut pushed = Vec::new();
        if built == [Platform::native()] {
            for repository in repositories {
                pushed.push(
                    self.push(docker, repository, version, version, progress)
                        .await?
                        .0,
                );
                if latest == Latest::Push {
                    pushed.push(
                        self.push(docker, repository, version, "latest", progress)
                            .await?
                            .0,
                    );
                }
            }
            return Ok(pushed);
        }
        for repository in repositories {
            let mut manifests = Vec::new();
            for platform in &built {
                let (reference, manifest) = self
                    .push(
                        docker,
                        repository,
                        &platform.local_tag(version),
                        &platform.registry_tag(version),
                        progress,
                    )
                    .await?;
                let Some((digest, size)) = manifest else {
                    bail!(
                        "pushed {reference}, but the daemon did not say its digest, so no image \
                         index can name it"
                    );
                };
                manifests.push(index::Manifest {
                    platform: *platform,
                    digest,
                    size,
                });
                pushed.push(reference);
            }
            pushed.push(self.put_index(repository, version, &manifests).await?);
            if latest == Latest::Push {
                pushed.push(self.put_index(repository, "latest", &manifests).await?);
            }
        }
        Ok(pushed)
    }

    /// Pushes each of `repositories` tagged `tag`, only that tag:
    /// re-publishing an older build.
    pub(crate) async fn push_tag(
        &self,
        docker: &Docker,
        repositories: &[&str],
        tag: &str,
        dirty: Dirty,
        progress: &Progress,
    ) -> anyhow::Result<Vec<String>> {
        self.push_tags(docker, repositories, &[tag], dirty, progress)
            .await
    }

    async fn push_tags(
        &self,
        docker: &Docker,
        repositories: &[&str],
        tags: &[&str],
        dirty: Dirty,
        progress: &Progress,
    ) -> anyhow::Result<Vec<String>> {
        refuse_dirty(tags, dirty)?;
        let mut pushed = Vec::new();
        for repository in repositories {
            for tag in tags {
                pushed.push(self.push(docker, repository, tag, tag, progress).await?.0);
            }
        }
        Ok(pushed)
    }

    /// Pulls `repository:tag` from this registry onto `docker` (progress per
    /// image) and tags it `repository:tag` there, the name the compose file
    /// uses, so the stack is the same on every host.
    pub async fn pull(
        &self,
        docker: &Docker,
        repository: &str,
        tag: &str,
        progress: &Progress,
    ) -> anyhow::Result<String> {
        let remote_repo = self.name_of(repository);
        let remote = format!("{remote_repo}:{tag}");
        let task = progress.task(&remote, "pulling");
        let mut stream = docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(remote_repo.clone()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            self.credentials(),
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                task.fail("pull failed");
                anyhow!(
                    "pulling {remote} failed: {} (was it pushed? `deployer push` / `deployer \
                     release` push the current commit's images)",
                    crate::docker::message(&e)
                )
            })?;
            if let Some(detail) = info.error_detail {
                task.fail("pull failed");
                bail!(
                    "pulling {remote} failed: {}",
                    detail.message.unwrap_or_default()
                );
            }
            show(&task, info.status, info.progress_detail.as_ref());
        }
        if remote_repo != repository {
            tag_as(docker, &remote, repository, tag).await?;
        }
        task.done("pulled");
        Ok(remote)
    }
}

/// Refuses a `-dirty` tag unless allowed.
fn refuse_dirty(tags: &[&str], dirty: Dirty) -> anyhow::Result<()> {
    if let Some(version) = tags.iter().find(|t| t.ends_with("-dirty"))
        && dirty == Dirty::Refuse
    {
        bail!(
            "the checkout has uncommitted changes (version {version}): commit them so the \
             pushed tag names a real commit, or pass --allow-dirty"
        );
    }
    Ok(())
}

/// The platforms of `platforms` whose images of `version` this machine has
/// for every repository: this machine's own (which must be there), and any
/// other built with `build --all-platforms` or by `release`.
async fn built_platforms(
    docker: &Docker,
    repositories: &[&str],
    platforms: &[Platform],
    version: &str,
) -> anyhow::Result<Vec<Platform>> {
    let mut built = vec![Platform::native()];
    for platform in platforms.iter().filter(|p| **p != Platform::native()) {
        let mut have = 0;
        for repository in repositories {
            let image = format!("{repository}:{}", platform.local_tag(version));
            if docker.inspect_image(&image).await.is_ok() {
                have += 1;
            }
        }
        if have == repositories.len() {
            built.push(*platform);
        } else if have > 0 {
            bail!(
                "only some images of {version} were built for {platform}: run `deployer build \
                 --all-platforms` again so every repository has one"
            );
        }
    }
    Ok(built)
}

/// Tags the image `from` as `repository:tag`.
async fn tag_as(docker: &Docker, from: &str, repository: &str, tag: &str) -> anyhow::Result<()> {
    docker
        .tag_image(
            from,
            Some(TagImageOptions {
                repo: Some(repository.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot tag {from} as {repository}:{tag}: {}",
                crate::docker::message(&e)
            )
        })
}

/// One line of push or pull progress. The daemon's `current` can exceed
/// `total`: clamped.
fn show(task: &Task, status: Option<String>, detail: Option<&ProgressDetail>) {
    let Some(status) = status else { return };
    match (detail.and_then(|p| p.current), detail.and_then(|p| p.total)) {
        (Some(current), Some(total)) if total > 0 => {
            task.set(&format!("{status} {}%", current.min(total) * 100 / total))
        }
        _ => task.set(&status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(server: &str) -> Registry {
        Registry::new(RegistrySettings {
            server: server.into(),
            username: "u".into(),
            password: "p".to_owned().into(),
        })
    }

    #[test]
    fn images_are_named_by_registry() {
        assert_eq!(registry("docker.io").name_of("team/api"), "team/api");
        assert_eq!(
            registry("localhost:5000").name_of("api"),
            "localhost:5000/api"
        );
        assert_eq!(
            registry("localhost:5000").base_url(),
            "http://localhost:5000"
        );
        assert_eq!(registry("ghcr.io").base_url(), "https://ghcr.io");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let shown = format!("{:?}", registry("docker.io"));
        assert!(!shown.contains("\"p\""), "{shown}");
    }
}
