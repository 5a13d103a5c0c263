//! Discord's outbound half against the fake Discord, through the real serenity HTTP client:
//! command registration, approval cards with buttons edited in place, progress threads,
//! incident channels, who a message may ping, and 429s.

use std::time::{Duration, Instant};

use erlmcp_adapters::chat::{ChatPlatform, MessageRef, Platform};
use erlmcp_adapters::discord::commands::{CommandModel, ModelContext};
use erlmcp_adapters::discord::render::{Vote, custom_id};
use erlmcp_adapters::discord::rest::{RestOptions, default_retry};
use erlmcp_adapters::discord::{DiscordOptions, DiscordPlatform};
use erlmcp_adapters::retry::RetryPolicy;
use erlmcp_commands::RequestId;
use erlmcp_commands::policy::ApprovalRequirement;
use erlmcp_commands::render::{ApprovalCard, Reply};
use erlmcp_tests::fake_discord::{APPLICATION_ID, Failure, FakeDiscord, GUILD_ID};
use serde_json::json;

fn platform(fake: &FakeDiscord, retry: RetryPolicy) -> DiscordPlatform {
    DiscordPlatform::new(DiscordOptions {
        rest: RestOptions {
            api_url: fake.api_url(),
            bot_token: "test-bot-token".into(),
            application_id: APPLICATION_ID.parse().unwrap(),
            retry,
            client: None,
        },
        guild_id: Some(GUILD_ID.parse().unwrap()),
        incidents_category: None,
    })
    .unwrap()
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
        ..default_retry()
    }
}

fn model() -> CommandModel {
    CommandModel::from_grammar(&ModelContext {
        command: "/erlmcp".into(),
        environments: vec![
            ("production".into(), vec!["prod".into()]),
            ("staging".into(), vec!["stg".into()]),
        ],
    })
}

fn card(state: &str) -> Reply {
    Reply::pending(ApprovalCard {
        id: RequestId(7),
        what: "deploy production v3.0.1".into(),
        requester: "ana".into(),
        environment: Some("production".into()),
        version: Some("v3.0.1".into()),
        requirement: ApprovalRequirement {
            count: 1,
            from: vec!["change-board".into()],
        },
        approvers: vec![],
        plan: vec![],
        approvals: vec![],
        met: vec![],
        expires_at: chrono::Utc::now(),
        state: state.into(),
        state_detail: None,
    })
}

#[tokio::test]
async fn registration_is_guild_scoped_and_skipped_when_unchanged() {
    let fake = FakeDiscord::start().await;
    let discord = platform(&fake, quick_retry());
    let model = model();
    let first = discord.register(&model, false).await.unwrap();
    assert!(first.changed);
    assert_eq!(first.scope, format!("guild {GUILD_ID}"));
    assert!(
        first
            .lines
            .iter()
            .any(|l| l == "/erlmcp deploy environment version [strategy] [dry-run] [reason]"),
        "{:#?}",
        first.lines
    );
    assert!(
        first
            .lines
            .iter()
            .any(|l| l == "/erlmcp incident declare severity title")
    );
    let stored = fake.world().commands.get(GUILD_ID).cloned().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["name"], "erlmcp");
    assert!(!fake.world().commands.contains_key("global"));

    let again = discord.register(&model, false).await.unwrap();
    assert!(
        !again.changed,
        "an unchanged command is not registered again"
    );
    let puts = fake
        .world()
        .calls_to("PUT /applications/{id}/guilds/{id}/commands")
        .len();
    assert_eq!(puts, 1);

    assert!(discord.register(&model, true).await.unwrap().changed);
    let puts = fake
        .world()
        .calls_to("PUT /applications/{id}/guilds/{id}/commands")
        .len();
    assert_eq!(puts, 2);
    // Every call carried the bot token.
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.auth.as_deref() == Some("Bot test-bot-token"))
    );
}

