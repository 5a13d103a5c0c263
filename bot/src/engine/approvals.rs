//! Votes, approval cards, cancellation and expiry of pending requests.

use erlmcp_commands::message::Mention;
use erlmcp_commands::render::RoleMembers;

use super::*;

impl Engine {
    pub(super) fn card(&self, row: &RequestRow, votes: &[crate::store::VoteRow]) -> ApprovalCard {
        let stored = StoredRequirement::read(&row.approvals_json);
        let cmd: Option<Command> = serde_json::from_str(&row.command_json).ok();
        let version = match &cmd {
            Some(Command::Deploy { version, .. }) => Some(version.to_string()),
            Some(Command::Rollback { version, .. }) => version.as_ref().map(|v| v.to_string()),
            _ => None,
        };
        ApprovalCard {
            id: row.id,
            what: row.command_text.clone(),
            requester: who_label(&row.requester),
            environment: row.environment.clone(),
            version,
            approvers: stored
                .from
                .iter()
                .map(|role| RoleMembers {
                    role: role.clone(),
                    members: self
                        .cfg
                        .role_identities(role)
                        .iter()
                        .filter_map(|i| Mention::from_identity(i))
                        .collect(),
                })
                .collect(),
            requirement: stored.requirement(),
            approvals: votes
                .iter()
                .filter(|v| v.approve)
                .map(|v| who_label(&v.voter))
                .collect(),
            met: stored.met,
            expires_at: row.expires_at,
            state: row.state.as_str().to_string(),
            state_detail: row.outcome.clone(),
            plan: stored.plan,
        }
    }

