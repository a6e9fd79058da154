//! The two files the deployer reads: `docker-compose.yml` (the running
//! stack) and `pipeline.yaml` (what compose cannot say). Both are parsed into
//! typed models that refuse unknown keys, and every error names the file,
//! line and column or the key, and what is expected.

pub mod compose;
pub mod interpolate;
pub mod pipeline;
pub mod swarm;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads and parses a YAML file into `T`. The one place YAML is parsed, so
/// swapping serde_yaml (archived upstream) for a fork is a one-line change.
pub(crate) fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|error| {
        let (line, column) = error
            .location()
            .map_or((1, 1), |at| (at.line(), at.column()));
        let mut message = error.to_string();
        // serde_yaml appends the location we already print in front.
        if let Some((text, _)) = message.rsplit_once(" at line ") {
            message = text.to_owned();
        }
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    })
}

/// What interpolation sees: the process environment first, then the
/// `.env` file beside the compose file, as docker compose does.
pub struct Environment {
    dotenv: Vec<(String, String)>,
}

impl Environment {
    /// Reads `dir/.env` if it exists; a malformed line is an error naming it.
    pub fn load(dir: &Path) -> Result<Environment, ConfigError> {
        let path = dir.join(".env");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let mut dotenv = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError::Parse {
                    path,
                    line: i + 1,
                    column: 1,
                    message: "expected KEY=VALUE".into(),
                });
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                // Unquoted: ` #` starts a comment, as compose reads it.
                .unwrap_or_else(|| value.split(" #").next().unwrap_or(value).trim_end());
            dotenv.push((key.trim().to_owned(), value.to_owned()));
        }
        Ok(Environment { dotenv })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().or_else(|| {
            self.dotenv
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_reads_quotes_comments_and_export() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# a comment\nA=plain # trailing comment\nexport B=\"quoted # kept\"\nC='single'\n\nD=\n",
        )
        .unwrap();
        let env = Environment::load(dir.path()).unwrap();
        let get = |k: &str| {
            env.dotenv
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("A"), Some("plain"));
        assert_eq!(get("B"), Some("quoted # kept"));
        assert_eq!(get("C"), Some("single"));
        assert_eq!(get("D"), Some(""));
    }

    #[test]
    fn a_malformed_dotenv_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\nnot a pair\n").unwrap();
        let error = Environment::load(dir.path()).err().unwrap().to_string();
        assert!(error.ends_with(".env:2:1: expected KEY=VALUE"), "{error}");
    }
}
