//! The core story through the real engine, on SQLite and on PostgreSQL: a staging deploy,
//! a production deploy held by the soak and then approved by the Change Board, a rollback
//! waiting for approval, and an audit log that notices being edited behind the bot's back.

use std::sync::Arc;

use chrono::Duration;
use erlmcp_bot::store::testdb;
use erlmcp_bot::store::{Store, audit};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::harness::{Bot, embedded_config, request_id};

async fn story(store: Arc<dyn Store>, tamper: impl AsyncFnOnce(&'static str)) {
    let bot = Bot::start(store.clone(), embedded_config()).await;

    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("staging runs v3.0.1"), "{}", r.text());
    assert!(r.text().contains("sandbox"), "{}", r.text());
    let progress = bot.progress.take();
    assert!(
        progress.iter().any(|l| l.contains("3 of 3 available")),
        "{progress:?}"
    );

    let r = bot.say("alice", "deploy production v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("soak"), "{}", r.text());
    // Deployed at 09:00 on the 2nd, so the 24h soak is met at 09:00 on the 3rd.
    assert!(
        r.text().contains("met at 2026-11-03 09:00 UTC"),
        "{}",
        r.text()
    );

    bot.advance(Duration::hours(24));
    let r = bot
        .say("alice", "/erlmcp deploy prod v3.0.1 release 3.0.1")
        .await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let id = request_id(&r);
    assert!(r.text().contains("change-board"), "{}", r.text());
    let card = r.approval().unwrap();
    assert_eq!(card.requirement.count, 1);
    assert!(
        card.met.iter().any(|m| m.contains("soaked in staging")),
        "{:?}",
        card.met
    );

    let r = bot.say("alice", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("you requested"), "{}", r.text());

    let r = bot.say("erin", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("only change-board"), "{}", r.text());

    let r = bot.say("bob", &format!("approve {id} looks good")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("production runs v3.0.1"), "{}", r.text());

    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(
        r.kind,
        ReplyKind::Refused,
        "a settled request takes no votes: {}",
        r.text()
    );

    let r = bot.say("carol", "status production").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("production [sandbox]: v3.0.1"),
        "{}",
        r.text()
    );

    let r = bot.say("carol", "rollback production").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    assert!(r.text().contains("Needs 1 approval"), "{}", r.text());

    let report = audit::verify(store.as_ref()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.broken);
    assert!(report.count >= 8, "{report:?}");

    // Every entry says who, what, where and the outcome.
    let rows = store.audit_page(0, 1000).await.unwrap();
    let executed = rows
        .iter()
        .find(|r| {
            r.entry.action == "executed" && r.entry.environment.as_deref() == Some("production")
        })
        .expect("the production deploy is audited");
    assert_eq!(executed.entry.who.user_id, "alice");
    assert_eq!(executed.entry.channel, "local:test");
    assert!(
        executed.entry.votes.contains("bob"),
        "{}",
        executed.entry.votes
    );
    assert!(
        executed.entry.outcome.starts_with("ok"),
        "{}",
        executed.entry.outcome
    );

    // Someone edits row 3 behind the bot's back.
    tamper("UPDATE audit_log SET outcome = 'ok' WHERE seq = 3").await;
    let report = audit::verify(store.as_ref()).await.unwrap();
    let broken = report.broken.expect("tampering is detected");
    assert_eq!(broken.seq, 3, "{broken}");
    bot.finish().await;
}

#[tokio::test]
async fn story_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let pool = store.pool().clone();
    story(Arc::new(store), async |sql: &'static str| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn story_on_postgres() {
    let Some(store) = testdb::postgres_or_skip("story_on_postgres").await else {
        return;
    };
    let pool = store.pool().clone();
    story(Arc::new(store), async |sql: &'static str| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
}
