//! The `/erlmcp` application command, derived from the grammar's table: one subcommand per
//! grammar command, subcommand groups where the grammar nests (`incident …`), where a
//! command picks an action (`canary ENV pause`) and where a command and a longer one share
//! their first word (`audit`, `audit prune`). Options are named after the usage line's
//! words, and every subcommand turns back into the text the grammar parses, so a Discord
//! command takes exactly the path a typed one does.
//!
//! Deriving it (rather than listing it) means a new grammar command shows up on Discord
//! without a change here; the tests check every row of the grammar against it.

use erlmcp_commands::grammar::{self, CommandSpec};
use serde_json::{Value, json};
use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption};

use super::interaction::OptionValue;

/// Discord's limits on application commands.
pub const MAX_ENTRIES: usize = 25;
pub const MAX_NAME: usize = 32;
pub const MAX_DESCRIPTION: usize = 100;
pub const MAX_CHOICES: usize = 25;

/// The group that takes top-level entries beyond Discord's 25.
const OVERFLOW_GROUP: &str = "more";
/// The subcommand that stands for a one-word command inside the group of the same name.
const PLAIN_SUBCOMMAND: &str = "show";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Text,
    Integer,
    Boolean,
    User,
}

impl OptionKind {
    fn serenity(self) -> CommandOptionType {
        match self {
            OptionKind::Text => CommandOptionType::String,
            OptionKind::Integer => CommandOptionType::Integer,
            OptionKind::Boolean => CommandOptionType::Boolean,
            OptionKind::User => CommandOptionType::User,
        }
    }

    /// Discord's option type number, as the API shows it.
    pub fn code(self) -> u8 {
        match self {
            OptionKind::Text => 3,
            OptionKind::Integer => 4,
            OptionKind::Boolean => 5,
            OptionKind::User => 6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What the user sees.
    pub label: String,
    /// What is sent back, and written into the command text.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionModel {
    pub name: String,
    pub description: String,
    pub kind: OptionKind,
    pub required: bool,
    pub choices: Vec<Choice>,
}

/// How a subcommand becomes grammar text, in usage order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A word written as is: the command's name, or the action a subcommand stands for.
    Word(String),
    /// The option's value in this position.
    Positional(String),
    /// `--flag VALUE` when the option is given.
    Flag { flag: String, option: String },
    /// `--flag` when the boolean option is true.
    Switch { flag: String, option: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcommand {
    pub name: String,
    pub description: String,
    /// The grammar command it stands for (`incident declare`).
    pub spec: &'static str,
    /// Required ones first, as Discord demands.
    pub options: Vec<OptionModel>,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Command(Subcommand),
    Group {
        name: String,
        description: String,
        subcommands: Vec<Subcommand>,
    },
}

impl Entry {
    pub fn name(&self) -> &str {
        match self {
            Entry::Command(sub) => &sub.name,
            Entry::Group { name, .. } => name,
        }
    }
}

/// The whole `/erlmcp` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandModel {
    pub name: String,
    pub description: String,
    pub entries: Vec<Entry>,
}

/// A Discord command that does not match the model (an old registration, a forged call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("unknown command /{0} (this bot answers /{1})")]
    WrongCommand(String, String),
    #[error(
        "unknown subcommand \"{0}\" (the command list may be out of date: run `erlmcp-bot discord register`)"
    )]
    UnknownSubcommand(String),
    #[error("missing option \"{0}\"")]
    MissingOption(String),
    #[error("unknown option \"{0}\"")]
    UnknownOption(String),
}

/// What the model needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct ModelContext {
    /// The slash command with or without its `/` (`/erlmcp`).
    pub command: String,
    /// Environment names with their aliases, offered as choices.
    pub environments: Vec<(String, Vec<String>)>,
}

