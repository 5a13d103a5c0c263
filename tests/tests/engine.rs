//! Engine guarantees on real databases: one execution per approved request however the
//! votes race, nothing executed without an audit entry, expiry, cancel, break-glass.

use std::sync::Arc;

use chrono::Duration;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::config::Config;
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::harness::{Bot, embedded_config, request_id};

/// The embedded default with a second Change Board member, so two people can approve.
fn two_approvers() -> Config {
    let mut cfg = embedded_config();
    cfg.roles
        .get_mut("change-board")
        .unwrap()
        .push("local:frank".into());
    cfg
}

async fn racing_approvals(store: Arc<dyn Store>) {
    let bot = Arc::new(Bot::start(store.clone(), two_approvers()).await);
    for round in 0..10 {
        let r = bot.say("alice", "deploy production v3.0.0").await;
        assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
        let id = request_id(&r);
        let (a, b) = {
            let (b1, b2) = (bot.clone(), bot.clone());
            let (i1, i2) = (id.clone(), id.clone());
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let (g1, g2) = (barrier.clone(), barrier);
            let t1 = tokio::spawn(async move {
                g1.wait().await;
                b1.say("bob", &format!("approve {i1}")).await
            });
            let t2 = tokio::spawn(async move {
                g2.wait().await;
                b2.say("frank", &format!("approve {i2}")).await
            });
            (t1.await.unwrap(), t2.await.unwrap())
        };
        let rows = store.audit_page(0, 100_000).await.unwrap();
        let executions = rows
            .iter()
            .filter(|r| {
                r.entry.action == "executing"
                    && r.entry.request_id.map(|x| x.to_string()) == Some(id.clone())
            })
            .count();
        assert_eq!(executions, 1, "round {round}: {} / {}", a.text(), b.text());
        // "R-n done: …" is the execution's reply; a voter who comes second may read "R-n is
        // done; there is nothing to approve", which is not a second execution.
        let done = [&a, &b]
            .iter()
            .filter(|r| r.text().contains(&format!("{id} done:")))
            .count();
        assert_eq!(done, 1, "round {round}: {} / {}", a.text(), b.text());
        // Roll production back so the next round deploys again.
        bot.say("carol", "scale production 5").await;
    }
    assert!(
        erlmcp_bot::store::audit::verify(store.as_ref())
            .await
            .unwrap()
            .is_ok()
    );
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_approvals_execute_once_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    racing_approvals(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_approvals_execute_once_on_postgres() {
    let Some(store) = testdb::postgres_or_skip("racing_approvals_execute_once_on_postgres").await
    else {
        return;
    };
    racing_approvals(Arc::new(store)).await;
}

/// The audit table goes away mid-run: the deploy is not executed and the reply says why.
async fn audit_unavailable(store: Arc<dyn Store>, break_audit: impl AsyncFnOnce()) {
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.progress.take();

    break_audit().await;
    let r = bot.say("dave", "deploy staging v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(
        r.text().contains("audit log is unavailable"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("Not executed"), "{}", r.text());
    assert!(bot.progress.take().is_empty(), "nothing may run");
    let metrics = bot.app.metrics.encode();
    assert!(
        metrics.contains("erlmcp_bot_store_write_failures_total{what=\"audit\"} 1"),
        "the refusal is counted: {metrics}"
    );
    let r = bot.say("dave", "status staging").await;
    assert!(
        r.text().contains("v3.0.1"),
        "staging must be unchanged: {}",
        r.text()
    );
    let history = store.deployments("staging", 10).await.unwrap();
    assert!(history.iter().all(|d| d.version != "v3.0.2"), "{history:?}");
    bot.finish().await;
}

#[tokio::test]
async fn audit_unavailable_means_not_executed_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let pool = store.pool().clone();
    audit_unavailable(Arc::new(store), async || {
        sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_elsewhere")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn audit_unavailable_means_not_executed_on_postgres() {
    let Some(store) =
        testdb::postgres_or_skip("audit_unavailable_means_not_executed_on_postgres").await
    else {
        return;
    };
    let pool = store.pool().clone();
    audit_unavailable(Arc::new(store), async || {
        sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_elsewhere")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

/// Operations asked for at once while the audit table cannot be written: they reach the
/// store together (one batch on either backend) and every one is refused, none runs, none
/// leaves a request behind; once the table is back the chain goes on unbroken.
async fn failed_batch_executes_nothing(
    store: Arc<dyn Store>,
    break_audit: impl AsyncFnOnce(),
    restore_audit: impl AsyncFnOnce(),
) {
    let bot = Bot::start(store.clone(), embedded_config()).await;
    for env in ["staging", "development"] {
        let r = bot.say("dave", &format!("deploy {env} v3.0.1")).await;
        assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    }
    bot.progress.take();
    let before = store.audit_tail(1).await.unwrap();

    break_audit().await;
    let asks: Vec<String> = (0..12)
        .map(|i| {
            let env = if i % 2 == 0 { "staging" } else { "development" };
            format!("deploy {env} v3.1.{i}")
        })
        .collect();
    let replies = futures::future::join_all(asks.iter().map(|a| bot.say("dave", a))).await;
    for r in &replies {
        assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
        assert!(
            r.text().contains("audit log is unavailable"),
            "{}",
            r.text()
        );
        assert!(r.text().contains("Not executed"), "{}", r.text());
    }
    assert!(bot.progress.take().is_empty(), "nothing may run");
    restore_audit().await;

    for env in ["staging", "development"] {
        let history = store.deployments(env, 50).await.unwrap();
        assert!(
            history.iter().all(|d| !d.version.starts_with("v3.1.")),
            "{env}: {history:?}"
        );
    }
    let far = erlmcp_tests::harness::start_time() + Duration::days(30);
    assert!(store.orphaned_requests(far).await.unwrap().is_empty());
    assert!(store.pending_requests().await.unwrap().is_empty());
    assert_eq!(store.audit_tail(1).await.unwrap(), before);
    let r = bot.say("dave", "deploy staging v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.progress.take();
    let report = erlmcp_bot::store::audit::verify(store.as_ref())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_executes_nothing_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let pool = store.pool().clone();
    let (a, b) = (pool.clone(), pool);
    failed_batch_executes_nothing(
        Arc::new(store),
        async move || {
            sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_elsewhere")
                .execute(&a)
                .await
                .unwrap();
        },
        async move || {
            sqlx::query("ALTER TABLE audit_log_elsewhere RENAME TO audit_log")
                .execute(&b)
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_executes_nothing_on_postgres() {
    let Some(store) = testdb::postgres_or_skip("failed_batch_executes_nothing_on_postgres").await
    else {
        return;
    };
    let pool = store.pool().clone();
    let (a, b) = (pool.clone(), pool);
    failed_batch_executes_nothing(
        Arc::new(store),
        async move || {
            sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_elsewhere")
                .execute(&a)
                .await
                .unwrap();
        },
        async move || {
            sqlx::query("ALTER TABLE audit_log_elsewhere RENAME TO audit_log")
                .execute(&b)
                .await
                .unwrap();
        },
    )
    .await;
}

/// PostgreSQL stops taking connections mid-run: the reply says the audit log is
/// unavailable and nothing runs; once it is back, the world is as it was.
#[tokio::test]
async fn database_gone_means_a_clear_reply_and_no_execution() {
    let Some(url) =
        testdb::fresh_postgres_url("database_gone_means_a_clear_reply_and_no_execution").await
    else {
        return;
    };
    let store = erlmcp_bot::store::PgStore::open(&url).await.unwrap();
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.progress.take();

    let admin = std::env::var(testdb::POSTGRES_URL_VAR).unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let set = |allow: bool| format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS {allow}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set(false)))
        .execute(&mut conn)
        .await
        .unwrap();
    testdb::end_sessions(&url).await;

    let r = bot.say("dave", "deploy staging v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(
        r.text().contains("audit log is unavailable"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("postgres://"),
        "no connection string in replies: {}",
        r.text()
    );
    assert!(bot.progress.take().is_empty(), "nothing may run");
    let metrics = bot.app.metrics.encode();
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("erlmcp_bot_store_write_failures_total{"))
        .collect();
    assert_eq!(refused.len(), 1, "{metrics}");
    assert!(refused[0].ends_with(" 1"), "{refused:?}");

    sqlx::raw_sql(sqlx::AssertSqlSafe(set(true)))
        .execute(&mut conn)
        .await
        .unwrap();
    let r = bot.say("dave", "status staging").await;
    assert!(
        r.text().contains("v3.0.1"),
        "staging must be unchanged: {}",
        r.text()
    );
    bot.finish().await;
    testdb::drop_postgres_database(&url).await;
}

#[tokio::test]
async fn requests_expire_and_cancel() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    let r = bot.say("alice", "deploy production v3.0.0").await;
    let first = request_id(&r);
    let r = bot.say("alice", "deploy production v3.0.0 again").await;
    let second = request_id(&r);

    let r = bot.say("bob", &format!("cancel {second}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    let r = bot.say("alice", &format!("cancel {second}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());

    bot.advance(Duration::minutes(61));
    assert_eq!(bot.app.engine.expire_due().await.unwrap(), 1);
    let r = bot.say("bob", &format!("approve {first}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn one_person_counts_once() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let mut cfg = two_approvers();
    cfg.rules
        .iter_mut()
        .find(|r| r.operation == "deploy" && r.environments == ["production"])
        .unwrap()
        .approvals
        .as_mut()
        .unwrap()
        .count = 2;
    let bot = Bot::start(Arc::new(store), cfg).await;
    let id = request_id(&bot.say("alice", "deploy production v3.0.0").await);
    let r = bot.say("bob", &format!("approve {id}")).await;
    assert!(r.text().contains("1 of 2"), "{}", r.text());
    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("already voted"), "{}", r.text());
    let r = bot.say("frank", &format!("approve {id}")).await;
    assert!(r.text().contains("done"), "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn break_glass_rollback_during_p0() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    // Without an incident, on-call's production rollback waits for approval.
    let r = bot.say("carol", "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());

    let r = bot.say("dave", "incident declare P2 slow dashboard").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = bot.say("carol", "rollback production").await;
    assert_eq!(
        r.kind,
        ReplyKind::Accepted,
        "a P2 is no reason to break glass: {}",
        r.text()
    );

    let r = bot.say("dave", "incident declare P0 production down").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    // Only on-call may break glass; the DevOps lead still needs an approval.
    let r = bot.say("alice", "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let r = bot.say("carol", "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("production runs v2.9.4"), "{}", r.text());

    let rows = bot.app.store.audit_page(0, 1000).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.entry.decision == "break_glass" && r.entry.action == "executing"),
        "break-glass is audited"
    );
    let r = bot.say("carol", "incident timeline INC-2").await;
    assert!(r.text().contains("break-glass"), "{}", r.text());
    bot.finish().await;
}

/// A shutdown waits for commands still running, so their outcome reaches the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_commands_in_flight() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let opts = erlmcp_bot::app::BuildOptions {
        sandbox_step: std::time::Duration::from_millis(50),
        ..erlmcp_tests::harness::test_options()
    };
    let bot = Arc::new(Bot::start_with(store.clone(), embedded_config(), opts).await);
    let b = bot.clone();
    let running = tokio::spawn(async move { b.say("dave", "deploy staging v3.0.1").await });
    // Wait until the deploy has started (its first audit entry is written).
    for _ in 0..200 {
        if !store.audit_page(0, 10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let left = bot
        .app
        .engine
        .drain(std::time::Duration::from_secs(10))
        .await;
    assert_eq!(left, 0);
    // Checked before awaiting the command: drain itself must have waited for the outcome.
    let rows = store.audit_page(0, 100).await.unwrap();
    assert!(
        rows.iter().any(|r| r.entry.action == "executed"),
        "the outcome is audited"
    );
    assert!(
        running
            .await
            .unwrap()
            .text()
            .contains("staging runs v3.0.1")
    );
    assert_eq!(
        bot.app
            .engine
            .drain(std::time::Duration::from_millis(1))
            .await,
        0,
        "nothing running"
    );
    bot.finish().await;
}
