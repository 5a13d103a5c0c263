//! Decoding the interactions Discord POSTs. Only what the bot acts on is read, with serde
//! structs of its own: serenity's models insist on fields (`attachment_size_limit`,
//! `entitlements`, …) that Discord adds and documents unevenly, and a payload missing one of
//! them must not become a 400 that Discord shows as "interaction failed".

use serde::Deserialize;
use serde_json::Value;

/// The interaction types the bot distinguishes (Discord's `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InteractionKind {
    Ping,
    ApplicationCommand,
    MessageComponent,
    Autocomplete,
    ModalSubmit,
}

impl InteractionKind {
    pub fn from_code(code: u8) -> Option<InteractionKind> {
        Some(match code {
            1 => InteractionKind::Ping,
            2 => InteractionKind::ApplicationCommand,
            3 => InteractionKind::MessageComponent,
            4 => InteractionKind::Autocomplete,
            5 => InteractionKind::ModalSubmit,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            InteractionKind::Ping => "ping",
            InteractionKind::ApplicationCommand => "application_command",
            InteractionKind::MessageComponent => "message_component",
            InteractionKind::Autocomplete => "autocomplete",
            InteractionKind::ModalSubmit => "modal_submit",
        }
    }
}

/// A payload that is not an interaction the bot can read; the message names what is wrong
/// and is returned with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed interaction: {0}")]
pub struct DecodeError(pub String);

/// Who clicked or typed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The interaction id: unique per delivery, so it is the replay key.
    pub id: String,
    pub application_id: Option<String>,
    /// Valid for 15 minutes for follow-ups and edits of the original response.
    pub token: String,
    pub guild_id: Option<String>,
    pub channel_id: Option<String>,
    pub user_id: String,
    /// The member's nickname, else the global name, else the username.
    pub user_name: String,
    /// The member's role ids in the guild (empty in a DM).
    pub roles: Vec<String>,
}

