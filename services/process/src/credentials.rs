//! The API's basic-auth user, read from the environment by both binaries:
//! the API checks requests against it, the web UI sends it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::SecretString;

/// A username and password for the API's basic auth. The password is a
/// [`SecretString`]: `Debug` shows `[REDACTED]`, and reading it takes an
/// explicit `expose_secret()`.
#[derive(Debug, Clone)]
pub struct ApiCredentials {
    pub username: String,
    pub password: SecretString,
}

/// Reads `API_USERNAME` and `API_PASSWORD`, or `API_PASSWORD_FILE` (Docker
/// secrets) when no password is set. Both must be non-empty.
pub fn api_credentials_from_env() -> anyhow::Result<ApiCredentials> {
    api_credentials_from(|key| std::env::var_os(key))
}

fn api_credentials_from(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<ApiCredentials> {
    let text = |key: &str| var(key).map(|v| v.to_string_lossy().into_owned());
    let username = text("API_USERNAME").unwrap_or_default();
    let password = match (text("API_PASSWORD"), var("API_PASSWORD_FILE")) {
        (Some(password), _) => password,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
            .with_context(|| {
                format!(
                    "cannot read API_PASSWORD_FILE {}",
                    PathBuf::from(&file).display()
                )
            })?,
        (None, None) => String::new(),
    };
    if username.is_empty() || password.is_empty() {
        bail!(
            "no API credentials configured: set API_USERNAME and API_PASSWORD (or \
             API_PASSWORD_FILE) in the environment"
        );
    }
    Ok(ApiCredentials {
        username,
        password: SecretString::from(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn password_comes_from_the_variable_first() {
        let c =
            api_credentials_from(env(&[("API_USERNAME", "root"), ("API_PASSWORD", "pw")])).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.expose_secret()),
            ("root", "pw")
        );
    }

    #[test]
    fn password_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = api_credentials_from(env(&[
            ("API_USERNAME", "root"),
            ("API_PASSWORD_FILE", file.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(c.password.expose_secret(), "from-file");
    }

    #[test]
    fn missing_credentials_are_refused_with_the_variables_named() {
        let error = api_credentials_from(env(&[("API_USERNAME", "root")])).unwrap_err();
        assert!(error.to_string().contains("API_PASSWORD"), "{error}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = ApiCredentials {
            username: "root".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
