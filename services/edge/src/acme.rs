//! Obtaining and renewing the HTTPS certificate with ACME (Let's Encrypt
//! by default, any RFC 8555 server through `EDGE_ACME_DIRECTORY`), with
//! instant-acme for the protocol.
//!
//! The certificate, its key and the ACME account are cached in
//! `EDGE_CERT_DIR` (a volume), so a restart does not re-issue (Let's
//! Encrypt rate-limits that). A cached certificate with less than
//! `EDGE_ACME_RENEW_BEFORE` left (30 days) is renewed while the old one
//! keeps serving; the new one is swapped in without a restart. HTTP-01 is
//! used when the edge has a plain-HTTP TCP listener (the CA must reach it
//! on port 80), else TLS-ALPN-01 on the HTTPS listener.
//!
//! The ACME server's own HTTPS is verified against the Mozilla roots built
//! in (webpki-roots: a scratch image has no CA bundle), plus
//! `EDGE_ACME_CA_FILE` when set (a test CA such as pebble's).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::AcmeSettings;
use crate::proxy::Challenges;
use crate::tls::CertStore;

const ACCOUNT_FILE: &str = "account.json";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// Which challenge the CA validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Http01,
    TlsAlpn01,
}

/// Keeps a valid certificate in `store` for as long as the edge runs.
pub async fn maintain(
    settings: AcmeSettings,
    challenge: Challenge,
    store: Arc<CertStore>,
    challenges: Arc<Challenges>,
) {
    let dir = settings.cert_dir.join(cache_name(&settings.directory));
    match load_cached(&dir, &settings, &store) {
        Ok(Some(info)) => {
            tracing::info!(domains = ?info.domains, not_after = info.not_after, "tls: using the cached certificate")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "tls: the cached certificate is not usable; getting a new one")
        }
    }
    let mut backoff = Duration::from_secs(5);
    loop {
        let left = remaining(&store);
        if let Some(left) = left
            && left > settings.renew_before
        {
            // Look again at least twice a day: clocks jump, files change.
            let wait = (left - settings.renew_before).min(Duration::from_secs(12 * 3600));
            tokio::time::sleep(wait).await;
            continue;
        }
        tracing::info!(domains = ?settings.domains, directory = settings.directory, ?challenge, "tls: ordering a certificate");
        match obtain(&settings, &dir, challenge, &store, &challenges).await {
            Ok(()) => {
                backoff = Duration::from_secs(5);
                *store.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(error = %message, retry_in = ?backoff, "tls: could not get a certificate");
                *store.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(3600));
            }
        }
    }
}

/// Time left on the certificate in use, None without one.
fn remaining(store: &CertStore) -> Option<Duration> {
    let info = store.info();
    let not_after = info.first()?.not_after_unix;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(
        not_after.saturating_sub(now).max(0) as u64
    ))
}

/// One cache directory per ACME directory URL, so staging and production
/// (or a test CA) never mix accounts or certificates.
fn cache_name(directory: &str) -> String {
    directory
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn load_cached(
    dir: &Path,
    settings: &AcmeSettings,
    store: &CertStore,
) -> anyhow::Result<Option<crate::tls::CertInfo>> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert.exists() || !key.exists() {
        return Ok(None);
    }
    let chain = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
    let chain_der = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let info = crate::tls::describe(&chain_der).map_err(anyhow::Error::msg)?;
    let mut wanted = settings.domains.clone();
    wanted.sort();
    let mut have = info.domains.clone();
    have.sort();
    if wanted != have {
        bail!(
            "{} is for {:?}, EDGE_TLS_DOMAINS asks for {:?}",
            cert.display(),
            info.domains,
            settings.domains
        );
    }
    let key_pem = std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
    Ok(Some(store.install_pem(&chain, &key_pem)?))
}

async fn account(settings: &AcmeSettings, dir: &Path) -> anyhow::Result<Account> {
    let path = dir.join(ACCOUNT_FILE);
    if let Ok(text) = std::fs::read(&path) {
        let credentials: AccountCredentials = serde_json::from_slice(&text)
            .with_context(|| format!("parsing the ACME account {}", path.display()))?;
        return Account::builder_with_http(http_client(settings)?)
            .from_credentials(credentials)
            .await
            .with_context(|| format!("restoring the ACME account from {}", path.display()));
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http_client(settings)?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .with_context(|| format!("creating an ACME account at {}", settings.directory))?;
    let json = serde_json::to_vec_pretty(&credentials)?;
    write_private(&path, &json)?;
    Ok(account)
}

/// The HTTPS client for the ACME server: Mozilla's roots plus the extra CA.
fn http_client(settings: &AcmeSettings) -> anyhow::Result<Box<dyn instant_acme::HttpClient>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &settings.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading EDGE_ACME_CA_FILE {}", ca.display()))?;
        if certs.is_empty() {
            bail!("EDGE_ACME_CA_FILE {} holds no certificate", ca.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("using EDGE_ACME_CA_FILE {}", ca.display()))?;
        }
    }
    if let Some(pem) = &settings.ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading EDGE_ACME_CA_PEM")?;
        if certs.is_empty() {
            bail!("EDGE_ACME_CA_PEM holds no certificate");
        }
        for cert in certs {
            roots.add(cert).context("using EDGE_ACME_CA_PEM")?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, BodyWrapper<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    Ok(Box::new(client))
}

async fn obtain(
    settings: &AcmeSettings,
    dir: &Path,
    challenge: Challenge,
    store: &CertStore,
    challenges: &Challenges,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let account = account(settings, dir).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .context("creating the order")?;
    let wanted = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut tokens = Vec::new();
    let mut alpn_domains = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.context("reading an authorization")?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let domain = authz.identifier().to_string();
            let mut ch = authz
                .challenge(wanted.clone())
                .with_context(|| format!("the CA offers no {wanted:?} challenge for {domain}"))?;
            let key_authorization = ch.key_authorization();
            match challenge {
                Challenge::Http01 => {
                    challenges.insert(ch.token.clone(), key_authorization.as_str().to_string());
                    tokens.push(ch.token.clone());
                }
                Challenge::TlsAlpn01 => {
                    store.set_alpn_challenge(
                        &domain,
                        alpn_certificate(&domain, key_authorization.digest().as_ref())?,
                    );
                    alpn_domains.push(domain.clone());
                }
            }
            ch.set_ready()
                .await
                .with_context(|| format!("asking the CA to validate {domain}"))?;
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retries).await;
    for token in &tokens {
        challenges.remove(token);
    }
    for domain in &alpn_domains {
        store.clear_alpn_challenge(domain);
    }
    let status = status.context("waiting for the CA to validate the challenges")?;
    if status != OrderStatus::Ready {
        bail!(
            "the order ended {status:?}: the CA could not validate the challenge (is port 80/443 reachable from the internet for these names?)"
        );
    }
    let key_pem = order.finalize().await.context("finalizing the order")?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .context("downloading the certificate")?;
    let info = store.install_pem(chain_pem.as_bytes(), key_pem.as_bytes())?;
    write_private(&dir.join(KEY_FILE), key_pem.as_bytes())?;
    write_private(&dir.join(CERT_FILE), chain_pem.as_bytes())?;
    tracing::info!(domains = ?info.domains, not_after = info.not_after, issuer = info.issuer, "tls: certificate issued and in use");
    Ok(())
}

/// The self-signed certificate a TLS-ALPN-01 validation expects (RFC 8737).
fn alpn_certificate(
    domain: &str,
    digest: &[u8],
) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Writes a secret file atomically, readable by this user only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a cache file has a directory")?;
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
