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

use erlmcp_adapters::chat::{ChatPlatform, MessageRef, Platform};
use erlmcp_adapters::ci::CiStatusSource;
use erlmcp_adapters::target::{ExecContext, Progress, Target, TargetAction, TargetError};
use erlmcp_commands::approval::{self, Event, Rejection, RequestView, Transition, Vote};
use erlmcp_commands::config::Config;
use erlmcp_commands::grammar::{self, ParseContext};
use erlmcp_commands::policy::{
    self, Access, ApprovalRequirement, DecidedUnder, Decision, Facts, Operation, Policy,
    Preconditions, SoakFacts,
};
use erlmcp_commands::render::{self, ApprovalCard, Reply, ReplyKind};
use erlmcp_commands::vocab::{AuditAction, AuditDecision};
use erlmcp_commands::{
    Actor, Command, GroupMembership, IncidentCommand, OperationKind, Person, RequestId, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{Instrument, error, info, warn};

mod approvals;
mod checkpoints;
mod github;
mod interrupted;
mod notify;
pub use interrupted::Ownership;
pub use notify::{Notifiers, OperationNote};
mod operation;
mod plan;
mod post_deploy;
mod reads;
mod runbook;

use crate::clock::Clock;
use crate::metrics::{Ballot, CommandLabels, Metrics, OperationLabels, StoreStep, VoteOutcome};
use crate::store::{
    DeploymentRecord, FinishRequest, NewAuditEntry, NewRequest, NewVote, RequestRow, RequestState,
    Store, StoreError, VoteInsert, Who,
};

pub use checkpoints::check_audit_keys;

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
        /// The message that shows it, on whichever platform posted it.
        message: Option<MessageRef>,
    },
}

/// What is stored with a request about its approvals (`requests.approvals_json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredApproval {
    count: u32,
    from: Vec<String>,
    /// Preconditions that were met when it was requested, for the approvers.
    #[serde(default)]
    met: Vec<String>,
    /// The rule it was decided under; absent in requests stored by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decided_under: Option<DecidedUnder>,
    /// The target's plan when it was requested, shown on the approval card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    plan: Vec<String>,
}

/// The part of a stored approval that votes and cards need. Read on its own so that a
/// damaged `decided_under` does not hide who may vote: execution refuses such a request
/// with a clear reason instead.
#[derive(Debug, Clone, Default, Deserialize)]
struct StoredRequirement {
    count: u32,
    from: Vec<String>,
    #[serde(default)]
    met: Vec<String>,
    #[serde(default)]
    plan: Vec<String>,
}

impl StoredRequirement {
    fn read(json: &str) -> StoredRequirement {
        serde_json::from_str(json).unwrap_or_default()
    }

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
    incidents_channels: HashMap<Platform, String>,
    /// Itself, for work that outlives a command (the post-deploy guard).
    me: Weak<Engine>,
    /// Made on first use: building a TLS client costs memory a bot that never probes
    /// anything should not pay.
    http: std::sync::OnceLock<reqwest::Client>,
    guard_sleep: GuardSleep,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What background work that panicked said, kept until a caller takes it: a panic in a
    /// task is otherwise only a line on stderr.
    panics: Mutex<Vec<String>>,
    /// Commands being handled right now, so a shutdown can let them finish.
    in_flight: AtomicU64,
    idle: tokio::sync::Notify,
    pub(crate) notifiers: Notifiers,
    /// This process in the store: requests it carries out are recorded as its own, and its
    /// heartbeat tells other processes it is alive.
    owner: String,
    started_at: Timestamp,
    /// Signed checkpoints of the audit log; `None` without `audit.signing_key`.
    checkpoints: Option<checkpoints::Checkpoints>,
    /// The github-actions target, for `runs`, `run ...` and environment gates.
    github: std::sync::OnceLock<Arc<erlmcp_adapters::github::GithubActionsTarget>>,
    running_deploys: github::RunningDeploys,
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
    /// Where each platform announces new incidents.
    pub incidents_channels: HashMap<Platform, String>,
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

impl Engine {
    /// The one answer to a command refused because the store failed a step it needed
    /// (fail closed: what cannot be recorded is not done), counted on /metrics by step.
    pub(super) fn store_refusal(&self, step: StoreStep, e: &StoreError) -> Reply {
        self.metrics.store_refused(step);
        warn!(error = %e, step = step.as_str(), "command refused: the store failed");
        Reply::failed(format!(
            "Not executed: the audit log is unavailable ({e}). Nothing was changed; try again when the database is back."
        ))
    }
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
        Command::PodDelete { pod, force, .. } => Some(TargetAction::DeletePod {
            pod: pod.clone(),
            force: *force,
        }),
        Command::Resources { change, .. } => Some(TargetAction::SetResources {
            change: change.clone(),
        }),
        Command::Backup { .. } => Some(TargetAction::Backup),
        Command::DrFailover { .. } => Some(TargetAction::DrFailover),
        Command::Events { .. }
        | Command::Describe { .. }
        | Command::Top { .. }
        | Command::Backups { .. }
        | Command::DrStatus
        | Command::Report => None,
        Command::BlueGreen { action, .. } => match action {
            erlmcp_commands::BlueGreenAction::Status => None,
            _ => Some(TargetAction::BlueGreen { action: *action }),
        },
        Command::Plan { .. } => None,
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
        | Command::Audit { .. }
        | Command::AuditPrune { .. }
        | Command::Runs { .. }
        | Command::Run { .. } => None,
    }
}

