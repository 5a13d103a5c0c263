//! The configuration schema (DESIGN §5) and its validation. Loading (TOML, environment
//! overrides) happens in the daemon; what a valid configuration is lives here so that
//! `check-config` and the policy agree on it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod platforms;

pub use platforms::{Holds, IdentityKind, IdentityKinds, PlatformSections, RawValue};

use crate::grammar::{EnvironmentNames, ParseContext};
use crate::model::{OperationKind, Person, Severity};

/// A duration written as `90s`, `15m`, `24h`, `7d`, a combination such as `1h30m`, or in
/// words (`15 minutes`), as `humantime` reads them. Whole seconds only: every interval the
/// bot keeps is counted in seconds, so a fraction would be silently lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<HumanDuration, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("malformed duration {s:?}: {e} (use e.g. 90s, 15m, 24h, 7d)"))?;
        if d.subsec_nanos() != 0 {
            return Err(format!(
                "malformed duration {s:?}: use whole seconds (e.g. 90s, 15m)"
            ));
        }
        Ok(HumanDuration(d))
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0.as_secs() as i64)
    }
}

impl fmt::Display for HumanDuration {
    /// In the largest unit that divides it, as people write it in config: `24h`, `15m`, `7d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => f.write_str("0s"),
            _ if s.is_multiple_of(86_400) && s >= 2 * 86_400 => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => f.write_str(&crate::format::duration(self.as_chrono())),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0.as_secs()))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes written as `512`, `64KiB`, `1MiB` (also `KB`/`MB`, taken as powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("malformed size {s:?}: use e.g. 512, 64KiB, 1MiB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            "g" | "gb" | "gib" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "malformed size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB)"
                ));
            }
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            _ if b >= 1 << 20 && b.is_multiple_of(1 << 20) => write!(f, "{}MiB", b >> 20),
            _ if b >= 1 << 10 && b.is_multiple_of(1 << 10) => write!(f, "{}KiB", b >> 10),
            _ => write!(f, "{b}B"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare TOML integer is a byte count; a string carries its unit.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Sandbox,
    Kubernetes,
    GithubActions,
}

impl TargetKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Sandbox => "sandbox",
            TargetKind::Kubernetes => "kubernetes",
            TargetKind::GithubActions => "github-actions",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Filled from the table key when loading.
    #[serde(default, skip_serializing)]
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "default_target")]
    pub target: TargetKind,
    #[serde(default)]
    pub namespace: Option<String>,
    /// `deployment/erlmcp` or `statefulset/erlmcp`.
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    /// Image repository without tag, e.g. `ghcr.io/banyan-platform/erlmcp`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub health_url: Option<String>,
    #[serde(default)]
    pub version_url: Option<String>,
    /// Ingress that maintenance mode annotates (defaults to the workload's name).
    #[serde(default)]
    pub ingress: Option<String>,
    /// Flagger Canary name (defaults to the workload's name).
    #[serde(default)]
    pub canary: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub rollback_workflow: Option<String>,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// How long to follow a rollout before calling it failed.
    #[serde(default)]
    pub rollout_timeout: Option<HumanDuration>,
    /// Post-deploy guard: probe health after a deploy and roll back automatically.
    #[serde(default)]
    pub auto_rollback: Option<bool>,
    #[serde(default)]
    pub guard_window: Option<HumanDuration>,
    /// Sandbox: replicas the simulated workload starts with.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The CronJob `backup` runs now (`kubectl create job --from=cronjob/NAME`).
    #[serde(default)]
    pub backup_cronjob: Option<String>,
    /// DR failover: a Job from this CronJob in the environment's namespace.
    #[serde(default)]
    pub dr_cronjob: Option<String>,
    /// DR failover: this GitHub Actions workflow (when no `dr_cronjob` is set).
    #[serde(default)]
    pub dr_workflow: Option<String>,
    /// Blue-green: the Service whose `version: blue|green` selector picks the live colour;
    /// the colours are the Deployments `WORKLOAD-blue` and `WORKLOAD-green`.
    #[serde(default)]
    pub service: Option<String>,
    /// Blue-green: probed on the idle colour before traffic is switched to it; `{colour}`
    /// in it is replaced by that colour.
    #[serde(default)]
    pub green_health_url: Option<String>,
    /// Metric triggers of the post-deploy guard (see `triggers`).
    #[serde(default)]
    pub prometheus_url: Option<String>,
    #[serde(default)]
    pub error_rate_query: Option<String>,
    #[serde(default)]
    pub p95_query: Option<String>,
    #[serde(default)]
    pub error_rate_threshold: Option<f64>,
    #[serde(default)]
    pub error_rate_window: Option<HumanDuration>,
    #[serde(default)]
    pub p95_threshold: Option<HumanDuration>,
    #[serde(default)]
    pub p95_window: Option<HumanDuration>,
}

