//! The harness itself: `finish()` fails a test that left work panicking or a message unread,
//! and waiting for the engine to be idle covers background work.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use erlmcp_adapters::chat::{ChatPlatform, Platform};
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::Reply;
use erlmcp_tests::fake_chat::FakeChat;
use erlmcp_tests::harness::{Bot, embedded_config};
use futures::FutureExt;

async fn bot() -> (Bot, testdb::TempDb) {
    let (store, db) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    (Bot::start(store, embedded_config()).await, db)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test]
async fn finish_fails_when_background_work_panicked() {
    let (bot, _db) = bot().await;
    bot.app
        .engine
        .spawn_tracked(async { panic!("the guard fell over") });
    let failed = AssertUnwindSafe(bot.finish()).catch_unwind().await;
    let text = panic_text(failed.expect_err("finish must fail"));
    assert!(text.contains("the guard fell over"), "{text}");
    // Taken once: the next finish starts clean.
    bot.finish().await;
}

#[tokio::test]
async fn finish_fails_when_a_message_went_unread() {
    let (mut bot, _db) = bot().await;
    let chat = FakeChat::new(Platform::Slack);
    bot.chats.push(chat.clone());
    chat.post("C1", &Reply::ok("nobody looked at this"))
        .await
        .unwrap();
    let failed = AssertUnwindSafe(bot.finish()).catch_unwind().await;
    let text = panic_text(failed.expect_err("finish must fail"));
    assert!(text.contains("nobody looked at this"), "{text}");
    assert_eq!(chat.posts_in("C1"), ["nobody looked at this"]);
    bot.finish().await;
}

#[tokio::test]
async fn idle_means_background_work_is_done() {
    let (bot, _db) = bot().await;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    bot.app.engine.spawn_tracked(async move {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        flag.store(true, Ordering::SeqCst);
    });
    bot.app.engine.wait_idle().await;
    assert!(done.load(Ordering::SeqCst));
    bot.finish().await;
}
