//! Discord from the configuration: the REST client's options, the `/erlmcp` command model,
//! and registration (at start-up when the command changed, or by `discord register`).

use erlmcp_adapters::discord::commands::{CommandModel, ModelContext};
use erlmcp_adapters::discord::rest::{RestOptions, default_retry};
use erlmcp_adapters::discord::{DiscordOptions, DiscordPlatform, Registration, snowflake};
use erlmcp_commands::config::Config;

/// The REST client's options; `client` replaces the HTTP client (tests).
pub fn platform_options(cfg: &Config, client: Option<reqwest::Client>) -> DiscordOptions {
    let d = &cfg.discord;
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

pub fn platform(cfg: &Config) -> anyhow::Result<DiscordPlatform> {
    DiscordPlatform::new(platform_options(cfg, None)).map_err(anyhow::Error::from)
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
