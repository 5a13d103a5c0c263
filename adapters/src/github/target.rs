//! The `github-actions` target: a deploy is a `workflow_dispatch` of the environment's
//! workflow, followed to its conclusion; a rollback dispatches its `rollback_workflow`.
//!
//! The dispatch is never sent twice. When its answer is lost (a reset connection, a 5xx),
//! the run it may have started is looked for among the runs that did not exist before it
//! was sent; only when none appears is the deploy reported as failed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::config::EnvironmentSpec;
use erlmcp_commands::{RunId, Strategy, Version};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::client::{GithubClient, GithubError};
use super::runs::{Dispatched, Run, RunFilter};
use crate::probe::probe;
use crate::target::{
    EnvStatus, ExecContext, Outcome, Progress, Replicas, Target, TargetAction, TargetError,
};

const KIND: &str = "github-actions";
const DEFAULT_REF: &str = "main";
const DISPATCH_EVENT: &str = "workflow_dispatch";

/// How the target waits on GitHub.
#[derive(Debug, Clone)]
pub struct WorkflowOptions {
    /// Between two looks at a run (and at the run list, while finding a dispatched run).
    pub poll: Duration,
    /// Looks at the run list before a dispatched run counts as not started.
    pub find_attempts: u32,
    /// How long a run is followed when the environment sets no `rollout_timeout`.
    pub follow_timeout: Duration,
    pub probe_timeout: Duration,
}

