//! The HTTP listener under attack and under a failing database: slow headers, slow bodies,
//! idle and excess connections, oversized bodies, and a `/readyz` that must prove the store
//! takes a write (a SQLite file locked by another process, a PostgreSQL database turned
//! read-only) while the refusals it causes are counted on `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use erlmcp_bot::app::App;
use erlmcp_bot::server::{self, HttpLimits, Routes};
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::harness::{Bot, embedded_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        max_connections: 64,
        max_body: 1024,
    }
}

/// Serves the bot's routes on 127.0.0.1:0 with `limits`; returns the address.
async fn serve(app: Arc<App>, routes: Routes, limits: HttpLimits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = server::routes(app, routes);
    tokio::spawn(server::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    addr
}

async fn sqlite_bot() -> (Bot, testdb::TempDb, String) {
    let (url, dir) = testdb::fresh_sqlite_url();
    let store = erlmcp_bot::store::SqliteStore::open(&url).await.unwrap();
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    (bot, dir, url)
}

/// Starts the bot's server on a fresh SQLite store.
async fn started(limits: HttpLimits) -> (Bot, testdb::TempDb, String) {
    let (bot, dir, _) = sqlite_bot().await;
    let app = Arc::new(shared(&bot));
    let addr = serve(app, Routes::All, limits).await;
    (bot, dir, addr)
}

/// A second handle on the bot's parts, for the server.
fn shared(bot: &Bot) -> App {
    App {
        engine: bot.app.engine.clone(),
        store: bot.app.store.clone(),
        metrics: bot.app.metrics.clone(),
        config: bot.app.config.clone(),
        conversation: bot.app.conversation.clone(),
        slack: bot.app.slack.clone(),
        local: bot.app.local.clone(),
        discord: bot.app.discord.clone(),
        discord_gateway: bot.app.discord_gateway.clone(),
        discord_client: bot.app.discord_client.clone(),
        draining: bot.app.draining.clone(),
    }
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Reads until the peer closes (or resets) the connection; returns what was read.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response head and body of `Content-Length` bytes.
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_while_others_are_served() {
    let (_bot, _dir, addr) = started(limits()).await;
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let opened = Instant::now();
    let (mut rd, mut wr) = slow.split();
    // One byte a second, as a slow-loris client does; it never finishes its headers.
    let trickle = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for b in b"GET /healthz HTTP/1.1\r\nHost: bot\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            tick.tick().await;
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 256];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let others = async {
        // Meanwhile everyone else is answered at once.
        for _ in 0..5 {
            let asked = Instant::now();
            let (status, _) = get(&addr, "/healthz").await;
            assert_eq!(status, 200);
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "{:?}",
                asked.elapsed()
            );
        }
    };
    let (closed_after, ()) = tokio::select! {
        r = async { tokio::join!(closed, others) } => r,
        _ = trickle => panic!("the slow client was allowed to send its whole header"),
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            panic!("the slow client was still connected after 10s")
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, header timeout 2s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(1),
        ..limits()
    };
    let (_bot, _dir, addr) = started(limits).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("an idle connection is closed");
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle, idle timeout 1s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let limits = HttpLimits {
        max_connections: 1,
        ..limits()
    };
    let (_bot, _dir, addr) = started(limits).await;
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));

    // The kernel completes the handshake, but nobody serves it while `first` holds the slot.
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");

    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second))
        .await
        .expect("served once the slot was freed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_unfinished_bodies_are_refused() {
    let (_bot, _dir, addr) = started(limits()).await;
    let client = reqwest::Client::new();
    // Declared too large: refused before a byte of it is read.
    let r = client
        .post(format!("http://{addr}/healthz"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text().await.unwrap().contains("bot.http_max_body"));
    // Not declared (chunked): refused once the limit is passed.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut req =
        b"POST /healthz HTTP/1.1\r\nHost: bot\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body announced but never finished: 408 once the body timeout passes.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /healthz HTTP/1.1\r\nHost: bot\r\nContent-Length: 100\r\n\r\nonly-some")
        .await
        .unwrap();
    let sent = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
}

