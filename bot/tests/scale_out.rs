//! Several `serve` processes on one PostgreSQL database, driven from outside as a load
//! balancer and an orchestrator would: signed Slack requests spread over both, the
//! incident's periodic updates posted once per period, the leader killed and its Socket
//! Mode connection taken over by the other (the Lease on a fake API server names the new
//! holder), and a rolling restart under a steady stream of commands, counted in the audit
//! log. Each test makes its own database and skips loudly without PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use erlmcp_bot::store::testdb;
use erlmcp_tests::fake_kube::FakeKubeServer;
use erlmcp_tests::fake_slack::{FakeSlack, FakeSocketMode};
use serde_json::Value;
use sqlx::Connection as _;

mod common;
use common::{BIN, free_port, run_env, stdout};

const SECRET: &str = "scale-out-signing-secret";
const USER: &str = "U0DAVE";
/// Generous: seven builds share this machine.
const WAIT: Duration = Duration::from_secs(60);

/// The embedded default with JSON logs, dave on Slack, and Slack in `mode`.
fn config(slack: &FakeSlack, mode: &str, extra: &str) -> String {
    let mut cfg = include_str!("../src/embedded.toml")
        .replacen(
            "[bot]\n",
            "[bot]\nlog_format = \"json\"\nowner_lease = \"3s\"\nsandbox_step = \"0s\"\n",
            1,
        )
        .replacen(
            "dave = [\"local:dave\"]",
            &format!("dave = [\"local:dave\", \"slack:{USER}\"]"),
            1,
        )
        .replacen(
            "engineer = [\"local:dave\"]",
            &format!("engineer = [\"local:dave\", \"slack:{USER}\"]"),
            1,
        );
    cfg.push_str(&format!(
        "\n[slack]\nenabled = true\nmode = \"{mode}\"\nbot_token = \"xoxb-fake\"\n\
         app_token = \"xapp-fake\"\nsigning_secret = \"{SECRET}\"\napi_url = \"{}\"\n\
         incidents_channel = \"C0INCIDENTS\"\n",
        slack.api_url()
    ));
    cfg.push_str(extra);
    cfg
}

/// One `serve` process and what it logged (JSON lines), read as they come.
struct Serve {
    name: &'static str,
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<Value>,
    port: u16,
    probes: u16,
    exited: Option<ExitStatus>,
}

impl Serve {
    fn start(name: &'static str, dir: &Path, db: &str, env: &[(&str, &str)]) -> Serve {
        let (port, probes) = (free_port(), free_port());
        let listen = format!("127.0.0.1:{port}");
        let probes_at = format!("127.0.0.1:{probes}");
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("ERLMCP_BOT__DATABASE_URL", db)
            .env("ERLMCP_BOT__LISTEN", &listen)
            .env("ERLMCP_BOT__METRICS_LISTEN", &probes_at)
            .env("ERLMCP_LEADER__IDENTITY", format!("replica-{name}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn erlmcp-bot serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            name,
            child,
            lines,
            seen: Vec::new(),
            port,
            probes,
            exited: None,
        }
    }

    fn read(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
            self.seen.push(v);
        }
    }

