//! The engine: command → policy → approvals → execution on the environment's target →
//! outcome, with every step written to the audit log first. If the audit log cannot be
//! written, nothing is executed and the user is told why.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use erlmcp_adapters::guard::{self, GuardPolicy, GuardVerdict};
use futures::future::BoxFuture;

use erlmcp_adapters::chat::ChatPlatform;
use erlmcp_adapters::ci::CiStatusSource;
use erlmcp_adapters::target::{ExecContext, Progress, Target, TargetAction, TargetError};
use erlmcp_commands::approval::{self, Event, Phase, Rejection, RequestView, Transition, Vote};
use erlmcp_commands::config::Config;
use erlmcp_commands::grammar::{self, ParseContext};
use erlmcp_commands::policy::{
    self, Access, ApprovalRequirement, Decision, Facts, Operation, Policy, SoakFacts,
};
use erlmcp_commands::render::{self, ApprovalCard, Reply};
use erlmcp_commands::{Actor, Command, IncidentCommand, OperationKind, RequestId, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{Instrument, error, info, warn};

use crate::clock::Clock;
use crate::incidents::OperationNote;
use crate::metrics::{CommandLabels, Metrics, OperationLabels};
use crate::store::{
    DeploymentRecord, NewAuditEntry, NewRequest, NewVote, RequestRow, RequestState, Store,
    StoreError, VoteInsert, Who,
};

/// One inbound command.
pub struct Invocation {
    pub actor: Actor,
    /// `PLATFORM:CHANNEL_ID`, or `local:cli` for `exec`.
    pub channel: String,
    pub text: String,
    /// Where progress lines of a long operation go (a thread, stdout).
    pub progress: Arc<dyn Progress>,
}

/// Something chat adapters react to: an approval message to update in place.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    RequestChanged {
        card: ApprovalCard,
        message_ref: Option<String>,
    },
}

/// What is stored with a request about its approvals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredApproval {
    count: u32,
    from: Vec<String>,
    /// Preconditions that were met when it was requested, for the approvers.
    #[serde(default)]
    met: Vec<String>,
}

impl StoredApproval {
    fn requirement(&self) -> ApprovalRequirement {
        ApprovalRequirement {
            count: self.count,
            from: self.from.clone(),
        }
    }
}

pub struct Engine {
    cfg: Arc<Config>,
    policy: Policy,
    parse_ctx: ParseContext,
    store: Arc<dyn Store>,
    targets: HashMap<&'static str, Arc<dyn Target>>,
    ci: Arc<dyn CiStatusSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<EngineEvent>,
    chats: Vec<Arc<dyn ChatPlatform>>,
    /// Itself, for work that outlives a command (the post-deploy guard).
    me: Weak<Engine>,
    /// Made on first use: building a TLS client costs memory a bot that never probes
    /// anything should not pay.
    http: std::sync::OnceLock<reqwest::Client>,
    guard_sleep: GuardSleep,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Commands being handled right now, so a shutdown can let them finish.
    in_flight: AtomicU64,
    idle: tokio::sync::Notify,
    pub(crate) notifiers: crate::incidents::Notifiers,
}

/// How the post-deploy guard waits between checks; tests make it instant.
pub type GuardSleep = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

pub fn real_sleep() -> GuardSleep {
    Arc::new(|d| Box::pin(tokio::time::sleep(d)))
}

pub struct EngineParts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub targets: Vec<Arc<dyn Target>>,
    pub ci: Arc<dyn CiStatusSource>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The chat platforms configured (incident channels are opened on each).
    pub chats: Vec<Arc<dyn ChatPlatform>>,
    pub guard_sleep: GuardSleep,
}

static TRACE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A short id that ties together the log lines of one command.
fn trace_id() -> String {
    let n = TRACE_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}{:04x}", t, n & 0xffff)
}

pub(crate) fn who(actor: &Actor) -> Who {
    Who {
        platform: actor.platform.clone(),
        user_id: actor.user_id.clone(),
        display_name: actor.display_name.clone(),
    }
}

pub(crate) fn who_label(w: &Who) -> String {
    if w.display_name.is_empty() || w.display_name == w.user_id {
        format!("{}:{}", w.platform, w.user_id)
    } else {
        format!("{} ({}:{})", w.display_name, w.platform, w.user_id)
    }
}

fn phase(state: RequestState) -> Phase {
    match state {
        RequestState::Pending => Phase::Pending,
        RequestState::Executing => Phase::Executing,
        RequestState::Succeeded => Phase::Succeeded,
        RequestState::Failed => Phase::Failed,
        RequestState::Denied => Phase::Denied,
        RequestState::Cancelled => Phase::Cancelled,
        RequestState::Expired => Phase::Expired,
    }
}

fn audit_unavailable(e: &StoreError) -> Reply {
    Reply::failed(format!(
        "Not executed: the audit log is unavailable ({e}). Nothing was changed; try again when the database is back."
    ))
}

/// The target change a command asks for; `None` for commands that are not target changes.
fn target_action(cmd: &Command) -> Option<TargetAction> {
    match cmd {
        Command::Deploy {
            version, strategy, ..
        } => Some(TargetAction::Deploy {
            version: version.clone(),
            strategy: *strategy,
        }),
        Command::Rollback { version, .. } => Some(TargetAction::Rollback {
            version: version.clone(),
        }),
        Command::Scale { replicas, .. } => Some(TargetAction::Scale {
            replicas: *replicas,
        }),
        Command::Restart { .. } => Some(TargetAction::Restart),
        Command::Maintenance { on, .. } => Some(TargetAction::Maintenance { on: *on }),
        Command::Canary { action, .. } => Some(TargetAction::Canary { action: *action }),
        Command::Help { .. }
        | Command::Whoami
        | Command::Status { .. }
        | Command::Approve { .. }
        | Command::Deny { .. }
        | Command::Cancel { .. }
        | Command::Requests
        | Command::Pods { .. }
        | Command::Logs { .. }
        | Command::Incident(_)
        | Command::Audit { .. } => None,
    }
}

