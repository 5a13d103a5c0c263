//! Incidents (runbook, Emergency Procedures): declare opens a channel on every chat
//! platform, pages on-call, opens the status page incident and posts the checklist; the
//! timeline collects every incident event and every operation tied to the incident; the
//! scheduler asks for a status update from live data every interval until resolution.
//!
//! Chat, paging and the status page are best effort: the incident, its timeline and its
//! updates live in the store, so a platform that is down never loses the record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use erlmcp_adapters::chat::{ChatPlatform, Platform};
use erlmcp_adapters::pagerduty::{Page, PageSeverity};
use erlmcp_adapters::statuspage::{Impact, PageStatus};
use erlmcp_commands::message::{Handle, Line, Message, Span};
use erlmcp_commands::render::{self, Reply};
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{IncidentCommand, IncidentId, RequestId, Severity, Timestamp};
use tracing::warn;

use crate::engine::{Engine, Invocation, OperationNote, who, who_label};
use crate::store::{IncidentEventRow, IncidentRow, NewIncident, RequestRow, StoreError, Who};

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

/// The runbook's checklist for a severity.
pub fn checklist(s: Severity) -> String {
    let items: &[&str] = match s {
        Severity::P0 => &[
            "Declare the incident and update the status page",
            "Page on-call and name an incident commander (`incident commander @user`)",
            "Assess impact: `status`, recent deploys, recent changes",
            "Mitigate: `rollback production`, `scale production N`, or `maintenance production on`",
            "Fail over to the DR region if the primary is down",
            "Communicate every 15 minutes (`incident update ...`)",
            "Resolve (`incident resolve ...`) and schedule the postmortem",
        ],
        Severity::P1 => &[
            "Declare the incident",
            "Investigate: recent changes, metrics, error logs (`logs production`)",
            "Mitigate: `rollback production` or `scale production N`",
            "Monitor: error rates and latency back to normal",
            "Resolve (`incident resolve ...`)",
        ],
        Severity::P2 => &[
            "Create a ticket",
            "Investigate the affected service (`pods production`, `logs production`)",
            "Fix: `restart production` or a patch release",
            "Resolve (`incident resolve ...`)",
        ],
    };
    items
        .iter()
        .map(|i| format!("☐ {i}"))
        .collect::<Vec<_>>()
        .join("\n")
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

/// The commander, mentioned, or `fallback` when none is named.
fn commander(inc: &IncidentRow, events: &[IncidentEventRow], fallback: &str) -> Span {
    match &inc.commander {
        Some(c) => commander_span(c, commander_platform(inc, events)),
        None => Span::Text(fallback.to_string()),
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

fn system() -> Who {
    Who {
        platform: "system".into(),
        user_id: "erlmcp-bot".into(),
        display_name: "erlmcp-bot".into(),
    }
}

impl Engine {
    fn interval(&self) -> chrono::Duration {
        self.config().bot.status_update_interval.as_chrono()
    }

    /// Who is invited into a new incident channel on `platform`: the declarer and on-call.
    fn invitees(&self, platform: &str, declarer: &Who) -> Vec<String> {
        let mut ids = Vec::new();
        if declarer.platform == platform {
            ids.push(declarer.user_id.clone());
        }
        let prefix = format!("{platform}:");
        for role in ONCALL_ROLES {
            for member in self.config().role_identities(role) {
                if let Some(id) = member.strip_prefix(&prefix)
                    && !ids.iter().any(|i| i == id)
                {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    fn chat(&self, platform: &str) -> Option<&Arc<dyn ChatPlatform>> {
        let platform = Platform::parse(platform)?;
        self.chats().iter().find(|c| c.platform() == platform)
    }

    async fn event(
        &self,
        id: IncidentId,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> Result<(), StoreError> {
        self.store()
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

    async fn announce_incident(&self, message: &Message, except: &str) {
        for chat in self.chats() {
            let Some(channel) = self.incidents_channel(chat.platform()) else {
                continue;
            };
            if except == format!("{}:{channel}", chat.platform()) {
                continue;
            }
            if let Err(e) = chat.post(&channel, &Reply::ok(message.clone())).await {
                warn!(platform = %chat.platform(), error = %e, "could not announce in the incidents channel");
            }
        }
    }

    async fn set_topics(&self, inc: &IncidentRow) {
        let events = self
            .store()
            .incident_events(inc.id)
            .await
            .unwrap_or_default();
        // Topics are plain text everywhere: the commander by name.
        let topic = format!(
            "{} {} | {} | commander: {} | updates every {}",
            inc.id,
            inc.severity,
            inc.title,
            erlmcp_commands::message::plain::span(&commander(inc, &events, "none yet")),
            render::duration(self.interval())
        );
        for (platform, channel) in channels_of(inc) {
            if let Some(chat) = self.chat(&platform)
                && let Err(e) = chat.set_topic(&channel, &topic).await
            {
                warn!(incident = %inc.id, %platform, error = %e, "could not set the incident channel topic");
            }
        }
    }

    /// Finds the incident a command refers to: the id given, the incident whose channel
    /// this is, or the only open one.
    async fn find_incident(
        &self,
        inv: &Invocation,
        id: Option<IncidentId>,
    ) -> Result<Result<IncidentRow, String>, StoreError> {
        if let Some(id) = id {
            return Ok(self
                .store()
                .get_incident(id)
                .await?
                .ok_or_else(|| format!("There is no incident {id}.")));
        }
        let open = self.store().open_incidents().await?;
        if let Some(i) = open.iter().find(|i| channel_refs(i).contains(&inv.channel)) {
            return Ok(Ok(i.clone()));
        }
        match open.as_slice() {
            [one] => Ok(Ok(one.clone())),
            [] => Ok(Err("There is no open incident.".into())),
            many => Ok(Err(format!(
                "Several incidents are open ({}); say which with --id INC-N.",
                many.iter()
                    .map(|i| i.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub(crate) async fn incident(
        &self,
        inv: &Invocation,
        ic: &IncidentCommand,
    ) -> Result<Reply, StoreError> {
        match ic {
            IncidentCommand::Declare { severity, title } => {
                self.incident_declare(inv, *severity, title).await
            }
            IncidentCommand::Update { id, text } => {
                let inc = match self.find_incident(inv, *id).await? {
                    Ok(i) => i,
                    Err(msg) => return Ok(Reply::refused(msg)),
                };
                self.incident_update(inv, inc, text).await
            }
            IncidentCommand::Severity { id, severity } => {
                let inc = match self.find_incident(inv, *id).await? {
                    Ok(i) => i,
                    Err(msg) => return Ok(Reply::refused(msg)),
                };
                self.incident_severity(inv, inc, *severity).await
            }
            IncidentCommand::Commander { id, user } => {
                let inc = match self.find_incident(inv, *id).await? {
                    Ok(i) => i,
                    Err(msg) => return Ok(Reply::refused(msg)),
                };
                self.incident_commander(inv, inc, user).await
            }
            IncidentCommand::Resolve { id, summary } => {
                let inc = match self.find_incident(inv, *id).await? {
                    Ok(i) => i,
                    Err(msg) => return Ok(Reply::refused(msg)),
                };
                self.incident_resolve(inv, inc, summary.as_deref()).await
            }
            IncidentCommand::List | IncidentCommand::Timeline { .. } => Ok(Reply::failed(
                "internal error: incident reads are not operations",
            )),
        }
    }

    async fn incident_declare(
        &self,
        inv: &Invocation,
        severity: Severity,
        title: &str,
    ) -> Result<Reply, StoreError> {
        let me = who(&inv.actor);
        let mut inc = self
            .store()
            .insert_incident(NewIncident {
                severity,
                title: title.to_string(),
                declared_by: me.clone(),
                declared_at: self.now(),
                channel: inv.channel.clone(),
            })
            .await?;
        let id = inc.id;
        self.event(
            id,
            IncidentEventKind::Declared,
            Some(&me),
            &format!("{severity} declared: {title}"),
        )
        .await?;
        // The update schedule is stored before anything slow happens, so a crash during the
        // chat and paging calls below still leaves an incident that gets its updates.
        self.store()
            .upsert_job(
                &status_update_job_key(id),
                STATUS_UPDATE_JOB,
                &id.0.to_string(),
                self.now() + self.interval(),
            )
            .await?;

        let mut lines: Vec<Line> =
            vec![format!("{id} declared ({severity}) by {}: {title}", who_label(&me)).into()];
        let mut channels = BTreeMap::new();
        let name = channel_name(id, title);
        for chat in self.chats() {
            let platform = chat.platform();
            match chat.create_channel(&name).await {
                Ok(channel) => {
                    channels.insert(platform.to_string(), channel.clone());
                    lines.push(
                        Line::new()
                            .text("Channel: ")
                            .span(channel_span(id, title, platform.as_str(), &channel))
                            .text(format!(" ({platform})")),
                    );
                    self.event(
                        id,
                        IncidentEventKind::Channel,
                        None,
                        &format!("{platform} channel {channel} opened"),
                    )
                    .await?;
                }
                Err(e) => {
                    warn!(incident = %id, %platform, error = %e, "could not open the incident channel");
                    lines.push(format!("No {platform} channel: {e}").into());
                    self.event(
                        id,
                        IncidentEventKind::ChatError,
                        None,
                        &format!("{platform} channel not opened: {e}"),
                    )
                    .await?;
                }
            }
        }
        inc.channels_json = serde_json::to_string(&channels).unwrap_or_else(|_| "{}".into());
        self.store().update_incident(&inc).await?;
        self.set_topics(&inc).await;

        let opening = format!(
            "{id} {severity}: {title}\nDeclared by {} at {}. Status updates every {}.\n\nRunbook checklist ({severity}):\n{}",
            who_label(&me),
            render::timestamp(inc.declared_at),
            render::duration(self.interval()),
            checklist(severity)
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
                lines.push(format!("Could not invite on-call on {platform}: {e}").into());
            }
            if let Err(e) = chat.post(channel, &Reply::ok(opening.clone())).await {
                warn!(incident = %id, %platform, error = %e, "could not post the checklist");
            }
        }
        let mut announcement = Line::new().text(format!(
            "{id} {severity} declared by {}: {title}",
            who_label(&me)
        ));
        if !channels.is_empty() {
            announcement = announcement.text(" — join ").extend(channel_links(&inc));
        }
        self.announce_incident(&announcement.into(), &inv.channel)
            .await;

        if pages(severity) {
            lines.extend(self.page(&inc).await?.into_iter().map(Line::from));
            lines.extend(
                self.open_status_page(&inc)
                    .await?
                    .into_iter()
                    .map(Line::from),
            );
        }
        lines.push(
            format!(
                "Status updates every {}.",
                render::duration(self.interval())
            )
            .into(),
        );
        if channels.is_empty() {
            // No channel carries the checklist, so the reply does.
            lines.push(checklist(severity).into());
        }
        Ok(Reply::ok(paragraphs(lines)))
    }

    /// Triggers (or re-triggers at a new severity) the incident's page.
    async fn page(&self, inc: &IncidentRow) -> Result<Vec<String>, StoreError> {
        let Some(pager) = &self.notifiers.pager else {
            return Ok(vec![]);
        };
        let page = Page {
            dedup_key: inc.id.to_string(),
            summary: format!("{} {}: {}", inc.id, inc.severity, inc.title),
            source: "erlmcp-bot".into(),
            severity: page_severity(inc.severity),
        };
        Ok(match pager.trigger(&page).await {
            Ok(()) => {
                self.event(
                    inc.id,
                    IncidentEventKind::Paged,
                    None,
                    &format!("on-call paged ({})", page.severity.as_str()),
                )
                .await?;
                vec!["On-call paged (PagerDuty).".into()]
            }
            Err(e) => {
                warn!(incident = %inc.id, error = %e, "paging failed");
                self.event(inc.id, IncidentEventKind::PageFailed, None, &e.to_string())
                    .await?;
                vec![format!("Paging FAILED: {e}. Page on-call by hand.")]
            }
        })
    }

    async fn open_status_page(&self, inc: &IncidentRow) -> Result<Vec<String>, StoreError> {
        let Some(sp) = &self.notifiers.status_page else {
            return Ok(vec![]);
        };
        if self.store().incident_statuspage_id(inc.id).await?.is_some() {
            return Ok(vec![]);
        }
        let body = "We are investigating an issue and will post updates here.";
        Ok(
            match sp.open(&inc.title, body, impact(inc.severity)).await {
                Ok(sp_id) => {
                    self.store()
                        .set_incident_statuspage_id(inc.id, &sp_id)
                        .await?;
                    self.event(
                        inc.id,
                        IncidentEventKind::StatusPage,
                        None,
                        &format!("status page incident {sp_id} opened"),
                    )
                    .await?;
                    vec!["Status page incident opened.".into()]
                }
                Err(e) => {
                    warn!(incident = %inc.id, error = %e, "status page incident not opened");
                    self.event(
                        inc.id,
                        IncidentEventKind::StatusPageFailed,
                        None,
                        &e.to_string(),
                    )
                    .await?;
                    vec![format!("Status page NOT updated: {e}")]
                }
            },
        )
    }

    async fn update_status_page(
        &self,
        inc: &IncidentRow,
        status: PageStatus,
        body: &str,
        impact: Option<Impact>,
    ) {
        let Some(sp) = &self.notifiers.status_page else {
            return;
        };
        let Ok(Some(sp_id)) = self.store().incident_statuspage_id(inc.id).await else {
            return;
        };
        if let Err(e) = sp.update(&sp_id, status, body, impact).await {
            warn!(incident = %inc.id, error = %e, "status page not updated");
            let _ = self
                .event(
                    inc.id,
                    IncidentEventKind::StatusPageFailed,
                    None,
                    &e.to_string(),
                )
                .await;
        }
    }

    async fn incident_update(
        &self,
        inv: &Invocation,
        mut inc: IncidentRow,
        text: &str,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(format!(
                "{} is resolved; updates are closed.",
                inc.id
            )));
        }
        let me = who(&inv.actor);
        self.event(inc.id, IncidentEventKind::Update, Some(&me), text)
            .await?;
        inc.last_human_update_at = Some(self.now());
        self.store().update_incident(&inc).await?;
        let line = format!("{} update from {}: {text}", inc.id, who_label(&me));
        self.post_to_incident(&inc, &Message::from(&line), Some(&inv.channel))
            .await;
        self.update_status_page(&inc, PageStatus::Identified, text, None)
            .await;
        Ok(Reply::ok(line))
    }

    async fn incident_severity(
        &self,
        inv: &Invocation,
        mut inc: IncidentRow,
        severity: Severity,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(format!("{} is resolved.", inc.id)));
        }
        let me = who(&inv.actor);
        let old = inc.severity;
        if old == severity {
            return Ok(Reply::ok(format!("{} is already {severity}.", inc.id)));
        }
        inc.severity = severity;
        self.store().update_incident(&inc).await?;
        self.event(
            inc.id,
            IncidentEventKind::Severity,
            Some(&me),
            &format!("severity {old} → {severity}"),
        )
        .await?;
        let mut lines = vec![format!(
            "{} severity {old} → {severity} by {}",
            inc.id,
            who_label(&me)
        )];
        // Raised to a paging severity, or from P1 to P0: on-call hears of it at the new level.
        if pages(severity) && severity < old {
            lines.extend(self.page(&inc).await?);
            lines.extend(self.open_status_page(&inc).await?);
        }
        self.update_status_page(
            &inc,
            PageStatus::Identified,
            &format!("Severity changed to {severity}."),
            Some(impact(severity)),
        )
        .await;
        self.set_topics(&inc).await;
        let message = Message::from(lines.join("\n"));
        self.post_to_incident(&inc, &message, Some(&inv.channel))
            .await;
        Ok(Reply::ok(message))
    }

    async fn incident_commander(
        &self,
        inv: &Invocation,
        mut inc: IncidentRow,
        user: &str,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(format!("{} is resolved.", inc.id)));
        }
        let me = who(&inv.actor);
        inc.commander = Some(user.to_string());
        self.store().update_incident(&inc).await?;
        self.event(
            inc.id,
            IncidentEventKind::Commander,
            Some(&me),
            &format!("commander: {user}"),
        )
        .await?;
        let platform = inv.actor.platform.as_str();
        if let (Some(chat), Some(channel), Some(uid)) = (
            self.chat(platform),
            channels_of(&inc).get(platform),
            mention_id(user, platform),
        ) && let Err(e) = chat.invite(channel, &[uid]).await
        {
            warn!(incident = %inc.id, error = %e, "could not invite the commander");
        }
        self.set_topics(&inc).await;
        let message = Message::from(
            Line::new()
                .text(format!("{} commander is now ", inc.id))
                .span(commander_span(user, platform))
                .text(format!(" (named by {})", who_label(&me))),
        );
        self.post_to_incident(&inc, &message, Some(&inv.channel))
            .await;
        Ok(Reply::ok(message))
    }

    async fn incident_resolve(
        &self,
        inv: &Invocation,
        mut inc: IncidentRow,
        summary: Option<&str>,
    ) -> Result<Reply, StoreError> {
        if inc.resolved_at.is_some() {
            return Ok(Reply::refused(format!("{} is already resolved.", inc.id)));
        }
        let me = who(&inv.actor);
        let now = self.now();
        inc.resolved_at = Some(now);
        inc.summary = summary.map(str::to_string);
        self.store().update_incident(&inc).await?;
        self.store()
            .delete_job(&status_update_job_key(inc.id))
            .await?;
        self.event(
            inc.id,
            IncidentEventKind::Resolved,
            Some(&me),
            summary.unwrap_or("resolved"),
        )
        .await?;

        let events = self.store().incident_events(inc.id).await?;
        if events.iter().any(|e| e.kind == IncidentEventKind::Paged)
            && let Some(pager) = &self.notifiers.pager
        {
            match pager.resolve(&inc.id.to_string()).await {
                Ok(()) => {
                    self.event(
                        inc.id,
                        IncidentEventKind::PageResolved,
                        None,
                        "page resolved",
                    )
                    .await?
                }
                Err(e) => {
                    warn!(incident = %inc.id, error = %e, "page not resolved");
                    self.event(
                        inc.id,
                        IncidentEventKind::PageFailed,
                        None,
                        &format!("page not resolved: {e}"),
                    )
                    .await?;
                }
            }
        }
        self.update_status_page(
            &inc,
            PageStatus::Resolved,
            summary.unwrap_or("This incident has been resolved."),
            None,
        )
        .await;

        let events = self.store().incident_events(inc.id).await?;
        let message = resolution_summary(&inc, &events, now);
        self.post_to_incident(&inc, &message, Some(&inv.channel))
            .await;
        self.announce_incident(
            &Message::from(format!(
                "{} resolved after {}: {}",
                inc.id,
                render::duration(now - inc.declared_at),
                inc.title
            )),
            &inv.channel,
        )
        .await;
        Ok(Reply::ok(message))
    }

    pub(crate) async fn incident_list(&self) -> Result<Reply, StoreError> {
        let open = self.store().open_incidents().await?;
        if open.is_empty() {
            return Ok(Reply::private("No open incidents."));
        }
        let now = self.now();
        let mut lines = Vec::new();
        for i in &open {
            let events = self.store().incident_events(i.id).await?;
            let mut line = Line::new()
                .text(format!(
                    "{} {} {} — open {}, commander ",
                    i.id,
                    i.severity,
                    i.title,
                    render::duration(now - i.declared_at),
                ))
                .span(commander(i, &events, "none"));
            let links = channel_links(i);
            if !links.is_empty() {
                line = line.text(", ").extend(links);
            }
            lines.push(line);
        }
        Ok(Reply::private(paragraphs(lines)))
    }

    pub(crate) async fn incident_timeline(
        &self,
        inv: &Invocation,
        id: Option<IncidentId>,
    ) -> Result<Reply, StoreError> {
        let inc = match self.find_incident(inv, id).await? {
            Ok(i) => i,
            Err(msg) => return Ok(Reply::refused(msg)),
        };
        let events = self.store().incident_events(inc.id).await?;
        let state = match inc.resolved_at {
            Some(at) => format!("resolved {}", render::timestamp(at)),
            None => "open".into(),
        };
        let mut out = format!("{} {} {} ({state})", inc.id, inc.severity, inc.title);
        for e in &events {
            out.push_str(&format!("\n{}", timeline_line(e)));
        }
        Ok(Reply::private(out))
    }

    /// Puts an operation on the timeline of the incidents it belongs to: run in the
    /// incident's channel, naming the incident, or (break-glass) relying on it.
    pub(crate) async fn note_operation(&self, row: &RequestRow, note: OperationNote<'_>) {
        let Ok(open) = self.store().open_incidents().await else {
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
        let flag = if row.break_glass {
            " [break-glass]"
        } else {
            ""
        };
        let (kind, text) = match note {
            OperationNote::BreakGlass => (
                IncidentEventKind::BreakGlass,
                format!(
                    "{} {} by {}: break-glass, runs at once without approval (audited as break_glass)",
                    row.id,
                    row.command_text,
                    who_label(&row.requester)
                ),
            ),
            OperationNote::Finished { ok, outcome } => (
                IncidentEventKind::Operation,
                format!(
                    "{} {}{flag} — {}: {outcome}",
                    row.id,
                    row.command_text,
                    if ok { "succeeded" } else { "failed" }
                ),
            ),
            OperationNote::Interrupted { detail } => (
                IncidentEventKind::Operation,
                format!(
                    "{} {}{flag} — interrupted: {detail}",
                    row.id, row.command_text
                ),
            ),
        };
        for inc in open.iter().filter(|i| belongs(i)) {
            if let Err(e) = self.event(inc.id, kind, Some(&row.requester), &text).await {
                warn!(incident = %inc.id, request = %row.id, error = %e, "operation not put on the timeline");
            }
        }
    }

    /// Writes and posts the periodic status update; false when the incident is over (or
    /// gone) and its updates should stop.
    pub async fn post_incident_status_update(&self, id: IncidentId) -> Result<bool, StoreError> {
        let Some(inc) = self.store().get_incident(id).await? else {
            return Ok(false);
        };
        if inc.resolved_at.is_some() {
            return Ok(false);
        }
        let events = self.store().incident_events(id).await?;
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
        let out = format!(
            "{} status update — {} {}\nOpen for {} (declared {} by {})",
            inc.id,
            inc.severity,
            inc.title,
            render::duration(now - inc.declared_at),
            render::timestamp(inc.declared_at),
            who_label(&inc.declared_by)
        );
        let mut lines = vec![
            Line::from(out),
            Line::new().text("Commander: ").span(commander(
                inc,
                events,
                "none — name one with `incident commander @user`",
            )),
        ];
        let mut out = String::new();
        match events
            .iter()
            .rev()
            .find(|e| e.kind == IncidentEventKind::Update)
        {
            Some(u) => out.push_str(&format!(
                "Last human update: {} ago by {}: {}",
                render::duration(now - u.at),
                u.who
                    .as_ref()
                    .map(who_label)
                    .unwrap_or_else(|| "someone".into()),
                u.text
            )),
            None => out.push_str("Last human update: none yet"),
        }

        out.push_str("\nEnvironments:");
        for env in self.affected_environments(events).await {
            out.push_str(&format!("\n  {}", self.environment_line(&env).await));
        }

        let ops: Vec<&IncidentEventRow> = events
            .iter()
            .filter(|e| e.seq > since && OPERATION_EVENTS.contains(&e.kind))
            .collect();
        if ops.is_empty() {
            out.push_str("\nOperations since the last update: none");
        } else {
            out.push_str("\nOperations since the last update:");
            for e in ops {
                out.push_str(&format!(
                    "\n  {} {} (by {})",
                    render::timestamp(e.at),
                    e.text,
                    e.who
                        .as_ref()
                        .map(who_label)
                        .unwrap_or_else(|| "erlmcp-bot".into())
                ));
            }
        }

        let quiet = inc
            .last_human_update_at
            .is_none_or(|at| now - at >= interval);
        lines.push(Line::from(out));
        if quiet {
            lines.push(
                Line::new()
                    .span(commander(inc, events, "Commander (none named yet)"))
                    .text(format!(
                        ": no human update in the last {} — post one with `incident update ...`.",
                        render::duration(interval)
                    )),
            );
        }
        paragraphs(lines)
    }

    /// Production, where incidents are felt, plus every environment an operation on this
    /// incident touched.
    async fn affected_environments(&self, events: &[IncidentEventRow]) -> Vec<String> {
        let mut envs: Vec<String> = Vec::new();
        if self.config().environments.contains_key("production") {
            envs.push("production".into());
        }
        for e in events.iter().filter(|e| OPERATION_EVENTS.contains(&e.kind)) {
            let Some(rid) = request_of(e) else { continue };
            if let Ok(Some(r)) = self.store().get_request(rid).await
                && let Some(env) = r.environment.filter(|env| !envs.contains(env))
            {
                envs.push(env);
            }
        }
        if envs.is_empty() {
            envs = self.config().environments.keys().cloned().collect();
        }
        envs
    }

    /// `production [kubernetes]: v3.0.1, 5/5 ready, health 200 in 42 ms`, from the target
    /// now, probing the health URL when the target does not.
    async fn environment_line(&self, name: &str) -> String {
        let Some(spec) = self.config().environment(name) else {
            return format!("{name}: no longer configured");
        };
        let target = match self.target_for(spec) {
            Ok(t) => t,
            Err(e) => return format!("{name}: {e}"),
        };
        let status = match target.status(spec).await {
            Ok(s) => s,
            Err(e) => return format!("{name}: status unavailable: {e}"),
        };
        let health = match (&status.health, &spec.health_url) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(url)) => {
                Some(erlmcp_adapters::probe::probe(self.http(), url, Duration::from_secs(5)).await)
            }
            (None, None) => None,
        };
        let health = match health {
            None => "health not probed".to_string(),
            Some(h) => match (h.code, h.error) {
                (Some(code), _) => format!("health {code} in {} ms", h.latency_ms),
                (None, Some(e)) => format!("health FAILED ({e})"),
                (None, None) => "health: no answer".to_string(),
            },
        };
        format!(
            "{name} [{}]: {}, {}/{} ready, {health}{}",
            status.target,
            status.version.as_deref().unwrap_or("unknown version"),
            status.replicas.ready,
            status.replicas.desired,
            if status.maintenance == Some(true) {
                ", maintenance ON"
            } else {
                ""
            }
        )
    }

    /// A DR failover is starting: every open incident gets it on its timeline and in its
    /// channels, and its status page says "Failing over to DR region" (runbook P0 step 5).
    pub(crate) async fn note_failover(&self, row: &RequestRow) {
        let Ok(open) = self.store().open_incidents().await else {
            return;
        };
        let text = format!(
            "{}: {} {} by {}",
            erlmcp_commands::runbook::FAILOVER_STATUS,
            row.id,
            row.command_text,
            who_label(&row.requester)
        );
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

fn timeline_line(e: &IncidentEventRow) -> String {
    let text = if e.kind == IncidentEventKind::StatusUpdate {
        // The whole update is stored; its first line is enough in a timeline.
        e.text.lines().next().unwrap_or_default().to_string()
    } else {
        e.text.clone()
    };
    format!(
        "{} {}{}: {text}",
        render::timestamp(e.at),
        e.kind,
        e.who
            .as_ref()
            .filter(|w| w.platform != "system")
            .map(|w| format!(" ({})", who_label(w)))
            .unwrap_or_default(),
    )
}

/// Lines as a message of paragraphs, read as one text.
fn paragraphs(lines: Vec<Line>) -> Message {
    lines
        .into_iter()
        .map(erlmcp_commands::message::Block::paragraph)
        .collect::<Vec<_>>()
        .into()
}

fn resolution_summary(inc: &IncidentRow, events: &[IncidentEventRow], now: Timestamp) -> Message {
    let mut out = format!(
        "{} resolved after {}: {} ({})",
        inc.id,
        render::duration(now - inc.declared_at),
        inc.title,
        inc.severity
    );
    if let Some(s) = &inc.summary {
        out.push_str(&format!("\nSummary: {s}"));
    }
    let mut lines = vec![
        Line::from(out),
        Line::new()
            .text("Commander: ")
            .span(commander(inc, events, "none named")),
    ];
    let mut out = String::new();
    let ops: Vec<&IncidentEventRow> = events
        .iter()
        .filter(|e| e.kind == IncidentEventKind::Operation)
        .collect();
    if ops.is_empty() {
        out.push_str("Operations: none");
    } else {
        out.push_str("Operations:");
        for e in ops {
            out.push_str(&format!(
                "\n  {} {} (by {})",
                render::timestamp(e.at),
                e.text,
                e.who.as_ref().map(who_label).unwrap_or_default()
            ));
        }
    }
    let updates = events
        .iter()
        .filter(|e| e.kind == IncidentEventKind::StatusUpdate)
        .count();
    out.push_str("\nTimeline:");
    for e in events
        .iter()
        .filter(|e| e.kind != IncidentEventKind::StatusUpdate)
    {
        out.push_str(&format!("\n  {}", timeline_line(e)));
    }
    out.push_str(&format!(
        "\n  ({updates} automatic status update(s) posted)"
    ));
    lines.push(Line::from(out));
    lines.push(
        Line::new()
            .span(commander(inc, events, "Commander"))
            .text(": please schedule the postmortem."),
    );
    paragraphs(lines)
}

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
