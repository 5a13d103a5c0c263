//! Every kind of message the bot sends, rendered for Slack (the Block Kit JSON of
//! chat.postMessage) and as plain text (`exec`). A change in what people read shows up
//! here as a snapshot diff.

use chrono::TimeZone;
use erlmcp_adapters::slack::blocks;
use erlmcp_commands::RequestId;
use erlmcp_commands::message::{Block, Handle, Line, ListStyle, Mention, Message};
use erlmcp_commands::policy::ApprovalRequirement;
use erlmcp_commands::render::{ApprovalCard, Reply, RoleMembers};
use insta::assert_snapshot;

/// What a reason, a title or a version typed by someone could hold.
const HOSTILE: &str =
    "fix <!channel> <!here> @everyone <@U0EVIL> <#C0OPS|ops> <!subteam^S1> & a<b>c";

fn card(state: &str, detail: Option<&str>) -> ApprovalCard {
    ApprovalCard {
        id: RequestId(7),
        what: format!("deploy production v3.0.1 {HOSTILE}"),
        requester: "alice (slack:U0ALICE)".into(),
        environment: Some("production".into()),
        version: Some("v3.0.1".into()),
        requirement: ApprovalRequirement {
            count: 2,
            from: vec!["change-board".into(), "tech-lead".into()],
        },
        approvers: vec![
            RoleMembers {
                role: "change-board".into(),
                members: [
                    "slack-group:S0CAB",
                    "slack:U0BOB",
                    "discord-role:42",
                    "local:carol",
                ]
                .into_iter()
                .filter_map(Mention::from_identity)
                .collect(),
            },
            RoleMembers {
                role: "tech-lead".into(),
                members: vec![],
            },
        ],
        approvals: vec!["bob (slack:U0BOB)".into()],
        met: vec!["staging soaked 24h".into(), "CI green for v3.0.1".into()],
        expires_at: chrono::Utc.with_ymd_and_hms(2026, 11, 3, 10, 0, 0).unwrap(),
        state: state.into(),
        state_detail: detail.map(str::to_string),
        plan: vec![],
    }
}

fn every_span() -> Line {
    Line::new()
        .text("INC-7 ")
        .strong("P1")
        .text(" declared by ")
        .user(Handle::named("alice").with_id("slack", "U0ALICE"))
        .text(" for ")
        .group(Handle::named("oncall").with_id("slack", "S0ONCALL"))
        .text(": join ")
        .channel(Handle::named("inc-7-checkout").with_id("slack", "C0INC7"))
        .text(", run ")
        .code("rollback production")
        .text(", see ")
        .link("https://status.example.com/incidents/7", "the status page")
        .text(" since ")
        .time(chrono::Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap())
        .text(". Not on Slack: ")
        .user(Handle::named("dave").with_id("discord", "1234"))
        .text(" in ")
        .channel(Handle::named("inc-7-checkout").with_id("discord", "99"))
}

/// Every message kind, named.
fn messages() -> Vec<(&'static str, Reply)> {
    let rich = Message::new()
        .block(Block::header("INC-7 status update"))
        .block(Block::paragraph(every_span()))
        .block(Block::facts([
            ("Severity", Line::from("P1")),
            ("Commander", Line::new().user(Handle::on("slack", "U0BOB"))),
            ("Title", Line::from(HOSTILE)),
        ]))
        .block(Block::list(
            ListStyle::Bullet,
            vec![
                Line::from("production [sandbox]: v3.0.1"),
                Line::from(HOSTILE),
            ],
        ))
        .block(Block::list(
            ListStyle::Todo,
            vec![
                Line::from("Declare the incident"),
                Line::from("Page on-call"),
            ],
        ))
        .block(Block::list(
            ListStyle::Done,
            vec![Line::from("CI green for v3.0.1")],
        ))
        .block(Block::Progress {
            label: Line::new().text("rollout of ").code("v3.0.1"),
            done: 3,
            total: 5,
        })
        .block(Block::context(Line::new().text("next update ").time(
            chrono::Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap(),
        )));
    vec![
        ("ok", Reply::ok("staging runs v3.0.1 (5/5 ready)")),
        ("ok_multiline", Reply::ok("R-3 done:\nstaging runs v3.0.1")),
        (
            "private",
            Reply::private("You are alice; roles: devops-lead."),
        ),
        ("refused", Reply::refused(format!("Refused: {HOSTILE}"))),
        (
            "failed",
            Reply::failed("Not executed: the audit log is unavailable."),
        ),
        (
            "usage",
            Reply::usage("unknown command \"deploj\"; did you mean deploy?"),
        ),
        ("hostile_text", Reply::ok(HOSTILE)),
        ("every_span", Reply::ok(every_span())),
        ("rich", Reply::ok(rich)),
        ("approval_open", Reply::pending(card("pending", None))),
        (
            "approval_succeeded",
            Reply::pending(card("succeeded", Some("ok: production runs v3.0.1"))),
        ),
        (
            "approval_denied",
            Reply::pending(card("denied", Some(HOSTILE))),
        ),
        (
            "approval_interrupted",
            Reply::pending(card(
                "interrupted",
                Some("interrupted: the process carrying it out stopped"),
            )),
        ),
    ]
}

#[test]
fn slack_block_kit() {
    for (name, reply) in messages() {
        let json = serde_json::to_value(blocks::content(&reply)).unwrap();
        assert_snapshot!(
            format!("slack_{name}"),
            serde_json::to_string_pretty(&json).unwrap()
        );
    }
}

#[test]
fn plain_text() {
    for (name, reply) in messages() {
        assert_snapshot!(format!("plain_{name}"), reply.text());
    }
}

#[test]
fn user_text_never_reaches_slack_as_markup() {
    for (name, reply) in messages() {
        let json = serde_json::to_value(blocks::content(&reply))
            .unwrap()
            .to_string();
        for raw in [
            "<!channel>",
            "<!here>",
            "<@U0EVIL>",
            "<#C0OPS",
            "<!subteam^S1>",
        ] {
            assert!(!json.contains(raw), "{name}: {raw} in {json}");
        }
    }
}
