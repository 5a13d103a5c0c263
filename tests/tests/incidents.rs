//! Incidents end to end through the real engine and scheduler, on SQLite and PostgreSQL:
//! a recording chat platform, PagerDuty and Statuspage faked at HTTP level, and the
//! scheduler driven by the injected clock (no sleeps anywhere).

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use erlmcp_adapters::chat::Platform;
use erlmcp_adapters::slack::config::SlackSection;
use erlmcp_bot::app;
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::platforms::edit_section;
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::store::testdb::{self, TempDb};
use erlmcp_bot::store::{NewIncident, PgStore, RequestState, SqliteStore, Store, Who};
use erlmcp_commands::config::{Config, PagerDutySection, Secret, StatusPageSection};
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_commands::{RequestId, Severity};
use erlmcp_tests::fake_chat::FakeChat;
use erlmcp_tests::harness::{Bot, Lines, embedded_config, start_time, test_options};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INCIDENTS: &str = "CINCIDENTS";
const GENERAL: &str = "CGENERAL";
const UPDATE: &str = "status update —";

/// A database that can be opened more than once: each open is one bot process.
enum Db {
    Sqlite(String, #[allow(dead_code)] TempDb),
    Postgres(String),
}

impl Db {
    async fn sqlite() -> Db {
        let (url, dir) = testdb::fresh_sqlite_url();
        Db::Sqlite(url, dir)
    }

    async fn postgres(test: &str) -> Option<Db> {
        testdb::fresh_postgres_url(test).await.map(Db::Postgres)
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(url, _) => Arc::new(SqliteStore::open(url).await.expect("sqlite opens")),
            Db::Postgres(url) => Arc::new(PgStore::open(url).await.expect("postgres opens")),
        }
    }
}

/// PagerDuty and Statuspage on one fake server; production's health URL too.
async fn fake_services() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "success"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/pages/PG1/incidents"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "sp-1"})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/pages/PG1/incidents/sp-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sp-1"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// The embedded configuration with Slack identities, the incidents channel, PagerDuty and
/// Statuspage pointed at the fake, and a health URL for production.
fn config(services: &MockServer) -> Config {
    let mut cfg = embedded_config();
    for (role, id) in [
        ("engineer", "slack:UDAVE"),
        ("oncall", "slack:UCAROL"),
        ("devops-lead", "slack:UALICE"),
    ] {
        cfg.roles.get_mut(role).unwrap().push(id.into());
    }
    edit_section(&mut cfg, |s: &mut SlackSection| {
        s.incidents_channel = Some(INCIDENTS.into());
    });
    cfg.pagerduty = PagerDutySection {
        routing_key: Secret::new("routing-key-1"),
        api_url: Some(services.uri()),
    };
    cfg.statuspage = StatusPageSection {
        api_key: Secret::new("sp-key"),
        page_id: Some("PG1".into()),
        api_url: Some(services.uri()),
    };
    cfg.environments.get_mut("production").unwrap().health_url =
        Some(format!("{}/health", services.uri()));
    cfg
}

async fn bot_on(store: Arc<dyn Store>, cfg: Config, clock: &ManualClock, chat: &FakeChat) -> Bot {
    let mut opts = test_options();
    opts.chats = vec![Arc::new(chat.clone())];
    let app = app::build(cfg, store, Arc::new(clock.clone()), opts)
        .await
        .expect("bot builds");
    Bot {
        app,
        clock: clock.clone(),
        progress: Lines::default(),
        chats: vec![chat.clone()],
    }
}

/// `who` (a Slack user, `U` + upper-cased name) types `text` in a Slack channel.
async fn say(bot: &Bot, who: &str, channel: &str, text: &str) -> Reply {
    let engine = &bot.app.engine;
    engine
        .handle(Invocation {
            actor: engine.actor("slack", &format!("U{}", who.to_uppercase()), who, &[]),
            channel: format!("slack:{channel}"),
            text: text.into(),
            progress: Arc::new(bot.progress.clone()),
        })
        .await
}

async fn pagerduty_events(services: &MockServer, action: &str) -> Vec<Value> {
    services
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/enqueue")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["event_action"] == action)
        .collect()
}

async fn statuspage_calls(services: &MockServer, verb: &str) -> Vec<Value> {
    services
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            r.url.path().starts_with("/v1/pages/PG1/incidents") && r.method.as_str() == verb
        })
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .collect()
}

