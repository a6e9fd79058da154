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
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, ParsePayload, Payload, PlainText};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use student_ages_rules::{Age, StudentName};

use student_ages_process::ApiCredentials;

use crate::auth::{self, ApiAuth};
use crate::error::ApiError;
use crate::store::{
    Change, Health as StoreHealth, ImportSummary, Outcome, Reason, Store, parse_students,
    plan_import,
};
use crate::students_csv::{self, Refusal};

/// The original service's list path.
pub(crate) const LIST_PATH: &str = "/supmit/api/v1.0/get_student_ages";

/// The whole class as CSV: `GET` exports it, `POST` imports one.
pub(crate) const CSV_PATH: &str = "/supmit/api/v1.0/student_ages.csv";
/// Where a whole data file replaces every student (its route's path).
pub(crate) const DATA_FILE_PATH: &str = "/supmit/api/v1.0/student_ages.json";

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

/// A class as CSV: a header `name,age`, then one student per row, UTF-8.
pub(crate) struct Csv(Vec<u8>);

impl Payload for Csv {
    const CONTENT_TYPE: &'static str = "text/csv; charset=utf-8";

    /// `text/csv` (or `application/csv`, or `text/plain`), any parameters.
    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        ["text/csv", "application/csv", "text/plain"]
            .iter()
            .any(|accepted| essence.eq_ignore_ascii_case(accepted))
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }
}

impl ParsePayload for Csv {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(Csv(Vec::<u8>::from_request(request, body).await?))
    }
}

// The two-argument form: the one-argument form names the macro unqualified.
poem_openapi::impl_apirequest_for_payload!(Csv,);

impl IntoResponse for Csv {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header(
                poem::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"student_ages.csv\"",
            )
            .body(self.0)
    }
}

/// A whole data file: a JSON object of student name to age, as
/// `student_age.json` holds it (and `deployer backup` saves it).
pub(crate) struct DataFile(Vec<u8>);

impl Payload for DataFile {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    }

    fn schema_ref() -> MetaSchemaRef {
        BTreeMap::<String, u32>::schema_ref()
    }
}

impl ParsePayload for DataFile {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(DataFile(Vec::<u8>::from_request(request, body).await?))
    }
}

poem_openapi::impl_apirequest_for_payload!(DataFile,);

/// What a replacement of every student did.
#[derive(Debug, Object)]
struct Replaced {
    /// How many students there were.
    before: usize,
    /// How many there are now.
    after: usize,
}

#[derive(ApiResponse)]
enum Export {
    /// Every student, `name,age`, with a header, in reading order.
    #[oai(status = 200)]
    Ok(Csv),
}

/// The most students listed by name in each part of an import report;
/// the counts are always complete.
const MAX_LISTED: usize = 1000;

/// A student an import adds.
#[derive(Debug, Object)]
struct ImportedStudent {
    /// The line of the CSV it is on.
    line: u64,
    name: String,
    age: u32,
}

/// A student whose age an import changes.
#[derive(Debug, Object)]
struct ChangedStudent {
    line: u64,
    name: String,
    age: u32,
    /// The age stored before the import.
    previous_age: u32,
}

/// A row an import refused.
#[derive(Debug, Object)]
struct CsvRowError {
    /// The line of the CSV (the header is line 1).
    line: u64,
    /// What is wrong with the row.
    error: String,
}

/// What an import did, or would do (`dry_run`), or why it did nothing.
#[derive(Debug, Object)]
struct ImportReport {
    /// A preview: nothing was written.
    dry_run: bool,
    /// Whether the import was applied (never with errors or a dry run).
    applied: bool,
    /// Students the file adds.
    added: usize,
    /// Students whose age the file changes.
    changed: usize,
    /// Rows that match what is stored already.
    unchanged: usize,
    /// Students not in the file: left as they are.
    not_in_file: usize,
    /// The students added, in file order (the first 1,000).
    added_students: Vec<ImportedStudent>,
    /// The students changed, in file order (the first 1,000).
    changed_students: Vec<ChangedStudent>,
    /// The rows refused (the first 100); any error means nothing was
    /// written.
    errors: Vec<CsvRowError>,
    /// How many rows were refused.
    error_count: usize,
    /// With errors: what happened, in a sentence.
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
}

impl ImportReport {
    fn of(summary: ImportSummary, dry_run: bool) -> ImportReport {
        ImportReport {
            dry_run,
            applied: !dry_run,
            added: summary.added.len(),
            changed: summary.changed.len(),
            unchanged: summary.unchanged,
            not_in_file: summary.not_in_file,
            added_students: summary
                .added
                .into_iter()
                .take(MAX_LISTED)
                .map(|(line, name, age)| ImportedStudent { line, name, age })
                .collect(),
            changed_students: summary
                .changed
                .into_iter()
                .take(MAX_LISTED)
                .map(|(line, name, age, previous_age)| ChangedStudent {
                    line,
                    name,
                    age,
                    previous_age,
                })
                .collect(),
            errors: Vec::new(),
            error_count: 0,
            error: None,
        }
    }

