//! What the bot asks of a chat platform. Every method takes neutral [`Reply`]s; the
//! platform renders them in its own markup and escapes user text.

use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::render::Reply;

use super::{ChatError, MessageRef, Platform};

/// What is known of the groups (user groups, server roles) a user belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLookup {
    /// Identities (`PLATFORM-group:ID`, `PLATFORM-role:ID`) of the groups the user is in,
    /// among those the configuration names.
    pub groups: Vec<String>,
    /// False when some group's members could not be read (or not in time): roles bound to
    /// that group are then missing.
    pub complete: bool,
}

impl GroupLookup {
    /// Nothing to look up: the platform has no groups, or the configuration binds none.
    pub fn none() -> GroupLookup {
        GroupLookup {
            groups: Vec::new(),
            complete: true,
        }
    }
}

#[async_trait]
pub trait ChatPlatform: Send + Sync {
    fn platform(&self) -> Platform;

    /// Posts a message (text, or an approval card with its buttons) in a channel.
    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError>;

    /// Replaces a message the bot posted (approval cards as votes arrive, a progress
    /// header with the outcome).
    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError>;

    /// Posts in the thread under a message (progress of a long operation, its outcome).
    /// A platform without threads posts it in the parent's channel.
    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError>;

    /// A message only `user` sees in `channel`, when the inbound message that asked left
    /// no better way to answer privately (see [`super::Responder`]).
    async fn post_private(
        &self,
        channel: &str,
        user: &str,
        message: &Reply,
    ) -> Result<(), ChatError>;

    /// Creates a channel for an incident. `name` is a hint the platform normalises (Slack:
    /// lowercase, ≤ 80, a–z 0–9 - _, a suffix when taken). Returns the channel id.
    async fn create_channel(&self, name: &str) -> Result<String, ChatError>;

    /// Invites platform user ids to a channel.
    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError>;

    /// Sets a channel's topic. The text is plain; the platform removes whatever could
    /// ping someone from it.
    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError>;

    /// The configured groups `user` is in, waiting at most `within` for what is not known
    /// yet. Platforms that send groups with every inbound message, or have none, keep
    /// the default.
    async fn groups_of(&self, user: &str, within: Duration) -> GroupLookup {
        let _ = (user, within);
        GroupLookup::none()
    }

    /// The configured groups `user` is in, from what is known now, without waiting.
    fn cached_groups_of(&self, user: &str) -> GroupLookup {
        let _ = user;
        GroupLookup::none()
    }
}
