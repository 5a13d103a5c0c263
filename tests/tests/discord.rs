//! Discord end to end: the bot's real HTTP server driven with interactions signed by a test
//! Ed25519 key and shaped like Discord's own (tests/fixtures/discord), serenity's HTTP client
//! pointed at a fake Discord that keeps a small guild and records every call.

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use erlmcp_adapters::discord::config::DiscordSection;
use erlmcp_adapters::slack::config::SlackSection;
use erlmcp_adapters::target::Progress;
use erlmcp_bot::app::{self, App};
use erlmcp_bot::clock::{Clock, ManualClock};
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::platforms::edit_section;
use erlmcp_bot::server;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::approval::RequestState;
use erlmcp_commands::config::{Config, Secret};
use erlmcp_tests::fake_discord::{APPLICATION_ID, FakeDiscord, FakeMessage, GUILD_ID};
use erlmcp_tests::fake_slack::FakeSlack;
use erlmcp_tests::harness::{embedded_config, start_time, test_options};
use serde_json::{Value, json};

/// The test application's key: RFC 8032's TEST 1 seed, so the fixtures' signatures verify.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

const ALICE: &str = "310000000000000001";
const BOB: &str = "310000000000000002";
const DAVE: &str = "310000000000000004";
const MALLORY: &str = "310000000000000009";
/// The guild role the configuration gives `devops-lead`.
const LEADS_ROLE: &str = "320000000000000001";
const OTHER_ROLE: &str = "320000000000000002";

