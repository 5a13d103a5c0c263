//! `erlmcp-bot console` driven through a pipe, as a script would: every reply is printed as
//! a block, including a card redrawn because someone else approved from another process.

use std::io::{BufRead as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{BIN, stderr};

struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
    /// Everything printed so far.
    all: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn start(dir: &std::path::Path, person: &str) -> Console {
        let mut child = Command::new(BIN)
            .args(["console", "--as", person])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start console");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        Console {
            child,
            stdin,
            out,
            all: String::new(),
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to console");
        stdin.flush().unwrap();
    }

    /// Reads until the end of the block (a blank line) holding a line containing `needle`;
    /// returns what was printed since the last call.
    fn expect(&mut self, needle: &str) -> String {
        let mut got = String::new();
        let mut found = false;
        loop {
            match self.out.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    got.push_str(&l);
                    got.push('\n');
                    self.all.push_str(&l);
                    self.all.push('\n');
                    found |= l.contains(needle);
                    if found && l.is_empty() {
                        return got;
                    }
                }
                Err(e) => panic!(
                    "the console never printed {needle:?} ({e}); it printed:\n{}",
                    self.all
                ),
            }
        }
    }

    /// Closes stdin and waits for the console to finish; returns the rest it printed.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        while let Ok(l) = self.out.recv_timeout(Duration::from_secs(60)) {
            rest.push_str(&l);
            rest.push('\n');
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "console exited with {status}");
        rest
    }
}

#[test]
fn a_scripted_conversation_through_a_pipe_shows_every_reply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Console::start(d, "alice");

    c.say("whoami");
    let who = c.expect("local:alice");
    assert!(
        who.contains("── #deployments · erlmcp-bot"),
        "one block per message:\n{who}"
    );
    assert!(who.contains("only alice sees this"), "{who}");
    assert!(who.contains("devops-lead"), "{who}");

    c.say("/erlmcp deploy prod v3.0.0 approved in CAB-12");
    let card = c.expect("Approve with");
    assert!(card.contains("R-1 deploy prod v3.0.0"), "{card}");
    assert!(
        card.contains("Needs 1 approval from change-board"),
        "{card}"
    );

    // Bob approves from another process while the console waits.
    let exec = Command::new(BIN)
        .args(["exec", "--as", "bob", "approve R-1 lgtm"])
        .current_dir(d)
        .env_remove("RUST_LOG")
        .output()
        .expect("run exec");
    assert_eq!(exec.status.code(), Some(0), "{}", stderr(&exec));
    let redrawn = c.expect("State: succeeded");
    assert!(
        redrawn.contains("· updated"),
        "the card is redrawn in place:\n{redrawn}"
    );
    assert!(redrawn.contains("Approved by: local:bob"), "{redrawn}");

    // Someone else, in the same console.
    c.say("/as erin");
    c.expect("now speaking as erin (no role)");
    c.say("approve R-1");
    let settled = c.expect("only erin sees this");
    assert!(settled.contains("R-1 is already done"), "{settled}");
    c.say("deploy staging v3.0.1");
    let refused = c.expect("only erin sees this");
    assert!(refused.contains("Refused: you hold no role"), "{refused}");

    c.say("/as nobody");
    c.expect("nobody called \"nobody\" here (people: alice, bob, carol, dave, erin)");

    // A change with progress: the lines come in a thread, then the outcome.
    c.say("/as dave");
    c.say("deploy staging v3.0.1");
    let progress = c.expect("staging runs v3.0.1");
    assert!(
        progress.contains("› thread"),
        "progress in a thread:\n{progress}"
    );
    assert!(
        progress.contains("3 of 3 new replicas updated"),
        "{progress}"
    );

    // An incident opens its channel; the console follows it.
    c.say("/as carol");
    c.say("incident declare P1 \"API down\"");
    let inc = c.expect("INC-1");
    let inc = inc + &c.expect("Runbook checklist");
    assert!(inc.contains("── #inc-1-api-down opened"), "{inc}");
    c.say("/join inc-1-api-down");
    c.expect("now in #inc-1-api-down");
    c.say("incident update restarting the ingress");
    c.expect("restarting the ingress");
    c.say("/join nowhere");
    c.expect("no channel #nowhere");

    let rest = c.finish();
    assert!(!rest.contains("panicked"), "{rest}");
}
