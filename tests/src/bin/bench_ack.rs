//! The ack path under load: signed Slack slash commands and signed Discord interactions sent
//! to `erlmcp-bot serve` (the real release binary) at fixed rates over loopback, on SQLite
//! and on PostgreSQL, one fresh bot and database per measured cell.
//!
//! Open loop: every request has a scheduled send time and goes out then, whether or not
//! earlier ones have been answered, over a pool of keep-alive HTTP/1.1 connections sized for
//! the rate. Latency is counted from the scheduled time, so a stall shows as the queue it
//! builds rather than as fewer requests sent. The generator is kept cheap because it shares
//! the cores with the bot: every request is built and signed before the clock starts, and
//! the client writes those bytes and reads the status line and body, nothing more.
//!
//! Output follows the shared benchmark contract: `BENCH\tsection\trow\tcolumn\tvalue` lines
//! on stdout, everything else on stderr.
//!
//! cargo build --release -p erlmcp-bot && cargo build --release -p erlmcp-tests --bins
//! target/release/bench_ack [--runs 3] [--quick] [--postgres URL] [--bot PATH]
//!     [--rates 100,500,2000] [--seconds 3] [--warmup 1] [--platforms slack,discord]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ed25519_dalek::{Signer, SigningKey};
use erlmcp_adapters::slack::sign;
use erlmcp_bot::config::EMBEDDED_DEFAULT;
use erlmcp_tests::fake_discord::{APPLICATION_ID, FakeDiscord, GUILD_ID};
use erlmcp_tests::fake_slack::FakeSlack;
use serde_json::json;
use sqlx::{Connection as _, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SLACK_SECRET: &str = "bench-signing-secret";
const SLACK_USER: &str = "U0BENCH";
/// Any fixed seed: the bench signs as "Discord" with it and configures its public key.
const DISCORD_SEED: [u8; 32] = [42; 32];
const DISCORD_USER: &str = "310000000000000077";
/// Past this the platform has given up on the request (Slack's and Discord's 3 seconds).
const DEADLINE: Duration = Duration::from_secs(3);
/// A request still unanswered this long is abandoned and counted as an error.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Every request of a deploy-heavy mix would be a long-running operation; one in this many is.
const MUTATING_EVERY: usize = 50;
/// Connections the generator opens at most (the bot serves 1,024 by default).
const MAX_CONNECTIONS: usize = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Slack,
    Discord,
}

