//! Bookkeeping every step shares: the audit entry written before it, the request marked
//! failed when it cannot go on, and the one answer when the store refuses.

use super::*;

impl Engine {
    /// The one answer to a command refused because the store failed a step it needed
    /// (fail closed: what cannot be recorded is not done), counted on /metrics by step.
    pub(super) fn store_refusal(&self, step: StoreStep, e: &StoreError) -> Reply {
        self.metrics.store_refused(step);
        warn!(error = %e, step = step.as_str(), "command refused: the store failed");
        Reply::failed(replies::audit_unavailable_not_executed(e))
    }

    /// The person behind a stored identity, resolved with the current `[people]`.
    pub(super) fn person_of(&self, w: &Who) -> Person {
        self.cfg
            .person_for(&format!("{}:{}", w.platform, w.user_id))
    }

    pub(super) async fn audit(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        let written = self.store.append_audit(self.named(entry)).await;
        self.audited(written).map(|_| ())
    }

    /// The entry as the audit log records it: the person goes into the display name, a
    /// field the row's hash already covers, so rows written before `[people]` existed verify
    /// unchanged.
    pub(super) fn named(&self, mut entry: NewAuditEntry) -> NewAuditEntry {
        if let Person::Named(name) = self.person_of(&entry.who) {
            let shown = &entry.who.display_name;
            entry.who.display_name = if shown.is_empty() || *shown == entry.who.user_id {
                format!("person {name}")
            } else {
                format!("{shown}, person {name}")
            };
        }
        entry
    }

    /// Counts and logs a failed audit write.
    pub(super) fn audited<T>(&self, written: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &written {
            self.metrics.audit_write_failures.inc();
            error!(error = %e, "audit write failed");
        }
        written
    }

    pub(super) fn entry(
        &self,
        inv_who: &Who,
        channel: &str,
        action: AuditAction,
        operation: &str,
    ) -> NewAuditEntry {
        NewAuditEntry {
            at: self.now(),
            action: action.into(),
            who: inv_who.clone(),
            channel: channel.to_string(),
            operation: operation.to_string(),
            arguments: "{}".into(),
            environment: None,
            request_id: None,
            decision: AuditDecision::None.into(),
            reason: String::new(),
            votes: "[]".into(),
            outcome: String::new(),
        }
    }

    /// Marks a request failed (best effort: it is only bookkeeping once nothing will run).
    pub(super) async fn fail_request(&self, id: RequestId, from: RequestState, why: &str) {
        if let Err(e) = self
            .store
            .transition_request(id, from, RequestState::Failed, Some(why), self.now())
            .await
        {
            error!(error = %e, request = %id, "could not mark the request failed");
        }
    }

    /// Writes the entry that must precede a step. When it cannot be written the step is not
    /// taken, and the request is marked failed so that nothing picks it up later.
    pub(super) async fn audit_before(
        &self,
        id: RequestId,
        from: RequestState,
        entry: NewAuditEntry,
    ) -> Result<(), StoreError> {
        let result = self.audit(entry).await;
        if result.is_err() {
            self.fail_request(id, from, "audit log unavailable").await;
        }
        result
    }

    pub(super) async fn votes_json(&self, id: RequestId) -> String {
        match self.store.votes(id).await {
            Ok(v) => serde_json::to_string(
                &v.iter()
                    .map(|v| {
                        serde_json::json!({
                            "voter": format!("{}:{}", v.voter.platform, v.voter.user_id),
                            "name": v.voter.display_name,
                            "approve": v.approve,
                            "comment": v.comment,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            Err(_) => "[]".into(),
        }
    }
}
