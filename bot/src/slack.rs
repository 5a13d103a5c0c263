//! Slack inbound: slash commands, button clicks and Events API deliveries, over HTTP
//! (signed requests) or Socket Mode (a WebSocket the bot opens), both feeding the same
//! handlers.
//!
//! Slack gives every request three seconds. The handlers therefore answer at once — with
//! the final reply when it is known without running anything (a parse error), an ephemeral
//! "working on it" for changes to a workload, else an empty 200 — and run the command in a
//! task. The reply then travels through
//! `response_url` (what only the requester should see) or chat.postMessage (operations,
//! approval requests and outcomes, visible in the channel). Progress of a long operation
//! goes into a thread under its message, and approval messages are redrawn in place
//! whenever the engine reports a change to their request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use erlmcp_adapters::chat::{ChatError, ChatPlatform, MessageRef, Platform};
use erlmcp_adapters::slack::blocks::{APPROVE_ACTION, DENY_ACTION};
use erlmcp_adapters::slack::{
    ApproverDirectory, GroupLookup, RetryPolicy, SlackOptions, SlackPlatform,
};
use erlmcp_adapters::target::Progress;
use erlmcp_commands::config::{Config, Secret};
use erlmcp_commands::grammar::{self, ParseContext};
use erlmcp_commands::render::{Reply, ReplyKind, Visibility};
use erlmcp_commands::{Actor, Command, GroupMembership, RequestId};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::clock::Clock;
use crate::engine::{Engine, EngineEvent, Invocation};
use crate::metrics::{DeliveryLabels, Metrics};

pub const DEFAULT_API_URL: &str = "https://slack.com/api/";
/// Slack's replay window for signed requests.
pub const MAX_SKEW_SECS: i64 = 300;
/// How long user group membership is trusted before usergroups.users.list is asked again.
pub const GROUP_REFRESH: Duration = Duration::from_secs(300);
/// The longest a command waits for group membership it needs and does not have: Slack gives
/// the whole request three seconds, and a rate-limited Slack must not hold commands.
pub const GROUP_LOOKUP_BUDGET: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// Request signatures
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    #[error("malformed X-Slack-Request-Timestamp")]
    BadTimestamp,
    #[error("timestamp more than 5 minutes from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks Slack's `v0` signature over the exact received bytes.
///
/// Written out with `hmac` rather than taken from slack-morphism's verifier because that one
/// reads the system clock, and the replay window must be checked against the bot's clock:
/// tests run on a manual clock, and Slack's documented example (timestamp 1531420618) only
/// verifies "now" when now can be set to that moment.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now_secs - ts).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `v0=…` signature Slack would send for `body` at `timestamp` (tests and load tools).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------

/// How Slack reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Socket,
}

/// Adapter options from the configuration: the API base, the tokens, and which user groups
/// and people the roles name.
pub fn platform_options(cfg: &Config, clock: Arc<dyn Clock>) -> SlackOptions {
    let roles = cfg
        .roles
        .keys()
        .map(|r| (r.clone(), cfg.role_identities(r)))
        .collect();
    let mut groups: Vec<String> = cfg
        .roles
        .values()
        .flatten()
        .filter_map(|m| m.strip_prefix("slack-group:").map(str::to_string))
        .collect();
    groups.sort();
    groups.dedup();
    SlackOptions {
        api_url: cfg
            .slack
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_API_URL.to_string()),
        bot_token: cfg.slack.bot_token.expose().to_string(),
        app_token: cfg.slack.app_token.expose().to_string(),
        approvers: ApproverDirectory { roles },
        groups,
        group_refresh: GROUP_REFRESH,
        group_max_age: cfg.slack.group_cache_max_age().0,
        now: Arc::new(move || clock.now()),
        retry: RetryPolicy::default(),
    }
}

pub struct SlackBridge {
    engine: Arc<Engine>,
    slack: Arc<SlackPlatform>,
    metrics: Arc<Metrics>,
    signing_secret: Secret,
    parse_ctx: ParseContext,
    mode: Mode,
    /// The workspace and organization requests must come from, when pinned.
    team_id: Option<String>,
    enterprise_id: Option<String>,
}

