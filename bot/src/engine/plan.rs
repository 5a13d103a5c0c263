//! Plans before approval: `--dry-run` answers with what a change would do and what the
//! policy would say, audited as a dry run; approval cards carry the same plan.

use erlmcp_commands::plan::{self as plans, PlanDecision, TargetPlan};
use erlmcp_commands::policy::Refusal;

use super::*;

impl Engine {
    /// The target's plan for a change, or why there is none.
    async fn target_plan(&self, actor: &Actor, cmd: &Command) -> Result<TargetPlan, String> {
        let action =
            target_action(cmd).ok_or_else(|| "it changes nothing on a target".to_string())?;
        let env_name = match cmd {
            Command::Deploy { env, .. }
            | Command::Rollback { env, .. }
            | Command::Scale { env, .. }
            | Command::Restart { env, .. }
            | Command::Maintenance { env, .. }
            | Command::Canary { env, .. }
            | Command::BlueGreen { env, .. }
            | Command::PodDelete { env, .. }
            | Command::Resources { env, .. }
            | Command::Backup { env }
            | Command::DrFailover { env, .. } => env,
            _ => return Err(replies::NO_TARGET_CHANGE.into()),
        };
        let env = self
            .cfg
            .environment(env_name.as_str())
            .ok_or_else(|| replies::environment_not_configured(env_name.as_str()))?;
        let target = self.target_for(env)?;
        let ctx = ExecContext {
            request_id: None,
            requester: actor.identity(),
            reason: reason_of(cmd),
        };
        target
            .plan(env, &action, &ctx)
            .await
            .map_err(|e| e.to_string())
    }

    /// The plan lines an approval card shows; empty for changes that are not on a target.
    pub(super) async fn card_plan(&self, inv: &Invocation, cmd: &Command) -> Vec<String> {
        if target_action(cmd).is_none() {
            return Vec::new();
        }
        match self.target_plan(&inv.actor, cmd).await {
            Ok(plan) => plan.lines(),
            Err(e) => vec![replies::no_plan_from_target(&e)],
        }
    }

    /// `--dry-run`: the plan and the policy's answer, nothing executed and no request made.
    /// Refused outright only to someone no rule lets ask for the change at all.
    pub(super) async fn dry_run(&self, inv: &Invocation, change: &Command, op: Operation) -> Reply {
        let now = self.now();
        let facts = match self.gather_facts(&inv.actor, &op).await {
            Ok(f) => f,
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        let decision = policy::decide(&self.policy, &inv.actor, &op, &facts, now);
        let mut entry = self.entry(
            &who(&inv.actor),
            &inv.channel,
            AuditAction::DryRun,
            op.kind.as_str(),
        );
        entry.arguments = serde_json::to_string(change).unwrap_or_default();
        entry.environment = op.env.as_ref().map(|e| e.to_string());
        let (plan_decision, audited) = match &decision {
            Decision::Deny(refusal @ (Refusal::NoRole | Refusal::NotPermitted { .. })) => {
                let text = replies::refusal(refusal, now);
                entry.action = AuditAction::Refused.into();
                entry.decision = AuditDecision::Deny.into();
                entry.reason = format!("dry run: {text}");
                entry.outcome = "refused".into();
                let _ = self.audit(entry).await;
                return Reply::refused(text);
            }
            Decision::Deny(refusal) => (
                PlanDecision::Refused(replies::refusal(refusal, now)),
                AuditDecision::Deny,
            ),
            Decision::NeedsApproval {
                rule, requirement, ..
            } => (
                PlanDecision::NeedsApproval {
                    rule: *rule,
                    count: requirement.count,
                    from: requirement.from.clone(),
                },
                AuditDecision::NeedsApproval,
            ),
            Decision::Allow { rule, break_glass } => (
                PlanDecision::RunsAtOnce {
                    rule: *rule,
                    break_glass: *break_glass,
                },
                if *break_glass {
                    AuditDecision::BreakGlass
                } else {
                    AuditDecision::Allow
                },
            ),
        };
        let met = self.met_preconditions(&inv.actor, &op, &facts);
        let plan = self.target_plan(&inv.actor, change).await;
        let what = command_text(&inv.text, &self.cfg.bot.command);
        let text = plans::render(
            &what,
            plan.as_ref().map_err(String::as_str),
            &plan_decision,
            &met,
        );
        entry.decision = audited.into();
        entry.reason = plan_decision.line();
        entry.outcome = match &plan {
            Ok(p) => format!("planned: {}", p.lines().join(" ")),
            Err(e) => format!("no plan: {e}"),
        };
        // The plan is shown only once it is on record, like every other answer to a change.
        if let Err(e) = self.audit(entry).await {
            return self.store_refusal(StoreStep::Audit, &e);
        }
        Reply::ok(text)
    }

    /// `bluegreen ENV status`.
    pub(super) async fn blue_green_status(&self, env: &str) -> Reply {
        let Some(spec) = self.cfg.environment(env) else {
            return Reply::refused(replies::unknown_environment(env));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Reply::failed(e),
        };
        match target.blue_green_status(spec).await {
            Ok(s) => Reply::private(s.render()),
            Err(e) => Reply::failed(replies::blue_green_unavailable(&spec.name, &e)),
        }
    }
}
