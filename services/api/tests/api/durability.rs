//! Every acknowledged write survives: concurrency (in process), and, with
//! the real binary, a second process on the same file, a SIGKILL in the
//! middle of a load, and a SIGTERM.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use student_ages_testkit::{DataDir, PASSWORD, SEED, TestApi, USER, read_data};

use crate::helpers::{LIST, client, put_age, spawn_api};

/// Sends `count` PUTs with unique names from `writers` concurrent tasks to
/// the API at `base` and returns name → age of every PUT it acknowledged.
async fn load(base: &str, prefix: &str, writers: usize, count: usize) -> BTreeMap<String, u32> {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let client = client();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (client, acked) = (client.clone(), Arc::clone(&acked));
            let (url_base, prefix) = (base.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                for i in (w..count).step_by(writers) {
                    let name = format!("{prefix}-{i}");
                    let age = (i % 150) as u32;
                    let url = format!("{url_base}/supmit/api/v1.0/student_ages/{name}");
                    let response = client
                        .put(url)
                        .basic_auth(USER, Some(PASSWORD))
                        .json(&serde_json::json!({ "age": age }))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            acked.lock().unwrap().insert(name, age);
                        }
                        // The server may be killed under us: stop quietly.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn assert_all_present(
    data: &serde_json::Map<String, serde_json::Value>,
    acked: &BTreeMap<String, u32>,
) {
    let missing: Vec<_> = acked
        .iter()
        .filter(|(name, age)| data.get(*name).and_then(|v| v.as_u64()) != Some(u64::from(**age)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    let api = TestApi::start(SEED);
    let acked = load(&api.base, "w", 32, 800).await;
    assert_eq!(acked.len(), 800);
    let data = api.read_data();
    assert_all_present(&data, &acked);
    assert_eq!(data.len(), 803);
}

#[tokio::test]
async fn two_processes_on_one_file_lose_nothing() {
    let data_dir = DataDir::with(SEED);
    let first = spawn_api(&data_dir.file);
    let second = spawn_api(&data_dir.file);
    let (a, b) = tokio::join!(
        load(&first.base, "first", 16, 400),
        load(&second.base, "second", 16, 400)
    );
    assert_eq!((a.len(), b.len()), (400, 400));
    let data = read_data(&data_dir.file);
    assert_all_present(&data, &a);
    assert_all_present(&data, &b);
    assert_eq!(data.len(), 803);
    // Each process also reads what the other wrote.
    let listed: serde_json::Value = client()
        .get(second.url(LIST))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["student_ages"].as_object().unwrap().len(), 803);
}

#[tokio::test]
async fn sigkill_mid_load_leaves_a_valid_file_with_every_acknowledged_write() {
    let data_dir = DataDir::with(SEED);
    let api = spawn_api(&data_dir.file);
    let writes = load(&api.base, "k", 32, 1_000_000);
    let kill = async {
        // Let the load get going, then kill the server without warning.
        tokio::time::sleep(Duration::from_millis(700)).await;
        api.signal("KILL");
    };
    let (acked, ()) = tokio::join!(writes, kill);
    assert!(
        acked.len() > 10,
        "the load barely ran: {} writes",
        acked.len()
    );
    let data = read_data(&data_dir.file);
    assert_all_present(&data, &acked);
    // No stray temp file is mistaken for data; any leftover is a hidden temp.
    for entry in std::fs::read_dir(data_dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "student_age.json"
                || name == "student_age.json.lock"
                || name.starts_with(".student_age.json.tmp-"),
            "unexpected file {name}"
        );
    }
    // And a restarted server accepts the file as it is.
    let restarted = spawn_api(&data_dir.file);
    assert_eq!(
        put_age(&client(), &restarted.base, "after", 1)
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let data_dir = DataDir::with(SEED);
    let mut api = spawn_api(&data_dir.file);
    assert_eq!(
        put_age(&client(), &api.base, "dave", 14)
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let status = api.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(read_data(&data_dir.file)["dave"], json!(14));
}

#[tokio::test]
async fn sigterm_ends_the_process_within_docker_stop_timeout_despite_a_slow_client() {
    use std::io::Write;
    let data_dir = DataDir::with(SEED);
    let mut api = spawn_api(&data_dir.file);
    // One request in flight whose body never comes, one head never finished.
    let mut in_flight = std::net::TcpStream::connect(api.address()).unwrap();
    in_flight
        .write_all(
            format!(
                "PUT /supmit/api/v1.0/student_ages/slow HTTP/1.1\r\nhost: t\r\n\
                 authorization: Basic {}\r\ncontent-type: application/json\r\n\
                 content-length: 20\r\n\r\n{{",
                basic(USER, PASSWORD)
            )
            .as_bytes(),
        )
        .unwrap();
    let mut half = std::net::TcpStream::connect(api.address()).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let status = api.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
}

/// The value of a basic `Authorization` header.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
