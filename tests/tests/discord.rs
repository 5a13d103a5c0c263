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

/// A bot on `store` serving its endpoint on a fresh port.
async fn serve(cfg: &Config, store: Arc<dyn Store>, clock: &ManualClock) -> (Arc<App>, String) {
    let app = app::build(cfg.clone(), store, Arc::new(clock.clone()), test_options())
        .await
        .expect("bot builds");
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = server::router(app.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (app, base)
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
    cfg: Config,
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
        let (app, base) = serve(&cfg, store.clone(), &clock).await;
        DiscordBot {
            app,
            store,
            clock,
            fake,
            channel,
            base,
            http: reqwest::Client::new(),
            cfg,
            _db: db,
        }
    }

    /// Another replica: its own process state (and replay memory), the same database,
    /// clock and Discord. Returns it with the base URL of its endpoint.
    async fn replica(&self) -> (Arc<App>, String) {
        serve(&self.cfg, self.store.clone(), &self.clock).await
    }

    async fn idle(&self) {
        self.app.engine.wait_idle().await;
        let panics = self.app.engine.take_panics();
        assert!(panics.is_empty(), "background work panicked: {panics:?}");
    }

    /// Posts a body to the endpoint; registers its token with the fake as Discord would.
    async fn send(&self, body: &str, signing: Signing) -> (u16, Value) {
        self.send_to(&self.base, body, signing).await
    }

    /// Posts a body to the endpoint at `base` (this replica's or another's).
    async fn send_to(&self, base: &str, body: &str, signing: Signing) -> (u16, Value) {
        if let Ok(v) = serde_json::from_str::<Value>(body)
            && let (Some(token), Some(channel)) = (v["token"].as_str(), v["channel_id"].as_str())
        {
            self.fake.issue_token(token, channel);
        }
        let now = self.clock.now().timestamp();
        let mut req = self
            .http
            .post(format!("{base}/discord/interactions"))
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

#[tokio::test]
async fn a_replay_at_another_replica_is_refused_and_changes_nothing() {
    let bot = DiscordBot::start().await;
    let (other, other_base) = bot.replica().await;
    bot.soaked().await;
    let body = bot.command(
        ALICE,
        &[LEADS_ROLE],
        &["deploy"],
        json!([
            {"name": "environment", "type": 3, "value": "production"},
            {"name": "version", "type": 3, "value": "v3.0.1"},
        ]),
    );
    let (status, answer) = bot.send(&body, Signing::Valid).await;
    assert_eq!((status, answer["type"].clone()), (200, json!(5)));
    bot.idle().await;
    let card = bot.by_token(&body);
    assert_eq!(card.len(), 1, "the card");
    let calls_before = bot.fake.calls().len();

    // The same signed request, captured and sent to the other replica within the five
    // minutes: that replica has never seen it, the shared store has.
    let (status, answer) = bot.send_to(&other_base, &body, Signing::Valid).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "interaction already received");
    other.engine.wait_idle().await;
    bot.idle().await;
    assert!(other.engine.take_panics().is_empty());
    // Nothing ran and nothing was said: no second request, no call to Discord (the first
    // delivery's "thinking…" answer is not deleted, the card not touched).
    let pending = bot.store.pending_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "one request: {pending:#?}");
    assert!(
        bot.store
            .get_request(RequestId(pending[0].id.0 + 1))
            .await
            .unwrap()
            .is_none()
    );
    let calls = bot.fake.calls();
    assert_eq!(calls.len(), calls_before, "{:#?}", &calls[calls_before..]);
    assert_eq!(bot.message(&card[0].id), card[0]);

    // A fresh interaction at the other replica works as at the first.
    let whoami = bot.command(DAVE, &[], &["whoami"], json!([]));
    let (status, answer) = bot.send_to(&other_base, &whoami, Signing::Valid).await;
    assert_eq!(
        (status, answer["type"].clone()),
        (200, json!(4)),
        "{answer}"
    );
    other.engine.wait_idle().await;
}

#[tokio::test]
async fn after_the_tokens_fifteen_minutes_the_outcome_goes_to_the_channel() {
    let bot = DiscordBot::start().await;
    // The incident's Discord channel is made while the command runs: held, it keeps the
    // command running while the clock passes the token's 15 minutes.
    let release = bot.fake.hold("POST /guilds/{id}/channels");
    let body = bot.command(
        DAVE,
        &[],
        &["incident", "declare"],
        json!([
            {"name": "severity", "type": 3, "value": "P2"},
            {"name": "title", "type": 3, "value": "Search is slow"},
        ]),
    );
    let (status, answer) = bot.send(&body, Signing::Valid).await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 5, "deferred while it runs: {answer}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    bot.clock.advance(chrono::Duration::minutes(16));
    bot.fake.expire_token(&token);
    release.send_replace(true);
    bot.idle().await;

    let w = bot.fake.world();
    let with_token: Vec<&str> = w
        .calls
        .iter()
        .filter(|c| c.path.contains(&token))
        .map(|c| c.route.as_str())
        .collect();
    assert!(
        with_token.is_empty(),
        "nothing goes through the dead token: {with_token:?}"
    );
    let posted: Vec<&str> = w
        .messages_in(&bot.channel)
        .iter()
        .filter(|m| m.token.is_none())
        .map(|m| m.content.as_str())
        .collect();
    assert!(
        posted
            .iter()
            .any(|m| m.contains("declared") && m.contains("Search is slow")),
        "the outcome is posted in the channel with the bot token: {posted:#?}"
    );
    let posts = w.calls_to("POST /channels/{id}/messages");
    assert!(
        posts
            .iter()
            .any(|c| c.path == format!("/channels/{}/messages", bot.channel)
                && c.auth.as_deref() == Some("Bot test-bot-token")),
        "{posts:#?}"
    );
}

/// What is logged, kept to be read back.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_429_is_retried_counted_on_metrics_and_logged_with_the_request() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    // Process-wide, so that spans entered on any thread count: the only subscriber of this
    // test binary (the other tests' lines land here too, and are not looked at).
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let bot = DiscordBot::start().await;
    // The daemon installs its metrics as the adapters' observer at start; this test binary
    // has no other installer.
    erlmcp_adapters::observe::install(bot.app.metrics.clone());
    bot.fake.fail_next(
        "PATCH /webhooks/{id}/{token}/messages/@original",
        erlmcp_tests::fake_discord::Failure::RateLimited {
            retry_after: 0.05,
            global: false,
        },
    );
    let (card, id) = bot.production_card().await;
    let edits: Vec<u16> = bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.route == "PATCH /webhooks/{id}/{token}/messages/@original")
        .map(|c| c.status)
        .collect();
    assert_eq!(edits, [429, 200], "retried once");
    assert_eq!(buttons(&card).len(), 2, "delivered once, whole");

    let metrics = bot
        .http
        .get(format!("{}/metrics", bot.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"erlmcp_bot_api_calls_total{platform="discord",status="rate_limited"} 1"#),
        "{metrics}"
    );
    let waits = metrics
        .lines()
        .find(|l| l.starts_with(r#"erlmcp_bot_rate_limit_waits_total{platform="discord"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(waits >= 1, "{metrics}");

    let logged = logs.text();
    let retry = logged
        .lines()
        .find(|l| l.contains("discord call failed; retrying"))
        .unwrap_or_else(|| panic!("no retry logged: {logged}"));
    assert!(retry.contains("429"), "{retry}");
    assert!(retry.contains(&format!("request={id}")), "{logged}");
    assert!(!logged.contains("test-bot-token"), "no token in logs");
}
