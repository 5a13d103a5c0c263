//! Changes to an open incident: a human update, its severity, its commander.

use erlmcp_adapters::statuspage::PageStatus;
use erlmcp_commands::message::Message;
use erlmcp_commands::render::Reply;
use erlmcp_commands::replies;
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{Actor, Severity};
use tracing::warn;

use super::{Incidents, channels_of, commander_span, impact, mention_id, pages};
use crate::identity::{who, who_label};
use crate::store::{IncidentRow, StoreError};

impl Incidents {
    pub(super) async fn update(
        &self,
        actor: &Actor,
        channel: &str,
        mut inc: IncidentRow,
        text: &str,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(replies::incident_updates_closed(inc.id)));
        }
        let me = who(actor);
        self.event(inc.id, IncidentEventKind::Update, Some(&me), text)
            .await?;
        inc.last_human_update_at = Some(self.now());
        self.store.update_incident(&inc).await?;
        let line = replies::incident_update_posted(inc.id, &who_label(&me), text);
        self.post_to_incident(&inc, &Message::from(&line), Some(channel))
            .await;
        self.update_status_page(&inc, PageStatus::Identified, text, None)
            .await;
        Ok(Reply::ok(line))
    }

    pub(super) async fn set_severity(
        &self,
        actor: &Actor,
        channel: &str,
        mut inc: IncidentRow,
        severity: Severity,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(replies::incident_resolved(inc.id)));
        }
        let me = who(actor);
        let old = inc.severity;
        if old == severity {
            return Ok(Reply::ok(replies::incident_severity_unchanged(
                inc.id, severity,
            )));
        }
        inc.severity = severity;
        self.store.update_incident(&inc).await?;
        self.event(
            inc.id,
            IncidentEventKind::Severity,
            Some(&me),
            &replies::event_severity(old, severity),
        )
        .await?;
        let mut lines = vec![replies::incident_severity_changed(
            inc.id,
            old,
            severity,
            &who_label(&me),
        )];
        // Raised to a paging severity, or from P1 to P0: on-call hears of it at the new level.
        if pages(severity) && severity < old {
            lines.extend(self.page(&inc).await?);
            lines.extend(self.open_status_page(&inc).await?);
        }
        self.update_status_page(
            &inc,
            PageStatus::Identified,
            &replies::status_page_severity(severity),
            Some(impact(severity)),
        )
        .await;
        self.set_topics(&inc).await;
        let message = Message::from(lines.join("\n"));
        self.post_to_incident(&inc, &message, Some(channel)).await;
        Ok(Reply::ok(message))
    }

    pub(super) async fn set_commander(
        &self,
        actor: &Actor,
        channel: &str,
        mut inc: IncidentRow,
        user: &str,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(replies::incident_resolved(inc.id)));
        }
        let me = who(actor);
        inc.commander = Some(user.to_string());
        self.store.update_incident(&inc).await?;
        self.event(
            inc.id,
            IncidentEventKind::Commander,
            Some(&me),
            &replies::event_commander(user),
        )
        .await?;
        let platform = actor.platform.as_str();
        if let (Some(chat), Some(incident_channel), Some(uid)) = (
            self.chat(platform),
            channels_of(&inc).get(platform),
            mention_id(user, platform),
        ) && let Err(e) = chat.invite(incident_channel, &[uid]).await
        {
            warn!(incident = %inc.id, error = %e, "could not invite the commander");
        }
        self.set_topics(&inc).await;
        let message = replies::incident_commander_named(
            inc.id,
            commander_span(user, platform),
            &who_label(&me),
        );
        self.post_to_incident(&inc, &message, Some(channel)).await;
        Ok(Reply::ok(message))
    }
}