impl SlackBridge {
    /// Connects the engine to Slack and starts redrawing approval messages on engine events.
    /// Must run inside the runtime.
    pub fn start(
        engine: Arc<Engine>,
        slack: Arc<SlackPlatform>,
        metrics: Arc<Metrics>,
    ) -> Arc<SlackBridge> {
        let cfg = engine.config();
        let mode = match cfg.slack.mode.as_deref() {
            Some("socket") => Mode::Socket,
            _ => Mode::Http,
        };
        if cfg.slack.team_id.is_none() {
            warn!(
                "slack.team_id is not set: signed requests are taken from any Slack workspace; set it to the id (T…) of yours"
            );
        }
        let bridge = Arc::new(SlackBridge {
            team_id: cfg.slack.team_id.clone(),
            enterprise_id: cfg.slack.enterprise_id.clone(),
            signing_secret: cfg.slack.signing_secret.clone(),
            parse_ctx: cfg.parse_context(),
            engine: engine.clone(),
            slack: slack.clone(),
            metrics: metrics.clone(),
            mode,
        });
        tokio::spawn(redraw_approval_messages(engine.subscribe(), slack, metrics));
        bridge
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn platform(&self) -> &Arc<SlackPlatform> {
        &self.slack
    }

    fn delivery_failed(&self, what: &str, request: &str, err: &ChatError) {
        error!(request, error = %err, "slack: could not deliver {what}");
        self.metrics
            .delivery_failures
            .get_or_create(&DeliveryLabels {
                platform: "slack".into(),
            })
            .inc();
    }

    /// Requests signed with our secret but naming another workspace (or organization) are
    /// refused: the secret alone does not say which workspace a request speaks for.
    fn check_workspace(&self, team: Option<&str>, enterprise: Option<&str>) -> Result<(), Refusal> {
        let foreign_team = self
            .team_id
            .as_deref()
            .is_some_and(|pinned| team != Some(pinned));
        let foreign_enterprise = self
            .enterprise_id
            .as_deref()
            .is_some_and(|pinned| enterprise != Some(pinned));
        if foreign_team || foreign_enterprise {
            warn!(
                team = team.unwrap_or("-"),
                enterprise = enterprise.unwrap_or("-"),
                "slack: request from another workspace refused"
            );
            return Err(Refusal::ForeignWorkspace);
        }
        Ok(())
    }

    /// Whether this is the first delivery of `key` (a Slack `trigger_id`, an `event_id`),
    /// remembered in the store so that a replay is recognized by every replica. The keys
    /// keep their `slack…:` prefixes: rows remembered before deliveries were keyed by
    /// platform have them, and a replay across an upgrade must still match.
    async fn first_delivery(&self, key: &str) -> Result<bool, Refusal> {
        self.engine
            .store()
            .remember_event(Platform::Slack, key, self.engine.now())
            .await
            .map_err(|e| {
                // Without the memory of seen deliveries a replay could run twice: refuse,
                // and let Slack (or the user) try again once the database is back.
                error!(error = %e, key, "slack: cannot record the delivery");
                Refusal::Unavailable
            })
    }

    fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (get("x-slack-request-timestamp"), get("x-slack-signature"))
        else {
            return Err(SignatureError::Missing);
        };
        if self.signing_secret.is_empty() {
            // Without a secret nothing can be trusted.
            return Err(SignatureError::Mismatch);
        }
        verify_signature(
            self.signing_secret.expose().as_bytes(),
            ts,
            sig,
            body,
            self.engine.now().timestamp(),
        )
    }
}

/// Redraws each approval message as its request changes. One task, in order, so a later
/// state is never overwritten by an earlier one.
async fn redraw_approval_messages(
    mut events: broadcast::Receiver<EngineEvent>,
    slack: Arc<SlackPlatform>,
    metrics: Arc<Metrics>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "slack: approval message updates fell behind; some were skipped"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let EngineEvent::RequestChanged { card, message } = event;
        let Some(message) = message.filter(|m| m.platform == Platform::Slack) else {
            continue;
        };
        let id = card.id;
        if let Err(e) = slack.update(&message, &Reply::pending(card)).await {
            error!(request = %id, error = %e, "slack: could not update the approval message");
            metrics
                .delivery_failures
                .get_or_create(&DeliveryLabels {
                    platform: "slack".into(),
                })
                .inc();
        }
    }
}

// ---------------------------------------------------------------------------------------
// What Slack sends, decoded
// ---------------------------------------------------------------------------------------

/// Why a request body was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

