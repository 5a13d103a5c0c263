//! Commands that only read: help, whoami, status, requests, pods, logs, audit.

use super::*;

impl Engine {
    pub(super) fn open_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        match cmd {
            Command::Help { topic } => match grammar::help(topic.as_deref(), &self.parse_ctx) {
                Ok(text) => Reply::private(text),
                Err(e) => Reply::usage(e.render()),
            },
            _ => {
                let a = &inv.actor;
                let envs: Vec<String> = self.cfg.environments.keys().cloned().collect();
                let mut out = format!("You are {} ({}).", a.display_name, a.identity());
                if let Person::Named(name) = &a.person {
                    out.push_str(&format!(
                        "\nPerson: {name} ({})",
                        self.cfg.identities_of(&a.person).join(", ")
                    ));
                }
                if a.roles.is_empty() {
                    out.push_str("\nRoles: none. Ask an admin to add your id to a role.");
                } else {
                    out.push_str(&format!("\nRoles: {}", a.roles.join(", ")));
                    let caps = policy::capabilities(&self.policy, a, &envs);
                    if caps.is_empty() {
                        out.push_str("\nYou may read status, requests and incidents.");
                    } else {
                        out.push_str("\nYou may:");
                        for c in caps {
                            out.push_str(&format!("\n• {c}"));
                        }
                    }
                    let approver_of: Vec<String> = self
                        .policy
                        .rules
                        .iter()
                        .filter_map(|r| {
                            let a2 = r.approvals.as_ref()?;
                            a.has_any_role(&a2.from).then(|| {
                                let envs = if r.environments.is_empty() {
                                    "all environments".to_string()
                                } else {
                                    r.environments.join(", ")
                                };
                                format!("{} on {envs}", r.operation)
                            })
                        })
                        .collect();
                    if !approver_of.is_empty() {
                        out.push_str(&format!(
                            "\nYou can approve: {} (never your own requests).",
                            approver_of.join("; ")
                        ));
                    }
                }
                Reply::private(out)
            }
        }
    }

    pub(super) async fn read_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        let result = match cmd {
            Command::Status { env } => self.status(env.as_ref().map(|e| e.as_str())).await,
            Command::Requests => self.requests(&inv.actor).await,
            Command::Incident(IncidentCommand::List) => self.incident_list().await,
            Command::Incident(IncidentCommand::Timeline { id }) => {
                self.incident_timeline(inv, *id).await
            }
            Command::BlueGreen { env, .. } => return self.blue_green_status(env.as_str()).await,
            _ => return Reply::failed("internal error: not a read command"),
        };
        result.unwrap_or_else(|e| Reply::failed(format!("The database is unavailable: {e}")))
    }

    pub(super) async fn status(&self, env: Option<&str>) -> Result<Reply, StoreError> {
        let envs: Vec<_> = match env {
            Some(e) => self.cfg.environment(e).into_iter().collect(),
            None => self.cfg.environments.values().collect(),
        };
        let mut parts = Vec::new();
        for e in envs {
            match self.target_for(e) {
                Ok(t) => match t.status(e).await {
                    Ok(s) => parts.push(render::status(&s)),
                    Err(err) => parts.push(format!("{}: status unavailable: {err}", e.name)),
                },
                Err(err) => parts.push(format!("{}: {err}", e.name)),
            }
        }
        // An interrupted request there is news until someone acknowledges it.
        match env {
            None => parts.extend(self.interrupted_lines(None).await?),
            Some(e) => {
                if let Some(spec) = self.cfg.environment(e) {
                    parts.extend(self.interrupted_lines(Some(&spec.name)).await?);
                }
            }
        }
        Ok(Reply::private(parts.join("\n")))
    }

    pub(super) async fn requests(&self, actor: &Actor) -> Result<Reply, StoreError> {
        let now = self.now();
        let pending = self.store.pending_requests().await?;
        let mut lines = self.interrupted_lines(None).await?;
        for r in pending.iter().filter(|r| r.expires_at > now) {
            let stored = StoredRequirement::read(&r.approvals_json);
            let requester = self.person_of(&r.requester);
            let can = if requester == actor.person {
                Some("yours: `cancel` to withdraw")
            } else if policy::may_vote(&stored.requirement(), &requester, actor).is_ok() {
                Some("you can approve or deny")
            } else {
                None
            };
            if let Some(can) = can {
                let votes = self.store.votes(r.id).await?;
                lines.push(format!(
                    "{} {} by {} — {} of {} approvals, expires in {} ({can})",
                    r.id,
                    r.command_text,
                    who_label(&r.requester),
                    votes.iter().filter(|v| v.approve).count(),
                    stored.count,
                    render::duration(r.expires_at - now)
                ));
            }
        }
        if lines.is_empty() {
            Ok(Reply::private("No pending requests you can act on."))
        } else {
            Ok(Reply::private(lines.join("\n")))
        }
    }

    pub(super) async fn non_target(&self, inv: &Invocation, cmd: &Command) -> Reply {
        let result = match cmd {
            Command::Pods { env } => self.pods(env.as_str()).await,
            Command::Logs {
                env,
                pod,
                previous,
                tail,
            } => {
                self.logs(env.as_str(), pod.as_deref(), *previous, tail.unwrap_or(50))
                    .await
            }
            Command::Audit { limit } => self.audit_tail(limit.unwrap_or(10)).await,
            Command::Events { .. }
            | Command::Describe { .. }
            | Command::Top { .. }
            | Command::Backups { .. }
            | Command::DrStatus
            | Command::Report => self.runbook_read(cmd).await,
            Command::Incident(ic) => self.incident(inv, ic).await,
            _ => Ok(Reply::failed("internal error: unexpected command")),
        };
        result.unwrap_or_else(|e| {
            let step = match cmd {
                Command::Incident(_) => StoreStep::Incident,
                _ => StoreStep::Read,
            };
            self.metrics.store_refused(step);
            Reply::failed(format!("The database is unavailable: {e}"))
        })
    }

    pub(super) async fn pods(&self, env: &str) -> Result<Reply, StoreError> {
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(format!("unknown environment {env}")));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.pods(spec).await {
            Ok(pods) if pods.is_empty() => Reply::private(format!("{env}: no pods")),
            Ok(pods) => Reply::private(
                std::iter::once(format!("{env} [{}]:", target.kind()))
                    .chain(pods.iter().map(|p| {
                        format!(
                            "{} {} {} restarts={}{}",
                            p.name,
                            p.phase,
                            if p.ready { "ready" } else { "NOT READY" },
                            p.restarts,
                            p.reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )
                    }))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Err(e) => Reply::failed(format!("{env}: {e}")),
        })
    }

    pub(super) async fn logs(
        &self,
        env: &str,
        pod: Option<&str>,
        previous: bool,
        tail: u32,
    ) -> Result<Reply, StoreError> {
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(format!("unknown environment {env}")));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.logs(spec, pod, previous, tail).await {
            Ok(text) => Reply::private(format!("```\n{text}\n```")),
            Err(e) => Reply::failed(format!("{env}: {e}")),
        })
    }

    pub(super) async fn audit_tail(&self, n: u32) -> Result<Reply, StoreError> {
        let rows = self.store.audit_tail(n).await?;
        if rows.is_empty() {
            return Ok(Reply::private("The audit log is empty."));
        }
        let lines: Vec<String> = rows
            .iter()
            .rev()
            .map(|r| {
                let e = &r.entry;
                format!(
                    "#{} {} {} {} {}{}{} — {}",
                    r.seq,
                    render::timestamp(e.at),
                    who_label(&e.who),
                    e.action,
                    e.operation,
                    e.environment
                        .as_ref()
                        .map(|x| format!(" {x}"))
                        .unwrap_or_default(),
                    e.request_id.map(|x| format!(" {x}")).unwrap_or_default(),
                    e.outcome
                )
            })
            .collect();
        Ok(Reply::private(lines.join("\n")))
    }
}
