//! DR failover through the real engine: the strictest rule (two approvals; on-call alone
//! only during a P0), and a failover that says so on the status page and on the incident's
//! timeline and channel.

use std::sync::Arc;

use erlmcp_adapters::chat::Platform;
use erlmcp_bot::app;
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::store::testdb::{self, TempDb};
use erlmcp_bot::store::{SqliteStore, Store};
use erlmcp_commands::config::{Config, Secret, StatusPageSection};
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_tests::fake_chat::FakeChat;
use erlmcp_tests::harness::{Bot, Lines, embedded_config, start_time, test_options};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GENERAL: &str = "CGENERAL";

async fn statuspage() -> MockServer {
    let server = MockServer::start().await;
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
    server
}

fn config(sp: &MockServer) -> Config {
    let mut cfg = embedded_config();
    for (role, id) in [
        ("engineer", "slack:UDAVE"),
        ("oncall", "slack:UCAROL"),
        ("devops-lead", "slack:UALICE"),
        ("change-board", "slack:UBOB"),
    ] {
        cfg.roles.get_mut(role).unwrap().push(id.into());
    }
    cfg.statuspage = StatusPageSection {
        api_key: Secret::new("sp-key"),
        page_id: Some("PG1".into()),
        api_url: Some(sp.uri()),
    };
    cfg
}

async fn bot(sp: &MockServer, chat: &FakeChat) -> (Bot, Arc<dyn Store>, TempDb) {
    let (url, dir) = testdb::fresh_sqlite_url();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("sqlite opens"));
    let mut opts = test_options();
    opts.chats = vec![Arc::new(chat.clone())];
    let clock = ManualClock::new(start_time());
    let app = app::build(config(sp), store.clone(), Arc::new(clock.clone()), opts)
        .await
        .expect("bot builds");
    (
        Bot {
            app,
            clock,
            progress: Lines::default(),
            chats: vec![chat.clone()],
        },
        store,
        dir,
    )
}

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

async fn statuspage_patches(sp: &MockServer) -> Vec<Value> {
    sp.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .collect()
}

#[tokio::test]
async fn failover_needs_two_approvals_outside_a_p0() {
    let sp = statuspage().await;
    let chat = FakeChat::new(Platform::Slack);
    let (bot, _, _dir) = bot(&sp, &chat).await;

    let r = say(&bot, "carol", GENERAL, "dr failover prod").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let card = r.approval().expect("an approval card").clone();
    assert_eq!(card.requirement.count, 2, "{card:?}");

    let r = say(&bot, "carol", GENERAL, &format!("approve {}", card.id)).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    let r = say(&bot, "alice", GENERAL, &format!("approve {}", card.id)).await;
    assert!(
        matches!(r.kind, ReplyKind::Ok | ReplyKind::Accepted),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("DR failover of production"),
        "{}",
        r.text()
    );
    let r = say(&bot, "bob", GENERAL, &format!("approve {}", card.id)).await;
    assert!(
        r.text().contains("sandbox: DR failover of production"),
        "{}",
        r.text()
    );
    // No incident open: no status page touched.
    assert!(statuspage_patches(&sp).await.is_empty());
    chat.calls();
    bot.finish().await;
}

#[tokio::test]
async fn during_a_p0_on_call_fails_over_at_once_and_the_status_page_says_so() {
    let sp = statuspage().await;
    let chat = FakeChat::new(Platform::Slack);
    let (bot, store, _dir) = bot(&sp, &chat).await;

    // A P1 is not enough for break-glass on this rule.
    let r = say(&bot, "dave", GENERAL, "incident declare P1 EU latency").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = say(&bot, "carol", GENERAL, "dr failover prod").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let r = say(&bot, "carol", GENERAL, "incident severity --id INC-1 P0").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());

    let r = say(&bot, "carol", GENERAL, "dr failover prod eu-west-1 down").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("sandbox: DR failover of production"),
        "{}",
        r.text()
    );

    let patches = statuspage_patches(&sp).await;
    assert!(
        patches
            .iter()
            .any(|p| p["incident"]["body"] == "Failing over to DR region"),
        "{patches:#?}"
    );
    let audit = store.audit_page(0, 1000).await.unwrap();
    assert!(
        audit.iter().any(|a| a.entry.operation == "dr.failover"
            && a.entry.decision == "break_glass"
            && a.entry.action == "executed"),
        "{audit:#?}"
    );
    let timeline = say(&bot, "dave", GENERAL, "incident timeline INC-1").await;
    assert!(
        timeline
            .text()
            .contains("Failing over to DR region: R-2 dr failover prod eu-west-1 down"),
        "{}",
        timeline.text()
    );
    let channel_posts: Vec<String> = chat
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            erlmcp_tests::fake_chat::ChatCall::Post { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        channel_posts
            .iter()
            .any(|t| t.starts_with("Failing over to DR region")),
        "{channel_posts:#?}"
    );
    bot.finish().await;
}