#[tokio::test]
async fn an_approval_card_has_two_buttons_until_it_is_decided() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel("deploys");
    let discord = platform(&fake, quick_retry());
    let posted = discord.post(&channel, &card("pending")).await.unwrap();
    assert_eq!(posted.platform, Platform::Discord);
    let message = fake
        .messages()
        .into_iter()
        .find(|m| m.id == posted.id)
        .unwrap();
    let buttons = &message.components[0]["components"];
    assert_eq!(buttons.as_array().unwrap().len(), 2);
    assert_eq!(
        buttons[0]["custom_id"],
        custom_id(Vote::Approve, RequestId(7))
    );
    assert_eq!(buttons[1]["custom_id"], custom_id(Vote::Deny, RequestId(7)));
    assert_eq!(buttons[0]["label"], "Approve");
    assert!(
        message.embeds[0]["title"]
            .as_str()
            .unwrap()
            .starts_with("R-7")
    );
    assert_eq!(
        message.allowed_mentions,
        json!({"parse": [], "users": [], "roles": []})
    );

    discord.update(&posted, &card("succeeded")).await.unwrap();
    let message = fake
        .messages()
        .into_iter()
        .find(|m| m.id == posted.id)
        .unwrap();
    assert_eq!(message.edits, 1);
    assert_eq!(
        message.components,
        json!([]),
        "buttons are gone once decided"
    );
    assert!(
        message.embeds[0]["description"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );
}

#[tokio::test]
async fn progress_goes_into_one_thread_under_the_message() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel("deploys");
    let discord = platform(&fake, quick_retry());
    let parent = discord
        .post(&channel, &Reply::ok("deploying"))
        .await
        .unwrap();
    for line in ["step 1/2", "step 2/2", "done"] {
        discord
            .post_in_thread(&parent, &Reply::ok(line))
            .await
            .unwrap();
    }
    let w = fake.world();
    assert_eq!(
        w.calls_to("POST /channels/{id}/messages/{id}/threads")
            .len(),
        1
    );
    let in_thread: Vec<&str> = w
        .messages_in(&parent.id)
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(in_thread, ["step 1/2", "step 2/2", "done"]);
    assert_eq!(
        w.channels[&parent.id].parent_id.as_deref(),
        Some(channel.as_str())
    );
}

#[tokio::test]
async fn incident_channels_are_named_for_discord_and_get_their_topic() {
    let fake = FakeDiscord::start().await;
    let category = fake.add_channel("incidents");
    let discord = DiscordPlatform::new(DiscordOptions {
        incidents_category: Some(category.parse().unwrap()),
        ..platform_options(&fake)
    })
    .unwrap();
    let id = discord
        .create_channel("inc-7 Checkout errors on EU-West!")
        .await
        .unwrap();
    discord.set_topic(&id, "P1 · commander ana").await.unwrap();
    let w = fake.world();
    let created = &w.channels[&id];
    assert_eq!(created.name, "inc-7-checkout-errors-on-eu-west");
    assert_eq!(created.topic, "P1 · commander ana");
    assert_eq!(created.parent_id.as_deref(), Some(category.as_str()));
}

fn platform_options(fake: &FakeDiscord) -> DiscordOptions {
    DiscordOptions {
        rest: RestOptions {
            api_url: fake.api_url(),
            bot_token: "test-bot-token".into(),
            application_id: APPLICATION_ID.parse().unwrap(),
            retry: quick_retry(),
            client: None,
        },
        guild_id: Some(GUILD_ID.parse().unwrap()),
        incidents_category: None,
    }
}

#[tokio::test]
async fn a_429_through_a_proxy_is_retried_here_and_delivered_once() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel("deploys");
    let discord = platform(&fake, quick_retry());
    fake.fail_next(
        "POST /channels/{id}/messages",
        Failure::RateLimited {
            retry_after: 0.05,
            global: false,
        },
    );
    discord.post(&channel, &Reply::ok("hello")).await.unwrap();
    let w = fake.world();
    let posts = w.calls_to("POST /channels/{id}/messages");
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert_eq!(w.messages_in(&channel).len(), 1, "delivered once");
    drop(w);
    assert_eq!(discord.rest().rate_limited(), 1);
}

