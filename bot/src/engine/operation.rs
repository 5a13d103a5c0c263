//! Operations under a rule: the policy decision, requests, and execution on a target.

use super::unrecorded::Unrecorded;
use super::*;

impl Engine {
    pub(super) async fn gather_facts(
        &self,
        actor: &Actor,
        op: &Operation,
    ) -> Result<Facts, StoreError> {
        let needs = self.policy.needs(actor, op);
        let mut facts = Facts::default();
        if needs.incidents {
            facts.open_incident = self
                .store
                .open_incidents()
                .await?
                .iter()
                .map(|i| i.severity)
                .min();
        }
        if let (Some(from), Some(v)) = (&needs.soak_from, &op.version) {
            let s = self.store.soak_facts(from, v.as_str()).await?;
            facts.soak = Some(SoakFacts {
                deployed_at: s.deployed_at,
                rolled_back_at: s.rolled_back_since,
            });
        }
        if needs.ci
            && let Some(v) = &op.version
        {
            facts.ci = Some(self.ci.ci_status(v).await);
        }
        Ok(facts)
    }

    /// Facts for the given preconditions alone: at execution they come from the request's
    /// stored rule, not from whatever rule the requester's roles would select now.
    pub(super) async fn precondition_facts(
        &self,
        p: &Preconditions,
        op: &Operation,
    ) -> Result<Facts, StoreError> {
        let mut facts = Facts::default();
        let Some(v) = &op.version else {
            return Ok(facts);
        };
        if let Some(soak) = &p.soak {
            let s = self.store.soak_facts(&soak.from, v.as_str()).await?;
            facts.soak = Some(SoakFacts {
                deployed_at: s.deployed_at,
                rolled_back_at: s.rolled_back_since,
            });
        }
        if p.ci_green {
            facts.ci = Some(self.ci.ci_status(v).await);
        }
        Ok(facts)
    }

    /// Preconditions that hold, for the approval message.
    pub(super) fn met_preconditions(
        &self,
        actor: &Actor,
        op: &Operation,
        facts: &Facts,
    ) -> Vec<String> {
        let mut met = Vec::new();
        let Some(rule) = self.policy.rule_for(actor, op.kind, op.env.as_ref()) else {
            return met;
        };
        if let (Some(p), Some(v)) = (&rule.preconditions, &op.version) {
            if let (Some(s), Some(at)) = (&p.soak, facts.soak.as_ref().and_then(|f| f.deployed_at))
            {
                met.push(replies::met_soak(
                    &v.to_string(),
                    &s.from,
                    at,
                    &s.duration.to_string(),
                ));
            }
            if p.ci_green {
                met.push(replies::met_ci_green(&v.to_string()));
            }
        }
        met
    }

