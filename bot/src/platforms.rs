//! Where chat platforms are wired: each enabled platform's client (outbound) is built from
//! its configuration section before the engine exists, and its inbound half (routes, a
//! socket) is connected to the conversation layer once the engine does. A new platform
//! adds its block to [`clients`] and [`connect`], and its routes to [`Platforms::routes`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use erlmcp_adapters::chat::{ChatPlatform, InboundHandler, Platform};
use erlmcp_adapters::discord::DiscordPlatform;
use erlmcp_adapters::discord::gateway::DiscordGateway;
use erlmcp_adapters::discord::inbound::DiscordInbound;
use erlmcp_adapters::slack::{
    InboundOptions, Mode, RetryPolicy, SlackInbound, SlackOptions, SlackPlatform,
};
use erlmcp_commands::config::Config;

use crate::clock::Clock;

pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api/";
/// How long user group membership is trusted before usergroups.users.list is asked again.
pub const SLACK_GROUP_REFRESH: Duration = Duration::from_secs(300);

/// The clients of the enabled platforms.
#[derive(Default)]
pub struct Clients {
    pub slack: Option<Arc<SlackPlatform>>,
    pub discord: Option<Arc<DiscordPlatform>>,
}

impl Clients {
    pub fn chats(&self) -> Vec<Arc<dyn ChatPlatform>> {
        let mut chats: Vec<Arc<dyn ChatPlatform>> = Vec::new();
        if let Some(s) = &self.slack {
            chats.push(s.clone());
        }
        if let Some(d) = &self.discord {
            chats.push(d.clone());
        }
        chats
    }
}

/// The inbound halves of the enabled platforms.
#[derive(Default, Clone)]
pub struct Platforms {
    /// Slack's endpoints and Socket Mode, when `slack.enabled`.
    pub slack: Option<Arc<SlackInbound>>,
    /// The local chat page, when it is on and may be served on `bot.listen`.
    pub local: Option<Arc<erlmcp_adapters::local::web::LocalWeb>>,
    /// `POST /discord/interactions`, when `discord.enabled` in HTTP mode.
    pub discord: Option<Arc<DiscordInbound>>,
}

impl Platforms {
    /// The HTTP endpoints platforms are called on.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let mut router = Router::new();
        if let Some(slack) = &self.slack {
            router = router.merge(erlmcp_adapters::slack::inbound::routes(slack.clone()));
        }
        if let Some(local) = &self.local {
            router = router.merge(erlmcp_adapters::local::web::routes(local.clone()));
        }
        if let Some(discord) = &self.discord {
            router = router.merge(erlmcp_adapters::discord::inbound::routes(discord.clone()));
        }
        router
    }
}

/// Slack's client options: the API base, the tokens, and the user groups roles name.
/// Identities are parsed here, where Slack is wired: `slack-group:S…` is a user group.
fn slack_options(cfg: &Config, clock: Arc<dyn Clock>) -> SlackOptions {
    let mut groups: Vec<String> = cfg
        .roles
        .values()
        .flatten()
        .filter_map(|m| m.strip_prefix("slack-group:").map(str::to_string))
        .collect();
    groups.sort();
    groups.dedup();
    SlackOptions {
        api_url: cfg
            .slack
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_string()),
        bot_token: cfg.slack.bot_token.expose().to_string(),
        app_token: cfg.slack.app_token.expose().to_string(),
        groups,
        group_refresh: SLACK_GROUP_REFRESH,
        group_max_age: cfg.slack.group_cache_max_age().0,
        now: Arc::new(move || clock.now()),
        retry: RetryPolicy::default(),
    }
}

/// Where each platform announces new incidents (`incidents_channel` of its section).
pub fn incidents_channels(cfg: &Config) -> HashMap<Platform, String> {
    [
        (Platform::Slack, &cfg.slack.incidents_channel),
        (Platform::Discord, &cfg.discord.incidents_channel),
    ]
    .into_iter()
    .filter_map(|(p, c)| c.clone().filter(|c| !c.is_empty()).map(|c| (p, c)))
    // The local chat announces in its own #incidents (used only when it runs).
    .chain([(
        Platform::Local,
        erlmcp_adapters::local::INCIDENTS.to_string(),
    )])
    .collect()
}

pub fn clients(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Clients> {
    let mut clients = Clients::default();
    if cfg.slack.enabled {
        clients.slack = Some(
            SlackPlatform::new(slack_options(cfg, clock))
                .context("could not set up the Slack client")?,
        );
    }
    if cfg.discord.enabled {
        clients.discord = Some(Arc::new(
            crate::discord::platform(cfg).context("could not set up the Discord client")?,
        ));
    }
    Ok(clients)
}

pub fn connect(
    cfg: &Config,
    clock: Arc<dyn Clock>,
    clients: &Clients,
    handler: Arc<dyn InboundHandler>,
) -> Connected {
    let slack_clock = clock.clone();
    let slack = clients.slack.as_ref().map(|platform| {
        let clock = slack_clock;
        let mode = match cfg.slack.mode.as_deref() {
            Some("socket") => Mode::Socket,
            _ => Mode::Http,
        };
        SlackInbound::new(
            handler.clone(),
            platform.clone(),
            InboundOptions {
                mode,
                signing_secret: cfg.slack.signing_secret.expose().to_string(),
                team_id: cfg.slack.team_id.clone(),
                enterprise_id: cfg.slack.enterprise_id.clone(),
                now: Arc::new(move || clock.now()),
            },
        )
    });
    let inbound = clients.discord.as_ref().and_then(|platform| {
        crate::discord::inbound(cfg, clock, platform.clone(), handler.clone())
    });
    let (discord, discord_gateway) = match inbound {
        Some(inbound) if cfg.discord.is_gateway() => (None, Some(DiscordGateway::new(inbound))),
        other => (other, None),
    };
    Connected {
        platforms: Platforms {
            slack,
            local: None,
            discord,
        },
        discord_gateway,
    }
}

/// What [`connect`] made: the inbound halves served over HTTP, and the connections only
/// the leader holds.
pub struct Connected {
    pub platforms: Platforms,
    /// Discord's gateway connection, in gateway mode.
    pub discord_gateway: Option<Arc<DiscordGateway>>,
}
