//! Signing in to the UI: what a visitor without a session gets, the
//! session cookie, CSRF refusals, wrong passwords and the throttle,
//! sign-out, an expired session, and the public read-only list.

use std::time::Duration;

use reqwest::StatusCode;
use student_ages_frontend::{Access, CookieSecure, LOGIN_COOKIE, SESSION_COOKIE};
use student_ages_process::ThrottleLimits;
use student_ages_testkit::{PASSWORD, USER};

use crate::helpers::{Stack, client, set_cookie, set_cookie_header};

fn seed_unchanged(stack: &Stack) {
    assert_eq!(
        stack.data(),
        serde_json::json!({"alice": 12, "bob": "13", "carol": 11}),
        "the API's data is unchanged"
    );
}

#[tokio::test]
async fn without_a_session_every_page_goes_to_the_sign_in_page_and_nothing_is_listed() {
    let stack = Stack::start();
    for path in ["/", "/?q=al"] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/login");
        let body = response.text().await.unwrap();
        assert!(!body.contains("alice"), "{body}");
    }
    let response = client().get(stack.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie_header(&response, LOGIN_COOKIE).expect("the form's nonce cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = response.text().await.unwrap();
    assert!(
        html.contains("<label for=\"username\">Username</label>"),
        "{html}"
    );
    assert!(
        html.contains("<label for=\"password\">Password</label>"),
        "{html}"
    );
    assert!(html.contains("autocomplete=\"current-password\""), "{html}");
    assert!(!html.contains("alice"));
    // Health and static files stay open.
    for path in ["/healthz", "/static/app.css", "/static/app.js"] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn forms_without_a_session_are_sent_to_sign_in_and_change_nothing() {
    let stack = Stack::start();
    for (path, form) in [
        ("/students", vec![("name", "dave"), ("age", "9")]),
        ("/students/delete", vec![("name", "alice")]),
    ] {
        let response = client()
            .post(stack.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/login");
    }
    seed_unchanged(&stack);
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_with_403() {
    let stack = Stack::start();
    let user = stack.sign_in().await;
    let attempts: [(&str, Vec<(&str, &str)>); 4] = [
        ("/students", vec![("name", "dave"), ("age", "9")]),
        (
            "/students",
            vec![("name", "bob"), ("age", "1"), ("csrf", "0000")],
        ),
        ("/students/delete", vec![("name", "alice")]),
        ("/students/delete", vec![("name", "alice"), ("csrf", "")]),
    ];
    for (path, form) in attempts {
        let response = user.post_as_is(path, &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains("security token"), "{html}");
        assert!(html.contains("Nothing was changed"), "{html}");
    }
    // Another session's token is no better.
    let other = stack.sign_in().await;
    let mut stolen = user.clone();
    stolen.csrf = other.csrf.clone();
    let response = stolen
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    seed_unchanged(&stack);
    // Sign-out needs the token too.
    let response = user.post_as_is("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(user.page("/").await.0, StatusCode::OK, "still signed in");
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_token() {
    let stack = Stack::start();
    let (nonce, token) = stack.frontend.login_form().await;
    let (_, other_token) = stack.frontend.login_form().await;
    for (cookie, csrf) in [
        (None, token.as_str()),
        (Some(nonce.as_str()), ""),
        (Some(nonce.as_str()), other_token.as_str()),
    ] {
        let mut request = client().post(stack.url("/login"));
        if let Some(nonce) = cookie {
            request = request.header("cookie", format!("{LOGIN_COOKIE}={nonce}"));
        }
        let response = request
            .form(&[("username", USER), ("password", PASSWORD), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(
            set_cookie(&response, SESSION_COOKIE).is_none(),
            "not signed in"
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("did not come from this site"), "{html}");
        assert!(
            html.contains("id=\"login\""),
            "the form is offered again: {html}"
        );
    }
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_secure_behind_https() {
    let stack = Stack::start();
    let response = stack.frontend.try_sign_in(USER, PASSWORD).await;
    let cookie = set_cookie_header(&response, SESSION_COOKIE).unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let value = set_cookie(&response, SESSION_COOKIE).unwrap();
    let (payload, tag) = value.split_once('.').expect("payload.signature");
    assert!(
        !payload.is_empty() && tag.len() == 43,
        "base64url payload and HMAC-SHA256: {value}"
    );

    // Behind the edge on HTTPS.
    let (nonce, token) = stack.frontend.login_form().await;
    let response = client()
        .post(stack.url("/login"))
        .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
        .header("x-forwarded-proto", "https")
        .form(&[("username", USER), ("password", PASSWORD), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    let cookie = set_cookie_header(&response, SESSION_COOKIE).unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");

    // Forced.
    let forced = Stack::start_with(|login| login.cookie_secure = CookieSecure::Always);
    let response = forced.frontend.try_sign_in(USER, PASSWORD).await;
    let cookie = set_cookie_header(&response, SESSION_COOKIE).unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_then_throttled_with_retry_after() {
    let stack = Stack::start_with(|login| {
        login.throttle = ThrottleLimits {
            max_failures: 3,
            window: Duration::from_secs(600),
            max_clients: 100,
        };
    });
    for (username, password) in [(USER, "wrong"), ("nobody", PASSWORD), (USER, "")] {
        let response = stack.frontend.try_sign_in(username, password).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&response, SESSION_COOKIE).is_none());
        let html = response.text().await.unwrap();
        assert!(html.contains("Wrong username or password."), "{html}");
        assert!(!html.contains(PASSWORD), "no password echoed");
    }
    // Even the right password waits now.
    let response = stack.frontend.try_sign_in(USER, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    assert!(set_cookie(&response, SESSION_COOKIE).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("Too many failed sign-ins"), "{html}");

    // Another client behind the (loopback, so trusted) proxy is not held up.
    let (nonce, token) = stack.frontend.login_form().await;
    let response = client()
        .post(stack.url("/login"))
        .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
        .header("x-forwarded-for", "192.0.2.1, 198.51.100.7")
        .form(&[("username", USER), ("password", PASSWORD), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_in_change_sign_out_and_back_to_the_sign_in_page() {
    let stack = Stack::start();
    let user = stack.sign_in().await;
    let (_, html) = user.page("/").await;
    assert!(html.contains("Signed in as root"), "{html}");
    let response = user
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(stack.data()["dave"], 9);

    let response = user.post("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?signed_out");
    let cleared = set_cookie_header(&response, SESSION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let html = client()
        .get(stack.url("/login?signed_out"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("You have signed out."), "{html}");

    // The old session is gone.
    let response = user.get("/").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    let response = user
        .post("/students", &[("name", "eve"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(stack.data().get("eve").is_none());
}

#[tokio::test]
async fn an_idle_session_expires_with_a_clear_message() {
    let stack = Stack::start_with(|login| login.session_idle = Duration::from_millis(800));
    let user = stack.sign_in().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = user.get("/").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?expired");
    let cleared = set_cookie_header(&response, SESSION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let html = client()
        .get(stack.url("/login?expired"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Your session expired, sign in again."),
        "{html}"
    );

    // A form sent with the expired session changes nothing.
    let response = user.post("/students/delete", &[("name", "alice")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?expired");
    seed_unchanged(&stack);
}

#[tokio::test]
async fn public_read_shows_the_list_to_all_and_changes_only_when_signed_in() {
    let stack = Stack::start_with(|login| login.access = Access::PublicRead);
    let response = client().get(stack.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("<td class=\"name\">alice</td>") && html.contains("3 of 3"),
        "{html}"
    );
    assert!(!html.contains("method=\"post\""), "no forms: {html}");
    assert!(html.contains("href=\"/login\""), "{html}");

    let response = client()
        .post(stack.url("/students"))
        .form(&[("name", "dave"), ("age", "9")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(html.contains("Sign in to make changes"), "{html}");
    seed_unchanged(&stack);

    let user = stack.sign_in().await;
    let (_, html) = user.page("/").await;
    assert!(html.contains("id=\"add\""), "signed in, the forms are back");
    let response = user
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(stack.data()["dave"], 9);
}