impl Platform {
    fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Discord => "discord",
        }
    }

    fn section(self) -> &'static str {
        match self {
            Platform::Slack => "Ack path (Slack slash commands)",
            Platform::Discord => "Ack path (Discord interactions)",
        }
    }

    fn note(self) -> &'static str {
        match self {
            Platform::Slack => {
                "target: p99 < 10 ms at 2,000/s with no error. Open loop, latency from each request's scheduled send time; generator and fake Slack share the 2 cores with the bot. Mix: whoami and status (empty 200, answer through response_url), every 50th a deploy (audited; \"working on it\" in the ack)."
            }
            Platform::Discord => {
                "target: p99 < 10 ms at 2,000/s with no error. Same method as Slack. Mix: /erlmcp whoami and status answered in the response itself (so the ack includes running the read), every 50th a deploy (deferred, type 5)."
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

struct Args {
    bot: String,
    runs: usize,
    postgres: Option<String>,
    rates: Vec<u32>,
    measure: Duration,
    warmup: Duration,
    platforms: Vec<Platform>,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_ack [--runs N] [--quick] [--postgres URL] [--bot PATH] [--rates 100,500,2000] [--seconds S] [--warmup S] [--platforms slack,discord]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        bot: "target/release/erlmcp-bot".into(),
        runs: 3,
        postgres: None,
        rates: vec![100, 500, 2000],
        measure: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        platforms: vec![Platform::Slack, Platform::Discord],
    };
    let mut quick = false;
    let mut it = std::env::args().skip(1);
    let secs = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| usage())
    };
    while let Some(k) = it.next() {
        if k == "--quick" {
            quick = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--bot" => a.bot = v,
            "--runs" => a.runs = v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| usage()),
            "--postgres" => a.postgres = Some(v),
            "--rates" => {
                a.rates = v
                    .split(',')
                    .map(|r| r.trim().parse().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<u32>>>()
                    .unwrap_or_else(|| usage())
            }
            "--seconds" => a.measure = secs(&v),
            "--warmup" => a.warmup = secs(&v),
            "--platforms" => {
                a.platforms = v
                    .split(',')
                    .map(|p| match p.trim() {
                        "slack" => Some(Platform::Slack),
                        "discord" => Some(Platform::Discord),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    if quick {
        a.runs = 1;
        a.measure = Duration::from_secs(1);
        a.warmup = Duration::from_millis(250);
    }
    a
}

/// What one cell (platform × store × rate × run) measured.
struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
    lag_p99: Duration,
    bot_cpu: f64,
    bot_peak_rss_kib: u64,
    generator_cpu: f64,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn report(platform: Platform, backend: Backend, rate: u32, f: &Figures) {
    let row = format!("{} {rate}/s", backend.as_str());
    let section = platform.section();
    let line = |column: &str, value: String| {
        println!("BENCH\t{section}\t{row}\t{column}\t{value}");
    };
    line("p50 ms", ms(f.p50));
    line("p99 ms", ms(f.p99));
    line("max ms", ms(f.max));
    line("errors", f.errors.to_string());
    line("bot CPU %", format!("{:.0}", f.bot_cpu * 100.0));
    line(
        "bot peak RSS MiB",
        format!("{:.1}", f.bot_peak_rss_kib as f64 / 1024.0),
    );
    line(
        "generator+fakes CPU %",
        format!("{:.0}", f.generator_cpu * 100.0),
    );
    line("send lag p99 ms", ms(f.lag_p99));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args();
    anyhow::ensure!(
        std::path::Path::new(&args.bot).exists(),
        "no bot binary at {} (cargo build --release -p erlmcp-bot, or --bot PATH)",
        args.bot
    );
    let mut backends = vec![Backend::Sqlite];
    match &args.postgres {
        Some(_) => backends.push(Backend::Postgres),
        None => eprintln!("SKIPPED postgres (no --postgres URL)"),
    }
    for &platform in &args.platforms {
        println!("BENCHNOTE\t{}\t{}", platform.section(), platform.note());
    }
    for run in 1..=args.runs {
        for &platform in &args.platforms {
            for &backend in &backends {
                for &rate in &args.rates {
                    let f = run_cell(&args, platform, backend, rate)
                        .await
                        .with_context(|| {
                            format!(
                                "{} on {} at {rate}/s (run {run})",
                                platform.as_str(),
                                backend.as_str()
                            )
                        })?;
                    eprintln!(
                        "run {run} {} {} {rate}/s: p50 {} p99 {} max {} ms, {} errors, bot CPU {:.0} %, peak RSS {:.1} MiB, generator {:.0} %, send lag p99 {} ms",
                        platform.as_str(),
                        backend.as_str(),
                        ms(f.p50),
                        ms(f.p99),
                        ms(f.max),
                        f.errors,
                        f.bot_cpu * 100.0,
                        f.bot_peak_rss_kib as f64 / 1024.0,
                        f.generator_cpu * 100.0,
                        ms(f.lag_p99),
                    );
                    report(platform, backend, rate, &f);
                }
            }
        }
    }
    Ok(())
}

/// A PostgreSQL database made for one cell and dropped after it.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(admin: &str) -> anyhow::Result<PgDatabase> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "erlmcp_bench_ack_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .context("connecting to --postgres")?;
        // The name is made here from digits and underscores: nothing to inject.
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .context("creating the benchmark database")?;
        let _ = conn.close().await;
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (admin, None),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        let mut url = format!("{}/{name}", &base[..host_end]);
        if let Some(q) = query {
            url = format!("{url}?{q}");
        }
        Ok(PgDatabase {
            admin: admin.to_string(),
            name,
            url,
        })
    }

    async fn drop_it(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .await;
            let _ = conn.close().await;
        }
    }
}

/// The fakes a cell's bot talks to, and where its requests come from.
enum World {
    Slack(FakeSlack),
    Discord { fake: FakeDiscord, channel: String },
}

fn config(world: &World, port: u16, database_url: &str) -> String {
    let base = EMBEDDED_DEFAULT
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "database_url = \"sqlite://erlmcp-bot.db\"",
            &format!("database_url = \"{database_url}\""),
        );
    match world {
        World::Slack(fake) => {
            base.replace(
                "engineer = [\"local:dave\"]",
                &format!("engineer = [\"local:dave\", \"slack:{SLACK_USER}\"]"),
            ) + &format!(
                "\n[slack]\nenabled = true\nbot_token = \"xoxb-bench\"\nsigning_secret = \"{SLACK_SECRET}\"\napi_url = \"{}\"\nmode = \"http\"\nteam_id = \"T111\"\n",
                fake.api_url()
            )
        }
        World::Discord { fake, .. } => {
            let public_key = hex::encode(
                SigningKey::from_bytes(&DISCORD_SEED)
                    .verifying_key()
                    .to_bytes(),
            );
            base.replace(
                "engineer = [\"local:dave\"]",
                &format!("engineer = [\"local:dave\", \"discord:{DISCORD_USER}\"]"),
            ) + &format!(
                "\n[discord]\nenabled = true\nbot_token = \"bench-bot-token\"\napplication_id = \"{APPLICATION_ID}\"\npublic_key = \"{public_key}\"\nguild_id = \"{GUILD_ID}\"\napi_url = \"{}\"\nmode = \"http\"\n",
                fake.api_url()
            )
        }
    }
}

