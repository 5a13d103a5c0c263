//! `incident resolve`: the record closed, updates stopped, the page and the status page
//! resolved, and the summary posted for the postmortem.

use erlmcp_adapters::statuspage::PageStatus;
use erlmcp_commands::render::Reply;
use erlmcp_commands::replies;
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{Actor, Timestamp};

use super::{Incidents, facts, status_update_job_key, timeline_entry};
use crate::identity::who;
use crate::store::{IncidentEventRow, IncidentRow, StoreError};

impl Incidents {
    pub(super) async fn resolve(
        &self,
        actor: &Actor,
        channel: &str,
        mut inc: IncidentRow,
        summary: Option<&str>,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(replies::incident_already_resolved(inc.id)));
        }
        let me = who(actor);
        let now = self.now();
        inc.resolved_at = Some(now);
        inc.summary = summary.map(str::to_string);
        self.store.update_incident(&inc).await?;
        self.store
            .delete_job(&status_update_job_key(inc.id))
            .await?;
        self.event(
            inc.id,
            IncidentEventKind::Resolved,
            Some(&me),
            summary.unwrap_or(replies::EVENT_RESOLVED),
        )
        .await?;

        let events = self.store.incident_events(inc.id).await?;
        if events.iter().any(|e| e.kind == IncidentEventKind::Paged) {
            self.resolve_page(&inc).await?;
        }
        self.update_status_page(
            &inc,
            PageStatus::Resolved,
            summary.unwrap_or(replies::STATUS_PAGE_RESOLVED),
            None,
        )
        .await;

        let events = self.store.incident_events(inc.id).await?;
        let message = resolution_summary(&inc, &events, now);
        self.post_to_incident(&inc, &message, Some(channel)).await;
        self.announce(
            &replies::incident_resolved_announcement(inc.id, now - inc.declared_at, &inc.title),
            channel,
        )
        .await;
        Ok(Reply::ok(message))
    }
}

fn resolution_summary(
    inc: &IncidentRow,
    events: &[IncidentEventRow],
    now: Timestamp,
) -> erlmcp_commands::message::Message {
    let operations: Vec<_> = events
        .iter()
        .filter(|e| e.kind == IncidentEventKind::Operation)
        .map(timeline_entry)
        .collect();
    let timeline: Vec<_> = events
        .iter()
        .filter(|e| e.kind != IncidentEventKind::StatusUpdate)
        .map(timeline_entry)
        .collect();
    let updates = events
        .iter()
        .filter(|e| e.kind == IncidentEventKind::StatusUpdate)
        .count();
    replies::incident_resolution_summary(&facts(inc, events), now, &operations, &timeline, updates)
}
