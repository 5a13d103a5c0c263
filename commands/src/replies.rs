//! Every text a user sees, each a small named function: the engine and the incident service
//! say which reply they mean and with what facts, and the words live here, in one place.
//! Texts return neutral [`Message`]s, [`Line`]s or plain strings; only a chat adapter turns
//! them into markup. Many are pinned byte for byte by tests, so change them deliberately.

use chrono::Duration;

use crate::format::{duration, timestamp};
use crate::message::{Block, Line, Message, Span};
use crate::model::{IncidentId, RequestId, Severity, Timestamp};
use crate::policy::{Refusal, Unmet, VoteRefusal};
use crate::status::{EnvStatus, PodInfo};
use crate::vocab::IncidentEventKind;

/// Someone as replies name them: `Alice (slack:U1)`, or `slack:U1` when the name adds nothing.
pub fn who_label(platform: &str, user_id: &str, display_name: &str) -> String {
    if display_name.is_empty() || display_name == user_id {
        format!("{platform}:{user_id}")
    } else {
        format!("{display_name} ({platform}:{user_id})")
    }
}

/// Lines as a message of paragraphs, read as one text.
pub fn paragraphs(lines: Vec<Line>) -> Message {
    lines
        .into_iter()
        .map(Block::paragraph)
        .collect::<Vec<_>>()
        .into()
}

// ---------------------------------------------------------------------------------------
// Commands in general

/// The private acknowledgement of a command that may take minutes.
pub fn working_on(command: &str) -> Line {
    Line::new()
        .text("Working on ")
        .code(command.trim())
        .text("; the outcome follows here.")
}

/// Added to a refusal or `whoami` when the asker's groups could not be read.
pub fn groups_unreadable() -> &'static str {
    "Your group membership could not be read just now, so roles that come from groups are missing. Try again in a minute."
}

/// A read or a bookkeeping command whose data the store could not give.
pub fn database_unavailable(e: &dyn std::fmt::Display) -> String {
    format!("The database could not answer this ({e}). Try again in a minute.")
}

/// A command refused because a step it needed could not be recorded (fail closed).
pub fn audit_unavailable_not_executed(e: &dyn std::fmt::Display) -> String {
    format!(
        "Not executed: the audit log is unavailable ({e}). Nothing was changed; try again when the database is back."
    )
}

/// A request that could not be recorded, so it will never run.
pub fn audit_unavailable_request_dropped(e: &dyn std::fmt::Display) -> String {
    format!(
        "Not recorded: the audit log is unavailable ({e}). The request was dropped; nothing will be executed."
    )
}

/// A bug: a command reached a handler that does not take it.
pub fn internal_error(what: &str) -> String {
    format!("internal error: {what}")
}

pub fn target_not_configured(target: &str) -> String {
    format!("the {target} target is not configured in this bot")
}

pub fn unknown_environment(env: &str) -> String {
    format!("unknown environment {env}")
}

pub fn environment_no_longer_configured(env: &str) -> String {
    format!("environment {env} is no longer configured")
}

pub fn refusal(r: &Refusal, now: Timestamp) -> String {
    match r {
        Refusal::NoRole => {
            "Refused: you hold no role in erlmcp-bot. Ask an admin to add your id to a role (see `whoami`).".into()
        }
        Refusal::NotPermitted {
            operation,
            env,
            allowed,
        } => {
            let where_ = env.as_ref().map(|e| format!(" on {e}")).unwrap_or_default();
            if allowed.is_empty() {
                format!("Refused: no rule allows {operation}{where_}.")
            } else {
                format!(
                    "Refused: {operation}{where_} is allowed to {} only.",
                    allowed.join(", ")
                )
            }
        }
        Refusal::Preconditions(unmet) => {
            let mut out = String::from("Refused: preconditions not met:");
            for u in unmet {
                out.push_str("\n• ");
                out.push_str(&unmet_line(u, now));
            }
            out
        }
    }
}

pub fn unmet_line(u: &Unmet, now: Timestamp) -> String {
    match u {
        Unmet::Soak {
            from,
            needed,
            met_at,
            why,
            ..
        } => match met_at {
            Some(at) => format!(
                "soak: {why}; met at {} (in {})",
                timestamp(*at),
                duration(*at - now)
            ),
            None => format!("soak: {why}; it needs {needed} in {from} first"),
        },
        Unmet::CiNotGreen { version, detail } => {
            format!("ci: CI for {version} is not green ({detail})")
        }
    }
}

