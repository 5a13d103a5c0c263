//! The service on its own: a store, a clock and a stand-in for the engine's environments,
//! no engine and no chat. What users see of incidents is tested end to end in
//! `tests/tests/incidents.rs`; this shows the service needs nothing more than its parts.

use std::sync::Mutex;

use chrono::TimeZone;
use erlmcp_commands::status::{EnvStatus, Replicas};

use super::*;
use crate::clock::ManualClock;
use crate::store::{SqliteStore, testdb};

/// Answers for environments as scripted, and records what it was asked.
#[derive(Default)]
struct ScriptedEnvironments {
    asked: Mutex<Vec<String>>,
}

impl EnvironmentStatus for ScriptedEnvironments {
    fn status_now<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<EnvStatus, String>> {
        self.asked.lock().unwrap().push(name.to_string());
        Box::pin(async move {
            if name == "staging" {
                return Err("status unavailable: connection refused".into());
            }
            Ok(EnvStatus {
                env: name.to_string(),
                target: "sandbox".into(),
                version: Some("v3.0.1".into()),
                image: None,
                replicas: Replicas {
                    desired: 5,
                    updated: 5,
                    ready: 4,
                    available: 4,
                },
                rollout: "successfully rolled out".into(),
                conditions: vec![],
                pods_not_ready: vec![],
                canary: None,
                maintenance: Some(true),
                health: None,
                reported_version: None,
            })
        })
    }
}

const CONFIG: &str = r#"
[environments.staging]
target = "sandbox"

[environments.production]
target = "sandbox"

[roles]
oncall = ["local:carol"]
"#;

struct World {
    incidents: Incidents,
    environments: Arc<ScriptedEnvironments>,
    clock: ManualClock,
    _db: testdb::TempDb,
}

async fn world() -> World {
    let (url, db) = testdb::fresh_sqlite_url();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let config = Arc::new(crate::config::from_toml(CONFIG).unwrap());
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap());
    let environments = Arc::new(ScriptedEnvironments::default());
    let incidents = Incidents::new(
        IncidentParts {
            notifiers: Notifiers::from_config(&config),
            config,
            store,
            clock: Arc::new(clock.clone()),
            chats: vec![],
            incidents_channels: HashMap::new(),
        },
        environments.clone(),
    );
    World {
        incidents,
        environments,
        clock,
        _db: db,
    }
}

fn alice() -> Actor {
    Actor::new("local", "alice", "alice", vec!["oncall".into()])
}

#[tokio::test]
async fn declare_update_and_status_update_without_an_engine() {
    let w = world().await;
    let declared = w
        .incidents
        .handle(
            &alice(),
            "local:cli",
            &IncidentCommand::Declare {
                severity: Severity::P2,
                title: "Checkout errors".into(),
            },
        )
        .await
        .unwrap();
    let text = declared.text();
    assert!(
        text.starts_with("INC-1 declared (P2) by local:alice: Checkout errors"),
        "{text}"
    );
    // No chat platform carries the checklist, so the reply does.
    assert!(text.contains("☐ Create a ticket"), "{text}");

    w.clock.advance(chrono::Duration::minutes(5));
    let updated = w
        .incidents
        .handle(
            &alice(),
            "local:cli",
            &IncidentCommand::Update {
                id: None,
                text: "rolled back, watching".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        updated.text(),
        "INC-1 update from local:alice: rolled back, watching"
    );

    w.clock.advance(chrono::Duration::minutes(10));
    assert!(w.incidents.post_status_update(IncidentId(1)).await.unwrap());
    let asked = w.environments.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        ["production"],
        "production is where incidents are felt"
    );

    let timeline = w
        .incidents
        .timeline("local:cli", Some(IncidentId(1)))
        .await
        .unwrap()
        .text();
    assert!(
        timeline.contains("status_update: INC-1 status update — P2 Checkout errors"),
        "{timeline}"
    );
    let stored = w
        .incidents
        .store
        .incident_events(IncidentId(1))
        .await
        .unwrap();
    let update = stored
        .iter()
        .find(|e| e.kind == IncidentEventKind::StatusUpdate)
        .expect("the status update is on the timeline");
    assert!(
        update
            .text
            .contains("production [sandbox]: v3.0.1, 4/5 ready, health not probed, maintenance ON"),
        "{}",
        update.text
    );
    assert!(
        update
            .text
            .contains("Last human update: 10m ago by local:alice: rolled back, watching"),
        "{}",
        update.text
    );
}

#[tokio::test]
async fn an_unreadable_environment_is_named_with_why() {
    let w = world().await;
    assert_eq!(
        w.incidents.environment_line("staging").await,
        "staging: status unavailable: connection refused"
    );
}

#[tokio::test]
async fn updates_stop_once_resolved() {
    let w = world().await;
    for cmd in [
        IncidentCommand::Declare {
            severity: Severity::P1,
            title: "API down".into(),
        },
        IncidentCommand::Resolve {
            id: None,
            summary: Some("fixed".into()),
        },
    ] {
        w.incidents
            .handle(&alice(), "local:cli", &cmd)
            .await
            .unwrap();
    }
    assert!(!w.incidents.post_status_update(IncidentId(1)).await.unwrap());
    let refused = w
        .incidents
        .handle(
            &alice(),
            "local:cli",
            &IncidentCommand::Update {
                id: Some(IncidentId(1)),
                text: "late".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.text(), "INC-1 is resolved; updates are closed.");
}
