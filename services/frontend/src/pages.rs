//! The page handlers: parse the request, call the API, render a template.
//! Forms follow post/redirect/get; an invalid form is shown again with the
//! message beside the field and the user's input kept.
//!
//! The sign-in guard (`crate::auth`) has run before any handler here: a
//! form handler only runs for a signed-in user whose CSRF token matched,
//! and a page knows from [`Nav`] whether to offer the forms.

use std::sync::Arc;

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Html, Json, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use student_ages_rules::{Age, StudentName};

use crate::api_client::{ApiClient, ApiError, Saved};
use crate::auth::SignedIn;
use crate::listing::{ClassCache, Glance, Page, Student, View, select};

/// What the header shows of the user: who is signed in and the sign-out
/// form (with the CSRF token every form on the page carries), or a
/// sign-in link.
#[derive(Debug, Default, Clone)]
pub(crate) struct Nav {
    pub(crate) user: Option<String>,
    pub(crate) csrf: String,
    pub(crate) sign_in_link: bool,
}

impl Nav {
    pub(crate) fn signed_in(session: &SignedIn) -> Nav {
        Nav {
            user: Some(session.username.clone()),
            csrf: session.csrf.clone(),
            sign_in_link: false,
        }
    }

    pub(crate) fn anonymous(sign_in_link: bool) -> Nav {
        Nav {
            user: None,
            csrf: String::new(),
            sign_in_link,
        }
    }