/// A workflow file name (`deploy.yml`) or a numeric workflow id: one path segment.
fn is_workflow_name(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 255
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn default_target() -> TargetKind {
    TargetKind::Sandbox
}

impl EnvironmentSpec {
    pub fn sandbox(name: &str, aliases: &[&str], replicas: u32) -> EnvironmentSpec {
        EnvironmentSpec {
            name: name.to_string(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            target: TargetKind::Sandbox,
            namespace: Some(format!("erlmcp-{name}")),
            workload: Some("deployment/erlmcp".into()),
            container: Some("erlmcp".into()),
            image: Some("ghcr.io/banyan-platform/erlmcp".into()),
            health_url: None,
            version_url: None,
            ingress: None,
            canary: None,
            workflow: None,
            rollback_workflow: None,
            git_ref: None,
            rollout_timeout: None,
            auto_rollback: None,
            guard_window: None,
            replicas: Some(replicas),
            backup_cronjob: None,
            dr_cronjob: None,
            dr_workflow: None,
            service: None,
            green_health_url: None,
            prometheus_url: None,
            error_rate_query: None,
            p95_query: None,
            error_rate_threshold: None,
            error_rate_window: None,
            p95_threshold: None,
            p95_window: None,
        }
    }

    /// The workload's kind and name: `("deployment", "erlmcp")`.
    pub fn workload_ref(&self) -> Option<(&str, &str)> {
        self.workload.as_deref()?.split_once('/')
    }

    /// Post-deploy guard: on by default for production.
    pub fn auto_rollback_enabled(&self) -> bool {
        self.auto_rollback.unwrap_or(self.name == "production")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    pub count: u32,
    pub from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PreconditionSpec {
    #[serde(default)]
    pub soak_from: Option<String>,
    #[serde(default)]
    pub soak: Option<HumanDuration>,
    #[serde(default)]
    pub ci_green: bool,
}

/// Break-glass for rollbacks: who may roll back at once during which incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassSpec {
    pub roles: Vec<String>,
    #[serde(default = "default_break_glass_severities")]
    pub during: Vec<Severity>,
}

fn default_break_glass_severities() -> Vec<Severity> {
    vec![Severity::P0, Severity::P1]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// An operation name: deploy, rollback, scale, restart, maintenance, canary, pods, logs,
    /// incident.declare, incident.update, incident.severity, incident.commander,
    /// incident.resolve, audit.
    pub operation: String,
    /// Environments the rule covers; empty or `["*"]` means all.
    #[serde(default)]
    pub environments: Vec<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub approvals: Option<ApprovalSpec>,
    #[serde(default)]
    pub preconditions: Option<PreconditionSpec>,
    #[serde(default)]
    pub break_glass: Option<BreakGlassSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSection {
    #[serde(default = "default_command")]
    pub command: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_database_url")]
    pub database_url: Secret,
    #[serde(default = "default_status_interval")]
    pub status_update_interval: HumanDuration,
    #[serde(default = "default_request_ttl")]
    pub request_ttl: HumanDuration,
    /// `human` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How long a process may go without a heartbeat before the requests it was carrying
    /// out are reconciled as interrupted by another one.
    #[serde(default = "default_owner_lease")]
    pub owner_lease: HumanDuration,
    /// Pause between the sandbox's simulated rollout steps (unset: a tenth of a second).
    #[serde(default)]
    pub sandbox_step: Option<HumanDuration>,
    /// When set, `/metrics`, `/healthz` and `/readyz` are served here and not on `listen`,
    /// so the address the ingress exposes carries only the chat endpoints.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Time a client has to send a request's headers, counted from the connection's start
    /// or the end of its previous response.
    #[serde(default = "default_http_header_timeout")]
    pub http_header_timeout: HumanDuration,
    /// Time a client has to send a whole request body once its headers are in.
    #[serde(default = "default_http_body_timeout")]
    pub http_body_timeout: HumanDuration,
    /// A connection with no request in progress for this long is closed.
    #[serde(default = "default_http_idle_timeout")]
    pub http_idle_timeout: HumanDuration,
    /// Connections served at once, per listener; more wait to be accepted.
    #[serde(default = "default_http_max_connections")]
    pub http_max_connections: u32,
    /// Largest request body accepted (`64KiB`, `1MiB`); larger ones get 413.
    #[serde(default = "default_http_max_body")]
    pub http_max_body: ByteSize,
    /// After SIGTERM, how long `/readyz` answers 503 while chat requests are still taken,
    /// so the load balancer stops sending before the listener closes.
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay: HumanDuration,
    /// Longest one database step may take, waits for another session's lock included,
    /// before it is given up and the command refused: a stuck lock fails commands instead of
    /// holding them for ever.
    #[serde(default = "default_database_timeout")]
    pub database_timeout: HumanDuration,
}

fn default_command() -> String {
    "/erlmcp".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_database_url() -> Secret {
    Secret::new("sqlite://erlmcp-bot.db")
}
fn default_status_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}
fn default_request_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}
fn default_owner_lease() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_log_format() -> String {
    "human".into()
}
fn default_http_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_http_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_http_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_http_max_connections() -> u32 {
    1024
}
fn default_http_max_body() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_shutdown_delay() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
/// `bot.database_timeout` when unset; also what a store opened without a config keeps.
pub const DEFAULT_DATABASE_TIMEOUT: Duration = Duration::from_secs(60);

fn default_database_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_DATABASE_TIMEOUT)
}

impl Default for BotSection {
    fn default() -> Self {
        BotSection {
            command: default_command(),
            listen: default_listen(),
            database_url: default_database_url(),
            status_update_interval: default_status_interval(),
            request_ttl: default_request_ttl(),
            log_format: default_log_format(),
            owner_lease: default_owner_lease(),
            sandbox_step: None,
            metrics_listen: None,
            http_header_timeout: default_http_header_timeout(),
            http_body_timeout: default_http_body_timeout(),
            http_idle_timeout: default_http_idle_timeout(),
            http_max_connections: default_http_max_connections(),
            http_max_body: default_http_max_body(),
            shutdown_delay: default_shutdown_delay(),
            database_timeout: default_database_timeout(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    #[serde(default)]
    pub token: Secret,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    /// Verifies `POST /github/webhook`. Without it, runs waiting on an environment gate
    /// are found by polling every `poll_interval`.
    #[serde(default)]
    pub webhook_secret: Secret,
    #[serde(default)]
    pub poll_interval: Option<HumanDuration>,
    /// `PLATFORM:CHANNEL` where a gate is posted when no deploy of this bot started its run.
    #[serde(default)]
    pub gate_channel: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    #[serde(default)]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySection {
    #[serde(default)]
    pub routing_key: Secret,
    #[serde(default)]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageSection {
    #[serde(default)]
    pub api_key: Secret,
    #[serde(default)]
    pub page_id: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
}

/// Signed checkpoints of the audit log, kept outside the database (DESIGN §5, `[audit]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Base64 Ed25519 seed (32 bytes), as `erlmcp-bot audit keygen` prints it. Unset: no
    /// checkpoints are written.
    #[serde(default)]
    pub signing_key: Secret,
    /// Base64 Ed25519 public key (32 bytes); when set it must match `signing_key`, so a
    /// verifier reading the configuration checks with the right key.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Append-only JSON-lines file every checkpoint is written to.
    #[serde(default)]
    pub checkpoint_file: Option<String>,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: HumanDuration,
    /// `PLATFORM:CHANNEL` that receives a short line per checkpoint.
    #[serde(default)]
    pub channel: Option<String>,
}

fn default_checkpoint_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(5 * 60))
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            signing_key: Secret::default(),
            public_key: None,
            checkpoint_file: None,
            checkpoint_every: default_checkpoint_every(),
            channel: None,
        }
    }
}

