//! GitHub Actions in the engine: `runs` and `run ...` commands, and environment gates —
//! a run waiting on a protected GitHub environment becomes a request that the bot's own
//! rules approve, and its quorum settles the gate with one review call.

use erlmcp_adapters::github::gates::{self, ReviewError};
use erlmcp_adapters::github::{GithubActionsTarget, GithubError, Run};
use erlmcp_commands::config::{EnvironmentSpec, TargetKind};
use erlmcp_commands::{EnvName, RunAction, RunId};

use super::*;

/// The deploys this process is carrying out on github-actions environments: a gate that
/// opens meanwhile belongs to them (their channel, their requester).
#[derive(Default)]
pub(crate) struct RunningDeploys(Mutex<HashMap<String, (String, Who)>>);

impl RunningDeploys {
    fn get(&self, env: &str) -> Option<(String, Who)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(env)
            .cloned()
    }
}

/// Removes its environment from [`RunningDeploys`] when the deploy ends, however it ends.
pub(super) struct DeployMark<'a> {
    deploys: &'a RunningDeploys,
    env: String,
}

impl Drop for DeployMark<'_> {
    fn drop(&mut self) {
        self.deploys
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.env);
    }
}

fn run_line(run: &Run, now: Timestamp) -> String {
    replies::run_line(
        run.id,
        &run.state(),
        run.display_title.as_deref().or(run.name.as_deref()),
        run.head_branch.as_deref(),
        run.actor.as_ref().map(|a| a.login.as_str()),
        run.created_at,
        now,
        &run.html_url,
    )
}

impl Engine {
    pub fn set_github(&self, target: Arc<GithubActionsTarget>) {
        let _ = self.github.set(target);
    }

    pub(crate) fn github(&self) -> Option<&Arc<GithubActionsTarget>> {
        self.github.get()
    }

    /// Whether runs waiting on a gate are found by polling (no webhook secret configured).
    pub fn polls_github_gates(&self) -> bool {
        self.github().is_some() && self.cfg.github.webhook_secret.is_empty()
    }