impl CommandModel {
    /// The model for the grammar as compiled into this binary.
    pub fn from_grammar(ctx: &ModelContext) -> CommandModel {
        let name = command_name(&ctx.command);
        let mut entries: Vec<Entry> = Vec::new();
        for spec in grammar::specs() {
            let words: Vec<&str> = spec.name.split(' ').collect();
            let sub = subcommand_for(spec, ctx);
            match words.as_slice() {
                [group, sub_name] => {
                    let sub = Subcommand {
                        name: discord_name(sub_name),
                        ..sub
                    };
                    push_into_group(&mut entries, group, sub);
                }
                _ => {
                    if let Some(expanded) = expand_action(&sub) {
                        entries.push(expanded);
                    } else if entries.iter().any(|e| e.name() == sub.name) {
                        let group = sub.name.clone();
                        push_into_group(
                            &mut entries,
                            &group,
                            Subcommand {
                                name: PLAIN_SUBCOMMAND.into(),
                                ..sub
                            },
                        );
                    } else {
                        entries.push(Entry::Command(sub));
                    }
                }
            }
        }
        let entries = fold_overflow(entries);
        CommandModel {
            description: clip(&format!(
                "erlmcp deployments, approvals and incidents (/{name} help)"
            )),
            name,
            entries,
        }
    }

    /// Every subcommand with the path Discord sends for it.
    pub fn subcommands(&self) -> impl Iterator<Item = (Vec<&str>, &Subcommand)> {
        self.entries
            .iter()
            .flat_map(|entry| -> Vec<(Vec<&str>, &Subcommand)> {
                match entry {
                    Entry::Command(sub) => vec![(vec![sub.name.as_str()], sub)],
                    Entry::Group {
                        name, subcommands, ..
                    } => subcommands
                        .iter()
                        .map(|sub| (vec![name.as_str(), sub.name.as_str()], sub))
                        .collect(),
                }
            })
    }

