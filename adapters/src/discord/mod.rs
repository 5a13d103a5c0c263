//! Discord through serenity: interactions verified with the application's Ed25519 key and
//! decoded here, the `/erlmcp` command registered from the grammar, replies and approval
//! cards as messages with embeds and buttons, incident channels in the guild.

pub mod commands;
pub mod config;
pub mod gateway;
pub mod inbound;
pub mod interaction;
pub mod names;
pub mod render;
pub mod rest;
pub mod verify;

use async_trait::async_trait;
use erlmcp_commands::render::Reply;
use serde_json::Value;
use serenity::all::{
    ChannelId, ChannelType, CreateChannel, CreateInteractionResponse, CreateThread, EditChannel,
    GuildId, InteractionId, MessageId,
};

use crate::chat::{ChatError, ChatPlatform, MessageRef, Platform};
use commands::CommandModel;
use render::DiscordBody;
use rest::{DiscordRest, RestOptions};

const PLATFORM: Platform = Platform::Discord;

/// Discord's "Unknown Channel" error code.
const UNKNOWN_CHANNEL: isize = 10003;

pub struct DiscordOptions {
    pub rest: RestOptions,
    /// The guild the bot serves; incident channels are made there and commands registered
    /// there (at once, where global commands take up to an hour to appear).
    pub guild_id: Option<u64>,
    /// The category new incident channels are put in.
    pub incidents_category: Option<u64>,
}

pub struct DiscordPlatform {
    rest: DiscordRest,
    guild_id: Option<GuildId>,
    category: Option<ChannelId>,
}

/// A Discord channel or message id from `123` or `discord:123`.
pub fn snowflake(id: &str) -> Option<u64> {
    id.strip_prefix("discord:")
        .unwrap_or(id)
        .parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
}

fn channel(id: &str, method: &'static str) -> Result<ChannelId, ChatError> {
    snowflake(id)
        .map(ChannelId::new)
        .ok_or_else(|| ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method,
            error: format!("{id:?} is not a Discord channel id"),
        })
}

fn message_id(id: &str, method: &'static str) -> Result<MessageId, ChatError> {
    snowflake(id)
        .map(MessageId::new)
        .ok_or_else(|| ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method,
            error: format!("{id:?} is not a Discord message id"),
        })
}

/// What `discord register` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `guild 123` or `global`.
    pub scope: String,
    /// False when what was registered already matched.
    pub changed: bool,
    /// One line per subcommand, `/erlmcp deploy environment version [strategy] [reason]`.
    pub lines: Vec<String>,
}

impl DiscordPlatform {
    pub fn new(opts: DiscordOptions) -> Result<DiscordPlatform, rest::BadApiUrl> {
        Ok(DiscordPlatform {
            rest: DiscordRest::new(opts.rest)?,
            guild_id: opts.guild_id.filter(|g| *g != 0).map(GuildId::new),
            category: opts
                .incidents_category
                .filter(|c| *c != 0)
                .map(ChannelId::new),
        })
    }

    pub fn rest(&self) -> &DiscordRest {
        &self.rest
    }

    pub fn guild_id(&self) -> Option<u64> {
        self.guild_id.map(GuildId::get)
    }

    /// Registers `model` unless the same command is already registered; `force` registers
    /// anyway. Guild-scoped when a guild is configured.
    pub async fn register(
        &self,
        model: &CommandModel,
        force: bool,
    ) -> Result<Registration, ChatError> {
        let http = self.rest.http();
        let scope = match self.guild_id {
            Some(g) => format!("guild {g}"),
            None => "global".to_string(),
        };
        let wanted = model.canonical();
        let current = match self.guild_id {
            Some(g) => {
                self.rest
                    .call("get_guild_commands", true, true, || {
                        http.get_guild_commands(g)
                    })
                    .await?
            }
            None => {
                self.rest
                    .call("get_global_commands", true, true, || {
                        http.get_global_commands()
                    })
                    .await?
            }
        };
        let registered: Vec<Value> = current
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter(|c| c["name"] == model.name.as_str())
            .map(|c| CommandModel::canonical_of_registered(&c))
            .collect();
        let changed = force || registered.len() != 1 || registered[0] != wanted;
        if changed {
            // A bulk overwrite keeps the bot's other commands out: it owns this application.
            let body = vec![model.to_serenity()];
            match self.guild_id {
                Some(g) => {
                    self.rest
                        .call("create_guild_commands", true, true, || {
                            http.create_guild_commands(g, &body)
                        })
                        .await?
                }
                None => {
                    self.rest
                        .call("create_global_commands", true, true, || {
                            http.create_global_commands(&body)
                        })
                        .await?
                }
            };
        }
        Ok(Registration {
            scope,
            changed,
            lines: describe_model(model),
        })
    }

