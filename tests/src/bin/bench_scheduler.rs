//! Scheduler scale: 10,000 open incidents, each with its 15-minute status update job.
//!
//! - One pass with every update due at once: how long it takes, and how late the last
//!   update is posted.
//! - The steady cadence (due times spread over the 15 minutes), ticked as `serve` ticks:
//!   how late updates are posted after their due time.
//!
//! The bot's clock is stepped: at each tick it is set to the tick's time and then runs with
//! real time, so an update's drift is how far its tick was past its due time plus the real
//! time the pass took to reach it. Posts go to an in-memory chat that notes that moment.
//!
//! cargo run --release -p erlmcp-tests --bin bench_scheduler -- [--runs 3] [--quick]
//!     [--incidents 10000] [--postgres postgres://postgres@127.0.0.1:5432/test]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::TimeZone;
use erlmcp_adapters::chat::{ChatError, ChatPlatform, MessageRef, Platform};
use erlmcp_bot::app::{self, BuildOptions};
use erlmcp_bot::clock::Clock;
use erlmcp_bot::config;
use erlmcp_bot::incidents::{STATUS_UPDATE_JOB, status_update_job_key};
use erlmcp_bot::scheduler::{Scheduler, TICK};
use erlmcp_bot::store::{NewIncident, PgStore, Store, Who, testdb};
use erlmcp_commands::render::Reply;
use erlmcp_commands::{Severity, Timestamp};
use erlmcp_tests::fake_chat::FakeChat;
use futures::stream::{self, StreamExt};

const SECTION: &str = "Scheduler: open incidents' 15-minute status updates";

struct Args {
    runs: usize,
    incidents: usize,
    /// Simulated time of the steady cadence.
    cadence: chrono::Duration,
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        incidents: 10_000,
        cadence: chrono::Duration::minutes(2),
        postgres: None,
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
                a.cadence = chrono::Duration::seconds(20);
            }
            "--incidents" => {
                a.incidents = value().parse().unwrap_or_else(|_| usage("--incidents N"))
            }
            "--postgres" => a.postgres = Some(value()),
            // Every bench program takes it; this one uses the bot's library in-process.
            "--bot" => {
                value();
            }
            _ => usage(&format!("unknown argument {k}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "bench_scheduler: {why}\nusage: bench_scheduler [--runs N] [--quick] [--incidents N] [--postgres URL] [--bot PATH]"
    );
    std::process::exit(2)
}

fn bench(row: &str, column: &str, value: f64) {
    println!("BENCH\t{SECTION}\t{row}\t{column}\t{value:.3}");
}

/// Set to a time, then runs with real time from there.
#[derive(Clone)]
struct SteppedClock(Arc<Mutex<(Timestamp, Instant)>>);

impl SteppedClock {
    fn new(at: Timestamp) -> SteppedClock {
        SteppedClock(Arc::new(Mutex::new((at, Instant::now()))))
    }
    fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap() = (at, Instant::now());
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        let (at, since) = *self.0.lock().unwrap();
        at + chrono::Duration::from_std(since.elapsed()).unwrap_or_default()
    }
}

/// The in-memory chat, noting for each post how long after its incident's due time it came.
struct Timed {
    chat: FakeChat,
    clock: SteppedClock,
    /// Due time of the update by incident channel.
    due: Mutex<HashMap<String, Timestamp>>,
    drifts: Mutex<Vec<f64>>,
}

