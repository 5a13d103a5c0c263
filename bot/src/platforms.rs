//! Where chat platforms are wired. [`PLATFORMS`] lists them, one line each: from it come
//! the sections the configuration accepts and how they are read and checked, the identity
//! kinds `[people]` and `[roles]` may name, whether each platform is on and where it
//! announces incidents. Each enabled platform's client (outbound) is built from its section
//! before the engine exists, and its inbound half (routes, a socket) is connected to the
//! conversation layer once the engine does.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use anyhow::Context;
use axum::Router;
use erlmcp_adapters::chat::{ChatPlatform, InboundHandler, Platform, PlatformSection};
use erlmcp_adapters::discord::DiscordPlatform;
use erlmcp_adapters::discord::config::DiscordSection;
use erlmcp_adapters::discord::gateway::DiscordGateway;
use erlmcp_adapters::discord::inbound::DiscordInbound;
use erlmcp_adapters::local::config::LocalSection;
use erlmcp_adapters::slack::config::{SlackSection, user_groups};
use erlmcp_adapters::slack::{
    InboundOptions, Mode, RetryPolicy, SlackInbound, SlackOptions, SlackPlatform,
};
use erlmcp_commands::config::{Config, ConfigProblem, IdentityKind, IdentityKinds, RawValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::clock::Clock;

/// Every chat platform this binary knows, in the order their problems and identity kinds
/// are listed.
pub const PLATFORMS: &[PlatformSpec] = &[
    PlatformSpec::of::<SlackSection>(),
    PlatformSpec::of::<DiscordSection>(),
    PlatformSpec::of::<LocalSection>(),
];

/// How long user group membership is trusted before usergroups.users.list is asked again.
pub const SLACK_GROUP_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

/// What the wiring knows of a platform without knowing which one it is.
pub struct PlatformSpec {
    pub platform: Platform,
    /// The identity kinds it owns (`slack:U…`, `slack-group:S…`).
    pub identities: &'static [IdentityKind],
    /// Reads its section: `Err` when it cannot be read, else the problems in it.
    check: fn(&Config) -> Result<Vec<ConfigProblem>, Vec<ConfigProblem>>,
    enabled: fn(&Config) -> Option<bool>,
    incidents_channel: fn(&Config) -> Option<String>,
}

impl PlatformSpec {
    pub const fn of<S: PlatformSection>() -> PlatformSpec {
        PlatformSpec {
            platform: S::PLATFORM,
            identities: S::IDENTITIES,
            check: check_section::<S>,
            enabled: enabled_in::<S>,
            incidents_channel: incidents_channel_in::<S>,
        }
    }

    /// Whether its section turns it on (`Some`) or leaves that to the wiring (`None`); a
    /// section that cannot be read turns nothing on.
    pub fn enabled(&self, cfg: &Config) -> Option<bool> {
        (self.enabled)(cfg)
    }
}

fn check_section<S: PlatformSection>(
    cfg: &Config,
) -> Result<Vec<ConfigProblem>, Vec<ConfigProblem>> {
    section::<S>(cfg).map(|s| s.problems(cfg))
}

fn enabled_in<S: PlatformSection>(cfg: &Config) -> Option<bool> {
    section::<S>(cfg).ok().and_then(|s| s.enabled())
}

fn incidents_channel_in<S: PlatformSection>(cfg: &Config) -> Option<String> {
    section::<S>(cfg).ok().and_then(|s| s.incidents_channel())
}

/// The identity kinds of every platform, for checking `[people]` and `[roles]`.
pub fn identity_kinds() -> IdentityKinds {
    IdentityKinds::new(PLATFORMS.iter().flat_map(|p| p.identities.iter().copied()))
}

/// A platform's section: its defaults when the configuration has none. Read the way the
/// configuration file is (figment), so keys, defaults and messages are the same whether
/// the section came from the file or from `ERLMCP_NAME__KEY` variables.
pub fn section<S: PlatformSection>(cfg: &Config) -> Result<S, Vec<ConfigProblem>> {
    let name = S::PLATFORM.as_str();
    match cfg.platforms.get(name) {
        None => Ok(S::default()),
        Some(raw) => read(name, raw),
    }
}

fn read<T: DeserializeOwned>(name: &str, raw: &RawValue) -> Result<T, Vec<ConfigProblem>> {
    let value = figment::value::Value::serialize(raw)
        .map_err(|e| crate::config::figment_problems(e, Some(name)))?;
    T::deserialize(&value).map_err(|e| crate::config::figment_problems(e, Some(name)))
}

/// Changes a platform's section (tests and tools build configurations this way).
pub fn edit_section<S: PlatformSection>(cfg: &mut Config, edit: impl FnOnce(&mut S)) {
    let name = S::PLATFORM.as_str();
    let mut current: S = section(cfg).unwrap_or_default();
    edit(&mut current);
    // A plain struct of strings, booleans and numbers always has a value.
    let raw = figment::value::Value::serialize(&current)
        .ok()
        .and_then(|v| RawValue::deserialize(&v).ok())
        .unwrap_or(RawValue::None);
    cfg.platforms.insert(name, raw);
}

/// Every top-level key the configuration accepts: its own sections and the platforms'.
static KNOWN_SECTIONS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Config::SECTIONS
        .iter()
        .copied()
        .chain(PLATFORMS.iter().map(|p| p.platform.as_str()))
        .collect()
});

