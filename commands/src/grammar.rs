//! The command grammar (DESIGN §3): parser and help, generated from one table.
//!
//! Every command is a row of [`SPECS`]: its name, its usage line, a one-line summary, the
//! options it accepts and the function that reads its arguments. Dispatch and help are both
//! driven by that table, so a command cannot exist without its help text.

use crate::Timestamp;
use std::fmt::Write as _;

use crate::model::{
    BlueGreenAction, CanaryAction, Colour, Command, EnvName, IncidentCommand, IncidentId,
    RequestId, RunAction, RunId, Severity, Strategy, Version,
};
use crate::runbook::{ResourceChange, ResourceList};

/// What the parser needs to know about the deployment: the configured environments and
/// their aliases, and the slash command's name for usage lines.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// The slash command, e.g. `/erlmcp`. Accepted (and stripped) at the start of input.
    pub command: String,
    pub environments: Vec<EnvironmentNames>,
}

#[derive(Debug, Clone)]
pub struct EnvironmentNames {
    pub name: String,
    pub aliases: Vec<String>,
}

/// A message for the user: what is wrong (naming the offending token in double quotes) and,
/// when the command is known, its usage line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub usage: Option<String>,
}

impl ParseError {
    fn new(message: String, usage: Option<String>) -> Self {
        ParseError { message, usage }
    }

    /// The message followed by the usage line(s), ready to post as a reply.
    pub fn render(&self) -> String {
        match &self.usage {
            None => self.message.clone(),
            Some(usage) => {
                // Continuation lines line up under the first usage line.
                let usage = usage.replace('\n', "\n       ");
                format!("{}\nusage: {usage}", self.message)
            }
        }
    }
}

/// Inputs beyond this are refused before tokenizing, so a pasted log cannot cost much.
const MAX_INPUT_CHARS: usize = 4000;
/// Tokens quoted back in error messages are cut here so a reply stays readable.
const MAX_SHOWN_CHARS: usize = 60;
const MAX_REPLICAS: u32 = 1000;
const MAX_AUDIT_ENTRIES: u32 = 1000;
const MAX_LOG_TAIL: u32 = 10_000;
/// Kubernetes object names (DNS-1123 subdomains) are at most this long.
const MAX_POD_NAME: usize = 253;
/// GitHub lists at most 100 runs per page; a chat reply is read, not scrolled.
const MAX_RUNS: u32 = 50;

