//! Neutral messages as Discord messages: Discord markdown in the content, approval cards as
//! embeds with Approve and Deny buttons while the request is open. User text is escaped, and
//! every message lists exactly whom it may ping (`allowed_mentions`): the users and roles it
//! mentions on purpose. `@everyone` or a mention inside a reason never notifies anyone.

use erlmcp_commands::RequestId;
use erlmcp_commands::approval::RequestState;
use erlmcp_commands::message::{Block, Handle, Line, Mention, Message, Span, plain};
use erlmcp_commands::render::{ApprovalCard, Reply, ReplyKind};
use serenity::all::{
    ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    EditInteractionResponse, EditMessage, RoleId, UserId,
};

use crate::chat::Platform;

/// Content is cut here (Discord's limit is 2,000 characters).
pub const MAX_CONTENT: usize = 2000;
const MAX_EMBED_DESCRIPTION: usize = 4096;
const MAX_EMBED_TITLE: usize = 256;

const CUSTOM_ID_PREFIX: &str = "erlmcp";
const PLATFORM: &str = Platform::Discord.as_str();

/// What a button click asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Approve,
    Deny,
}

impl Vote {
    pub const fn as_str(self) -> &'static str {
        match self {
            Vote::Approve => "approve",
            Vote::Deny => "deny",
        }
    }

    fn parse(s: &str) -> Option<Vote> {
        [Vote::Approve, Vote::Deny]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// `erlmcp:approve:R-42`: well under Discord's 100 characters for any request id.
pub fn custom_id(vote: Vote, request: RequestId) -> String {
    format!("{CUSTOM_ID_PREFIX}:{}:{request}", vote.as_str())
}

/// The vote and request a button's `custom_id` carries; `None` for anything else.
pub fn parse_custom_id(id: &str) -> Option<(Vote, RequestId)> {
    let mut parts = id.splitn(3, ':');
    if parts.next()? != CUSTOM_ID_PREFIX {
        return None;
    }
    let vote = Vote::parse(parts.next()?)?;
    let n = parts.next()?.strip_prefix("R-")?.parse::<i64>().ok()?;
    (n > 0).then_some((vote, RequestId(n)))
}

/// Who a message may ping; nobody unless listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    pub users: Vec<u64>,
    pub roles: Vec<u64>,
}

impl Mentions {
    fn allowed(&self) -> CreateAllowedMentions {
        CreateAllowedMentions::new()
            .users(self.users.iter().map(|u| UserId::new(*u)))
            .roles(self.roles.iter().map(|r| RoleId::new(*r)))
    }

    fn user(&mut self, id: u64) {
        if !self.users.contains(&id) {
            self.users.push(id);
        }
    }

    fn role(&mut self, id: u64) {
        if !self.roles.contains(&id) {
            self.roles.push(id);
        }
    }
}

/// Escapes Discord markdown and mentions in user text: a backslash before any punctuation
/// shows it as it is.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            continue;
        }
        if matches!(
            c,
            '\\' | '*'
                | '_'
                | '~'
                | '`'
                | '|'
                | '>'
                | '<'
                | '#'
                | '-'
                | '['
                | ']'
                | '('
                | ')'
                | '@'
                | ':'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn snowflake(h: &Handle) -> Option<u64> {
    h.id_on(PLATFORM)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|n| *n != 0)
}

/// Renders spans, collecting the mentions that are meant.
struct Renderer {
    mentions: Mentions,
}

impl Renderer {
    fn span(&mut self, s: &Span) -> String {
        match s {
            Span::Text(t) => escape(t),
            Span::Strong(t) => format!("**{}**", escape(t)),
            Span::Code(t) => format!("`{}`", t.replace('`', "ˋ")),
            Span::Link { url, label } if label.is_empty() || label == url => format!("<{url}>"),
            Span::Link { url, label } => format!("[{}](<{url}>)", escape(label)),
            Span::Channel(h) => match snowflake(h) {
                Some(id) => format!("<#{id}>"),
                None => format!("#{}", escape(&h.name)),
            },
            Span::User(h) => match snowflake(h) {
                Some(id) => {
                    self.mentions.user(id);
                    format!("<@{id}>")
                }
                None => format!("@\u{200b}{}", escape(&h.name)),
            },
            Span::Group(h) => match snowflake(h) {
                Some(id) => {
                    self.mentions.role(id);
                    format!("<@&{id}>")
                }
                None => format!("@\u{200b}{}", escape(&h.name)),
            },
            Span::Time(t) => format!("<t:{}:f>", t.timestamp()),
        }
    }

