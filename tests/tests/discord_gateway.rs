//! Discord in gateway mode, end to end: serenity's real gateway client, told where to
//! connect by `GET /gateway` on the fake Discord's REST API, holds a WebSocket to a fake
//! gateway (plain ws:// on loopback) that dispatches INTERACTION_CREATE; the bot answers
//! through the interactions' callback endpoint and its REST calls, as in HTTP mode. Only the
//! leader replica connects, and a replica that loses leadership disconnects.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_adapters::discord::config::DiscordSection;
use erlmcp_adapters::target::Progress;
use erlmcp_bot::app::{self, App};
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::leader::{Backend, Candidate, Leadership};
use erlmcp_bot::metrics::Metrics;
use erlmcp_bot::platforms::edit_section;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::{Config, Secret};
use erlmcp_tests::fake_discord::{APPLICATION_ID, Call, FakeDiscord, GUILD_ID};
use erlmcp_tests::fake_discord_gateway::FakeGateway;
use erlmcp_tests::harness::{embedded_config, start_time, test_options};
use serde_json::{Value, json};

const ALICE: &str = "310000000000000001";
const BOB: &str = "310000000000000002";
const DAVE: &str = "310000000000000004";
const LEADS_ROLE: &str = "320000000000000001";

const CALLBACK: &str = "POST /interactions/{id}/{token}/callback";
const WAIT: Duration = Duration::from_secs(30);

fn gateway_config(fake: &FakeDiscord) -> Config {
    let mut cfg = embedded_config();
    edit_section(&mut cfg, |s: &mut DiscordSection| {
        s.enabled = true;
        s.mode = Some("gateway".into());
        s.bot_token = Secret::new("test-bot-token");
        s.application_id = Some(APPLICATION_ID.into());
        s.guild_id = Some(GUILD_ID.into());
        s.api_url = Some(fake.api_url());
    });
    cfg.roles
        .get_mut("devops-lead")
        .unwrap()
        .push(format!("discord-role:{LEADS_ROLE}"));
    cfg.roles
        .get_mut("change-board")
        .unwrap()
        .push(format!("discord:{BOB}"));
    cfg.roles
        .get_mut("engineer")
        .unwrap()
        .push(format!("discord:{DAVE}"));
    cfg
}

struct World {
    fake: FakeDiscord,
    gateway: FakeGateway,
    channel: String,
    store: Arc<dyn Store>,
    clock: ManualClock,
    cfg: Config,
    _db: testdb::TempDb,
}

impl World {
    async fn start() -> World {
        let fake = FakeDiscord::start().await;
        let gateway = FakeGateway::start().await;
        fake.set_gateway_url(&gateway.url());
        let channel = fake.add_channel("deploys");
        let (store, db) = testdb::fresh_sqlite().await;
        let cfg = gateway_config(&fake);
        World {
            fake,
            gateway,
            channel,
            store: Arc::new(store),
            clock: ManualClock::new(start_time()),
            cfg,
            _db: db,
        }
    }

    /// A replica on the shared database and clock.
    async fn replica(&self) -> Arc<App> {
        let app = app::build(
            self.cfg.clone(),
            self.store.clone(),
            Arc::new(self.clock.clone()),
            test_options(),
        )
        .await
        .expect("bot builds");
        Arc::new(app)
    }

    fn member(user: &str, roles: &[&str]) -> Value {
        json!({
            "user": {"id": user, "username": format!("user{}", &user[user.len() - 1..]),
                     "discriminator": "0", "avatar": null, "global_name": null},
            "roles": roles,
            "nick": null,
            "avatar": null,
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "premium_since": null,
            "deaf": false, "mute": false, "flags": 0, "pending": false,
            "permissions": "2147483647",
            "communication_disabled_until": null,
        })
    }

    /// `/erlmcp SUB options…` as the gateway sends it, every field Discord documents
    /// present, so serenity reads it as a typed interaction.
    fn command(&self, user: &str, roles: &[&str], sub: &str, options: Value) -> Value {
        let id = self.fake.snowflake();
        json!({
            "type": 2,
            "id": id,
            "application_id": APPLICATION_ID,
            "token": format!("token-{id}"),
            "version": 1,
            "guild_id": GUILD_ID,
            "channel_id": self.channel,
            "channel": {"id": self.channel, "type": 0, "name": "deploys"},
            "member": World::member(user, roles),
            "app_permissions": "2147483647",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10485760,
            "data": {"id": "771825006014889984", "name": "erlmcp", "type": 1,
                     "options": [{"name": sub, "type": 1, "options": options}]},
        })
    }

    /// A click on a button of `message`, with only the fields the bot reads: serenity's
    /// model does not accept it, and it arrives untyped.
    fn click(&self, user: &str, custom_id: &str, message: &str) -> Value {
        let id = self.fake.snowflake();
        json!({
            "type": 3,
            "id": id,
            "application_id": APPLICATION_ID,
            "token": format!("token-{id}"),
            "guild_id": GUILD_ID,
            "channel_id": self.channel,
            "member": {"user": {"id": user, "username": "clicker"}, "roles": []},
            "message": {"id": message, "channel_id": self.channel},
            "data": {"custom_id": custom_id, "component_type": 2},
        })
    }

