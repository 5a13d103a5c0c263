//! Who may do what, where: every decision in one place. `access` and `decide` match every
//! command and operation kind without a catch-all arm, so a new one does not compile until
//! someone has decided who may run it.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::config::{Config, HumanDuration};
use crate::model::{
    Actor, BlueGreenAction, Command, EnvName, IncidentCommand, OperationKind, Person, RequestId,
    Severity, Timestamp, Version,
};

/// How many approvals a request needs, and from whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    pub count: u32,
    pub from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preconditions {
    pub soak: Option<SoakRequirement>,
    pub ci_green: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakRequirement {
    pub from: String,
    pub duration: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub roles: Vec<String>,
    pub during: Vec<Severity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position in the configuration, for reasons and the audit log (`rules[3]`).
    pub index: usize,
    pub operation: OperationKind,
    /// Empty means every environment.
    pub environments: Vec<String>,
    pub roles: Vec<String>,
    pub approvals: Option<ApprovalRequirement>,
    pub preconditions: Option<Preconditions>,
    pub break_glass: Option<BreakGlass>,
}

impl Rule {
    fn covers(&self, op: OperationKind, env: Option<&EnvName>) -> bool {
        self.operation == op
            && match env {
                None => true,
                Some(e) => {
                    self.environments.is_empty()
                        || self
                            .environments
                            .iter()
                            .any(|x| x == "*" || x == e.as_str())
                }
            }
    }
}

/// The compiled rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Compiles the rules of a configuration that passed `Config::problems`; rules naming an
    /// unknown operation are skipped (check-config reports them).
    pub fn from_config(cfg: &Config) -> Policy {
        let rules = cfg
            .rules
            .iter()
            .enumerate()
            .filter_map(|(index, r)| {
                Some(Rule {
                    index,
                    operation: OperationKind::parse(&r.operation)?,
                    environments: r.environments.clone(),
                    roles: r.roles.clone(),
                    approvals: r.approvals.as_ref().map(|a| ApprovalRequirement {
                        count: a.count,
                        from: a.from.clone(),
                    }),
                    preconditions: r.preconditions.as_ref().map(|p| Preconditions {
                        soak: match (&p.soak_from, p.soak) {
                            (Some(from), Some(duration)) => Some(SoakRequirement {
                                from: from.clone(),
                                duration,
                            }),
                            _ => None,
                        },
                        ci_green: p.ci_green,
                    }),
                    break_glass: r.break_glass.as_ref().map(|b| BreakGlass {
                        roles: b.roles.clone(),
                        during: b.during.clone(),
                    }),
                })
            })
            .collect();
        Policy { rules }
    }

    pub fn rules_for(
        &self,
        op: OperationKind,
        env: Option<&EnvName>,
    ) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.covers(op, env))
    }

    /// The rule that would apply to this actor: the first covering rule granting one of
    /// its roles.
    pub fn rule_for(
        &self,
        actor: &Actor,
        op: OperationKind,
        env: Option<&EnvName>,
    ) -> Option<&Rule> {
        self.rules_for(op, env)
            .find(|r| actor.has_any_role(&r.roles))
    }

    /// Which facts `decide` will need for this operation, so the engine gathers only those.
    pub fn needs(&self, actor: &Actor, op: &Operation) -> FactNeeds {
        let mut needs = FactNeeds::default();
        let Some(rule) = self.rule_for(actor, op.kind, op.env.as_ref()) else {
            return needs;
        };
        if let Some(p) = &rule.preconditions
            && preconditions_apply(op.kind)
        {
            needs.soak_from = p.soak.as_ref().map(|s| s.from.clone());
            needs.ci = p.ci_green;
        }
        needs.incidents = self
            .rules_for(op.kind, op.env.as_ref())
            .any(|r| r.break_glass.is_some());
        needs
    }
}

/// What a command is, for the policy: its kind, environment and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    pub env: Option<EnvName>,
    pub version: Option<Version>,
}

