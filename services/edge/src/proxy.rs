//! The request path: pick the route and a healthy target, forward the
//! request with `X-Forwarded-*` and without hop-by-hop headers, retry a
//! connect error elsewhere, enforce the body limit and the upstream
//! timeout, log one line per request.
//!
//! A request is retried only when its connection to the target failed
//! before anything was sent (hyper's connect error, and the body never
//! polled): on another healthy target when there is one, else once on the
//! same target after `SAME_TARGET_PAUSE`. A lone target that refuses a
//! connection is most often restarting its accept loop or briefly over its
//! backlog; one short pause rescues those requests and costs a failing
//! request only that pause. A GET, HEAD or OPTIONS without a body whose
//! kept-alive connection the target closed before any byte of a response
//! (a target stopping between requests) is sent again once, as browsers
//! do. Other requests that reached a target are never replayed: a PUT must
//! not be applied twice.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::config::{Limits, ListenerSpec};
use crate::pool::{Lease, SendError};
use crate::upstream::{InFlight, Service, Target, Upstreams, error_chain};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SAME_TARGET_PAUSE: Duration = Duration::from_millis(100);
/// The edge's own paths, answered on every listener and never forwarded.
pub const EDGE_HEALTH_PATH: &str = "/.edge/healthz";
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// HTTP-01 challenge answers, token → key authorization, filled by the ACME
/// client while an order is pending.
#[derive(Default)]
pub struct Challenges {
    pub enabled: AtomicBool,
    tokens: RwLock<std::collections::HashMap<String, String>>,
}