    fn line(&mut self, l: &Line) -> String {
        l.0.iter().map(|s| self.span(s)).collect()
    }

    fn block(&mut self, b: &Block) -> String {
        match b {
            Block::Header { line } => format!("**{}**", self.line(line)),
            Block::Paragraph { line } => self.line(line),
            Block::Context { line } => format!("-# {}", self.line(line)),
            Block::Facts { facts } => facts
                .iter()
                .map(|f| format!("**{}:** {}", escape(&f.label), self.line(&f.value)))
                .collect::<Vec<_>>()
                .join("\n"),
            Block::List { style, items } => items
                .iter()
                .map(|i| format!("{} {}", style.marker(), self.line(i)))
                .collect::<Vec<_>>()
                .join("\n"),
            Block::Progress { label, done, total } => {
                format!("{}: {done}/{total}", self.line(label))
            }
            // Cards are embeds; their text is not part of the content.
            Block::Approval { .. } => String::new(),
        }
    }
}

/// One message's parts, turned into whichever builder the call needs.
#[derive(Debug, Clone, Default)]
pub struct DiscordBody {
    pub content: String,
    pub embeds: Vec<CreateEmbed>,
    /// `Some(vec![])` removes the buttons of a message being edited.
    pub components: Option<Vec<CreateActionRow>>,
    pub mentions: Mentions,
}

fn prefix(kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Refused => "⛔ ",
        ReplyKind::Failed => "❌ ",
        ReplyKind::Usage => "⚠️ ",
        ReplyKind::Ok | ReplyKind::Accepted => "",
    }
}

impl DiscordBody {
    pub fn from_reply(reply: &Reply) -> DiscordBody {
        let mut body = DiscordBody::from_message(&reply.message);
        if !body.content.is_empty() {
            body.content = clip(
                &format!("{}{}", prefix(reply.kind), body.content),
                MAX_CONTENT,
            );
        }
        body
    }

    pub fn from_message(message: &Message) -> DiscordBody {
        let mut r = Renderer {
            mentions: Mentions::default(),
        };
        let mut lines = Vec::new();
        let mut embeds = Vec::new();
        let mut components = None;
        for block in &message.blocks {
            if let Block::Approval { card } = block {
                let (embed, ping) = card_embed(card, &mut r);
                embeds.push(embed);
                if !ping.is_empty() {
                    lines.push(ping);
                }
                components = Some(card_buttons(card));
            } else {
                lines.push(r.block(block));
            }
        }
        DiscordBody {
            content: clip(&lines.join("\n"), MAX_CONTENT),
            embeds,
            components,
            mentions: r.mentions,
        }
    }

