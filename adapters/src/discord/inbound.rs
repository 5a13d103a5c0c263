//! `POST /discord/interactions`: Discord's signed interactions, verified, decoded and handed
//! to the bot as neutral inbound messages.
//!
//! Discord wants an answer within three seconds, and the answer decides what the user sees:
//! a PING gets a PONG; a private answer that is ready in time goes back in the response
//! itself (type 4, ephemeral); anything slower or public is deferred (type 5 for a command,
//! 6 for a click) and finished through the interaction's token: the deferred response is
//! edited, private answers are ephemeral follow-ups. The token lives 15 minutes; after that
//! public answers are posted in the channel instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use erlmcp_commands::Timestamp;
use erlmcp_commands::render::{Reply, ReplyKind};
use serde_json::{Value, json};
use serenity::all::CreateInteractionResponse;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::DiscordPlatform;
use super::commands::CommandModel;
use super::interaction::{self, Interaction};
use super::render::{DiscordBody, Vote, parse_custom_id};
use super::verify::{InteractionVerifier, MAX_AGE, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::chat::{
    Ack, Asked, ChatError, Inbound, InboundHandler, InboundUser, MessageRef, Platform, Responder,
};

const PLATFORM: Platform = Platform::Discord;

/// How long an interaction token can be used for follow-ups, less a margin for the clock.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60 - 30);

/// The bot's clock (a manual one in tests).
pub type Now = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub struct InboundOptions {
    pub verifier: InteractionVerifier,
    /// Interactions from any other guild (or from DMs) are refused when set.
    pub guild_id: Option<String>,
    pub model: CommandModel,
    pub now: Now,
    /// How long a private answer is waited for before the response is deferred.
    pub answer_within: Duration,
}

pub struct DiscordInbound {
    handler: Arc<dyn InboundHandler>,
    platform: Arc<DiscordPlatform>,
    opts: InboundOptions,
    replays: ReplayGuard,
}

/// Interaction ids seen within the signature's five minutes, so a captured request sent
/// again is refused like a forged one. Older ids need no memory: their timestamps are
/// refused anyway. (Across replicas the conversation layer's stored delivery keys stop
/// a replay from running twice.)
#[derive(Default)]
struct ReplayGuard {
    seen: Mutex<std::collections::HashMap<String, i64>>,
}

impl ReplayGuard {
    /// True the first time `id` is seen.
    fn first(&self, id: &str, now: i64) -> bool {
        let mut seen = lock(&self.seen);
        if seen.len() > 1024 {
            let horizon = MAX_AGE.as_secs() as i64;
            seen.retain(|_, at| now - *at <= horizon);
        }
        seen.insert(id.to_string(), now).is_none()
    }
}

impl DiscordInbound {
    pub fn new(
        handler: Arc<dyn InboundHandler>,
        platform: Arc<DiscordPlatform>,
        opts: InboundOptions,
    ) -> Arc<DiscordInbound> {
        Arc::new(DiscordInbound {
            handler,
            platform,
            opts,
            replays: ReplayGuard::default(),
        })
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>(inbound: Arc<DiscordInbound>) -> Router<S> {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(inbound)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn callback(response: CreateInteractionResponse) -> Response {
    let body = serde_json::to_value(&response).unwrap_or_else(|_| json!({"type": 1}));
    json_response(StatusCode::OK, body)
}

fn ephemeral(text: &str) -> Response {
    let reply = Reply::refused(text);
    callback(CreateInteractionResponse::Message(
        DiscordBody::from_reply(&reply).response(true),
    ))
}

async fn interactions(
    State(d): State<Arc<DiscordInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = (d.opts.now)();
    if let Err(e) = d.opts.verifier.check(
        header(SIGNATURE_HEADER),
        header(TIMESTAMP_HEADER),
        &body,
        now.timestamp(),
    ) {
        warn!(error = %e, "discord: interaction refused");
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": e.to_string()}));
    }
    if let Some(id) = interaction::interaction_id(&body)
        && !d.replays.first(&id, now.timestamp())
    {
        warn!(interaction = %id, "discord: replayed interaction refused");
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "interaction already received"}),
        );
    }
    let decoded = match interaction::decode(&body) {
        Ok(i) => i,
        Err(e) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
        }
    };
    let (origin, asked, thread, is_command) = match decoded {
        Interaction::Ping => return callback(CreateInteractionResponse::Pong),
        Interaction::Unsupported(kind, _) => {
            debug!(
                kind = kind.as_str(),
                "discord: interaction type not handled"
            );
            return ephemeral("This kind of interaction is not supported.");
        }
        Interaction::Command(call) => {
            let text = match d.opts.model.text_for(&call.name, &call.path, &call.options) {
                Ok(text) => text,
                Err(e) => return ephemeral(&e.to_string()),
            };
            (call.origin, Asked::Command(text), None, true)
        }
        Interaction::Component(click) => {
            let Some((vote, request)) = parse_custom_id(&click.custom_id) else {
                debug!(custom_id = %click.custom_id, "discord: component ignored");
                return callback(CreateInteractionResponse::Acknowledge);
            };
            let channel = click
                .message_channel_id
                .clone()
                .or_else(|| click.origin.channel_id.clone())
                .unwrap_or_default();
            let card = MessageRef {
                platform: PLATFORM,
                channel,
                id: click.message_id.clone(),
            };
            let asked = Asked::Vote {
                request,
                approve: vote == Vote::Approve,
            };
            (click.origin, asked, Some(card), false)
        }
    };
    if let Some(guild) = &d.opts.guild_id
        && origin.guild_id.as_deref() != Some(guild.as_str())
    {
        warn!(user = %origin.user_id, guild = ?origin.guild_id, "discord: interaction from another guild refused");
        return ephemeral("This bot serves another Discord server.");
    }
    let Some(channel) = origin.channel_id.clone() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "malformed interaction: missing channel_id"}),
        );
    };
    let (tx, rx) = oneshot::channel();
    let phase = Arc::new(Mutex::new(Phase::Waiting));
    let responder = Arc::new(InteractionResponder {
        platform: d.platform.clone(),
        token: origin.token.clone(),
        is_command,
        phase: phase.clone(),
        first: Mutex::new(Some(tx)),
        received_at: now,
        now: d.opts.now.clone(),
        original_used: Mutex::new(false),
    });
    let inbound = Inbound {
        platform: PLATFORM,
        user: InboundUser {
            id: origin.user_id.clone(),
            name: origin.user_name.clone(),
        },
        // Discord sends the member's roles with every interaction: nothing to look up.
        groups: Some(
            origin
                .roles
                .iter()
                .map(|r| format!("discord-role:{r}"))
                .collect(),
        ),
        channel,
        asked,
        thread,
        delivery: Some(origin.id.clone()),
        ack_carries_text: true,
        responder,
    };
    let ack = match d.handler.receive(inbound).await {
        Ok(ack) => ack,
        Err(e) => {
            warn!(error = %e, "discord: interaction not taken");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            );
        }
    };
    match ack {
        // Nothing runs after a parse error: the answer is complete.
        Ack::Private(reply) if reply.kind == ReplyKind::Usage => {
            *lock(&phase) = Phase::Inline;
            answer_privately(&reply)
        }
        // Work that takes a while: "thinking…" now, the outcome in place of it later.
        Ack::Private(_) => defer(&phase, is_command),
        Ack::Nothing => {
            let mut rx = rx;
            let first = tokio::select! {
                first = &mut rx => first.ok(),
                _ = tokio::time::sleep(d.opts.answer_within) => None,
            };
            match first {
                Some(First::Private(reply)) => answer_privately(&reply),
                Some(First::Defer) => defer(&phase, is_command),
                // Finished without a word (a vote whose card is redrawn, a replay), or not
                // in time. Decided under the lock the responder hands over under, so an
                // answer handed over meanwhile is still found.
                None => {
                    let mut p = lock(&phase);
                    if *p == Phase::Waiting {
                        *p = Phase::Deferred;
                        drop(p);
                        return defer(&phase, is_command);
                    }
                    drop(p);
                    match rx.try_recv() {
                        Ok(First::Private(reply)) => answer_privately(&reply),
                        _ => defer(&phase, is_command),
                    }
                }
            }
        }
    }
}

