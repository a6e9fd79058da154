//! The certificates the HTTPS listeners present: a fixed pair from files,
//! or what the ACME client obtained. The resolver is swapped in place, so
//! a renewed certificate serves from the next handshake without a restart;
//! during a TLS-ALPN-01 validation it answers the CA's `acme-tls/1`
//! handshake with the challenge certificate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What identifies one version of a file: size, modification time, inode
/// (a file replaced by rename keeps its size and maybe its mtime).
fn file_version(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

/// What `ctl status` shows of a certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub domains: Vec<String>,
    pub not_after: String,
    /// Seconds since the epoch, for arithmetic.
    pub not_after_unix: i64,
    pub issuer: String,
}

/// The certificate in use, swappable at run time.
#[derive(Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
    info: ArcSwap<Vec<CertInfo>>,
    alpn_challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    pub last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("info", &self.info.load())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the certificate and key do not make a usable pair: {0}")]
    Pair(String),
}

impl CertStore {
    /// Installs a chain (leaf first) and its key; from the next handshake on
    /// clients get it.
    pub fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertInfo, TlsError> {
        let info = describe(&chain).map_err(TlsError::Pair)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| TlsError::Pair(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signer);
        certified.keys_match().map_err(|_| {
            TlsError::Pair(
                "the private key is not the key of the certificate (the first in the chain)".into(),
            )
        })?;
        self.current.store(Some(Arc::new(certified)));
        self.info.store(Arc::new(vec![info.clone()]));
        Ok(info)
    }

    pub fn install_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Cert {
                path: "(PEM)".into(),
                message: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
            path: "(PEM)".into(),
            message: e.to_string(),
        })?;
        self.install(chain, key)
    }

    /// Loads a fixed certificate from files.
    pub fn install_files(&self, cert: &Path, key: &Path) -> Result<CertInfo, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert {
                path: cert.display().to_string(),
                message: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Cert {
                path: cert.display().to_string(),
                message: "no CERTIFICATE block in the file".into(),
            });
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            message: e.to_string(),
        })?;
        self.install(chain, key_der)
    }

    /// Keeps a certificate from files current: every `every`, when either
    /// file changed (size, modification time or inode), loads the pair
    /// again. A pair that does not load (a half-copied file, a key that is
    /// not the certificate's) is logged and kept in `last_error`, and the
    /// certificate in use stays until a good pair replaces it.
    pub async fn watch_files(
        self: Arc<Self>,
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        every: std::time::Duration,
    ) {
        let mut seen = (file_version(&cert), file_version(&key));
        loop {
            tokio::time::sleep(every).await;
            let now = (file_version(&cert), file_version(&key));
            if now == seen {
                continue;
            }
            seen = now;
            match self.install_files(&cert, &key) {
                Ok(info) => {
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::info!(domains = ?info.domains, not_after = info.not_after, "tls: the certificate files changed; serving the new certificate");
                }
                Err(error) => {
                    tracing::warn!(%error, "tls: the certificate files changed but do not load; still serving the previous certificate");
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(error.to_string());
                }
            }
        }
    }

    pub fn info(&self) -> Vec<CertInfo> {
        self.info.load().as_ref().clone()
    }

    pub fn has_certificate(&self) -> bool {
        self.current.load().is_some()
    }

    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.alpn_challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_ascii_lowercase(), key);
    }

    pub fn clear_alpn_challenge(&self, domain: &str) {
        self.alpn_challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&domain.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .alpn_challenges
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
        }
        self.current.load_full()
    }
}

/// The rustls configuration of the HTTPS listeners.
pub fn server_config(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Arc::new(config)
}

/// Reads the domains, expiry and issuer of a chain's leaf.
pub fn describe(chain: &[CertificateDer<'_>]) -> Result<CertInfo, String> {
    let leaf = chain.first().ok_or("an empty certificate chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    let mut domains: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if domains.is_empty() {
        domains = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
    }
    let not_after_unix = cert.validity().not_after.timestamp();
    Ok(CertInfo {
        domains,
        not_after: rfc3339(not_after_unix),
        not_after_unix,
        issuer: cert.issuer().to_string(),
    })
}

/// `2026-11-28T17:00:00Z` from seconds since the epoch (UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_885_200), "2026-11-28T17:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
