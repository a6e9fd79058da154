//! The `frontend` binary: reads its configuration from the environment and
//! serves the student-ages web UI, or answers `frontend healthcheck`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use student_ages_frontend::{
    Access, ApiUrl, Config, CookieSecure, DEFAULT_KEY_DIR, KeySource, LoginConfig, SessionKey,
};
use student_ages_process::{ServerArgs, ThrottleLimits, TrustedProxies};

const ENVIRONMENT: &str = "\
The API's credentials (environment only, never flags, so they stay out of `ps`):
  API_USERNAME         the user the API requires
  API_PASSWORD         its password, or:
  API_PASSWORD_FILE    a file holding the password (Docker secrets)

Who may sign in to the web UI (environment only; by default the API's user):
  UI_USERNAME          the user who signs in (without it: API_USERNAME)
  UI_PASSWORD          its password, or:
  UI_PASSWORD_FILE     a file holding the password (Docker secrets), or:
  UI_PASSWORD_HASH     an argon2 PHC string ($argon2id$v=19$...)

The key that signs sessions and sign-in forms (share it between the old and the
new container of a deploy, or a deploy signs everyone out):
  UI_SESSION_KEY       32+ random bytes, base64 (from a secret), or:
  UI_SESSION_KEY_FILE  a file holding them (raw or base64), created if missing
  Neither: /var/lib/frontend/session.key if that directory exists and is
  writable (created there if missing), else a random key for this process.

Logging: RUST_LOG (default `info`; `warn` drops the per-request lines).

`frontend healthcheck` is healthy when the UI serves and the API answers.

Examples:
  API_USERNAME=root API_PASSWORD=root API_URL=http://localhost:5000 frontend
  API_USERNAME=root API_PASSWORD=root API_URL=unix:/run/edge/api.sock frontend";

/// The student-ages web UI: lists, filters, adds, changes and deletes
/// students through the API, server-side.
#[derive(Debug, Parser)]
#[command(version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// The student-ages API: its base URL, http://host:port, or
    /// unix:/path/to/socket for plain HTTP over a unix socket.
    #[arg(long, env = "API_URL", default_value = "http://localhost:5000")]
    api_url: String,

    /// Who may see the list: `login` (every page needs a sign-in) or
    /// `public-read` (the list is public and read-only; signing in enables
    /// changes).
    #[arg(long, env = "UI_ACCESS", value_enum, default_value_t = Access::Login)]
    ui_access: Access,

    /// How long a session lives unused (8h, 30m, ...).
    #[arg(long, env = "UI_SESSION_IDLE", default_value = "8h", value_parser = humantime::parse_duration)]
    ui_session_idle: std::time::Duration,

    /// How long a session lives at most, used or not (7d, 12h, ...).
    #[arg(long, env = "UI_SESSION_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    ui_session_max_age: std::time::Duration,

    /// The file holding the key that signs sessions (32+ random bytes, raw
    /// or base64), created (mode 0600) if missing. Default:
    /// /var/lib/frontend/session.key when that directory is writable.
    #[arg(long, env = "UI_SESSION_KEY_FILE")]
    ui_session_key_file: Option<std::path::PathBuf>,

    /// When the session cookie is `Secure`: `auto` (when the edge says the
    /// request came over HTTPS, X-Forwarded-Proto: https) or `always`.
    #[arg(long, env = "UI_COOKIE_SECURE", value_enum, default_value_t = CookieSecure::Auto)]
    ui_cookie_secure: CookieSecure,

    /// Peers (addresses or networks, comma-separated) whose
    /// X-Forwarded-For names the client, for the sign-in throttle; put the
    /// edge's address as the frontend sees it here.
    #[arg(
        long,
        env = "UI_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1/128"
    )]
    ui_trusted_proxies: TrustedProxies,

    /// Failed sign-ins allowed per client address within the window.
    #[arg(long, env = "UI_LOGIN_MAX_FAILURES", default_value_t = 5)]
    ui_login_max_failures: u32,

    /// The window failed sign-ins are counted in, and how long a client
    /// then waits.
    #[arg(long, env = "UI_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = humantime::parse_duration)]
    ui_login_failure_window: std::time::Duration,
}

fn main() -> ExitCode {
    let cli: Cli = student_ages_process::parse_args("0.0.0.0:8080");
    student_ages_process::run_server(
        "frontend",
        &cli.server,
        || prepare(&cli),
        |config, listener, shutdown| student_ages_frontend::run(listener, config, shutdown),
    )
}

/// Everything checked before the port is taken: credentials, API_URL,
/// who may sign in (the password is hashed here, once), the session key.
fn prepare(cli: &Cli) -> anyhow::Result<Config> {
    let api_credentials = student_ages_process::api_credentials_from_env()
        .context("the UI needs the credentials the API expects")?;
    let api_url: ApiUrl = cli.api_url.parse()?;
    let user =
        student_ages_process::ui_login_from_env().context("the UI needs a user who may sign in")?;
    let session_key = session_key(cli)?;
    let login = LoginConfig {
        access: cli.ui_access,
        session_idle: cli.ui_session_idle,
        session_max_age: cli.ui_session_max_age,
        session_key,
        cookie_secure: cli.ui_cookie_secure,
        trusted_proxies: cli.ui_trusted_proxies.clone(),
        throttle: ThrottleLimits {
            max_failures: cli.ui_login_max_failures,
            window: cli.ui_login_failure_window,
            ..ThrottleLimits::default()
        },
        ..LoginConfig::new(user)
    };
    Ok(Config {
        api_url,
        api_credentials,
        login,
    })
}

/// The session key from UI_SESSION_KEY, UI_SESSION_KEY_FILE or the default
/// directory, with where it came from logged (never the key itself).
fn session_key(cli: &Cli) -> anyhow::Result<SessionKey> {
    let inline = std::env::var("UI_SESSION_KEY")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let file = cli
        .ui_session_key_file
        .as_deref()
        .filter(|path| !path.as_os_str().is_empty());
    let (key, source) = student_ages_frontend::resolve_session_key(
        inline.as_deref(),
        file,
        std::path::Path::new(DEFAULT_KEY_DIR),
    )
    .context("the UI needs a key to sign its sessions")?;
    let fingerprint = key.fingerprint();
    match source {
        KeySource::Environment => {
            tracing::info!(fingerprint, "session key from UI_SESSION_KEY");
        }
        KeySource::File { path, created } => tracing::info!(
            fingerprint,
            path = %path.display(),
            created,
            "session key {}",
            if created { "created" } else { "read" }
        ),
        KeySource::Random { why } => tracing::warn!(
            fingerprint,
            "session key: a random one for this process only, because {why}: everyone signed \
             in is signed out, and open sign-in forms are refused, when this process is \
             restarted or replaced"
        ),
    }
    Ok(key)
}
