//! Slack inbound: slash commands, button clicks and Events API deliveries, over HTTP
//! (signed requests) or Socket Mode (a WebSocket the bot opens), both feeding the same
//! handlers.
//!
//! Each request is verified here (signature, workspace), decoded into one neutral
//! [`Inbound`] and handed to the bot's [`InboundHandler`], which answers within Slack's
//! three seconds: the [`Ack`] it returns becomes the HTTP body or the envelope's
//! acknowledgement. Replies that come later travel through `response_url` (what only the
//! requester should see) or the Web API.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use erlmcp_commands::RequestId;
use erlmcp_commands::render::Reply;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::blocks::{self, APPROVE_ACTION, DENY_ACTION};
use super::signature::{SignatureError, verify_signature};
use super::{Now, PLATFORM, SlackPlatform};
use crate::chat::{
    Ack, Asked, ChatError, Inbound, InboundHandler, InboundUser, MessageRef, Responder,
};

/// How Slack reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Socket,
}

pub struct InboundOptions {
    pub mode: Mode,
    /// Empty in Socket Mode; without it no HTTP request is trusted.
    pub signing_secret: String,
    /// The workspace and organization requests must come from, when pinned.
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    /// The bot's clock, for the signatures' replay window.
    pub now: Now,
}

/// Slack's side of the bot's inbound messages.
pub struct SlackInbound {
    handler: Arc<dyn InboundHandler>,
    slack: Arc<SlackPlatform>,
    opts: InboundOptions,
}

/// Why a request body was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Why a signed request was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// 400: malformed.
    Bad(BadRequest),
    /// 403: from a workspace or organization this bot is not pinned to.
    ForeignWorkspace,
    /// 503: the bot cannot record deliveries; Slack retries events.
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

/// What Slack's immediate answer carries.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackAck {
    Empty,
    Json(Value),
}

impl IntoResponse for SlackAck {
    fn into_response(self) -> Response {
        match self {
            SlackAck::Empty => StatusCode::OK.into_response(),
            SlackAck::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        }
    }
}

impl From<Ack> for SlackAck {
    fn from(ack: Ack) -> SlackAck {
        match ack {
            // Slack retries until it gets a 200: the replay is acknowledged like the first.
            Ack::Nothing | Ack::Replayed => SlackAck::Empty,
            Ack::Private(reply) => SlackAck::Json(json!({
                "response_type": "ephemeral",
                "text": blocks::text(&reply.message),
            })),
        }
    }
}

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

