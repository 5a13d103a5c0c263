//! The periodic status update of an open incident, from live data: the scheduler calls
//! [`Incidents::post_status_update`] every `bot.status_update_interval` until resolution.

use erlmcp_commands::IncidentId;
use erlmcp_commands::message::Message;
use erlmcp_commands::replies::{self, LastUpdate};
use erlmcp_commands::vocab::IncidentEventKind;

use super::{Incidents, OPERATION_EVENTS, facts, request_of, timeline_entry};
use crate::identity::{system, who_label};
use crate::store::{IncidentEventRow, IncidentRow, StoreError};

impl Incidents {
    /// Writes and posts the periodic status update; false when the incident is over (or
    /// gone) and its updates should stop.
    pub async fn post_status_update(&self, id: IncidentId) -> Result<bool, StoreError> {
        let Some(inc) = self.store.get_incident(id).await? else {
            return Ok(false);
        };
        if inc.resolved_at.is_some() {
            return Ok(false);
        }
        let events = self.store.incident_events(id).await?;
        let message = self.status_update(&inc, &events).await;
        self.event(
            id,
            IncidentEventKind::StatusUpdate,
            Some(&system()),
            &message.plain(),
        )
        .await?;
        self.post_to_incident(&inc, &message, None).await;
        Ok(true)
    }

    async fn status_update(&self, inc: &IncidentRow, events: &[IncidentEventRow]) -> Message {
        let now = self.now();
        let interval = self.interval();
        let previous = events
            .iter()
            .rev()
            .find(|e| e.kind == IncidentEventKind::StatusUpdate);
        let since = previous.map(|e| e.seq).unwrap_or(0);
        let last_update = events
            .iter()
            .rev()
            .find(|e| e.kind == IncidentEventKind::Update)
            .map(|u| LastUpdate {
                at: u.at,
                by: u.who.as_ref().map(who_label),
                text: &u.text,
            });
        let mut environments = Vec::new();
        for env in self.affected_environments(events).await {
            environments.push(self.environment_line(&env).await);
        }
        let operations: Vec<_> = events
            .iter()
            .filter(|e| e.seq > since && OPERATION_EVENTS.contains(&e.kind))
            .map(timeline_entry)
            .collect();
        let quiet = inc
            .last_human_update_at
            .is_none_or(|at| now - at >= interval);
        replies::incident_status_update(
            &facts(inc, events),
            now,
            last_update,
            &environments,
            &operations,
            quiet.then_some(interval),
        )
    }

    /// Production, where incidents are felt, plus every environment an operation on this
    /// incident touched.
    async fn affected_environments(&self, events: &[IncidentEventRow]) -> Vec<String> {
        let mut envs: Vec<String> = Vec::new();
        if self.cfg.environments.contains_key("production") {
            envs.push("production".into());
        }
        for e in events.iter().filter(|e| OPERATION_EVENTS.contains(&e.kind)) {
            let Some(rid) = request_of(e) else { continue };
            if let Ok(Some(r)) = self.store.get_request(rid).await
                && let Some(env) = r.environment.filter(|env| !envs.contains(env))
            {
                envs.push(env);
            }
        }
        if envs.is_empty() {
            envs = self.cfg.environments.keys().cloned().collect();
        }
        envs
    }

    pub(super) async fn environment_line(&self, name: &str) -> String {
        match self.environments.status_now(name).await {
            Ok(status) => replies::incident_environment_line(&status),
            Err(why) => replies::environment_unavailable(name, &why),
        }
    }
}
