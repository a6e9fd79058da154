//! The targets the deployer set, kept in `$EDGE_STATE_DIR/state.json` so
//! they survive the edge's restart. Written atomically (temp file, fsync,
//! rename, fsync of the directory): a crash leaves the old file or the new
//! one, never half of one. A file that cannot be read at start is moved
//! aside and logged, and the edge starts with no targets rather than
//! refusing to start (a crash loop would take the public ports down).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub services: BTreeMap<String, Vec<SavedTarget>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SavedTarget {
    pub address: String,
    pub health_path: String,
}

impl State {
    pub fn from_snapshot(snapshot: BTreeMap<String, Vec<(String, String)>>) -> State {
        State {
            version: 1,
            services: snapshot
                .into_iter()
                .filter(|(_, targets)| !targets.is_empty())
                .map(|(name, targets)| {
                    (
                        name,
                        targets
                            .into_iter()
                            .map(|(address, health_path)| SavedTarget {
                                address,
                                health_path,
                            })
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is not valid (line {line}, column {column}: {message})")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot write the state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the state; a missing file is an empty state.
pub fn load(dir: &Path) -> Result<State, StateError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let state: State = serde_json::from_str(&text).map_err(|e| StateError::Parse {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if state.version != 1 {
        return Err(StateError::Parse {
            path,
            line: 1,
            column: 1,
            message: format!("version {} is not one this edge knows (1)", state.version),
        });
    }
    Ok(state)
}

/// Loads the state, or on a bad file logs why, moves it aside (kept for
/// a human to look at) and starts empty.
pub fn load_or_set_aside(dir: &Path) -> State {
    match load(dir) {
        Ok(state) => state,
        Err(error) => {
            let path = dir.join(FILE_NAME);
            let aside = dir.join(format!("{FILE_NAME}.bad"));
            let moved = std::fs::rename(&path, &aside).is_ok();
            tracing::error!(
                %error,
                moved_to = moved.then(|| aside.display().to_string()),
                "starting with no targets: the deployer's next `edge ctl deploy` sets them again"
            );
            State::default()
        }
    }
}

/// Writes the state atomically.
pub fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    let path = dir.join(FILE_NAME);
    let fail = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        let mut text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut snapshot = BTreeMap::new();
        snapshot.insert(
            "api".to_string(),
            vec![("10.0.0.2:5000".into(), "/healthz".into())],
        );
        snapshot.insert("frontend".to_string(), vec![]);
        let state = State::from_snapshot(snapshot);
        save(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), state);
        assert!(!state.services.contains_key("frontend"));
    }

    #[test]
    fn a_truncated_state_file_is_named_with_its_position_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "{\"version\": 1, \"services\": {\"api\": [",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("state.json") && e.contains("line 1"), "{e}");
        assert_eq!(load_or_set_aside(dir.path()), State::default());
        assert!(dir.path().join("state.json.bad").exists());
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
