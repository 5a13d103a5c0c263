//! Audit checkpoints reach the audit channel through the real Slack client, pointed at a
//! fake Slack, as one short line carrying the signature that the checkpoint file holds.

use std::sync::Arc;

use erlmcp_adapters::slack::config::SlackSection;
use erlmcp_bot::checkpoint;
use erlmcp_bot::platforms::edit_section;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::config::Secret;
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_slack::FakeSlack;
use erlmcp_tests::harness::{Bot, embedded_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_checkpoint_is_posted_to_the_audit_channel_with_its_signature() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let (secret, public) = checkpoint::keygen().unwrap();

    let mut cfg = embedded_config();
    edit_section(&mut cfg, |s: &mut SlackSection| {
        s.enabled = true;
        s.bot_token = Secret::new("xoxb-fake");
        s.signing_secret = Secret::new("not-used-by-this-test");
        s.api_url = Some(fake.api_url());
        s.mode = Some("http".into());
    });
    cfg.audit.signing_key = Secret::new(secret.clone());
    cfg.audit.public_key = Some(public.clone());
    cfg.audit.checkpoint_file = Some(file.display().to_string());
    cfg.audit.channel = Some("slack:C0AUDIT".into());

    let (store, _db) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = Bot::start(store.clone(), cfg).await;
    let reply = bot.say("dave", "deploy staging v3.0.1").await;
    assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text());
    let newest = store.audit_tail(1).await.unwrap()[0].seq;
    bot.app.engine.checkpointed_through(newest).await;

    // The checkpoint counts as written once every sink has had it, the channel included.
    let posted: Vec<_> = fake
        .messages()
        .into_iter()
        .filter(|m| m.channel == "C0AUDIT")
        .collect();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let posted = &posted[0];
    let text = std::fs::read_to_string(&file).unwrap();
    let written = checkpoint::read_checkpoints(&text).unwrap();
    assert_eq!(written.len(), 1);
    let c = &written[0].checkpoint;
    assert_eq!(c.seq, newest);
    assert!(
        posted.text.contains(&format!("row #{newest}")),
        "{}",
        posted.text
    );
    assert!(posted.text.contains(&c.signature), "{}", posted.text);
    assert!(!posted.text.contains(&secret));
    let key = checkpoint::parse_public_key(&public).unwrap();
    assert!(c.signature_is_valid(&key));
}