    fn find(&self, path: &[String]) -> Option<&Subcommand> {
        self.subcommands()
            .find(|(p, _)| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == b))
            .map(|(_, sub)| sub)
    }

    /// The grammar text for a call of `/NAME PATH… options…`.
    pub fn text_for(
        &self,
        name: &str,
        path: &[String],
        options: &[(String, OptionValue)],
    ) -> Result<String, MapError> {
        if name != self.name {
            return Err(MapError::WrongCommand(name.into(), self.name.clone()));
        }
        let sub = self
            .find(path)
            .ok_or_else(|| MapError::UnknownSubcommand(path.join(" ")))?;
        for (given, _) in options {
            if !sub.options.iter().any(|o| &o.name == given) {
                return Err(MapError::UnknownOption(given.clone()));
            }
        }
        let value = |option: &str| options.iter().find(|(n, _)| n == option).map(|(_, v)| v);
        for option in sub.options.iter().filter(|o| o.required) {
            if value(&option.name).is_none() {
                return Err(MapError::MissingOption(option.name.clone()));
            }
        }
        let kind_of = |option: &str| {
            sub.options
                .iter()
                .find(|o| o.name == option)
                .map_or(OptionKind::Text, |o| o.kind)
        };
        let mut words: Vec<String> = Vec::new();
        for piece in &sub.pieces {
            match piece {
                Piece::Word(word) => words.push(word.clone()),
                Piece::Positional(option) => {
                    if let Some(v) = value(option) {
                        words.push(quoted(v, kind_of(option)));
                    }
                }
                Piece::Flag { flag, option } => {
                    if let Some(v) = value(option) {
                        words.push(flag.clone());
                        words.push(quoted(v, kind_of(option)));
                    }
                }
                Piece::Switch { flag, option } => {
                    if matches!(value(option), Some(OptionValue::Boolean(true))) {
                        words.push(flag.clone());
                    }
                }
            }
        }
        Ok(words.join(" "))
    }

    /// The registration body (`PUT …/commands` takes a list of these).
    pub fn to_serenity(&self) -> CreateCommand {
        let mut command = CreateCommand::new(&self.name).description(&self.description);
        for entry in &self.entries {
            command = command.add_option(match entry {
                Entry::Command(sub) => sub_option(sub),
                Entry::Group {
                    name,
                    description,
                    subcommands,
                } => subcommands.iter().fold(
                    CreateCommandOption::new(CommandOptionType::SubCommandGroup, name, description),
                    |group, sub| group.add_sub_option(sub_option(sub)),
                ),
            });
        }
        command
    }

    /// The parts of the command Discord keeps and shows back, in one canonical JSON form, so
    /// what is registered can be compared with what would be.
    pub fn canonical(&self) -> Value {
        let sub = |sub: &Subcommand| {
            json!({
                "type": 1,
                "name": sub.name,
                "description": sub.description,
                "options": sub.options.iter().map(|o| json!({
                    "type": o.kind.code(),
                    "name": o.name,
                    "description": o.description,
                    "required": o.required,
                    "choices": o.choices.iter().map(|c| json!({"name": c.label, "value": c.value})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        };
        json!({
            "name": self.name,
            "description": self.description,
            "options": self.entries.iter().map(|e| match e {
                Entry::Command(s) => sub(s),
                Entry::Group { name, description, subcommands } => json!({
                    "type": 2,
                    "name": name,
                    "description": description,
                    "options": subcommands.iter().map(sub).collect::<Vec<_>>(),
                }),
            }).collect::<Vec<_>>(),
        })
    }

    /// A command as Discord returns it, in the form of [`Self::canonical`]: absent lists
    /// and `required: false` are the same thing there.
    pub fn canonical_of_registered(command: &Value) -> Value {
        fn option(o: &Value) -> Value {
            let kind = o["type"].as_u64().unwrap_or(0);
            let mut out = json!({
                "type": kind,
                "name": o["name"],
                "description": o["description"],
            });
            let nested: Vec<Value> = o["options"]
                .as_array()
                .map(|a| a.iter().map(option).collect())
                .unwrap_or_default();
            if kind == 1 || kind == 2 {
                out["options"] = Value::Array(nested);
            } else {
                out["required"] = Value::Bool(o["required"].as_bool().unwrap_or(false));
                out["choices"] = Value::Array(
                    o["choices"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|c| json!({"name": c["name"], "value": c["value"]}))
                                .collect()
                        })
                        .unwrap_or_default(),
                );
            }
            out
        }
        json!({
            "name": command["name"],
            "description": command["description"],
            "options": command["options"].as_array().map(|a| a.iter().map(option).collect::<Vec<_>>()).unwrap_or_default(),
        })
    }

    /// Discord's limits, each broken one named; empty when the model can be registered.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut name = |what: &str, n: &str| {
            let valid = !n.is_empty()
                && n.chars().count() <= MAX_NAME
                && n.chars()
                    .all(|c| c == '-' || c == '_' || c.is_lowercase() || c.is_numeric());
            if !valid {
                out.push(format!("{what} name {n:?} is not a valid Discord name"));
            }
        };
        name("command", &self.name);
        let mut names = Vec::new();
        for entry in &self.entries {
            name("entry", entry.name());
            names.push(entry.name().to_string());
            let subs: Vec<&Subcommand> = match entry {
                Entry::Command(sub) => vec![sub],
                Entry::Group { subcommands, .. } => subcommands.iter().collect(),
            };
            for sub in subs {
                name("subcommand", &sub.name);
                for option in &sub.options {
                    name("option", &option.name);
                }
            }
        }
        let mut check = |ok: bool, what: String| {
            if !ok {
                out.push(what);
            }
        };
        check(
            self.entries.len() <= MAX_ENTRIES,
            format!(
                "{} top-level entries (at most {MAX_ENTRIES})",
                self.entries.len()
            ),
        );
        names.sort();
        names.dedup();
        check(
            names.len() == self.entries.len(),
            "duplicate entry names".into(),
        );
        for (path, sub) in self.subcommands() {
            let path = path.join(" ");
            check(
                sub.options.len() <= MAX_ENTRIES,
                format!(
                    "{path}: {} options (at most {MAX_ENTRIES})",
                    sub.options.len()
                ),
            );
            check(
                (1..=MAX_DESCRIPTION).contains(&sub.description.chars().count()),
                format!("{path}: description length"),
            );
            let mut option_names: Vec<&str> = sub.options.iter().map(|o| o.name.as_str()).collect();
            option_names.sort();
            option_names.dedup();
            check(
                option_names.len() == sub.options.len(),
                format!("{path}: duplicate option names"),
            );
            let first_optional = sub.options.iter().position(|o| !o.required);
            check(
                first_optional.is_none_or(|i| sub.options[i..].iter().all(|o| !o.required)),
                format!("{path}: a required option after an optional one"),
            );
            for option in &sub.options {
                check(
                    option.choices.len() <= MAX_CHOICES,
                    format!("{path} {}: more than {MAX_CHOICES} choices", option.name),
                );
                check(
                    (1..=MAX_DESCRIPTION).contains(&option.description.chars().count()),
                    format!("{path} {}: description length", option.name),
                );
            }
        }
        for entry in &self.entries {
            if let Entry::Group {
                name, subcommands, ..
            } = entry
            {
                check(
                    subcommands.len() <= MAX_ENTRIES,
                    format!("group {name}: {} subcommands", subcommands.len()),
                );
            }
        }
        out
    }
}

fn sub_option(sub: &Subcommand) -> CreateCommandOption {
    let mut out =
        CreateCommandOption::new(CommandOptionType::SubCommand, &sub.name, &sub.description);
    for option in &sub.options {
        let mut o =
            CreateCommandOption::new(option.kind.serenity(), &option.name, &option.description)
                .required(option.required);
        for choice in &option.choices {
            o = o.add_string_choice(&choice.label, &choice.value);
        }
        out = out.add_sub_option(o);
    }
    out
}

fn push_into_group(entries: &mut Vec<Entry>, group: &str, sub: Subcommand) {
    let group_name = discord_name(group);
    let Some(at) = entries.iter().position(|e| e.name() == group_name) else {
        entries.push(Entry::Group {
            description: group_description(&group_name),
            name: group_name,
            subcommands: vec![sub],
        });
        return;
    };
    match &mut entries[at] {
        Entry::Group { subcommands, .. } => subcommands.push(sub),
        Entry::Command(existing) => {
            // `audit` met `audit prune`: the one-word command moves into the group.
            let plain = Subcommand {
                name: PLAIN_SUBCOMMAND.into(),
                ..existing.clone()
            };
            entries[at] = Entry::Group {
                description: group_description(&group_name),
                name: group_name,
                subcommands: vec![plain, sub],
            };
        }
    }
}

fn group_description(group: &str) -> String {
    clip(&format!("{group} commands"))
}

/// `canary ENV status|pause|…`: one subcommand per action, in a group named after the
/// command, so Discord shows the actions as commands of their own.
fn expand_action(sub: &Subcommand) -> Option<Entry> {
    let action = sub.options.iter().find(|o| {
        o.name == ACTION && o.required && !o.choices.is_empty() && o.choices.len() <= MAX_ENTRIES
    })?;
    let subcommands = action
        .choices
        .iter()
        .map(|choice| {
            let mut options: Vec<OptionModel> = sub
                .options
                .iter()
                .filter(|o| o.name != ACTION)
                .cloned()
                .collect();
            let mut pieces: Vec<Piece> = Vec::new();
            for p in &sub.pieces {
                match p {
                    Piece::Positional(o) if o == ACTION => {
                        pieces.push(Piece::Word(choice.value.clone()));
                        for (command, action, name, choices) in ACTION_ARGUMENTS {
                            if *command == sub.spec && *action == choice.value {
                                options.push(OptionModel {
                                    name: name.to_string(),
                                    description: clip(&format!("one of {}", choices.join(", "))),
                                    kind: OptionKind::Text,
                                    required: true,
                                    choices: choices
                                        .iter()
                                        .map(|c| Choice {
                                            label: c.to_string(),
                                            value: c.to_string(),
                                        })
                                        .collect(),
                                });
                                pieces.push(Piece::Positional(name.to_string()));
                            }
                        }
                    }
                    other => pieces.push(other.clone()),
                }
            }
            options.sort_by_key(|o| !o.required);
            Subcommand {
                name: discord_name(&choice.value),
                description: clip(&format!(
                    "{} {}: {}",
                    sub.name, choice.value, sub.description
                )),
                spec: sub.spec,
                options,
                pieces,
            }
        })
        .collect();
    Some(Entry::Group {
        name: sub.name.clone(),
        description: clip(&sub.description),
        subcommands,
    })
}

/// Beyond 25 top-level entries the rest go into one group; groups cannot nest, so a group
/// moved there becomes subcommands named `group-sub`.
fn fold_overflow(mut entries: Vec<Entry>) -> Vec<Entry> {
    if entries.len() <= MAX_ENTRIES {
        return entries;
    }
    let rest = entries.split_off(MAX_ENTRIES - 1);
    let mut subcommands = Vec::new();
    for entry in rest {
        match entry {
            Entry::Command(sub) => subcommands.push(sub),
            Entry::Group {
                name,
                subcommands: subs,
                ..
            } => subcommands.extend(subs.into_iter().map(|sub| Subcommand {
                name: discord_name(&format!("{name}-{}", sub.name)),
                ..sub
            })),
        }
    }
    entries.push(Entry::Group {
        name: OVERFLOW_GROUP.into(),
        description: group_description(OVERFLOW_GROUP),
        subcommands,
    });
    entries
}

const ACTION: &str = "action";

/// Actions that take a word of their own (`bluegreen ENV switch blue|green`): the usage line
/// lists it inside the action's alternatives, so it is read here, as a required choice of
/// that action's subcommand.
const ACTION_ARGUMENTS: &[(&str, &str, &str, &[&str])] =
    &[("bluegreen", "switch", "colour", &["blue", "green"])];

/// One grammar row as a subcommand, options read off its usage line.
fn subcommand_for(spec: &CommandSpec, ctx: &ModelContext) -> Subcommand {
    let name_words = spec.name.split(' ').count();
    let mut usage = spec.usage.to_string();
    for (command, action, _, choices) in ACTION_ARGUMENTS {
        if spec.name == *command {
            usage = usage.replace(&format!("{action} {}", choices.join("|")), action);
        }
    }
    let usage_words: Vec<&str> = usage.split_whitespace().collect();
    let mut pieces: Vec<Piece> = spec
        .name
        .split(' ')
        .map(|w| Piece::Word(w.into()))
        .collect();
    let mut options: Vec<OptionModel> = Vec::new();
    let rest = usage_words.get(name_words..).unwrap_or_default();
    let mut i = 0;
    while i < rest.len() {
        // A bracketed element may span words: `[--strategy rolling|canary]`.
        let (element, optional) = if rest[i].starts_with('[') {
            let mut parts = vec![rest[i]];
            while !parts.last().is_some_and(|p| p.ends_with(']')) && i + 1 < rest.len() {
                i += 1;
                parts.push(rest[i]);
            }
            let joined = parts.join(" ");
            (
                joined
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                true,
            )
        } else if rest[i].starts_with("--") && i + 1 < rest.len() && !rest[i + 1].starts_with("--")
        {
            // A required flag with its value: `--before DATE`.
            i += 1;
            (format!("{} {}", rest[i - 1], rest[i]), false)
        } else {
            (rest[i].to_string(), false)
        };
        i += 1;
        let mut parts = element.split_whitespace();
        let Some(head) = parts.next() else { continue };
        if let Some(flag_name) = head.strip_prefix("--") {
            let name = unique(&options, &discord_name(flag_name));
            match parts.next() {
                Some(value) => {
                    let mut option = value_option(value, &name, ctx);
                    option.required = !optional;
                    options.push(option);
                    pieces.push(Piece::Flag {
                        flag: head.to_string(),
                        option: name,
                    });
                }
                None => {
                    options.push(OptionModel {
                        description: clip(head),
                        name: name.clone(),
                        kind: OptionKind::Boolean,
                        required: false,
                        choices: Vec::new(),
                    });
                    pieces.push(Piece::Switch {
                        flag: head.to_string(),
                        option: name,
                    });
                }
            }
        } else {
            let mut option = value_option(head, "", ctx);
            option.name = unique(&options, &option.name);
            option.required = !optional;
            pieces.push(Piece::Positional(option.name.clone()));
            options.push(option);
        }
    }
    // Discord lists required options first; the text keeps the usage order.
    options.sort_by_key(|o| !o.required);
    Subcommand {
        name: discord_name(spec.name),
        description: clip(spec.summary),
        spec: spec.name,
        options,
        pieces,
    }
}

/// The option for one usage word (`ENV`, `REASON...`, `on|off`, `@USER`); `flag_name`
/// names it when it is a flag's value.
fn value_option(word: &str, flag_name: &str, ctx: &ModelContext) -> OptionModel {
    let free_text = word.ends_with("...") || word.ends_with('…');
    let word = word.trim_end_matches("...").trim_end_matches('…');
    let mut kind = OptionKind::Text;
    let mut choices = Vec::new();
    let (name, description): (String, String) = if word.contains('|') {
        choices = word
            .split('|')
            .map(|c| Choice {
                label: c.to_string(),
                value: c.to_string(),
            })
            .collect();
        let name = if !flag_name.is_empty() {
            flag_name.to_string()
        } else if word.eq_ignore_ascii_case("P0|P1|P2") {
            "severity".into()
        } else if word == "on|off" {
            "state".into()
        } else {
            ACTION.into()
        };
        (name, format!("one of {}", word.replace('|', ", ")))
    } else {
        let (name, description) = match word {
            "ENV" => {
                choices = ctx
                    .environments
                    .iter()
                    .map(|(name, aliases)| Choice {
                        label: if aliases.is_empty() {
                            name.clone()
                        } else {
                            format!("{name} ({})", aliases.join(", "))
                        },
                        value: name.clone(),
                    })
                    .collect();
                if choices.len() > MAX_CHOICES {
                    choices.clear();
                }
                ("environment", "the environment")
            }
            "VERSION" => ("version", "the version, e.g. v3.0.1"),
            "REPLICAS" => {
                kind = OptionKind::Integer;
                ("replicas", "the number of replicas")
            }
            "N" => {
                kind = OptionKind::Integer;
                ("count", "how many")
            }
            "ID" => ("id", "the request id, e.g. R-42"),
            "INC-N" => ("id", "the incident id, e.g. INC-7"),
            "REASON" => ("reason", "why (recorded in the audit log)"),
            "COMMENT" => ("comment", "a comment for the audit log"),
            "SUMMARY" => ("summary", "a summary"),
            "TEXT" => ("text", "the text"),
            "TITLE" => ("title", "the title"),
            "@USER" => {
                kind = OptionKind::User;
                ("user", "the user")
            }
            "COMMAND" => ("command", "a command, e.g. deploy"),
            "POD" => ("pod", "the pod name"),
            "DATE" => ("date", "a date: YYYY-MM-DD or RFC 3339"),
            other => {
                let name = discord_name(other.trim_start_matches('@'));
                return OptionModel {
                    name: if flag_name.is_empty() {
                        name
                    } else {
                        flag_name.to_string()
                    },
                    description: clip(&other.to_lowercase()),
                    kind,
                    required: true,
                    choices,
                };
            }
        };
        let name = if flag_name.is_empty() {
            name.to_string()
        } else {
            flag_name.to_string()
        };
        (name, description.to_string())
    };
    if free_text {
        kind = OptionKind::Text;
    }
    OptionModel {
        name,
        description: clip(&description),
        kind,
        required: true,
        choices,
    }
}

fn unique(options: &[OptionModel], name: &str) -> String {
    if !options.iter().any(|o| o.name == name) {
        return name.to_string();
    }
    (2..)
        .map(|n| format!("{name}-{n}"))
        .find(|candidate| !options.iter().any(|o| &o.name == candidate))
        .unwrap_or_else(|| name.to_string())
}

/// The command's name without its slash, as Discord wants it.
pub fn command_name(command: &str) -> String {
    let name = command.trim().trim_start_matches('/');
    let name = if name.is_empty() { "erlmcp" } else { name };
    discord_name(name)
}

/// Lowercase, spaces and other punctuation as hyphens, at most 32 characters.
fn discord_name(word: &str) -> String {
    let mut out: String = word
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    out.chars().take(MAX_NAME).collect()
}

/// Descriptions are 1–100 characters.
fn clip(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "-".into();
    }
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    out.push('…');
    out
}