/// One row of the grammar.
pub struct CommandSpec {
    /// `deploy`, or `incident declare` for a subcommand.
    pub name: &'static str,
    /// The usage line without the slash command, e.g. `cancel ID`.
    pub usage: &'static str,
    pub summary: &'static str,
    options: &'static [OptionSpec],
    parse: fn(&mut Args<'_>) -> Result<Command, String>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

struct OptionSpec {
    name: &'static str,
    takes_value: bool,
}

const STRATEGY: OptionSpec = OptionSpec {
    name: "--strategy",
    takes_value: true,
};
const INCIDENT_ID: OptionSpec = OptionSpec {
    name: "--id",
    takes_value: true,
};
const BEFORE: OptionSpec = OptionSpec {
    name: "--before",
    takes_value: true,
};
const PREVIOUS: OptionSpec = OptionSpec {
    name: "--previous",
    takes_value: false,
};
const TAIL: OptionSpec = OptionSpec {
    name: "--tail",
    takes_value: true,
};
const FAILED: OptionSpec = OptionSpec {
    name: "--failed",
    takes_value: false,
};
/// Accepted by every command that changes a workload: the command becomes
/// [`Command::Plan`] of itself.
const DRY_RUN: OptionSpec = OptionSpec {
    name: "--dry-run",
    takes_value: false,
};

const FORCE: OptionSpec = OptionSpec {
    name: "--force",
    takes_value: false,
};
const REQUESTS: OptionSpec = OptionSpec {
    name: "--requests",
    takes_value: true,
};
const LIMITS: OptionSpec = OptionSpec {
    name: "--limits",
    takes_value: true,
};

/// A word that only starts two-word commands (`incident`, `pod`, `dr`), as opposed to a
/// command some two-word commands extend (`audit`).
fn group_of(word: &str) -> Option<&'static str> {
    let word = word.to_lowercase();
    if SPECS.iter().any(|s| s.name == word) {
        return None;
    }
    SPECS
        .iter()
        .find_map(|s| s.name.split_once(' ').filter(|(g, _)| *g == word))
        .map(|(g, _)| g)
}

static SPECS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        usage: "help [COMMAND]",
        summary: "list the commands, or show how to use one",
        options: &[],
        parse: command_help,
    },
    CommandSpec {
        name: "whoami",
        usage: "whoami",
        summary: "your platform id, roles, and what you may do where",
        options: &[],
        parse: |_| Ok(Command::Whoami),
    },
    CommandSpec {
        name: "status",
        usage: "status [ENV]",
        summary: "version, replicas ready/desired, health, rollout and canary",
        options: &[],
        parse: command_status,
    },
    CommandSpec {
        name: "deploy",
        usage: "deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]",
        summary: "deploy VERSION to ENV (--dry-run: show the plan only)",
        options: &[STRATEGY, DRY_RUN],
        parse: command_deploy,
    },
    CommandSpec {
        name: "rollback",
        usage: "rollback ENV [VERSION] [--dry-run] [REASON...]",
        summary: "roll ENV back to VERSION, or to the previous revision",
        options: &[DRY_RUN],
        parse: command_rollback,
    },
    CommandSpec {
        name: "approve",
        usage: "approve ID [COMMENT...]",
        summary: "approve a pending request (same as the Approve button)",
        options: &[],
        parse: command_approve,
    },
    CommandSpec {
        name: "deny",
        usage: "deny ID [REASON...]",
        summary: "deny a pending request (same as the Deny button)",
        options: &[],
        parse: command_deny,
    },
    CommandSpec {
        name: "cancel",
        usage: "cancel ID",
        summary: "withdraw a pending request you made, or acknowledge an interrupted one",
        options: &[],
        parse: command_cancel,
    },
    CommandSpec {
        name: "requests",
        usage: "requests",
        summary: "pending requests you can act on, and interrupted ones not yet acknowledged",
        options: &[],
        parse: |_| Ok(Command::Requests),
    },
    CommandSpec {
        name: "scale",
        usage: "scale ENV REPLICAS [--dry-run] [REASON...]",
        summary: "set the number of replicas in ENV (0 to 1000)",
        options: &[DRY_RUN],
        parse: command_scale,
    },
    CommandSpec {
        name: "restart",
        usage: "restart ENV [--dry-run] [REASON...]",
        summary: "restart the workload in ENV",
        options: &[DRY_RUN],
        parse: command_restart,
    },
    CommandSpec {
        name: "maintenance",
        usage: "maintenance ENV on|off [--dry-run] [REASON...]",
        summary: "turn maintenance mode in ENV on or off",
        options: &[DRY_RUN],
        parse: command_maintenance,
    },
    CommandSpec {
        name: "canary",
        usage: "canary ENV status|pause|resume|abort|promote [--dry-run]",
        summary: "show or steer the canary rollout in ENV",
        options: &[DRY_RUN],
        parse: command_canary,
    },
    CommandSpec {
        name: "pods",
        usage: "pods ENV",
        summary: "the pods in ENV with their state and restarts",
        options: &[],
        parse: command_pods,
    },
    CommandSpec {
        name: "logs",
        usage: "logs ENV [POD] [--previous] [--tail N]",
        summary: "the log tail of a pod in ENV (--previous: before its last restart)",
        options: &[PREVIOUS, TAIL],
        parse: command_logs,
    },
    CommandSpec {
        name: "incident declare",
        usage: "incident declare P0|P1|P2 TITLE...",
        summary: "declare an incident",
        options: &[],
        parse: command_incident_declare,
    },
    CommandSpec {
        name: "incident update",
        usage: "incident update [--id INC-N] TEXT...",
        summary: "add an update to this channel's incident (or the one given by --id)",
        options: &[INCIDENT_ID],
        parse: command_incident_update,
    },
    CommandSpec {
        name: "incident severity",
        usage: "incident severity [--id INC-N] P0|P1|P2",
        summary: "change the incident's severity",
        options: &[INCIDENT_ID],
        parse: command_incident_severity,
    },
    CommandSpec {
        name: "incident commander",
        usage: "incident commander [--id INC-N] @USER",
        summary: "hand command of the incident to @USER",
        options: &[INCIDENT_ID],
        parse: command_incident_commander,
    },
    CommandSpec {
        name: "incident resolve",
        usage: "incident resolve [--id INC-N] [SUMMARY...]",
        summary: "resolve the incident, with an optional summary",
        options: &[INCIDENT_ID],
        parse: command_incident_resolve,
    },
    CommandSpec {
        name: "incident list",
        usage: "incident list",
        summary: "open incidents",
        options: &[],
        parse: |_| Ok(Command::Incident(IncidentCommand::List)),
    },
    CommandSpec {
        name: "incident timeline",
        usage: "incident timeline [INC-N]",
        summary: "the timeline of an incident (default: this channel's)",
        options: &[],
        parse: command_incident_timeline,
    },
    CommandSpec {
        name: "audit",
        usage: "audit [N]",
        summary: "the last N audit entries visible to you (1 to 1000)",
        options: &[],
        parse: command_audit,
    },
    CommandSpec {
        name: "audit prune",
        usage: "audit prune --before DATE",
        summary: "remove audit entries older than DATE (YYYY-MM-DD or RFC 3339), behind a signed checkpoint",
        options: &[BEFORE],
        parse: command_audit_prune,
    },
    CommandSpec {
        name: "runs",
        usage: "runs ENV [N]",
        summary: "the last N runs of ENV's deploy workflow (default 10, at most 50)",
        options: &[],
        parse: command_runs,
    },
    CommandSpec {
        name: "run view",
        usage: "run view ID",
        summary: "a GitHub Actions run: its status, jobs and link",
        options: &[],
        parse: |args| command_run(args, RunAction::View),
    },
    CommandSpec {
        name: "run cancel",
        usage: "run cancel ID",
        summary: "cancel a GitHub Actions run (deploy rights on its environment)",
        options: &[],
        parse: |args| command_run(args, RunAction::Cancel),
    },
    CommandSpec {
        name: "run rerun",
        usage: "run rerun ID [--failed]",
        summary: "re-run a GitHub Actions run, or only its failed jobs",
        options: &[FAILED],
        parse: command_run_rerun,
    },
    CommandSpec {
        name: "run approve",
        usage: "run approve ID",
        summary: "approve the environment gate a GitHub Actions run waits on",
        options: &[],
        parse: |args| command_run(args, RunAction::Approve),
    },
    CommandSpec {
        name: "run reject",
        usage: "run reject ID",
        summary: "reject the environment gate a GitHub Actions run waits on",
        options: &[],
        parse: |args| command_run(args, RunAction::Reject),
    },
    CommandSpec {
        name: "events",
        usage: "events ENV",
        summary: "recent events in ENV, warnings first, newest first",
        options: &[],
        parse: command_events,
    },
    CommandSpec {
        name: "describe",
        usage: "describe ENV POD",
        summary: "a pod's phase, conditions, last state (e.g. OOMKilled), limits, requests and events",
        options: &[],
        parse: command_describe,
    },
    CommandSpec {
        name: "top",
        usage: "top ENV",
        summary: "CPU and memory per pod in ENV",
        options: &[],
        parse: command_top,
    },
    CommandSpec {
        name: "pod delete",
        usage: "pod delete ENV POD [--force] [--dry-run]",
        summary: "delete a stuck pod in ENV (--force: grace period 0)",
        options: &[FORCE, DRY_RUN],
        parse: command_pod_delete,
    },
    CommandSpec {
        name: "resources",
        usage: "resources ENV [--requests cpu=…,memory=…] [--limits cpu=…,memory=…] [--dry-run]",
        summary: "set the container's CPU and memory requests and limits in ENV (kubectl set resources)",
        options: &[REQUESTS, LIMITS, DRY_RUN],
        parse: command_resources,
    },
    CommandSpec {
        name: "backup",
        usage: "backup ENV [--dry-run]",
        summary: "run ENV's backup CronJob now and report how it ends",
        options: &[DRY_RUN],
        parse: command_backup,
    },
    CommandSpec {
        name: "backups",
        usage: "backups ENV",
        summary: "recent runs of ENV's backup CronJob",
        options: &[],
        parse: command_backups,
    },
    CommandSpec {
        name: "dr status",
        usage: "dr status",
        summary: "the DR region's pods and health",
        options: &[],
        parse: |_| Ok(Command::DrStatus),
    },
    CommandSpec {
        name: "dr failover",
        usage: "dr failover ENV [--dry-run] [REASON...]",
        summary: "fail ENV over to the DR region (runs the configured failover action)",
        options: &[DRY_RUN],
        parse: command_dr_failover,
    },
    CommandSpec {
        name: "report",
        usage: "report",
        summary: "the daily health report: pods, restarts, health, versions, incidents, yesterday's operations",
        options: &[],
        parse: |_| Ok(Command::Report),
    },
    CommandSpec {
        name: "bluegreen",
        usage: "bluegreen ENV status|switch blue|green|retire [--dry-run]",
        summary: "the live colour in ENV; switch the Service to a colour; retire the idle colour",
        options: &[DRY_RUN],
        parse: command_bluegreen,
    },
];

