//! `incident declare`: the record, its update schedule, a channel on every platform with
//! on-call invited and the checklist posted, the announcement, the page and the status page.

use std::collections::BTreeMap;

use erlmcp_commands::message::Line;
use erlmcp_commands::render::Reply;
use erlmcp_commands::replies;
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{Actor, Severity};
use tracing::warn;

use super::{
    Incidents, ONCALL_ROLES, STATUS_UPDATE_JOB, channel_links, channel_name, channel_span, pages,
    status_update_job_key,
};
use crate::identity::{who, who_label};
use crate::store::{NewIncident, StoreError, Who};

impl Incidents {
    pub(super) async fn declare(
        &self,
        actor: &Actor,
        channel: &str,
        severity: Severity,
        title: &str,
    ) -> Result<Reply, StoreError> {
        let me = who(actor);
        let mut inc = self
            .store
            .insert_incident(NewIncident {
                severity,
                title: title.to_string(),
                declared_by: me.clone(),
                declared_at: self.now(),
                channel: channel.to_string(),
            })
            .await?;
        let id = inc.id;
        self.event(
            id,
            IncidentEventKind::Declared,
            Some(&me),
            &replies::event_declared(severity, title),
        )
        .await?;
        // The update schedule is stored before anything slow happens, so a crash during the
        // chat and paging calls below still leaves an incident that gets its updates.
        self.store
            .upsert_job(
                &status_update_job_key(id),
                STATUS_UPDATE_JOB,
                &id.0.to_string(),
                self.now() + self.interval(),
            )
            .await?;

        let mut lines: Vec<Line> = vec![replies::incident_declared(
            id,
            severity,
            &who_label(&me),
            title,
        )];
        let mut channels = BTreeMap::new();
        let name = channel_name(id, title);
        for chat in &self.chats {
            let platform = chat.platform();
            match chat.create_channel(&name).await {
                Ok(channel) => {
                    channels.insert(platform.to_string(), channel.clone());
                    lines.push(replies::incident_channel_opened(
                        channel_span(id, title, platform.as_str(), &channel),
                        platform.as_str(),
                    ));
                    self.event(
                        id,
                        IncidentEventKind::Channel,
                        None,
                        &replies::event_channel_opened(platform.as_str(), &channel),
                    )
                    .await?;
                }
                Err(e) => {
                    warn!(incident = %id, %platform, error = %e, "could not open the incident channel");
                    lines.push(replies::incident_channel_failed(platform.as_str(), &e));
                    self.event(
                        id,
                        IncidentEventKind::ChatError,
                        None,
                        &replies::event_channel_failed(platform.as_str(), &e),
                    )
                    .await?;
                }
            }
        }
        inc.channels_json = serde_json::to_string(&channels).unwrap_or_else(|_| "{}".into());
        self.store.update_incident(&inc).await?;
        self.set_topics(&inc).await;

        let opening = replies::incident_opening(
            id,
            severity,
            title,
            &who_label(&me),
            inc.declared_at,
            self.interval(),
        );
        for (platform, channel) in &channels {
            let Some(chat) = self.chat(platform) else {
                continue;
            };
            let people = self.invitees(platform, &me);
            if !people.is_empty()
                && let Err(e) = chat.invite(channel, &people).await
            {
                warn!(incident = %id, %platform, error = %e, "could not invite on-call");
                lines.push(replies::oncall_not_invited(platform, &e));
            }
            if let Err(e) = chat.post(channel, &Reply::ok(opening.clone())).await {
                warn!(incident = %id, %platform, error = %e, "could not post the checklist");
            }
        }
        let announcement = replies::incident_announcement(
            id,
            severity,
            &who_label(&me),
            title,
            (!channels.is_empty()).then(|| channel_links(&inc)),
        );
        self.announce(&announcement, channel).await;

        if pages(severity) {
            lines.extend(self.page(&inc).await?.into_iter().map(Line::from));
            lines.extend(
                self.open_status_page(&inc)
                    .await?
                    .into_iter()
                    .map(Line::from),
            );
        }
        lines.push(replies::status_updates_every(self.interval()));
        if channels.is_empty() {
            // No channel carries the checklist, so the reply does.
            lines.push(replies::incident_checklist(severity).into());
        }
        Ok(Reply::ok(replies::paragraphs(lines)))
    }

    /// Who is invited into a new incident channel on `platform`: the declarer and on-call.
    fn invitees(&self, platform: &str, declarer: &Who) -> Vec<String> {
        let mut ids = Vec::new();
        if declarer.platform == platform {
            ids.push(declarer.user_id.clone());
        }
        let prefix = format!("{platform}:");
        for role in ONCALL_ROLES {
            for member in self.cfg.role_identities(role) {
                if let Some(id) = member.strip_prefix(&prefix)
                    && !ids.iter().any(|i| i == id)
                {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }
}
