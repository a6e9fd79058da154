//! Building the stack's images: static binaries from cargo, then `FROM
//! scratch` images from a tar context sent to the daemon through bollard.
//! This machine's platform always; the others of `pipeline.yaml`'s
//! `platforms:` on request (cross-compiled, tagged `<version>-<arch>`).
//!
//! A build context is deterministic (sorted entries, zero timestamps), so
//! its hash is the image's input hash: an image whose label already carries
//! it is not rebuilt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;

use crate::config::pipeline::{ImageSpec, Pipeline};
use crate::platform::Platform;
use crate::progress::{Progress, Task};
use crate::stack::{Stack, labels};
use crate::workspace::Workspace;

/// An image of the stack, as built or found.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub service: String,
    /// `repository:<git sha>[-dirty]`.
    pub versioned: String,
    pub size: i64,
    /// False when the inputs were unchanged and the build was skipped.
    pub rebuilt: bool,
}

/// The version tag of this checkout: the short git sha, `-dirty` when the
/// tree has uncommitted changes; `dev` outside git.
pub(crate) fn version_tag(root: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) if !sha.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{sha}-dirty") } else { sha }
        }
        _ => "dev".to_owned(),
    }
}

/// The repository part of an image reference (`host:5000/a/b:tag` → `host:5000/a/b`).
pub(crate) fn repository(reference: &str) -> &str {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

/// Which platforms a build makes images for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platforms {
    /// This machine's only: what `up` and `test` run.
    Native,
    /// Every platform of `pipeline.yaml`: what a release pushes.
    All,
}

/// The build step `build`, `up` and `release` share: the static binaries,
/// then every image of the pipeline, tagged with this checkout's version
/// (`<version>-<arch>` for another platform than this machine's).
pub(crate) async fn build_stack(
    docker: &Docker,
    workspace: &Workspace,
    version: &str,
    platforms: Platforms,
    progress: &Progress,
) -> anyhow::Result<Vec<Image>> {
    let wanted = match platforms {
        Platforms::Native => vec![Platform::native()],
        Platforms::All => workspace.pipeline.platforms.clone(),
    };
    let mut built = Vec::new();
    for platform in wanted {
        let binaries = cargo_build(workspace, platform, progress).await?;
        built.extend(
            build_all(
                docker,
                &workspace.pipeline,
                &workspace.stack,
                &binaries,
                platform,
                version,
                progress,
            )
            .await?,
        );
    }
    Ok(built)
}

/// Builds the release binaries of every image for `platform`, statically
/// linked; the directory they are in.
async fn cargo_build(
    workspace: &Workspace,
    platform: Platform,
    progress: &Progress,
) -> anyhow::Result<PathBuf> {
    let pipeline = &workspace.pipeline;
    let target = platform.rust_target();
    let task = progress.task(
        &format!("cargo {platform}"),
        "building static binaries (release)",
    );
    let cargo = workspace.var("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(&cargo);
    command
        .args(["build", "--release", "--locked", "--target", target])
        .current_dir(&pipeline.root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (linker_var, linker, packages) = platform.cross_linker();
    let cross = platform != Platform::native();
    if cross && workspace.var(linker_var).is_none() {
        command.env(linker_var, linker);
    }
    for image in &pipeline.images {
        command.args(["-p", &image.package]);
    }
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot run {}: is Rust installed (https://rustup.rs)?",
            PathBuf::from(&cargo).display()
        )
    })?;
    let mut lines =
        tokio::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let mut tail: Vec<String> = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let trimmed = line.trim();
        // Workspace crates only ("Compiling api v0.1.0 (/path)"): dependency
        // lines would flood a CI log.
        if (trimmed.starts_with("Compiling") && trimmed.contains("(/"))
            || trimmed.starts_with("Finished")
        {
            task.set(trimmed);
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        task.fail("cargo build failed");
        let hint = if cross {
            format!(
                "\nA build for {platform} on this machine needs its Rust target and a cross \
                 linker: `rustup target add {target}` and `apt-get install {packages}` \
                 (scripts/test installs them), or set {linker_var}."
            )
        } else {
            String::new()
        };
        bail!(
            "cargo build for {target} failed ({status}); fix the error below and run \
             again:\n{}{hint}",
            tail.join("\n")
        );
    }
    task.done("static binaries built");
    let target_dir = workspace
        .var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                pipeline.root.join(d)
            }
        })
        .unwrap_or_else(|| pipeline.root.join("target"));
    Ok(target_dir.join(target).join("release"))
}

