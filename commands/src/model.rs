//! The domain vocabulary shared by the grammar, the policy, the engine and every adapter.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A request that waits for approvals: `R-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub i64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R-{}", self.0)
    }
}

/// An incident: `INC-7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IncidentId(pub i64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

/// The canonical name of a configured environment (aliases already resolved).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvName(pub String);

impl EnvName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release version such as `v3.0.1` or `3.0.1-rc.1`. Validated by the parser.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

impl Version {
    /// Accepts `v?MAJOR[.MINOR[.PATCH]]` with an optional `-pre` or `+build` suffix made of
    /// ASCII alphanumerics, dots and hyphens. Kept strict because it ends up in image tags.
    pub fn parse(s: &str) -> Option<Version> {
        let body = s.strip_prefix('v').unwrap_or(s);
        let (core, suffix) = match body.find(['-', '+']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        if parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        if let Some(sfx) = suffix
            && (sfx.is_empty()
                || sfx.len() > 64
                || !sfx
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+'))
        {
            return None;
        }
        Some(Version(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_uppercase().as_str() {
            "P0" => Some(Severity::P0),
            "P1" => Some(Severity::P1),
            "P2" => Some(Severity::P2),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Rolling,
    Canary,
    BlueGreen,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "rolling" => Some(Strategy::Rolling),
            "canary" => Some(Strategy::Canary),
            "blue-green" => Some(Strategy::BlueGreen),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryAction {
    Status,
    Pause,
    Resume,
    Abort,
    Promote,
}

impl CanaryAction {
    pub fn parse(s: &str) -> Option<CanaryAction> {
        match s {
            "status" => Some(CanaryAction::Status),
            "pause" => Some(CanaryAction::Pause),
            "resume" => Some(CanaryAction::Resume),
            "abort" => Some(CanaryAction::Abort),
            "promote" => Some(CanaryAction::Promote),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryAction::Status => "status",
            CanaryAction::Pause => "pause",
            CanaryAction::Resume => "resume",
            CanaryAction::Abort => "abort",
            CanaryAction::Promote => "promote",
        }
    }
}

/// One parsed chat command: the whole grammar of DESIGN §3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Help {
        topic: Option<String>,
    },
    Whoami,
    Status {
        env: Option<EnvName>,
    },
    Deploy {
        env: EnvName,
        version: Version,
        strategy: Strategy,
        reason: Option<String>,
    },
    Rollback {
        env: EnvName,
        version: Option<Version>,
        reason: Option<String>,
    },
    Approve {
        id: RequestId,
        comment: Option<String>,
    },
    Deny {
        id: RequestId,
        reason: Option<String>,
    },
    Cancel {
        id: RequestId,
    },
    Requests,
    Scale {
        env: EnvName,
        replicas: u32,
        reason: Option<String>,
    },
    Restart {
        env: EnvName,
        reason: Option<String>,
    },
    Maintenance {
        env: EnvName,
        on: bool,
        reason: Option<String>,
    },
    Canary {
        env: EnvName,
        action: CanaryAction,
    },
    /// Read-only troubleshooting: the workload's pods with their state and restarts.
    Pods {
        env: EnvName,
    },
    /// Read-only troubleshooting: a pod's log tail.
    Logs {
        env: EnvName,
        pod: Option<String>,
        previous: bool,
        tail: Option<u32>,
    },
    Incident(IncidentCommand),
    Audit {
        limit: Option<u32>,
    },
    /// Removes audit rows written before `before`, behind a signed prune checkpoint.
    AuditPrune {
        before: Timestamp,
    },
    /// Read-only troubleshooting: the namespace's events, warnings first.
    Events {
        env: EnvName,
    },
    /// Read-only troubleshooting: one pod's state, last state, resources and events.
    Describe {
        env: EnvName,
        pod: String,
    },
    /// Read-only troubleshooting: CPU and memory per pod.
    Top {
        env: EnvName,
    },
    /// Deletes a stuck pod; `force` means grace period 0.
    PodDelete {
        env: EnvName,
        pod: String,
        force: bool,
    },
    /// `kubectl set resources` on the workload's container.
    Resources {
        env: EnvName,
        change: crate::runbook::ResourceChange,
    },
    /// Runs the environment's backup CronJob now and follows the Job.
    Backup {
        env: EnvName,
    },
    /// Recent runs of the backup CronJob.
    Backups {
        env: EnvName,
    },
    /// The DR region's pods and health.
    DrStatus,
    /// Runs the environment's configured failover action.
    DrFailover {
        env: EnvName,
        reason: Option<String>,
    },
    /// The daily health report, on demand.
    Report,
    /// Blue-green: which colour serves, switching the Service between colours, retiring
    /// the idle one.
    BlueGreen {
        env: EnvName,
        action: BlueGreenAction,
    },
    /// `--dry-run`: the plan of a change, without carrying it out.
    Plan {
        change: Box<Command>,
    },
}

/// One of the two Deployments of a blue-green environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn parse(s: &str) -> Option<Colour> {
        match s {
            "blue" => Some(Colour::Blue),
            "green" => Some(Colour::Green),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }
    /// The colour that is not this one.
    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", content = "colour", rename_all = "lowercase")]
pub enum BlueGreenAction {
    /// Which colour serves and what each colour runs.
    Status,
    /// Points the Service at this colour.
    Switch(Colour),
    /// Scales the idle colour to zero.
    Retire,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IncidentCommand {
    Declare {
        severity: Severity,
        title: String,
    },
    Update {
        id: Option<IncidentId>,
        text: String,
    },
    Severity {
        id: Option<IncidentId>,
        severity: Severity,
    },
    Commander {
        id: Option<IncidentId>,
        user: String,
    },
    Resolve {
        id: Option<IncidentId>,
        summary: Option<String>,
    },
    List,
    Timeline {
        id: Option<IncidentId>,
    },
}

/// The operation kinds that rules in the configuration grant (`operation = "deploy"`).
/// Adding one forces a decision in the policy, the help and the audit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OperationKind {
    Deploy,
    Rollback,
    Scale,
    Restart,
    Maintenance,
    Canary,
    Pods,
    Logs,
    IncidentDeclare,
    IncidentUpdate,
    IncidentSeverity,
    IncidentCommander,
    IncidentResolve,
    Audit,
    AuditPrune,
    Events,
    Describe,
    Top,
    PodDelete,
    Resources,
    Backup,
    Backups,
    DrStatus,
    DrFailover,
    Report,
    BlueGreen,
    BlueGreenRetire,
}

impl OperationKind {
    pub const ALL: [OperationKind; 27] = [
        OperationKind::Deploy,
        OperationKind::Rollback,
        OperationKind::Scale,
        OperationKind::Restart,
        OperationKind::Maintenance,
        OperationKind::Canary,
        OperationKind::Pods,
        OperationKind::Logs,
        OperationKind::IncidentDeclare,
        OperationKind::IncidentUpdate,
        OperationKind::IncidentSeverity,
        OperationKind::IncidentCommander,
        OperationKind::IncidentResolve,
        OperationKind::Audit,
        OperationKind::AuditPrune,
        OperationKind::Events,
        OperationKind::Describe,
        OperationKind::Top,
        OperationKind::PodDelete,
        OperationKind::Resources,
        OperationKind::Backup,
        OperationKind::Backups,
        OperationKind::DrStatus,
        OperationKind::DrFailover,
        OperationKind::Report,
        OperationKind::BlueGreen,
        OperationKind::BlueGreenRetire,
    ];

    /// The name used in configuration rules and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Deploy => "deploy",
            OperationKind::Rollback => "rollback",
            OperationKind::Scale => "scale",
            OperationKind::Restart => "restart",
            OperationKind::Maintenance => "maintenance",
            OperationKind::Canary => "canary",
            OperationKind::Pods => "pods",
            OperationKind::Logs => "logs",
            OperationKind::IncidentDeclare => "incident.declare",
            OperationKind::IncidentUpdate => "incident.update",
            OperationKind::IncidentSeverity => "incident.severity",
            OperationKind::IncidentCommander => "incident.commander",
            OperationKind::IncidentResolve => "incident.resolve",
            OperationKind::Audit => "audit",
            OperationKind::AuditPrune => "audit.prune",
            OperationKind::Events => "events",
            OperationKind::Describe => "describe",
            OperationKind::Top => "top",
            OperationKind::PodDelete => "pod.delete",
            OperationKind::Resources => "resources",
            OperationKind::Backup => "backup",
            OperationKind::Backups => "backups",
            OperationKind::DrStatus => "dr.status",
            OperationKind::DrFailover => "dr.failover",
            OperationKind::Report => "report",
            OperationKind::BlueGreen => "bluegreen",
            OperationKind::BlueGreenRetire => "bluegreen.retire",
        }
    }

    pub fn parse(s: &str) -> Option<OperationKind> {
        OperationKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether rules for this operation are scoped to environments.
    pub fn is_environment_scoped(self) -> bool {
        matches!(
            self,
            OperationKind::Deploy
                | OperationKind::Rollback
                | OperationKind::Scale
                | OperationKind::Restart
                | OperationKind::Maintenance
                | OperationKind::Canary
                | OperationKind::Pods
                | OperationKind::Logs
                | OperationKind::Events
                | OperationKind::Describe
                | OperationKind::Top
                | OperationKind::PodDelete
                | OperationKind::Resources
                | OperationKind::Backup
                | OperationKind::Backups
                | OperationKind::DrFailover
                | OperationKind::BlueGreen
                | OperationKind::BlueGreenRetire
        )
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The human behind an identity. "Never the requester" and "each approver once" compare
/// persons, so one person with a Slack and a local identity is still one person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Person {
    /// A person named in `[people]`; they may have several identities.
    Named(String),
    /// An identity (`PLATFORM:ID`) that no `[people]` entry claims: its own person.
    Identity(String),
}

impl Person {
    /// The person's name, or the identity standing for them.
    pub fn as_str(&self) -> &str {
        match self {
            Person::Named(name) => name,
            Person::Identity(id) => id,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Person::Named(name) => Some(name),
            Person::Identity(_) => None,
        }
    }
}

/// Whether the groups an identity belongs to (chat user groups, server roles) could be
/// read when its roles were resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMembership {
    /// Read (or the configuration binds no roles to groups).
    #[default]
    Known,
    /// Could not be read in time: roles that come from groups are missing.
    Unreadable,
}

impl GroupMembership {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupMembership::Known => "known",
            GroupMembership::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking: the platform identity, the person it belongs to and the roles it
/// resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `slack`, `discord`, `local`.
    pub platform: String,
    /// The platform's user id (`U123`, a Discord snowflake, `alice`).
    pub user_id: String,
    pub display_name: String,
    /// Roles resolved from the configuration for this identity and its groups.
    pub roles: Vec<String>,
    /// The person this identity belongs to (`[people]`), or the identity itself.
    pub person: Person,
    #[serde(default)]
    pub groups: GroupMembership,
}

impl Actor {
    /// An actor that is its own person (no `[people]` entry claims it).
    pub fn new(platform: &str, user_id: &str, display_name: &str, roles: Vec<String>) -> Actor {
        Actor {
            platform: platform.to_string(),
            user_id: user_id.to_string(),
            display_name: display_name.to_string(),
            roles,
            person: Person::Identity(format!("{platform}:{user_id}")),
            groups: GroupMembership::Known,
        }
    }

    /// `PLATFORM:ID`, the form used in configuration and in the audit log.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.platform, self.user_id)
    }
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.has_role(r))
    }
}

/// Timestamps are always UTC.
pub type Timestamp = DateTime<Utc>;
