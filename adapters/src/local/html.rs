//! Replies as HTML for the local chat page. Every piece of text is escaped here, so what a
//! person typed (a reason, an incident title, a version) is shown, never run as markup.

use erlmcp_commands::render::{ApprovalCard, Reply};

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

/// Plain reply text: `code` in backticks becomes `<code>`, lines stay lines (the page keeps
/// white space), everything else is escaped.
pub fn text(t: &str) -> String {
    let mut out = String::with_capacity(t.len() + 16);
    let mut parts = t.split('`');
    if let Some(first) = parts.next() {
        out.push_str(&escape(first));
    }
    let rest: Vec<&str> = parts.collect();
    // An unpaired backtick stays a backtick.
    let paired = rest.len().is_multiple_of(2);
    for (i, part) in rest.iter().enumerate() {
        let inside = i.is_multiple_of(2);
        if inside && (paired || i + 1 < rest.len()) {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            if inside {
                out.push('`');
            }
            out.push_str(&escape(part));
        }
    }
    out
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
    let mut fact = |k: &str, v: &str| {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), text(v)));
    };
    fact("Requested by", &c.requester);
    if let Some(env) = &c.environment {
        fact("Environment", env);
    }
    if let Some(v) = &c.version {
        fact("Version", v);
    }
    if c.is_open() {
        fact(
            "Needs",
            &format!(
                "{} approval{} from {} ({} so far)",
                c.requirement.count,
                if c.requirement.count == 1 { "" } else { "s" },
                c.requirement.from.join(" or "),
                c.approvals.len()
            ),
        );
        fact("Expires", &erlmcp_commands::render::timestamp(c.expires_at));
    } else {
        let state = match &c.state_detail {
            Some(d) => format!("{} — {d}", c.state),
            None => c.state.clone(),
        };
        fact("State", &state);
    }
    if !c.approvals.is_empty() {
        fact("Approved by", &c.approvals.join(", "));
    }
    out.push_str("</dl>");
    if !c.met.is_empty() {
        out.push_str("<ul class=\"met\">");
        for m in &c.met {
            out.push_str(&format!("<li>✓ {}</li>", text(m)));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

/// A whole reply.
pub fn reply(r: &Reply) -> String {
    match &r.approval {
        Some(c) => card(c),
        None => format!("<p>{}</p>", text(&r.text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_commands::RequestId;
    use erlmcp_commands::policy::ApprovalRequirement;

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
            approvals: vec![],
            met: vec!["soak: staging ran v3.0.0 for 2d".into()],
            expires_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            state: state.into(),
            state_detail: None,
        }
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let html = reply(&Reply::ok(
            "reason: <script>alert('x')</script> & <img src=x onerror=alert(1)> \"q\"",
        ));
        assert_eq!(
            html,
            "<p>reason: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt; &quot;q&quot;</p>"
        );
        let card = reply(&Reply::pending(sample_card("pending")));
        assert!(!card.contains("<script>"), "{card}");
        assert!(
            card.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{card}"
        );
    }

    #[test]
    fn backticks_become_code_and_stay_escaped() {
        assert_eq!(
            text("run `approve R-2` or `<b>`"),
            "run <code>approve R-2</code> or <code>&lt;b&gt;</code>"
        );
        assert_eq!(text("a ` lone"), "a ` lone");
    }

    #[test]
    fn an_open_card_says_what_it_needs_and_a_closed_one_its_state() {
        let open = card(&sample_card("pending"));
        assert!(
            open.contains("<dt>Needs</dt><dd>1 approval from change-board (0 so far)</dd>"),
            "{open}"
        );
        assert!(
            open.contains("<li>✓ soak: staging ran v3.0.0 for 2d</li>"),
            "{open}"
        );
        let mut done = sample_card("executed");
        done.approvals = vec!["bob (local:bob)".into()];
        done.state_detail = Some("production runs v3.0.0".into());
        let done = card(&done);
        assert!(
            done.contains("<dt>State</dt><dd>executed — production runs v3.0.0</dd>"),
            "{done}"
        );
        assert!(done.contains("<dt>Approved by</dt><dd>bob (local:bob)</dd>"));
        assert!(!done.contains("Needs"));
    }
}