/// The deterministic build context of one image: its Dockerfile, its
/// binary and the extra files it names.
pub(crate) fn build_context(spec: &ImageSpec, binaries: &Path) -> anyhow::Result<Vec<u8>> {
    let mut entries: Vec<(String, PathBuf, u32)> = vec![
        ("Dockerfile".to_owned(), spec.dockerfile.clone(), 0o644),
        (spec.binary.clone(), binaries.join(&spec.binary), 0o755),
    ];
    for (name, path) in &spec.files {
        entries.push((name.clone(), path.clone(), 0o644));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(Vec::new());
    for (name, path, mode) in entries {
        let data = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} for the {} image",
                path.display(),
                spec.service
            )
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append_data(&mut header, &name, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// Builds (or finds unchanged) the image of each pipeline image spec and
/// tags it `repository:latest` and `repository:<version>`. Images build
/// in parallel, one progress line each.
async fn build_all(
    docker: &Docker,
    pipeline: &Pipeline,
    stack: &Stack,
    binaries: &Path,
    platform: Platform,
    version: &str,
    progress: &Progress,
) -> anyhow::Result<Vec<Image>> {
    let builds = pipeline.images.iter().map(|spec| async move {
        let service = stack
            .service(&spec.service)
            .ok_or_else(|| anyhow!("the compose file has no service {:?}", spec.service))?;
        let repo = repository(&service.image).to_owned();
        let name = if platform == Platform::native() {
            spec.service.clone()
        } else {
            format!("{} {platform}", spec.service)
        };
        let task = progress.task(&name, "preparing the build context");
        let result = build_one(docker, spec, &repo, binaries, platform, version, &task).await;
        if let Err(error) = &result {
            task.fail(&format!("{error:#}"));
        }
        result
    });
    futures_util::future::try_join_all(builds).await
}

async fn build_one(
    docker: &Docker,
    spec: &ImageSpec,
    repo: &str,
    binaries: &Path,
    platform: Platform,
    version: &str,
    task: &Task,
) -> anyhow::Result<Image> {
    let context = build_context(spec, binaries)?;
    let inputs = hex(&Sha256::digest(&context));
    let native = platform == Platform::native();
    // Another platform's image never becomes `latest`: `up` runs that.
    let reference = if native {
        format!("{repo}:latest")
    } else {
        format!("{repo}:latest-{platform}")
    };
    let versioned = format!("{repo}:{}", platform.local_tag(version));
    let existing = docker.inspect_image(&reference).await.ok();
    let unchanged = existing
        .as_ref()
        .and_then(|i| {
            i.config
                .as_ref()?
                .labels
                .as_ref()?
                .get(labels::INPUTS)
                .cloned()
        })
        .is_some_and(|label| label == inputs);
    if !unchanged {
        task.set("building");
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(reference.clone()),
            rm: true,
            forcerm: true,
            labels: Some(HashMap::from([(labels::INPUTS.to_owned(), inputs.clone())])),
            // Set for another platform only: a native build stays as it was.
            platform: if native {
                String::new()
            } else {
                platform.docker_platform()
            },
            // Docker's cache is not needed (unchanged inputs skip the build
            // above), and it is wrong across platforms: the classic builder
            // reuses a step cached for another platform (the same file
            // copied onto scratch) and then refuses it. Scratch images
            // rebuild in a moment.
            nocache: true,
            ..Default::default()
        };
        let mut stream =
            docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                anyhow!(
                    "building {reference} failed: {}\n{log}",
                    crate::docker::message(&e)
                )
            })?;
            if let Some(detail) = info.error_detail {
                bail!(
                    "building {reference} failed: {}\n{log}",
                    detail.message.unwrap_or_default()
                );
            }
            if let Some(text) = info.stream {
                log.push_str(&text);
                if let Some(step) = log.lines().rev().find(|l| l.starts_with("Step ")) {
                    task.set(step);
                }
            }
        }
    }
    docker
        .tag_image(
            &reference,
            Some(TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(platform.local_tag(version)),
            }),
        )
        .await
        .with_context(|| format!("cannot tag {reference} as {versioned}"))?;
    let image = docker
        .inspect_image(&reference)
        .await
        .with_context(|| format!("the image {reference} was built but cannot be inspected"))?;
    let size = image.size.unwrap_or_default();
    task.done(&format!(
        "{versioned} {} ({})",
        if unchanged { "unchanged" } else { "built" },
        megabytes(size)
    ));
    Ok(Image {
        service: spec.service.clone(),
        versioned,
        size,
        rebuilt: !unchanged,
    })
}

pub(crate) fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_only_the_tag() {
        assert_eq!(repository("api:latest"), "api");
        assert_eq!(
            repository("localhost:5000/team/api:abc"),
            "localhost:5000/team/api"
        );
        assert_eq!(
            repository("localhost:5000/team/api"),
            "localhost:5000/team/api"
        );
        assert_eq!(repository("api"), "api");
    }

    #[test]
    fn the_build_context_is_the_same_bytes_for_the_same_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("api"), "binary").unwrap();
        std::fs::write(dir.path().join("seed.json"), "{}").unwrap();
        let spec = ImageSpec {
            service: "api".into(),
            package: "p".into(),
            binary: "api".into(),
            dockerfile: dir.path().join("Dockerfile"),
            files: vec![("seed.json".into(), dir.path().join("seed.json"))],
        };
        let first = build_context(&spec, dir.path()).unwrap();
        let second = build_context(&spec, dir.path()).unwrap();
        assert_eq!(first, second);
        std::fs::write(dir.path().join("seed.json"), "{\"a\": 1}").unwrap();
        assert_ne!(first, build_context(&spec, dir.path()).unwrap());
        let names: Vec<String> = tar::Archive::new(first.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "api", "seed.json"]);
    }
}
