//! Bringing a class in from a spreadsheet: upload a CSV, see what it would
//! add, change and leave alone, then apply it, all or nothing.
//!
//! The checking is the API's (`POST …/student_ages.csv?dry_run=true`), so
//! the preview and the import use one set of rules. The preview page
//! carries the file in a hidden field of its "Import" form rather than
//! keeping it on the server: any frontend container can take the second
//! step, and nothing is left behind when the user walks away. Both forms
//! are `multipart/form-data` with the session's CSRF token, checked by the
//! guard like every other form.

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Multipart, Redirect};
use poem::{IntoResponse, Request, Response, handler};

use crate::api_client::{ApiClient, ApiError, ImportReport};
use crate::pages::{Nav, api_problem, render};

/// The largest file accepted, as the API accepts it.
pub(crate) const MAX_CSV_BYTES: usize = 8 * 1024 * 1024;

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    nav: Nav,
    can_edit: bool,
    /// Why the file was refused whole (not CSV, too large, none chosen).
    problem: Option<String>,
    /// The API's report on the file, if it got that far.
    report: Option<ImportReport>,
    /// The file, for the "Import" form, when the preview found no errors.
    csv: String,
}

impl ImportPage {
    fn new(req: &Request) -> ImportPage {
        let nav = Nav::of(req);
        ImportPage {
            can_edit: nav.user.is_some(),
            nav,
            problem: None,
            report: None,
            csv: String::new(),
        }
    }
}

/// The upload form.
#[handler]
pub(crate) async fn upload_form(req: &Request) -> Response {
    render(&ImportPage::new(req), StatusCode::OK)
}

/// Reads the field `wanted` of a multipart form (the guard has already
/// bounded the body and checked its CSRF token).
async fn field(mut multipart: Multipart, wanted: &str) -> Result<Option<Vec<u8>>, String> {
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| format!("the form could not be read ({e}); send it again"))?
    {
        if field.name() == Some(wanted) {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("the file could not be read ({e}); send it again"))?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Checks the uploaded file through the API's preview and shows what it
/// would do; nothing is written.
#[handler]
pub(crate) async fn preview(req: &Request, form: Multipart, api: Data<&ApiClient>) -> Response {
    let mut page = ImportPage::new(req);
    let csv = match field(form, "file").await {
        Ok(Some(csv)) if !csv.is_empty() => csv,
        Ok(_) => {
            page.problem = Some("Choose a CSV file to import.".into());
            return render(&page, StatusCode::UNPROCESSABLE_ENTITY);
        }
        Err(problem) => {
            page.problem = Some(problem);
            return render(&page, StatusCode::BAD_REQUEST);
        }
    };
    if csv.len() > MAX_CSV_BYTES {
        page.problem = Some(format!(
            "The file is larger than {} MiB; split it and import each part.",
            MAX_CSV_BYTES / (1024 * 1024)
        ));
        return render(&page, StatusCode::PAYLOAD_TOO_LARGE);
    }
    match api.import_csv(csv.clone(), true).await {
        Ok(report) => {
            let status = if report.error_count > 0 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                // The API checked it is UTF-8.
                page.csv = String::from_utf8(csv).unwrap_or_default();
                StatusCode::OK
            };
            page.report = Some(report);
            render(&page, status)
        }
        Err(ApiError::Invalid(message)) => {
            page.problem = Some(message);
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(error) => api_problem(&error, Nav::of(req)),
    }
}

/// Imports the file the preview showed, in one write, and goes back to the
/// list saying what changed.
#[handler]
pub(crate) async fn apply(req: &Request, form: Multipart, api: Data<&ApiClient>) -> Response {
    let mut page = ImportPage::new(req);
    let csv = match field(form, "csv").await {
        Ok(Some(csv)) if !csv.is_empty() => csv,
        Ok(_) => {
            page.problem = Some("The form carried no file; upload it again.".into());
            return render(&page, StatusCode::UNPROCESSABLE_ENTITY);
        }
        Err(problem) => {
            page.problem = Some(problem);
            return render(&page, StatusCode::BAD_REQUEST);
        }
    };
    match api.import_csv(csv, false).await {
        Ok(report) if report.applied => Redirect::see_other(format!(
            "/?imported={}.{}.{}",
            report.added, report.changed, report.unchanged
        ))
        .into_response(),
        Ok(report) => {
            page.report = Some(report);
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(ApiError::Invalid(message)) => {
            page.problem = Some(message);
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(error) => api_problem(&error, Nav::of(req)),
    }
}
