//! The web UI as a browser without JavaScript sees it, signed in: plain
//! HTTP against the UI, which calls a real API.

use reqwest::StatusCode;
use student_ages_frontend::ApiUrl;

use crate::helpers::{Stack, TestFrontend, client};

/// The page as the signed-in test user sees it.
async fn page(stack: &Stack, path: &str) -> (StatusCode, String) {
    stack.sign_in().await.page(path).await
}

/// The form, sent by the signed-in test user with its CSRF token.
async fn post(stack: &Stack, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    stack.sign_in().await.post(path, form).await
}

#[tokio::test]
async fn list_shows_every_student_and_age() {
    let stack = Stack::start();
    let (status, html) = page(&stack, "/").await;
    assert_eq!(status, StatusCode::OK);
    for (name, age) in [("alice", 12), ("bob", 13), ("carol", 11)] {
        assert!(
            html.contains(&format!("<td class=\"name\">{name}</td>")),
            "{name}"
        );
        assert!(html.contains(&format!("value=\"{age}\"")), "{age}");
    }
    assert!(html.contains("3 of 3"));
}

#[tokio::test]
async fn filter_keeps_only_matching_names() {
    let stack = Stack::start();
    let (_, html) = page(&stack, "/?q=AL").await;
    assert!(html.contains(">alice</td>"));
    assert!(!html.contains(">bob</td>"));
    assert!(html.contains("1 of 3"));
}

#[tokio::test]
async fn add_form_creates_student_and_redirects() {
    let stack = Stack::start();
    let response = post(&stack, "/students", &[("name", "zoé"), ("age", "10")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/?created=zo%C3%A9");
    assert_eq!(stack.data()["zoé"], 10);
    let (_, html) = page(&stack, &location).await;
    assert!(html.contains("Added zoé."));
    assert!(html.contains(">zoé</td>"));
}

#[tokio::test]
async fn change_form_updates_the_age() {
    let stack = Stack::start();
    let response = post(&stack, "/students", &[("name", "bob"), ("age", "14")]).await;
    assert_eq!(response.headers()["location"], "/?saved=bob");
    assert_eq!(stack.data()["bob"], 14);
}

#[tokio::test]
async fn invalid_form_shows_messages_beside_fields_and_keeps_input() {
    let stack = Stack::start();
    let response = post(&stack, "/students", &[("name", "a/b"), ("age", "old")]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("must not contain &#39;/&#39;") || html.contains("must not contain '/'"),
        "{html}"
    );
    assert!(html.contains("whole number from 0 to 150"), "{html}");
    assert!(html.contains("value=\"a/b\""), "input kept");
    assert!(html.contains("value=\"old\""), "input kept");
    assert_eq!(
        stack.data().as_object().unwrap().len(),
        3,
        "nothing written"
    );
}

#[tokio::test]
async fn delete_button_removes_the_student() {
    let stack = Stack::start();
    let response = post(&stack, "/students/delete", &[("name", "carol")]).await;
    assert_eq!(response.headers()["location"], "/?deleted=carol");
    assert!(stack.data().get("carol").is_none());
    let (_, html) = page(&stack, "/?deleted=carol").await;
    assert!(html.contains("Deleted carol."));
    assert!(!html.contains(">carol</td>"));
}

#[tokio::test]
async fn names_are_html_escaped() {
    let stack = Stack::start();
    let markup = "<img src=x onerror=alert(1)>";
    let response = post(&stack, "/students", &[("name", markup), ("age", "7")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&stack, "/").await;
    assert!(!html.contains(markup), "raw markup must not reach the page");
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;")
            || html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn api_down_gives_a_clear_502_page() {
    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let frontend = TestFrontend::start(ApiUrl::Http(format!("http://127.0.0.1:{port}")));
    // Signing in needs no API; the list does.
    let (nonce, token) = frontend.login_form().await;
    let signed_in = client()
        .post(frontend.url("/login"))
        .header(
            "cookie",
            format!("{}={nonce}", student_ages_frontend::LOGIN_COOKIE),
        )
        .form(&[
            ("username", student_ages_testkit::USER),
            ("password", student_ages_testkit::PASSWORD),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    let session = crate::helpers::set_cookie(&signed_in, student_ages_frontend::SESSION_COOKIE)
        .expect("signed in");
    let response = client()
        .get(format!("{}/", frontend.base))
        .header(
            "cookie",
            format!("{}={session}", student_ages_frontend::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let html = response.text().await.unwrap();
    assert!(html.contains("The student API is not answering"), "{html}");
    let health = client()
        .get(format!("{}/healthz", frontend.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn healthz_reports_the_api_up() {
    let stack = Stack::start();
    let response = client().get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok", "api": "up"}));
}

#[tokio::test]
async fn static_assets_are_served_by_the_binary() {
    let stack = Stack::start();
    for (path, kind) in [
        ("/static/app.css", "text/css"),
        ("/static/app.js", "text/javascript"),
    ] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
}