/// Whether `s` is standard padded base64 of exactly `bytes` bytes. The key's bytes are
/// decoded where they are used; this only lets `check-config` name a mangled paste.
pub fn is_base64_of_len(s: &str, bytes: usize) -> bool {
    let len = bytes.div_ceil(3) * 4;
    let pad = (3 - bytes % 3) % 3;
    s.len() == len
        && s[..len - pad]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && s[len - pad..].bytes().all(|b| b == b'=')
}

/// The whole configuration file.
///
/// Unknown keys are not refused here: a top-level key none of these fields claims is a chat
/// platform's section (`platforms`), and the wiring, which knows the platforms, reports a
/// name none of them claims just as an unknown field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub bot: BotSection,
    #[serde(default)]
    pub github: GithubSection,
    #[serde(default)]
    pub kubernetes: KubernetesSection,
    #[serde(default)]
    pub pagerduty: PagerDutySection,
    #[serde(default)]
    pub statuspage: StatusPageSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentSpec>,
    /// Person name to their identities (`slack:U1`, `discord:2`, `local:alice`): one
    /// person with several accounts counts once as requester and approver.
    #[serde(default)]
    pub people: BTreeMap<String, Vec<String>>,
    /// Role name to identities (`slack:U1`, `discord-role:3`, `local:alice`), or a person's
    /// name (all their identities); any other bare name means `local:NAME`.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The DR region, described like an environment (`dr status` reads it).
    #[serde(default)]
    pub dr: Option<EnvironmentSpec>,
    /// The daily health report.
    #[serde(default)]
    pub report: crate::runbook::ReportSection,
    #[serde(default)]
    pub leader: LeaderSection,
    /// The chat platforms' sections, as written.
    #[serde(flatten)]
    pub platforms: PlatformSections,
}

