//! Pins the parser's output for every command and every kind of error. A change in the
//! grammar's behaviour shows up here as a snapshot diff.

use erlmcp_commands::grammar::{EnvironmentNames, ParseContext, help, parse};
use insta::assert_snapshot;

fn ctx() -> ParseContext {
    let env = |name: &str, alias: &str| EnvironmentNames {
        name: name.to_string(),
        aliases: vec![alias.to_string()],
    };
    ParseContext {
        command: "/erlmcp".to_string(),
        environments: vec![
            env("development", "dev"),
            env("staging", "stg"),
            env("production", "prod"),
        ],
    }
}

/// The parsed command, or the error exactly as the user would read it.
fn run(input: &str) -> String {
    match parse(input, &ctx()) {
        Ok(command) => format!("{command:?}"),
        Err(error) => format!("error: {}", error.render()),
    }
}

mod commands {
    use super::*;

    #[test]
    fn help() {
        assert_snapshot!(run("help"), @"Help { topic: None }");
        assert_snapshot!(run("/erlmcp help"), @"Help { topic: None }");
        assert_snapshot!(run("help deploy"), @r#"Help { topic: Some("deploy") }"#);
        assert_snapshot!(run("HELP Incident"), @r#"Help { topic: Some("incident") }"#);
        assert_snapshot!(run("help incident declare"), @r#"Help { topic: Some("incident declare") }"#);
    }

    #[test]
    fn whoami_and_requests() {
        assert_snapshot!(run("whoami"), @"Whoami");
        assert_snapshot!(run("WhoAmI"), @"Whoami");
        assert_snapshot!(run("/ERLMCP requests"), @"Requests");
    }

    #[test]
    fn status() {
        assert_snapshot!(run("status"), @"Status { env: None }");
        assert_snapshot!(run("status prod"), @r#"Status { env: Some(EnvName("production")) }"#);
        assert_snapshot!(run("status Production"), @r#"Status { env: Some(EnvName("production")) }"#);
        assert_snapshot!(run("status STG"), @r#"Status { env: Some(EnvName("staging")) }"#);
    }

    #[test]
    fn deploy() {
        assert_snapshot!(run("deploy prod v3.0.1"), @r#"Deploy { env: EnvName("production"), version: Version("v3.0.1"), strategy: Rolling, reason: None }"#);
        assert_snapshot!(run("/erlmcp deploy stg v2.0.0 hotfix for INC-7"), @r#"Deploy { env: EnvName("staging"), version: Version("v2.0.0"), strategy: Rolling, reason: Some("hotfix for INC-7") }"#);
        assert_snapshot!(
            run(r#"deploy production 3.0.1-rc.1 --strategy canary fix "the   login" bug"#),
            @r#"Deploy { env: EnvName("production"), version: Version("3.0.1-rc.1"), strategy: Canary, reason: Some("fix the   login bug") }"#
        );
        assert_snapshot!(run("deploy prod v1 --strategy=blue-green"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: BlueGreen, reason: None }"#);
        assert_snapshot!(run("deploy --strategy Canary prod v1"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Canary, reason: None }"#);
        assert_snapshot!(run("deploy prod v1 —strategy canary"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Canary, reason: None }"#);
        assert_snapshot!(run("deploy prod v1 “smart quoted reason”"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: Some("smart quoted reason") }"#);
        assert_snapshot!(run(r#"deploy prod v1 "--strategy canary" is literal"#), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: Some("--strategy canary is literal") }"#);
        assert_snapshot!(run(r#"deploy prod v1 "" "  ""#), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: None }"#);
        assert_snapshot!(run("deploy prod v1 fix — urgent"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: Some("fix — urgent") }"#);
        assert_snapshot!(run("  deploy\tprod\nv1\u{0}nightly\u{7}build  "), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: Some("nightly build") }"#);
        assert_snapshot!(run("deploy prod v1 إصلاح عاجل 🚀"), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: Some("إصلاح عاجل 🚀") }"#);
    }

    #[test]
    fn rollback() {
        assert_snapshot!(run("rollback prod"), @r#"Rollback { env: EnvName("production"), version: None, reason: None }"#);
        assert_snapshot!(run("rollback prod v3.0.0"), @r#"Rollback { env: EnvName("production"), version: Some(Version("v3.0.0")), reason: None }"#);
        assert_snapshot!(run("rollback prod v3.0.0 checkout errors"), @r#"Rollback { env: EnvName("production"), version: Some(Version("v3.0.0")), reason: Some("checkout errors") }"#);
        assert_snapshot!(run("rollback prod checkout errors"), @r#"Rollback { env: EnvName("production"), version: None, reason: Some("checkout errors") }"#);
        // A bare number is a version, as `Version::parse` decides.
        assert_snapshot!(run("rollback prod 3 pods crashed"), @r#"Rollback { env: EnvName("production"), version: Some(Version("3")), reason: Some("pods crashed") }"#);
    }

    #[test]
    fn approve_deny_cancel() {
        assert_snapshot!(run("approve R-42"), @"Approve { id: RequestId(42), comment: None }");
        assert_snapshot!(run("approve r-42 lgtm"), @r#"Approve { id: RequestId(42), comment: Some("lgtm") }"#);
        assert_snapshot!(run(r#"approve 42 "ship it""#), @r#"Approve { id: RequestId(42), comment: Some("ship it") }"#);
        assert_snapshot!(run("deny R-1 not during the freeze"), @r#"Deny { id: RequestId(1), reason: Some("not during the freeze") }"#);
        assert_snapshot!(run("deny 1"), @"Deny { id: RequestId(1), reason: None }");
        assert_snapshot!(run("cancel R-7"), @"Cancel { id: RequestId(7) }");
    }

    #[test]
    fn scale_restart_maintenance() {
        assert_snapshot!(run("scale prod 0"), @r#"Scale { env: EnvName("production"), replicas: 0, reason: None }"#);
        assert_snapshot!(run("scale prod 1000 load test"), @r#"Scale { env: EnvName("production"), replicas: 1000, reason: Some("load test") }"#);
        assert_snapshot!(run("scale dev 007"), @r#"Scale { env: EnvName("development"), replicas: 7, reason: None }"#);
        assert_snapshot!(run("restart stg"), @r#"Restart { env: EnvName("staging"), reason: None }"#);
        assert_snapshot!(run("restart stg memory leak"), @r#"Restart { env: EnvName("staging"), reason: Some("memory leak") }"#);
        assert_snapshot!(run("maintenance prod on db migration"), @r#"Maintenance { env: EnvName("production"), on: true, reason: Some("db migration") }"#);
        assert_snapshot!(run("maintenance prod OFF"), @r#"Maintenance { env: EnvName("production"), on: false, reason: None }"#);
    }

    #[test]
    fn canary() {
        assert_snapshot!(run("canary prod status"), @r#"Canary { env: EnvName("production"), action: Status }"#);
        assert_snapshot!(run("canary prod PAUSE"), @r#"Canary { env: EnvName("production"), action: Pause }"#);
        assert_snapshot!(run("canary prod resume"), @r#"Canary { env: EnvName("production"), action: Resume }"#);
        assert_snapshot!(run("canary prod abort"), @r#"Canary { env: EnvName("production"), action: Abort }"#);
        assert_snapshot!(run("canary prod promote"), @r#"Canary { env: EnvName("production"), action: Promote }"#);
    }

    #[test]
    fn pods_and_logs() {
        assert_snapshot!(run("pods dev"), @r#"Pods { env: EnvName("development") }"#);
        assert_snapshot!(run("logs prod"), @r#"Logs { env: EnvName("production"), pod: None, previous: false, tail: None }"#);
        assert_snapshot!(run("logs prod api-7d9f-x2 --previous --tail 200"), @r#"Logs { env: EnvName("production"), pod: Some("api-7d9f-x2"), previous: true, tail: Some(200) }"#);
        assert_snapshot!(run("logs prod --tail=50 --previous"), @r#"Logs { env: EnvName("production"), pod: None, previous: true, tail: Some(50) }"#);
        assert_snapshot!(run("logs prod --tail 10000 api-0"), @r#"Logs { env: EnvName("production"), pod: Some("api-0"), previous: false, tail: Some(10000) }"#);
    }

    #[test]
    fn incident() {
        assert_snapshot!(run("incident declare P0 checkout is down"), @r#"Incident(Declare { severity: P0, title: "checkout is down" })"#);
        assert_snapshot!(run(r#"Incident Declare p1 "db: replica lag""#), @r#"Incident(Declare { severity: P1, title: "db: replica lag" })"#);
        assert_snapshot!(run("incident update rolled back to v3.0.0"), @r#"Incident(Update { id: None, text: "rolled back to v3.0.0" })"#);
        assert_snapshot!(run("incident update --id INC-7 rolled back"), @r#"Incident(Update { id: Some(IncidentId(7)), text: "rolled back" })"#);
        assert_snapshot!(run("incident update rolled back --id=7"), @r#"Incident(Update { id: Some(IncidentId(7)), text: "rolled back" })"#);
        assert_snapshot!(run("incident severity p2"), @"Incident(Severity { id: None, severity: P2 })");
        assert_snapshot!(run("incident severity --id inc-3 P0"), @"Incident(Severity { id: Some(IncidentId(3)), severity: P0 })");
        assert_snapshot!(run("incident commander @alice"), @r#"Incident(Commander { id: None, user: "@alice" })"#);
        assert_snapshot!(run("incident commander alice"), @r#"Incident(Commander { id: None, user: "alice" })"#);
        assert_snapshot!(run("incident commander <@U123>"), @r#"Incident(Commander { id: None, user: "<@U123>" })"#);
        assert_snapshot!(run("incident commander <@U123|alice>"), @r#"Incident(Commander { id: None, user: "<@U123|alice>" })"#);
        assert_snapshot!(run("incident commander <@123456789>"), @r#"Incident(Commander { id: None, user: "<@123456789>" })"#);
        assert_snapshot!(run("incident commander --id 2 <@!123456789>"), @r#"Incident(Commander { id: Some(IncidentId(2)), user: "<@!123456789>" })"#);
        assert_snapshot!(run("incident resolve"), @"Incident(Resolve { id: None, summary: None })");
        assert_snapshot!(run(r#"incident resolve --id INC-3 "root cause: bad config""#), @r#"Incident(Resolve { id: Some(IncidentId(3)), summary: Some("root cause: bad config") })"#);
        assert_snapshot!(run("incident list"), @"Incident(List)");
        assert_snapshot!(run("incident timeline"), @"Incident(Timeline { id: None })");
        assert_snapshot!(run("incident timeline INC-9"), @"Incident(Timeline { id: Some(IncidentId(9)) })");
    }

    #[test]
    fn audit() {
        assert_snapshot!(run("audit"), @"Audit { limit: None }");
        assert_snapshot!(run("audit 50"), @"Audit { limit: Some(50) }");
        assert_snapshot!(run("audit 1000"), @"Audit { limit: Some(1000) }");
    }
}

mod audit_prune {
    use super::*;

    #[test]
    fn parses_a_date_or_a_time() {
        assert_snapshot!(run("audit prune --before 2026-01-31"), @"AuditPrune { before: 2026-01-31T00:00:00Z }");
        assert_snapshot!(run("/erlmcp audit prune --before 2026-01-31T12:00:00+02:00"), @"AuditPrune { before: 2026-01-31T10:00:00Z }");
        assert_snapshot!(run("audit 5"), @"Audit { limit: Some(5) }");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_snapshot!(run("audit prune"), @"
        error: missing --before DATE
        usage: /erlmcp audit prune --before DATE
        ");
        assert_snapshot!(run("audit prune --before yesterday"), @r#"
        error: invalid date "yesterday" (expected YYYY-MM-DD or an RFC 3339 time)
        usage: /erlmcp audit prune --before DATE
        "#);
        assert_snapshot!(run("audit prune --before 2026-01-31 now"), @r#"
        error: unexpected "now"
        usage: /erlmcp audit prune --before DATE
        "#);
        assert_snapshot!(help(Some("audit prune"), &ctx()).unwrap(), @"
        /erlmcp audit prune --before DATE
        remove audit entries older than DATE (YYYY-MM-DD or RFC 3339), behind a signed checkpoint
        ");
    }
}

mod errors {
    use super::*;

    #[test]
    fn empty_and_too_long() {
        assert_snapshot!(run(""), @r#"error: missing command (try "/erlmcp help")"#);
        assert_snapshot!(run(" \t\n "), @r#"error: missing command (try "/erlmcp help")"#);
        assert_snapshot!(run("/erlmcp"), @r#"error: missing command (try "/erlmcp help")"#);
        assert_snapshot!(run(&format!("deploy prod v1 {}", "x".repeat(4000))), @"error: command too long (4015 characters, at most 4000)");
        assert_snapshot!(run(&"é".repeat(4001)), @"error: command too long (4001 characters, at most 4000)");
    }

    #[test]
    fn unknown_command() {
        assert_snapshot!(run("deplyo prod v1"), @r#"error: unknown command "deplyo" (did you mean "deploy"?)"#);
        assert_snapshot!(run("frobnicate"), @r#"error: unknown command "frobnicate" (try "/erlmcp help")"#);
        assert_snapshot!(run("incidnet list"), @r#"error: unknown command "incidnet" (did you mean "incident"?)"#);
        assert_snapshot!(run("🚀"), @r#"error: unknown command "🚀" (try "/erlmcp help")"#);
        assert_snapshot!(run(r#""deploy" prod v1"#), @r#"Deploy { env: EnvName("production"), version: Version("v1"), strategy: Rolling, reason: None }"#);
    }

    #[test]
    fn unbalanced_quotes() {
        assert_snapshot!(run(r#"deploy prod v1 "fix the thing"#), @r#"
        error: unbalanced quote before "fix the thing" (add the closing quote)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 “fix the thing"), @r#"
        error: unbalanced quote before "fix the thing" (add the closing quote)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run(r#"deploy prod v1 fix""#), @"
        error: unbalanced quote at the end (add the closing quote or remove it)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        ");
        assert_snapshot!(run(r#"frobnicate "x"#), @r#"error: unbalanced quote before "x" (add the closing quote)"#);
        assert_snapshot!(run(&format!("approve 1 \"{}", "ü".repeat(100))), @r#"
        error: unbalanced quote before "üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüü…" (add the closing quote)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
    }

    #[test]
    fn environments() {
        assert_snapshot!(run("deploy"), @"
        error: missing ENV (known: development, staging, production)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        ");
        assert_snapshot!(run("deploy prd v1"), @r#"
        error: unknown environment "prd" (known: development, staging, production)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("status prd"), @r#"
        error: unknown environment "prd" (known: development, staging, production)
        usage: /erlmcp status [ENV]
        "#);
        assert_snapshot!(run("pods"), @"
        error: missing ENV (known: development, staging, production)
        usage: /erlmcp pods ENV
        ");
        assert_snapshot!(run("pods 🚀"), @r#"
        error: unknown environment "🚀" (known: development, staging, production)
        usage: /erlmcp pods ENV
        "#);
        assert_snapshot!(run("restart"), @"
        error: missing ENV (known: development, staging, production)
        usage: /erlmcp restart ENV [--dry-run] [REASON...]
        ");
    }

    #[test]
    fn versions_and_strategies() {
        assert_snapshot!(run("deploy prod"), @"
        error: missing VERSION
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        ");
        assert_snapshot!(run("deploy prod latest"), @r#"
        error: invalid version "latest" (expected e.g. v3.0.1)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 --strategy fast"), @r#"
        error: invalid strategy "fast" (expected rolling, canary or blue-green)
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 --strategy"), @r#"
        error: missing value for "--strategy"
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 --strategy --force"), @r#"
        error: missing value for "--strategy"
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 --strategy="), @r#"
        error: missing value for "--strategy"
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("deploy prod v1 --strategy canary --strategy rolling"), @r#"
        error: option "--strategy" given twice
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
    }

    #[test]
    fn unknown_options() {
        assert_snapshot!(run("deploy prod v1 --force"), @r#"
        error: unknown option "--force"
        usage: /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("restart prod --id 4"), @r#"
        error: unknown option "--id"
        usage: /erlmcp restart ENV [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("rollback prod v1 broke --"), @r#"
        error: unknown option "--"
        usage: /erlmcp rollback ENV [VERSION] [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("incident timeline --id 4"), @r#"
        error: unknown option "--id"
        usage: /erlmcp incident timeline [INC-N]
        "#);
        assert_snapshot!(run("logs prod --previous=yes"), @r#"
        error: option "--previous" takes no value
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
        assert_snapshot!(run("logs prod --tail --previous"), @r#"
        error: missing value for "--tail"
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
    }

    #[test]
    fn request_ids() {
        assert_snapshot!(run("approve"), @"
        error: missing ID
        usage: /erlmcp approve ID [COMMENT...]
        ");
        assert_snapshot!(run("approve R-0"), @r#"
        error: invalid request id "R-0" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("approve -5"), @r#"
        error: invalid request id "-5" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("approve +5"), @r#"
        error: invalid request id "+5" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("approve R-"), @r#"
        error: invalid request id "R-" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("approve R-x"), @r#"
        error: invalid request id "R-x" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("approve INC-4"), @r#"
        error: invalid request id "INC-4" (expected e.g. R-42)
        usage: /erlmcp approve ID [COMMENT...]
        "#);
        assert_snapshot!(run("deny 99999999999999999999"), @r#"
        error: invalid request id "99999999999999999999" (expected e.g. R-42)
        usage: /erlmcp deny ID [REASON...]
        "#);
        assert_snapshot!(run("cancel 4 5"), @r#"
        error: unexpected "5"
        usage: /erlmcp cancel ID
        "#);
    }

    #[test]
    fn extra_tokens() {
        assert_snapshot!(run("whoami foo"), @r#"
        error: unexpected "foo"
        usage: /erlmcp whoami
        "#);
        assert_snapshot!(run("requests now please"), @r#"
        error: unexpected "now"
        usage: /erlmcp requests
        "#);
        assert_snapshot!(run("status prod staging"), @r#"
        error: unexpected "staging"
        usage: /erlmcp status [ENV]
        "#);
        assert_snapshot!(run("pods prod extra"), @r#"
        error: unexpected "extra"
        usage: /erlmcp pods ENV
        "#);
        assert_snapshot!(run("canary prod pause now"), @r#"
        error: unexpected "now"
        usage: /erlmcp canary ENV status|pause|resume|abort|promote [--dry-run]
        "#);
        assert_snapshot!(run("logs prod api-0 api-1"), @r#"
        error: unexpected "api-1"
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
        assert_snapshot!(run("incident list open"), @r#"
        error: unexpected "open"
        usage: /erlmcp incident list
        "#);
        assert_snapshot!(run("audit 5 6"), @r#"
        error: unexpected "6"
        usage: /erlmcp audit [N]
        "#);
        assert_snapshot!(run("help deploy extra"), @r#"
        error: unexpected "extra"
        usage: /erlmcp help [COMMAND]
        "#);
    }

    #[test]
    fn numbers() {
        assert_snapshot!(run("scale prod"), @"
        error: missing REPLICAS
        usage: /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        ");
        assert_snapshot!(run("scale prod 1001"), @r#"
        error: invalid replica count "1001" (expected a whole number from 0 to 1000)
        usage: /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("scale prod -1"), @r#"
        error: invalid replica count "-1" (expected a whole number from 0 to 1000)
        usage: /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("scale prod lots"), @r#"
        error: invalid replica count "lots" (expected a whole number from 0 to 1000)
        usage: /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run(&format!("scale prod {}", "9".repeat(100))), @r#"
        error: invalid replica count "999999999999999999999999999999999999999999999999999999999999…" (expected a whole number from 0 to 1000)
        usage: /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("audit 0"), @r#"
        error: invalid entry count "0" (expected a whole number from 1 to 1000)
        usage: /erlmcp audit [N]
        "#);
        assert_snapshot!(run("audit 1001"), @r#"
        error: invalid entry count "1001" (expected a whole number from 1 to 1000)
        usage: /erlmcp audit [N]
        "#);
        assert_snapshot!(run("audit ten"), @r#"
        error: invalid entry count "ten" (expected a whole number from 1 to 1000)
        usage: /erlmcp audit [N]
        "#);
        assert_snapshot!(run("logs prod --tail 0"), @r#"
        error: invalid --tail "0" (expected a whole number from 1 to 10000)
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
        assert_snapshot!(run("logs prod --tail 10001"), @r#"
        error: invalid --tail "10001" (expected a whole number from 1 to 10000)
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
    }

    #[test]
    fn modes_and_actions() {
        assert_snapshot!(run("maintenance prod"), @"
        error: missing mode (on or off)
        usage: /erlmcp maintenance ENV on|off [--dry-run] [REASON...]
        ");
        assert_snapshot!(run("maintenance prod maybe"), @r#"
        error: invalid maintenance mode "maybe" (expected on or off)
        usage: /erlmcp maintenance ENV on|off [--dry-run] [REASON...]
        "#);
        assert_snapshot!(run("canary prod"), @"
        error: missing canary action (status, pause, resume, abort or promote)
        usage: /erlmcp canary ENV status|pause|resume|abort|promote [--dry-run]
        ");
        assert_snapshot!(run("canary prod go"), @r#"
        error: invalid canary action "go" (expected status, pause, resume, abort or promote)
        usage: /erlmcp canary ENV status|pause|resume|abort|promote [--dry-run]
        "#);
        assert_snapshot!(run("logs prod Api_Pod"), @r#"
        error: invalid pod name "Api_Pod" (expected a Kubernetes pod name)
        usage: /erlmcp logs ENV [POD] [--previous] [--tail N]
        "#);
    }

    #[test]
    fn incident() {
        assert_snapshot!(run("incident"), @"
        error: missing incident subcommand (one of declare, update, severity, commander, resolve, list, timeline)
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
               /erlmcp incident update [--id INC-N] TEXT...
               /erlmcp incident severity [--id INC-N] P0|P1|P2
               /erlmcp incident commander [--id INC-N] @USER
               /erlmcp incident resolve [--id INC-N] [SUMMARY...]
               /erlmcp incident list
               /erlmcp incident timeline [INC-N]
        ");
        assert_snapshot!(run("incident foo"), @r#"
        error: unknown incident subcommand "foo"
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
               /erlmcp incident update [--id INC-N] TEXT...
               /erlmcp incident severity [--id INC-N] P0|P1|P2
               /erlmcp incident commander [--id INC-N] @USER
               /erlmcp incident resolve [--id INC-N] [SUMMARY...]
               /erlmcp incident list
               /erlmcp incident timeline [INC-N]
        "#);
        assert_snapshot!(run("incident declarre P1 x"), @r#"
        error: unknown incident subcommand "declarre" (did you mean "declare"?)
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
               /erlmcp incident update [--id INC-N] TEXT...
               /erlmcp incident severity [--id INC-N] P0|P1|P2
               /erlmcp incident commander [--id INC-N] @USER
               /erlmcp incident resolve [--id INC-N] [SUMMARY...]
               /erlmcp incident list
               /erlmcp incident timeline [INC-N]
        "#);
        assert_snapshot!(run("incident declare"), @"
        error: missing severity (P0, P1 or P2)
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
        ");
        assert_snapshot!(run("incident declare P3 checkout down"), @r#"
        error: invalid severity "P3" (expected P0, P1 or P2)
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
        "#);
        assert_snapshot!(run("incident declare P1"), @"
        error: missing TITLE
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
        ");
        assert_snapshot!(run(r#"incident declare P1 "" "#), @"
        error: missing TITLE
        usage: /erlmcp incident declare P0|P1|P2 TITLE...
        ");
        assert_snapshot!(run("incident update"), @"
        error: missing TEXT
        usage: /erlmcp incident update [--id INC-N] TEXT...
        ");
        assert_snapshot!(run("incident update --id 7"), @"
        error: missing TEXT
        usage: /erlmcp incident update [--id INC-N] TEXT...
        ");
        assert_snapshot!(run("incident update --id INC-0 text"), @r#"
        error: invalid incident id "INC-0" (expected e.g. INC-7)
        usage: /erlmcp incident update [--id INC-N] TEXT...
        "#);
        assert_snapshot!(run("incident update --id R-4 text"), @r#"
        error: invalid incident id "R-4" (expected e.g. INC-7)
        usage: /erlmcp incident update [--id INC-N] TEXT...
        "#);
        assert_snapshot!(run("incident severity"), @"
        error: missing severity (P0, P1 or P2)
        usage: /erlmcp incident severity [--id INC-N] P0|P1|P2
        ");
        assert_snapshot!(run("incident severity high"), @r#"
        error: invalid severity "high" (expected P0, P1 or P2)
        usage: /erlmcp incident severity [--id INC-N] P0|P1|P2
        "#);
        assert_snapshot!(run("incident commander"), @"
        error: missing @USER
        usage: /erlmcp incident commander [--id INC-N] @USER
        ");
        assert_snapshot!(run("incident commander <#C123>"), @r#"
        error: invalid user "<#C123>" (expected @name or a mention)
        usage: /erlmcp incident commander [--id INC-N] @USER
        "#);
        assert_snapshot!(run("incident commander <@U123"), @r#"
        error: invalid user "<@U123" (expected @name or a mention)
        usage: /erlmcp incident commander [--id INC-N] @USER
        "#);
        assert_snapshot!(run(r#"incident commander "@alice smith""#), @r#"
        error: invalid user "@alice smith" (expected @name or a mention)
        usage: /erlmcp incident commander [--id INC-N] @USER
        "#);
        assert_snapshot!(run("incident commander @alice @bob"), @r#"
        error: unexpected "@bob"
        usage: /erlmcp incident commander [--id INC-N] @USER
        "#);
        assert_snapshot!(run("incident timeline R-4"), @r#"
        error: invalid incident id "R-4" (expected e.g. INC-7)
        usage: /erlmcp incident timeline [INC-N]
        "#);
    }

    #[test]
    fn help_topics() {
        assert_snapshot!(run("help xyzzy"), @r#"
        error: unknown command "xyzzy"
        usage: /erlmcp help [COMMAND]
        "#);
        assert_snapshot!(run("help deplyo"), @r#"
        error: unknown command "deplyo" (did you mean "deploy"?)
        usage: /erlmcp help [COMMAND]
        "#);
        assert_snapshot!(run("help incident nope"), @r#"
        error: unknown incident subcommand "nope"
        usage: /erlmcp help [COMMAND]
        "#);
    }
}

mod help_text {
    use super::*;

    #[test]
    fn overview() {
        assert_snapshot!(help(None, &ctx()).unwrap(), @r#"
        Commands:
        /erlmcp help [COMMAND] — list the commands, or show how to use one
        /erlmcp whoami — your platform id, roles, and what you may do where
        /erlmcp status [ENV] — version, replicas ready/desired, health, rollout and canary
        /erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...] — deploy VERSION to ENV (--dry-run: show the plan only)
        /erlmcp rollback ENV [VERSION] [--dry-run] [REASON...] — roll ENV back to VERSION, or to the previous revision
        /erlmcp approve ID [COMMENT...] — approve a pending request (same as the Approve button)
        /erlmcp deny ID [REASON...] — deny a pending request (same as the Deny button)
        /erlmcp cancel ID — withdraw a pending request you made, or acknowledge an interrupted one
        /erlmcp requests — pending requests you can act on, and interrupted ones not yet acknowledged
        /erlmcp scale ENV REPLICAS [--dry-run] [REASON...] — set the number of replicas in ENV (0 to 1000)
        /erlmcp restart ENV [--dry-run] [REASON...] — restart the workload in ENV
        /erlmcp maintenance ENV on|off [--dry-run] [REASON...] — turn maintenance mode in ENV on or off
        /erlmcp canary ENV status|pause|resume|abort|promote [--dry-run] — show or steer the canary rollout in ENV
        /erlmcp pods ENV — the pods in ENV with their state and restarts
        /erlmcp logs ENV [POD] [--previous] [--tail N] — the log tail of a pod in ENV (--previous: before its last restart)
        /erlmcp incident declare P0|P1|P2 TITLE... — declare an incident
        /erlmcp incident update [--id INC-N] TEXT... — add an update to this channel's incident (or the one given by --id)
        /erlmcp incident severity [--id INC-N] P0|P1|P2 — change the incident's severity
        /erlmcp incident commander [--id INC-N] @USER — hand command of the incident to @USER
        /erlmcp incident resolve [--id INC-N] [SUMMARY...] — resolve the incident, with an optional summary
        /erlmcp incident list — open incidents
        /erlmcp incident timeline [INC-N] — the timeline of an incident (default: this channel's)
        /erlmcp audit [N] — the last N audit entries visible to you (1 to 1000)
        /erlmcp audit prune --before DATE — remove audit entries older than DATE (YYYY-MM-DD or RFC 3339), behind a signed checkpoint
        /erlmcp runs ENV [N] — the last N runs of ENV's deploy workflow (default 10, at most 50)
        /erlmcp run view ID — a GitHub Actions run: its status, jobs and link
        /erlmcp run cancel ID — cancel a GitHub Actions run (deploy rights on its environment)
        /erlmcp run rerun ID [--failed] — re-run a GitHub Actions run, or only its failed jobs
        /erlmcp run approve ID — approve the environment gate a GitHub Actions run waits on
        /erlmcp run reject ID — reject the environment gate a GitHub Actions run waits on
        /erlmcp events ENV — recent events in ENV, warnings first, newest first
        /erlmcp describe ENV POD — a pod's phase, conditions, last state (e.g. OOMKilled), limits, requests and events
        /erlmcp top ENV — CPU and memory per pod in ENV
        /erlmcp pod delete ENV POD [--force] [--dry-run] — delete a stuck pod in ENV (--force: grace period 0)
        /erlmcp resources ENV [--requests cpu=…,memory=…] [--limits cpu=…,memory=…] [--dry-run] — set the container's CPU and memory requests and limits in ENV (kubectl set resources)
        /erlmcp backup ENV [--dry-run] — run ENV's backup CronJob now and report how it ends
        /erlmcp backups ENV — recent runs of ENV's backup CronJob
        /erlmcp dr status — the DR region's pods and health
        /erlmcp dr failover ENV [--dry-run] [REASON...] — fail ENV over to the DR region (runs the configured failover action)
        /erlmcp report — the daily health report: pods, restarts, health, versions, incidents, yesterday's operations
        /erlmcp bluegreen ENV status|switch blue|green|retire [--dry-run] — the live colour in ENV; switch the Service to a colour; retire the idle colour
        Environments: development (dev), staging (stg), production (prod)
        Ids: R-42 or 42 for requests, INC-7 or 7 for incidents. Group words with "double quotes".
        "#);
    }

    #[test]
    fn one_command() {
        assert_snapshot!(help(Some("scale"), &ctx()).unwrap(), @"
        /erlmcp scale ENV REPLICAS [--dry-run] [REASON...]
        set the number of replicas in ENV (0 to 1000)
        ");
        assert_snapshot!(help(Some("incident commander"), &ctx()).unwrap(), @"
        /erlmcp incident commander [--id INC-N] @USER
        hand command of the incident to @USER
        ");
    }

    #[test]
    fn incident_group() {
        assert_snapshot!(help(Some("incident"), &ctx()).unwrap(), @"
        /erlmcp incident declare P0|P1|P2 TITLE... — declare an incident
        /erlmcp incident update [--id INC-N] TEXT... — add an update to this channel's incident (or the one given by --id)
        /erlmcp incident severity [--id INC-N] P0|P1|P2 — change the incident's severity
        /erlmcp incident commander [--id INC-N] @USER — hand command of the incident to @USER
        /erlmcp incident resolve [--id INC-N] [SUMMARY...] — resolve the incident, with an optional summary
        /erlmcp incident list — open incidents
        /erlmcp incident timeline [INC-N] — the timeline of an incident (default: this channel's)
        ");
    }

    #[test]
    fn unknown_topic() {
        assert_snapshot!(help(Some("xyzzy"), &ctx()).unwrap_err().render(), @r#"
        unknown command "xyzzy"
        usage: /erlmcp help [COMMAND]
        "#);
    }
}
