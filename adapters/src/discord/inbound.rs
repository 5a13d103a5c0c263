//! `POST /discord/interactions`: Discord's signed interactions, verified, decoded and handed
//! to the bot as neutral inbound messages.
//!
//! Discord wants an answer within three seconds, and the answer decides what the user sees:
//! a PING gets a PONG; a private answer that is ready in time goes back in the response
//! itself (type 4, ephemeral); anything slower or public is deferred (type 5 for a command,
//! 6 for a click) and finished through the interaction's token: the deferred response is
//! edited, private answers are ephemeral follow-ups. The token lives 15 minutes; after that
//! public answers are posted in the channel instead.
//!
//! In gateway mode the same interactions arrive over the bot's connection
//! ([`DiscordInbound::from_gateway`]) and take the same path; only the response goes to the
//! interaction's callback endpoint instead of into an HTTP answer.

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
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

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
    /// Checks the interactions POSTed to the endpoint. `None` in gateway mode: interactions
    /// arrive over the bot's own authenticated connection, and the endpoint refuses all.
    pub verifier: Option<InteractionVerifier>,
    /// Interactions from any other guild (or from DMs) are refused when set.
    pub guild_id: Option<String>,
    pub model: CommandModel,
    pub now: Now,
    /// How long a private answer is waited for before the response is deferred.
    pub answer_within: Duration,
}

/// How long follow-ups wait for the interaction's response to go out: Discord's own limit
/// for it, after which there is nothing left to wait for.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(3);

pub struct DiscordInbound {
    handler: Arc<dyn InboundHandler>,
    platform: Arc<DiscordPlatform>,
    opts: InboundOptions,
    replays: ReplayGuard,
}

/// Interaction ids seen within the signature's five minutes, so a captured request sent
/// again is refused like a forged one. Older ids need no memory: their timestamps are
/// refused anyway. Across replicas the conversation layer's stored delivery keys catch
/// what this memory cannot ([`Ack::Replayed`]).
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

/// What becomes of one interaction, whichever way it came.
enum Answer {
    /// Its response, with the signal that opens its token to follow-ups once the response
    /// has gone out (dropped when it has).
    Respond(Box<CreateInteractionResponse>, Acknowledged),
    /// No response of its own.
    Refuse(Refusal),
}

enum Refusal {
    /// Received before, by this replica or another: that delivery answers it.
    Replayed,
    /// Not an interaction the bot can read.
    Malformed(String),
    /// The bot cannot take it now (its store is down).
    Unavailable(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Replayed => StatusCode::UNAUTHORIZED,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn text(&self) -> String {
        match self {
            Refusal::Replayed => REPLAYED.to_string(),
            Refusal::Malformed(e) | Refusal::Unavailable(e) => e.clone(),
        }
    }
}

const REPLAYED: &str = "interaction already received";

/// Set when the interaction's response has gone out (or never will): dropping it says so.
struct Acknowledged(Option<watch::Sender<bool>>);

impl Drop for Acknowledged {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            tx.send_replace(true);
        }
    }
}

