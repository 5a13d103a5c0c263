//! The runbook's automatic rollback triggers, evaluated after a production deploy.
//!
//! Of the runbook's four triggers, two can be judged from what the bot sees directly:
//! "3 consecutive health check failures" and "crash loop detected". Error rate and P95
//! latency need the metrics stack and are left to Flagger's canary analysis. The guard only
//! decides; the engine performs the rollback and writes the audit record.

use std::time::Duration;

use erlmcp_commands::config::EnvironmentSpec;
use futures::future::BoxFuture;

use crate::probe::probe;
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
    /// The default policy with the environment's `guard_window`, when set.
    pub fn for_env(env: &EnvironmentSpec) -> GuardPolicy {
        let mut p = GuardPolicy::default();
        if let Some(w) = env.guard_window {
            p.window = w.0;
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
    let rounds = policy.rounds();
    for round in 0..rounds {
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