    fn logged(&mut self, message: &str) -> Vec<Value> {
        self.read();
        self.seen
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    /// Waits for a log line with this message.
    async fn wait_for(&mut self, message: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.logged(message).pop() {
                return l;
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                let logs = self.logs();
                panic!("{}: no {message:?} within {within:?}:\n{logs}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&mut self) -> String {
        self.read();
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn ready(mut self) -> Serve {
        self.wait_for("erlmcp-bot ready", WAIT).await;
        self
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to end, without blocking the runtime.
    async fn exit(&mut self) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                self.read();
                return s;
            }
            if Instant::now() > deadline {
                let logs = self.logs();
                panic!("{} did not exit:\n{logs}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn terminate(&mut self) {
        self.signal("-TERM");
        let status = self.exit().await;
        let logs = self.logs();
        assert_eq!(
            status.code(),
            Some(0),
            "{} exits cleanly:\n{logs}",
            self.name
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Slack's slash command form (bolt-python's fixture, as in tests/tests/slack.rs): dave
/// types `text` in `channel`.
fn slash_body(text: &str, channel: &str, response_url: &str, trigger: &str) -> String {
    const FORM: &str =
        include_str!("../../tests/fixtures/slack/slash_command_bolt_python.form.txt");
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(FORM).unwrap();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "user_id" => USER.to_string(),
                "user_name" => "dave".to_string(),
                "channel_id" => channel.to_string(),
                "command" => "/erlmcp".to_string(),
                "text" => text.to_string(),
                "response_url" => response_url.to_string(),
                "trigger_id" => trigger.to_string(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    serde_urlencoded::to_string(fields).unwrap()
}

/// Sends `/erlmcp TEXT`, signed, to the replica on `port`, from a channel of its own (`key`
/// in capitals: Slack paces posts per channel, and each command's answer is then easy to
/// find), with the fake's response URL `key`. The HTTP status, or the transport error.
async fn slash(
    http: &reqwest::Client,
    slack: &FakeSlack,
    port: u16,
    text: &str,
    key: &str,
) -> Result<u16, String> {
    let body = slash_body(
        text,
        &channel_of(key),
        &slack.response_url(key),
        &format!("trigger-{key}"),
    );
    let ts = chrono::Utc::now().timestamp();
    let signature = erlmcp_adapters::slack::sign(SECRET.as_bytes(), ts, body.as_bytes());
    http.post(format!("http://127.0.0.1:{port}/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", ts.to_string())
        .header("X-Slack-Signature", signature)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

async fn readyz(http: &reqwest::Client, probes: u16) -> Result<(u16, String), String> {
    let r = http
        .get(format!("http://127.0.0.1:{probes}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
}

async fn metrics(probes: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{probes}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap()
}

/// The value of one sample in a /metrics text, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every audit row, from `audit export` (the binary, on the shared database).
fn audit(dir: &Path, db: &str) -> Vec<Value> {
    let o = run_env(
        dir,
        &["audit", "export", "--format", "jsonl"],
        &[("ERLMCP_BOT__DATABASE_URL", db)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("action").is_some())
        .collect()
}

/// Audit rows of `action` whose command carries `marker`.
fn rows_with(rows: &[Value], action: &str, marker: &str) -> usize {
    rows.iter()
        .filter(|r| r["action"] == action && r.to_string().contains(marker))
        .count()
}

fn channel_of(key: &str) -> String {
    format!("C{}", key.to_uppercase().replace('-', ""))
}

/// The outcomes posted for the command sent as `key`: the top-level messages in its own
/// channel (an operation's message, updated in place as it runs and when it ends).
fn answers(slack: &FakeSlack, key: &str) -> usize {
    let channel = channel_of(key);
    slack
        .messages()
        .iter()
        .filter(|m| m.channel == channel && m.thread_ts.is_none())
        .count()
}

fn workdir(cfg: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::write(path.join("erlmcp-bot.toml"), cfg).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_requests_and_post_each_incident_update_once() {
    let Some(db) = testdb::fresh_postgres_url("scale_out_two_replicas").await else {
        return;
    };
    let slack = FakeSlack::start().await;
    let (_tmp, dir) = workdir(&config(&slack, "http", ""));
    let mut a = Serve::start("a", &dir, &db, &[]).ready().await;
    let mut b = Serve::start("b", &dir, &db, &[]).ready().await;
    let http = reqwest::Client::new();

    // A load balancer's round robin: even requests to A, odd ones to B.
    const N: usize = 12;
    for i in 0..N {
        let port = if i % 2 == 0 { a.port } else { b.port };
        let key = format!("spread-{i:03}");
        let status = slash(
            &http,
            &slack,
            port,
            &format!("restart development {key}"),
            &key,
        )
        .await;
        assert_eq!(status, Ok(200), "request {i}");
    }
    slack
        .wait_for(WAIT, "an answer to every request", |s| {
            (0..N)
                .all(|i| answers(s, &format!("spread-{i:03}")) >= 1)
                .then_some(())
        })
        .await;
    let deadline = Instant::now() + WAIT;
    let rows = loop {
        let rows = audit(&dir, &db);
        if (0..N).all(|i| rows_with(&rows, "executed", &format!("spread-{i:03}")) >= 1)
            || Instant::now() > deadline
        {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for i in 0..N {
        let key = format!("spread-{i:03}");
        assert_eq!(answers(&slack, &key), 1, "{key} answered once");
        assert_eq!(rows_with(&rows, "executing", &key), 1, "{key} run once");
        assert_eq!(rows_with(&rows, "executed", &key), 1, "{key} done once");
    }
    // Each replica's metrics: its share of acknowledgements and of the calls to Slack.
    for s in [&a, &b] {
        let m = metrics(s.probes).await;
        let acks = sample(
            &m,
            "erlmcp_bot_ack_duration_seconds_count{platform=\"slack\"}",
        );
        assert!(acks >= (N / 2) as f64, "{}: {acks} acks\n{m}", s.name);
        let calls = sample(
            &m,
            "erlmcp_bot_api_calls_total{platform=\"slack\",status=\"ok\"}",
        );
        assert!(
            calls >= (N / 2) as f64,
            "{}: {calls} Slack calls\n{m}",
            s.name
        );
        let commands = sample(
            &m,
            "erlmcp_bot_commands_total{platform=\"slack\",command=\"restart\",outcome=\"ok\"}",
        );
        assert_eq!(commands, (N / 2) as f64, "{}\n{m}", s.name);
    }
    let handled = |s: &mut Serve| s.logged("command handled").len();
    let (ha, hb) = (handled(&mut a), handled(&mut b));
    assert_eq!((ha, hb), (N / 2, N / 2), "each replica handled its half");

    // An incident on A; its status updates come from whichever replica claims them.
    let status = slash(
        &http,
        &slack,
        a.port,
        "incident declare P2 checkout latency",
        "incident",
    )
    .await;
    assert_eq!(status, Ok(200));
    slack
        .wait_for(WAIT, "the incident's channel", |s| {
            s.calls_to("conversations.create").first().cloned()
        })
        .await;
    let updates = |s: &FakeSlack| {
        s.messages()
            .iter()
            .filter(|m| m.text.contains("status update —"))
            .count()
    };
    assert_eq!(updates(&slack), 0);
    // The clock sped up: each pass moves the update's due time back one whole interval, as
    // if 15 minutes had gone by. Both replicas tick every 5 s and race for the job.
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    const PERIODS: usize = 4;
    for period in 1..=PERIODS {
        // Once the replica that posted the last update has released the job with its next
        // due time.
        let deadline = Instant::now() + WAIT;
        loop {
            let moved = sqlx::query(
                "UPDATE scheduled_jobs SET due_at = due_at - 900000 \
                 WHERE kind = 'incident_update' AND lease_owner IS NULL",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            if moved.rows_affected() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the update job stays leased");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slack
            .wait_for(WAIT, &format!("status update {period}"), |s| {
                (updates(s) >= period).then_some(())
            })
            .await;
    }
    // Two more ticks of each replica: nothing more is due, nothing is posted twice.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(updates(&slack), PERIODS, "one update per period");
    a.terminate().await;
    b.terminate().await;
    conn.close().await.unwrap();
    testdb::drop_postgres_database(&db).await;
}

/// The leader is SIGKILLed; the other replica takes the Socket Mode connection over within
/// the lease, and the Lease names it. Then that one is stopped with SIGTERM and hands over
/// to a third at once.
async fn leader_killed(backend: &str, db: &str) {
    const LEASE_SECS: u64 = 3;
    let slack = FakeSlack::start().await;
    let socket = FakeSocketMode::start(&slack).await;
    let kube = FakeKubeServer::start().await;
    let leader = format!(
        "\n[leader]\nelection = \"{backend}\"\nlease_duration = \"{LEASE_SECS}s\"\n\
         lease_namespace = \"erlmcp-bot\"\n\n[kubernetes]\napi_url = \"{}\"\n",
        kube.url
    );
    let (_tmp, dir) = workdir(&config(&slack, "socket", &leader));
    let mut a = Serve::start("a", &dir, db, &[]).ready().await;
    let acquired = a.wait_for("leadership acquired", WAIT).await;
    assert_eq!(acquired["identity"], "replica-a");
    a.wait_for("slack socket mode: connected", WAIT).await;
    let mut b = Serve::start("b", &dir, db, &[]).ready().await;
    let running = b.wait_for("leader election running", WAIT).await;
    assert_eq!(running["leader"], false, "{running}");
    if backend == "kubernetes" {
        assert_eq!(
            kube.lease_holder("erlmcp-bot", "erlmcp-bot").as_deref(),
            Some("replica-a")
        );
    }
    // A follower does not dial Slack.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS)).await;
    assert_eq!(socket.connections(), 1);
    assert!(b.logged("leadership acquired").is_empty(), "{}", b.logs());

    a.signal("-KILL");
    let killed = Instant::now();
    assert_eq!(a.exit().await.code(), None, "killed by the signal");
    let took_over = b.wait_for("leadership acquired", WAIT).await;
    let elected = killed.elapsed();
    assert_eq!(took_over["identity"], "replica-b");
    slack
        .wait_for(WAIT, "the new leader's Socket Mode connection", |_| {
            (socket.connections() == 2).then_some(())
        })
        .await;
    let connected = killed.elapsed();
    println!(
        "{backend}: leader killed; new leader elected after {elected:?}, Socket Mode \
         reconnected after {connected:?} (lease {LEASE_SECS}s)"
    );
    // The bound leaves room for a loaded machine; the figure above is the measurement.
    assert!(
        elected < Duration::from_secs(LEASE_SECS * 5),
        "elected after {elected:?}"
    );
    let m = metrics(b.probes).await;
    let leader = format!(
        "erlmcp_bot_leader{{backend=\"{}\"}}",
        if backend == "kubernetes" {
            "kubernetes-lease"
        } else {
            "postgres"
        }
    );
    assert_eq!(sample(&m, &leader), 1.0, "{m}");
    if backend == "kubernetes" {
        let calls = sample(
            &m,
            "erlmcp_bot_api_calls_total{platform=\"kubernetes\",status=\"ok\"}",
        );
        assert!(calls > 0.0, "the Lease calls are counted:\n{m}");
        assert_eq!(
            kube.lease_holder("erlmcp-bot", "erlmcp-bot").as_deref(),
            Some("replica-b"),
            "the Lease names the new holder"
        );
        let transitions = kube
            .get("leases", "erlmcp-bot", "erlmcp-bot")
            .and_then(|l| l.pointer("/spec/leaseTransitions").and_then(Value::as_i64));
        assert_eq!(transitions, Some(1));
    }
    // An envelope reaches the new leader and is acknowledged.
    let envelope: Value = serde_json::json!({
        "envelope_id": "after-handover",
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": serde_urlencoded::from_str::<std::collections::BTreeMap<String, String>>(
            &slash_body("whoami", "C0SOCKET", &slack.response_url("socket"), "trigger-socket")
        ).unwrap(),
    });
    socket.send(&envelope);
    slack
        .wait_for(WAIT, "the envelope's acknowledgement", |_| {
            socket
                .received()
                .iter()
                .any(|f| f["envelope_id"] == "after-handover")
                .then_some(())
        })
        .await;

    // A leader that shuts down hands over at once, not after its lease.
    let mut c = Serve::start("c", &dir, db, &[]).ready().await;
    let running = c.wait_for("leader election running", WAIT).await;
    assert_eq!(running["leader"], false, "{running}");
    let term = Instant::now();
    b.terminate().await;
    b.logged("leadership released")
        .pop()
        .unwrap_or_else(|| panic!("b released leadership:\n{}", b.logs()));
    let took_over = c.wait_for("leadership acquired", WAIT).await;
    let handed = term.elapsed();
    assert_eq!(took_over["identity"], "replica-c");
    slack
        .wait_for(WAIT, "the third leader's Socket Mode connection", |_| {
            (socket.connections() == 3).then_some(())
        })
        .await;
    println!("{backend}: leader stopped with SIGTERM; next leader elected after {handed:?}");
    if backend == "kubernetes" {
        assert_eq!(
            kube.lease_holder("erlmcp-bot", "erlmcp-bot").as_deref(),
            Some("replica-c")
        );
    }
    c.terminate().await;
    if backend == "kubernetes" {
        assert_eq!(
            kube.lease_holder("erlmcp-bot", "erlmcp-bot"),
            None,
            "released on SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_lease_holder_hands_socket_mode_over() {
    let Some(db) = testdb::fresh_postgres_url("scale_out_leader_killed_lease").await else {
        return;
    };
    leader_killed("kubernetes", &db).await;
    testdb::drop_postgres_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_advisory_lock_holder_hands_socket_mode_over() {
    let Some(db) = testdb::fresh_postgres_url("scale_out_leader_killed_advisory").await else {
        return;
    };
    leader_killed("postgres", &db).await;
    testdb::drop_postgres_database(&db).await;
}

/// Where the load balancer sends: the replicas whose `/readyz` said 200 last time it was
/// asked, in turn.
#[derive(Default)]
struct Endpoints {
    ready: Vec<(u16, u16)>,
    next: usize,
    /// Why each endpoint was taken out.
    removed: Vec<(u16, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_loses_no_command_and_runs_none_twice() {
    let Some(db) = testdb::fresh_postgres_url("scale_out_rolling_restart").await else {
        return;
    };
    let slack = FakeSlack::start().await;
    let (_tmp, dir) = workdir(&config(&slack, "http", ""));
    let delay = [("ERLMCP_BOT__SHUTDOWN_DELAY", "2s")];
    let mut old = Serve::start("old", &dir, &db, &delay).ready().await;
    let http = reqwest::Client::new();
    let endpoints = Arc::new(Mutex::new(Endpoints {
        ready: vec![(old.port, old.probes)],
        ..Endpoints::default()
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The endpoints controller: probes every ready endpoint and takes out one that says it
    // is not ready (or does not answer) three times running, as kubelet (failureThreshold
    // 3) and the Service do.
    let controller = {
        let (endpoints, stop, http) = (endpoints.clone(), stop.clone(), http.clone());
        tokio::spawn(async move {
            let mut failures: std::collections::HashMap<u16, u32> = Default::default();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let current = endpoints.lock().unwrap().ready.clone();
                for (port, probes) in current {
                    let why = match readyz(&http, probes).await {
                        Ok((200, _)) => {
                            failures.remove(&port);
                            continue;
                        }
                        Ok((code, text)) => format!("{code} {}", text.trim()),
                        Err(e) => e,
                    };
                    let failed = failures.entry(port).or_default();
                    *failed += 1;
                    if *failed >= 3 {
                        let mut e = endpoints.lock().unwrap();
                        e.ready.retain(|(p, _)| *p != port);
                        e.removed.push((port, why));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // A steady stream of commands through the load balancer.
    let sender = {
        let (endpoints, stop, http, slack) =
            (endpoints.clone(), stop.clone(), http.clone(), slack.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let port = {
                    let mut e = endpoints.lock().unwrap();
                    let n = e.ready.len();
                    assert!(n > 0, "no endpoint left");
                    e.next += 1;
                    e.ready[e.next % n].0
                };
                let key = format!("roll-{i:04}");
                let at = Instant::now();
                let status = slash(
                    &http,
                    &slack,
                    port,
                    &format!("restart development {key}"),
                    &key,
                )
                .await;
                sent.push((key, port, status, at));
                i += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            sent
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    // The rolling update: a new replica first, ready before the old one is told to go.
    let mut new = Serve::start("new", &dir, &db, &delay).ready().await;
    let deadline = Instant::now() + WAIT;
    while readyz(&http, new.probes).await.map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "the new replica never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    endpoints.lock().unwrap().ready.push((new.port, new.probes));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let term = Instant::now();
    old.terminate().await;
    let old_took = term.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.await.unwrap();
    controller.await.unwrap();

    let removed = endpoints.lock().unwrap().removed.clone();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].0, old.port);
    assert_eq!(
        removed[0].1, "503 not ready: shutting down",
        "taken out because it said so, while it still answered"
    );
    for (key, port, status, _) in &sent {
        assert_eq!(*status, Ok(200), "{key} sent to {port}");
    }
    let to_old = sent.iter().filter(|(_, p, ..)| *p == old.port).count();
    let after_term = sent
        .iter()
        .filter(|(_, p, _, at)| *p == old.port && *at > term)
        .count();
    let to_new = sent.len() - to_old;
    assert!(to_old > 0 && to_new > 0, "old {to_old}, new {to_new}");

    slack
        .wait_for(WAIT, "an answer to every command", |s| {
            sent.iter().all(|(k, ..)| answers(s, k) >= 1).then_some(())
        })
        .await;
    let deadline = Instant::now() + WAIT;
    let rows = loop {
        let rows = audit(&dir, &db);
        let done = sent
            .iter()
            .all(|(k, ..)| rows_with(&rows, "executed", k) >= 1);
        if done || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (key, port, ..) in &sent {
        assert_eq!(answers(&slack, key), 1, "{key} (to {port}) answered once");
        assert_eq!(rows_with(&rows, "executing", key), 1, "{key} run once");
        assert_eq!(rows_with(&rows, "executed", key), 1, "{key} done once");
    }
    println!(
        "rolling restart: {} commands ({to_old} to the old replica, {after_term} of them after \
         its SIGTERM; {to_new} to the new), \
         old replica gone {old_took:?} after SIGTERM",
        sent.len()
    );
    let verify = run_env(
        &dir,
        &["audit", "verify"],
        &[("ERLMCP_BOT__DATABASE_URL", &db)],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    new.terminate().await;
    testdb::drop_postgres_database(&db).await;
}