/// Every command of the grammar, in help order.
pub fn specs() -> &'static [CommandSpec] {
    SPECS
}

/// The usage line (without the slash command) of a command such as `deploy` or
/// `incident declare`.
pub fn usage(name: &str) -> Option<&'static str> {
    SPECS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map(|s| s.usage)
}

/// The grammar name of a parsed command, as it appears in [`specs`] and in `help`.
pub fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Help { .. } => "help",
        Command::Whoami => "whoami",
        Command::Status { .. } => "status",
        Command::Deploy { .. } => "deploy",
        Command::Rollback { .. } => "rollback",
        Command::Approve { .. } => "approve",
        Command::Deny { .. } => "deny",
        Command::Cancel { .. } => "cancel",
        Command::Requests => "requests",
        Command::Scale { .. } => "scale",
        Command::Restart { .. } => "restart",
        Command::Maintenance { .. } => "maintenance",
        Command::Canary { .. } => "canary",
        Command::Pods { .. } => "pods",
        Command::Logs { .. } => "logs",
        Command::Incident(incident) => match incident {
            IncidentCommand::Declare { .. } => "incident declare",
            IncidentCommand::Update { .. } => "incident update",
            IncidentCommand::Severity { .. } => "incident severity",
            IncidentCommand::Commander { .. } => "incident commander",
            IncidentCommand::Resolve { .. } => "incident resolve",
            IncidentCommand::List => "incident list",
            IncidentCommand::Timeline { .. } => "incident timeline",
        },
        Command::Audit { .. } => "audit",
        Command::AuditPrune { .. } => "audit prune",
        Command::Runs { .. } => "runs",
        Command::Run { action, .. } => match action {
            RunAction::View => "run view",
            RunAction::Cancel => "run cancel",
            RunAction::Rerun { .. } => "run rerun",
            RunAction::Approve => "run approve",
            RunAction::Reject => "run reject",
        },
        Command::Events { .. } => "events",
        Command::Describe { .. } => "describe",
        Command::Top { .. } => "top",
        Command::PodDelete { .. } => "pod delete",
        Command::Resources { .. } => "resources",
        Command::Backup { .. } => "backup",
        Command::Backups { .. } => "backups",
        Command::DrStatus => "dr status",
        Command::DrFailover { .. } => "dr failover",
        Command::Report => "report",
        Command::BlueGreen { .. } => "bluegreen",
        Command::Plan { change } => command_name(change),
    }
}

/// Parses one chat message (with or without the leading slash command) into a [`Command`].
pub fn parse(input: &str, ctx: &ParseContext) -> Result<Command, ParseError> {
    let length = input.chars().count();
    if length > MAX_INPUT_CHARS {
        return Err(ParseError::new(
            format!("command too long ({length} characters, at most {MAX_INPUT_CHARS})"),
            None,
        ));
    }
    let tokens = tokenize(input).map_err(|message| {
        // The quote is usually in the free text, so the command name is still readable.
        let usage = guess_spec(input, ctx).map(|spec| spec_usage(ctx, spec));
        ParseError::new(message, usage)
    })?;
    let tokens = strip_slash_command(&tokens, ctx);
    let (spec, rest) = find_spec(tokens, ctx)?;
    let with_usage = |message| ParseError::new(message, Some(spec_usage(ctx, spec)));
    let mut args = Args::new(ctx, spec, rest).map_err(with_usage)?;
    let command = (spec.parse)(&mut args).map_err(with_usage)?;
    let dry_run = args.flag(DRY_RUN.name);
    args.finish().map_err(with_usage)?;
    if dry_run {
        return plan_of(command).map_err(with_usage);
    }
    Ok(command)
}

/// The help text: every command without a topic, one command (or the `incident` group)
/// with one. Usage lines carry the slash command so they can be copied.
pub fn help(topic: Option<&str>, ctx: &ParseContext) -> Result<String, ParseError> {
    let Some(topic) = topic else {
        return Ok(help_overview(ctx));
    };
    let mut words = topic.split_whitespace();
    let topic_error = |message| ParseError::new(message, Some(help_usage(ctx)));
    let Some(first) = words.next() else {
        return Ok(help_overview(ctx));
    };
    let second = if group_of(first).is_some() {
        words.next()
    } else {
        // `help audit prune`: a two-word command outside a group.
        let mut ahead = words.clone();
        let two = ahead
            .next()
            .map(|w| format!("{} {}", first.to_lowercase(), w.to_lowercase()));
        if two.is_some_and(|two| SPECS.iter().any(|s| s.name == two)) {
            words.next()
        } else {
            None
        }
    };
    let found = lookup(first, second).map_err(|unknown| topic_error(unknown.message))?;
    if let Some(extra) = words.next() {
        return Err(topic_error(format!("unexpected {}", show(extra))));
    }
    Ok(match found {
        Found::Command(spec) => format!("{}\n{}", spec_usage(ctx, spec), spec.summary),
        Found::Group(group) => {
            let mut out = String::new();
            for spec in group_members(group) {
                push_help_line(&mut out, ctx, spec);
            }
            out.truncate(out.trim_end().len());
            out
        }
    })
}

fn help_overview(ctx: &ParseContext) -> String {
    let mut out = String::from("Commands:\n");
    for spec in SPECS {
        push_help_line(&mut out, ctx, spec);
    }
    if !ctx.environments.is_empty() {
        let envs: Vec<String> = ctx
            .environments
            .iter()
            .map(|e| {
                if e.aliases.is_empty() {
                    e.name.clone()
                } else {
                    format!("{} ({})", e.name, e.aliases.join(", "))
                }
            })
            .collect();
        let _ = writeln!(out, "Environments: {}", envs.join(", "));
    }
    out.push_str(
        "Ids: R-42 or 42 for requests, INC-7 or 7 for incidents. \
         Group words with \"double quotes\".",
    );
    out
}

