//! The runbook's reads: events, describe, top, backups, the DR region's status and the
//! daily health report (on demand and on the scheduler).

use erlmcp_commands::config::EnvironmentSpec;
use erlmcp_commands::runbook as rb;

use super::*;

impl Engine {
    pub(super) async fn runbook_read(&self, cmd: &Command) -> Result<Reply, StoreError> {
        let env = match cmd {
            Command::Events { env }
            | Command::Describe { env, .. }
            | Command::Top { env }
            | Command::Backups { env } => env.as_str(),
            Command::DrStatus => return Ok(self.dr_status().await),
            Command::Report => return Ok(Reply::private(self.daily_report().await?)),
            _ => return Ok(Reply::failed("internal error: not a runbook read")),
        };
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(format!("unknown environment {env}")));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        let kind = target.kind();
        let result = match cmd {
            Command::Events { .. } => target.events(spec).await.map(|mut events| {
                rb::sort_events(&mut events);
                rb::events_text(env, kind, &events)
            }),
            Command::Describe { pod, .. } => target
                .describe_pod(spec, pod)
                .await
                .map(|d| rb::describe_text(kind, &d)),
            Command::Top { .. } => target
                .top(spec)
                .await
                .map(|usage| rb::top_text(env, kind, usage.as_deref())),
            _ => match spec.backup_cronjob.as_deref() {
                None => {
                    return Ok(Reply::refused(format!(
                        "environment {env} has no backup_cronjob configured"
                    )));
                }
                Some(cronjob) => target
                    .backups(spec)
                    .await
                    .map(|runs| rb::backups_text(env, kind, cronjob, &runs)),
            },
        };
        Ok(match result {
            Ok(text) => Reply::private(text),
            Err(TargetError::Refused(why)) => Reply::refused(format!("{env}: {why}")),
            Err(e) => Reply::failed(format!("{env}: {e}")),
        })
    }

    async fn dr_status(&self) -> Reply {
        let Some(dr) = &self.cfg.dr else {
            return Reply::refused(
                "No DR region is configured (add a [dr] section: target, namespace, workload, health_url).",
            );
        };
        let target = match self.target_for(dr) {
            Ok(t) => t,
            Err(e) => return Reply::failed(format!("DR region: {e}")),
        };
        let mut out = match target.status(dr).await {
            Ok(s) => format!("DR region — {}", render::status(&s)),
            Err(e) => return Reply::failed(format!("DR region: status unavailable: {e}")),
        };
        if let Some(ns) = &dr.namespace {
            out.push_str(&format!("\n  namespace: {ns}"));
        }
        match target.pods(dr).await {
            Ok(pods) => {
                out.push_str(&format!("\n  pods: {}", rb::pods_summary(&pods)));
                for p in &pods {
                    out.push_str(&format!(
                        "\n  {} {} {} restarts={}",
                        p.name,
                        p.phase,
                        if p.ready { "ready" } else { "NOT READY" },
                        p.restarts
                    ));
                }
            }
            Err(e) => out.push_str(&format!("\n  pods: unavailable ({e})")),
        }
        Reply::private(out)
    }

    /// Per environment: pods and restarts, health, version; then open incidents and the
    /// operations that ended yesterday (UTC).
    pub async fn daily_report(&self) -> Result<String, StoreError> {
        let now = self.now();
        let today = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(now);
        let yesterday = today - chrono::Duration::days(1);
        let mut out = format!("Daily health report — {}", now.format("%Y-%m-%d"));
        for spec in self.cfg.environments.values() {
            out.push('\n');
            out.push_str(&self.report_line(spec).await);
        }
        let incidents = self.store.open_incidents().await?;
        if incidents.is_empty() {
            out.push_str("\nOpen incidents: none");
        } else {
            out.push_str(&format!("\nOpen incidents: {}", incidents.len()));
            for i in &incidents {
                out.push_str(&format!(
                    "\n  {} {} {} (since {})",
                    i.id,
                    i.severity,
                    i.title,
                    render::timestamp(i.declared_at)
                ));
            }
        }
        let ops = self
            .store
            .requests_finished_between(yesterday, today)
            .await?;
        let failed = ops
            .iter()
            .filter(|r| r.state != RequestState::Succeeded)
            .count();
        out.push_str(&format!(
            "\nYesterday's operations ({}): {}, {failed} not successful",
            yesterday.format("%Y-%m-%d"),
            ops.len()
        ));
        for r in ops.iter().take(30) {
            out.push_str(&format!(
                "\n  {} {} by {}: {}{}",
                r.id,
                r.command_text,
                who_label(&r.requester),
                r.state.as_str(),
                if r.break_glass { " [break-glass]" } else { "" }
            ));
        }
        if ops.len() > 30 {
            out.push_str(&format!("\n  … {} more (see `audit`)", ops.len() - 30));
        }
        Ok(out)
    }

    async fn report_line(&self, spec: &EnvironmentSpec) -> String {
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return format!("{}: {e}", spec.name),
        };
        let status = match target.status(spec).await {
            Ok(s) => s,
            Err(e) => return format!("{} [{}]: status unavailable: {e}", spec.name, target.kind()),
        };
        let pods = match target.pods(spec).await {
            Ok(p) => rb::pods_summary(&p),
            Err(e) => format!("pods unavailable ({e})"),
        };
        let health = match &status.health {
            Some(h) if h.is_healthy() => format!("health {} OK", h.code.unwrap_or(200)),
            Some(h) => match (h.code, &h.error) {
                (Some(c), _) => format!("health {c} FAILING"),
                (None, Some(e)) => format!("health FAILING ({e})"),
                (None, None) => "health FAILING (no answer)".into(),
            },
            None => "health not probed (no health_url)".into(),
        };
        format!(
            "{} [{}]: {} — {pods} — {health}",
            spec.name,
            status.target,
            status.version.as_deref().unwrap_or("unknown version")
        )
    }

    /// The scheduled report: posted in `report.channel`. Whatever the chat answered, the
    /// job goes on to tomorrow.
    pub(crate) async fn post_daily_report(&self) -> Result<(), StoreError> {
        let Some(channel) = self.cfg.report.channel.clone() else {
            return Ok(());
        };
        let text = self.daily_report().await?;
        self.post_to(&channel, &Reply::ok(text)).await;
        Ok(())
    }
}