#[tokio::test]
async fn a_failure_that_outlasts_the_retries_is_an_error_not_silence() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel("deploys");
    let retry = RetryPolicy {
        attempts: 2,
        ..quick_retry()
    };
    let discord = platform(&fake, retry);
    for _ in 0..2 {
        fake.fail_next(
            "POST /channels/{id}/messages",
            Failure::RateLimited {
                retry_after: 0.01,
                global: false,
            },
        );
    }
    let err = discord
        .post(&channel, &Reply::ok("hello"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("send_message") && text.contains("429"),
        "{text}"
    );
    assert!(!text.contains("test-bot-token"));
    assert!(fake.world().messages_in(&channel).is_empty());
    // A channel that does not exist is refused at once.
    let missing = MessageRef {
        platform: Platform::Discord,
        channel: "1".into(),
        id: "2".into(),
    };
    assert!(discord.update(&missing, &Reply::ok("x")).await.is_err());
}

/// serenity's own limiter only talks to https://discord.com, so the fake stands in for it
/// over TLS: the 429's `Retry-After` is waited out by serenity and the message is posted once.
#[tokio::test]
async fn serenitys_limiter_waits_out_retry_after_against_discord_itself() {
    let fake = FakeDiscord::start_tls().await;
    let channel = fake.add_channel("deploys");
    let discord = DiscordPlatform::new(DiscordOptions {
        rest: RestOptions {
            api_url: "https://discord.com/api/v10/".into(),
            bot_token: "test-bot-token".into(),
            application_id: APPLICATION_ID.parse().unwrap(),
            retry: quick_retry(),
            client: Some(fake.discord_com_client()),
        },
        guild_id: Some(GUILD_ID.parse().unwrap()),
        incidents_category: None,
    })
    .unwrap();
    assert!(!discord.rest().is_proxied());
    fake.fail_next(
        "POST /channels/{id}/messages",
        Failure::RateLimited {
            retry_after: 0.4,
            global: false,
        },
    );
    let started = Instant::now();
    discord.post(&channel, &Reply::ok("hello")).await.unwrap();
    let w = fake.world();
    let posts = w.calls_to("POST /channels/{id}/messages");
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let gap = posts[1].at.duration_since(posts[0].at);
    // A lower bound only: a loaded machine may wait longer, never shorter.
    assert!(gap >= Duration::from_millis(390), "retried after {gap:?}");
    assert!(started.elapsed() >= Duration::from_millis(390));
    assert_eq!(w.messages_in(&channel).len(), 1);
    // serenity retried it itself: nothing came back to be retried here.
    drop(w);
    assert_eq!(discord.rest().rate_limited(), 0);
}

/// A burst of bot-token calls keeps under Discord's global 50 a second, counted where
/// Discord would count them: at the server, per one-second window.
#[tokio::test]
async fn a_burst_of_calls_keeps_under_the_global_limit() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel("deploys");
    let discord = platform(&fake, quick_retry());
    let sends = (0..120).map(|i| {
        let discord = &discord;
        let channel = &channel;
        async move { discord.post(channel, &Reply::ok(format!("line {i}"))).await }
    });
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok));
    let w = fake.world();
    assert_eq!(w.messages_in(&channel).len(), 120, "every message, once");
    let mut at: Vec<Instant> = w
        .calls_to("POST /channels/{id}/messages")
        .iter()
        .map(|c| c.at)
        .collect();
    drop(w);
    at.sort();
    let busiest = at
        .iter()
        .map(|start| {
            at.iter()
                .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= 50,
        "{busiest} calls reached Discord within one second"
    );
    // Paced, not refused: the calls spread over more than two seconds.
    assert!(at[at.len() - 1].duration_since(at[0]) >= Duration::from_secs(2));
}