impl Challenges {
    pub fn insert(&self, token: String, key_authorization: String) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

/// One listener's routes, resolved to services, longest prefix first.
pub struct ListenerRoutes {
    pub name: String,
    pub scheme: &'static str,
    pub redirect_https: bool,
    /// Where the redirect points: the port of the first https listener.
    pub https_port: Option<u16>,
    routes: Vec<(String, Arc<Service>)>,
}

impl ListenerRoutes {
    pub fn new(spec: &ListenerSpec, upstreams: &Upstreams, https_port: Option<u16>) -> Self {
        let mut routes: Vec<(String, Arc<Service>)> = spec
            .routes
            .iter()
            .filter_map(|r| {
                upstreams
                    .service(&r.service)
                    .map(|s| (r.prefix.clone(), s.clone()))
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        ListenerRoutes {
            name: spec.name.clone(),
            scheme: spec.address.scheme(),
            redirect_https: spec.redirect_https,
            https_port,
            routes,
        }
    }

    fn route(&self, path: &str) -> Option<&Arc<Service>> {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, s)| s)
    }
}

/// The body of a forwarded request: the client's body, handed to hyper's
/// client only when it first polls it (so a connect error leaves it here,
/// and the request can be retried), and cut at the body limit.
pub struct RequestBody {
    state: BodyState,
    limit: u64,
    seen: u64,
    hint: SizeHint,
}

enum BodyState {
    Empty,
    Waiting(Arc<BodySlot>),
    Streaming(Incoming, Arc<BodySlot>),
}

struct BodySlot {
    body: Mutex<Option<Incoming>>,
    over_limit: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit of {0} bytes")]
struct BodyTooLarge(u64);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                BodyState::Empty => return Poll::Ready(None),
                BodyState::Waiting(slot) => {
                    let taken = slot.body.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match taken {
                        Some(body) => this.state = BodyState::Streaming(body, slot.clone()),
                        None => return Poll::Ready(None),
                    }
                }
                BodyState::Streaming(body, slot) => {
                    let frame = match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => return Poll::Ready(None),
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Ready(Some(Ok(frame))) => frame,
                    };
                    if let Some(data) = frame.data_ref() {
                        this.seen += data.len() as u64;
                        if this.seen > this.limit {
                            slot.over_limit.store(true, Ordering::Relaxed);
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Empty => true,
            BodyState::Waiting(_) => self.hint.exact() == Some(0),
            BodyState::Streaming(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// What the edge answers: its own short bodies or a target's streamed one
/// (which holds the request's in-flight count and its connection until sent).
pub enum EdgeBody {
    Full(Full<Bytes>),
    Upstream(Incoming, InFlight, Lease),
}

impl EdgeBody {
    fn json(value: serde_json::Value) -> EdgeBody {
        EdgeBody::Full(Full::new(Bytes::from(value.to_string())))
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            EdgeBody::Full(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
            EdgeBody::Upstream(b, ..) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Full(b) => b.is_end_stream(),
            EdgeBody::Upstream(b, ..) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Full(b) => b.size_hint(),
            EdgeBody::Upstream(b, ..) => b.size_hint(),
        }
    }
}

/// The client of a connection as `X-Forwarded-For` names it: its IP,
/// formatted once per connection and shared (not copied) by its requests.
#[derive(Clone)]
pub struct ClientIp(HeaderValue);

impl ClientIp {
    pub fn new(peer: SocketAddr) -> Option<ClientIp> {
        HeaderValue::from_str(&peer.ip().to_string())
            .ok()
            .map(ClientIp)
    }
}

/// Shared by every listener and connection.
pub struct Proxy {
    pub upstreams: Arc<Upstreams>,
    limits: Limits,
    pub challenges: Arc<Challenges>,
    /// Set when this process hands over or shuts down: HTTP/1 responses then
    /// carry `Connection: close`, so keep-alive clients reconnect (to the
    /// successor) after their current request instead of racing a close.
    pub draining: AtomicBool,
}

/// What a request's log line says.
struct Outcome {
    status: StatusCode,
    upstream: Upstream,
    note: Option<String>,
}

/// Who answered a request, as its log line names it.
enum Upstream {
    /// The edge itself, with an error.
    None,
    /// The edge itself, for one of its own paths.
    Edge(&'static str),
    Target(Arc<Target>),
}

impl Upstream {
    fn name(&self) -> &str {
        match self {
            Upstream::None => "-",
            Upstream::Edge(name) => name,
            Upstream::Target(target) => &target.address,
        }
    }
}

impl Proxy {
    pub fn new(upstreams: Arc<Upstreams>, limits: Limits, challenges: Arc<Challenges>) -> Proxy {
        Proxy {
            upstreams,
            limits,
            challenges,
            draining: AtomicBool::new(false),
        }
    }

    /// Answers one request arriving on `listener` from `peer` (None on a
    /// unix socket).
    ///
    /// What needs no waiting (routing, the edge's own answers, preparing
    /// the request for its target) is done here, before the future exists;
    /// the future holds only what forwarding needs across its waits. hyper
    /// moves it into place once per request and each nested future is
    /// moved into its parent, so its size is paid in copies on every
    /// request: a `perf` profile showed those copies (about 20 KB when
    /// three nested `async fn`s each kept the whole request) as the
    /// edge's largest user-space cost.
    pub fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        listener: &Arc<ListenerRoutes>,
        peer: Option<ClientIp>,
    ) -> impl Future<Output = Result<Response<EdgeBody>, Infallible>> + Send + use<> {
        let started = Instant::now();
        let method = request.method().clone();
        // A Uri clone shares its bytes: no copy of the path per request.
        let uri = request.uri().clone();
        let version = request.version();
        let mut step = self.answer(request, listener, peer);
        let (proxy, listener) = (self.clone(), listener.clone());
        async move {
            // `step` is used in place: moving it out would give it a
            // second slot in this future.
            let (mut response, outcome) = match &mut step {
                Step::Forward(forwarding) => proxy.forward(forwarding).await,
                Step::Drain(body) => {
                    if let Some(body) = body.take() {
                        // Rare: boxed, so that its timer does not grow
                        // every request's future.
                        Box::pin(drain(body)).await;
                    }
                    too_large(proxy.limits.max_body)
                }
                Step::Done(done) => done.take().expect("a done step is answered once"),
            };
            strip_hop_by_hop(response.headers_mut());
            if proxy.draining.load(Ordering::Relaxed) && version < Version::HTTP_2 {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let micros = started.elapsed().as_micros() as u64;
            crate::log::request(&crate::log::RequestLine {
                listener: &listener.name,
                method: method.as_str(),
                path: uri.path(),
                status: outcome.status.as_u16(),
                upstream: outcome.upstream.name(),
                micros,
                note: outcome.note.as_deref(),
            });
            Ok(response)
        }
    }

    /// Decides what to do with a request without waiting.
    fn answer(
        &self,
        request: Request<Incoming>,
        listener: &ListenerRoutes,
        peer: Option<ClientIp>,
    ) -> Step {
        let done = |(response, outcome)| Step::Done(Some((response, outcome)));
        let path = request.uri().path();
        if path == EDGE_HEALTH_PATH {
            return done(own(
                StatusCode::OK,
                serde_json::json!({"status": "ok", "pid": std::process::id()}),
                None,
            ));
        }
        if listener.scheme == "http"
            && self.challenges.enabled.load(Ordering::Relaxed)
            && let Some(token) = path.strip_prefix(ACME_CHALLENGE_PREFIX)
        {
            return done(match self.challenges.get(token) {
                Some(answer) => (
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(EdgeBody::Full(Full::new(Bytes::from(answer))))
                        .expect("a static status and header always build"),
                    Outcome {
                        status: StatusCode::OK,
                        upstream: Upstream::Edge("acme-challenge"),
                        note: None,
                    },
                ),
                None => own(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "no such ACME challenge token"}),
                    Some("unknown ACME challenge token".into()),
                ),
            });
        }
        if listener.redirect_https {
            return done(redirect(&request, listener.https_port));
        }
        let Some(service) = listener.route(path) else {
            return done(own(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": format!("no route for {path} on this listener")}),
                Some(format!("no route on listener {}", listener.name)),
            ));
        };
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = length.filter(|l| *l > self.limits.max_body) {
            // Read (and drop) a body of reasonable size before answering:
            // closing with unread data makes the kernel send a reset, and
            // the client may never see the 413.
            let expects_continue = request.headers().contains_key(header::EXPECT);
            if !expects_continue && length <= 4 * self.limits.max_body {
                return Step::Drain(Some(request.into_body()));
            }
            return done(too_large(self.limits.max_body));
        }
        Step::Forward(self.prepare(request, service.clone(), listener, peer))
    }

    /// The request as its target gets it: origin-form URI, without
    /// hop-by-hop headers, with `X-Forwarded-*`.
    fn prepare(
        &self,
        request: Request<Incoming>,
        service: Arc<Service>,
        listener: &ListenerRoutes,
        peer: Option<ClientIp>,
    ) -> Forwarding {
        let (mut parts, incoming) = request.into_parts();
        // Targets get the origin form (`/path?query`), even from a client
        // that sent the absolute form.
        let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
            None
        } else {
            Some(Uri::from(
                parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            ))
        };
        prepare_headers(
            &mut parts.headers,
            &parts.uri,
            listener.scheme,
            peer.as_ref(),
        );
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        parts.version = Version::HTTP_11;
        // The extensions hyper put there are for this connection only.
        parts.extensions = http::Extensions::new();
        let host_from_target = !parts.headers.contains_key(header::HOST);
        let hint = incoming.size_hint();
        let (state, slot) = if incoming.is_end_stream() {
            (BodyState::Empty, None)
        } else {
            let slot = Arc::new(BodySlot {
                body: Mutex::new(Some(incoming)),
                over_limit: AtomicBool::new(false),
            });
            (BodyState::Waiting(slot.clone()), Some(slot))
        };
        let replayable =
            slot.is_none() && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let body = RequestBody {
            state,
            limit: self.limits.max_body,
            seen: 0,
            hint,
        };
        Forwarding {
            service,
            request: Some(Request::from_parts(parts, body)),
            slot,
            host_from_target,
            replayable,
        }
    }

    /// Sends the prepared request to a healthy target of its service,
    /// retrying as the module's documentation says.
    async fn forward(&self, f: &mut Forwarding) -> (Response<EdgeBody>, Outcome) {
        let mut target = match f.service.pick(None) {
            Some(t) => t,
            None => return no_target(&f.service),
        };
        let mut retried_same = false;
        let mut retried_closed = false;
        let mut notes: Vec<String> = Vec::new();
        loop {
            // The request is used in its slot (`pool::send` takes it out),
            // never moved into a local that would take room in this future.
            let Some(request) = f.request.as_mut() else {
                return bad_gateway(&target, "the request body was already sent".into(), notes);
            };
            if f.host_from_target {
                request
                    .headers_mut()
                    .insert(header::HOST, target.host.clone());
            }
            // A copy to send again if the target closes a kept-alive
            // connection under it; made only for a request that may be.
            let replay = f.replayable && !retried_closed;
            let guard = target.start_request();
            let result = tokio::time::timeout(
                self.limits.upstream_timeout,
                crate::pool::send(&target, &mut f.request, replay),
            )
            .await;
            match result {
                Ok(Ok((response, lease))) => {
                    let (parts, body) = response.into_parts();
                    let status = parts.status;
                    let note = (!notes.is_empty()).then(|| notes.join("; "));
                    return (
                        Response::from_parts(parts, EdgeBody::Upstream(body, guard, lease)),
                        Outcome {
                            status,
                            upstream: Upstream::Target(target),
                            note,
                        },
                    );
                }
                Ok(Err(error)) => {
                    drop(guard);
                    if f.slot
                        .as_ref()
                        .is_some_and(|s| s.over_limit.load(Ordering::Relaxed))
                    {
                        return too_large(self.limits.max_body);
                    }
                    let message = error_chain(&error);
                    let connect = matches!(error, SendError::Connect(_));
                    let closed_early = !connect
                        && replay
                        && matches!(&error, SendError::Exchange(e) if closed_before_response(e));
                    if !connect && !closed_early {
                        return bad_gateway(&target, message, notes);
                    }
                    // `f.request` holds the request again: unsent after a
                    // connect error, its copy after a closed connection.
                    if closed_early {
                        // A kept-alive connection the target closed as the
                        // request went out (it stopped, or timed the
                        // connection out): safe to send again, once.
                        retried_closed = true;
                        notes.push(format!(
                            "{} closed the connection before answering",
                            target.address
                        ));
                        if let Some(other) = f.service.pick(Some(&target)) {
                            target = other;
                        }
                        continue;
                    }
                    target.connect_failed(&message);
                    notes.push(format!(
                        "{} refused the connection ({message})",
                        target.address
                    ));
                    match f.service.pick(Some(&target)) {
                        Some(other) => target = other,
                        None if !retried_same => {
                            retried_same = true;
                            // Boxed: a timer kept in every request's
                            // future would be copied with it.
                            Box::pin(tokio::time::sleep(SAME_TARGET_PAUSE)).await;
                        }
                        None => return bad_gateway(&target, message, notes),
                    }
                }
                Err(_elapsed) => {
                    drop(guard);
                    let timeout = self.limits.upstream_timeout;
                    return own(
                        StatusCode::GATEWAY_TIMEOUT,
                        serde_json::json!({"error": format!(
                            "the {} service did not answer within {timeout:?}", f.service.name)}),
                        Some(format!(
                            "{} did not answer within {timeout:?}",
                            target.address
                        )),
                    );
                }
            }
        }
    }
}

/// What [`Proxy::answer`] decided.
enum Step {
    /// Answered by the edge itself (taken when the future runs).
    Done(Option<(Response<EdgeBody>, Outcome)>),
    /// A body over the limit: read (and dropped) before the 413.
    Drain(Option<Incoming>),
    Forward(Forwarding),
}

/// A request on its way to a target.
struct Forwarding {
    service: Arc<Service>,
    /// The next attempt's request; taken while it is out.
    request: Option<Request<RequestBody>>,
    slot: Option<Arc<BodySlot>>,
    /// The client sent no Host: each attempt names its target.
    host_from_target: bool,
    /// A GET, HEAD or OPTIONS without a body.
    replayable: bool,
}

/// A copy of a request without a body, to send again.
pub(crate) fn replica(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody {
        state: BodyState::Empty,
        limit: request.body().limit,
        seen: 0,
        hint: request.body().hint,
    });
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
    })
    .await;
}

