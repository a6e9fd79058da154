//! The HTTP API: the original Flask paths, the write API and the health probe.
//!
//! Handlers parse, call the [`Store`], and map the result to a response.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::auth::ApiAuth;
use crate::error::ApiError;
use crate::store::{Age, Change, Outcome, Store};
use student_ages_rules as validate;

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

#[derive(Debug, Object)]
struct Health {
    status: String,
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The data file is readable.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The data file cannot be read.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

pub struct Api;

fn checked_name(name: &str) -> Result<&str, ApiError> {
    validate::name(name).map_err(ApiError::bad_request)
}

fn age_of(store: &Store, name: &str) -> Result<u32, ApiError> {
    let name = checked_name(name)?;
    let snapshot = store.snapshot().map_err(|e| ApiError::unavailable(&e))?;
    snapshot
        .students
        .get(name)
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
    async fn list(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
    ) -> Result<Json<StudentAges>, ApiError> {
        let snapshot = store.snapshot().map_err(|e| ApiError::unavailable(&e))?;
        let student_ages = snapshot
            .students
            .iter()
            .map(|(name, age)| (name.clone(), age.0))
            .collect();
        Ok(Json(StudentAges { student_ages }))
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
        age_of(&store, &name).map(|age| PlainText(age.to_string()))
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
        let age = age_of(&store, &name)?;
        Ok(Json(Student { name: name.0, age }))
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
        checked_name(&name)?;
        let age = validate::age_value(&body.age)
            .map(Age)
            .map_err(ApiError::bad_request)?;
        let change = Change::Put {
            name: name.0.clone(),
            age,
        };
        let student = Json(Student {
            name: name.0,
            age: age.0,
        });
        match store.apply(change).await {
            Ok(Outcome::Created) => Ok(Put::Created(student)),
            Ok(_) => Ok(Put::Updated(student)),
            Err(e) => Err(ApiError::unavailable(&e)),
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
        checked_name(&name)?;
        match store.apply(Change::Delete { name: name.0 }).await {
            Ok(Outcome::NotFound) => Err(ApiError::not_found()),
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) => Err(ApiError::unavailable(&e)),
        }
    }

    /// Health: 200 when the data file is readable, 503 otherwise (no auth)
    #[oai(path = "/healthz", method = "get", tag = "Tag::Health")]
    async fn healthz(&self, store: Data<&Store>) -> HealthResponse {
        match store.check() {
            Ok(()) => HealthResponse::Ok(Json(Health {
                status: "ok".into(),
                error: None,
            })),
            Err(error) => HealthResponse::Unavailable(Json(Health {
                status: "unavailable".into(),
                error: Some(error.to_string()),
            })),
        }
    }
}
