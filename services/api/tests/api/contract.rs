//! The API as its clients see it: every route, status and error message,
//! against the API served in this process on a loopback port.

use reqwest::StatusCode;
use serde_json::{Value, json};
use student_ages_testkit::{PASSWORD, SEED, TestApi, USER};

use crate::helpers::{LIST, client, get, put_age};

#[tokio::test]
async fn original_list_path_answers_ages_as_numbers() {
    let api = TestApi::start(SEED);
    let (status, body) = get(&api.url(LIST)).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"student_ages": {"alice": 12, "bob": 13, "carol": 11}})
    );
}

#[tokio::test]
async fn the_list_is_json_and_a_missing_data_file_is_a_json_503() {
    let api = TestApi::start(SEED);
    let response = client()
        .get(api.url(LIST))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    std::fs::remove_file(&api.data_file).unwrap();
    let (status, body) = get(&api.url(LIST)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = serde_json::from_str::<Value>(&body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("student_age.json"), "{error}");
}

#[tokio::test]
async fn original_one_student_path_answers_the_bare_age() {
    let api = TestApi::start(SEED);
    let (status, body) = get(&api.url(&format!("{LIST}/bob"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "13"));
}

#[tokio::test]
async fn unknown_student_is_a_json_404() {
    let api = TestApi::start(SEED);
    for url in [
        api.url(&format!("{LIST}/nobody")),
        api.student_url("nobody"),
    ] {
        let (status, body) = get(&url).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": "Not found"})
        );
    }
}

#[tokio::test]
async fn reading_never_modifies_the_data_file() {
    let api = TestApi::start(SEED);
    for path in [
        LIST.to_owned(),
        format!("{LIST}/alice"),
        "/supmit/api/v1.0/student_ages/alice".into(),
    ] {
        assert_eq!(get(&api.url(&path)).await.0, StatusCode::OK);
    }
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_a_challenge() {
    let api = TestApi::start(SEED);
    let client = client();
    let no_auth = client.get(api.url(LIST)).send().await.unwrap();
    let wrong = client
        .put(api.student_url("alice"))
        .basic_auth(USER, Some("wrong"))
        .json(&json!({"age": 1}))
        .send()
        .await
        .unwrap();
    for response in [no_auth, wrong] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "Unauthorized access"})
        );
    }
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn put_creates_then_updates_and_delete_removes() {
    let api = TestApi::start(SEED);
    let client = client();
    let created = put_age(&client, &api.base, "dave", 14).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.json::<Value>().await.unwrap(),
        json!({"name": "dave", "age": 14})
    );
    assert_eq!(
        put_age(&client, &api.base, "dave", 15)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(api.read_data()["dave"], json!(15));
    assert_eq!(
        get(&api.student_url("dave")).await,
        (StatusCode::OK, r#"{"name":"dave","age":15}"#.into())
    );

    let delete = || {
        client
            .delete(api.student_url("dave"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(!api.read_data().contains_key("dave"));
    assert_eq!(delete().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unicode_names_work_url_encoded() {
    let api = TestApi::start(SEED);
    let client = client();
    for name in ["zo%C3%A9", "%E6%9D%8E", "Mary%20Ann"] {
        assert_eq!(
            put_age(&client, &api.base, name, 9).await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    let data = api.read_data();
    for name in ["zoé", "李", "Mary Ann"] {
        assert_eq!(data[name], json!(9), "{name} in {data:?}");
    }
    assert_eq!(get(&api.url(&format!("{LIST}/zo%C3%A9"))).await.1, "9");
}

#[tokio::test]
async fn bad_input_gets_400_saying_what_is_wrong() {
    let api = TestApi::start(SEED);
    let client = client();
    let long = "x".repeat(65);
    let cases: Vec<(String, String, &str)> = vec![
        (api.student_url("a%2Fb"), r#"{"age": 1}"#.into(), "'/'"),
        (
            api.student_url("a%0Ab"),
            r#"{"age": 1}"#.into(),
            "control characters",
        ),
        (api.student_url("%20"), r#"{"age": 1}"#.into(), "empty"),
        (
            api.student_url(&long),
            r#"{"age": 1}"#.into(),
            "65 characters",
        ),
        (
            api.student_url("eve"),
            r#"{"age": 10.5}"#.into(),
            "whole number",
        ),
        (
            api.student_url("eve"),
            r#"{"age": "ten"}"#.into(),
            "whole number",
        ),
        (api.student_url("eve"), r#"{"age": 151}"#.into(), "0 to 150"),
        (api.student_url("eve"), r#"{"age": -3}"#.into(), "0 to 150"),
        (
            api.student_url("eve"),
            r#"{"age": 1"#.into(),
            "EOF while parsing",
        ),
        (api.student_url("eve"), r#"{"agee": 1}"#.into(), "agee"),
        (
            api.student_url("eve"),
            format!(r#"{{"age": 1, "pad": "{}"}}"#, "x".repeat(5000)),
            "larger than 4096 bytes",
        ),
    ];
    for (url, body, why) in cases {
        let response = client
            .put(&url)
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{url} {body:.60}"
        );
        let error = response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains(why), "{url} {body:.60}: {error}");
    }
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_a_hint() {
    let api = TestApi::start(SEED);
    let response = client()
        .put(api.student_url("eve"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"age": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let error = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("Content-Type: application/json"), "{error}");
}

#[tokio::test]
async fn healthz_needs_no_auth_and_fails_when_the_file_is_gone() {
    let api = TestApi::start(SEED);
    let response = client().get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    std::fs::remove_file(&api.data_file).unwrap();
    let response = client().get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.json::<Value>().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("student_age.json"),
        "{body}"
    );
}

#[tokio::test]
async fn openapi_document_and_docs_ui_are_served() {
    let api = TestApi::start(SEED);
    let spec: Value = client()
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spec["paths"]["/supmit/api/v1.0/student_ages/{name}"]["put"].is_object(),
        "{spec}"
    );
    let ui = client().get(api.url("/docs")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().contains("swagger"));
}