#[async_trait]
impl ChatPlatform for Timed {
    fn platform(&self) -> Platform {
        self.chat.platform()
    }

    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError> {
        let now = self.clock.now();
        if let Some(due) = self.due.lock().unwrap().get(channel) {
            let drift = (now - *due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            self.drifts.lock().unwrap().push(drift);
        }
        self.chat.post(channel, message).await
    }

    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError> {
        self.chat.update(message, content).await
    }

    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError> {
        self.chat.post_in_thread(parent, message).await
    }

    async fn post_private(
        &self,
        channel: &str,
        user: &str,
        message: &Reply,
    ) -> Result<(), ChatError> {
        self.chat.post_private(channel, user, message).await
    }

    async fn create_channel(&self, name: &str) -> Result<String, ChatError> {
        self.chat.create_channel(name).await
    }

    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError> {
        self.chat.invite(channel, user_ids).await
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError> {
        self.chat.set_topic(channel, topic).await
    }
}

impl Timed {
    fn take(&self) -> Vec<f64> {
        let mut d = std::mem::take(&mut *self.drifts.lock().unwrap());
        d.sort_by(f64::total_cmp);
        d
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn declarer() -> Who {
    Who {
        platform: "slack".into(),
        user_id: "UBENCH".into(),
        display_name: "bench".into(),
    }
}

/// Inserts `n` open incidents, each with its channel and its update job, due as `due(i)`
/// says; returns the incident channels with their due times.
async fn insert_incidents(
    store: &Arc<dyn Store>,
    n: usize,
    start: Timestamp,
    due: impl Fn(usize) -> Timestamp,
) -> HashMap<String, Timestamp> {
    let due = &due;
    let made: Vec<(String, Timestamp)> = stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let mut row = store
                    .insert_incident(NewIncident {
                        severity: if i % 10 == 0 {
                            Severity::P1
                        } else {
                            Severity::P2
                        },
                        title: format!("bench incident {i}: checkout latency"),
                        declared_by: declarer(),
                        declared_at: start,
                        channel: "slack:CGENERAL".into(),
                    })
                    .await
                    .expect("incident");
                let channel = format!("C{}", row.id.0);
                row.channels_json = serde_json::json!({ "slack": channel }).to_string();
                store.update_incident(&row).await.expect("incident channel");
                let at = due(i);
                store
                    .upsert_job(
                        &status_update_job_key(row.id),
                        STATUS_UPDATE_JOB,
                        &row.id.0.to_string(),
                        at,
                    )
                    .await
                    .expect("update job");
                (channel, at)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    made.into_iter().collect()
}

/// Moves every incident's update to `at`.
async fn all_due_at(
    store: &Arc<dyn Store>,
    channels: &mut HashMap<String, Timestamp>,
    at: Timestamp,
) {
    let ids: Vec<i64> = channels
        .keys()
        .map(|c| c[1..].parse().expect("incident channel"))
        .collect();
    stream::iter(ids)
        .map(|id| {
            let store = store.clone();
            async move {
                store
                    .upsert_job(
                        &status_update_job_key(erlmcp_commands::IncidentId(id)),
                        STATUS_UPDATE_JOB,
                        &id.to_string(),
                        at,
                    )
                    .await
                    .expect("update job");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    for due in channels.values_mut() {
        *due = at;
    }
}

async fn run_backend(label: &str, store: Arc<dyn Store>, args: &Args) {
    let n = args.incidents;
    let start = chrono::Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    let every = chrono::Duration::minutes(15);
    let clock = SteppedClock::new(start);
    let chat = Arc::new(Timed {
        chat: FakeChat::new(Platform::Slack),
        clock: clock.clone(),
        due: Mutex::new(HashMap::new()),
        drifts: Mutex::new(Vec::new()),
    });
    let cfg = config::from_toml(config::EMBEDDED_DEFAULT).expect("embedded default");
    let app = app::build(
        cfg,
        store.clone(),
        Arc::new(clock.clone()),
        BuildOptions {
            sandbox_step: Duration::ZERO,
            chats: vec![chat.clone() as Arc<dyn ChatPlatform>],
            ..BuildOptions::default()
        },
    )
    .await
    .expect("bot builds");
    let scheduler = Scheduler::new(app.engine.clone(), "bench");

    // Declared over the quarter hour before `start + every`, so their updates fall due
    // evenly across the next 15 minutes.
    let began = Instant::now();
    let spread = every.num_milliseconds() / n as i64;
    let mut channels = insert_incidents(&store, n, start, |i| {
        start + chrono::Duration::milliseconds(spread * (i as i64 + 1))
    })
    .await;
    eprintln!(
        "{label}: {n} incidents with their update jobs inserted in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    *chat.due.lock().unwrap() = channels.clone();

    // The steady cadence, ticked as `serve` ticks (a pass every TICK).
    let tick = chrono::Duration::from_std(TICK).expect("tick");
    let ticks = (args.cadence.num_milliseconds() / tick.num_milliseconds()).max(1);
    let mut longest = Duration::ZERO;
    let mut posted = 0;
    for k in 1..=ticks {
        clock.set(start + tick * k as i32);
        let t = Instant::now();
        posted += scheduler.tick().await;
        longest = longest.max(t.elapsed());
    }
    let drifts = chat.take();
    assert_eq!(drifts.len(), posted, "{label}: one post per update");
    let row = format!(
        "{label}: steady cadence, {n} incidents, a pass every {} s",
        TICK.as_secs()
    );
    eprintln!(
        "{label}: {posted} updates over {} s simulated: drift p50 {:.3} s, max {:.3} s; longest pass {:.3} s",
        args.cadence.num_seconds(),
        percentile(&drifts, 0.5),
        percentile(&drifts, 1.0),
        longest.as_secs_f64()
    );
    bench(&row, "pass s", longest.as_secs_f64());
    bench(&row, "drift p50 s", percentile(&drifts, 0.5));
    bench(&row, "drift max s", percentile(&drifts, 1.0));

    // Every update due at the same moment: one pass takes them all.
    let at = start + chrono::Duration::hours(1);
    all_due_at(&store, &mut channels, at).await;
    *chat.due.lock().unwrap() = channels;
    clock.set(at);
    let t = Instant::now();
    let ran = scheduler.tick().await;
    let pass = t.elapsed();
    let drifts = chat.take();
    assert_eq!(ran, n, "{label}: every due update runs in the pass");
    assert_eq!(drifts.len(), n, "{label}: one post per update");
    eprintln!(
        "{label}: one pass of {n} due updates: {:.3} s; drift p50 {:.3} s, max {:.3} s",
        pass.as_secs_f64(),
        percentile(&drifts, 0.5),
        percentile(&drifts, 1.0)
    );
    let row = format!("{label}: {n} updates due at once");
    bench(&row, "pass s", pass.as_secs_f64());
    bench(&row, "drift p50 s", percentile(&drifts, 0.5));
    bench(&row, "drift max s", percentile(&drifts, 1.0));
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
            "BENCHNOTE\t{SECTION}\tTarget: a pass under 1 s, drift under 5 s. Each claimed batch of updates reads its incidents and events together, asks the target for production's status (once a pass), writes its status_update events and job reschedules in one durable transaction, then posts in each incident channel (in-memory chat); drift = time posted − time due, on the bot's clock."
        );
        for run in 1..=args.runs {
            eprintln!("bench_scheduler: run {run} of {}", args.runs);
            let (sqlite, _dir) = testdb::fresh_sqlite().await;
            run_backend("sqlite", Arc::new(sqlite), &args).await;
            match &args.postgres {
                None => eprintln!("SKIPPED postgres"),
                Some(_) => {
                    let url = testdb::fresh_postgres_url("bench_scheduler")
                        .await
                        .expect("postgres url");
                    let pg = PgStore::open(&url).await.expect("postgres");
                    let store: Arc<dyn Store> = Arc::new(pg);
                    run_backend("postgres", store.clone(), &args).await;
                    store.close().await;
                    drop(store);
                    testdb::drop_postgres_database(&url).await;
                }
            }
        }
    });
}