async fn story(db: Db) {
    let services = fake_services().await;
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let store = db.open().await;
    let bot = bot_on(store.clone(), config(&services), &clock, &chat).await;
    let scheduler = Scheduler::new(bot.app.engine.clone(), "replica-a");

    // Declare P0 from #general.
    let r = say(
        &bot,
        "dave",
        GENERAL,
        "incident declare P0 API down for everyone",
    )
    .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("INC-1 declared (P0)"), "{}", r.text());
    assert!(r.text().contains("On-call paged"), "{}", r.text());
    assert_eq!(
        chat.channels_created(),
        vec![(
            "inc-1-api-down-for-everyone".to_string(),
            "C0001".to_string()
        )]
    );
    let ch = "C0001";
    let invited = chat.invited(ch);
    assert!(
        invited.contains(&"UDAVE".to_string()) && invited.contains(&"UCAROL".to_string()),
        "{invited:?}"
    );
    assert!(
        chat.topic(ch).unwrap().contains("INC-1 P0"),
        "{:?}",
        chat.topic(ch)
    );
    let opening = chat.posts_in(ch);
    assert_eq!(opening.len(), 1, "{opening:?}");
    assert!(
        opening[0].contains("Runbook checklist (P0)"),
        "{}",
        opening[0]
    );
    assert!(
        opening[0].contains("Fail over to the DR region"),
        "{}",
        opening[0]
    );
    let announced = chat.posts_in(INCIDENTS);
    assert!(
        announced.len() == 1
            && announced[0].contains("INC-1 P0 declared")
            && announced[0].contains("<#C0001>"),
        "{announced:?}"
    );

    let triggers = pagerduty_events(&services, "trigger").await;
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["dedup_key"], "INC-1");
    assert_eq!(triggers[0]["payload"]["severity"], "critical");
    assert_eq!(triggers[0]["routing_key"], "routing-key-1");
    let opened = statuspage_calls(&services, "POST").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["incident"]["impact_override"], "critical");

    let r = say(&bot, "carol", ch, "incident commander @carol").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());

    // Nothing is due before the interval; at 15 minutes exactly one update, with live facts.
    bot.advance(Duration::minutes(14));
    assert_eq!(scheduler.tick().await, 0);
    bot.advance(Duration::minutes(1));
    assert_eq!(scheduler.tick().await, 1);
    assert_eq!(scheduler.tick().await, 0, "an update is posted once");
    let updates = chat.posts_containing(ch, UPDATE);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let u = &updates[0];
    assert!(
        u.contains("INC-1 status update — P0 API down for everyone"),
        "{u}"
    );
    assert!(u.contains("Open for 15m"), "{u}");
    assert!(u.contains("Commander: @carol"), "{u}");
    assert!(u.contains("Last human update: none yet"), "{u}");
    assert!(
        u.contains("production [sandbox]: v2.9.5, 5/5 ready, health 200 in"),
        "{u}"
    );
    assert!(u.contains("Operations since the last update: none"), "{u}");
    assert!(u.contains("@carol: no human update in the last 15m"), "{u}");

    // Break-glass: on-call rolls production back at once in the incident channel.
    let r = say(&bot, "carol", ch, "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("production runs v2.9.4"), "{}", r.text());
    let audit = store.audit_page(0, 1000).await.unwrap();
    assert!(
        audit.iter().any(|a| a.entry.operation == "rollback"
            && a.entry.decision == "break_glass"
            && a.entry.action == "executed"),
        "{audit:?}"
    );
    let timeline = say(&bot, "dave", ch, "incident timeline").await;
    assert!(
        timeline.text().contains("break_glass (carol"),
        "{}",
        timeline.text()
    );
    assert!(
        timeline
            .text()
            .contains("R-1 rollback production [break-glass] — succeeded"),
        "{}",
        timeline.text()
    );

    bot.advance(Duration::minutes(5));
    let r = say(
        &bot,
        "dave",
        ch,
        "incident update rolled back, watching error rates",
    )
    .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert_eq!(
        statuspage_calls(&services, "PATCH").await.len(),
        1,
        "the human update reaches the status page"
    );

    bot.advance(Duration::minutes(10));
    assert_eq!(scheduler.tick().await, 1);
    let updates = chat.posts_containing(ch, UPDATE);
    assert_eq!(updates.len(), 2, "{updates:?}");
    let u = &updates[1];
    assert!(u.contains("Open for 30m"), "{u}");
    assert!(
        u.contains("R-1 rollback production [break-glass] — succeeded"),
        "{u}"
    );
    assert!(u.contains("(by carol (slack:UCAROL))"), "{u}");
    assert!(u.contains("production [sandbox]: v2.9.4, 5/5 ready"), "{u}");
    assert!(
        u.contains(
            "Last human update: 10m ago by dave (slack:UDAVE): rolled back, watching error rates"
        ),
        "{u}"
    );
    assert!(
        !u.contains("no human update"),
        "a human spoke during the interval: {u}"
    );

    // Resolve: summary, page and status page resolved, updates stop.
    let r = say(&bot, "carol", ch, "incident resolve rolled back to v2.9.4").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    for needle in [
        "INC-1 resolved after 30m: API down for everyone (P0)",
        "Summary: rolled back to v2.9.4",
        "Operations:\n",
        "R-1 rollback production [break-glass] — succeeded",
        "(2 automatic status update(s) posted)",
        "@carol: please schedule the postmortem.",
    ] {
        assert!(
            r.text().contains(needle),
            "{needle:?} missing from:\n{}",
            r.text()
        );
    }
    assert_eq!(pagerduty_events(&services, "resolve").await.len(), 1);
    let patches = statuspage_calls(&services, "PATCH").await;
    assert_eq!(
        patches.last().unwrap()["incident"]["status"],
        "resolved",
        "{patches:?}"
    );
    assert!(
        chat.posts_in(INCIDENTS)
            .iter()
            .any(|p| p.contains("INC-1 resolved after 30m"))
    );

    bot.advance(Duration::minutes(15));
    assert_eq!(scheduler.tick().await, 0);
    bot.advance(Duration::hours(2));
    assert_eq!(scheduler.tick().await, 0);
    assert_eq!(
        chat.posts_containing(ch, UPDATE).len(),
        2,
        "no update after resolution"
    );
    assert_eq!(pagerduty_events(&services, "trigger").await.len(), 1);
    assert_eq!(pagerduty_events(&services, "resolve").await.len(), 1);
    let r = say(&bot, "carol", ch, "incident list").await;
    assert!(r.text().contains("No open incidents"), "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn incident_story_on_sqlite() {
    story(Db::sqlite().await).await;
}

#[tokio::test]
async fn incident_story_on_postgres() {
    let Some(db) = Db::postgres("incident_story_on_postgres").await else {
        return;
    };
    story(db).await;
}

/// Without any chat platform (`exec`), the incident, its timeline and its updates are
/// still recorded.
#[tokio::test]
async fn incident_without_chat_keeps_its_record() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let scheduler = Scheduler::new(bot.app.engine.clone(), "solo");
    let r = bot.say("dave", "incident declare P1 checkout errors").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("☐ Investigate"),
        "the checklist is in the reply: {}",
        r.text()
    );
    bot.advance(Duration::minutes(15));
    assert_eq!(scheduler.tick().await, 1);
    let r = bot.say("dave", "incident timeline INC-1").await;
    assert!(
        r.text()
            .contains("status_update: INC-1 status update — P1 checkout errors"),
        "{}",
        r.text()
    );
    let events = store
        .incident_events(erlmcp_commands::IncidentId(1))
        .await
        .unwrap();
    let update = events
        .iter()
        .find(|e| e.kind.as_str() == "status_update")
        .unwrap();
    assert!(
        update
            .text
            .contains("production [sandbox]: v2.9.5, 5/5 ready"),
        "{}",
        update.text
    );
    bot.finish().await;
}

