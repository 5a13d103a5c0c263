//! The runbook's automatic rollback triggers, evaluated after a production deploy.
//!
//! Two of the runbook's four triggers are judged from what the bot sees directly:
//! "3 consecutive health check failures" and "crash loop detected". The other two, "error
//! rate > 5% for 5 minutes" and "P95 latency > 10s for 5 minutes", are PromQL queries the
//! environment configures, read from Prometheus every round. The guard only decides; the
//! engine performs the rollback and writes the audit record.

use std::time::Duration;

use erlmcp_commands::config::EnvironmentSpec;
use erlmcp_commands::triggers::{Breach, BreachTracker, Criterion, MetricKind, MetricTriggers};
use futures::future::BoxFuture;

use crate::probe::probe;
use crate::prometheus::{PromError, PrometheusClient};
use crate::target::{PodInfo, Target, TargetError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPolicy {
    /// How long to keep watching after the rollout completed.
    pub window: Duration,
    /// Time between two rounds of checks.
    pub interval: Duration,
    /// Failed health probes in a row that trigger a rollback.
    pub consecutive_failures: u32,
    pub probe_timeout: Duration,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            window: Duration::from_secs(5 * 60),
            interval: Duration::from_secs(10),
            consecutive_failures: 3,
            probe_timeout: Duration::from_secs(5),
        }
    }
}

impl GuardPolicy {
    /// The default policy with the environment's `guard_window`, when set. With metric
    /// triggers the window is stretched past the longest of theirs, or a breach could
    /// never last long enough to count.
    pub fn for_env(env: &EnvironmentSpec) -> GuardPolicy {
        let mut p = GuardPolicy::default();
        if let Some(w) = env.guard_window {
            p.window = w.0;
        }
        if let Some(m) = MetricTriggers::for_env(env) {
            p.window = p.window.max(m.longest_window() + 2 * p.interval);
        }
        p
    }

    fn rounds(&self) -> u64 {
        let interval = self.interval.as_millis().max(1);
        (self.window.as_millis() / interval).max(1) as u64
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    Healthy,
    /// Evidence lines go into the chat reply and the audit record as they are.
    Rollback {
        evidence: Vec<String>,
    },
}

/// Probes `env.health_url` and looks for crash-looping pods every `policy.interval` for
/// `policy.window`. Returns at the first trigger. `sleep` is injected so callers decide how
/// time passes (tests pass a future that returns at once).
pub async fn watch_after_deploy(
    target: &dyn Target,
    env: &EnvironmentSpec,
    http: &reqwest::Client,
    policy: &GuardPolicy,
    sleep: impl Fn(Duration) -> BoxFuture<'static, ()>,
) -> GuardVerdict {
    let threshold = policy.consecutive_failures.max(1) as usize;
    // Only the current run of failures counts: one healthy answer resets it.
    let mut failures: Vec<String> = Vec::new();
    let metrics = MetricTriggers::for_env(env);
    let mut breaches: Vec<BreachTracker> = metrics
        .as_ref()
        .map(|m| vec![BreachTracker::default(); m.triggers.len()])
        .unwrap_or_default();
    let rounds = policy.rounds();
    for round in 0..rounds {
        if let Some(m) = &metrics
            && let Some(evidence) = check_metrics(http, m, &mut breaches, policy).await
        {
            return GuardVerdict::Rollback { evidence };
        }
        if let Some(url) = env.health_url.as_deref() {
            let p = probe(http, url, policy.probe_timeout).await;
            if p.is_healthy() {
                failures.clear();
            } else {
                let what = match (p.code, &p.error) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "no answer".to_string(),
                };
                failures.push(format!(
                    "{} health check {} failed: {what} after {} ms",
                    now(),
                    p.url,
                    p.latency_ms
                ));
                if failures.len() >= threshold {
                    let mut evidence = vec![format!(
                        "{} consecutive health check failures",
                        failures.len()
                    )];
                    evidence.append(&mut failures);
                    return GuardVerdict::Rollback { evidence };
                }
            }
        }

        let crashing: Vec<PodInfo> = current_pods(target, env)
            .await
            .into_iter()
            .filter(|p| {
                p.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("CrashLoopBackOff"))
            })
            .collect();
        if !crashing.is_empty() {
            let mut evidence = vec!["crash loop detected".to_string()];
            evidence.extend(crashing.iter().map(|p| {
                format!(
                    "{} pod {} is in {} ({} restarts)",
                    now(),
                    p.name,
                    p.reason.as_deref().unwrap_or("CrashLoopBackOff"),
                    p.restarts
                )
            }));
            evidence.append(&mut failures);
            return GuardVerdict::Rollback { evidence };
        }

        if round + 1 < rounds {
            sleep(policy.interval).await;
        }
    }
    GuardVerdict::Healthy
}

