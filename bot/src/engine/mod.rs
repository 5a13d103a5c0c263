//! The engine: command → policy → approvals → execution on the environment's target →
//! outcome, with every step written to the audit log first. If the audit log cannot be
//! written, nothing is executed and the user is told why.
//!
//! This file holds the engine's state and how it is built; each concern has its own file:
//! `dispatch` (one command from text to reply), `operation` (changes: decide, run, record),
//! `approvals` (votes, cards, cancel, expiry), `reads`, `runbook`, `plan` (dry runs),
//! `post_deploy` (the guard), `github` (runs and gates), `interrupted`, `checkpoints`,
//! `records` (audit bookkeeping), `unrecorded` (outcomes the store did not take, written
//! again until it does), `background` (work that outlives a command) and `environments`
//! (what the incident service may ask). Incidents are a service of their own
//! (`crate::incidents`); every reply text is in `erlmcp_commands::replies`.

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
use erlmcp_commands::render::{ApprovalCard, Reply, ReplyKind};
use erlmcp_commands::replies;
use erlmcp_commands::status::EnvStatus;
use erlmcp_commands::vocab::{AuditAction, AuditDecision};
use erlmcp_commands::{
    Actor, Command, GroupMembership, IncidentCommand, OperationKind, Person, RequestId, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{Instrument, error, info, warn};

mod approvals;
mod background;
mod checkpoints;
mod dispatch;
mod environments;
mod github;
mod interrupted;
pub use interrupted::Ownership;
mod operation;
mod plan;
mod post_deploy;
mod reads;
mod records;
mod runbook;
mod unrecorded;

use dispatch::{command_text, is_change, reason_of, target_action};
use environments::EngineEnvironments;

use crate::clock::Clock;
pub(crate) use crate::identity::{who, who_label};
use crate::incidents::{EnvironmentStatus, IncidentParts, Incidents, Notifiers, OperationNote};
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
    /// The incident service: incident commands are routed to it and operations reported.
    incidents: Incidents,
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
    /// This process in the store: requests it carries out are recorded as its own, and its
    /// heartbeat tells other processes it is alive.
    owner: String,
    started_at: Timestamp,
    /// Signed checkpoints of the audit log; `None` without `audit.signing_key`.
    checkpoints: Option<checkpoints::Checkpoints>,
    /// The github-actions target, for `runs`, `run ...` and environment gates.
    github: std::sync::OnceLock<Arc<erlmcp_adapters::github::GithubActionsTarget>>,
    /// The sandbox target, whose final state is written with each operation's outcome.
    sandbox: std::sync::OnceLock<Arc<crate::sandbox::SandboxTarget>>,
    running_deploys: github::RunningDeploys,
    /// `whoami`'s grants per set of roles, worked out on first use.
    grants: Mutex<HashMap<Vec<String>, Arc<reads::Grants>>>,
    /// Outcomes the database has not taken yet, being written again in the background.
    unrecorded: unrecorded::Kept,
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
        let incident_parts = IncidentParts {
            config: parts.config.clone(),
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            chats: parts.chats.clone(),
            incidents_channels: parts.incidents_channels,
            notifiers,
        };
        let http = std::sync::OnceLock::new();
        let started_at = parts.clock.now();
        Arc::new_cyclic(|me| Engine {
            incidents: Incidents::new(incident_parts, Arc::new(EngineEnvironments(me.clone()))),
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
            checkpoints,
            github: std::sync::OnceLock::new(),
            sandbox: std::sync::OnceLock::new(),
            running_deploys: Default::default(),
            grants: Mutex::new(HashMap::new()),
            unrecorded: unrecorded::Kept::default(),
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

    /// The incident service.
    pub fn incidents(&self) -> &Incidents {
        &self.incidents
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

    /// Lets the engine write the sandbox's state with each operation's outcome; the
    /// sandbox must be one of the engine's targets.
    pub fn set_sandbox(&self, target: Arc<crate::sandbox::SandboxTarget>) {
        let _ = self.sandbox.set(target);
    }

    pub(crate) fn target_for(
        &self,
        env: &erlmcp_commands::config::EnvironmentSpec,
    ) -> Result<&Arc<dyn Target>, String> {
        self.targets
            .get(env.target.as_str())
            .ok_or_else(|| replies::target_not_configured(env.target.as_str()))
    }
}
