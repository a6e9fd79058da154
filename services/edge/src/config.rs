//! The edge's static configuration, read from the environment (the compose
//! file sets it): which sockets to listen on, which path goes to which
//! service, the limits and timeouts, and where TLS certificates come from.
//!
//! Targets (where a service runs right now) are not configuration: the
//! deployer sets them at run time with `edge ctl deploy`, see `state`.
//!
//! `EDGE_LISTEN`'s syntax lives in the `student-ages-edge-listen` crate,
//! which the deployer reads too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub use student_ages_edge_listen::{ListenAddress, ListenError, ListenerSpec, Route};

/// Everything the environment configures.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<ListenerSpec>,
    /// Control and hand-over sockets live here (a volume the old and the
    /// new edge container both mount).
    pub run_dir: PathBuf,
    /// `state.json` (the targets) lives here.
    pub state_dir: PathBuf,
    pub limits: Limits,
    pub health: HealthSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body forwarded (413 beyond).
    pub max_body: u64,
    /// How long a client may take to send a request's head; a keep-alive
    /// connection waiting for its next request is bounded by it too.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a target may take to start answering (504 beyond).
    pub upstream_timeout: Duration,
    /// How long SIGTERM or a hand-over waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed checks that take a healthy target out.
    pub failures: u32,
}

#[derive(Debug, Clone, Default)]
pub enum TlsSettings {
    #[default]
    Off,
    Files {
        cert: PathBuf,
        key: PathBuf,
        /// How often the files are looked at for a new version.
        check_every: Duration,
    },
    Acme(AcmeSettings),
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub directory: String,
    pub email: Option<String>,
    /// An extra root to trust for the ACME server's own HTTPS (pebble's).
    pub ca_file: Option<PathBuf>,
    /// The same, as PEM text (`EDGE_ACME_CA_PEM`): for a deploy that cannot
    /// put a file into the edge's container.
    pub ca_pem: Option<String>,
    pub cert_dir: PathBuf,
    /// Renew when the certificate has less than this left.
    pub renew_before: Duration,
}

pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// A configuration mistake, naming the variable and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: {what}")]
    Missing {
        var: &'static str,
        what: &'static str,
    },
    #[error("{0}")]
    Inconsistent(&'static str),
    #[error("EDGE_LISTEN: {source}")]
    Listen { source: ListenError },
    #[error("{var}={value:?}: {problem}")]
    Value {
        var: &'static str,
        value: String,
        problem: String,
    },
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the configuration through `var` (tests pass a map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let listen = var("EDGE_LISTEN").ok_or(ConfigError::Missing {
            var: "EDGE_LISTEN",
            what: "the listeners and their routes, e.g. \
                   EDGE_LISTEN=\"web=http://0.0.0.0:80 -> frontend; api=http://0.0.0.0:5000 -> api\"",
        })?;
        let listeners = student_ages_edge_listen::parse_listeners(&listen)
            .map_err(|source| ConfigError::Listen { source })?;
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(v) => parse_duration(&v).map_err(|problem| ConfigError::Value {
                    var: name,
                    value: v,
                    problem,
                }),
            }
        };
        let limits = Limits {
            max_body: match var("EDGE_MAX_BODY") {
                None => 16 * 1024 * 1024,
                Some(v) => parse_size(&v).map_err(|problem| ConfigError::Value {
                    var: "EDGE_MAX_BODY",
                    value: v,
                    problem,
                })?,
            },
            header_timeout: duration("EDGE_HEADER_TIMEOUT", Duration::from_secs(10))?,
            idle_timeout: duration("EDGE_IDLE_TIMEOUT", Duration::from_secs(75))?,
            upstream_timeout: duration("EDGE_UPSTREAM_TIMEOUT", Duration::from_secs(60))?,
            shutdown_timeout: duration("EDGE_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?,
        };
        let health = HealthSettings {
            interval: duration("EDGE_HEALTH_INTERVAL", Duration::from_secs(1))?,
            timeout: duration("EDGE_HEALTH_TIMEOUT", Duration::from_secs(2))?,
            failures: match var("EDGE_HEALTH_FAILURES") {
                None => 2,
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(ConfigError::Value {
                            var: "EDGE_HEALTH_FAILURES",
                            value: v,
                            problem: "expected a whole number of checks, at least 1".into(),
                        });
                    }
                },
            },
        };
        let tls = tls_settings(&var, &listeners, duration)?;
        Ok(Config {
            listeners,
            run_dir: var("EDGE_RUN_DIR").map_or_else(|| PathBuf::from("/run/edge"), PathBuf::from),
            state_dir: var("EDGE_STATE_DIR")
                .map_or_else(|| PathBuf::from("/var/lib/edge"), PathBuf::from),
            limits,
            health,
            tls,
        })
    }

    /// Every service some route names.
    pub fn services(&self) -> BTreeSet<String> {
        self.listeners
            .iter()
            .flat_map(|l| l.routes.iter().map(|r| r.service.clone()))
            .collect()
    }
}