    /// Tells chat adapters that a request's message must be redrawn.
    pub(super) async fn announce(&self, id: RequestId) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let (Ok(Some(row)), Ok(votes)) =
            (self.store.get_request(id).await, self.store.votes(id).await)
        else {
            return;
        };
        let card = self.card(&row, &votes);
        let _ = self.events.send(EngineEvent::RequestChanged {
            card,
            message: row.message_ref.clone(),
        });
    }

    pub(super) fn view(&self, row: &RequestRow, votes: &[crate::store::VoteRow]) -> RequestView {
        let stored = StoredRequirement::read(&row.approvals_json);
        RequestView {
            state: row.state,
            requester: self.person_of(&row.requester),
            requirement: stored.requirement(),
            expires_at: row.expires_at,
            votes: votes
                .iter()
                .map(|v| Vote {
                    voter: self.person_of(&v.voter),
                    approve: v.approve,
                })
                .collect(),
        }
    }

    pub(super) async fn vote(
        &self,
        inv: &Invocation,
        id: RequestId,
        approve: bool,
        comment: Option<String>,
    ) -> Reply {
        let now = self.now();
        let row = match self.store.get_request(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Reply::refused(replies::no_such_request(id)),
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        let votes = match self.store.votes(id).await {
            Ok(v) => v,
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        let view = self.view(&row, &votes);
        let verb = if approve { "approve" } else { "deny" };
        match approval::apply(
            &view,
            &Event::Vote {
                voter: &inv.actor,
                approve,
            },
            now,
        ) {
            Err(Rejection::Expired) => {
                self.expire_one(&row).await;
                return Reply::refused(replies::request_expired_at(id, row.expires_at));
            }
            Err(Rejection::NotPending(p)) => {
                return Reply::refused(replies::nothing_to_vote_on(id, p.describe(), verb));
            }
            Err(Rejection::Vote(r)) => {
                let text = replies::vote_refusal(&r, id);
                let mut entry = self.entry(
                    &who(&inv.actor),
                    &inv.channel,
                    AuditAction::VoteRefused,
                    verb,
                );
                entry.request_id = Some(id);
                entry.environment = row.environment.clone();
                entry.decision = AuditDecision::Deny.into();
                entry.reason = text.clone();
                entry.outcome = "refused".into();
                let _ = self.audit(entry).await;
                self.metrics.vote(Ballot::of(approve), VoteOutcome::Refused);
                return Reply::refused(text);
            }
            Err(Rejection::AlreadyVoted) => {
                return Reply::refused(replies::already_voted(id));
            }
            Err(Rejection::NotRequester) => {
                return Reply::refused(replies::only_the_requester_cancels(id, None));
            }
            Ok(_) => {}
        }
        let inserted = self
            .store
            .insert_vote(NewVote {
                request_id: id,
                voter: who(&inv.actor),
                approve,
                comment: comment.clone(),
                at: now,
            })
            .await;
        match inserted {
            Ok(VoteInsert::Inserted) => {}
            Ok(VoteInsert::AlreadyVoted) => {
                return Reply::refused(replies::already_voted(id));
            }
            Err(e) => return self.store_refusal(StoreStep::Vote, &e),
        }
        let mut entry = self.entry(&who(&inv.actor), &inv.channel, AuditAction::Voted, verb);
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = serde_json::json!({ "approve": approve, "comment": comment }).to_string();
        entry.outcome = "recorded".into();
        entry.votes = self.votes_json(id).await;
        if let Err(e) = self.audit(entry).await {
            return self.store_refusal(StoreStep::Audit, &e);
        }
        self.metrics
            .vote(Ballot::of(approve), VoteOutcome::Recorded);
        // Settle from what is stored now, so concurrent voters agree on the outcome and the
        // compare-and-set below lets exactly one of them carry it out.
        let votes = match self.store.votes(id).await {
            Ok(v) => v,
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        let view = self.view(&row, &votes);
        match approval::settle(&view) {
            Some(Transition::Approved { approvals }) => {
                self.start_approved(inv, &row, approvals).await
            }
            Some(Transition::Denied) => {
                let why = replies::denied_by(&who_label(&who(&inv.actor)), comment.as_deref());
                match self
                    .store
                    .transition_request(
                        id,
                        RequestState::Pending,
                        RequestState::Denied,
                        Some(&why),
                        self.now(),
                    )
                    .await
                {
                    Ok(true) => {
                        let mut entry = self.entry(
                            &who(&inv.actor),
                            &inv.channel,
                            AuditAction::Denied,
                            &row.operation,
                        );
                        entry.request_id = Some(id);
                        entry.environment = row.environment.clone();
                        entry.arguments = row.command_json.clone();
                        entry.decision = AuditDecision::Deny.into();
                        entry.reason = why.clone();
                        entry.votes = self.votes_json(id).await;
                        entry.outcome = "denied".into();
                        let _ = self.audit(entry).await;
                        let github = self.gate_denied(&row).await.unwrap_or_default();
                        self.announce(id).await;
                        Reply::ok(replies::request_denied(
                            id,
                            &row.command_text,
                            &why,
                            &github,
                        ))
                    }
                    Ok(false) => Reply::ok(replies::vote_recorded_already_settled(id)),
                    Err(e) => self.store_refusal(StoreStep::RequestState, &e),
                }
            }
            _ => {
                self.announce(id).await;
                let stored = StoredRequirement::read(&row.approvals_json);
                Reply::ok(replies::approved_by(
                    &who_label(&who(&inv.actor)),
                    id,
                    view.approvals(),
                    stored.count,
                ))
            }
        }
    }

    pub(super) async fn start_approved(
        &self,
        inv: &Invocation,
        row: &RequestRow,
        approvals: u32,
    ) -> Reply {
        let id = row.id;
        match self
            .store
            .start_executing(id, RequestState::Pending, &self.owner, self.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Reply::ok(replies::vote_recorded_already_running(id));
            }
            Err(e) => return self.store_refusal(StoreStep::RequestState, &e),
        }
        let cmd: Command = match serde_json::from_str(&row.command_json) {
            Ok(c) => c,
            Err(e) => {
                self.fail_request(id, RequestState::Executing, "stored command unreadable")
                    .await;
                return Reply::failed(replies::stored_command_unreadable(id, &e));
            }
        };
        // The world may have changed while the request waited: check again, under the rule
        // the request was decided under.
        let op = match policy::access(&cmd) {
            Access::Rule(op) => op,
            _ => {
                let text = replies::NOT_AN_OPERATION_UNDER_A_RULE.to_string();
                return self.refuse_at_execution(row, &text).await;
            }
        };
        let preconditions = match recheck_preconditions(&row.approvals_json, op.kind) {
            Ok(p) => p,
            Err(why) => return self.refuse_at_execution(row, &why.to_string()).await,
        };
        if let Some(p) = preconditions {
            let facts = match self.precondition_facts(&p, &op).await {
                Ok(f) => f,
                Err(e) => {
                    self.fail_request(id, RequestState::Executing, "audit log unavailable")
                        .await;
                    return self.store_refusal(StoreStep::Read, &e);
                }
            };
            let unmet = policy::unmet_preconditions(&p, &op, &facts, self.now());
            if !unmet.is_empty() {
                let text = replies::refusal(&policy::Refusal::Preconditions(unmet), self.now());
                return self.refuse_at_execution(row, &text).await;
            }
        }
        let mut entry = self.entry(
            &row.requester,
            &row.channel,
            AuditAction::Executing,
            &row.operation,
        );
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.decision = AuditDecision::Approved.into();
        entry.reason = format!(
            "{approvals} approval(s), last by {}",
            who_label(&who(&inv.actor))
        );
        entry.votes = self.votes_json(id).await;
        entry.outcome = "started".into();
        if let Err(e) = self.audit_before(id, RequestState::Executing, entry).await {
            return self.store_refusal(StoreStep::Audit, &e);
        }
        self.announce(id).await;
        let mut row = row.clone();
        row.state = RequestState::Executing;
        self.execute(&row, &cmd, inv.progress.as_ref()).await
    }

    /// An approved request that must not run after all: marked failed, audited, its card
    /// redrawn, and the reply says why.
    async fn refuse_at_execution(&self, row: &RequestRow, text: &str) -> Reply {
        let id = row.id;
        self.fail_request(id, RequestState::Executing, text).await;
        let mut entry = self.entry(
            &row.requester,
            &row.channel,
            AuditAction::Failed,
            &row.operation,
        );
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.decision = AuditDecision::Deny.into();
        entry.reason = text.to_string();
        entry.votes = self.votes_json(id).await;
        entry.outcome = "refused at execution".into();
        let _ = self.audit(entry).await;
        self.announce(id).await;
        Reply::failed(replies::approved_not_executed(id, text))
    }

    pub(super) async fn cancel(&self, inv: &Invocation, id: RequestId) -> Reply {
        let row = match self.store.get_request(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Reply::refused(replies::no_such_request(id)),
            Err(e) => return self.store_refusal(StoreStep::Read, &e),
        };
        if row.state == RequestState::Interrupted {
            return self.acknowledge(inv, &row).await;
        }
        let votes = self.store.votes(id).await.unwrap_or_default();
        let view = self.view(&row, &votes);
        match approval::apply(&view, &Event::Cancel { by: &inv.actor }, self.now()) {
            Ok(Transition::Cancelled) => {}
            Err(Rejection::NotRequester) => {
                return Reply::refused(replies::only_the_requester_cancels(
                    id,
                    Some(&who_label(&row.requester)),
                ));
            }
            Err(Rejection::Expired) => {
                self.expire_one(&row).await;
                return Reply::refused(replies::already_expired(id));
            }
            Err(Rejection::NotPending(p)) => {
                return Reply::refused(replies::no_longer_cancellable(id, p.describe()));
            }
            Ok(_) | Err(_) => return Reply::refused(replies::cannot_cancel(id)),
        }
        let mut entry = self.entry(
            &who(&inv.actor),
            &inv.channel,
            AuditAction::Cancelled,
            &row.operation,
        );
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.outcome = "cancelled".into();
        if let Err(e) = self.audit(entry).await {
            return self.store_refusal(StoreStep::Audit, &e);
        }
        match self
            .store
            .transition_request(
                id,
                RequestState::Pending,
                RequestState::Cancelled,
                Some("cancelled by the requester"),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                self.announce(id).await;
                Reply::ok(replies::cancelled(id))
            }
            Ok(false) => Reply::refused(replies::settled_before_cancel(id)),
            Err(e) => self.store_refusal(StoreStep::RequestState, &e),
        }
    }

    pub(super) async fn expire_one(&self, row: &RequestRow) -> bool {
        match self
            .store
            .transition_request(
                row.id,
                RequestState::Pending,
                RequestState::Expired,
                Some("expired without enough approvals"),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                let system = Who {
                    platform: "system".into(),
                    user_id: "erlmcp-bot".into(),
                    display_name: "erlmcp-bot".into(),
                };
                let mut entry =
                    self.entry(&system, &row.channel, AuditAction::Expired, &row.operation);
                entry.request_id = Some(row.id);
                entry.environment = row.environment.clone();
                entry.arguments = row.command_json.clone();
                entry.votes = self.votes_json(row.id).await;
                entry.outcome = "expired".into();
                let _ = self.audit(entry).await;
                self.announce(row.id).await;
                true
            }
            _ => false,
        }
    }

    /// Expires every pending request past its time; returns how many this call expired.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let due = self.store.expired_requests(self.now()).await?;
        let mut n = 0;
        for row in &due {
            if self.expire_one(row).await {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Why the preconditions of an approved request cannot be re-checked; it is then not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum RecheckError {
    #[error(
        "the rule it was approved under cannot be read ({0}), so its preconditions cannot be checked again; ask again"
    )]
    Unreadable(String),
    #[error(
        "it was stored without the rule it was approved under (by an older version), so its preconditions cannot be checked again; ask again"
    )]
    NotRecorded,
    #[error(
        "it was approved under a rule for {recorded}, not {asked}; its preconditions cannot be checked again; ask again"
    )]
    OtherOperation {
        recorded: OperationKind,
        asked: OperationKind,
    },
}

