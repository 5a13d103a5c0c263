//! A bot under test: the real engine on a real database, a manual clock, and helpers that
//! read like the story they tell.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use erlmcp_adapters::target::Progress;
use erlmcp_bot::app::{self, App, BuildOptions};
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::config;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::store::Store;
use erlmcp_commands::config::Config;
use erlmcp_commands::render::Reply;

use crate::fake_chat::FakeChat;

/// Collects progress lines so tests can read them.
#[derive(Default, Clone)]
pub struct Lines(pub Arc<Mutex<Vec<String>>>);

impl Progress for Lines {
    fn report(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

impl Lines {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub struct Bot {
    pub app: App,
    pub clock: ManualClock,
    pub progress: Lines,
    /// Chats whose every message the test must have read by [`Bot::finish`].
    pub chats: Vec<FakeChat>,
}

/// Far longer than any command takes here, even on a loaded machine.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// 2026-11-02 09:00 UTC: a Monday morning.
pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

pub fn embedded_config() -> Config {
    config::from_toml(config::EMBEDDED_DEFAULT).expect("embedded default is valid")
}

/// Options for a bot under test: no pauses anywhere.
pub fn test_options() -> BuildOptions {
    BuildOptions {
        sandbox_step: std::time::Duration::ZERO,
        guard_sleep: Arc::new(|_| Box::pin(async {})),
        ..BuildOptions::default()
    }
}

impl Bot {
    pub async fn start(store: Arc<dyn Store>, cfg: Config) -> Bot {
        Bot::start_with(store, cfg, test_options()).await
    }

    pub async fn start_with(store: Arc<dyn Store>, cfg: Config, opts: BuildOptions) -> Bot {
        let clock = ManualClock::new(start_time());
        let app = app::build(cfg, store, Arc::new(clock.clone()), opts)
            .await
            .expect("bot builds");
        Bot {
            app,
            clock,
            progress: Lines::default(),
            chats: Vec::new(),
        }
    }

    /// `who` types `text` in the test channel. A command that gets no reply within
    /// [`STALL`] fails the test there, naming the command, rather than holding the whole
    /// suite until its runner gives up.
    pub async fn say(&self, who: &str, text: &str) -> Reply {
        let engine = &self.app.engine;
        let handled = engine.handle(Invocation {
            actor: engine.actor("local", who, who, &[]),
            channel: "local:test".into(),
            text: text.into(),
            progress: Arc::new(self.progress.clone()),
        });
        tokio::time::timeout(STALL, handled)
            .await
            .unwrap_or_else(|_| panic!("{who}: `{text}` got no reply within {STALL:?}"))
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// Ends a test: waits until the engine is idle, then fails when background work
    /// panicked or a chat received a message the test never read.
    pub async fn finish(&self) {
        tokio::time::timeout(STALL, self.app.engine.wait_idle())
            .await
            .unwrap_or_else(|_| panic!("the engine was still busy after {STALL:?}"));
        let panics = self.app.engine.take_panics();
        assert!(panics.is_empty(), "background work panicked: {panics:?}");
        for chat in &self.chats {
            let unread = chat.unread();
            assert!(
                unread.is_empty(),
                "the bot said what the test never read: {unread:#?}"
            );
        }
    }
}

/// The request id in a reply such as "R-3 deploy production ...".
pub fn request_id(reply: &Reply) -> String {
    reply
        .approval()
        .map(|c| c.id.to_string())
        .unwrap_or_else(|| panic!("no request in reply: {}", reply.text()))
}
