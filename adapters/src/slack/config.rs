//! `[slack]`: the keys Slack is configured with, and their checks.

use std::time::Duration;

use erlmcp_commands::config::{Config, ConfigProblem, HumanDuration, IdentityKind, Secret};
use serde::{Deserialize, Serialize};

use crate::chat::{Platform, PlatformSection};

/// A Slack user: `slack:U…`.
pub const USER: IdentityKind = IdentityKind::person("slack");
/// A Slack user group: `slack-group:S…`; its members are asked of Slack.
pub const USER_GROUP: IdentityKind = IdentityKind::group("slack-group");

pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub bot_token: Secret,
    #[serde(default)]
    pub signing_secret: Secret,
    #[serde(default)]
    pub app_token: Secret,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub incidents_channel: Option<String>,
    /// The workspace (`T…`) the bot serves: requests naming any other team are refused.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The Enterprise Grid organization (`E…`), checked as well when set.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// How long a user group's last known members are still used while Slack cannot be
    /// read (default 1h); after that, roles from that group are not granted.
    #[serde(default)]
    pub group_cache_max_age: Option<HumanDuration>,
}

impl SlackSection {
    pub const DEFAULT_GROUP_CACHE_MAX_AGE: HumanDuration = HumanDuration(Duration::from_secs(3600));

    pub fn group_cache_max_age(&self) -> HumanDuration {
        self.group_cache_max_age
            .unwrap_or(Self::DEFAULT_GROUP_CACHE_MAX_AGE)
    }

    pub fn api_url(&self) -> &str {
        self.api_url.as_deref().unwrap_or(DEFAULT_API_URL)
    }

    pub fn is_socket(&self) -> bool {
        self.mode.as_deref() == Some("socket")
    }
}

/// The user groups roles name (`slack-group:S…`), whose members Slack is asked for.
pub fn user_groups(cfg: &Config) -> Vec<String> {
    let mut groups: Vec<String> = cfg
        .roles
        .values()
        .flatten()
        .filter_map(|m| {
            m.strip_prefix(USER_GROUP.prefix)?
                .strip_prefix(':')
                .map(str::to_string)
        })
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// A Slack id: its kind's letter, then letters and digits.
fn is_slack_id(s: &str, letter: char) -> bool {
    s.starts_with(letter) && s.len() > 1 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

impl PlatformSection for SlackSection {
    const PLATFORM: Platform = Platform::Slack;
    const IDENTITIES: &'static [IdentityKind] = &[USER, USER_GROUP];

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
                path: format!("slack.{path}"),
                message,
            })
        };
        if self.bot_token.is_empty() {
            problem("bot_token", "required when slack.enabled".into());
        }
        match self.mode.as_deref().unwrap_or("http") {
            "http" => {
                if self.signing_secret.is_empty() {
                    problem("signing_secret", "required in http mode".into());
                }
            }
            "socket" => {
                if self.app_token.is_empty() {
                    problem("app_token", "required in socket mode".into());
                }
            }
            other => problem(
                "mode",
                format!("must be \"http\" or \"socket\", got {other:?}"),
            ),
        }
        if let Some(t) = &self.team_id
            && !is_slack_id(t, 'T')
        {
            problem(
                "team_id",
                format!("must be a Slack team id such as T0123ABCD, got {t:?}"),
            );
        }
        if let Some(e) = &self.enterprise_id
            && !is_slack_id(e, 'E')
        {
            problem(
                "enterprise_id",
                format!("must be a Slack enterprise id such as E0123ABCD, got {e:?}"),
            );
        }
        if self.group_cache_max_age.is_some_and(|d| d.0.is_zero()) {
            problem("group_cache_max_age", "must be longer than 0s".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_from_roles_once_each() {
        let mut cfg = Config::default();
        cfg.roles.insert(
            "oncall".into(),
            vec!["slack-group:S2".into(), "slack:U1".into()],
        );
        cfg.roles.insert(
            "leads".into(),
            vec!["slack-group:S1".into(), "slack-group:S2".into()],
        );
        assert_eq!(user_groups(&cfg), ["S1", "S2"]);
    }

    #[test]
    fn a_disabled_section_is_not_checked() {
        let section = SlackSection {
            mode: Some("carrier-pigeon".into()),
            ..SlackSection::default()
        };
        assert_eq!(section.problems(&Config::default()), vec![]);
        let on = SlackSection {
            enabled: true,
            ..section
        };
        let paths: Vec<String> = on
            .problems(&Config::default())
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["slack.bot_token", "slack.mode"]);
    }
}
