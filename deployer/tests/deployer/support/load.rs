//! A bounded load of the kind the zero-downtime tests need: API reads, API
//! writes and UI pages, each from its own connections, counting every
//! request that did not get a 2xx (a connection error included) and
//! remembering every write the API acknowledged, so a test can check that
//! nothing failed while a service was replaced and that every acknowledged
//! write is still there afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where to send the load.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port` of the API.
    pub api: String,
    /// `http://host:port` (or `https://`) of the UI.
    pub ui: String,
    /// Extra clients trusting a CA (HTTPS), sent the same reads.
    pub https: Option<(String, reqwest::Certificate)>,
}

/// What a load saw.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: usize,
    /// One line per request that failed: what it was and what happened.
    pub failures: Vec<String>,
    /// Student → the last age the API acknowledged (200/201) for it.
    pub acknowledged: BTreeMap<String, u64>,
    /// Every request: when it started (since the load started) and how long
    /// it took.
    pub samples: Vec<(Duration, Duration)>,
}

impl Report {
    /// Asserts what a zero-downtime test asks of its load: no request
    /// failed, there was load enough to tell, and every write the API
    /// acknowledged is there, as `api` (`http://host:port`) answers now.
    pub fn assert_nothing_failed_or_lost(&self, api: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed: {:#?}",
            self.failures.len(),
            self.requests,
            &self.failures[..self.failures.len().min(20)]
        );
        assert!(self.requests > 200, "too little load: {}", self.requests);
        assert!(!self.acknowledged.is_empty(), "no write was acknowledged");
        for (name, age) in &self.acknowledged {
            let (status, body) = super::get(
                &format!("{api}/supmit/api/v1.0/get_student_ages/{name}"),
                true,
            );
            assert_eq!(
                (status, body.trim()),
                (200, age.to_string().as_str()),
                "the acknowledged write of {name} is lost"
            );
        }
    }

    /// The 99th percentile latency of the requests started between `from`
    /// and `to` (since the load started), if any were.
    pub fn p99_between(&self, from: Duration, to: Duration) -> Option<Duration> {
        let mut took: Vec<Duration> = self
            .samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, took)| *took)
            .collect();
        took.sort();
        let index = (took.len() * 99).div_ceil(100).checked_sub(1)?;
        took.get(index).copied()
    }
}

pub struct Load {
    /// When the load started: what [`Report::samples`] count from.
    pub started: std::time::Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Report>>,
}

impl Load {
    /// Starts the load on a thread of its own: `readers` connections reading
    /// the API, as many loading UI pages, and `writers` writing students
    /// named `<prefix>-<writer>-<n>`.
    pub fn start(target: Target, prefix: &str, readers: usize, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let prefix = prefix.to_owned();
        let started = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(target, prefix, readers, writers, flag, started))
        });
        Load {
            started,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the load and returns what it saw.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(
    target: Target,
    prefix: String,
    readers: usize,
    writers: usize,
    stop: Arc<AtomicBool>,
    origin: std::time::Instant,
) -> Report {
    let requests = Arc::new(Samples {
        origin,
        count: AtomicUsize::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let failures = Arc::new(Mutex::new(Vec::new()));
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    // Every client trusts the HTTPS CA, if any: the UI may be served over
    // HTTPS only (its plain port then redirects).
    let new_client = || {
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none());
        match &target.https {
            Some((_, ca)) => builder.add_root_certificate(ca.clone()),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let mut tasks = Vec::new();
    let fail = {
        let failures = failures.clone();
        move |what: String| failures.lock().unwrap().push(what)
    };
    for _ in 0..readers {
        {
            let (stop, requests, fail) = (stop.clone(), requests.clone(), fail.clone());
            let client = new_client();
            let url = format!("{}/supmit/api/v1.0/get_student_ages", target.api);
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let began = requests.begin();
                    let sent = client
                        .get(&url)
                        .basic_auth("root", Some("root"))
                        .send()
                        .await;
                    check(sent, "GET api list", &fail).await;
                    requests.end(began);
                }
            }));
        }
        {
            let (stop, requests, fail) = (stop.clone(), requests.clone(), fail.clone());
            let client = new_client();
            let (base, url) = (target.ui.clone(), format!("{}/", target.ui));
            tasks.push(tokio::spawn(async move {
                // Signed in once, as a person would be; a replacement of the
                // UI must not sign anyone out.
                let session = super::sign_in_with(&client, &base).await;
                while !stop.load(Ordering::Relaxed) {
                    let began = requests.begin();
                    let sent = client
                        .get(&url)
                        .header(reqwest::header::COOKIE, &session)
                        .send()
                        .await;
                    check(sent, "GET ui /", &fail).await;
                    requests.end(began);
                }
            }));
        }
        if let Some((base, ca)) = target.https.clone() {
            let (stop, requests, fail) = (stop.clone(), requests.clone(), fail.clone());
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .add_root_certificate(ca)
                .build()
                .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = requests.begin();
                    let url = if n.is_multiple_of(2) {
                        format!("{base}/")
                    } else {
                        format!("{base}/supmit/api/v1.0/get_student_ages")
                    };
                    let sent = client
                        .get(&url)
                        .basic_auth("root", Some("root"))
                        .send()
                        .await;
                    check(sent, "GET https", &fail).await;
                    requests.end(began);
                }
            }));
        }
    }
    for writer in 0..writers {
        let (stop, requests, fail) = (stop.clone(), requests.clone(), fail.clone());
        let (client, acknowledged) = (new_client(), acknowledged.clone());
        let (api, prefix) = (target.api.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("{prefix}-{writer}-{}", n % 20);
                let age = n % 100;
                let began = requests.begin();
                let sent = client
                    .put(format!("{api}/supmit/api/v1.0/student_ages/{name}"))
                    .basic_auth("root", Some("root"))
                    .json(&serde_json::json!({ "age": age }))
                    .send()
                    .await;
                if check(sent, "PUT api", &fail).await {
                    acknowledged.lock().unwrap().insert(name, age);
                }
                requests.end(began);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Report {
        requests: requests.count.load(Ordering::Relaxed),
        samples: std::mem::take(&mut requests.samples.lock().unwrap()),
        failures: std::mem::take(&mut failures.lock().unwrap()),
        acknowledged: std::mem::take(&mut acknowledged.lock().unwrap()),
    }
}

/// How many requests were sent, and when each started and how long it took.
struct Samples {
    origin: std::time::Instant,
    count: AtomicUsize,
    samples: Mutex<Vec<(Duration, Duration)>>,
}

impl Samples {
    fn begin(&self) -> std::time::Instant {
        self.count.fetch_add(1, Ordering::Relaxed);
        std::time::Instant::now()
    }

    fn end(&self, began: std::time::Instant) {
        let sample = (began - self.origin, began.elapsed());
        self.samples.lock().unwrap().push(sample);
    }
}

/// Whether a request got a 2xx; otherwise records why.
async fn check(
    sent: reqwest::Result<reqwest::Response>,
    what: &str,
    fail: &impl Fn(String),
) -> bool {
    match sent {
        Ok(response) if response.status().is_success() => {
            // Read the body: a reset in the middle of it is a failure too.
            match response.bytes().await {
                Ok(_) => true,
                Err(e) => {
                    fail(format!("{what}: body: {e}"));
                    false
                }
            }
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            fail(format!(
                "{what}: {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
            false
        }
        Err(e) => {
            fail(format!("{what}: {e:?}"));
            false
        }
    }
}