    fn refused(errors: Vec<students_csv::RowError>, count: usize, dry_run: bool) -> ImportReport {
        let rows = if count == 1 { "row is" } else { "rows are" };
        ImportReport {
            dry_run,
            applied: false,
            added: 0,
            changed: 0,
            unchanged: 0,
            not_in_file: 0,
            added_students: Vec::new(),
            changed_students: Vec::new(),
            errors: errors
                .into_iter()
                .map(|e| CsvRowError {
                    line: e.line,
                    error: e.message,
                })
                .collect(),
            error_count: count,
            error: Some(format!(
                "{count} {rows} invalid, so nothing was written; fix them and send the whole \
                 file again"
            )),
        }
    }
}

#[derive(ApiResponse)]
enum Import {
    /// Every row is valid: what the import did, or would do with
    /// `dry_run=true`.
    #[oai(status = 200)]
    Ok(Json<ImportReport>),
    /// Some rows are invalid, each named by its line: nothing was written.
    #[oai(status = 422)]
    Invalid(Json<ImportReport>),
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

    /// Every student as CSV
    ///
    /// `name,age`, with a header, UTF-8, in reading order (case and
    /// accents ignored, numbers by value), as a spreadsheet opens it.
    #[oai(
        path = "/supmit/api/v1.0/student_ages.csv",
        method = "get",
        tag = "Tag::Students"
    )]
    async fn export_csv(&self, _auth: ApiAuth, store: Data<&Store>) -> Result<Export, ApiError> {
        let snapshot = store.snapshot().await.map_err(|e| ApiError::store(&e))?;
        Ok(Export::Ok(Csv(snapshot.csv().to_vec())))
    }

    /// Replace every student (a restore)
    ///
    /// The body is a whole data file: a JSON object of name to age, as
    /// `student_age.json` holds it. It is read as the API reads its own
    /// file: each name once, every name and age one a single write
    /// accepts. If anything is refused, nothing is written and the answer
    /// (422) names the first problem with its line and column. Otherwise
    /// the students become exactly those of the body, in one durable
    /// write; students not in it are removed.
    #[oai(
        path = "/supmit/api/v1.0/student_ages.json",
        method = "put",
        tag = "Tag::Students"
    )]
    async fn replace_all(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        body: DataFile,
    ) -> Result<Json<Replaced>, ApiError> {
        let students = parse_students(&body.0).map_err(|e| {
            ApiError::unprocessable(format!("the body is not a data file the API accepts: {e}"))
        })?;
        match store.apply(Change::Replace { students }).await {
            Ok(Outcome::Replaced { before, after }) => Ok(Json(Replaced { before, after })),
            Ok(other) => unreachable!("a replacement answers Replaced, not {other:?}"),
            Err(e) => Err(ApiError::store(&e)),
        }
    }

    /// Add and change students from a CSV
    ///
    /// The body is `name,age` with a header (`Content-Type: text/csv`, at
    /// most 8 MiB). Every row is checked with the rules of a single write;
    /// if any row is refused, nothing is written and the answer (422)
    /// lists the bad rows by line. Otherwise every row is applied in one
    /// durable write, all or nothing; students not in the file are left as
    /// they are. With `dry_run=true` nothing is written: the answer says
    /// what would be added, changed and left alone.
    #[oai(
        path = "/supmit/api/v1.0/student_ages.csv",
        method = "post",
        tag = "Tag::Students"
    )]
    async fn import_csv(
        &self,
        _auth: ApiAuth,
        store: Data<&Store>,
        /// Preview only: check and compare, write nothing.
        dry_run: Query<Option<bool>>,
        body: Csv,
    ) -> Result<Import, ApiError> {
        let dry_run = dry_run.0.unwrap_or(false);
        let rows = match students_csv::parse(&body.0) {
            Ok(rows) => rows,
            Err(Refusal::NotCsv(message)) => return Err(ApiError::bad_request(message)),
            Err(Refusal::BadRows { errors, count }) => {
                return Ok(Import::Invalid(Json(ImportReport::refused(
                    errors, count, dry_run,
                ))));
            }
        };
        if dry_run {
            let snapshot = store.snapshot().await.map_err(|e| ApiError::store(&e))?;
            let summary = plan_import(&snapshot.students, &rows);
            return Ok(Import::Ok(Json(ImportReport::of(summary, true))));
        }
        match store.apply(Change::Import { rows }).await {
            Ok(Outcome::Imported(summary)) => {
                Ok(Import::Ok(Json(ImportReport::of(summary, false))))
            }
            Ok(other) => unreachable!("an import answers Imported, not {other:?}"),
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
