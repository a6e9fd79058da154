//! The one JSON shape every error takes: `{"error": "..."}`.
//!
//! Handlers return [`ApiError`]; failures raised by the framework itself
//! (unknown route, unparsable body, missing credentials) are turned into
//! the same shape by [`framework_error`], so a client never sees plain text.

use poem::http::{StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use student_ages_rules::{AgeError, NameError};

use crate::store::StoreError;

/// The realm announced in `WWW-Authenticate`, so browsers and curl prompt.
pub(crate) const AUTH_CHALLENGE: &str = "Basic realm=\"student-ages\", charset=\"UTF-8\"";

/// The body of every error response.
#[derive(Debug, Clone, Object)]
pub(crate) struct ErrorBody {
    /// What went wrong, in words a user can act on.
    error: String,
}

/// Errors a handler reports.
#[derive(Debug, ApiResponse)]
pub(crate) enum ApiError {
    /// The request is invalid; the message says which part and why.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong credentials.
    // Never built by a handler: the security scheme refuses first and
    // `framework_error` writes this shape. Listed so the OpenAPI document
    // shows the 401.
    #[allow(dead_code)]
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No such student.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is well-formed but its content is refused; nothing was
    /// written.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// The change was written but its durability is unconfirmed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The data file could not be read or written.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: message.into(),
    })
}

impl ApiError {
    /// A request the client can fix; the message says how.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(body(message))
    }

    /// Content the rules refuse; the message names what and where.
    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::Unprocessable(body(message))
    }

    pub(crate) fn not_found() -> Self {
        ApiError::NotFound(body("Not found"))
    }

    /// A store failure: 500 when the change is in place but its
    /// durability unconfirmed (the message says so), 503 otherwise.
    pub(crate) fn store(error: &StoreError) -> Self {
        if error.change_is_in_place() {
            tracing::error!(%error, "change in place, durability unconfirmed");
            return ApiError::Internal(body(error.to_string()));
        }
        tracing::error!(%error, "data file unavailable");
        ApiError::Unavailable(body(error.to_string()))
    }
}

/// A name the rules refuse is a 400 whose message says why.
impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::BadRequest(body(error.to_string()))
    }
}

/// An age the rules refuse is a 400 whose message says why.
impl From<AgeError> for ApiError {
    fn from(error: AgeError) -> Self {
        ApiError::BadRequest(body(error.to_string()))
    }
}

/// A one-student path with no name: the rules' own message, as a 400.
pub(crate) fn empty_name() -> poem::Error {
    poem::Error::from_string(NameError::Empty.to_string(), StatusCode::BAD_REQUEST)
}

/// Maps an error raised outside our handlers to the JSON error shape.
pub(crate) fn framework_error(error: poem::Error) -> Response {
    // Our own handlers' errors (ApiError) already carry the JSON shape.
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let message = match status {
        StatusCode::UNAUTHORIZED => "Unauthorized access".to_owned(),
        StatusCode::NOT_FOUND => "Not found".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
            "{error}; send the body as JSON with the header 'Content-Type: application/json' \
             (a CSV to student_ages.csv with 'Content-Type: text/csv')"
        ),
        _ => error.to_string(),
    };
    // Parse errors from poem-openapi carry their own status; anything that
    // is not a client error is logged, since the client cannot fix it.
    if status.is_server_error() {
        tracing::error!(%error, "request failed");
    }
    let mut response = poem::web::Json(serde_json::json!({ "error": message }))
        .with_status(status)
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(AUTH_CHALLENGE),
        );
    }
    response
}