/// One thing wrong with a configuration, with the key path that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What a bare name in `[people]` and `[roles]` stands for (DESIGN §4, contract): `alice`
/// is `local:alice`, the name people use in the local chat and with `exec --as`.
pub const BARE_NAME_PREFIX: &str = "local";

/// Normalises an identity as written in config: a bare name means `local:NAME`.
pub fn normalize_identity(id: &str) -> String {
    if id.contains(':') {
        id.to_string()
    } else {
        format!("{BARE_NAME_PREFIX}:{id}")
    }
}

impl Config {
    /// The top-level keys the fields above claim; any other is a platform's section.
    pub const SECTIONS: &'static [&'static str] = &[
        "bot",
        "github",
        "kubernetes",
        "pagerduty",
        "statuspage",
        "audit",
        "environments",
        "people",
        "roles",
        "rules",
        "dr",
        "report",
        "leader",
    ];

    /// Fills derived fields (environment names) after loading.
    pub fn finish(mut self) -> Config {
        for (name, env) in self.environments.iter_mut() {
            env.name = name.clone();
        }
        if let Some(dr) = self.dr.as_mut() {
            dr.name = crate::runbook::DR_NAME.to_string();
        }
        self
    }

    pub fn parse_context(&self) -> ParseContext {
        ParseContext {
            command: self.bot.command.clone(),
            environments: self
                .environments
                .values()
                .map(|e| EnvironmentNames {
                    name: e.name.clone(),
                    aliases: e.aliases.clone(),
                })
                .collect(),
        }
    }

    pub fn environment(&self, name: &str) -> Option<&EnvironmentSpec> {
        self.environments.get(name)
    }

    /// The person an identity (`PLATFORM:ID`) belongs to: the `[people]` entry claiming it,
    /// else the identity itself.
    pub fn person_for(&self, identity: &str) -> Person {
        self.people
            .iter()
            .find(|(_, ids)| ids.iter().any(|i| normalize_identity(i) == identity))
            .map(|(name, _)| Person::Named(name.clone()))
            .unwrap_or_else(|| Person::Identity(identity.to_string()))
    }

    /// Every identity of a person (`PLATFORM:ID`).
    pub fn identities_of(&self, person: &Person) -> Vec<String> {
        match person {
            Person::Named(name) => self
                .people
                .get(name)
                .into_iter()
                .flatten()
                .map(|i| normalize_identity(i))
                .collect(),
            Person::Identity(id) => vec![id.clone()],
        }
    }

    /// The identities a role member stands for: a person's name means all their identities,
    /// any other entry one identity (a bare name is `local:NAME`).
    pub fn member_identities(&self, member: &str) -> Vec<String> {
        match self.people.get(member) {
            Some(ids) if !member.contains(':') => {
                ids.iter().map(|i| normalize_identity(i)).collect()
            }
            _ => vec![normalize_identity(member)],
        }
    }

    /// A role's members as identities, people expanded.
    pub fn role_identities(&self, role: &str) -> Vec<String> {
        self.roles
            .get(role)
            .into_iter()
            .flatten()
            .flat_map(|m| self.member_identities(m))
            .collect()
    }

    /// Roles bound to any of the given identities (already normalised `PLATFORM:ID`).
    pub fn roles_for(&self, identities: &[String]) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, members)| {
                members.iter().any(|m| {
                    self.member_identities(m)
                        .iter()
                        .any(|id| identities.contains(id))
                })
            })
            .map(|(role, _)| role.clone())
            .collect()
    }

    /// Every problem in the configuration outside the platforms' own sections, each with its
    /// key path; `identities` are the kinds the wired platforms own. Empty means valid.
    pub fn problems(&self, identities: &IdentityKinds) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(ConfigProblem { path, message });

        if !self.bot.command.starts_with('/') || self.bot.command.len() < 2 {
            problem(
                "bot.command".into(),
                format!("must start with '/', got {:?}", self.bot.command),
            );
        }
        if self.bot.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "bot.listen".into(),
                format!("not a socket address (host:port): {:?}", self.bot.listen),
            );
        }
        let db = self.bot.database_url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres:")
            || db.starts_with("postgresql:"))
        {
            problem(
                "bot.database_url".into(),
                "must start with sqlite: or postgres:".into(),
            );
        }
        if self.bot.status_update_interval.0.as_secs() < 60 {
            problem(
                "bot.status_update_interval".into(),
                "must be at least 1m".into(),
            );
        }
        if self.bot.request_ttl.0.as_secs() < 60 {
            problem("bot.request_ttl".into(), "must be at least 1m".into());
        }
        // A heartbeat every lease/3 needs whole seconds to stay meaningful.
        if self.bot.owner_lease.0.as_secs() < 3 {
            problem("bot.owner_lease".into(), "must be at least 3s".into());
        }
        if self.bot.sandbox_step.is_some_and(|s| s.0.as_secs() > 60) {
            problem("bot.sandbox_step".into(), "must be at most 1m".into());
        }
        if let Some(addr) = &self.bot.metrics_listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                problem(
                    "bot.metrics_listen".into(),
                    format!("not a socket address (host:port): {addr:?}"),
                );
            } else if addr == &self.bot.listen {
                problem(
                    "bot.metrics_listen".into(),
                    "must differ from bot.listen (leave it unset to serve both on one address)"
                        .into(),
                );
            }
        }
        for (key, value, min, max) in [
            ("http_header_timeout", self.bot.http_header_timeout, 1, 300),
            ("http_body_timeout", self.bot.http_body_timeout, 1, 3600),
            ("http_idle_timeout", self.bot.http_idle_timeout, 1, 3600),
            ("database_timeout", self.bot.database_timeout, 1, 600),
        ] {
            let secs = value.0.as_secs();
            if secs < min || secs > max {
                problem(
                    format!("bot.{key}"),
                    format!(
                        "must be between {min}s and {}, got {value}",
                        HumanDuration(Duration::from_secs(max))
                    ),
                );
            }
        }
        if !(1..=65_536).contains(&self.bot.http_max_connections) {
            problem(
                "bot.http_max_connections".into(),
                format!(
                    "must be between 1 and 65536, got {}",
                    self.bot.http_max_connections
                ),
            );
        }
        // Slack and GitHub payloads are a few KiB; a large limit only lets a client make the
        // bot buffer it.
        if !(1024..=64 * 1024 * 1024).contains(&self.bot.http_max_body.0) {
            problem(
                "bot.http_max_body".into(),
                format!(
                    "must be between 1KiB and 64MiB, got {}",
                    self.bot.http_max_body
                ),
            );
        }
        if !matches!(self.bot.log_format.as_str(), "human" | "json") {
            problem(
                "bot.log_format".into(),
                format!(
                    "must be \"human\" or \"json\", got {:?}",
                    self.bot.log_format
                ),
            );
        }

        let audit = &self.audit;
        if !audit.signing_key.is_empty() && !is_base64_of_len(audit.signing_key.expose(), 32) {
            problem(
                "audit.signing_key".into(),
                "must be 32 bytes in base64 (44 characters), as `erlmcp-bot audit keygen` prints it"
                    .into(),
            );
        }
        if let Some(k) = &audit.public_key
            && !is_base64_of_len(k, 32)
        {
            problem(
                "audit.public_key".into(),
                "must be 32 bytes in base64 (44 characters), as `erlmcp-bot audit keygen` prints it"
                    .into(),
            );
        }
        if audit.checkpoint_every.0.as_secs() < 10 {
            problem(
                "audit.checkpoint_every".into(),
                "must be at least 10s".into(),
            );
        }
        if audit.signing_key.is_empty()
            && (audit.checkpoint_file.is_some() || audit.channel.is_some())
        {
            problem(
                "audit.signing_key".into(),
                "is needed when audit.checkpoint_file or audit.channel is set: checkpoints are signed"
                    .into(),
            );
        }
        if !audit.signing_key.is_empty()
            && audit.checkpoint_file.is_none()
            && audit.channel.is_none()
        {
            problem(
                "audit.checkpoint_file".into(),
                "a signing key without audit.checkpoint_file or audit.channel writes checkpoints nowhere outside the database"
                    .into(),
            );
        }
        if let Some(f) = &audit.checkpoint_file
            && f.trim().is_empty()
        {
            problem("audit.checkpoint_file".into(), "must not be empty".into());
        }
        if let Some(c) = &audit.channel
            && !c
                .split_once(':')
                .is_some_and(|(p, id)| !p.is_empty() && !id.is_empty())
        {
            problem(
                "audit.channel".into(),
                format!("must be PLATFORM:CHANNEL_ID, got {c:?}"),
            );
        }

        if let Some(c) = &self.github.gate_channel
            && !c
                .split_once(':')
                .is_some_and(|(p, id)| !p.is_empty() && !id.is_empty())
        {
            problem(
                "github.gate_channel".into(),
                format!("must be PLATFORM:CHANNEL_ID, got {c:?}"),
            );
        }

        // Environment names and aliases must be unique across the deployment.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, env) in &self.environments {
            let base = format!("environments.{name}");
            for (i, n) in std::iter::once(name).chain(env.aliases.iter()).enumerate() {
                let lower = n.to_lowercase();
                if let Some(other) = seen.insert(lower.clone(), name.clone())
                    && &other != name
                {
                    problem(
                        if i == 0 {
                            base.clone()
                        } else {
                            format!("{base}.aliases")
                        },
                        format!("name {n:?} is already used by environment {other:?}"),
                    );
                }
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    problem(
                        base.clone(),
                        format!("name {n:?} may hold only letters, digits, '-' and '_'"),
                    );
                }
            }
            match env.target {
                TargetKind::Kubernetes => {
                    if env.namespace.is_none() {
                        problem(
                            format!("{base}.namespace"),
                            "required for target \"kubernetes\"".into(),
                        );
                    }
                    match env.workload_ref() {
                        Some(("deployment" | "statefulset", n)) if !n.is_empty() => {}
                        _ => problem(
                            format!("{base}.workload"),
                            "required for target \"kubernetes\", as deployment/NAME or statefulset/NAME"
                                .into(),
                        ),
                    }
                    if env.image.is_none() {
                        problem(
                            format!("{base}.image"),
                            "required for target \"kubernetes\"".into(),
                        );
                    }
                }
                TargetKind::GithubActions => {
                    if self.github.owner.as_deref().is_none_or(str::is_empty)
                        || self.github.repo.as_deref().is_none_or(str::is_empty)
                    {
                        problem(
                            format!("{base}.target"),
                            "target \"github-actions\" needs github.owner and github.repo".into(),
                        );
                    }
                    for (key, value, required) in [
                        ("workflow", &env.workflow, true),
                        ("rollback_workflow", &env.rollback_workflow, false),
                    ] {
                        match value {
                            None if required => problem(
                                format!("{base}.{key}"),
                                "required for target \"github-actions\"".into(),
                            ),
                            Some(w) if !is_workflow_name(w) => problem(
                                format!("{base}.{key}"),
                                format!("{w:?} is not a workflow file name (deploy.yml) or id"),
                            ),
                            _ => {}
                        }
                    }
                }
                TargetKind::Sandbox => {}
            }
            for (key, message) in crate::triggers::problems(env) {
                problem(format!("{base}.{key}"), message);
            }
            for (key, url) in [
                ("health_url", &env.health_url),
                ("version_url", &env.version_url),
            ] {
                if let Some(u) = url
                    && !(u.starts_with("http://") || u.starts_with("https://"))
                {
                    problem(
                        format!("{base}.{key}"),
                        format!("not an http(s) URL: {u:?}"),
                    );
                }
            }
        }

        let mut claimed: BTreeMap<String, &String> = BTreeMap::new();
        for (name, ids) in &self.people {
            let base = format!("people.{name}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                problem(
                    base.clone(),
                    format!("person name {name:?} may hold only letters, digits, '-', '_' and '.'"),
                );
            }
            if ids.is_empty() {
                problem(base.clone(), "a person needs at least one identity".into());
            }
            for (i, raw) in ids.iter().enumerate() {
                let id = normalize_identity(raw);
                if identities.of(&id).is_none_or(|k| k.holds != Holds::Person) {
                    problem(
                        format!("{base}[{i}]"),
                        format!(
                            "identity {raw:?} must be PLATFORM:ID with PLATFORM one of {} (a group is not a person)",
                            identities.prefixes(Some(Holds::Person))
                        ),
                    );
                    continue;
                }
                match claimed.get(&id) {
                    Some(other) if *other == name => problem(
                        format!("{base}[{i}]"),
                        format!("identity {id:?} is listed twice"),
                    ),
                    Some(other) => problem(
                        format!("{base}[{i}]"),
                        format!("identity {id:?} is already claimed by person {other:?}"),
                    ),
                    None => {
                        claimed.insert(id, name);
                    }
                }
            }
        }

        for (role, members) in &self.roles {
            for (i, m) in members.iter().enumerate() {
                if !m.contains(':') && self.people.contains_key(m) {
                    continue;
                }
                if identities.of(&normalize_identity(m)).is_none() {
                    problem(
                        format!("roles.{role}[{i}]"),
                        format!(
                            "identity {m:?} must be PLATFORM:ID with PLATFORM one of {}",
                            identities.prefixes(None)
                        ),
                    );
                }
            }
        }

        let role_known = |r: &String| self.roles.contains_key(r);
        for (i, rule) in self.rules.iter().enumerate() {
            let base = format!("rules[{i}]");
            let kind = OperationKind::parse(&rule.operation);
            if kind.is_none() {
                let known: Vec<&str> = OperationKind::ALL.iter().map(|k| k.as_str()).collect();
                problem(
                    format!("{base}.operation"),
                    format!(
                        "unknown operation {:?} (known: {})",
                        rule.operation,
                        known.join(", ")
                    ),
                );
            }
            for (j, e) in rule.environments.iter().enumerate() {
                if e != "*" && !self.environments.contains_key(e) {
                    problem(
                        format!("{base}.environments[{j}]"),
                        format!("unknown environment {e:?}"),
                    );
                }
            }
            if rule.roles.is_empty() {
                problem(
                    format!("{base}.roles"),
                    "a rule must grant at least one role".into(),
                );
            }
            for (j, r) in rule.roles.iter().enumerate() {
                if !role_known(r) {
                    problem(format!("{base}.roles[{j}]"), format!("unknown role {r:?}"));
                }
            }
            if let Some(a) = &rule.approvals {
                if a.count == 0 {
                    problem(
                        format!("{base}.approvals.count"),
                        "must be at least 1 (omit approvals instead)".into(),
                    );
                }
                if a.from.is_empty() {
                    problem(
                        format!("{base}.approvals.from"),
                        "must name at least one role".into(),
                    );
                }
                let mut approvers = std::collections::BTreeSet::new();
                for (j, r) in a.from.iter().enumerate() {
                    if !self.roles.contains_key(r) {
                        problem(
                            format!("{base}.approvals.from[{j}]"),
                            format!("unknown role {r:?}"),
                        );
                    }
                    // Counted as persons: two identities of one person approve once.
                    approvers.extend(self.role_identities(r).iter().map(|id| self.person_for(id)));
                }
                // Group identities may hold any number of people; count them as unbounded.
                let has_group = approvers.iter().any(|p| identities.is_group(p.as_str()));
                if !has_group && a.count as usize > approvers.len() && a.from.iter().all(role_known)
                {
                    problem(
                        format!("{base}.approvals.count"),
                        format!(
                            "needs {} approvals but only {} people can approve (roles {})",
                            a.count,
                            approvers.len(),
                            a.from.join(", ")
                        ),
                    );
                }
            }
            if let Some(p) = &rule.preconditions {
                if let Some(from) = &p.soak_from {
                    if !self.environments.contains_key(from) {
                        problem(
                            format!("{base}.preconditions.soak_from"),
                            format!("unknown environment {from:?}"),
                        );
                    }
                    if p.soak.is_none() {
                        problem(
                            format!("{base}.preconditions.soak"),
                            "required with soak_from".into(),
                        );
                    }
                }
                if p.soak.is_some() && p.soak_from.is_none() {
                    problem(
                        format!("{base}.preconditions.soak_from"),
                        "required with soak".into(),
                    );
                }
                if kind.is_some() && kind != Some(OperationKind::Deploy) {
                    problem(
                        format!("{base}.preconditions"),
                        "preconditions apply to deploy rules only".into(),
                    );
                }
                if p.ci_green && (self.github.owner.is_none() || self.github.repo.is_none()) {
                    let sandbox_only = rule.environments.iter().all(|e| {
                        self.environments
                            .get(e)
                            .is_some_and(|env| env.target == TargetKind::Sandbox)
                    }) && !rule.environments.is_empty();
                    if !sandbox_only {
                        problem(
                            format!("{base}.preconditions.ci_green"),
                            "needs github.owner and github.repo to look up CI".into(),
                        );
                    }
                }
            }
            if let Some(bg) = &rule.break_glass {
                if kind.is_some_and(|k| !crate::policy::break_glass_applies(k)) {
                    problem(
                        format!("{base}.break_glass"),
                        "break-glass applies to rollback and dr.failover rules only".into(),
                    );
                }
                for (j, r) in bg.roles.iter().enumerate() {
                    if !role_known(r) {
                        problem(
                            format!("{base}.break_glass.roles[{j}]"),
                            format!("unknown role {r:?}"),
                        );
                    }
                }
                if bg.during.contains(&Severity::P2) {
                    problem(
                        format!("{base}.break_glass.during"),
                        "break-glass is for P0 and P1 incidents only".into(),
                    );
                }
            }
        }

        if self.bot.shutdown_delay.0.as_secs() > 300 {
            problem("bot.shutdown_delay".into(), "must be at most 5m".into());
        }
        out.extend(self.leader.problems());
        out.extend(self.runbook_problems());
        out
    }
}

