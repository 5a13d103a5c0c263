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
            _ => {
                return Ok(Reply::failed(replies::internal_error("not a runbook read")));
            }
        };
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(replies::unknown_environment(env)));
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
                    return Ok(Reply::refused(replies::no_backup_cronjob(env)));
                }
                Some(cronjob) => target
                    .backups(spec)
                    .await
                    .map(|runs| rb::backups_text(env, kind, cronjob, &runs)),
            },
        };
        Ok(match result {
            Ok(text) => Reply::private(text),
            Err(TargetError::Refused(why)) => {
                Reply::refused(replies::environment_unavailable(env, &why))
            }
            Err(e) => Reply::failed(replies::environment_unavailable(env, &e.to_string())),
        })
    }

    async fn dr_status(&self) -> Reply {
        let Some(dr) = &self.cfg.dr else {
            return Reply::refused(replies::no_dr_region());
        };
        let target = match self.target_for(dr) {
            Ok(t) => t,
            Err(e) => return Reply::failed(replies::dr_unavailable(&e)),
        };
        let status = match target.status(dr).await {
            Ok(s) => s,
            Err(e) => {
                return Reply::failed(replies::dr_unavailable(&replies::status_unavailable(&e)));
            }
        };
        let pods = target.pods(dr).await.map_err(|e| e.to_string());
        Reply::private(replies::dr_status(
            &status,
            dr.namespace.as_deref(),
            pods.as_deref().map_err(String::as_str),
        ))
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
        let mut environments = Vec::new();
        for spec in self.cfg.environments.values() {
            environments.push(self.report_line(spec).await);
        }
        let incidents = self.store.open_incidents().await?;
        let incidents: Vec<_> = incidents
            .iter()
            .map(|i| replies::OpenIncident {
                id: i.id,
                severity: i.severity,
                title: &i.title,
                since: i.declared_at,
            })
            .collect();
        let ops = self
            .store
            .requests_finished_between(yesterday, today)
            .await?;
        let ops: Vec<_> = ops
            .iter()
            .map(|r| replies::FinishedOperation {
                id: r.id,
                command: &r.command_text,
                by: who_label(&r.requester),
                state: r.state.as_str(),
                succeeded: r.state == RequestState::Succeeded,
                break_glass: r.break_glass,
            })
            .collect();
        Ok(replies::daily_report(
            now,
            &environments,
            &incidents,
            yesterday,
            &ops,
        ))
    }

    async fn report_line(&self, spec: &EnvironmentSpec) -> String {
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return replies::environment_unavailable(&spec.name, &e),
        };
        let status = match target.status(spec).await {
            Ok(s) => s,
            Err(e) => {
                return replies::report_status_unavailable(&spec.name, target.kind(), &e);
            }
        };
        let pods = target.pods(spec).await.map_err(|e| e.to_string());
        replies::report_line(&spec.name, &status, pods.as_deref().map_err(String::as_str))
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
