//! Slack end to end: the bot's real HTTP server driven with signed requests shaped like
//! Slack's own payloads (tests/fixtures/slack), slack-morphism pointed at a fake Slack that
//! records every call, and Socket Mode against a fake WebSocket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use erlmcp_adapters::chat::Platform;
use erlmcp_adapters::slack;
use erlmcp_adapters::slack::config::SlackSection;
use erlmcp_bot::app::{self, App};
use erlmcp_bot::clock::{Clock, ManualClock};
use erlmcp_bot::platforms::edit_section;
use erlmcp_bot::server;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::{Config, Secret};
use erlmcp_tests::fake_slack::{Failure, FakeSlack, FakeSocketMode};
use erlmcp_tests::harness::{embedded_config, start_time, test_options};
use serde_json::{Value, json};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const WAIT: Duration = Duration::from_secs(10);
const CHANNEL: &str = "C111";

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/slack/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The embedded default with Slack identities: alice leads DevOps, the Change Board is a
/// Slack user group, W111/U111/W222 (the fixtures' users) are engineers.
fn slack_config(fake: &FakeSlack) -> Config {
    let mut cfg = embedded_config();
    edit_section(&mut cfg, |s: &mut SlackSection| {
        s.enabled = true;
        s.bot_token = Secret::new("xoxb-fake");
        s.signing_secret = Secret::new(SECRET);
        s.api_url = Some(fake.api_url());
        s.mode = Some("http".into());
    });
    let add = |cfg: &mut Config, role: &str, ids: &[&str]| {
        cfg.roles
            .get_mut(role)
            .unwrap()
            .extend(ids.iter().map(|s| s.to_string()));
    };
    add(&mut cfg, "devops-lead", &["slack:U0ALICE"]);
    add(&mut cfg, "change-board", &["slack-group:S0CAB"]);
    add(
        &mut cfg,
        "engineer",
        &["slack:W111", "slack:U111", "slack:W222"],
    );
    cfg
}

#[derive(Clone, Copy)]
enum Signing {
    Valid,
    /// Signed correctly, at this many seconds from the bot's now.
    Skewed(i64),
    Forged,
    Unsigned,
}

struct SlackBot {
    app: Arc<App>,
    store: Arc<dyn Store>,
    clock: ManualClock,
    fake: FakeSlack,
    base: String,
    http: reqwest::Client,
    _db: Option<testdb::TempDb>,
}

impl SlackBot {
    async fn start() -> SlackBot {
        SlackBot::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut Config)) -> SlackBot {
        let fake = FakeSlack::start().await;
        fake.add_group("S0CAB", &["U0BOB"]);
        let (store, db) = testdb::fresh_sqlite().await;
        let clock = ManualClock::new(start_time());
        SlackBot::replica(fake, Arc::new(store), Some(db), clock, tweak).await
    }

    /// A bot on `store`, talking to `fake`: one of several replicas when they share both.
    async fn replica(
        fake: FakeSlack,
        store: Arc<dyn Store>,
        db: Option<testdb::TempDb>,
        clock: ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> SlackBot {
        let mut cfg = slack_config(&fake);
        tweak(&mut cfg);
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
        SlackBot {
            app,
            store,
            clock,
            fake,
            base,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    /// Waits until the engine has nothing left to do (commands, their Slack tasks and
    /// background work), and fails when any of that panicked.
    async fn idle(&self) {
        self.app.engine.wait_idle().await;
        let panics = self.app.engine.take_panics();
        assert!(panics.is_empty(), "background work panicked: {panics:?}");
    }

    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        signing: Signing,
    ) -> reqwest::Response {
        self.send_with(path, body, content_type, signing, &[]).await
    }

    async fn send_with(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        signing: Signing,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let now = self.clock.now().timestamp();
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type);
        match signing {
            Signing::Valid | Signing::Skewed(_) => {
                let ts = match signing {
                    Signing::Skewed(by) => now + by,
                    _ => now,
                };
                req = req
                    .header("X-Slack-Request-Timestamp", ts.to_string())
                    .header(
                        "X-Slack-Signature",
                        slack::sign(SECRET.as_bytes(), ts, &body),
                    );
            }
            Signing::Forged => {
                req = req
                    .header("X-Slack-Request-Timestamp", now.to_string())
                    .header(
                        "X-Slack-Signature",
                        slack::sign(b"not the secret", now, &body),
                    );
            }
            Signing::Unsigned => {}
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.expect("bot answers")
    }

    /// `user` types `/erlmcp TEXT` in C111; returns the HTTP answer and how long it took.
    async fn slash(&self, user: &str, text: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let resp = self
            .send(
                "/slack/commands",
                slash_body(user, text, &self.fake.response_url(&format!("cmd-{user}")))
                    .into_bytes(),
                "application/x-www-form-urlencoded",
                Signing::Valid,
            )
            .await;
        let elapsed = started.elapsed();
        (resp.status().as_u16(), resp.text().await.unwrap(), elapsed)
    }

    async fn click(&self, user: &str, approve: bool, request: &str, message_ts: &str) -> u16 {
        let body = click_body(
            user,
            approve,
            request,
            message_ts,
            &self.fake.response_url(&format!("click-{user}")),
        );
        self.send(
            "/slack/interactions",
            body.into_bytes(),
            "application/x-www-form-urlencoded",
            Signing::Valid,
        )
        .await
        .status()
        .as_u16()
    }

    async fn executions(&self, request: RequestId) -> usize {
        self.store
            .audit_page(0, 100_000)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.entry.action == "executing" && r.entry.request_id == Some(request))
            .count()
    }

    async fn audit_len(&self) -> usize {
        self.store.audit_page(0, 100_000).await.unwrap().len()
    }

    /// Waits for a message in a thread containing `needle` (outcome lines).
    async fn thread_message_containing(
        &self,
        needle: &str,
    ) -> erlmcp_tests::fake_slack::FakeMessage {
        self.fake
            .wait_for(
                WAIT,
                &format!("a threaded message containing {needle:?}"),
                |f| {
                    f.messages()
                        .into_iter()
                        .find(|m| m.thread_ts.is_some() && m.text.contains(needle))
                },
            )
            .await
    }

    /// Waits for an in-channel message (top level or in a thread) containing `needle`.
    async fn message_containing(&self, needle: &str) -> erlmcp_tests::fake_slack::FakeMessage {
        self.fake
            .wait_for(WAIT, &format!("a message containing {needle:?}"), |f| {
                f.messages().into_iter().find(|m| m.text.contains(needle))
            })
            .await
    }

    async fn response_containing(&self, needle: &str) -> Value {
        self.fake
            .wait_for(
                WAIT,
                &format!("a response_url post containing {needle:?}"),
                |f| {
                    f.calls_to("response_url")
                        .into_iter()
                        .map(|c| c.params)
                        .find(|p| p["text"].as_str().is_some_and(|t| t.contains(needle)))
                },
            )
            .await
    }
}

