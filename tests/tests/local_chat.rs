//! The local chat platform with the real engine and scheduler on SQLite: what a person
//! following it sees, as events arrive (no polling, no sleeps; the clock is the test's).

use std::sync::Arc;
use std::time::Duration;

use erlmcp_adapters::chat::Asked;
use erlmcp_adapters::local::{LocalChat, LocalEvent, MessageView, ProgressView, Sequenced, Tone};
use erlmcp_bot::app::BuildOptions;
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::store::SqliteStore;
use erlmcp_bot::store::testdb::{self, TempDb};
use erlmcp_commands::RequestId;
use erlmcp_tests::harness::{Bot, embedded_config, test_options};
use tokio::sync::broadcast;

async fn bot() -> (Bot, TempDb) {
    let (url, dir) = testdb::fresh_sqlite_url();
    let store = Arc::new(SqliteStore::open(&url).await.expect("sqlite opens"));
    let opts = BuildOptions {
        local_chat: true,
        ..test_options()
    };
    (Bot::start_with(store, embedded_config(), opts).await, dir)
}

/// Waits for the next message event that passes `pick`, as a page following live would.
async fn next_message(
    live: &mut broadcast::Receiver<Sequenced>,
    what: &str,
    pick: impl Fn(&MessageView) -> bool,
) -> MessageView {
    let wait = async {
        loop {
            match live.recv().await {
                Ok(Sequenced {
                    event: LocalEvent::Message { message },
                    ..
                }) if pick(&message) => return message,
                Ok(_) => continue,
                Err(e) => panic!("the local chat stopped ({e}) before {what}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("waited in vain for {what}"))
}

fn in_channel(chat: &LocalChat, channel: &str) -> Vec<MessageView> {
    chat.messages()
        .into_iter()
        .filter(|m| m.channel == channel)
        .collect()
}

#[tokio::test]
async fn a_card_is_voted_on_with_its_buttons_and_redrawn_with_progress_and_outcome() {
    let (bot, _dir) = bot().await;
    let local = bot.app.local.clone().expect("the local chat runs");
    let chat = local.chat().clone();
    let mut live = chat.follow(None).live;

    local
        .say(
            "alice",
            "deployments",
            Asked::Command("/erlmcp deploy prod v3.0.0 approved in CAB-12".into()),
            None,
        )
        .await
        .unwrap();
    let card = next_message(&mut live, "the approval card", |m| m.request.is_some()).await;
    assert_eq!(card.request.as_deref(), Some("R-1"));
    assert_eq!(
        (card.channel.as_str(), card.only_for.as_deref()),
        ("deployments", None)
    );
    assert!(card.html.contains("<div class=\"card\">"), "{}", card.html);
    let typed = in_channel(&chat, "deployments");
    assert_eq!(typed[0].tone, Tone::Person, "what alice typed comes first");
    assert_eq!(typed[0].from, "alice");

    // Erin may not vote: only she hears why, and the card stays open.
    let vote = |approve: bool| Asked::Vote {
        request: RequestId(1),
        approve,
    };
    local
        .say("erin", "deployments", vote(true), Some(card.id))
        .await
        .unwrap();
    let refusal = next_message(&mut live, "erin's refusal", |m| m.only_for.is_some()).await;
    assert_eq!(refusal.only_for.as_deref(), Some("erin"));
    assert_eq!(refusal.tone, Tone::Refused);
    assert!(
        refusal.text.contains("only change-board"),
        "{}",
        refusal.text
    );
    assert!(chat.message(card.id).unwrap().request.is_some());

    // Bob approves: the rollout reports under the card, which fills its bar and closes.
    local
        .say("bob", "deployments", vote(true), Some(card.id))
        .await
        .unwrap();
    let closed = next_message(&mut live, "the card redrawn as succeeded", |m| {
        m.id == card.id && m.text.contains("succeeded")
    })
    .await;
    assert!(closed.request.is_none(), "no buttons on a settled card");
    assert!(closed.edits >= 1);
    assert_eq!(closed.progress, Some(ProgressView { done: 5, total: 5 }));
    let thread: Vec<String> = chat
        .messages()
        .into_iter()
        .filter(|m| m.thread == Some(card.id))
        .map(|m| m.text)
        .collect();
    assert!(
        thread
            .iter()
            .any(|t| t.contains("5 of 5 new replicas updated")),
        "{thread:?}"
    );
    assert!(
        thread.iter().any(|t| t.contains("production runs v3.0.0")),
        "the outcome is in the card's thread: {thread:?}"
    );
    bot.finish().await;
}

#[tokio::test]
async fn an_incident_gets_its_channel_checklist_announcement_and_live_updates() {
    let (bot, _dir) = bot().await;
    let local = bot.app.local.clone().expect("the local chat runs");
    let chat = local.chat().clone();
    let mut live = chat.follow(None).live;
    let scheduler = Scheduler::new(bot.app.engine.clone(), "solo");

    local
        .say(
            "carol",
            "deployments",
            Asked::Command("incident declare P1 \"API <script>alert(1)</script> down\"".into()),
            None,
        )
        .await
        .unwrap();
    bot.app.engine.wait_idle().await;
    let channel = chat
        .channels()
        .into_iter()
        .find(|c| c.incident)
        .expect("an incident channel was opened");
    assert_eq!(channel.id, "inc-1-api-script-alert-1-script-down");
    assert!(
        channel.members.contains(&"carol".to_string()),
        "{channel:?}"
    );
    assert!(channel.topic.contains("INC-1 P1"), "{}", channel.topic);
    let opening = in_channel(&chat, &channel.id);
    assert!(
        opening.iter().any(|m| m.text.contains("Runbook checklist")),
        "{opening:?}"
    );
    let announced = in_channel(&chat, "incidents");
    assert!(
        announced
            .iter()
            .any(|m| m.text.contains("INC-1 P1 declared") && m.text.contains(&channel.id)),
        "{announced:?}"
    );
    for m in chat.messages() {
        assert!(!m.html.contains("<script>"), "unescaped: {}", m.html);
    }

    // Fifteen minutes on, the update arrives in the channel while the page watches.
    bot.advance(chrono::Duration::minutes(15));
    assert_eq!(scheduler.tick().await, 1);
    let update = next_message(&mut live, "the status update", |m| {
        m.text.contains("status update —")
    })
    .await;
    assert_eq!(update.channel, channel.id);
    assert!(update.text.contains("INC-1"), "{}", update.text);
    bot.finish().await;
}
