//! The data file off the host and back: `deployer backup` saves the live
//! file of each seeded volume to this machine, timestamped; `deployer
//! restore` puts a saved file back.
//!
//! A backup is read out of a container that mounts the volume (see
//! `Engine::read_seeded_file`) and written here atomically (a temporary
//! file renamed into place, never over an older backup). A restore goes
//! through the API that owns the file (`PUT .../student_ages.json`): the
//! API checks every entry with its own rules, takes its own lock and
//! replaces the file durably, as for any write, so a restore never races a
//! write and never leaves a half-written file. The file is checked here
//! first (a JSON object of name to age), and the live file is saved as a
//! backup before anything is replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use secrecy::ExposeSecret;

use crate::config::pipeline::{Auth, Seed};
use crate::engine::Engine;
use crate::progress::Progress;
use crate::stack::{Entry, Mount, Stack};
use crate::workspace::Workspace;

/// The API route that replaces every student.
const REPLACE_PATH: &str = "/supmit/api/v1.0/student_ages.json";

/// Saves the live file of every seeded volume `engine`'s daemon keeps
/// into `dir` (made if missing), each checked as a JSON object first, and
/// says where each went.
pub(crate) async fn save_all(
    engine: &Engine,
    stack: &Stack,
    seeds: &[Seed],
    dir: &Path,
    host: &str,
    progress: &Progress,
) -> anyhow::Result<()> {
    if seeds.is_empty() {
        bail!("pipeline.yaml names no seeded volume (seeds:), so there is no data file to save");
    }
    for seed in seeds {
        let bytes = engine
            .read_seeded_file(stack, seed)
            .await
            .with_context(|| format!("cannot back up the data on {host}"))?;
        let students = count_students(&bytes).map_err(|e| {
            anyhow!(
                "the live {} on {host} is not a JSON object of name to age ({e}); it was not \
                 saved. Look at it with `deployer logs` and the API's /healthz",
                file_name(seed)
            )
        })?;
        let path = write_new(dir, &stack.project, seed, &bytes)?;
        progress.println(&format!(
            "saved {} from {host} to {} ({students} students, {} bytes)",
            file_name(seed),
            path.display(),
            bytes.len()
        ));
    }
    Ok(())
}

/// A backup file read and checked before a restore: the bytes, and how
/// many students they hold. The error names the file, line and column.
pub(crate) fn read_backup(path: &Path) -> anyhow::Result<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the backup {}", path.display()))?;
    let students = count_students(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a data file (a JSON object of name to age): {e}. Nothing was changed",
            path.display()
        )
    })?;
    Ok((bytes, students))
}

/// A restore, checked before any connection: the backup's bytes and
/// student count, the seeded volume it goes back into, and where the API
/// that owns that volume's file is reached on the host.
pub(crate) struct Restore {
    pub bytes: Vec<u8>,
    pub students: usize,
    pub stack: Stack,
    pub seed: Seed,
    pub entry: Entry,
}

/// Reads and checks the backup `file` and finds where it goes: a wrong
/// file, or a stack with no way to reach the API, changes nothing.
pub(crate) fn prepare_restore(workspace: &Workspace, file: &Path) -> anyhow::Result<Restore> {
    let (bytes, students) = read_backup(file)?;
    let stack = workspace.host_stack("latest")?;
    let [seed] = &workspace.pipeline.seeds[..] else {
        bail!(
            "a restore puts back one data file, and pipeline.yaml seeds {} volumes",
            workspace.pipeline.seeds.len()
        );
    };
    // The service that owns the file: the first that mounts its volume.
    let service = stack
        .services
        .iter()
        .find(|s| {
            s.mounts
                .iter()
                .any(|m| matches!(m, Mount::Volume { key, .. } if *key == seed.volume))
        })
        .ok_or_else(|| anyhow!("no service mounts the volume {:?}", seed.volume))?;
    let entry = stack.entry(&service.name).ok_or_else(|| {
        anyhow!(
            "{} has no entry on the host (no published port, no edge route): the restore has \
             no way to reach it",
            service.name
        )
    })?;
    Ok(Restore {
        bytes,
        students,
        seed: seed.clone(),
        entry,
        stack,
    })
}

/// Replaces every student through the API at `base` (`http://host:port`)
/// with the content of a backup; (students before, students after).
pub(crate) async fn put_back(
    base: &str,
    auth: &Auth,
    bytes: Vec<u8>,
) -> anyhow::Result<(u64, u64)> {
    let response = reqwest::Client::new()
        .put(format!("{base}{REPLACE_PATH}"))
        .basic_auth(&auth.username, Some(auth.password.expose_secret()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("cannot reach the API for the restore ({REPLACE_PATH})"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let said = body["error"].as_str().unwrap_or("(no error message)");
        bail!("the API refused the restore ({status}): {said}. Nothing was changed");
    }
    match (body["before"].as_u64(), body["after"].as_u64()) {
        (Some(before), Some(after)) => Ok((before, after)),
        _ => bail!(
            "the API answered the restore with {status} but not with what it did ({body}); \
             check the data with `deployer status`"
        ),
    }
}

fn count_students(bytes: &[u8]) -> Result<usize, serde_json::Error> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)?;
    Ok(object.len())
}

fn file_name(seed: &Seed) -> String {
    seed.file
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned())
}

/// Writes `bytes` as a new file in `dir`, named after the project, the
/// file and the time (`student-ages-student_age-20261129T041500Z.json`);
/// never over an existing file.
fn write_new(dir: &Path, project: &str, seed: &Seed, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot make the backup directory {}", dir.display()))?;
    let stem = seed
        .file
        .file_stem()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let time = crate::host::now().replace([':', '-'], "");
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    for n in 0.. {
        let name = match n {
            0 => format!("{project}-{stem}-{time}.json"),
            n => format!("{project}-{stem}-{time}-{n}.json"),
        };
        let path = dir.join(name);
        match file.persist_noclobber(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => file = e.file,
            Err(e) => {
                return Err(anyhow!(
                    "cannot write the backup {}: {}",
                    path.display(),
                    e.error
                ));
            }
        }
    }
    unreachable!("some name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed {
            volume: "student-data".into(),
            file: "data/student_age.json".into(),
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn a_backup_never_replaces_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_new(dir.path(), "p", &seed(), b"{\"a\": 1}").unwrap();
        let second = write_new(dir.path(), "p", &seed(), b"{\"b\": 2}").unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first).unwrap(), b"{\"a\": 1}");
        assert_eq!(std::fs::read(&second).unwrap(), b"{\"b\": 2}");
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("p-student_age-") && name.ends_with("Z.json"),
            "{name}"
        );
        // Only the two backups: no temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_file_that_is_not_a_data_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        std::fs::write(&path, "{\"a\": 1,\n \"b\" 2}").unwrap();
        let error = read_backup(&path).unwrap_err().to_string();
        assert!(
            error.contains("b.json") && error.contains("line 2"),
            "{error}"
        );
        std::fs::write(&path, "{\"a\": 1, \"b\": 2}").unwrap();
        assert_eq!(read_backup(&path).unwrap().1, 2);
    }
}
