//! The daily health report: on demand with `report`, and posted by the scheduler once a day
//! however many replicas share the database (driven by the injected clock, no sleeps).

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use erlmcp_adapters::chat::Platform;
use erlmcp_bot::app;
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::scheduler::{DAILY_REPORT_JOB, Scheduler};
use erlmcp_bot::store::testdb::{self, TempDb};
use erlmcp_bot::store::{PgStore, SqliteStore, Store};
use erlmcp_commands::config::Config;
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_chat::FakeChat;
use erlmcp_tests::harness::{Bot, Lines, embedded_config, start_time, test_options};

const OPS: &str = "COPS";
const TITLE: &str = "Daily health report";

/// A database that can be opened more than once: each open is one bot process.
enum Db {
    Sqlite(String, #[allow(dead_code)] TempDb),
    Postgres(String),
}

impl Db {
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(url, _) => Arc::new(SqliteStore::open(url).await.expect("sqlite opens")),
            Db::Postgres(url) => Arc::new(PgStore::open(url).await.expect("postgres opens")),
        }
    }
}

fn config() -> Config {
    let mut cfg = embedded_config();
    cfg.report.channel = Some(format!("slack:{OPS}"));
    cfg.report.time = Some("08:00".into());
    cfg
}

async fn bot_on(store: Arc<dyn Store>, clock: &ManualClock, chat: &FakeChat) -> Bot {
    let mut opts = test_options();
    opts.chats = vec![Arc::new(chat.clone())];
    let app = app::build(config(), store, Arc::new(clock.clone()), opts)
        .await
        .expect("bot builds");
    Bot {
        app,
        clock: clock.clone(),
        progress: Lines::default(),
        chats: vec![chat.clone()],
    }
}

fn at(day: u32, hour: u32, minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

/// Two replicas on one database: each day's report is posted once, at 08:00, and lists the
/// operations that ended the day before.
async fn posted_once_a_day(db: Db) {
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let a = bot_on(db.open().await, &clock, &chat).await;
    let b = bot_on(db.open().await, &clock, &chat).await;
    let sa = Scheduler::new(a.app.engine.clone(), "replica-a");
    let sb = Scheduler::new(b.app.engine.clone(), "replica-b");
    sa.install().await.unwrap();
    sb.install().await.unwrap();

    let r = a.say("carol", "restart stg routine").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let reports = || chat.posts_containing(OPS, TITLE);

    // Nothing before 08:00 the next morning.
    clock.set(at(3, 7, 59));
    tokio::join!(sa.tick(), sb.tick());
    assert!(reports().is_empty());

    clock.set(at(3, 8, 0));
    tokio::join!(sa.tick(), sb.tick());
    tokio::join!(sa.tick(), sb.tick());
    let posted = reports();
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let report = &posted[0];
    assert!(
        report.starts_with("Daily health report — 2026-11-03"),
        "{report}"
    );
    assert!(
        report.contains("staging [sandbox]: v3.0.0 — 3 pods, 3 ready, 0 restarts"),
        "{report}"
    );
    assert!(
        report.contains("Yesterday's operations (2026-11-02): 1, 0 not successful"),
        "{report}"
    );
    assert!(
        report.contains("R-1 restart stg routine by local:carol: succeeded"),
        "{report}"
    );
    assert!(report.contains("Open incidents: none"), "{report}");

    // A replica restarting after the post does not bring the report back today.
    let c = Scheduler::new(b.app.engine.clone(), "replica-c");
    c.install().await.unwrap();
    clock.set(at(3, 12, 0));
    tokio::join!(sa.tick(), sb.tick(), c.tick());
    assert_eq!(reports().len(), 1);

    clock.set(at(4, 8, 0));
    tokio::join!(sa.tick(), sb.tick(), c.tick());
    let posted = reports();
    assert_eq!(posted.len(), 2, "{posted:#?}");
    assert!(
        posted[1].contains("Yesterday's operations (2026-11-03): 0"),
        "{}",
        posted[1]
    );
    a.finish().await;
    b.finish().await;
}

#[tokio::test]
async fn daily_report_posted_once_with_two_replicas_on_postgres() {
    let Some(url) = testdb::fresh_postgres_url("daily_report_posted_once").await else {
        return;
    };
    posted_once_a_day(Db::Postgres(url)).await;
}

#[tokio::test]
async fn daily_report_posted_once_with_two_replicas_on_sqlite() {
    let (url, dir) = testdb::fresh_sqlite_url();
    posted_once_a_day(Db::Sqlite(url, dir)).await;
}

#[tokio::test]
async fn report_on_demand_and_without_a_channel_no_job() {
    let (url, dir) = testdb::fresh_sqlite_url();
    let db = Db::Sqlite(url, dir);
    let store = db.open().await;
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let s = Scheduler::new(bot.app.engine.clone(), "replica-a");
    s.install().await.unwrap();
    bot.advance(Duration::days(1));
    let due = store
        .claim_due_jobs("probe", bot.app.engine.now(), bot.app.engine.now(), 100)
        .await
        .unwrap();
    assert!(due.iter().all(|j| j.kind != DAILY_REPORT_JOB), "{due:?}");

    let r = bot.say("dave", "report").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("production [sandbox]: v2.9.5"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("health not probed (no health_url)"),
        "{}",
        r.text()
    );
    bot.finish().await;
}