/// Two replicas on one PostgreSQL database: a due update is posted once, and when the
/// replica holding the lease dies the other takes the job over once the lease runs out.
#[tokio::test]
async fn two_replicas_post_each_update_once() {
    let Some(db) = Db::postgres("two_replicas_post_each_update_once").await else {
        return;
    };
    let services = fake_services().await;
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let a = bot_on(db.open().await, config(&services), &clock, &chat).await;
    let b = bot_on(db.open().await, config(&services), &clock, &chat).await;
    let sa = Scheduler::new(a.app.engine.clone(), "replica-a");
    let sb = Scheduler::new(b.app.engine.clone(), "replica-b");

    let r = say(
        &a,
        "dave",
        GENERAL,
        "incident declare P1 elevated error rate",
    )
    .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let ch = "C0001";

    clock.advance(Duration::minutes(15));
    let (na, nb) = tokio::join!(sa.tick(), sb.tick());
    assert_eq!(na + nb, 1, "a={na} b={nb}");
    let (na, nb) = tokio::join!(sa.tick(), sb.tick());
    assert_eq!(na + nb, 0);
    assert_eq!(chat.posts_containing(ch, UPDATE).len(), 1);

    // Replica A claims the next update and dies before posting it.
    clock.advance(Duration::minutes(15));
    let held = sa.claim().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(sb.tick().await, 0, "the lease is still A's");
    clock.advance(sa.lease());
    assert_eq!(
        sb.tick().await,
        0,
        "a lease is held up to and including its end"
    );
    clock.advance(Duration::seconds(1));
    assert_eq!(
        sb.tick().await,
        1,
        "B takes the job over once the lease ran out"
    );
    assert_eq!(chat.posts_containing(ch, UPDATE).len(), 2);
    // A coming back cannot complete what it no longer holds, and the cadence is kept.
    assert!(
        !a.app
            .store
            .complete_job(held[0].id, "replica-a", None)
            .await
            .unwrap()
    );
    clock.set(start_time() + Duration::minutes(45));
    assert_eq!(sb.tick().await + sa.tick().await, 1);
    assert_eq!(chat.posts_containing(ch, UPDATE).len(), 3);
    a.finish().await;
    b.finish().await;
}

