//! Neutral messages as HTML for the local chat page. Every piece of text is escaped here, so
//! what a person typed (a reason, an incident title, a version) is shown, never run as
//! markup; links are kept only when they are http(s).

use erlmcp_commands::format::timestamp;
use erlmcp_commands::message::{ApprovalCard, Block, Handle, Line, ListStyle, Message, Span};

use crate::chat::Platform;

/// Text made safe to place in an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How a handle is named here: its local id when it has one, else its name.
fn local_name(h: &Handle) -> &str {
    h.id_on(Platform::Local.as_str()).unwrap_or(&h.name)
}

fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

pub fn span(s: &Span) -> String {
    match s {
        Span::Text(t) => escape(t),
        Span::Strong(t) => format!("<strong>{}</strong>", escape(t)),
        Span::Code(t) => format!("<code>{}</code>", escape(t)),
        Span::Link { url, label } => {
            let label = if label.is_empty() { url } else { label };
            if is_web_url(url) {
                format!(
                    "<a href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer\">{}</a>",
                    escape(url.trim()),
                    escape(label)
                )
            } else {
                // Not a web address (`javascript:` and the like): shown, not followed.
                escape(&format!("{label} ({url})"))
            }
        }
        Span::Channel(h) => format!(
            "<span class=\"channel-ref\" data-channel=\"{}\">#{}</span>",
            escape(local_name(h)),
            escape(local_name(h))
        ),
        Span::User(h) | Span::Group(h) => {
            format!("<span class=\"mention\">@{}</span>", escape(local_name(h)))
        }
        Span::Time(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            escape(&t.to_rfc3339()),
            escape(&timestamp(*t))
        ),
    }
}

pub fn line(l: &Line) -> String {
    l.0.iter().map(span).collect()
}