#[derive(Debug, Clone)]
pub struct SlashCommand {
    pub user_id: String,
    pub user_name: String,
    pub channel_id: String,
    pub text: String,
    pub response_url: Option<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    /// Unique per invocation: a replay of the same signed request carries the same one.
    pub trigger_id: Option<String>,
}

impl SlashCommand {
    fn from_fields(get: impl Fn(&str) -> Option<String>) -> Result<SlashCommand, BadRequest> {
        let required = |k: &str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| BadRequest(format!("missing field {k}")))
        };
        let user_id = required("user_id")?;
        Ok(SlashCommand {
            user_name: get("user_name").unwrap_or_else(|| user_id.clone()),
            channel_id: required("channel_id")?,
            user_id,
            text: get("text").unwrap_or_default(),
            response_url: get("response_url").filter(|u| !u.is_empty()),
            team_id: get("team_id").filter(|v| !v.is_empty()),
            enterprise_id: get("enterprise_id").filter(|v| !v.is_empty()),
            trigger_id: get("trigger_id").filter(|v| !v.is_empty()),
        })
    }
}

fn form_fields(body: &[u8]) -> Result<HashMap<String, String>, BadRequest> {
    std::str::from_utf8(body).map_err(|_| BadRequest("body is not UTF-8".into()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| BadRequest(format!("malformed form body: {e}")))?;
    Ok(pairs.into_iter().collect())
}

fn json_str(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

/// A click on an approval message's button.
#[derive(Debug, Clone)]
struct VoteClick {
    user_id: String,
    user_name: String,
    approve: bool,
    request: RequestId,
    channel_id: String,
    message_ts: Option<String>,
    response_url: Option<String>,
}

/// What the immediate answer carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    Empty,
    Json(Value),
}

impl IntoResponse for Ack {
    fn into_response(self) -> Response {
        match self {
            Ack::Empty => StatusCode::OK.into_response(),
            Ack::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        }
    }
}

/// Commands that change a workload (and so may run for minutes).
fn changes_a_workload(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Deploy { .. }
            | Command::Rollback { .. }
            | Command::Scale { .. }
            | Command::Restart { .. }
            | Command::Maintenance { .. }
            | Command::Canary { .. }
    )
}

fn ephemeral_ack(reply: &Reply) -> Ack {
    Ack::Json(json!({
        "response_type": "ephemeral",
        "text": erlmcp_adapters::slack::blocks::escape(&reply.text),
    }))
}

// ---------------------------------------------------------------------------------------
// Handlers shared by HTTP and Socket Mode
// ---------------------------------------------------------------------------------------

/// Where a reply goes and what it belongs to.
struct Destination {
    channel_id: String,
    user_id: String,
    response_url: Option<String>,
    /// The thread the command lives in: the approval message for votes, the mention for
    /// app mentions, or the message opened for the operation's progress.
    thread: Option<Thread>,
    /// For logs: the request id when known, else the command.
    label: String,
}

#[derive(Debug, Clone)]
struct Thread {
    parent: MessageRef,
    /// Opened by the bot for this command's progress: redrawn with the outcome.
    owned: bool,
}

impl SlackBridge {
    /// A slash command: parse errors are answered in the acknowledgement itself; everything
    /// else runs in a task. A replay of one already taken is acknowledged and dropped.
    pub async fn slash_command(self: &Arc<Self>, cmd: SlashCommand) -> Result<Ack, Refusal> {
        self.check_workspace(cmd.team_id.as_deref(), cmd.enterprise_id.as_deref())?;
        if let Some(trigger) = &cmd.trigger_id
            && !self
                .first_delivery(&format!("slack-trigger:{trigger}"))
                .await?
        {
            info!(user = %cmd.user_id, "slack: replayed slash command ignored");
            return Ok(Ack::Empty);
        }
        let parsed = match grammar::parse(&cmd.text, &self.parse_ctx) {
            Ok(c) => c,
            Err(e) => return Ok(ephemeral_ack(&Reply::usage(e.render()))),
        };
        // A change to a workload can take minutes: say at once that it was heard. Lookups
        // answer within a second, and a second message would only be noise.
        let ack = if changes_a_workload(&parsed) {
            ephemeral_ack(&Reply::private(format!(
                "Working on `{}`; the outcome follows here.",
                cmd.text.trim()
            )))
        } else {
            Ack::Empty
        };
        let this = self.clone();
        let span = info_span!("slack_command", user = %cmd.user_id, channel = %cmd.channel_id);
        // Tracked by the engine, so waiting for it to be idle covers this command too.
        self.engine.spawn_tracked(
            async move {
                let dest = Destination {
                    channel_id: cmd.channel_id.clone(),
                    user_id: cmd.user_id.clone(),
                    response_url: cmd.response_url.clone(),
                    thread: this.request_thread(&cmd.text).await,
                    label: cmd.text.clone(),
                };
                this.run(&cmd.user_id, &cmd.user_name, &cmd.text, dest)
                    .await;
            }
            .instrument(span),
        );
        Ok(ack)
    }

