//! The binary killed mid-rollout: a production deploy approved with `exec`, that `exec`
//! SIGKILLed while the sandbox rolls out, then `serve` started again. The request ends
//! `interrupted` with one terminal audit row and one announcement, the audit chain still
//! verifies, `requests` lists it until `cancel` acknowledges it, and nothing re-runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{BIN, free_port, run, run_env, stdout};

/// The embedded default with a lease short enough for a test, and a rollout (5 replicas,
/// 1 s a step) long enough to be killed in the middle.
fn config() -> String {
    include_str!("../src/embedded.toml").replacen(
        "[bot]\n",
        "[bot]\nowner_lease = \"3s\"\nsandbox_step = \"1s\"\n",
        1,
    )
}

/// Spawns the binary and hands every stderr line to a channel as it is written.
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn erlmcp-bot");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads lines until one contains `needle`; every line read is kept in `seen`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, within: Duration, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => panic!(
                "no line with {needle:?} within {within:?}:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn sigterm(child: Child, rx: mpsc::Receiver<String>, seen: &mut Vec<String>) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = child;
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    assert_eq!(status.code(), Some(0), "clean exit:\n{}", seen.join("\n"));
}

/// Audit rows of R-1 with this action, from the JSONL export.
fn audit_rows(dir: &Path, action: &str) -> Vec<serde_json::Value> {
    audit_rows_env(dir, action, &[])
}

fn audit_rows_env(dir: &Path, action: &str, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let o = run_env(dir, &["audit", "export", "--format", "jsonl"], env);
    assert_eq!(o.status.code(), Some(0));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == action && r["request_id"] == 1)
        .collect()
}

