//! One inbound command, from its text to its reply: parsed once, routed by the access the
//! policy asks for, counted and traced.

use super::background::InFlight;
use super::*;

static TRACE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A short id that ties together the log lines of one command.
fn trace_id() -> String {
    let n = TRACE_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}{:04x}", t, n & 0xffff)
}

/// The target change a command asks for; `None` for commands that are not target changes.
pub(super) fn target_action(cmd: &Command) -> Option<TargetAction> {
    match cmd {
        Command::Deploy {
            version, strategy, ..
        } => Some(TargetAction::Deploy {
            version: version.clone(),
            strategy: *strategy,
        }),
        Command::Rollback { version, .. } => Some(TargetAction::Rollback {
            version: version.clone(),
        }),
        Command::Scale { replicas, .. } => Some(TargetAction::Scale {
            replicas: *replicas,
        }),
        Command::Restart { .. } => Some(TargetAction::Restart),
        Command::Maintenance { on, .. } => Some(TargetAction::Maintenance { on: *on }),
        Command::Canary { action, .. } => Some(TargetAction::Canary { action: *action }),
        Command::PodDelete { pod, force, .. } => Some(TargetAction::DeletePod {
            pod: pod.clone(),
            force: *force,
        }),
        Command::Resources { change, .. } => Some(TargetAction::SetResources {
            change: change.clone(),
        }),
        Command::Backup { .. } => Some(TargetAction::Backup),
        Command::DrFailover { .. } => Some(TargetAction::DrFailover),
        Command::Events { .. }
        | Command::Describe { .. }
        | Command::Top { .. }
        | Command::Backups { .. }
        | Command::DrStatus
        | Command::Report => None,
        Command::BlueGreen { action, .. } => match action {
            erlmcp_commands::BlueGreenAction::Status => None,
            _ => Some(TargetAction::BlueGreen { action: *action }),
        },
        Command::Plan { .. } => None,
        Command::Help { .. }
        | Command::Whoami
        | Command::Status { .. }
        | Command::Approve { .. }
        | Command::Deny { .. }
        | Command::Cancel { .. }
        | Command::Requests
        | Command::Pods { .. }
        | Command::Logs { .. }
        | Command::Incident(_)
        | Command::Audit { .. }
        | Command::AuditPrune { .. }
        | Command::Runs { .. }
        | Command::Run { .. } => None,
    }
}

/// Whether a command changes something and so runs as a request with an outcome: a target
/// change, pruning the audit log, or a change to a workflow run.
pub(super) fn is_change(cmd: &Command) -> bool {
    target_action(cmd).is_some()
        || matches!(cmd, Command::AuditPrune { .. })
        || matches!(cmd, Command::Run { action, .. } if action.is_change())
}

pub(super) fn reason_of(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Deploy { reason, .. }
        | Command::Rollback { reason, .. }
        | Command::Scale { reason, .. }
        | Command::Restart { reason, .. }
        | Command::Maintenance { reason, .. }
        | Command::DrFailover { reason, .. } => reason.clone(),
        _ => None,
    }
}

/// The command as a canonical string for records: it parses back to the same command.
pub(super) fn command_text(text: &str, prefix: &str) -> String {
    let t = text.trim();
    t.strip_prefix(prefix).unwrap_or(t).trim().to_string()
}

impl Engine {
    /// Resolves roles for a platform identity and the groups it belongs to
    /// (`slack-group:S1`, `discord-role:3`).
    pub fn actor(
        &self,
        platform: &str,
        user_id: &str,
        display_name: &str,
        groups: &[String],
    ) -> Actor {
        let identity = format!("{platform}:{user_id}");
        let person = self.cfg.person_for(&identity);
        let mut ids = vec![identity];
        ids.extend(groups.iter().cloned());
        Actor {
            platform: platform.to_string(),
            user_id: user_id.to_string(),
            display_name: display_name.to_string(),
            roles: self.cfg.roles_for(&ids),
            person,
            groups: Default::default(),
        }
    }

    /// Whether `text` from `actor` (resolved from its own identity, without groups) needs
    /// the actor's groups to be decided. When the roles bound to the identity itself
    /// already grant what the command needs, a slow group lookup must not delay it.
    pub async fn needs_groups(&self, actor: &Actor, text: &str) -> bool {
        match self.parse(text) {
            Ok(cmd) => self.needs_groups_for(actor, &cmd).await,
            Err(_) => false,
        }
    }