    /// A button click (block_actions). Other interaction types are acknowledged and ignored.
    /// A replayed click is acknowledged and dropped: no second vote, reply or audit row.
    pub async fn interaction(self: &Arc<Self>, payload: &Value) -> Result<Ack, Refusal> {
        self.check_workspace(
            json_str(payload, &["team", "id"])
                .or_else(|| json_str(payload, &["user", "team_id"]))
                .as_deref(),
            json_str(payload, &["enterprise", "id"])
                .or_else(|| json_str(payload, &["team", "enterprise_id"]))
                .as_deref(),
        )?;
        let kind = payload.get("type").and_then(Value::as_str);
        if kind != Some("block_actions") {
            debug!(kind = ?kind, "slack: interaction ignored");
            return Ok(Ack::Empty);
        }
        let bad = |m: &str| Refusal::Bad(BadRequest(m.into()));
        let user_id =
            json_str(payload, &["user", "id"]).ok_or_else(|| bad("payload has no user.id"))?;
        let action = payload
            .get("actions")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .ok_or_else(|| bad("payload has no actions"))?;
        let approve = match action.get("action_id").and_then(Value::as_str) {
            Some(APPROVE_ACTION) => true,
            Some(DENY_ACTION) => false,
            other => {
                debug!(action = ?other, "slack: action ignored");
                return Ok(Ack::Empty);
            }
        };
        let value = action
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let request = value
            .trim()
            .trim_start_matches("R-")
            .parse::<i64>()
            .map(RequestId)
            .map_err(|_| {
                Refusal::Bad(BadRequest(format!(
                    "action value {value:?} is not a request id"
                )))
            })?;
        let channel_id = json_str(payload, &["channel", "id"])
            .or_else(|| json_str(payload, &["container", "channel_id"]))
            .ok_or_else(|| bad("payload has no channel"))?;
        let replay_key = match json_str(payload, &["trigger_id"]) {
            Some(trigger) => Some(format!("slack-trigger:{trigger}")),
            None => {
                json_str(action, &["action_ts"]).map(|ts| format!("slack-action:{user_id}:{ts}"))
            }
        };
        if let Some(key) = replay_key
            && !self.first_delivery(&key).await?
        {
            info!(user = %user_id, %request, "slack: replayed click ignored");
            return Ok(Ack::Empty);
        }
        let click = VoteClick {
            user_name: json_str(payload, &["user", "username"])
                .or_else(|| json_str(payload, &["user", "name"]))
                .unwrap_or_else(|| user_id.clone()),
            user_id,
            approve,
            request,
            channel_id,
            message_ts: json_str(payload, &["container", "message_ts"])
                .or_else(|| json_str(payload, &["message", "ts"])),
            response_url: json_str(payload, &["response_url"]),
        };
        let this = self.clone();
        let span = info_span!("slack_click", user = %click.user_id, request = %click.request);
        // Tracked by the engine, so waiting for it to be idle covers this command too.
        self.engine.spawn_tracked(
            async move {
                let text = format!(
                    "{} {}",
                    if click.approve { "approve" } else { "deny" },
                    click.request
                );
                let dest = Destination {
                    thread: click.message_ts.as_ref().map(|ts| Thread {
                        parent: MessageRef {
                            platform: Platform::Slack,
                            channel: click.channel_id.clone(),
                            id: ts.clone(),
                        },
                        owned: false,
                    }),
                    channel_id: click.channel_id,
                    user_id: click.user_id.clone(),
                    response_url: click.response_url,
                    label: click.request.to_string(),
                };
                this.run(&click.user_id, &click.user_name, &text, dest)
                    .await;
            }
            .instrument(span),
        );
        Ok(Ack::Empty)
    }

