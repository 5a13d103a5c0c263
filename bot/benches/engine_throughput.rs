//! Audited operations per second through the engine: each `scale` command is parsed,
//! decided, written to the requests table and the audit log (durably) before it runs on the
//! sandbox target, then its outcome is written. Runs on SQLite, and on PostgreSQL when
//! ERLMCP_TEST_POSTGRES_URL is set.
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

fn config() -> erlmcp_commands::config::Config {
    let mut text = String::from(
        "[roles]\nsre = [\"local:bench\"]\n\n[[rules]]\noperation = \"scale\"\nroles = [\"sre\"]\n\n",
    );
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

async fn run(label: &str, store: Arc<dyn Store>) {
    let ops = env_usize("OPS", 10_000);
    let concurrency = env_usize("CONCURRENCY", 64);
    let app = app::build(
        config(),
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
        assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text);
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
    let elapsed = started.elapsed();
    let report = audit::verify(store.as_ref()).await.expect("verify");
    assert!(report.is_ok());
    println!(
        "{label}: {ops} audited operations in {:.2} s = {:.0} ops/s (concurrency {concurrency}; {} audit rows, chain verified)",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        report.count
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
        let (sqlite, _dir) = testdb::fresh_sqlite().await;
        run("sqlite", Arc::new(sqlite)).await;
        if let Some(url) = testdb::fresh_postgres_url("engine_throughput").await {
            let pg = erlmcp_bot::store::PgStore::open(&url)
                .await
                .expect("postgres");
            run("postgres", Arc::new(pg)).await;
            testdb::drop_postgres_database(&url).await;
        }
    });
}
