//! Rich messages that name no platform. The engine and the incident work say what they mean
//! (a channel, a person, a role, a time, text a user typed) and each chat platform renders it
//! in its own markup; only a renderer ever writes markup. User text is a [`Span::Text`] and
//! every renderer escapes it, so a reason or a title can never ping anyone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::format::timestamp;
use crate::model::{RequestId, Timestamp};
use crate::policy::ApprovalRequirement;

/// Someone or something that has a name and, on some platforms, an id: a person, a user
/// group or role, a channel. A renderer uses the id of its own platform and falls back to
/// the name where it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    pub name: String,
    /// Platform name (as in identities: the part before `:`) to the id there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, String>,
}

impl Handle {
    pub fn named(name: impl Into<String>) -> Handle {
        Handle {
            name: name.into(),
            ids: BTreeMap::new(),
        }
    }

    /// Known by its id on one platform only; the id is its name elsewhere.
    pub fn on(platform: &str, id: &str) -> Handle {
        Handle::named(id).with_id(platform, id)
    }

    pub fn with_id(mut self, platform: &str, id: &str) -> Handle {
        self.ids.insert(platform.to_string(), id.to_string());
        self
    }

    pub fn id_on(&self, platform: &str) -> Option<&str> {
        self.ids.get(platform).map(String::as_str)
    }
}

/// A person or a group of people that a message may address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "who", rename_all = "snake_case")]
pub enum Mention {
    User(Handle),
    /// A user group, a server role.
    Group(Handle),
}

impl Mention {
    /// The mention for a configured identity: `PLATFORM:ID` is a user there,
    /// `PLATFORM-group:ID` and `PLATFORM-role:ID` a group. `None` for anything else.
    pub fn from_identity(identity: &str) -> Option<Mention> {
        let (prefix, id) = identity.split_once(':')?;
        if prefix.is_empty() || id.is_empty() {
            return None;
        }
        let group = prefix
            .strip_suffix("-group")
            .or_else(|| prefix.strip_suffix("-role"));
        Some(match group {
            Some(platform) if !platform.is_empty() => Mention::Group(Handle::on(platform, id)),
            Some(_) => return None,
            None => Mention::User(Handle::on(prefix, id)),
        })
    }

    pub fn handle(&self) -> &Handle {
        match self {
            Mention::User(h) | Mention::Group(h) => h,
        }
    }
}

/// A request waiting for approvals, as the approval message shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCard {
    pub id: RequestId,
    /// The command as typed, e.g. `deploy production v3.0.1`.
    pub what: String,
    pub requester: String,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub requirement: ApprovalRequirement,
    /// The members of each role in `requirement.from`, mentioned where the platform can.
    #[serde(default)]
    pub approvers: Vec<RoleMembers>,
    pub approvals: Vec<String>,
    /// Preconditions checked and met, for the approvers' information.
    pub met: Vec<String>,
    pub expires_at: Timestamp,
    /// `pending`, or the final state: buttons are shown only while pending.
    pub state: String,
    pub state_detail: Option<String>,
    /// What the change would do, from the target's dry run, so nobody approves blind.
    #[serde(default)]
    pub plan: Vec<String>,
}

/// A role and the people and groups it is given to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleMembers {
    pub role: String,
    pub members: Vec<Mention>,
}

impl ApprovalCard {
    pub fn is_open(&self) -> bool {
        self.state == "pending"
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "{} {} — requested by {}\n",
            self.id, self.what, self.requester
        );
        if self.is_open() {
            out.push_str(&format!(
                "Needs {} approval{} from {} ({} so far). Expires {}.\n",
                self.requirement.count,
                if self.requirement.count == 1 { "" } else { "s" },
                self.requirement.from.join(" or "),
                self.approvals.len(),
                timestamp(self.expires_at)
            ));
        } else {
            out.push_str(&format!("State: {}", self.state));
            if let Some(d) = &self.state_detail {
                out.push_str(&format!(" — {d}"));
            }
            out.push('\n');
        }
        for m in &self.met {
            out.push_str(&format!("✓ {m}\n"));
        }
        for line in &self.plan {
            out.push_str(line);
            out.push('\n');
        }
        if !self.approvals.is_empty() {
            out.push_str(&format!("Approved by: {}\n", self.approvals.join(", ")));
        }
        if self.is_open() {
            out.push_str(&format!(
                "Approve with `approve {}` or deny with `deny {}`.",
                self.id, self.id
            ));
        }
        out.trim_end().to_string()
    }
}