    /// An Events API delivery. Each event_id runs once across retries and replicas.
    pub async fn event(
        self: &Arc<Self>,
        body: &Value,
        retry: Option<&str>,
    ) -> Result<Ack, Refusal> {
        match body.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                let challenge = body
                    .get("challenge")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Refusal::Bad(BadRequest("url_verification without a challenge".into()))
                    })?;
                Ok(Ack::Json(json!({ "challenge": challenge })))
            }
            Some("event_callback") => {
                self.check_workspace(
                    json_str(body, &["team_id"]).as_deref(),
                    json_str(body, &["enterprise_id"]).as_deref(),
                )?;
                let event_id = body
                    .get("event_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Refusal::Bad(BadRequest("event_callback without event_id".into()))
                    })?;
                let first = self.first_delivery(&format!("slack:{event_id}")).await?;
                if !first {
                    info!(
                        event_id,
                        retry = retry.unwrap_or("-"),
                        "slack: duplicate event delivery ignored"
                    );
                    return Ok(Ack::Empty);
                }
                if let Some(event) = body.get("event") {
                    self.event_callback(event);
                }
                Ok(Ack::Empty)
            }
            Some("app_rate_limited") => {
                warn!("slack: Events API deliveries are being rate limited by Slack");
                Ok(Ack::Empty)
            }
            other => {
                debug!(kind = ?other, "slack: event ignored");
                Ok(Ack::Empty)
            }
        }
    }

    fn event_callback(self: &Arc<Self>, event: &Value) {
        if event.get("type").and_then(Value::as_str) != Some("app_mention")
            || event.get("bot_id").is_some()
        {
            return;
        }
        let (Some(user), Some(channel), Some(text)) = (
            json_str(event, &["user"]),
            json_str(event, &["channel"]),
            json_str(event, &["text"]),
        ) else {
            return;
        };
        let text = strip_mentions(&text);
        let thread = json_str(event, &["ts"]).map(|ts| Thread {
            parent: MessageRef {
                platform: Platform::Slack,
                channel: channel.clone(),
                id: ts,
            },
            owned: false,
        });
        let this = self.clone();
        let span = info_span!("slack_mention", user = %user, channel = %channel);
        // Tracked by the engine, so waiting for it to be idle covers this command too.
        self.engine.spawn_tracked(
            async move {
                let dest = Destination {
                    channel_id: channel,
                    user_id: user.clone(),
                    response_url: None,
                    thread,
                    label: text.clone(),
                };
                this.run(&user, &user, &text, dest).await;
            }
            .instrument(span),
        );
    }

    /// For `approve R-n` / `deny R-n` typed as text, progress belongs under the request's
    /// approval message.
    async fn request_thread(&self, text: &str) -> Option<Thread> {
        let id = match grammar::parse(text, &self.parse_ctx).ok()? {
            Command::Approve { id, .. } | Command::Deny { id, .. } => id,
            _ => return None,
        };
        let row = self.engine.store().get_request(id).await.ok()??;
        let parent = row.message_ref?;
        (parent.platform == Platform::Slack).then_some(Thread {
            parent,
            owned: false,
        })
    }

    /// Runs one command as a Slack user and delivers its reply.
    async fn run(&self, user_id: &str, user_name: &str, text: &str, mut dest: Destination) {
        let actor = self.actor(user_id, user_name, text).await;
        let (sink, forwarder) = ThreadProgress::start(
            self.clone_parts(),
            dest.channel_id.clone(),
            format!(
                "`{}` for <@{user_id}>: in progress…",
                erlmcp_adapters::slack::blocks::escape(text.trim())
            ),
            dest.thread.clone(),
        );
        let reply = self
            .engine
            .handle(Invocation {
                actor,
                channel: format!("slack:{}", dest.channel_id),
                text: text.to_string(),
                progress: sink,
            })
            .await;
        if let Ok(thread) = forwarder.await {
            dest.thread = thread;
        }
        if let Some(card) = &reply.approval {
            dest.label = card.id.to_string();
        }
        self.deliver(&reply, &dest).await;
    }

    /// Who is asking, with the user groups they are in as far as they can be known in time.
    /// Someone whose own roles already grant the command is not held up by a group lookup;
    /// otherwise the lookup gets `GROUP_LOOKUP_BUDGET`, and groups still unknown then are
    /// left out (their roles are not granted) and the actor says so.
    async fn actor(&self, user_id: &str, user_name: &str, text: &str) -> Actor {
        let direct = self.engine.actor("slack", user_id, user_name, &[]);
        let lookup = if self.engine.needs_groups(&direct, text).await {
            let lookup = self.slack.groups_of(user_id, GROUP_LOOKUP_BUDGET).await;
            if !lookup.complete {
                warn!(
                    user = user_id,
                    "slack: user group membership could not be read in time; group roles left out"
                );
            }
            lookup
        } else {
            // What is cached still counts (whoami-like details, a second rule), but an
            // incomplete cache is not worth a wait or a word here.
            GroupLookup {
                complete: true,
                ..self.slack.cached_groups_of(user_id)
            }
        };
        let mut actor = self
            .engine
            .actor("slack", user_id, user_name, &lookup.groups);
        if !lookup.complete {
            actor.groups = GroupMembership::Unreadable;
        }
        actor
    }

    fn clone_parts(&self) -> Parts {
        Parts {
            slack: self.slack.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn deliver(&self, reply: &Reply, dest: &Destination) {
        let new_request = reply.kind == ReplyKind::Accepted && reply.approval.is_some();
        if new_request {
            let card = reply.approval.as_ref().map(|c| c.id);
            match self.slack.post(&dest.channel_id, reply).await {
                Ok(message) => {
                    if let Some(id) = card
                        && let Err(e) = self.engine.store().set_request_message(id, &message).await
                    {
                        error!(request = %id, error = %e, "slack: approval message posted but not recorded; it will not be updated");
                    }
                }
                Err(e) => {
                    self.delivery_failed("the approval message", &dest.label, &e);
                    // The requester still learns the request exists and how to vote by text.
                    self.respond_privately(reply, dest).await;
                }
            }
            return;
        }
        match reply.visibility {
            Visibility::Ephemeral => self.respond_privately(reply, dest).await,
            Visibility::InChannel => match &dest.thread {
                Some(thread) => {
                    if thread.owned
                        && let Err(e) = self.slack.update(&thread.parent, reply).await
                    {
                        self.delivery_failed("the outcome", &dest.label, &e);
                    }
                    if let Err(e) = self.slack.reply_in_thread(&thread.parent, reply).await {
                        self.delivery_failed("the outcome line", &dest.label, &e);
                    }
                }
                None => {
                    if let Err(e) = self.slack.post(&dest.channel_id, reply).await {
                        self.delivery_failed("the reply", &dest.label, &e);
                    }
                }
            },
        }
    }

    async fn respond_privately(&self, reply: &Reply, dest: &Destination) {
        let result = match &dest.response_url {
            Some(url) => self.slack.respond(url, reply).await,
            None => {
                self.slack
                    .post_ephemeral(&dest.channel_id, &dest.user_id, reply)
                    .await
            }
        };
        if let Err(e) = result {
            self.delivery_failed("a private reply", &dest.label, &e);
        }
    }
}

/// Why a signed request was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// 400: malformed.
    Bad(BadRequest),
    /// 403: from a workspace or organization this bot is not pinned to.
    ForeignWorkspace,
    /// 503: the store is down; Slack retries events.
    Unavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Bad(e) => bad_request(e),
            Refusal::ForeignWorkspace => (
                StatusCode::FORBIDDEN,
                "request from a Slack workspace this bot does not serve\n",
            )
                .into_response(),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "store unavailable\n",
            )
                .into_response(),
        }
    }
}

