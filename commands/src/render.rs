//! Every text the bot says, as small named functions, rendered to a platform-neutral
//! `Reply` carrying a [`Message`]. Chat adapters turn a message into Block Kit or Discord
//! components; `exec` prints `Reply::text`.

use serde::{Deserialize, Serialize};

pub use crate::format::{duration, timestamp};
pub use crate::message::{ApprovalCard, RoleMembers};
use crate::message::{Block, Line, Message};
use crate::model::{RequestId, Timestamp};
use crate::policy::{Refusal, Unmet, VoteRefusal};
use crate::status::EnvStatus;

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

/// The private acknowledgement of a command that may take minutes.
pub fn working_on(command: &str) -> Line {
    Line::new()
        .text("Working on ")
        .code(command.trim())
        .text("; the outcome follows here.")
}

/// Added to a refusal or `whoami` when the asker's groups could not be read.
pub fn groups_unreadable() -> &'static str {
    "Your group membership could not be read just now, so roles that come from groups are missing. Try again in a minute."
}

pub fn refusal(r: &Refusal, now: Timestamp) -> String {
    match r {
        Refusal::NoRole => {
            "Refused: you hold no role in erlmcp-bot. Ask an admin to add your id to a role (see `whoami`).".into()
        }
        Refusal::NotPermitted {
            operation,
            env,
            allowed,
        } => {
            let where_ = env.as_ref().map(|e| format!(" on {e}")).unwrap_or_default();
            if allowed.is_empty() {
                format!("Refused: no rule allows {operation}{where_}.")
            } else {
                format!(
                    "Refused: {operation}{where_} is allowed to {} only.",
                    allowed.join(", ")
                )
            }
        }
        Refusal::Preconditions(unmet) => {
            let mut out = String::from("Refused: preconditions not met:");
            for u in unmet {
                out.push_str("\n• ");
                out.push_str(&unmet_line(u, now));
            }
            out
        }
    }
}

pub fn unmet_line(u: &Unmet, now: Timestamp) -> String {
    match u {
        Unmet::Soak {
            from,
            needed,
            met_at,
            why,
            ..
        } => match met_at {
            Some(at) => format!(
                "soak: {why}; met at {} (in {})",
                timestamp(*at),
                duration(*at - now)
            ),
            None => format!("soak: {why}; it needs {needed} in {from} first"),
        },
        Unmet::CiNotGreen { version, detail } => {
            format!("ci: CI for {version} is not green ({detail})")
        }
    }
}

pub fn vote_refusal(r: &VoteRefusal, id: RequestId) -> String {
    match r {
        VoteRefusal::Requester => {
            format!("Refused: you requested {id}, so you cannot approve or deny it.")
        }
        VoteRefusal::NotApprover { from } => {
            format!("Refused: only {} can vote on {id}.", from.join(" or "))
        }
    }
}

/// The status digest of one environment.
pub fn status(s: &EnvStatus) -> String {
    let mut out = format!(
        "{} [{}]: {} — {}/{} ready, {} updated, {} available",
        s.env,
        s.target,
        s.version.as_deref().unwrap_or("unknown version"),
        s.replicas.ready,
        s.replicas.desired,
        s.replicas.updated,
        s.replicas.available
    );
    out.push_str(&format!("\n  rollout: {}", s.rollout));
    if let Some(img) = &s.image {
        out.push_str(&format!("\n  image: {img}"));
    }
    if let Some(m) = s.maintenance {
        out.push_str(&format!(
            "\n  maintenance: {}",
            if m { "ON" } else { "off" }
        ));
    }
    if let Some(h) = &s.health {
        match (h.code, &h.error) {
            (Some(c), _) => out.push_str(&format!("\n  health: {c} in {} ms", h.latency_ms)),
            (None, Some(e)) => out.push_str(&format!("\n  health: failed ({e})")),
            (None, None) => out.push_str("\n  health: no answer"),
        }
    }
    if let Some(v) = &s.reported_version {
        out.push_str(&format!("\n  reported version: {v}"));
    }
    if let Some(c) = &s.canary {
        out.push_str(&format!(
            "\n  canary: {} at {}% ({} failed checks{})",
            c.phase,
            c.weight,
            c.failed_checks,
            if c.paused { ", paused" } else { "" }
        ));
    }
    for c in &s.conditions {
        out.push_str(&format!("\n  condition: {c}"));
    }
    for p in &s.pods_not_ready {
        out.push_str(&format!(
            "\n  pod {} not ready: {} ({} restarts)",
            p.name,
            p.reason.as_deref().unwrap_or(&p.phase),
            p.restarts
        ));
    }
    out
}