fn push_help_line(out: &mut String, ctx: &ParseContext, spec: &CommandSpec) {
    let _ = writeln!(out, "{} — {}", spec_usage(ctx, spec), spec.summary);
}

fn help_usage(ctx: &ParseContext) -> String {
    prefixed(ctx, usage("help").unwrap_or("help"))
}

fn spec_usage(ctx: &ParseContext, spec: &CommandSpec) -> String {
    prefixed(ctx, spec.usage)
}

fn prefixed(ctx: &ParseContext, usage: &str) -> String {
    if ctx.command.is_empty() {
        usage.to_string()
    } else {
        format!("{} {usage}", ctx.command)
    }
}

fn group_usage(ctx: &ParseContext, group: &str) -> String {
    group_members(group)
        .map(|spec| spec_usage(ctx, spec))
        .collect::<Vec<_>>()
        .join("\n")
}

fn group_members(group: &str) -> impl Iterator<Item = &'static CommandSpec> {
    SPECS
        .iter()
        .filter(move |s| s.name.split_once(' ').is_some_and(|(g, _)| g == group))
}

fn try_help_hint(ctx: &ParseContext) -> String {
    format!("try {}", show(&prefixed(ctx, "help")))
}

// ---------------------------------------------------------------------------------------
// Dispatch

enum Found {
    Command(&'static CommandSpec),
    Group(&'static str),
}

/// A word that names no command (or no incident subcommand).
struct Unknown {
    message: String,
    suggested: bool,
}

impl Unknown {
    fn new<'a>(what: &str, word: &str, candidates: impl Iterator<Item = &'a str>) -> Self {
        let message = format!("unknown {what} {}", show(word));
        match suggestion(&word.to_lowercase(), candidates) {
            Some(name) => Unknown {
                message: format!("{message} (did you mean {}?)", show(name)),
                suggested: true,
            },
            None => Unknown {
                message,
                suggested: false,
            },
        }
    }
}

/// Resolves a command name (and the subcommand word for a group). A group without its
/// second word is returned as the group, which `help incident` wants and `parse` rejects.
fn lookup(first: &str, second: Option<&str>) -> Result<Found, Unknown> {
    let name = first.to_lowercase();
    // A two-word command (`audit prune`) before the one-word command it extends (`audit`).
    if let Some(second) = second {
        let two = format!("{name} {}", second.to_lowercase());
        if let Some(spec) = SPECS.iter().find(|s| s.name == two) {
            return Ok(Found::Command(spec));
        }
    }
    if let Some(spec) = SPECS.iter().find(|s| s.name == name) {
        return Ok(Found::Command(spec));
    }
    if let Some(group) = group_of(&name) {
        let Some(second) = second else {
            return Ok(Found::Group(group));
        };
        let sub = second.to_lowercase();
        if let Some(spec) = group_members(group).find(|s| subcommand(s) == sub) {
            return Ok(Found::Command(spec));
        }
        let subs = group_members(group).map(subcommand);
        return Err(Unknown::new(&format!("{group} subcommand"), second, subs));
    }
    let names = SPECS
        .iter()
        .map(|s| s.name.split(' ').next().unwrap_or(s.name));
    Err(Unknown::new("command", first, names))
}

/// `declare` for `incident declare`.
fn subcommand(spec: &CommandSpec) -> &'static str {
    spec.name.split_once(' ').map_or(spec.name, |(_, sub)| sub)
}

fn find_spec<'t>(
    tokens: &'t [Token],
    ctx: &ParseContext,
) -> Result<(&'static CommandSpec, &'t [Token]), ParseError> {
    let Some((first, rest)) = tokens.split_first() else {
        return Err(ParseError::new(
            format!("missing command ({})", try_help_hint(ctx)),
            None,
        ));
    };
    match lookup(&first.text, rest.first().map(|t| t.text.as_str())) {
        Ok(Found::Command(spec)) if spec.name.contains(' ') => Ok((spec, &rest[1..])),
        Ok(Found::Command(spec)) => Ok((spec, rest)),
        Ok(Found::Group(group)) => {
            let subs: Vec<&str> = group_members(group).map(subcommand).collect();
            Err(ParseError::new(
                format!("missing {group} subcommand (one of {})", subs.join(", ")),
                Some(group_usage(ctx, group)),
            ))
        }
        Err(unknown) => match (group_of(&first.text), unknown.suggested) {
            (Some(group), _) => Err(ParseError::new(
                unknown.message,
                Some(group_usage(ctx, group)),
            )),
            (None, true) => Err(ParseError::new(unknown.message, None)),
            (None, false) => Err(ParseError::new(
                format!("{} ({})", unknown.message, try_help_hint(ctx)),
                None,
            )),
        },
    }
}

/// Used only to attach a usage line to a tokenizer error.
fn guess_spec(input: &str, ctx: &ParseContext) -> Option<&'static CommandSpec> {
    let mut words = input
        .split(|c: char| is_separator(c) || is_quote(c))
        .filter(|w| !w.is_empty())
        .peekable();
    if words.peek().is_some_and(|w| is_slash_command(w, ctx)) {
        words.next();
    }
    match lookup(words.next()?, words.next()) {
        Ok(Found::Command(spec)) => Some(spec),
        _ => None,
    }
}

fn strip_slash_command<'t>(tokens: &'t [Token], ctx: &ParseContext) -> &'t [Token] {
    match tokens.split_first() {
        Some((first, rest)) if !first.literal && is_slash_command(&first.text, ctx) => rest,
        _ => tokens,
    }
}

fn is_slash_command(word: &str, ctx: &ParseContext) -> bool {
    !ctx.command.is_empty() && word.to_lowercase() == ctx.command.to_lowercase()
}

/// "Did you mean": the closest candidate within edit distance 2, the first on a tie.
pub fn suggestion<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // A candidate every letter of which would change (`🚀` → `dr`) is no suggestion.
        if let Some(distance) = edit_distance(word, candidate, 2)
            && distance < candidate.chars().count()
            && best.is_none_or(|(d, _)| distance < d)
        {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Levenshtein distance, `None` when it exceeds `limit`. Only the first characters that could
/// still be within `limit` are compared, so a 4,000-character word costs no more than a short one.
fn edit_distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let b_len = b.chars().count();
    let a_end = a
        .char_indices()
        .nth(b_len + limit + 1)
        .map_or(a.len(), |(i, _)| i);
    let distance = strsim::levenshtein(&a[..a_end], b);
    (distance <= limit).then_some(distance)
}

// ---------------------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// Began with a quote: never read as an option or as the slash command.
    literal: bool,
}

