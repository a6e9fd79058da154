//! The web UI in a real browser: Debian's headless Chromium, driven through
//! chromedriver, against the UI and the API served in this process. Saves
//! screenshots under `target/screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

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
async fn a_student_added_through_the_form_is_listed_in_a_real_browser() {
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
        browser.goto(&stack.url("/")).await?;
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
        Ok::<_, fantoccini::error::CmdError>((notice, listed, url))
    }
    .await;
    browser.close().await.expect("close the browser session");
    let (notice, listed, url) = result.expect("drive the page");

    assert_eq!(notice, "Added Zoé Li.");
    assert!(listed.iter().any(|n| n == "Zoé Li"), "listed: {listed:?}");
    assert!(
        url.as_str().contains("created="),
        "post/redirect/get: {url}"
    );
    assert_eq!(stack.data()["Zoé Li"], 11);
}
