//! The web UI in a real browser: Debian's headless Chromium, driven through
//! chromedriver, against the UI and the API served in this process: nothing
//! is shown before signing in; sign in with the keyboard, add a student,
//! sign out; a class in reading order, sorted from its headers, with its
//! chart and a contrast check; adding from the top of a 1,000-student
//! page; a CSV exported, edited and imported again. Saves screenshots under
//! `target/screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use student_ages_testkit::{PASSWORD, USER};

use crate::helpers::{Stack, class_of};

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

/// A headless Chromium session through its own chromedriver, at
/// 1280×900, with a throwaway profile; all of it gone when dropped (after
/// [`Browser::close`]).
struct Browser {
    client: fantoccini::Client,
    _driver: ChromeDriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        // Both rustls providers are compiled into the workspace's test build
        // (ring via reqwest, aws-lc-rs via fantoccini): choose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        let client = ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("start a Chromium session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Saves a screenshot under `target/screenshots/` when `result` is an
    /// error, then ends the session.
    async fn close<T>(self, result: &Result<T, fantoccini::error::CmdError>, name: &str) {
        if result.is_err()
            && let Ok(png) = self.client.screenshot().await
        {
            let file = format!("{name}-failure.png");
            std::fs::write(screenshot_path(&file), png).unwrap();
            eprintln!(
                "at {:?}; screenshot in target/screenshots/{file}",
                self.client.current_url().await.map(|u| u.to_string())
            );
        }
        self.client
            .close()
            .await
            .expect("close the browser session");
    }
}

/// Signs in through the form with the keyboard, as a person would.
async fn sign_in(
    browser: &fantoccini::Client,
    stack: &Stack,
) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(&stack.url("/login")).await?;
    browser.wait().for_element(Locator::Css("#login")).await?;
    browser
        .active_element()
        .await?
        .send_keys(&format!("{USER}\u{E004}{PASSWORD}\u{E007}"))
        .await?;
    browser
        .wait()
        .for_element(Locator::Css("#students, .empty"))
        .await?;
    Ok(())
}

/// The text of every element `css` finds, in page order.
async fn texts(
    browser: &fantoccini::Client,
    css: &str,
) -> Result<Vec<String>, fantoccini::error::CmdError> {
    let mut texts = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await? {
        texts.push(element.text().await?);
    }
    Ok(texts)
}

async fn screenshot(
    browser: &fantoccini::Client,
    name: &str,
) -> Result<(), fantoccini::error::CmdError> {
    std::fs::write(screenshot_path(name), browser.screenshot().await?).unwrap();
    Ok(())
}

