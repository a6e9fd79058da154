//! The API as the web UI sees it: a small typed client over reqwest that
//! sends our credentials server-side, so the browser never sees them.

use std::collections::BTreeMap;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use reqwest::StatusCode;
use serde::Deserialize;

/// How the API let us down, in words for the error page.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No answer at all: refused, timed out, DNS.
    #[error("the API at {url} does not answer: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API refused our credentials.
    #[error(
        "the API at {url} refused the frontend's credentials (HTTP 401): check API_USERNAME \
         and API_PASSWORD are the same for both services"
    )]
    Unauthorized { url: String },
    /// The request was invalid; the API said why.
    #[error("{0}")]
    Invalid(String),
    /// No such student.
    #[error("no student named {0:?}")]
    NotFound(String),
    /// Anything else: 5xx, or an answer we cannot read.
    #[error("the API at {url} failed: HTTP {status}: {message}")]
    Failed {
        url: String,
        status: u16,
        message: String,
    },
}

#[derive(Deserialize)]
struct StudentAges {
    student_ages: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Whether a PUT created the student or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
}

impl ApiClient {
    pub fn new(base: &str, username: String, password: String) -> reqwest::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            username,
            password,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn student_url(&self, name: &str) -> String {
        // Path-segment encoding: '/', '?', '#', '%' and spaces must not
        // change the URL's meaning.
        format!(
            "{}/supmit/api/v1.0/student_ages/{}",
            self.base,
            url_escape(name)
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        request
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                url: self.base.clone(),
                reason: describe(&e),
            })
    }

    async fn failure(&self, response: reqwest::Response, name: &str) -> ApiError {
        let status = response.status();
        let message = match response.json::<ErrorBody>().await {
            Ok(body) => body.error,
            Err(_) => status
                .canonical_reason()
                .unwrap_or("unknown error")
                .to_owned(),
        };
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized {
                url: self.base.clone(),
            },
            StatusCode::NOT_FOUND => ApiError::NotFound(name.to_owned()),
            s if s.is_client_error() => ApiError::Invalid(message),
            s => ApiError::Failed {
                url: self.base.clone(),
                status: s.as_u16(),
                message,
            },
        }
    }

    /// Every student and their age.
    pub async fn list(&self) -> Result<BTreeMap<String, u32>, ApiError> {
        let url = format!("{}/supmit/api/v1.0/get_student_ages", self.base);
        let response = self.send(self.http.get(url)).await?;
        if !response.status().is_success() {
            return Err(self.failure(response, "").await);
        }
        response
            .json::<StudentAges>()
            .await
            .map(|body| body.student_ages)
            .map_err(|e| ApiError::Failed {
                url: self.base.clone(),
                status: 200,
                message: format!("unreadable answer: {e}"),
            })
    }

    /// Creates the student or changes their age.
    pub async fn put(&self, name: &str, age: u32) -> Result<Saved, ApiError> {
        let request = self
            .http
            .put(self.student_url(name))
            .json(&serde_json::json!({ "age": age }));
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Saved::Created),
            s if s.is_success() => Ok(Saved::Updated),
            _ => Err(self.failure(response, name).await),
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let response = self.send(self.http.delete(self.student_url(name))).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.failure(response, name).await)
        }
    }

    /// Whether the API's /healthz answers 200.
    pub async fn health(&self) -> Result<(), ApiError> {
        let url = format!("{}/healthz", self.base);
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                url: self.base.clone(),
                reason: describe(&e),
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.failure(response, "").await)
        }
    }
}

/// A short reason for a transport error, without reqwest's URL noise.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    }
}

/// Everything but RFC 3986's unreserved characters is escaped.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a name for use as one URL path segment.
pub fn url_escape(name: &str) -> String {
    utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(url_escape("zoé"), "zo%C3%A9");
        assert_eq!(url_escape("a/b?c#d %"), "a%2Fb%3Fc%23d%20%25");
        assert_eq!(url_escape("Mary-Ann_2"), "Mary-Ann_2");
    }
}