/// Who holds the long-lived chat connections (Slack Socket Mode, a Discord gateway) when
/// several replicas run: `[leader]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderElection {
    /// SQLite: this process is always the leader (one replica per file). PostgreSQL: a
    /// Kubernetes Lease when running in a cluster, else a PostgreSQL advisory lock.
    #[default]
    Auto,
    /// A `coordination.k8s.io/v1` Lease.
    Kubernetes,
    /// A session-level PostgreSQL advisory lock on a dedicated connection.
    Postgres,
    /// No election: this process is always the leader.
    None,
}

impl LeaderElection {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderElection::Auto => "auto",
            LeaderElection::Kubernetes => "kubernetes",
            LeaderElection::Postgres => "postgres",
            LeaderElection::None => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderSection {
    #[serde(default)]
    pub election: LeaderElection,
    /// The Lease's name (`kubernetes`).
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// The Lease's namespace (default: `POD_NAMESPACE`, else the service account's own).
    #[serde(default)]
    pub lease_namespace: Option<String>,
    /// How long a silent leader keeps the Lease; also the longest a handover takes when a
    /// leader dies without releasing it.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: HumanDuration,
    /// This process's name as a candidate (default: the host name, i.e. the pod name, and
    /// the process id).
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_lease_name() -> String {
    "erlmcp-bot".into()
}
fn default_lease_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}

impl Default for LeaderSection {
    fn default() -> Self {
        LeaderSection {
            election: LeaderElection::default(),
            lease_name: default_lease_name(),
            lease_namespace: None,
            lease_duration: default_lease_duration(),
            identity: None,
        }
    }
}

impl LeaderSection {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let secs = self.lease_duration.0.as_secs();
        if !(2..=300).contains(&secs) {
            out.push(ConfigProblem {
                path: "leader.lease_duration".into(),
                message: format!("must be between 2s and 5m, got {}", self.lease_duration),
            });
        }
        // A Kubernetes object name (DNS subdomain).
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        if !dns(&self.lease_name) {
            out.push(ConfigProblem {
                path: "leader.lease_name".into(),
                message: format!(
                    "must be a Kubernetes object name (lowercase letters, digits, '-', '.'), got {:?}",
                    self.lease_name
                ),
            });
        }
        if let Some(ns) = &self.lease_namespace
            && !dns(ns)
        {
            out.push(ConfigProblem {
                path: "leader.lease_namespace".into(),
                message: format!("must be a Kubernetes namespace name, got {ns:?}"),
            });
        }
        if self
            .identity
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            out.push(ConfigProblem {
                path: "leader.identity".into(),
                message: "must not be empty".into(),
            });
        }
        out
    }
}

