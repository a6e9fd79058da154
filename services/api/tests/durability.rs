//! Every acknowledged write survives: concurrency, two processes sharing
//! one file, and a SIGKILL in the middle of a load.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use support::{Api, SEED, client, put_age};

/// Sends `count` PUTs with unique names from `writers` concurrent tasks and
/// returns name → age of every PUT the API acknowledged.
async fn load(api: &Api, prefix: &str, writers: usize, count: usize) -> BTreeMap<String, u32> {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let client = client();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (client, acked) = (client.clone(), Arc::clone(&acked));
            let (url_base, prefix) = (api.base.clone(), prefix.to_owned());
            tokio::spawn(async move {
                for i in (w..count).step_by(writers) {
                    let name = format!("{prefix}-{i}");
                    let age = (i % 150) as u32;
                    let url = format!("{url_base}/supmit/api/v1.0/student_ages/{name}");
                    let response = client
                        .put(url)
                        .basic_auth(support::USER, Some(support::PASSWORD))
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
    let api = Api::start(SEED);
    let acked = load(&api, "w", 32, 800).await;
    assert_eq!(acked.len(), 800);
    let data = api.read_data();
    assert_all_present(&data, &acked);
    assert_eq!(data.len(), 803);
}

#[tokio::test]
async fn two_processes_on_one_file_lose_nothing() {
    let first = Api::start(SEED);
    let second = Api::start_on(&first.data_file);
    let (a, b) = tokio::join!(
        load(&first, "first", 16, 400),
        load(&second, "second", 16, 400)
    );
    assert_eq!((a.len(), b.len()), (400, 400));
    let data = first.read_data();
    assert_all_present(&data, &a);
    assert_all_present(&data, &b);
    assert_eq!(data.len(), 803);
    // Each process also reads what the other wrote.
    let listed: serde_json::Value = client()
        .get(second.url("/supmit/api/v1.0/get_student_ages"))
        .basic_auth(support::USER, Some(support::PASSWORD))
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
    let api = Api::start(SEED);
    let pid = api.pid().to_string();
    let writes = load(&api, "k", 32, 1_000_000);
    let kill = async {
        // Let the load get going, then kill the server without warning.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    let (acked, ()) = tokio::join!(writes, kill);
    assert!(
        acked.len() > 10,
        "the load barely ran: {} writes",
        acked.len()
    );
    let data = api.read_data();
    assert_all_present(&data, &acked);
    // No stray temp file is mistaken for data; any leftover is a hidden temp.
    for entry in std::fs::read_dir(api.data_file.parent().unwrap()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "student_age.json"
                || name == "student_age.json.lock"
                || name.starts_with(".student_age.json.tmp-"),
            "unexpected file {name}"
        );
    }
    // And a restarted server accepts the file as it is.
    let restarted = Api::start_on(&api.data_file);
    assert_eq!(
        put_age(&client(), &restarted, "after", 1)
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
}
