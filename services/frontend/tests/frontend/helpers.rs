//! A UI served in process against a test API, a client that shows the
//! redirects, and a signed-in user of the UI (its session cookie and CSRF
//! token), signed in through the sign-in form as a browser would.

use std::time::Duration;

use reqwest::StatusCode;
use student_ages_frontend::{ApiUrl, Config, LOGIN_COOKIE, LoginConfig, SESSION_COOKIE};
use student_ages_process::{LoginUser, SecretString};
use student_ages_testkit::{InProcess, PASSWORD, SEED, TestApi, USER, credentials};

/// The UI, served in this process on a loopback port, stopped when dropped.
pub struct TestFrontend {
    _server: InProcess,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TestFrontend {
    /// A UI that reaches the API at `api_url`, with the test user, who
    /// also signs in to the UI (the default: the UI's user is the API's).
    pub fn start(api_url: ApiUrl) -> TestFrontend {
        TestFrontend::start_with(api_url, |_| {})
    }

    /// The same, with the sign-in settings changed by `configure`.
    pub fn start_with(api_url: ApiUrl, configure: impl FnOnce(&mut LoginConfig)) -> TestFrontend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let user = LoginUser::with_password(USER, &SecretString::from(PASSWORD)).expect("hash");
        let mut login = LoginConfig::new(user);
        configure(&mut login);
        let config = Config {
            api_url,
            api_credentials: credentials(),
            login,
        };
        let server = InProcess::start(move |shutdown| {
            student_ages_frontend::run(listener, config, shutdown)
        });
        TestFrontend {
            _server: server,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signs in as the test user through the form, and takes the CSRF
    /// token from the list page, as a browser would; panics if refused.
    pub async fn sign_in(&self) -> User {
        let mut user = self.session().await;
        let (status, html) = user.page("/").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        user.csrf = csrf_in(&html).expect("the list page has forms with a CSRF token");
        user
    }

    /// Signs in without reading the list (so without calling the API):
    /// the token comes from the page refusing a sign-out without one,
    /// whose header has the sign-out form.
    pub async fn sign_in_without_the_list(&self) -> User {
        let mut user = self.session().await;
        let refused = user.post_as_is("/logout", &[]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        user.csrf = csrf_in(&refused.text().await.unwrap()).expect("the sign-out form");
        user
    }

    /// A session for the test user, without its CSRF token yet.
    async fn session(&self) -> User {
        let response = self.try_sign_in(USER, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed in");
        assert_eq!(response.headers()["location"], "/");
        let session = set_cookie(&response, SESSION_COOKIE).expect("a session cookie");
        User {
            base: self.base.clone(),
            session,
            csrf: String::new(),
        }
    }

    /// Gets the sign-in form and sends it with these credentials.
    pub async fn try_sign_in(&self, username: &str, password: &str) -> reqwest::Response {
        let (nonce, token) = self.login_form().await;
        client()
            .post(self.url("/login"))
            .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
            .form(&[
                ("username", username),
                ("password", password),
                ("csrf", &token),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The sign-in form's cookie nonce and form token.
    pub async fn login_form(&self) -> (String, String) {
        let response = client().get(self.url("/login")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let nonce = set_cookie(&response, LOGIN_COOKIE).expect("a sign-in cookie");
        let html = response.text().await.unwrap();
        (nonce, csrf_in(&html).expect("a CSRF field"))
    }
}

/// A signed-in user of the UI: sends its session cookie with every request
/// and its CSRF token with every form.
#[derive(Debug, Clone)]
pub struct User {
    base: String,
    pub session: String,
    pub csrf: String,
}

impl User {
    /// The same browser (cookie and token) talking to another frontend.
    pub fn at(&self, frontend: &TestFrontend) -> User {
        User {
            base: frontend.base.clone(),
            ..self.clone()
        }
    }

    /// The same browser with another session cookie.
    pub fn with_session(&self, session: String) -> User {
        User {
            session,
            ..self.clone()
        }
    }

    pub fn cookie(&self) -> String {
        format!("{SESSION_COOKIE}={}", self.session)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .send()
            .await
            .unwrap()
    }

    pub async fn page(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        (response.status(), response.text().await.unwrap())
    }

    /// Posts the form with this user's CSRF token added.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut form = form.to_vec();
        form.push(("csrf", &self.csrf));
        self.post_as_is(path, &form).await
    }

    /// Posts a multipart form (a file upload) with this user's CSRF token.
    pub async fn post_file(&self, path: &str, field: &str, content: &str) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("csrf", self.csrf.clone())
            .part(
                field.to_owned(),
                reqwest::multipart::Part::text(content.to_owned())
                    .file_name("class.csv")
                    .mime_str("text/csv")
                    .unwrap(),
            );
        client()
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Posts the form as it is, with the session cookie.
    pub async fn post_as_is(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        client()
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// The value a response's `Set-Cookie` gives the cookie `name`.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie_header(response, name).and_then(|header| {
        header
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .map(|(_, value)| value.to_owned())
    })
}

/// The whole `Set-Cookie` header for the cookie `name`.
pub fn set_cookie_header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The first CSRF token in a page's forms.
pub fn csrf_in(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// An API with the seed data and a UI in front of it.
pub struct Stack {
    // The UI stops before the API it calls.
    pub frontend: TestFrontend,
    pub api: TestApi,
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(|_| {})
    }

    /// An API whose data file holds `content` (a JSON object), and a UI.
    pub fn seeded(content: &str) -> Stack {
        let api = TestApi::start(content);
        let frontend = TestFrontend::start(ApiUrl::Http(api.base.clone()));
        Stack { frontend, api }
    }

    /// With the UI's sign-in settings changed by `configure`.
    pub fn start_with(configure: impl FnOnce(&mut LoginConfig)) -> Stack {
        let api = TestApi::start(SEED);
        let frontend = TestFrontend::start_with(ApiUrl::Http(api.base.clone()), configure);
        Stack { frontend, api }
    }

    pub fn url(&self, path: &str) -> String {
        self.frontend.url(path)
    }

    pub async fn sign_in(&self) -> User {
        self.frontend.sign_in().await
    }

    /// The API's data file, as JSON.
    pub fn data(&self) -> serde_json::Value {
        serde_json::Value::Object(self.api.read_data())
    }
}

/// A data file's JSON for a class: `Student 1` … `Student n`, aged 6 to
/// 17, with `extra` students added.
pub fn class_of(n: usize, extra: &[(&str, u32)]) -> String {
    let mut students = serde_json::Map::new();
    for i in 1..=n {
        students.insert(format!("Student {i}"), (6 + i % 12).into());
    }
    for (name, age) in extra {
        students.insert((*name).to_owned(), (*age).into());
    }
    serde_json::Value::Object(students).to_string()
}

/// The names listed on a page, in order.
pub fn listed(html: &str) -> Vec<String> {
    html.split("<td class=\"name\">")
        .skip(1)
        .filter_map(|cell| cell.split("</td>").next())
        .map(str::to_owned)
        .collect()
}

/// An HTTP client that does not follow redirects, so tests see the 303s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