#[cfg(test)]
mod duration_tests {
    use super::HumanDuration;
    use std::time::Duration;

    fn secs(s: &str) -> u64 {
        HumanDuration::parse(s).unwrap().0.as_secs()
    }

    #[test]
    fn every_spelling_the_shipped_configs_use_still_parses() {
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("24h"), 86_400);
        assert_eq!(secs("7d"), 7 * 86_400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs(" 15m "), 900);
    }

    #[test]
    fn words_and_spaces_are_read_too() {
        assert_eq!(secs("15 minutes"), 900);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("2 days"), 2 * 86_400);
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        for bad in ["", "15", "fifteen minutes", "15x", "m"] {
            let error = HumanDuration::parse(bad).unwrap_err();
            assert!(
                error.contains("duration"),
                "{bad:?} gave {error:?}, which does not name a duration"
            );
        }
        let error = HumanDuration::parse("1500ms").unwrap_err();
        assert!(error.contains("whole seconds"), "{error}");
    }

    #[test]
    fn display_and_serialisation_round_trip() {
        for text in ["30s", "15m", "1h", "24h", "7d", "1h30m"] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(HumanDuration::parse(&d.to_string()).unwrap(), d);
        }
        assert_eq!(
            HumanDuration(Duration::from_secs(86_400)).to_string(),
            "24h"
        );
    }
}

