//! The connection limits [`serve`] applies, seen from raw loopback
//! sockets: idle and half-sent sockets do not starve `/healthz`, a slow
//! client is dropped after the header timeout, connections beyond the cap
//! are refused quickly when every one is busy, and shutdown ends within the
//! grace period whatever a client does.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use poem::web::Json;
use poem::{EndpointExt, Route, get, handler, post};
use student_ages_process::{ServerLimits, serve};
use tokio::sync::oneshot;

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
fn echo(body: Json<serde_json::Value>) -> Json<serde_json::Value> {
    body
}

/// A server on a loopback port with `limits`, on its own runtime thread;
/// the sender stops it, the thread's result says how long that took.
struct TestServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl TestServer {
    fn start(limits: ServerLimits) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = Route::new()
                    .at("/healthz", get(healthz))
                    .at("/echo", post(echo))
                    .map_to_response();
                let mut asked = None;
                let shutdown = async {
                    let _ = stopped.await;
                    asked = Some(Instant::now());
                };
                serve(listener, app, limits, shutdown).await.unwrap();
                asked.map(|t| t.elapsed()).unwrap_or_default()
            })
        });
        TestServer {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server and returns how long shutdown took.
    fn stop(&mut self) -> Duration {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(1),
    }
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// `GET /healthz` on a new connection: the status line and body.
fn healthz_over(address: SocketAddr) -> String {
    let mut stream = connect(address);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Reads until the peer closes (or the read timeout); how long it took and
/// what was received.
fn read_until_closed(stream: &mut TcpStream) -> (Duration, Result<String, ErrorKind>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let result = match stream.read_to_end(&mut received) {
        Ok(_) => Ok(String::from_utf8_lossy(&received).into_owned()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            Ok(String::from_utf8_lossy(&received).into_owned())
        }
        Err(e) => Err(e.kind()),
    };
    (started.elapsed(), result)
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_dropped() {
    let server = TestServer::start(limits());
    let mut slow = connect(server.address);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")
        .unwrap();
    let (took, result) = read_until_closed(&mut slow);
    assert!(result.is_ok(), "not closed: {result:?} after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

#[test]
fn idle_and_half_sent_sockets_beyond_the_cap_do_not_starve_healthz() {
    let server = TestServer::start(ServerLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(server.address)).collect();
    let mut half = connect(server.address);
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost").unwrap();
    held.push(half);
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let answer = healthz_over(server.address);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
}

#[test]
fn beyond_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once() {
    let server = TestServer::start(ServerLimits {
        max_connections: 2,
        ..limits()
    });
    // Two requests in flight: each handler waits for a body that never comes.
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(server.address);
            stream
                .write_all(
                    b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
                      content-length: 20\r\n\r\n{\"a\":",
                )
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut refused = connect(server.address);
    let (took, result) = read_until_closed(&mut refused);
    let answer = result.expect("the refused connection is closed");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");
    drop(busy);
}

#[test]
fn a_request_that_takes_too_long_gets_a_json_503() {
    let server = TestServer::start(ServerLimits {
        request_timeout: Duration::from_millis(300),
        ..limits()
    });
    let mut stream = connect(server.address);
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
              content-length: 20\r\n\r\n{",
        )
        .unwrap();
    let mut answer = vec![0; 1024];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("{\"error\":\"the request took too long"),
        "{answer}"
    );
}

#[test]
fn shutdown_ends_within_the_grace_period_with_a_slow_client_connected() {
    let mut server = TestServer::start(ServerLimits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        ..limits()
    });
    let mut in_flight = connect(server.address);
    in_flight
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
              content-length: 20\r\n\r\n{",
        )
        .unwrap();
    let mut half = connect(server.address);
    half.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let took = server.stop();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}
