//! The users, read from the environment: the API's basic-auth user (the
//! API checks requests against it, the web UI sends it), and who may sign
//! in to the web UI ([`LoginUser`], by default the API's user), kept as an
//! argon2 hash only.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

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

/// The value of `{prefix}_PASSWORD`, else the content of the file named by
/// `{prefix}_PASSWORD_FILE` without its trailing newline; `None` if neither.
fn password_from(
    var: &impl Fn(&str) -> Option<OsString>,
    prefix: &str,
) -> anyhow::Result<Option<String>> {
    let file_key = format!("{prefix}_PASSWORD_FILE");
    match (var(&format!("{prefix}_PASSWORD")), var(&file_key)) {
        (Some(password), _) => Ok(Some(password.to_string_lossy().into_owned())),
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map(|p| Some(p.trim_end_matches(['\r', '\n']).to_owned()))
            .with_context(|| format!("cannot read {file_key} {}", PathBuf::from(&file).display())),
        (None, None) => Ok(None),
    }
}

fn api_credentials_from(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<ApiCredentials> {
    let username = var("API_USERNAME")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let password = password_from(&var, "API")?.unwrap_or_default();
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

/// Who may sign in to the web UI: a username and an argon2 hash (PHC
/// string) of the password. The plain password is hashed once, at start-up,
/// and dropped; `Debug` shows neither.
#[derive(Clone)]
pub struct LoginUser {
    username: String,
    hash: String,
    /// Which variables it came from, for the start-up log.
    pub source: &'static str,
}

impl std::fmt::Debug for LoginUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginUser")
            .field("username", &self.username)
            .field("hash", &"[argon2 hash]")
            .field("source", &self.source)
            .finish()
    }
}

impl LoginUser {
    /// Hashes `password` with argon2id (the crate's default cost) and a
    /// random salt. Slow on purpose: call it once, at start-up.
    pub fn with_password(username: &str, password: &SecretString) -> anyhow::Result<LoginUser> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|e| anyhow::anyhow!("cannot get random bytes for a salt: {e}"))?;
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| anyhow::anyhow!("cannot encode the salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("cannot hash the UI password: {e}"))?
            .to_string();
        Ok(LoginUser {
            username: username.to_owned(),
            hash,
            source: "a password",
        })
    }

    /// Takes an argon2 PHC string (`$argon2id$v=19$m=...`) as made by
    /// `argon2` tools; refuses anything else.
    pub fn with_hash(username: &str, phc: &str) -> anyhow::Result<LoginUser> {
        let parsed = PasswordHash::new(phc.trim()).map_err(|_| {
            anyhow::anyhow!(
                "UI_PASSWORD_HASH is not an argon2 PHC string: it should look like \
                 $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH (make one with \
                 `echo -n PASSWORD | argon2 SALT -id -e`)"
            )
        })?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            bail!(
                "UI_PASSWORD_HASH uses {}, not argon2: make one with `argon2 SALT -id -e`",
                parsed.algorithm
            );
        }
        Ok(LoginUser {
            username: username.to_owned(),
            hash: phc.trim().to_owned(),
            source: "UI_PASSWORD_HASH",
        })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Whether the pair is this user. The username is compared in constant
    /// time and the password hash is always computed, so timing does not
    /// tell which was wrong. Takes tens of milliseconds of CPU: call it
    /// from `spawn_blocking`.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        let user_ok: bool = self.username.as_bytes().ct_eq(username.as_bytes()).into();
        let password_ok = PasswordHash::new(&self.hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        user_ok & password_ok
    }
}

/// Who may sign in to the web UI: `UI_USERNAME` with `UI_PASSWORD`,
/// `UI_PASSWORD_FILE` or `UI_PASSWORD_HASH`; without `UI_USERNAME`, the
/// API's user (`API_USERNAME` and `API_PASSWORD` or `API_PASSWORD_FILE`).
pub fn ui_login_from_env() -> anyhow::Result<LoginUser> {
    ui_login_from(|key| std::env::var_os(key))
}

