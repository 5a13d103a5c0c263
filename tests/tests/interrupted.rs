//! A replica dies while it carries out a production deploy: the survivors notice within the
//! lease and exactly one of them reconciles the request (one `interrupted` audit row, one
//! announcement, a note on the incident's timeline), says what the workload shows, follows
//! the rollout to its end, and never runs the deploy again. `requests` and `status` show it
//! until someone acknowledges it with `cancel`.

use std::sync::Arc;
use std::time::Duration;

use erlmcp_adapters::chat::Platform;
use erlmcp_adapters::target::Progress;
use erlmcp_bot::app;
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::engine::{Engine, Invocation};
use erlmcp_bot::store::{RequestState, Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::{Config, HumanDuration};
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_tests::fake_chat::FakeChat;
use erlmcp_tests::harness::{Bot, Lines, embedded_config, request_id, start_time, test_options};
use tokio::sync::mpsc;

/// The incident's own channel (the fake chat names the first channel it creates C0001):
/// the deploy is asked for there, so it belongs to the incident.
const OPS: &str = "C0001";
const LEASE_SECS: u64 = 3;

fn config() -> Config {
    let mut cfg = embedded_config();
    cfg.bot.owner_lease = HumanDuration(Duration::from_secs(LEASE_SECS));
    cfg
}

/// A replica: the real engine on the shared database, its own chat, the shared clock.
async fn replica(store: Arc<dyn Store>, clock: &ManualClock, step: Duration) -> (Bot, FakeChat) {
    let chat = FakeChat::new(Platform::Slack);
    let mut opts = test_options();
    opts.chats = vec![Arc::new(chat.clone())];
    opts.sandbox_step = step;
    let app = app::build(config(), store, Arc::new(clock.clone()), opts)
        .await
        .expect("bot builds");
    let bot = Bot {
        app,
        clock: clock.clone(),
        progress: Lines::default(),
        chats: Vec::new(),
    };
    (bot, chat)
}

async fn say_with(bot: &Bot, who: &str, text: &str, progress: Arc<dyn Progress>) -> Reply {
    let engine = &bot.app.engine;
    engine
        .handle(Invocation {
            actor: engine.actor("local", who, who, &[]),
            channel: format!("slack:{OPS}"),
            text: text.into(),
            progress,
        })
        .await
}

async fn say(bot: &Bot, who: &str, text: &str) -> Reply {
    say_with(bot, who, text, Arc::new(bot.progress.clone())).await
}

/// Progress lines as they come, so the test acts on a rollout step without waiting blind.
struct Signal(mpsc::UnboundedSender<String>);
impl Progress for Signal {
    fn report(&self, line: String) {
        let _ = self.0.send(line);
    }
}

/// Has `engine` handle `text` from `who` in `channel` in a task of its own, with its progress
/// lines sent as they come.
fn said_in_background(
    engine: &Arc<Engine>,
    who: &str,
    channel: &str,
    text: &str,
) -> (
    tokio::task::JoinHandle<Reply>,
    mpsc::UnboundedReceiver<String>,
) {
    let (tx, lines) = mpsc::unbounded_channel();
    let engine = engine.clone();
    let invocation = Invocation {
        actor: engine.actor("local", who, who, &[]),
        channel: channel.into(),
        text: text.into(),
        progress: Arc::new(Signal(tx)),
    };
    (
        tokio::spawn(async move { engine.handle(invocation).await }),
        lines,
    )
}

/// Waits for a progress line that contains `part`.
async fn until_line(lines: &mut mpsc::UnboundedReceiver<String>, part: &str) {
    while !lines.recv().await.expect("progress").contains(part) {}
}

async fn audit_actions(store: &Arc<dyn Store>, id: RequestId, action: &str) -> Vec<String> {
    store
        .audit_page(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.request_id == Some(id) && r.entry.action == action)
        .map(|r| r.entry.reason)
        .collect()
}

async fn survivor_reconciles_a_dead_replica_once(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start_time());
    // The dying replica rolls out slowly enough to be caught in the middle.
    let (dying, _) = replica(store.clone(), &clock, Duration::from_millis(300)).await;
    let (b, chat_b) = replica(store.clone(), &clock, Duration::ZERO).await;
    let (c, chat_c) = replica(store.clone(), &clock, Duration::ZERO).await;
    for bot in [&dying, &b, &c] {
        bot.app.engine.heartbeat().await.unwrap();
    }
    assert_ne!(dying.app.engine.owner(), b.app.engine.owner());

    let r = b
        .app
        .engine
        .handle(Invocation {
            actor: b.app.engine.actor("local", "dave", "dave", &[]),
            channel: "slack:C0GENERAL".into(),
            text: "incident declare P2 checkout latency".into(),
            progress: Arc::new(Lines::default()),
        })
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = say(&b, "alice", "deploy production v3.0.0").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let id = request_id(&r);
    let rid = RequestId(id.trim_start_matches("R-").parse().unwrap());

    // Bob's approval lands on the dying replica, which starts the rollout...
    let (approve, mut lines) = said_in_background(
        &dying.app.engine,
        "bob",
        &format!("slack:{OPS}"),
        &format!("approve {id}"),
    );
    until_line(&mut lines, "2 of 5 new replicas updated").await;
    // ...and dies two replicas in: no cleanup, no outcome, no more heartbeats.
    approve.abort();
    assert!(approve.await.unwrap_err().is_cancelled());
    let row = store.get_request(rid).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Executing);
    assert_eq!(row.owner.as_deref(), Some(dying.app.engine.owner()));

    // Within the lease nobody touches it.
    clock.advance(chrono::Duration::seconds(LEASE_SECS as i64 - 1));
    b.app.engine.heartbeat().await.unwrap();
    c.app.engine.heartbeat().await.unwrap();
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 0);

    // Past it, both survivors race to reconcile; exactly one does.
    clock.advance(chrono::Duration::seconds(2));
    b.app.engine.heartbeat().await.unwrap();
    c.app.engine.heartbeat().await.unwrap();
    let (eb, ec) = (b.app.engine.clone(), c.app.engine.clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (g1, g2) = (barrier.clone(), barrier);
    let t1 = tokio::spawn(async move {
        g1.wait().await;
        eb.reconcile_interrupted().await.unwrap()
    });
    let t2 = tokio::spawn(async move {
        g2.wait().await;
        ec.reconcile_interrupted().await.unwrap()
    });
    let (n1, n2) = (t1.await.unwrap(), t2.await.unwrap());
    assert_eq!(n1 + n2, 1, "reconciled by b: {n1}, by c: {n2}");
    let counted: usize = [&b, &c]
        .iter()
        .filter(|bot| {
            bot.app.metrics.encode().contains(
                "operations_total{operation=\"deploy\",environment=\"production\",outcome=\"interrupted\"} 1",
            )
        })
        .count();
    assert_eq!(counted, 1, "{}", b.app.metrics.encode());
    // Later passes find nothing more.
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 0);
    assert_eq!(c.app.engine.reconcile_interrupted().await.unwrap(), 0);
    b.app.engine.wait_background().await;
    c.app.engine.wait_background().await;

    let row = store.get_request(rid).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Interrupted);
    let interrupted = audit_actions(&store, rid, "interrupted").await;
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert!(
        interrupted[0].contains(dying.app.engine.owner()),
        "names the dead owner: {}",
        interrupted[0]
    );
    assert!(
        interrupted[0].contains("new replicas updated"),
        "says the last progress: {}",
        interrupted[0]
    );
    assert!(audit_actions(&store, rid, "executed").await.is_empty());

    let announced: Vec<String> = [&chat_b, &chat_c]
        .iter()
        .flat_map(|c| c.posts_containing(OPS, "was interrupted"))
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    let text = &announced[0];
    assert!(
        text.contains("rollout of v3.0.0 was in progress: 2 of 5 updated"),
        "{text}"
    );
    assert!(
        text.contains("Run `deploy production v3.0.0` again to retry, or `status production`"),
        "{text}"
    );
    // The survivor followed the rollout the dead one left to its end, once.
    let finished: Vec<String> = [&chat_b, &chat_c]
        .iter()
        .flat_map(|c| c.posts_containing(OPS, "left in progress finished"))
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert!(
        finished[0].contains("production runs v3.0.0"),
        "{}",
        finished[0]
    );

    let history = store.deployments("production", 1).await.unwrap();
    assert_eq!(
        (history[0].version.as_str(), history[0].request_id),
        ("v3.0.0", Some(rid)),
        "the landed deploy counts for soak and history"
    );

    // On the timeline of the incident run from that channel.
    let incidents = store.open_incidents().await.unwrap();
    let events = store.incident_events(incidents[0].id).await.unwrap();
    let noted: Vec<_> = events
        .iter()
        .filter(|e| e.text.contains(&id) && e.text.contains("interrupted"))
        .collect();
    assert_eq!(noted.len(), 1, "{events:?}");

    // Listed until acknowledged, and never run again by itself.
    let r = say(&c, "carol", "requests").await;
    assert!(
        r.text().contains(&format!("{id} deploy production v3.0.0")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("INTERRUPTED"), "{}", r.text());
    let r = say(&c, "carol", "status production").await;
    assert!(r.text().contains("INTERRUPTED"), "{}", r.text());
    let r = say(&c, "erin", &format!("cancel {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    let r = say(&c, "dave", &format!("cancel {id}")).await;
    assert_eq!(
        r.kind,
        ReplyKind::Refused,
        "not requester, approver nor deployer: {}",
        r.text()
    );
    let r = say(&c, "bob", &format!("cancel {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("acknowledged"), "{}", r.text());
    let r = say(&c, "alice", &format!("cancel {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert_eq!(audit_actions(&store, rid, "acknowledged").await.len(), 1);
    let r = say(&c, "carol", "requests").await;
    assert!(!r.text().contains(&id), "{}", r.text());
    let r = say(&c, "carol", "status production").await;
    assert!(!r.text().contains("INTERRUPTED"), "{}", r.text());
    let r = say(&c, "bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("interrupted"), "{}", r.text());
    assert_eq!(
        store.get_request(rid).await.unwrap().unwrap().state,
        RequestState::Interrupted
    );
    assert!(audit_actions(&store, rid, "executed").await.is_empty());
    assert!(
        erlmcp_bot::store::audit::verify(store.as_ref())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_reconciles_a_dead_replica_once_on_postgres() {
    let Some(store) =
        testdb::postgres_or_skip("survivor_reconciles_a_dead_replica_once_on_postgres").await
    else {
        return;
    };
    survivor_reconciles_a_dead_replica_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_reconciles_a_dead_replica_once_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    survivor_reconciles_a_dead_replica_once(Arc::new(store)).await;
}

/// A process that is alive keeps its request however long the operation takes, and its own
/// pass never interrupts what it runs itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_owner_keeps_its_request_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = ManualClock::new(start_time());
    let (a, _) = replica(store.clone(), &clock, Duration::from_millis(300)).await;
    let (b, _) = replica(store.clone(), &clock, Duration::ZERO).await;
    a.app.engine.heartbeat().await.unwrap();
    b.app.engine.heartbeat().await.unwrap();
    let r = say(&b, "alice", "deploy production v3.0.0").await;
    let id = request_id(&r);
    let (approve, mut lines) = said_in_background(
        &a.app.engine,
        "bob",
        &format!("slack:{OPS}"),
        &format!("approve {id}"),
    );
    until_line(&mut lines, "1 of 5 new replicas updated").await;
    // Far past the lease, but `a` keeps beating: nobody takes its request.
    clock.advance(chrono::Duration::seconds(60));
    a.app.engine.heartbeat().await.unwrap();
    assert_eq!(a.app.engine.reconcile_interrupted().await.unwrap(), 0);
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 0);
    let reply = approve.await.unwrap();
    assert!(reply.text().contains("done"), "{}", reply.text());
}

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";

fn kube_config(health_url: &str) -> Config {
    erlmcp_bot::config::from_toml(&format!(
        r#"
[bot]
owner_lease = "{LEASE_SECS}s"

[environments.production]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"
health_url = "{health_url}"
rollout_timeout = "30s"

[roles]
devops-lead = ["local:alice"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]

[[rules]]
operation = "rollback"
roles = ["devops-lead"]
"#
    ))
    .expect("valid config")
}

/// On Kubernetes the rollout goes on without the bot: the survivor reads where it stands,
/// follows it to the end and re-arms the post-deploy guard, which here rolls back a deploy
/// whose health check fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_rollout_left_by_a_dead_replica_is_followed_and_guarded() {
    use erlmcp_tests::fake_kube::{self, FakeKubeServer};
    use serde_json::json;

    let fake = FakeKubeServer::start_with_tick(Duration::from_millis(300)).await;
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &format!("{REPO}:v3.0.1"), 3);
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
    let d = fake.insert("deployments", d);
    for (rev, tag, hash) in [(1, "v3.0.0", "6c8f9b7d41"), (2, "v3.0.1", "5d9c7b6f83")] {
        fake.insert(
            "replicasets",
            fake_kube::replicaset(&d, &format!("{REPO}:{tag}"), rev, hash),
        );
    }
    fake.set_health(503);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = ManualClock::new(start_time());
    let build = |clock: &ManualClock| {
        let mut opts = test_options();
        opts.kube_client = Some(fake.client());
        app::build(
            kube_config(&format!("{}/health", fake.url)),
            store.clone(),
            Arc::new(clock.clone()),
            opts,
        )
    };
    let dying = build(&clock).await.unwrap();
    let survivor = build(&clock).await.unwrap();
    dying.engine.heartbeat().await.unwrap();
    survivor.engine.heartbeat().await.unwrap();

    let (deploy, mut lines) = said_in_background(
        &dying.engine,
        "alice",
        "local:test",
        "deploy production v3.0.2",
    );
    until_line(&mut lines, "1 out of 3 new replicas have been updated").await;
    deploy.abort();
    let _ = deploy.await;

    clock.advance(chrono::Duration::seconds(LEASE_SECS as i64 + 1));
    survivor.engine.heartbeat().await.unwrap();
    assert_eq!(survivor.engine.reconcile_interrupted().await.unwrap(), 1);
    survivor.engine.wait_background().await;

    let rows = store.audit_page(0, 1000).await.unwrap();
    let interrupted: Vec<_> = rows
        .iter()
        .filter(|r| r.entry.action == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1);
    let reason = &interrupted[0].entry.reason;
    assert!(
        reason.contains("rollout of v3.0.2 was in progress:") && reason.contains("of 3 updated"),
        "{reason}"
    );
    let id = interrupted[0].entry.request_id.unwrap();
    // The rollout reached its end on the cluster, and the guard watched it again.
    let auto = rows
        .iter()
        .find(|r| r.entry.action == "automatic")
        .expect("the re-armed guard rolls the failing deploy back");
    assert!(
        auto.entry.reason.contains(&format!("after {id}")),
        "{}",
        auto.entry.reason
    );
    let history = store.deployments("production", 5).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.kind == "deploy" && h.version == "v3.0.2" && h.request_id == Some(id)),
        "{history:?}"
    );
    assert!(
        !rows.iter().any(|r| r.entry.action == "executing"
            && r.seq > interrupted[0].seq
            && r.entry.request_id == Some(id)),
        "never executed again"
    );
}

/// A process that was only stalled past the lease finds its request reconciled when it
/// finishes: the outcome is still audited and the reply says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owner_that_finishes_late_is_told_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = ManualClock::new(start_time());
    let (a, _) = replica(store.clone(), &clock, Duration::from_millis(300)).await;
    let (b, _) = replica(store.clone(), &clock, Duration::ZERO).await;
    a.app.engine.heartbeat().await.unwrap();
    let r = say(&b, "alice", "deploy production v3.0.0").await;
    let id = request_id(&r);
    let (approve, mut lines) = said_in_background(
        &a.app.engine,
        "bob",
        &format!("slack:{OPS}"),
        &format!("approve {id}"),
    );
    until_line(&mut lines, "1 of 5 new replicas updated").await;
    clock.advance(chrono::Duration::seconds(LEASE_SECS as i64 + 1));
    b.app.engine.heartbeat().await.unwrap();
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 1);
    let reply = approve.await.unwrap();
    assert!(
        reply.text().contains("already been marked interrupted"),
        "{}",
        reply.text()
    );
    let rid = RequestId(id.trim_start_matches("R-").parse().unwrap());
    assert_eq!(audit_actions(&store, rid, "executed").await.len(), 1);
    assert_eq!(
        store.get_request(rid).await.unwrap().unwrap().state,
        RequestState::Interrupted
    );
}

/// A request left `executing` without an owner (by a version that recorded none, possibly
/// still running on an old replica during a rolling upgrade) is given an hour, then
/// reconciled like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownerless_executing_request_waits_out_the_upgrade_grace_on_sqlite() {
    use erlmcp_bot::store::{NewRequest, Who};
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = ManualClock::new(start_time());
    let (b, chat) = replica(store.clone(), &clock, Duration::ZERO).await;
    let row = store
        .insert_request(NewRequest {
            created_at: start_time(),
            expires_at: start_time(),
            requester: Who {
                platform: "local".into(),
                user_id: "alice".into(),
                display_name: "alice".into(),
            },
            channel: format!("slack:{OPS}"),
            command_text: "restart staging".into(),
            operation: "restart".into(),
            environment: Some("staging".into()),
            command_json: r#"{"restart":{"env":"staging","reason":null}}"#.into(),
            approvals_json: "{}".into(),
            state: RequestState::Executing,
            break_glass: false,
            owner: None,
        })
        .await
        .unwrap();
    clock.advance(chrono::Duration::minutes(59));
    b.app.engine.heartbeat().await.unwrap();
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 0);
    clock.advance(chrono::Duration::minutes(2));
    assert_eq!(b.app.engine.reconcile_interrupted().await.unwrap(), 1);
    assert_eq!(
        store.get_request(row.id).await.unwrap().unwrap().state,
        RequestState::Interrupted
    );
    let posts = chat.posts_containing(OPS, "was interrupted");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0].contains("Run `restart staging` again"),
        "{}",
        posts[0]
    );
}

