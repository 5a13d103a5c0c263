//! The local chat wired to the engine: who may see the page, who is in it, and what happens
//! to what is said there (the page and `console` alike).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use erlmcp_adapters::chat::{ChatPlatform, MessageRef, Platform};
use erlmcp_adapters::local::web::{Access, Directory, LocalWeb, PersonView};
use erlmcp_adapters::local::{Asked, LocalChat, LocalInbound, Said};
use erlmcp_adapters::target::Progress;
use erlmcp_commands::config::Config;
use erlmcp_commands::grammar;
use erlmcp_commands::render::{Reply, ReplyKind, Visibility};
use erlmcp_commands::{Command, RequestId};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::engine::{Engine, EngineEvent, Invocation};

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
    cfg.local
        .enabled
        .unwrap_or(!cfg.slack.enabled && !cfg.discord.enabled)
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
    let token = !cfg.local.token.is_empty();
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

/// Acts on what is said in the local chat and keeps its approval cards current.
pub struct LocalBridge {
    engine: Arc<Engine>,
    chat: Arc<LocalChat>,
}

impl LocalBridge {
    /// Must run inside the runtime: starts redrawing approval cards on engine events.
    pub fn start(engine: Arc<Engine>, chat: Arc<LocalChat>) -> Arc<LocalBridge> {
        tokio::spawn(redraw_cards(engine.subscribe(), chat.clone()));
        Arc::new(LocalBridge { engine, chat })
    }

    pub fn chat(&self) -> &Arc<LocalChat> {
        &self.chat
    }

    /// The page's routes.
    pub fn web(self: &Arc<Self>, cfg: &Config) -> Arc<LocalWeb> {
        let access = if cfg.local.token.is_empty() {
            Access::loopback()
        } else {
            Access::with_token(cfg.local.token.expose())
        };
        Arc::new(LocalWeb {
            chat: self.chat.clone(),
            inbound: self.clone(),
            directory: directory(cfg),
            access,
        })
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
            if let Err(e) = self
                .chat
                .update(&self.local_ref(&channel, message), &Reply::pending(card))
                .await
            {
                error!(request = %id, error = %e, "local chat: could not redraw the approval card");
            }
        }
    }

    /// The approval card of `approve R-n` / `deny R-n` typed as text, when it is here.
    async fn card_of(&self, text: &str) -> Option<u64> {
        let id = match grammar::parse(text, &self.engine.config().parse_context()).ok()? {
            Command::Approve { id, .. } | Command::Deny { id, .. } => id,
            _ => return None,
        };
        let row = self.engine.store().get_request(id).await.ok()??;
        let m = row.message_ref?;
        (m.platform == Platform::Local)
            .then(|| m.id.parse().ok())
            .flatten()
    }

    async fn run(&self, person: &str, channel: &str, text: &str, mut thread: Thread) {
        let actor = self.engine.actor("local", person, person, &[]);
        let (sink, forwarder) = ThreadProgress::start(
            self.chat.clone(),
            channel.to_string(),
            format!("`{}` for {person}: in progress…", text.trim()),
            thread.clone(),
        );
        let reply = self
            .engine
            .handle(Invocation {
                actor,
                channel: format!("local:{channel}"),
                text: text.to_string(),
                progress: sink,
            })
            .await;
        if let Ok(t) = forwarder.await {
            thread = t;
        }
        self.deliver(person, channel, &reply, &thread).await;
    }

    async fn deliver(&self, person: &str, channel: &str, reply: &Reply, thread: &Thread) {
        if reply.kind == ReplyKind::Accepted
            && let Some(card) = &reply.approval
        {
            match self.chat.post(channel, reply).await {
                Ok(message) => {
                    if let Err(e) = self
                        .engine
                        .store()
                        .set_request_message(card.id, &message)
                        .await
                    {
                        error!(request = %card.id, error = %e, "local chat: approval card posted but not recorded; it will not be updated");
                    }
                }
                Err(e) => {
                    error!(request = %card.id, error = %e, "local chat: could not post the approval card")
                }
            }
            return;
        }
        let result = match (reply.visibility, thread) {
            (Visibility::Ephemeral, _) => {
                self.chat.post_private(channel, person, reply);
                Ok(())
            }
            // The progress header becomes the outcome, bar and thread kept.
            (Visibility::InChannel, Thread::Owned(id)) => {
                self.chat.update(&self.local_ref(channel, *id), reply).await
            }
            (Visibility::InChannel, Thread::Under(id)) => {
                self.chat.reply_in_thread(*id, reply).map(|_| ())
            }
            (Visibility::InChannel, Thread::None) => {
                self.chat.post(channel, reply).await.map(|_| ())
            }
        };
        if let Err(e) = result {
            error!(error = %e, "local chat: could not deliver the reply");
        }
    }

    fn local_ref(&self, channel: &str, id: u64) -> MessageRef {
        MessageRef {
            platform: Platform::Local,
            channel: channel.to_string(),
            id: id.to_string(),
        }
    }
}

