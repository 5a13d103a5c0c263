//! Chat platforms (Slack, Discord, the local chat): what the engine and the incident work
//! need from them, independent of any platform's types.

use async_trait::async_trait;
use erlmcp_commands::render::Reply;
use serde::{Deserialize, Serialize};

/// A chat platform the bot can be reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Slack,
    Discord,
    /// The local chat page.
    Local,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Slack, Platform::Discord, Platform::Local];

    /// The name stored with message references, delivery keys and identities (`slack:U1`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Discord => "discord",
            Platform::Local => "local",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message the bot posted, so it can be updated in place or replied to in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: Platform,
    pub channel: String,
    /// Slack's `ts`, Discord's message id.
    pub id: String,
}

impl MessageRef {
    /// `PLATFORM:CHANNEL:ID`, the form stored with requests.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.platform, self.channel, self.id)
    }

    /// The stored form back; `None` for an unknown platform or a missing part.
    pub fn decode(s: &str) -> Option<MessageRef> {
        let mut it = s.splitn(3, ':');
        let platform = Platform::parse(it.next()?)?;
        let (channel, id) = (it.next()?, it.next()?);
        if channel.is_empty() || id.is_empty() {
            return None;
        }
        Some(MessageRef {
            platform,
            channel: channel.to_string(),
            id: id.to_string(),
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
    fn platform(&self) -> Platform;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_are_pinned_and_parse_back() {
        let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["slack", "discord", "local"]);
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        assert_eq!(Platform::parse("Slack"), None);
    }

    #[test]
    fn message_refs_round_trip_in_the_stored_form() {
        let m = MessageRef {
            platform: Platform::Slack,
            channel: "C1".into(),
            id: "1700000000.000100".into(),
        };
        assert_eq!(m.encode(), "slack:C1:1700000000.000100");
        assert_eq!(MessageRef::decode(&m.encode()), Some(m));
        for bad in ["", "slack", "slack:C1", "slack::1", "irc:C1:1", "slack:C1:"] {
            assert_eq!(MessageRef::decode(bad), None, "{bad:?}");
        }
    }
}
