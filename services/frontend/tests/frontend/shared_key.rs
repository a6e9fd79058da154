//! Sessions and sign-in forms across frontends that share a key file, as
//! during a zero-downtime replacement (the old and the new container side
//! by side): a session made by one is honoured by the other, a form
//! rendered by one is accepted by the other; a cookie that was tampered
//! with, or signed with another key, is refused; a session in use is
//! kept alive by re-issued cookies.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use reqwest::StatusCode;
use student_ages_frontend::{ApiUrl, LOGIN_COOKIE, SESSION_COOKIE, SessionKey};
use student_ages_testkit::{PASSWORD, USER};

use crate::helpers::{Stack, TestFrontend, client, set_cookie, set_cookie_header};

/// Two "containers" start at once with the same, not yet existing, key
/// file; both must end up with the same key.
fn race_for_the_key(path: &Path) -> (SessionKey, SessionKey) {
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, path) = (Arc::clone(&barrier), path.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                SessionKey::load_or_create(&path).expect("key file")
            })
        })
        .collect();
    let mut keys = racers.into_iter().map(|racer| racer.join().unwrap());
    let (a, b) = (keys.next().unwrap(), keys.next().unwrap());
    assert!(a.1 ^ b.1, "exactly one created it: {} {}", a.1, b.1);
    (a.0, b.0)
}

fn assert_refused(response: &reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{what}");
    assert_eq!(response.headers()["location"], "/login?expired", "{what}");
    let cleared = set_cookie_header(response, SESSION_COOKIE).expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{what}: {cleared}");
}

#[tokio::test]
async fn frontends_sharing_a_key_file_share_sessions_and_sign_in_forms() {
    let dir = tempfile::Builder::new()
        .prefix("sa-frontend-shared-key-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("session.key");
    let (key_a, key_b) = race_for_the_key(&path);
    assert_eq!(key_a.fingerprint(), key_b.fingerprint());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "one key file, no temporary left"
    );

    let stack = Stack::start_with(|login| login.session_key = key_a);
    let api = ApiUrl::Http(stack.api.base.clone());
    let b = TestFrontend::start_with(api.clone(), |login| login.session_key = key_b);

    // Signed in on A, B shows the list to the same cookie, and takes a
    // form with the token from A's page.
    let on_a = stack.sign_in().await;
    let on_b = on_a.at(&b);
    let (status, html) = on_b.page("/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Signed in as root"), "{html}");
    assert!(html.contains("<td class=\"name\">alice</td>"), "{html}");
    let response = on_b
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(stack.data()["dave"], 9);

    // A sign-in form rendered by A is accepted by B.
    let (nonce, token) = stack.frontend.login_form().await;
    let response = client()
        .post(b.url("/login"))
        .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
        .form(&[("username", USER), ("password", PASSWORD), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let session = set_cookie(&response, SESSION_COOKIE).expect("signed in on B");
    let (status, _) = on_a.with_session(session).page("/").await;
    assert_eq!(status, StatusCode::OK, "and that session works on A");

    // A frontend with another key knows neither the session nor the form.
    let other = TestFrontend::start(api);
    assert_refused(&on_a.at(&other).get("/").await, "another key");
    let response = client()
        .post(other.url("/login"))
        .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
        .form(&[("username", USER), ("password", PASSWORD), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_tampered_session_cookie_is_refused_and_changes_nothing() {
    let stack = Stack::start();
    let user = stack.sign_in().await;
    let (payload, tag) = user.session.split_once('.').unwrap();
    let other = stack.sign_in().await;
    let (_, other_tag) = other.session.split_once('.').unwrap();
    // Flip one character of the payload, keeping it valid base64url.
    let mut flipped = payload.to_owned().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, session) in [
        ("payload changed", format!("{flipped}.{tag}")),
        (
            "another session's signature",
            format!("{payload}.{other_tag}"),
        ),
        ("no signature", payload.to_owned()),
        ("garbage", "x".repeat(64)),
    ] {
        let tampered = user.with_session(session);
        assert_refused(&tampered.get("/").await, what);
        let response = tampered
            .post("/students", &[("name", "eve"), ("age", "9")])
            .await;
        assert_refused(&response, what);
    }
    assert!(stack.data().get("eve").is_none());
    assert_eq!(user.page("/").await.0, StatusCode::OK, "the real one works");
}

#[tokio::test]
async fn a_session_in_use_is_kept_alive_by_re_issued_cookies() {
    // Idle after 1.2 s: the cookie is re-issued when more than 0.3 s (a
    // quarter of it) passed since the last one.
    let stack = Stack::start_with(|login| login.session_idle = Duration::from_millis(1200));
    let mut user = stack.sign_in().await;
    let mut reissued = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let response = user.get("/").await;
        assert_eq!(response.status(), StatusCode::OK, "still signed in");
        if let Some(session) = set_cookie(&response, SESSION_COOKIE) {
            let header = set_cookie_header(&response, SESSION_COOKIE).unwrap();
            assert!(
                header.contains("HttpOnly") && header.contains("SameSite=Lax"),
                "{header}"
            );
            user.session = session;
            reissued += 1;
        }
    }
    assert!(reissued >= 5, "re-issued {reissued} times in 3 s of use");
    // Then left alone, it expires.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(&user.get("/").await, "idle");
}
