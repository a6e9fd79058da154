//! The yardstick for `bench/api.sh`: the list read written as a bare poem
//! handler, with nothing the real API adds (no OpenAPI layer, no store, no
//! request log).
//!
//! It answers `GET /supmit/api/v1.0/get_student_ages` with the same JSON
//! (names in the same reading order), behind the same basic-auth check (constant-time, both fields), from the
//! data file read once at start. The benchmark loads it and the real API in
//! one run and prints their ratio, so the cost of our layers is a measured
//! figure rather than a guess. Not part of the product.
//!
//! ```sh
//! API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE=data/student_age.json \
//!   LISTEN_ADDR=127.0.0.1:5001 cargo run --release -p student-ages-api --example bare
//! ```

use std::collections::BTreeMap;

use anyhow::Context;
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::headers::{Authorization, HeaderMapExt, authorization::Basic};
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, Server, get, handler};
use subtle::ConstantTimeEq;

struct Bare {
    username: String,
    password: String,
    /// In reading order, as the API lists them.
    students: serde_json::Map<String, serde_json::Value>,
}

#[handler]
fn list(req: &Request, bare: Data<&std::sync::Arc<Bare>>) -> Response {
    let allowed = req
        .headers()
        .typed_get::<Authorization<Basic>>()
        .is_some_and(|auth| {
            let user = bare.username.as_bytes().ct_eq(auth.username().as_bytes());
            let password = bare.password.as_bytes().ct_eq(auth.password().as_bytes());
            (user & password).into()
        });
    if !allowed {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(serde_json::json!({ "student_ages": bare.students })).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |key: &str| std::env::var(key).with_context(|| format!("{key} is not set"));
    let data_file = var("STUDENT_AGE_FILE")?;
    let text =
        std::fs::read_to_string(&data_file).with_context(|| format!("reading {data_file}"))?;
    let students: BTreeMap<String, u32> =
        serde_json::from_str(&text).with_context(|| format!("parsing {data_file}"))?;
    let mut students: Vec<(String, u32)> = students.into_iter().collect();
    student_ages_rules::order::sort_by_reading_order(&mut students, |s| &s.0);
    let bare = Bare {
        username: var("API_USERNAME")?,
        password: var("API_PASSWORD")?,
        students: students
            .into_iter()
            .map(|(name, age)| (name, age.into()))
            .collect(),
    };
    let listen = var("LISTEN_ADDR")?;
    let app = Route::new()
        .at("/supmit/api/v1.0/get_student_ages", get(list))
        .data(std::sync::Arc::new(bare));
    println!("bare listening on {listen}");
    Server::new(TcpListener::bind(listen)).run(app).await?;
    Ok(())
}
