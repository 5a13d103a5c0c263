//! The runbook's troubleshooting, resources, backup, DR and daily-report vocabulary: the
//! values those commands carry, the facts targets report for them, and the texts they are
//! shown in. Pure, like the rest of this crate.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::EnvironmentSpec;
use crate::status::PodInfo;

/// A Kubernetes resource quantity (`500m`, `1Gi`, `2`, `1.5`, `1e3`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(String);

/// Suffixes of the quantity grammar with their multipliers (binary SI, decimal SI).
const SUFFIXES: [(&str, f64); 14] = [
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
];

impl Quantity {
    /// The Kubernetes quantity grammar, non-negative: digits with an optional fraction,
    /// then a binary-SI suffix (`Ki`…`Ei`), a decimal-SI one (`n u m k M G T P E`) or a
    /// decimal exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Option<Quantity> {
        quantity_value(s).map(|_| Quantity(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The amount in base units (cores, bytes).
    pub fn value(&self) -> f64 {
        quantity_value(&self.0).unwrap_or(0.0)
    }

    pub fn is_zero(&self) -> bool {
        self.value() == 0.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of a quantity string in base units, `None` when it is not one.
pub fn quantity_value(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let multiplier = if suffix.is_empty() {
        1.0
    } else if suffix == "E" {
        1e18
    } else if let Some((_, m)) = SUFFIXES.iter().find(|(x, _)| *x == suffix) {
        *m
    } else {
        let exp = suffix.strip_prefix(['e', 'E'])?;
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        10f64.powi(exp.parse::<i32>().ok()?)
    };
    let v = base * multiplier;
    v.is_finite().then_some(v)
}

/// The compute resources `resources` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceName {
    Cpu,
    Memory,
}

impl ResourceName {
    pub const ALL: [ResourceName; 2] = [ResourceName::Cpu, ResourceName::Memory];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceName> {
        ResourceName::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `cpu=500m,memory=1Gi`: one quantity per resource, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList(pub Vec<(ResourceName, Quantity)>);

impl ResourceList {
    /// Reads `cpu=500m,memory=1Gi`. `what` names the option in errors (`--limits`).
    pub fn parse(text: &str, what: &str) -> Result<ResourceList, String> {
        let mut out: Vec<(ResourceName, Quantity)> = Vec::new();
        for part in text.split(',') {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!(
                    "invalid {what} {:?} (expected e.g. cpu=500m,memory=1Gi)",
                    part
                ));
            };
            let name = name.trim().to_lowercase();
            let resource = ResourceName::parse(&name).ok_or_else(|| {
                format!("unknown resource {name:?} in {what} (expected cpu or memory)")
            })?;
            let quantity = Quantity::parse(value.trim()).ok_or_else(|| {
                format!(
                    "invalid quantity {:?} for {name} in {what} (expected e.g. 500m, 2, 512Mi, 4Gi)",
                    value.trim()
                )
            })?;
            if out.iter().any(|(r, _)| *r == resource) {
                return Err(format!("{name} given twice in {what}"));
            }
            out.push((resource, quantity));
        }
        Ok(ResourceList(out))
    }

    pub fn get(&self, name: ResourceName) -> Option<&Quantity> {
        self.0.iter().find(|(r, _)| *r == name).map(|(_, q)| q)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ResourceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(r, q)| format!("{}={q}", r.as_str()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// What `resources` changes, as `kubectl set resources --requests … --limits …` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

impl ResourceChange {
    /// Refuses an empty change and a request above its limit (the API server would too,
    /// after the approvals were spent).
    pub fn validate(&self) -> Result<(), String> {
        if self.requests.is_empty() && self.limits.is_empty() {
            return Err("missing --requests or --limits (e.g. --limits memory=4Gi)".into());
        }
        for r in ResourceName::ALL {
            if let (Some(req), Some(lim)) = (self.requests.get(r), self.limits.get(r))
                && !lim.is_zero()
                && req.value() > lim.value()
            {
                return Err(format!(
                    "{} request {req} is above its limit {lim}",
                    r.as_str()
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for ResourceChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.requests.is_empty() {
            parts.push(format!("requests {}", self.requests));
        }
        if !self.limits.is_empty() {
            parts.push(format!("limits {}", self.limits));
        }
        f.write_str(&parts.join(", "))
    }
}

/// How an environment fails over to the DR region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FailoverAction {
    /// A Job created from this CronJob in the environment's namespace
    /// (`kubectl create job --from=cronjob/NAME`).
    Job { cronjob: String },
    /// A GitHub Actions workflow dispatched with the environment as input.
    Workflow { workflow: String },
}

impl FailoverAction {
    pub fn describe(&self) -> String {
        match self {
            FailoverAction::Job { cronjob } => format!("a Job from CronJob {cronjob}"),
            FailoverAction::Workflow { workflow } => format!("workflow {workflow}"),
        }
    }
}

impl EnvironmentSpec {
    /// The configured DR failover action: `dr_cronjob` or `dr_workflow`.
    pub fn failover_action(&self) -> Option<FailoverAction> {
        match (&self.dr_cronjob, &self.dr_workflow) {
            (Some(cronjob), _) => Some(FailoverAction::Job {
                cronjob: cronjob.clone(),
            }),
            (None, Some(workflow)) => Some(FailoverAction::Workflow {
                workflow: workflow.clone(),
            }),
            (None, None) => None,
        }
    }
}

/// The message the status page shows while an environment fails over (runbook P0 step 5).
pub const FAILOVER_STATUS: &str = "Failing over to DR region";

/// The name the `[dr]` region goes by in replies and in the sandbox.
pub const DR_NAME: &str = "dr";

/// `[report]`: the daily health report, posted at `time` (UTC) in `channel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// `PLATFORM:CHANNEL_ID`; unset: the report is only given on demand (`report`).
    #[serde(default)]
    pub channel: Option<String>,
    /// `HH:MM` in UTC; default 08:00.
    #[serde(default)]
    pub time: Option<String>,
}

impl ReportSection {
    /// Hour and minute of the daily post.
    pub fn time_of_day(&self) -> Result<(u32, u32), String> {
        let Some(t) = self.time.as_deref() else {
            return Ok((8, 0));
        };
        let parsed = t.split_once(':').and_then(|(h, m)| {
            let ok = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
            (ok(h) && ok(m)).then(|| (h.parse::<u32>().ok(), m.parse::<u32>().ok()))
        });
        match parsed {
            Some((Some(h), Some(m))) if h < 24 && m < 60 => Ok((h, m)),
            _ => Err(format!("must be HH:MM (UTC, 00:00 to 23:59), got {t:?}")),
        }
    }

    /// The first report time strictly after `now`.
    pub fn next_after(&self, now: crate::Timestamp) -> Option<crate::Timestamp> {
        let (h, m) = self.time_of_day().ok()?;
        let today = now.date_naive().and_hms_opt(h, m, 0)?.and_utc();
        Some(if today > now {
            today
        } else {
            today + chrono::Duration::days(1)
        })
    }
}

impl crate::config::Config {
    /// Problems in the `[dr]` and `[report]` sections and the environments' backup and
    /// failover keys.
    pub(crate) fn runbook_problems(&self) -> Vec<crate::config::ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| {
            out.push(crate::config::ConfigProblem { path, message })
        };
        for (name, env) in &self.environments {
            let base = format!("environments.{name}");
            if env.dr_cronjob.is_some() && env.dr_workflow.is_some() {
                problem(
                    format!("{base}.dr_workflow"),
                    "set dr_cronjob or dr_workflow, not both".into(),
                );
            }
            for (key, value) in [
                ("backup_cronjob", &env.backup_cronjob),
                ("dr_cronjob", &env.dr_cronjob),
            ] {
                if let Some(v) = value
                    && !is_object_name(v)
                {
                    problem(
                        format!("{base}.{key}"),
                        format!("not a Kubernetes object name: {v:?}"),
                    );
                }
            }
        }
        if let Some(dr) = &self.dr {
            if dr.target == crate::config::TargetKind::Kubernetes
                && (dr.namespace.is_none() || dr.workload.is_none())
            {
                problem(
                    "dr".into(),
                    "needs namespace and workload for target \"kubernetes\"".into(),
                );
            }
            if let Some(u) = &dr.health_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                problem("dr.health_url".into(), format!("not an http(s) URL: {u:?}"));
            }
        }
        if let Err(e) = self.report.time_of_day() {
            problem("report.time".into(), e);
        }
        if let Some(c) = &self.report.channel
            && !c
                .split_once(':')
                .is_some_and(|(p, id)| !p.is_empty() && !id.is_empty())
        {
            problem(
                "report.channel".into(),
                format!("must be PLATFORM:CHANNEL_ID, got {c:?}"),
            );
        }
        out
    }
}

/// A DNS-1123 subdomain short enough to leave room for a Job name suffix.
fn is_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 52
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && edge(b.first())
        && edge(b.last())
}

// ----- facts reported by targets ------------------------------------------------------------

/// One event of the namespace, as `kubectl get events` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// `Normal` or `Warning`.
    pub kind: String,
    pub reason: String,
    pub message: String,
    /// `Pod/erlmcp-6c8f9-abcde`.
    pub object: String,
    /// RFC 3339; the last time it was seen.
    pub last_seen: Option<String>,
    pub count: u32,
}

impl EventInfo {
    pub fn is_warning(&self) -> bool {
        self.kind == "Warning"
    }
}

/// Orders events the way `events` shows them: warnings first, then newest first.
pub fn sort_events(events: &mut [EventInfo]) {
    events.sort_by(|a, b| {
        b.is_warning()
            .cmp(&a.is_warning())
            .then_with(|| b.last_seen.cmp(&a.last_seen))
    });
}

/// One container of a described pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDescription {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub restarts: u32,
    /// `Running since …`, `Waiting: CrashLoopBackOff`, `Terminated: Completed (exit 0)`.
    pub state: String,
    /// `Terminated: OOMKilled (exit 137) at …`.
    pub last_state: Option<String>,
    pub requests: Vec<(String, String)>,
    pub limits: Vec<(String, String)>,
}

/// What `describe ENV POD` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDescription {
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    pub phase: String,
    pub started: Option<String>,
    /// `Ready=False (ContainersNotReady)`.
    pub conditions: Vec<String>,
    pub containers: Vec<ContainerDescription>,
    /// The pod's own events, newest first.
    pub events: Vec<EventInfo>,
}

/// CPU and memory of one pod, summed over its containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodUsage {
    pub name: String,
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    /// The memory limit of its containers, when every container has one.
    pub memory_limit: Option<f64>,
}

/// One run of a backup CronJob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub name: String,
    /// RFC 3339.
    pub started: Option<String>,
    pub finished: Option<String>,
    pub state: JobState,
    /// Created by hand (`cronjob.kubernetes.io/instantiate: manual`) rather than on schedule.
    pub manual: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }
}