#[cfg(test)]
mod section_tests {
    use super::{Config, EnvironmentSpec, RawValue};

    #[test]
    fn sections_lists_every_key_the_fields_claim() {
        let cfg = Config {
            dr: Some(EnvironmentSpec::sandbox("dr", &[], 1)),
            ..Config::default()
        };
        let table = toml::Value::try_from(&cfg).expect("the configuration serialises");
        let mut keys: Vec<&str> = table
            .as_table()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let mut listed = Config::SECTIONS.to_vec();
        listed.sort();
        assert_eq!(keys, listed);
    }

    #[test]
    fn other_sections_are_kept_for_their_platform() {
        let cfg: Config = toml::from_str(
            "[bot]\ncommand = \"/ops\"\n[chat]\nenabled = true\ntoken = \"t0ken\"\nretries = 3\n",
        )
        .unwrap();
        assert_eq!(cfg.bot.command, "/ops");
        assert_eq!(cfg.platforms.names().collect::<Vec<_>>(), ["chat"]);
        let Some(RawValue::Table(chat)) = cfg.platforms.get("chat") else {
            panic!("{:?}", cfg.platforms)
        };
        assert_eq!(chat["enabled"], RawValue::Bool(true));
        assert_eq!(chat["token"], RawValue::String("t0ken".into()));
        assert_eq!(chat["retries"], RawValue::Int(3));
        assert!(!format!("{cfg:?}").contains("t0ken"));
    }
}
