//! `[discord]`: the keys Discord is configured with, and their checks.

use erlmcp_commands::config::{Config, ConfigProblem, IdentityKind, Secret};
use serde::{Deserialize, Serialize};

use crate::chat::{Platform, PlatformSection};

/// A Discord user: `discord:123…`.
pub const USER: IdentityKind = IdentityKind::person("discord");
/// A role in the guild: `discord-role:123…`; whoever holds it.
pub const ROLE: IdentityKind = IdentityKind::group("discord-role");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub bot_token: Secret,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub guild_id: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub incidents_channel: Option<String>,
    /// The category (a channel id) new incident channels are created in.
    #[serde(default)]
    pub incidents_category: Option<String>,
}

impl DiscordSection {
    pub const DEFAULT_API_URL: &'static str = "https://discord.com/api/v10/";

    pub fn api_url(&self) -> &str {
        self.api_url.as_deref().unwrap_or(Self::DEFAULT_API_URL)
    }

    pub fn is_gateway(&self) -> bool {
        self.mode.as_deref() == Some("gateway")
    }
}

/// Discord ids (guilds, channels, applications) are decimal snowflakes.
fn is_snowflake(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u64>().is_ok_and(|n| n > 0)
}

impl PlatformSection for DiscordSection {
    const PLATFORM: Platform = Platform::Discord;
    const IDENTITIES: &'static [IdentityKind] = &[USER, ROLE];

    fn enabled(&self) -> Option<bool> {
        Some(self.enabled)
    }

    fn incidents_channel(&self) -> Option<String> {
        self.incidents_channel.clone()
    }

    fn problems(&self, _cfg: &Config) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        let mut problem = |path: &str, message: String| {
            out.push(ConfigProblem {
                path: format!("discord.{path}"),
                message,
            })
        };
        if self.bot_token.is_empty() {
            problem("bot_token", "required when discord.enabled".into());
        }
        if self.public_key.is_none() && !self.is_gateway() {
            problem("public_key", "required in http mode".into());
        }
        if let Some(key) = &self.public_key
            && !(key.trim().len() == 64 && key.trim().bytes().all(|b| b.is_ascii_hexdigit()))
        {
            problem(
                "public_key",
                "must be the application's public key: 64 hexadecimal characters".into(),
            );
        }
        match self.application_id.as_deref() {
            None => problem(
                "application_id",
                "required when discord.enabled (follow-ups and command registration need it)"
                    .into(),
            ),
            Some(id) if !is_snowflake(id) => problem(
                "application_id",
                format!("must be a Discord id (digits), got {id:?}"),
            ),
            Some(_) => {}
        }
        for (key, value) in [
            ("guild_id", &self.guild_id),
            ("incidents_channel", &self.incidents_channel),
            ("incidents_category", &self.incidents_category),
        ] {
            if let Some(v) = value
                && !is_snowflake(v)
            {
                problem(key, format!("must be a Discord id (digits), got {v:?}"));
            }
        }
        if let Some(mode) = &self.mode
            && mode != "http"
            && mode != "gateway"
        {
            problem(
                "mode",
                format!("must be \"http\" or \"gateway\", got {mode:?}"),
            );
        }
        let api = self.api_url().trim_end_matches('/');
        if !(api.ends_with("/api/v10")
            && (api.starts_with("https://") || api.starts_with("http://")))
        {
            problem(
                "api_url",
                format!(
                    "must be an http(s) URL ending in /api/v10, got {:?}",
                    self.api_url()
                ),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_snowflakes() {
        let section = DiscordSection {
            enabled: true,
            bot_token: Secret::new("t"),
            application_id: Some("app".into()),
            public_key: Some("ab".repeat(32)),
            guild_id: Some("0".into()),
            ..DiscordSection::default()
        };
        let paths: Vec<String> = section
            .problems(&Config::default())
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["discord.application_id", "discord.guild_id"]);
    }
}
