//! Pins the parser's output for the runbook's troubleshooting, resources, backup, DR and
//! report commands, and the errors they give.

use erlmcp_commands::grammar::{EnvironmentNames, ParseContext, help, parse};

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

#[test]
fn troubleshooting() {
    assert_eq!(
        run("events prod"),
        r#"Events { env: EnvName("production") }"#
    );
    assert_eq!(
        run("describe prod erlmcp-7d9f-x2"),
        r#"Describe { env: EnvName("production"), pod: "erlmcp-7d9f-x2" }"#
    );
    assert_eq!(run("top stg"), r#"Top { env: EnvName("staging") }"#);
    assert_eq!(
        run("pod delete prod erlmcp-7d9f-x2 --force"),
        r#"PodDelete { env: EnvName("production"), pod: "erlmcp-7d9f-x2", force: true }"#
    );
    assert_eq!(
        run("Pod Delete prod erlmcp-0"),
        r#"PodDelete { env: EnvName("production"), pod: "erlmcp-0", force: false }"#
    );
    assert_eq!(
        run("describe prod"),
        "error: missing POD\nusage: /erlmcp describe ENV POD"
    );
    assert_eq!(
        run("describe prod Erlmcp_0"),
        "error: invalid pod name \"Erlmcp_0\" (expected a Kubernetes pod name)\nusage: /erlmcp describe ENV POD"
    );
    assert_eq!(
        run("pod delete prod erlmcp-0 --force=yes"),
        "error: option \"--force\" takes no value\nusage: /erlmcp pod delete ENV POD [--force] [--dry-run]"
    );
}

#[test]
fn groups_without_their_subcommand_name_it() {
    assert_eq!(
        run("pod"),
        "error: missing pod subcommand (one of delete)\nusage: /erlmcp pod delete ENV POD [--force] [--dry-run]"
    );
    assert_eq!(
        run("dr failvoer prod"),
        "error: unknown dr subcommand \"failvoer\" (did you mean \"failover\"?)\nusage: /erlmcp dr status\n       /erlmcp dr failover ENV [--dry-run] [REASON...]"
    );
    let text = help(Some("dr"), &ctx()).unwrap();
    assert_eq!(
        text,
        "/erlmcp dr status — the DR region's pods and health\n\
         /erlmcp dr failover ENV [--dry-run] [REASON...] — fail ENV over to the DR region (runs the configured failover action)"
    );
    assert!(
        help(Some("pod delete"), &ctx())
            .unwrap()
            .starts_with("/erlmcp pod delete ENV POD [--force] [--dry-run]\n")
    );
}

#[test]
fn resources() {
    assert_eq!(
        run("resources prod --requests cpu=500m,memory=1Gi --limits cpu=1000m,memory=2Gi"),
        r#"Resources { env: EnvName("production"), change: ResourceChange { requests: ResourceList([(Cpu, Quantity("500m")), (Memory, Quantity("1Gi"))]), limits: ResourceList([(Cpu, Quantity("1000m")), (Memory, Quantity("2Gi"))]) } }"#
    );
    assert_eq!(
        run("resources prod --limits=memory=4Gi"),
        r#"Resources { env: EnvName("production"), change: ResourceChange { requests: ResourceList([]), limits: ResourceList([(Memory, Quantity("4Gi"))]) } }"#
    );
    let usage = "\nusage: /erlmcp resources ENV [--requests cpu=…,memory=…] [--limits cpu=…,memory=…] [--dry-run]";
    for (input, message) in [
        (
            "resources prod",
            "missing --requests or --limits (e.g. --limits memory=4Gi)",
        ),
        (
            "resources prod --limits memory=4GB",
            "invalid quantity \"4GB\" for memory in --limits (expected e.g. 500m, 2, 512Mi, 4Gi)",
        ),
        (
            "resources prod --limits gpu=1",
            "unknown resource \"gpu\" in --limits (expected cpu or memory)",
        ),
        (
            "resources prod --requests memory=8Gi --limits memory=4Gi",
            "memory request 8Gi is above its limit 4Gi",
        ),
        (
            "resources prod --limits memory=-1Gi",
            "invalid quantity \"-1Gi\" for memory in --limits (expected e.g. 500m, 2, 512Mi, 4Gi)",
        ),
        ("resources prod --limits", "missing value for \"--limits\""),
    ] {
        assert_eq!(run(input), format!("error: {message}{usage}"), "{input}");
    }
}

#[test]
fn backups_dr_and_report() {
    assert_eq!(
        run("backup prod"),
        r#"Backup { env: EnvName("production") }"#
    );
    assert_eq!(
        run("backups dev"),
        r#"Backups { env: EnvName("development") }"#
    );
    assert_eq!(run("dr status"), "DrStatus");
    assert_eq!(
        run("dr failover prod eu-west-1 is down"),
        r#"DrFailover { env: EnvName("production"), reason: Some("eu-west-1 is down") }"#
    );
    assert_eq!(
        run("dr failover"),
        "error: missing ENV (known: development, staging, production)\nusage: /erlmcp dr failover ENV [--dry-run] [REASON...]"
    );
    assert_eq!(run("report"), "Report");
    assert_eq!(
        run("report now"),
        "error: unexpected \"now\"\nusage: /erlmcp report"
    );
    assert_eq!(
        run("dr status prod"),
        "error: unexpected \"prod\"\nusage: /erlmcp dr status"
    );
}