#[tokio::test]
async fn sign_in_add_a_student_and_sign_out_in_a_real_browser() {
    let stack = Stack::start();
    let session = Browser::start().await;
    let browser = &session.client;

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
        std::fs::write(
            screenshot_path("frontend-added.png"),
            browser.screenshot().await?,
        )
        .unwrap();

        // The same page at phone width.
        browser.set_window_size(390, 844).await?;
        browser.goto(&stack.url("/?q=zo")).await?;
        std::fs::write(
            screenshot_path("frontend-added-mobile.png"),
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
    session.close(&result, "frontend").await;
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

/// WCAG's contrast check on every element with text of its own: each
/// ratio of text to background colour must be at least 4.5:1 (3:1 for
/// large text). Answers the elements that fail.
const CONTRAST_CHECK: &str = r#"
const rgba = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const luminance = (c) => {
  const [r, g, b] = rgba(c).slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const opaque = (c) => { const v = rgba(c); return v.length < 4 || v[3] > 0; };
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor;
    if (opaque(c)) return c;
  }
  return "rgb(255, 255, 255)";
};
const failures = [];
for (const el of document.querySelectorAll("body *")) {
  if (el.closest(".visually-hidden, svg, script") || el.getClientRects().length === 0) continue;
  const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
  if (!text) continue;
  const style = getComputedStyle(el);
  const [fg, bg] = [luminance(style.color), luminance(background(el))];
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
  if (ratio < (large ? 3 : 4.5)) failures.push(`${el.tagName}.${el.className} "${text.slice(0, 30)}" ${ratio.toFixed(2)}:1`);
}
return failures;
"#;

async fn contrast_failures(
    browser: &fantoccini::Client,
) -> Result<Vec<String>, fantoccini::error::CmdError> {
    let failures = browser.execute(CONTRAST_CHECK, vec![]).await?;
    Ok(serde_json::from_value(failures).expect("a list of strings"))
}

#[tokio::test]
async fn a_class_of_37_reads_in_order_sorts_and_shows_its_chart_in_a_real_browser() {
    let stack = Stack::seeded(&class_of(35, &[("Zoé Li", 11), ("alice", 12)]));
    let session = Browser::start().await;
    let browser = &session.client;
    let result = async {
        sign_in(browser, &stack).await?;
        let by_name = texts(browser, "td.name").await?;
        let contrast = contrast_failures(browser).await?;
        let chart = texts(browser, "#age-chart figcaption").await?;
        let chart_role = browser
            .find(Locator::Css("#age-chart svg"))
            .await?
            .attr("role")
            .await?;
        screenshot(browser, "frontend.png").await?;

        browser
            .find(Locator::Css("#sort-age"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("th[aria-sort=ascending] #sort-age"))
            .await?;
        let by_age = texts(browser, "td.name").await?;
        browser
            .find(Locator::Css("#sort-age"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("th[aria-sort=descending] #sort-age"))
            .await?;
        let by_age_desc = texts(browser, "td.name").await?;
        let url = browser.current_url().await?;

        // The same page at phone width.
        browser.set_window_size(390, 844).await?;
        browser.goto(&stack.url("/")).await?;
        screenshot(browser, "frontend-mobile.png").await?;
        let contrast_phone = contrast_failures(browser).await?;
        Ok((
            by_name,
            contrast,
            contrast_phone,
            chart,
            chart_role,
            by_age,
            by_age_desc,
            url,
        ))
    }
    .await;
    session.close(&result, "frontend-class").await;
    let (by_name, contrast, contrast_phone, chart, chart_role, by_age, by_age_desc, url) =
        result.expect("drive the page");

    let mut expected = vec!["alice".to_owned()];
    expected.extend((1..=35).map(|i| format!("Student {i}")));
    expected.push("Zoé Li".into());
    assert_eq!(by_name, expected);
    assert_eq!(contrast, Vec::<String>::new(), "contrast below WCAG AA");
    assert_eq!(
        contrast_phone,
        Vec::<String>::new(),
        "contrast below WCAG AA"
    );
    assert_eq!(chart_role.as_deref(), Some("img"));
    assert_eq!(chart.len(), 1);
    assert!(chart[0].starts_with("Ages of 37 students: "), "{chart:?}");
    // Ages are 6 + i % 12: Students 12 and 24 are 6, the youngest; 11, 23
    // and 35 are 17, the oldest; students of one age stay in name order.
    assert_eq!(by_age[..2], ["Student 12", "Student 24"]);
    assert_eq!(by_age_desc[..3], ["Student 11", "Student 23", "Student 35"]);
    assert_eq!(url.query(), Some("sort=age&dir=desc"));
}

#[tokio::test]
async fn adding_from_the_top_of_a_1000_student_page_in_a_real_browser() {
    let empty = Stack::seeded("{}");
    let stack = Stack::seeded(&class_of(1000, &[]));
    let session = Browser::start().await;
    let browser = &session.client;
    let result = async {
        // An empty class: the page opens with the focus in the name field.
        sign_in(browser, &empty).await?;
        let focused_when_empty = browser.active_element().await?.attr("id").await?;

        sign_in(browser, &stack).await?;
        let form_top = browser
            .find(Locator::Css("#add"))
            .await?
            .rectangle()
            .await?
            .1;
        let list_top = browser
            .find(Locator::Css("#students"))
            .await?
            .rectangle()
            .await?
            .1;
        let count_before = browser.find(Locator::Css("#count")).await?.text().await?;
        // With the keyboard: the name, Tab, the age, Enter.
        browser.find(Locator::Css("#name")).await?.click().await?;
        browser
            .active_element()
            .await?
            .send_keys("Student 1001\u{E004}9\u{E007}")
            .await?;
        browser.wait().for_element(Locator::Css(".notice")).await?;
        let notice = browser.find(Locator::Css(".notice")).await?.text().await?;
        let count_after = browser.find(Locator::Css("#count")).await?.text().await?;
        Ok((
            focused_when_empty,
            form_top,
            list_top,
            count_before,
            notice,
            count_after,
        ))
    }
    .await;
    session.close(&result, "frontend-1000").await;
    let (focused_when_empty, form_top, list_top, count_before, notice, count_after) =
        result.expect("drive the page");

    assert_eq!(focused_when_empty.as_deref(), Some("name"));
    assert!(form_top < list_top, "the form is above the list");
    assert!(form_top < 400.0, "the form is at the top: {form_top}");
    assert_eq!(count_before, "100 of 1000");
    assert_eq!(notice, "Added Student 1001.");
    assert_eq!(count_after, "100 of 1001");
    assert_eq!(stack.data()["Student 1001"], 9);
}

#[tokio::test]
async fn export_edit_and_reimport_a_csv_in_a_real_browser() {
    let stack = Stack::start();
    let session = Browser::start().await;
    let browser = &session.client;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("class.csv");
    let result = async {
        sign_in(browser, &stack).await?;
        // Export: the link's CSV, fetched by the page with its session.
        let href = browser
            .find(Locator::Css("#export"))
            .await?
            .attr("href")
            .await?
            .expect("the export link has an href");
        let exported = browser
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 fetch(arguments[0]).then((r) => r.text()).then(done);",
                vec![serde_json::json!(href)],
            )
            .await?;
        let exported = exported.as_str().unwrap_or_default().to_owned();

        // Edit it as a spreadsheet would: a changed age, a new student, and
        // one bad row.
        let edited = exported.replace("bob,13", "bob,14") + "dave,9\nerin,200\n";
        std::fs::write(&file, &edited).unwrap();
        browser
            .find(Locator::Css("#import-link"))
            .await?
            .click()
            .await?;
        browser.wait().for_element(Locator::Css("#upload")).await?;
        browser
            .find(Locator::Css("#file"))
            .await?
            .send_keys(&file.display().to_string())
            .await?;
        browser
            .find(Locator::Css("#upload button"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("#import-errors"))
            .await?;
        let errors = browser
            .find(Locator::Css("#import-errors"))
            .await?
            .text()
            .await?;
        let apply_offered = !browser.find_all(Locator::Css("#apply")).await?.is_empty();
        let data_after_bad_file = stack.data();

        // Without the bad row: a preview, then the import.
        std::fs::write(&file, edited.replace("erin,200\n", "")).unwrap();
        browser
            .find(Locator::Css("#file"))
            .await?
            .send_keys(&file.display().to_string())
            .await?;
        browser
            .find(Locator::Css("#upload button"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("#import-preview"))
            .await?;
        let preview = (
            browser
                .find(Locator::Css("#import-added"))
                .await?
                .text()
                .await?,
            browser
                .find(Locator::Css("#import-changed"))
                .await?
                .text()
                .await?,
            browser
                .find(Locator::Css("#import-unchanged"))
                .await?
                .text()
                .await?,
        );
        let data_after_preview = stack.data();
        screenshot(browser, "frontend-import.png").await?;
        browser
            .find(Locator::Css("#apply button"))
            .await?
            .click()
            .await?;
        browser.wait().for_element(Locator::Css(".notice")).await?;
        let notice = browser.find(Locator::Css(".notice")).await?.text().await?;
        Ok((
            exported,
            errors,
            apply_offered,
            data_after_bad_file,
            preview,
            data_after_preview,
            notice,
        ))
    }
    .await;
    session.close(&result, "frontend-import").await;
    let (exported, errors, apply_offered, data_after_bad_file, preview, data_after_preview, notice) =
        result.expect("drive the page");

    assert_eq!(exported, "name,age\nalice,12\nbob,13\ncarol,11\n");
    assert!(errors.contains("Nothing was written."), "{errors}");
    assert!(
        errors.contains("6 the age must be a whole number from 0 to 150, not 200"),
        "the line is named: {errors}"
    );
    assert!(!apply_offered, "no import with a bad row");
    let seeded = serde_json::json!({"alice": 12, "bob": "13", "carol": 11});
    assert_eq!(data_after_bad_file, seeded, "nothing written");
    assert_eq!(preview, ("1".into(), "1".into(), "2".into()));
    assert_eq!(data_after_preview, seeded, "a preview writes nothing");
    assert_eq!(notice, "Imported the CSV: 1 added, 1 changed, 2 unchanged.");
    assert_eq!(
        stack.data(),
        serde_json::json!({"alice": 12, "bob": 14, "carol": 11, "dave": 9})
    );
}

#[tokio::test]
async fn a_form_without_its_token_is_refused_and_public_read_shows_the_list_in_a_real_browser() {
    // Signed in, a form whose CSRF token was taken out (as a page from
    // another site would lack it) is refused, and nothing is written.
    let stack = Stack::start();
    let session = Browser::start().await;
    let browser = &session.client;
    let refused = async {
        sign_in(browser, &stack).await?;
        browser
            .execute(
                "document.querySelector('#add input[name=csrf]').remove()",
                vec![],
            )
            .await?;
        browser
            .find(Locator::Css("#name"))
            .await?
            .send_keys("Mallory")
            .await?;
        browser
            .find(Locator::Css("#age"))
            .await?
            .send_keys("9")
            .await?;
        browser
            .find(Locator::Css("#add button[type=submit]"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css(".problem h1"))
            .await?;
        browser
            .find(Locator::Css(".problem h1"))
            .await?
            .text()
            .await
    }
    .await;
    session.close(&refused, "csrf-refused").await;
    assert_eq!(refused.unwrap(), "This form could not be accepted");
    assert!(stack.data().get("Mallory").is_none(), "nothing was written");

    // Public-read: the list without a sign-in, no forms, and a change sent
    // anyway is refused.
    let public =
        Stack::start_with(|login| login.access = student_ages_frontend::Access::PublicRead);
    let session = Browser::start().await;
    let browser = &session.client;
    let seen = async {
        browser.goto(&public.url("/")).await?;
        browser
            .wait()
            .for_element(Locator::Css("#students"))
            .await?;
        let names = texts(browser, "td.name").await?;
        let forms = browser.find_all(Locator::Css("#add")).await?.len();
        // A form built in the page, as a script or an old tab would send it.
        browser
            .execute(
                "const f = document.createElement('form'); f.method = 'post'; \
                 f.action = '/students'; \
                 for (const [k, v] of [['name', 'Mallory'], ['age', '9']]) { \
                   const i = document.createElement('input'); i.name = k; i.value = v; \
                   f.appendChild(i); } \
                 document.body.appendChild(f); f.submit();",
                vec![],
            )
            .await?;
        browser
            .wait()
            .for_element(Locator::Css(".problem h1"))
            .await?;
        let heading = browser
            .find(Locator::Css(".problem h1"))
            .await?
            .text()
            .await?;
        Ok::<_, fantoccini::error::CmdError>((names, forms, heading))
    }
    .await;
    session.close(&seen, "public-read").await;
    let (names, forms, heading) = seen.unwrap();
    assert!(names.iter().any(|n| n == "alice"), "{names:?}");
    assert_eq!(forms, 0, "no add form without a sign-in");
    assert_eq!(heading, "Sign in to make changes");
    assert!(
        public.data().get("Mallory").is_none(),
        "nothing was written"
    );
}
