//! The scheduler runs a pass's due jobs side by side: every open incident's status update
//! is posted exactly once per due time, whatever the batch boundaries, on both databases.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use erlmcp_adapters::chat::Platform;
use erlmcp_bot::app;
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::incidents::{STATUS_UPDATE_JOB, status_update_job_key};
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::store::{NewIncident, Store, Who, testdb};
use erlmcp_commands::Severity;
use erlmcp_tests::fake_chat::{ChatCall, FakeChat};
use erlmcp_tests::harness::{embedded_config, start_time, test_options};

/// More than one claim's worth (500), so the pass claims twice.
const INCIDENTS: usize = 620;

async fn every_due_update_posted_once(store: Arc<dyn Store>) {
    let chat = FakeChat::new(Platform::Slack);
    let clock = ManualClock::new(start_time());
    let mut opts = test_options();
    opts.chats = vec![Arc::new(chat.clone())];
    let app = app::build(
        embedded_config(),
        store.clone(),
        Arc::new(clock.clone()),
        opts,
    )
    .await
    .expect("bot builds");
    let due = start_time() + Duration::minutes(15);
    for i in 0..INCIDENTS {
        let mut row = store
            .insert_incident(NewIncident {
                severity: Severity::P2,
                title: format!("incident {i}"),
                declared_by: Who {
                    platform: "slack".into(),
                    user_id: "UDAVE".into(),
                    display_name: "dave".into(),
                },
                declared_at: start_time(),
                channel: "slack:CGENERAL".into(),
            })
            .await
            .unwrap();
        row.channels_json = serde_json::json!({ "slack": format!("C{}", row.id.0) }).to_string();
        store.update_incident(&row).await.unwrap();
        store
            .upsert_job(
                &status_update_job_key(row.id),
                STATUS_UPDATE_JOB,
                &row.id.0.to_string(),
                due,
            )
            .await
            .unwrap();
    }
    let scheduler = Scheduler::new(app.engine.clone(), "replica-a");

    clock.set(due - Duration::seconds(1));
    assert_eq!(scheduler.tick().await, 0, "nothing is due yet");
    clock.set(due);
    assert_eq!(scheduler.tick().await, INCIDENTS);
    assert_eq!(scheduler.tick().await, 0, "each update runs once");

    let mut posts: BTreeMap<String, usize> = BTreeMap::new();
    for call in chat.calls() {
        if let ChatCall::Post { channel, text } = call {
            assert!(text.contains("status update"), "{text}");
            *posts.entry(channel).or_default() += 1;
        }
    }
    assert_eq!(
        posts.len(),
        INCIDENTS,
        "every incident channel got its update"
    );
    assert!(posts.values().all(|n| *n == 1), "one update each");

    // Rescheduled on the cadence: all due again 15 minutes later.
    clock.set(due + Duration::minutes(15));
    assert_eq!(scheduler.tick().await, INCIDENTS);
    app.engine.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_due_update_posted_once_on_sqlite() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    every_due_update_posted_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_due_update_posted_once_on_postgres() {
    let Some(store) = testdb::postgres_or_skip("every_due_update_posted_once_on_postgres").await
    else {
        return;
    };
    every_due_update_posted_once(Arc::new(store)).await;
}