/// The database stops taking the deploy's outcome just as the deploy ends: the reply says
/// the outcome could not be stored and that the bot keeps it, the request stays
/// `executing` under its live owner, which no reconciliation touches. Once the database takes writes again the bot writes the outcome itself,
/// nobody asking: the request is settled, its audit row says it was recorded late, the
/// sandbox shows the new version, the chain verifies, and the environment takes the next
/// deploy.
async fn an_outcome_the_store_refused_is_written_once_it_takes_writes(
    store: Arc<dyn Store>,
    run_sql: impl AsyncFn(&'static str),
) {
    let clock = ManualClock::new(start_time());
    let (a, _) = replica(store.clone(), &clock, Duration::from_millis(200)).await;
    let (deploy, mut lines) =
        said_in_background(&a.app.engine, "dave", "local:test", "deploy staging v3.0.1");
    until_line(&mut lines, "new replicas updated").await;
    run_sql(AWAY).await;
    let reply = deploy.await.unwrap();
    let text = reply.text();
    assert!(text.contains("done"), "the deploy itself ran: {text}");
    assert!(text.contains("the outcome could not be stored"), "{text}");
    assert!(text.contains("keeps this outcome"), "{text}");
    let rid = store
        .orphaned_requests(start_time() + chrono::Duration::days(30))
        .await
        .unwrap()
        .first()
        .map(|r| r.id)
        .expect("the request is left executing");
    assert_eq!(
        store.get_request(rid).await.unwrap().unwrap().state,
        RequestState::Executing
    );
    // Another pass of its own reconciliation leaves it alone: its owner is alive.
    assert_eq!(a.app.engine.reconcile_interrupted().await.unwrap(), 0);

    // Nothing waits on the kept outcome: the engine is idle while the database refuses it.
    a.finish().await;
    let kept = |n: u32| format!("erlmcp_bot_unrecorded_outcomes {n}\n");
    let metrics = a.app.metrics.encode();
    assert!(metrics.contains(&kept(1)), "{metrics}");
    // A process ending now would wait a while for it, and then say it is still kept.
    assert_eq!(
        a.app
            .engine
            .wait_unrecorded(Duration::from_millis(300))
            .await,
        1
    );

    run_sql(BACK).await;
    assert_eq!(
        a.app.engine.wait_unrecorded(Duration::from_secs(30)).await,
        0
    );
    let metrics = a.app.metrics.encode();
    assert!(metrics.contains(&kept(0)), "{metrics}");
    let row = store.get_request(rid).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Succeeded, "{row:?}");
    let late = audit_actions(&store, rid, "executed").await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].contains("recorded late"), "{late:?}");
    let r = a.say("dave", "status staging").await;
    assert!(r.text().contains("v3.0.1"), "{}", r.text());
    let r = a.say("dave", "deploy staging v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    a.finish().await;
    let report = erlmcp_bot::store::audit::verify(store.as_ref())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// The audit table taken away from the bot and given back.
const AWAY: &str = "ALTER TABLE audit_log RENAME TO audit_log_elsewhere";
const BACK: &str = "ALTER TABLE audit_log_elsewhere RENAME TO audit_log";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_store_refused_is_written_once_it_takes_writes_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let pool = store.pool().clone();
    an_outcome_the_store_refused_is_written_once_it_takes_writes(Arc::new(store), async |sql| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_store_refused_is_written_once_it_takes_writes_on_postgres() {
    let Some(store) = testdb::postgres_or_skip(
        "an_outcome_the_store_refused_is_written_once_it_takes_writes_on_postgres",
    )
    .await
    else {
        return;
    };
    let pool = store.pool().clone();
    an_outcome_the_store_refused_is_written_once_it_takes_writes(Arc::new(store), async |sql| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
}