/// Down from 09:00 to 09:50: one catch-up update at 09:50, then 10:05, 10:20, ...
async fn restart_catches_up_once(db: Db) {
    let services = fake_services().await;
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let first = db.open().await;
    let a = bot_on(first.clone(), config(&services), &clock, &chat).await;
    let r = say(&a, "dave", GENERAL, "incident declare P0 database failover").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    drop(a);
    first.close().await;
    drop(first);

    clock.advance(Duration::minutes(50));
    let b = bot_on(db.open().await, config(&services), &clock, &chat).await;
    let sb = Scheduler::new(b.app.engine.clone(), "replica-after-restart");
    assert_eq!(sb.tick().await, 1, "one catch-up update");
    assert_eq!(sb.tick().await, 0, "not a burst for the missed slots");
    let ch = "C0001";
    let updates = chat.posts_containing(ch, UPDATE);
    assert_eq!(updates.len(), 1);
    assert!(updates[0].contains("Open for 50m"), "{}", updates[0]);

    clock.advance(Duration::minutes(14));
    assert_eq!(sb.tick().await, 0);
    clock.advance(Duration::minutes(1));
    assert_eq!(sb.tick().await, 1, "10:05");
    clock.advance(Duration::minutes(15));
    assert_eq!(sb.tick().await, 1, "10:20");
    assert_eq!(chat.posts_containing(ch, UPDATE).len(), 3);
    b.finish().await;
}

#[tokio::test]
async fn restart_catches_up_once_on_sqlite() {
    restart_catches_up_once(Db::sqlite().await).await;
}

#[tokio::test]
async fn restart_catches_up_once_on_postgres() {
    let Some(db) = Db::postgres("restart_catches_up_once_on_postgres").await else {
        return;
    };
    restart_catches_up_once(db).await;
}

/// Request expiry runs on the same scheduler.
#[tokio::test]
async fn requests_expire_on_the_scheduler() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let scheduler = Scheduler::new(bot.app.engine.clone(), "solo");
    scheduler.install().await.unwrap();
    let r = bot.say("carol", "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    scheduler.tick().await;
    assert_eq!(
        store
            .get_request(RequestId(1))
            .await
            .unwrap()
            .unwrap()
            .state,
        RequestState::Pending
    );
    bot.advance(Duration::minutes(61));
    assert_eq!(scheduler.tick().await, 1);
    assert_eq!(
        store
            .get_request(RequestId(1))
            .await
            .unwrap()
            .unwrap()
            .state,
        RequestState::Expired
    );
    bot.finish().await;
}

