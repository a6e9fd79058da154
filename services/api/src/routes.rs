//! The HTTP API: the original Flask paths, the write API and the health probe.
//!
//! Handlers parse the request into domain types ([`StudentName`], [`Age`]),
//! call the [`Store`], and map the result to a response.
//!
//! One read, `GET` of the whole list, is also answered by [`ListRead`]
//! without poem-openapi's per-request layers, with the same check and the
//! same body: it is the read clients repeat, and those layers were a tenth
//! of its cost (see `bench/api.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Request, Response};
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, Payload, PlainText};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use student_ages_rules::{Age, StudentName};

use student_ages_process::ApiCredentials;

use crate::auth::{self, ApiAuth};
use crate::error::ApiError;
use crate::store::{Change, Health as StoreHealth, Outcome, Reason, Store};

/// The original service's list path.
pub(crate) const LIST_PATH: &str = "/supmit/api/v1.0/get_student_ages";

/// The one-student paths with the name left out, which get a 400 saying
/// the name is empty rather than a 404.
pub(crate) const NAMELESS_PATHS: [&str; 2] = [
    "/supmit/api/v1.0/get_student_ages/",
    "/supmit/api/v1.0/student_ages/",
];

#[derive(Tags)]
enum Tag {
    /// The paths of the original service, kept verbatim for existing clients.
    Legacy,
    /// Read, create, change and delete one student.
    Students,
    /// Liveness and readiness.
    Health,
}

/// Every student's age, as the original service answered.
#[derive(Debug, Object)]
struct StudentAges {
    student_ages: BTreeMap<String, u32>,
}

/// A [`StudentAges`] body made from the store's JSON of the current
/// version, which is serialized once per version rather than once per
/// request: the list is read far more often than it changes. The OpenAPI
/// document describes it as `StudentAges`.
struct StudentAgesJson(Vec<u8>);

impl StudentAgesJson {
    fn new(students_json: &[u8]) -> StudentAgesJson {
        const OPEN: &[u8] = br#"{"student_ages":"#;
        let mut body = Vec::with_capacity(OPEN.len() + students_json.len() + 1);
        body.extend_from_slice(OPEN);
        body.extend_from_slice(students_json);
        body.push(b'}');
        StudentAgesJson(body)
    }
}

impl Payload for StudentAgesJson {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        StudentAges::schema_ref()
    }

    fn register(registry: &mut Registry) {
        StudentAges::register(registry);
    }
}

impl IntoResponse for StudentAgesJson {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.0)
    }
}

#[derive(ApiResponse)]
enum List {
    /// Every student's age.
    #[oai(status = 200)]
    Ok(StudentAgesJson),
}

/// One student.
#[derive(Debug, Object)]
struct Student {
    name: String,
    age: u32,
}

/// The body of a `PUT`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NewAge {
    /// A whole number of years, 0 to 150. Checked by the handler rather
    /// than the parser, so a wrong value gets a message about ages.
    age: serde_json::Value,
}

