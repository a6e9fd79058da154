//! Acceptance checks: HTTP requests against a running stack, each with the
//! status, JSON fields and body text its answer must hold; and the
//! throw-away project `deployer test` runs them against.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use secrecy::ExposeSecret;

use crate::config::pipeline::{Auth, Check, JsonKind};
use crate::docker::project_containers;
use crate::engine::{Engine, Volumes};
use crate::progress::Progress;
use crate::signal::StopSignal;
use crate::stack::{Restart, Stack};
use crate::workspace::Workspace;

/// The result of one check.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub name: String,
    /// None when the check passed; what was wrong otherwise.
    pub failure: Option<String>,
}

/// Runs `checks` in order (a write then a read must see the write).
/// `base_urls` maps a service to `http://host:port`.
pub(crate) async fn run(
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
    // One sign-in per service and run: each costs the UI a password hash.
    let mut sessions: HashMap<String, String> = HashMap::new();
    for check in checks {
        let failure = match base_urls.get(&check.service) {
            None => Some(format!("service {} publishes no port", check.service)),
            Some(base) => {
                let session = match (check.login, sessions.get(&check.service)) {
                    (false, _) => Ok(None),
                    (true, Some(cookie)) => Ok(Some(cookie.clone())),
                    (true, None) => sign_in(&client, base, auth).await.map(|cookie| {
                        sessions.insert(check.service.clone(), cookie.clone());
                        Some(cookie)
                    }),
                };
                match session {
                    Ok(cookie) => run_one(&client, check, base, auth, cookie.as_deref())
                        .await
                        .err(),
                    Err(e) => Some(e),
                }
            }
        };
        outcomes.push(Outcome {
            name: check.name.clone(),
            failure,
        });
    }
    outcomes
}

/// The cookies a response sets, as a `Cookie` header's `name=value` pairs.
fn cookies_set(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect()
}

