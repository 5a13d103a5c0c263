//! Incidents (runbook, Emergency Procedures), a service of their own: declare opens a
//! channel on every chat platform, pages on-call, opens the status page incident and posts
//! the checklist; the timeline collects every incident event and every operation tied to the
//! incident; the scheduler asks for a status update from live data every interval until
//! resolution.
//!
//! Chat, paging and the status page are best effort: the incident, its timeline and its
//! updates live in the store, so a platform that is down never loses the record.
//!
//! The service knows the engine only through [`EnvironmentStatus`]: the engine routes
//! incident commands here and tells the service about operations ([`OperationNote`]); the
//! scheduler calls [`Incidents::post_status_update`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use erlmcp_adapters::chat::{ChatPlatform, Platform};
use erlmcp_adapters::pagerduty::PageSeverity;
use erlmcp_adapters::statuspage::Impact;
use erlmcp_commands::config::Config;
use erlmcp_commands::message::{Handle, Line, Message, Span};
use erlmcp_commands::render::Reply;
use erlmcp_commands::replies::{self, IncidentFacts, TimelineEntry};
use erlmcp_commands::status::EnvStatus;
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{Actor, IncidentCommand, IncidentId, RequestId, Severity, Timestamp};
use futures::future::BoxFuture;
use tracing::warn;

use crate::clock::Clock;
use crate::identity::{is_system, who_label};
use crate::store::{IncidentEventRow, IncidentRow, Store, StoreError, Who};

mod change;
mod declare;
mod notify;
mod operations;
mod paging;
mod reads;
mod resolve;
mod status_updates;

pub use notify::{Notifiers, OperationNote};
pub use status_updates::{DueUpdate, PassStatuses, PreparedUpdates, UpdateOutcome};

/// Job kind and key of an incident's periodic status update.
pub const STATUS_UPDATE_JOB: &str = "incident_update";

pub fn status_update_job_key(id: IncidentId) -> String {
    format!("{STATUS_UPDATE_JOB}:{id}")
}

/// Roles whose members are invited into every incident channel.
const ONCALL_ROLES: [&str; 2] = ["oncall", "on-call"];

/// Event kinds that are operations, listed in status updates and the resolution summary.
const OPERATION_EVENTS: [IncidentEventKind; 2] =
    [IncidentEventKind::Operation, IncidentEventKind::BreakGlass];

/// What the incident service asks of the engine: how an environment is doing now.
pub trait EnvironmentStatus: Send + Sync {
    /// The environment's state from its target, its health probed when the target does not
    /// report it; `Err` says why it could not be read.
    fn status_now<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<EnvStatus, String>>;
}

/// What the incident service is built from.
pub struct IncidentParts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The chat platforms configured: an incident gets a channel on each.
    pub chats: Vec<Arc<dyn ChatPlatform>>,
    /// Where each platform announces new incidents.
    pub incidents_channels: HashMap<Platform, String>,
    pub notifiers: Notifiers,
}

pub struct Incidents {
    cfg: Arc<Config>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    chats: Vec<Arc<dyn ChatPlatform>>,
    incidents_channels: HashMap<Platform, String>,
    notifiers: Notifiers,
    environments: Arc<dyn EnvironmentStatus>,
}