/// The command text of request `i`: mostly reads, now and then a deploy.
fn command(i: usize) -> Command {
    if i.is_multiple_of(MUTATING_EVERY) {
        Command::Deploy(i / MUTATING_EVERY)
    } else if i.is_multiple_of(2) {
        Command::Status
    } else {
        Command::Whoami
    }
}

enum Command {
    Whoami,
    Status,
    Deploy(usize),
}

/// Every request of a cell, ready to write: request line, headers, signed body.
fn prepare(world: &World, port: u16, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let ts = chrono::Utc::now().timestamp();
    let key = SigningKey::from_bytes(&DISCORD_SEED);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (path, content_type, body, signature_headers) = match world {
            World::Slack(fake) => {
                let text = match command(i) {
                    Command::Whoami => "whoami".to_string(),
                    Command::Status => "status development".to_string(),
                    Command::Deploy(k) => format!("deploy development v9.{k}.0"),
                };
                let body = serde_urlencoded::to_string([
                    ("token", "x"),
                    ("team_id", "T111"),
                    ("channel_id", &format!("C{}", i % 100)),
                    ("user_id", SLACK_USER),
                    ("user_name", "bench"),
                    ("command", "/erlmcp"),
                    ("text", &text),
                    ("response_url", &fake.response_url(&format!("r{i}"))),
                    // Unique per invocation, as Slack's are: a repeated one is a replay.
                    ("trigger_id", &format!("{i}.{ts}.bench")),
                ])?;
                let sig = sign(SLACK_SECRET.as_bytes(), ts, body.as_bytes());
                (
                    "/slack/commands",
                    "application/x-www-form-urlencoded",
                    body,
                    format!("X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n"),
                )
            }
            World::Discord { fake, channel } => {
                let sub = match command(i) {
                    Command::Whoami => json!({"name": "whoami", "type": 1, "options": []}),
                    Command::Status => json!({"name": "status", "type": 1, "options": [
                        {"name": "environment", "type": 3, "value": "development"}
                    ]}),
                    Command::Deploy(k) => json!({"name": "deploy", "type": 1, "options": [
                        {"name": "environment", "type": 3, "value": "development"},
                        {"name": "version", "type": 3, "value": format!("v9.{k}.0")},
                    ]}),
                };
                let id =
                    (1_300_000_000_000_000_000u64 + (ts as u64) * 100_000 + i as u64).to_string();
                let token = format!("bench-token-{id}");
                fake.issue_token(&token, channel);
                let body = json!({
                    "type": 2,
                    "id": id,
                    "application_id": APPLICATION_ID,
                    "token": token,
                    "version": 1,
                    "guild_id": GUILD_ID,
                    "channel_id": channel,
                    "member": {
                        "user": {"id": DISCORD_USER, "username": "bench", "discriminator": "0", "avatar": null, "global_name": null},
                        "roles": [],
                        "nick": null,
                        "permissions": "2147483647",
                        "joined_at": "2026-01-01T00:00:00.000000+00:00",
                        "deaf": false, "mute": false, "pending": false,
                    },
                    "locale": "en-US",
                    "data": {"id": "771825006014889984", "name": "erlmcp", "type": 1, "options": [sub]},
                })
                .to_string();
                let mut message = ts.to_string().into_bytes();
                message.extend_from_slice(body.as_bytes());
                let sig = hex::encode(key.sign(&message).to_bytes());
                (
                    "/discord/interactions",
                    "application/json",
                    body,
                    format!("X-Signature-Timestamp: {ts}\r\nX-Signature-Ed25519: {sig}\r\n"),
                )
            }
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{signature_headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        out.push(bytes);
    }
    Ok(out)
}

async fn run_cell(
    args: &Args,
    platform: Platform,
    backend: Backend,
    rate: u32,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let world = match platform {
        Platform::Slack => World::Slack(FakeSlack::start().await),
        Platform::Discord => {
            let fake = FakeDiscord::start().await;
            let channel = fake.add_channel("deploys");
            World::Discord { fake, channel }
        }
    };
    let pg = match (backend, &args.postgres) {
        (Backend::Postgres, Some(admin)) => Some(PgDatabase::create(admin).await?),
        _ => None,
    };
    let database_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/bot.db", dir.path().display()),
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config_path = dir.path().join("erlmcp-bot.toml");
    std::fs::write(&config_path, config(&world, port, &database_url))?;
    let log_path = dir.path().join("bot.log");
    // The bot's own default log level (info): what it costs in production is part of it.
    let mut child = tokio::process::Command::new(&args.bot)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.bot))?;
    let pid = child.id().context("the bot has no pid")?;
    let result = async {
        wait_ready(port, &mut child, &log_path).await?;
        let warm = (rate as f64 * args.warmup.as_secs_f64()).round() as usize;
        let measured = (rate as f64 * args.measure.as_secs_f64()).round() as usize;
        let requests = prepare(&world, port, warm + measured)?;
        load(port, rate, requests, warm, pid).await
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    if let Some(db) = pg {
        db.drop_it().await;
    }
    if result.is_err()
        && let Ok(log) = std::fs::read_to_string(&log_path)
    {
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("--- the bot's last log lines ---");
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
    result
}

async fn wait_ready(
    port: u16,
    child: &mut tokio::process::Child,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    let by = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        if http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the bot exited ({status}) before it was ready; its log is {}",
                log.display()
            );
        }
        if Instant::now() > by {
            bail!("the bot was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request's fate.
#[derive(Clone, Copy)]
struct Sample {
    index: usize,
    /// From its scheduled time to its first byte written.
    lag: Duration,
    /// From its scheduled time to the end of the answer.
    latency: Duration,
    /// 0: no answer (connection failed or gave up).
    status: u16,
}

struct Job {
    index: usize,
    due: Instant,
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after it are fixed.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on every Linux architecture /proc reports for.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Sends `requests` at `rate` per second, open loop, and measures those after the first
/// `warm`.
async fn load(
    port: u16,
    rate: u32,
    requests: Vec<Vec<u8>>,
    warm: usize,
    pid: u32,
) -> anyhow::Result<Figures> {
    let total = requests.len();
    let requests = Arc::new(requests);
    // Connected before the clock starts: enough for the rate when answers are quick. When
    // they are all busy another is opened, as Slack and Discord do, up to a cap below the
    // bot's `http_max_connections`; only past the cap do requests wait for a connection.
    let warm_pool = (rate as usize / 50).clamp(4, 64);
    let per_worker = total / warm_pool + 16;
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<usize>();
    let mut workers: Vec<mpsc::UnboundedSender<Job>> = Vec::new();
    let mut handles = Vec::new();
    let mut add_worker = |conn: KeepAlive, workers: &mut Vec<mpsc::UnboundedSender<Job>>| {
        let id = workers.len();
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        workers.push(tx);
        handles.push(tokio::spawn(worker(
            id,
            conn,
            rx,
            idle_tx.clone(),
            requests.clone(),
            per_worker,
        )));
        id
    };
    for _ in 0..warm_pool {
        let id = add_worker(KeepAlive::open(port).await?, &mut workers);
        idle_tx.send(id).ok();
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + interval * warm as u32;
    let pid_s = pid.to_string();
    let self_s = std::process::id().to_string();
    let mut cpu_at_start = None;
    for index in 0..total {
        let due = start + interval * index as u32;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if index == warm {
            cpu_at_start = Some((Instant::now(), cpu_seconds(&pid_s), cpu_seconds(&self_s)));
        }
        let id = match idle_rx.try_recv() {
            Ok(id) => id,
            Err(_) if workers.len() < MAX_CONNECTIONS => {
                add_worker(KeepAlive::unconnected(port), &mut workers)
            }
            Err(_) => idle_rx
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("every connection failed"))?,
        };
        workers[id]
            .send(Job { index, due })
            .map_err(|_| anyhow::anyhow!("connection {id} stopped"))?;
    }
    drop(workers);
    drop(idle_tx);
    let mut samples = Vec::with_capacity(total);
    for h in handles {
        samples.extend(h.await?);
    }
    let (t0, bot0, gen0) = cpu_at_start.unwrap_or((measure_from, 0.0, 0.0));
    let wall = t0.elapsed().as_secs_f64().max(1e-3);
    let bot_cpu = (cpu_seconds(&pid_s) - bot0) / wall;
    let generator_cpu = (cpu_seconds(&self_s) - gen0) / wall;
    let bot_peak_rss_kib = status_kib(pid, "VmHWM:");
    let measured: Vec<Sample> = samples.into_iter().filter(|s| s.index >= warm).collect();
    let errors = measured
        .iter()
        .filter(|s| !(200..300).contains(&s.status) || s.latency > DEADLINE)
        .count();
    let mut latencies: Vec<Duration> = measured.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let mut lags: Vec<Duration> = measured.iter().map(|s| s.lag).collect();
    lags.sort_unstable();
    Ok(Figures {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        errors,
        lag_p99: percentile(&lags, 0.99),
        bot_cpu,
        bot_peak_rss_kib,
        generator_cpu,
    })
}

async fn worker(
    id: usize,
    mut conn: KeepAlive,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    idle: mpsc::UnboundedSender<usize>,
    requests: Arc<Vec<Vec<u8>>>,
    expected: usize,
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(expected);
    while let Some(job) = jobs.recv().await {
        let lag = job.due.elapsed();
        let status =
            match tokio::time::timeout(GIVE_UP, conn.round_trip(&requests[job.index])).await {
                Ok(Ok(status)) => status,
                Ok(Err(_)) | Err(_) => {
                    conn.reset();
                    0
                }
            };
        samples.push(Sample {
            index: job.index,
            lag,
            latency: job.due.elapsed(),
            status,
        });
        if idle.send(id).is_err() {
            break;
        }
    }
    samples
}

/// One keep-alive HTTP/1.1 connection that writes prepared requests and reads the answers:
/// the status code, then exactly Content-Length bytes of body.
struct KeepAlive {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl KeepAlive {
    /// Connects on its first request.
    fn unconnected(port: u16) -> KeepAlive {
        KeepAlive {
            port,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn open(port: u16) -> anyhow::Result<KeepAlive> {
        let mut c = KeepAlive::unconnected(port);
        c.connect().await?;
        Ok(c)
    }

    async fn connect(&mut self) -> std::io::Result<&mut TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).await?;
        s.set_nodelay(true)?;
        Ok(self.stream.insert(s))
    }

    fn reset(&mut self) {
        self.stream = None;
    }

    async fn round_trip(&mut self, request: &[u8]) -> std::io::Result<u16> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let (Some(stream), buf) = (self.stream.as_mut(), &mut self.buf) else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        stream.write_all(request).await?;
        buf.clear();
        let head_end = loop {
            if let Some(at) = find(buf, b"\r\n\r\n") {
                break at + 4;
            }
            if stream.read_buf(buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = &buf[..head_end];
        let status = head
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let length = header(head, b"content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let close = header(head, b"connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        while buf.len() < head_end + length {
            if stream.read_buf(buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        if close {
            self.reset();
        }
        Ok(status)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lowercase) in a response head.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|b| *b == b'\n').find_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}
