//! The web UI in a real browser: Debian's headless Chromium, driven through
//! chromedriver, against the UI and the API served in this process: nothing
//! is shown before signing in; sign in with the keyboard, add a student,
//! sign out. Saves screenshots under `target/screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use student_ages_testkit::{PASSWORD, USER};

use crate::helpers::Stack;

/// chromedriver on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        for tool in ["chromedriver", "chromium"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is not installed: the browser test needs Debian's chromium and \
                 chromium-driver (apt-get install chromium chromium-driver; scripts/test does this)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    // CARGO_MANIFEST_DIR is services/frontend; the workspace target is two up.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn sign_in_add_a_student_and_sign_out_in_a_real_browser() {
    // Both rustls providers are compiled into the workspace's test build
    // (ring via reqwest, aws-lc-rs via fantoccini): choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stack = Stack::start();
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.path().display())],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a json! object literal is an object")
    };
    let browser = ClientBuilder::rustls()
        .expect("rustls client")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("start a Chromium session");

    let result = async {
        // Signed out, the list sends the browser to the sign-in page.
        browser.goto(&stack.url("/")).await?;
        browser.wait().for_element(Locator::Css("#login")).await?;
        let before_url = browser.current_url().await?;
        let before_rows = browser.find_all(Locator::Css("td.name")).await?.len();
        std::fs::write(
            screenshot_path("frontend-login.png"),
            browser.screenshot().await?,
        )
        .unwrap();

        // The keyboard alone signs in: the username field has the focus,
        // Tab moves to the password, Enter sends the form.
        let focused = browser.active_element().await?.attr("id").await?;
        browser
            .active_element()
            .await?
            .send_keys(&format!("{USER}\u{E004}{PASSWORD}\u{E007}"))
            .await?;
        browser.wait().for_element(Locator::Css("#add")).await?;

        browser
            .find(Locator::Css("#name"))
            .await?
            .send_keys("Zoé Li")
            .await?;
        browser
            .find(Locator::Css("#age"))
            .await?
            .send_keys("11")
            .await?;
        browser
            .find(Locator::Css("#add button[type=submit]"))
            .await?
            .click()
            .await?;
        browser.wait().for_element(Locator::Css(".notice")).await?;

        let notice = browser.find(Locator::Css(".notice")).await?.text().await?;
        let names = browser.find_all(Locator::Css("td.name")).await?;
        let mut listed = Vec::new();
        for cell in names {
            listed.push(cell.text().await?);
        }
        let url = browser.current_url().await?;
        std::fs::write(screenshot_path("frontend.png"), browser.screenshot().await?).unwrap();

        // The same page at phone width.
        browser.set_window_size(390, 844).await?;
        browser.goto(&stack.url("/?q=zo")).await?;
        std::fs::write(
            screenshot_path("frontend-mobile.png"),
            browser.screenshot().await?,
        )
        .unwrap();

        // Sign out: back to the sign-in page, and the list is gone.
        browser.set_window_size(1280, 900).await?;
        browser
            .find(Locator::Css("#logout button[type=submit]"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("#login-notice"))
            .await?;
        let signed_out = browser
            .find(Locator::Css("#login-notice"))
            .await?
            .text()
            .await?;
        browser.goto(&stack.url("/")).await?;
        browser.wait().for_element(Locator::Css("#login")).await?;
        let after_rows = browser.find_all(Locator::Css("td.name")).await?.len();
        Ok::<_, fantoccini::error::CmdError>((
            (before_url, before_rows, focused),
            (notice, listed, url),
            (signed_out, after_rows),
        ))
    }
    .await;
    if result.is_err()
        && let Ok(png) = browser.screenshot().await
    {
        std::fs::write(screenshot_path("frontend-failure.png"), png).unwrap();
        eprintln!(
            "at {:?}; screenshot in target/screenshots/frontend-failure.png",
            browser.current_url().await.map(|u| u.to_string())
        );
    }
    browser.close().await.expect("close the browser session");
    let ((before_url, before_rows, focused), (notice, listed, url), (signed_out, after_rows)) =
        result.expect("drive the page");

    assert_eq!(before_url.path(), "/login", "signed out, / goes to sign-in");
    assert_eq!(before_rows, 0, "nothing listed before signing in");
    assert_eq!(
        focused.as_deref(),
        Some("username"),
        "the username field has the focus"
    );
    assert_eq!(signed_out, "You have signed out.");
    assert_eq!(after_rows, 0, "nothing listed after signing out");

    assert_eq!(notice, "Added Zoé Li.");
    assert!(listed.iter().any(|n| n == "Zoé Li"), "listed: {listed:?}");
    assert!(
        url.as_str().contains("created="),
        "post/redirect/get: {url}"
    );
    assert_eq!(stack.data()["Zoé Li"], 11);
}