fn ui_login_from(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<LoginUser> {
    // An empty UI_* variable counts as unset, so that docker-compose's
    // `UI_PASSWORD: ${UI_PASSWORD:-}` means "not configured".
    let ui_var = |key: &str| var(key).filter(|v| !v.is_empty());
    let username = ui_var("UI_USERNAME").map(|v| v.to_string_lossy().into_owned());
    let hash = ui_var("UI_PASSWORD_HASH").map(|v| v.to_string_lossy().into_owned());
    let password = password_from(&ui_var, "UI")?;
    let Some(username) = username else {
        if hash.is_some() || password.is_some() {
            bail!(
                "a UI password is set but UI_USERNAME is not: set UI_USERNAME too, or \
                 remove UI_PASSWORD, UI_PASSWORD_FILE and UI_PASSWORD_HASH to sign in as \
                 the API's user"
            );
        }
        let api = api_credentials_from(var).context(
            "no UI user configured (UI_USERNAME), and the API's user it defaults to is missing",
        )?;
        let mut user = LoginUser::with_password(&api.username, &api.password)?;
        user.source = "API_USERNAME and API_PASSWORD";
        return Ok(user);
    };
    match (hash, password) {
        (Some(_), Some(_)) => bail!(
            "both UI_PASSWORD_HASH and UI_PASSWORD (or UI_PASSWORD_FILE) are set: keep only one"
        ),
        (Some(hash), None) => LoginUser::with_hash(&username, &hash),
        (None, Some(password)) if !password.is_empty() => {
            let mut user = LoginUser::with_password(&username, &SecretString::from(password))?;
            user.source = "UI_USERNAME and UI_PASSWORD";
            Ok(user)
        }
        (None, _) => bail!(
            "UI_USERNAME is set without a password: set UI_PASSWORD, UI_PASSWORD_FILE \
             (Docker secrets) or UI_PASSWORD_HASH (an argon2 PHC string)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn the_ui_user_defaults_to_the_apis() {
        let user = ui_login_from(env(&[("API_USERNAME", "root"), ("API_PASSWORD", "pw")])).unwrap();
        assert_eq!(user.username(), "root");
        assert!(user.verify("root", "pw"));
        assert!(!user.verify("root", "pW"));
        assert!(!user.verify("Root", "pw"));
        assert!(user.source.contains("API_USERNAME"));
    }

    #[test]
    fn a_ui_user_of_its_own_wins_and_is_kept_only_as_a_hash() {
        let user = ui_login_from(env(&[
            ("API_USERNAME", "root"),
            ("API_PASSWORD", "pw"),
            ("UI_USERNAME", "teacher"),
            ("UI_PASSWORD", "ui-s3cret"),
        ]))
        .unwrap();
        assert!(user.verify("teacher", "ui-s3cret"));
        assert!(!user.verify("root", "pw"));
        assert!(user.hash.starts_with("$argon2id$"), "{}", user.hash);
        assert!(!user.hash.contains("ui-s3cret"));
        let shown = format!("{user:?}");
        assert!(
            !shown.contains("ui-s3cret") && !shown.contains("$argon2"),
            "{shown}"
        );
    }

    #[test]
    fn the_ui_password_may_come_from_a_file_or_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ui-pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let user = ui_login_from(env(&[
            ("UI_USERNAME", "teacher"),
            ("UI_PASSWORD_FILE", file.to_str().unwrap()),
        ]))
        .unwrap();
        assert!(user.verify("teacher", "from-file"));

        let hash = LoginUser::with_password("x", &SecretString::from("hashed-pw"))
            .unwrap()
            .hash;
        let user = ui_login_from(env(&[
            ("UI_USERNAME", "teacher"),
            ("UI_PASSWORD_HASH", hash.as_str()),
        ]))
        .unwrap();
        assert!(user.verify("teacher", "hashed-pw"));
        assert_eq!(user.source, "UI_PASSWORD_HASH");
    }

    #[test]
    fn empty_ui_variables_count_as_unset() {
        let user = ui_login_from(env(&[
            ("API_USERNAME", "root"),
            ("API_PASSWORD", "pw"),
            ("UI_USERNAME", ""),
            ("UI_PASSWORD", ""),
            ("UI_PASSWORD_FILE", ""),
            ("UI_PASSWORD_HASH", ""),
        ]))
        .unwrap();
        assert!(user.verify("root", "pw"));
    }

    #[test]
    fn ui_mistakes_are_refused_with_the_variables_named() {
        let error =
            |pairs: &[(&str, &str)]| format!("{:#}", ui_login_from(env(pairs)).unwrap_err());
        let e = error(&[("UI_USERNAME", "teacher")]);
        assert!(
            e.contains("UI_PASSWORD_HASH") && e.contains("UI_PASSWORD_FILE"),
            "{e}"
        );
        let e = error(&[("UI_PASSWORD", "pw")]);
        assert!(e.contains("UI_USERNAME"), "{e}");
        let e = error(&[
            ("UI_USERNAME", "teacher"),
            ("UI_PASSWORD_HASH", "$2b$12$notargon"),
        ]);
        assert!(e.contains("argon2"), "{e}");
        assert!(!e.contains("notargon"), "the hash is not echoed: {e}");
        let e = error(&[
            ("UI_USERNAME", "teacher"),
            ("UI_PASSWORD", "pw"),
            (
                "UI_PASSWORD_HASH",
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            ),
        ]);
        assert!(e.contains("only one"), "{e}");
        let e = error(&[]);
        assert!(
            e.contains("API_USERNAME") && e.contains("UI_USERNAME"),
            "{e}"
        );
    }
}