fn respond(response: CreateInteractionResponse) -> Answer {
    Answer::Respond(Box::new(response), Acknowledged(None))
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

    pub fn platform(&self) -> &Arc<DiscordPlatform> {
        &self.platform
    }

    /// An interaction received over the gateway: the same handling as the endpoint's, the
    /// response sent to the interaction's callback endpoint instead of in an HTTP answer.
    /// The connection is the bot's own, so there is no signature to check.
    pub async fn from_gateway(&self, body: &[u8]) {
        let Some((id, token)) = interaction::callback_target(body) else {
            warn!("discord: an interaction without id or token came over the gateway");
            return;
        };
        let now = (self.opts.now)();
        match self.answer(body, now).await {
            Answer::Respond(response, acked) => {
                if let Err(e) = self.platform.respond(&id, &token, &response).await {
                    warn!(interaction = %id, error = %e, "discord: interaction response not sent");
                }
                drop(acked);
            }
            Answer::Refuse(Refusal::Replayed) => {
                info!(interaction = %id, "discord: interaction already received; not answered again");
            }
            Answer::Refuse(refusal) => {
                warn!(interaction = %id, error = %refusal.text(), "discord: interaction not answered");
            }
        }
    }

    /// Decodes one authenticated interaction, hands it to the bot, and chooses its response.
    async fn answer(&self, body: &[u8], now: Timestamp) -> Answer {
        let decoded = match interaction::decode(body) {
            Ok(i) => i,
            Err(e) => return Answer::Refuse(Refusal::Malformed(e.to_string())),
        };
        let (origin, asked, thread, is_command) = match decoded {
            Interaction::Ping => return respond(CreateInteractionResponse::Pong),
            Interaction::Unsupported(kind, _) => {
                debug!(
                    kind = kind.as_str(),
                    "discord: interaction type not handled"
                );
                return respond(ephemeral("This kind of interaction is not supported."));
            }
            Interaction::Command(call) => {
                let text = match self
                    .opts
                    .model
                    .text_for(&call.name, &call.path, &call.options)
                {
                    Ok(text) => text,
                    Err(e) => return respond(ephemeral(&e.to_string())),
                };
                (call.origin, Asked::Command(text), None, true)
            }
            Interaction::Component(click) => {
                let Some((vote, request)) = parse_custom_id(&click.custom_id) else {
                    debug!(custom_id = %click.custom_id, "discord: component ignored");
                    return respond(CreateInteractionResponse::Acknowledge);
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
        if let Some(guild) = &self.opts.guild_id
            && origin.guild_id.as_deref() != Some(guild.as_str())
        {
            warn!(user = %origin.user_id, guild = ?origin.guild_id, "discord: interaction from another guild refused");
            return respond(ephemeral("This bot serves another Discord server."));
        }
        let Some(channel) = origin.channel_id.clone() else {
            return Answer::Refuse(Refusal::Malformed(
                "malformed interaction: missing channel_id".into(),
            ));
        };
        let (tx, rx) = oneshot::channel();
        let (acked_tx, acked_rx) = watch::channel(false);
        let phase = Arc::new(Mutex::new(Phase::Waiting));
        let responder = Arc::new(InteractionResponder {
            platform: self.platform.clone(),
            token: origin.token.clone(),
            is_command,
            phase: phase.clone(),
            first: Mutex::new(Some(tx)),
            received_at: now,
            now: self.opts.now.clone(),
            original_used: Mutex::new(false),
            acked: acked_rx,
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
        let ack = match self.handler.receive(inbound).await {
            Ok(ack) => ack,
            Err(e) => {
                warn!(error = %e, "discord: interaction not taken");
                return Answer::Refuse(Refusal::Unavailable(e.to_string()));
            }
        };
        let acked = Acknowledged(Some(acked_tx));
        let response = match ack {
            // Nothing ran and nothing will: no response, so the first delivery's stands.
            Ack::Replayed => return Answer::Refuse(Refusal::Replayed),
            // Nothing runs after a parse error: the answer is complete.
            Ack::Private(reply) if reply.kind == ReplyKind::Usage => {
                *lock(&phase) = Phase::Inline;
                private_response(&reply)
            }
            // Work that takes a while: "thinking…" now, the outcome in place of it later.
            Ack::Private(_) => defer(&phase, is_command),
            Ack::Nothing => {
                let mut rx = rx;
                let first = tokio::select! {
                    first = &mut rx => first.ok(),
                    _ = tokio::time::sleep(self.opts.answer_within) => None,
                };
                match first {
                    Some(First::Private(reply)) => private_response(&reply),
                    Some(First::Defer) => defer(&phase, is_command),
                    // Finished without a word (a vote whose card is redrawn), or not in
                    // time. Decided under the lock the responder hands over under, so an
                    // answer handed over meanwhile is still found.
                    None => {
                        let mut p = lock(&phase);
                        if *p == Phase::Waiting {
                            *p = Phase::Deferred;
                            drop(p);
                            defer(&phase, is_command)
                        } else {
                            drop(p);
                            match rx.try_recv() {
                                Ok(First::Private(reply)) => private_response(&reply),
                                _ => defer(&phase, is_command),
                            }
                        }
                    }
                }
            }
        };
        Answer::Respond(Box::new(response), acked)
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

fn ephemeral(text: &str) -> CreateInteractionResponse {
    private_response(&Reply::refused(text))
}

async fn interactions(
    State(d): State<Arc<DiscordInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = &d.opts.verifier else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "this bot receives interactions over the gateway"}),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = (d.opts.now)();
    if let Err(e) = verifier.check(
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
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": REPLAYED}));
    }
    match d.answer(&body, now).await {
        Answer::Respond(response, acked) => {
            let response = callback(*response);
            drop(acked);
            response
        }
        Answer::Refuse(refusal) => {
            if matches!(refusal, Refusal::Replayed) {
                warn!("discord: interaction received before (by another replica) refused");
            }
            json_response(refusal.status(), json!({"error": refusal.text()}))
        }
    }
}

fn private_response(reply: &Reply) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(DiscordBody::from_reply(reply).response(true))
}

/// Type 5 for a command (the user sees "thinking…"), type 6 for a click (nothing changes
/// until the card is redrawn).
fn defer(phase: &Mutex<Phase>, is_command: bool) -> CreateInteractionResponse {
    *lock(phase) = Phase::Deferred;
    if is_command {
        CreateInteractionResponse::Defer(Default::default())
    } else {
        CreateInteractionResponse::Acknowledge
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

async fn wait_acknowledged(mut acked: watch::Receiver<bool>) {
    // A closed channel means the response will never go out: nothing to wait for either.
    let _ = tokio::time::timeout(RESPONSE_DEADLINE, acked.wait_for(|sent| *sent)).await;
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
    /// True once the interaction's response has gone out.
    acked: watch::Receiver<bool>,
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

    /// Waits for the interaction's response to go out: Discord has nothing to edit or
    /// follow up before it has the response.
    async fn acknowledged(&self) {
        wait_acknowledged(self.acked.clone()).await;
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
        let acked = self.acked.clone();
        runtime.spawn(async move {
            wait_acknowledged(acked).await;
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
        self.acknowledged().await;
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
            // Past the token's 15 minutes the answer goes into the channel instead.
            return Ok(None);
        }
        self.acknowledged().await;
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
