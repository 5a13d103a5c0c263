//! What the engine tells the service about operations: each goes on the timeline of the
//! incidents it belongs to, and a DR failover reaches every open incident.

use erlmcp_adapters::statuspage::PageStatus;
use erlmcp_commands::IncidentId;
use erlmcp_commands::message::Message;
use erlmcp_commands::replies;
use erlmcp_commands::vocab::IncidentEventKind;
use tracing::warn;

use super::{Incidents, OperationNote, channel_refs, named_incidents, pages};
use crate::identity::who_label;
use crate::store::{IncidentRow, RequestRow};

impl Incidents {
    /// Puts an operation on the timeline of the incidents it belongs to: run in the
    /// incident's channel, naming the incident, or (break-glass) relying on it.
    pub async fn note_operation(&self, row: &RequestRow, note: OperationNote<'_>) {
        let Ok(open) = self.store.open_incidents().await else {
            return;
        };
        let named = named_incidents(&row.command_text);
        let in_channel: Vec<IncidentId> = open
            .iter()
            .filter(|i| channel_refs(i).contains(&row.channel))
            .map(|i| i.id)
            .collect();
        let belongs = |i: &IncidentRow| {
            in_channel.contains(&i.id)
                || named.contains(&i.id)
                // Break-glass outside any incident channel leans on every open P0/P1.
                || (row.break_glass && in_channel.is_empty() && pages(i.severity))
        };
        let (kind, text) = match note {
            OperationNote::BreakGlass => (
                IncidentEventKind::BreakGlass,
                replies::event_break_glass(row.id, &row.command_text, &who_label(&row.requester)),
            ),
            OperationNote::Finished { ok, outcome } => (
                IncidentEventKind::Operation,
                replies::event_operation_finished(
                    row.id,
                    &row.command_text,
                    row.break_glass,
                    ok,
                    outcome,
                ),
            ),
            OperationNote::Interrupted { detail } => (
                IncidentEventKind::Operation,
                replies::event_operation_interrupted(
                    row.id,
                    &row.command_text,
                    row.break_glass,
                    detail,
                ),
            ),
        };
        for inc in open.iter().filter(|i| belongs(i)) {
            if let Err(e) = self.event(inc.id, kind, Some(&row.requester), &text).await {
                warn!(incident = %inc.id, request = %row.id, error = %e, "operation not put on the timeline");
            }
        }
    }

    /// A DR failover is starting: every open incident gets it on its timeline and in its
    /// channels, and its status page says "Failing over to DR region" (runbook P0 step 5).
    pub async fn note_failover(&self, row: &RequestRow) {
        let Ok(open) = self.store.open_incidents().await else {
            return;
        };
        let text = replies::event_failover(row.id, &row.command_text, &who_label(&row.requester));
        for inc in &open {
            if let Err(e) = self
                .event(
                    inc.id,
                    IncidentEventKind::DrFailover,
                    Some(&row.requester),
                    &text,
                )
                .await
            {
                warn!(incident = %inc.id, request = %row.id, error = %e, "failover not put on the timeline");
            }
            self.update_status_page(
                inc,
                PageStatus::Identified,
                erlmcp_commands::runbook::FAILOVER_STATUS,
                None,
            )
            .await;
            self.post_to_incident(inc, &Message::from(&text), Some(&row.channel))
                .await;
        }
    }
}