    /// Dispatches an interaction (its token issued as Discord would); returns its token.
    fn dispatch(&self, interaction: &Value) -> String {
        let token = interaction["token"].as_str().unwrap().to_string();
        self.fake.issue_token(&token, &self.channel);
        let sent = self
            .gateway
            .dispatch("INTERACTION_CREATE", interaction.clone());
        assert_eq!(sent, 1, "one session gets it");
        token
    }

    fn callbacks(&self, token: &str) -> Vec<Call> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.route == CALLBACK && c.path.contains(token))
            .collect()
    }

    /// The response sent for the interaction with `token`.
    async fn response(&self, token: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(call) = self.callbacks(token).first() {
                assert_eq!(call.status, 204, "{call:?}");
                return call.body.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no response for {token}: {:#?}",
                self.fake.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
}

async fn idle(app: &App) {
    app.engine.wait_idle().await;
    let panics = app.engine.take_panics();
    assert!(panics.is_empty(), "background work panicked: {panics:?}");
}

fn buttons(components: &Value) -> usize {
    components
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row["components"].as_array().map_or(0, Vec::len))
        .sum()
}

#[tokio::test]
async fn gateway_interactions_take_the_same_path_and_are_answered_by_callback() {
    let world = World::start().await;
    let app = world.replica().await;
    assert!(app.discord.is_none(), "no endpoint in gateway mode");
    let gateway = app
        .discord_gateway
        .clone()
        .expect("a gateway in gateway mode");
    let leadership = Leadership::single("replica-a", Metrics::new());
    let held = erlmcp_bot::discord::hold_gateway(gateway.clone(), leadership.watch());
    assert!(world.gateway.wait_sessions(1, WAIT).await, "connected");
    let identify = world.gateway.connections()[0].identify.clone().unwrap();
    assert_eq!(identify["intents"], 0, "no intents: {identify}");
    assert!(
        identify["token"]
            .as_str()
            .unwrap()
            .ends_with("test-bot-token")
    );

    // Typed by serenity (every documented field present): answered at once, privately.
    let whoami = world.command(DAVE, &[], "whoami", json!([]));
    assert!(
        serde_json::from_value::<serenity::all::Interaction>(whoami.clone()).is_ok(),
        "serenity reads this one itself"
    );
    let token = world.dispatch(&whoami);
    let answer = world.response(&token).await;
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("engineer"),
        "{answer}"
    );

    // A production deploy: deferred, then the approval card in place of "thinking…".
    struct Quiet;
    impl Progress for Quiet {
        fn report(&self, _: String) {}
    }
    app.engine
        .handle(Invocation {
            actor: app.engine.actor("local", "dave", "dave", &[]),
            channel: "local:test".into(),
            text: "deploy staging v3.0.1".into(),
            progress: Arc::new(Quiet),
        })
        .await;
    idle(&app).await;
    world.clock.advance(chrono::Duration::hours(25));
    let mut deploy = world.command(
        ALICE,
        &[LEADS_ROLE],
        "deploy",
        json!([
            {"name": "environment", "type": 3, "value": "production"},
            {"name": "version", "type": 3, "value": "v3.0.1"},
        ]),
    );
    // Without the fields serenity insists on: it comes through untyped, read the same.
    deploy
        .as_object_mut()
        .unwrap()
        .remove("attachment_size_limit");
    assert!(serde_json::from_value::<serenity::all::Interaction>(deploy.clone()).is_err());
    let token = world.dispatch(&deploy);
    let answer = world.response(&token).await;
    assert_eq!(answer["type"], 5, "a deploy is deferred: {answer}");
    idle(&app).await;
    let card = world
        .fake
        .messages()
        .into_iter()
        .find(|m| m.token.as_deref() == Some(token.as_str()))
        .expect("the card replaces the deferred answer");
    assert_eq!(buttons(&card.components), 2);
    let title = card.embeds[0]["title"].as_str().unwrap().to_string();
    let id = RequestId(
        title
            .trim_start_matches("R-")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    );

    // Bob approves with a click: executed once, the card loses its buttons.
    let click = world.click(BOB, &format!("erlmcp:approve:{id}"), &card.id);
    let token = world.dispatch(&click);
    let answer = world.response(&token).await;
    assert!(
        matches!(answer["type"].as_u64(), Some(6) | Some(7)),
        "{answer}"
    );
    idle(&app).await;
    assert_eq!(world.executed(id).await, 1);
    let redrawn = world
        .fake
        .messages()
        .into_iter()
        .find(|m| m.id == card.id)
        .unwrap();
    assert_eq!(buttons(&redrawn.components), 0, "decided: buttons gone");

    // The same event again (as after a resumed session): nothing runs, nothing answers.
    world.gateway.dispatch("INTERACTION_CREATE", click.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    idle(&app).await;
    assert_eq!(world.executed(id).await, 1);
    assert_eq!(world.callbacks(&token).len(), 1, "answered once");

    // Shutdown: the connection is closed cleanly before leadership goes.
    gateway.close().await;
    assert!(world.gateway.wait_sessions(0, WAIT).await);
    assert_eq!(world.gateway.connections()[0].close_code, Some(1000));
    held.abort();
    leadership.release(Duration::from_secs(10)).await;
}

/// One lock for the replicas of a test: whoever holds it leads; the test can hand it over.
#[derive(Clone, Default)]
struct SharedLock(Arc<Mutex<Option<&'static str>>>);

impl SharedLock {
    fn give_to(&self, who: &'static str) {
        *self.0.lock().unwrap() = Some(who);
    }
}

struct Replica {
    me: &'static str,
    lock: SharedLock,
}

#[async_trait]
impl Candidate for Replica {
    async fn round(&mut self) -> Result<bool, String> {
        let mut holder = self.lock.0.lock().unwrap();
        let holder = holder.get_or_insert(self.me);
        Ok(*holder == self.me)
    }
    async fn resign(&mut self) {
        let mut holder = self.lock.0.lock().unwrap();
        if *holder == Some(self.me) {
            *holder = None;
        }
    }
    fn period(&self) -> Duration {
        Duration::from_millis(50)
    }
}

#[tokio::test]
async fn only_the_leader_connects_and_a_lost_leadership_disconnects() {
    let world = World::start().await;
    let lock = SharedLock::default();
    let (a, b) = (world.replica().await, world.replica().await);
    let lead = |me: &'static str| {
        Leadership::campaign(
            Backend::Postgres,
            me,
            Box::new(Replica {
                me,
                lock: lock.clone(),
            }),
            Metrics::new(),
        )
    };
    let leader_a = lead("a").await;
    let leader_b = lead("b").await;
    assert!(leader_a.is_leader() && !leader_b.is_leader());
    let held_a =
        erlmcp_bot::discord::hold_gateway(a.discord_gateway.clone().unwrap(), leader_a.watch());
    let held_b =
        erlmcp_bot::discord::hold_gateway(b.discord_gateway.clone().unwrap(), leader_b.watch());
    assert!(world.gateway.wait_sessions(1, WAIT).await);
    // A while later still one connection: the follower never dialled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.gateway.connections().len(), 1);

    let whoami = world.command(DAVE, &[], "whoami", json!([]));
    let token = world.dispatch(&whoami);
    assert_eq!(world.response(&token).await["type"], 4);

    // Leadership moves to b: a's connection closes, b's opens.
    lock.give_to("b");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = world.gateway.connections();
        if c.len() == 2 && !c[0].open && c[1].open && c[1].identify.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handover: {c:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.gateway.connections()[0].close_code, Some(1000));
    assert!(!leader_a.is_leader() && leader_b.is_leader());
    let whoami = world.command(DAVE, &[], "whoami", json!([]));
    let token = world.dispatch(&whoami);
    assert_eq!(world.response(&token).await["type"], 4);
    idle(&a).await;
    idle(&b).await;

    held_a.abort();
    held_b.abort();
    leader_a.release(Duration::from_secs(10)).await;
    leader_b.release(Duration::from_secs(10)).await;
}

/// The same with PostgreSQL's advisory lock deciding: two replicas on one database, one
/// connection; the leader shutting down hands the connection to the other.
#[tokio::test]
async fn on_postgres_one_replica_holds_the_gateway_and_hands_it_over_at_shutdown() {
    let Some(url) = testdb::fresh_postgres_url("discord_gateway_leader").await else {
        return;
    };
    let world = World::start().await;
    let (a, b) = (world.replica().await, world.replica().await);
    let campaign = |me: &'static str| {
        let url = url.clone();
        async move {
            let lock = erlmcp_bot::leader::postgres::AdvisoryLock::new(
                &url,
                erlmcp_bot::leader::postgres::LEADER_LOCK,
                Duration::from_millis(100),
            )
            .unwrap();
            Leadership::campaign(Backend::Postgres, me, Box::new(lock), Metrics::new()).await
        }
    };
    let leader_a = campaign("a").await;
    let leader_b = campaign("b").await;
    assert!(leader_a.is_leader() && !leader_b.is_leader());
    let gateway_a = a.discord_gateway.clone().unwrap();
    let held_a = erlmcp_bot::discord::hold_gateway(gateway_a.clone(), leader_a.watch());
    let held_b =
        erlmcp_bot::discord::hold_gateway(b.discord_gateway.clone().unwrap(), leader_b.watch());
    assert!(world.gateway.wait_sessions(1, WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.gateway.connections().len(), 1, "the follower waits");

    // a shuts down as on SIGTERM: connection closed, then leadership released.
    gateway_a.close().await;
    held_a.abort();
    leader_a.release(Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = world.gateway.connections();
        if c.len() == 2 && c[1].open && c[1].identify.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handover: {c:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.gateway.connections()[0].close_code, Some(1000));
    let whoami = world.command(DAVE, &[], "whoami", json!([]));
    let token = world.dispatch(&whoami);
    assert_eq!(world.response(&token).await["type"], 4);
    idle(&b).await;
    held_b.abort();
    leader_b.release(Duration::from_secs(10)).await;
    testdb::drop_postgres_database(&url).await;
}