// ----- reply texts ------------------------------------------------------------------------

/// Events shown at most, so a noisy namespace still fits one message.
pub const MAX_EVENTS_SHOWN: usize = 20;

pub fn events_text(env: &str, target: &str, events: &[EventInfo]) -> String {
    if events.is_empty() {
        return format!("{env} [{target}]: no events");
    }
    let warnings = events.iter().filter(|e| e.is_warning()).count();
    let mut out = format!(
        "{env} [{target}]: {} events, {warnings} warnings (warnings first, newest first)",
        events.len()
    );
    for e in events.iter().take(MAX_EVENTS_SHOWN) {
        out.push_str(&format!("\n{}", event_line(e)));
    }
    if events.len() > MAX_EVENTS_SHOWN {
        out.push_str(&format!("\n… {} more", events.len() - MAX_EVENTS_SHOWN));
    }
    out
}

fn event_line(e: &EventInfo) -> String {
    let count = if e.count > 1 {
        format!(" (x{})", e.count)
    } else {
        String::new()
    };
    format!(
        "{} {} {} {}: {}{count}",
        e.last_seen.as_deref().unwrap_or("-"),
        e.kind,
        e.reason,
        e.object,
        e.message
    )
}

fn pairs(p: &[(String, String)]) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn describe_text(target: &str, d: &PodDescription) -> String {
    let mut out = format!("pod {} [{target}] in {}", d.name, d.namespace);
    out.push_str(&format!("\nPhase: {}", d.phase));
    if let Some(n) = &d.node {
        out.push_str(&format!("\nNode: {n}"));
    }
    if let Some(s) = &d.started {
        out.push_str(&format!("\nStarted: {s}"));
    }
    if !d.conditions.is_empty() {
        out.push_str(&format!("\nConditions: {}", d.conditions.join(", ")));
    }
    for c in &d.containers {
        out.push_str(&format!(
            "\nContainer {} ({}): {}, ready={}, restarts={}",
            c.name, c.image, c.state, c.ready, c.restarts
        ));
        if let Some(last) = &c.last_state {
            out.push_str(&format!("\n  Last state: {last}"));
        }
        out.push_str(&format!("\n  Limits: {}", pairs(&c.limits)));
        out.push_str(&format!("\n  Requests: {}", pairs(&c.requests)));
    }
    if d.events.is_empty() {
        out.push_str("\nEvents: none");
    } else {
        out.push_str("\nEvents:");
        for e in d.events.iter().take(10) {
            out.push_str(&format!("\n  {}", event_line(e)));
        }
    }
    out
}