/// `<@U123> deploy staging v1` → `deploy staging v1`.
fn strip_mentions(text: &str) -> String {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("<@") {
        match after.find('>') {
            Some(end) => rest = after[end + 1..].trim_start(),
            None => break,
        }
    }
    rest.trim().to_string()
}

// ---------------------------------------------------------------------------------------
// Progress in a thread
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Parts {
    slack: Arc<SlackPlatform>,
    metrics: Arc<Metrics>,
}

/// Progress lines of one command. The engine reports synchronously, so lines go into a
/// channel and a task posts them; lines that arrive while a post waits for the channel's
/// rate limit are sent together as one message.
struct ThreadProgress {
    tx: mpsc::UnboundedSender<String>,
}

impl Progress for ThreadProgress {
    fn report(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

impl ThreadProgress {
    /// The sink for the engine, and a task that ends (with the thread used, if any) once the
    /// sink is dropped and every line is posted.
    fn start(
        parts: Parts,
        channel_id: String,
        header: String,
        thread: Option<Thread>,
    ) -> (Arc<dyn Progress>, JoinHandle<Option<Thread>>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut thread = thread;
            while let Some(first) = rx.recv().await {
                let mut lines = vec![first];
                while let Ok(more) = rx.try_recv() {
                    lines.push(more);
                }
                if thread.is_none() {
                    match parts.slack.post_markup(&channel_id, &header).await {
                        Ok(parent) => {
                            thread = Some(Thread {
                                parent,
                                owned: true,
                            })
                        }
                        Err(e) => {
                            error!(error = %e, "slack: could not open the progress thread");
                            count_failure(&parts.metrics);
                            continue;
                        }
                    }
                }
                if let Some(t) = &thread
                    && let Err(e) = parts
                        .slack
                        .post_in_thread(&t.parent, &lines.join("\n"))
                        .await
                {
                    error!(error = %e, "slack: could not post progress");
                    count_failure(&parts.metrics);
                }
            }
            thread
        });
        (Arc::new(ThreadProgress { tx }), task)
    }
}

