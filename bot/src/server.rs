//! The HTTP listeners: the chat platforms' endpoints, health, readiness and metrics.
//!
//! Connections are served here rather than by `axum::serve`, which has no header or idle
//! deadline: a client that trickles its headers, never finishes its body, or keeps an idle
//! connection open would otherwise hold a socket (and a task) for as long as it likes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use erlmcp_commands::Timestamp;
use erlmcp_commands::config::BotSection;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::app::App;
use crate::store::{Store, StoreError, WriteBlock};

/// Which endpoints a listener carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Everything on one address (no `bot.metrics_listen`).
    All,
    /// The chat platforms' endpoints only (`bot.listen` when `bot.metrics_listen` is set).
    Chat,
    /// `/healthz`, `/readyz`, `/metrics` only (`bot.metrics_listen`).
    Probes,
}

#[derive(Clone)]
pub struct ServerState {
    pub app: Arc<App>,
    pub readiness: Arc<Readiness>,
}

/// Every endpoint on one router.
pub fn router(app: Arc<App>) -> Router {
    routes(app, Routes::All)
}

pub fn routes(app: Arc<App>, which: Routes) -> Router {
    let mut router = Router::new();
    if which != Routes::Chat {
        router = router
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics));
    }
    if which != Routes::Probes {
        router = router.merge(app.platforms().routes());
    }
    if which != Routes::Probes {
        router = router.merge(crate::github_webhook::routes(app.engine.clone()));
    }
    // Last, so it covers every chat route above.
    let router = router.layer(middleware::from_fn_with_state(
        app.metrics.clone(),
        time_ack,
    ));
    let engine = app.engine.clone();
    let readiness = Readiness::new(
        app.store.clone(),
        Arc::new(move || engine.now()),
        PROBE_TIMEOUT,
    );
    router.with_state(ServerState { app, readiness })
}

/// The chat platform an inbound request comes from, by its path.
fn inbound_platform(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    match first {
        "slack" => Some("slack"),
        "discord" => Some("discord"),
        "github" => Some("github"),
        _ => None,
    }
}

/// The answer to a chat request is its acknowledgement: the platforms give it 3 seconds.
async fn time_ack(
    State(metrics): State<Arc<crate::metrics::Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(platform) = inbound_platform(req.uri().path()) else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.ack(platform, started.elapsed());
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store takes a write: without one nothing can be audited, so nothing can
/// run. The answer names a category, never the database's own message.
async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    // First thing on SIGTERM: the load balancer stops sending before the listener closes.
    if s.app.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".to_string(),
        );
    }
    match s.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(block) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", block.as_str()),
        ),
    }
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.app.metrics.encode(),
    )
}

/// How long `/readyz` waits for the write probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe's answer is reused: a storm of probes (several kubelets, a load
/// balancer, someone's curl loop) costs one write per period.
const PROBE_FRESH_FOR: Duration = Duration::from_secs(1);

type ProbeResult = Result<(), WriteBlock>;

/// The write probe behind `/readyz`: at most one in flight, its answer reused for a moment.
pub struct Readiness {
    store: Arc<dyn Store>,
    now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    timeout: Duration,
    state: Mutex<ProbeState>,
    probes: AtomicU64,
}

#[derive(Default)]
struct ProbeState {
    last: Option<(Instant, ProbeResult)>,
    running: Option<Shared<BoxFuture<'static, ProbeResult>>>,
}

impl Readiness {
    pub fn new(
        store: Arc<dyn Store>,
        now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        timeout: Duration,
    ) -> Arc<Readiness> {
        Arc::new(Readiness {
            store,
            now,
            timeout,
            state: Mutex::new(ProbeState::default()),
            probes: AtomicU64::new(0),
        })
    }

    /// Probes started so far.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    pub async fn check(self: &Arc<Self>) -> ProbeResult {
        let running = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, result)) = s.last
                && at.elapsed() < PROBE_FRESH_FOR
            {
                return result;
            }
            match &s.running {
                Some(probe) => probe.clone(),
                None => {
                    let probe = self.start_probe();
                    s.running = Some(probe.clone());
                    probe
                }
            }
        };
        tokio::time::timeout(self.timeout, running)
            .await
            .unwrap_or(Err(WriteBlock::Timeout))
    }

    /// Runs the probe in its own task, so a caller that gives up (timeout, closed
    /// connection) neither cancels the write halfway nor lets the next caller start another.
    fn start_probe(self: &Arc<Self>) -> Shared<BoxFuture<'static, ProbeResult>> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let task = tokio::spawn(async move {
            let result = match me.store.check_writable((me.now)()).await {
                Ok(()) => Ok(()),
                Err(StoreError::NotWritable(block)) => Err(block),
                Err(_) => Err(WriteBlock::Failed),
            };
            let mut s = me.state.lock().unwrap_or_else(|e| e.into_inner());
            s.last = Some((Instant::now(), result));
            s.running = None;
            result
        });
        async move { task.await.unwrap_or(Err(WriteBlock::Failed)) }
            .boxed()
            .shared()
    }
}

/// Deadlines and caps of an HTTP listener (`bot.http_*`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// To send a request's headers, from the connection's start or the previous response.
    pub header_timeout: Duration,
    /// To send a whole request body once the headers are in.
    pub body_timeout: Duration,
    /// A connection with no request in progress this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
    pub max_body: usize,
}

