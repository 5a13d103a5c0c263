//! Load on the Slack slash-command path: starts `erlmcp-bot serve` (the real binary) against
//! a fake Slack, sends signed slash commands at a fixed rate over loopback, and reports the
//! acknowledgement latency percentiles and the bot's peak resident memory.
//!
//! cargo build --release -p erlmcp-bot
//! cargo run -p erlmcp-tests --bin slack_load -- [--bot target/release/erlmcp-bot] [--rate 500] [--seconds 10]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use erlmcp_adapters::slack::sign;
use erlmcp_bot::config::EMBEDDED_DEFAULT;
use erlmcp_tests::fake_slack::FakeSlack;
use tokio::sync::mpsc;

const SECRET: &str = "load-test-signing-secret";

struct Args {
    bot: String,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        bot: "target/release/erlmcp-bot".into(),
        rate: 500,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--bot" => a.bot = v,
            "--rate" => a.rate = v.parse().expect("--rate N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config = EMBEDDED_DEFAULT
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "database_url = \"sqlite://erlmcp-bot.db\"",
            &format!(
                "database_url = \"sqlite://{}/bot.db\"",
                dir.path().display()
            ),
        )
        .replace(
            "engineer = [\"local:dave\"]",
            "engineer = [\"local:dave\", \"slack:U0LOAD\"]",
        )
        + &format!(
            "\n[slack]\nenabled = true\nbot_token = \"xoxb-load\"\nsigning_secret = \"{SECRET}\"\napi_url = \"{}\"\nmode = \"http\"\n",
            fake.api_url()
        );
    let config_path = dir.path().join("erlmcp-bot.toml");
    std::fs::write(&config_path, config)?;
    let mut child = tokio::process::Command::new(&args.bot)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().expect("bot pid");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        anyhow::ensure!(Instant::now() < ready_by, "the bot did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = status_kb(pid, "VmRSS:").unwrap_or(0);

    let total = args.rate * args.seconds;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, u16)>();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let url = Arc::new(format!("{base}/slack/commands"));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        ticker.tick().await;
        // Mostly reads answered through response_url; every 50th a deploy that writes the
        // audit log, runs on the sandbox and posts progress in its channel.
        let text = if i % 50 == 0 {
            format!("deploy development v9.{}.0", i / 50)
        } else if i % 2 == 0 {
            "status development".to_string()
        } else {
            "whoami".to_string()
        };
        let body = serde_urlencoded::to_string([
            ("token", "x"),
            ("team_id", "T111"),
            ("channel_id", &format!("C{}", i % 100)),
            ("user_id", "U0LOAD"),
            ("user_name", "load"),
            ("command", "/erlmcp"),
            ("text", &text),
            ("response_url", &fake.response_url(&format!("r{i}"))),
            ("trigger_id", "1.2.3"),
        ])?;
        let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
        tokio::spawn(async move {
            let ts = chrono::Utc::now().timestamp();
            let sig = sign(SECRET.as_bytes(), ts, body.as_bytes());
            let t0 = Instant::now();
            let status = match http
                .post(url.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("X-Slack-Request-Timestamp", ts.to_string())
                .header("X-Slack-Signature", sig)
                .body(body)
                .send()
                .await
            {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            let _ = tx.send((t0.elapsed(), status));
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failures = 0;
    while let Some((d, status)) = rx.recv().await {
        if status != 200 {
            failures += 1;
        }
        latencies.push(d);
    }
    let send_secs = started.elapsed().as_secs_f64();
    let rss_load = status_kb(pid, "VmRSS:").unwrap_or(0);
    // Let the replies drain, then read the peak.
    let expected_replies = total - total / 50;
    let drain_by = Instant::now() + Duration::from_secs(60);
    let mut replies = 0;
    while Instant::now() < drain_by {
        replies = fake.calls_to("response_url").len() as u64;
        if replies >= expected_replies {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_secs = started.elapsed().as_secs_f64();
    let hwm = status_kb(pid, "VmHWM:").unwrap_or(0);
    latencies.sort();
    println!(
        "requests      {} in {:.1} s ({:.0}/s offered), non-200: {failures}",
        latencies.len(),
        send_secs,
        total as f64 / send_secs
    );
    println!(
        "ack latency   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "replies       {replies} of {expected_replies} through response_url, all in by {drained_secs:.1} s"
    );
    println!(
        "bot memory    RSS idle {} MiB, under load {} MiB, peak (VmHWM) {} MiB",
        rss_idle / 1024,
        rss_load / 1024,
        hwm / 1024
    );
    child.kill().await?;
    Ok(())
}