fn count_failure(metrics: &Metrics) {
    metrics
        .delivery_failures
        .get_or_create(&DeliveryLabels {
            platform: "slack".into(),
        })
        .inc();
}

// ---------------------------------------------------------------------------------------
// HTTP endpoints
// ---------------------------------------------------------------------------------------

/// POST /slack/commands, /slack/interactions, /slack/events.
pub fn routes<S: Clone + Send + Sync + 'static>(bridge: Arc<SlackBridge>) -> Router<S> {
    Router::new()
        .route("/slack/commands", post(http_command))
        .route("/slack/interactions", post(http_interaction))
        .route("/slack/events", post(http_event))
        .with_state(bridge)
}

fn unauthorized(e: SignatureError) -> Response {
    debug!(error = %e, "slack: request refused");
    (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response()
}

fn bad_request(b: BadRequest) -> Response {
    info!(reason = %b.0, "slack: malformed request");
    (StatusCode::BAD_REQUEST, format!("{}\n", b.0)).into_response()
}

/// Why a form body was not read.
enum FormRejection {
    /// 401: unsigned, forged or stale; nothing was parsed.
    Signature(SignatureError),
    /// 400: signed, but not a form.
    Malformed(BadRequest),
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            FormRejection::Signature(e) => unauthorized(e),
            FormRejection::Malformed(e) => bad_request(e),
        }
    }
}

/// The fields of a form body, once its signature holds.
fn signed_form(
    b: &SlackBridge,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<HashMap<String, String>, FormRejection> {
    b.check_signature(headers, body)
        .map_err(FormRejection::Signature)?;
    form_fields(body).map_err(FormRejection::Malformed)
}

async fn http_command(
    State(b): State<Arc<SlackBridge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match signed_form(&b, &headers, &body) {
        Ok(f) => f,
        Err(rejected) => return rejected.into_response(),
    };
    // Slack checks the certificate of a slash command URL with an unsigned-looking probe.
    if fields.get("ssl_check").is_some_and(|v| v == "1") {
        return StatusCode::OK.into_response();
    }
    match SlashCommand::from_fields(|k| fields.get(k).cloned()) {
        Ok(cmd) => b.slash_command(cmd).await.into_response(),
        Err(e) => bad_request(e),
    }
}

async fn http_interaction(
    State(b): State<Arc<SlackBridge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match signed_form(&b, &headers, &body) {
        Ok(f) => f,
        Err(rejected) => return rejected.into_response(),
    };
    let Some(raw) = fields.get("payload") else {
        return bad_request(BadRequest("no payload field".into()));
    };
    let payload: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => return bad_request(BadRequest(format!("payload is not JSON: {e}"))),
    };
    b.interaction(&payload).await.into_response()
}

async fn http_event(
    State(b): State<Arc<SlackBridge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = b.check_signature(&headers, &body) {
        return unauthorized(e);
    }
    if std::str::from_utf8(&body).is_err() {
        return bad_request(BadRequest("body is not UTF-8".into()));
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(BadRequest(format!("body is not JSON: {e}"))),
    };
    let retry = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok());
    b.event(&value, retry).await.into_response()
}

