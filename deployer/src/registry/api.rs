//! The registry's own HTTP API (distribution v2), for what the Docker
//! Engine API cannot do: ask whether a user may push, and put an image
//! index. A request goes first without credentials; when the registry
//! answers 401, again with a bearer token for the request's scope (Docker
//! Hub) or with basic auth (a registry with htpasswd), as Docker does.

use std::time::Duration;

use anyhow::{Context, anyhow};
use secrecy::ExposeSecret;

use super::{Registry, is_bearer};

/// How a request was authorized, to send a follow-up the same way.
#[derive(Clone)]
pub(super) enum Authorization {
    Anonymous,
    Bearer(String),
    Basic,
}

impl Authorization {
    pub(super) fn apply(
        &self,
        registry: &Registry,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        match self {
            Authorization::Anonymous => request,
            Authorization::Bearer(token) => request.bearer_auth(token),
            Authorization::Basic => request.basic_auth(
                &registry.settings.username,
                Some(registry.settings.password.expose_secret()),
            ),
        }
    }
}

impl Registry {
    /// A client for the registry's API: a timeout, no redirects followed
    /// with credentials.
    pub(super) fn api_client() -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")
    }

    /// Sends the request `build` makes, authorized for `scope`
    /// (`repository:NAME:push,pull`) if the registry asks; the response
    /// and how it was authorized.
    pub(super) async fn send_authorized(
        &self,
        client: &reqwest::Client,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::Response, Authorization)> {
        let server = &self.settings.server;
        let unreachable = |e: reqwest::Error| {
            anyhow!(
                "the registry {server} is unreachable: {}; check DOCKER_REGISTRY and the network",
                crate::errors::root_cause(&e)
            )
        };
        let first = build(client).send().await.map_err(unreachable)?;
        if first.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok((first, Authorization::Anonymous));
        }
        let challenge = first
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let authorization = if is_bearer(&challenge) {
            let answer = self
                .token_response(client, &challenge, Some(scope))
                .await
                .map_err(unreachable)??;
            let token: serde_json::Value = answer.json().await.unwrap_or_default();
            Authorization::Bearer(
                token["token"]
                    .as_str()
                    .or(token["access_token"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        } else {
            Authorization::Basic
        };
        let response = authorization
            .apply(self, build(client))
            .send()
            .await
            .map_err(unreachable)?;
        Ok((response, authorization))
    }
}
