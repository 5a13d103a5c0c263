//! The periodic status update of an open incident, from live data: the scheduler calls
//! [`Incidents::prepare_status_updates`] then [`Incidents::finish_status_updates`] for the
//! updates due in a pass (or [`Incidents::post_status_update`] for one) every
//! `bot.status_update_interval` until resolution.

use std::collections::HashMap;

use erlmcp_commands::IncidentId;
use erlmcp_commands::Timestamp;
use erlmcp_commands::message::Message;
use erlmcp_commands::replies::{self, LastUpdate};
use erlmcp_commands::vocab::IncidentEventKind;
use futures::stream::{self, StreamExt};

use super::{Incidents, OPERATION_EVENTS, facts, request_of, timeline_entry};
use crate::identity::{system, who_label};
use crate::store::{IncidentEventRow, IncidentRow, JobDone, NewIncidentEvent, StoreError};

/// Posts in flight at once for one batch: bounds what a pass asks of the chat platforms,
/// whose own rate limits pace each post.
const POSTS_AT_ONCE: usize = 64;

/// An update due now, with the job that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueUpdate {
    pub job_id: i64,
    pub incident: IncidentId,
    /// When the next one falls due, if this incident is still open.
    pub next_due: Timestamp,
}

/// What became of one due update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written and posted; the job is rescheduled.
    Posted,
    /// The incident is resolved or gone: its job is deleted.
    Stopped,
    /// Another replica took the job over (its lease ran out): nothing written or posted
    /// here.
    LeaseLost,
}

/// A batch of updates read and composed, not yet stored or posted: the job completions
/// in the order of the batch's `due`, each with its message (none when the incident is over
/// or gone) and the open incidents the messages go to.
pub struct PreparedUpdates {
    done: Vec<JobDone>,
    messages: Vec<Option<(IncidentId, Message)>>,
    open: HashMap<IncidentId, IncidentRow>,
}

impl PreparedUpdates {
    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }
}

/// Environments' status lines as read in one scheduler pass: each environment is asked
/// once per pass, whatever the number of incidents, and a new pass asks again, so no
/// update says more than the pass's own reading.
#[derive(Default)]
pub struct PassStatuses(tokio::sync::Mutex<HashMap<String, String>>);

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
        let envs = self.affected_environments(&events).await;
        let lines = self
            .environment_lines(&envs, &PassStatuses::default())
            .await;
        let message = self.status_update(&inc, &events, &envs, &lines);
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

    /// The first half of a batch of updates: their incidents and events read together,
    /// each environment asked once (per `pass`), every message composed. Nothing is
    /// stored or posted yet; [`Incidents::finish_status_updates`] does that.
    pub async fn prepare_status_updates(
        &self,
        due: &[DueUpdate],
        pass: &PassStatuses,
    ) -> Result<PreparedUpdates, StoreError> {
        let ids: Vec<IncidentId> = due.iter().map(|d| d.incident).collect();
        let open: HashMap<IncidentId, IncidentRow> = self
            .store
            .incidents_by_id(&ids)
            .await?
            .into_iter()
            .filter(|i| i.resolved_at.is_none())
            .map(|i| (i.id, i))
            .collect();
        let open_ids: Vec<IncidentId> = open.keys().copied().collect();
        let mut events: HashMap<IncidentId, Vec<IncidentEventRow>> = HashMap::new();
        for e in self.store.events_of_incidents(&open_ids).await? {
            events.entry(e.incident_id).or_default().push(e);
        }
        let mut envs: HashMap<IncidentId, Vec<String>> = HashMap::new();
        let mut every_env: Vec<String> = Vec::new();
        for id in &open_ids {
            let affected = self
                .affected_environments(events.get(id).map_or(&[][..], Vec::as_slice))
                .await;
            for env in &affected {
                if !every_env.contains(env) {
                    every_env.push(env.clone());
                }
            }
            envs.insert(*id, affected);
        }
        let lines = self.environment_lines(&every_env, pass).await;

        let mut done = Vec::with_capacity(due.len());
        let mut messages = Vec::with_capacity(due.len());
        for d in due {
            let Some(inc) = open.get(&d.incident) else {
                done.push(JobDone {
                    id: d.job_id,
                    next_due: None,
                    event: None,
                });
                messages.push(None);
                continue;
            };
            let message = self.status_update(
                inc,
                events.get(&d.incident).map_or(&[][..], Vec::as_slice),
                &envs[&d.incident],
                &lines,
            );
            done.push(JobDone {
                id: d.job_id,
                next_due: Some(d.next_due),
                event: Some(NewIncidentEvent {
                    incident: d.incident,
                    at: self.now(),
                    kind: IncidentEventKind::StatusUpdate,
                    who: Some(system()),
                    text: message.plain(),
                }),
            });
            messages.push(Some((d.incident, message)));
        }
        Ok(PreparedUpdates {
            done,
            messages,
            open,
        })
    }

    /// The second half: every event and job completion written in one transaction, then
    /// the posts, `POSTS_AT_ONCE` at a time. Outcomes come in the order of the `due` the
    /// batch was prepared from. On error nothing was written or posted and the jobs stay
    /// leased to `owner`.
    pub async fn finish_status_updates(
        &self,
        owner: &str,
        prepared: PreparedUpdates,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        let PreparedUpdates {
            done,
            messages,
            open,
        } = prepared;
        let held = self.store.complete_jobs_with_events(owner, done).await?;

        let outcomes: Vec<UpdateOutcome> = held
            .iter()
            .zip(&messages)
            .map(|(held, message)| match (held, message) {
                (false, _) => UpdateOutcome::LeaseLost,
                (true, None) => UpdateOutcome::Stopped,
                (true, Some(_)) => UpdateOutcome::Posted,
            })
            .collect();
        let posts = messages
            .iter()
            .zip(&held)
            .filter(|(_, held)| **held)
            .filter_map(|(message, _)| message.as_ref())
            .filter_map(|(id, message)| Some((open.get(id)?, message)));
        stream::iter(posts)
            .for_each_concurrent(POSTS_AT_ONCE, |(inc, message)| {
                self.post_to_incident(inc, message, None)
            })
            .await;
        Ok(outcomes)
    }

    fn status_update(
        &self,
        inc: &IncidentRow,
        events: &[IncidentEventRow],
        envs: &[String],
        lines: &HashMap<String, String>,
    ) -> Message {
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
        let environments: Vec<String> = envs
            .iter()
            .filter_map(|env| lines.get(env).cloned())
            .collect();
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

    /// The status line of each of `names`, asking only for those `pass` has not read yet,
    /// side by side.
    async fn environment_lines(
        &self,
        names: &[String],
        pass: &PassStatuses,
    ) -> HashMap<String, String> {
        // Held while asking: a batch running beside this one waits for these answers rather
        // than asking the same environments again.
        let mut known = pass.0.lock().await;
        let missing: Vec<&String> = names.iter().filter(|n| !known.contains_key(*n)).collect();
        let read = futures::future::join_all(
            missing
                .into_iter()
                .map(|n| async move { (n.clone(), self.environment_line(n).await) }),
        )
        .await;
        known.extend(read);
        names
            .iter()
            .filter_map(|n| known.get(n).map(|line| (n.clone(), line.clone())))
            .collect()
    }

    pub(super) async fn environment_line(&self, name: &str) -> String {
        match self.environments.status_now(name).await {
            Ok(status) => replies::incident_environment_line(&status),
            Err(why) => replies::environment_unavailable(name, &why),
        }
    }
}