// ---------------------------------------------------------------------------------------
// Socket Mode
// ---------------------------------------------------------------------------------------

impl SlackBridge {
    /// Holds a Socket Mode connection for as long as the process runs, reconnecting when
    /// Slack asks (`disconnect`) or the connection drops.
    ///
    /// The client is written here on tokio-tungstenite rather than taken from
    /// slack-morphism's listener so that envelopes reach exactly the handlers HTTP mode
    /// uses, on the same raw payloads, and each envelope is acknowledged before its command
    /// runs rather than after a callback returns.
    pub fn start_socket_mode(self: &Arc<Self>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match this.socket_session().await {
                    Ok(()) => {
                        failures = 0;
                        info!("slack socket mode: reconnecting");
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = Duration::from_secs(1u64 << failures.min(5));
                        warn!(error = %e, wait_s = wait.as_secs(), "slack socket mode: connection failed");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        })
    }

    /// One connection, until Slack closes it or asks for a reconnect.
    async fn socket_session(self: &Arc<Self>) -> anyhow::Result<()> {
        let url = self.slack.open_socket_url().await?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let (mut tx, mut rx) = ws.split();
        while let Some(frame) = rx.next().await {
            let text = match frame? {
                Message::Text(t) => t,
                Message::Ping(p) => {
                    tx.send(Message::Pong(p)).await?;
                    continue;
                }
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                warn!("slack socket mode: frame is not JSON");
                continue;
            };
            match frame.get("type").and_then(Value::as_str) {
                Some("hello") => info!("slack socket mode: connected"),
                Some("disconnect") => {
                    info!(reason = ?frame.get("reason"), "slack socket mode: asked to reconnect");
                    return Ok(());
                }
                _ => {
                    if let Some(ack) = self.envelope(&frame).await {
                        tx.send(Message::Text(ack.to_string().into())).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles one envelope and returns its acknowledgement.
    pub async fn envelope(self: &Arc<Self>, frame: &Value) -> Option<Value> {
        let envelope_id = frame.get("envelope_id")?.as_str()?.to_string();
        let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
        let accepts_payload = frame
            .get("accepts_response_payload")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = frame.get("type").and_then(Value::as_str);
        let handled = match kind {
            Some("slash_commands") => {
                match SlashCommand::from_fields(|k| json_str(&payload, &[k])) {
                    Ok(cmd) => self.slash_command(cmd).await,
                    Err(e) => Err(Refusal::Bad(e)),
                }
            }
            Some("interactive") => self.interaction(&payload).await,
            Some("events_api") => {
                let retry = frame.get("retry_attempt").map(|v| v.to_string());
                self.event(&payload, retry.as_deref()).await
            }
            other => {
                debug!(kind = ?other, "slack socket mode: envelope ignored");
                Ok(Ack::Empty)
            }
        };
        let ack = match handled {
            Ok(a) => a,
            // Not acknowledging makes Slack deliver the envelope again later.
            Err(Refusal::Unavailable) => return None,
            // Already logged; acknowledged so that Slack does not send it again.
            Err(Refusal::ForeignWorkspace) => Ack::Empty,
            Err(Refusal::Bad(e)) => {
                warn!(kind = ?kind, reason = %e.0, "slack socket mode: malformed envelope");
                Ack::Empty
            }
        };
        Some(match ack {
            Ack::Json(p) if accepts_payload => json!({ "envelope_id": envelope_id, "payload": p }),
            _ => json!({ "envelope_id": envelope_id }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(
            strip_mentions("<@W111> deploy staging v1"),
            "deploy staging v1"
        );
        assert_eq!(strip_mentions("  <@U1> <@U2>  whoami "), "whoami");
        assert_eq!(strip_mentions("<@U1"), "<@U1");
    }

    #[test]
    fn skew_beyond_five_minutes_is_stale() {
        let body = b"a=b";
        let sig = sign(b"s", 1000, body);
        assert_eq!(verify_signature(b"s", "1000", &sig, body, 1300), Ok(()));
        assert_eq!(verify_signature(b"s", "1000", &sig, body, 700), Ok(()));
        assert_eq!(
            verify_signature(b"s", "1000", &sig, body, 1301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(b"s", "1000", &sig, body, 699),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(b"t", "1000", &sig, body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s", "1000", "v0=zz", body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s", "x", &sig, body, 1000),
            Err(SignatureError::BadTimestamp)
        );
    }
}
