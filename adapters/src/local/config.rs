//! `[local]`: the local chat, a page on `bot.listen` and `erlmcp-bot console`.

use erlmcp_commands::config::{Config, ConfigProblem, IdentityKind, Secret};
use serde::{Deserialize, Serialize};

use crate::chat::{Platform, PlatformSection};

/// A name in the local chat (and `exec --as NAME`): `local:alice`, or `alice` bare.
pub const USER: IdentityKind = IdentityKind::person("local");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// Unset: on when no other chat platform is enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Needed to use the page when `bot.listen` is not a loopback address.
    #[serde(default)]
    pub token: Secret,
}

impl PlatformSection for LocalSection {
    const PLATFORM: Platform = Platform::Local;
    const IDENTITIES: &'static [IdentityKind] = &[USER];

    fn enabled(&self) -> Option<bool> {
        self.enabled
    }

    /// Its own #incidents (used only when the local chat runs).
    fn incidents_channel(&self) -> Option<String> {
        Some(super::INCIDENTS.to_string())
    }

    fn problems(&self, _cfg: &Config) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_names_in_the_configuration_are_local_chat_users() {
        assert_eq!(
            super::USER.prefix,
            erlmcp_commands::config::BARE_NAME_PREFIX
        );
    }
}