/// Chat clients turn `"` into “ ” (and sometimes both ends into the same one), so any of
/// them opens and closes a quoted run.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”')
}

/// Control characters split words like spaces do, so they never reach free text or logs.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut literal = false;
    let mut open_quote: Option<usize> = None;
    for (at, c) in input.char_indices() {
        if open_quote.is_some() {
            if is_quote(c) {
                open_quote = None;
            } else if c.is_control() {
                current.push(' ');
            } else {
                current.push(c);
            }
        } else if is_separator(c) {
            if in_token {
                tokens.push(Token {
                    text: std::mem::take(&mut current),
                    literal,
                });
                in_token = false;
            }
        } else {
            if !in_token {
                in_token = true;
                literal = is_quote(c);
            }
            if is_quote(c) {
                open_quote = Some(at);
            } else {
                current.push(c);
            }
        }
    }
    if let Some(at) = open_quote {
        // `at` comes from char_indices, so it is a char boundary; the quote char is skipped
        // by chars() rather than by byte arithmetic.
        let after: String = input[at..]
            .chars()
            .skip(1)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let after = after.trim();
        return Err(if after.is_empty() {
            "unbalanced quote at the end (add the closing quote or remove it)".to_string()
        } else {
            format!(
                "unbalanced quote before {} (add the closing quote)",
                show(after)
            )
        });
    }
    if in_token {
        tokens.push(Token {
            text: current,
            literal,
        });
    }
    Ok(tokens)
}

/// A token quoted back to the user: in double quotes, cut at a char boundary if long.
fn show(token: &str) -> String {
    let mut chars = token.chars();
    let head: String = chars.by_ref().take(MAX_SHOWN_CHARS).collect();
    if chars.next().is_some() {
        format!("\"{head}…\"")
    } else {
        format!("\"{head}\"")
    }
}

// ---------------------------------------------------------------------------------------
// Arguments

/// The tokens after the command name, with options already taken out.
struct Args<'a> {
    ctx: &'a ParseContext,
    positionals: Vec<&'a Token>,
    next: usize,
    options: Vec<(&'static str, Option<String>)>,
}

/// `--name`, `--name=value`, and the em/en dash forms that macOS substitutes for `--`.
/// Returns the lower-cased `--name` and the inline value.
fn option_parts(token: &Token) -> Option<(String, Option<&str>)> {
    if token.literal {
        return None;
    }
    let body = if let Some(body) = token.text.strip_prefix("--") {
        body
    } else {
        // A lone dash is punctuation in free text ("fix — urgent"), not an option.
        let body = token.text.strip_prefix(['—', '–'])?;
        if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        body
    };
    let (name, value) = match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    };
    Some((format!("--{}", name.to_lowercase()), value))
}

impl<'a> Args<'a> {
    fn new(ctx: &'a ParseContext, spec: &CommandSpec, tokens: &'a [Token]) -> Result<Self, String> {
        let mut positionals = Vec::new();
        let mut options: Vec<(&'static str, Option<String>)> = Vec::new();
        let mut rest = tokens.iter();
        while let Some(token) = rest.next() {
            let Some((name, inline)) = option_parts(token) else {
                positionals.push(token);
                continue;
            };
            let Some(option) = spec.options.iter().find(|o| o.name == name) else {
                return Err(format!("unknown option {}", show(&token.text)));
            };
            if options.iter().any(|(seen, _)| *seen == option.name) {
                return Err(format!("option {} given twice", show(&token.text)));
            }
            let value = match (option.takes_value, inline) {
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(format!("option {} takes no value", show(option.name)));
                }
                (true, Some(value)) if !value.is_empty() => Some(value.to_string()),
                (true, Some(_)) => return Err(missing_value(option)),
                (true, None) => match rest.next() {
                    Some(value) if option_parts(value).is_none() => Some(value.text.clone()),
                    _ => return Err(missing_value(option)),
                },
            };
            options.push((option.name, value));
        }
        Ok(Args {
            ctx,
            positionals,
            next: 0,
            options,
        })
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.positionals.get(self.next).copied()?;
        self.next += 1;
        Some(token)
    }

    fn peek(&self) -> Option<&'a Token> {
        self.positionals.get(self.next).copied()
    }

    fn required(&mut self, what: &str) -> Result<&'a str, String> {
        self.next()
            .map(|t| t.text.as_str())
            .ok_or_else(|| format!("missing {what}"))
    }

    fn env(&mut self) -> Result<EnvName, String> {
        match self.next() {
            Some(token) => resolve_env(self.ctx, &token.text),
            None => Err(format!("missing ENV ({})", known_envs(self.ctx))),
        }
    }

    /// All remaining positionals joined by single spaces; blank text is no text.
    fn free_text(&mut self) -> Option<String> {
        let words: Vec<&str> = self.positionals[self.next..]
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        self.next = self.positionals.len();
        let text = words.join(" ");
        (!text.trim().is_empty()).then_some(text)
    }

    fn required_text(&mut self, what: &str) -> Result<String, String> {
        self.free_text().ok_or_else(|| format!("missing {what}"))
    }

    fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(seen, _)| *seen == name)
            .and_then(|(_, value)| value.as_deref())
    }

    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(seen, _)| *seen == name)
    }

    fn incident_id_option(&self) -> Result<Option<IncidentId>, String> {
        self.option(INCIDENT_ID.name).map(incident_id).transpose()
    }

    fn finish(self) -> Result<(), String> {
        match self.positionals.get(self.next) {
            Some(extra) => Err(format!("unexpected {}", show(&extra.text))),
            None => Ok(()),
        }
    }
}

fn missing_value(option: &OptionSpec) -> String {
    format!("missing value for {}", show(option.name))
}

// ---------------------------------------------------------------------------------------
// Values

fn known_envs(ctx: &ParseContext) -> String {
    if ctx.environments.is_empty() {
        return "no environments are configured".to_string();
    }
    let names: Vec<&str> = ctx.environments.iter().map(|e| e.name.as_str()).collect();
    format!("known: {}", names.join(", "))
}

fn resolve_env(ctx: &ParseContext, token: &str) -> Result<EnvName, String> {
    let wanted = token.to_lowercase();
    ctx.environments
        .iter()
        .find(|e| {
            e.name.to_lowercase() == wanted || e.aliases.iter().any(|a| a.to_lowercase() == wanted)
        })
        .map(|e| EnvName::new(e.name.clone()))
        .ok_or_else(|| format!("unknown environment {} ({})", show(token), known_envs(ctx)))
}