/// Shutdown stops accepting at once, but a request already on its way is still answered,
/// and `serve` returns only when its connection is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    let (bot, _dir, _) = sqlite_bot().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(
        listener,
        server::routes(Arc::new(shared(&bot)), Routes::All),
        limits(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /healthz HTTP/1.1\r\nHost: bot\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    // The body is half sent: the request is in flight when the signal comes, whether or not
    // the server has read its first bytes yet.
    let mut probe = TcpStream::connect(&addr).await.unwrap();
    probe.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut probe).await.starts_with("HTTP/1.1 200"));
    drop(probe);
    stop.send(()).unwrap();
    // The signal is asynchronous: a connection made in the same instant may still be taken,
    // but soon the listener is closed and connecting fails.
    let refused = async {
        while TcpStream::connect(&addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("the listener closes");
    assert!(!served.is_finished(), "a request is still in flight");
    s.write_all(b"cd").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("answered, then closed");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returns once its connections are done")
        .unwrap()
        .unwrap();
}

/// A request whose headers have only begun to arrive on a kept-alive connection when shutdown
/// starts is still read and answered (within the header deadline), not dropped with its
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_request_whose_headers_are_arriving() {
    let (bot, _dir, _) = sqlite_bot().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(
        listener,
        server::routes(Arc::new(shared(&bot)), Routes::All),
        limits(),
        async move {
            let _ = stopped.await;
        },
    ));
    // A kept-alive connection between requests is idle, and an idle connection is closed at
    // shutdown: the second request's first bytes must count as a request begun.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
    stop.send(()).unwrap();
    let refused = async {
        while TcpStream::connect(&addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("the listener closes");
    s.write_all(b"st: bot\r\n\r\n").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("answered, then closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returns once its connections are done")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_routes_live_apart_from_chat_routes() {
    let (bot, _dir, _) = sqlite_bot().await;
    let app = Arc::new(shared(&bot));
    let chat = serve(app.clone(), Routes::Chat, limits()).await;
    let probes = serve(app, Routes::Probes, limits()).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            get(&probes, path).await.0,
            200,
            "{path} on the probe listener"
        );
        assert_eq!(get(&chat, path).await.0, 404, "{path} on the chat listener");
    }
}

/// The number on a counter line of `/metrics`, 0 when absent.
fn counter(metrics: &str, line_prefix: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

/// Polls `/readyz` until it answers `status`, at most `within`.
async fn readyz_becomes(addr: &str, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (s, body) = get(addr, "/readyz").await;
        if s == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {s}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The store stops taking writes: `/readyz` says so by category within its deadline, a
/// deploy is refused with a clear reply and counted, and readiness returns with the writes.
async fn unwritable_store(
    bot: Bot,
    addr: String,
    category: &str,
    block: impl AsyncFnOnce(),
    unblock: impl AsyncFnOnce(),
) {
    let (status, body) = get(&addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());

    block().await;
    // Past the cached answer of the last probe.
    let body = readyz_becomes(&addr, 503, Duration::from_secs(5)).await;
    assert_eq!(body, format!("not ready: {category}\n"));
    let asked = Instant::now();
    let (status, _) = get(&addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(
        asked.elapsed() <= server::PROBE_TIMEOUT + Duration::from_secs(1),
        "/readyz took {:?}",
        asked.elapsed()
    );

    let r = bot.say("dave", "deploy staging v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(r.text().starts_with("Not executed"), "{}", r.text());
    assert!(r.text().contains("Nothing was changed"), "{}", r.text());
    let (_, metrics) = get(&addr, "/metrics").await;
    // An operation's first write is its request together with its audit row.
    assert_eq!(
        counter(
            &metrics,
            "erlmcp_bot_store_write_failures_total{what=\"audit\"}"
        ),
        1,
        "{metrics}"
    );

    unblock().await;
    readyz_becomes(&addr, 200, Duration::from_secs(5)).await;
    let r = bot.say("dave", "status staging").await;
    assert!(
        r.text().contains("v3.0.1"),
        "staging unchanged: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_makes_readyz_fail_and_is_counted() {
    use sqlx::Connection;
    let (bot, _dir, url) = sqlite_bot().await;
    let addr = serve(Arc::new(shared(&bot)), Routes::All, limits()).await;
    // Another process's writer: holds SQLite's write lock and never commits.
    let other = Arc::new(tokio::sync::Mutex::new(
        sqlx::SqliteConnection::connect(&url).await.unwrap(),
    ));
    let (o1, o2) = (other.clone(), other.clone());
    unwritable_store(
        bot,
        addr,
        "database locked",
        async move || {
            let mut c = o1.lock().await;
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *c)
                .await
                .unwrap();
        },
        async move || {
            let mut c = o2.lock().await;
            sqlx::query("ROLLBACK").execute(&mut *c).await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_makes_readyz_fail_and_is_counted() {
    use sqlx::Connection;
    let Some(url) =
        testdb::fresh_postgres_url("postgres_read_only_makes_readyz_fail_and_is_counted").await
    else {
        return;
    };
    let store = erlmcp_bot::store::PgStore::open(&url).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store, embedded_config()).await;
    let addr = serve(Arc::new(shared(&bot)), Routes::All, limits()).await;
    let admin = Arc::new(tokio::sync::Mutex::new(
        sqlx::PgConnection::connect(&url).await.unwrap(),
    ));
    let (a1, a2) = (admin.clone(), admin.clone());
    unwritable_store(
        bot,
        addr,
        "database read-only",
        async move || set_read_only(&mut *a1.lock().await, true).await,
        async move || set_read_only(&mut *a2.lock().await, false).await,
    )
    .await;
    testdb::drop_postgres_database(&url).await;
}

/// New sessions on this database are read-only (or writable again); every other session is
/// ended so the bot's pool reconnects under the new setting, as after a failover.
async fn set_read_only(admin: &mut sqlx::PgConnection, on: bool) {
    let sql = if on {
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$"
    } else {
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = off', current_database()); END $$"
    };
    sqlx::query(sql).execute(&mut *admin).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *admin)
    .await
    .unwrap();
}