impl Operation {
    /// A `run ... ID` command whose environment has not been looked up yet. Deciding it
    /// without one would match every environment's rule, so the engine must fill it in.
    pub fn needs_run_environment(&self) -> bool {
        self.env.is_none()
            && matches!(
                self.kind,
                OperationKind::RunView
                    | OperationKind::RunCancel
                    | OperationKind::RunRerun
                    | OperationKind::RunApprove
                    | OperationKind::RunReject
            )
    }
}

/// Who may run a command at all. `Open` and `AnyRole` commands change nothing (every change
/// is granted by a rule, and so audited): the conversation relies on that to start them
/// before their delivery is known not to be a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// help, whoami: everyone.
    Open,
    /// status, requests, incident list/timeline, blue-green status: anyone holding a role.
    AnyRole,
    /// Needs a rule granting this operation.
    Rule(Operation),
    /// approve/deny: decided by the request's own rule.
    Vote(RequestId),
    /// cancel: the requester only.
    Requester(RequestId),
}

pub fn access(cmd: &Command) -> Access {
    let op = |kind, env: &EnvName| {
        Access::Rule(Operation {
            kind,
            env: Some(env.clone()),
            version: None,
        })
    };
    let global = |kind| {
        Access::Rule(Operation {
            kind,
            env: None,
            version: None,
        })
    };
    match cmd {
        Command::Help { .. } | Command::Whoami => Access::Open,
        Command::Status { .. } | Command::Requests => Access::AnyRole,
        Command::Deploy { env, version, .. } => Access::Rule(Operation {
            kind: OperationKind::Deploy,
            env: Some(env.clone()),
            version: Some(version.clone()),
        }),
        Command::Rollback { env, version, .. } => Access::Rule(Operation {
            kind: OperationKind::Rollback,
            env: Some(env.clone()),
            version: version.clone(),
        }),
        Command::Approve { id, .. } | Command::Deny { id, .. } => Access::Vote(*id),
        Command::Cancel { id } => Access::Requester(*id),
        Command::Scale { env, .. } => op(OperationKind::Scale, env),
        Command::Restart { env, .. } => op(OperationKind::Restart, env),
        Command::Maintenance { env, .. } => op(OperationKind::Maintenance, env),
        Command::Canary { env, .. } => op(OperationKind::Canary, env),
        Command::Pods { env } => op(OperationKind::Pods, env),
        Command::Logs { env, .. } => op(OperationKind::Logs, env),
        Command::Audit { .. } => global(OperationKind::Audit),
        Command::AuditPrune { .. } => global(OperationKind::AuditPrune),
        Command::Runs { env, .. } => op(OperationKind::Runs, env),
        // The environment is the run's, which only GitHub knows: the engine looks it up and
        // fills it in before deciding (see `Operation::needs_run_environment`).
        Command::Run { action, .. } => global(action.kind()),
        Command::Events { env } => op(OperationKind::Events, env),
        Command::Describe { env, .. } => op(OperationKind::Describe, env),
        Command::Top { env } => op(OperationKind::Top, env),
        Command::PodDelete { env, .. } => op(OperationKind::PodDelete, env),
        Command::Resources { env, .. } => op(OperationKind::Resources, env),
        Command::Backup { env } => op(OperationKind::Backup, env),
        Command::Backups { env } => op(OperationKind::Backups, env),
        Command::DrStatus => global(OperationKind::DrStatus),
        Command::DrFailover { env, .. } => op(OperationKind::DrFailover, env),
        Command::Report => global(OperationKind::Report),
        Command::BlueGreen { env, action } => match action {
            BlueGreenAction::Status => Access::AnyRole,
            BlueGreenAction::Switch(_) => op(OperationKind::BlueGreen, env),
            BlueGreenAction::Retire => op(OperationKind::BlueGreenRetire, env),
        },
        // A plan is shown to whoever may ask for the change itself.
        Command::Plan { change } => access(change),
        Command::Incident(ic) => match ic {
            IncidentCommand::List | IncidentCommand::Timeline { .. } => Access::AnyRole,
            IncidentCommand::Declare { .. } => global(OperationKind::IncidentDeclare),
            IncidentCommand::Update { .. } => global(OperationKind::IncidentUpdate),
            IncidentCommand::Severity { .. } => global(OperationKind::IncidentSeverity),
            IncidentCommand::Commander { .. } => global(OperationKind::IncidentCommander),
            IncidentCommand::Resolve { .. } => global(OperationKind::IncidentResolve),
        },
    }
}

