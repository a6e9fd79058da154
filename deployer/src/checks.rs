//! Acceptance checks: HTTP requests against a running stack, each with the
//! status, JSON fields and body text its answer must hold.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::pipeline::{Auth, Check};

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// None when the check passed; what was wrong otherwise.
    pub failure: Option<String>,
}

/// Runs `checks` in order (a write then a read must see the write).
/// `base_urls` maps a service to `http://host:port`.
pub async fn run(
    checks: &[Check],
    base_urls: &HashMap<String, String>,
    auth: &Auth,
) -> Vec<Outcome> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client without TLS or proxies always builds");
    let mut outcomes = Vec::new();
    for check in checks {
        let failure = match base_urls.get(&check.service) {
            None => Some(format!("service {} publishes no port", check.service)),
            Some(base) => run_one(&client, check, base, auth).await.err(),
        };
        outcomes.push(Outcome {
            name: check.name.clone(),
            failure,
        });
    }
    outcomes
}

async fn run_one(
    client: &reqwest::Client,
    check: &Check,
    base: &str,
    auth: &Auth,
) -> Result<(), String> {
    let url = format!("{base}{}", check.path);
    let method = reqwest::Method::from_bytes(check.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method, &url);
    if check.auth {
        request = request.basic_auth(&auth.username, Some(&auth.password));
    }
    if let Some(body) = &check.body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{} {url}: {e}", check.method))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let shown = || {
        let mut t: String = text.chars().take(200).collect();
        if t.len() < text.len() {
            t.push('…');
        }
        t
    };
    if status != check.status {
        return Err(format!(
            "{} {}: expected status {}, got {status}: {}",
            check.method,
            check.path,
            check.status,
            shown()
        ));
    }
    if !check.json.is_empty() {
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the body is not JSON ({e}): {}", shown()))?;
        for (pointer, expected) in &check.json {
            match json.pointer(pointer) {
                Some(actual) if actual == expected => {}
                Some(actual) => {
                    return Err(format!("{pointer}: expected {expected}, got {actual}"));
                }
                None => return Err(format!("{pointer}: missing from {}", shown())),
            }
        }
    }
    for needle in &check.body_contains {
        if !text.contains(needle.as_str()) {
            return Err(format!("the body does not contain {needle:?}: {}", shown()));
        }
    }
    Ok(())
}