/// The connection closed or was reset before a response head arrived
/// (hyper's "connection closed before message completed", ECONNRESET).
fn closed_before_response(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = e.source();
    }
    false
}

fn prepare_headers(
    headers: &mut HeaderMap,
    uri: &Uri,
    scheme: &'static str,
    peer: Option<&ClientIp>,
) {
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, value);
    }
    if let Some(ClientIp(ip)) = peer {
        let appended = match headers.get(X_FORWARDED_FOR).map(|v| v.to_str()) {
            None => None,
            Some(Ok(existing)) => {
                HeaderValue::from_str(&format!("{existing}, {}", ip.to_str().unwrap_or_default()))
                    .ok()
            }
            // Not text: replaced by ours, as before.
            Some(Err(_)) => Some(ip.clone()),
        };
        headers.insert(X_FORWARDED_FOR, appended.unwrap_or_else(|| ip.clone()));
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes the headers that describe one connection, not the message
/// (RFC 9110 §7.6.1), including those the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names, no lookups.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn own(
    status: StatusCode,
    body: serde_json::Value,
    note: Option<String>,
) -> (Response<EdgeBody>, Outcome) {
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(EdgeBody::json(body))
        .expect("a status and a static header always build");
    (
        response,
        Outcome {
            status,
            upstream: Upstream::None,
            note,
        },
    )
}

