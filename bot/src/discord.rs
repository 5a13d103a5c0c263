//! Discord from the configuration: the REST client's options, the `/erlmcp` command model,
//! registration (at start-up when the command changed, or by `discord register`), and where
//! interactions come in (the endpoint, or the gateway held by the leader).

use erlmcp_adapters::discord::commands::{CommandModel, ModelContext};
use erlmcp_adapters::discord::config::DiscordSection;
use erlmcp_adapters::discord::rest::{RestOptions, default_retry};
use erlmcp_adapters::discord::{DiscordOptions, DiscordPlatform, Registration, snowflake};
use std::sync::Arc;
use std::time::Duration;

use erlmcp_adapters::chat::InboundHandler;
use erlmcp_adapters::discord::gateway::DiscordGateway;
use erlmcp_adapters::discord::inbound::{DiscordInbound, InboundOptions};
use erlmcp_adapters::discord::verify::InteractionVerifier;
use erlmcp_commands::config::Config;
use tracing::{error, info};

use crate::clock::Clock;

/// How long the interactions endpoint waits for a private answer before deferring: well
/// inside Discord's three seconds.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// The REST client's options; `client` replaces the HTTP client (tests).
pub fn platform_options(d: &DiscordSection, client: Option<reqwest::Client>) -> DiscordOptions {
    DiscordOptions {
        rest: RestOptions {
            api_url: d.api_url().to_string(),
            bot_token: d.bot_token.expose().to_string(),
            application_id: d.application_id.as_deref().and_then(snowflake).unwrap_or(0),
            retry: default_retry(),
            client,
        },
        guild_id: d.guild_id.as_deref().and_then(snowflake),
        incidents_category: d.incidents_category.as_deref().and_then(snowflake),
    }
}

pub fn platform(section: &DiscordSection) -> anyhow::Result<DiscordPlatform> {
    DiscordPlatform::new(platform_options(section, None)).map_err(anyhow::Error::from)
}

/// The command as this binary's grammar and the configured environments make it.
pub fn command_model(cfg: &Config) -> CommandModel {
    CommandModel::from_grammar(&ModelContext {
        command: cfg.bot.command.clone(),
        environments: cfg
            .environments
            .iter()
            .map(|(name, env)| (name.clone(), env.aliases.clone()))
            .collect(),
    })
}

/// Registers the command; `force` even when Discord already has the same one.
pub async fn register(
    cfg: &Config,
    platform: &DiscordPlatform,
    force: bool,
) -> anyhow::Result<Registration> {
    let model = command_model(cfg);
    let problems = model.problems();
    if !problems.is_empty() {
        anyhow::bail!(
            "the /{} command does not fit Discord's limits: {}",
            model.name,
            problems.join("; ")
        );
    }
    Ok(platform.register(&model, force).await?)
}

/// Where interactions are handled: the endpoint in HTTP mode, the gateway's events in
/// gateway mode. `None` (logged) when the HTTP endpoint's public key cannot be used, which
/// `check-config` reports as well.
pub fn inbound(
    cfg: &Config,
    section: &DiscordSection,
    clock: Arc<dyn Clock>,
    platform: Arc<DiscordPlatform>,
    handler: Arc<dyn InboundHandler>,
) -> Option<Arc<DiscordInbound>> {
    let verifier = if section.is_gateway() {
        None
    } else {
        let key = section.public_key.as_deref().unwrap_or_default();
        match InteractionVerifier::from_hex(key) {
            Ok(v) => Some(v),
            Err(e) => {
                error!("discord.public_key {e}: the interactions endpoint is off");
                return None;
            }
        }
    };
    Some(DiscordInbound::new(
        handler,
        platform,
        InboundOptions {
            verifier,
            guild_id: section.guild_id.clone(),
            model: command_model(cfg),
            now: Arc::new(move || clock.now()),
            answer_within: ANSWER_WITHIN,
        },
    ))
}

/// Holds the gateway connection while this process leads: connected when leadership is
/// acquired, closed when it is lost. Aborting the handle stops both.
pub fn hold_gateway(
    gateway: Arc<DiscordGateway>,
    leadership: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::leader::while_leader("discord gateway", leadership, move || gateway.start())
}

/// At start-up: registers the command when Discord's copy differs from this binary's.
pub async fn register_at_start(cfg: &Config, platform: &DiscordPlatform) {
    match register(cfg, platform, false).await {
        Ok(r) if r.changed => {
            info!(scope = %r.scope, subcommands = r.lines.len(), "discord: /{} registered", command_model(cfg).name)
        }
        Ok(r) => info!(scope = %r.scope, "discord: command already registered"),
        Err(e) => {
            error!(error = %format!("{e:#}"), "discord: could not register the command; `erlmcp-bot discord register` retries")
        }
    }
}