/// Facts from the world that a decision may depend on; gathered by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The most severe open incident, if any.
    pub open_incident: Option<Severity>,
    /// For the soak precondition: the version's last successful deploy to the soak
    /// environment, and the last rollback there since.
    pub soak: Option<SoakFacts>,
    pub ci: Option<CiStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoakFacts {
    pub deployed_at: Option<Timestamp>,
    pub rolled_back_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiStatus {
    Green,
    /// Failed or still running, with what CI said.
    NotGreen(String),
    /// CI could not be asked; treated as not green (fail closed).
    Unknown(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactNeeds {
    pub soak_from: Option<String>,
    pub ci: bool,
    pub incidents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run now.
    Allow {
        rule: Option<usize>,
        break_glass: bool,
    },
    /// Record a pending request; run when approved.
    NeedsApproval {
        rule: usize,
        requirement: ApprovalRequirement,
        /// What to keep with the request so execution re-checks the same preconditions.
        decided_under: DecidedUnder,
    },
    Deny(Refusal),
}

/// The rule a request was decided under, kept with the request: at execution the
/// preconditions are re-checked from this snapshot, not re-derived from the requester's
/// roles, which may have come from a group that cannot be read again then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecidedUnder {
    /// Position of the rule in the configuration (`rules[3]`).
    pub rule: usize,
    pub operation: OperationKind,
    /// The preconditions that applied to this operation; `None` when none did.
    pub preconditions: Option<Preconditions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The actor holds no role at all.
    NoRole,
    /// No rule grants this operation here to any of the actor's roles.
    NotPermitted {
        operation: OperationKind,
        env: Option<EnvName>,
        /// Roles that could do it (empty when no rule covers it at all).
        allowed: Vec<String>,
    },
    /// Allowed in principle, but preconditions are unmet — every one is listed.
    Preconditions(Vec<Unmet>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The version has not soaked long enough (or at all) in the soak environment.
    Soak {
        from: String,
        version: Version,
        needed: HumanDuration,
        /// When it will be met, if the version is deployed there and not rolled back.
        met_at: Option<Timestamp>,
        why: String,
    },
    CiNotGreen {
        version: Version,
        detail: String,
    },
}

/// Whether a rule's preconditions (soak, CI) apply to this kind of operation. Exhaustive on
/// purpose, so a new kind forces the question.
pub fn preconditions_apply(kind: OperationKind) -> bool {
    match kind {
        OperationKind::Deploy => true,
        OperationKind::Rollback
        | OperationKind::Scale
        | OperationKind::Restart
        | OperationKind::Maintenance
        | OperationKind::Canary
        | OperationKind::Pods
        | OperationKind::Logs
        | OperationKind::IncidentDeclare
        | OperationKind::IncidentUpdate
        | OperationKind::IncidentSeverity
        | OperationKind::IncidentCommander
        | OperationKind::IncidentResolve
        | OperationKind::Audit
        | OperationKind::AuditPrune
        | OperationKind::Runs
        | OperationKind::RunView
        | OperationKind::RunCancel
        | OperationKind::RunRerun
        | OperationKind::RunApprove
        | OperationKind::RunReject
        | OperationKind::Events
        | OperationKind::Describe
        | OperationKind::Top
        | OperationKind::PodDelete
        | OperationKind::Resources
        | OperationKind::Backup
        | OperationKind::Backups
        | OperationKind::DrStatus
        | OperationKind::DrFailover
        | OperationKind::Report
        | OperationKind::BlueGreen
        | OperationKind::BlueGreenRetire => false,
    }
}

/// Whether a rule's `break_glass` can apply to this kind of operation. Exhaustive on
/// purpose: each kind states it.
pub fn break_glass_applies(kind: OperationKind) -> bool {
    match kind {
        OperationKind::Rollback | OperationKind::DrFailover => true,
        OperationKind::Deploy
        | OperationKind::Scale
        | OperationKind::Restart
        | OperationKind::Maintenance
        | OperationKind::Canary
        | OperationKind::Pods
        | OperationKind::Logs
        | OperationKind::IncidentDeclare
        | OperationKind::IncidentUpdate
        | OperationKind::IncidentSeverity
        | OperationKind::IncidentCommander
        | OperationKind::IncidentResolve
        | OperationKind::Audit
        | OperationKind::AuditPrune
        | OperationKind::Runs
        | OperationKind::RunView
        | OperationKind::RunCancel
        | OperationKind::RunRerun
        | OperationKind::RunApprove
        | OperationKind::RunReject
        | OperationKind::Events
        | OperationKind::Describe
        | OperationKind::Top
        | OperationKind::PodDelete
        | OperationKind::Resources
        | OperationKind::Backup
        | OperationKind::Backups
        | OperationKind::DrStatus
        | OperationKind::Report
        | OperationKind::BlueGreen
        | OperationKind::BlueGreenRetire => false,
    }
}

/// The decision for an operation. Pure: every fact comes in through `facts`.
pub fn decide(
    policy: &Policy,
    actor: &Actor,
    op: &Operation,
    facts: &Facts,
    now: Timestamp,
) -> Decision {
    let preconditions_apply = preconditions_apply(op.kind);
    let break_glass_applies = break_glass_applies(op.kind);

    if actor.roles.is_empty() {
        return Decision::Deny(Refusal::NoRole);
    }
    if op.needs_run_environment() {
        // Fail closed: without the run's environment no rule can be told apart.
        return Decision::Deny(Refusal::NotPermitted {
            operation: op.kind,
            env: None,
            allowed: Vec::new(),
        });
    }

    if break_glass_applies && let Some(sev) = facts.open_incident {
        let glass = policy.rules_for(op.kind, op.env.as_ref()).find(|r| {
            r.break_glass
                .as_ref()
                .is_some_and(|bg| actor.has_any_role(&bg.roles) && bg.during.contains(&sev))
        });
        if let Some(rule) = glass {
            return Decision::Allow {
                rule: Some(rule.index),
                break_glass: true,
            };
        }
    }

    let Some(rule) = policy.rule_for(actor, op.kind, op.env.as_ref()) else {
        let mut allowed: Vec<String> = policy
            .rules_for(op.kind, op.env.as_ref())
            .flat_map(|r| r.roles.iter().cloned())
            .collect();
        allowed.sort();
        allowed.dedup();
        return Decision::Deny(Refusal::NotPermitted {
            operation: op.kind,
            env: op.env.clone(),
            allowed,
        });
    };

    let preconditions = rule.preconditions.as_ref().filter(|_| preconditions_apply);
    if let Some(p) = preconditions {
        let unmet = unmet_preconditions(p, op, facts, now);
        if !unmet.is_empty() {
            return Decision::Deny(Refusal::Preconditions(unmet));
        }
    }

    match &rule.approvals {
        Some(req) => Decision::NeedsApproval {
            rule: rule.index,
            requirement: req.clone(),
            decided_under: DecidedUnder {
                rule: rule.index,
                operation: op.kind,
                preconditions: preconditions.cloned(),
            },
        },
        None => Decision::Allow {
            rule: Some(rule.index),
            break_glass: false,
        },
    }
}

/// Every unmet precondition, not just the first: the requester should learn all of them
/// at once.
pub fn unmet_preconditions(
    p: &Preconditions,
    op: &Operation,
    facts: &Facts,
    now: Timestamp,
) -> Vec<Unmet> {
    let mut unmet = Vec::new();
    let Some(version) = op.version.clone() else {
        return unmet;
    };
    if let Some(soak) = &p.soak {
        let needed = soak.duration;
        let f = facts.soak.clone().unwrap_or_default();
        match f.deployed_at {
            None => unmet.push(Unmet::Soak {
                from: soak.from.clone(),
                version: version.clone(),
                needed,
                met_at: None,
                why: format!(
                    "{version} has not been deployed successfully to {}",
                    soak.from
                ),
            }),
            Some(at) => {
                if let Some(rb) = f.rolled_back_at.filter(|rb| *rb >= at) {
                    unmet.push(Unmet::Soak {
                        from: soak.from.clone(),
                        version: version.clone(),
                        needed,
                        met_at: None,
                        why: format!(
                            "{} was rolled back {} after {version} was deployed there",
                            soak.from,
                            crate::format::timestamp(rb)
                        ),
                    });
                } else {
                    let met_at = at + needed.as_chrono();
                    if met_at > now {
                        unmet.push(Unmet::Soak {
                            from: soak.from.clone(),
                            version: version.clone(),
                            needed,
                            met_at: Some(met_at),
                            why: format!(
                                "{version} has soaked in {} for {} of {}",
                                soak.from,
                                crate::format::duration(now - at),
                                needed
                            ),
                        });
                    }
                }
            }
        }
    }
    if p.ci_green {
        match &facts.ci {
            Some(CiStatus::Green) => {}
            Some(CiStatus::NotGreen(d)) => unmet.push(Unmet::CiNotGreen {
                version,
                detail: d.clone(),
            }),
            Some(CiStatus::Unknown(d)) => unmet.push(Unmet::CiNotGreen {
                version,
                detail: format!("CI status unknown: {d}"),
            }),
            None => unmet.push(Unmet::CiNotGreen {
                version,
                detail: "CI status was not checked".into(),
            }),
        }
    }
    unmet
}

/// Why a vote is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteRefusal {
    /// Nobody approves their own request.
    Requester,
    /// The voter holds none of the roles the request's rule names.
    NotApprover { from: Vec<String> },
}

/// Whether `voter` may vote on a request raised by `requester`. Persons are compared, not
/// identities: nobody approves their own request from another account.
pub fn may_vote(
    req: &ApprovalRequirement,
    requester: &Person,
    voter: &Actor,
) -> Result<(), VoteRefusal> {
    if voter.person == *requester {
        return Err(VoteRefusal::Requester);
    }
    if !voter.has_any_role(&req.from) {
        return Err(VoteRefusal::NotApprover {
            from: req.from.clone(),
        });
    }
    Ok(())
}

/// A summary of what an actor may do in each environment, for `whoami`.
pub fn capabilities(policy: &Policy, actor: &Actor, environments: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for kind in OperationKind::ALL {
        if kind.is_environment_scoped() {
            let mut now = Vec::new();
            let mut approval = Vec::new();
            for env in environments {
                let e = EnvName::new(env.clone());
                if let Some(rule) = policy.rule_for(actor, kind, Some(&e)) {
                    match &rule.approvals {
                        Some(a) => approval.push(format!(
                            "{env} (needs {} from {})",
                            a.count,
                            a.from.join("/")
                        )),
                        None => now.push(env.clone()),
                    }
                }
                let glass = policy.rules_for(kind, Some(&e)).find_map(|r| {
                    r.break_glass
                        .as_ref()
                        .filter(|bg| actor.has_any_role(&bg.roles))
                });
                if let Some(bg) = glass
                    && !now.contains(env)
                {
                    let during: Vec<&str> = bg.during.iter().map(|s| s.as_str()).collect();
                    approval.push(format!(
                        "{env} at once during a {} incident (break-glass)",
                        during.join("/")
                    ));
                }
            }
            let mut parts = Vec::new();
            if !now.is_empty() {
                parts.push(now.join(", "));
            }
            parts.extend(approval);
            if !parts.is_empty() {
                lines.push(format!("{}: {}", kind.as_str(), parts.join("; ")));
            }
        } else if let Some(rule) = policy.rule_for(actor, kind, None) {
            match &rule.approvals {
                Some(a) => lines.push(format!(
                    "{} (needs {} from {})",
                    kind.as_str(),
                    a.count,
                    a.from.join("/")
                )),
                None => lines.push(kind.as_str().to_string()),
            }
        }
    }
    lines
}

/// When a request made now expires.
pub fn expiry(now: Timestamp, ttl: HumanDuration) -> Timestamp {
    now + Duration::seconds(ttl.0.as_secs() as i64)
}
