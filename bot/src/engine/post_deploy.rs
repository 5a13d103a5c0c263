//! The post-deploy guard and the automatic rollback it triggers.

use super::*;

impl Engine {
    /// The runbook's automatic rollback triggers: after a deploy to an environment with the
    /// guard on (production by default), watch its health in the background.
    pub(super) fn start_guard(&self, row: &RequestRow) {
        let Some(env) = row
            .environment
            .as_deref()
            .and_then(|e| self.cfg.environment(e))
        else {
            return;
        };
        // The sandbox has nothing to probe unless a health URL is configured.
        let watchable =
            env.target != erlmcp_commands::config::TargetKind::Sandbox || env.health_url.is_some();
        if !env.auto_rollback_enabled() || !watchable {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let row = row.clone();
        self.spawn_tracked(async move { me.guard(row).await });
    }

    pub(super) async fn guard(&self, deployed: RequestRow) {
        let env_name = deployed.environment.clone().unwrap_or_default();
        let Some(env) = self.cfg.environment(&env_name) else {
            return;
        };
        let Ok(target) = self.target_for(env) else {
            return;
        };
        let sleep = self.guard_sleep.clone();
        let verdict = guard::watch_after_deploy(
            target.as_ref(),
            env,
            self.http(),
            &GuardPolicy::for_env(env),
            move |d| sleep(d),
        )
        .await;
        let GuardVerdict::Rollback { evidence } = verdict else {
            info!(request = %deployed.id, env = %env_name, "post-deploy guard: healthy");
            self.post_success_criteria(&deployed, env, target.as_ref())
                .await;
            return;
        };
        warn!(request = %deployed.id, env = %env_name, ?evidence, "post-deploy guard: rolling back");
        let reply = self.auto_rollback(&deployed, &env_name, &evidence).await;
        self.post_to(&deployed.channel, &reply).await;
    }

    /// Rolls an environment back on the guard's evidence, audited as automatic.
    pub(super) async fn auto_rollback(
        &self,
        deployed: &RequestRow,
        env_name: &str,
        evidence: &[String],
    ) -> Reply {
        let system = Who {
            platform: "system".into(),
            user_id: "erlmcp-bot".into(),
            display_name: "erlmcp-bot (post-deploy guard)".into(),
        };
        let cmd = Command::Rollback {
            env: erlmcp_commands::EnvName::new(env_name),
            version: None,
            reason: Some(replies::auto_rollback_reason(deployed.id)),
        };
        let now = self.now();
        let arguments = serde_json::to_string(&cmd).unwrap_or_default();
        let new = NewRequest {
            created_at: now,
            expires_at: now,
            requester: system.clone(),
            channel: deployed.channel.clone(),
            command_text: replies::auto_rollback_command(env_name, deployed.id),
            operation: OperationKind::Rollback.as_str().into(),
            environment: Some(env_name.to_string()),
            command_json: arguments.clone(),
            approvals_json: "{}".into(),
            state: RequestState::Executing,
            break_glass: false,
            owner: Some(self.owner.clone()),
        };
        let header =
            replies::auto_rollback_header(env_name, deployed.id, &deployed.command_text, evidence);
        let row = match self.store.insert_request(new).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = self.store_refusal(StoreStep::Request, &e);
                r.prepend(header);
                return r;
            }
        };
        let mut entry = self.entry(
            &system,
            &deployed.channel,
            AuditAction::Automatic,
            OperationKind::Rollback.as_str(),
        );
        entry.arguments = arguments;
        entry.environment = Some(env_name.to_string());
        entry.request_id = Some(row.id);
        entry.decision = AuditDecision::AutoRollback.into();
        entry.reason = format!(
            "post-deploy guard after {}: {}",
            deployed.id,
            evidence.join("; ")
        );
        entry.outcome = "started".into();
        if let Err(e) = self
            .audit_before(row.id, RequestState::Executing, entry)
            .await
        {
            let mut r = self.store_refusal(StoreStep::Audit, &e);
            r.prepend(header);
            return r;
        }
        let mut reply = self
            .execute(&row, &cmd, &erlmcp_adapters::target::NoProgress)
            .await;
        reply.prepend(header);
        reply
    }
}

impl Engine {
    /// After a quiet guard window: the runbook's success criteria, as checked, where the
    /// deploy was asked.
    async fn post_success_criteria(
        &self,
        deployed: &RequestRow,
        env: &erlmcp_commands::config::EnvironmentSpec,
        target: &dyn erlmcp_adapters::target::Target,
    ) {
        let criteria = guard::success_criteria(
            target,
            env,
            self.http(),
            GuardPolicy::for_env(env).probe_timeout,
        )
        .await;
        let text = erlmcp_commands::triggers::render_criteria(
            &env.name,
            &replies::request_and_command(deployed.id, &deployed.command_text),
            &criteria,
        );
        info!(request = %deployed.id, env = %env.name, criteria = %text, "post-deploy success criteria");
        self.post_to(&deployed.channel, &Reply::ok(text)).await;
    }
}