pub fn vote_refusal(r: &VoteRefusal, id: RequestId) -> String {
    match r {
        VoteRefusal::Requester => {
            format!("Refused: you requested {id}, so you cannot approve or deny it.")
        }
        VoteRefusal::NotApprover { from } => {
            format!("Refused: only {} can vote on {id}.", from.join(" or "))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Environments

/// The status digest of one environment.
pub fn status(s: &EnvStatus) -> String {
    let mut out = format!(
        "{} [{}]: {} — {}/{} ready, {} updated, {} available",
        s.env,
        s.target,
        s.version.as_deref().unwrap_or("unknown version"),
        s.replicas.ready,
        s.replicas.desired,
        s.replicas.updated,
        s.replicas.available
    );
    out.push_str(&format!("\n  rollout: {}", s.rollout));
    if let Some(img) = &s.image {
        out.push_str(&format!("\n  image: {img}"));
    }
    if let Some(m) = s.maintenance {
        out.push_str(&format!(
            "\n  maintenance: {}",
            if m { "ON" } else { "off" }
        ));
    }
    if let Some(h) = &s.health {
        match (h.code, &h.error) {
            (Some(c), _) => out.push_str(&format!("\n  health: {c} in {} ms", h.latency_ms)),
            (None, Some(e)) => out.push_str(&format!("\n  health: failed ({e})")),
            (None, None) => out.push_str("\n  health: no answer"),
        }
    }
    if let Some(v) = &s.reported_version {
        out.push_str(&format!("\n  reported version: {v}"));
    }
    if let Some(c) = &s.canary {
        out.push_str(&format!(
            "\n  canary: {} at {}% ({} failed checks{})",
            c.phase,
            c.weight,
            c.failed_checks,
            if c.paused { ", paused" } else { "" }
        ));
    }
    for c in &s.conditions {
        out.push_str(&format!("\n  condition: {c}"));
    }
    for p in &s.pods_not_ready {
        out.push_str(&format!(
            "\n  pod {} not ready: {} ({} restarts)",
            p.name,
            p.reason.as_deref().unwrap_or(&p.phase),
            p.restarts
        ));
    }
    out
}

/// An environment whose state could not be read: `production: status unavailable: ...`.
pub fn environment_unavailable(env: &str, why: &str) -> String {
    format!("{env}: {why}")
}

pub fn status_unavailable(e: &dyn std::fmt::Display) -> String {
    format!("status unavailable: {e}")
}

pub const NO_LONGER_CONFIGURED: &str = "no longer configured";

/// One line per environment in an incident status update: `production [kubernetes]:
/// v3.0.1, 5/5 ready, health 200 in 42 ms`.
pub fn incident_environment_line(s: &EnvStatus) -> String {
    let health = match &s.health {
        None => "health not probed".to_string(),
        Some(h) => match (h.code, &h.error) {
            (Some(code), _) => format!("health {code} in {} ms", h.latency_ms),
            (None, Some(e)) => format!("health FAILED ({e})"),
            (None, None) => "health: no answer".to_string(),
        },
    };
    format!(
        "{} [{}]: {}, {}/{} ready, {health}{}",
        s.env,
        s.target,
        s.version.as_deref().unwrap_or("unknown version"),
        s.replicas.ready,
        s.replicas.desired,
        if s.maintenance == Some(true) {
            ", maintenance ON"
        } else {
            ""
        }
    )
}

// ---------------------------------------------------------------------------------------
// Incidents

/// The runbook's checklist for a severity.
pub fn incident_checklist(s: Severity) -> String {
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

pub fn no_such_incident(id: IncidentId) -> String {
    format!("There is no incident {id}.")
}

pub fn no_open_incident() -> &'static str {
    "There is no open incident."
}

pub fn which_incident(open: &[IncidentId]) -> String {
    format!(
        "Several incidents are open ({}); say which with --id INC-N.",
        open.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn incident_resolved(id: IncidentId) -> String {
    format!("{id} is resolved.")
}

pub fn incident_updates_closed(id: IncidentId) -> String {
    format!("{id} is resolved; updates are closed.")
}

pub fn incident_already_resolved(id: IncidentId) -> String {
    format!("{id} is already resolved.")
}

/// The first line of the reply to `incident declare`.
pub fn incident_declared(id: IncidentId, severity: Severity, by: &str, title: &str) -> Line {
    format!("{id} declared ({severity}) by {by}: {title}").into()
}

/// A channel opened for a new incident, linked where the platform can.
pub fn incident_channel_opened(channel: Span, platform: &str) -> Line {
    Line::new()
        .text("Channel: ")
        .span(channel)
        .text(format!(" ({platform})"))
}

pub fn incident_channel_failed(platform: &str, e: &dyn std::fmt::Display) -> Line {
    format!("No {platform} channel: {e}").into()
}

pub fn oncall_not_invited(platform: &str, e: &dyn std::fmt::Display) -> Line {
    format!("Could not invite on-call on {platform}: {e}").into()
}

/// The first message in a new incident channel: what, who, when, and the checklist.
pub fn incident_opening(
    id: IncidentId,
    severity: Severity,
    title: &str,
    by: &str,
    at: Timestamp,
    every: Duration,
) -> String {
    format!(
        "{id} {severity}: {title}\nDeclared by {by} at {}. Status updates every {}.\n\nRunbook checklist ({severity}):\n{}",
        timestamp(at),
        duration(every),
        incident_checklist(severity)
    )
}

/// What the incidents channel of each platform hears of a new incident.
pub fn incident_announcement(
    id: IncidentId,
    severity: Severity,
    by: &str,
    title: &str,
    channels: Option<Line>,
) -> Message {
    let mut line = Line::new().text(format!("{id} {severity} declared by {by}: {title}"));
    if let Some(links) = channels {
        line = line.text(" — join ").extend(links);
    }
    line.into()
}

pub fn status_updates_every(every: Duration) -> Line {
    format!("Status updates every {}.", duration(every)).into()
}

/// What the page says on the pager.
pub fn page_summary(id: IncidentId, severity: Severity, title: &str) -> String {
    format!("{id} {severity}: {title}")
}

pub fn oncall_paged() -> String {
    "On-call paged (PagerDuty).".into()
}

pub fn paging_failed(e: &dyn std::fmt::Display) -> String {
    format!("Paging FAILED: {e}. Page on-call by hand.")
}

/// The public status page's first words on a new incident.
pub const STATUS_PAGE_INVESTIGATING: &str =
    "We are investigating an issue and will post updates here.";

pub const STATUS_PAGE_RESOLVED: &str = "This incident has been resolved.";

pub fn status_page_severity(severity: Severity) -> String {
    format!("Severity changed to {severity}.")
}

pub fn status_page_opened() -> String {
    "Status page incident opened.".into()
}

pub fn status_page_failed(e: &dyn std::fmt::Display) -> String {
    format!("Status page NOT updated: {e}")
}

pub fn incident_update_posted(id: IncidentId, by: &str, text: &str) -> String {
    format!("{id} update from {by}: {text}")
}

pub fn incident_severity_unchanged(id: IncidentId, severity: Severity) -> String {
    format!("{id} is already {severity}.")
}

pub fn incident_severity_changed(id: IncidentId, old: Severity, new: Severity, by: &str) -> String {
    format!("{id} severity {old} → {new} by {by}")
}

pub fn incident_commander_named(id: IncidentId, commander: Span, by: &str) -> Message {
    Line::new()
        .text(format!("{id} commander is now "))
        .span(commander)
        .text(format!(" (named by {by})"))
        .into()
}

/// What the incidents channel hears when an incident is over.
pub fn incident_resolved_announcement(id: IncidentId, after: Duration, title: &str) -> Message {
    format!("{id} resolved after {}: {title}", duration(after)).into()
}

/// A channel topic: plain text on every platform, so the commander is a name.
pub fn incident_topic(
    id: IncidentId,
    severity: Severity,
    title: &str,
    commander: &str,
    every: Duration,
) -> String {
    format!(
        "{id} {severity} | {title} | commander: {commander} | updates every {}",
        duration(every)
    )
}

pub fn no_open_incidents() -> &'static str {
    "No open incidents."
}

/// One open incident in `incident list`.
pub fn incident_list_line(
    id: IncidentId,
    severity: Severity,
    title: &str,
    open_for: Duration,
    commander: Option<Span>,
    channels: Line,
) -> Line {
    let mut line = Line::new()
        .text(format!(
            "{id} {severity} {title} — open {}, commander ",
            duration(open_for),
        ))
        .span(commander.unwrap_or_else(|| Span::Text("none".into())));
    if !channels.is_empty() {
        line = line.text(", ").extend(channels);
    }
    line
}

/// An entry of an incident's timeline as replies show it.
pub struct TimelineEntry<'a> {
    pub at: Timestamp,
    pub kind: IncidentEventKind,
    /// Who did it, labelled; `None` when nobody is recorded.
    pub by: Option<String>,
    /// Done by the bot itself, which timelines do not name.
    pub by_bot: bool,
    pub text: &'a str,
}

pub fn timeline_line(e: &TimelineEntry<'_>) -> String {
    let text = if e.kind == IncidentEventKind::StatusUpdate {
        // The whole update is stored; its first line is enough in a timeline.
        e.text.lines().next().unwrap_or_default()
    } else {
        e.text
    };
    format!(
        "{} {}{}: {text}",
        timestamp(e.at),
        e.kind,
        e.by.as_ref()
            .filter(|_| !e.by_bot)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default(),
    )
}

/// `incident timeline`: the incident and every event.
pub fn incident_timeline(
    id: IncidentId,
    severity: Severity,
    title: &str,
    resolved_at: Option<Timestamp>,
    events: &[TimelineEntry<'_>],
) -> String {
    let state = match resolved_at {
        Some(at) => format!("resolved {}", timestamp(at)),
        None => "open".into(),
    };
    let mut out = format!("{id} {severity} {title} ({state})");
    for e in events {
        out.push_str(&format!("\n{}", timeline_line(e)));
    }
    out
}

/// An incident as its status update and its resolution summary show it.
pub struct IncidentFacts<'a> {
    pub id: IncidentId,
    pub severity: Severity,
    pub title: &'a str,
    pub declared_at: Timestamp,
    pub declared_by: String,
    pub summary: Option<&'a str>,
    /// The commander, mentioned where the platform can; `None` when nobody is named.
    pub commander: Option<Span>,
}

impl IncidentFacts<'_> {
    fn commander_or(&self, fallback: &str) -> Span {
        self.commander
            .clone()
            .unwrap_or_else(|| Span::Text(fallback.to_string()))
    }
}

/// The last human update, for a status update.
pub struct LastUpdate<'a> {
    pub at: Timestamp,
    pub by: Option<String>,
    pub text: &'a str,
}

/// The periodic status update of an open incident.
pub fn incident_status_update(
    inc: &IncidentFacts<'_>,
    now: Timestamp,
    last_update: Option<LastUpdate<'_>>,
    environments: &[String],
    operations: &[TimelineEntry<'_>],
    quiet_for: Option<Duration>,
) -> Message {
    let out = format!(
        "{} status update — {} {}\nOpen for {} (declared {} by {})",
        inc.id,
        inc.severity,
        inc.title,
        duration(now - inc.declared_at),
        timestamp(inc.declared_at),
        inc.declared_by
    );
    let mut lines = vec![
        Line::from(out),
        Line::new()
            .text("Commander: ")
            .span(inc.commander_or("none — name one with `incident commander @user`")),
    ];
    let mut out = String::new();
    match last_update {
        Some(u) => out.push_str(&format!(
            "Last human update: {} ago by {}: {}",
            duration(now - u.at),
            u.by.as_deref().unwrap_or("someone"),
            u.text
        )),
        None => out.push_str("Last human update: none yet"),
    }
    out.push_str("\nEnvironments:");
    for env in environments {
        out.push_str(&format!("\n  {env}"));
    }
    if operations.is_empty() {
        out.push_str("\nOperations since the last update: none");
    } else {
        out.push_str("\nOperations since the last update:");
        for e in operations {
            out.push_str(&format!(
                "\n  {} {} (by {})",
                timestamp(e.at),
                e.text,
                e.by.as_deref().unwrap_or("erlmcp-bot")
            ));
        }
    }
    lines.push(Line::from(out));
    if let Some(interval) = quiet_for {
        lines.push(
            Line::new()
                .span(inc.commander_or("Commander (none named yet)"))
                .text(format!(
                    ": no human update in the last {} — post one with `incident update ...`.",
                    duration(interval)
                )),
        );
    }
    paragraphs(lines)
}

/// Posted when an incident is resolved: how long, what was done, and the postmortem.
pub fn incident_resolution_summary(
    inc: &IncidentFacts<'_>,
    now: Timestamp,
    operations: &[TimelineEntry<'_>],
    timeline: &[TimelineEntry<'_>],
    status_updates: usize,
) -> Message {
    let mut out = format!(
        "{} resolved after {}: {} ({})",
        inc.id,
        duration(now - inc.declared_at),
        inc.title,
        inc.severity
    );
    if let Some(s) = inc.summary {
        out.push_str(&format!("\nSummary: {s}"));
    }
    let mut lines = vec![
        Line::from(out),
        Line::new()
            .text("Commander: ")
            .span(inc.commander_or("none named")),
    ];
    let mut out = String::new();
    if operations.is_empty() {
        out.push_str("Operations: none");
    } else {
        out.push_str("Operations:");
        for e in operations {
            out.push_str(&format!(
                "\n  {} {} (by {})",
                timestamp(e.at),
                e.text,
                e.by.as_deref().unwrap_or_default()
            ));
        }
    }
    out.push_str("\nTimeline:");
    for e in timeline {
        out.push_str(&format!("\n  {}", timeline_line(e)));
    }
    out.push_str(&format!(
        "\n  ({status_updates} automatic status update(s) posted)"
    ));
    lines.push(Line::from(out));
    lines.push(
        Line::new()
            .span(inc.commander_or("Commander"))
            .text(": please schedule the postmortem."),
    );
    paragraphs(lines)
}

// Timeline entries: stored with the incident and shown by `incident timeline`, the status
// updates and the resolution summary.

pub fn event_declared(severity: Severity, title: &str) -> String {
    format!("{severity} declared: {title}")
}

pub fn event_channel_opened(platform: &str, channel: &str) -> String {
    format!("{platform} channel {channel} opened")
}

pub fn event_channel_failed(platform: &str, e: &dyn std::fmt::Display) -> String {
    format!("{platform} channel not opened: {e}")
}

pub fn event_paged(severity: &str) -> String {
    format!("on-call paged ({severity})")
}

pub fn event_status_page_opened(id: &str) -> String {
    format!("status page incident {id} opened")
}

pub fn event_severity(old: Severity, new: Severity) -> String {
    format!("severity {old} → {new}")
}

pub fn event_commander(user: &str) -> String {
    format!("commander: {user}")
}

pub const EVENT_RESOLVED: &str = "resolved";

pub const EVENT_PAGE_RESOLVED: &str = "page resolved";

pub fn event_page_not_resolved(e: &dyn std::fmt::Display) -> String {
    format!("page not resolved: {e}")
}

pub fn event_break_glass(request: RequestId, command: &str, by: &str) -> String {
    format!(
        "{request} {command} by {by}: break-glass, runs at once without approval (audited as break_glass)"
    )
}

pub fn event_operation_finished(
    request: RequestId,
    command: &str,
    break_glass: bool,
    ok: bool,
    outcome: &str,
) -> String {
    format!(
        "{request} {command}{} — {}: {outcome}",
        break_glass_flag(break_glass),
        if ok { "succeeded" } else { "failed" }
    )
}

pub fn event_operation_interrupted(
    request: RequestId,
    command: &str,
    break_glass: bool,
    detail: &str,
) -> String {
    format!(
        "{request} {command}{} — interrupted: {detail}",
        break_glass_flag(break_glass)
    )
}

fn break_glass_flag(break_glass: bool) -> &'static str {
    if break_glass { " [break-glass]" } else { "" }
}

pub fn event_failover(request: RequestId, command: &str, by: &str) -> String {
    format!(
        "{}: {request} {command} by {by}",
        crate::runbook::FAILOVER_STATUS
    )
}

// ---------------------------------------------------------------------------------------
// Requests: votes, cancellation

pub fn no_such_request(id: RequestId) -> String {
    format!("There is no request {id}.")
}

pub fn request_expired_at(id: RequestId, at: Timestamp) -> String {
    format!(
        "{id} expired at {}; ask again if it is still needed.",
        timestamp(at)
    )
}

/// A vote on a request that is no longer pending; `state` as the request describes it.
pub fn nothing_to_vote_on(id: RequestId, state: &str, verb: &str) -> String {
    format!("{id} is {state}; there is nothing to {verb}.")
}

pub fn already_voted(id: RequestId) -> String {
    format!("You already voted on {id}; each person counts once.")
}

/// `requester` is named when known.
pub fn only_the_requester_cancels(id: RequestId, requester: Option<&str>) -> String {
    match requester {
        Some(r) => format!("Only the requester ({r}) can cancel {id}."),
        None => format!("Only the requester can cancel {id}."),
    }
}

/// Why a request was denied: stored with it, audited and shown on its card.
pub fn denied_by(by: &str, comment: Option<&str>) -> String {
    format!("denied by {by}") + &comment.map(|c| format!(": {c}")).unwrap_or_default()
}

/// `github` is what happened to a GitHub environment gate, when there was one.
pub fn request_denied(id: RequestId, command: &str, why: &str, github: &str) -> String {
    format!("{id} {command}: {why}.{github}")
}

pub fn vote_recorded_already_settled(id: RequestId) -> String {
    format!("Vote recorded; {id} was already settled.")
}

pub fn vote_recorded_already_running(id: RequestId) -> String {
    format!("Vote recorded; {id} is already being carried out.")
}

pub fn approved_by(by: &str, id: RequestId, approvals: u32, needed: u32) -> String {
    format!("{by} approved {id} ({approvals} of {needed} approvals).")
}

pub fn stored_command_unreadable(id: RequestId, e: &dyn std::fmt::Display) -> String {
    format!("{id} cannot be executed: its stored command is unreadable ({e}).")
}

pub const NOT_AN_OPERATION_UNDER_A_RULE: &str =
    "its stored command is not an operation under a rule";

pub fn approved_not_executed(id: RequestId, why: &str) -> String {
    format!("{id} approved but not executed: {why}")
}

pub fn already_expired(id: RequestId) -> String {
    format!("{id} already expired.")
}

pub fn no_longer_cancellable(id: RequestId, state: &str) -> String {
    format!("{id} is {state}; it can no longer be cancelled.")
}

pub fn cannot_cancel(id: RequestId) -> String {
    format!("{id} cannot be cancelled.")
}

pub fn cancelled(id: RequestId) -> String {
    format!("{id} cancelled.")
}

pub fn settled_before_cancel(id: RequestId) -> String {
    format!("{id} was settled before it could be cancelled.")
}

// ---------------------------------------------------------------------------------------
// Operations

/// A precondition met when the request was made, shown to the approvers.
pub fn met_soak(version: &str, from: &str, at: Timestamp, needed: &str) -> String {
    format!(
        "{version} soaked in {from} since {} (≥ {needed})",
        timestamp(at)
    )
}

pub fn met_ci_green(version: &str) -> String {
    format!("CI green for {version}")
}

pub fn operation_done(id: RequestId, summary: &str) -> String {
    format!("{id} done: {summary}")
}

pub fn operation_failed(id: RequestId, e: &dyn std::fmt::Display) -> String {
    format!("{id} failed: {e}")
}

pub fn outcome_after_interruption(id: RequestId) -> String {
    format!(
        "Warning: {id} had already been marked interrupted by another process (this one's heartbeat was late); the outcome above is in the audit log."
    )
}

pub fn outcome_not_stored(e: &dyn std::fmt::Display) -> String {
    format!("Warning: the outcome could not be stored ({e}).")
}

pub fn outcome_not_audited(e: &dyn std::fmt::Display) -> String {
    format!("Warning: the outcome could not be written to the audit log ({e}).")
}

pub fn outcome_kept(id: RequestId) -> String {
    format!(
        "The bot keeps this outcome and writes it as soon as the database takes it; until then {id} shows as executing."
    )
}

/// The reason of an outcome's audit row written after its first write was not confirmed.
pub fn outcome_recorded_late(reason: &str, finished_at: Timestamp) -> String {
    let late = format!(
        "recorded late: finished at {}, when the database did not confirm the first write",
        timestamp(finished_at)
    );
    if reason.is_empty() {
        late
    } else {
        format!("{reason}; {late}")
    }
}

// ---------------------------------------------------------------------------------------
// Interrupted requests

/// The outcome stored with a request whose process died while carrying it out.
pub fn interrupted_outcome(dead: &str) -> String {
    format!("interrupted: the process carrying it out ({dead}) stopped")
}

pub fn live_state_unreadable(e: &dyn std::fmt::Display) -> String {
    format!("its live state could not be read: {e}")
}

/// What the workload of an interrupted request shows now, in the words the status carries;
/// `version` is the one the request was going to.
pub fn live_state(version: Option<&str>, st: &EnvStatus) -> String {
    let r = &st.replicas;
    let running = st.version.as_deref().unwrap_or("an unknown version");
    if r.updated < r.desired || r.available < r.desired {
        let what = match version {
            Some(v) => format!("rollout of {v}"),
            None => "the rollout".into(),
        };
        format!(
            "{what} was in progress: {} of {} updated ({}: {})",
            r.updated, r.desired, st.target, st.rollout
        )
    } else {
        format!(
            "{} runs {running} ({}/{} ready; {}: {})",
            st.env, r.ready, r.desired, st.target, st.rollout
        )
    }
}

/// Posted where an interrupted request was asked for; `env` is empty when it had none.
pub fn request_interrupted(
    id: RequestId,
    command: &str,
    env: &str,
    progress: &str,
    live: Option<&str>,
) -> String {
    let next = if env.is_empty() {
        format!("Run `{command}` again to retry.")
    } else {
        format!("Run `{command}` again to retry, or `status {env}` to look.")
    };
    let mut text = format!(
        "{id} {command} was interrupted: the process carrying it out stopped before it finished.\nLast progress: {progress}."
    );
    if let Some(t) = live {
        text.push_str(&format!("\nNow: {t}."));
    }
    text.push_str(&format!(
        "\nIt will not be run again by itself. {next} `cancel {id}` acknowledges it."
    ));
    text
}

pub fn interrupted_rollout_finished(env: &str, id: RequestId, line: &str) -> String {
    format!("{env}: the rollout {id} left in progress finished: {line}")
}

pub fn interrupted_rollout_failed(env: &str, id: RequestId, e: &dyn std::fmt::Display) -> String {
    format!("{env}: the rollout {id} left in progress did not finish: {e}")
}

pub fn interrupted_already_acknowledged(id: RequestId) -> String {
    format!("{id} was interrupted and is already acknowledged.")
}

pub fn who_may_acknowledge(id: RequestId, requester: &str, operation: &str) -> String {
    format!(
        "{id} was interrupted; only the requester ({requester}), its approvers or someone who may run {operation} can acknowledge it."
    )
}

pub fn interrupted_acknowledged(id: RequestId) -> String {
    format!("{id} acknowledged: it stays interrupted and is no longer listed in `requests`.")
}

pub fn acknowledged_by_someone_else(id: RequestId) -> String {
    format!("{id} was acknowledged by someone else first.")
}

/// An interrupted request nobody has acknowledged, in `requests` and `status`.
pub fn interrupted_line(
    id: RequestId,
    command: &str,
    requester: &str,
    at: Timestamp,
    progress: Option<&str>,
) -> String {
    format!(
        "{id} {command} by {requester} — INTERRUPTED at {} (last progress: {}); `cancel {id}` to acknowledge",
        timestamp(at),
        progress.unwrap_or("none seen"),
    )
}

/// On an incident's timeline: how far an interrupted operation had got.
pub fn last_progress(progress: &str) -> String {
    format!("last progress: {progress}")
}

// ---------------------------------------------------------------------------------------
// Reads: whoami, requests, pods, logs, audit

/// `whoami`: who you are, your person, roles, what you may do and what you may approve.
pub fn whoami(
    display_name: &str,
    identity: &str,
    person: Option<(&str, Vec<String>)>,
    roles: &[String],
    capabilities: &[String],
    approver_of: &[String],
) -> String {
    // Forty lines or so for an admin, answered often: written into one buffer.
    let size = 64
        + capabilities
            .iter()
            .chain(approver_of)
            .map(|c| c.len() + 8)
            .sum::<usize>();
    let mut out = String::with_capacity(size);
    out.push_str("You are ");
    out.push_str(display_name);
    out.push_str(" (");
    out.push_str(identity);
    out.push_str(").");
    if let Some((name, identities)) = person {
        out.push_str("\nPerson: ");
        out.push_str(name);
        out.push_str(" (");
        out.push_str(&identities.join(", "));
        out.push(')');
    }
    if roles.is_empty() {
        out.push_str("\nRoles: none. Ask an admin to add your id to a role.");
        return out;
    }
    out.push_str("\nRoles: ");
    out.push_str(&roles.join(", "));
    if capabilities.is_empty() {
        out.push_str("\nYou may read status, requests and incidents.");
    } else {
        out.push_str("\nYou may:");
        for c in capabilities {
            out.push_str("\n• ");
            out.push_str(c);
        }
    }
    if !approver_of.is_empty() {
        out.push_str("\nYou can approve: ");
        out.push_str(&approver_of.join("; "));
        out.push_str(" (never your own requests).");
    }
    out
}

/// A rule whose requests someone may approve, for `whoami`.
pub fn approver_of(operation: &str, environments: &[String]) -> String {
    let envs = if environments.is_empty() {
        "all environments".to_string()
    } else {
        environments.join(", ")
    };
    format!("{operation} on {envs}")
}

pub const CAN_WITHDRAW: &str = "yours: `cancel` to withdraw";
pub const CAN_VOTE: &str = "you can approve or deny";

/// A pending request in `requests`; `can` says what the asker may do with it.
pub fn pending_request_line(
    id: RequestId,
    command: &str,
    requester: &str,
    approvals: usize,
    needed: u32,
    expires_in: Duration,
    can: &str,
) -> String {
    format!(
        "{id} {command} by {requester} — {approvals} of {needed} approvals, expires in {} ({can})",
        duration(expires_in)
    )
}

pub fn no_pending_requests() -> &'static str {
    "No pending requests you can act on."
}

/// `pods ENV`.
pub fn pods(env: &str, target: &str, pods: &[PodInfo]) -> String {
    if pods.is_empty() {
        return format!("{env}: no pods");
    }
    std::iter::once(format!("{env} [{target}]:"))
        .chain(pods.iter().map(|p| {
            format!(
                "{} {} {} restarts={}{}",
                p.name,
                p.phase,
                if p.ready { "ready" } else { "NOT READY" },
                p.restarts,
                p.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        }))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `logs ENV`: the lines as a code block.
pub fn logs(text: &str) -> String {
    format!("```\n{text}\n```")
}

pub fn audit_log_empty() -> &'static str {
    "The audit log is empty."
}

/// One entry of the audit log, for `audit [N]`.
#[allow(clippy::too_many_arguments)]
pub fn audit_line(
    seq: i64,
    at: Timestamp,
    who: &str,
    action: &str,
    operation: &str,
    environment: Option<&str>,
    request: Option<RequestId>,
    outcome: &str,
) -> String {
    format!(
        "#{seq} {} {who} {action} {operation}{}{} — {outcome}",
        timestamp(at),
        environment.map(|x| format!(" {x}")).unwrap_or_default(),
        request.map(|x| format!(" {x}")).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------
// Runbook reads: backups, the DR region, the daily report

pub fn no_backup_cronjob(env: &str) -> String {
    format!("environment {env} has no backup_cronjob configured")
}

pub fn no_dr_region() -> &'static str {
    "No DR region is configured (add a [dr] section: target, namespace, workload, health_url)."
}

pub fn dr_unavailable(why: &dyn std::fmt::Display) -> String {
    format!("DR region: {why}")
}

/// `dr status`: the DR region's status digest, its namespace and pods.
pub fn dr_status(
    status: &EnvStatus,
    namespace: Option<&str>,
    pods: Result<&[PodInfo], &str>,
) -> String {
    let mut out = format!("DR region — {}", self::status(status));
    if let Some(ns) = namespace {
        out.push_str(&format!("\n  namespace: {ns}"));
    }
    match pods {
        Ok(pods) => {
            out.push_str(&format!("\n  pods: {}", crate::runbook::pods_summary(pods)));
            for p in pods {
                out.push_str(&format!(
                    "\n  {} {} {} restarts={}",
                    p.name,
                    p.phase,
                    if p.ready { "ready" } else { "NOT READY" },
                    p.restarts
                ));
            }
        }
        Err(e) => out.push_str(&format!("\n  pods: unavailable ({e})")),
    }
    out
}

pub fn report_status_unavailable(env: &str, target: &str, e: &dyn std::fmt::Display) -> String {
    format!("{env} [{target}]: status unavailable: {e}")
}

/// One environment in the daily report.
pub fn report_line(env: &str, status: &EnvStatus, pods: Result<&[PodInfo], &str>) -> String {
    let pods = match pods {
        Ok(p) => crate::runbook::pods_summary(p),
        Err(e) => format!("pods unavailable ({e})"),
    };
    let health = match &status.health {
        Some(h) if h.is_healthy() => format!("health {} OK", h.code.unwrap_or(200)),
        Some(h) => match (h.code, &h.error) {
            (Some(c), _) => format!("health {c} FAILING"),
            (None, Some(e)) => format!("health FAILING ({e})"),
            (None, None) => "health FAILING (no answer)".into(),
        },
        None => "health not probed (no health_url)".into(),
    };
    format!(
        "{env} [{}]: {} — {pods} — {health}",
        status.target,
        status.version.as_deref().unwrap_or("unknown version")
    )
}

/// An open incident in the daily report.
pub struct OpenIncident<'a> {
    pub id: IncidentId,
    pub severity: Severity,
    pub title: &'a str,
    pub since: Timestamp,
}

/// An operation that ended in the report's day.
pub struct FinishedOperation<'a> {
    pub id: RequestId,
    pub command: &'a str,
    pub by: String,
    pub state: &'a str,
    pub succeeded: bool,
    pub break_glass: bool,
}

/// How many of a day's operations the report lists; the rest are in `audit`.
const REPORT_OPERATIONS: usize = 30;

/// The daily health report: every environment, open incidents, yesterday's operations.
pub fn daily_report(
    now: Timestamp,
    environments: &[String],
    incidents: &[OpenIncident<'_>],
    yesterday: Timestamp,
    operations: &[FinishedOperation<'_>],
) -> String {
    let mut out = format!("Daily health report — {}", now.format("%Y-%m-%d"));
    for line in environments {
        out.push('\n');
        out.push_str(line);
    }
    if incidents.is_empty() {
        out.push_str("\nOpen incidents: none");
    } else {
        out.push_str(&format!("\nOpen incidents: {}", incidents.len()));
        for i in incidents {
            out.push_str(&format!(
                "\n  {} {} {} (since {})",
                i.id,
                i.severity,
                i.title,
                timestamp(i.since)
            ));
        }
    }
    let failed = operations.iter().filter(|r| !r.succeeded).count();
    out.push_str(&format!(
        "\nYesterday's operations ({}): {}, {failed} not successful",
        yesterday.format("%Y-%m-%d"),
        operations.len()
    ));
    for r in operations.iter().take(REPORT_OPERATIONS) {
        out.push_str(&format!(
            "\n  {} {} by {}: {}{}",
            r.id,
            r.command,
            r.by,
            r.state,
            if r.break_glass { " [break-glass]" } else { "" }
        ));
    }
    if operations.len() > REPORT_OPERATIONS {
        out.push_str(&format!(
            "\n  … {} more (see `audit`)",
            operations.len() - REPORT_OPERATIONS
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Plans

pub const NO_TARGET_CHANGE: &str = "it changes nothing on a target";

pub fn environment_not_configured(env: &str) -> String {
    format!("environment {env} is not configured")
}

/// Shown on an approval card when the target could not say what the change would do.
pub fn no_plan_from_target(e: &dyn std::fmt::Display) -> String {
    format!("No plan from the target: {e}")
}

pub fn blue_green_unavailable(env: &str, e: &dyn std::fmt::Display) -> String {
    format!("{env}: blue-green status unavailable: {e}")
}

// ---------------------------------------------------------------------------------------
// The post-deploy guard

pub fn auto_rollback_reason(after: RequestId) -> String {
    format!("automatic rollback after {after}")
}

/// The command text recorded for a rollback the guard started.
pub fn auto_rollback_command(env: &str, after: RequestId) -> String {
    format!("rollback {env} (automatic, after {after})")
}

/// What the guard saw, above the rollback's outcome.
pub fn auto_rollback_header(
    env: &str,
    after: RequestId,
    command: &str,
    evidence: &[String],
) -> String {
    format!(
        "Automatic rollback of {env} after {after} ({command}):\n• {}",
        evidence.join("\n• ")
    )
}

/// `R-7 (deploy production v3.0.1)`.
pub fn request_and_command(id: RequestId, command: &str) -> String {
    format!("{id} ({command})")
}

// ---------------------------------------------------------------------------------------
// The audit log

pub fn nothing_pruned(why: &str) -> String {
    format!("nothing was pruned: {why}")
}

pub fn audit_log_unavailable(e: &dyn std::fmt::Display) -> String {
    format!("the audit log is unavailable ({e})")
}

pub fn no_audit_entries_before(before: &str) -> String {
    format!("no audit entries were written before {before}")
}

pub fn prune_checkpoint_not_stored(e: &dyn std::fmt::Display) -> String {
    format!("the prune checkpoint could not be stored ({e})")
}

pub fn audit_pruned(rows: u64, before: &str, through: i64) -> String {
    format!(
        "pruned {rows} audit entries written before {before} (through row #{through}); the log is complete from row #{} under a signed prune checkpoint",
        through + 1
    )
}

/// Posted in `audit.channel` for every signed checkpoint.
pub fn audit_checkpoint(kind: &str, seq: i64, hash: &str, at: &str, signature: &str) -> String {
    format!("Audit checkpoint ({kind}): row #{seq} {hash} at {at}, signature {signature}")
}

// ---------------------------------------------------------------------------------------
// GitHub Actions: runs and environment gates

/// One workflow run in `runs` and `run view`.
#[allow(clippy::too_many_arguments)]
pub fn run_line(
    id: u64,
    state: &str,
    title: Option<&str>,
    branch: Option<&str>,
    actor: Option<&str>,
    created: Option<Timestamp>,
    now: Timestamp,
    url: &str,
) -> String {
    let age = match created {
        Some(t) if t <= now => format!("{} ago", duration(now - t)),
        _ => "just now".into(),
    };
    format!(
        "{id} {state} — {}{} by {}, {age} — {url}",
        title.unwrap_or("(untitled)"),
        branch.map(|b| format!(" on {b}")).unwrap_or_default(),
        actor.unwrap_or("unknown"),
    )
}

/// `runs ENV`: the runs of the environment's workflow, newest first.
pub fn runs(env: &str, workflow: Option<&str>, lines: &[String]) -> String {
    let workflow = workflow.unwrap_or("its workflow");
    std::iter::once(format!("{env} [github-actions] runs of {workflow}:"))
        .chain(lines.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn no_runs_yet(env: &str, workflow: Option<&str>) -> String {
    format!(
        "{env} [github-actions]: no runs of {} yet",
        workflow.unwrap_or("its workflow")
    )
}

pub fn no_runs_in_sandbox(env: &str) -> String {
    format!(
        "{env} [sandbox]: deploys are simulated here and run no workflows, so there are no runs to list."
    )
}

pub fn no_runs_on_kubernetes(env: &str) -> String {
    format!(
        "{env} [kubernetes]: deploys go to the cluster directly and run no workflows; see `status {env}`."
    )
}

pub fn no_github_environment() -> &'static str {
    "no GitHub Actions environment is configured here"
}

pub fn no_such_run(id: impl std::fmt::Display, owner: &str, repo: &str) -> String {
    format!("GitHub has no run {id} in {owner}/{repo}")
}

pub fn run_unreadable(id: impl std::fmt::Display, e: &dyn std::fmt::Display) -> String {
    format!("could not read run {id}: {e}")
}

pub fn run_of_no_environment(id: impl std::fmt::Display, workflow_file: &str) -> String {
    format!(
        "run {id} ({}) is not the deploy or rollback workflow of any environment",
        if workflow_file.is_empty() {
            "unknown workflow"
        } else {
            workflow_file
        }
    )
}

pub fn run_of_several_environments(
    id: impl std::fmt::Display,
    workflow_file: &str,
    envs: &[&str],
) -> String {
    format!(
        "run {id} of {workflow_file} could belong to {}; its title names none of them",
        envs.join(" or ")
    )
}

pub fn run_failed(id: impl std::fmt::Display, e: &dyn std::fmt::Display) -> String {
    format!("run {id}: {e}")
}

pub fn run_job_line(name: &str, state: &str) -> String {
    format!("  job {name}: {state}")
}

pub fn run_waiting_line(id: impl std::fmt::Display, environments: &[String]) -> String {
    format!(
        "  waiting for approval of: {} (`run approve {id}` / `run reject {id}`)",
        environments.join(", ")
    )
}

pub fn github_answered(status: u16, message: &str) -> String {
    format!("GitHub answered HTTP {status}: {message}")
}

pub const VIEWING_IS_NOT_A_CHANGE: &str = "viewing is not a change";

pub fn run_cancelled(id: impl std::fmt::Display) -> String {
    format!("run {id} cancelled")
}

pub fn run_rerun(id: impl std::fmt::Display, failed_only: bool) -> String {
    if failed_only {
        format!("the failed jobs of run {id} are running again")
    } else {
        format!("run {id} is running again")
    }
}

pub fn run_reviewed(
    id: impl std::fmt::Display,
    environments: &[String],
    approve: bool,
    comment: &str,
) -> String {
    format!(
        "run {id}: {} {} on GitHub ({comment})",
        environments.join(", "),
        if approve { "approved" } else { "rejected" }
    )
}

pub fn run_not_waiting(id: impl std::fmt::Display) -> String {
    format!("run {id} is not waiting on any environment (settled on GitHub already?)")
}

/// What an approval card of an environment gate says about the run.
pub fn gate_waiting(run: impl std::fmt::Display, environments: &[String], url: &str) -> String {
    format!(
        "GitHub run {run} waits on environment {} — {url}",
        environments.join(", ")
    )
}

/// The command recorded for a gate's request.
pub fn gate_command(run: impl std::fmt::Display) -> String {
    format!("run approve {run}")
}

pub fn gate_not_told_unaudited(e: &dyn std::fmt::Display, run: impl std::fmt::Display) -> String {
    format!("GitHub was not told (the audit log is unavailable: {e}); run {run} still waits.")
}

pub fn gate_not_told(e: &dyn std::fmt::Display) -> String {
    format!("GitHub was not told: {e}")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap()
    }

    #[test]
    fn timelines_name_people_but_not_the_bot() {
        let mut e = TimelineEntry {
            at: at(9, 15),
            kind: IncidentEventKind::StatusUpdate,
            by: Some("system:erlmcp-bot".into()),
            by_bot: true,
            text: "INC-1 status update — P1 API down\nOpen for 15m",
        };
        assert_eq!(
            timeline_line(&e),
            "2026-11-02 09:15 UTC status_update: INC-1 status update — P1 API down"
        );
        e.kind = IncidentEventKind::Update;
        e.by = Some("Alice (slack:U1)".into());
        e.by_bot = false;
        e.text = "rolled back";
        assert_eq!(
            timeline_line(&e),
            "2026-11-02 09:15 UTC update (Alice (slack:U1)): rolled back"
        );
    }

    #[test]
    fn whoami_lists_person_roles_grants_and_approvals() {
        let caps = ["deploy: dev, staging; production (needs 2 from sre/lead)".to_string()];
        let approves = [
            "deploy on production".to_string(),
            "rollback on all environments".to_string(),
        ];
        assert_eq!(
            whoami(
                "Alice",
                "slack:U1",
                Some(("alice", vec!["slack:U1".into(), "local:alice".into()])),
                &["dev".into(), "sre".into()],
                &caps,
                &approves,
            ),
            "You are Alice (slack:U1).\nPerson: alice (slack:U1, local:alice)\nRoles: dev, sre\n\
             You may:\n• deploy: dev, staging; production (needs 2 from sre/lead)\n\
             You can approve: deploy on production; rollback on all environments (never your own requests)."
        );
        assert_eq!(
            whoami("U2", "slack:U2", None, &["viewer".into()], &[], &[]),
            "You are U2 (slack:U2).\nRoles: viewer\nYou may read status, requests and incidents."
        );
        assert_eq!(
            whoami("U3", "slack:U3", None, &[], &caps, &approves),
            "You are U3 (slack:U3).\nRoles: none. Ask an admin to add your id to a role."
        );
    }

    #[test]
    fn who_labels_skip_a_name_that_is_the_id() {
        assert_eq!(who_label("local", "alice", "alice"), "local:alice");
        assert_eq!(who_label("slack", "U1", ""), "slack:U1");
        assert_eq!(who_label("slack", "U1", "Alice"), "Alice (slack:U1)");
    }

    #[test]
    fn a_quiet_incident_asks_its_commander_for_an_update() {
        let facts = IncidentFacts {
            id: IncidentId(3),
            severity: Severity::P0,
            title: "Checkout down",
            declared_at: at(9, 0),
            declared_by: "local:alice".into(),
            summary: None,
            commander: None,
        };
        let text = incident_status_update(
            &facts,
            at(9, 30),
            None,
            &["production [sandbox]: v1, 3/3 ready, health not probed".into()],
            &[],
            Some(Duration::minutes(15)),
        )
        .plain();
        assert_eq!(
            text,
            "INC-3 status update — P0 Checkout down\n\
             Open for 30m (declared 2026-11-02 09:00 UTC by local:alice)\n\
             Commander: none — name one with `incident commander @user`\n\
             Last human update: none yet\n\
             Environments:\n  production [sandbox]: v1, 3/3 ready, health not probed\n\
             Operations since the last update: none\n\
             Commander (none named yet): no human update in the last 15m — post one with `incident update ...`."
        );
    }
}
