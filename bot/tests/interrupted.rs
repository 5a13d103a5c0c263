//! The binary killed mid-rollout: a production deploy approved with `exec`, that `exec`
//! SIGKILLed while the sandbox rolls out, then `serve` started again. The request ends
//! `interrupted` with one terminal audit row and one announcement, the audit chain still
//! verifies, `requests` lists it until `cancel` acknowledges it, and nothing re-runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_erlmcp-bot");

/// The embedded default with a lease short enough for a test, and a rollout (5 replicas,
/// 1 s a step) long enough to be killed in the middle.
fn config() -> String {
    include_str!("../src/embedded.toml").replacen(
        "[bot]\n",
        "[bot]\nowner_lease = \"3s\"\nsandbox_step = \"1s\"\n",
        1,
    )
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run erlmcp-bot")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
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
    let o = run(dir, &["audit", "export", "--format", "jsonl"]);
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
