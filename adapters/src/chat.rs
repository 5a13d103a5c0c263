//! Chat platforms (Slack, Discord, the local chat): what the engine and the incident work
//! need from them, independent of any platform's types.

use async_trait::async_trait;
use erlmcp_commands::render::Reply;
use serde::{Deserialize, Serialize};

/// A message the bot posted, so it can be updated in place or replied to in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    /// `slack`, `discord`, `local`.
    pub platform: String,
    pub channel: String,
    /// Slack's `ts`, Discord's message id.
    pub id: String,
}

impl MessageRef {
    /// `PLATFORM:CHANNEL:ID`, the form stored with requests.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.platform, self.channel, self.id)
    }
    pub fn decode(s: &str) -> Option<MessageRef> {
        let mut it = s.splitn(3, ':');
        Some(MessageRef {
            platform: it.next()?.to_string(),
            channel: it.next()?.to_string(),
            id: it.next()?.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The platform said no and retrying will not help (channel_not_found, not_in_channel...).
    #[error("{platform} refused {method}: {error}")]
    Rejected {
        platform: &'static str,
        method: &'static str,
        error: String,
    },
    /// Given up after retries (rate limits, 5xx, network).
    #[error("{platform} {method} failed after retries: {error}")]
    Unavailable {
        platform: &'static str,
        method: &'static str,
        error: String,
    },
}

#[async_trait]
pub trait ChatPlatform: Send + Sync {
    /// `slack`, `discord`, `local`.
    fn platform(&self) -> &'static str;

    /// Posts a reply (text, or an approval message with its buttons) in a channel.
    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError>;

    /// Replaces a message the bot posted (approval messages as votes arrive).
    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError>;

    /// Posts in the thread under a message (progress of a long operation).
    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        text: &str,
    ) -> Result<MessageRef, ChatError>;

    /// Creates a channel for an incident. `name` is a hint the platform normalises (Slack:
    /// lowercase, ≤ 80, a–z 0–9 - _, a suffix when taken). Returns the channel id.
    async fn create_channel(&self, name: &str) -> Result<String, ChatError>;

    /// Invites platform user ids to a channel.
    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError>;

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError>;
}
