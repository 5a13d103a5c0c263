//! The sandbox target: simulated development, staging and production workloads kept in the
//! database, so successive `exec` calls (and several replicas) see one world. Every reply
//! it produces says "sandbox".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_adapters::ci::{CiStatus, CiStatusSource};
use erlmcp_adapters::target::{
    CanaryStatus, EnvStatus, ExecContext, Outcome, PodInfo, Progress, Replicas, Target,
    TargetAction, TargetError,
};
use erlmcp_commands::config::EnvironmentSpec;
use erlmcp_commands::runbook::{
    ContainerDescription, EventInfo, FailoverAction, JobRun, JobState, PodDescription, PodUsage,
    Quantity, ResourceChange, ResourceList, ResourceName,
};
use erlmcp_commands::{CanaryAction, RequestId, Strategy, Timestamp, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::clock::Clock;
use crate::store::{DeploymentRecord, SandboxRow, Store};

mod bluegreen;
mod plan;

use bluegreen::SimBlueGreen;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Workload {
    version: String,
    /// Versions of earlier revisions, oldest first: what `rollback` walks back through.
    history: Vec<String>,
    revision: u32,
    replicas: u32,
    maintenance: bool,
    canary: Option<SimCanary>,
    restarted_at: Option<Timestamp>,
    /// A rollout under way, saved at every step so that a process dying mid-rollout leaves
    /// it visible (`status`) and resumable (`follow_rollout`), as a cluster would.
    #[serde(default)]
    rolling: Option<SimRollout>,
    /// Set by the first blue-green deploy: the two colours and which one is live.
    #[serde(default)]
    blue_green: Option<SimBlueGreen>,
    /// Requests and limits set with `resources`; `None` means the defaults below.
    #[serde(default)]
    resources: Option<ResourceChange>,
    /// Backup Jobs run, oldest first.
    #[serde(default)]
    backups: Vec<SimJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SimJob {
    name: String,
    at: Timestamp,
    manual: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SimRollout {
    version: String,
    updated: u32,
    end: RolloutEnd,
}

/// What the workload becomes once a rollout's last replica is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RolloutEnd {
    /// A new revision runs `version` (deploy, rollback to a named version).
    NewRevision,
    /// Back to the previous revision, which leaves the history (`rollback` without version).
    PreviousRevision,
    /// Same version, pods replaced.
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SimCanary {
    version: String,
    phase: String,
    weight: u32,
    paused: bool,
}

/// What the sandbox starts from: production one release behind staging, and staging's
/// release soaked long enough that a newcomer can walk a production deploy at once.
fn seed(env: &str, replicas: u32) -> (Workload, Vec<(String, i64)>) {
    let (version, history, deployed_hours_ago): (&str, &[&str], i64) = match env {
        "production" => ("v2.9.5", &["v2.9.4"], 72),
        "staging" => ("v3.0.0", &["v2.9.5"], 48),
        _ => ("v3.0.0", &["v2.9.5"], 50),
    };
    let w = Workload {
        version: version.to_string(),
        history: history.iter().map(|s| s.to_string()).collect(),
        revision: history.len() as u32 + 1,
        replicas,
        maintenance: false,
        canary: None,
        restarted_at: None,
        rolling: None,
        resources: None,
        backups: Vec::new(),
        blue_green: None,
    };
    (w, vec![(version.to_string(), deployed_hours_ago)])
}

pub struct SandboxTarget {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Pause between simulated rollout steps; zero in tests.
    step: Duration,
    /// One change at a time per environment within this process.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The final state of each request's change, not yet written: see [`FinalState`].
    finals: std::sync::Mutex<HashMap<RequestId, FinalState>>,
}

/// The state a request's change leaves, handed to the engine to be written with the
/// request's outcome in one transaction, so the operation costs one commit fewer and a
/// crash never leaves a changed world beside an unrecorded outcome. It holds the
/// environment's lock until then: the next change there must read this state, not the one
/// before it.
pub struct FinalState {
    pub row: SandboxRow,
    _lock: OwnedMutexGuard<()>,
}

impl SandboxTarget {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, step: Duration) -> SandboxTarget {
        SandboxTarget {
            store,
            clock,
            step,
            locks: Mutex::new(HashMap::new()),
            finals: std::sync::Mutex::default(),
        }
    }

    /// Takes the state `execute` left unwritten for request `id`. The caller writes it
    /// with the outcome and drops it afterwards, which lets the next change in.
    pub fn take_final(&self, id: RequestId) -> Option<FinalState> {
        self.finals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    async fn lock(&self, env: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(env.to_string())
            .or_default()
            .clone()
    }

    async fn load(&self, env: &EnvironmentSpec) -> Result<Workload, TargetError> {
        let row = self
            .store
            .sandbox_get(&env.name)
            .await
            .map_err(|e| TargetError::Unavailable(e.to_string()))?;
        match row {
            Some(r) => serde_json::from_str(&r.state_json).map_err(|e| {
                TargetError::Unavailable(format!("sandbox state of {}: {e}", env.name))
            }),
            None => self.seed_env(env).await,
        }
    }

    /// Creates the environment's simulated workload on first use, with its history. The
    /// writes go side by side so the store commits them together: at a fresh start every
    /// environment is seeded before the bot is ready, and each commit is a sync.
    async fn seed_env(&self, env: &EnvironmentSpec) -> Result<Workload, TargetError> {
        let (w, deployments) = seed(&env.name, env.replicas.unwrap_or(3));
        let now = self.clock.now();
        let history =
            futures::future::try_join_all(deployments.into_iter().map(|(version, hours_ago)| {
                self.store.record_deployment(DeploymentRecord {
                    environment: env.name.clone(),
                    version,
                    kind: "deploy".into(),
                    succeeded: true,
                    request_id: None,
                    at: now - chrono::Duration::hours(hours_ago),
                })
            }));
        let (history, saved) = futures::future::join(history, self.save(&env.name, &w)).await;
        history.map_err(|e| TargetError::Unavailable(e.to_string()))?;
        saved?;
        Ok(w)
    }

    fn row(&self, env: &str, w: &Workload) -> SandboxRow {
        SandboxRow {
            environment: env.to_string(),
            state_json: serde_json::to_string(w).expect("workload serialises"),
            updated_at: self.clock.now(),
        }
    }

    async fn save(&self, env: &str, w: &Workload) -> Result<(), TargetError> {
        self.store
            .sandbox_put(self.row(env, w))
            .await
            .map_err(|e| TargetError::Unavailable(e.to_string()))
    }

    /// Seeds every sandbox environment that has no state yet.
    pub async fn seed_all(&self, envs: &[&EnvironmentSpec]) -> Result<(), TargetError> {
        // Side by side: the environments' first writes share commits (one fsync for all)
        // instead of queueing one behind another at start-up.
        futures::future::try_join_all(envs.iter().map(|env| self.load(env))).await?;
        Ok(())
    }

    /// Rolls `version` out replica by replica, saving each step, then settles the workload.
    async fn roll(
        &self,
        env: &str,
        w: &mut Workload,
        version: &str,
        end: RolloutEnd,
        progress: &dyn Progress,
    ) -> Result<(), TargetError> {
        progress.report(format!("sandbox: rolling out {version} on {env}"));
        w.rolling = Some(SimRollout {
            version: version.to_string(),
            updated: 0,
            end,
        });
        self.save(env, w).await?;
        self.continue_roll(env, w, progress).await
    }

    /// Takes a saved rollout from where it stands to its end.
    async fn continue_roll(
        &self,
        env: &str,
        w: &mut Workload,
        progress: &dyn Progress,
    ) -> Result<(), TargetError> {
        let replicas = w.replicas;
        let Some(mut r) = w.rolling.clone() else {
            return Ok(());
        };
        for i in r.updated + 1..=replicas {
            if !self.step.is_zero() {
                tokio::time::sleep(self.step).await;
            }
            r.updated = i;
            w.rolling = Some(r.clone());
            self.save(env, w).await?;
            progress.report(format!("sandbox: {i} of {replicas} new replicas updated"));
        }
        progress.report(format!("sandbox: {replicas} of {replicas} available"));
        w.rolling = None;
        match r.end {
            RolloutEnd::NewRevision => {
                w.history.push(std::mem::replace(&mut w.version, r.version));
                w.revision += 1;
            }
            RolloutEnd::PreviousRevision => {
                w.history.pop();
                w.history.push(std::mem::replace(&mut w.version, r.version));
                w.revision += 1;
            }
            RolloutEnd::Restart => w.restarted_at = Some(self.clock.now()),
        }
        Ok(())
    }
}

fn summary(env: &str, w: &Workload) -> String {
    format!(
        "sandbox: {env} runs {} ({}/{} ready, revision {})",
        w.version, w.replicas, w.replicas, w.revision
    )
}

#[async_trait]
impl Target for SandboxTarget {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    async fn execute(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let lock = self.lock(&env.name).await;
        let guard = lock.lock_owned().await;
        let mut w = self.load(env).await?;
        let before = w.version.clone();
        let name = env.name.as_str();
        let switch_back = w
            .blue_green
            .as_ref()
            .and_then(bluegreen::SimBlueGreen::back);
        let summary_line = match action {
            TargetAction::Deploy {
                version,
                strategy: Strategy::BlueGreen,
            } => {
                self.blue_green_deploy(name, &mut w, version.as_str(), progress)
                    .await?
            }
            TargetAction::BlueGreen { action } => bluegreen::act(name, &mut w, *action, progress)?,
            // A blue-green environment rolls back by sending traffic to the other colour.
            TargetAction::Rollback { version: None } if switch_back.is_some() => {
                let to = switch_back.unwrap_or(erlmcp_commands::Colour::Blue);
                bluegreen::act(
                    name,
                    &mut w,
                    erlmcp_commands::BlueGreenAction::Switch(to),
                    progress,
                )?
            }
            TargetAction::Deploy { version, strategy } => {
                if *strategy == Strategy::Canary {
                    w.canary = Some(SimCanary {
                        version: version.to_string(),
                        phase: "Progressing".into(),
                        weight: 10,
                        paused: false,
                    });
                    progress.report(format!(
                        "sandbox: canary of {version} on {name} at 10% traffic"
                    ));
                    format!(
                        "sandbox: canary of {version} started on {name} at 10% (promote with `canary {name} promote`)"
                    )
                } else if w.version == version.as_str() {
                    format!("sandbox: {name} already runs {version}; nothing to do")
                } else {
                    self.roll(
                        name,
                        &mut w,
                        version.as_str(),
                        RolloutEnd::NewRevision,
                        progress,
                    )
                    .await?;
                    summary(name, &w)
                }
            }
            TargetAction::Rollback { version } => {
                let target = match version {
                    Some(v) => v.to_string(),
                    None => match w.history.last() {
                        Some(prev) => prev.clone(),
                        None => {
                            return Err(TargetError::Refused(format!(
                                "sandbox: no rollout history found for {name}"
                            )));
                        }
                    },
                };
                if target == w.version {
                    format!("sandbox: {name} already runs {target}; skipped rollback")
                } else {
                    let end = if version.is_none() {
                        RolloutEnd::PreviousRevision
                    } else {
                        RolloutEnd::NewRevision
                    };
                    self.roll(name, &mut w, &target, end, progress).await?;
                    summary(name, &w)
                }
            }
            TargetAction::Scale { replicas } => {
                let from = w.replicas;
                w.replicas = *replicas;
                progress.report(format!("sandbox: scaling {name} from {from} to {replicas}"));
                format!("sandbox: {name} scaled from {from} to {replicas} replicas")
            }
            TargetAction::Restart => {
                let version = w.version.clone();
                self.roll(name, &mut w, &version, RolloutEnd::Restart, progress)
                    .await?;
                format!(
                    "sandbox: {name} restarted ({} replicas replaced)",
                    w.replicas
                )
            }
            TargetAction::Maintenance { on } => {
                w.maintenance = *on;
                format!(
                    "sandbox: maintenance mode {} on {name}",
                    if *on { "ON" } else { "off" }
                )
            }
            TargetAction::Canary { action } => canary(name, &mut w, *action)?,
            TargetAction::DeletePod { pod, force } => {
                if !pod_names(&w).contains(pod) {
                    return Err(TargetError::Refused(format!(
                        "sandbox: pod {pod} is not part of {name} (pods: {})",
                        pod_names(&w).join(", ")
                    )));
                }
                format!(
                    "sandbox: pod {pod} in {name} deleted{}; the deployment replaces it",
                    if *force {
                        " at once (grace period 0)"
                    } else {
                        ""
                    }
                )
            }
            TargetAction::SetResources { change } => {
                let mut now = resources_of(&w);
                for (r, q) in &change.requests.0 {
                    set_quantity(&mut now.requests, *r, q);
                }
                for (r, q) in &change.limits.0 {
                    set_quantity(&mut now.limits, *r, q);
                }
                w.resources = Some(now);
                let version = w.version.clone();
                self.roll(name, &mut w, &version, RolloutEnd::Restart, progress)
                    .await?;
                format!("sandbox: {name} container erlmcp now has {change}")
            }
            TargetAction::Backup => {
                let cronjob = env.backup_cronjob.as_deref().ok_or_else(|| {
                    TargetError::Refused(format!(
                        "sandbox: environment {name} has no backup_cronjob configured"
                    ))
                })?;
                let job = self.sim_job(cronjob, &mut w);
                progress.report(format!(
                    "sandbox: backup: Job {job} created from CronJob {cronjob}"
                ));
                format!("sandbox: backup of {name}: Job {job} from CronJob {cronjob} succeeded")
            }
            TargetAction::DrFailover => match env.failover_action() {
                Some(FailoverAction::Job { cronjob }) => {
                    let job = format!("{cronjob}-{}", self.clock.now().timestamp());
                    progress.report(format!(
                        "sandbox: DR failover: Job {job} created from CronJob {cronjob}"
                    ));
                    format!(
                        "sandbox: DR failover of {name}: Job {job} from CronJob {cronjob} succeeded; traffic now goes to the DR region"
                    )
                }
                Some(FailoverAction::Workflow { workflow }) => format!(
                    "sandbox: DR failover of {name}: workflow {workflow} run; traffic now goes to the DR region"
                ),
                None => {
                    return Err(TargetError::Refused(format!(
                        "sandbox: environment {name} has no dr_cronjob or dr_workflow configured"
                    )));
                }
            },
        };
        match ctx.request_id {
            // The engine takes it right after this returns and writes it with the outcome.
            Some(id) => {
                let row = self.row(name, &w);
                self.finals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, FinalState { row, _lock: guard });
            }
            None => self.save(name, &w).await?,
        }
        Ok(Outcome {
            summary: summary_line,
            version_before: Some(before),
            version_after: Some(w.version.clone()),
        })
    }

    async fn status(&self, env: &EnvironmentSpec) -> Result<EnvStatus, TargetError> {
        let w = self.load(env).await?;
        let (updated, rollout) = match &w.rolling {
            Some(r) => (
                r.updated,
                format!(
                    "rolling out {}: {} of {} new replicas updated",
                    r.version, r.updated, w.replicas
                ),
            ),
            None => (
                w.replicas,
                format!("successfully rolled out (revision {})", w.revision),
            ),
        };
        Ok(EnvStatus {
            env: env.name.clone(),
            target: "sandbox".into(),
            version: Some(w.version.clone()),
            image: env.image.as_ref().map(|i| format!("{i}:{}", w.version)),
            replicas: Replicas {
                desired: w.replicas,
                updated,
                ready: w.replicas,
                available: w.replicas,
            },
            rollout,
            conditions: vec![],
            pods_not_ready: vec![],
            canary: w.canary.as_ref().map(|c| CanaryStatus {
                phase: c.phase.clone(),
                weight: c.weight,
                failed_checks: 0,
                paused: c.paused,
            }),
            maintenance: Some(w.maintenance),
            health: None,
            reported_version: None,
        })
    }

    async fn follow_rollout(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Option<String>, TargetError> {
        let lock = self.lock(&env.name).await;
        let _guard = lock.lock().await;
        let mut w = self.load(env).await?;
        if w.rolling.is_none() {
            return Ok(None);
        }
        self.continue_roll(&env.name, &mut w, progress).await?;
        self.save(&env.name, &w).await?;
        Ok(Some(summary(&env.name, &w)))
    }

    async fn plan(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        _ctx: &ExecContext,
    ) -> Result<erlmcp_commands::plan::TargetPlan, TargetError> {
        let w = self.load(env).await?;
        plan::plan(env, &w, action, self.clock.now())
    }

    async fn blue_green_status(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<erlmcp_commands::bluegreen::BlueGreenStatus, TargetError> {
        let w = self.load(env).await?;
        Ok(bluegreen::status(env, &w))
    }

    async fn pods(&self, env: &EnvironmentSpec) -> Result<Vec<PodInfo>, TargetError> {
        let w = self.load(env).await?;
        Ok(pod_names(&w)
            .into_iter()
            .map(|name| PodInfo {
                name,
                phase: "Running".into(),
                ready: true,
                restarts: 0,
                reason: None,
                node: Some("sandbox".into()),
                age_seconds: None,
            })
            .collect())
    }

    async fn logs(
        &self,
        env: &EnvironmentSpec,
        pod: Option<&str>,
        _previous: bool,
        tail: u32,
    ) -> Result<String, TargetError> {
        let w = self.load(env).await?;
        let pod = pod
            .map(str::to_string)
            .unwrap_or_else(|| format!("erlmcp-{}-0", w.revision));
        let lines = [
            format!("sandbox: {pod} started erlmcp {}", w.version),
            "sandbox: listening on 0.0.0.0:8080".to_string(),
            "sandbox: health check ok".to_string(),
        ];
        let skip = lines.len().saturating_sub(tail as usize);
        Ok(lines[skip..].join("\n"))
    }

    async fn events(&self, env: &EnvironmentSpec) -> Result<Vec<EventInfo>, TargetError> {
        self.events_of(env).await
    }

    async fn describe_pod(
        &self,
        env: &EnvironmentSpec,
        pod: &str,
    ) -> Result<PodDescription, TargetError> {
        let w = self.load(env).await?;
        if !pod_names(&w).iter().any(|p| p == pod) {
            return Err(TargetError::Refused(format!(
                "sandbox: pod {pod} is not part of {} (pods: {})",
                env.name,
                pod_names(&w).join(", ")
            )));
        }
        let res = resources_of(&w);
        let image = format!("{}:{}", env.image.as_deref().unwrap_or("erlmcp"), w.version);
        let events = self
            .events_of(env)
            .await?
            .into_iter()
            .filter(|e| e.object == format!("Pod/{pod}"))
            .collect();
        Ok(PodDescription {
            name: pod.to_string(),
            namespace: env
                .namespace
                .clone()
                .unwrap_or_else(|| format!("erlmcp-{}", env.name)),
            node: Some("sandbox".into()),
            phase: "Running".into(),
            started: None,
            conditions: vec!["Ready=True".into(), "PodScheduled=True".into()],
            containers: vec![ContainerDescription {
                name: "erlmcp".into(),
                image,
                ready: true,
                restarts: 0,
                state: "Running (sandbox)".into(),
                last_state: None,
                requests: pairs(&res.requests),
                limits: pairs(&res.limits),
            }],
            events,
        })
    }

    async fn top(&self, env: &EnvironmentSpec) -> Result<Option<Vec<PodUsage>>, TargetError> {
        let w = self.load(env).await?;
        let limit = resources_of(&w)
            .limits
            .get(ResourceName::Memory)
            .map(|q| q.value());
        Ok(Some(
            pod_names(&w)
                .into_iter()
                .enumerate()
                .map(|(i, name)| PodUsage {
                    name,
                    cpu: 0.12 + 0.01 * i as f64,
                    memory: (300 + 10 * i as u64) as f64 * 1_048_576.0,
                    memory_limit: limit,
                })
                .collect(),
        ))
    }

    async fn backups(&self, env: &EnvironmentSpec) -> Result<Vec<JobRun>, TargetError> {
        let w = self.load(env).await?;
        Ok(w.backups
            .iter()
            .rev()
            .map(|j| JobRun {
                name: j.name.clone(),
                started: Some(j.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                finished: Some(j.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                state: JobState::Succeeded,
                manual: j.manual,
                detail: Some("sandbox".into()),
            })
            .collect())
    }
}

fn canary(env: &str, w: &mut Workload, action: CanaryAction) -> Result<String, TargetError> {
    let Some(c) = w.canary.as_mut() else {
        return match action {
            CanaryAction::Status => Ok(format!("sandbox: no canary on {env}")),
            _ => Err(TargetError::Refused(format!(
                "sandbox: no canary in progress on {env} (start one with `deploy {env} VERSION --strategy canary`)"
            ))),
        };
    };
    let line = match action {
        CanaryAction::Status => format!(
            "sandbox: canary of {} on {env}: {} at {}%{}",
            c.version,
            c.phase,
            c.weight,
            if c.paused { ", paused" } else { "" }
        ),
        CanaryAction::Pause => {
            c.paused = true;
            format!(
                "sandbox: canary of {} on {env} paused at {}%",
                c.version, c.weight
            )
        }
        CanaryAction::Resume => {
            c.paused = false;
            c.weight = (c.weight + 40).min(100);
            format!(
                "sandbox: canary of {} on {env} resumed, now at {}%",
                c.version, c.weight
            )
        }
        CanaryAction::Abort => {
            let v = c.version.clone();
            w.canary = None;
            format!(
                "sandbox: canary of {v} on {env} aborted; all traffic back on {}",
                w.version
            )
        }
        CanaryAction::Promote => {
            let v = c.version.clone();
            w.canary = None;
            w.history.push(std::mem::replace(&mut w.version, v.clone()));
            w.revision += 1;
            format!("sandbox: canary of {v} promoted on {env}; {env} runs {v}")
        }
    };
    Ok(line)
}

fn pod_names(w: &Workload) -> Vec<String> {
    (0..w.replicas)
        .map(|i| format!("erlmcp-{}-{i}", w.revision))
        .collect()
}

/// The runbook's starting point: requests 500m / 1Gi, limits 1 / 2Gi.
fn resources_of(w: &Workload) -> ResourceChange {
    w.resources.clone().unwrap_or_else(|| ResourceChange {
        requests: ResourceList::parse("cpu=500m,memory=1Gi", "requests").unwrap_or_default(),
        limits: ResourceList::parse("cpu=1,memory=2Gi", "limits").unwrap_or_default(),
    })
}

fn set_quantity(list: &mut ResourceList, r: ResourceName, q: &Quantity) {
    match list.0.iter_mut().find(|(x, _)| *x == r) {
        Some(entry) => entry.1 = q.clone(),
        None => list.0.push((r, q.clone())),
    }
}

fn pairs(list: &ResourceList) -> Vec<(String, String)> {
    list.0
        .iter()
        .map(|(r, q)| (r.as_str().to_string(), q.to_string()))
        .collect()
}

impl SandboxTarget {
    /// Records a backup Job as run and succeeded; returns its name.
    fn sim_job(&self, cronjob: &str, w: &mut Workload) -> String {
        let at = self.clock.now();
        let name = format!("{cronjob}-{}", at.timestamp());
        w.backups.push(SimJob {
            name: name.clone(),
            at,
            manual: true,
        });
        // Keep the state row small: a month of daily backups.
        if w.backups.len() > 30 {
            w.backups.remove(0);
        }
        name
    }

    async fn events_of(&self, env: &EnvironmentSpec) -> Result<Vec<EventInfo>, TargetError> {
        let w = self.load(env).await?;
        // The sandbox keeps no event history: its events are as of the last restart, or now.
        let now = self.clock.now();
        let at = |t: Option<Timestamp>| {
            Some(
                t.unwrap_or(now)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        };
        let mut events = vec![EventInfo {
            kind: "Normal".into(),
            reason: "ScalingReplicaSet".into(),
            message: format!(
                "sandbox: scaled up replica set erlmcp-{} to {}",
                w.revision, w.replicas
            ),
            object: "Deployment/erlmcp".into(),
            last_seen: at(w.restarted_at),
            count: 1,
        }];
        for name in pod_names(&w) {
            events.push(EventInfo {
                kind: "Normal".into(),
                reason: "Started".into(),
                message: "sandbox: started container erlmcp".into(),
                object: format!("Pod/{name}"),
                last_seen: at(w.restarted_at),
                count: 1,
            });
        }
        Ok(events)
    }
}

/// CI as the sandbox sees it: every version is green except pre-releases whose suffix
/// mentions "fail" (`v3.1.0-fail`), so a refusal for red CI can be tried out too.
pub struct SandboxCi;

#[async_trait]
impl CiStatusSource for SandboxCi {
    async fn ci_status(&self, version: &Version) -> CiStatus {
        if version.as_str().contains("fail") {
            CiStatus::NotGreen(format!("sandbox: CI failed for {version}"))
        } else {
            CiStatus::Green
        }
    }
}
