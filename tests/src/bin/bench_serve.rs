//! `erlmcp-bot serve` on the embedded default, in a fresh directory each run: the time from
//! spawning the process to `/readyz` answering 200, the resident memory once it has settled,
//! then the memory while it holds 1,000 pending requests and, on top, 1,000 open incidents.
//!
//! The requests and incidents are said in the local chat over its HTTP route
//! (`POST /local/messages`, what the page sends), so they reach the running bot's state the
//! way a person's would: each request posts its approval card, each incident opens its
//! channel. They are counted as done from the bot's own database.
//!
//! Usage: bench_serve [--runs N] [--quick] [--bot PATH]   (stdout: BENCH lines)

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use erlmcp_tests::benchkit::{self, BenchArgs, emit, note};
use sqlx::Connection as _;

const SECTION: &str = "serve on the embedded default (SQLite)";

struct Bot {
    child: Child,
}

impl Bot {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits; returns whether it exited cleanly.
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `serve` in `dir` and returns it with the time until `/readyz` said 200.
fn start(bot: &Path, dir: &Path, addr: SocketAddr) -> (Bot, Duration) {
    let log = std::fs::File::create(dir.join("serve.log")).expect("log file");
    let started = Instant::now();
    let child = Command::new(bot)
        .arg("serve")
        .current_dir(dir)
        .env("ERLMCP_BOT__LISTEN", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let mut bot = Bot { child };
    loop {
        if benchkit::get_status(addr, "/readyz") == Some(200) {
            return (bot, started.elapsed());
        }
        if let Ok(Some(status)) = bot.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("serve exited with {status} before it was ready:\n{log}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!("serve was not ready within 60 s");
        }
        // Polling every 0.5 ms costs the starting process next to nothing (a refused
        // connect) and keeps the reading within half a millisecond.
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Says each of `texts` in #deployments over the page's route, 8 at a time.
async fn say_all(http: &reqwest::Client, addr: SocketAddr, person: &str, texts: Vec<String>) {
    use futures::StreamExt as _;
    let url = format!("http://{addr}/local/messages");
    let results: Vec<Result<(), String>> = futures::stream::iter(texts)
        .map(|text| {
            let url = url.clone();
            async move {
                let body =
                    serde_json::json!({ "as": person, "channel": "deployments", "text": text });
                let r = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{} for {text:?}", r.status()))
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        panic!("the local chat refused a message: {e}");
    }
}

/// Waits until `sql` (a count) reaches `want` in the bot's database.
async fn wait_count(db: &Path, sql: &'static str, want: i64, what: &str) -> Duration {
    let started = Instant::now();
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .expect("open the bot's database");
    loop {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        if n >= want {
            let _ = conn.close().await;
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("only {n} of {want} {what} after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss(bot: &Bot) -> f64 {
    benchkit::rss_mib(bot.pid()).expect("the bot's /proc status")
}

fn status_mib(bot: &Bot, field: &str) -> f64 {
    benchkit::proc_status_kib(bot.pid(), field).expect("the bot's /proc status") as f64 / 1024.0
}

async fn run(bot_bin: &Path, n: usize, settle: Duration) {
    let dir = tempfile::tempdir().expect("scratch dir");
    let addr: SocketAddr = format!("127.0.0.1:{}", benchkit::free_port())
        .parse()
        .unwrap();
    let (bot, ready) = start(bot_bin, dir.path(), addr);
    let row = "fresh directory";
    emit(SECTION, row, "ready ms", ready.as_secs_f64() * 1e3);
    tokio::time::sleep(settle).await;
    // Read together, so the parts add up to the whole: the pages of the binary (and of the
    // libraries) the process has touched, and its own memory (heap, stacks, relocated
    // tables).
    let (idle, file, anon) = (
        rss(&bot),
        status_mib(&bot, "RssFile"),
        status_mib(&bot, "RssAnon"),
    );
    emit(SECTION, row, "idle RSS MiB", idle);
    emit(SECTION, row, "idle RssFile MiB", file);
    emit(SECTION, row, "idle RssAnon MiB", anon);

    let http = reqwest::Client::new();
    let db = dir.path().join("erlmcp-bot.db");
    // A production deploy needs the Change Board: each one stays pending.
    let deploys = (0..n)
        .map(|_| "deploy prod v3.0.0 approved in CAB-12".to_string())
        .collect();
    let t = Instant::now();
    say_all(&http, addr, "alice", deploys).await;
    wait_count(
        &db,
        "SELECT count(*) FROM requests WHERE state = 'pending'",
        n as i64,
        "pending requests",
    )
    .await;
    let took = t.elapsed();
    eprintln!(
        "bench_serve: {n} pending requests in {:.1} s",
        took.as_secs_f64()
    );
    tokio::time::sleep(settle).await;
    emit(SECTION, row, &format!("RSS, {n} pending MiB"), rss(&bot));

    let incidents = (0..n)
        .map(|i| format!("incident declare P2 \"bench load {i}\""))
        .collect();
    let t = Instant::now();
    say_all(&http, addr, "dave", incidents).await;
    wait_count(
        &db,
        "SELECT count(*) FROM incidents WHERE resolved_at IS NULL",
        n as i64,
        "open incidents",
    )
    .await;
    eprintln!(
        "bench_serve: {n} open incidents in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(settle).await;
    emit(
        SECTION,
        row,
        &format!("RSS, {n} pending + {n} incidents MiB"),
        rss(&bot),
    );
    emit(
        SECTION,
        row,
        "peak RSS MiB",
        benchkit::peak_rss_mib(bot.pid()).unwrap_or(f64::NAN),
    );
    if !bot.stop() {
        eprintln!("bench_serve: serve did not exit cleanly on SIGTERM");
    }
}

fn main() {
    let args = BenchArgs::parse("bench_serve");
    let bot = args.bot_binary();
    if args.postgres.is_some() {
        eprintln!(
            "bench_serve: serve is measured on its embedded default (SQLite); --postgres is not used"
        );
    } else {
        eprintln!("SKIPPED postgres (bench_serve measures the embedded default, SQLite, only)");
    }
    let (n, settle) = if args.quick {
        (100, Duration::from_millis(500))
    } else {
        (1_000, Duration::from_secs(2))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for i in 0..args.runs {
        eprintln!("bench_serve: run {} of {}", i + 1, args.runs);
        runtime.block_on(run(&bot, n, settle));
    }
    note(
        SECTION,
        &format!(
            "Targets: ready ≤ 20 ms, idle RSS ≤ 12 MiB. Ready is spawn → first `/readyz` 200 (polled every 0.5 ms); RSS is VmRSS {} s after the bot went quiet, and idle, its two parts: RssFile (pages of the binary and libraries it touched) and RssAnon (its own memory). Requests (`deploy prod …`, pending on the Change Board) and incidents (`incident declare P2 …`) are said over the local chat's HTTP route and counted from the bot's database.",
            settle.as_secs_f64()
        ),
    );
}