/// Whether a command changes something and so runs as a request with an outcome: a target
/// change, pruning the audit log, or a change to a workflow run.
fn is_change(cmd: &Command) -> bool {
    target_action(cmd).is_some()
        || matches!(cmd, Command::AuditPrune { .. })
        || matches!(cmd, Command::Run { action, .. } if action.is_change())
}

fn reason_of(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Deploy { reason, .. }
        | Command::Rollback { reason, .. }
        | Command::Scale { reason, .. }
        | Command::Restart { reason, .. }
        | Command::Maintenance { reason, .. }
        | Command::DrFailover { reason, .. } => reason.clone(),
        _ => None,
    }
}

/// The command as a canonical string for records: it parses back to the same command.
fn command_text(text: &str, prefix: &str) -> String {
    let t = text.trim();
    t.strip_prefix(prefix).unwrap_or(t).trim().to_string()
}

impl Engine {
    /// An unusable `[audit]` key turns checkpoints off with an error in the log;
    /// `app::build` refuses such a configuration before it gets here.
    pub fn new(parts: EngineParts) -> Arc<Engine> {
        let cp = checkpoints::Checkpoints::from_config(&parts.config.audit).unwrap_or_else(|e| {
            error!(error = %e, "audit checkpoints are off");
            None
        });
        Engine::build(parts, cp)
    }

    fn build(parts: EngineParts, checkpoints: Option<checkpoints::Checkpoints>) -> Arc<Engine> {
        let policy = Policy::from_config(&parts.config);
        let parse_ctx = parts.config.parse_context();
        let (events, _) = broadcast::channel(256);
        let notifiers = Notifiers::from_config(&parts.config);
        let http = std::sync::OnceLock::new();
        let started_at = parts.clock.now();
        Arc::new_cyclic(|me| Engine {
            owner: interrupted::process_owner(),
            started_at,
            me: me.clone(),
            http,
            guard_sleep: parts.guard_sleep,
            background: Mutex::new(Vec::new()),
            panics: Mutex::new(Vec::new()),
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
            incidents_channels: parts.incidents_channels,
            notifiers,
            checkpoints,
            github: std::sync::OnceLock::new(),
            running_deploys: Default::default(),
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
                if let Err(e) = h.await {
                    self.note_join_error(e);
                }
            }
        }
    }

