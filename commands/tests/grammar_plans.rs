//! `--dry-run` and `bluegreen` in the grammar: a plan wraps the change it plans, and the
//! policy asks the same rule of both.

use erlmcp_commands::grammar::{EnvironmentNames, ParseContext, help, parse};
use erlmcp_commands::policy::{Access, access};
use erlmcp_commands::{BlueGreenAction, Colour, Command, OperationKind};
use insta::assert_snapshot;

fn ctx() -> ParseContext {
    ParseContext {
        command: "/erlmcp".to_string(),
        environments: vec![EnvironmentNames {
            name: "production".to_string(),
            aliases: vec!["prod".to_string()],
        }],
    }
}

fn run(input: &str) -> String {
    match parse(input, &ctx()) {
        Ok(command) => format!("{command:?}"),
        Err(error) => format!("error: {}", error.render()),
    }
}

#[test]
fn dry_run_wraps_every_change() {
    assert_snapshot!(run("deploy prod v3.0.2 --dry-run"), @r#"Plan { change: Deploy { env: EnvName("production"), version: Version("v3.0.2"), strategy: Rolling, reason: None } }"#);
    assert_snapshot!(run("deploy prod v3.0.2 --strategy blue-green --dry-run for CAB-12"), @r#"Plan { change: Deploy { env: EnvName("production"), version: Version("v3.0.2"), strategy: BlueGreen, reason: Some("for CAB-12") } }"#);
    assert_snapshot!(run("rollback prod --dry-run"), @r#"Plan { change: Rollback { env: EnvName("production"), version: None, reason: None } }"#);
    assert_snapshot!(run("scale prod 8 —dry-run"), @r#"Plan { change: Scale { env: EnvName("production"), replicas: 8, reason: None } }"#);
    assert_snapshot!(run("restart prod --DRY-RUN"), @r#"Plan { change: Restart { env: EnvName("production"), reason: None } }"#);
    assert_snapshot!(run("maintenance prod on --dry-run"), @r#"Plan { change: Maintenance { env: EnvName("production"), on: true, reason: None } }"#);
    assert_snapshot!(run("canary prod promote --dry-run"), @r#"Plan { change: Canary { env: EnvName("production"), action: Promote } }"#);
    assert_snapshot!(run("bluegreen prod retire --dry-run"), @r#"Plan { change: BlueGreen { env: EnvName("production"), action: Retire } }"#);
}

#[test]
fn dry_run_errors_name_what_is_wrong() {
    assert_snapshot!(run("canary prod status --dry-run"), @r#"
    error: "canary" changes nothing, so it has no plan (drop --dry-run)
    usage: /erlmcp canary ENV status|pause|resume|abort|promote [--dry-run]
    "#);
    assert_snapshot!(run("deploy prod v3.0.2 --dry-run=yes"), @r#"
    error: option "--dry-run" takes no value
    usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
    "#);
    assert_snapshot!(run("status prod --dry-run"), @r#"
    error: unknown option "--dry-run"
    usage: /erlmcp status [ENV]
    "#);
}

#[test]
fn bluegreen_actions() {
    assert_eq!(
        parse("bluegreen prod switch GREEN", &ctx()).unwrap(),
        Command::BlueGreen {
            env: erlmcp_commands::EnvName::new("production"),
            action: BlueGreenAction::Switch(Colour::Green),
        }
    );
    assert_snapshot!(run("bluegreen prod status"), @r#"BlueGreen { env: EnvName("production"), action: Status }"#);
    assert_snapshot!(run("bluegreen prod switch"), @r#"
    error: missing colour (blue or green)
    usage: /erlmcp bluegreen ENV status|switch blue|green|retire [--dry-run]
    "#);
    assert_snapshot!(run("bluegreen prod switch red"), @r#"
    error: invalid colour "red" (expected blue or green)
    usage: /erlmcp bluegreen ENV status|switch blue|green|retire [--dry-run]
    "#);
    assert_snapshot!(run("bluegreen prod flip"), @r#"
    error: invalid blue-green action "flip" (expected status, switch or retire)
    usage: /erlmcp bluegreen ENV status|switch blue|green|retire [--dry-run]
    "#);
    assert!(
        help(Some("bluegreen"), &ctx())
            .unwrap()
            .contains("retire the idle colour")
    );
}

#[test]
fn a_plan_needs_the_rule_of_its_change() {
    let rule = |text: &str| match access(&parse(text, &ctx()).unwrap()) {
        Access::Rule(op) => Some(op.kind),
        _ => None,
    };
    assert_eq!(
        rule("deploy prod v3.0.2 --dry-run"),
        Some(OperationKind::Deploy)
    );
    assert_eq!(
        rule("bluegreen prod switch blue"),
        Some(OperationKind::BlueGreen)
    );
    assert_eq!(
        rule("bluegreen prod retire --dry-run"),
        Some(OperationKind::BlueGreenRetire)
    );
    assert_eq!(
        access(&parse("bluegreen prod status", &ctx()).unwrap()),
        Access::AnyRole
    );
    assert_eq!(
        OperationKind::parse("bluegreen.retire"),
        Some(OperationKind::BlueGreenRetire)
    );
}
