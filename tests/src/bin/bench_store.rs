//! Audited operations per second through the engine, beside the store's own limit measured
//! in the same run on the same database: the raw durable insert rate of rows shaped like
//! audit rows, one row per transaction and with group commit.
//!
//! cargo run --release -p erlmcp-tests --bin bench_store -- [--runs 3] [--quick]
//!     [--postgres postgres://postgres@127.0.0.1:5432/test]
//!
//! Figures go to stdout as `BENCH<TAB>section<TAB>row<TAB>column<TAB>value` lines (see
//! `bench_table`); progress and diagnostics go to stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use erlmcp_adapters::target::NoProgress;
use erlmcp_bot::app::{self, BuildOptions};
use erlmcp_bot::clock::SystemClock;
use erlmcp_bot::engine::{Engine, Invocation};
use erlmcp_bot::store::{
    FinishRequest, NewAuditEntry, NewRequest, PgStore, RequestState, SandboxRow, SqliteStore,
    Store, Who, audit, testdb,
};
use erlmcp_commands::render::ReplyKind;
use sqlx::{Connection, Executor};
use tokio::sync::{mpsc, oneshot};

const SECTION: &str = "Audited operations vs the store's own limit";
const ENVIRONMENTS: usize = 64;
/// The concurrency of the raw one-row-per-transaction writers, and the group-commit and
/// engine levels compared.
const RAW_WRITERS: usize = 8;
const LEVELS: [usize; 3] = [1, 8, 16];

struct Args {
    runs: usize,
    window: Duration,
    postgres: Option<String>,
    /// Also measures an operation's store writes as the engine made them before they were
    /// merged, beside how it makes them now.
    shapes: bool,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        window: Duration::from_millis(1500),
        postgres: None,
        shapes: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{k} needs a value")))
        };
        match k.as_str() {
            "--runs" => a.runs = value().parse().unwrap_or_else(|_| usage("--runs N")),
            "--quick" => {
                a.runs = 1;
                a.window = Duration::from_millis(400);
            }
            "--postgres" => a.postgres = Some(value()),
            "--shapes" => a.shapes = true,
            // Every bench program takes it; this one uses the bot's library in-process.
            "--bot" => {
                value();
            }
            "--seconds" => {
                let s: f64 = value().parse().unwrap_or_else(|_| usage("--seconds S"));
                a.window = Duration::from_secs_f64(s);
            }
            _ => usage(&format!("unknown argument {k}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "bench_store: {why}\nusage: bench_store [--runs N] [--quick] [--seconds S] [--postgres URL] [--shapes] [--bot PATH]"
    );
    std::process::exit(2)
}

fn bench(row: &str, column: &str, value: f64) {
    println!("BENCH\t{SECTION}\t{row}\t{column}\t{value:.1}");
}

/// The audit log's columns, for raw inserts the bot's chain plays no part in.
const BENCH_TABLE: &str = "CREATE TABLE bench_rows (
    seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, action TEXT NOT NULL,
    who_platform TEXT NOT NULL DEFAULT '', who_id TEXT NOT NULL DEFAULT '',
    who_name TEXT NOT NULL DEFAULT '', channel TEXT NOT NULL DEFAULT '',
    operation TEXT NOT NULL DEFAULT '', arguments TEXT NOT NULL DEFAULT '',
    environment TEXT, request_id BIGINT, decision TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '', votes TEXT NOT NULL DEFAULT '[]',
    outcome TEXT NOT NULL DEFAULT '', prev_hash TEXT NOT NULL, hash TEXT NOT NULL)";
const BENCH_INDEX: &str = "CREATE INDEX bench_rows_request ON bench_rows (request_id)";
const INSERT: &str = "INSERT INTO bench_rows (seq, at, action, who_platform, who_id, who_name, \
     channel, operation, arguments, environment, request_id, decision, reason, votes, outcome, \
     prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
     $16, $17)";