fn answer_privately(reply: &Reply) -> Response {
    callback(CreateInteractionResponse::Message(
        DiscordBody::from_reply(reply).response(true),
    ))
}

/// Type 5 for a command (the user sees "thinking…"), type 6 for a click (nothing changes
/// until the card is redrawn).
fn defer(phase: &Mutex<Phase>, is_command: bool) -> Response {
    *lock(phase) = Phase::Deferred;
    if is_command {
        callback(CreateInteractionResponse::Defer(Default::default()))
    } else {
        callback(CreateInteractionResponse::Acknowledge)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The HTTP response has not been chosen yet.
    Waiting,
    /// The answer went back in the response itself.
    Inline,
    /// The response was a deferral: answers go through the token.
    Deferred,
}

enum First {
    Private(Reply),
    Defer,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers one interaction: in its HTTP response while that is still open, else through its
/// token while that lives.
struct InteractionResponder {
    platform: Arc<DiscordPlatform>,
    token: String,
    is_command: bool,
    phase: Arc<Mutex<Phase>>,
    /// Dropped with the responder: the endpoint then knows nothing more will come.
    first: Mutex<Option<oneshot::Sender<First>>>,
    received_at: Timestamp,
    now: Now,
    /// Whether the deferred "thinking…" response has been replaced by an answer.
    original_used: Mutex<bool>,
}

impl InteractionResponder {
    /// Hands `first` to the endpoint if it is still waiting; false when it no longer is.
    fn hand_over(&self, first: First) -> bool {
        let mut phase = lock(&self.phase);
        if *phase != Phase::Waiting {
            return false;
        }
        let Some(tx) = lock(&self.first).take() else {
            return false;
        };
        if tx.send(first).is_err() {
            return false;
        }
        *phase = Phase::Inline;
        true
    }

    fn token_alive(&self) -> bool {
        let age = (self.now)() - self.received_at;
        age.to_std().is_ok_and(|age| age < TOKEN_LIFETIME) || age < chrono::Duration::zero()
    }

    fn expired(&self, method: &'static str) -> ChatError {
        ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method,
            error: "the interaction's token has expired (15 minutes)".into(),
        }
    }
}

/// A command deferred in public whose answers all went elsewhere (a progress thread, the
/// channel) would show "thinking…" until the token dies: the placeholder goes when nothing
/// more can come.
impl Drop for InteractionResponder {
    fn drop(&mut self) {
        let deferred = *lock(&self.phase) == Phase::Deferred;
        let unused = !*lock(&self.original_used);
        if !(self.is_command && deferred && unused && self.token_alive()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let platform = self.platform.clone();
        let token = std::mem::take(&mut self.token);
        runtime.spawn(async move {
            if let Err(e) = platform.delete_original(&token).await {
                debug!(error = %e, "discord: deferred response not removed");
            }
        });
    }
}

#[async_trait]
impl Responder for InteractionResponder {
    async fn private(&self, reply: &Reply) -> Result<(), ChatError> {
        if self.hand_over(First::Private(reply.clone())) {
            return Ok(());
        }
        if !self.token_alive() {
            return Err(self.expired("create_followup_message"));
        }
        self.platform
            .followup(&self.token, &DiscordBody::from_reply(reply), true)
            .await?;
        // A command deferred in public keeps showing "thinking…" until replaced: the
        // answer was private, so the placeholder goes.
        let placeholder = self.is_command && !*lock(&self.original_used);
        if placeholder {
            *lock(&self.original_used) = true;
            if let Err(e) = self.platform.delete_original(&self.token).await {
                debug!(error = %e, "discord: deferred response not removed");
            }
        }
        Ok(())
    }

    async fn public(&self, reply: &Reply) -> Result<Option<MessageRef>, ChatError> {
        // Public answers always go through the token, which gives back the message id
        // cards need to be redrawn.
        if self.hand_over(First::Defer) {
            *lock(&self.phase) = Phase::Deferred;
        }
        if !self.token_alive() {
            return Ok(None);
        }
        let body = DiscordBody::from_reply(reply);
        if !self.is_command {
            return self
                .platform
                .followup(&self.token, &body, false)
                .await
                .map(Some);
        }
        let first_use = {
            let mut used = lock(&self.original_used);
            let first = !*used;
            *used = true;
            first
        };
        if first_use {
            self.platform
                .edit_original(&self.token, &body)
                .await
                .map(Some)
        } else {
            self.platform
                .followup(&self.token, &body, false)
                .await
                .map(Some)
        }
    }
}