/// Break-glass outside any incident channel lands on the open P0/P1 it relies on; an
/// ordinary operation elsewhere does not, unless it names the incident.
#[tokio::test]
async fn operations_land_on_the_incidents_they_belong_to() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let services = fake_services().await;
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let bot = bot_on(store.clone(), config(&services), &clock, &chat).await;
    say(&bot, "dave", GENERAL, "incident declare P1 slow responses").await;
    say(&bot, "dave", GENERAL, "incident declare P2 flaky dev").await;

    let r = say(&bot, "dave", GENERAL, "restart development").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = say(&bot, "dave", GENERAL, "deploy development v3.0.1 for INC-2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = say(&bot, "carol", GENERAL, "rollback production").await;
    assert_eq!(
        r.kind,
        ReplyKind::Ok,
        "break-glass during the P1: {}",
        r.text()
    );

    let ops = |events: Vec<erlmcp_bot::store::IncidentEventRow>| {
        events
            .into_iter()
            .filter(|e| e.kind.as_str() == "operation")
            .map(|e| e.text)
            .collect::<Vec<_>>()
    };
    let p1 = ops(store
        .incident_events(erlmcp_commands::IncidentId(1))
        .await
        .unwrap());
    let p2 = ops(store
        .incident_events(erlmcp_commands::IncidentId(2))
        .await
        .unwrap());
    assert_eq!(p1.len(), 1, "{p1:?}");
    assert!(
        p1[0].contains("rollback production [break-glass]"),
        "{p1:?}"
    );
    assert_eq!(p2.len(), 1, "{p2:?}");
    assert!(
        p2[0].contains("deploy development v3.0.1 for INC-2"),
        "{p2:?}"
    );
    let created: Vec<String> = chat
        .channels_created()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(created, ["inc-1-slow-responses", "inc-2-flaky-dev"]);
    bot.finish().await;
}

/// Benchmark: 10,000 open incidents, each with its update due; one scheduler pass finds and
/// claims them all. `cargo test -p erlmcp-tests --test incidents -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn bench_claim_10k_due_updates() {
    let sqlite = Db::sqlite().await;
    bench_claim(&sqlite, "sqlite").await;
    if let Some(pg) = Db::postgres("bench_claim_10k_due_updates").await {
        bench_claim(&pg, "postgres").await;
    }
}

async fn bench_claim(db: &Db, name: &str) {
    use futures::StreamExt;
    const N: usize = 10_000;
    let store = db.open().await;
    let t0 = start_time();
    let who = Who {
        platform: "local".into(),
        user_id: "dave".into(),
        display_name: "dave".into(),
    };
    let fill = Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let store = store.clone();
            let who = who.clone();
            async move {
                let inc = store
                    .insert_incident(NewIncident {
                        severity: Severity::P1,
                        title: format!("incident {i}"),
                        declared_by: who,
                        declared_at: t0,
                        channel: "local:cli".into(),
                    })
                    .await
                    .unwrap();
                let key = erlmcp_bot::incidents::status_update_job_key(inc.id);
                store
                    .upsert_job(
                        &key,
                        "incident_update",
                        &inc.id.0.to_string(),
                        t0 + Duration::minutes(15),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let filled = fill.elapsed();
    assert_eq!(store.open_incidents().await.unwrap().len(), N);

    let now = t0 + Duration::minutes(15);
    let lease = now + Duration::minutes(2);
    let started = Instant::now();
    let claimed = store
        .claim_due_jobs("bench-a", now, lease, N as u32)
        .await
        .unwrap();
    let one_statement = started.elapsed();
    assert_eq!(claimed.len(), N);

    // The scheduler's own way: batches of 100 until nothing is left.
    let later = now + Duration::minutes(3);
    let started = Instant::now();
    let mut total = 0;
    loop {
        let batch = store
            .claim_due_jobs("bench-b", later, later + Duration::minutes(2), 100)
            .await
            .unwrap();
        total += batch.len();
        if batch.len() < 100 {
            break;
        }
    }
    let batched = started.elapsed();
    assert_eq!(total, N);
    // Nothing due: what every idle tick costs.
    let started = Instant::now();
    let none = store
        .claim_due_jobs("bench-c", later, later + Duration::minutes(2), 100)
        .await
        .unwrap();
    let idle = started.elapsed();
    assert!(none.is_empty());
    println!(
        "BENCH {name}: {N} open incidents (filled in {filled:.2?}); claim all due in one statement {one_statement:.2?}; \
         in batches of 100 {batched:.2?}; idle pass {idle:.2?}"
    );
    assert!(
        one_statement < std::time::Duration::from_secs(1),
        "{name}: {one_statement:?}"
    );
}