/// Everything `check-config` reports. Keys that cannot be read (an unknown section, a
/// platform's unknown key or mistyped value) stop the checks, as a file that cannot be
/// parsed does; otherwise every problem of the configuration and of each platform's section.
pub fn problems(cfg: &Config) -> Vec<ConfigProblem> {
    let mut unreadable = Vec::new();
    for name in cfg.platforms.names() {
        if !PLATFORMS.iter().any(|p| p.platform.as_str() == name) {
            unreadable.push(ConfigProblem {
                path: name.to_string(),
                message: crate::config::unknown_key(name, &KNOWN_SECTIONS),
            });
        }
    }
    let mut found = Vec::new();
    for platform in PLATFORMS {
        match (platform.check)(cfg) {
            Ok(problems) => found.extend(problems),
            Err(problems) => unreadable.extend(problems),
        }
    }
    if !unreadable.is_empty() {
        return unreadable;
    }
    let mut out = cfg.problems(&identity_kinds());
    out.extend(found);
    out
}

/// Whether any platform other than `except` is turned on by its section.
pub fn others_enabled(cfg: &Config, except: Platform) -> bool {
    PLATFORMS
        .iter()
        .any(|p| p.platform != except && p.enabled(cfg) == Some(true))
}

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
fn slack_options(cfg: &Config, slack: &SlackSection, clock: Arc<dyn Clock>) -> SlackOptions {
    SlackOptions {
        api_url: slack.api_url().to_string(),
        bot_token: slack.bot_token.expose().to_string(),
        app_token: slack.app_token.expose().to_string(),
        groups: user_groups(cfg),
        group_refresh: SLACK_GROUP_REFRESH,
        group_max_age: slack.group_cache_max_age().0,
        now: Arc::new(move || clock.now()),
        retry: RetryPolicy::default(),
    }
}

/// Where each platform announces new incidents (`incidents_channel` of its section).
pub fn incidents_channels(cfg: &Config) -> HashMap<Platform, String> {
    PLATFORMS
        .iter()
        .filter_map(|p| {
            (p.incidents_channel)(cfg)
                .filter(|c| !c.is_empty())
                .map(|c| (p.platform, c))
        })
        .collect()
}

/// A section read for wiring; `check-config` has reported what is wrong with it.
fn read_section<S: PlatformSection>(cfg: &Config) -> anyhow::Result<S> {
    section::<S>(cfg).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!("{}", text.join("; "))
    })
}

pub fn clients(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Clients> {
    let mut clients = Clients::default();
    let slack: SlackSection = read_section(cfg)?;
    if slack.enabled {
        clients.slack = Some(
            SlackPlatform::new(slack_options(cfg, &slack, clock))
                .context("could not set up the Slack client")?,
        );
    }
    let discord: DiscordSection = read_section(cfg)?;
    if discord.enabled {
        clients.discord = Some(Arc::new(
            crate::discord::platform(&discord).context("could not set up the Discord client")?,
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
    // The clients exist only when their sections were read.
    let slack_section: SlackSection = section(cfg).unwrap_or_default();
    let discord_section: DiscordSection = section(cfg).unwrap_or_default();
    let slack_clock = clock.clone();
    let slack = clients.slack.as_ref().map(|platform| {
        let clock = slack_clock;
        let mode = if slack_section.is_socket() {
            Mode::Socket
        } else {
            Mode::Http
        };
        SlackInbound::new(
            handler.clone(),
            platform.clone(),
            InboundOptions {
                mode,
                signing_secret: slack_section.signing_secret.expose().to_string(),
                team_id: slack_section.team_id.clone(),
                enterprise_id: slack_section.enterprise_id.clone(),
                now: Arc::new(move || clock.now()),
            },
        )
    });
    let inbound = clients.discord.as_ref().and_then(|platform| {
        crate::discord::inbound(
            cfg,
            &discord_section,
            clock,
            platform.clone(),
            handler.clone(),
        )
    });
    let (discord, discord_gateway) = match inbound {
        Some(inbound) if discord_section.is_gateway() => (None, Some(DiscordGateway::new(inbound))),
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
