//! What a target reports about an environment: the facts behind `status`, `pods` and the
//! periodic incident updates.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    pub desired: u32,
    pub updated: u32,
    pub ready: u32,
    pub available: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    /// Running, Pending, Failed, ...
    pub phase: String,
    pub ready: bool,
    pub restarts: u32,
    /// Why it is not ready: CrashLoopBackOff, OOMKilled, ImagePullBackOff, Unschedulable...
    pub reason: Option<String>,
    pub node: Option<String>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStatus {
    /// Flagger's phase: Initializing, Progressing, Promoting, Succeeded, Failed, ...
    pub phase: String,
    pub weight: u32,
    pub failed_checks: u32,
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    pub url: String,
    /// HTTP status code, or `None` when the request failed.
    pub code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

impl HealthProbe {
    pub fn is_healthy(&self) -> bool {
        matches!(self.code, Some(c) if (200..300).contains(&c))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvStatus {
    pub env: String,
    /// "sandbox", "kubernetes", "github-actions": replies say where the facts came from.
    pub target: String,
    pub version: Option<String>,
    pub image: Option<String>,
    pub replicas: Replicas,
    /// One line: "successfully rolled out", "2 out of 5 new replicas have been updated".
    pub rollout: String,
    /// Rollout conditions as `Type=Status (Reason): message`.
    pub conditions: Vec<String>,
    pub pods_not_ready: Vec<PodInfo>,
    pub canary: Option<CanaryStatus>,
    pub maintenance: Option<bool>,
    pub health: Option<HealthProbe>,
    /// What the version URL answered, when configured.
    pub reported_version: Option<String>,
}