    /// Sends a follow-up message on an interaction (within the token's 15 minutes).
    pub async fn followup(
        &self,
        token: &str,
        body: &DiscordBody,
        ephemeral: bool,
    ) -> Result<MessageRef, ChatError> {
        let http = self.rest.http();
        let builder = body.followup(ephemeral);
        let message = self
            .rest
            .call("create_followup_message", false, false, || {
                http.create_followup_message(token, &builder, Vec::new())
            })
            .await?;
        Ok(MessageRef {
            platform: PLATFORM,
            channel: message.channel_id.get().to_string(),
            id: message.id.get().to_string(),
        })
    }

    /// Sends an interaction's response to its callback endpoint (gateway mode, where no HTTP
    /// request waits for it). Interaction routes do not count against the global limit.
    pub async fn respond(
        &self,
        interaction_id: &str,
        token: &str,
        response: &CreateInteractionResponse,
    ) -> Result<(), ChatError> {
        let method = "create_interaction_response";
        let id = snowflake(interaction_id)
            .map(InteractionId::new)
            .ok_or_else(|| ChatError::Rejected {
                platform: PLATFORM.as_str(),
                method,
                error: format!("{interaction_id:?} is not a Discord interaction id"),
            })?;
        let http = self.rest.http();
        // Not repeated after a 5xx: a response that did arrive cannot be sent twice.
        self.rest
            .call(method, false, false, || {
                http.create_interaction_response(id, token, response, Vec::new())
            })
            .await
    }

    /// Removes the deferred "thinking…" response when the answer turned out private.
    pub async fn delete_original(&self, token: &str) -> Result<(), ChatError> {
        let http = self.rest.http();
        self.rest
            .call("delete_original_interaction_response", false, true, || {
                http.delete_original_interaction_response(token)
            })
            .await
    }

    /// Replaces the deferred "thinking…" response of an interaction.
    pub async fn edit_original(
        &self,
        token: &str,
        body: &DiscordBody,
    ) -> Result<MessageRef, ChatError> {
        let http = self.rest.http();
        let builder = body.edit_original();
        // Discord makes the deferred response when it reads the HTTP answer, which can be a
        // moment after the bot wrote it: an edit that comes first finds nothing yet.
        let mut tries = 0;
        let message = loop {
            tries += 1;
            let result = self
                .rest
                .call("edit_original_interaction_response", false, true, || {
                    http.edit_original_interaction_response(token, &builder, Vec::new())
                })
                .await;
            match result {
                Err(ChatError::Rejected { error, .. })
                    if tries < 4 && error.starts_with("HTTP 404") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(250 * tries)).await;
                }
                other => break other?,
            }
        };
        Ok(MessageRef {
            platform: PLATFORM,
            channel: message.channel_id.get().to_string(),
            id: message.id.get().to_string(),
        })
    }

    async fn send(
        &self,
        channel_id: ChannelId,
        body: &DiscordBody,
    ) -> Result<MessageRef, ChatError> {
        let http = self.rest.http();
        let builder = body.message();
        let message = self
            .rest
            .call("send_message", true, false, || {
                http.send_message(channel_id, Vec::new(), &builder)
            })
            .await?;
        Ok(MessageRef {
            platform: PLATFORM,
            channel: channel_id.get().to_string(),
            id: message.id.get().to_string(),
        })
    }

    async fn edit(&self, message: &MessageRef, body: &DiscordBody) -> Result<(), ChatError> {
        let channel_id = channel(&message.channel, "edit_message")?;
        let id = message_id(&message.id, "edit_message")?;
        let http = self.rest.http();
        let builder = body.edit();
        self.rest
            .call("edit_message", true, true, || {
                http.edit_message(channel_id, id, &builder, Vec::new())
            })
            .await?;
        Ok(())
    }
}

