//! The bridge between the bot and every chat platform (Slack, Discord, the local chat),
//! in platform-neutral types.
//!
//! Outbound, [`ChatPlatform`]: what the bot asks of a platform (post, update, answer
//! privately, thread, channels). Inbound, [`Inbound`] and [`InboundHandler`]: what a
//! platform hands the bot once it has verified a request (a command typed, a vote clicked),
//! and how it answers within the platform's deadline. Everything a platform shares with
//! the others (acks, progress threads, approval-card redraws, replay dedup, delivery
//! metrics) lives on the bot's side of [`InboundHandler`], written once.

mod inbound;
mod outbound;
mod section;

pub use inbound::{Ack, Asked, Inbound, InboundHandler, InboundUser, Responder, Unavailable};
pub use outbound::{ChatPlatform, GroupLookup};
pub use section::PlatformSection;

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
