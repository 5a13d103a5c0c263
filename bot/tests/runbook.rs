//! The README's runbook walk-through on the embedded default: troubleshooting, resources,
//! backups, DR and the daily report, each through `exec` on the sandbox.

mod common;
use common::{run, stdout};

/// Runs `exec --as WHO "TEXT"` and returns its stdout after checking the exit code.
fn exec(dir: &std::path::Path, who: &str, text: &str, code: i32) -> String {
    let o = run(dir, &["exec", "--as", who, text]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(code), "{who}: {text}\n{out}");
    out
}

/// The `R-n` a pending reply names.
fn request_id(reply: &str) -> String {
    let start = reply.find("R-").expect("a request id");
    reply[start..]
        .chars()
        .take_while(|c| *c == 'R' || *c == '-' || c.is_ascii_digit())
        .collect()
}

#[test]
fn the_runbook_commands_work_in_the_sandbox_through_exec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();

    let out = exec(d, "dave", "events prod", 0);
    assert!(out.contains("production [sandbox]:"), "{out}");
    let out = exec(d, "dave", "describe prod erlmcp-2-0", 0);
    assert!(out.contains("pod erlmcp-2-0 [sandbox]"), "{out}");
    assert!(out.contains("Limits: cpu=1, memory=2Gi"), "{out}");
    let out = exec(d, "dave", "describe prod nope-1", 1);
    assert!(out.contains("not part of production"), "{out}");
    let out = exec(d, "dave", "top prod", 0);
    assert!(
        out.contains("erlmcp-2-0 120m 300Mi (15% of 2.0Gi limit)"),
        "{out}"
    );

    // Deleting pods is on-call's; an engineer is refused.
    exec(d, "dave", "pod delete prod erlmcp-2-0 --force", 1);
    let out = exec(d, "carol", "pod delete prod erlmcp-2-0 --force", 0);
    assert!(out.contains("sandbox: pod erlmcp-2-0"), "{out}");
    assert!(out.contains("grace period 0"), "{out}");

    // Resources: a bad quantity is a usage error; staging at once, production approved.
    let out = exec(d, "carol", "resources prod --limits memory=4GB", 2);
    assert!(out.contains("invalid quantity \"4GB\" for memory"), "{out}");
    let out = exec(d, "carol", "resources stg --limits memory=4Gi", 0);
    assert!(out.contains("now has limits memory=4Gi"), "{out}");
    let out = exec(
        d,
        "carol",
        "resources prod --requests cpu=500m,memory=1Gi --limits cpu=1000m,memory=4Gi",
        0,
    );
    let id = request_id(&out);
    let out = exec(d, "bob", &format!("approve {id}"), 0);
    assert!(out.contains("limits cpu=1000m,memory=4Gi"), "{out}");
    let out = exec(d, "dave", "describe prod erlmcp-2-1", 0);
    assert!(out.contains("memory=4Gi"), "{out}");

    let out = exec(d, "carol", "backup prod", 0);
    assert!(
        out.contains("sandbox: backup of production: Job erlmcp-backup-"),
        "{out}"
    );
    let out = exec(d, "dave", "backups prod", 0);
    assert!(out.contains("succeeded manual"), "{out}");

    let out = exec(d, "dave", "dr status", 0);
    assert!(out.contains("DR region — dr [sandbox]"), "{out}");
    assert!(out.contains("pods: 2 pods, 2 ready, 0 restarts"), "{out}");

    // Failover: two approvals, and on-call alone is not enough outside a P0.
    let out = exec(d, "carol", "dr failover prod region eu-west-1 is down", 0);
    let id = request_id(&out);
    assert!(out.contains("2"), "{out}");
    let out = exec(d, "alice", &format!("approve {id}"), 0);
    assert!(!out.contains("DR failover of production"), "{out}");
    let out = exec(d, "bob", &format!("approve {id}"), 0);
    assert!(out.contains("sandbox: DR failover of production"), "{out}");

    let out = exec(d, "dave", "report", 0);
    assert!(out.starts_with("Daily health report"), "{out}");
    assert!(out.contains("production [sandbox]: v2.9.5"), "{out}");
    assert!(out.contains("Open incidents: none"), "{out}");
    assert!(out.contains("Yesterday's operations"), "{out}");

    let out = exec(d, "erin", "report", 1);
    assert!(out.contains("Refused"), "{out}");

    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