#[async_trait]
impl LocalInbound for LocalBridge {
    async fn said(&self, said: Said) {
        match said.asked {
            Asked::Command(text) => {
                self.chat
                    .post_from_person(&said.person, &said.channel, &text);
                let thread = match self.card_of(&text).await {
                    Some(id) => Thread::Under(id),
                    None => Thread::None,
                };
                self.run(&said.person, &said.channel, &text, thread).await;
            }
            Asked::Vote { request, approve } => {
                let text = format!("{} {request}", if approve { "approve" } else { "deny" });
                let thread = match said.thread {
                    Some(id) => Thread::Under(id),
                    None => Thread::None,
                };
                self.run(&said.person, &said.channel, &text, thread).await;
            }
        }
    }
}

/// Where a command's progress and outcome go.
#[derive(Debug, Clone)]
enum Thread {
    None,
    /// Under a message that was there before (the approval card voted on).
    Under(u64),
    /// Under a header opened for this command, which then shows its outcome.
    Owned(u64),
}

/// Progress lines of one command, posted in order by one task.
struct ThreadProgress {
    tx: mpsc::UnboundedSender<String>,
}

impl Progress for ThreadProgress {
    fn report(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

impl ThreadProgress {
    fn start(
        chat: Arc<LocalChat>,
        channel: String,
        header: String,
        thread: Thread,
    ) -> (Arc<dyn Progress>, JoinHandle<Thread>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut thread = thread;
            while let Some(line) = rx.recv().await {
                let parent = match thread {
                    Thread::Under(id) | Thread::Owned(id) => id,
                    Thread::None => match chat.post(&channel, &Reply::ok(&header)).await {
                        Ok(m) => {
                            let id = m.id.parse().unwrap_or_default();
                            thread = Thread::Owned(id);
                            id
                        }
                        Err(e) => {
                            error!(error = %e, "local chat: could not open the progress thread");
                            continue;
                        }
                    },
                };
                let parent = MessageRef {
                    platform: Platform::Local,
                    channel: channel.clone(),
                    id: parent.to_string(),
                };
                if let Err(e) = chat.post_in_thread(&parent, &line).await {
                    error!(error = %e, "local chat: could not post progress");
                }
            }
            thread
        });
        (Arc::new(ThreadProgress { tx }), task)
    }
}

/// Redraws each local approval card as its request changes, in order.
async fn redraw_cards(mut events: broadcast::Receiver<EngineEvent>, chat: Arc<LocalChat>) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "local chat: approval card updates fell behind; some were skipped"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let EngineEvent::RequestChanged { card, message } = event;
        let Some(message) = message.filter(|m| m.platform == Platform::Local) else {
            continue;
        };
        let id = card.id;
        if let Err(e) = chat.update(&message, &Reply::pending(card)).await {
            error!(request = %id, error = %e, "local chat: could not update the approval card");
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