/// The approval card: what is asked, by whom, what it needs, who approved; its buttons are
/// drawn by the page from the message's `request` while it is open.
pub fn card(c: &ApprovalCard) -> String {
    let mut out = String::from("<div class=\"card\">");
    out.push_str(&format!(
        "<p class=\"card-title\"><strong>{}</strong> <code>{}</code></p>",
        escape(&c.id.to_string()),
        escape(&c.what)
    ));
    out.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        out.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", escape(k)));
    };
    fact("Requested by", escape(&c.requester));
    if let Some(env) = &c.environment {
        fact("Environment", escape(env));
    }
    if let Some(v) = &c.version {
        fact("Version", format!("<code>{}</code>", escape(v)));
    }
    if c.is_open() {
        let who: Vec<String> = c
            .requirement
            .from
            .iter()
            .map(|role| {
                let members: Vec<String> = c
                    .approvers
                    .iter()
                    .filter(|r| &r.role == role)
                    .flat_map(|r| r.members.iter())
                    .filter_map(|m| m.handle().id_on(Platform::Local.as_str()))
                    .map(|id| format!("<span class=\"mention\">@{}</span>", escape(id)))
                    .collect();
                if members.is_empty() {
                    escape(role)
                } else {
                    format!("{} ({})", escape(role), members.join(", "))
                }
            })
            .collect();
        fact(
            "Needs",
            format!(
                "{} approval{} from {} ({} so far)",
                c.requirement.count,
                if c.requirement.count == 1 { "" } else { "s" },
                who.join(" or "),
                c.approvals.len()
            ),
        );
        fact(
            "Expires",
            format!(
                "<time datetime=\"{}\">{}</time>",
                escape(&c.expires_at.to_rfc3339()),
                escape(&timestamp(c.expires_at))
            ),
        );
    } else {
        let state = match &c.state_detail {
            Some(d) => format!("{} — {d}", c.state),
            None => c.state.clone(),
        };
        fact("State", format!("<strong>{}</strong>", escape(&state)));
    }
    if !c.approvals.is_empty() {
        fact("Approved by", escape(&c.approvals.join(", ")));
    }
    out.push_str("</dl>");
    if !c.plan.is_empty() {
        out.push_str(&format!(
            "<details class=\"plan\" open><summary>Plan (dry run)</summary><pre>{}</pre></details>",
            escape(&c.plan.join("\n"))
        ));
    }
    if !c.met.is_empty() {
        out.push_str("<ul class=\"met\">");
        for m in &c.met {
            out.push_str(&format!("<li>✓ {}</li>", escape(m)));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

pub fn block(b: &Block) -> String {
    match b {
        Block::Header { line: l } => {
            format!("<p class=\"m-header\"><strong>{}</strong></p>", line(l))
        }
        Block::Paragraph { line: l } => format!("<p>{}</p>", line(l)),
        Block::Context { line: l } => format!("<p class=\"m-context\">{}</p>", line(l)),
        Block::Facts { facts } => {
            let mut out = String::from("<dl class=\"facts\">");
            for f in facts {
                out.push_str(&format!(
                    "<dt>{}</dt><dd>{}</dd>",
                    escape(&f.label),
                    line(&f.value)
                ));
            }
            out.push_str("</dl>");
            out
        }
        Block::List { style, items } => {
            let class = match style {
                ListStyle::Bullet => "bullet",
                ListStyle::Todo => "todo",
                ListStyle::Done => "done",
            };
            let mut out = format!("<ul class=\"m-list {class}\">");
            for i in items {
                out.push_str(&format!(
                    "<li><span class=\"marker\" aria-hidden=\"true\">{}</span> {}</li>",
                    style.marker(),
                    line(i)
                ));
            }
            out.push_str("</ul>");
            out
        }
        Block::Progress { label, done, total } => {
            let total = (*total).max(1);
            let done = (*done).min(total);
            format!(
                "<div class=\"progress\"><progress max=\"{total}\" value=\"{done}\" aria-label=\"{}\"></progress><span>{} {done}/{total}</span></div>",
                escape(&erlmcp_commands::message::plain::line(label)),
                line(label)
            )
        }
        Block::Approval { card: c } => card(c),
    }
}

/// A whole message.
pub fn message(m: &Message) -> String {
    m.blocks.iter().map(block).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_commands::RequestId;
    use erlmcp_commands::message::{Fact, Mention, RoleMembers};
    use erlmcp_commands::policy::ApprovalRequirement;

    const HOSTILE: &str = "<script>alert('x')</script> & <img src=x onerror=alert(1)> \"q\"";
    const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt; &quot;q&quot;";

    fn sample_card(state: &str) -> ApprovalCard {
        ApprovalCard {
            id: RequestId(2),
            what: "deploy production v3.0.0 <script>alert(1)</script>".into(),
            requester: "alice (local:alice)".into(),
            environment: Some("production".into()),
            version: Some("v3.0.0".into()),
            requirement: ApprovalRequirement {
                count: 1,
                from: vec!["change-board".into()],
            },
            approvers: vec![RoleMembers {
                role: "change-board".into(),
                members: vec![
                    Mention::from_identity("local:bob").unwrap(),
                    Mention::from_identity("slack:U2").unwrap(),
                ],
            }],
            approvals: vec![],
            met: vec!["v3.0.0 soaked in staging <b>".into()],
            expires_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            state: state.into(),
            state_detail: None,
            plan: vec![],
        }
    }

    #[test]
    fn user_text_is_escaped_in_every_block() {
        let l = || Line::new().text(HOSTILE);
        let m = Message::from(vec![
            Block::Header { line: l() },
            Block::Paragraph { line: l() },
            Block::Context { line: l() },
            Block::Facts {
                facts: vec![Fact {
                    label: HOSTILE.into(),
                    value: l(),
                }],
            },
            Block::List {
                style: ListStyle::Todo,
                items: vec![l()],
            },
            Block::Progress {
                label: l(),
                done: 1,
                total: 2,
            },
        ]);
        let html = message(&m);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert_eq!(html.matches(HOSTILE_ESCAPED).count(), 8, "{html}");
        let card = card(&sample_card("pending"));
        assert!(
            !card.contains("<script>") && !card.contains("<b>"),
            "{card}"
        );
        assert!(
            card.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{card}"
        );
    }

    #[test]
    fn each_block_has_its_own_markup() {
        assert_eq!(
            block(&Block::header("INC-1 P1")),
            "<p class=\"m-header\"><strong>INC-1 P1</strong></p>"
        );
        assert_eq!(block(&Block::paragraph("done")), "<p>done</p>");
        assert_eq!(
            block(&Block::context("sandbox")),
            "<p class=\"m-context\">sandbox</p>"
        );
        assert_eq!(
            block(&Block::facts([("Version", Line::new().code("v3"))])),
            "<dl class=\"facts\"><dt>Version</dt><dd><code>v3</code></dd></dl>"
        );
        assert_eq!(
            block(&Block::list(ListStyle::Todo, vec!["Page on-call".into()])),
            "<ul class=\"m-list todo\"><li><span class=\"marker\" aria-hidden=\"true\">☐</span> Page on-call</li></ul>"
        );
        assert_eq!(
            block(&Block::Progress {
                label: "rollout".into(),
                done: 3,
                total: 5
            }),
            "<div class=\"progress\"><progress max=\"5\" value=\"3\" aria-label=\"rollout\"></progress><span>rollout 3/5</span></div>"
        );
    }

    #[test]
    fn spans_name_local_ids_and_links_must_be_web_addresses() {
        let bob = Handle::named("Bob B.")
            .with_id("local", "bob")
            .with_id("slack", "U2");
        let l = Line::new()
            .strong("now")
            .text(" ")
            .user(bob)
            .text(" ")
            .group(Handle::on("slack", "S1"))
            .text(" ")
            .channel(Handle::named("inc-1-api-down").with_id("local", "inc-1-api-down"))
            .text(" ")
            .link("https://status.example.com/?a=1&b=2", "status")
            .text(" ")
            .link("javascript:alert(1)", "click")
            .time(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(
            line(&l),
            "<strong>now</strong> <span class=\"mention\">@bob</span> <span class=\"mention\">@S1</span> \
             <span class=\"channel-ref\" data-channel=\"inc-1-api-down\">#inc-1-api-down</span> \
             <a href=\"https://status.example.com/?a=1&amp;b=2\" target=\"_blank\" rel=\"noopener noreferrer\">status</a> \
             click (javascript:alert(1))<time datetime=\"2023-11-14T22:13:20+00:00\">2023-11-14 22:13 UTC</time>"
        );
    }

    #[test]
    fn an_open_card_names_who_may_approve_and_a_closed_one_its_state() {
        let open = card(&sample_card("pending"));
        assert!(
            open.contains(
                "<dt>Needs</dt><dd>1 approval from change-board (<span class=\"mention\">@bob</span>) (0 so far)</dd>"
            ),
            "{open}"
        );
        assert!(
            !open.contains("U2"),
            "ids of other platforms stay out: {open}"
        );
        let mut done = sample_card("succeeded");
        done.approvals = vec!["bob (local:bob)".into()];
        done.state_detail = Some("production runs v3.0.0".into());
        let done = card(&done);
        assert!(
            done.contains(
                "<dt>State</dt><dd><strong>succeeded — production runs v3.0.0</strong></dd>"
            ),
            "{done}"
        );
        assert!(done.contains("<dt>Approved by</dt><dd>bob (local:bob)</dd>"));
        assert!(!done.contains("Needs"));
        assert_eq!(
            message(&Message::from(Block::Approval {
                card: Box::new(sample_card("denied"))
            })),
            card(&sample_card("denied"))
        );
    }
}