impl Incidents {
    pub fn new(parts: IncidentParts, environments: Arc<dyn EnvironmentStatus>) -> Incidents {
        Incidents {
            cfg: parts.config,
            store: parts.store,
            clock: parts.clock,
            chats: parts.chats,
            incidents_channels: parts.incidents_channels,
            notifiers: parts.notifiers,
            environments,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn interval(&self) -> chrono::Duration {
        self.cfg.bot.status_update_interval.as_chrono()
    }

    /// A command that changes an incident, from `actor` in `channel` (`PLATFORM:ID`).
    pub async fn handle(
        &self,
        actor: &Actor,
        channel: &str,
        ic: &IncidentCommand,
    ) -> Result<Reply, StoreError> {
        match ic {
            IncidentCommand::Declare { severity, title } => {
                self.declare(actor, channel, *severity, title).await
            }
            IncidentCommand::Update { id, text } => match self.find(channel, *id).await? {
                Ok(inc) => self.update(actor, channel, inc, text).await,
                Err(msg) => Ok(Reply::refused(msg)),
            },
            IncidentCommand::Severity { id, severity } => match self.find(channel, *id).await? {
                Ok(inc) => self.set_severity(actor, channel, inc, *severity).await,
                Err(msg) => Ok(Reply::refused(msg)),
            },
            IncidentCommand::Commander { id, user } => match self.find(channel, *id).await? {
                Ok(inc) => self.set_commander(actor, channel, inc, user).await,
                Err(msg) => Ok(Reply::refused(msg)),
            },
            IncidentCommand::Resolve { id, summary } => match self.find(channel, *id).await? {
                Ok(inc) => self.resolve(actor, channel, inc, summary.as_deref()).await,
                Err(msg) => Ok(Reply::refused(msg)),
            },
            IncidentCommand::List | IncidentCommand::Timeline { .. } => Ok(Reply::failed(
                replies::internal_error("incident reads are not operations"),
            )),
        }
    }

    /// Finds the incident a command refers to: the id given, the incident whose channel
    /// `channel` is, or the only open one.
    async fn find(
        &self,
        channel: &str,
        id: Option<IncidentId>,
    ) -> Result<Result<IncidentRow, String>, StoreError> {
        if let Some(id) = id {
            return Ok(self
                .store
                .get_incident(id)
                .await?
                .ok_or_else(|| replies::no_such_incident(id)));
        }
        let open = self.store.open_incidents().await?;
        if let Some(i) = open
            .iter()
            .find(|i| channel_refs(i).iter().any(|c| c == channel))
        {
            return Ok(Ok(i.clone()));
        }
        match open.as_slice() {
            [one] => Ok(Ok(one.clone())),
            [] => Ok(Err(replies::no_open_incident().into())),
            many => Ok(Err(replies::which_incident(
                &many.iter().map(|i| i.id).collect::<Vec<_>>(),
            ))),
        }
    }

    fn chat(&self, platform: &str) -> Option<&Arc<dyn ChatPlatform>> {
        let platform = Platform::parse(platform)?;
        self.chats.iter().find(|c| c.platform() == platform)
    }

    async fn event(
        &self,
        id: IncidentId,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> Result<(), StoreError> {
        self.store
            .append_incident_event(id, self.now(), kind, who, text)
            .await
            .map(|_| ())
    }

    /// Posts into the incident's channels, except the one the command came from: the chat
    /// adapter shows the reply there already.
    async fn post_to_incident(&self, inc: &IncidentRow, message: &Message, except: Option<&str>) {
        for (platform, channel) in channels_of(inc) {
            if except == Some(format!("{platform}:{channel}").as_str()) {
                continue;
            }
            let Some(chat) = self.chat(&platform) else {
                continue;
            };
            if let Err(e) = chat.post(&channel, &Reply::ok(message.clone())).await {
                warn!(incident = %inc.id, %platform, error = %e, "could not post in the incident channel");
            }
        }
    }

    /// Posts in every platform's incidents channel, except the one the command came from.
    async fn announce(&self, message: &Message, except: &str) {
        for chat in &self.chats {
            let Some(channel) = self.incidents_channels.get(&chat.platform()) else {
                continue;
            };
            if except == format!("{}:{channel}", chat.platform()) {
                continue;
            }
            if let Err(e) = chat.post(channel, &Reply::ok(message.clone())).await {
                warn!(platform = %chat.platform(), error = %e, "could not announce in the incidents channel");
            }
        }
    }

    async fn set_topics(&self, inc: &IncidentRow) {
        let events = self.store.incident_events(inc.id).await.unwrap_or_default();
        // Topics are plain text everywhere: the commander by name.
        let commander = erlmcp_commands::message::plain::span(&commander(inc, &events, "none yet"));
        let topic = replies::incident_topic(
            inc.id,
            inc.severity,
            &inc.title,
            &commander,
            self.interval(),
        );
        for (platform, channel) in channels_of(inc) {
            if let Some(chat) = self.chat(&platform)
                && let Err(e) = chat.set_topic(&channel, &topic).await
            {
                warn!(incident = %inc.id, %platform, error = %e, "could not set the incident channel topic");
            }
        }
    }
}

/// Paging and the public status page are for P0 and P1; a P2 is a ticket (runbook).
fn pages(s: Severity) -> bool {
    matches!(s, Severity::P0 | Severity::P1)
}

fn page_severity(s: Severity) -> PageSeverity {
    match s {
        Severity::P0 => PageSeverity::Critical,
        Severity::P1 => PageSeverity::Error,
        Severity::P2 => PageSeverity::Warning,
    }
}

fn impact(s: Severity) -> Impact {
    match s {
        Severity::P0 => Impact::Critical,
        Severity::P1 => Impact::Major,
        Severity::P2 => Impact::Minor,
    }
}

/// `inc-7-api-latency-spike`: platforms normalise further (length, taken names).
pub fn channel_name(id: IncidentId, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(60).collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("inc-{}", id.0)
    } else {
        format!("inc-{}-{slug}", id.0)
    }
}

/// Platform -> channel id of the channels opened for an incident.
fn channels_of(inc: &IncidentRow) -> BTreeMap<String, String> {
    serde_json::from_str(&inc.channels_json).unwrap_or_default()
}

/// The incident's channels as invocations name them: `slack:C123`.
fn channel_refs(inc: &IncidentRow) -> Vec<String> {
    channels_of(inc)
        .into_iter()
        .map(|(p, c)| format!("{p}:{c}"))
        .collect()
}

/// An incident's channel on one platform, linked where the platform can.
fn channel_span(inc: IncidentId, title: &str, platform: &str, id: &str) -> Span {
    Span::Channel(Handle::named(channel_name(inc, title)).with_id(platform, id))
}

/// The incident's channels, linked, separated by spaces.
fn channel_links(inc: &IncidentRow) -> Line {
    let mut line = Line::new();
    for (i, (platform, id)) in channels_of(inc).iter().enumerate() {
        if i > 0 {
            line = line.text(" ");
        }
        line = line.span(channel_span(inc.id, &inc.title, platform, id));
    }
    line
}

/// The commander as named (`<@U1>`, `<@U1|alice>`, `<@!1>`, `@alice` on the local chat)
/// on `platform`: a mention of that user there, or the text as typed.
fn commander_span(named: &str, platform: &str) -> Span {
    match mention_id(named, platform) {
        Some(id) => {
            let name = named
                .strip_prefix("<@")
                .and_then(|m| m.strip_suffix('>'))
                .and_then(|m| m.split_once('|'))
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|| id.clone());
            Span::User(Handle::named(name).with_id(platform, &id))
        }
        None => Span::Text(named.to_string()),
    }
}

/// The platform the commander was named on: that of whoever named them last.
fn commander_platform<'a>(inc: &'a IncidentRow, events: &'a [IncidentEventRow]) -> &'a str {
    events
        .iter()
        .rev()
        .find(|e| e.kind == IncidentEventKind::Commander)
        .and_then(|e| e.who.as_ref())
        .map(|w| w.platform.as_str())
        .unwrap_or(inc.declared_by.platform.as_str())
}

/// The commander, mentioned, when one is named.
fn named_commander(inc: &IncidentRow, events: &[IncidentEventRow]) -> Option<Span> {
    inc.commander
        .as_ref()
        .map(|c| commander_span(c, commander_platform(inc, events)))
}

/// The commander, mentioned, or `fallback` when none is named.
fn commander(inc: &IncidentRow, events: &[IncidentEventRow], fallback: &str) -> Span {
    named_commander(inc, events).unwrap_or_else(|| Span::Text(fallback.to_string()))
}

/// The incident as replies about it need it.
fn facts<'a>(inc: &'a IncidentRow, events: &[IncidentEventRow]) -> IncidentFacts<'a> {
    IncidentFacts {
        id: inc.id,
        severity: inc.severity,
        title: &inc.title,
        declared_at: inc.declared_at,
        declared_by: who_label(&inc.declared_by),
        summary: inc.summary.as_deref(),
        commander: named_commander(inc, events),
    }
}