/// Digits only: `u32::from_str` would also take `+5`.
fn number_in(token: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u32>().ok().filter(|n| range.contains(n))
}

fn positive_id(token: &str, prefix: &str) -> Option<i64> {
    let digits = match token.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &token[prefix.len()..],
        _ => token,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

fn request_id(token: &str) -> Result<RequestId, String> {
    positive_id(token, "R-")
        .map(RequestId)
        .ok_or_else(|| format!("invalid request id {} (expected e.g. R-42)", show(token)))
}

fn incident_id(token: &str) -> Result<IncidentId, String> {
    positive_id(token, "INC-")
        .map(IncidentId)
        .ok_or_else(|| format!("invalid incident id {} (expected e.g. INC-7)", show(token)))
}

fn version(token: &str) -> Result<Version, String> {
    Version::parse(token)
        .ok_or_else(|| format!("invalid version {} (expected e.g. v3.0.1)", show(token)))
}

fn severity(token: &str) -> Result<Severity, String> {
    Severity::parse(token)
        .ok_or_else(|| format!("invalid severity {} (expected P0, P1 or P2)", show(token)))
}

/// `@alice`, `alice`, Slack `<@U123>` / `<@U123|alice>`, Discord `<@123>` / `<@!123>`.
fn commander(token: &str) -> Result<String, String> {
    let is_name_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = if let Some(inner) = token.strip_prefix("<@") {
        inner.strip_suffix('>').is_some_and(|inner| {
            let inner = inner.strip_prefix('!').unwrap_or(inner);
            let (id, label) = match inner.split_once('|') {
                Some((id, label)) => (id, Some(label)),
                None => (inner, None),
            };
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric())
                && label.is_none_or(|l| !l.is_empty() && l.chars().all(is_name_char))
        })
    } else {
        let name = token.strip_prefix('@').unwrap_or(token);
        !name.is_empty() && name.chars().all(is_name_char)
    };
    if valid {
        Ok(token.to_string())
    } else {
        Err(format!(
            "invalid user {} (expected @name or a mention)",
            show(token)
        ))
    }
}

