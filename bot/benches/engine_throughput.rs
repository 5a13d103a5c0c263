//! Audited operations per second through the engine: each `scale` command is parsed,
//! decided, written to the requests table and the audit log (durably) before it runs on the
//! sandbox target, then its outcome is written. Runs on SQLite, and on PostgreSQL when
//! ERLMCP_TEST_POSTGRES_URL is set.
//!
//! Each backend runs twice in the same process: without audit checkpoints, then with them
//! (signed after every operation, coalesced, to a synced file), to show what they cost.
//!
//! `cargo bench -p erlmcp-bot --bench engine_throughput` (OPS and CONCURRENCY tune it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use erlmcp_adapters::target::NoProgress;
use erlmcp_bot::app::{self, BuildOptions};
use erlmcp_bot::clock::SystemClock;
use erlmcp_bot::engine::{Engine, Invocation};
use erlmcp_bot::store::{Store, audit, testdb};
use erlmcp_commands::render::ReplyKind;

const ENVIRONMENTS: usize = 64;

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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Audited operations per second.
async fn run(label: &str, store: Arc<dyn Store>, checkpoints: Option<&std::path::Path>) -> f64 {
    let ops = env_usize("OPS", 10_000);
    let concurrency = env_usize("CONCURRENCY", 64);
    let app = app::build(
        config(checkpoints),
        store.clone(),
        Arc::new(SystemClock),
        BuildOptions {
            sandbox_step: Duration::ZERO,
            ..BuildOptions::default()
        },
    )
    .await
    .expect("bot builds");
    let engine: Arc<Engine> = app.engine.clone();

    let one = |engine: Arc<Engine>, i: usize| async move {
        let actor = engine.actor("local", "bench", "bench", &[]);
        let reply = engine
            .handle(Invocation {
                actor,
                channel: "local:bench".into(),
                text: format!("scale env{} {}", i % ENVIRONMENTS, 1 + i % 9),
                progress: Arc::new(NoProgress),
            })
            .await;
        assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text());
    };
    // Warm-up: connections open, caches filled.
    for i in 0..ENVIRONMENTS {
        one(engine.clone(), i).await;
    }

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (engine, next) = (engine.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                one(engine.clone(), i).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    if checkpoints.is_some() {
        engine.flush_checkpoints().await;
    }
    let elapsed = started.elapsed();
    let report = audit::verify(store.as_ref()).await.expect("verify");
    assert!(report.is_ok());
    println!(
        "{label}: {ops} audited operations in {:.2} s = {:.0} ops/s (concurrency {concurrency}; {} audit rows, chain verified)",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        report.count
    );
    if let Some(file) = checkpoints {
        let text = std::fs::read_to_string(file).expect("checkpoint file");
        println!("{label}: {} checkpoints written", text.lines().count());
    }
    ops as f64 / elapsed.as_secs_f64()
}

/// A fresh store, and what to clean up after it: a temporary directory, or a database.
enum Fresh {
    Sqlite(Arc<dyn Store>, testdb::TempDb),
    Postgres(Arc<dyn Store>, String),
}

async fn fresh(backend: &str) -> Fresh {
    if backend == "sqlite" {
        let (sqlite, dir) = testdb::fresh_sqlite().await;
        return Fresh::Sqlite(Arc::new(sqlite), dir);
    }
    let url = testdb::fresh_postgres_url("engine_throughput")
        .await
        .expect("postgres url");
    let pg = erlmcp_bot::store::PgStore::open(&url)
        .await
        .expect("postgres");
    Fresh::Postgres(Arc::new(pg), url)
}

/// Off and on, alternating for ROUNDS rounds (default 3), each run on a fresh database of
/// the same backend; the medians are compared, so a noisy neighbour skews both alike.
async fn compare(backend: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rounds = env_usize("ROUNDS", 3);
    let (mut offs, mut ons) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let file = dir.path().join(format!("checkpoints-{round}.jsonl"));
        for checkpoints in [None, Some(file.as_path())] {
            let label = format!(
                "{backend}, checkpoints {}",
                if checkpoints.is_some() { "on" } else { "off" }
            );
            let rate = match fresh(backend).await {
                Fresh::Sqlite(store, _dir) => run(&label, store, checkpoints).await,
                Fresh::Postgres(store, url) => {
                    let rate = run(&label, store.clone(), checkpoints).await;
                    store.close().await;
                    testdb::drop_postgres_database(&url).await;
                    rate
                }
            };
            if checkpoints.is_some() {
                ons.push(rate);
            } else {
                offs.push(rate);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut offs), median(&mut ons));
    println!(
        "{backend}: median of {rounds} rounds: {off:.0} ops/s off, {on:.0} ops/s on; checkpointing costs {:.1} % of throughput",
        (off - on) / off * 100.0
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        compare("sqlite").await;
        if std::env::var("ERLMCP_TEST_POSTGRES_URL").is_ok() {
            compare("postgres").await;
        }
    });
}
