//! The Slack renderer: neutral messages as mrkdwn and Block Kit. Plain answers are text,
//! approval requests a message with the request's facts and Approve / Deny buttons while
//! it is open. Channels, people and groups become Slack's `<#C…>`, `<@U…>` and
//! `<!subteam^S…>` when they have a Slack id; every text span is escaped, so what a user
//! typed (`<!channel>`, `<@U…>`) reaches Slack as text and pings no one.

use erlmcp_commands::RequestId;
use erlmcp_commands::message::{Block, Handle, Line, Mention, Message, Span};
use erlmcp_commands::render::{self, ApprovalCard, Reply, ReplyKind};
use slack_morphism::prelude::*;

use crate::chat::Platform;

const SLACK: &str = Platform::Slack.as_str();

/// `action_id`s of the vote buttons; the button's value is the request id (`R-42`).
pub const APPROVE_ACTION: &str = "erlmcp_approve";
pub const DENY_ACTION: &str = "erlmcp_deny";

/// Slack reads `&`, `<` and `>` as markup in message text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Removes Slack's control sequences (`<!channel>`, `<!here>`, `<!everyone>`,
/// `<!subteam^…>`, `<@U…>`, `<#C…>`) from user text placed where Slack may expand them, such
/// as a channel topic: an incident title must not page the whole workspace.
pub fn strip_control_sequences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let is_control = matches!(tail[1..].chars().next(), Some('!' | '@' | '#'));
        match tail[1..].find(['>', '<']) {
            Some(end) if is_control && tail.as_bytes()[1 + end] == b'>' => {
                rest = &tail[end + 2..];
            }
            _ => {
                out.push('<');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn slack_id(h: &Handle) -> Option<&str> {
    h.id_on(SLACK)
}

/// A user or group mention, or the name where the handle has no Slack id.
fn mention(m: &Mention) -> String {
    span(&Span::from(m.clone()))
}

/// One span as mrkdwn.
pub fn span(s: &Span) -> String {
    match s {
        Span::Text(t) => escape(t),
        Span::Strong(t) => format!("*{}*", escape(t)),
        Span::Code(t) => format!("`{}`", escape(t)),
        // `|` ends the URL part of a link; escaping keeps `<` and `>` out of it.
        Span::Link { url, label } => {
            let url = escape(url).replace('|', "%7C");
            if label.is_empty() {
                format!("<{url}>")
            } else {
                format!("<{url}|{}>", escape(label))
            }
        }
        Span::Channel(h) => match slack_id(h) {
            Some(id) => format!("<#{}>", escape(id)),
            None => format!("#{}", escape(&h.name)),
        },
        Span::User(h) => match slack_id(h) {
            Some(id) => format!("<@{}>", escape(id)),
            None => format!("@{}", escape(&h.name)),
        },
        Span::Group(h) => match slack_id(h) {
            Some(id) => format!("<!subteam^{}>", escape(id)),
            None => format!("@{}", escape(&h.name)),
        },
        Span::Time(t) => render::timestamp(*t),
    }
}

/// A line as mrkdwn.
pub fn line(l: &Line) -> String {
    l.0.iter().map(span).collect()
}

/// Who may approve: each role in bold, with the members that have a Slack id mentioned.
fn describe_approvers(card: &ApprovalCard) -> String {
    card.requirement
        .from
        .iter()
        .map(|r| {
            let mentions: Vec<String> = card
                .approvers
                .iter()
                .filter(|m| &m.role == r)
                .flat_map(|m| &m.members)
                .filter(|m| slack_id(m.handle()).is_some())
                .map(mention)
                .collect();
            if mentions.is_empty() {
                format!("*{}*", escape(r))
            } else {
                format!("*{}* ({})", escape(r), mentions.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn md(text: impl Into<String>) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text.into()))
}

fn section(text: impl Into<String>) -> SlackBlock {
    SlackSectionBlock::new().with_text(md(text)).into()
}

fn context(text: impl Into<String>) -> SlackBlock {
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(text.into()),
    )])
    .into()
}

fn button(
    label: &str,
    action: &str,
    id: RequestId,
    style: SlackBlockButtonStyle,
) -> SlackActionBlockElement {
    SlackActionBlockElement::Button(
        SlackBlockButtonElement::new(SlackBlockPlainText::new(label.to_string()).into())
            .with_action_id(SlackActionId::new(action.to_string()))
            .with_value(id.to_string())
            .with_style(style),
    )
}

fn state_line(card: &ApprovalCard) -> String {
    let icon = match card.state.as_str() {
        "pending" => ":hourglass_flowing_sand:",
        "executing" => ":gear:",
        "succeeded" => ":white_check_mark:",
        "failed" => ":x:",
        "denied" => ":no_entry:",
        "cancelled" => ":heavy_multiplication_x:",
        "expired" => ":alarm_clock:",
        "interrupted" => ":warning:",
        _ => ":grey_question:",
    };
    match &card.state_detail {
        Some(d) => format!("{icon} *{}* — {}", escape(&card.state), escape(d)),
        None => format!("{icon} *{}*", escape(&card.state)),
    }
}

/// The approval message: what is asked, by whom, where, which version, the preconditions
/// already met, who may approve, the expiry, and the buttons while the request is open.
pub fn approval_blocks(card: &ApprovalCard) -> Vec<SlackBlock> {
    let mut blocks = vec![section(format!(
        "*{}* `{}`\nRequested by {}",
        card.id,
        escape(&card.what),
        escape(&card.requester)
    ))];
    let mut fields = Vec::new();
    if let Some(env) = &card.environment {
        fields.push(md(format!("*Environment*\n{}", escape(env))));
    }
    if let Some(v) = &card.version {
        fields.push(md(format!("*Version*\n{}", escape(v))));
    }
    fields.push(md(format!(
        "*Approvals*\n{} of {}",
        card.approvals.len(),
        card.requirement.count
    )));
    fields.push(md(format!(
        "*Expires*\n{}",
        render::timestamp(card.expires_at)
    )));
    blocks.push(SlackSectionBlock::new().with_fields(fields).into());
    blocks.push(section(format!(
        "*Who may approve:* {} (never the requester)",
        describe_approvers(card)
    )));
    if !card.met.is_empty() {
        let lines: Vec<String> = card
            .met
            .iter()
            .map(|m| format!(":white_check_mark: {}", escape(m)))
            .collect();
        blocks.push(section(format!(
            "*Preconditions met*\n{}",
            lines.join("\n")
        )));
    }
    if !card.plan.is_empty() {
        blocks.push(section(format!(
            "*Plan*\n```{}```",
            escape(&card.plan.join("\n"))
        )));
    }
    if !card.approvals.is_empty() {
        blocks.push(context(format!(
            "Approved by {}",
            escape(&card.approvals.join(", "))
        )));
    }
    if card.is_open() {
        blocks.push(
            SlackActionsBlock::new(vec![
                button(
                    "Approve",
                    APPROVE_ACTION,
                    card.id,
                    SlackBlockButtonStyle::Primary,
                ),
                button("Deny", DENY_ACTION, card.id, SlackBlockButtonStyle::Danger),
            ])
            .with_block_id(SlackBlockId::new(format!("erlmcp_vote_{}", card.id.0)))
            .into(),
        );
    } else {
        blocks.push(context(state_line(card)));
    }
    blocks
}

fn prefix(kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Ok | ReplyKind::Accepted => "",
        ReplyKind::Refused => ":no_entry: ",
        ReplyKind::Failed => ":x: ",
        ReplyKind::Usage => ":grey_question: ",
    }
}