    pub(super) async fn operation(&self, inv: &Invocation, cmd: Command, op: Operation) -> Reply {
        if let Command::Plan { change } = &cmd {
            return self.dry_run(inv, change, op).await;
        }
        let now = self.now();
        let facts = match self.gather_facts(&inv.actor, &op).await {
            Ok(f) => f,
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        let decision = policy::decide(&self.policy, &inv.actor, &op, &facts, now);
        let arguments = serde_json::to_string(&cmd).unwrap_or_default();
        let mut entry = self.entry(
            &who(&inv.actor),
            &inv.channel,
            AuditAction::Requested,
            op.kind.as_str(),
        );
        entry.arguments = arguments.clone();
        entry.environment = op.env.as_ref().map(|e| e.to_string());
        match decision {
            Decision::Deny(refusal) => {
                let text = replies::refusal(&refusal, now);
                entry.action = AuditAction::Refused.into();
                entry.decision = AuditDecision::Deny.into();
                entry.reason = text.clone();
                entry.outcome = "refused".into();
                // A refusal changes nothing, so it is answered even when it cannot be recorded.
                let _ = self.audit(entry).await;
                Reply::refused(text)
            }
            Decision::NeedsApproval {
                rule,
                requirement,
                decided_under,
            } => {
                let stored = StoredApproval {
                    count: requirement.count,
                    from: requirement.from.clone(),
                    met: self.met_preconditions(&inv.actor, &op, &facts),
                    decided_under: Some(decided_under),
                    plan: self.card_plan(inv, &cmd).await,
                };
                let new = NewRequest {
                    created_at: now,
                    expires_at: policy::expiry(now, self.cfg.bot.request_ttl),
                    requester: who(&inv.actor),
                    channel: inv.channel.clone(),
                    command_text: command_text(&inv.text, &self.cfg.bot.command),
                    operation: op.kind.as_str().to_string(),
                    environment: op.env.as_ref().map(|e| e.to_string()),
                    command_json: arguments,
                    approvals_json: serde_json::to_string(&stored).unwrap_or_default(),
                    state: RequestState::Pending,
                    break_glass: false,
                    owner: None,
                };
                entry.action = AuditAction::Requested.into();
                entry.decision = AuditDecision::NeedsApproval.into();
                entry.reason = format!(
                    "rules[{rule}]: needs {} approval(s) from {}",
                    requirement.count,
                    requirement.from.join(", ")
                );
                entry.outcome = "pending".into();
                // The request and its audit row are one write: neither exists without the
                // other.
                let written = self
                    .store
                    .insert_request_audited(new, self.named(entry))
                    .await;
                let row = match self.audited(written) {
                    Ok((row, _)) => row,
                    Err(e) => {
                        self.metrics.store_refused(StoreStep::Audit);
                        return Reply::failed(replies::audit_unavailable_request_dropped(&e));
                    }
                };
                let card = self.card(&row, &[]);
                Reply::pending(card)
            }
            Decision::Allow { rule, break_glass } => {
                let reason = match (rule, break_glass) {
                    (Some(r), true) => format!(
                        "rules[{r}]: break-glass during an open {} incident",
                        facts.open_incident.map(|s| s.as_str()).unwrap_or("P0/P1")
                    ),
                    (Some(r), false) => format!("rules[{r}]: allowed without approval"),
                    (None, _) => "allowed".into(),
                };
                self.run_now(inv, cmd, op, entry, reason, break_glass).await
            }
        }
    }

    /// Carries out an operation allowed at once.
    pub(super) async fn run_now(
        &self,
        inv: &Invocation,
        cmd: Command,
        op: Operation,
        mut entry: NewAuditEntry,
        reason: String,
        break_glass: bool,
    ) -> Reply {
        entry.decision = if break_glass {
            AuditDecision::BreakGlass
        } else {
            AuditDecision::Allow
        }
        .into();
        entry.reason = reason;
        if !is_change(&cmd) {
            // Reads and incident bookkeeping: audited first, then done.
            entry.action = AuditAction::Executed.into();
            entry.outcome = "ok".into();
            if let Err(e) = self.audit(entry).await {
                return self.store_refusal(StoreStep::Audit, &e);
            }
            return self.non_target(inv, &cmd).await;
        }
        let now = self.now();
        let new = NewRequest {
            created_at: now,
            expires_at: now,
            requester: who(&inv.actor),
            channel: inv.channel.clone(),
            command_text: command_text(&inv.text, &self.cfg.bot.command),
            operation: op.kind.as_str().to_string(),
            environment: op.env.as_ref().map(|e| e.to_string()),
            command_json: entry.arguments.clone(),
            approvals_json: "{}".into(),
            state: RequestState::Executing,
            break_glass,
            owner: Some(self.owner.clone()),
        };
        entry.action = AuditAction::Executing.into();
        entry.outcome = "started".into();
        // One durable write before anything runs: the request and the audit row saying it
        // starts, together or not at all.
        let written = self
            .store
            .insert_request_audited(new, self.named(entry))
            .await;
        let row = match self.audited(written) {
            Ok((row, _)) => row,
            Err(e) => return self.store_refusal(StoreStep::Audit, &e),
        };
        if break_glass {
            warn!(request = %row.id, "break-glass operation");
            self.incidents
                .note_operation(&row, OperationNote::BreakGlass)
                .await;
        }
        self.execute(&row, &cmd, inv.progress.as_ref()).await
    }

    /// Runs a request that is in the `executing` state (this process won it) on its target
    /// and records the outcome.
    pub(super) async fn execute(
        &self,
        row: &RequestRow,
        cmd: &Command,
        progress: &dyn Progress,
    ) -> Reply {
        let action = target_action(cmd);
        let env_name = row.environment.clone().unwrap_or_default();
        let mut last_progress = None;
        // Held until the outcome is written: it carries the sandbox's new state, and the
        // environment stays locked until that state is durable.
        let mut final_state = None;
        if matches!(cmd, Command::DrFailover { .. }) {
            self.incidents.note_failover(row).await;
        }
        let result = match (cmd, &action) {
            (Command::AuditPrune { before }, _) => self.prune_audit_log(*before).await,
            (Command::Run { id, action }, _) => self.run_change(row, *id, *action).await,
            (_, None) => {
                return Reply::failed(replies::internal_error("not a target operation"));
            }
            (_, Some(action)) => match self.cfg.environment(&env_name) {
                None => Err(TargetError::Refused(
                    replies::environment_no_longer_configured(&env_name),
                )),
                Some(env) => match self.target_for(env) {
                    Err(e) => Err(TargetError::Unavailable(e)),
                    Ok(target) => {
                        let ctx = ExecContext {
                            request_id: Some(row.id),
                            requester: format!(
                                "{}:{}",
                                row.requester.platform, row.requester.user_id
                            ),
                            reason: reason_of(cmd),
                        };
                        let (recording, writer) = self.record_progress(row.id, progress);
                        let mark = self.mark_deploy(row);
                        let result = target.execute(env, action, &ctx, &recording).await;
                        // At once, with no await between: a cancelled command must not
                        // leave the environment locked.
                        final_state = self.sandbox.get().and_then(|s| s.take_final(row.id));
                        drop(mark);
                        drop(recording);
                        // Stored with the outcome below, in the same write.
                        last_progress = writer.stop();
                        result
                    }
                },
            },
        };
        let now = self.now();
        let (state, outcome_text, reply) = match &result {
            Ok(o) => (
                RequestState::Succeeded,
                o.summary.clone(),
                Reply::ok(replies::operation_done(row.id, &o.summary)),
            ),
            Err(e) => (
                RequestState::Failed,
                e.to_string(),
                Reply::failed(replies::operation_failed(row.id, e)),
            ),
        };
        self.metrics
            .operations
            .get_or_create(&OperationLabels {
                operation: row.operation.clone(),
                environment: env_name.clone(),
                outcome: if result.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                }
                .into(),
            })
            .inc();
        if let (Ok(o), Some(version)) = (
            &result,
            match &action {
                Some(TargetAction::Deploy { .. } | TargetAction::Rollback { .. }) => {
                    result.as_ref().ok().and_then(|o| o.version_after.clone())
                }
                _ => None,
            },
        ) {
            let kind = if matches!(action, Some(TargetAction::Rollback { .. })) {
                "rollback"
            } else {
                "deploy"
            };
            // A no-op (already at that version) is not a new deployment for soak purposes.
            if o.version_before.as_deref() != Some(version.as_str())
                && let Err(e) = self
                    .store
                    .record_deployment(DeploymentRecord {
                        environment: env_name.clone(),
                        version,
                        kind: kind.into(),
                        succeeded: true,
                        request_id: Some(row.id),
                        at: now,
                    })
                    .await
            {
                error!(error = %e, request = %row.id, "could not record the deployment");
            }
        }
        let audited = if result.is_ok() {
            AuditAction::Executed
        } else {
            AuditAction::Failed
        };
        let mut entry = self.entry(&row.requester, &row.channel, audited, &row.operation);
        entry.arguments = row.command_json.clone();
        entry.environment = row.environment.clone();
        entry.request_id = Some(row.id);
        entry.decision = if row.break_glass {
            AuditDecision::BreakGlass
        } else {
            AuditDecision::Allow
        }
        .into();
        // A request that ran at once was never open to votes, nor shown on a card.
        let ran_at_once = StoredRequirement::read(&row.approvals_json).count == 0;
        entry.votes = if ran_at_once {
            "[]".into()
        } else {
            self.votes_json(row.id).await
        };
        entry.outcome = match &result {
            Ok(_) => format!("ok: {outcome_text}"),
            Err(_) => format!("failed: {outcome_text}"),
        };
        // The outcome, the last progress line and the audit row are one durable write.
        let finish = FinishRequest {
            id: row.id,
            to: state,
            outcome: outcome_text.clone(),
            progress: last_progress,
            at: now,
            sandbox: final_state.as_ref().map(|f| f.row.clone()),
        };
        let entry = self.named(entry);
        // Kept for a second write should this one fail: without its outcome the request
        // would stay `executing` under a live owner, which nothing reconciles.
        let (kept_finish, kept_entry) = (finish.clone(), entry.clone());
        let written = self.store.finish_request_audited(finish, entry).await;
        let mut warning = String::new();
        match self.audited(written) {
            Ok((true, _)) => {
                drop(final_state);
                self.request_checkpoint();
            }
            // Our heartbeat went stale for longer than the lease (a stalled process, a
            // partitioned database) and another process declared this request interrupted.
            Ok((false, _)) => {
                drop(final_state);
                warn!(request = %row.id, owner = %self.owner, "the request was reconciled as interrupted while it still ran here");
                warning = String::from("\n") + &replies::outcome_after_interruption(row.id);
                self.request_checkpoint();
            }
            Err(e) => {
                error!(error = %e, request = %row.id, "could not record the request's outcome");
                warning = String::from("\n") + &replies::outcome_not_stored(&e);
                warning.push('\n');
                warning.push_str(&replies::outcome_not_audited(&e));
                warning.push('\n');
                warning.push_str(&replies::outcome_kept(row.id));
                self.keep_unrecorded(Unrecorded {
                    finish: kept_finish,
                    entry: kept_entry,
                    final_state,
                    announce: !ran_at_once,
                });
            }
        }
        self.incidents
            .note_operation(
                row,
                OperationNote::Finished {
                    ok: result.is_ok(),
                    outcome: &outcome_text,
                },
            )
            .await;
        if !ran_at_once {
            self.announce(row.id).await;
        }
        if result.is_ok() && matches!(action, Some(TargetAction::Deploy { .. })) {
            self.start_guard(row);
        }
        let mut reply = reply;
        let warning = warning.trim_start();
        if !warning.is_empty() {
            reply.push(warning);
        }
        reply
    }
}
