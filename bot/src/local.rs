//! The local chat wired to the bot: who may see the page, who is in it, and the way what is
//! said there (on the page or in `console`) reaches the conversation layer.

use std::net::SocketAddr;
use std::sync::Arc;

use erlmcp_adapters::chat::{
    Asked, ChatPlatform, InboundHandler, MessageRef, Platform, Unavailable,
};
use erlmcp_adapters::local::config::LocalSection;
use erlmcp_adapters::local::web::{Access, Directory, LocalWeb, PersonView};
use erlmcp_adapters::local::{LocalChat, hand_over};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::Config;
use erlmcp_commands::render::Reply;
use tracing::error;

use crate::engine::Engine;

/// Whether the page is served on `bot.listen`, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagePlan {
    Serve {
        /// Whether the page asks for `local.token`.
        token: bool,
    },
    /// `local.enabled = false`, or another chat platform is on and `local.enabled` unset.
    Disabled,
    /// On, but `bot.listen` is reachable from elsewhere and there is no token.
    Refused(String),
}

/// Whether the local chat is on: `local.enabled`, else on when no other platform is.
pub fn enabled(cfg: &Config) -> bool {
    section(cfg)
        .enabled
        .unwrap_or_else(|| !crate::platforms::others_enabled(cfg, Platform::Local))
}

/// `[local]`; `check-config` has reported a section that cannot be read, which leaves the
/// local chat at its defaults.
fn section(cfg: &Config) -> LocalSection {
    crate::platforms::section(cfg).unwrap_or_default()
}

/// Whether `listen` (`127.0.0.1:8080`, `localhost:8080`, `[::1]:80`) names this machine only.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host == "localhost")
}

/// The page's address for a listener bound to `addr` (an unspecified address is shown as
/// loopback, where the page can be opened).
pub fn page_url(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}/", a.port()),
        Ok(a) => format!("http://{a}/"),
        Err(_) => format!("http://{addr}/"),
    }
}

pub fn page_plan(cfg: &Config) -> PagePlan {
    if !enabled(cfg) {
        return PagePlan::Disabled;
    }
    let token = !section(cfg).token.is_empty();
    if token || is_loopback(&cfg.bot.listen) {
        PagePlan::Serve { token }
    } else {
        PagePlan::Refused(format!(
            "the local chat page is off: bot.listen ({}) is not a loopback address and local.token is not set",
            cfg.bot.listen
        ))
    }
}

/// The people the page and the console can speak as: every `local:` identity in the
/// configuration, with the roles it holds.
pub fn directory(cfg: &Config) -> Directory {
    let mut names: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        if let Some(name) = id.strip_prefix("local:")
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    };
    for ids in cfg.people.values() {
        for id in ids {
            add(&erlmcp_commands::config::normalize_identity(id));
        }
    }
    for role in cfg.roles.keys() {
        for id in cfg.role_identities(role) {
            add(&id);
        }
    }
    Directory {
        people: names
            .into_iter()
            .map(|name| PersonView {
                roles: cfg.roles_for(&[format!("local:{name}")]),
                name,
            })
            .collect(),
        command: cfg.bot.command.clone(),
    }
}

/// The local chat in this process: the platform, its page when it is served, and the
/// way in for the console.
pub struct Local {
    chat: Arc<LocalChat>,
    engine: Arc<Engine>,
    handler: Arc<dyn InboundHandler>,
    web: Option<Arc<LocalWeb>>,
}

impl Local {
    pub fn new(
        cfg: &Config,
        engine: Arc<Engine>,
        chat: Arc<LocalChat>,
        handler: Arc<dyn InboundHandler>,
    ) -> Arc<Local> {
        let web = matches!(page_plan(cfg), PagePlan::Serve { .. }).then(|| {
            let local = section(cfg);
            let access = if local.token.is_empty() {
                Access::loopback()
            } else {
                Access::with_token(local.token.expose())
            };
            Arc::new(LocalWeb {
                chat: chat.clone(),
                handler: handler.clone(),
                directory: directory(cfg),
                access,
            })
        });
        Arc::new(Local {
            chat,
            engine,
            handler,
            web,
        })
    }

    pub fn chat(&self) -> &Arc<LocalChat> {
        &self.chat
    }

    /// The page, when it may be served on `bot.listen`.
    pub fn web(&self) -> Option<Arc<LocalWeb>> {
        self.web.clone()
    }

    /// `person` says something in `channel` (a command, or a vote on the card `thread`).
    pub async fn say(
        &self,
        person: &str,
        channel: &str,
        asked: Asked,
        thread: Option<u64>,
    ) -> Result<(), Unavailable> {
        hand_over(
            &self.chat,
            self.handler.as_ref(),
            person,
            channel,
            asked,
            thread,
        )
        .await
    }

    /// Redraws the open approval cards from the store: a vote cast by another process
    /// (`exec`, another replica) is not an event in this one. Returns once they are redrawn.
    pub async fn refresh_open_cards(&self) {
        let open: Vec<(u64, String, RequestId)> = self
            .chat
            .messages()
            .into_iter()
            .filter_map(|m| {
                let id = m
                    .request
                    .as_deref()?
                    .trim_start_matches("R-")
                    .parse()
                    .ok()?;
                Some((m.id, m.channel, RequestId(id)))
            })
            .collect();
        for (message, channel, id) in open {
            let Some(card) = self.engine.request_card(id).await else {
                continue;
            };
            let at = MessageRef {
                platform: Platform::Local,
                channel,
                id: message.to_string(),
            };
            if let Err(e) = self.chat.update(&at, &Reply::pending(card)).await {
                error!(request = %id, error = %e, "local chat: could not redraw the approval card");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::from_toml(text).unwrap()
    }

    #[test]
    fn loopback_addresses_are_recognized() {
        for a in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.1.2.3:1",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:80", "bot.example:80"] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn the_page_is_served_on_loopback_or_with_a_token_only() {
        assert_eq!(
            page_plan(&cfg("")),
            PagePlan::Serve { token: false },
            "the default listens on loopback"
        );
        let open = cfg("[bot]\nlisten = \"0.0.0.0:8080\"\n");
        assert!(matches!(page_plan(&open), PagePlan::Refused(why) if why.contains("local.token")));
        let with_token = cfg("[bot]\nlisten = \"0.0.0.0:8080\"\n[local]\ntoken = \"t0k\"\n");
        assert_eq!(page_plan(&with_token), PagePlan::Serve { token: true });
        let off = cfg("[local]\nenabled = false\n");
        assert_eq!(page_plan(&off), PagePlan::Disabled);
    }

    #[test]
    fn the_directory_lists_local_people_with_their_roles() {
        let c = cfg(
            "[people]\nalice = [\"local:alice\", \"slack:U1\"]\n[roles]\nlead = [\"alice\"]\noncall = [\"carol\"]\nbot = [\"slack:U9\"]\n",
        );
        let d = directory(&c);
        let names: Vec<(&str, Vec<String>)> = d
            .people
            .iter()
            .map(|p| (p.name.as_str(), p.roles.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("alice", vec!["lead".to_string()]),
                ("carol", vec!["oncall".to_string()])
            ]
        );
    }
}