impl HttpLimits {
    pub fn from_config(bot: &BotSection) -> HttpLimits {
        HttpLimits {
            header_timeout: bot.http_header_timeout.0,
            body_timeout: bot.http_body_timeout.0,
            idle_timeout: bot.http_idle_timeout.0,
            max_connections: bot.http_max_connections.max(1) as usize,
            max_body: usize::try_from(bot.http_max_body.0).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// every open connection finish its request in flight, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let router = router.layer(middleware::from_fn_with_state(limits, read_body));
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: past the cap, connections wait in the kernel's queue
        // instead of costing a task and a buffer each.
        let slot = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            stopped.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds its slot until it closes: holding them all means all closed.
    let _ = slots.acquire_many(max).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = seen.begin();
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(Body::new)).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let stream = Arc::new(stream);
    let io = Watched {
        inner: stream.clone(),
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    let mut closing = false;
    loop {
        // Biased, connection first: when the stop signal wakes this task, hyper reads what the
        // client has already sent before the signal is looked at.
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(error = %e, "http connection ended");
                }
                break;
            }
            _ = wait_stopped(&mut stopped), if !stopping => {
                if unread_bytes(&stream) {
                    activity.bytes_arrived();
                }
                stopping = true;
            }
            // hyper closes a connection with no request dispatched at once, even when part
            // of one has arrived: wait for that request to start (it is then finished), up
            // to the header deadline a slow client gets anyway.
            _ = activity.until_no_partial(limits.header_timeout), if stopping && !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.idle_for(limits.idle_timeout), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The connection's socket, shared so the connection's task can look at it while hyper owns
/// it, and noting when bytes arrive while no request is being served: the start of the next
/// request.
struct Watched {
    inner: Arc<TcpStream>,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.inner.poll_read_ready(cx))?;
            match self.inner.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    if n > 0 {
                        self.activity.bytes_arrived();
                    }
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_write(data) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return std::task::Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return std::task::Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let shut = socket2::SockRef::from(&*self.inner).shutdown(std::net::Shutdown::Write);
        std::task::Poll::Ready(match shut {
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// Whether the client has sent bytes not read yet. The runtime learns that a socket became
/// readable only on its next look at the OS, which may come after the stop signal; asking the
/// socket itself does not wait for that.
fn unread_bytes(stream: &TcpStream) -> bool {
    let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut one), Ok(n) if n > 0)
}

async fn wait_stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    since: Mutex<Instant>,
    /// Bytes of a request arrived that hyper has not handed to the service yet.
    partial: AtomicBool,
    started: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            partial: AtomicBool::new(false),
            started: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> BusyGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.partial.store(false, Ordering::SeqCst);
        self.started.notify_waiters();
        BusyGuard(self.clone())
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.partial.store(true, Ordering::SeqCst);
        }
    }

    /// Completes once no request is half-arrived, or after `limit`.
    async fn until_no_partial(&self, limit: Duration) {
        let started = self.started.notified();
        tokio::pin!(started);
        started.as_mut().enable();
        if !self.partial.load(Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(limit, started).await;
    }

    fn idle_since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(limit).await;
                continue;
            }
            let deadline = self.idle_since() + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads the whole body under the size limit and the body deadline before any handler
/// runs, so a handler never waits on a slow client and never buffers more than the limit.
async fn read_body(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return too_large(limits);
    }
    let limited = http_body_util::Limited::new(body, limits.max_body);
    let read = http_body_util::BodyExt::collect(limited);
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Err(_) => {
            return closing(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {}s\n",
                    limits.body_timeout.as_secs()
                ),
            );
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(limits),
        Ok(Err(_)) => {
            return closing(
                StatusCode::BAD_REQUEST,
                "could not read the request body\n".into(),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limits: HttpLimits) -> Response {
    closing(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body larger than {} bytes (bot.http_max_body)\n",
            limits.max_body
        ),
    )
}

/// An error answer that also closes the connection: what is left of the body is unread.
fn closing(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdb;
    use chrono::Utc;

    fn readiness(store: Arc<dyn Store>, timeout: Duration) -> Arc<Readiness> {
        Readiness::new(store, Arc::new(Utc::now), timeout)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_storm_costs_one_write() {
        let (store, _dir) = testdb::fresh_sqlite().await;
        let r = readiness(Arc::new(store), PROBE_TIMEOUT);
        let answers = futures::future::join_all((0..200).map(|_| {
            let r = r.clone();
            async move { r.check().await }
        }))
        .await;
        assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
        assert_eq!(r.probes(), 1);
        r.check().await.unwrap();
        assert_eq!(r.probes(), 1, "answered from the last probe");
    }

    /// A probe that outlasts the deadline is answered as a timeout, and the callers that
    /// come meanwhile wait on that same probe instead of starting their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_probe_is_a_timeout_and_is_not_repeated() {
        use sqlx::Connection;
        let (url, _dir) = testdb::fresh_sqlite_url();
        let store = crate::store::SqliteStore::open(&url).await.unwrap();
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let r = readiness(Arc::new(store), Duration::from_millis(200));
        let started = Instant::now();
        assert_eq!(r.check().await, Err(WriteBlock::Timeout));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(r.check().await, Err(WriteBlock::Timeout));
        assert_eq!(r.probes(), 1, "the first probe was still running");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }
}
