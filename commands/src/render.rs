//! The platform-neutral answer to a command: a [`Reply`] carrying a [`Message`], with how
//! the command ended and who sees it. The words themselves are in [`crate::replies`]. Chat
//! adapters turn a message into Block Kit or Discord components; `exec` prints `Reply::text`.

use serde::{Deserialize, Serialize};

pub use crate::format::{duration, timestamp};
pub use crate::message::{ApprovalCard, RoleMembers};
use crate::message::{Block, Line, Message};

/// How the command ended, which decides `exec`'s exit code and how chat shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// Done, or an informational answer.
    Ok,
    /// Accepted and waiting (approval pending).
    Accepted,
    /// Refused by policy or by the state of the request.
    Refused,
    /// Tried and failed (target error, audit log unavailable, ...).
    Failed,
    /// The command could not be parsed.
    Usage,
}

impl ReplyKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ReplyKind::Ok | ReplyKind::Accepted => 0,
            ReplyKind::Refused | ReplyKind::Failed => 1,
            ReplyKind::Usage => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Only the person who typed the command sees it (parse errors, refusals, help).
    Ephemeral,
    /// Everyone in the channel (operations, approvals, outcomes).
    InChannel,
}

/// What a command answers: how it ended, who sees it, and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub kind: ReplyKind,
    pub visibility: Visibility,
    pub message: Message,
}

impl Reply {
    pub fn new(kind: ReplyKind, visibility: Visibility, message: impl Into<Message>) -> Reply {
        Reply {
            kind,
            visibility,
            message: message.into(),
        }
    }
    pub fn ok(message: impl Into<Message>) -> Reply {
        Reply::new(ReplyKind::Ok, Visibility::InChannel, message)
    }
    /// An answer only the asker needs to see (help, whoami, read-only lookups).
    pub fn private(message: impl Into<Message>) -> Reply {
        Reply::new(ReplyKind::Ok, Visibility::Ephemeral, message)
    }
    pub fn refused(message: impl Into<Message>) -> Reply {
        Reply::new(ReplyKind::Refused, Visibility::Ephemeral, message)
    }
    pub fn failed(message: impl Into<Message>) -> Reply {
        Reply::new(ReplyKind::Failed, Visibility::InChannel, message)
    }
    pub fn usage(message: impl Into<Message>) -> Reply {
        Reply::new(ReplyKind::Usage, Visibility::Ephemeral, message)
    }
    pub fn pending(card: ApprovalCard) -> Reply {
        Reply::new(
            ReplyKind::Accepted,
            Visibility::InChannel,
            Block::Approval {
                card: Box::new(card),
            },
        )
    }

    /// The reply as plain text (`exec`, logs, notification fallbacks).
    pub fn text(&self) -> String {
        self.message.plain()
    }

    /// Set when the reply is (or updates) an approval message.
    pub fn approval(&self) -> Option<&ApprovalCard> {
        self.message.approval()
    }

    /// Adds a paragraph at the end.
    pub fn push(&mut self, line: impl Into<Line>) {
        self.message.push(Block::paragraph(line));
    }

    /// Adds a paragraph at the top.
    pub fn prepend(&mut self, line: impl Into<Line>) {
        self.message.blocks.insert(0, Block::paragraph(line));
    }
}