    pub fn message(&self) -> CreateMessage {
        let mut m = CreateMessage::new()
            .content(&self.content)
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn edit(&self) -> EditMessage {
        let mut m = EditMessage::new()
            .content(&self.content)
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    /// The data of a type 4 (or 7) interaction response.
    pub fn response(&self, ephemeral: bool) -> CreateInteractionResponseMessage {
        let mut m = CreateInteractionResponseMessage::new()
            .content(&self.content)
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed())
            .ephemeral(ephemeral);
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn followup(&self, ephemeral: bool) -> CreateInteractionResponseFollowup {
        let mut m = CreateInteractionResponseFollowup::new()
            .content(&self.content)
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed())
            .ephemeral(ephemeral);
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn edit_original(&self) -> EditInteractionResponse {
        let mut m = EditInteractionResponse::new()
            .content(&self.content)
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }
}

/// The card's embed, and the line above it that pings its approvers (mentions inside an
/// embed never notify).
fn card_embed(card: &ApprovalCard, r: &mut Renderer) -> (CreateEmbed, String) {
    // Amber while open, then by outcome; the text says the state in words too.
    let colour = match RequestState::parse(&card.state) {
        Some(RequestState::Pending) => 0xF1C40F,
        Some(RequestState::Executing | RequestState::Succeeded) => 0x2ECC71,
        Some(
            RequestState::Failed
            | RequestState::Denied
            | RequestState::Expired
            | RequestState::Interrupted,
        ) => 0xE74C3C,
        Some(RequestState::Cancelled) | None => 0x95A5A6,
    };
    let ping = if card.is_open() {
        let mentions: Vec<String> = card
            .approvers
            .iter()
            .flat_map(|role| role.members.iter())
            .filter(|m| snowflake(m.handle()).is_some())
            .map(|m| match m {
                Mention::User(h) => r.span(&Span::User(h.clone())),
                Mention::Group(h) => r.span(&Span::Group(h.clone())),
            })
            .collect();
        if mentions.is_empty() {
            String::new()
        } else {
            format!("Approval needed from {}", mentions.join(" "))
        }
    } else {
        String::new()
    };
    let description = escape(&card.text());
    let embed = CreateEmbed::new()
        .title(clip(
            &format!("{} · {}", card.id, card.what),
            MAX_EMBED_TITLE,
        ))
        .description(clip(&description, MAX_EMBED_DESCRIPTION))
        .colour(colour);
    (embed, ping)
}

fn card_buttons(card: &ApprovalCard) -> Vec<CreateActionRow> {
    if !card.is_open() {
        return Vec::new();
    }
    vec![CreateActionRow::Buttons(vec![
        CreateButton::new(custom_id(Vote::Approve, card.id))
            .label("Approve")
            .style(ButtonStyle::Success),
        CreateButton::new(custom_id(Vote::Deny, card.id))
            .label("Deny")
            .style(ButtonStyle::Danger),
    ])]
}

/// Plain text for places without markdown (a channel topic): no mention survives.
pub fn plain_text(message: &Message) -> String {
    plain::message(message).replace('@', "@\u{200b}")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_commands::message::Handle;

    #[test]
    fn custom_ids_carry_the_vote_and_the_request() {
        let id = custom_id(Vote::Approve, RequestId(42));
        assert_eq!(id, "erlmcp:approve:R-42");
        assert!(id.len() <= 100);
        assert_eq!(parse_custom_id(&id), Some((Vote::Approve, RequestId(42))));
        assert_eq!(
            parse_custom_id("erlmcp:deny:R-7"),
            Some((Vote::Deny, RequestId(7)))
        );
        for bad in [
            "",
            "click_one",
            "erlmcp:approve:42",
            "erlmcp:maybe:R-1",
            "other:approve:R-1",
            "erlmcp:approve:R-0",
            "erlmcp:approve:R-x",
        ] {
            assert_eq!(parse_custom_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_text_pings_nobody_and_intended_mentions_are_allowed() {
        let message = Message::from(
            Line::new()
                .text("@everyone <@123> <@&456> **bold**")
                .text(" ask ")
                .user(Handle::named("carol").with_id("discord", "42"))
                .text(" or ")
                .group(Handle::on("discord", "77"))
                .text(" in ")
                .channel(Handle::named("inc-7").with_id("discord", "9"))
                .text(", not ")
                .user(Handle::on("slack", "U1")),
        );
        let body = DiscordBody::from_message(&message);
        assert_eq!(
            body.content,
            "\\@everyone \\<\\@123\\> \\<\\@&456\\> \\*\\*bold\\*\\* ask <@42> or <@&77> in <#9>, not @\u{200b}U1"
        );
        let json = serde_json::to_value(body.message()).unwrap();
        assert_eq!(
            json["allowed_mentions"],
            serde_json::json!({"parse": [], "users": ["42"], "roles": ["77"]})
        );
    }
}