/// Binds the values of a row like the engine's `executed` row for `scale envN M`.
macro_rules! bind_row {
    ($q:expr, $seq:expr) => {{
        let seq: i64 = $seq;
        $q.bind(seq)
            .bind(1_790_000_000_000i64 + seq)
            .bind("executed")
            .bind("local")
            .bind("bench")
            .bind("bench")
            .bind("local:bench")
            .bind("scale")
            .bind(r#"{"Scale":{"env":"env17","replicas":4}}"#)
            .bind("env17")
            .bind(seq)
            .bind("allow")
            .bind("rules[0]: allowed without approval")
            .bind("[]")
            .bind("ok: sandbox: env17 scaled from 3 to 4 replicas")
            .bind("5f2b0c6a0e8d6d7f9f5d0b3c2a1e4f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e")
            .bind("9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b")
    }};
}

/// The same values as `bind_row!`, pushed into a multi-row INSERT.
macro_rules! push_row {
    ($b:expr, $seq:expr) => {{
        let seq: i64 = $seq;
        $b.push_bind(seq)
            .push_bind(1_790_000_000_000i64 + seq)
            .push_bind("executed")
            .push_bind("local")
            .push_bind("bench")
            .push_bind("bench")
            .push_bind("local:bench")
            .push_bind("scale")
            .push_bind(r#"{"Scale":{"env":"env17","replicas":4}}"#)
            .push_bind("env17")
            .push_bind(seq)
            .push_bind("allow")
            .push_bind("rules[0]: allowed without approval")
            .push_bind("[]")
            .push_bind("ok: sandbox: env17 scaled from 3 to 4 replicas")
            .push_bind("5f2b0c6a0e8d6d7f9f5d0b3c2a1e4f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e")
            .push_bind("9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b");
    }};
}

/// One backend's raw connections, opened with the store's own settings.
#[derive(Clone)]
enum Raw {
    Sqlite(String),
    Postgres(String),
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn connect(&self) -> Conn {
        match self {
            Raw::Sqlite(url) => {
                let options = SqliteStore::connect_options(url).expect("sqlite options");
                Conn::Sqlite(
                    sqlx::ConnectOptions::connect(&options)
                        .await
                        .expect("sqlite connection"),
                )
            }
            Raw::Postgres(url) => Conn::Postgres(
                sqlx::PgConnection::connect(url)
                    .await
                    .expect("postgres connection"),
            ),
        }
    }
}

impl Conn {
    async fn exec(&mut self, sql: &'static str) {
        match self {
            Conn::Sqlite(c) => c.execute(sql).await.map(|_| ()),
            Conn::Postgres(c) => c.execute(sql).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One autocommit insert: one durable transaction.
    async fn insert(&mut self, seq: i64) {
        match self {
            Conn::Sqlite(c) => bind_row!(sqlx::query(INSERT), seq)
                .execute(c)
                .await
                .map(|_| ()),
            Conn::Postgres(c) => bind_row!(sqlx::query(INSERT), seq)
                .execute(c)
                .await
                .map(|_| ()),
        }
        .expect("insert");
    }

    /// The rows in one transaction, as one multi-row INSERT: the fewest round trips.
    async fn insert_batch(&mut self, seqs: &[i64]) {
        let begin = match self {
            // What the store's SQLite writer does: take the write lock up front.
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Postgres(_) => "BEGIN",
        };
        self.exec(begin).await;
        let head = &INSERT[..INSERT.find(" VALUES").expect("insert text")];
        match self {
            Conn::Sqlite(c) => {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(head);
                q.push_values(seqs, |mut b, &seq| push_row!(b, seq));
                q.build().execute(&mut *c).await.map(|_| ())
            }
            Conn::Postgres(c) => {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(head);
                q.push_values(seqs, |mut b, &seq| push_row!(b, seq));
                q.build().execute(&mut *c).await.map(|_| ())
            }
        }
        .expect("batch insert");
        self.exec("COMMIT").await;
    }

    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
        };
    }
}

/// Runs `writers` closed-loop workers for `window` after a short warm-up; returns what they
/// completed per second inside the window.
async fn measure<F, Fut>(writers: usize, window: Duration, work: F) -> f64
where
    F: Fn(usize, Arc<AtomicU64>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..writers)
        .map(|w| tokio::spawn(work(w, done.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(window / 5).await;
    let (from, started) = (done.load(Ordering::SeqCst), Instant::now());
    tokio::time::sleep(window).await;
    let (to, elapsed) = (done.load(Ordering::SeqCst), started.elapsed());
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("worker");
    }
    (to - from) as f64 / elapsed.as_secs_f64()
}

/// Rows per second, one row per transaction, `writers` at once. SQLite takes one writer at
/// a time: its writers share one connection, so none sleeps in SQLite's busy handler.
async fn one_row_per_transaction(raw: &Raw, writers: usize, window: Duration, base: i64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let shared = match raw {
        Raw::Sqlite(_) => Some(Arc::new(tokio::sync::Mutex::new(raw.connect().await))),
        Raw::Postgres(_) => None,
    };
    let mut own = Vec::new();
    if shared.is_none() {
        for _ in 0..writers {
            own.push(Some(raw.connect().await));
        }
    }
    let own = Arc::new(std::sync::Mutex::new(own));
    measure(writers, window, |w, done, stop| {
        let (next, shared, own) = (next.clone(), shared.clone(), own.clone());
        async move {
            let mut mine = own.lock().unwrap().get_mut(w).and_then(Option::take);
            while !stop.load(Ordering::SeqCst) {
                let seq = base + next.fetch_add(1, Ordering::SeqCst) as i64;
                match (&mut mine, &shared) {
                    (Some(c), _) => c.insert(seq).await,
                    (None, Some(s)) => s.lock().await.insert(seq).await,
                    (None, None) => unreachable!("every writer has a connection"),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(c) = mine {
                c.close().await;
            }
        }
    })
    .await
}

struct Pending {
    seq: i64,
    reply: oneshot::Sender<()>,
}

/// Rows per second with group commit: `writers` hand their rows to one committer, which
/// writes whatever is queued in one transaction and answers each writer after the commit.
async fn group_commit(raw: &Raw, writers: usize, window: Duration, base: i64) -> f64 {
    let (tx, mut rx) = mpsc::channel::<Pending>(1024);
    let mut conn = raw.connect().await;
    let committer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(512);
        while rx.recv_many(&mut batch, 512).await > 0 {
            let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
            conn.insert_batch(&seqs).await;
            for p in batch.drain(..) {
                let _ = p.reply.send(());
            }
        }
        conn.close().await;
    });
    let next = Arc::new(AtomicU64::new(0));
    let rate = measure(writers, window, |_, done, stop| {
        let (tx, next) = (tx.clone(), next.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let seq = base + next.fetch_add(1, Ordering::SeqCst) as i64;
                let (reply, committed) = oneshot::channel();
                tx.send(Pending { seq, reply }).await.expect("committer");
                committed.await.expect("committed");
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    drop(tx);
    committer.await.expect("committer");
    rate
}

fn config(checkpoints: Option<&std::path::Path>) -> erlmcp_commands::config::Config {
    let mut text = String::from(
        "[roles]\nsre = [\"local:bench\"]\n\n[[rules]]\noperation = \"scale\"\nroles = [\"sre\"]\n\n",
    );
    if let Some(file) = checkpoints {
        let (secret, _) = erlmcp_bot::checkpoint::keygen().expect("key");
        text.push_str(&format!(
            "[audit]\nsigning_key = \"{secret}\"\ncheckpoint_file = \"{}\"\n\n",
            file.display()
        ));
    }
    for i in 0..ENVIRONMENTS {
        text.push_str(&format!(
            "[environments.env{i}]\ntarget = \"sandbox\"\nreplicas = 3\n\n"
        ));
    }
    erlmcp_bot::config::from_toml(&text).expect("bench config")
}

async fn engine_on(store: Arc<dyn Store>, checkpoints: Option<&std::path::Path>) -> Arc<Engine> {
    let app = app::build(
        config(checkpoints),
        store,
        Arc::new(SystemClock),
        BuildOptions {
            // The sandbox target without its pauses: what is measured is the bot.
            sandbox_step: Duration::ZERO,
            ..BuildOptions::default()
        },
    )
    .await
    .expect("bot builds");
    app.engine.clone()
}

static FAILED: AtomicU64 = AtomicU64::new(0);

/// One `scale` through the engine: parsed, decided, its request and audit row written
/// durably, run on the sandbox, its outcome and audit row written durably.
async fn one_operation(engine: &Engine, i: u64) {
    let actor = engine.actor("local", "bench", "bench", &[]);
    let reply = engine
        .handle(Invocation {
            actor,
            channel: "local:bench".into(),
            text: format!(
                "scale env{} {}",
                i as usize % ENVIRONMENTS,
                1 + i as usize % 9
            ),
            progress: Arc::new(NoProgress),
        })
        .await;
    if reply.kind != ReplyKind::Ok && FAILED.fetch_add(1, Ordering::SeqCst) == 0 {
        eprintln!("bench_store: an operation failed: {}", reply.text());
    }
}

/// Audited operations per second with `requesters` at once.
async fn engine_rate(engine: &Arc<Engine>, requesters: usize, window: Duration) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let rate = measure(requesters, window, |_, done, stop| {
        let (engine, next) = (engine.clone(), next.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                one_operation(&engine, next.fetch_add(1, Ordering::SeqCst)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    engine.flush_checkpoints().await;
    rate
}

fn sample_entry(action: &str) -> NewAuditEntry {
    NewAuditEntry {
        at: chrono::Utc::now(),
        action: action.into(),
        who: Who {
            platform: "local".into(),
            user_id: "bench".into(),
            display_name: "bench".into(),
        },
        channel: "local:bench".into(),
        operation: "scale".into(),
        arguments: r#"{"Scale":{"env":"env17","replicas":4}}"#.into(),
        environment: Some("env17".into()),
        request_id: None,
        decision: "allow".into(),
        reason: "rules[0]: allowed without approval".into(),
        votes: "[]".into(),
        outcome: "ok: sandbox: env17 scaled from 3 to 4 replicas".into(),
    }
}

fn sample_request() -> NewRequest {
    let now = chrono::Utc::now();
    NewRequest {
        created_at: now,
        expires_at: now,
        requester: sample_entry("").who,
        channel: "local:bench".into(),
        command_text: "scale env17 4".into(),
        operation: "scale".into(),
        environment: Some("env17".into()),
        command_json: r#"{"Scale":{"env":"env17","replicas":4}}"#.into(),
        approvals_json: "{}".into(),
        state: RequestState::Executing,
        break_glass: false,
        owner: Some("bench".into()),
    }
}

/// The store writes of one allowed operation alone, without the engine: as six writes
/// one after another (how the engine made them before they were merged), or as the two
/// it makes now (the sandbox's state goes with the outcome).
async fn operation_writes(store: &Arc<dyn Store>, merged: bool, w: usize) {
    let env = format!("shape{w}");
    let put = |store: Arc<dyn Store>, env: String| async move {
        store
            .sandbox_put(SandboxRow {
                environment: env,
                state_json: r#"{"version":"v3.0.1","replicas":4}"#.into(),
                updated_at: chrono::Utc::now(),
            })
            .await
            .expect("sandbox")
    };
    if merged {
        let (row, _) = store
            .insert_request_audited(sample_request(), sample_entry("executing"))
            .await
            .expect("request");
        let finish = FinishRequest {
            id: row.id,
            to: RequestState::Succeeded,
            outcome: "scaled".into(),
            progress: Some("sandbox: scaling".into()),
            at: chrono::Utc::now(),
            sandbox: Some(SandboxRow {
                environment: env,
                state_json: r#"{"version":"v3.0.1","replicas":4}"#.into(),
                updated_at: chrono::Utc::now(),
            }),
        };
        store
            .finish_request_audited(finish, sample_entry("executed"))
            .await
            .expect("finish");
    } else {
        let row = store
            .insert_request(sample_request())
            .await
            .expect("request");
        let mut e = sample_entry("executing");
        e.request_id = Some(row.id);
        store.append_audit(e).await.expect("audit");
        put(store.clone(), env).await;
        store
            .set_request_progress(row.id, "sandbox: scaling")
            .await
            .expect("progress");
        store
            .transition_request(
                row.id,
                RequestState::Executing,
                RequestState::Succeeded,
                Some("scaled"),
                chrono::Utc::now(),
            )
            .await
            .expect("outcome");
        let mut e = sample_entry("executed");
        e.request_id = Some(row.id);
        store.append_audit(e).await.expect("audit");
    }
}

/// Six writes per operation against two, back to back on the same database.
async fn shapes(label: &str, store: &Arc<dyn Store>, window: Duration) {
    for level in [8, 16] {
        for merged in [false, true] {
            let rate = measure(level, window, |w, done, stop| {
                let store = store.clone();
                async move {
                    while !stop.load(Ordering::SeqCst) {
                        operation_writes(&store, merged, w).await;
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .await;
            let how = if merged {
                "2 transactions (now)"
            } else {
                "6 transactions (before)"
            };
            eprintln!("{label}: an operation's writes alone, {how}, {level} at once: {rate:.0}/s");
            bench(
                &format!("{label}: an operation's store writes, {how}, {level} at once"),
                "per s",
                rate,
            );
        }
    }
}

/// Transactions the database committed so far (PostgreSQL counts read-only ones too), and
/// sessions opened.
async fn commits(raw: &Raw) -> Option<(i64, i64)> {
    let Raw::Postgres(url) = raw else { return None };
    let mut c = sqlx::PgConnection::connect(url).await.ok()?;
    let n = sqlx::query_as(
        "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut c)
    .await
    .ok();
    let _ = c.close().await;
    n
}

/// Every figure of one backend in one run, on one fresh database.
async fn run_backend(label: &str, store: Arc<dyn Store>, raw: Raw, args: &Args) {
    let window = args.window;
    let mut setup = raw.connect().await;
    setup.exec(BENCH_TABLE).await;
    setup.exec(BENCH_INDEX).await;
    setup.close().await;
    // Disjoint seq ranges per measurement, so no insert collides with an earlier one.
    let mut base = 0i64;
    let mut step = || {
        base += 100_000_000;
        base
    };

    let single = one_row_per_transaction(&raw, RAW_WRITERS, window, step()).await;
    eprintln!("{label}: one row per transaction, {RAW_WRITERS} writers: {single:.0} rows/s");
    bench(
        &format!("{label}: insert, 1 row per transaction, {RAW_WRITERS} writers"),
        "per s",
        single,
    );
    let mut limits = Vec::new();
    for writers in LEVELS {
        let rate = group_commit(&raw, writers, window, step()).await;
        eprintln!("{label}: group commit, {writers} writers: {rate:.0} rows/s");
        bench(
            &format!("{label}: insert, group commit, {writers} writers"),
            "per s",
            rate,
        );
        limits.push(rate);
    }

    let engine = engine_on(store.clone(), None).await;
    // Warm-up: every environment's sandbox state exists, connections are open.
    for i in 0..ENVIRONMENTS as u64 {
        one_operation(&engine, i).await;
    }
    for (level, limit) in LEVELS.iter().zip(&limits) {
        let before = commits(&raw).await;
        let started = Instant::now();
        let rate = engine_rate(&engine, *level, window).await;
        if let Some((a, b)) = before.zip(commits(&raw).await) {
            // pg_stat_database lags by up to its flush interval: an estimate.
            let ops = rate * started.elapsed().as_secs_f64();
            eprintln!(
                "{label}: ~{:.1} transactions and {} new sessions per operation (reads included)",
                (b.0 - a.0) as f64 / ops.max(1.0),
                (b.1 - a.1) as f64 / ops.max(1.0)
            );
        }
        let share = 100.0 * rate / limit;
        eprintln!(
            "{label}: engine, {level} requesters: {rate:.0} ops/s = {share:.0} % of group commit"
        );
        let row = format!("{label}: audited scale, {level} requesters");
        bench(&row, "per s", rate);
        bench(&row, "% of group commit", share);
    }

    // The same with a signed checkpoint after operations (coalesced, to a synced file).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("checkpoints.jsonl");
    let signed = engine_on(store.clone(), Some(&file)).await;
    let (level, limit) = (LEVELS[2], limits[2]);
    let rate = engine_rate(&signed, level, window).await;
    let share = 100.0 * rate / limit;
    eprintln!("{label}: engine with checkpoints, {level} requesters: {rate:.0} ops/s");
    let row = format!("{label}: audited scale + checkpoints, {level} requesters");
    bench(&row, "per s", rate);
    bench(&row, "% of group commit", share);

    if args.shapes {
        shapes(label, &store, window).await;
    }

    let report = audit::verify(store.as_ref()).await.expect("verify");
    assert!(
        report.is_ok(),
        "{label}: the audit chain is broken: {report:?}"
    );
    eprintln!("{label}: {} audit rows, chain verified", report.count);
}

fn main() {
    let args = args();
    if let Some(url) = &args.postgres {
        // SAFETY: set before the runtime starts, while this is the only thread.
        unsafe { std::env::set_var(testdb::POSTGRES_URL_VAR, url) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "BENCHNOTE\t{SECTION}\tTarget: audited operations ≥ 70 % of the group-commit insert rate with 8+ concurrent requests, on SQLite and PostgreSQL. \
             Fair terms: every figure is a closed loop (each writer or requester waits for its own durable commit before going on) and each engine row is set against group commit at the same concurrency, on the same database in the same run. \
             A durable write is a committed transaction: SQLite in WAL with synchronous=FULL as the bot opens it, PostgreSQL with synchronous_commit=on; raw rows have the audit log's columns and size; the group committer writes whatever is queued as one multi-row INSERT. \
             One `scale` through the engine waits on 2 transactions in turn: its request + `executing` audit row, then its outcome, last progress line and the sandbox target's new state + `executed` audit row (5 rows in all; progress is stored on its own only past 250 ms). \
             Ceiling: at the same concurrency N, a group-commit writer finishes a row per commit round while a requester needs two rounds in turn, so the engine can reach at most about half the group-commit rate (a little more where its batches carry more rows per commit, less by the engine's own CPU on the same 2 cores); 70 % is out of reach while both audit rows stay durable before what they record."        );
        for run in 1..=args.runs {
            eprintln!("bench_store: run {run} of {}", args.runs);
            let (sqlite, _dir) = testdb::fresh_sqlite().await;
            let url = format!("sqlite://{}", _dir.path().join("bot.db").display());
            run_backend("sqlite", Arc::new(sqlite), Raw::Sqlite(url), &args).await;
            match &args.postgres {
                None => eprintln!("SKIPPED postgres"),
                Some(_) => {
                    let url = testdb::fresh_postgres_url("bench_store")
                        .await
                        .expect("postgres url");
                    let pg = PgStore::open(&url).await.expect("postgres");
                    let store: Arc<dyn Store> = Arc::new(pg);
                    run_backend("postgres", store.clone(), Raw::Postgres(url.clone()), &args)
                        .await;
                    store.close().await;
                    drop(store);
                    testdb::drop_postgres_database(&url).await;
                }
            }
        }
    });
    let failed = FAILED.load(Ordering::SeqCst);
    if failed > 0 {
        eprintln!("bench_store: {failed} operations failed");
        std::process::exit(1);
    }
}
