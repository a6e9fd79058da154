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
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    std::fs::remove_file(&api.data_file).unwrap();
    let response = client().get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "unavailable", "reason": "data_file_missing"})
    );
}

#[tokio::test]
async fn healthz_says_why_without_paths_os_errors_or_content() {
    use std::os::unix::fs::PermissionsExt;
    let api = TestApi::start(SEED);
    let health = || async {
        let response = client().get(api.url("/healthz")).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    // An invalid file: the reason, not the parser's message or the content.
    std::fs::write(&api.data_file, r#"{"alice": "secret-content"}"#).unwrap();
    let (status, body) = health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "unavailable", "reason": "data_file_invalid"})
    );
    // A read-only data file: reads work, writes would not.
    std::fs::write(&api.data_file, SEED).unwrap();
    std::fs::set_permissions(&api.data_file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let (status, body) = health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "degraded", "reason": "data_file_read_only"})
    );
    std::fs::set_permissions(&api.data_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!body.contains('/'), "{body}");
}

#[tokio::test]
async fn healthz_answers_503_in_time_when_the_data_file_is_stuck() {
    let api = TestApi::start(SEED);
    // A FIFO with no writer: opening it for reading blocks, like a hung volume.
    std::fs::remove_file(&api.data_file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&api.data_file)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let response = client().get(api.url("/healthz")).send().await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "unavailable", "reason": "data_file_stuck"})
    );
    // Reads fail fast too, and the server still answers.
    let (status, _) = get(&api.url(LIST)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Unblock every reader stuck on the FIFO, so the server's threads end:
    // opening it read-write never blocks, and each close is an end of file.
    for _ in 0..30 {
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&api.data_file)
            .unwrap();
        std::io::Write::write_all(&mut fifo, b"{}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(fifo);
    }
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

#[tokio::test]
async fn an_empty_name_is_a_400_saying_so() {
    let api = TestApi::start(SEED);
    let client = client();
    for (method, path) in [
        (reqwest::Method::GET, format!("{LIST}/")),
        (
            reqwest::Method::GET,
            "/supmit/api/v1.0/student_ages/".into(),
        ),
        (
            reqwest::Method::PUT,
            "/supmit/api/v1.0/student_ages/".into(),
        ),
        (
            reqwest::Method::DELETE,
            "/supmit/api/v1.0/student_ages/".into(),
        ),
    ] {
        let response = client
            .request(method.clone(), api.url(&path))
            .basic_auth(USER, Some(PASSWORD))
            .json(&json!({"age": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{method} {path}"
        );
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "the student name is empty"})
        );
    }
}

/// Sends `request` as raw bytes and returns the raw answer.
fn raw(api: &TestApi, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_malformed_chunked_body_is_not_called_too_large() {
    let api = TestApi::start(SEED);
    let answer = raw(
        &api,
        b"PUT /supmit/api/v1.0/student_ages/eve HTTP/1.1\r\nhost: t\r\n\
          authorization: Basic cm9vdDpzM2NyZXQtdGVzdC1wdw==\r\n\
          content-type: application/json\r\ntransfer-encoding: chunked\r\n\
          connection: close\r\n\r\nzz\r\n{\"age\": 1}\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");
    assert!(!answer.contains("larger than"), "{answer}");
    assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), SEED);
}

#[tokio::test]
async fn a_long_url_or_large_headers_get_a_json_414_or_431() {
    let api = TestApi::start(SEED);
    let long = format!(
        "GET /supmit/api/v1.0/student_ages/{} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        "x".repeat(3000)
    );
    let answer = raw(&api, long.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:.200}");
    assert!(answer.contains("{\"error\":"), "{answer:.200}");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "y".repeat(9000)
    );
    let answer = raw(&api, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(answer.contains("{\"error\":"), "{answer:.200}");
}

#[tokio::test]
async fn the_docs_and_the_openapi_document_are_compressed_when_accepted() {
    let api = TestApi::start(SEED);
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();
    for path in ["/openapi.json", "/docs"] {
        let response = plain
            .get(api.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-encoding"], "gzip", "{path}");
    }
    // And a client that does not ask gets it as it is.
    let response = plain.get(api.url("/openapi.json")).send().await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    assert!(response.json::<Value>().await.unwrap()["paths"].is_object());
}

#[tokio::test]
async fn repeated_wrong_passwords_from_one_address_get_429_with_retry_after() {
    let api = TestApi::start(SEED);
    let client = client();
    // Loopback is a trusted proxy: X-Forwarded-For names the client.
    let attempt = |from: &'static str, password: &'static str| {
        client
            .get(api.url(LIST))
            .header("X-Forwarded-For", from)
            .basic_auth(USER, Some(password))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("203.0.113.7", "wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password waits, from that address only.
    let throttled = attempt("203.0.113.7", PASSWORD).await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 15 * 60, "{retry_after}");
    let body: Value = throttled.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("too many failed logins"),
        "{body}"
    );
    assert_eq!(
        attempt("203.0.113.8", PASSWORD).await.unwrap().status(),
        StatusCode::OK,
        "another address is not held up"
    );
    // A request without credentials (a browser's first) is no attempt.
    let (status, _) = get(&api.url("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_whole_data_file_replaces_every_student_or_nothing() {
    let api = TestApi::start(SEED);
    let replace = |body: &'static str| {
        client()
            .put(api.url("/supmit/api/v1.0/student_ages.json"))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let before = std::fs::read_to_string(&api.data_file).unwrap();

    // Refused as the API refuses its own file: nothing is written.
    for (body, why) in [
        (r#"{"dora": 9, "dora": 10}"#, "appears twice"),
        (r#"{"a/b": 9}"#, "a/b"),
        (r#"{"dora": 200}"#, "200"),
        (r#"["dora"]"#, "a JSON object of student name to age"),
        ("{\"dora\": 9,\n \"eve\": -1}", "line 2"),
    ] {
        let response = replace(body).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        let said = error["error"].as_str().unwrap();
        assert!(said.contains(why), "{body}: {said}");
        assert_eq!(std::fs::read_to_string(&api.data_file).unwrap(), before);
    }
    let unauthenticated = client()
        .put(api.url("/supmit/api/v1.0/student_ages.json"))
        .header("content-type", "application/json")
        .body(r#"{"dora": 9}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    // Accepted: exactly the body's students, durably.
    let response = replace(r#"{"dora": 9, "alice": 13}"#).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"before": 3, "after": 2})
    );
    let (_, list) = get(&api.url(LIST)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap(),
        json!({"student_ages": {"alice": 13, "dora": 9}})
    );
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&api.data_file).unwrap()).unwrap();
    assert_eq!(on_disk, json!({"alice": 13, "dora": 9}));

    // A class is larger than a single write's 4 KiB body.
    let class: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("student {i:04}"), json!(i % 100)))
        .collect();
    let body = serde_json::to_vec(&class).unwrap();
    assert!(body.len() > 16 * 1024);
    let response = client()
        .put(api.url("/supmit/api/v1.0/student_ages.json"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"before": 2, "after": 1000})
    );
}
