//! `erlmcp-bot`: the daemon and its command line (DESIGN §6).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use erlmcp_adapters::discord::config::DiscordSection;
use erlmcp_adapters::target::Progress;
use erlmcp_bot::app::{self, App, BuildOptions};
use erlmcp_bot::clock::SystemClock;
use erlmcp_bot::config;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::leader::{self, Leadership};
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::store::{self, audit};
use erlmcp_bot::{checkpoint, server, telemetry};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "erlmcp-bot",
    version,
    about = "ChatOps for the erlmcp runbook: audited deploys, rollbacks and incidents from chat"
)]
struct Cli {
    /// Configuration file (default: ./erlmcp-bot.toml if present, else the embedded default).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Serve,
    /// Run one command through the whole pipeline as USER; the reply goes to stdout.
    Exec {
        /// Who is asking: a name from the configuration's roles (`alice` = `local:alice`).
        #[arg(long = "as", value_name = "USER")]
        user: String,
        /// The command, with or without the leading slash command.
        #[arg(value_name = "COMMAND", num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Validate the configuration and print every problem with its key path.
    CheckConfig,
    /// The local chat in a terminal: commands from stdin as USER, the bot's messages on
    /// stdout (`/as NAME` switches, `/join CHANNEL` moves, `/quit` leaves).
    Console {
        /// Who is speaking: a local name from the configuration (`alice`).
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
    /// Discord.
    Discord {
        #[command(subcommand)]
        command: DiscordCmd,
    },
}

#[derive(Subcommand)]
enum DiscordCmd {
    /// (Re)register the /erlmcp application command and print what was registered.
    Register {
        /// Register even when Discord already has the same command.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; exits non-zero and names the first broken row. With
    /// --checkpoints, also checks it against signed checkpoints kept outside the database;
    /// with --file, checks an export offline.
    Verify {
        /// A checkpoint file (`audit.checkpoint_file`) to check the database against.
        #[arg(long, value_name = "FILE", conflicts_with = "file")]
        checkpoints: Option<PathBuf>,
        /// An export (`audit export`, jsonl) to check on its own, without a database.
        #[arg(long, value_name = "EXPORT")]
        file: Option<PathBuf>,
        /// The checkpoint public key as `audit keygen` printed it (default: audit.public_key).
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Write every audit entry to stdout; jsonl also carries the stored checkpoints.
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Print a new checkpoint key pair as two TOML lines for `[audit]`.
    Keygen,
    /// Remove rows written before DATE, as the approved operation `audit prune`.
    Prune {
        /// `YYYY-MM-DD` or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        before: String,
        /// Who is asking, as for `exec`.
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
}

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load(cli.config.as_deref()) {
        Ok(l) => l,
        Err(problems) => {
            eprintln!(
                "erlmcp-bot: configuration {} has {} problem(s):",
                config::resolve_source(cli.config.as_deref()),
                problems.len()
            );
            for p in &problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Cmd::CheckConfig = cli.command {
        if let Err(e) = erlmcp_bot::engine::check_audit_keys(&loaded.config.audit) {
            eprintln!(
                "erlmcp-bot: configuration {} has 1 problem(s):\n  audit: {e}",
                loaded.source
            );
            return ExitCode::from(EXIT_USAGE);
        }
        println!(
            "configuration {} is valid: {} environment(s), {} role(s), {} rule(s)",
            loaded.source,
            loaded.config.environments.len(),
            loaded.config.roles.len(),
            loaded.config.rules.len()
        );
        return ExitCode::SUCCESS;
    }
    // One-shot commands print their answer; only warnings belong beside it.
    let level = if matches!(cli.command, Cmd::Serve) {
        "info"
    } else {
        "warn"
    };
    telemetry::init(&loaded.config.bot.log_format, level);
    // The console takes one line at a time: on a single thread, a command's task, its
    // answer and the printing hand over to each other without waking another thread.
    let mut builder = if matches!(cli.command, Cmd::Console { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("erlmcp-bot: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command, loaded))
}

async fn run(cmd: Cmd, loaded: config::Loaded) -> ExitCode {
    let url = loaded.config.bot.database_url.expose().to_string();
    match cmd {
        Cmd::CheckConfig => ExitCode::SUCCESS,
        Cmd::Migrate => match store::migrate_only(&url).await {
            Ok(()) => {
                println!("migrations applied to {}", store::redact_url(&url));
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("migrate failed: {e:#}")),
        },
        Cmd::Audit {
            command: AuditCmd::Keygen,
        } => match checkpoint::keygen() {
            Ok((secret, public)) => {
                println!("signing_key = \"{secret}\"");
                println!("public_key = \"{public}\"");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        },
        Cmd::Audit {
            command: AuditCmd::Prune { before, user },
        } => {
            let text = format!("audit prune --before {before}");
            exec(loaded, &url, &user, &text).await
        }
        Cmd::Audit {
            command:
                AuditCmd::Verify {
                    checkpoints: None,
                    file: Some(file),
                    public_key,
                },
        } => verify_export(&loaded.config, &file, public_key.as_deref()),
        Cmd::Audit { command } => {
            let limit = loaded.config.bot.database_timeout.0;
            let store = match store::open_store(&url, limit).await {
                Ok(s) => s,
                Err(e) => return fail(format!("{e:#}")),
            };
            match command {
                AuditCmd::Verify {
                    checkpoints: Some(file),
                    public_key,
                    ..
                } => {
                    verify_with_checkpoints(
                        &loaded.config,
                        store.as_ref(),
                        &file,
                        public_key.as_deref(),
                    )
                    .await
                }
                AuditCmd::Verify { .. } => match audit::verify(store.as_ref()).await {
                    Ok(r) if r.is_ok() => {
                        println!(
                            "audit log ok: {} rows, last #{} {}",
                            r.count, r.last_seq, r.last_hash
                        );
                        if r.first_seq > 1 {
                            println!(
                                "complete from row #{}: older rows were pruned (check the prune checkpoint's signature with --checkpoints)",
                                r.first_seq
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Ok(r) => {
                        let broken = r.broken.as_ref().map(|b| b.to_string()).unwrap_or_default();
                        println!("audit log BROKEN: {broken}");
                        ExitCode::from(EXIT_REFUSED)
                    }
                    Err(e) => fail(format!("audit verify failed: {e}")),
                },
                AuditCmd::Export { format } => {
                    let format: audit::ExportFormat = match format.parse() {
                        Ok(f) => f,
                        Err(e) => return fail(e),
                    };
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    match audit::export(store.as_ref(), format, &mut out).await {
                        Ok(n) => {
                            drop(out);
                            eprintln!("exported {n} audit rows");
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail(format!("audit export failed: {e:#}")),
                    }
                }
                AuditCmd::Keygen | AuditCmd::Prune { .. } => ExitCode::SUCCESS,
            }
        }
        Cmd::Exec { user, command } => exec(loaded, &url, &user, &command.join(" ")).await,
        Cmd::Console { user } => console(loaded, &url, user).await,
        Cmd::Discord {
            command: DiscordCmd::Register { force },
        } => discord_register(&loaded.config, force).await,
        Cmd::Serve => serve(loaded, &url).await,
    }
}

/// The key to check signatures with: `--public-key` (bare, or the `public_key = "…"` line
/// keygen printed), else `audit.public_key`.
fn public_key(
    cfg: &erlmcp_commands::config::Config,
    given: Option<&str>,
) -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
    let text = match given {
        Some(g) => {
            let g = g.trim();
            let g = g
                .strip_prefix("public_key")
                .map(|r| r.trim_start().trim_start_matches('='))
                .unwrap_or(g);
            g.trim().trim_matches('"').to_string()
        }
        None => match &cfg.audit.public_key {
            Some(k) => k.clone(),
            None => return Ok(None),
        },
    };
    checkpoint::parse_public_key(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn print_checkpoint_report(
    cfg: &erlmcp_commands::config::Config,
    report: &checkpoint::CheckpointReport,
    signed: bool,
) -> ExitCode {
    match &report.broken {
        None => {
            println!(
                "{}",
                checkpoint::summary(report, cfg.audit.checkpoint_every.as_chrono(), signed)
            );
            ExitCode::SUCCESS
        }
        Some(b) => {
            println!("audit log BROKEN: {b}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

async fn verify_with_checkpoints(
    cfg: &erlmcp_commands::config::Config,
    store: &dyn store::Store,
    file: &std::path::Path,
    key: Option<&str>,
) -> ExitCode {
    let key = match public_key(cfg, key) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!("erlmcp-bot: --checkpoints needs --public-key KEY (or audit.public_key)");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("erlmcp-bot: --public-key: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
    };
    let checkpoints = match checkpoint::read_checkpoints(&text) {
        Ok(c) => c,
        Err(e) => {
            println!("audit log BROKEN: checkpoint file {}: {e}", file.display());
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let mut verifier = checkpoint::CheckpointVerifier::new(checkpoints, Some(&key));
    if let Err(e) = audit::for_each_row(store, |row| verifier.feed(row)).await {
        return fail(format!("audit verify failed: {e}"));
    }
    print_checkpoint_report(cfg, &verifier.finish(), true)
}

/// An export checked on its own: its rows against each other and its checkpoint records.
fn verify_export(
    cfg: &erlmcp_commands::config::Config,
    file: &std::path::Path,
    key: Option<&str>,
) -> ExitCode {
    let key = match public_key(cfg, key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("erlmcp-bot: --public-key: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
    };
    let report = checkpoint::verify_export(&text, key.as_ref());
    print_checkpoint_report(cfg, &report, key.is_some())
}

fn fail(msg: String) -> ExitCode {
    eprintln!("erlmcp-bot: {msg}");
    ExitCode::FAILURE
}

/// Where the local chat runs when a command opens the app.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LocalChatIn {
    Nowhere,
    Page,
    Console,
}

async fn open_app(loaded: config::Loaded, url: &str, local: LocalChatIn) -> Result<App, ExitCode> {
    let store = store::open_store(url, loaded.config.bot.database_timeout.0)
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    app::build(
        loaded.config,
        store,
        Arc::new(SystemClock),
        BuildOptions {
            local_chat: local != LocalChatIn::Nowhere,
            local_chat_text_only: local == LocalChatIn::Console,
            ..BuildOptions::default()
        },
    )
    .await
    .map_err(|e| fail(format!("{e:#}")))
}

async fn console(loaded: config::Loaded, url: &str, user: String) -> ExitCode {
    let app = match open_app(loaded, url, LocalChatIn::Console).await {
        Ok(a) => Arc::new(a),
        Err(code) => return code,
    };
    let result =
        erlmcp_bot::console::run(app.clone(), user, erlmcp_bot::console::stdin_input()).await;
    let kept = app.engine.wait_unrecorded(KEPT_OUTCOMES_WAIT).await;
    if kept > 0 {
        eprintln!("erlmcp-bot: {}", unrecorded_at_exit(kept));
    }
    app.store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("erlmcp-bot: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// How long a process that is ending waits for the database to take the outcomes it kept
/// (one more try each at once, then the retries' own pace).
const KEPT_OUTCOMES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn unrecorded_at_exit(n: usize) -> String {
    format!(
        "stopping with {n} outcome(s) the database has not taken; their requests will be reconciled as interrupted by the next process to look"
    )
}

/// Progress lines go to stderr so stdout holds only the reply.
struct StderrProgress;
impl Progress for StderrProgress {
    fn report(&self, line: String) {
        eprintln!("… {line}");
    }
}

async fn exec(loaded: config::Loaded, url: &str, user: &str, text: &str) -> ExitCode {
    let app = match open_app(loaded, url, LocalChatIn::Nowhere).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    let (platform, id) = match user.split_once(':') {
        Some((p, i)) => (p.to_string(), i.to_string()),
        None => ("local".to_string(), user.to_string()),
    };
    // `exec` carries operations out against the same database as `serve`: it is an owner
    // like any other, so a killed `exec` is noticed and reconciled.
    let ownership = app.engine.start_ownership().await;
    let actor = app.engine.actor(&platform, &id, &id, &[]);
    let reply = app
        .engine
        .handle(Invocation {
            actor,
            channel: "local:cli".into(),
            text: text.to_string(),
            progress: Arc::new(StderrProgress),
        })
        .await;
    println!("{}", reply.text());
    let kept = app.engine.wait_unrecorded(KEPT_OUTCOMES_WAIT).await;
    if kept > 0 {
        eprintln!("erlmcp-bot: {}", unrecorded_at_exit(kept));
    }
    // The process ends here: the checkpoint owed to an operation is written now.
    app.engine.flush_checkpoints().await;
    ownership.abort();
    app.store.close().await;
    ExitCode::from(reply.kind.exit_code() as u8)
}

async fn serve(loaded: config::Loaded, url: &str) -> ExitCode {
    let started = std::time::Instant::now();
    // Installed first: a SIGTERM that follows the "ready" line at once must still drain.
    let shutdown = shutdown_signal();
    let source = loaded.source.clone();
    let listen = loaded.config.bot.listen.clone();
    let metrics_listen = loaded.config.bot.metrics_listen.clone();
    let shutdown_delay = loaded.config.bot.shutdown_delay.0;
    let limits = server::HttpLimits::from_config(&loaded.config.bot);
    // Before the store opens, so a refused process has not migrated or reconciled anything.
    let _single = match store::lock_for_serve(url) {
        Ok(lock) => lock,
        Err(e) => return fail(format!("{e:#}")),
    };
    let page = erlmcp_bot::local::page_plan(&loaded.config);
    let local_chat = erlmcp_bot::local::enabled(&loaded.config);
    let local = if local_chat {
        LocalChatIn::Page
    } else {
        LocalChatIn::Nowhere
    };
    let app = match open_app(loaded, url, local).await {
        Ok(a) => Arc::new(a),
        Err(code) => return code,
    };
    // Every adapter's outbound calls and rate-limit waits land in this process's metrics.
    erlmcp_adapters::observe::install(app.metrics.clone());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {listen}: {e}")),
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    let probes = match &metrics_listen {
        None => None,
        Some(at) => match tokio::net::TcpListener::bind(at).await {
            Ok(l) => Some(l),
            Err(e) => return fail(format!("cannot listen on {at} (bot.metrics_listen): {e}")),
        },
    };
    let probes_addr = probes
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());
    // One leader among the replicas holds the long-lived connections.
    let leadership =
        match Leadership::start(&app.config, url, app.engine.owner(), app.metrics.clone()).await {
            Ok(l) => l,
            Err(e) => return fail(format!("{e:#}")),
        };
    info!(
        backend = leadership.backend().as_str(),
        identity = leadership.identity(),
        leader = leadership.is_leader(),
        "leader election running"
    );
    info!(
        %addr,
        metrics_addr = probes_addr.as_deref().unwrap_or(&addr),
        config = %source,
        database = %store::redact_url(url),
        ready_ms = started.elapsed().as_millis() as u64,
        "erlmcp-bot ready"
    );
    match &page {
        erlmcp_bot::local::PagePlan::Serve { token } => {
            let url = erlmcp_bot::local::page_url(&addr);
            info!(%url, token = *token, "local chat page (for local use)");
            println!("local chat: {url}");
        }
        erlmcp_bot::local::PagePlan::Refused(why) => warn!("{why}"),
        erlmcp_bot::local::PagePlan::Disabled => {}
    }
    // Set on SIGTERM: background work takes nothing new from then on.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let stopping_tx = Arc::new(stopping_tx);
    // One owner id per process, for job leases and executing requests alike.
    let scheduler = Scheduler::new(app.engine.clone(), app.engine.owner());
    // The recurring jobs and this process's heartbeat (then the reconciliation of requests
    // whose process died) side by side: the store commits their writes together, one sync
    // instead of one each before the listener serves.
    let (installed, ownership) = tokio::join!(scheduler.install(), app.engine.start_ownership());
    if let Err(e) = installed {
        warn!(error = %e, "could not install the recurring jobs; retrying on the next start");
    }
    info!(owner = scheduler.owner(), "scheduler running");
    info!(owner = app.engine.owner(), lease = ?app.engine.owner_lease(), "ownership heartbeat running");
    // Status updates and expiries live in the store; every replica ticks and the leases
    // decide who runs what.
    let sweeper = {
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            // The first pass comes one tick after start, like every later one: at start its
            // claims would hold the database's write lock just as the first readiness probe
            // needs it, and a job due now is still at most a tick late.
            let tick_every = erlmcp_bot::scheduler::TICK;
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A pass in progress finishes: a job stopped halfway would wait out its
                // lease before another replica took it.
                let stop = async {
                    let _ = stopping.wait_for(|s| *s).await;
                };
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop => return,
                };
                scheduler.tick().await;
            }
        })
    };
    // Socket Mode: the bot dials Slack instead of being called; same handlers as HTTP mode.
    // Only the leader holds it.
    let socket_mode = app
        .slack
        .as_ref()
        .filter(|s| s.mode() == erlmcp_adapters::slack::Mode::Socket)
        .map(|s| {
            let s = s.clone();
            leader::while_leader("slack socket mode", leadership.watch(), move || {
                s.start_socket_mode()
            })
        });
    // Discord's gateway, in gateway mode: the same handlers as the endpoint's; only the
    // leader holds the connection.
    let discord_gateway = app.discord_gateway.clone().map(|gateway| {
        let held = erlmcp_bot::discord::hold_gateway(gateway.clone(), leadership.watch());
        (gateway, held)
    });
    // Discord: the command is registered when this binary's differs from Discord's copy.
    if let Some(discord) = app.discord_client.clone() {
        let cfg = app.config.clone();
        tokio::spawn(async move {
            erlmcp_bot::discord::register_at_start(&cfg, &discord).await;
        });
    }
    // On shutdown the connection goes first, then leadership, so the next leader takes over
    // while this process still finishes its work.
    let handover = {
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _ = stopping.wait_for(|s| *s).await;
            if let Some(s) = socket_mode {
                s.abort();
                let _ = s.await;
            }
            if let Some((gateway, held)) = discord_gateway {
                // Closed cleanly first, so Discord does not wait for a dead connection's
                // heartbeats before the next leader's is the one it delivers to.
                gateway.close().await;
                held.abort();
                let _ = held.await;
            }
            leadership.release(std::time::Duration::from_secs(10)).await;
        })
    };
    // SIGTERM: not ready at once; chat requests are still taken for `bot.shutdown_delay`
    // while the load balancer notices; then the chat listener stops accepting and finishes
    // what is in flight. Probes stay up to the end.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    {
        let draining = app.draining.clone();
        let stopping_tx = stopping_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            stopping_tx.send_replace(true);
            if !shutdown_delay.is_zero() {
                info!(
                    delay_s = shutdown_delay.as_secs(),
                    "not ready; still taking chat requests until the load balancer notices"
                );
                tokio::time::sleep(shutdown_delay).await;
            }
            let _ = stop.send(true);
        });
    }
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let chat_routes = if probes.is_some() {
        server::Routes::Chat
    } else {
        server::Routes::All
    };
    let (stop_probes, probes_stopped) = tokio::sync::watch::channel(false);
    let probes = probes.map(|probes| {
        tokio::spawn(server::serve(
            probes,
            server::routes(app.clone(), server::Routes::Probes),
            limits,
            until_stopped(probes_stopped),
        ))
    });
    let result = server::serve(
        listener,
        server::routes(app.clone(), chat_routes),
        limits,
        until_stopped(stopped),
    )
    .await;
    // Also when the listener failed without a signal.
    app.draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    stopping_tx.send_replace(true);
    let _ = sweeper.await;
    let _ = handover.await;
    // Commands answered over chat keep running after their HTTP ack: let them finish (and
    // write their outcome to the audit log) before the process goes away.
    let left = app.engine.drain(std::time::Duration::from_secs(45)).await;
    if left > 0 {
        warn!(commands = left, "shutting down with commands still running");
    }
    let kept = app.engine.wait_unrecorded(KEPT_OUTCOMES_WAIT).await;
    if kept > 0 {
        warn!(outcomes = kept, "{}", unrecorded_at_exit(kept));
    }
    app.engine.flush_checkpoints().await;
    // Only now: a drained command is still ours while it finishes.
    ownership.abort();
    let _ = stop_probes.send(true);
    let result = match probes {
        Some(p) => match p.await {
            Ok(r) => result.and(r),
            Err(e) => result.and(Err(std::io::Error::other(e))),
        },
        None => result,
    };
    app.store.close().await;
    match result {
        Ok(()) => {
            info!("erlmcp-bot stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT. The handlers are registered when this is called, not when the future
/// is first polled, so a signal sent before the server loop waits on it is not lost (nor
/// does it kill the process with the default action).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = signals;
            tokio::select! {
                _ = recv_or_never(term.as_mut()) => {},
                _ = recv_or_never(int.as_mut()) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        info!("shutting down: finishing requests in flight");
    }
}

/// A signal that could not be registered never fires (the other one still does).
#[cfg(unix)]
async fn recv_or_never(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn discord_register(cfg: &erlmcp_commands::config::Config, force: bool) -> ExitCode {
    let section: DiscordSection = match erlmcp_bot::platforms::section(cfg) {
        Ok(s) => s,
        Err(problems) => {
            for p in problems {
                eprintln!("erlmcp-bot: {p}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !section.enabled {
        eprintln!("erlmcp-bot: discord.enabled is not set in the configuration");
        return ExitCode::from(EXIT_USAGE);
    }
    let platform = match erlmcp_bot::discord::platform(&section) {
        Ok(p) => p,
        Err(e) => return fail(format!("{e:#}")),
    };
    match erlmcp_bot::discord::register(cfg, &platform, force).await {
        Ok(registration) => {
            let name = erlmcp_adapters::discord::commands::command_name(&cfg.bot.command);
            let what = if registration.changed {
                "registered"
            } else {
                "already registered (unchanged)"
            };
            println!(
                "/{name} {what} ({}, {} subcommands):",
                registration.scope,
                registration.lines.len()
            );
            for line in &registration.lines {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("discord register failed: {e:#}")),
    }
}