/// A `trigger_id` of its own for each request Slack would send (a replay reuses one).
fn trigger_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("111.{n}.xxx")
}

/// Slack's slash command form (bolt-python's fixture) with our user, channel, text and a
/// response_url on the fake.
fn slash_body(user: &str, text: &str, response_url: &str) -> String {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_str(&fixture("slash_command_bolt_python.form.txt")).unwrap();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "user_id" => user.to_string(),
                "user_name" => user.to_lowercase(),
                "channel_id" => CHANNEL.to_string(),
                "command" => "/erlmcp".to_string(),
                "text" => text.to_string(),
                "response_url" => response_url.to_string(),
                "trigger_id" => trigger_id(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    serde_urlencoded::to_string(fields).unwrap()
}

/// Slack's block_actions payload (bolt-python's fixture) as a click on one of our buttons.
fn click_body(
    user: &str,
    approve: bool,
    request: &str,
    message_ts: &str,
    response_url: &str,
) -> String {
    let mut p: Value = serde_json::from_str(&fixture("block_actions_bolt_python.json")).unwrap();
    p["user"]["id"] = json!(user);
    p["user"]["username"] = json!(user.to_lowercase());
    p["container"]["message_ts"] = json!(message_ts);
    p["container"]["channel_id"] = json!(CHANNEL);
    p["container"]["is_ephemeral"] = json!(false);
    p["channel"]["id"] = json!(CHANNEL);
    p["response_url"] = json!(response_url);
    p["trigger_id"] = json!(trigger_id());
    let action = &mut p["actions"][0];
    action["action_id"] = json!(if approve {
        "erlmcp_approve"
    } else {
        "erlmcp_deny"
    });
    action["value"] = json!(request);
    action["text"]["text"] = json!(if approve { "Approve" } else { "Deny" });
    serde_urlencoded::to_string([("payload", p.to_string())]).unwrap()
}

fn buttons(blocks: &Option<Value>) -> Vec<Value> {
    blocks
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn slacks_documented_signing_example_verifies() {
    let example: Value = serde_json::from_str(&fixture("signing_example.json")).unwrap();
    let body = fixture("signing_example.body.txt");
    assert_eq!(
        body,
        example["body"].as_str().unwrap(),
        "the body file holds the exact bytes"
    );
    let secret = example["signing_secret"].as_str().unwrap().as_bytes();
    let ts = example["x_slack_request_timestamp"].as_str().unwrap();
    let sig = example["x_slack_signature"].as_str().unwrap();
    let at: i64 = ts.parse().unwrap();
    assert_eq!(
        slack::verify_signature(secret, ts, sig, body.as_bytes(), at),
        Ok(())
    );
    assert_eq!(slack::sign(secret, at, body.as_bytes()), sig);
    // The same request replayed later than five minutes is refused.
    assert_eq!(
        slack::verify_signature(secret, ts, sig, body.as_bytes(), at + 301),
        Err(slack::SignatureError::Stale)
    );
    // One byte changed.
    let tampered = body.replacen("roadrunner", "roadrunnes", 1);
    assert_eq!(
        slack::verify_signature(secret, ts, sig, tampered.as_bytes(), at),
        Err(slack::SignatureError::Mismatch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_are_acknowledged_at_once_and_answered() {
    let bot = SlackBot::start().await;

    // A parse error is answered in the acknowledgement itself, only to the requester.
    let (status, body, took) = bot.slash("W111", "Hi").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["response_type"], "ephemeral", "{ack}");
    assert!(
        ack["text"]
            .as_str()
            .unwrap()
            .contains("unknown command \"Hi\""),
        "{ack}"
    );

    // A read: empty acknowledgement, then the answer through response_url (ephemeral).
    let (status, body, took) = bot.slash("W111", "status staging").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(took < Duration::from_secs(1), "{took:?}");
    let answer = bot.response_containing("staging [sandbox]").await;
    assert_eq!(answer["replace_original"], false);
    assert_ne!(answer["response_type"], "in_channel");

    // An operation: progress in a thread under its message, the outcome in the channel.
    let (status, body, took) = bot.slash("W111", "deploy staging v3.0.1").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["response_type"], "ephemeral", "{ack}");
    assert!(
        ack["text"].as_str().unwrap().starts_with("Working on"),
        "{ack}"
    );
    let header = bot.message_containing("deploy staging v3.0.1").await;
    assert_eq!(header.channel, CHANNEL);
    assert_eq!(header.thread_ts, None);
    let outcome = bot.thread_message_containing("staging runs v3.0.1").await;
    assert_eq!(
        outcome.thread_ts.as_deref(),
        Some(header.ts.as_str()),
        "the outcome line is in the thread"
    );
    let thread: Vec<_> = bot
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(header.ts.as_str()))
        .collect();
    assert!(
        thread.iter().any(|m| m.text.contains("3 of 3")),
        "{thread:?}"
    );
    // The operation's message now says how it ended.
    let header = bot
        .fake
        .wait_for(WAIT, "the header redrawn with the outcome", |f| {
            f.messages()
                .into_iter()
                .find(|m| m.ts == header.ts && m.text.contains("staging runs v3.0.1"))
        })
        .await;
    assert_eq!(header.edits, 1);
    for call in bot.fake.calls() {
        if call.method != "response_url" {
            assert_eq!(
                call.auth.as_deref(),
                Some("Bearer xoxb-fake"),
                "{}",
                call.method
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_vote_update_in_place_and_execute_once() {
    let bot = SlackBot::start().await;
    bot.slash("W111", "deploy staging v3.0.1").await;
    bot.message_containing("staging runs v3.0.1").await;
    bot.clock.advance(chrono::Duration::hours(24));

    let (status, _, _) = bot
        .slash("U0ALICE", "deploy production v3.0.1 release 3.0.1")
        .await;
    assert_eq!(status, 200);
    let approval = bot
        .fake
        .wait_for(WAIT, "the approval message", |f| {
            f.messages()
                .into_iter()
                .find(|m| buttons(&m.blocks).len() == 2)
        })
        .await;
    assert_eq!(approval.channel, CHANNEL);
    let b = buttons(&approval.blocks);
    assert_eq!(b[0]["action_id"], "erlmcp_approve");
    assert_eq!(b[1]["action_id"], "erlmcp_deny");
    let request = b[0]["value"].as_str().unwrap().to_string();
    assert_eq!(b[1]["value"], request.as_str());
    let blocks = approval.blocks.as_ref().unwrap().to_string();
    for expected in [
        "production",
        "v3.0.1",
        "change-board",
        "<!subteam^S0CAB>",
        "soaked in staging",
        "CI green",
        "Expires",
        "U0ALICE",
    ] {
        assert!(
            blocks.contains(expected),
            "{expected} missing from {blocks}"
        );
    }
    let id = RequestId(request.trim_start_matches("R-").parse().unwrap());
    let stored = format!("slack:{CHANNEL}:{}", approval.ts);
    // The command's task stores where its message is before it ends.
    bot.idle().await;
    let message_ref = bot
        .store
        .get_request(id)
        .await
        .unwrap()
        .and_then(|r| r.message_ref);
    assert_eq!(message_ref.map(|m| m.encode()), Some(stored));

    // The requester clicks Approve: an ephemeral refusal, and nothing else changes.
    let audit_before = bot.audit_len().await;
    assert_eq!(
        bot.click("U0ALICE", true, &request, &approval.ts).await,
        200
    );
    let refusal = bot.response_containing("you requested").await;
    assert_eq!(refusal["replace_original"], false);
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    let row = bot.store.get_request(id).await.unwrap().unwrap();
    assert_eq!(row.state.as_str(), "pending");
    assert!(
        bot.fake
            .calls_to("chat.update")
            .iter()
            .all(|c| c.params["ts"] != approval.ts.as_str())
    );
    // Only the refused vote itself is on record.
    assert_eq!(bot.audit_len().await, audit_before + 1);

    // A Change Board member (through the Slack user group) clicks Approve, and Slack
    // delivers that click twice at once.
    let (a, b) = tokio::join!(
        bot.click("U0BOB", true, &request, &approval.ts),
        bot.click("U0BOB", true, &request, &approval.ts)
    );
    assert_eq!((a, b), (200, 200));
    let done = bot
        .fake
        .wait_for(WAIT, "the approval message redrawn as succeeded", |f| {
            f.messages()
                .into_iter()
                .find(|m| m.ts == approval.ts && m.text.contains("succeeded"))
        })
        .await;
    assert!(
        buttons(&done.blocks).is_empty(),
        "buttons are gone once decided: {:?}",
        done.blocks
    );
    assert!(
        done.edits >= 2,
        "redrawn as the vote arrived and when executed: {}",
        done.edits
    );
    bot.message_containing("production runs v3.0.1").await;
    // The duplicate click was answered privately; the deploy ran once.
    bot.fake
        .wait_for(WAIT, "the duplicate click's answer", |f| {
            f.calls_to("response_url")
                .into_iter()
                .find(|c| c.params["_key"] == "click-U0BOB")
        })
        .await;
    assert_eq!(bot.executions(id).await, 1);
    let votes = bot.store.votes(id).await.unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].voter.user_id, "U0BOB");
    // Group membership was read once and then served from the cache.
    assert_eq!(bot.fake.calls_to("usergroups.users.list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_stale_and_malformed_requests_change_nothing() {
    let bot = SlackBot::start().await;
    let audit = bot.audit_len().await;
    let form = "application/x-www-form-urlencoded";
    let deploy = slash_body(
        "W111",
        "deploy development v9.9.9",
        &bot.fake.response_url("x"),
    )
    .into_bytes();
    let click = click_body("W111", true, "R-1", "1.2", &bot.fake.response_url("x")).into_bytes();
    let event = fixture("event_callback_app_mention.json").into_bytes();

    for path in ["/slack/commands", "/slack/interactions", "/slack/events"] {
        let body = match path {
            "/slack/commands" => deploy.clone(),
            "/slack/interactions" => click.clone(),
            _ => event.clone(),
        };
        for (signing, why) in [
            (Signing::Forged, "forged"),
            (Signing::Skewed(-301), "stale"),
            (Signing::Skewed(301), "from the future"),
            (Signing::Unsigned, "unsigned"),
        ] {
            let resp = bot.send(path, body.clone(), form, signing).await;
            assert_eq!(resp.status().as_u16(), 401, "{path} {why}");
        }
        // Only one of the two headers.
        let resp = bot
            .send_with(
                path,
                body.clone(),
                form,
                Signing::Unsigned,
                &[("X-Slack-Signature", "v0=00")],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 401, "{path} without a timestamp");
        // A signature over different bytes.
        let now = bot.clock.now().timestamp();
        let resp = bot
            .http
            .post(format!("{}{path}", bot.base))
            .header("X-Slack-Request-Timestamp", now.to_string())
            .header(
                "X-Slack-Signature",
                slack::sign(SECRET.as_bytes(), now, b"something else"),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} body swapped");
        // Correctly signed but not UTF-8.
        let resp = bot
            .send(path, vec![0xff, 0xfe, b'a', 0x80], form, Signing::Valid)
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{path} non-UTF-8");
        assert!(resp.text().await.unwrap().contains("UTF-8"));
    }

    let bad = [
        ("/slack/commands", "{\"user_id\":\"W111\"}", "missing field"),
        (
            "/slack/commands",
            "text=deploy+development+v1&channel_id=C1",
            "missing field user_id",
        ),
        ("/slack/interactions", "token=x&team_id=T1", "no payload"),
        ("/slack/interactions", "payload=%7Bnot+json", "not JSON"),
        (
            "/slack/interactions",
            "payload=%7B%22type%22%3A%22block_actions%22%7D",
            "user.id",
        ),
        ("/slack/events", "{\"type\":\"event_callback\"", "not JSON"),
        (
            "/slack/events",
            "{\"type\":\"event_callback\",\"event\":{}}",
            "event_id",
        ),
        (
            "/slack/events",
            "{\"type\":\"url_verification\"}",
            "challenge",
        ),
    ];
    for (path, body, reason) in bad {
        let resp = bot
            .send(path, body.as_bytes().to_vec(), form, Signing::Valid)
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{path} {body}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(reason), "{path} {body}: {text}");
    }

    // Nothing ran, nothing was recorded, nothing was said.
    bot.idle().await;
    assert_eq!(bot.audit_len().await, audit);
    assert!(bot.store.pending_requests().await.unwrap().is_empty());
    assert!(bot.fake.calls().is_empty(), "{:?}", bot.fake.calls());
    let health = bot
        .http
        .get(format!("{}/healthz", bot.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried_and_delivered_once() {
    let bot = SlackBot::start().await;
    bot.fake.fail_next(
        "chat.postMessage",
        vec![
            Failure::RateLimited(1),
            Failure::ServerError,
            Failure::ServerError,
        ],
    );
    bot.slash("W111", "deploy development v3.0.2").await;
    bot.thread_message_containing("development runs v3.0.2")
        .await;
    let posts = bot.fake.calls_to("chat.postMessage");
    let statuses: Vec<u16> = posts.iter().map(|c| c.status).collect();
    assert_eq!(&statuses[..4], &[429, 500, 500, 200], "{statuses:?}");
    assert!(
        posts[1].at.duration_since(posts[0].at) >= Duration::from_millis(990),
        "Retry-After: 1 honoured: {:?}",
        posts[1].at.duration_since(posts[0].at)
    );
    // The message that met the failures was the operation's first, and it exists once.
    assert!(
        posts[3].params["text"]
            .as_str()
            .unwrap()
            .contains("deploy development v3.0.2")
    );
    let top_level: Vec<_> = bot
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect();
    assert_eq!(top_level.len(), 1, "{top_level:?}");
    assert!(
        posts[..3].iter().all(|c| c.params == posts[3].params),
        "the same message was retried"
    );
    assert!(
        !bot.app
            .metrics
            .encode()
            .contains("chat_delivery_failures_total{platform=\"slack\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_slack_refuses_is_logged_and_counted() {
    let bot = SlackBot::start().await;
    bot.fake
        .fail_always("chat.postMessage", Failure::Api("channel_not_found".into()));
    bot.slash("W111", "deploy development v3.0.3").await;
    bot.idle().await;
    let text = bot
        .http
        .get(format!("{}/metrics", bot.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("erlmcp_bot_chat_delivery_failures_total{platform=\"slack\"}"))
        .unwrap_or_else(|| panic!("no delivery failure counted:\n{text}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
    // Refusals are final: no retries.
    let posts = bot.fake.calls_to("chat.postMessage");
    assert!(posts.iter().all(|c| c.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_url_verification_and_mentions_run_once_across_retries() {
    let bot = SlackBot::start().await;
    let json_ct = "application/json";

    let challenge: Value = serde_json::from_str(&fixture("url_verification.json")).unwrap();
    let resp = bot
        .send(
            "/slack/events",
            fixture("url_verification.json").into_bytes(),
            json_ct,
            Signing::Valid,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["challenge"], challenge["challenge"]);

    let mut event: Value =
        serde_json::from_str(&fixture("event_callback_app_mention.json")).unwrap();
    event["event"]["text"] = json!("<@W111> deploy development v3.0.5");
    let body = event.to_string().into_bytes();
    let first = bot
        .send("/slack/events", body.clone(), json_ct, Signing::Valid)
        .await;
    assert_eq!(first.status().as_u16(), 200);
    let retry = bot
        .send_with(
            "/slack/events",
            body.clone(),
            json_ct,
            Signing::Valid,
            &[
                ("X-Slack-Retry-Num", "1"),
                ("X-Slack-Retry-Reason", "http_timeout"),
            ],
        )
        .await;
    assert_eq!(retry.status().as_u16(), 200);
    let outcome = bot
        .thread_message_containing("development runs v3.0.5")
        .await;
    assert_eq!(
        outcome.thread_ts.as_deref(),
        Some("1595926230.009600"),
        "answered under the mention"
    );
    // The retry's task, had one been started, would have run by now.
    bot.idle().await;
    let deploys = bot
        .store
        .audit_page(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.entry.action == "executing" && r.entry.environment.as_deref() == Some("development")
        })
        .count();
    assert_eq!(deploys, 1);
    let outcomes = bot
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.text.contains("development runs v3.0.5"))
        .count();
    assert_eq!(outcomes, 1);
}

async fn remember_events(store: &dyn Store) {
    let t = start_time();
    assert!(
        store
            .remember_event(Platform::Slack, "slack:Ev1", t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_event(Platform::Slack, "slack:Ev1", t)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_event(Platform::Slack, "slack:Ev2", t)
            .await
            .unwrap()
    );
    // Forgotten after an hour, when Slack has long stopped retrying.
    let later = t + chrono::Duration::hours(2);
    assert!(
        store
            .remember_event(Platform::Slack, "slack:Ev3", later)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_event(Platform::Slack, "slack:Ev1", later)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn event_ids_are_remembered_on_sqlite() {
    let (store, _db) = testdb::fresh_sqlite().await;
    remember_events(&store).await;
}

#[tokio::test]
async fn event_ids_are_remembered_on_postgres() {
    let Some(store) = testdb::postgres_or_skip("event_ids_are_remembered_on_postgres").await else {
        return;
    };
    remember_events(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_acknowledges_envelopes_and_replies() {
    let fake = FakeSlack::start().await;
    let socket = FakeSocketMode::start(&fake).await;
    // The bot builds its own fake-Slack world; point it at this one.
    let api_url = fake.api_url();
    let bot = SlackBot::start_with(move |cfg| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.mode = Some("socket".into());
            s.app_token = Secret::new("xapp-test-token");
            s.signing_secret = Secret::default();
            s.api_url = Some(api_url);
        });
        // The user of the fixture's app_mention envelope.
        cfg.roles
            .get_mut("engineer")
            .unwrap()
            .push("slack:U222".into());
    })
    .await;
    let bridge = bot.app.slack.clone().expect("slack is enabled");
    assert_eq!(bridge.mode(), slack::Mode::Socket);
    let listener = bridge.start_socket_mode();

    let lines: Vec<Value> = fixture("socket_mode_envelopes.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut command = lines[0].clone();
    command["payload"]["text"] = json!("deploy development v3.0.6");
    command["payload"]["response_url"] = json!(fake.response_url("socket"));
    socket.send(&command);
    let mut typo = lines[0].clone();
    typo["envelope_id"] = json!("typo-envelope");
    typo["payload"]["trigger_id"] = json!(trigger_id());
    typo["payload"]["text"] = json!("deploj development v1");
    socket.send(&typo);
    socket.send(&lines[2]);

    let acks = |n: usize| {
        let socket = &socket;
        move |_: &FakeSlack| {
            let r = socket.received();
            (r.len() >= n).then_some(r)
        }
    };
    let received = fake.wait_for(WAIT, "three acknowledgements", acks(3)).await;
    assert_eq!(
        received[0]["envelope_id"],
        "1d3c79ab-0ffb-41f3-a080-d19e85f53649"
    );
    // A workload change is acknowledged with a word that it was heard.
    assert!(
        received[0]["payload"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Working on `deploy development v3.0.6`")),
        "{}",
        received[0]
    );
    assert_eq!(received[1]["envelope_id"], "typo-envelope");
    assert_eq!(received[1]["payload"]["response_type"], "ephemeral");
    assert!(
        received[1]["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("deploj")
    );
    assert_eq!(
        received[2],
        json!({ "envelope_id": "57d6a792-4d35-4d0b-b6aa-3361493e1caf" })
    );
    assert_eq!(socket.connections(), 1);
    assert_eq!(
        fake.calls_to("apps.connections.open")[0].auth.as_deref(),
        Some("Bearer xapp-test-token")
    );

    let outcome = fake
        .wait_for(WAIT, "the socket command's outcome", |f| {
            f.messages()
                .into_iter()
                .find(|m| m.text.contains("development runs v3.0.6"))
        })
        .await;
    assert_eq!(outcome.channel, "C111");

    // An app mention over the socket, acknowledged and deduplicated like HTTP events.
    let mut mention = lines[1].clone();
    mention["payload"]["event"]["text"] = json!("<@U111> deploy development v3.0.7");
    socket.send(&mention);
    mention["retry_attempt"] = json!(1);
    mention["envelope_id"] = json!("mention-retry");
    socket.send(&mention);
    let received = fake
        .wait_for(WAIT, "the mention's acknowledgements", acks(5))
        .await;
    assert_eq!(received[3]["envelope_id"], lines[1]["envelope_id"]);
    assert_eq!(received[4]["envelope_id"], "mention-retry");
    fake.wait_for(WAIT, "the mention's outcome", |f| {
        f.messages().into_iter().find(|m| {
            m.thread_ts.as_deref() == Some("1610241741.000200")
                && m.text.contains("development runs v3.0.7")
        })
    })
    .await;

    // The first slash command delivered again (a replay, or a redelivery of the same
    // trigger): acknowledged with nothing to say, and not run again.
    let mut replay = command.clone();
    replay["envelope_id"] = json!("command-replayed");
    socket.send(&replay);
    let received = fake
        .wait_for(WAIT, "the replay's acknowledgement", acks(6))
        .await;
    assert_eq!(received[5], json!({ "envelope_id": "command-replayed" }));

    // Slack asks for a reconnect: the bot opens a new connection.
    socket.send(&json!({ "type": "disconnect", "reason": "refresh_requested" }));
    fake.wait_for(WAIT, "a second connection", |_| {
        (socket.connections() == 2).then_some(())
    })
    .await;
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_channels_are_created_named_invited_and_topped() {
    use erlmcp_adapters::chat::ChatPlatform;
    let bot = SlackBot::start().await;
    let slack = bot.app.slack.clone().unwrap();
    let platform = slack.platform();
    bot.fake.add_channel("C0OLD", "inc-7-checkout-down");

    let id = platform
        .create_channel("INC-7 Checkout down!")
        .await
        .unwrap();
    let channel = bot.fake.channel(&id).unwrap();
    assert_eq!(
        channel.name, "inc-7-checkout-down-2",
        "a suffix when the name is taken"
    );
    let creates = bot.fake.calls_to("conversations.create");
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].params["name"], "inc-7-checkout-down");

    let long = platform
        .create_channel(&format!(
            "INC-8 {}",
            "Ünïcode & very long title ".repeat(10)
        ))
        .await
        .unwrap();
    let long = bot.fake.channel(&long).unwrap();
    assert!(
        long.name.len() <= 80 && long.name.starts_with("inc-8-"),
        "{}",
        long.name
    );

    platform
        .invite(&id, &["U0ALICE".into(), "U0BOB".into()])
        .await
        .unwrap();
    platform.invite(&id, &["U0BOB".into()]).await.unwrap();
    assert_eq!(
        bot.fake.channel(&id).unwrap().members,
        vec!["U0ALICE", "U0BOB"]
    );
    platform
        .set_topic(&id, "INC-7 P1 Checkout down | IC: alice")
        .await
        .unwrap();
    assert_eq!(
        bot.fake.channel(&id).unwrap().topic,
        "INC-7 P1 Checkout down | IC: alice"
    );

    let posted = platform
        .post(
            &id,
            &erlmcp_commands::render::Reply::ok("Status: investigating"),
        )
        .await
        .unwrap();
    platform
        .update(
            &posted,
            &erlmcp_commands::render::Reply::ok("Status: mitigated"),
        )
        .await
        .unwrap();
    let reply = platform
        .post_in_thread(
            &posted,
            &erlmcp_commands::render::Reply::ok("rolled back to v3.0.0"),
        )
        .await
        .unwrap();
    let messages = bot.fake.messages();
    let top = messages.iter().find(|m| m.ts == posted.id).unwrap();
    assert_eq!((top.text.as_str(), top.edits), ("Status: mitigated", 1));
    let threaded = messages.iter().find(|m| m.ts == reply.id).unwrap();
    assert_eq!(threaded.thread_ts.as_deref(), Some(posted.id.as_str()));
}

/// The value of the Slack delivery failure counter (0 when never incremented).
fn delivery_failures(bot: &SlackBot) -> f64 {
    let text = bot.app.metrics.encode();
    text.lines()
        .find(|l| l.starts_with("erlmcp_bot_chat_delivery_failures_total{platform=\"slack\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_2xx_from_a_response_url_is_a_delivery() {
    let bot = SlackBot::start().await;
    // Slack answers a response URL with a bare `ok`, whatever the content type says; a 404
    // at the end is a real failure and shows that the counter works.
    bot.fake.answer_responses(&[
        (200, None, "ok"),
        (200, Some("application/json"), "ok"),
        (204, None, ""),
        (404, Some("text/plain"), "no_text"),
    ]);
    for n in 1..=4 {
        bot.slash("W111", "status staging").await;
        bot.fake
            .wait_for(WAIT, &format!("response_url post {n}"), |f| {
                (f.calls_to("response_url").len() >= n).then_some(())
            })
            .await;
    }
    bot.fake
        .wait_for(WAIT, "the 404 counted", |_| {
            (delivery_failures(&bot) >= 1.0).then_some(())
        })
        .await;
    assert_eq!(delivery_failures(&bot), 1.0, "only the 404 is a failure");
    let statuses: Vec<u16> = bot
        .fake
        .calls_to("response_url")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        vec![200, 200, 204, 404],
        "no retries of a delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_titles_cannot_ping_the_workspace_through_the_topic() {
    let bot = SlackBot::start().await;
    bot.slash(
        "W111",
        "incident declare P2 checkout <!channel> down <!subteam^S0CAB> ask <@U0BOB> in <#C222|ops>",
    )
    .await;
    let topic = bot
        .fake
        .wait_for(WAIT, "the incident channel topic", |f| {
            f.calls_to("conversations.setTopic").into_iter().next()
        })
        .await;
    let topic = topic.params["topic"].as_str().unwrap().to_string();
    assert!(topic.contains("checkout down ask in"), "{topic}");
    for seq in ["<!", "<@", "<#"] {
        assert!(!topic.contains(seq), "{topic}");
    }
}

/// Staging soaked for a day, then alice asks for a production deploy of `version`: the
/// request id (`R-n`) and its approval message.
async fn pending_production_request(
    bot: &SlackBot,
    version: &str,
) -> (String, erlmcp_tests::fake_slack::FakeMessage) {
    bot.slash("W111", &format!("deploy staging {version}"))
        .await;
    bot.message_containing(&format!("staging runs {version}"))
        .await;
    bot.clock.advance(chrono::Duration::hours(24));
    bot.slash("U0ALICE", &format!("deploy production {version}"))
        .await;
    let approval = bot
        .fake
        .wait_for(WAIT, "the approval message", |f| {
            f.messages().into_iter().find(|m| {
                buttons(&m.blocks).len() == 2
                    && m.blocks.as_ref().unwrap().to_string().contains(version)
            })
        })
        .await;
    let request = buttons(&approval.blocks)[0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    (request, approval)
}

fn request_id(request: &str) -> RequestId {
    RequestId(request.trim_start_matches("R-").parse().unwrap())
}

/// A form body with its JSON `payload` changed by `edit`.
fn edit_payload(body: &str, edit: impl FnOnce(&mut Value)) -> String {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
    let mut payload: Value = serde_json::from_str(&fields[0].1).unwrap();
    edit(&mut payload);
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

/// A form body with some fields replaced.
fn edit_form(body: &str, changes: &[(&str, &str)]) -> String {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(k, v)| match changes.iter().find(|(c, _)| *c == k) {
            Some((_, new)) => (k, new.to_string()),
            None => (k, v),
        })
        .collect();
    serde_urlencoded::to_string(fields).unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_slash_commands_and_clicks_run_once() {
    let bot = SlackBot::start().await;
    let body = slash_body(
        "W111",
        "deploy development v3.0.8",
        &bot.fake.response_url("replayed"),
    );
    let first = bot
        .send(
            "/slack/commands",
            body.clone().into_bytes(),
            FORM,
            Signing::Valid,
        )
        .await;
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.text().await.unwrap().contains("Working on"));
    // The same signed request again, well inside Slack's five minutes.
    bot.clock.advance(chrono::Duration::seconds(60));
    let replay = bot
        .send("/slack/commands", body.into_bytes(), FORM, Signing::Valid)
        .await;
    assert_eq!(replay.status().as_u16(), 200);
    assert_eq!(
        replay.text().await.unwrap(),
        "",
        "nothing to say to a replay"
    );
    bot.thread_message_containing("development runs v3.0.8")
        .await;

    let (request, approval) = pending_production_request(&bot, "v3.0.9").await;
    let id = request_id(&request);
    let click = click_body(
        "U0BOB",
        true,
        &request,
        &approval.ts,
        &bot.fake.response_url("replayed-click"),
    );
    let status = bot
        .send(
            "/slack/interactions",
            click.clone().into_bytes(),
            FORM,
            Signing::Valid,
        )
        .await
        .status();
    assert_eq!(status.as_u16(), 200);
    bot.message_containing("production runs v3.0.9").await;
    let audit = bot.audit_len().await;
    let replay = bot
        .send(
            "/slack/interactions",
            click.into_bytes(),
            FORM,
            Signing::Valid,
        )
        .await;
    assert_eq!(replay.status().as_u16(), 200);
    // A later click by someone else is answered; the replay, taken before it, is not.
    assert_eq!(bot.click("W222", true, &request, &approval.ts).await, 200);
    bot.response_containing(&format!("{request} is already done"))
        .await;
    assert!(
        bot.fake
            .calls_to("response_url")
            .iter()
            .all(|c| c.params["_key"] != "replayed-click"),
        "the replayed click got an answer"
    );
    assert_eq!(bot.executions(id).await, 1);
    assert_eq!(bot.store.votes(id).await.unwrap().len(), 1);
    assert_eq!(bot.audit_len().await, audit, "no audit row for the replay");

    let deploys = bot
        .store
        .audit_page(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.entry.action == "executing" && r.entry.environment.as_deref() == Some("development")
        })
        .count();
    assert_eq!(deploys, 1, "the replayed slash command did not run");
    let headers = bot
        .fake
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| {
            c.params["text"]
                .as_str()
                .is_some_and(|t| t.contains("`deploy development v3.0.8` for"))
        })
        .count();
    assert_eq!(headers, 1, "one progress thread opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_other_workspaces_get_403_and_change_nothing() {
    let bot = SlackBot::start_with(|cfg| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.team_id = Some("T111".into());
            s.enterprise_id = Some("E111".into());
        });
    })
    .await;
    let (request, approval) = pending_production_request(&bot, "v3.1.0").await;
    let id = request_id(&request);
    let audit = bot.audit_len().await;
    let calls = bot.fake.calls().len();

    let click = click_body(
        "U0BOB",
        true,
        &request,
        &approval.ts,
        &bot.fake.response_url("foreign"),
    );
    let foreign_team = edit_payload(&click, |p| {
        p["team"]["id"] = json!("T999");
        p["user"]["team_id"] = json!("T999");
    });
    let foreign_org = edit_payload(&click, |p| p["team"]["enterprise_id"] = json!("E999"));
    let slash = slash_body(
        "W111",
        "deploy development v3.1.1",
        &bot.fake.response_url("f"),
    );
    let mut event: Value =
        serde_json::from_str(&fixture("event_callback_app_mention.json")).unwrap();
    event["event"]["text"] = json!("<@W111> deploy development v3.1.2");
    event["team_id"] = json!("T999");
    for (path, body, ct) in [
        ("/slack/interactions", foreign_team, FORM),
        ("/slack/interactions", foreign_org, FORM),
        (
            "/slack/commands",
            edit_form(&slash, &[("team_id", "T999")]),
            FORM,
        ),
        (
            "/slack/commands",
            edit_form(&slash, &[("enterprise_id", "E999")]),
            FORM,
        ),
        ("/slack/events", event.to_string(), "application/json"),
    ] {
        let resp = bot.send(path, body.into_bytes(), ct, Signing::Valid).await;
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    assert_eq!(
        bot.store
            .get_request(id)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "pending"
    );
    assert_eq!(bot.audit_len().await, audit);

    // Our own workspace is served; its click was not used up by the foreign ones.
    let resp = bot
        .send(
            "/slack/interactions",
            click.into_bytes(),
            FORM,
            Signing::Valid,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    bot.message_containing("production runs v3.1.0").await;
    assert!(
        bot.fake.calls()[calls..]
            .iter()
            .all(|c| !c.params.to_string().contains("v3.1.1")
                && !c.params.to_string().contains("v3.1.2")),
        "a foreign command ran"
    );
}

impl SlackBot {
    /// `user` types `/erlmcp TEXT`; waits for the private answer through response_url and
    /// returns its text and how long it took from the request.
    async fn ask(&self, user: &str, text: &str) -> (String, Duration) {
        // A response URL of its own, so that concurrent questions get their own answers.
        let key = format!("ask-{user}-{}", trigger_id());
        let started = Instant::now();
        let resp = self
            .send(
                "/slack/commands",
                slash_body(user, text, &self.fake.response_url(&key)).into_bytes(),
                FORM,
                Signing::Valid,
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        let call = self
            .fake
            .wait_for(WAIT, &format!("an answer to {user}: {text}"), |f| {
                f.calls_to("response_url")
                    .into_iter()
                    .find(|c| c.params["_key"] == key.as_str())
            })
            .await;
        let took = call.at.duration_since(started);
        (call.params["text"].as_str().unwrap().to_string(), took)
    }
}

const GROUPS_UNREADABLE: &str = "group membership could not be read";

/// Well under the 20 s a rate-limited group lookup would take if anything waited for it.
const NOT_STALLED: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_slack_delays_nobody_and_group_roles_fail_closed() {
    let bot = SlackBot::start().await;
    bot.fake
        .fail_always("usergroups.users.list", Failure::RateLimited(20));

    // Bob's only role comes from the Change Board user group, which cannot be read.
    let started = Instant::now();
    let bob = {
        let bot = &bot;
        async move { bot.ask("U0BOB", "requests").await }
    };
    // Meanwhile W111, an engineer by their own id, asks and deploys.
    let w111 = {
        let bot = &bot;
        async move {
            let (status, took) = bot.ask("W111", "status staging").await;
            bot.slash("W111", "deploy development v3.2.0").await;
            bot.thread_message_containing("development runs v3.2.0")
                .await;
            (status, took, started.elapsed())
        }
    };
    // And bob asks again before the first lookup is over: both wait on one read.
    let bob_again = {
        let bot = &bot;
        async move { bot.ask("U0BOB", "whoami").await }
    };
    let ((bob_text, bob_took), (whoami, whoami_took), (status, status_took, deploy_done)) =
        tokio::join!(bob, bob_again, w111);
    assert!(whoami.contains(GROUPS_UNREADABLE), "{whoami}");
    assert!(!whoami.contains("change-board"), "{whoami}");
    // Bounds are far from Slack's Retry-After (20 s) rather than tight, so that a loaded
    // machine does not make the test flaky: what matters is that nobody waited for the retry.
    assert!(whoami_took < NOT_STALLED, "{whoami_took:?}");
    assert!(status.contains("staging [sandbox]"), "{status}");
    assert!(
        status_took < Duration::from_secs(3),
        "a read by a directly bound user waited: {status_took:?}"
    );
    // The deploy's outcome is three channel posts at Slack's one per second.
    assert!(
        deploy_done < NOT_STALLED,
        "a deploy by a directly bound user waited: {deploy_done:?}"
    );
    assert!(bob_text.contains("Refused"), "{bob_text}");
    assert!(bob_text.contains(GROUPS_UNREADABLE), "{bob_text}");
    // Bounded by the 2 s lookup budget, not by Slack's Retry-After: 20.
    assert!(bob_took < NOT_STALLED, "{bob_took:?}");
    // One read in flight for the group, however many commands asked (and its retry waits
    // out the 20 s).
    assert_eq!(bot.fake.calls_to("usergroups.users.list").len(), 1);

    // A directly bound user's own answers never carry the note.
    let (text, _) = bot.ask("W111", "status development").await;
    assert!(!text.contains(GROUPS_UNREADABLE), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_group_membership_is_served_while_slack_fails_until_its_max_age() {
    let bot = SlackBot::start_with(|cfg| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.group_cache_max_age =
                Some(erlmcp_commands::config::HumanDuration::parse("30m").unwrap());
        });
    })
    .await;
    let (text, _) = bot.ask("U0BOB", "requests").await;
    assert!(text.contains("No pending requests"), "{text}");
    assert_eq!(bot.fake.calls_to("usergroups.users.list").len(), 1);

    // Slack starts refusing; ten minutes on, the membership is stale but still served at
    // once, and a refresh is tried behind the command.
    bot.fake
        .fail_always("usergroups.users.list", Failure::RateLimited(20));
    bot.clock.advance(chrono::Duration::minutes(10));
    let (text, took) = bot.ask("U0BOB", "requests").await;
    assert!(text.contains("No pending requests"), "{text}");
    assert!(!text.contains(GROUPS_UNREADABLE), "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    bot.fake
        .wait_for(WAIT, "a background refresh", |f| {
            (f.calls_to("usergroups.users.list").len() == 2).then_some(())
        })
        .await;

    // Past the configured 30 minutes the old membership is no longer trusted.
    bot.clock.advance(chrono::Duration::minutes(21));
    let (text, took) = bot.ask("U0BOB", "requests").await;
    assert!(text.contains("Refused"), "{text}");
    assert!(text.contains(GROUPS_UNREADABLE), "{text}");
    assert!(took < NOT_STALLED, "{took:?}");
    let (text, _) = bot.ask("U0BOB", "whoami").await;
    assert!(text.contains(GROUPS_UNREADABLE), "{text}");
    assert!(!text.contains("change-board"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_sent_to_another_replica_runs_once_on_postgres() {
    let Some(url) =
        testdb::fresh_postgres_url("a_replay_sent_to_another_replica_runs_once_on_postgres").await
    else {
        return;
    };
    let fake = FakeSlack::start().await;
    let clock = ManualClock::new(start_time());
    let open = || async {
        let store: Arc<dyn Store> = Arc::new(erlmcp_bot::store::PgStore::open(&url).await.unwrap());
        store
    };
    let a = SlackBot::replica(fake.clone(), open().await, None, clock.clone(), |_| {}).await;
    let b = SlackBot::replica(fake.clone(), open().await, None, clock.clone(), |_| {}).await;

    let body = slash_body(
        "W111",
        "deploy development v3.3.0",
        &fake.response_url("replica"),
    );
    let first = a
        .send(
            "/slack/commands",
            body.clone().into_bytes(),
            FORM,
            Signing::Valid,
        )
        .await;
    assert_eq!(first.status().as_u16(), 200);
    let replay = b
        .send("/slack/commands", body.into_bytes(), FORM, Signing::Valid)
        .await;
    assert_eq!(replay.status().as_u16(), 200);
    assert_eq!(replay.text().await.unwrap(), "");
    a.thread_message_containing("development runs v3.3.0").await;
    let deploys = a
        .store
        .audit_page(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.entry.action == "executing" && r.entry.environment.as_deref() == Some("development")
        })
        .count();
    assert_eq!(deploys, 1);
    drop((a, b));
    testdb::drop_postgres_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_drops_envelopes_from_other_workspaces() {
    let fake = FakeSlack::start().await;
    let socket = FakeSocketMode::start(&fake).await;
    let api_url = fake.api_url();
    let bot = SlackBot::start_with(move |cfg| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.mode = Some("socket".into());
            s.app_token = Secret::new("xapp-test-token");
            s.signing_secret = Secret::default();
            s.api_url = Some(api_url);
            s.team_id = Some("T111".into());
        });
    })
    .await;
    let listener = bot.app.slack.clone().unwrap().start_socket_mode();
    let lines: Vec<Value> = fixture("socket_mode_envelopes.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let command = |envelope: &str, team: &str, text: &str| {
        let mut c = lines[0].clone();
        c["envelope_id"] = json!(envelope);
        c["payload"]["team_id"] = json!(team);
        c["payload"]["text"] = json!(text);
        c["payload"]["trigger_id"] = json!(trigger_id());
        c["payload"]["response_url"] = json!(fake.response_url("socket"));
        c
    };
    socket.send(&command("foreign", "T999", "deploy development v3.4.0"));
    socket.send(&command("ours", "T111", "deploy development v3.4.1"));
    let received = fake
        .wait_for(WAIT, "two acknowledgements", |_| {
            let r = socket.received();
            (r.len() >= 2).then_some(r)
        })
        .await;
    assert_eq!(received[0], json!({ "envelope_id": "foreign" }));
    assert_eq!(received[1]["envelope_id"], "ours");
    fake.wait_for(WAIT, "our command's outcome", |f| {
        f.messages()
            .into_iter()
            .find(|m| m.text.contains("development runs v3.4.1"))
    })
    .await;
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.params.to_string().contains("v3.4.0")),
        "the foreign command ran"
    );
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_a_users_own_roles_do_not_grant_waits_for_groups() {
    let bot = SlackBot::start().await;
    let e = &bot.app.engine;
    let engineer = e.actor("slack", "W111", "w111", &[]);
    let alice = e.actor("slack", "U0ALICE", "alice", &[]);
    let bob = e.actor("slack", "U0BOB", "bob", &[]);
    for (who, text, waits) in [
        (&engineer, "deploy staging v1.0.0", false),
        (&engineer, "status", false),
        (&engineer, "help", false),
        (&engineer, "deplo staging", false),
        (&engineer, "whoami", true),
        (&engineer, "deploy production v1.0.0", true),
        (&alice, "deploy production v1.0.0", false),
        (&bob, "requests", true),
        (&bob, "cancel R-1", false),
    ] {
        assert_eq!(e.needs_groups(who, text).await, waits, "{text}");
    }
    // Votes: decided by the request's own `approvals.from`.
    let (request, _) = pending_production_request(&bot, "v3.5.0").await;
    let approve = format!("approve {request}");
    assert!(
        e.needs_groups(&bob, &approve).await,
        "change-board is a group"
    );
    assert!(e.needs_groups(&alice, &approve).await);
    bot.slash("U0ALICE", "rollback production").await;
    let rollback = bot
        .fake
        .wait_for(WAIT, "the rollback's approval message", |f| {
            f.messages().into_iter().find(|m| {
                buttons(&m.blocks).len() == 2
                    && m.blocks.as_ref().unwrap().to_string().contains("rollback")
            })
        })
        .await;
    let rollback = buttons(&rollback.blocks)[0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !e.needs_groups(&alice, &format!("approve {rollback}")).await,
        "devops-lead may approve a production rollback"
    );
}

/// What a person reads in `channel`, newest last.
fn texts_in(fake: &FakeSlack, channel: &str) -> Vec<String> {
    fake.messages()
        .into_iter()
        .filter(|m| m.channel == channel)
        .map(|m| m.text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_link_their_channel_and_mention_the_commander() {
    let bot = SlackBot::start_with(|cfg| {
        edit_section(cfg, |s: &mut SlackSection| {
            s.incidents_channel = Some("C0INCIDENTS".into());
        });
    })
    .await;
    bot.slash(
        "W111",
        "incident declare P2 checkout <!channel> down, ask <@U0EVIL> or @everyone <!here>",
    )
    .await;
    let announced = bot
        .fake
        .wait_for(WAIT, "the announcement", |f| {
            texts_in(f, "C0INCIDENTS").into_iter().next()
        })
        .await;
    let created = bot.fake.calls_to("conversations.create");
    assert_eq!(created.len(), 1, "{created:?}");
    let channel = bot
        .fake
        .messages()
        .into_iter()
        .find(|m| m.channel != CHANNEL && m.channel != "C0INCIDENTS")
        .map(|m| m.channel)
        .expect("the checklist in the incident channel");
    assert!(
        announced.contains(&format!("— join <#{channel}>")),
        "the channel is a link: {announced}"
    );
    // The title is the user's text: it reaches Slack escaped, so it pings no one.
    assert!(
        announced.contains(
            "checkout &lt;!channel&gt; down, ask &lt;@U0EVIL&gt; or @everyone &lt;!here&gt;"
        ),
        "{announced}"
    );
    for raw in ["<!channel>", "<!here>", "<@U0EVIL>"] {
        assert!(!announced.contains(raw), "{raw} in {announced}");
    }
    let reply = bot.message_containing("INC-1 declared (P2)").await.text;
    assert!(
        reply.contains(&format!("Channel: <#{channel}> (slack)")),
        "{reply}"
    );

    // Slack sends the mention as `<@U…|name>` when the command escapes users.
    bot.slash("U0ALICE", "incident commander <@U0BOB|bob>")
        .await;
    let named = bot.message_containing("commander is now").await;
    assert!(
        named
            .text
            .starts_with("INC-1 commander is now <@U0BOB> (named by"),
        "a real mention: {}",
        named.text
    );
    let in_incident_channel = bot
        .fake
        .wait_for(WAIT, "the commander in the incident channel", |f| {
            texts_in(f, &channel)
                .into_iter()
                .find(|t| t.contains("commander is now"))
        })
        .await;
    assert!(
        in_incident_channel.contains("<@U0BOB>"),
        "{in_incident_channel}"
    );
    let invited = bot.fake.calls_to("conversations.invite");
    assert!(
        invited
            .iter()
            .any(|c| c.params.to_string().contains("U0BOB")),
        "{invited:?}"
    );
    bot.idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_cards_mention_approvers_and_escape_the_reason() {
    let bot = SlackBot::start().await;
    bot.slash("W111", "deploy staging v3.0.1").await;
    bot.message_containing("staging runs v3.0.1").await;
    bot.clock.advance(chrono::Duration::hours(24));
    bot.slash(
        "U0ALICE",
        "deploy production v3.0.1 fixes checkout <!channel> <!here> @everyone <@U0EVIL>",
    )
    .await;
    let card = bot
        .fake
        .wait_for(WAIT, "the approval card", |f| {
            f.messages()
                .into_iter()
                .find(|m| buttons(&m.blocks).len() == 2)
        })
        .await;
    let blocks = card.blocks.as_ref().unwrap().to_string();
    assert!(
        blocks.contains("*Who may approve:* *change-board* (<!subteam^S0CAB>)"),
        "the Change Board's user group is mentioned: {blocks}"
    );
    assert!(
        blocks.contains("&lt;!channel&gt; &lt;!here&gt; @everyone &lt;@U0EVIL&gt;"),
        "{blocks}"
    );
    for text in [&blocks, &card.text] {
        for raw in ["<!channel>", "<!here>", "<@U0EVIL>"] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
    }
    bot.idle().await;
}