impl Default for WorkflowOptions {
    fn default() -> Self {
        WorkflowOptions {
            poll: Duration::from_secs(5),
            find_attempts: 12,
            follow_timeout: Duration::from_secs(3600),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

pub struct GithubActionsTarget {
    client: Arc<GithubClient>,
    opts: WorkflowOptions,
    http: reqwest::Client,
    /// The token's login, to find the runs it started; `None` when it cannot be read.
    login: OnceCell<Option<String>>,
}

impl GithubActionsTarget {
    pub fn new(client: Arc<GithubClient>, opts: WorkflowOptions) -> GithubActionsTarget {
        GithubActionsTarget {
            client,
            opts,
            http: reqwest::Client::new(),
            login: OnceCell::new(),
        }
    }

    pub fn client(&self) -> &Arc<GithubClient> {
        &self.client
    }

    /// Dispatches `workflow` on `git_ref` and follows the run it starts to its end: what a
    /// deploy does, for any caller that needs a workflow run (a DR failover, say). The run
    /// is returned whatever its conclusion.
    pub async fn run_workflow(
        &self,
        workflow: &str,
        git_ref: &str,
        inputs: &Value,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<Run, TargetError> {
        let run = self
            .start_workflow(workflow, git_ref, inputs, progress)
            .await?;
        self.follow(run, timeout, progress).await
    }

    /// Dispatches once and returns the run it started.
    pub async fn start_workflow(
        &self,
        workflow: &str,
        git_ref: &str,
        inputs: &Value,
        progress: &dyn Progress,
    ) -> Result<Run, TargetError> {
        let started = chrono::Utc::now() - chrono::Duration::minutes(2);
        // The runs that exist before the dispatch: whatever appears after is a candidate.
        let known: HashSet<u64> = self
            .client
            .list_runs(
                workflow,
                &RunFilter {
                    event: Some(DISPATCH_EVENT.into()),
                    per_page: 50,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(&format!("could not list the runs of {workflow}"), e))?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut answer = self.client.dispatch(workflow, git_ref, inputs, true).await;
        if let Err(GithubError::Api {
            status: 400 | 422, ..
        }) = &answer
        {
            // A server that does not know `return_run_details` refuses the whole request,
            // so nothing was started and sending it again without the field is safe.
            answer = self.client.dispatch(workflow, git_ref, inputs, false).await;
        }
        let lost = match answer {
            Ok(Dispatched::Run { id, .. }) => {
                let run = self
                    .client
                    .get_run(RunId(id))
                    .await
                    .map_err(|e| unavailable(&format!("run {id} started but"), e))?;
                progress.report(format!(
                    "{workflow}: run {} started — {}",
                    run.id, run.html_url
                ));
                return Ok(run);
            }
            Ok(Dispatched::Accepted) => None,
            Err(GithubError::Lost(why)) => Some(why),
            Err(GithubError::Api { status, message }) if status >= 500 => {
                Some(format!("HTTP {status}: {message}"))
            }
            Err(GithubError::Api { status, message }) => {
                return Err(TargetError::Refused(format!(
                    "GitHub refused to run {workflow} on {git_ref} (HTTP {status}): {message}"
                )));
            }
            Err(e) => {
                return Err(unavailable(&format!("could not dispatch {workflow}"), e));
            }
        };
        if let Some(why) = &lost {
            progress.report(format!(
                "{workflow}: GitHub's answer to the dispatch was lost ({why}); looking for the run instead of dispatching again"
            ));
        }
        match self.find_run(workflow, git_ref, &known, started).await? {
            Some(run) => {
                progress.report(format!(
                    "{workflow}: run {} started — {}",
                    run.id, run.html_url
                ));
                Ok(run)
            }
            None if lost.is_some() => Err(TargetError::Unavailable(format!(
                "GitHub's answer to the dispatch of {workflow} was lost and no new run appeared; nothing was dispatched again (check `runs` before retrying)"
            ))),
            None => Err(TargetError::Unavailable(format!(
                "GitHub accepted the dispatch of {workflow} but no run appeared"
            ))),
        }
    }

    async fn login(&self) -> Option<String> {
        self.login
            .get_or_init(|| async { self.client.login().await.ok() })
            .await
            .clone()
    }

    /// The newest run of `workflow` that is not in `known`: by workflow, event, creation
    /// time and actor, retried while GitHub has not listed it yet.
    async fn find_run(
        &self,
        workflow: &str,
        git_ref: &str,
        known: &HashSet<u64>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Run>, TargetError> {
        let actor = self.login().await;
        let filter = RunFilter {
            event: Some(DISPATCH_EVENT.into()),
            actor,
            created_after: Some(since),
            per_page: 20,
            ..Default::default()
        };
        for attempt in 0..self.opts.find_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.opts.poll).await;
            }
            let runs = match self.client.list_runs(workflow, &filter).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list runs while looking for a dispatched run");
                    continue;
                }
            };
            let found = runs.into_iter().find(|r| {
                !known.contains(&r.id) && r.head_branch.as_deref().is_none_or(|b| b == git_ref)
            });
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Follows a run until it completes, reporting each change of its state or of its jobs'.
    pub async fn follow(
        &self,
        mut run: Run,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<Run, TargetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        let mut read_error = false;
        loop {
            let jobs = self.client.jobs(RunId(run.id)).await.unwrap_or_default();
            let mut line = format!("run {} {}", run.id, run.state());
            if run.status == "waiting" {
                line.push_str(" (waiting for an environment approval)");
            }
            if !jobs.is_empty() {
                let parts: Vec<String> = jobs
                    .iter()
                    .map(|j| format!("{} {}", j.name, j.state()))
                    .collect();
                line.push_str(&format!(": {}", parts.join(", ")));
            }
            if line != last {
                progress.report(format!("{line} — {}", run.html_url));
                last = line;
            }
            if run.is_completed() {
                return Ok(run);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TargetError::RolloutFailed(format!(
                    "run {} is still {} after {}s; follow it at {}",
                    run.id,
                    run.state(),
                    timeout.as_secs(),
                    run.html_url
                )));
            }
            tokio::time::sleep(self.opts.poll).await;
            match self.client.get_run(RunId(run.id)).await {
                Ok(r) => {
                    run = r;
                    read_error = false;
                }
                Err(e) => {
                    if !read_error {
                        progress.report(format!(
                            "run {}: could not read it ({e}); still following",
                            run.id
                        ));
                    }
                    read_error = true;
                }
            }
        }
    }

    /// The environment's deploy runs, newest first: the runs of its workflow whose title
    /// names it, or all of them when no title names any environment.
    pub async fn deploy_runs(
        &self,
        env: &EnvironmentSpec,
        per_page: u32,
        status: Option<&str>,
    ) -> Result<Vec<Run>, TargetError> {
        let workflow = workflow_of(env)?;
        let runs = self
            .client
            .list_runs(
                workflow,
                &RunFilter {
                    status: status.map(str::to_string),
                    per_page,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(&format!("could not list the runs of {workflow}"), e))?;
        if runs.iter().any(|r| r.mentions(&env.name)) {
            Ok(runs.into_iter().filter(|r| r.mentions(&env.name)).collect())
        } else {
            Ok(runs)
        }
    }

    /// The version a rollback without one goes back to: the newest successful deploy whose
    /// version differs from the newest successful deploy's.
    async fn previous_version(&self, env: &EnvironmentSpec) -> Result<Version, TargetError> {
        let runs = self.deploy_runs(env, 50, Some("success")).await?;
        let mut versions = runs
            .iter()
            .filter(|r| r.succeeded())
            .filter_map(|r| r.version());
        let current = versions.next();
        let previous = current.as_ref().and_then(|c| versions.find(|v| v != c));
        previous.ok_or_else(|| {
            TargetError::Refused(format!(
                "no earlier successful deploy of {} with a version in its run title (set the workflow's run-name to include inputs.version), so there is nothing to roll back to; give the VERSION",
                env.name
            ))
        })
    }

    fn timeout_for(&self, env: &EnvironmentSpec) -> Duration {
        env.rollout_timeout
            .map(|d| d.0)
            .unwrap_or(self.opts.follow_timeout)
    }

    async fn dispatch_and_report(
        &self,
        env: &EnvironmentSpec,
        workflow: &str,
        inputs: Value,
        version: &Version,
        version_before: Option<String>,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let git_ref = env.git_ref.as_deref().unwrap_or(DEFAULT_REF);
        let run = self
            .run_workflow(workflow, git_ref, &inputs, self.timeout_for(env), progress)
            .await?;
        if run.succeeded() {
            Ok(Outcome {
                summary: format!(
                    "{} runs {version}: run {} of {workflow} succeeded — {}",
                    env.name, run.id, run.html_url
                ),
                version_before,
                version_after: Some(version.to_string()),
            })
        } else {
            Err(TargetError::RolloutFailed(format!(
                "run {} of {workflow} {} — {}",
                run.id,
                run.state(),
                run.html_url
            )))
        }
    }
}

fn workflow_of(env: &EnvironmentSpec) -> Result<&str, TargetError> {
    env.workflow
        .as_deref()
        .ok_or_else(|| TargetError::Refused(format!("{} has no workflow configured", env.name)))
}

fn unavailable(what: &str, e: GithubError) -> TargetError {
    match e {
        GithubError::Api { status, message } => {
            TargetError::Refused(format!("{what}: GitHub answered HTTP {status}: {message}"))
        }
        other => TargetError::Unavailable(format!("{what}: {other}")),
    }
}

#[async_trait]
impl Target for GithubActionsTarget {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn execute(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let request_id = ctx.request_id.map(|r| r.to_string()).unwrap_or_default();
        let reason = ctx.reason.clone().unwrap_or_default();
        match action {
            TargetAction::Deploy { version, strategy } => {
                if *strategy != Strategy::Rolling {
                    return Err(TargetError::Refused(format!(
                        "{} deploys through its workflow, which picks its own strategy; --strategy {} is not available there",
                        env.name,
                        strategy.as_str()
                    )));
                }
                let workflow = workflow_of(env)?;
                let before = self
                    .deploy_runs(env, 20, Some("success"))
                    .await
                    .ok()
                    .and_then(|runs| runs.iter().find_map(|r| r.version()))
                    .map(|v| v.to_string());
                let inputs = json!({
                    "version": version.as_str(),
                    "environment": env.name,
                    "requester": ctx.requester,
                    "request_id": request_id,
                    "reason": reason,
                });
                self.dispatch_and_report(env, workflow, inputs, version, before, progress)
                    .await
            }
            TargetAction::Rollback { version } => {
                let workflow = env.rollback_workflow.as_deref().ok_or_else(|| {
                    TargetError::Refused(format!(
                        "{} has no rollback_workflow configured",
                        env.name
                    ))
                })?;
                let version = match version {
                    Some(v) => v.clone(),
                    None => {
                        let v = self.previous_version(env).await?;
                        progress.report(format!(
                            "rolling {} back to {v}, the previous successful deploy",
                            env.name
                        ));
                        v
                    }
                };
                let inputs = json!({ "version": version.as_str(), "reason": reason });
                self.dispatch_and_report(env, workflow, inputs, &version, None, progress)
                    .await
            }
            TargetAction::Scale { .. } => Err(TargetError::Unsupported("scale", KIND)),
            TargetAction::Restart => Err(TargetError::Unsupported("restart", KIND)),
            TargetAction::Maintenance { .. } => Err(TargetError::Unsupported("maintenance", KIND)),
            TargetAction::Canary { .. } => Err(TargetError::Unsupported("canary", KIND)),
            TargetAction::BlueGreen { .. } => Err(TargetError::Unsupported("blue-green", KIND)),
            TargetAction::DeletePod { .. } => Err(TargetError::Unsupported("pod delete", KIND)),
            TargetAction::SetResources { .. } => Err(TargetError::Unsupported("resources", KIND)),
            TargetAction::Backup => Err(TargetError::Unsupported("backup", KIND)),
            TargetAction::DrFailover => Err(TargetError::Unsupported("dr failover", KIND)),
        }
    }

    async fn status(&self, env: &EnvironmentSpec) -> Result<EnvStatus, TargetError> {
        let runs = self.deploy_runs(env, 20, None).await?;
        let version = runs
            .iter()
            .filter(|r| r.succeeded())
            .find_map(|r| r.version())
            .map(|v| v.to_string());
        let rollout = match runs.first() {
            Some(r) => format!(
                "last deploy run {} {}{} — {}",
                r.id,
                r.state(),
                r.version().map(|v| format!(" ({v})")).unwrap_or_default(),
                r.html_url
            ),
            None => format!(
                "no runs of {} yet",
                env.workflow.as_deref().unwrap_or("its workflow")
            ),
        };
        let health = match env.health_url.as_deref() {
            Some(url) => Some(probe(&self.http, url, self.opts.probe_timeout).await),
            None => None,
        };
        let reported_version = match env.version_url.as_deref() {
            Some(url) => self.reported_version(url).await,
            None => None,
        };
        Ok(EnvStatus {
            env: env.name.clone(),
            target: KIND.to_string(),
            version,
            image: None,
            replicas: Replicas::default(),
            rollout,
            conditions: Vec::new(),
            pods_not_ready: Vec::new(),
            canary: None,
            maintenance: None,
            health,
            reported_version,
        })
    }

    /// A deploy run an earlier process dispatched and did not live to see finish: the
    /// newest unfinished run of the environment's workflow, followed to its end.
    async fn follow_rollout(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Option<String>, TargetError> {
        let runs = self.deploy_runs(env, 20, None).await?;
        let Some(run) = runs.into_iter().find(|r| !r.is_completed()) else {
            return Ok(None);
        };
        let run = self.follow(run, self.timeout_for(env), progress).await?;
        if run.succeeded() {
            Ok(Some(format!("run {} succeeded — {}", run.id, run.html_url)))
        } else {
            Err(TargetError::RolloutFailed(format!(
                "run {} {} — {}",
                run.id,
                run.state(),
                run.html_url
            )))
        }
    }
}

impl GithubActionsTarget {
    /// What the version URL says: a JSON `version` field, or the body's first line.
    async fn reported_version(&self, url: &str) -> Option<String> {
        let resp = self
            .http
            .get(url)
            .timeout(self.opts.probe_timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.text().await.ok()?;
        let from_json = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("version")?.as_str().map(str::to_string));
        from_json
            .or_else(|| body.lines().next().map(|l| l.trim().to_string()))
            .filter(|v| !v.is_empty() && v.len() <= 100)
    }
}