/// `250m`, `1.5` cores.
pub fn cpu_text(cores: f64) -> String {
    if cores < 1.0 {
        format!("{:.0}m", cores * 1000.0)
    } else {
        format!("{:.2}", cores)
    }
}

/// `512Mi`, `1.5Gi`.
pub fn memory_text(bytes: f64) -> String {
    let mi = bytes / 1_048_576.0;
    if mi >= 1024.0 {
        format!("{:.1}Gi", mi / 1024.0)
    } else {
        format!("{:.0}Mi", mi)
    }
}

pub fn top_text(env: &str, target: &str, usage: Option<&[PodUsage]>) -> String {
    let Some(usage) = usage else {
        return format!(
            "{env} [{target}]: pod metrics are not available (metrics-server is not installed)"
        );
    };
    if usage.is_empty() {
        return format!("{env} [{target}]: no pod metrics yet");
    }
    let mut out = format!("{env} [{target}]: NAME CPU MEMORY");
    for u in usage {
        let share = u
            .memory_limit
            .filter(|l| *l > 0.0)
            .map(|l| {
                format!(
                    " ({:.0}% of {} limit)",
                    u.memory / l * 100.0,
                    memory_text(l)
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "\n{} {} {}{share}",
            u.name,
            cpu_text(u.cpu),
            memory_text(u.memory)
        ));
    }
    out
}

pub fn job_line(j: &JobRun) -> String {
    let mut line = format!(
        "{} {} {}",
        j.name,
        j.state.as_str(),
        if j.manual { "manual" } else { "scheduled" }
    );
    if let Some(s) = &j.started {
        line.push_str(&format!(", started {s}"));
    }
    if let Some(f) = &j.finished {
        line.push_str(&format!(", finished {f}"));
    }
    if let Some(d) = &j.detail {
        line.push_str(&format!(" ({d})"));
    }
    line
}

pub fn backups_text(env: &str, target: &str, cronjob: &str, runs: &[JobRun]) -> String {
    if runs.is_empty() {
        return format!("{env} [{target}]: no runs of CronJob {cronjob} yet");
    }
    let mut out = format!("{env} [{target}]: recent runs of CronJob {cronjob}, newest first");
    for r in runs {
        out.push_str(&format!("\n{}", job_line(r)));
    }
    out
}

/// The pods line of a report or `dr status`: `3 pods, 3 ready, 2 restarts`.
pub fn pods_summary(pods: &[PodInfo]) -> String {
    let ready = pods.iter().filter(|p| p.ready).count();
    let restarts: u64 = pods.iter().map(|p| p.restarts as u64).sum();
    let mut line = format!("{} pods, {ready} ready, {restarts} restarts", pods.len());
    let troubled: Vec<String> = pods
        .iter()
        .filter(|p| !p.ready || p.reason.is_some())
        .map(|p| {
            format!(
                "{} {}",
                p.name,
                p.reason.as_deref().unwrap_or(p.phase.as_str())
            )
        })
        .collect();
    if !troubled.is_empty() {
        line.push_str(&format!(" ({})", troubled.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_follow_the_kubernetes_grammar() {
        for (q, v) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("1Gi", 1_073_741_824.0),
            ("512Mi", 536_870_912.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("250000000n", 0.25),
            (".5", 0.5),
        ] {
            let parsed = Quantity::parse(q).unwrap_or_else(|| panic!("{q}"));
            assert!((parsed.value() - v).abs() < 1e-9, "{q}");
        }
        for bad in [
            "", "-1", "1GB", "1gi", "abc", "1..2", "1.2.3", "m", "1e", "1e1234", "Gi",
        ] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn resource_lists_name_what_is_wrong() {
        let l = ResourceList::parse("cpu=500m,memory=1Gi", "--requests").unwrap();
        assert_eq!(l.to_string(), "cpu=500m,memory=1Gi");
        assert_eq!(
            ResourceList::parse("gpu=1", "--limits").unwrap_err(),
            "unknown resource \"gpu\" in --limits (expected cpu or memory)"
        );
        assert!(
            ResourceList::parse("memory=4GB", "--limits")
                .unwrap_err()
                .contains("invalid quantity \"4GB\" for memory")
        );
        assert!(
            ResourceList::parse("cpu=1,cpu=2", "--limits")
                .unwrap_err()
                .contains("twice")
        );
        assert!(ResourceList::parse("cpu", "--limits").is_err());
    }

    #[test]
    fn a_request_above_its_limit_is_refused() {
        let change = ResourceChange {
            requests: ResourceList::parse("memory=8Gi", "--requests").unwrap(),
            limits: ResourceList::parse("memory=4Gi", "--limits").unwrap(),
        };
        assert_eq!(
            change.validate().unwrap_err(),
            "memory request 8Gi is above its limit 4Gi"
        );
        assert!(ResourceChange::default().validate().is_err());
    }

    #[test]
    fn the_report_is_due_at_the_next_time_of_day() {
        use chrono::TimeZone;
        let t = |d, h, m| chrono::Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        let r = ReportSection {
            channel: None,
            time: Some("08:00".into()),
        };
        assert_eq!(r.next_after(t(2, 7, 59)), Some(t(2, 8, 0)));
        assert_eq!(r.next_after(t(2, 8, 0)), Some(t(3, 8, 0)));
        assert_eq!(r.next_after(t(2, 9, 0)), Some(t(3, 8, 0)));
        assert_eq!(ReportSection::default().time_of_day(), Ok((8, 0)));
        for bad in ["8:00", "24:00", "08:60", "0800", "08:00:00"] {
            let r = ReportSection {
                channel: None,
                time: Some(bad.into()),
            };
            assert!(r.time_of_day().is_err(), "{bad}");
            assert_eq!(r.next_after(t(2, 9, 0)), None);
        }
    }

    #[test]
    fn check_config_names_runbook_mistakes_by_key() {
        let mut cfg = crate::config::Config::default();
        let mut prod = EnvironmentSpec::sandbox("production", &["prod"], 3);
        prod.dr_cronjob = Some("erlmcp-dr-failover".into());
        prod.dr_workflow = Some("dr.yml".into());
        prod.backup_cronjob = Some("Backup_Job".into());
        cfg.environments.insert("production".into(), prod);
        let mut dr = EnvironmentSpec::sandbox(DR_NAME, &[], 2);
        dr.target = crate::config::TargetKind::Kubernetes;
        dr.workload = None;
        cfg.dr = Some(dr);
        cfg.report = ReportSection {
            channel: Some("C0OPS".into()),
            time: Some("25:00".into()),
        };
        let paths: Vec<String> = cfg.runbook_problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "environments.production.dr_workflow",
                "environments.production.backup_cronjob",
                "dr",
                "report.time",
                "report.channel"
            ]
        );
        let ok = EnvironmentSpec::sandbox("staging", &[], 1);
        assert_eq!(ok.failover_action(), None);
    }

    #[test]
    fn events_sort_warnings_first_then_newest() {
        let e = |kind: &str, at: &str| EventInfo {
            kind: kind.into(),
            reason: "R".into(),
            message: "m".into(),
            object: "Pod/p".into(),
            last_seen: Some(at.into()),
            count: 1,
        };
        let mut events = vec![
            e("Normal", "2026-11-02T10:00:00Z"),
            e("Warning", "2026-11-02T08:00:00Z"),
            e("Warning", "2026-11-02T09:00:00Z"),
        ];
        sort_events(&mut events);
        let order: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.last_seen.as_deref().unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                ("Warning", "2026-11-02T09:00:00Z"),
                ("Warning", "2026-11-02T08:00:00Z"),
                ("Normal", "2026-11-02T10:00:00Z")
            ]
        );
    }
}