/// A value as one grammar token. Quoting makes it literal: never read as an option or as
/// the slash command, whatever it contains; the grammar has no escape for a quote inside a
/// quoted run, so those become apostrophes.
fn quoted(value: &OptionValue, kind: OptionKind) -> String {
    let text = match value {
        OptionValue::Text(s) => s.clone(),
        OptionValue::Integer(n) => return n.to_string(),
        OptionValue::Number(n) => return n.to_string(),
        OptionValue::Boolean(b) => return b.to_string(),
        OptionValue::Id(id) if kind == OptionKind::User => return format!("<@{id}>"),
        OptionValue::Id(id) => id.clone(),
    };
    let clean: String = text
        .chars()
        .map(|c| {
            if matches!(c, '"' | '“' | '”') {
                '\''
            } else {
                c
            }
        })
        .collect();
    format!("\"{clean}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use erlmcp_commands::grammar::{EnvironmentNames, ParseContext};

    fn ctx() -> ModelContext {
        ModelContext {
            command: "/erlmcp".into(),
            environments: vec![
                ("development".into(), vec!["dev".into()]),
                ("production".into(), vec!["prod".into()]),
                ("staging".into(), vec!["stg".into()]),
            ],
        }
    }

    fn parse_ctx() -> ParseContext {
        ParseContext {
            command: "/erlmcp".into(),
            environments: ctx()
                .environments
                .into_iter()
                .map(|(name, aliases)| EnvironmentNames { name, aliases })
                .collect(),
        }
    }

    /// A value the grammar accepts for an option of this name.
    fn sample(option: &OptionModel) -> OptionValue {
        if let Some(choice) = option.choices.first() {
            return OptionValue::Text(choice.value.clone());
        }
        match option.kind {
            OptionKind::Integer => OptionValue::Integer(3),
            OptionKind::Boolean => OptionValue::Boolean(true),
            OptionKind::User => OptionValue::Id("4242".into()),
            OptionKind::Text => OptionValue::Text(
                match option.name.as_str() {
                    "environment" => "staging",
                    "version" => "v3.0.1",
                    "id" => "7",
                    "command" => "deploy",
                    "pod" => "erlmcp-6d4f9c7b8-abcde",
                    "date" | "before" => "2026-01-01",
                    "requests" | "limits" => "cpu=500m,memory=1Gi",
                    "tail" => "20",
                    _ => "because \"reasons\" --strategy canary",
                }
                .into(),
            ),
        }
    }

    #[test]
    fn the_model_fits_discords_limits() {
        let model = CommandModel::from_grammar(&ctx());
        assert_eq!(model.problems(), Vec::<String>::new());
        assert_eq!(model.name, "erlmcp");
    }

    #[test]
    fn every_grammar_command_has_a_subcommand_and_each_maps_back_to_it() {
        let model = CommandModel::from_grammar(&ctx());
        let pctx = parse_ctx();
        for spec in grammar::specs() {
            let subs: Vec<_> = model
                .subcommands()
                .filter(|(_, s)| s.spec == spec.name)
                .collect();
            assert!(!subs.is_empty(), "no subcommand for {:?}", spec.name);
            for (path, sub) in subs {
                let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                // Every subset of the optional options, with every required one.
                let optional: Vec<&OptionModel> =
                    sub.options.iter().filter(|o| !o.required).collect();
                assert!(
                    optional.len() < 12,
                    "{path:?}: too many optional options to enumerate"
                );
                for mask in 0..(1u32 << optional.len()) {
                    let options: Vec<(String, OptionValue)> = sub
                        .options
                        .iter()
                        .filter(|o| {
                            o.required
                                || optional
                                    .iter()
                                    .position(|x| x.name == o.name)
                                    .is_some_and(|i| mask & (1 << i) != 0)
                        })
                        .map(|o| (o.name.clone(), sample(o)))
                        .collect();
                    let text = model.text_for("erlmcp", &path, &options).unwrap();
                    match grammar::parse(&text, &pctx) {
                        Ok(parsed) => assert_eq!(
                            grammar::command_name(&parsed),
                            spec.name,
                            "{path:?} -> {text:?}"
                        ),
                        // A plan asked of an action that changes nothing (`canary … status
                        // --dry-run`) is refused as the same typed words are.
                        Err(e) if text.contains("--dry-run") && e.message.contains("--dry-run") => {
                        }
                        // Options the grammar wants one of (`resources` without --requests
                        // or --limits): the same refusal as typed, naming them.
                        Err(e) if e.message.starts_with("missing --") => {}
                        Err(e) => panic!("{path:?} -> {text:?}: {}", e.render()),
                    }
                }
            }
        }
    }

    #[test]
    fn subcommands_read_as_the_grammar_is_written() {
        let model = CommandModel::from_grammar(&ctx());
        let text = |path: &[&str], options: &[(&str, OptionValue)]| {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            let options: Vec<(String, OptionValue)> = options
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            model.text_for("erlmcp", &path, &options)
        };
        let t = |s: &str| OptionValue::Text(s.into());
        assert_eq!(
            text(
                &["deploy"],
                &[
                    ("environment", t("production")),
                    ("version", t("v3.0.1")),
                    ("strategy", t("canary")),
                    ("reason", t("fix \"login\"")),
                ]
            )
            .unwrap(),
            "deploy \"production\" \"v3.0.1\" --strategy \"canary\" \"fix 'login'\""
        );
        assert_eq!(
            text(&["canary", "pause"], &[("environment", t("staging"))]).unwrap(),
            "canary \"staging\" pause"
        );
        assert_eq!(
            text(
                &["incident", "commander"],
                &[("user", OptionValue::Id("42".into()))]
            )
            .unwrap(),
            "incident commander <@42>"
        );
        assert_eq!(
            text(
                &["scale"],
                &[
                    ("environment", t("staging")),
                    ("replicas", OptionValue::Integer(4))
                ]
            )
            .unwrap(),
            "scale \"staging\" 4"
        );
        assert_eq!(
            text(&["audit", "show"], &[("count", OptionValue::Integer(5))]).unwrap(),
            "audit 5"
        );
        assert_eq!(
            text(&["deploy"], &[("environment", t("production"))]).unwrap_err(),
            MapError::MissingOption("version".into())
        );
        assert_eq!(
            text(&["deploy"], &[("colour", t("red"))]).unwrap_err(),
            MapError::UnknownOption("colour".into())
        );
        assert!(matches!(
            text(&["nope"], &[]),
            Err(MapError::UnknownSubcommand(_))
        ));
        assert!(matches!(
            model.text_for("other", &[], &[]),
            Err(MapError::WrongCommand(..))
        ));
    }

    #[test]
    fn option_names_are_the_grammars_words_and_environments_are_choices() {
        let model = CommandModel::from_grammar(&ctx());
        let names = |path: &[&str]| -> Vec<String> {
            let (_, sub) = model
                .subcommands()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("{path:?}"));
            sub.options.iter().map(|o| o.name.clone()).collect()
        };
        assert_eq!(
            names(&["deploy"]),
            ["environment", "version", "strategy", "dry-run", "reason"]
        );
        assert_eq!(
            names(&["scale"]),
            ["environment", "replicas", "dry-run", "reason"]
        );
        assert_eq!(
            names(&["maintenance"]),
            ["environment", "state", "dry-run", "reason"]
        );
        assert_eq!(names(&["incident", "declare"]), ["severity", "title"]);
        assert_eq!(names(&["incident", "update"]), ["text", "id"]);
        assert_eq!(names(&["incident", "commander"]), ["user", "id"]);
        assert_eq!(names(&["approve"]), ["id", "comment"]);
        let (_, deploy) = model.subcommands().find(|(p, _)| p == &["deploy"]).unwrap();
        let env = &deploy.options[0];
        assert_eq!(env.choices.len(), 3);
        assert_eq!(env.choices[1].label, "production (prod)");
        assert_eq!(env.choices[1].value, "production");
        let group = |name: &str| {
            model
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Group { name: n, .. } if n == name))
        };
        assert!(group("incident") && group("canary") && group("audit"));
    }

    #[test]
    fn the_serenity_body_matches_the_canonical_form() {
        let model = CommandModel::from_grammar(&ctx());
        let body = serde_json::to_value(model.to_serenity()).unwrap();
        assert_eq!(
            CommandModel::canonical_of_registered(&body),
            model.canonical()
        );
    }

    #[test]
    fn overflow_goes_into_one_group() {
        let sub = |n: usize| {
            Entry::Command(Subcommand {
                name: format!("c{n}"),
                description: "d".into(),
                spec: "help",
                options: vec![],
                pieces: vec![Piece::Word("help".into())],
            })
        };
        let entries = fold_overflow((0..30).map(sub).collect());
        assert_eq!(entries.len(), MAX_ENTRIES);
        let Entry::Group {
            name, subcommands, ..
        } = &entries[24]
        else {
            panic!()
        };
        assert_eq!(name, "more");
        assert_eq!(subcommands.len(), 6);
    }
}