/// DNS-1123 subdomain, which every pod name is; anything else could only be a typo.
fn pod_name(token: &str) -> Result<String, String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let bytes = token.as_bytes();
    if bytes.len() <= MAX_POD_NAME
        && bytes.iter().all(|b| allowed(*b))
        && edge(bytes.first())
        && edge(bytes.last())
    {
        Ok(token.to_string())
    } else {
        Err(format!(
            "invalid pod name {} (expected a Kubernetes pod name)",
            show(token)
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Commands

fn command_help(args: &mut Args<'_>) -> Result<Command, String> {
    let Some(first) = args.next() else {
        return Ok(Command::Help { topic: None });
    };
    let second = if group_of(&first.text).is_some() {
        args.next().map(|t| t.text.as_str())
    } else {
        None
    };
    let topic = match lookup(&first.text, second).map_err(|unknown| unknown.message)? {
        Found::Command(spec) => spec.name,
        Found::Group(group) => group,
    };
    Ok(Command::Help {
        topic: Some(topic.to_string()),
    })
}

fn command_status(args: &mut Args<'_>) -> Result<Command, String> {
    let env = match args.next() {
        Some(token) => Some(resolve_env(args.ctx, &token.text)?),
        None => None,
    };
    Ok(Command::Status { env })
}

fn command_deploy(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let version = version(args.required("VERSION")?)?;
    let strategy = match args.option(STRATEGY.name) {
        None => Strategy::default(),
        Some(value) => Strategy::parse(&value.to_lowercase()).ok_or_else(|| {
            format!(
                "invalid strategy {} (expected rolling, canary or blue-green)",
                show(value)
            )
        })?,
    };
    Ok(Command::Deploy {
        env,
        version,
        strategy,
        reason: args.free_text(),
    })
}

fn command_rollback(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let version = args.peek().and_then(|t| Version::parse(&t.text));
    if version.is_some() {
        args.next();
    }
    Ok(Command::Rollback {
        env,
        version,
        reason: args.free_text(),
    })
}

fn command_approve(args: &mut Args<'_>) -> Result<Command, String> {
    let id = request_id(args.required("ID")?)?;
    Ok(Command::Approve {
        id,
        comment: args.free_text(),
    })
}

fn command_deny(args: &mut Args<'_>) -> Result<Command, String> {
    let id = request_id(args.required("ID")?)?;
    Ok(Command::Deny {
        id,
        reason: args.free_text(),
    })
}

fn command_cancel(args: &mut Args<'_>) -> Result<Command, String> {
    let id = request_id(args.required("ID")?)?;
    Ok(Command::Cancel { id })
}

fn command_scale(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let token = args.required("REPLICAS")?;
    let replicas = number_in(token, 0..=MAX_REPLICAS).ok_or_else(|| {
        format!(
            "invalid replica count {} (expected a whole number from 0 to {MAX_REPLICAS})",
            show(token)
        )
    })?;
    Ok(Command::Scale {
        env,
        replicas,
        reason: args.free_text(),
    })
}

fn command_restart(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    Ok(Command::Restart {
        env,
        reason: args.free_text(),
    })
}

fn command_maintenance(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let token = args.required("mode (on or off)")?;
    let on = match token.to_lowercase().as_str() {
        "on" => true,
        "off" => false,
        _ => {
            return Err(format!(
                "invalid maintenance mode {} (expected on or off)",
                show(token)
            ));
        }
    };
    Ok(Command::Maintenance {
        env,
        on,
        reason: args.free_text(),
    })
}

fn command_canary(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let token = args.required("canary action (status, pause, resume, abort or promote)")?;
    let action = CanaryAction::parse(&token.to_lowercase()).ok_or_else(|| {
        format!(
            "invalid canary action {} (expected status, pause, resume, abort or promote)",
            show(token)
        )
    })?;
    Ok(Command::Canary { env, action })
}

fn command_pods(args: &mut Args<'_>) -> Result<Command, String> {
    Ok(Command::Pods { env: args.env()? })
}

fn command_logs(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let pod = args.next().map(|t| pod_name(&t.text)).transpose()?;
    let tail = match args.option(TAIL.name) {
        None => None,
        Some(value) => Some(number_in(value, 1..=MAX_LOG_TAIL).ok_or_else(|| {
            format!(
                "invalid --tail {} (expected a whole number from 1 to {MAX_LOG_TAIL})",
                show(value)
            )
        })?),
    };
    Ok(Command::Logs {
        env,
        pod,
        previous: args.flag(PREVIOUS.name),
        tail,
    })
}

fn command_incident_declare(args: &mut Args<'_>) -> Result<Command, String> {
    let severity = severity(args.required("severity (P0, P1 or P2)")?)?;
    let title = args.required_text("TITLE")?;
    Ok(Command::Incident(IncidentCommand::Declare {
        severity,
        title,
    }))
}

fn command_incident_update(args: &mut Args<'_>) -> Result<Command, String> {
    let id = args.incident_id_option()?;
    let text = args.required_text("TEXT")?;
    Ok(Command::Incident(IncidentCommand::Update { id, text }))
}

fn command_incident_severity(args: &mut Args<'_>) -> Result<Command, String> {
    let id = args.incident_id_option()?;
    let severity = severity(args.required("severity (P0, P1 or P2)")?)?;
    Ok(Command::Incident(IncidentCommand::Severity {
        id,
        severity,
    }))
}

fn command_incident_commander(args: &mut Args<'_>) -> Result<Command, String> {
    let id = args.incident_id_option()?;
    let user = commander(args.required("@USER")?)?;
    Ok(Command::Incident(IncidentCommand::Commander { id, user }))
}

fn command_incident_resolve(args: &mut Args<'_>) -> Result<Command, String> {
    let id = args.incident_id_option()?;
    Ok(Command::Incident(IncidentCommand::Resolve {
        id,
        summary: args.free_text(),
    }))
}

fn command_incident_timeline(args: &mut Args<'_>) -> Result<Command, String> {
    let id = args.next().map(|t| incident_id(&t.text)).transpose()?;
    Ok(Command::Incident(IncidentCommand::Timeline { id }))
}

fn command_audit(args: &mut Args<'_>) -> Result<Command, String> {
    let limit = match args.next() {
        None => None,
        Some(token) => Some(number_in(&token.text, 1..=MAX_AUDIT_ENTRIES).ok_or_else(|| {
            format!(
                "invalid entry count {} (expected a whole number from 1 to {MAX_AUDIT_ENTRIES})",
                show(&token.text)
            )
        })?),
    };
    Ok(Command::Audit { limit })
}

fn command_audit_prune(args: &mut Args<'_>) -> Result<Command, String> {
    let text = args
        .option(BEFORE.name)
        .ok_or_else(|| "missing --before DATE".to_string())?;
    Ok(Command::AuditPrune {
        before: prune_date(text)?,
    })
}

fn command_runs(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let limit = match args.next() {
        None => None,
        Some(token) => Some(number_in(&token.text, 1..=MAX_RUNS).ok_or_else(|| {
            format!(
                "invalid run count {} (expected a whole number from 1 to {MAX_RUNS})",
                show(&token.text)
            )
        })?),
    };
    Ok(Command::Runs { env, limit })
}

fn run_id(token: &str) -> Result<RunId, String> {
    let valid = !token.is_empty() && token.len() <= 20 && token.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| token.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n > 0)
        .map(RunId)
        .ok_or_else(|| {
            format!(
                "invalid run id {} (expected the number GitHub shows, e.g. 30433642)",
                show(token)
            )
        })
}

fn command_run(args: &mut Args<'_>, action: RunAction) -> Result<Command, String> {
    let id = run_id(args.required("ID")?)?;
    Ok(Command::Run { id, action })
}

fn command_run_rerun(args: &mut Args<'_>) -> Result<Command, String> {
    let failed = args.flag(FAILED.name);
    command_run(args, RunAction::Rerun { failed })
}

fn command_events(args: &mut Args<'_>) -> Result<Command, String> {
    Ok(Command::Events { env: args.env()? })
}

fn command_describe(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let pod = pod_name(args.required("POD")?)?;
    Ok(Command::Describe { env, pod })
}

fn command_top(args: &mut Args<'_>) -> Result<Command, String> {
    Ok(Command::Top { env: args.env()? })
}

fn command_pod_delete(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let pod = pod_name(args.required("POD")?)?;
    Ok(Command::PodDelete {
        env,
        pod,
        force: args.flag(FORCE.name),
    })
}

fn command_resources(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let list = |name: &str| -> Result<ResourceList, String> {
        match args.option(name) {
            None => Ok(ResourceList::default()),
            Some(text) => ResourceList::parse(text, name),
        }
    };
    let change = ResourceChange {
        requests: list(REQUESTS.name)?,
        limits: list(LIMITS.name)?,
    };
    change.validate()?;
    Ok(Command::Resources { env, change })
}

fn command_backup(args: &mut Args<'_>) -> Result<Command, String> {
    Ok(Command::Backup { env: args.env()? })
}

fn command_backups(args: &mut Args<'_>) -> Result<Command, String> {
    Ok(Command::Backups { env: args.env()? })
}

fn command_dr_failover(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    Ok(Command::DrFailover {
        env,
        reason: args.free_text(),
    })
}

fn command_bluegreen(args: &mut Args<'_>) -> Result<Command, String> {
    let env = args.env()?;
    let token = args.required("blue-green action (status, switch or retire)")?;
    let action = match token.to_lowercase().as_str() {
        "status" => BlueGreenAction::Status,
        "retire" => BlueGreenAction::Retire,
        "switch" => {
            let colour = args.required("colour (blue or green)")?;
            BlueGreenAction::Switch(Colour::parse(&colour.to_lowercase()).ok_or_else(|| {
                format!("invalid colour {} (expected blue or green)", show(colour))
            })?)
        }
        _ => {
            return Err(format!(
                "invalid blue-green action {} (expected status, switch or retire)",
                show(token)
            ));
        }
    };
    Ok(Command::BlueGreen { env, action })
}

/// `--dry-run` turns a change into its plan; a command that changes nothing has none.
fn plan_of(command: Command) -> Result<Command, String> {
    let reads_only = matches!(
        command,
        Command::Canary {
            action: CanaryAction::Status,
            ..
        } | Command::BlueGreen {
            action: BlueGreenAction::Status,
            ..
        }
    );
    if reads_only {
        return Err(format!(
            "{} changes nothing, so it has no plan (drop --dry-run)",
            show(command_name(&command))
        ));
    }
    Ok(Command::Plan {
        change: Box::new(command),
    })
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn prune_date(text: &str) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!(
                "invalid date {} (expected YYYY-MM-DD or an RFC 3339 time)",
                show(text)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        let env = |name: &str, alias: &str| EnvironmentNames {
            name: name.to_string(),
            aliases: vec![alias.to_string()],
        };
        ParseContext {
            command: "/erlmcp".to_string(),
            environments: vec![
                env("development", "dev"),
                env("staging", "stg"),
                env("production", "prod"),
            ],
        }
    }

    /// One valid input per row of the table: each must parse back to that row, so the
    /// table, the parse functions and `command_name` cannot drift apart.
    const EXAMPLES: &[&str] = &[
        "help",
        "whoami",
        "status",
        "deploy prod v1.2.3",
        "rollback prod",
        "approve R-1",
        "deny 2",
        "cancel 3",
        "requests",
        "scale stg 3",
        "restart dev",
        "maintenance prod on",
        "canary prod pause",
        "pods prod",
        "logs prod",
        "incident declare P1 checkout is down",
        "incident update rolled back",
        "incident severity P0",
        "incident commander @alice",
        "incident resolve",
        "incident list",
        "incident timeline",
        "audit",
        "audit prune --before 2026-01-31",
        "runs prod 5",
        "run view 30433642",
        "run cancel 30433642",
        "run rerun 30433642 --failed",
        "run approve 30433642",
        "run reject 30433642",
        "events prod",
        "describe prod erlmcp-7d9f-abcde",
        "top prod",
        "pod delete prod erlmcp-7d9f-abcde --force",
        "resources prod --limits memory=4Gi",
        "backup prod",
        "backups prod",
        "dr status",
        "dr failover prod region down",
        "report",
        "bluegreen prod switch blue",
    ];

    #[test]
    fn every_spec_has_an_example_that_parses_back_to_it() {
        assert_eq!(EXAMPLES.len(), SPECS.len());
        for (example, spec) in EXAMPLES.iter().zip(SPECS) {
            let command = parse(example, &ctx()).unwrap_or_else(|e| panic!("{example}: {e}"));
            assert_eq!(command_name(&command), spec.name, "{example}");
            assert!(spec.usage.starts_with(spec.name), "{}", spec.usage);
        }
    }

    #[test]
    fn help_lists_every_command_with_its_usage() {
        let text = help(None, &ctx()).unwrap();
        for spec in SPECS {
            assert!(text.contains(spec.name), "{} missing from help", spec.name);
            assert!(
                text.contains(&format!("/erlmcp {}", spec.usage)),
                "{} missing from help",
                spec.usage
            );
        }
        assert!(text.contains("production (prod)"));
    }

    #[test]
    fn help_for_one_command_shows_its_usage_and_summary() {
        let text = help(Some("deploy"), &ctx()).unwrap();
        assert_eq!(
            text,
            "/erlmcp deploy ENV VERSION [--strategy rolling|canary|blue-green] [--dry-run] [REASON...]\n\
             deploy VERSION to ENV (--dry-run: show the plan only)"
        );
        assert!(
            help(Some("DEPLOY"), &ctx())
                .unwrap()
                .contains(usage("deploy").unwrap())
        );
    }

    #[test]
    fn help_incident_shows_every_incident_subcommand() {
        let text = help(Some("incident"), &ctx()).unwrap();
        for spec in SPECS.iter().filter(|s| s.name.starts_with("incident ")) {
            assert!(text.contains(spec.usage), "{}", spec.usage);
        }
        assert!(!text.contains("deploy"));
        let one = help(Some("incident resolve"), &ctx()).unwrap();
        assert!(one.starts_with("/erlmcp incident resolve [--id INC-N] [SUMMARY...]\n"));
    }

    #[test]
    fn help_for_an_unknown_topic_is_an_error() {
        let error = help(Some("xyzzy"), &ctx()).unwrap_err();
        assert_eq!(error.message, "unknown command \"xyzzy\"");
        assert_eq!(error.usage.as_deref(), Some("/erlmcp help [COMMAND]"));
        let error = help(Some("deplyo"), &ctx()).unwrap_err();
        assert_eq!(
            error.message,
            "unknown command \"deplyo\" (did you mean \"deploy\"?)"
        );
        let error = help(Some("incident nope"), &ctx()).unwrap_err();
        assert_eq!(error.message, "unknown incident subcommand \"nope\"");
    }

    #[test]
    fn usage_looks_up_names_case_insensitively() {
        assert_eq!(usage("cancel"), Some("cancel ID"));
        assert_eq!(usage("Incident List"), Some("incident list"));
        assert_eq!(usage("incident"), None);
        assert_eq!(usage("nope"), None);
    }

    #[test]
    fn edit_distance_is_bounded() {
        assert_eq!(edit_distance("deplyo", "deploy", 2), Some(2));
        assert_eq!(edit_distance("deploy", "deploy", 2), Some(0));
        assert_eq!(edit_distance("xxxxxxxx", "deploy", 2), None);
        assert_eq!(edit_distance(&"é".repeat(4000), "deploy", 2), None);
    }

    #[test]
    fn run_commands_parse_their_id_and_flags() {
        assert_eq!(
            parse("run rerun 42 --failed", &ctx()).unwrap(),
            Command::Run {
                id: RunId(42),
                action: RunAction::Rerun { failed: true }
            }
        );
        assert_eq!(
            parse("runs prod", &ctx()).unwrap(),
            Command::Runs {
                env: EnvName::new("production"),
                limit: None
            }
        );
        let error = parse("run cancel R-4", &ctx()).unwrap_err();
        assert!(
            error.message.contains("invalid run id \"R-4\""),
            "{error:?}"
        );
        let error = parse("run", &ctx()).unwrap_err();
        assert!(
            error.message.starts_with("missing run subcommand"),
            "{error:?}"
        );
        let error = parse("run stop 4", &ctx()).unwrap_err();
        assert!(
            error.message.starts_with("unknown run subcommand \"stop\""),
            "{error:?}"
        );
        assert!(parse("runs prod 51", &ctx()).is_err());
        assert!(
            help(Some("run"), &ctx())
                .unwrap()
                .contains("run approve ID")
        );
        assert!(
            help(Some("run rerun"), &ctx())
                .unwrap()
                .contains("--failed")
        );
    }

    #[test]
    fn render_appends_the_usage() {
        let error = parse("cancel", &ctx()).unwrap_err();
        assert_eq!(error.render(), "missing ID\nusage: /erlmcp cancel ID");
        let error = parse("incident", &ctx()).unwrap_err();
        assert!(error.render().contains(
            "usage: /erlmcp incident declare P0|P1|P2 TITLE...\n       /erlmcp incident update"
        ));
    }
}
