//! What a platform hands the bot: one neutral [`Inbound`] per command typed or vote
//! clicked, once the platform has verified where it came from.
//!
//! A platform adapter owns its routes or connection, its signature checks and the
//! decoding of its payloads. It builds an [`Inbound`], calls [`InboundHandler::receive`]
//! and turns the [`Ack`] it gets into its own immediate answer (an HTTP body, a socket
//! acknowledgement). The bot runs the command afterwards and answers through
//! [`ChatPlatform`](super::ChatPlatform) and the inbound's [`Responder`].

use std::sync::Arc;

use async_trait::async_trait;
use erlmcp_commands::RequestId;
use erlmcp_commands::render::Reply;

use super::{ChatError, MessageRef, Platform};

/// The person who asked, on their platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundUser {
    /// The platform's user id (`U123`, a snowflake, a local name).
    pub id: String,
    /// How they are shown; the id when the platform sends no name.
    pub name: String,
}

/// What was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A command as typed (slash command text, a mention with the bot's name removed).
    Command(String),
    /// A click on an approval card's Approve or Deny button.
    Vote { request: RequestId, approve: bool },
}

impl Asked {
    /// The command this stands for, as it would be typed.
    pub fn text(&self) -> String {
        match self {
            Asked::Command(t) => t.clone(),
            Asked::Vote { request, approve } => {
                format!("{} {request}", if *approve { "approve" } else { "deny" })
            }
        }
    }
}

/// Answers the inbound message it was made for.
#[async_trait]
pub trait Responder: Send + Sync {
    /// Something only the asker sees (refusals, parse errors, private answers).
    async fn private(&self, reply: &Reply) -> Result<(), ChatError>;

    /// The answer everyone in the channel sees, given as the reply to this inbound message
    /// where the platform ties them (an interaction's deferred answer edited in place).
    /// `Ok(None)`: no such answer here, and the bot posts in the channel instead.
    async fn public(&self, reply: &Reply) -> Result<Option<MessageRef>, ChatError> {
        let _ = reply;
        Ok(None)
    }
}

/// One command or vote from a chat platform, verified and decoded.
pub struct Inbound {
    pub platform: Platform,
    pub user: InboundUser,
    /// Identities of the groups the user is in (`PLATFORM-role:ID`) when the platform
    /// sends them with the message; `None` when the bot must look them up
    /// ([`ChatPlatform::groups_of`](super::ChatPlatform::groups_of)).
    pub groups: Option<Vec<String>>,
    /// The channel id it was asked in.
    pub channel: String,
    pub asked: Asked,
    /// The message it came from, when replies belong in its thread: the approval card
    /// clicked, the message that mentioned the bot.
    pub thread: Option<MessageRef>,
    /// Unique per delivery, so a replay (a retried event, a resent signed request) runs
    /// once across replicas. `None` when the platform gives nothing to tell them apart.
    pub delivery: Option<String>,
    /// Whether the platform's immediate answer can carry a private text ([`Ack::Private`]).
    /// When it cannot, what would have gone there goes through `responder` instead.
    pub ack_carries_text: bool,
    pub responder: Arc<dyn Responder>,
}

/// The immediate answer the platform sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    /// Received; nothing to say (yet).
    Nothing,
    /// Received, with a private answer: a parse error, or "working on it".
    Private(Reply),
    /// Received before (a retried event, a resent signed request), by this replica or
    /// another: nothing runs, and the first delivery's answer stands.
    Replayed,
}

/// The bot cannot take inbound messages right now (its store is down): the platform
/// should answer so that the sender retries (HTTP 503, no socket acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bot cannot record deliveries right now")]
pub struct Unavailable;

/// Implemented by the bot: where every platform hands what it received.
#[async_trait]
pub trait InboundHandler: Send + Sync {
    /// Takes one inbound message: drops replays, decides the immediate answer, and runs
    /// the command in the background. Returns within the platforms' deadlines (Slack's
    /// three seconds): nothing slow happens before it returns.
    async fn receive(&self, inbound: Inbound) -> Result<Ack, Unavailable>;
}