fn too_large(limit: u64) -> (Response<EdgeBody>, Outcome) {
    own(
        StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({"error": format!(
            "request body too large: the limit is {limit} bytes (EDGE_MAX_BODY)")}),
        Some(format!("request body over the {limit}-byte limit")),
    )
}

fn no_target(service: &Service) -> (Response<EdgeBody>, Outcome) {
    own(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": format!(
            "the {} service has no healthy target right now", service.name)}),
        Some(format!("no healthy target for {}", service.name)),
    )
}

fn bad_gateway(
    target: &Arc<Target>,
    message: String,
    mut notes: Vec<String>,
) -> (Response<EdgeBody>, Outcome) {
    notes.push(message);
    let (response, mut outcome) = own(
        StatusCode::BAD_GATEWAY,
        serde_json::json!({"error": "the service behind the edge failed to answer"}),
        Some(notes.join("; ")),
    );
    outcome.upstream = Upstream::Target(target.clone());
    (response, outcome)
}

fn redirect(request: &Request<Incoming>, https_port: Option<u16>) -> (Response<EdgeBody>, Outcome) {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("localhost");
    // Drop a port from Host ("example.org:80"), keeping IPv6 brackets intact.
    let bare = match host.rsplit_once(':') {
        Some((h, port))
            if !h.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.ends_with(']') =>
        {
            h
        }
        _ => host,
    };
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let pq = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{bare}{port}{pq}");
    let status = if request.method() == Method::GET || request.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let response = Response::builder()
                .status(status)
                .header(header::LOCATION, value)
                .body(EdgeBody::Full(Full::new(Bytes::new())))
                .expect("a status and a checked header always build");
            (
                response,
                Outcome {
                    status,
                    upstream: Upstream::Edge("redirect-https"),
                    note: None,
                },
            )
        }
        Err(_) => own(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "the Host header cannot make a redirect URL"}),
            Some("bad Host for the https redirect".into()),
        ),
    }
}
