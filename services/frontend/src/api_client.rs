//! The API as the web UI sees it: a small typed client over reqwest that
//! sends our credentials server-side, so the browser never sees them.
//!
//! The API is reached over plain HTTP, by TCP (`http://api:5000`) or
//! through a unix socket (`unix:/run/edge/api.sock`, where an edge proxy on
//! the same host listens). A read that fails because the connection was
//! refused or dropped before any answer is tried once more: a GET changes
//! nothing, and a restarting API or proxy refuses or drops exactly such a
//! connection. Writes are never retried.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use student_ages_process::{ApiCredentials, ExposeSecret};
use student_ages_rules::{Age, StudentName};

use crate::api_url::ApiUrl;
use crate::listing::{Class, ClassCache, Student};

/// How the API let us down, in words for the error page.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
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
    student_ages: InOrder,
}

/// The list's JSON object read into a `Vec`, in the order the API sent it
/// (reading order), without a map in between.
struct InOrder(Vec<Student>);

impl<'de> Deserialize<'de> for InOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = InOrder;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of student name to age")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InOrder, A::Error> {
                let mut students = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((name, age)) = map.next_entry::<String, u32>()? {
                    students.push(Student { name, age });
                }
                Ok(InOrder(students))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The API's answer to a CSV import or its preview.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ImportReport {
    pub(crate) applied: bool,
    pub(crate) added: usize,
    pub(crate) changed: usize,
    pub(crate) unchanged: usize,
    pub(crate) not_in_file: usize,
    #[serde(default)]
    pub(crate) added_students: Vec<AddedStudent>,
    #[serde(default)]
    pub(crate) changed_students: Vec<ChangedStudent>,
    #[serde(default)]
    pub(crate) errors: Vec<RowError>,
    #[serde(default)]
    pub(crate) error_count: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AddedStudent {
    pub(crate) line: u64,
    pub(crate) name: String,
    pub(crate) age: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChangedStudent {
    pub(crate) line: u64,
    pub(crate) name: String,
    pub(crate) age: u32,
    pub(crate) previous_age: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RowError {
    pub(crate) line: u64,
    pub(crate) error: String,
}

/// How long an import may take: a 5 MB file is checked row by row.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Whether a PUT created the student or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    Created,
    Updated,
}

#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    /// What request URLs start with; over a unix socket only its path
    /// matters (and its host becomes the `Host` header).
    base: String,
    /// `API_URL` as configured, for messages.
    url: String,
    credentials: ApiCredentials,
}

impl ApiClient {
    pub(crate) fn new(url: &ApiUrl, credentials: ApiCredentials) -> reqwest::Result<ApiClient> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5));
        let (builder, base) = match url {
            ApiUrl::Http(base) => (builder, base.clone()),
            ApiUrl::Unix(path) => (
                builder.unix_socket(path.as_path()),
                "http://localhost".into(),
            ),
        };
        Ok(ApiClient {
            http: builder.build()?,
            base,
            url: url.to_string(),
            credentials,
        })
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

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.basic_auth(
            &self.credentials.username,
            Some(self.credentials.password.expose_secret()),
        )
    }

    /// Sends a write, once.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    /// Sends a read, and sends it again once if the connection failed
    /// before any answer came.
    async fn get(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let again = request.try_clone();
        let result = match (request.send().await, again) {
            (Err(error), Some(again)) if connection_failed(&error) => {
                tracing::debug!(error = %describe(&error), "API connection failed; trying once more");
                again.send().await
            }
            (result, _) => result,
        };
        result.map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, error: &reqwest::Error) -> ApiError {
        ApiError::Unreachable {
            url: self.url.clone(),
            reason: describe(error),
        }
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
                url: self.url.clone(),
            },
            StatusCode::NOT_FOUND => ApiError::NotFound(name.to_owned()),
            s if s.is_client_error() => ApiError::Invalid(message),
            s => ApiError::Failed {
                url: self.url.clone(),
                status: s.as_u16(),
                message,
            },
        }
    }

    /// The class: every student and their age, in reading order, from
    /// `cache` when the API's answer is the one it was made from.
    pub(crate) async fn class(&self, cache: &ClassCache) -> Result<Arc<Class>, ApiError> {
        let url = format!("{}/supmit/api/v1.0/get_student_ages", self.base);
        let response = self.get(self.authorized(self.http.get(url))).await?;
        if !response.status().is_success() {
            return Err(self.failure(response, "").await);
        }
        let unreadable = |e: &dyn std::fmt::Display| ApiError::Failed {
            url: self.url.clone(),
            status: 200,
            message: format!("unreadable answer: {e}"),
        };
        let body = response.bytes().await.map_err(|e| unreadable(&e))?;
        cache.get(body, |bytes| {
            serde_json::from_slice::<StudentAges>(bytes)
                .map(|body| body.student_ages.0)
                .map_err(|e| unreadable(&e))
        })
    }

    /// Creates the student or changes their age.
    pub(crate) async fn put(&self, name: &StudentName, age: Age) -> Result<Saved, ApiError> {
        let request = self
            .http
            .put(self.student_url(name.as_str()))
            .json(&serde_json::json!({ "age": age.years() }));
        let request = self.authorized(request);
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Saved::Created),
            s if s.is_success() => Ok(Saved::Updated),
            _ => Err(self.failure(response, name.as_str()).await),
        }
    }

    /// Deletes the student; [`ApiError::NotFound`] if there was none.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let request = self.authorized(self.http.delete(self.student_url(name)));
        let response = self.send(request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.failure(response, name).await)
        }
    }

    /// Sends a CSV to the API's import: a preview (`dry_run`) or the real
    /// thing. A file with bad rows is `Ok` with the rows in `errors` (and
    /// nothing written); a body the API refuses whole (not CSV, too large)
    /// is [`ApiError::Invalid`] with its message.
    pub(crate) async fn import_csv(
        &self,
        csv: Vec<u8>,
        dry_run: bool,
    ) -> Result<ImportReport, ApiError> {
        let url = format!(
            "{}/supmit/api/v1.0/student_ages.csv{}",
            self.base,
            if dry_run { "?dry_run=true" } else { "" }
        );
        let request = self
            .http
            .post(url)
            .timeout(IMPORT_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "text/csv; charset=utf-8")
            .body(csv);
        let request = self.authorized(request);
        // A preview changes nothing, so it may be sent again; an import not.
        let response = if dry_run {
            self.get(request).await?
        } else {
            self.send(request).await?
        };
        match response.status() {
            s if s.is_success() || s == StatusCode::UNPROCESSABLE_ENTITY => response
                .json::<ImportReport>()
                .await
                .map_err(|e| ApiError::Failed {
                    url: self.url.clone(),
                    status: s.as_u16(),
                    message: format!("unreadable answer: {e}"),
                }),
            // An API from before CSV import (mid-deploy): say so, not "no
            // student named ''".
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Err(ApiError::Invalid(
                "the API does not offer CSV import yet (an older version is running); \
                 try again once it is updated"
                    .into(),
            )),
            _ => Err(self.failure(response, "").await),
        }
    }

    /// Whether the API's /healthz answers 200.
    pub(crate) async fn health(&self) -> Result<(), ApiError> {
        let url = format!("{}/healthz", self.base);
        let request = self.http.get(url).timeout(Duration::from_secs(2));
        let response = self.get(request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.failure(response, "").await)
        }
    }
}

/// Whether the connection failed before any answer came: refused, reset,
/// or closed before a response, so a read may safely be sent again.
fn connection_failed(error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = cause.source();
    }
    false
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
pub(crate) fn url_escape(name: &str) -> String {
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