/// The preconditions to check again before an approved request runs: exactly those of the
/// rule it was decided under. Fails closed when they cannot be determined.
pub(super) fn recheck_preconditions(
    approvals_json: &str,
    kind: OperationKind,
) -> Result<Option<Preconditions>, RecheckError> {
    let stored: StoredApproval = serde_json::from_str(approvals_json)
        .map_err(|e| RecheckError::Unreadable(e.to_string()))?;
    match stored.decided_under {
        None if policy::preconditions_apply(kind) => Err(RecheckError::NotRecorded),
        None => Ok(None),
        Some(d) if d.operation != kind => Err(RecheckError::OtherOperation {
            recorded: d.operation,
            asked: kind,
        }),
        Some(d) => Ok(d.preconditions),
    }
}

impl Engine {
    /// A request's approval card as the store has it now, for a chat that cannot otherwise
    /// learn of a change made by another process.
    pub async fn request_card(&self, id: RequestId) -> Option<ApprovalCard> {
        let (Ok(Some(row)), Ok(votes)) =
            (self.store.get_request(id).await, self.store.votes(id).await)
        else {
            return None;
        };
        Some(self.card(&row, &votes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_to_recheck_come_from_the_stored_rule_or_fail_closed() {
        let legacy = r#"{"count":1,"from":["change-board"],"met":[]}"#;
        assert_eq!(
            recheck_preconditions(legacy, OperationKind::Deploy),
            Err(RecheckError::NotRecorded)
        );
        // Preconditions never applied to rollbacks, so an older rollback request is fine.
        assert_eq!(
            recheck_preconditions(legacy, OperationKind::Rollback),
            Ok(None)
        );
        assert!(matches!(
            recheck_preconditions("not json", OperationKind::Rollback),
            Err(RecheckError::Unreadable(_))
        ));

        let p = Preconditions {
            soak: Some(policy::SoakRequirement {
                from: "staging".into(),
                duration: erlmcp_commands::config::HumanDuration::parse("24h").unwrap(),
            }),
            ci_green: true,
        };
        let stored = StoredApproval {
            count: 1,
            from: vec!["change-board".into()],
            met: vec![],
            decided_under: Some(DecidedUnder {
                rule: 2,
                operation: OperationKind::Deploy,
                preconditions: Some(p.clone()),
            }),
            plan: vec![],
        };
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(
            recheck_preconditions(&json, OperationKind::Deploy),
            Ok(Some(p))
        );
        assert_eq!(
            recheck_preconditions(&json, OperationKind::Scale),
            Err(RecheckError::OtherOperation {
                recorded: OperationKind::Deploy,
                asked: OperationKind::Scale,
            })
        );
    }
}