fn tls_settings(
    var: &impl Fn(&str) -> Option<String>,
    listeners: &[ListenerSpec],
    duration: impl Fn(&'static str, Duration) -> Result<Duration, ConfigError>,
) -> Result<TlsSettings, ConfigError> {
    let has_https = listeners
        .iter()
        .any(|l| matches!(l.address, ListenAddress::Https(_)));
    let tls = match (
        var("EDGE_TLS_CERT_FILE"),
        var("EDGE_TLS_KEY_FILE"),
        var("EDGE_TLS_DOMAINS"),
    ) {
        (Some(cert), Some(key), _) => TlsSettings::Files {
            cert: cert.into(),
            key: key.into(),
            check_every: duration("EDGE_TLS_FILES_CHECK", Duration::from_secs(5))?,
        },
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(ConfigError::Missing {
                var: "EDGE_TLS_CERT_FILE/EDGE_TLS_KEY_FILE",
                what: "a fixed certificate needs both the certificate chain and the key file",
            });
        }
        (None, None, Some(domains)) => {
            let domains: Vec<String> = domains
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect();
            for d in &domains {
                if d.starts_with("*.") || d.contains('/') || d.contains(':') || !d.contains('.') {
                    return Err(ConfigError::Value {
                        var: "EDGE_TLS_DOMAINS",
                        value: d.clone(),
                        problem: "expected DNS names such as school.example.org, comma-separated \
                                  (no wildcards: they need DNS-01, which the edge does not do)"
                            .into(),
                    });
                }
            }
            TlsSettings::Acme(AcmeSettings {
                domains,
                directory: var("EDGE_ACME_DIRECTORY")
                    .unwrap_or_else(|| LETS_ENCRYPT_PRODUCTION.into()),
                email: var("EDGE_ACME_EMAIL"),
                ca_file: var("EDGE_ACME_CA_FILE").map(PathBuf::from),
                ca_pem: var("EDGE_ACME_CA_PEM"),
                cert_dir: var("EDGE_CERT_DIR")
                    .map_or_else(|| PathBuf::from("/var/lib/edge/certs"), PathBuf::from),
                renew_before: duration("EDGE_ACME_RENEW_BEFORE", Duration::from_secs(30 * 86400))?,
            })
        }
        (None, None, None) => TlsSettings::Off,
    };
    if !has_https && matches!(tls, TlsSettings::Files { .. }) {
        return Err(ConfigError::Inconsistent(
            "EDGE_TLS_CERT_FILE and EDGE_TLS_KEY_FILE are set but no EDGE_LISTEN listener is \
             https://: add one (in the stack, HTTPS is on when TLS_DOMAINS is set)",
        ));
    }
    if has_https && matches!(tls, TlsSettings::Off) {
        return Err(ConfigError::Missing {
            var: "EDGE_TLS_DOMAINS",
            what: "an https:// listener needs a certificate: EDGE_TLS_DOMAINS (ACME) or \
                   EDGE_TLS_CERT_FILE and EDGE_TLS_KEY_FILE",
        });
    }
    Ok(tls)
}

/// `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 10s or 2m, got {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a usable duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `16MiB`, `512KiB`, `1GiB`, or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 16MiB, 512KiB or 1048576, got {text:?}"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "GiB" | "G" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    Ok(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_size("16MiB").unwrap(), 16 * 1024 * 1024);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn an_https_listener_without_a_certificate_source_is_refused() {
        let e = Config::from_lookup(|k| {
            (k == "EDGE_LISTEN").then(|| "tls=https://0.0.0.0:443 -> api".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("EDGE_TLS_DOMAINS"), "{e}");
    }

    #[test]
    fn certificate_files_without_an_https_listener_are_refused() {
        let e = Config::from_lookup(|k| match k {
            "EDGE_LISTEN" => Some("web=http://0.0.0.0:80 -> frontend".to_string()),
            "EDGE_TLS_CERT_FILE" => Some("/tls/cert.pem".to_string()),
            "EDGE_TLS_KEY_FILE" => Some("/tls/key.pem".to_string()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("no EDGE_LISTEN listener is https://"), "{e}");
    }
}