fn reason_of(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Deploy { reason, .. }
        | Command::Rollback { reason, .. }
        | Command::Scale { reason, .. }
        | Command::Restart { reason, .. }
        | Command::Maintenance { reason, .. } => reason.clone(),
        _ => None,
    }
}

/// The command as a canonical string for records: it parses back to the same command.
fn command_text(text: &str, prefix: &str) -> String {
    let t = text.trim();
    t.strip_prefix(prefix).unwrap_or(t).trim().to_string()
}

impl Engine {
    pub fn new(parts: EngineParts) -> Arc<Engine> {
        let policy = Policy::from_config(&parts.config);
        let parse_ctx = parts.config.parse_context();
        let (events, _) = broadcast::channel(256);
        let notifiers = crate::incidents::Notifiers::from_config(&parts.config);
        let http = std::sync::OnceLock::new();
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            http,
            guard_sleep: parts.guard_sleep,
            background: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
            targets: parts.targets.into_iter().map(|t| (t.kind(), t)).collect(),
            cfg: parts.config,
            policy,
            parse_ctx,
            store: parts.store,
            ci: parts.ci,
            clock: parts.clock,
            metrics: parts.metrics,
            events,
            chats: parts.chats,
            notifiers,
        })
    }

    /// The HTTP client for health probes, shared by the guard and the status updates.
    pub(crate) fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
    }

    /// On shutdown: waits until no command is being handled, at most `limit`. Returns how
    /// many were still running when it gave up.
    pub async fn drain(&self, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            let n = self.in_flight.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst);
            }
        }
    }

    /// Waits for background work (post-deploy guards) started so far.
    pub async fn wait_background(&self) {
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Posts a message in the channel a command came from (`PLATFORM:CHANNEL`), when that
    /// platform is connected; `local:*` channels have nobody to post to.
    pub async fn post_to(&self, channel: &str, reply: &Reply) {
        let Some((platform, id)) = channel.split_once(':') else {
            return;
        };
        if let Some(chat) = self.chats.iter().find(|c| c.platform() == platform)
            && let Err(e) = chat.post(id, reply).await
        {
            error!(error = %e, %channel, "could not post to chat");
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn chats(&self) -> &[Arc<dyn ChatPlatform>] {
        &self.chats
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Resolves roles for a platform identity and the groups it belongs to
    /// (`slack-group:S1`, `discord-role:3`).
    pub fn actor(
        &self,
        platform: &str,
        user_id: &str,
        display_name: &str,
        groups: &[String],
    ) -> Actor {
        let mut ids = vec![format!("{platform}:{user_id}")];
        ids.extend(groups.iter().cloned());
        Actor {
            platform: platform.to_string(),
            user_id: user_id.to_string(),
            display_name: display_name.to_string(),
            roles: self.cfg.roles_for(&ids),
        }
    }

    /// Handles one command end to end and returns the reply for the person who typed it.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        let started = std::time::Instant::now();
        let _in_flight = InFlight::enter(self);
        let span = tracing::info_span!(
            "command",
            platform = %inv.actor.platform,
            channel = %inv.channel,
            user = %inv.actor.user_id,
            command = tracing::field::Empty,
            request_id = %trace_id(),
        );
        let reply = async {
            let reply = match grammar::parse(&inv.text, &self.parse_ctx) {
                Err(e) => {
                    info!(error = %e.message, "command did not parse");
                    Reply::usage(e.render())
                }
                Ok(cmd) => {
                    tracing::Span::current().record("command", grammar::command_name(&cmd));
                    self.dispatch(&inv, cmd).await
                }
            };
            info!(outcome = ?reply.kind, "command handled");
            reply
        }
        .instrument(span)
        .await;
        self.metrics
            .commands
            .get_or_create(&CommandLabels {
                platform: inv.actor.platform.clone(),
                outcome: format!("{:?}", reply.kind).to_lowercase(),
            })
            .inc();
        self.metrics
            .command_seconds
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    async fn dispatch(&self, inv: &Invocation, cmd: Command) -> Reply {
        match policy::access(&cmd) {
            Access::Open => self.open_command(inv, &cmd),
            Access::AnyRole => {
                if inv.actor.roles.is_empty() {
                    return Reply::refused(render::refusal(&policy::Refusal::NoRole, self.now()));
                }
                self.read_command(inv, &cmd).await
            }
            Access::Vote(id) => match &cmd {
                Command::Approve { comment, .. } => self.vote(inv, id, true, comment.clone()).await,
                Command::Deny { reason, .. } => self.vote(inv, id, false, reason.clone()).await,
                _ => Reply::failed("internal error: vote access for a non-vote command"),
            },
            Access::Requester(id) => self.cancel(inv, id).await,
            Access::Rule(op) => self.operation(inv, cmd, op).await,
        }
    }

    fn open_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        match cmd {
            Command::Help { topic } => match grammar::help(topic.as_deref(), &self.parse_ctx) {
                Ok(text) => Reply::private(text),
                Err(e) => Reply::usage(e.render()),
            },
            _ => {
                let a = &inv.actor;
                let envs: Vec<String> = self.cfg.environments.keys().cloned().collect();
                let mut out = format!("You are {} ({}).", a.display_name, a.identity());
                if a.roles.is_empty() {
                    out.push_str("\nRoles: none. Ask an admin to add your id to a role.");
                } else {
                    out.push_str(&format!("\nRoles: {}", a.roles.join(", ")));
                    let caps = policy::capabilities(&self.policy, a, &envs);
                    if caps.is_empty() {
                        out.push_str("\nYou may read status, requests and incidents.");
                    } else {
                        out.push_str("\nYou may:");
                        for c in caps {
                            out.push_str(&format!("\n• {c}"));
                        }
                    }
                    let approver_of: Vec<String> = self
                        .policy
                        .rules
                        .iter()
                        .filter_map(|r| {
                            let a2 = r.approvals.as_ref()?;
                            a.has_any_role(&a2.from).then(|| {
                                let envs = if r.environments.is_empty() {
                                    "all environments".to_string()
                                } else {
                                    r.environments.join(", ")
                                };
                                format!("{} on {envs}", r.operation)
                            })
                        })
                        .collect();
                    if !approver_of.is_empty() {
                        out.push_str(&format!(
                            "\nYou can approve: {} (never your own requests).",
                            approver_of.join("; ")
                        ));
                    }
                }
                Reply::private(out)
            }
        }
    }

    async fn read_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        let result = match cmd {
            Command::Status { env } => self.status(env.as_ref().map(|e| e.as_str())).await,
            Command::Requests => self.requests(&inv.actor).await,
            Command::Incident(IncidentCommand::List) => self.incident_list().await,
            Command::Incident(IncidentCommand::Timeline { id }) => {
                self.incident_timeline(inv, *id).await
            }
            _ => return Reply::failed("internal error: not a read command"),
        };
        result.unwrap_or_else(|e| Reply::failed(format!("The database is unavailable: {e}")))
    }

    async fn status(&self, env: Option<&str>) -> Result<Reply, StoreError> {
        let envs: Vec<_> = match env {
            Some(e) => self.cfg.environment(e).into_iter().collect(),
            None => self.cfg.environments.values().collect(),
        };
        let mut parts = Vec::new();
        for e in envs {
            match self.target_for(e) {
                Ok(t) => match t.status(e).await {
                    Ok(s) => parts.push(render::status(&s)),
                    Err(err) => parts.push(format!("{}: status unavailable: {err}", e.name)),
                },
                Err(err) => parts.push(format!("{}: {err}", e.name)),
            }
        }
        Ok(Reply::private(parts.join("\n")))
    }

    async fn requests(&self, actor: &Actor) -> Result<Reply, StoreError> {
        let now = self.now();
        let pending = self.store.pending_requests().await?;
        let mut lines = Vec::new();
        for r in pending.iter().filter(|r| r.expires_at > now) {
            let stored: StoredApproval =
                serde_json::from_str(&r.approvals_json).unwrap_or_default();
            let requester = format!("{}:{}", r.requester.platform, r.requester.user_id);
            let can = if requester == actor.identity() {
                Some("yours: `cancel` to withdraw")
            } else if policy::may_vote(&stored.requirement(), &requester, actor).is_ok() {
                Some("you can approve or deny")
            } else {
                None
            };
            if let Some(can) = can {
                let votes = self.store.votes(r.id).await?;
                lines.push(format!(
                    "{} {} by {} — {} of {} approvals, expires in {} ({can})",
                    r.id,
                    r.command_text,
                    who_label(&r.requester),
                    votes.iter().filter(|v| v.approve).count(),
                    stored.count,
                    render::duration(r.expires_at - now)
                ));
            }
        }
        if lines.is_empty() {
            Ok(Reply::private("No pending requests you can act on."))
        } else {
            Ok(Reply::private(lines.join("\n")))
        }
    }

    pub(crate) fn target_for(
        &self,
        env: &erlmcp_commands::config::EnvironmentSpec,
    ) -> Result<&Arc<dyn Target>, String> {
        self.targets.get(env.target.as_str()).ok_or_else(|| {
            format!(
                "the {} target is not configured in this bot",
                env.target.as_str()
            )
        })
    }

    async fn gather_facts(&self, actor: &Actor, op: &Operation) -> Result<Facts, StoreError> {
        let needs = self.policy.needs(actor, op);
        let mut facts = Facts::default();
        if needs.incidents {
            facts.open_incident = self
                .store
                .open_incidents()
                .await?
                .iter()
                .map(|i| i.severity)
                .min();
        }
        if let (Some(from), Some(v)) = (&needs.soak_from, &op.version) {
            let s = self.store.soak_facts(from, v.as_str()).await?;
            facts.soak = Some(SoakFacts {
                deployed_at: s.deployed_at,
                rolled_back_at: s.rolled_back_since,
            });
        }
        if needs.ci
            && let Some(v) = &op.version
        {
            facts.ci = Some(self.ci.ci_status(v).await);
        }
        Ok(facts)
    }

    /// Preconditions that hold, for the approval message.
    fn met_preconditions(&self, actor: &Actor, op: &Operation, facts: &Facts) -> Vec<String> {
        let mut met = Vec::new();
        let Some(rule) = self.policy.rule_for(actor, op.kind, op.env.as_ref()) else {
            return met;
        };
        if let (Some(p), Some(v)) = (&rule.preconditions, &op.version) {
            if let (Some(s), Some(at)) = (&p.soak, facts.soak.as_ref().and_then(|f| f.deployed_at))
            {
                met.push(format!(
                    "{v} soaked in {} since {} (≥ {})",
                    s.from,
                    render::timestamp(at),
                    s.duration
                ));
            }
            if p.ci_green {
                met.push(format!("CI green for {v}"));
            }
        }
        met
    }

    async fn audit(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        match self.store.append_audit(entry).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.metrics.audit_write_failures.inc();
                error!(error = %e, "audit write failed");
                Err(e)
            }
        }
    }

    fn entry(&self, inv_who: &Who, channel: &str, action: &str, operation: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: self.now(),
            action: action.to_string(),
            who: inv_who.clone(),
            channel: channel.to_string(),
            operation: operation.to_string(),
            arguments: "{}".into(),
            environment: None,
            request_id: None,
            decision: String::new(),
            reason: String::new(),
            votes: "[]".into(),
            outcome: String::new(),
        }
    }

    async fn operation(&self, inv: &Invocation, cmd: Command, op: Operation) -> Reply {
        let now = self.now();
        let facts = match self.gather_facts(&inv.actor, &op).await {
            Ok(f) => f,
            Err(e) => return audit_unavailable(&e),
        };
        let decision = policy::decide(&self.policy, &inv.actor, &op, &facts, now);
        let arguments = serde_json::to_string(&cmd).unwrap_or_default();
        let mut entry = self.entry(&who(&inv.actor), &inv.channel, "", op.kind.as_str());
        entry.arguments = arguments.clone();
        entry.environment = op.env.as_ref().map(|e| e.to_string());
        match decision {
            Decision::Deny(refusal) => {
                let text = render::refusal(&refusal, now);
                entry.action = "refused".into();
                entry.decision = "deny".into();
                entry.reason = text.clone();
                entry.outcome = "refused".into();
                // A refusal changes nothing, so it is answered even when it cannot be recorded.
                let _ = self.audit(entry).await;
                Reply::refused(text)
            }
            Decision::NeedsApproval { rule, requirement } => {
                let stored = StoredApproval {
                    count: requirement.count,
                    from: requirement.from.clone(),
                    met: self.met_preconditions(&inv.actor, &op, &facts),
                };
                let new = NewRequest {
                    created_at: now,
                    expires_at: policy::expiry(now, self.cfg.bot.request_ttl),
                    requester: who(&inv.actor),
                    channel: inv.channel.clone(),
                    command_text: command_text(&inv.text, &self.cfg.bot.command),
                    operation: op.kind.as_str().to_string(),
                    environment: op.env.as_ref().map(|e| e.to_string()),
                    command_json: arguments,
                    approvals_json: serde_json::to_string(&stored).unwrap_or_default(),
                    state: RequestState::Pending,
                    break_glass: false,
                };
                let row = match self.store.insert_request(new).await {
                    Ok(r) => r,
                    Err(e) => return audit_unavailable(&e),
                };
                entry.action = "requested".into();
                entry.request_id = Some(row.id);
                entry.decision = "needs_approval".into();
                entry.reason = format!(
                    "rules[{rule}]: needs {} approval(s) from {}",
                    requirement.count,
                    requirement.from.join(", ")
                );
                entry.outcome = "pending".into();
                if let Err(e) = self
                    .audit_before(row.id, RequestState::Pending, entry)
                    .await
                {
                    return Reply::failed(format!(
                        "Not recorded: the audit log is unavailable ({e}). The request was dropped; nothing will be executed."
                    ));
                }
                let card = self.card(&row, &[]);
                Reply::pending(card)
            }
            Decision::Allow { rule, break_glass } => {
                let reason = match (rule, break_glass) {
                    (Some(r), true) => format!(
                        "rules[{r}]: break-glass during an open {} incident",
                        facts.open_incident.map(|s| s.as_str()).unwrap_or("P0/P1")
                    ),
                    (Some(r), false) => format!("rules[{r}]: allowed without approval"),
                    (None, _) => "allowed".into(),
                };
                self.run_now(inv, cmd, op, entry, reason, break_glass).await
            }
        }
    }

    /// Carries out an operation allowed at once.
    async fn run_now(
        &self,
        inv: &Invocation,
        cmd: Command,
        op: Operation,
        mut entry: NewAuditEntry,
        reason: String,
        break_glass: bool,
    ) -> Reply {
        entry.decision = if break_glass { "break_glass" } else { "allow" }.into();
        entry.reason = reason;
        if target_action(&cmd).is_none() {
            // Reads and incident bookkeeping: audited first, then done.
            entry.action = "executed".into();
            entry.outcome = "ok".into();
            if let Err(e) = self.audit(entry).await {
                return audit_unavailable(&e);
            }
            return self.non_target(inv, &cmd).await;
        }
        let now = self.now();
        let new = NewRequest {
            created_at: now,
            expires_at: now,
            requester: who(&inv.actor),
            channel: inv.channel.clone(),
            command_text: command_text(&inv.text, &self.cfg.bot.command),
            operation: op.kind.as_str().to_string(),
            environment: op.env.as_ref().map(|e| e.to_string()),
            command_json: entry.arguments.clone(),
            approvals_json: "{}".into(),
            state: RequestState::Executing,
            break_glass,
        };
        let row = match self.store.insert_request(new).await {
            Ok(r) => r,
            Err(e) => return audit_unavailable(&e),
        };
        entry.action = "executing".into();
        entry.request_id = Some(row.id);
        entry.outcome = "started".into();
        if let Err(e) = self
            .audit_before(row.id, RequestState::Executing, entry)
            .await
        {
            return audit_unavailable(&e);
        }
        if break_glass {
            warn!(request = %row.id, "break-glass operation");
            self.note_operation(&row, OperationNote::BreakGlass).await;
        }
        self.execute(&row, &cmd, inv.progress.as_ref()).await
    }

    /// Runs a request that is in the `executing` state (this process won it) on its target
    /// and records the outcome.
    async fn execute(&self, row: &RequestRow, cmd: &Command, progress: &dyn Progress) -> Reply {
        let Some(action) = target_action(cmd) else {
            return Reply::failed("internal error: not a target operation");
        };
        let env_name = row.environment.clone().unwrap_or_default();
        let result = match self.cfg.environment(&env_name) {
            None => Err(TargetError::Refused(format!(
                "environment {env_name} is no longer configured"
            ))),
            Some(env) => match self.target_for(env) {
                Err(e) => Err(TargetError::Unavailable(e)),
                Ok(target) => {
                    let ctx = ExecContext {
                        request_id: Some(row.id),
                        requester: format!("{}:{}", row.requester.platform, row.requester.user_id),
                        reason: reason_of(cmd),
                    };
                    target.execute(env, &action, &ctx, progress).await
                }
            },
        };
        let now = self.now();
        let (state, outcome_text, reply) = match &result {
            Ok(o) => (
                RequestState::Succeeded,
                o.summary.clone(),
                Reply::ok(format!("{} done: {}", row.id, o.summary)),
            ),
            Err(e) => (
                RequestState::Failed,
                e.to_string(),
                Reply::failed(format!("{} failed: {e}", row.id)),
            ),
        };
        self.metrics
            .operations
            .get_or_create(&OperationLabels {
                operation: row.operation.clone(),
                environment: env_name.clone(),
                outcome: if result.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                }
                .into(),
            })
            .inc();
        if let (Ok(o), Some(version)) = (
            &result,
            match &action {
                TargetAction::Deploy { .. } | TargetAction::Rollback { .. } => {
                    result.as_ref().ok().and_then(|o| o.version_after.clone())
                }
                _ => None,
            },
        ) {
            let kind = if matches!(action, TargetAction::Rollback { .. }) {
                "rollback"
            } else {
                "deploy"
            };
            // A no-op (already at that version) is not a new deployment for soak purposes.
            if o.version_before.as_deref() != Some(version.as_str())
                && let Err(e) = self
                    .store
                    .record_deployment(DeploymentRecord {
                        environment: env_name.clone(),
                        version,
                        kind: kind.into(),
                        succeeded: true,
                        request_id: Some(row.id),
                        at: now,
                    })
                    .await
            {
                error!(error = %e, request = %row.id, "could not record the deployment");
            }
        }
        let mut warning = String::new();
        if let Err(e) = self
            .store
            .transition_request(
                row.id,
                RequestState::Executing,
                state,
                Some(&outcome_text),
                now,
            )
            .await
        {
            error!(error = %e, request = %row.id, "could not record the request's outcome");
            warning = format!("\nWarning: the outcome could not be stored ({e}).");
        }
        let mut entry = self.entry(&row.requester, &row.channel, "", &row.operation);
        entry.action = if result.is_ok() { "executed" } else { "failed" }.into();
        entry.arguments = row.command_json.clone();
        entry.environment = row.environment.clone();
        entry.request_id = Some(row.id);
        entry.decision = if row.break_glass {
            "break_glass"
        } else {
            "allow"
        }
        .into();
        entry.votes = self.votes_json(row.id).await;
        entry.outcome = match &result {
            Ok(_) => format!("ok: {outcome_text}"),
            Err(_) => format!("failed: {outcome_text}"),
        };
        if let Err(e) = self.audit(entry).await {
            warning.push_str(&format!(
                "\nWarning: the outcome could not be written to the audit log ({e})."
            ));
        }
        self.note_operation(
            row,
            OperationNote::Finished {
                ok: result.is_ok(),
                outcome: &outcome_text,
            },
        )
        .await;
        self.announce(row.id).await;
        if result.is_ok() && matches!(action, TargetAction::Deploy { .. }) {
            self.start_guard(row);
        }
        let mut reply = reply;
        reply.text.push_str(&warning);
        reply
    }

    /// The runbook's automatic rollback triggers: after a deploy to an environment with the
    /// guard on (production by default), watch its health in the background.
    fn start_guard(&self, row: &RequestRow) {
        let Some(env) = row
            .environment
            .as_deref()
            .and_then(|e| self.cfg.environment(e))
        else {
            return;
        };
        // The sandbox has nothing to probe unless a health URL is configured.
        let watchable =
            env.target != erlmcp_commands::config::TargetKind::Sandbox || env.health_url.is_some();
        if !env.auto_rollback_enabled() || !watchable {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let row = row.clone();
        let handle = tokio::spawn(async move { me.guard(row).await });
        self.background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    async fn guard(&self, deployed: RequestRow) {
        let env_name = deployed.environment.clone().unwrap_or_default();
        let Some(env) = self.cfg.environment(&env_name) else {
            return;
        };
        let Ok(target) = self.target_for(env) else {
            return;
        };
        let sleep = self.guard_sleep.clone();
        let verdict = guard::watch_after_deploy(
            target.as_ref(),
            env,
            self.http(),
            &GuardPolicy::for_env(env),
            move |d| sleep(d),
        )
        .await;
        let GuardVerdict::Rollback { evidence } = verdict else {
            info!(request = %deployed.id, env = %env_name, "post-deploy guard: healthy");
            return;
        };
        warn!(request = %deployed.id, env = %env_name, ?evidence, "post-deploy guard: rolling back");
        let reply = self.auto_rollback(&deployed, &env_name, &evidence).await;
        self.post_to(&deployed.channel, &reply).await;
    }

    /// Rolls an environment back on the guard's evidence, audited as automatic.
    async fn auto_rollback(
        &self,
        deployed: &RequestRow,
        env_name: &str,
        evidence: &[String],
    ) -> Reply {
        let system = Who {
            platform: "system".into(),
            user_id: "erlmcp-bot".into(),
            display_name: "erlmcp-bot (post-deploy guard)".into(),
        };
        let cmd = Command::Rollback {
            env: erlmcp_commands::EnvName::new(env_name),
            version: None,
            reason: Some(format!("automatic rollback after {}", deployed.id)),
        };
        let now = self.now();
        let arguments = serde_json::to_string(&cmd).unwrap_or_default();
        let new = NewRequest {
            created_at: now,
            expires_at: now,
            requester: system.clone(),
            channel: deployed.channel.clone(),
            command_text: format!("rollback {env_name} (automatic, after {})", deployed.id),
            operation: OperationKind::Rollback.as_str().into(),
            environment: Some(env_name.to_string()),
            command_json: arguments.clone(),
            approvals_json: "{}".into(),
            state: RequestState::Executing,
            break_glass: false,
        };
        let header = format!(
            "Automatic rollback of {env_name} after {} ({}):\n• {}",
            deployed.id,
            deployed.command_text,
            evidence.join("\n• ")
        );
        let row = match self.store.insert_request(new).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = audit_unavailable(&e);
                r.text = format!("{header}\n{}", r.text);
                return r;
            }
        };
        let mut entry = self.entry(
            &system,
            &deployed.channel,
            "automatic",
            OperationKind::Rollback.as_str(),
        );
        entry.arguments = arguments;
        entry.environment = Some(env_name.to_string());
        entry.request_id = Some(row.id);
        entry.decision = "auto_rollback".into();
        entry.reason = format!(
            "post-deploy guard after {}: {}",
            deployed.id,
            evidence.join("; ")
        );
        entry.outcome = "started".into();
        if let Err(e) = self
            .audit_before(row.id, RequestState::Executing, entry)
            .await
        {
            let mut r = audit_unavailable(&e);
            r.text = format!("{header}\n{}", r.text);
            return r;
        }
        let mut reply = self
            .execute(&row, &cmd, &erlmcp_adapters::target::NoProgress)
            .await;
        reply.text = format!("{header}\n{}", reply.text);
        reply
    }

    /// Marks a request failed (best effort: it is only bookkeeping once nothing will run).
    async fn fail_request(&self, id: RequestId, from: RequestState, why: &str) {
        if let Err(e) = self
            .store
            .transition_request(id, from, RequestState::Failed, Some(why), self.now())
            .await
        {
            error!(error = %e, request = %id, "could not mark the request failed");
        }
    }

    /// Writes the entry that must precede a step. When it cannot be written the step is not
    /// taken, and the request is marked failed so that nothing picks it up later.
    async fn audit_before(
        &self,
        id: RequestId,
        from: RequestState,
        entry: NewAuditEntry,
    ) -> Result<(), StoreError> {
        let result = self.audit(entry).await;
        if result.is_err() {
            self.fail_request(id, from, "audit log unavailable").await;
        }
        result
    }

    async fn votes_json(&self, id: RequestId) -> String {
        match self.store.votes(id).await {
            Ok(v) => serde_json::to_string(
                &v.iter()
                    .map(|v| {
                        serde_json::json!({
                            "voter": format!("{}:{}", v.voter.platform, v.voter.user_id),
                            "name": v.voter.display_name,
                            "approve": v.approve,
                            "comment": v.comment,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            Err(_) => "[]".into(),
        }
    }

    fn card(&self, row: &RequestRow, votes: &[crate::store::VoteRow]) -> ApprovalCard {
        let stored: StoredApproval = serde_json::from_str(&row.approvals_json).unwrap_or_default();
        let cmd: Option<Command> = serde_json::from_str(&row.command_json).ok();
        let version = match &cmd {
            Some(Command::Deploy { version, .. }) => Some(version.to_string()),
            Some(Command::Rollback { version, .. }) => version.as_ref().map(|v| v.to_string()),
            _ => None,
        };
        ApprovalCard {
            id: row.id,
            what: row.command_text.clone(),
            requester: who_label(&row.requester),
            environment: row.environment.clone(),
            version,
            requirement: stored.requirement(),
            approvals: votes
                .iter()
                .filter(|v| v.approve)
                .map(|v| who_label(&v.voter))
                .collect(),
            met: stored.met,
            expires_at: row.expires_at,
            state: row.state.as_str().to_string(),
            state_detail: row.outcome.clone(),
        }
    }

    /// Tells chat adapters that a request's message must be redrawn.
    async fn announce(&self, id: RequestId) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let (Ok(Some(row)), Ok(votes)) =
            (self.store.get_request(id).await, self.store.votes(id).await)
        else {
            return;
        };
        let card = self.card(&row, &votes);
        let _ = self.events.send(EngineEvent::RequestChanged {
            card,
            message_ref: row.message_ref.clone(),
        });
    }

    fn view(&self, row: &RequestRow, votes: &[crate::store::VoteRow]) -> RequestView {
        let stored: StoredApproval = serde_json::from_str(&row.approvals_json).unwrap_or_default();
        RequestView {
            phase: phase(row.state),
            requester: format!("{}:{}", row.requester.platform, row.requester.user_id),
            requirement: stored.requirement(),
            expires_at: row.expires_at,
            votes: votes
                .iter()
                .map(|v| Vote {
                    voter: format!("{}:{}", v.voter.platform, v.voter.user_id),
                    approve: v.approve,
                })
                .collect(),
        }
    }

    async fn vote(
        &self,
        inv: &Invocation,
        id: RequestId,
        approve: bool,
        comment: Option<String>,
    ) -> Reply {
        let now = self.now();
        let row = match self.store.get_request(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Reply::refused(format!("There is no request {id}.")),
            Err(e) => return audit_unavailable(&e),
        };
        let votes = match self.store.votes(id).await {
            Ok(v) => v,
            Err(e) => return audit_unavailable(&e),
        };
        let view = self.view(&row, &votes);
        let verb = if approve { "approve" } else { "deny" };
        match approval::apply(
            &view,
            &Event::Vote {
                voter: &inv.actor,
                approve,
            },
            now,
        ) {
            Err(Rejection::Expired) => {
                self.expire_one(&row).await;
                return Reply::refused(format!(
                    "{id} expired at {}; ask again if it is still needed.",
                    render::timestamp(row.expires_at)
                ));
            }
            Err(Rejection::NotPending(p)) => {
                return Reply::refused(format!(
                    "{id} is {}; there is nothing to {verb}.",
                    p.describe()
                ));
            }
            Err(Rejection::Vote(r)) => {
                let text = render::vote_refusal(&r, id);
                let mut entry = self.entry(&who(&inv.actor), &inv.channel, "vote_refused", verb);
                entry.request_id = Some(id);
                entry.environment = row.environment.clone();
                entry.decision = "deny".into();
                entry.reason = text.clone();
                entry.outcome = "refused".into();
                let _ = self.audit(entry).await;
                return Reply::refused(text);
            }
            Err(Rejection::AlreadyVoted) => {
                return Reply::refused(format!(
                    "You already voted on {id}; each person counts once."
                ));
            }
            Err(Rejection::NotRequester) => {
                return Reply::refused(format!("Only the requester can cancel {id}."));
            }
            Ok(_) => {}
        }
        let inserted = self
            .store
            .insert_vote(NewVote {
                request_id: id,
                voter: who(&inv.actor),
                approve,
                comment: comment.clone(),
                at: now,
            })
            .await;
        match inserted {
            Ok(VoteInsert::Inserted) => {}
            Ok(VoteInsert::AlreadyVoted) => {
                return Reply::refused(format!(
                    "You already voted on {id}; each person counts once."
                ));
            }
            Err(e) => return audit_unavailable(&e),
        }
        let mut entry = self.entry(&who(&inv.actor), &inv.channel, "voted", verb);
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = serde_json::json!({ "approve": approve, "comment": comment }).to_string();
        entry.outcome = "recorded".into();
        entry.votes = self.votes_json(id).await;
        if let Err(e) = self.audit(entry).await {
            return audit_unavailable(&e);
        }
        // Settle from what is stored now, so concurrent voters agree on the outcome and the
        // compare-and-set below lets exactly one of them carry it out.
        let votes = match self.store.votes(id).await {
            Ok(v) => v,
            Err(e) => return audit_unavailable(&e),
        };
        let view = self.view(&row, &votes);
        match approval::settle(&view) {
            Some(Transition::Approved { approvals }) => {
                self.start_approved(inv, &row, approvals).await
            }
            Some(Transition::Denied) => {
                let why = format!("denied by {}", who_label(&who(&inv.actor)))
                    + &comment.map(|c| format!(": {c}")).unwrap_or_default();
                match self
                    .store
                    .transition_request(
                        id,
                        RequestState::Pending,
                        RequestState::Denied,
                        Some(&why),
                        self.now(),
                    )
                    .await
                {
                    Ok(true) => {
                        let mut entry =
                            self.entry(&who(&inv.actor), &inv.channel, "denied", &row.operation);
                        entry.request_id = Some(id);
                        entry.environment = row.environment.clone();
                        entry.arguments = row.command_json.clone();
                        entry.decision = "deny".into();
                        entry.reason = why.clone();
                        entry.votes = self.votes_json(id).await;
                        entry.outcome = "denied".into();
                        let _ = self.audit(entry).await;
                        self.announce(id).await;
                        Reply::ok(format!("{id} {}: {why}.", row.command_text))
                    }
                    Ok(false) => Reply::ok(format!("Vote recorded; {id} was already settled.")),
                    Err(e) => audit_unavailable(&e),
                }
            }
            _ => {
                self.announce(id).await;
                let stored: StoredApproval =
                    serde_json::from_str(&row.approvals_json).unwrap_or_default();
                Reply::ok(format!(
                    "{} approved {id} ({} of {} approvals).",
                    who_label(&who(&inv.actor)),
                    view.approvals(),
                    stored.count
                ))
            }
        }
    }

    async fn start_approved(&self, inv: &Invocation, row: &RequestRow, approvals: u32) -> Reply {
        let id = row.id;
        match self
            .store
            .transition_request(
                id,
                RequestState::Pending,
                RequestState::Executing,
                None,
                self.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Reply::ok(format!("Vote recorded; {id} is already being carried out."));
            }
            Err(e) => return audit_unavailable(&e),
        }
        let cmd: Command = match serde_json::from_str(&row.command_json) {
            Ok(c) => c,
            Err(e) => {
                self.fail_request(id, RequestState::Executing, "stored command unreadable")
                    .await;
                return Reply::failed(format!(
                    "{id} cannot be executed: its stored command is unreadable ({e})."
                ));
            }
        };
        // The world may have changed while the request waited: check again.
        if let Command::Deploy { env, version, .. } = &cmd {
            let requester = self.actor(
                &row.requester.platform,
                &row.requester.user_id,
                &row.requester.display_name,
                &[],
            );
            let op = Operation {
                kind: OperationKind::Deploy,
                env: Some(env.clone()),
                version: Some(version.clone()),
            };
            if let Some(p) = self
                .policy
                .rule_for(&requester, op.kind, op.env.as_ref())
                .and_then(|r| r.preconditions.clone())
            {
                let facts = match self.gather_facts(&requester, &op).await {
                    Ok(f) => f,
                    Err(e) => {
                        self.fail_request(id, RequestState::Executing, "audit log unavailable")
                            .await;
                        return audit_unavailable(&e);
                    }
                };
                let unmet = policy::unmet_preconditions(&p, &op, &facts, self.now());
                if !unmet.is_empty() {
                    let text = render::refusal(&policy::Refusal::Preconditions(unmet), self.now());
                    self.fail_request(id, RequestState::Executing, &text).await;
                    let mut entry =
                        self.entry(&row.requester, &row.channel, "failed", &row.operation);
                    entry.request_id = Some(id);
                    entry.environment = row.environment.clone();
                    entry.reason = text.clone();
                    entry.outcome = "refused at execution".into();
                    let _ = self.audit(entry).await;
                    self.announce(id).await;
                    return Reply::failed(format!("{id} approved but not executed: {text}"));
                }
            }
        }
        let mut entry = self.entry(&row.requester, &row.channel, "executing", &row.operation);
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.decision = "approved".into();
        entry.reason = format!(
            "{approvals} approval(s), last by {}",
            who_label(&who(&inv.actor))
        );
        entry.votes = self.votes_json(id).await;
        entry.outcome = "started".into();
        if let Err(e) = self.audit_before(id, RequestState::Executing, entry).await {
            return audit_unavailable(&e);
        }
        self.announce(id).await;
        let mut row = row.clone();
        row.state = RequestState::Executing;
        self.execute(&row, &cmd, inv.progress.as_ref()).await
    }

    async fn cancel(&self, inv: &Invocation, id: RequestId) -> Reply {
        let row = match self.store.get_request(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Reply::refused(format!("There is no request {id}.")),
            Err(e) => return audit_unavailable(&e),
        };
        let votes = self.store.votes(id).await.unwrap_or_default();
        let view = self.view(&row, &votes);
        match approval::apply(&view, &Event::Cancel { by: &inv.actor }, self.now()) {
            Ok(Transition::Cancelled) => {}
            Err(Rejection::NotRequester) => {
                return Reply::refused(format!(
                    "Only the requester ({}) can cancel {id}.",
                    who_label(&row.requester)
                ));
            }
            Err(Rejection::Expired) => {
                self.expire_one(&row).await;
                return Reply::refused(format!("{id} already expired."));
            }
            Err(Rejection::NotPending(p)) => {
                return Reply::refused(format!(
                    "{id} is {}; it can no longer be cancelled.",
                    p.describe()
                ));
            }
            Ok(_) | Err(_) => return Reply::refused(format!("{id} cannot be cancelled.")),
        }
        let mut entry = self.entry(&who(&inv.actor), &inv.channel, "cancelled", &row.operation);
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.outcome = "cancelled".into();
        if let Err(e) = self.audit(entry).await {
            return audit_unavailable(&e);
        }
        match self
            .store
            .transition_request(
                id,
                RequestState::Pending,
                RequestState::Cancelled,
                Some("cancelled by the requester"),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                self.announce(id).await;
                Reply::ok(format!("{id} cancelled."))
            }
            Ok(false) => Reply::refused(format!("{id} was settled before it could be cancelled.")),
            Err(e) => audit_unavailable(&e),
        }
    }

    async fn expire_one(&self, row: &RequestRow) -> bool {
        match self
            .store
            .transition_request(
                row.id,
                RequestState::Pending,
                RequestState::Expired,
                Some("expired without enough approvals"),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                let system = Who {
                    platform: "system".into(),
                    user_id: "erlmcp-bot".into(),
                    display_name: "erlmcp-bot".into(),
                };
                let mut entry = self.entry(&system, &row.channel, "expired", &row.operation);
                entry.request_id = Some(row.id);
                entry.environment = row.environment.clone();
                entry.arguments = row.command_json.clone();
                entry.votes = self.votes_json(row.id).await;
                entry.outcome = "expired".into();
                let _ = self.audit(entry).await;
                self.announce(row.id).await;
                true
            }
            _ => false,
        }
    }

    /// Expires every pending request past its time; returns how many this call expired.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let due = self.store.expired_requests(self.now()).await?;
        let mut n = 0;
        for row in &due {
            if self.expire_one(row).await {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn non_target(&self, inv: &Invocation, cmd: &Command) -> Reply {
        let result = match cmd {
            Command::Pods { env } => self.pods(env.as_str()).await,
            Command::Logs {
                env,
                pod,
                previous,
                tail,
            } => {
                self.logs(env.as_str(), pod.as_deref(), *previous, tail.unwrap_or(50))
                    .await
            }
            Command::Audit { limit } => self.audit_tail(limit.unwrap_or(10)).await,
            Command::Incident(ic) => self.incident(inv, ic).await,
            _ => Ok(Reply::failed("internal error: unexpected command")),
        };
        result.unwrap_or_else(|e| Reply::failed(format!("The database is unavailable: {e}")))
    }

    async fn pods(&self, env: &str) -> Result<Reply, StoreError> {
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(format!("unknown environment {env}")));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.pods(spec).await {
            Ok(pods) if pods.is_empty() => Reply::private(format!("{env}: no pods")),
            Ok(pods) => Reply::private(
                std::iter::once(format!("{env} [{}]:", target.kind()))
                    .chain(pods.iter().map(|p| {
                        format!(
                            "{} {} {} restarts={}{}",
                            p.name,
                            p.phase,
                            if p.ready { "ready" } else { "NOT READY" },
                            p.restarts,
                            p.reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )
                    }))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Err(e) => Reply::failed(format!("{env}: {e}")),
        })
    }

    async fn logs(
        &self,
        env: &str,
        pod: Option<&str>,
        previous: bool,
        tail: u32,
    ) -> Result<Reply, StoreError> {
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(format!("unknown environment {env}")));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.logs(spec, pod, previous, tail).await {
            Ok(text) => Reply::private(format!("```\n{text}\n```")),
            Err(e) => Reply::failed(format!("{env}: {e}")),
        })
    }

    async fn audit_tail(&self, n: u32) -> Result<Reply, StoreError> {
        let rows = self.store.audit_tail(n).await?;
        if rows.is_empty() {
            return Ok(Reply::private("The audit log is empty."));
        }
        let lines: Vec<String> = rows
            .iter()
            .rev()
            .map(|r| {
                let e = &r.entry;
                format!(
                    "#{} {} {} {} {}{}{} — {}",
                    r.seq,
                    render::timestamp(e.at),
                    who_label(&e.who),
                    e.action,
                    e.operation,
                    e.environment
                        .as_ref()
                        .map(|x| format!(" {x}"))
                        .unwrap_or_default(),
                    e.request_id.map(|x| format!(" {x}")).unwrap_or_default(),
                    e.outcome
                )
            })
            .collect();
        Ok(Reply::private(lines.join("\n")))
    }
}

/// Counts a command as in flight for as long as it is handled.
struct InFlight<'a>(&'a Engine);

impl<'a> InFlight<'a> {
    fn enter(engine: &'a Engine) -> InFlight<'a> {
        engine.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(engine)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