fn key() -> SigningKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(SEED, &mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/discord/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn discord_config(fake: &FakeDiscord) -> Config {
    let mut cfg = embedded_config();
    edit_section(&mut cfg, |s: &mut DiscordSection| {
        s.enabled = true;
        s.bot_token = Secret::new("test-bot-token");
        s.application_id = Some(APPLICATION_ID.into());
        s.public_key = Some(hex::encode(key().verifying_key().to_bytes()));
        s.guild_id = Some(GUILD_ID.into());
        s.api_url = Some(fake.api_url());
    });
    let add = |cfg: &mut Config, role: &str, id: String| {
        cfg.roles.get_mut(role).unwrap().push(id);
    };
    add(
        &mut cfg,
        "devops-lead",
        format!("discord-role:{LEADS_ROLE}"),
    );
    add(&mut cfg, "change-board", format!("discord:{BOB}"));
    add(&mut cfg, "engineer", format!("discord:{DAVE}"));
    // Alice on Discord is the same person as local:alice.
    cfg.people
        .get_mut("alice")
        .unwrap()
        .push(format!("discord:{ALICE}"));
    cfg
}

#[derive(Clone, Copy)]
enum Signing {
    Valid,
    /// Signed correctly, this many seconds away from the bot's now.
    Skewed(i64),
    Forged,
    Unsigned,
}

struct DiscordBot {
    app: Arc<App>,
    store: Arc<dyn Store>,
    clock: ManualClock,
    fake: FakeDiscord,
    channel: String,
    base: String,
    http: reqwest::Client,
    _db: testdb::TempDb,
}

impl DiscordBot {
    async fn start() -> DiscordBot {
        DiscordBot::start_with(|_, _| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut Config, &FakeDiscord)) -> DiscordBot {
        let fake = FakeDiscord::start().await;
        let channel = fake.add_channel("deploys");
        let (store, db) = testdb::fresh_sqlite().await;
        let store: Arc<dyn Store> = Arc::new(store);
        let clock = ManualClock::new(start_time());
        let mut cfg = discord_config(&fake);
        tweak(&mut cfg, &fake);
        let app = app::build(cfg, store.clone(), Arc::new(clock.clone()), test_options())
            .await
            .expect("bot builds");
        let app = Arc::new(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = server::router(app.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        DiscordBot {
            app,
            store,
            clock,
            fake,
            channel,
            base,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    async fn idle(&self) {
        self.app.engine.wait_idle().await;
        let panics = self.app.engine.take_panics();
        assert!(panics.is_empty(), "background work panicked: {panics:?}");
    }

    /// Posts a body to the endpoint; registers its token with the fake as Discord would.
    async fn send(&self, body: &str, signing: Signing) -> (u16, Value) {
        if let Ok(v) = serde_json::from_str::<Value>(body)
            && let (Some(token), Some(channel)) = (v["token"].as_str(), v["channel_id"].as_str())
        {
            self.fake.issue_token(token, channel);
        }
        let now = self.clock.now().timestamp();
        let mut req = self
            .http
            .post(format!("{}/discord/interactions", self.base))
            .header("content-type", "application/json");
        let sign = |key: &SigningKey, ts: i64| {
            let mut message = ts.to_string().into_bytes();
            message.extend_from_slice(body.as_bytes());
            hex::encode(key.sign(&message).to_bytes())
        };
        match signing {
            Signing::Valid | Signing::Skewed(_) => {
                let ts = match signing {
                    Signing::Skewed(by) => now + by,
                    _ => now,
                };
                req = req
                    .header("X-Signature-Timestamp", ts.to_string())
                    .header("X-Signature-Ed25519", sign(&key(), ts));
            }
            Signing::Forged => {
                let other = SigningKey::from_bytes(&[7u8; 32]);
                req = req
                    .header("X-Signature-Timestamp", now.to_string())
                    .header("X-Signature-Ed25519", sign(&other, now));
            }
            Signing::Unsigned => {}
        }
        let resp = req
            .body(body.to_string())
            .send()
            .await
            .expect("bot answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn member(&self, user: &str, name: &str, roles: &[&str]) -> Value {
        json!({
            "user": {"id": user, "username": name, "discriminator": "0", "avatar": null, "global_name": null},
            "roles": roles,
            "nick": null,
            "permissions": "2147483647",
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "pending": false,
        })
    }

    /// `/erlmcp PATH… options…` by `user` in the deploys channel.
    fn command(&self, user: &str, roles: &[&str], path: &[&str], options: Value) -> String {
        let id = self.fake.snowflake();
        let mut inner = json!({"name": path.last().unwrap(), "type": 1, "options": options});
        if path.len() == 2 {
            inner = json!({"name": path[0], "type": 2, "options": [inner]});
        }
        json!({
            "type": 2,
            "id": id,
            "application_id": APPLICATION_ID,
            "token": format!("token-{id}"),
            "version": 1,
            "guild_id": GUILD_ID,
            "channel_id": self.channel,
            "member": self.member(user, &format!("user{}", &user[user.len() - 1..]), roles),
            "locale": "en-US",
            "data": {"id": "771825006014889984", "name": "erlmcp", "type": 1, "options": [inner]},
        })
        .to_string()
    }

    /// `user` clicks the button `custom_id` on `message`.
    fn click(&self, user: &str, roles: &[&str], custom_id: &str, message: &FakeMessage) -> String {
        let id = self.fake.snowflake();
        json!({
            "type": 3,
            "id": id,
            "application_id": APPLICATION_ID,
            "token": format!("token-{id}"),
            "version": 1,
            "guild_id": GUILD_ID,
            "channel_id": message.channel_id,
            "member": self.member(user, "clicker", roles),
            "message": {"id": message.id, "channel_id": message.channel_id, "content": "", "embeds": [], "components": []},
            "data": {"custom_id": custom_id, "component_type": 2},
        })
        .to_string()
    }

    /// Runs a command as a local user, outside Discord (setting the scene).
    async fn local(&self, who: &str, text: &str) {
        struct Quiet;
        impl Progress for Quiet {
            fn report(&self, _: String) {}
        }
        let engine = &self.app.engine;
        engine
            .handle(Invocation {
                actor: engine.actor("local", who, who, &[]),
                channel: "local:test".into(),
                text: text.into(),
                progress: Arc::new(Quiet),
            })
            .await;
        self.idle().await;
    }

    fn message(&self, id: &str) -> FakeMessage {
        self.fake
            .messages()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no message {id}"))
    }

    fn by_token(&self, body: &str) -> Vec<FakeMessage> {
        let v: Value = serde_json::from_str(body).unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        self.fake
            .messages()
            .into_iter()
            .filter(|m| m.token.as_deref() == Some(token.as_str()))
            .collect()
    }

    async fn executed(&self, id: RequestId) -> usize {
        self.store
            .audit_tail(1000)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.entry.action == "executed" && r.entry.request_id == Some(id))
            .count()
    }

    /// Staging has had v3.0.1 for a day: production may take it.
    async fn soaked(&self) {
        self.local("dave", "deploy staging v3.0.1").await;
        self.clock.advance(chrono::Duration::hours(25));
    }

    /// Alice (a devops lead by her Discord role) asks for v3.0.1 in production; returns the
    /// card message and the request.
    async fn production_card(&self) -> (FakeMessage, RequestId) {
        self.soaked().await;
        let body = self.command(
            ALICE,
            &[LEADS_ROLE],
            &["deploy"],
            json!([
                {"name": "environment", "type": 3, "value": "production"},
                {"name": "version", "type": 3, "value": "v3.0.1"},
                {"name": "reason", "type": 3, "value": "release @everyone"},
            ]),
        );
        let (status, answer) = self.send(&body, Signing::Valid).await;
        assert_eq!(status, 200);
        assert_eq!(answer["type"], 5, "a deploy is deferred: {answer}");
        self.idle().await;
        let answers = self.by_token(&body);
        assert_eq!(answers.len(), 1, "the deferred answer became the card");
        let card = answers[0].clone();
        let title = card.embeds[0]["title"].as_str().unwrap().to_string();
        let id: i64 = title
            .trim_start_matches("R-")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (card, RequestId(id))
    }
}

fn buttons(m: &FakeMessage) -> Vec<String> {
    m.components
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|b| b["custom_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_bad_signatures_with_401() {
    let bot = DiscordBot::start().await;
    let ping =
        json!({"type": 1, "id": "1", "application_id": APPLICATION_ID, "token": "t", "version": 1})
            .to_string();
    let (status, answer) = bot.send(&ping, Signing::Valid).await;
    assert_eq!((status, answer["type"].clone()), (200, json!(1)));

    let command = bot.command(DAVE, &[], &["whoami"], json!([]));
    for signing in [
        Signing::Forged,
        Signing::Unsigned,
        Signing::Skewed(-301),
        Signing::Skewed(301),
    ] {
        let (status, _) = bot.send(&command, signing).await;
        assert_eq!(status, 401);
    }
    // The documented payload, signed as Discord signs it, verifies but names an unknown
    // command; a body that is not JSON is a 400.
    let (status, _) = bot.send("{not json", Signing::Valid).await;
    assert_eq!(status, 400);
    let (status, answer) = bot
        .send(
            &fixture("application_command_interaction.json"),
            Signing::Valid,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["data"]["flags"], 64,
        "refusals are ephemeral: {answer}"
    );
    bot.idle().await;
    assert!(
        bot.fake
            .calls()
            .iter()
            .all(|c| !c.method.eq("POST") || c.route.contains("commands")),
        "nothing was posted"
    );

    // A captured request sent again is refused, and runs once.
    let (status, first) = bot.send(&command, Signing::Valid).await;
    assert_eq!(status, 200);
    assert_eq!(first["type"], 4, "whoami is answered at once: {first}");
    assert_eq!(first["data"]["flags"], 64);
    let (status, _) = bot.send(&command, Signing::Valid).await;
    assert_eq!(status, 401);
    bot.idle().await;
}

#[tokio::test]
async fn a_production_deploy_is_deferred_then_becomes_a_card_with_two_buttons() {
    let bot = DiscordBot::start().await;
    let (card, id) = bot.production_card().await;
    assert_eq!(
        buttons(&card),
        [format!("erlmcp:approve:{id}"), format!("erlmcp:deny:{id}")]
    );
    // The Change Board member is pinged; the reason's @everyone is not.
    assert!(
        card.content.contains(&format!("<@{BOB}>")),
        "{}",
        card.content
    );
    assert_eq!(card.allowed_mentions["users"], json!([BOB]));
    assert_eq!(card.allowed_mentions["parse"], json!([]));
    let row = bot.store.get_request(id).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Pending);
    assert_eq!(
        row.message_ref.unwrap().id,
        card.id,
        "the card is remembered for redraws"
    );
}

#[tokio::test]
async fn an_allowed_click_executes_once_and_the_card_loses_its_buttons() {
    let bot = DiscordBot::start().await;
    let (card, id) = bot.production_card().await;
    let approve = format!("erlmcp:approve:{id}");
    let click = bot.click(BOB, &[], &approve, &card);
    let (status, answer) = bot.send(&click, Signing::Valid).await;
    assert_eq!(status, 200);
    assert!(
        matches!(answer["type"].as_u64(), Some(6) | Some(7)),
        "{answer}"
    );
    bot.idle().await;
    assert_eq!(bot.executed(id).await, 1);
    let row = bot.store.get_request(id).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Succeeded);
    let redrawn = bot.message(&card.id);
    assert!(redrawn.edits >= 1);
    assert!(buttons(&redrawn).is_empty(), "buttons removed once decided");

    // The same delivery again is refused; a second click runs nothing.
    let (status, _) = bot.send(&click, Signing::Valid).await;
    assert_eq!(status, 401);
    let again = bot.click(BOB, &[], &approve, &card);
    let (status, answer) = bot.send(&again, Signing::Valid).await;
    assert_eq!(status, 200);
    bot.idle().await;
    assert_eq!(bot.executed(id).await, 1, "executed once: {answer}");
}

#[tokio::test]
async fn the_requester_clicking_gets_a_private_refusal_and_nothing_changes() {
    let bot = DiscordBot::start().await;
    let (card, id) = bot.production_card().await;
    let click = bot.click(ALICE, &[LEADS_ROLE], &format!("erlmcp:approve:{id}"), &card);
    let (status, answer) = bot.send(&click, Signing::Valid).await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64);
    bot.idle().await;
    let row = bot.store.get_request(id).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Pending);
    assert_eq!(bot.executed(id).await, 0);
    let after = bot.message(&card.id);
    assert_eq!(buttons(&after).len(), 2, "still open");
    assert_eq!(after.embeds, card.embeds, "the card says the same");
}

#[tokio::test]
async fn a_mapped_role_grants_and_its_absence_refuses() {
    let bot = DiscordBot::start().await;
    let restart = |user: &str, roles: &[&str]| {
        bot.command(
            user,
            roles,
            &["restart"],
            json!([{"name": "environment", "type": 3, "value": "staging"}]),
        )
    };
    let refused = restart(MALLORY, &[OTHER_ROLE]);
    let (status, answer) = bot.send(&refused, Signing::Valid).await;
    assert_eq!(status, 200);
    bot.idle().await;
    // Refused privately: in the response itself, or as an ephemeral follow-up.
    let private =
        answer["data"]["flags"] == 64 || bot.by_token(&refused).iter().any(|m| m.flags & 64 != 0);
    assert!(private, "{answer}");

    let allowed = restart(MALLORY, &[LEADS_ROLE]);
    let (status, answer) = bot.send(&allowed, Signing::Valid).await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 5, "a restart is deferred: {answer}");
    bot.idle().await;
    // It ran: the operation's message and its outcome are in the channel, and the
    // "thinking…" placeholder is gone.
    let in_channel: Vec<String> = bot
        .fake
        .world()
        .messages_in(&bot.channel)
        .iter()
        .map(|m| m.content.clone())
        .collect();
    assert!(
        in_channel.iter().any(|m| m.contains("restart")),
        "{in_channel:#?}"
    );
    // The placeholder is removed by a task of its own once the command is over.
    let removed = || {
        !bot.fake
            .world()
            .calls_to("DELETE /webhooks/{id}/{token}/messages/@original")
            .is_empty()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !removed() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(removed());
}

#[tokio::test]
async fn interactions_from_another_guild_are_refused() {
    let bot = DiscordBot::start().await;
    let mut body: Value =
        serde_json::from_str(&bot.command(DAVE, &[], &["whoami"], json!([]))).unwrap();
    body["guild_id"] = json!("999");
    let (status, answer) = bot.send(&body.to_string(), Signing::Valid).await;
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("another Discord server")
    );
}

#[tokio::test]
async fn an_incident_declared_from_slack_also_opens_a_discord_channel() {
    let slack = FakeSlack::start().await;
    let bot = DiscordBot::start_with(|cfg, _| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.enabled = true;
            s.bot_token = Secret::new("xoxb-fake");
            s.signing_secret = Secret::new("s");
            s.api_url = Some(slack.api_url());
        });
        cfg.roles
            .get_mut("oncall")
            .unwrap()
            .push("slack:U0CAROL".into());
    })
    .await;
    struct Quiet;
    impl Progress for Quiet {
        fn report(&self, _: String) {}
    }
    let engine = &bot.app.engine;
    engine
        .handle(Invocation {
            actor: engine.actor("slack", "U0CAROL", "carol", &[]),
            channel: "slack:C111".into(),
            text: "incident declare P1 Checkout errors on EU-West".into(),
            progress: Arc::new(Quiet),
        })
        .await;
    bot.idle().await;
    let w = bot.fake.world();
    let channel = w
        .channel_named("inc-1-checkout-errors-on-eu-west")
        .unwrap_or_else(|| panic!("no Discord channel: {:#?}", w.channels))
        .clone();
    assert!(channel.topic.contains("INC-1"), "{}", channel.topic);
    assert!(
        !w.messages_in(&channel.id).is_empty(),
        "the checklist is posted there"
    );
}