#[test]
fn exec_killed_mid_rollout_is_reconciled_by_serve_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config();
    assert!(cfg.contains("owner_lease"));
    std::fs::write(d.join("erlmcp-bot.toml"), cfg).unwrap();

    let o = run(d, &["exec", "--as", "alice", "deploy production v3.0.0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("R-1"), "{}", stdout(&o));

    // Bob approves; his `exec` carries the rollout out and is killed two replicas in.
    let (mut approver, lines) = spawn(d, &["exec", "--as", "bob", "approve R-1"], &[]);
    let mut seen = Vec::new();
    wait_for(
        &lines,
        "2 of 5 new replicas updated",
        Duration::from_secs(30),
        &mut seen,
    );
    approver.kill().unwrap(); // SIGKILL: no cleanup at all
    let status = approver.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");

    // serve comes up; within the lease it finds the dead owner's request and reconciles it.
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (serve, logs) = spawn(d, &["serve"], &[("ERLMCP_BOT__LISTEN", listen.as_str())]);
    let mut serve_logs = Vec::new();
    wait_for(
        &logs,
        "request interrupted",
        Duration::from_secs(30),
        &mut serve_logs,
    );
    // It follows the rollout the dead process left to its end.
    wait_for(
        &logs,
        "rollout left by an interrupted request finished",
        Duration::from_secs(30),
        &mut serve_logs,
    );
    sigterm(serve, logs, &mut serve_logs);
    let announced = serve_logs
        .iter()
        .filter(|l| l.contains("request interrupted"))
        .count();
    assert_eq!(announced, 1, "{}", serve_logs.join("\n"));

    let interrupted = audit_rows(d, "interrupted");
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    let reason = interrupted[0]["reason"].as_str().unwrap();
    assert!(reason.contains("new replicas updated"), "{reason}");
    assert!(
        reason.contains("rollout of v3.0.0 was in progress"),
        "{reason}"
    );
    assert!(audit_rows(d, "executed").is_empty());

    // A second start finds nothing more to do.
    let (serve, logs) = spawn(d, &["serve"], &[("ERLMCP_BOT__LISTEN", listen.as_str())]);
    let mut again = Vec::new();
    wait_for(
        &logs,
        "ownership heartbeat running",
        Duration::from_secs(30),
        &mut again,
    );
    sigterm(serve, logs, &mut again);
    assert!(
        !again.iter().any(|l| l.contains("request interrupted")),
        "{}",
        again.join("\n")
    );
    assert_eq!(audit_rows(d, "interrupted").len(), 1);

    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = run(d, &["exec", "--as", "carol", "requests"]);
    assert!(
        stdout(&o).contains("R-1 deploy production v3.0.0"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("INTERRUPTED"), "{}", stdout(&o));
    let o = run(d, &["exec", "--as", "carol", "status production"]);
    assert!(stdout(&o).contains("R-1"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("v3.0.0 — 5/5 ready"),
        "rollout followed: {}",
        stdout(&o)
    );

    let o = run(d, &["exec", "--as", "alice", "cancel R-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("acknowledged"), "{}", stdout(&o));
    let o = run(d, &["exec", "--as", "carol", "requests"]);
    assert!(!stdout(&o).contains("R-1"), "{}", stdout(&o));
    assert_eq!(audit_rows(d, "acknowledged").len(), 1);
    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Two `serve` replicas on one PostgreSQL database while an `exec` carrying out an approved
/// deploy is SIGKILLed: exactly one of the survivors reconciles the request, within the lease.
#[test]
fn exec_killed_mid_rollout_is_reconciled_once_by_two_replicas_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(url) = runtime.block_on(erlmcp_bot::store::testdb::fresh_postgres_url(
        "exec_killed_mid_rollout_is_reconciled_once_by_two_replicas_on_postgres",
    )) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("erlmcp-bot.toml"), config()).unwrap();
    let db = [("ERLMCP_BOT__DATABASE_URL", url.as_str())];

    let o = run_env(
        d,
        &["exec", "--as", "alice", "deploy production v3.0.0"],
        &db,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // Two replicas are up before anything dies.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let listen = format!("127.0.0.1:{}", free_port());
        let env = [db[0], ("ERLMCP_BOT__LISTEN", listen.as_str())];
        let (child, logs) = spawn(d, &["serve"], &env);
        let mut seen = Vec::new();
        wait_for(
            &logs,
            "ownership heartbeat running",
            Duration::from_secs(30),
            &mut seen,
        );
        replicas.push((child, logs, seen));
    }

    let (mut approver, lines) = spawn(d, &["exec", "--as", "bob", "approve R-1"], &db);
    let mut seen = Vec::new();
    wait_for(
        &lines,
        "2 of 5 new replicas updated",
        Duration::from_secs(30),
        &mut seen,
    );
    approver.kill().unwrap();
    approver.wait().unwrap();
    let killed_at = std::time::Instant::now();

    // Whichever replica wins, the request ends interrupted once, and the rollout the dead
    // process left is followed to its end by that replica.
    let deadline = killed_at + Duration::from_secs(60);
    let mut reconciled_after = None;
    'follow: loop {
        for (_, logs, seen) in replicas.iter_mut() {
            while let Ok(line) = logs.try_recv() {
                let done = line.contains("rollout left by an interrupted request finished");
                if line.contains("request interrupted") {
                    reconciled_after.get_or_insert(killed_at.elapsed());
                }
                seen.push(line);
                if done {
                    break 'follow;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout was not followed to its end:\n{}",
            replicas
                .iter()
                .map(|(_, _, seen)| seen.join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run_env(d, &["exec", "--as", "carol", "status production"], &db);
    assert!(stdout(&o).contains("v3.0.0 — 5/5 ready"), "{}", stdout(&o));
    // The 3 s lease, plus up to a third of it until the next pass, plus slack for a loaded
    // machine: far from the minutes an unowned request would wait.
    let reconciled_after = reconciled_after.expect("a replica logged the reconciliation");
    assert!(
        reconciled_after < Duration::from_secs(15),
        "{reconciled_after:?}"
    );
    let mut announced = 0;
    for (child, logs, mut seen) in replicas {
        sigterm(child, logs, &mut seen);
        announced += seen
            .iter()
            .filter(|l| l.contains("request interrupted"))
            .count();
    }
    assert_eq!(announced, 1, "one replica announces it");
    assert_eq!(audit_rows_env(d, "interrupted", &db).len(), 1);
    assert!(audit_rows_env(d, "executed", &db).is_empty());
    let o = run_env(d, &["audit", "verify"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run_env(d, &["exec", "--as", "carol", "requests"], &db);
    assert!(stdout(&o).contains("INTERRUPTED"), "{}", stdout(&o));
    runtime.block_on(erlmcp_bot::store::testdb::drop_postgres_database(&url));
}