fn plain_text(l: &Line) -> String {
    erlmcp_commands::message::plain::line(l)
}

/// One block as mrkdwn, for the `text` of a message and for messages of paragraphs only.
fn block_mrkdwn(b: &Block) -> String {
    match b {
        Block::Header { line: l } => format!("*{}*", escape(&plain_text(l))),
        Block::Paragraph { line: l } | Block::Context { line: l } => line(l),
        Block::Facts { facts } => facts
            .iter()
            .map(|f| format!("*{}*: {}", escape(&f.label), line(&f.value)))
            .collect::<Vec<_>>()
            .join("\n"),
        Block::List { style, items } => items
            .iter()
            .map(|i| format!("{} {}", style.marker(), line(i)))
            .collect::<Vec<_>>()
            .join("\n"),
        Block::Progress { label, done, total } => {
            format!(
                "{}: {done}/{total} {}",
                line(label),
                progress_bar(*done, *total)
            )
        }
        Block::Approval { card } => escape(&card.text()),
    }
}

/// `▰▰▰▱▱` for 3 of 5; ten cells at most.
fn progress_bar(done: u32, total: u32) -> String {
    if total == 0 {
        return String::new();
    }
    let cells = total.min(10);
    let full = (u64::from(done.min(total)) * u64::from(cells) / u64::from(total)) as u32;
    "▰".repeat(full as usize) + &"▱".repeat((cells - full) as usize)
}

fn block_kit(b: &Block) -> Vec<SlackBlock> {
    match b {
        Block::Header { line: l } => {
            vec![SlackHeaderBlock::new(SlackBlockPlainText::new(plain_text(l)).into()).into()]
        }
        Block::Paragraph { .. } | Block::List { .. } | Block::Progress { .. } => {
            vec![section(block_mrkdwn(b))]
        }
        Block::Facts { facts } => vec![
            SlackSectionBlock::new()
                .with_fields(
                    facts
                        .iter()
                        .map(|f| md(format!("*{}*\n{}", escape(&f.label), line(&f.value))))
                        .collect(),
                )
                .into(),
        ],
        Block::Context { line: l } => vec![context(line(l))],
        Block::Approval { card } => approval_blocks(card),
    }
}