/// Signs in through the web form at `/login` as a browser would: the
/// form's CSRF token and cookie, then the user and password posted. The
/// session cookie(s) it sets, as a `Cookie` header value.
async fn sign_in(client: &reqwest::Client, base: &str, auth: &Auth) -> Result<String, String> {
    let url = format!("{base}/login");
    let form = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("signing in: GET {url}: {e}"))?;
    if form.status() != reqwest::StatusCode::OK {
        return Err(format!(
            "signing in: GET /login answered {}, not the login form",
            form.status()
        ));
    }
    let form_cookies = cookies_set(&form);
    let page = form.text().await.unwrap_or_default();
    let csrf = page
        .split_once(r#"name="csrf" value=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned())
        .ok_or("signing in: the login form has no csrf field")?;
    let answer = client
        .post(&url)
        .header(reqwest::header::COOKIE, form_cookies.join("; "))
        .form(&[
            ("username", auth.username.as_str()),
            ("password", auth.password.expose_secret()),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .map_err(|e| format!("signing in: POST {url}: {e}"))?;
    let session = cookies_set(&answer);
    match answer.status().as_u16() {
        303 | 302 if !session.is_empty() => Ok(session.join("; ")),
        401 => Err(format!(
            "signing in: the user {:?} was refused (test.auth's user must be one the UI accepts)",
            auth.username
        )),
        other => Err(format!("signing in: POST /login answered {other}")),
    }
}

async fn run_one(
    client: &reqwest::Client,
    check: &Check,
    base: &str,
    auth: &Auth,
    session: Option<&str>,
) -> Result<(), String> {
    let url = format!("{base}{}", check.path);
    let method = reqwest::Method::from_bytes(check.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method, &url);
    if check.auth {
        request = request.basic_auth(&auth.username, Some(auth.password.expose_secret()));
    }
    if let Some(cookie) = session {
        request = request.header(reqwest::header::COOKIE, cookie);
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
    if !check.json.is_empty() || !check.shape.is_empty() {
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the body is not JSON ({e}): {}", shown()))?;
        for (pointer, kind) in &check.shape {
            match json.pointer(pointer).map(JsonKind::of) {
                Some(actual) if actual == *kind => {}
                Some(actual) => {
                    return Err(format!("{pointer}: expected {kind:?}, got {actual:?}"));
                }
                None => return Err(format!("{pointer}: missing from {}", shown())),
            }
        }
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

/// `deployer test` and `release`: runs the images of `version` (not
/// `latest`, which another build on this machine may have moved) in a
/// throw-away project
/// (own network, loopback ports the daemon picks, a fresh copy of the seed
/// data), runs every acceptance check, always tears down. Fails naming how
/// many checks failed.
pub(crate) async fn test_images(
    workspace: &Workspace,
    version: &str,
    progress: &Progress,
) -> anyhow::Result<()> {
    let docker = workspace.local_docker().await?;
    let mut stack = workspace.stack_with(&[("TAG".to_owned(), version.to_owned())])?;
    stack.project = format!("{}-test-{}", stack.project, std::process::id());
    loopback_edge(&mut stack)?;
    for service in &mut stack.services {
        service.restart = Restart::No;
        for port in &mut service.ports {
            port.host_ip = "127.0.0.1".into();
            port.host_port = String::new();
        }
    }
    let mut stop = StopSignal::install()?;
    let engine = Engine::new(&docker, progress);
    progress.println(&format!("test project {}", stack.project));
    let result = tokio::select! {
        result = run_in(&engine, &docker, &stack, workspace, progress) => result,
        _ = stop.received() => Err(anyhow!("interrupted")),
    };
    let teardown = engine.down(&stack.project, Volumes::Remove).await;
    progress.println(&format!("test project {} removed", stack.project));
    let failed = result?;
    teardown?;
    if failed > 0 {
        bail!(
            "{failed} of {} acceptance checks failed (see the FAIL lines above); nothing was released",
            workspace.pipeline.checks.len()
        );
    }
    Ok(())
}

/// Moves the edge of a throw-away stack onto free loopback ports, without
/// HTTPS (it has no certificate): the real stack's ports may be in use, by
/// the real stack.
fn loopback_edge(stack: &mut Stack) -> anyhow::Result<()> {
    use student_ages_edge_listen::ListenAddress;
    let listeners = stack.edge_listeners()?;
    let Some(edge) = stack.edge.as_ref().map(|e| e.service.clone()) else {
        return Ok(());
    };
    let mut moved = Vec::new();
    for mut listener in listeners {
        match listener.address {
            ListenAddress::Https(_) => continue,
            ListenAddress::Http(_) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                listener.address = ListenAddress::Http(([127, 0, 0, 1], port).into());
                listener.redirect_https = false;
            }
            ListenAddress::Unix(_) => {}
        }
        moved.push(listener.to_string());
    }
    if let Some(service) = stack.services.iter_mut().find(|s| s.name == edge) {
        service
            .env
            .retain(|kv| !kv.starts_with("EDGE_TLS_") && !kv.starts_with("EDGE_ACME_"));
        for kv in &mut service.env {
            if kv.starts_with("EDGE_LISTEN=") {
                *kv = format!("EDGE_LISTEN={}", moved.join("; "));
            }
        }
    }
    Ok(())
}

/// Applies the throw-away stack and runs the checks; the number failed.
async fn run_in(
    engine: &Engine,
    docker: &bollard::Docker,
    stack: &Stack,
    workspace: &Workspace,
    progress: &Progress,
) -> anyhow::Result<usize> {
    engine.apply(stack, &workspace.pipeline.seeds).await?;
    let mut base_urls = HashMap::new();
    for container in project_containers(docker, &stack.project).await? {
        let service = container.service().to_owned();
        if let Some(entry) = stack.entry(&service) {
            base_urls.insert(service, entry.url());
            continue;
        }
        // A port the daemon picked when the container started.
        let inspect = docker.inspect_container(&container.id, None).await?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| {
                ports
                    .into_values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port.filter(|p| !p.is_empty()))
            });
        if let Some(port) = port {
            base_urls.insert(service, format!("http://127.0.0.1:{port}"));
        }
    }
    let outcomes = run(
        &workspace.pipeline.checks,
        &base_urls,
        &workspace.pipeline.auth,
    )
    .await;
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.failure {
            None => progress.out(&format!("PASS  {}", outcome.name)),
            Some(why) => {
                failed += 1;
                progress.out(&format!("FAIL  {}: {why}", outcome.name));
            }
        }
    }
    Ok(failed)
}