    /// For the request the guard let through.
    pub(crate) fn of(req: &Request) -> Nav {
        req.extensions()
            .get::<SignedIn>()
            .map_or_else(|| Nav::anonymous(true), Nav::signed_in)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexQuery {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
    saved: Option<String>,
    created: Option<String>,
    deleted: Option<String>,
    /// After an import: how many students it added, changed, left.
    imported: Option<String>,
}

impl IndexQuery {
    fn view(&self) -> View {
        View::parse(
            &self.q,
            self.sort.as_deref(),
            self.dir.as_deref(),
            self.page.as_deref(),
        )
    }

    fn notice(&self) -> Option<String> {
        match (&self.created, &self.saved, &self.deleted, &self.imported) {
            (Some(name), _, _, _) => Some(format!("Added {name}.")),
            (_, Some(name), _, _) => Some(format!("Saved {name}.")),
            (_, _, Some(name), _) => Some(format!("Deleted {name}.")),
            (_, _, _, Some(counts)) => {
                let counts: Vec<usize> = counts.split('.').filter_map(|n| n.parse().ok()).collect();
                match counts[..] {
                    [added, changed, unchanged] => Some(format!(
                        "Imported the CSV: {added} added, {changed} changed, {unchanged} \
                         unchanged."
                    )),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StudentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    age: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    #[serde(default)]
    name: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    nav: Nav,
    /// Signed in: the forms are shown.
    can_edit: bool,
    notice: Option<String>,
    query: String,
    page: Page,
    glance: Glance,
    shown: usize,
    total: usize,
    /// Put the focus in the add form's name field: the list is empty, so
    /// adding is the one thing to do (a form sent back with an error
    /// focuses the field in error instead).
    focus_add: bool,
    form_name: String,
    form_age: String,
    name_error: Option<String>,
    age_error: Option<String>,
    form_error: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) nav: Nav,
    pub(crate) heading: String,
    pub(crate) detail: String,
    pub(crate) hint: String,
    pub(crate) link_href: String,
    pub(crate) link_text: String,
}

/// What the add/change form looked like when it was sent back to the user.
#[derive(Default)]
struct FormState {
    name: String,
    age: String,
    name_error: Option<String>,
    age_error: Option<String>,
    /// A refusal that belongs to no one field.
    form_error: Option<String>,
}

pub(crate) fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => Html(html).with_status(status).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// The page shown when the API cannot serve us: 502 when it does not
/// answer, 503 when it answers but refuses or fails.
pub(crate) fn api_problem(error: &ApiError, nav: Nav) -> Response {
    tracing::warn!(%error, "API problem");
    let (status, heading, hint) = match error {
        ApiError::Unreachable { .. } => (
            StatusCode::BAD_GATEWAY,
            "The student API is not answering",
            "The list cannot be shown until the API is back. If you run the stack, check it \
             with `deployer status` and the API's logs with `deployer logs api`.",
        ),
        ApiError::Unauthorized { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The student API refused this site",
            "The frontend and the API are configured with different credentials.",
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The student API is having trouble",
            "Try again in a moment; if it persists, check the API's logs.",
        ),
    };
    let page = ErrorPage {
        nav,
        heading: heading.into(),
        detail: error.to_string(),
        hint: hint.into(),
        link_href: "/".into(),
        link_text: "Try again".into(),
    };
    render(&page, status)
}

async fn list_page(
    nav: Nav,
    api: &ApiClient,
    cache: &ClassCache,
    query: &IndexQuery,
    form: FormState,
    status: StatusCode,
) -> Response {
    let class = match api.class(cache).await {
        Ok(class) => class,
        Err(error) => return api_problem(&error, nav),
    };
    let view = query.view();
    let glance = class.glance.clone();
    let total = class.students.len();
    let page = Page::of(&select(&class.students, &view), &view);
    let page = IndexPage {
        can_edit: nav.user.is_some(),
        nav,
        notice: query.notice(),
        query: view.filter.clone(),
        shown: page.rows.len(),
        focus_add: total == 0 && form.name_error.is_none() && form.age_error.is_none(),
        page,
        glance,
        total,
        form_name: form.name,
        form_age: form.age,
        name_error: form.name_error,
        age_error: form.age_error,
        form_error: form.form_error,
    };
    render(&page, status)
}

/// The list as CSV (`name,age`, with a header, UTF-8): every student that
/// matches the filter, in the order shown, on every page.
#[handler]
pub(crate) async fn export(
    req: &Request,
    Query(query): Query<IndexQuery>,
    api: Data<&ApiClient>,
    cache: Data<&Arc<ClassCache>>,
) -> Response {
    let class = match api.class(&cache).await {
        Ok(class) => class,
        Err(error) => return api_problem(&error, Nav::of(req)),
    };
    let selected = select(&class.students, &query.view());
    match to_csv(&selected) {
        Ok(csv) => csv
            .with_content_type("text/csv; charset=utf-8")
            .with_header(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"student_ages.csv\"",
            )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "CSV export failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CSV could not be made",
            )
                .into_response()
        }
    }
}

pub(crate) fn to_csv(students: &[&Student]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(students.len() * 16 + 9));
    writer.write_record(["name", "age"])?;
    for student in students {
        writer.write_record([student.name.as_str(), student.age.to_string().as_str()])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

#[handler]
pub(crate) async fn index(
    req: &Request,
    Query(query): Query<IndexQuery>,
    api: Data<&ApiClient>,
    cache: Data<&Arc<ClassCache>>,
) -> Response {
    list_page(
        Nav::of(req),
        &api,
        &cache,
        &query,
        FormState::default(),
        StatusCode::OK,
    )
    .await
}

fn back_to_list(key: &str, name: &str) -> Response {
    let target = format!("/?{key}={}", crate::api_client::url_escape(name));
    Redirect::see_other(target).into_response()
}

#[handler]
pub(crate) async fn save(
    req: &Request,
    Form(form): Form<StudentForm>,
    api: Data<&ApiClient>,
    cache: Data<&Arc<ClassCache>>,
) -> Response {
    let mut state = FormState {
        name: form.name.clone(),
        age: form.age.clone(),
        ..FormState::default()
    };
    // Each rule error belongs to its own field: the message goes beside it.
    match (StudentName::parse(&form.name), Age::parse(&form.age)) {
        (Ok(name), Ok(age)) => match api.put(&name, age).await {
            Ok(Saved::Created) => return back_to_list("created", name.as_str()),
            Ok(Saved::Updated) => return back_to_list("saved", name.as_str()),
            // The API applies the same rules, so it refuses only what these
            // rules let through (say, an API of another version during a
            // deploy); its message names no field, so it goes above the form.
            Err(ApiError::Invalid(message)) => state.form_error = Some(message),
            Err(error) => return api_problem(&error, Nav::of(req)),
        },
        (name, age) => {
            state.name_error = name.err().map(|error| error.to_string());
            state.age_error = age.err().map(|error| error.to_string());
        }
    }
    list_page(
        Nav::of(req),
        &api,
        &cache,
        &IndexQuery::default(),
        state,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

#[handler]
pub(crate) async fn delete(
    req: &Request,
    Form(form): Form<DeleteForm>,
    api: Data<&ApiClient>,
    cache: Data<&Arc<ClassCache>>,
) -> Response {
    match api.delete(&form.name).await {
        // Already gone is what the user wanted: say it is deleted.
        Ok(()) | Err(ApiError::NotFound(_)) => back_to_list("deleted", &form.name),
        // The name is the request's only input, so a refusal is about it.
        Err(ApiError::Invalid(message)) => {
            let state = FormState {
                name_error: Some(message),
                ..FormState::default()
            };
            list_page(
                Nav::of(req),
                &api,
                &cache,
                &IndexQuery::default(),
                state,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_problem(&error, Nav::of(req)),
    }
}

/// 200 when the frontend serves and the API answers; 503 otherwise, with
/// the reason.
#[handler]
pub(crate) async fn healthz(api: Data<&ApiClient>) -> Response {
    match api.health().await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "api": "up"})).into_response(),
        Err(error) => {
            Json(serde_json::json!({"status": "degraded", "api": format!("down: {error}")}))
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    }
}

#[handler]
pub(crate) fn stylesheet() -> impl IntoResponse {
    include_str!("../static/app.css")
        .with_content_type("text/css; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "public, max-age=300")
}

#[handler]
pub(crate) fn script() -> impl IntoResponse {
    include_str!("../static/app.js")
        .with_content_type("text/javascript; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "public, max-age=300")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::Class;

    fn page(rows: Vec<(&str, u32)>) -> IndexPage {
        let students: Vec<Student> = rows
            .into_iter()
            .map(|(name, age)| Student {
                name: name.into(),
                age,
            })
            .collect();
        let view = View::default();
        let class = Class::new(students.clone());
        IndexPage {
            nav: Nav {
                user: Some("teacher".into()),
                csrf: "tok3n".into(),
                sign_in_link: false,
            },
            can_edit: true,
            notice: None,
            query: String::new(),
            shown: students.len(),
            total: students.len(),
            focus_add: students.is_empty(),
            glance: Glance::of(&students),
            page: Page::of(&select(&class.students, &view), &view),
            form_name: String::new(),
            form_age: String::new(),
            name_error: None,
            age_error: None,
            form_error: None,
        }
    }

    #[test]
    fn names_are_html_escaped() {
        let html = page(vec![("<b>x</b>", 3)]).render().unwrap();
        assert!(
            html.contains("&#60;b&#62;x&#60;/b&#62;") || html.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b>x</b>"));
    }

    #[test]
    fn errors_are_shown_beside_their_field() {
        let mut with_error = page(vec![]);
        with_error.age_error = Some("the age is empty".into());
        let html = with_error.render().unwrap();
        let field = html.find("id=\"age\"").unwrap();
        let error = html.find("the age is empty").unwrap();
        assert!(error > field, "the message comes right after the age input");
        assert!(html.contains("aria-invalid=\"true\""));
    }

    #[test]
    fn an_error_of_no_one_field_is_shown_above_the_form() {
        let mut with_error = page(vec![]);
        with_error.form_error = Some("the API said no".into());
        let html = with_error.render().unwrap();
        let message = html.find("the API said no").unwrap();
        assert!(message < html.find("id=\"name\"").unwrap());
        assert!(!html.contains("aria-invalid"));
    }

    #[test]
    fn an_empty_list_invites_the_first_student() {
        let html = page(vec![]).render().unwrap();
        assert!(html.contains("No students yet"));
    }

    #[test]
    fn every_form_carries_the_csrf_token() {
        let html = page(vec![("alice", 3)]).render().unwrap();
        let forms = html.matches("method=\"post\"").count();
        assert_eq!(forms, 4, "save, delete, add, sign out: {html}");
        assert_eq!(
            html.matches("name=\"csrf\" value=\"tok3n\"").count(),
            forms,
            "{html}"
        );
        assert!(html.contains("teacher"));
    }

    #[test]
    fn read_only_hides_every_form() {
        let mut read_only = page(vec![("alice", 3)]);
        read_only.nav = Nav::anonymous(true);
        read_only.can_edit = false;
        let html = read_only.render().unwrap();
        assert!(!html.contains("method=\"post\""), "{html}");
        assert!(
            html.contains(">alice</td>") && html.contains("href=\"/login\""),
            "{html}"
        );
    }
}