/// A timeline event as replies show it.
fn timeline_entry(e: &IncidentEventRow) -> TimelineEntry<'_> {
    TimelineEntry {
        at: e.at,
        kind: e.kind,
        by: e.who.as_ref().map(who_label),
        by_bot: e.who.as_ref().is_some_and(is_system),
        text: &e.text,
    }
}

/// Incident ids named in free text (`INC-7`, `inc-7`, `#INC-7,`).
fn named_incidents(text: &str) -> Vec<IncidentId> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|t| {
            let n = t
                .get(..4)
                .filter(|p| p.eq_ignore_ascii_case("inc-"))
                .map(|_| &t[4..])?;
            n.parse::<i64>().ok().filter(|n| *n > 0).map(IncidentId)
        })
        .collect()
}

/// The request an operation event is about: its text starts with `R-N`.
fn request_of(event: &IncidentEventRow) -> Option<RequestId> {
    let first = event.text.split_whitespace().next()?;
    first.strip_prefix("R-")?.parse().ok().map(RequestId)
}

/// The platform user id in a commander mention, for that platform: `<@U1>`, `<@!1>`,
/// `<@U1|alice>`, or `@alice` on the local chat.
fn mention_id(mention: &str, platform: &str) -> Option<String> {
    if let Some(inner) = mention.strip_prefix("<@").and_then(|m| m.strip_suffix('>')) {
        let inner = inner.strip_prefix('!').unwrap_or(inner);
        let id = inner.split('|').next().unwrap_or(inner);
        return (!id.is_empty()).then(|| id.to_string());
    }
    (Platform::parse(platform) == Some(Platform::Local))
        .then(|| mention.trim_start_matches('@').to_string())
}

#[cfg(test)]
mod service_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_slugs_of_id_and_title() {
        assert_eq!(
            channel_name(IncidentId(7), "API latency spike!"),
            "inc-7-api-latency-spike"
        );
        assert_eq!(channel_name(IncidentId(3), "  ### "), "inc-3");
        assert_eq!(
            channel_name(IncidentId(1), "Prod — down"),
            "inc-1-prod-down"
        );
    }

    #[test]
    fn incidents_named_in_text() {
        assert_eq!(
            named_incidents("rollback production for INC-7, see #inc-12"),
            vec![IncidentId(7), IncidentId(12)]
        );
        assert!(named_incidents("rollback production v3.0.1").is_empty());
        assert!(named_incidents("INC-0 INC-x").is_empty());
    }

    #[test]
    fn mentions_resolve_to_platform_ids() {
        assert_eq!(
            mention_id("<@U123|carol>", "slack").as_deref(),
            Some("U123")
        );
        assert_eq!(mention_id("<@!42>", "discord").as_deref(), Some("42"));
        assert_eq!(mention_id("@carol", "local").as_deref(), Some("carol"));
        assert_eq!(mention_id("@carol", "slack"), None);
    }
}