pub(super) fn json_str(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
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

/// Answers one person: through the `response_url` Slack gave with their request, else as
/// an ephemeral message in the channel.
struct SlackResponder {
    slack: Arc<SlackPlatform>,
    response_url: Option<String>,
    channel: String,
    user: String,
}

#[async_trait]
impl Responder for SlackResponder {
    async fn private(&self, reply: &Reply) -> Result<(), ChatError> {
        match &self.response_url {
            Some(url) => self.slack.respond(url, reply).await,
            None => {
                self.slack
                    .post_ephemeral(&self.channel, &self.user, reply)
                    .await
            }
        }
    }
}

impl SlackInbound {
    pub fn new(
        handler: Arc<dyn InboundHandler>,
        slack: Arc<SlackPlatform>,
        opts: InboundOptions,
    ) -> Arc<SlackInbound> {
        if opts.team_id.is_none() {
            warn!(
                "slack.team_id is not set: signed requests are taken from any Slack workspace; set it to the id (T…) of yours"
            );
        }
        Arc::new(SlackInbound {
            handler,
            slack,
            opts,
        })
    }

    pub fn mode(&self) -> Mode {
        self.opts.mode
    }

    pub fn platform(&self) -> &Arc<SlackPlatform> {
        &self.slack
    }

    fn responder(
        &self,
        response_url: Option<String>,
        channel: &str,
        user: &str,
    ) -> Arc<dyn Responder> {
        Arc::new(SlackResponder {
            slack: self.slack.clone(),
            response_url,
            channel: channel.to_string(),
            user: user.to_string(),
        })
    }

    async fn hand_over(&self, inbound: Inbound) -> Result<SlackAck, Refusal> {
        self.handler
            .receive(inbound)
            .await
            .map(SlackAck::from)
            .map_err(|_| Refusal::Unavailable)
    }

    /// Requests signed with our secret but naming another workspace (or organization) are
    /// refused: the secret alone does not say which workspace a request speaks for.
    fn check_workspace(&self, team: Option<&str>, enterprise: Option<&str>) -> Result<(), Refusal> {
        let foreign_team = self
            .opts
            .team_id
            .as_deref()
            .is_some_and(|pinned| team != Some(pinned));
        let foreign_enterprise = self
            .opts
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

    fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (get("x-slack-request-timestamp"), get("x-slack-signature"))
        else {
            return Err(SignatureError::Missing);
        };
        if self.opts.signing_secret.is_empty() {
            // Without a secret nothing can be trusted.
            return Err(SignatureError::Mismatch);
        }
        verify_signature(
            self.opts.signing_secret.as_bytes(),
            ts,
            sig,
            body,
            (self.opts.now)().timestamp(),
        )
    }

    /// A slash command. A replay of one already taken is acknowledged and dropped. The
    /// delivery keys keep their `slack…:` prefixes: rows remembered before deliveries were
    /// keyed by platform have them, and a replay across an upgrade must still match.
    pub async fn slash_command(&self, cmd: SlashCommand) -> Result<SlackAck, Refusal> {
        self.check_workspace(cmd.team_id.as_deref(), cmd.enterprise_id.as_deref())?;
        let responder = self.responder(cmd.response_url.clone(), &cmd.channel_id, &cmd.user_id);
        self.hand_over(Inbound {
            platform: PLATFORM,
            user: InboundUser {
                id: cmd.user_id,
                name: cmd.user_name,
            },
            groups: None,
            channel: cmd.channel_id,
            asked: Asked::Command(cmd.text),
            thread: None,
            delivery: cmd.trigger_id.map(|t| format!("slack-trigger:{t}")),
            ack_carries_text: true,
            responder,
        })
        .await
    }

    /// A button click (block_actions). Other interaction types are acknowledged and ignored.
    /// A replayed click is acknowledged and dropped: no second vote, reply or audit row.
    pub async fn interaction(&self, payload: &Value) -> Result<SlackAck, Refusal> {
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
            return Ok(SlackAck::Empty);
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
                return Ok(SlackAck::Empty);
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
        let delivery = match json_str(payload, &["trigger_id"]) {
            Some(trigger) => Some(format!("slack-trigger:{trigger}")),
            None => {
                json_str(action, &["action_ts"]).map(|ts| format!("slack-action:{user_id}:{ts}"))
            }
        };
        let message_ts = json_str(payload, &["container", "message_ts"])
            .or_else(|| json_str(payload, &["message", "ts"]));
        let responder = self.responder(json_str(payload, &["response_url"]), &channel_id, &user_id);
        self.hand_over(Inbound {
            platform: PLATFORM,
            user: InboundUser {
                name: json_str(payload, &["user", "username"])
                    .or_else(|| json_str(payload, &["user", "name"]))
                    .unwrap_or_else(|| user_id.clone()),
                id: user_id,
            },
            groups: None,
            thread: message_ts.map(|ts| MessageRef {
                platform: PLATFORM,
                channel: channel_id.clone(),
                id: ts,
            }),
            channel: channel_id,
            asked: Asked::Vote { request, approve },
            delivery,
            // A click's answer is the card redrawn, and anything private comes after.
            ack_carries_text: false,
            responder,
        })
        .await?;
        Ok(SlackAck::Empty)
    }

    /// An Events API delivery. Each event_id runs once across retries and replicas.
    pub async fn event(&self, body: &Value, retry: Option<&str>) -> Result<SlackAck, Refusal> {
        match body.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                let challenge = body
                    .get("challenge")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Refusal::Bad(BadRequest("url_verification without a challenge".into()))
                    })?;
                Ok(SlackAck::Json(json!({ "challenge": challenge })))
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
                if let Some(event) = body.get("event") {
                    debug!(event_id, retry = retry.unwrap_or("-"), "slack: event");
                    self.event_callback(event_id, event).await?;
                }
                Ok(SlackAck::Empty)
            }
            Some("app_rate_limited") => {
                warn!("slack: Events API deliveries are being rate limited by Slack");
                Ok(SlackAck::Empty)
            }
            other => {
                debug!(kind = ?other, "slack: event ignored");
                Ok(SlackAck::Empty)
            }
        }
    }

    /// An app mention: the text after the bot's name is the command, answered in the
    /// mention's thread.
    async fn event_callback(&self, event_id: &str, event: &Value) -> Result<(), Refusal> {
        if event.get("type").and_then(Value::as_str) != Some("app_mention")
            || event.get("bot_id").is_some()
        {
            return Ok(());
        }
        let (Some(user), Some(channel), Some(text)) = (
            json_str(event, &["user"]),
            json_str(event, &["channel"]),
            json_str(event, &["text"]),
        ) else {
            return Ok(());
        };
        let responder = self.responder(None, &channel, &user);
        self.hand_over(Inbound {
            platform: PLATFORM,
            user: InboundUser {
                id: user.clone(),
                name: user,
            },
            groups: None,
            thread: json_str(event, &["ts"]).map(|ts| MessageRef {
                platform: PLATFORM,
                channel: channel.clone(),
                id: ts,
            }),
            channel,
            asked: Asked::Command(strip_mentions(&text)),
            delivery: Some(format!("slack:{event_id}")),
            // The Events API takes an empty 200; anything private goes as an ephemeral.
            ack_carries_text: false,
            responder,
        })
        .await
        .map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------
// HTTP endpoints
// ---------------------------------------------------------------------------------------

/// POST /slack/commands, /slack/interactions, /slack/events.
pub fn routes<S: Clone + Send + Sync + 'static>(inbound: Arc<SlackInbound>) -> Router<S> {
    Router::new()
        .route("/slack/commands", post(http_command))
        .route("/slack/interactions", post(http_interaction))
        .route("/slack/events", post(http_event))
        .with_state(inbound)
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
    s: &SlackInbound,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<HashMap<String, String>, FormRejection> {
    s.check_signature(headers, body)
        .map_err(FormRejection::Signature)?;
    form_fields(body).map_err(FormRejection::Malformed)
}

async fn http_command(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match signed_form(&s, &headers, &body) {
        Ok(f) => f,
        Err(rejected) => return rejected.into_response(),
    };
    // Slack checks the certificate of a slash command URL with an unsigned-looking probe.
    if fields.get("ssl_check").is_some_and(|v| v == "1") {
        return StatusCode::OK.into_response();
    }
    match SlashCommand::from_fields(|k| fields.get(k).cloned()) {
        Ok(cmd) => s.slash_command(cmd).await.into_response(),
        Err(e) => bad_request(e),
    }
}

async fn http_interaction(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match signed_form(&s, &headers, &body) {
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
    s.interaction(&payload).await.into_response()
}

async fn http_event(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = s.check_signature(&headers, &body) {
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
    s.event(&value, retry).await.into_response()
}

/// Decodes a slash command carried in a Socket Mode envelope's payload.
pub(super) fn slash_command_from_json(payload: &Value) -> Result<SlashCommand, BadRequest> {
    SlashCommand::from_fields(|k| json_str(payload, &[k]))
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
}