    /// Waits until no command is being handled and no background work is left, however it
    /// was started: the point after which nothing more happens until someone speaks or the
    /// clock moves.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                idle.await;
                continue;
            }
            if self
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                return;
            }
            self.wait_background().await;
        }
    }

    /// Runs `work` as background work of the engine: [`Engine::wait_idle`] waits for it and a
    /// panic in it is kept for [`Engine::take_panics`].
    pub fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.track(tokio::spawn(work));
    }

    fn track(&self, handle: tokio::task::JoinHandle<()>) {
        use futures::FutureExt as _;
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        // Finished work is let go here, so a daemon that runs for months keeps only the
        // handles of what still runs.
        let mut running = Vec::with_capacity(background.len() + 1);
        for h in background.drain(..) {
            if !h.is_finished() {
                running.push(h);
            } else if let Some(Err(e)) = h.now_or_never() {
                self.note_join_error(e);
            }
        }
        running.push(handle);
        *background = running;
    }

    fn note_join_error(&self, e: tokio::task::JoinError) {
        let Ok(payload) = e.try_into_panic() else {
            return;
        };
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        error!(panic = %message, "background work panicked");
        self.panics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// The messages of background work that panicked since the last call.
    pub fn take_panics(&self) -> Vec<String> {
        std::mem::take(&mut *self.panics.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Posts a message in the channel a command came from (`PLATFORM:CHANNEL`), when that
    /// platform is connected; `local:*` channels have nobody to post to.
    pub async fn post_to(&self, channel: &str, reply: &Reply) {
        let Some((platform, id)) = channel.split_once(':') else {
            return;
        };
        let Some(platform) = Platform::parse(platform) else {
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

    /// Where `platform` announces new incidents, when configured.
    pub fn incidents_channel(&self, platform: Platform) -> Option<String> {
        self.incidents_channels.get(&platform).cloned()
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
        let identity = format!("{platform}:{user_id}");
        let person = self.cfg.person_for(&identity);
        let mut ids = vec![identity];
        ids.extend(groups.iter().cloned());
        Actor {
            platform: platform.to_string(),
            user_id: user_id.to_string(),
            display_name: display_name.to_string(),
            roles: self.cfg.roles_for(&ids),
            person,
            groups: Default::default(),
        }
    }

    /// Whether `text` from `actor` (resolved from its own identity, without groups) needs
    /// the actor's groups to be decided. When the roles bound to the identity itself
    /// already grant what the command needs, a slow group lookup must not delay it.
    pub async fn needs_groups(&self, actor: &Actor, text: &str) -> bool {
        match self.parse(text) {
            Ok(cmd) => self.needs_groups_for(actor, &cmd).await,
            Err(_) => false,
        }
    }

    /// [`Engine::needs_groups`] for a parsed command.
    pub async fn needs_groups_for(&self, actor: &Actor, cmd: &Command) -> bool {
        match policy::access(cmd) {
            // `whoami` exists to show every role, those from groups included.
            Access::Open => matches!(cmd, Command::Whoami),
            Access::AnyRole => actor.roles.is_empty(),
            Access::Requester(_) => false,
            Access::Vote(id) => match self.store.get_request(id).await {
                Ok(Some(row)) => {
                    let stored: StoredApproval =
                        serde_json::from_str(&row.approvals_json).unwrap_or_default();
                    !actor.has_any_role(&stored.from)
                }
                // The vote is refused whatever the groups say.
                Ok(None) => false,
                Err(_) => true,
            },
            Access::Rule(op) => {
                let direct_rule = self
                    .policy
                    .rule_for(actor, op.kind, op.env.as_ref())
                    .is_some();
                let direct_glass = self.policy.rules_for(op.kind, op.env.as_ref()).any(|r| {
                    r.break_glass
                        .as_ref()
                        .is_some_and(|bg| actor.has_any_role(&bg.roles))
                });
                !(direct_rule || direct_glass)
            }
        }
    }

    /// Reads a command as typed, with this bot's environments and aliases.
    pub fn parse(&self, text: &str) -> Result<Command, grammar::ParseError> {
        grammar::parse(text, &self.parse_ctx)
    }

    /// Handles one command end to end and returns the reply for the person who typed it.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        let parsed = self.parse(&inv.text);
        self.handle_parsed(inv, parsed).await
    }

    /// [`Engine::handle`] for a command its caller has already parsed (from `inv.text`).
    pub async fn handle_parsed(
        &self,
        inv: Invocation,
        parsed: Result<Command, grammar::ParseError>,
    ) -> Reply {
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
        let mut command = "unparsed";
        let reply = async {
            let reply = match parsed {
                Err(e) => {
                    info!(error = %e.message, "command did not parse");
                    Reply::usage(e.render())
                }
                Ok(cmd) => {
                    command = grammar::command_name(&cmd);
                    tracing::Span::current().record("command", command);
                    let whoami = matches!(cmd, Command::Whoami);
                    let mut reply = self.dispatch(&inv, cmd).await;
                    if inv.actor.groups == GroupMembership::Unreadable
                        && (whoami || reply.kind == ReplyKind::Refused)
                    {
                        reply.push(render::groups_unreadable());
                    }
                    reply
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
                command: command.to_string(),
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
            Access::Rule(op) if op.needs_run_environment() => {
                self.run_operation(inv, cmd, op).await
            }
            Access::Rule(op) => self.operation(inv, cmd, op).await,
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

    /// The person behind a stored identity, resolved with the current `[people]`.
    pub(super) fn person_of(&self, w: &Who) -> Person {
        self.cfg
            .person_for(&format!("{}:{}", w.platform, w.user_id))
    }

    pub(super) async fn audit(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        let written = self.store.append_audit(self.named(entry)).await;
        self.audited(written).map(|_| ())
    }

    /// The entry as the audit log records it: the person goes into the display name, a
    /// field the row's hash already covers, so rows written before `[people]` existed verify
    /// unchanged.
    pub(super) fn named(&self, mut entry: NewAuditEntry) -> NewAuditEntry {
        if let Person::Named(name) = self.person_of(&entry.who) {
            let shown = &entry.who.display_name;
            entry.who.display_name = if shown.is_empty() || *shown == entry.who.user_id {
                format!("person {name}")
            } else {
                format!("{shown}, person {name}")
            };
        }
        entry
    }

    /// Counts and logs a failed audit write.
    pub(super) fn audited<T>(&self, written: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &written {
            self.metrics.audit_write_failures.inc();
            error!(error = %e, "audit write failed");
        }
        written
    }

    pub(super) fn entry(
        &self,
        inv_who: &Who,
        channel: &str,
        action: AuditAction,
        operation: &str,
    ) -> NewAuditEntry {
        NewAuditEntry {
            at: self.now(),
            action: action.into(),
            who: inv_who.clone(),
            channel: channel.to_string(),
            operation: operation.to_string(),
            arguments: "{}".into(),
            environment: None,
            request_id: None,
            decision: AuditDecision::None.into(),
            reason: String::new(),
            votes: "[]".into(),
            outcome: String::new(),
        }
    }

    /// Marks a request failed (best effort: it is only bookkeeping once nothing will run).
    pub(super) async fn fail_request(&self, id: RequestId, from: RequestState, why: &str) {
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
    pub(super) async fn audit_before(
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

    pub(super) async fn votes_json(&self, id: RequestId) -> String {
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