/// A piece of a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Span {
    /// Text, shown as it is: whatever it holds is escaped, never read as markup.
    Text(String),
    /// Text shown with emphasis (bold).
    Strong(String),
    /// A command, a version, an id: shown as code.
    Code(String),
    Link {
        url: String,
        label: String,
    },
    Channel(Handle),
    User(Handle),
    Group(Handle),
    Time(Timestamp),
}

impl From<Mention> for Span {
    fn from(m: Mention) -> Span {
        match m {
            Mention::User(h) => Span::User(h),
            Mention::Group(h) => Span::Group(h),
        }
    }
}

/// A line of spans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Line(pub Vec<Span>);

impl Line {
    pub fn new() -> Line {
        Line(Vec::new())
    }
    pub fn text(mut self, t: impl Into<String>) -> Line {
        self.0.push(Span::Text(t.into()));
        self
    }
    pub fn strong(mut self, t: impl Into<String>) -> Line {
        self.0.push(Span::Strong(t.into()));
        self
    }
    pub fn code(mut self, t: impl Into<String>) -> Line {
        self.0.push(Span::Code(t.into()));
        self
    }
    pub fn link(mut self, url: impl Into<String>, label: impl Into<String>) -> Line {
        self.0.push(Span::Link {
            url: url.into(),
            label: label.into(),
        });
        self
    }
    pub fn channel(mut self, h: Handle) -> Line {
        self.0.push(Span::Channel(h));
        self
    }
    pub fn user(mut self, h: Handle) -> Line {
        self.0.push(Span::User(h));
        self
    }
    pub fn group(mut self, h: Handle) -> Line {
        self.0.push(Span::Group(h));
        self
    }
    pub fn mention(mut self, m: Mention) -> Line {
        self.0.push(m.into());
        self
    }
    pub fn time(mut self, t: Timestamp) -> Line {
        self.0.push(Span::Time(t));
        self
    }
    pub fn span(mut self, s: Span) -> Line {
        self.0.push(s);
        self
    }
    pub fn extend(mut self, other: Line) -> Line {
        self.0.extend(other.0);
        self
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Line {
    fn from(t: &str) -> Line {
        Line::new().text(t)
    }
}

impl From<String> for Line {
    fn from(t: String) -> Line {
        Line::new().text(t)
    }
}

impl From<&String> for Line {
    fn from(t: &String) -> Line {
        Line::new().text(t.as_str())
    }
}

/// A labelled value (`Environment: production`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub label: String,
    pub value: Line,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListStyle {
    Bullet,
    /// A checklist item still to do.
    Todo,
    /// A check that passed.
    Done,
}

impl ListStyle {
    pub fn marker(self) -> &'static str {
        match self {
            ListStyle::Bullet => "•",
            ListStyle::Todo => "☐",
            ListStyle::Done => "✓",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "block", rename_all = "snake_case")]
pub enum Block {
    Header {
        line: Line,
    },
    Paragraph {
        line: Line,
    },
    Facts {
        facts: Vec<Fact>,
    },
    List {
        style: ListStyle,
        items: Vec<Line>,
    },
    /// How far a long operation is: `label` and `done` of `total` steps.
    Progress {
        label: Line,
        done: u32,
        total: u32,
    },
    /// A request waiting for votes, with Approve / Deny actions while it is open.
    Approval {
        card: Box<ApprovalCard>,
    },
    /// Small print under a message.
    Context {
        line: Line,
    },
}

impl Block {
    pub fn paragraph(line: impl Into<Line>) -> Block {
        Block::Paragraph { line: line.into() }
    }
    pub fn header(line: impl Into<Line>) -> Block {
        Block::Header { line: line.into() }
    }
    pub fn context(line: impl Into<Line>) -> Block {
        Block::Context { line: line.into() }
    }
    pub fn list(style: ListStyle, items: Vec<Line>) -> Block {
        Block::List { style, items }
    }
    pub fn facts(facts: impl IntoIterator<Item = (&'static str, Line)>) -> Block {
        Block::Facts {
            facts: facts
                .into_iter()
                .map(|(label, value)| Fact {
                    label: label.to_string(),
                    value,
                })
                .collect(),
        }
    }
}

/// What the bot says: blocks shown top to bottom.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub blocks: Vec<Block>,
}

impl Message {
    pub fn new() -> Message {
        Message { blocks: Vec::new() }
    }

    pub fn block(mut self, b: Block) -> Message {
        self.blocks.push(b);
        self
    }

    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }

    /// The approval card the message shows, if any.
    pub fn approval(&self) -> Option<&ApprovalCard> {
        self.blocks.iter().find_map(|b| match b {
            Block::Approval { card } => Some(&**card),
            _ => None,
        })
    }

    /// The message as plain text (the `exec` command, notifications, logs).
    pub fn plain(&self) -> String {
        plain::message(self)
    }
}

impl From<Line> for Message {
    fn from(l: Line) -> Message {
        Message::new().block(Block::Paragraph { line: l })
    }
}

impl From<&str> for Message {
    fn from(t: &str) -> Message {
        Line::from(t).into()
    }
}

impl From<String> for Message {
    fn from(t: String) -> Message {
        Line::from(t).into()
    }
}

impl From<&String> for Message {
    fn from(t: &String) -> Message {
        Line::from(t).into()
    }
}

impl From<Block> for Message {
    fn from(b: Block) -> Message {
        Message::new().block(b)
    }
}

impl From<Vec<Block>> for Message {
    fn from(blocks: Vec<Block>) -> Message {
        Message { blocks }
    }
}

/// The plain-text renderer: what `exec` prints and the fallback every platform can show.
pub mod plain {
    use super::*;

