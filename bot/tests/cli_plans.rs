//! The README's walk through plans and blue-green, through `exec` on the embedded default's
//! sandbox, with its exit codes.

mod common;
use common::{run, stdout};

#[test]
fn exec_walks_plans_and_blue_green_in_the_sandbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let exec = |who: &str, text: &str| {
        let o = run(d, &["exec", "--as", who, text]);
        (o.status.code(), stdout(&o))
    };

    let (code, out) = exec("alice", "deploy prod v3.0.0 --dry-run");
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "nothing was changed",
        "sandbox",
        "image (container erlmcp): erlmcp:v2.9.5 → erlmcp:v3.0.0",
        "needs 1 approval from change-board",
        "✓ v3.0.0 soaked in staging",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    let (code, out) = exec("carol", "scale prod 8 --dry-run");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("replicas: 5 → 8"), "{out}");

    let (code, out) = exec("dave", "deploy staging v3.0.2 --strategy blue-green");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("switched from blue (v3.0.0) to green"),
        "{out}"
    );
    let (code, out) = exec("carol", "bluegreen staging status");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sends traffic to green (live)"), "{out}");
    assert!(
        out.contains("blue (idle, deployment/erlmcp-blue): runs v3.0.0"),
        "{out}"
    );

    let (code, out) = exec("carol", "bluegreen staging switch blue");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("switched from green to blue"), "{out}");

    let (code, out) = exec("alice", "bluegreen staging retire --dry-run");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("replicas: 3 → 0"), "{out}");
    let (code, out) = exec("alice", "bluegreen staging retire");
    assert_eq!(code, Some(0), "pending: {out}");
    assert!(out.contains("change-board"), "{out}");

    let (code, out) = exec("alice", "audit 20");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("dry_run"), "{out}");

    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
