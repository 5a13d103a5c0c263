//! Commands that only read: help, whoami, status, requests, pods, logs, audit.

use erlmcp_commands::config::EnvironmentSpec;

use super::*;

/// What a set of roles may do, as `whoami` lists it.
pub(super) struct Grants {
    capabilities: Vec<String>,
    approver_of: Vec<String>,
}

/// Sets of roles whose grants are kept at most.
const GRANTS_KEPT: usize = 256;

impl Engine {
    pub(super) fn open_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        match cmd {
            Command::Help { topic } => match grammar::help(topic.as_deref(), &self.parse_ctx) {
                Ok(text) => Reply::private(text),
                Err(e) => Reply::usage(e.render()),
            },
            _ => {
                let a = &inv.actor;
                let person = match &a.person {
                    Person::Named(name) => Some((name.as_str(), self.cfg.identities_of(&a.person))),
                    Person::Identity(_) => None,
                };
                let grants = self.grants(&a.roles);
                Reply::private(replies::whoami(
                    &a.display_name,
                    &a.identity(),
                    person,
                    &a.roles,
                    &grants.capabilities,
                    &grants.approver_of,
                ))
            }
        }
    }

    /// What holders of `roles` may do and approve, for `whoami`. It depends on the roles
    /// and the configuration only, and the configuration is fixed for the engine's life,
    /// so it is worked out once per set of roles.
    fn grants(&self, roles: &[String]) -> Arc<Grants> {
        let mut known = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = known.get(roles) {
            return g.clone();
        }
        // Only the roles count in what follows.
        let actor = Actor::new("", "", "", roles.to_vec());
        let envs: Vec<String> = self.cfg.environments.keys().cloned().collect();
        let approver_of = self
            .policy
            .rules
            .iter()
            .filter_map(|r| {
                let a = r.approvals.as_ref()?;
                actor
                    .has_any_role(&a.from)
                    .then(|| replies::approver_of(&r.operation.to_string(), &r.environments))
            })
            .collect();
        let g = Arc::new(Grants {
            capabilities: policy::capabilities(&self.policy, &actor, &envs),
            approver_of,
        });
        // Sets of roles come from the configuration, so there are few; a flood of distinct
        // group combinations only costs recomputing.
        if known.len() >= GRANTS_KEPT {
            known.clear();
        }
        known.insert(roles.to_vec(), g.clone());
        g
    }

    pub(super) async fn read_command(&self, inv: &Invocation, cmd: &Command) -> Reply {
        let result = match cmd {
            Command::Status { env } => self.status(env.as_ref().map(|e| e.as_str())).await,
            Command::Requests => self.requests(&inv.actor).await,
            Command::Incident(IncidentCommand::List) => self.incidents.list().await,
            Command::Incident(IncidentCommand::Timeline { id }) => {
                self.incidents.timeline(&inv.channel, *id).await
            }
            Command::BlueGreen { env, .. } => return self.blue_green_status(env.as_str()).await,
            _ => return Reply::failed(replies::internal_error("not a read command")),
        };
        result.unwrap_or_else(|e| Reply::failed(replies::database_unavailable(&e)))
    }

    pub(super) async fn status(&self, env: Option<&str>) -> Result<Reply, StoreError> {
        let envs: Vec<_> = match env {
            Some(e) => self.cfg.environment(e).into_iter().collect(),
            None => self.cfg.environments.values().collect(),
        };
        // An interrupted request there is news until someone acknowledges it.
        let interrupted = async {
            match env {
                None => self.interrupted_lines(None).await,
                Some(e) => match self.cfg.environment(e) {
                    Some(spec) => self.interrupted_lines(Some(&spec.name)).await,
                    None => Ok(Vec::new()),
                },
            }
        };
        // None of these reads depends on another: side by side, the answer waits for the
        // slowest of them rather than for their sum (a store or cluster round trip each).
        let workloads = futures::future::join_all(envs.into_iter().map(|e| self.status_line(e)));
        let (mut parts, interrupted) = tokio::join!(workloads, interrupted);
        parts.extend(interrupted?);
        Ok(Reply::private(parts.join("\n")))
    }

    /// One environment's line of `status`, or why it cannot be read.
    async fn status_line(&self, e: &EnvironmentSpec) -> String {
        match self.target_for(e) {
            Ok(t) => match t.status(e).await {
                Ok(s) => replies::status(&s),
                Err(err) => {
                    replies::environment_unavailable(&e.name, &replies::status_unavailable(&err))
                }
            },
            Err(err) => replies::environment_unavailable(&e.name, &err),
        }
    }

    pub(super) async fn requests(&self, actor: &Actor) -> Result<Reply, StoreError> {
        let now = self.now();
        let pending = self.store.pending_requests().await?;
        let mut lines = self.interrupted_lines(None).await?;
        for r in pending.iter().filter(|r| r.expires_at > now) {
            let stored = StoredRequirement::read(&r.approvals_json);
            let requester = self.person_of(&r.requester);
            let can = if requester == actor.person {
                Some(replies::CAN_WITHDRAW)
            } else if policy::may_vote(&stored.requirement(), &requester, actor).is_ok() {
                Some(replies::CAN_VOTE)
            } else {
                None
            };
            if let Some(can) = can {
                let votes = self.store.votes(r.id).await?;
                lines.push(replies::pending_request_line(
                    r.id,
                    &r.command_text,
                    &who_label(&r.requester),
                    votes.iter().filter(|v| v.approve).count(),
                    stored.count,
                    r.expires_at - now,
                    can,
                ));
            }
        }
        if lines.is_empty() {
            Ok(Reply::private(replies::no_pending_requests()))
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
            Command::Incident(ic) => self.incidents.handle(&inv.actor, &inv.channel, ic).await,
            Command::Runs { .. } | Command::Run { .. } => Ok(self.run_read(cmd).await),
            _ => Ok(Reply::failed(replies::internal_error("unexpected command"))),
        };
        result.unwrap_or_else(|e| {
            let step = match cmd {
                Command::Incident(_) => StoreStep::Incident,
                _ => StoreStep::Read,
            };
            self.metrics.store_refused(step);
            Reply::failed(replies::database_unavailable(&e))
        })
    }

    pub(super) async fn pods(&self, env: &str) -> Result<Reply, StoreError> {
        let Some(spec) = self.cfg.environment(env) else {
            return Ok(Reply::refused(replies::unknown_environment(env)));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.pods(spec).await {
            Ok(pods) => Reply::private(replies::pods(env, target.kind(), &pods)),
            Err(e) => Reply::failed(replies::environment_unavailable(env, &e.to_string())),
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
            return Ok(Reply::refused(replies::unknown_environment(env)));
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return Ok(Reply::failed(e)),
        };
        Ok(match target.logs(spec, pod, previous, tail).await {
            Ok(text) => Reply::private(replies::logs(&text)),
            Err(e) => Reply::failed(replies::environment_unavailable(env, &e.to_string())),
        })
    }

    pub(super) async fn audit_tail(&self, n: u32) -> Result<Reply, StoreError> {
        let rows = self.store.audit_tail(n).await?;
        if rows.is_empty() {
            return Ok(Reply::private(replies::audit_log_empty()));
        }
        let lines: Vec<String> = rows
            .iter()
            .rev()
            .map(|r| {
                let e = &r.entry;
                replies::audit_line(
                    r.seq,
                    e.at,
                    &who_label(&e.who),
                    &e.action,
                    &e.operation,
                    e.environment.as_deref(),
                    e.request_id,
                    &e.outcome,
                )
            })
            .collect();
        Ok(Reply::private(lines.join("\n")))
    }
}