/// One option as sent, subcommands and groups already unfolded into the path.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    /// A user, role, channel or mentionable id.
    Id(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandCall {
    pub origin: Origin,
    /// The top-level command name (`erlmcp`).
    pub name: String,
    /// Group and subcommand names, outermost first (`["incident", "declare"]`).
    pub path: Vec<String>,
    pub options: Vec<(String, OptionValue)>,
}

impl CommandCall {
    pub fn option(&self, name: &str) -> Option<&OptionValue> {
        self.options.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentClick {
    pub origin: Origin,
    pub custom_id: String,
    /// The message the button is on.
    pub message_id: String,
    pub message_channel_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Interaction {
    Ping,
    Command(CommandCall),
    Component(ComponentClick),
    /// A type the bot does not answer (autocomplete, modals): acknowledged, nothing done.
    Unsupported(InteractionKind, Box<Origin>),
}

#[derive(Deserialize)]
struct RawInteraction {
    #[serde(rename = "type")]
    kind: u8,
    id: Option<String>,
    application_id: Option<String>,
    token: Option<String>,
    guild_id: Option<String>,
    channel_id: Option<String>,
    channel: Option<RawId>,
    member: Option<RawMember>,
    user: Option<RawUser>,
    data: Option<Value>,
    message: Option<RawMessage>,
}

#[derive(Deserialize)]
struct RawId {
    id: String,
}

#[derive(Deserialize)]
struct RawMember {
    user: Option<RawUser>,
    #[serde(default)]
    roles: Vec<String>,
    nick: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: String,
    username: Option<String>,
    global_name: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    id: String,
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct RawCommandData {
    name: String,
    #[serde(default)]
    options: Vec<RawOption>,
}

#[derive(Deserialize)]
struct RawOption {
    name: String,
    #[serde(rename = "type")]
    kind: u8,
    value: Option<Value>,
    #[serde(default)]
    options: Vec<RawOption>,
}

#[derive(Deserialize)]
struct RawComponentData {
    custom_id: String,
}

const SUB_COMMAND: u8 = 1;
const SUB_COMMAND_GROUP: u8 = 2;

/// The `id` of an interaction body, read on its own (PINGs have one too).
pub fn interaction_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_slice::<IdOnly>(body).ok()?.id
}

/// The `id` and `token` of an interaction body, where its response is sent in gateway mode.
pub fn callback_target(body: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Target {
        id: Option<String>,
        token: Option<String>,
    }
    let t = serde_json::from_slice::<Target>(body).ok()?;
    Some((t.id?, t.token?))
}

/// Reads one interaction body.
pub fn decode(body: &[u8]) -> Result<Interaction, DecodeError> {
    let raw: RawInteraction = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("not JSON of an interaction ({e})")))?;
    let kind = InteractionKind::from_code(raw.kind)
        .ok_or_else(|| DecodeError(format!("unknown interaction type {}", raw.kind)))?;
    if kind == InteractionKind::Ping {
        return Ok(Interaction::Ping);
    }
    let data = raw.data.clone();
    let message = raw
        .message
        .as_ref()
        .map(|m| (m.id.clone(), m.channel_id.clone()));
    let origin = origin(raw)?;
    match kind {
        InteractionKind::Ping => Ok(Interaction::Ping),
        InteractionKind::ApplicationCommand => {
            let data = data.ok_or_else(|| DecodeError("missing data".into()))?;
            let data: RawCommandData = serde_json::from_value(data)
                .map_err(|e| DecodeError(format!("data of a command: {e}")))?;
            let mut path = Vec::new();
            let mut options = Vec::new();
            unfold(data.options, &mut path, &mut options)?;
            Ok(Interaction::Command(CommandCall {
                origin,
                name: data.name,
                path,
                options,
            }))
        }
        InteractionKind::MessageComponent => {
            let data = data.ok_or_else(|| DecodeError("missing data".into()))?;
            let data: RawComponentData = serde_json::from_value(data)
                .map_err(|e| DecodeError(format!("data of a component: {e}")))?;
            let (message_id, message_channel_id) =
                message.ok_or_else(|| DecodeError("missing message of a component".into()))?;
            Ok(Interaction::Component(ComponentClick {
                origin,
                custom_id: data.custom_id,
                message_id,
                message_channel_id,
            }))
        }
        other => Ok(Interaction::Unsupported(other, Box::new(origin))),
    }
}

fn origin(raw: RawInteraction) -> Result<Origin, DecodeError> {
    let id = raw.id.ok_or_else(|| DecodeError("missing id".into()))?;
    let token = raw
        .token
        .ok_or_else(|| DecodeError("missing token".into()))?;
    // In a guild the user is inside `member`; in a DM it is `user`.
    let (user, roles, nick) = match raw.member {
        Some(member) => (member.user.or(raw.user), member.roles, member.nick),
        None => (raw.user, Vec::new(), None),
    };
    let user = user.ok_or_else(|| DecodeError("missing member.user and user".into()))?;
    let user_name = nick
        .or(user.global_name)
        .or(user.username)
        .unwrap_or_else(|| user.id.clone());
    Ok(Origin {
        id,
        application_id: raw.application_id,
        token,
        guild_id: raw.guild_id,
        channel_id: raw.channel_id.or(raw.channel.map(|c| c.id)),
        user_id: user.id,
        user_name,
        roles,
    })
}

fn unfold(
    options: Vec<RawOption>,
    path: &mut Vec<String>,
    out: &mut Vec<(String, OptionValue)>,
) -> Result<(), DecodeError> {
    for option in options {
        match option.kind {
            SUB_COMMAND | SUB_COMMAND_GROUP => {
                path.push(option.name);
                unfold(option.options, path, out)?;
            }
            kind => {
                let value = option
                    .value
                    .ok_or_else(|| DecodeError(format!("option {:?} has no value", option.name)))?;
                let value = option_value(kind, value).ok_or_else(|| {
                    DecodeError(format!(
                        "option {:?} has a value of the wrong type",
                        option.name
                    ))
                })?;
                out.push((option.name, value));
            }
        }
    }
    Ok(())
}

fn option_value(kind: u8, value: Value) -> Option<OptionValue> {
    Some(match (kind, value) {
        // STRING
        (3, Value::String(s)) => OptionValue::Text(s),
        // INTEGER
        (4, Value::Number(n)) => OptionValue::Integer(n.as_i64()?),
        // BOOLEAN
        (5, Value::Bool(b)) => OptionValue::Boolean(b),
        // USER, CHANNEL, ROLE, MENTIONABLE, ATTACHMENT: snowflakes as strings
        (6..=9 | 11, Value::String(s)) => OptionValue::Id(s),
        // NUMBER
        (10, Value::Number(n)) => OptionValue::Number(n.as_f64()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND: &str =
        include_str!("../../../tests/fixtures/discord/application_command_interaction.json");
    const COMPONENT: &str =
        include_str!("../../../tests/fixtures/discord/message_component_interaction.json");

    #[test]
    fn the_documented_command_interaction_decodes() {
        let Interaction::Command(call) = decode(COMMAND.as_bytes()).unwrap() else {
            panic!("not a command")
        };
        assert_eq!(call.name, "cardsearch");
        assert!(call.path.is_empty());
        assert_eq!(
            call.option("cardname"),
            Some(&OptionValue::Text("The Gitrog Monster".into()))
        );
        assert_eq!(call.origin.id, "786008729715212338");
        assert_eq!(call.origin.token, "A_UNIQUE_TOKEN");
        assert_eq!(call.origin.guild_id.as_deref(), Some("290926798626357999"));
        assert_eq!(
            call.origin.channel_id.as_deref(),
            Some("645027906669510667")
        );
        assert_eq!(call.origin.user_id, "53908232506183680");
        assert_eq!(call.origin.user_name, "Mason");
        assert_eq!(call.origin.roles, ["539082325061836999"]);
    }

    #[test]
    fn the_documented_component_interaction_decodes() {
        let Interaction::Component(click) = decode(COMPONENT.as_bytes()).unwrap() else {
            panic!("not a component")
        };
        assert_eq!(click.custom_id, "click_one");
        assert_eq!(click.message_id, "844397162624450620");
        assert_eq!(
            click.message_channel_id.as_deref(),
            Some("345626669114982402")
        );
        assert_eq!(
            click.origin.application_id.as_deref(),
            Some("290926444748734465")
        );
        assert_eq!(click.origin.roles, ["290926798626357999"]);
    }

    #[test]
    fn subcommands_and_groups_unfold_into_the_path() {
        let body = serde_json::json!({
            "type": 2, "id": "1", "token": "t", "guild_id": "9", "channel_id": "5",
            "member": {"user": {"id": "42", "username": "ana"}, "roles": [], "nick": "Ana"},
            "data": {"name": "erlmcp", "options": [
                {"name": "incident", "type": 2, "options": [
                    {"name": "declare", "type": 1, "options": [
                        {"name": "severity", "type": 3, "value": "P1"},
                        {"name": "title", "type": 3, "value": "db down"}
                    ]}
                ]}
            ]}
        });
        let Interaction::Command(call) = decode(body.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(call.path, ["incident", "declare"]);
        assert_eq!(call.options.len(), 2);
        assert_eq!(call.origin.user_name, "Ana");
    }

    #[test]
    fn the_callback_target_is_the_id_and_the_token() {
        assert_eq!(
            callback_target(COMMAND.as_bytes()),
            Some(("786008729715212338".into(), "A_UNIQUE_TOKEN".into()))
        );
        assert_eq!(callback_target(br#"{"type":2,"id":"1"}"#), None);
        assert_eq!(callback_target(b"not json"), None);
    }

    #[test]
    fn a_ping_needs_nothing_but_its_type() {
        assert_eq!(decode(br#"{"type":1}"#).unwrap(), Interaction::Ping);
    }

    #[test]
    fn malformed_payloads_name_what_is_wrong() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not JSON"),
            (br#"{"type":99}"#, "unknown interaction type 99"),
            (br#"{"type":2,"token":"t","user":{"id":"1"},"data":{"name":"x"}}"#, "missing id"),
            (br#"{"type":2,"id":"1","user":{"id":"1"},"data":{"name":"x"}}"#, "missing token"),
            (br#"{"type":2,"id":"1","token":"t","data":{"name":"x"}}"#, "missing member.user"),
            (
                br#"{"type":2,"id":"1","token":"t","user":{"id":"1"},"data":{"name":"x","options":[{"name":"n","type":4,"value":"ten"}]}}"#,
                "wrong type",
            ),
        ];
        for (body, want) in cases {
            let err = decode(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should say {want}");
        }
    }
}
