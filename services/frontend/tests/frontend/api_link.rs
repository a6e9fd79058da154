//! How the UI reaches the API: plain HTTP over a unix socket (what an edge
//! proxy on the same host offers), and a read sent again once when its
//! connection fails before any answer, while a write is never sent twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use student_ages_frontend::ApiUrl;
use student_ages_testkit::{InProcess, SEED, TestApi};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestFrontend, client};

#[tokio::test]
async fn the_ui_reaches_the_api_over_a_unix_socket() {
    let api = TestApi::start_on_unix_socket(SEED);
    let socket = api.socket.clone().expect("the API listens on a socket");
    let frontend = TestFrontend::start(format!("unix:{}", socket.display()).parse().unwrap());

    let user = frontend.sign_in().await;
    let (status, html) = user.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(">alice</td>") && html.contains("3 of 3"),
        "{html}"
    );

    let saved = user
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(api.read_data()["dave"], 9);

    let health = client().get(frontend.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

/// How the link drops the first connection, once a request is on it.
#[derive(Clone, Copy)]
enum Failure {
    /// Close it without a word (FIN): "connection closed before message completed".
    Close,
    /// Reset it (RST): "connection reset by peer".
    Reset,
}

/// A TCP link in front of the API that drops the first connection made
/// through it, as a restarting API or proxy would, and passes later ones
/// through. Counts the connections.
struct FlakyLink {
    _server: InProcess,
    base: String,
    connections: Arc<AtomicUsize>,
}

impl FlakyLink {
    fn start(upstream: &str, failure: Failure) -> FlakyLink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let server = InProcess::start(move |shutdown| async move {
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            let accept = async {
                loop {
                    let (client, _) = listener.accept().await?;
                    let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if first {
                            drop_after_request(client, failure).await;
                        } else {
                            pass_through(client, &upstream).await;
                        }
                    });
                }
            };
            tokio::select! {
                result = accept => result,
                () = shutdown => Ok(()),
            }
        });
        FlakyLink {
            _server: server,
            base,
            connections,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn drop_after_request(mut client: TcpStream, failure: Failure) {
    let mut request = [0u8; 1024];
    let _ = client.read(&mut request).await;
    if let Failure::Reset = failure {
        let _ = client.set_zero_linger();
    }
}

async fn pass_through(mut client: TcpStream, upstream: &str) {
    if let Ok(mut api) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut api).await;
    }
}

async fn list_through(failure: Failure) {
    let api = TestApi::start(SEED);
    let link = FlakyLink::start(&api.base, failure);
    let frontend = TestFrontend::start(ApiUrl::Http(link.base.clone()));
    // Signing in does not reach the API, so the list is the first read.
    let user = frontend.sign_in_without_the_list().await;
    let (status, html) = user.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(">alice</td>"));
    assert_eq!(link.connections(), 2, "one dropped, one retried");
}

#[tokio::test]
async fn a_read_is_sent_again_once_when_its_connection_closes_without_an_answer() {
    list_through(Failure::Close).await;
}

#[tokio::test]
async fn a_read_is_sent_again_once_when_its_connection_is_reset() {
    list_through(Failure::Reset).await;
}

#[tokio::test]
async fn a_write_whose_connection_drops_is_not_sent_again() {
    let api = TestApi::start(SEED);
    let link = FlakyLink::start(&api.base, Failure::Close);
    let frontend = TestFrontend::start(ApiUrl::Http(link.base.clone()));
    let user = frontend.sign_in_without_the_list().await;
    let response = user
        .post("/students", &[("name", "dave"), ("age", "9")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(link.connections(), 1, "the write was not sent again");
    assert!(!api.read_data().contains_key("dave"));
}