    /// [`Engine::needs_groups`] for a parsed command.
    pub async fn needs_groups_for(&self, actor: &Actor, cmd: &Command) -> bool {
        match policy::access(cmd) {
            // `whoami` exists to show every role, those from groups included.
            Access::Open => matches!(cmd, Command::Whoami),
            Access::AnyRole => actor.roles.is_empty(),
            Access::Requester(_) => false,
            Access::Vote(id) => match self.store.get_request(id).await {
                Ok(Some(row)) => {
                    let stored: StoredApproval =
                        serde_json::from_str(&row.approvals_json).unwrap_or_default();
                    !actor.has_any_role(&stored.from)
                }
                // The vote is refused whatever the groups say.
                Ok(None) => false,
                Err(_) => true,
            },
            Access::Rule(op) => {
                let direct_rule = self
                    .policy
                    .rule_for(actor, op.kind, op.env.as_ref())
                    .is_some();
                let direct_glass = self.policy.rules_for(op.kind, op.env.as_ref()).any(|r| {
                    r.break_glass
                        .as_ref()
                        .is_some_and(|bg| actor.has_any_role(&bg.roles))
                });
                !(direct_rule || direct_glass)
            }
        }
    }

    /// Reads a command as typed, with this bot's environments and aliases.
    pub fn parse(&self, text: &str) -> Result<Command, grammar::ParseError> {
        grammar::parse(text, &self.parse_ctx)
    }

    /// Handles one command end to end and returns the reply for the person who typed it.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        let parsed = self.parse(&inv.text);
        self.handle_parsed(inv, parsed).await
    }

    /// [`Engine::handle`] for a command its caller has already parsed (from `inv.text`).
    pub async fn handle_parsed(
        &self,
        inv: Invocation,
        parsed: Result<Command, grammar::ParseError>,
    ) -> Reply {
        let started = std::time::Instant::now();
        let _in_flight = InFlight::enter(self);
        let span = tracing::info_span!(
            "command",
            platform = %inv.actor.platform,
            channel = %inv.channel,
            user = %inv.actor.user_id,
            command = tracing::field::Empty,
            request_id = %trace_id(),
        );
        let mut command = "unparsed";
        let reply = async {
            let reply = match parsed {
                Err(e) => {
                    info!(error = %e.message, "command did not parse");
                    Reply::usage(e.render())
                }
                Ok(cmd) => {
                    command = grammar::command_name(&cmd);
                    tracing::Span::current().record("command", command);
                    let whoami = matches!(cmd, Command::Whoami);
                    let mut reply = self.dispatch(&inv, cmd).await;
                    if inv.actor.groups == GroupMembership::Unreadable
                        && (whoami || reply.kind == ReplyKind::Refused)
                    {
                        reply.push(replies::groups_unreadable());
                    }
                    reply
                }
            };
            info!(outcome = ?reply.kind, "command handled");
            reply
        }
        .instrument(span)
        .await;
        self.metrics
            .commands
            .get_or_create(&CommandLabels {
                platform: inv.actor.platform.clone(),
                command: command.to_string(),
                outcome: format!("{:?}", reply.kind).to_lowercase(),
            })
            .inc();
        self.metrics
            .command_seconds
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    async fn dispatch(&self, inv: &Invocation, cmd: Command) -> Reply {
        match policy::access(&cmd) {
            Access::Open => self.open_command(inv, &cmd),
            Access::AnyRole => {
                if inv.actor.roles.is_empty() {
                    return Reply::refused(replies::refusal(&policy::Refusal::NoRole, self.now()));
                }
                self.read_command(inv, &cmd).await
            }
            Access::Vote(id) => match &cmd {
                Command::Approve { comment, .. } => self.vote(inv, id, true, comment.clone()).await,
                Command::Deny { reason, .. } => self.vote(inv, id, false, reason.clone()).await,
                _ => Reply::failed(replies::internal_error(
                    "vote access for a non-vote command",
                )),
            },
            Access::Requester(id) => self.cancel(inv, id).await,
            Access::Rule(op) if op.needs_run_environment() => {
                self.run_operation(inv, cmd, op).await
            }
            Access::Rule(op) => self.operation(inv, cmd, op).await,
        }
    }
}
