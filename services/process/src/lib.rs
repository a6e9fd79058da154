//! The process around a student-ages server: what `api` and `frontend` both
//! do before and after they serve.
//!
//! Both binaries read the API credentials from the environment (never from
//! flags, so they stay out of `ps`), log with tracing, stop cleanly on
//! SIGTERM (they are PID 1 in a scratch image, where `docker stop` sends
//! it), and answer `<binary> healthcheck` for Docker's `HEALTHCHECK`, since
//! a scratch image has no curl.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// A username and password for the API's basic auth.
pub struct ApiCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
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
    Ok(ApiCredentials { username, password })
}

/// Logs one line per request (target `request`: `RUST_LOG=warn` or
/// `RUST_LOG=info,request=off` silences them). Used with poem's `around`.
pub async fn log_request<E: poem::Endpoint>(
    next: E,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match next.call(req).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    };
    tracing::info!(
        target: "request",
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
    );
    Ok(response)
}

/// Logs to stdout, one line per event; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on SIGTERM (`docker stop`) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails if the runtime has no signal driver");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// Asks the server listening on `listen_addr` on this machine for
/// `/healthz`; `Ok` when it answers 2xx. The body of the `healthcheck`
/// subcommand, which Docker's `HEALTHCHECK` runs.
pub fn healthcheck(listen_addr: &str) -> anyhow::Result<()> {
    let url = format!("http://{}/healthz", loopback_for(listen_addr)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(4))
            .build()
            .context("cannot build the HTTP client")?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {url} answered {status}: {body}");
        }
        Ok(())
    })
}

/// The address to probe on this machine: the listen address, with a
/// wildcard host replaced by loopback.
fn loopback_for(listen_addr: &str) -> anyhow::Result<String> {
    let (host, port) = listen_addr
        .rsplit_once(':')
        .with_context(|| format!("LISTEN_ADDR {listen_addr:?} has no port"))?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("{host}:{port}"))
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
        assert_eq!((c.username.as_str(), c.password.as_str()), ("root", "pw"));
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
        assert_eq!(c.password, "from-file");
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
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(loopback_for("0.0.0.0:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(loopback_for("[::]:8080").unwrap(), "[::1]:8080");
        assert_eq!(loopback_for("127.0.0.2:1").unwrap(), "127.0.0.2:1");
        assert!(loopback_for("nohost").is_err());
    }
}
