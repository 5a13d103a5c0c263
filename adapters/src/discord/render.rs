//! Replies as Discord messages: text as content, approval cards as embeds with Approve and
//! Deny buttons while the request is open. Every message says exactly whom it may ping
//! (`allowed_mentions`), so `@everyone` or a mention inside a reason never notifies anyone.

use erlmcp_commands::RequestId;
use erlmcp_commands::approval::RequestState;
use erlmcp_commands::render::{ApprovalCard, Reply};
use serenity::all::{
    ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    EditInteractionResponse, EditMessage, RoleId, UserId,
};

/// Content is cut here (Discord's limit is 2,000 characters).
pub const MAX_CONTENT: usize = 2000;
const MAX_EMBED_DESCRIPTION: usize = 4096;

const CUSTOM_ID_PREFIX: &str = "erlmcp";

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
}

/// One message's parts, turned into whichever builder the call needs.
#[derive(Debug, Clone, Default)]
pub struct DiscordBody {
    pub content: Option<String>,
    pub embeds: Vec<CreateEmbed>,
    /// `Some(vec![])` removes the buttons of a message being edited.
    pub components: Option<Vec<CreateActionRow>>,
    pub mentions: Mentions,
}

impl DiscordBody {
    pub fn text(text: &str) -> DiscordBody {
        DiscordBody {
            content: Some(clip(text, MAX_CONTENT)),
            ..DiscordBody::default()
        }
    }

    pub fn from_reply(reply: &Reply) -> DiscordBody {
        match &reply.approval {
            Some(card) => DiscordBody {
                content: None,
                embeds: vec![card_embed(card)],
                components: Some(card_buttons(card)),
                mentions: Mentions::default(),
            },
            None => DiscordBody::text(&reply.text),
        }
    }

    pub fn message(&self) -> CreateMessage {
        let mut m = CreateMessage::new()
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.content {
            m = m.content(c);
        }
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn edit(&self) -> EditMessage {
        let mut m = EditMessage::new()
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.content {
            m = m.content(c);
        }
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    /// A type 4 (or type 7) response's data.
    pub fn response(&self, ephemeral: bool) -> CreateInteractionResponseMessage {
        let mut m = CreateInteractionResponseMessage::new()
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed())
            .ephemeral(ephemeral);
        if let Some(c) = &self.content {
            m = m.content(c);
        }
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn followup(&self, ephemeral: bool) -> CreateInteractionResponseFollowup {
        let mut m = CreateInteractionResponseFollowup::new()
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed())
            .ephemeral(ephemeral);
        if let Some(c) = &self.content {
            m = m.content(c);
        }
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }

    pub fn edit_original(&self) -> EditInteractionResponse {
        let mut m = EditInteractionResponse::new()
            .embeds(self.embeds.clone())
            .allowed_mentions(self.mentions.allowed());
        if let Some(c) = &self.content {
            m = m.content(c);
        }
        if let Some(c) = &self.components {
            m = m.components(c.clone());
        }
        m
    }
}

fn card_embed(card: &ApprovalCard) -> CreateEmbed {
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
    CreateEmbed::new()
        .title(clip(&format!("{} · {}", card.id, card.what), 256))
        .description(clip(&card.text(), MAX_EMBED_DESCRIPTION))
        .colour(colour)
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
    fn messages_ping_nobody_unless_told() {
        let body = DiscordBody::text("@everyone look <@123> <@&456>");
        let json = serde_json::to_value(body.message()).unwrap();
        assert_eq!(
            json["allowed_mentions"],
            serde_json::json!({"parse": [], "users": [], "roles": []})
        );
    }
}