#[derive(ApiResponse)]
enum Put {
    /// The student was created.
    #[oai(status = 201)]
    Created(Json<Student>),
    /// The student's age was changed.
    #[oai(status = 200)]
    Updated(Json<Student>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// The student was deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The service's health: `ok`, `degraded` (reads work, writes would
/// fail) or `unavailable`, with a reason code when not `ok`.
#[derive(Debug, Object)]
#[oai(read_only_all)]
struct Health {
    /// `ok`, `degraded` or `unavailable`.
    status: String,
    /// Why not `ok`: `data_file_missing`, `data_file_unreadable`,
    /// `data_file_invalid`, `data_file_stuck`, `data_file_read_only`,
    /// `data_dir_not_writable` or `lock_file_not_writable`.
    #[oai(skip_serializing_if_is_none)]
    reason: Option<String>,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The data file is readable (`ok`), maybe not writable (`degraded`).
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The data file cannot be read, or did not answer in time.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

pub(crate) struct Api;

/// Every student's age: the body of the list read, however it is routed.
async fn list(store: &Store) -> Result<List, ApiError> {
    let snapshot = store.snapshot().await.map_err(|e| ApiError::store(&e))?;
    Ok(List::Ok(StudentAgesJson::new(snapshot.json())))
}

/// `GET` [`LIST_PATH`], answered straight from the dispatcher in front of
/// the OpenAPI routes: the same auth check as [`ApiAuth`] and the same
/// body as [`Api::list`], which documents the route (and answers `HEAD`).
pub(crate) struct ListRead {
    store: Store,
    credentials: Arc<ApiCredentials>,
}

impl ListRead {
    pub(crate) fn new(store: Store, credentials: Arc<ApiCredentials>) -> ListRead {
        ListRead { store, credentials }
    }

    pub(crate) async fn answer(&self, req: &Request) -> poem::Result<Response> {
        if !auth::allows(req, &self.credentials) {
            // What the security scheme raises; mapped to the JSON 401 with
            // its challenge by `framework_error`, as for every route.
            return Err(poem::Error::from_status(StatusCode::UNAUTHORIZED));
        }
        Ok(list(&self.store).await?.into_response())
    }
}

async fn age_of(store: &Store, name: &StudentName) -> Result<u32, ApiError> {
    let snapshot = store.snapshot().await.map_err(|e| ApiError::store(&e))?;
    snapshot
        .students
        .get(name.as_str())
        .map(|age| age.0)
        .ok_or_else(ApiError::not_found)
}

#[OpenApi]
impl Api {
    /// List every student's age
    #[oai(
        path = "/supmit/api/v1.0/get_student_ages",
        method = "get",
        tag = "Tag::Legacy"
    )]
    async fn list(&self, _auth: ApiAuth, store: Data<&Store>) -> Result<List, ApiError> {
        list(&store).await
    }

    /// One student's age, as a bare number in plain text
    #[oai(
        path = "/supmit/api/v1.0/get_student_ages/:name",
        method = "get",
        tag = "Tag::Legacy"
    )]
    async fn legacy_get(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        name: Path<String>,
    ) -> Result<PlainText<String>, ApiError> {
        let name = StudentName::parse(&name)?;
        age_of(&store, &name)
            .await
            .map(|age| PlainText(age.to_string()))
    }

    /// One student
    #[oai(
        path = "/supmit/api/v1.0/student_ages/:name",
        method = "get",
        tag = "Tag::Students"
    )]
    async fn get(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        name: Path<String>,
    ) -> Result<Json<Student>, ApiError> {
        let name = StudentName::try_from(name.0)?;
        let age = age_of(&store, &name).await?;
        Ok(Json(Student {
            name: name.into_string(),
            age,
        }))
    }

    /// Create a student or change their age
    ///
    /// Answers once the change is durably on disk.
    #[oai(
        path = "/supmit/api/v1.0/student_ages/:name",
        method = "put",
        tag = "Tag::Students"
    )]
    async fn put(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        name: Path<String>,
        body: Json<NewAge>,
    ) -> Result<Put, ApiError> {
        let name = StudentName::try_from(name.0)?;
        let age = Age::from_json(&body.age)?;
        let student = Json(Student {
            name: name.as_str().to_owned(),
            age: age.years(),
        });
        match store.apply(Change::Put { name, age }).await {
            Ok(Outcome::Created) => Ok(Put::Created(student)),
            Ok(_) => Ok(Put::Updated(student)),
            Err(e) => Err(ApiError::store(&e)),
        }
    }

    /// Delete a student
    #[oai(
        path = "/supmit/api/v1.0/student_ages/:name",
        method = "delete",
        tag = "Tag::Students"
    )]
    async fn delete(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        name: Path<String>,
    ) -> Result<Deleted, ApiError> {
        let name = StudentName::try_from(name.0)?;
        match store.apply(Change::Delete { name }).await {
            Ok(Outcome::NotFound) => Err(ApiError::not_found()),
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) => Err(ApiError::store(&e)),
        }
    }

    /// Health: 200 `ok` or `degraded` (read-only) with a reason code, 503
    /// `unavailable` when the data file cannot be read (no auth)
    #[oai(path = "/healthz", method = "get", tag = "Tag::Health")]
    async fn healthz(&self, store: Data<&Store>) -> HealthResponse {
        let health = |status: &str, reason: Option<Reason>| {
            Json(Health {
                status: status.to_owned(),
                reason: reason.map(|r| r.code().to_owned()),
            })
        };
        match store.health().await {
            StoreHealth::Ok => HealthResponse::Ok(health("ok", None)),
            StoreHealth::Degraded(reason) => HealthResponse::Ok(health("degraded", Some(reason))),
            StoreHealth::Unavailable(reason) => {
                HealthResponse::Unavailable(health("unavailable", Some(reason)))
            }
        }
    }
}
