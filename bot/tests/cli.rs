//! The binary as a newcomer uses it: `exec` on the embedded default with its exit codes,
//! `audit verify` noticing an edit, `audit export`, `check-config`, and `serve` starting,
//! answering and stopping on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, free_port, run, run_env, stdout};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn exec_walks_the_flow_with_exit_codes() {
    let dir = scratch();
    let d = dir.path();

    let o = run(d, &["exec", "--as", "dave", "deploy staging v3.0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("staging runs v3.0.1"), "{}", stdout(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("3 of 3 available"),
        "progress on stderr"
    );

    let o = run(d, &["exec", "--as", "alice", "/erlmcp deploy prod v3.0.1"]);
    assert_eq!(o.status.code(), Some(1), "refused: {}", stdout(&o));
    assert!(stdout(&o).contains("soak"), "{}", stdout(&o));

    let o = run(d, &["exec", "--as", "alice", "deploy", "prod", "v3.0.0"]);
    assert_eq!(o.status.code(), Some(0), "accepted: {}", stdout(&o));
    assert!(stdout(&o).contains("R-2"), "{}", stdout(&o));

    let o = run(d, &["exec", "--as", "bob", "approve R-2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("production runs v3.0.0"),
        "{}",
        stdout(&o)
    );

    let o = run(d, &["exec", "--as", "dave", "deploi staging v1"]);
    assert_eq!(o.status.code(), Some(2), "usage error: {}", stdout(&o));
    assert!(stdout(&o).contains("\"deploi\""), "{}", stdout(&o));

    let o = run(d, &["exec", "--as", "erin", "whoami"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Roles: none"), "{}", stdout(&o));

    // The audit log verifies, exports, and notices an edit made behind the bot's back.
    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(d, &["audit", "export", "--format", "jsonl"]);
    assert_eq!(o.status.code(), Some(0));
    let lines = stdout(&o).lines().count();
    assert!(lines >= 5, "{lines}");
    let o = run(d, &["audit", "export", "--format", "csv"]);
    assert_eq!(
        stdout(&o).lines().next().unwrap().split(',').next(),
        Some("seq")
    );

    tamper(&d.join("erlmcp-bot.db"));
    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("row 2"),
        "names the edited row: {}",
        stdout(&o)
    );
}

fn tamper(db: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2")
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

#[test]
fn check_config_lists_every_problem_with_its_path() {
    let dir = scratch();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[environments.production]
target = "kubernetes"

[roles]
change-board = ["local:bob"]

[[rules]]
operation = "deploy"
environments = ["production", "qa"]
roles = ["change-board", "wizard"]
approvals = { count = 2, from = ["change-board"] }
"#,
    )
    .unwrap();
    let o = run(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for path in [
        "environments.production.namespace",
        "environments.production.workload",
        "rules[0].environments[1]",
        "rules[0].roles[1]",
        "rules[0].approvals.count",
    ] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }

    let o = run(dir.path(), &["check-config"]);
    assert_eq!(o.status.code(), Some(0), "the embedded default is valid");
}

#[test]
fn check_config_names_people_mistakes_with_their_paths() {
    let dir = scratch();
    let file = dir.path().join("people.toml");
    std::fs::write(
        &file,
        r#"
[environments.production]
target = "sandbox"

[people]
alice = ["slack:U0ALICE", "local:alice"]
bob = ["slack:U0ALICE", "slack-group:S0CAB", "irc:bob"]

[roles]
change-board = ["alice", "bob"]
"#,
    )
    .unwrap();
    let o = run(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for line in [
        "people.bob[0]: identity \"slack:U0ALICE\" is already claimed by person \"alice\"",
        "people.bob[1]: identity \"slack-group:S0CAB\" must be PLATFORM:ID",
        "people.bob[2]: identity \"irc:bob\" must be PLATFORM:ID",
    ] {
        assert!(err.contains(line), "missing {line} in:\n{err}");
    }
    assert!(
        !err.contains("roles."),
        "people are valid role members:\n{err}"
    );
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let dir = scratch();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("ERLMCP_BOT__LISTEN", format!("127.0.0.1:{port}"))
        .env("ERLMCP_BOT__LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let h = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(h.status().is_success());
        let m = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("erlmcp_bot_command_duration_seconds"), "{m}");
        assert!(m.contains("erlmcp_bot_audit_write_failures_total 0"), "{m}");
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "clean exit on SIGTERM");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("erlmcp-bot ready"), "{logs}");
    assert!(logs.contains("\"level\":\"INFO\""), "json logs: {logs}");
}

/// A SIGTERM sent the moment `serve` says it is ready (as an orchestrator or a script may)
/// still drains and exits cleanly, instead of killing the process with the default action.
#[test]
fn sigterm_right_after_ready_still_shuts_down_cleanly() {
    use std::io::{BufRead, BufReader};
    let dir = scratch();
    for _ in 0..3 {
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .env("ERLMCP_BOT__LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let ready = line.contains("erlmcp-bot ready");
            seen.push(line);
            if ready {
                break;
            }
        }
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
        assert!(
            seen.iter().any(|l| l.contains("erlmcp-bot stopped")),
            "{}",
            seen.join("\n")
        );
    }
}

/// `bot.metrics_listen`: the probes and metrics answer there and nowhere else, and SIGTERM
/// still stops both listeners cleanly.
#[test]
fn metrics_listen_serves_probes_apart() {
    let dir = scratch();
    let (chat, probes) = (free_port(), free_port());
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("ERLMCP_BOT__LISTEN", format!("127.0.0.1:{chat}"))
        .env("ERLMCP_BOT__METRICS_LISTEN", format!("127.0.0.1:{probes}"))
        .env("ERLMCP_BOT__HTTP_HEADER_TIMEOUT", "5s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("http://127.0.0.1:{probes}/readyz"))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for path in ["/metrics", "/healthz", "/readyz"] {
            let on_probes = client
                .get(format!("http://127.0.0.1:{probes}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(on_probes.status().as_u16(), 200, "{path}");
            let on_chat = client
                .get(format!("http://127.0.0.1:{chat}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(on_chat.status().as_u16(), 404, "{path} on bot.listen");
        }
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "clean exit on SIGTERM: {logs}");
}

#[test]
fn check_config_names_a_bad_http_setting() {
    let dir = scratch();
    let o = Command::new(BIN)
        .arg("check-config")
        .current_dir(dir.path())
        .env("ERLMCP_BOT__HTTP_MAX_CONNECTIONS", "0")
        .env("ERLMCP_BOT__METRICS_LISTEN", "localhost")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bot.http_max_connections: must be between"),
        "{err}"
    );
    assert!(
        err.contains("bot.metrics_listen: not a socket address"),
        "{err}"
    );
}

#[test]
fn environment_variables_override_the_configuration() {
    let dir = scratch();
    let o = Command::new(BIN)
        .arg("check-config")
        .current_dir(dir.path())
        .env("ERLMCP_BOT__REQUEST_TTL", "30s")
        .env("ERLMCP_SLACK__ENABLED", "true")
        .env("ERLMCP_SLACK__SIGNING_SECRET", "s3cr3t-value")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bot.request_ttl: must be at least 1m"),
        "{err}"
    );
    assert!(
        err.contains("slack.bot_token: required when slack.enabled"),
        "{err}"
    );
    assert!(
        !err.contains("s3cr3t-value"),
        "secrets are never echoed: {err}"
    );
}

fn sql(db: &Path, statement: &'static str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    });
}

#[test]
fn audit_keygen_checkpoints_verify_export_and_prune() {
    let dir = scratch();
    let d = dir.path();

    let o = run(d, &["audit", "keygen"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("signing_key = \""), "{out}");
    assert!(lines[1].starts_with("public_key = \""), "{out}");
    let value = |line: &str| line.split('"').nth(1).unwrap().to_string();
    let (secret, public) = (value(lines[0]), value(lines[1]));
    assert_ne!(value(&stdout(&run(d, &["audit", "keygen"]))), secret);

    let env = [
        ("ERLMCP_AUDIT__SIGNING_KEY", secret.as_str()),
        ("ERLMCP_AUDIT__CHECKPOINT_FILE", "checkpoints.jsonl"),
    ];
    let o = run_env(d, &["exec", "--as", "dave", "deploy staging v3.0.1"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run_env(d, &["exec", "--as", "carol", "scale staging 4"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let file = std::fs::read_to_string(d.join("checkpoints.jsonl")).unwrap();
    assert_eq!(
        file.lines().count(),
        2,
        "one checkpoint per operation: {file}"
    );
    assert!(!file.contains(&secret));

    // The key as keygen printed it, whole line and all.
    let key_line = lines[1];
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify"];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    let o = verify(&[
        "--checkpoints",
        "checkpoints.jsonl",
        "--public-key",
        key_line,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("audit log ok"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("every signature valid"),
        "{}",
        stdout(&o)
    );
    let o = verify(&["--checkpoints", "checkpoints.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "a key is required");

    // An export carries the checkpoints and verifies with no database at all.
    let o = run(d, &["audit", "export"]);
    assert_eq!(o.status.code(), Some(0));
    let export = stdout(&o);
    assert_eq!(export.matches(r#""type":"checkpoint""#).count(), 2);
    std::fs::write(d.join("export.jsonl"), &export).unwrap();
    std::fs::rename(d.join("erlmcp-bot.db"), d.join("away.db")).unwrap();
    let o = verify(&["--file", "export.jsonl", "--public-key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!d.join("erlmcp-bot.db").exists(), "no database was opened");
    let altered = export.replacen("v3.0.1", "v3.0.2", 1);
    assert_ne!(altered, export);
    std::fs::write(d.join("altered.jsonl"), altered).unwrap();
    let o = verify(&["--file", "altered.jsonl", "--public-key", &public]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("BROKEN"), "{}", stdout(&o));
    std::fs::rename(d.join("away.db"), d.join("erlmcp-bot.db")).unwrap();

    // Pruning is an approved operation; the pruned log still verifies.
    let o = run_env(
        d,
        &["audit", "prune", "--before", "2999-01-01", "--as", "alice"],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let id = stdout(&o)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("R-"))
        .unwrap()
        .to_string();
    let o = run_env(d, &["exec", "--as", "bob", &format!("approve {id}")], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("pruned"), "{}", stdout(&o));
    let o = verify(&[
        "--checkpoints",
        "checkpoints.jsonl",
        "--public-key",
        &public,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("complete from row #"), "{}", stdout(&o));

    // The newest rows deleted behind the bot's back: the chain alone cannot tell, the
    // checkpoints can.
    sql(
        &d.join("erlmcp-bot.db"),
        "DELETE FROM audit_log WHERE seq > (SELECT MAX(seq) - 2 FROM audit_log)",
    );
    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = verify(&[
        "--checkpoints",
        "checkpoints.jsonl",
        "--public-key",
        &public,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("checkpoint on line"), "{}", stdout(&o));
}

#[test]
fn check_config_accepts_the_discord_example_and_names_discord_mistakes() {
    let dir = scratch();
    let example = include_str!("../../deploy/discord.example.toml");
    std::fs::write(dir.path().join("erlmcp-bot.toml"), example).unwrap();
    let o = run_env(
        dir.path(),
        &["check-config"],
        &[("ERLMCP_DISCORD__BOT_TOKEN", "discord-s3cr3t")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));

    let o = run_env(
        dir.path(),
        &["check-config"],
        &[
            ("ERLMCP_DISCORD__BOT_TOKEN", "discord-s3cr3t"),
            ("ERLMCP_DISCORD__PUBLIC_KEY", "not-hex"),
            ("ERLMCP_DISCORD__GUILD_ID", "my-server"),
            ("ERLMCP_DISCORD__MODE", "websocket"),
            ("ERLMCP_DISCORD__API_URL", "https://discord.com/api/v9"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    for path in [
        "discord.public_key: must be the application's public key",
        "discord.guild_id: must be a Discord id",
        "discord.mode: must be \"http\" or \"gateway\", got \"websocket\"",
        "discord.api_url: must be an http(s) URL ending in /api/v10",
    ] {
        assert!(err.contains(path), "{path} in {err}");
    }
    assert!(
        !err.contains("discord-s3cr3t"),
        "secrets are never echoed: {err}"
    );
}

#[test]
fn check_config_accepts_gateway_mode_without_a_public_key() {
    let dir = scratch();
    let example = include_str!("../../deploy/discord.example.toml");
    let gateway: String = example
        .lines()
        .filter(|l| !l.trim_start().starts_with("public_key"))
        .map(|l| {
            if l.trim_start().starts_with("mode") {
                "mode = \"gateway\"\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(gateway.contains("mode = \"gateway\""), "{gateway}");
    std::fs::write(dir.path().join("erlmcp-bot.toml"), &gateway).unwrap();
    let env = [("ERLMCP_DISCORD__BOT_TOKEN", "discord-s3cr3t")];
    let o = run_env(dir.path(), &["check-config"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));

    // HTTP mode still needs the key; gateway mode still needs the token.
    let http = gateway.replace("mode = \"gateway\"", "mode = \"http\"");
    std::fs::write(dir.path().join("erlmcp-bot.toml"), &http).unwrap();
    let o = run_env(dir.path(), &["check-config"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("discord.public_key: required in http mode"),
        "{}",
        common::stderr(&o)
    );
    std::fs::write(dir.path().join("erlmcp-bot.toml"), &gateway).unwrap();
    let o = run_env(dir.path(), &["check-config"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("discord.bot_token"));
}

#[test]
fn discord_register_needs_discord_enabled() {
    let dir = scratch();
    let o = run(dir.path(), &["discord", "register"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("discord.enabled"));
}