    pub fn span(s: &Span) -> String {
        match s {
            Span::Text(t) | Span::Strong(t) => t.clone(),
            Span::Code(t) => format!("`{t}`"),
            Span::Link { url, label } if label.is_empty() || label == url => url.clone(),
            Span::Link { url, label } => format!("{label} ({url})"),
            Span::Channel(h) => format!("#{}", h.name),
            Span::User(h) | Span::Group(h) => format!("@{}", h.name),
            Span::Time(t) => timestamp(*t),
        }
    }

    pub fn line(l: &Line) -> String {
        line_with(l, &span)
    }

    pub fn message(m: &Message) -> String {
        message_with(m, &span)
    }

    /// A line with spans rendered by `span`: renderers of text-based platforms keep the
    /// plain layout and change only how spans look.
    pub fn line_with(l: &Line, span: &dyn Fn(&Span) -> String) -> String {
        l.0.iter().map(span).collect()
    }

    pub fn block_with(b: &Block, span: &dyn Fn(&Span) -> String) -> String {
        let line = |l: &Line| line_with(l, span);
        match b {
            Block::Header { line: l }
            | Block::Paragraph { line: l }
            | Block::Context { line: l } => line(l),
            Block::Facts { facts } => facts
                .iter()
                .map(|f| format!("{}: {}", f.label, line(&f.value)))
                .collect::<Vec<_>>()
                .join("\n"),
            Block::List { style, items } => items
                .iter()
                .map(|i| format!("{} {}", style.marker(), line(i)))
                .collect::<Vec<_>>()
                .join("\n"),
            Block::Progress { label, done, total } => {
                format!("{}: {done}/{total}", line(label))
            }
            Block::Approval { card } => card.text(),
        }
    }

    pub fn message_with(m: &Message, span: &dyn Fn(&Span) -> String) -> String {
        m.blocks
            .iter()
            .map(|b| block_with(b, span))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_become_mentions_without_naming_platforms() {
        assert_eq!(
            Mention::from_identity("slack:U1"),
            Some(Mention::User(Handle::on("slack", "U1")))
        );
        assert_eq!(
            Mention::from_identity("slack-group:S1"),
            Some(Mention::Group(Handle::on("slack", "S1")))
        );
        assert_eq!(
            Mention::from_identity("discord-role:3"),
            Some(Mention::Group(Handle::on("discord", "3")))
        );
        for bad in ["", "U1", ":U1", "slack:", "-group:S1"] {
            assert_eq!(Mention::from_identity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn plain_text_keeps_a_single_paragraph_as_it_is() {
        let m = Message::from("Refused: <!channel> & `x`");
        assert_eq!(m.plain(), "Refused: <!channel> & `x`");
    }

    #[test]
    fn plain_text_names_what_has_no_markup() {
        let l = Line::new()
            .text("join ")
            .channel(Handle::named("inc-7").with_id("slack", "C1"))
            .text(", ask ")
            .user(Handle::named("carol").with_id("slack", "U3"))
            .text(" or ")
            .group(Handle::on("slack", "S9"))
            .text(", see ")
            .link("https://status.example.com", "status");
        assert_eq!(
            plain::line(&l),
            "join #inc-7, ask @carol or @S9, see status (https://status.example.com)"
        );
    }
}