/// The message content of a reply. `text` is always set: it is what notifications and
/// screen readers show, and the whole message when it is only paragraphs.
pub fn content(reply: &Reply) -> SlackMessageContent {
    message_content(reply.kind, &reply.message)
}

/// A message as mrkdwn text alone (acknowledgements, which carry no blocks).
pub fn text(message: &Message) -> String {
    message
        .blocks
        .iter()
        .map(block_mrkdwn)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn message_content(kind: ReplyKind, message: &Message) -> SlackMessageContent {
    let text = text(message);
    let only_paragraphs = message
        .blocks
        .iter()
        .all(|b| matches!(b, Block::Paragraph { .. }));
    if only_paragraphs {
        return SlackMessageContent::new().with_text(format!("{}{text}", prefix(kind)));
    }
    let blocks = message.blocks.iter().flat_map(block_kit).collect();
    let text = match message.approval() {
        Some(card) => escape(&card.text()),
        None => format!("{}{text}", prefix(kind)),
    };
    SlackMessageContent::new()
        .with_text(text)
        .with_blocks(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use erlmcp_commands::policy::ApprovalRequirement;

    #[test]
    fn control_sequences_are_stripped_and_other_text_kept() {
        assert_eq!(
            strip_control_sequences("Checkout <!channel> down <!here|here> for <@U1> in <#C1|ops>"),
            "Checkout down for in"
        );
        assert_eq!(
            strip_control_sequences("<!subteam^S1> <!everyone>p99 < 2s & a<b>c"),
            "p99 < 2s & a<b>c"
        );
        assert_eq!(strip_control_sequences("open <!channel"), "open <!channel");
        assert_eq!(strip_control_sequences("<<!here>>"), "<>");
    }

    fn card(state: &str) -> ApprovalCard {
        ApprovalCard {
            id: RequestId(7),
            what: "deploy production v3.0.1".into(),
            requester: "alice (slack:U1)".into(),
            environment: Some("production".into()),
            version: Some("v3.0.1".into()),
            requirement: ApprovalRequirement {
                count: 1,
                from: vec!["change-board".into()],
            },
            approvers: vec![],
            approvals: vec![],
            met: vec!["CI green for v3.0.1".into()],
            expires_at: chrono::Utc.with_ymd_and_hms(2026, 11, 3, 10, 0, 0).unwrap(),
            state: state.into(),
            state_detail: None,
            plan: vec![],
        }
    }

    #[test]
    fn open_requests_have_two_buttons_carrying_the_id() {
        let mut c = card("pending");
        c.approvers = vec![erlmcp_commands::render::RoleMembers {
            role: "change-board".into(),
            members: ["slack:U2", "slack-group:S9", "discord:42"]
                .into_iter()
                .filter_map(Mention::from_identity)
                .collect(),
        }];
        let json = serde_json::to_value(approval_blocks(&c)).unwrap();
        let text = json.to_string();
        assert!(
            text.contains("*change-board* (<@U2>, <!subteam^S9>)"),
            "{text}"
        );
        assert!(
            !text.contains("42"),
            "only Slack members are mentioned: {text}"
        );
        assert!(text.contains("2026-11-03 10:00 UTC"), "{text}");
        let actions = json
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .expect("actions block");
        let buttons = actions["elements"].as_array().unwrap();
        assert_eq!(buttons.len(), 2);
        assert_eq!(buttons[0]["action_id"], APPROVE_ACTION);
        assert_eq!(buttons[0]["value"], "R-7");
        assert_eq!(buttons[1]["action_id"], DENY_ACTION);
        assert_eq!(buttons[1]["value"], "R-7");
    }

    #[test]
    fn decided_requests_have_no_buttons() {
        let json = serde_json::to_value(approval_blocks(&card("succeeded"))).unwrap();
        assert!(!json.to_string().contains("\"actions\""), "{json}");
        assert!(json.to_string().contains("succeeded"), "{json}");
    }

    #[test]
    fn interrupted_requests_are_flagged_without_buttons() {
        let mut c = card("interrupted");
        c.state_detail = Some("interrupted: the process carrying it out stopped".into());
        let json = serde_json::to_value(approval_blocks(&c))
            .unwrap()
            .to_string();
        assert!(!json.contains("\"actions\""), "{json}");
        assert!(json.contains(":warning: *interrupted*"), "{json}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