/// One line per subcommand, as `discord register` prints them.
pub fn describe_model(model: &CommandModel) -> Vec<String> {
    model
        .subcommands()
        .map(|(path, sub)| {
            let mut line = format!("/{} {}", model.name, path.join(" "));
            for option in &sub.options {
                if option.required {
                    line.push_str(&format!(" {}", option.name));
                } else {
                    line.push_str(&format!(" [{}]", option.name));
                }
            }
            line
        })
        .collect()
}

fn is_unknown_channel(err: &ChatError) -> bool {
    matches!(err, ChatError::Rejected { error, .. } if error.contains(&format!("code {UNKNOWN_CHANNEL}")) || error.starts_with("HTTP 404"))
}

#[async_trait]
impl ChatPlatform for DiscordPlatform {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    async fn post(&self, channel_id: &str, message: &Reply) -> Result<MessageRef, ChatError> {
        let id = channel(channel_id, "send_message")?;
        self.send(id, &DiscordBody::from_reply(message)).await
    }

    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError> {
        self.edit(message, &DiscordBody::from_reply(content)).await
    }

    /// A thread started from a message has the message's id, so the first progress line
    /// opens it and the next ones find it without anything remembered.
    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError> {
        let body = DiscordBody::from_reply(message);
        let thread = channel(&parent.id, "send_message")?;
        match self.send(thread, &body).await {
            Err(e) if is_unknown_channel(&e) => {}
            other => return other,
        }
        let parent_channel = channel(&parent.channel, "create_thread_from_message")?;
        let parent_message = message_id(&parent.id, "create_thread_from_message")?;
        let http = self.rest.http();
        let builder = CreateThread::new("progress")
            .auto_archive_duration(serenity::all::AutoArchiveDuration::OneDay);
        let created = self
            .rest
            .call("create_thread_from_message", true, false, || {
                http.create_thread_from_message(parent_channel, parent_message, &builder, None)
            })
            .await?;
        self.send(created.id, &body).await
    }

    /// Discord shows a message to one user only as an interaction's answer, which the
    /// inbound responder gives; without one there is no private way to reach them.
    async fn post_private(
        &self,
        _channel: &str,
        user: &str,
        _message: &Reply,
    ) -> Result<(), ChatError> {
        Err(ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method: "post_private",
            error: format!("no interaction to answer {user} privately through"),
        })
    }

    async fn create_channel(&self, name: &str) -> Result<String, ChatError> {
        let guild = self.guild_id.ok_or_else(|| ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method: "create_channel",
            error: "discord.guild_id is not set".into(),
        })?;
        let mut builder = CreateChannel::new(names::channel_name(name)).kind(ChannelType::Text);
        if let Some(category) = self.category {
            builder = builder.category(category);
        }
        let http = self.rest.http();
        let created = self
            .rest
            .call("create_channel", true, false, || {
                http.create_channel(guild, &builder, None)
            })
            .await?;
        Ok(created.id.get().to_string())
    }

    /// Guild text channels are open to the guild's members: there is nobody to invite.
    /// The announcement mentions the people who should come.
    async fn invite(&self, _channel: &str, _user_ids: &[String]) -> Result<(), ChatError> {
        Ok(())
    }

    async fn set_topic(&self, channel_id: &str, topic: &str) -> Result<(), ChatError> {
        let id = channel(channel_id, "edit_channel")?;
        // Topics are plain text and may not ping: mentions are broken with a zero-width space.
        let topic: String = topic.replace('@', "@\u{200b}").chars().take(1024).collect();
        let builder = EditChannel::new().topic(topic);
        let http = self.rest.http();
        self.rest
            .call("edit_channel", true, true, || {
                http.edit_channel(id, &builder, None)
            })
            .await?;
        Ok(())
    }
}
