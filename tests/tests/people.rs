//! One person, several identities: "never the requester" and "each approver once" hold per
//! person, whichever account they use; `whoami` and the audit log name the person.

use std::sync::Arc;

use chrono::Duration;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::config::Config;
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_tests::harness::{Bot, embedded_config, request_id};

const ALICE_SLACK: &str = "U0ALICE";
const BOB_SLACK: &str = "U0BOB";

/// The embedded default with alice and bob on Slack as well as locally. The Change Board
/// names the person alice, so both her identities may approve others' requests; production
/// deploys need two approvals.
fn people_config() -> Config {
    let mut cfg = embedded_config();
    cfg.people.insert(
        "alice".into(),
        vec![format!("slack:{ALICE_SLACK}"), "local:alice".into()],
    );
    cfg.people.insert(
        "bob".into(),
        vec![format!("slack:{BOB_SLACK}"), "local:bob".into()],
    );
    cfg.roles.insert(
        "devops-lead".into(),
        vec!["alice".into(), "local:erin".into()],
    );
    cfg.roles
        .insert("change-board".into(), vec!["alice".into(), "bob".into()]);
    cfg.rules
        .iter_mut()
        .find(|r| r.operation == "deploy" && r.environments == ["production"])
        .unwrap()
        .approvals
        .as_mut()
        .unwrap()
        .count = 2;
    assert_eq!(
        erlmcp_bot::platforms::problems(&cfg),
        vec![],
        "the test configuration is valid"
    );
    cfg
}

async fn slack_says(bot: &Bot, user: &str, text: &str) -> Reply {
    let engine = &bot.app.engine;
    engine
        .handle(Invocation {
            actor: engine.actor("slack", user, "Alice Liddell", &[]),
            channel: "local:test".into(),
            text: text.into(),
            progress: Arc::new(bot.progress.clone()),
        })
        .await
}

/// A production deploy that meets its preconditions, requested by `who` (a local name).
async fn soaked_request(bot: &Bot, who: &str) -> String {
    let r = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.advance(Duration::hours(25));
    let r = bot.say(who, "deploy production v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    request_id(&r)
}

async fn own_request_from_another_identity(store: Arc<dyn Store>) {
    let bot = Bot::start(store.clone(), people_config()).await;
    let id = soaked_request(&bot, "alice").await;

    let r = slack_says(&bot, ALICE_SLACK, &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("you requested"), "{}", r.text());
    assert!(store.votes(parse(&id)).await.unwrap().is_empty());

    // `requests` on Slack knows the request is hers.
    let r = slack_says(&bot, ALICE_SLACK, "requests").await;
    assert!(r.text().contains("yours"), "{}", r.text());

    let rows = store.audit_page(0, 1000).await.unwrap();
    let refused = rows
        .iter()
        .find(|r| r.entry.action == "vote_refused")
        .expect("the refused vote is audited");
    assert_eq!(refused.entry.who.user_id, ALICE_SLACK);
    assert!(
        refused.entry.who.display_name.contains("person alice"),
        "{:?}",
        refused.entry.who
    );

    // She may withdraw it from either account.
    let r = slack_says(&bot, ALICE_SLACK, &format!("cancel {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        erlmcp_bot::store::audit::verify(store.as_ref())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn own_request_cannot_be_approved_from_another_identity_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    own_request_from_another_identity(Arc::new(store)).await;
}

#[tokio::test]
async fn own_request_cannot_be_approved_from_another_identity_on_postgres() {
    let Some(store) = testdb::postgres_or_skip(
        "own_request_cannot_be_approved_from_another_identity_on_postgres",
    )
    .await
    else {
        return;
    };
    own_request_from_another_identity(Arc::new(store)).await;
}

fn parse(id: &str) -> erlmcp_commands::RequestId {
    erlmcp_commands::RequestId(id.trim_start_matches("R-").parse().unwrap())
}

#[tokio::test]
async fn one_person_votes_once_through_any_identity() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), people_config()).await;
    let id = soaked_request(&bot, "erin").await;

    let r = bot.say("alice", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("1 of 2"), "{}", r.text());

    let r = slack_says(&bot, ALICE_SLACK, &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("already voted"), "{}", r.text());
    let r = slack_says(&bot, ALICE_SLACK, &format!("deny {id}")).await;
    assert_eq!(
        r.kind,
        ReplyKind::Refused,
        "a second vote, even a deny: {}",
        r.text()
    );

    // Another person completes it, from Slack.
    let engine = &bot.app.engine;
    let r = engine
        .handle(Invocation {
            actor: engine.actor("slack", BOB_SLACK, "Bob", &[]),
            channel: "local:test".into(),
            text: format!("approve {id}"),
            progress: Arc::new(bot.progress.clone()),
        })
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("production runs v3.0.1"), "{}", r.text());
}

#[tokio::test]
async fn whoami_shows_the_person_and_their_identities() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), people_config()).await;
    let r = slack_says(&bot, ALICE_SLACK, "whoami").await;
    assert!(
        r.text()
            .contains(&format!("Person: alice (slack:{ALICE_SLACK}, local:alice)")),
        "{}",
        r.text()
    );
    // Roles that name the person reach every identity of hers.
    assert!(r.text().contains("change-board"), "{}", r.text());
    assert!(r.text().contains("devops-lead"), "{}", r.text());

    // An identity no person claims is its own person, as before.
    let r = bot.say("frank", "whoami").await;
    assert!(!r.text().contains("Person:"), "{}", r.text());
}

/// What `whoami` lists is worked out once per set of roles and kept: each asker still gets
/// the list of their own roles, however the askers take turns.
#[tokio::test]
async fn whoami_lists_each_askers_own_grants_however_they_take_turns() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    let lead = bot.say("alice", "whoami").await.text();
    let board = bot.say("bob", "whoami").await.text();
    assert!(
        lead.contains("• scale: development, production, staging"),
        "{lead}"
    );
    assert!(!board.contains("• scale:"), "{board}");
    assert!(board.contains("Roles: change-board"), "{board}");
    assert_eq!(bot.say("alice", "whoami").await.text(), lead);
    assert_eq!(bot.say("bob", "whoami").await.text(), board);
    // An identity with no role is told so, not given someone else's list.
    let nobody = bot.say("mallory", "whoami").await.text();
    assert!(nobody.contains("Roles: none"), "{nobody}");
}
