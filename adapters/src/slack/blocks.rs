//! Block Kit for the bot's replies: plain answers as text, approval requests as a message
//! with the request's facts and Approve / Deny buttons while it is open.

use std::collections::BTreeMap;

use erlmcp_commands::RequestId;
use erlmcp_commands::render::{self, ApprovalCard, Reply, ReplyKind};
use slack_morphism::prelude::*;

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

/// Who may approve, as Slack mentions where the configuration names Slack identities.
#[derive(Debug, Clone, Default)]
pub struct ApproverDirectory {
    /// Role name to its members as written in config (`slack:U1`, `slack-group:S1`, ...).
    pub roles: BTreeMap<String, Vec<String>>,
}

impl ApproverDirectory {
    fn mentions(&self, role: &str) -> Vec<String> {
        self.roles
            .get(role)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                if let Some(u) = m.strip_prefix("slack:") {
                    Some(format!("<@{u}>"))
                } else {
                    m.strip_prefix("slack-group:")
                        .map(|g| format!("<!subteam^{g}>"))
                }
            })
            .collect()
    }

    fn describe(&self, roles: &[String]) -> String {
        roles
            .iter()
            .map(|r| {
                let m = self.mentions(r);
                if m.is_empty() {
                    format!("*{}*", escape(r))
                } else {
                    format!("*{}* ({})", escape(r), m.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }
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
pub fn approval_blocks(card: &ApprovalCard, approvers: &ApproverDirectory) -> Vec<SlackBlock> {
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
        approvers.describe(&card.requirement.from)
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

/// The message content of a reply. `text` is always set: it is what notifications and
/// screen readers show, and the whole message when there are no blocks.
pub fn content(reply: &Reply, approvers: &ApproverDirectory) -> SlackMessageContent {
    match &reply.approval {
        Some(card) => SlackMessageContent::new()
            .with_text(escape(&card.text()))
            .with_blocks(approval_blocks(card, approvers)),
        None => SlackMessageContent::new().with_text(format!(
            "{}{}",
            prefix(reply.kind),
            escape(&reply.text)
        )),
    }
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
        let dir = ApproverDirectory {
            roles: [(
                "change-board".to_string(),
                vec!["slack:U2".to_string(), "slack-group:S9".to_string()],
            )]
            .into(),
        };
        let json = serde_json::to_value(approval_blocks(&card("pending"), &dir)).unwrap();
        let text = json.to_string();
        assert!(
            text.contains("<@U2>") && text.contains("<!subteam^S9>"),
            "{text}"
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
        let json = serde_json::to_value(approval_blocks(
            &card("succeeded"),
            &ApproverDirectory::default(),
        ))
        .unwrap();
        assert!(!json.to_string().contains("\"actions\""), "{json}");
        assert!(json.to_string().contains("succeeded"), "{json}");
    }

    #[test]
    fn interrupted_requests_are_flagged_without_buttons() {
        let mut c = card("interrupted");
        c.state_detail = Some("interrupted: the process carrying it out stopped".into());
        let json = serde_json::to_value(approval_blocks(&c, &ApproverDirectory::default()))
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
