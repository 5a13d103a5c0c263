//! Approved requests run under the rule they were decided under: the preconditions are
//! checked again at execution from what was stored with the request, and a request whose
//! rule cannot be determined is not run.

use std::sync::Arc;

use chrono::Duration;
use erlmcp_bot::engine::{EngineEvent, Invocation};
use erlmcp_bot::store::{NewRequest, RequestState, Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::Config;
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_tests::harness::{Bot, embedded_config, request_id};

const DEVOPS_GROUP: &str = "slack-group:S0DEVOPS";

/// The embedded default where the DevOps lead role is held through a Slack user group only.
fn group_bound_devops() -> Config {
    let mut cfg = embedded_config();
    cfg.roles
        .insert("devops-lead".into(), vec![DEVOPS_GROUP.into()]);
    cfg
}

/// A Slack user typing a command, with the groups the Slack bridge found for them.
async fn slack_says(bot: &Bot, user: &str, groups: &[&str], text: &str) -> Reply {
    let engine = &bot.app.engine;
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    engine
        .handle(Invocation {
            actor: engine.actor("slack", user, user, &groups),
            channel: "local:test".into(),
            text: text.into(),
            progress: Arc::new(bot.progress.clone()),
        })
        .await
}

fn parse_id(id: &str) -> RequestId {
    RequestId(id.trim_start_matches("R-").parse().unwrap())
}

async fn soak_broken_after_request_refuses_at_execution(store: Arc<dyn Store>) {
    let bot = Bot::start(store.clone(), group_bound_devops()).await;
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.advance(Duration::hours(25));

    let r = slack_says(&bot, "U0ALICE", &[DEVOPS_GROUP], "deploy production v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let id = request_id(&r);

    // Staging is rolled back while the request waits: the soak no longer holds.
    bot.advance(Duration::minutes(5));
    let r = bot.say("dave", "rollback staging").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.advance(Duration::minutes(5));
    bot.progress.take();

    let mut events = bot.app.engine.subscribe();
    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(r.text().contains("not executed"), "{}", r.text());
    assert!(r.text().contains("staging was rolled back"), "{}", r.text());
    // The approval message is redrawn as failed, with the reason.
    let mut redrawn = None;
    while let Ok(EngineEvent::RequestChanged { card, .. }) = events.try_recv() {
        if card.id.to_string() == id {
            redrawn = Some(card);
        }
    }
    let card = redrawn.expect("the card is redrawn");
    assert_eq!(card.state, "failed");
    assert!(
        card.state_detail
            .as_deref()
            .is_some_and(|d| d.contains("staging was rolled back")),
        "{card:?}"
    );
    assert!(bot.progress.take().is_empty(), "nothing may run");
    let status = bot.say("dave", "status production").await;
    assert!(!status.text().contains("v3.0.1"), "{}", status.text());

    let row = store.get_request(parse_id(&id)).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Failed);
    let rows = store.audit_page(0, 1000).await.unwrap();
    let mine: Vec<_> = rows
        .iter()
        .filter(|r| r.entry.request_id == Some(row.id))
        .collect();
    assert!(
        mine.iter()
            .any(|r| r.entry.outcome == "refused at execution"
                && r.entry.reason.contains("staging was rolled back")),
        "{mine:#?}"
    );
    assert!(
        !mine.iter().any(|r| r.entry.action == "executing"),
        "{mine:#?}"
    );
    assert!(
        erlmcp_bot::store::audit::verify(store.as_ref())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn group_bound_requester_soak_rechecked_at_execution_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    soak_broken_after_request_refuses_at_execution(Arc::new(store)).await;
}

#[tokio::test]
async fn group_bound_requester_soak_rechecked_at_execution_on_postgres() {
    let Some(store) =
        testdb::postgres_or_skip("group_bound_requester_soak_rechecked_at_execution_on_postgres")
            .await
    else {
        return;
    };
    soak_broken_after_request_refuses_at_execution(Arc::new(store)).await;
}

/// The same story with the soak intact: the group-bound request runs once approved.
#[tokio::test]
async fn group_bound_requester_runs_when_preconditions_still_hold() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), group_bound_devops()).await;
    bot.say("dave", "deploy staging v3.0.1").await;
    bot.advance(Duration::hours(25));
    let r = slack_says(&bot, "U0ALICE", &[DEVOPS_GROUP], "deploy production v3.0.1").await;
    let id = request_id(&r);
    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("production runs v3.0.1"), "{}", r.text());
}

/// Stores a copy of request `id` with `approvals_json` replaced, as an older version (or a
/// damaged row) would have left it; returns the copy's id.
async fn stored_copy(store: &dyn Store, id: &str, approvals_json: &str) -> String {
    let row = store.get_request(parse_id(id)).await.unwrap().unwrap();
    let copy = store
        .insert_request(NewRequest {
            created_at: row.created_at,
            expires_at: row.expires_at,
            requester: row.requester.clone(),
            channel: row.channel.clone(),
            command_text: row.command_text.clone(),
            operation: row.operation.clone(),
            environment: row.environment.clone(),
            command_json: row.command_json.clone(),
            approvals_json: approvals_json.into(),
            state: RequestState::Pending,
            break_glass: false,
            owner: None,
        })
        .await
        .unwrap();
    copy.id.to_string()
}

async fn soaked_production_request(bot: &Bot) -> String {
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.advance(Duration::hours(25));
    let r = bot.say("alice", "deploy production v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    request_id(&r)
}

#[tokio::test]
async fn deploy_stored_without_its_rule_is_not_executed() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let original = soaked_production_request(&bot).await;
    // What versions before the decided-under snapshot stored.
    let legacy = stored_copy(
        store.as_ref(),
        &original,
        r#"{"count":1,"from":["change-board"],"met":[]}"#,
    )
    .await;
    bot.progress.take();

    let r = bot.say("bob", &format!("approve {legacy}")).await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(r.text().contains("not executed"), "{}", r.text());
    assert!(
        r.text()
            .contains("stored without the rule it was approved under"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("ask again"), "{}", r.text());
    assert!(bot.progress.take().is_empty(), "nothing may run");
    let row = store.get_request(parse_id(&legacy)).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Failed);
    let rows = store.audit_page(0, 1000).await.unwrap();
    assert!(
        rows.iter().any(
            |r| r.entry.request_id == Some(row.id) && r.entry.outcome == "refused at execution"
        ),
        "the refusal is audited"
    );

    // The request stored by this version still runs.
    let r = bot.say("bob", &format!("approve {original}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
}

#[tokio::test]
async fn deploy_with_an_unreadable_rule_is_not_executed() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store.clone(), embedded_config()).await;
    let original = soaked_production_request(&bot).await;
    let damaged = stored_copy(
        store.as_ref(),
        &original,
        r#"{"count":1,"from":["change-board"],"met":[],"decided_under":{"rule":"two"}}"#,
    )
    .await;
    bot.progress.take();

    let r = bot.say("bob", &format!("approve {damaged}")).await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(
        r.text()
            .contains("the rule it was approved under cannot be read"),
        "{}",
        r.text()
    );
    assert!(bot.progress.take().is_empty(), "nothing may run");
}