/// One round of the metric triggers: the evidence of the first that has breached for its
/// whole window. A query that fails or has no data is logged and changes nothing: not
/// seeing is not a reason to roll back.
async fn check_metrics(
    http: &reqwest::Client,
    m: &MetricTriggers,
    breaches: &mut [BreachTracker],
    policy: &GuardPolicy,
) -> Option<Vec<String>> {
    let prom = PrometheusClient::new(http, &m.prometheus_url, policy.probe_timeout);
    for (trigger, breach) in m.triggers.iter().zip(breaches.iter_mut()) {
        let sample = match prom.query(&trigger.query).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(metric = trigger.kind.as_str(), error = %e, "guard could not read a metric");
                continue;
            }
        };
        if let Breach::Triggered { seconds } = breach.observe(trigger, sample.at, sample.value) {
            return Some(vec![
                format!("{} (Prometheus)", trigger.describe()),
                format!(
                    "{} {} at {}, above {} for {:.0}s: {}",
                    now(),
                    trigger.kind.as_str(),
                    trigger.kind.unit().show(sample.value),
                    trigger.kind.unit().show(trigger.threshold),
                    seconds,
                    trigger.query
                ),
            ]);
        }
    }
    None
}

/// The runbook's success criteria, checked once after a deploy's guard window: ready pods,
/// health 200, error rate < 1%, P95 < 500 ms, no crash loops, canary within thresholds.
pub async fn success_criteria(
    target: &dyn Target,
    env: &EnvironmentSpec,
    http: &reqwest::Client,
    probe_timeout: Duration,
) -> Vec<Criterion> {
    let mut out = Vec::new();
    let status = target.status(env).await;
    match &status {
        Ok(s) => {
            let r = &s.replicas;
            let ok = r.ready >= r.desired && s.pods_not_ready.is_empty();
            out.push(Criterion::new(
                "all pods ready",
                Some(ok),
                format!(
                    "{}/{} ready, {} not ready",
                    r.ready,
                    r.desired,
                    s.pods_not_ready.len()
                ),
            ));
        }
        Err(e) => out.push(Criterion::new(
            "all pods ready",
            None,
            format!("status unavailable: {e}"),
        )),
    }
    match env.health_url.as_deref() {
        Some(url) => {
            let p = probe(http, url, probe_timeout).await;
            let detail = match (p.code, &p.error) {
                (Some(code), _) => format!("HTTP {code} in {} ms", p.latency_ms),
                (None, Some(e)) => e.clone(),
                (None, None) => "no answer".into(),
            };
            out.push(Criterion::new(
                "health 200",
                Some(p.code == Some(200)),
                detail,
            ));
        }
        None => out.push(Criterion::new(
            "health 200",
            None,
            "no health_url configured",
        )),
    }
    let metrics = MetricTriggers::for_env(env);
    for kind in [MetricKind::ErrorRate, MetricKind::P95] {
        let unit = kind.unit();
        let name = format!("{} < {}", kind.as_str(), unit.show(kind.success_bound()));
        let trigger = metrics
            .as_ref()
            .and_then(|m| m.triggers.iter().find(|t| t.kind == kind).map(|t| (m, t)));
        let Some((m, trigger)) = trigger else {
            out.push(Criterion::new(name, None, "no query configured"));
            continue;
        };
        let prom = PrometheusClient::new(http, &m.prometheus_url, probe_timeout);
        out.push(match prom.query(&trigger.query).await {
            Ok(s) => Criterion::new(
                name,
                Some(s.value < kind.success_bound()),
                unit.show(s.value),
            ),
            Err(PromError::NoData) => Criterion::new(name, None, "no data"),
            Err(e) => Criterion::new(name, None, e.to_string()),
        });
    }
    let crashing: Vec<String> = current_pods(target, env)
        .await
        .into_iter()
        .filter(|p| {
            p.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("CrashLoopBackOff"))
        })
        .map(|p| p.name)
        .collect();
    out.push(Criterion::new(
        "no crash loops",
        Some(crashing.is_empty()),
        if crashing.is_empty() {
            "none".to_string()
        } else {
            format!("crash-looping: {}", crashing.join(", "))
        },
    ));
    match status.ok().and_then(|s| s.canary) {
        Some(c) => out.push(Criterion::new(
            "canary within thresholds",
            Some(c.failed_checks == 0 && c.phase != "Failed"),
            format!("{}, {} failed checks", c.phase, c.failed_checks),
        )),
        None => out.push(Criterion::new(
            "canary within thresholds",
            None,
            "no canary",
        )),
    }
    out
}

/// Pods from the target's pod listing, or from its status when it cannot list pods. A
/// target that cannot answer is not evidence of a bad deploy, so errors yield no pods.
async fn current_pods(target: &dyn Target, env: &EnvironmentSpec) -> Vec<PodInfo> {
    match target.pods(env).await {
        Ok(p) => p,
        Err(TargetError::Unsupported(..)) => match target.status(env).await {
            Ok(s) => s.pods_not_ready,
            Err(e) => {
                tracing::warn!(env = %env.name, error = %e, "guard could not read status");
                Vec::new()
            }
        },
        Err(e) => {
            tracing::warn!(env = %env.name, error = %e, "guard could not list pods");
            Vec::new()
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
