//! The conversation layer on its own, through a platform that is not Slack: inbound
//! messages handed to the bot's `InboundHandler` exactly as a platform adapter hands them,
//! and every answer read from an in-memory platform. What is shown here is written once for
//! every platform: acks, replay dedup, groups sent by the platform, progress threads,
//! approval cards posted, remembered and redrawn, private answers.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use erlmcp_adapters::chat::{
    Ack, Asked, ChatError, Inbound, InboundHandler, InboundUser, MessageRef, Platform, Responder,
};
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::RequestId;
use erlmcp_commands::render::{Reply, ReplyKind};
use erlmcp_tests::fake_chat::{ChatCall, FakeChat};
use erlmcp_tests::harness::{Bot, embedded_config, test_options};

const CHANNEL: &str = "900";

/// Private answers, as the asker reads them.
#[derive(Default, Clone)]
struct Private(Arc<Mutex<Vec<Reply>>>);

#[async_trait]
impl Responder for Private {
    async fn private(&self, reply: &Reply) -> Result<(), ChatError> {
        self.0.lock().unwrap().push(reply.clone());
        Ok(())
    }
}

impl Private {
    fn texts(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|r| r.text()).collect()
    }
}

struct World {
    bot: Bot,
    chat: FakeChat,
    private: Private,
    _db: testdb::TempDb,
}

impl World {
    async fn start() -> World {
        let mut cfg = embedded_config();
        for (role, id) in [
            ("engineer", "discord:42"),
            ("devops-lead", "discord-role:7"),
            ("change-board", "discord:55"),
        ] {
            cfg.roles.get_mut(role).unwrap().push(id.into());
        }
        let (store, db) = testdb::fresh_sqlite().await;
        let chat = FakeChat::new(Platform::Discord);
        let mut opts = test_options();
        opts.chats = vec![Arc::new(chat.clone())];
        let mut bot = Bot::start_with(Arc::new(store) as Arc<dyn Store>, cfg, opts).await;
        bot.chats.push(chat.clone());
        World {
            bot,
            chat,
            private: Private::default(),
            _db: db,
        }
    }

    fn inbound(&self, user: &str, asked: Asked, delivery: &str) -> Inbound {
        Inbound {
            platform: Platform::Discord,
            user: InboundUser {
                id: user.into(),
                name: format!("user{user}"),
            },
            groups: None,
            channel: CHANNEL.into(),
            asked,
            thread: None,
            delivery: Some(delivery.into()),
            ack_carries_text: true,
            responder: Arc::new(self.private.clone()),
        }
    }

    async fn send(&self, inbound: Inbound) -> Ack {
        let ack = self
            .bot
            .app
            .conversation
            .receive(inbound)
            .await
            .expect("the store is up");
        self.bot.app.engine.wait_idle().await;
        ack
    }

    async fn command(&self, user: &str, text: &str, delivery: &str) -> Ack {
        self.send(self.inbound(user, Asked::Command(text.into()), delivery))
            .await
    }
}

fn is_working_on(ack: &Ack, text: &str) -> bool {
    matches!(ack, Ack::Private(r) if r.text().starts_with(&format!("Working on `{text}`")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_acked_run_once_and_its_progress_threaded() {
    let w = World::start().await;

    let ack = w.command("42", "deploj staging v3.0.1", "d-1").await;
    match &ack {
        Ack::Private(r) => {
            assert_eq!(r.kind, ReplyKind::Usage);
            assert!(r.text().contains("deploj"), "{}", r.text());
        }
        other => panic!("a parse error is answered in the ack: {other:?}"),
    }

    let ack = w.command("42", "deploy staging v3.0.1", "d-2").await;
    assert!(is_working_on(&ack, "deploy staging v3.0.1"), "{ack:?}");
    let calls = w.chat.calls();
    let header = calls
        .iter()
        .find_map(|c| match c {
            ChatCall::Post { channel, text } if channel == CHANNEL => Some(text.clone()),
            _ => None,
        })
        .expect("a progress header");
    assert_eq!(
        header, "`deploy staging v3.0.1` for <@42>: in progress…",
        "the asker is mentioned on their own platform"
    );
    let threaded: Vec<&ChatCall> = calls
        .iter()
        .filter(|c| matches!(c, ChatCall::Thread { .. }))
        .collect();
    assert!(
        threaded.len() >= 2,
        "progress lines and the outcome: {calls:#?}"
    );
    assert!(
        calls.iter().any(
            |c| matches!(c, ChatCall::Update { text, .. } if text.contains("staging runs v3.0.1"))
        ),
        "the header is redrawn with the outcome: {calls:#?}"
    );

    // The same delivery again (a retry, a replay): acknowledged, not run.
    let ack = w.command("42", "deploy staging v3.0.1", "d-2").await;
    assert_eq!(ack, Ack::Replayed);
    assert!(w.chat.unread().is_empty(), "{:#?}", w.chat.unread());

    // A lookup answers privately, without a "working on it".
    let ack = w.command("42", "whoami", "d-3").await;
    assert_eq!(ack, Ack::Nothing);
    let private = w.private.texts();
    assert!(private.last().unwrap().contains("engineer"), "{private:?}");
    w.bot.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_posted_remembered_and_redrawn_on_votes() {
    let w = World::start().await;
    w.command("42", "deploy staging v3.0.1", "d-1").await;
    w.chat.calls();
    w.bot.advance(Duration::hours(25));

    // The platform sends the asker's roles: no lookup, and the role they bind counts.
    let mut ask = w.inbound(
        "77",
        Asked::Command("deploy production v3.0.1".into()),
        "d-2",
    );
    ask.groups = Some(vec!["discord-role:7".into()]);
    w.send(ask).await;
    let calls = w.chat.calls();
    let (card, text) = calls
        .iter()
        .find_map(|c| match c {
            ChatCall::Post { channel, text } if channel == CHANNEL && text.starts_with("R-") => {
                Some((c.clone(), text.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("an approval card: {calls:#?}"));
    assert!(
        text.contains("Needs 1 approval from change-board"),
        "{card:?}"
    );
    let id = RequestId(
        text[2..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let row = w.bot.app.store.get_request(id).await.unwrap().unwrap();
    let posted: MessageRef = row.message_ref.expect("the card is remembered");
    assert_eq!(posted.platform, Platform::Discord);

    // A click on Approve, from the card.
    let mut click = w.inbound(
        "55",
        Asked::Vote {
            request: id,
            approve: true,
        },
        "d-3",
    );
    click.thread = Some(posted.clone());
    click.ack_carries_text = false;
    assert_eq!(w.send(click).await, Ack::Nothing);
    // Cards are redrawn by their own task, on the engine's events: wait for it rather than
    // for the engine to be idle.
    let redrawn = |calls: &[ChatCall]| {
        calls.iter().any(|c| matches!(
            c,
            ChatCall::Update { message, text } if *message == posted && text.contains("succeeded")
        ))
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !redrawn(&w.chat.calls()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls = w.chat.calls();
    assert!(redrawn(&calls), "the card is redrawn in place: {calls:#?}");
    assert!(
        calls.iter().any(|c| matches!(
            c,
            ChatCall::Thread { parent, text } if *parent == posted && text.contains("production runs v3.0.1")
        )),
        "the outcome goes under the card: {calls:#?}"
    );
    w.bot.finish().await;
}
