//! Deployment targets: where an approved operation is carried out.

use async_trait::async_trait;
use erlmcp_commands::bluegreen::BlueGreenStatus;
use erlmcp_commands::config::EnvironmentSpec;
use erlmcp_commands::plan::TargetPlan;
use erlmcp_commands::runbook::{EventInfo, JobRun, PodDescription, PodUsage, ResourceChange};
use erlmcp_commands::{BlueGreenAction, CanaryAction, RequestId, Strategy, Version};
use serde::{Deserialize, Serialize};

// The status digest lives in the pure domain crate so replies can be rendered there.
pub use erlmcp_commands::status::{CanaryStatus, EnvStatus, HealthProbe, PodInfo, Replicas};

/// A change to carry out on an environment's workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetAction {
    Deploy {
        version: Version,
        strategy: Strategy,
    },
    /// `None` means the previous revision (`kubectl rollout undo`).
    Rollback {
        version: Option<Version>,
    },
    Scale {
        replicas: u32,
    },
    Restart,
    Maintenance {
        on: bool,
    },
    Canary {
        action: CanaryAction,
    },
    /// Deletes one of the workload's pods; `force` means grace period 0.
    DeletePod {
        pod: String,
        force: bool,
    },
    /// `kubectl set resources` on the environment's container.
    SetResources {
        change: ResourceChange,
    },
    /// Runs the environment's `backup_cronjob` now and follows the Job.
    Backup,
    /// Runs the environment's configured failover action.
    DrFailover,
    /// `switch` and `retire`; `status` is a read.
    BlueGreen {
        action: BlueGreenAction,
    },
}

/// Who and why, so the target can record a change cause.
#[derive(Debug, Clone, Default)]
pub struct ExecContext {
    pub request_id: Option<RequestId>,
    /// `PLATFORM:ID` of the requester.
    pub requester: String,
    pub reason: Option<String>,
}

/// Receives progress lines while an operation runs ("3 of 5 new replicas updated").
/// Implementations must not block: the engine forwards lines to chat asynchronously.
pub trait Progress: Send + Sync {
    fn report(&self, line: String);
}

/// A progress sink that drops everything, for callers that do not show progress.
pub struct NoProgress;
impl Progress for NoProgress {
    fn report(&self, _line: String) {}
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// One line for chat: "production now runs v3.0.1 (5/5 ready)".
    pub summary: String,
    pub version_before: Option<String>,
    pub version_after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The request is understood but cannot be done in the workload's current state
    /// (no rollout history, paused deployment, ...). Shown to the user as is.
    #[error("{0}")]
    Refused(String),
    /// The change was made but the rollout failed (ProgressDeadlineExceeded, timeout).
    #[error("rollout failed: {0}")]
    RolloutFailed(String),
    #[error("{0} is not supported by the {1} target")]
    Unsupported(&'static str, &'static str),
    /// The target could not be reached or answered unexpectedly.
    #[error("target unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Target: Send + Sync {
    /// "sandbox", "kubernetes", "github-actions".
    fn kind(&self) -> &'static str;

    async fn execute(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError>;

    async fn status(&self, env: &EnvironmentSpec) -> Result<EnvStatus, TargetError>;

    /// Follows a rollout that is under way on the workload (one an earlier process started
    /// and did not live to see finish) until it completes. `Ok(None)` when nothing is
    /// rolling out.
    async fn follow_rollout(
        &self,
        _env: &EnvironmentSpec,
        _progress: &dyn Progress,
    ) -> Result<Option<String>, TargetError> {
        Err(TargetError::Unsupported("following a rollout", self.kind()))
    }

    async fn pods(&self, _env: &EnvironmentSpec) -> Result<Vec<PodInfo>, TargetError> {
        Err(TargetError::Unsupported("pods", self.kind()))
    }

    /// What `execute` would change, without changing anything (`--dry-run`).
    async fn plan(
        &self,
        _env: &EnvironmentSpec,
        _action: &TargetAction,
        _ctx: &ExecContext,
    ) -> Result<TargetPlan, TargetError> {
        Err(TargetError::Unsupported("a dry run", self.kind()))
    }

    /// The live colour of a blue-green environment and what each colour runs.
    async fn blue_green_status(
        &self,
        _env: &EnvironmentSpec,
    ) -> Result<BlueGreenStatus, TargetError> {
        Err(TargetError::Unsupported("blue-green", self.kind()))
    }

    /// A log tail; `pod = None` picks the first pod that is not ready, else the first pod.
    async fn logs(
        &self,
        _env: &EnvironmentSpec,
        _pod: Option<&str>,
        _previous: bool,
        _tail: u32,
    ) -> Result<String, TargetError> {
        Err(TargetError::Unsupported("logs", self.kind()))
    }

    /// The namespace's events, unsorted.
    async fn events(&self, _env: &EnvironmentSpec) -> Result<Vec<EventInfo>, TargetError> {
        Err(TargetError::Unsupported("events", self.kind()))
    }

    /// One of the workload's pods in detail, with its own events.
    async fn describe_pod(
        &self,
        _env: &EnvironmentSpec,
        _pod: &str,
    ) -> Result<PodDescription, TargetError> {
        Err(TargetError::Unsupported("describe", self.kind()))
    }

    /// CPU and memory per pod; `Ok(None)` when the cluster serves no pod metrics.
    async fn top(&self, _env: &EnvironmentSpec) -> Result<Option<Vec<PodUsage>>, TargetError> {
        Err(TargetError::Unsupported("top", self.kind()))
    }

    /// Recent runs of the environment's backup CronJob, newest first.
    async fn backups(&self, _env: &EnvironmentSpec) -> Result<Vec<JobRun>, TargetError> {
        Err(TargetError::Unsupported("backups", self.kind()))
    }
}
