//! Starting more than one process on one database: replicas on PostgreSQL migrate an empty
//! database at the same instant and all start; a second `serve` on one SQLite file is
//! refused, while `exec` beside a running `serve` still works.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Barrier};

use erlmcp_bot::store::testdb;
use sqlx::Connection as _;

mod common;
use common::{BIN, free_port, stderr};

fn migrate(dir: &Path, url: &str) -> Output {
    Command::new(BIN)
        .args(["migrate"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("ERLMCP_BOT__DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("run erlmcp-bot migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_an_empty_postgres_database_at_once_all_start() {
    let Some(url) = testdb::fresh_postgres_url(
        "replicas_migrating_an_empty_postgres_database_at_once_all_start",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    const REPLICAS: usize = 4;
    // Released together so the processes race for the schema, as replicas of a fresh
    // Deployment do.
    let gate = Arc::new(Barrier::new(REPLICAS));
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..REPLICAS)
            .map(|_| {
                let (gate, url, dir) = (gate.clone(), url.clone(), dir.path());
                s.spawn(move || {
                    gate.wait();
                    migrate(dir, &url)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("migrate thread"))
            .collect()
    });
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "a replica failed: {}", stderr(o));
    }

    let expected = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/postgres"
    ))
    .expect("migrations dir")
    .filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
    })
    .count() as i64;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let (applied, ok): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE success) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .expect("read _sqlx_migrations");
    assert_eq!(
        (applied, ok),
        (expected, expected),
        "each migration applied once"
    );

    // And the schema works: a store opens on it without migrating anything again.
    let store = erlmcp_bot::store::PgStore::open(&url)
        .await
        .expect("open after the race");
    store.close().await;
    conn.close().await.ok();
    testdb::drop_postgres_database(&url).await;
}

fn serve(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("serve")
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("ERLMCP_BOT__LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Waits for the `ready` log line (the store is open and the listener bound), not a sleep.
fn wait_ready(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.contains("erlmcp-bot ready") => return rx,
            Ok(line) => seen.push(line),
            Err(e) => panic!("serve never became ready ({e}): {}", seen.join("\n")),
        }
    }
}

/// A server the test started: killed if the test fails before stopping it.
struct Running(Option<std::process::Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a process expected to exit on its own; one still running after a minute (a second
/// server that started) is killed and reported.
fn output_within_a_minute(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the second serve kept running instead of being refused");
        }
    }
}

#[test]
fn a_second_serve_on_one_sqlite_file_is_refused_while_exec_still_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut child = serve(d).spawn().expect("start serve");
    let _logs = wait_ready(&mut child);
    let first = Running(Some(child));

    let second = output_within_a_minute(serve(d));
    let msg = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "refused: {msg}");
    assert!(
        msg.contains("erlmcp-bot.db is already served"),
        "names the file: {msg}"
    );
    assert!(
        msg.contains(&format!("pid {}", first.id())),
        "names the running process: {msg}"
    );
    assert!(msg.contains("PostgreSQL"), "says how to run several: {msg}");
    assert!(
        !msg.contains("erlmcp-bot ready"),
        "refused before starting: {msg}"
    );

    // The README's walk-through runs `exec` and `audit verify` beside a running server.
    let exec = Command::new(BIN)
        .args(["exec", "--as", "dave", "deploy staging v3.0.1"])
        .current_dir(d)
        .env_remove("RUST_LOG")
        .output()
        .expect("run exec");
    assert_eq!(exec.status.code(), Some(0), "{}", stderr(&exec));
    assert!(String::from_utf8_lossy(&exec.stdout).contains("staging runs v3.0.1"));
    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .current_dir(d)
        .env_remove("RUST_LOG")
        .output()
        .expect("run audit verify");
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));

    // The kernel drops the lock with the process, however it ends: a new server starts on
    // the same file.
    drop(first);
    let mut child = serve(d).spawn().expect("start serve again");
    let _logs = wait_ready(&mut child);
    drop(Running(Some(child)));
}
