//! The CSV routes as a client sees them: export, import with a preview
//! (`dry_run=true`), bad rows named by line with nothing written, a 5 MB
//! file, one over the limit, and bodies that are not CSV.

use reqwest::StatusCode;
use serde_json::{Value, json};
use student_ages_testkit::{PASSWORD, SEED, TestApi, USER};

use crate::helpers::{LIST, client};

const CSV: &str = "/supmit/api/v1.0/student_ages.csv";

async fn import(api: &TestApi, query: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let response = client()
        .post(api.url(&format!("{CSV}{query}")))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn export_is_csv_in_reading_order_with_a_header() {
    let api = TestApi::start(r#"{"Zoé Li": 11, "alice": 12, "Student 10": 9, "Student 2": 8}"#);
    let response = client()
        .get(api.url(CSV))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("student_ages.csv")
    );
    assert_eq!(
        response.text().await.unwrap(),
        "name,age\nalice,12\nStudent 2,8\nStudent 10,9\nZoé Li,11\n"
    );
    // The JSON list, same shape, same order.
    let list = client()
        .get(api.url(LIST))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        list,
        r#"{"student_ages":{"alice":12,"Student 2":8,"Student 10":9,"Zoé Li":11}}"#
    );
}

#[tokio::test]
async fn csv_routes_need_the_password() {
    let api = TestApi::start(SEED);
    let get = client().get(api.url(CSV)).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::UNAUTHORIZED);
    let post = client()
        .post(api.url(CSV))
        .header("content-type", "text/csv")
        .body("name,age\nmallory,1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn a_preview_writes_nothing_and_the_import_then_writes_it_all() {
    let api = TestApi::start(SEED);
    let body = "name,age\nalice,12\nbob,14\nzoé,10\n";
    let (status, preview) = import(&api, "?dry_run=true", body).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
    let expected = |dry_run: bool| {
        json!({
            "dry_run": dry_run, "applied": !dry_run,
            "added": 1, "changed": 1, "unchanged": 1, "not_in_file": 1,
            "added_students": [{"line": 4, "name": "zoé", "age": 10}],
            "changed_students": [{"line": 3, "name": "bob", "age": 14, "previous_age": 13}],
            "errors": [], "error_count": 0,
        })
    };
    assert_eq!(preview, expected(true));
    let (status, done) = import(&api, "", body).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done, expected(false));
    assert_eq!(
        Value::Object(api.read_data()),
        json!({"alice": 12, "bob": 14, "carol": 11, "zoé": 10})
    );
}

#[tokio::test]
async fn one_bad_row_writes_nothing_and_is_named_by_line() {
    let api = TestApi::start(SEED);
    for query in ["?dry_run=true", ""] {
        let (status, report) = import(&api, query, "name,age\nbob,14\ndave,200\nerin,9\n").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
        assert_eq!(report["applied"], false);
        assert_eq!(report["error_count"], 1);
        assert_eq!(report["errors"][0]["line"], 3);
        let message = report["errors"][0]["error"].as_str().unwrap();
        assert!(message.contains("not 200"), "{message}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("nothing was written"),
            "{report}"
        );
        assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
    }
}

#[tokio::test]
async fn a_5_mb_file_imports_in_one_write() {
    let api = TestApi::start("{}");
    let mut body = String::from("name,age\n");
    let mut students = 0;
    while body.len() < 5 * 1024 * 1024 {
        body.push_str(&format!(
            "Student with a longer name {students},{}\n",
            students % 151
        ));
        students += 1;
    }
    let (status, report) = import(&api, "", body).await;
    assert_eq!(status, StatusCode::OK, "{}", report["error"]);
    assert_eq!(report["added"], students);
    assert_eq!(report["added_students"].as_array().unwrap().len(), 1000);
    assert_eq!(api.read_data().len(), students);
}

#[tokio::test]
async fn a_csv_over_8_mib_is_a_json_413() {
    let api = TestApi::start(SEED);
    let body = format!("name,age\n{}", "x,1\n".repeat(9 * 1024 * 1024 / 4));
    let (status, error) = import(&api, "", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error["error"].as_str().unwrap().contains("8 MiB"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn a_body_that_is_not_csv_is_a_400_saying_why() {
    let api = TestApi::start(SEED);
    for (body, why) in [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "not UTF-8"),
        (
            br#"{"student_ages": {"alice": 1}}"#.to_vec(),
            "header name,age",
        ),
        (b"".to_vec(), "empty"),
    ] {
        let (status, error) = import(&api, "", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(error["error"].as_str().unwrap().contains(why), "{error}");
    }
    // JSON sent as JSON: the content type is refused, saying what to send.
    let response = client()
        .post(api.url(CSV))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({"alice": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("text/csv"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}