    pub(super) fn mark_deploy(&self, row: &RequestRow) -> Option<DeployMark<'_>> {
        let env = row.environment.clone()?;
        if self.cfg.environment(&env)?.target != TargetKind::GithubActions {
            return None;
        }
        self.running_deploys
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(env.clone(), (row.channel.clone(), row.requester.clone()));
        Some(DeployMark {
            deploys: &self.running_deploys,
            env,
        })
    }

    fn github_envs(&self) -> impl Iterator<Item = &EnvironmentSpec> {
        self.cfg
            .environments
            .values()
            .filter(|e| e.target == TargetKind::GithubActions)
    }

    /// The bot environment a GitHub environment name stands for (its name or an alias).
    fn env_for_github_environment(&self, name: &str) -> Option<&EnvironmentSpec> {
        self.github_envs().find(|e| {
            e.name.eq_ignore_ascii_case(name)
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    /// The environment a run belongs to: the one whose deploy or rollback workflow it is,
    /// told apart by its title or by the gate it waits on when several share the workflow.
    async fn run_environment(&self, id: RunId) -> Result<(EnvName, Run), String> {
        let Some(github) = self.github() else {
            return Err(
                "no GitHub Actions environment is configured here (sandbox and Kubernetes environments deploy without workflow runs)"
                    .into(),
            );
        };
        let run = match github.client().get_run(id).await {
            Ok(r) => r,
            Err(GithubError::Api { status: 404, .. }) => {
                return Err(replies::no_such_run(
                    id,
                    github.client().owner(),
                    github.client().repo(),
                ));
            }
            Err(e) => return Err(replies::run_unreadable(id, &e)),
        };
        let file = run.workflow_file().unwrap_or_default().to_string();
        let mut candidates: Vec<&EnvironmentSpec> = self
            .github_envs()
            .filter(|e| {
                e.workflow.as_deref() == Some(file.as_str())
                    || e.rollback_workflow.as_deref() == Some(file.as_str())
            })
            .collect();
        if candidates.len() > 1 && candidates.iter().any(|e| run.mentions(&e.name)) {
            candidates.retain(|e| run.mentions(&e.name));
        }
        if candidates.len() > 1
            && let Ok(pending) = github.client().pending_deployments(id).await
        {
            let names = gates::names(&pending);
            if candidates
                .iter()
                .any(|e| names.iter().any(|n| n.eq_ignore_ascii_case(&e.name)))
            {
                candidates.retain(|e| names.iter().any(|n| n.eq_ignore_ascii_case(&e.name)));
            }
        }
        match candidates.as_slice() {
            [one] => Ok((EnvName::new(one.name.clone()), run)),
            [] => Err(replies::run_of_no_environment(id, &file)),
            many => Err(replies::run_of_several_environments(
                id,
                &file,
                &many.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            )),
        }
    }

    /// `run ... ID`: decided under the rules of the run's environment, once GitHub has said
    /// which that is.
    pub(super) async fn run_operation(
        &self,
        inv: &Invocation,
        cmd: Command,
        mut op: Operation,
    ) -> Reply {
        let Command::Run { id, action } = &cmd else {
            return Reply::failed(replies::internal_error("not a run command"));
        };
        let (id, action) = (*id, *action);
        if inv.actor.roles.is_empty() {
            return Reply::refused(replies::refusal(&policy::Refusal::NoRole, self.now()));
        }
        let env = match self.run_environment(id).await {
            Ok((env, _)) => env,
            Err(why) => {
                let mut entry = self.entry(
                    &who(&inv.actor),
                    &inv.channel,
                    AuditAction::Refused,
                    op.kind.as_str(),
                );
                entry.arguments = serde_json::to_string(&cmd).unwrap_or_default();
                entry.decision = AuditDecision::Deny.into();
                entry.reason = why.clone();
                entry.outcome = "refused".into();
                // A refusal changes nothing, so it is answered even when it cannot be recorded.
                let _ = self.audit(entry).await;
                return Reply::refused(why);
            }
        };
        // A gate already open for this run is voted on, not requested a second time.
        if matches!(action, RunAction::Approve | RunAction::Reject) {
            match self.open_gate(id).await {
                Ok(Some(row)) => {
                    let approve = action == RunAction::Approve;
                    return self.vote(inv, row.id, approve, None).await;
                }
                Ok(None) => {}
                Err(e) => return self.store_refusal(StoreStep::Read, &e),
            }
        }
        op.env = Some(env);
        self.operation(inv, cmd, op).await
    }

    /// The pending gate request for a run, if there is one.
    async fn open_gate(&self, id: RunId) -> Result<Option<RequestRow>, StoreError> {
        let pending = self.store.pending_requests().await?;
        Ok(pending.into_iter().find(|r| {
            r.operation == OperationKind::RunApprove.as_str()
                && serde_json::from_str::<Command>(&r.command_json).is_ok_and(|c| {
                    matches!(c, Command::Run { id: rid, action: RunAction::Approve } if rid == id)
                })
        }))
    }

    /// `runs ENV [N]` and `run view ID`.
    pub(super) async fn run_read(&self, cmd: &Command) -> Reply {
        let now = self.now();
        match cmd {
            Command::Runs { env, limit } => {
                let Some(spec) = self.cfg.environment(env.as_str()) else {
                    return Reply::refused(replies::unknown_environment(env.as_str()));
                };
                match spec.target {
                    TargetKind::Sandbox => {
                        return Reply::private(replies::no_runs_in_sandbox(env.as_str()));
                    }
                    TargetKind::Kubernetes => {
                        return Reply::private(replies::no_runs_on_kubernetes(env.as_str()));
                    }
                    TargetKind::GithubActions => {}
                }
                let Some(github) = self.github() else {
                    return Reply::failed(
                        "the github-actions target is not configured in this bot",
                    );
                };
                let n = limit.unwrap_or(10);
                match github.deploy_runs(spec, n, None).await {
                    Ok(runs) if runs.is_empty() => {
                        Reply::private(replies::no_runs_yet(env.as_str(), spec.workflow.as_deref()))
                    }
                    Ok(runs) => Reply::private(replies::runs(
                        env.as_str(),
                        spec.workflow.as_deref(),
                        &runs
                            .iter()
                            .take(n as usize)
                            .map(|r| run_line(r, now))
                            .collect::<Vec<_>>(),
                    )),
                    Err(e) => Reply::failed(replies::environment_unavailable(
                        env.as_str(),
                        &e.to_string(),
                    )),
                }
            }
            Command::Run {
                id,
                action: RunAction::View,
            } => {
                let Some(github) = self.github() else {
                    return Reply::refused(replies::no_github_environment());
                };
                let client = github.client();
                let run = match client.get_run(*id).await {
                    Ok(r) => r,
                    Err(e) => return Reply::failed(replies::run_failed(*id, &e)),
                };
                let mut lines = vec![run_line(&run, now)];
                if let Ok(jobs) = client.jobs(*id).await {
                    lines.extend(
                        jobs.iter()
                            .map(|j| replies::run_job_line(&j.name, &j.state())),
                    );
                }
                if run.status == "waiting"
                    && let Ok(pending) = client.pending_deployments(*id).await
                    && !pending.is_empty()
                {
                    lines.push(replies::run_waiting_line(*id, &gates::names(&pending)));
                }
                Reply::private(lines.join("\n"))
            }
            _ => Reply::failed(replies::internal_error("not a run read")),
        }
    }

    /// Carries out an allowed (or approved) change to a run.
    pub(super) async fn run_change(
        &self,
        row: &RequestRow,
        id: RunId,
        action: RunAction,
    ) -> Result<erlmcp_adapters::target::Outcome, TargetError> {
        let github = self.github().ok_or_else(|| {
            TargetError::Unavailable(
                "the github-actions target is not configured in this bot".into(),
            )
        })?;
        let client = github.client();
        let outcome = |summary: String| erlmcp_adapters::target::Outcome {
            summary,
            version_before: None,
            version_after: None,
        };
        let github_error = |e: GithubError| match e {
            GithubError::Api { status, message } => {
                TargetError::Refused(replies::github_answered(status, &message))
            }
            other => TargetError::Unavailable(other.to_string()),
        };
        match action {
            RunAction::View => Err(TargetError::Refused(
                replies::VIEWING_IS_NOT_A_CHANGE.into(),
            )),
            RunAction::Cancel => {
                client.cancel_run(id).await.map_err(github_error)?;
                Ok(outcome(replies::run_cancelled(id)))
            }
            RunAction::Rerun { failed } => {
                client.rerun(id, failed).await.map_err(github_error)?;
                Ok(outcome(replies::run_rerun(id, failed)))
            }
            RunAction::Approve | RunAction::Reject => {
                let approve = action == RunAction::Approve;
                let people = self.deciders(row, approve).await;
                let comment = gates::comment(approve, &people, &row.id.to_string());
                match gates::review(client, id, approve, &comment).await {
                    Ok(done) => Ok(outcome(replies::run_reviewed(
                        id,
                        &done.environments,
                        approve,
                        &comment,
                    ))),
                    Err(ReviewError::NothingPending(_)) => {
                        Err(TargetError::Refused(replies::run_not_waiting(id)))
                    }
                    Err(ReviewError::Github(e)) => Err(github_error(e)),
                }
            }
        }
    }

    /// Who decided a request: its voters on that side, or its requester when it ran
    /// without approvals.
    async fn deciders(&self, row: &RequestRow, approve: bool) -> Vec<String> {
        let votes = self.store.votes(row.id).await.unwrap_or_default();
        let voters: Vec<String> = votes
            .iter()
            .filter(|v| v.approve == approve)
            .map(|v| who_label(&v.voter))
            .collect();
        if voters.is_empty() {
            vec![who_label(&row.requester)]
        } else {
            voters
        }
    }

    /// A run waits on GitHub environments: each that maps to a github-actions environment
    /// of the bot becomes one pending request (once per run), posted where the deploy that
    /// started it was asked for, or in `github.gate_channel`.
    pub async fn github_gate(&self, run: &Run) -> Result<Option<RequestId>, StoreError> {
        let Some(github) = self.github() else {
            return Ok(None);
        };
        let id = RunId(run.id);
        if self.open_gate(id).await?.is_some() {
            return Ok(None);
        }
        let pending = match github.client().pending_deployments(id).await {
            Ok(p) => p,
            Err(e) => {
                warn!(run = run.id, error = %e, "could not read a run's pending deployments");
                return Ok(None);
            }
        };
        let Some(env) = gates::names(&pending)
            .iter()
            .find_map(|n| self.env_for_github_environment(n))
            .cloned()
        else {
            return Ok(None);
        };
        let env_name = EnvName::new(env.name.clone());
        // Who may vote is the bot's `run.approve` rule for the environment.
        let Some(rule) = self
            .policy
            .rules_for(OperationKind::RunApprove, Some(&env_name))
            .next()
            .cloned()
        else {
            warn!(run = run.id, env = %env.name, "a run waits on an environment gate but no rule grants run.approve there");
            return Ok(None);
        };
        let requirement = rule.approvals.clone().unwrap_or(ApprovalRequirement {
            count: 1,
            from: rule.roles.clone(),
        });
        let (channel, requester) = match self.running_deploys.get(&env.name) {
            Some(found) => found,
            None => (
                self.cfg.github.gate_channel.clone().unwrap_or_default(),
                Who {
                    platform: "github".into(),
                    user_id: run
                        .actor
                        .as_ref()
                        .map(|a| a.login.clone())
                        .unwrap_or_else(|| "unknown".into()),
                    display_name: String::new(),
                },
            ),
        };
        let cmd = Command::Run {
            id,
            action: RunAction::Approve,
        };
        let now = self.now();
        let stored = StoredApproval {
            count: requirement.count,
            from: requirement.from.clone(),
            met: vec![replies::gate_waiting(
                run.id,
                &gates::names(&pending),
                &run.html_url,
            )],
            decided_under: Some(DecidedUnder {
                rule: rule.index,
                operation: OperationKind::RunApprove,
                preconditions: None,
            }),
            plan: Vec::new(),
        };
        let arguments = serde_json::to_string(&cmd).unwrap_or_default();
        let row = self
            .store
            .insert_request(NewRequest {
                created_at: now,
                expires_at: policy::expiry(now, self.cfg.bot.request_ttl),
                requester: requester.clone(),
                channel: channel.clone(),
                command_text: replies::gate_command(id),
                operation: OperationKind::RunApprove.as_str().into(),
                environment: Some(env.name.clone()),
                command_json: arguments.clone(),
                approvals_json: serde_json::to_string(&stored).unwrap_or_default(),
                state: RequestState::Pending,
                break_glass: false,
                owner: None,
            })
            .await?;
        let mut entry = self.entry(
            &requester,
            &channel,
            AuditAction::Requested,
            OperationKind::RunApprove.as_str(),
        );
        entry.arguments = arguments;
        entry.environment = Some(env.name.clone());
        entry.request_id = Some(row.id);
        entry.decision = AuditDecision::NeedsApproval.into();
        entry.reason = format!(
            "rules[{}]: GitHub environment gate; needs {} approval(s) from {}",
            rule.index,
            requirement.count,
            requirement.from.join(", ")
        );
        entry.outcome = "pending".into();
        // Not audited, not opened: the request is marked failed and the gate stays on GitHub.
        self.audit_before(row.id, RequestState::Pending, entry)
            .await?;
        info!(request = %row.id, run = run.id, env = %env.name, "environment gate opened");
        let card = self.card(&row, &[]);
        self.post_card(&channel, row.id, Reply::pending(card)).await;
        Ok(Some(row.id))
    }

    /// Posts an approval card and remembers its message for in-place updates.
    async fn post_card(&self, channel: &str, id: RequestId, reply: Reply) {
        let Some((platform, chan)) = channel.split_once(':') else {
            return;
        };
        let Some(platform) = Platform::parse(platform) else {
            return;
        };
        let Some(chat) = self.chats.iter().find(|c| c.platform() == platform) else {
            return;
        };
        match chat.post(chan, &reply).await {
            Ok(message) => {
                if let Err(e) = self.store.set_request_message(id, &message).await {
                    warn!(error = %e, request = %id, "could not remember the gate's message");
                }
            }
            Err(e) => error!(error = %e, %channel, "could not post the gate request"),
        }
    }

    /// A gate request denied in chat: GitHub is told once, with the deniers named.
    pub(super) async fn gate_denied(&self, row: &RequestRow) -> Option<String> {
        let cmd: Command = serde_json::from_str(&row.command_json).ok()?;
        let Command::Run {
            id,
            action: RunAction::Approve,
        } = cmd
        else {
            return None;
        };
        let mut entry = self.entry(
            &row.requester,
            &row.channel,
            AuditAction::Executing,
            OperationKind::RunReject.as_str(),
        );
        entry.request_id = Some(row.id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.decision = AuditDecision::Deny.into();
        entry.reason = "denied in chat".into();
        entry.outcome = "started".into();
        if let Err(e) = self.audit(entry.clone()).await {
            return Some(String::from("\n") + &replies::gate_not_told_unaudited(&e, id));
        }
        let result = self.run_change(row, id, RunAction::Reject).await;
        let (action, text) = match &result {
            Ok(o) => (AuditAction::Executed, format!("ok: {}", o.summary)),
            Err(e) => (AuditAction::Failed, format!("failed: {e}")),
        };
        entry.at = self.now();
        entry.action = action.into();
        entry.outcome = text;
        let _ = self.audit(entry).await;
        Some(match result {
            Ok(o) => String::from("\n") + &o.summary,
            Err(e) => String::from("\n") + &replies::gate_not_told(&e),
        })
    }

    /// The poller's pass: every waiting run of the repository, through [`Engine::github_gate`].
    pub async fn poll_github_gates(&self) -> Result<usize, StoreError> {
        let Some(github) = self.github() else {
            return Ok(0);
        };
        let runs = match github.client().runs_in_status("waiting").await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "could not list waiting runs");
                return Ok(0);
            }
        };
        let mut opened = 0;
        for run in &runs {
            if self.github_gate(run).await?.is_some() {
                opened += 1;
            }
        }
        Ok(opened)
    }
}
