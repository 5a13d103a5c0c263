//! A log written before the audit vocabulary became typed (see `fixtures/README.md`) still
//! verifies and reads: the strings stored and hashed did not change.

use std::path::{Path, PathBuf};

use erlmcp_bot::store::audit::{self, chain_hash};
use erlmcp_bot::store::{AuditRow, IncidentEventRow, RequestState, open_store};
use erlmcp_commands::config::DEFAULT_DATABASE_TIMEOUT;
use erlmcp_commands::vocab::{AuditAction, AuditDecision, IncidentEventKind};
use erlmcp_commands::{IncidentId, RequestId};

const LAST_HASH: &str = "4e0adba395095da81f8f91a51ca5a772c583cdfe1d54e623afa8491acc36117c";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A scratch copy: opening the store migrates it, and the fixture itself must stay as made.
fn copy_of_fixture(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(fixture("audit-v1.db")).unwrap();
    edit(&mut bytes);
    let path = dir.join("old.db");
    std::fs::write(&path, bytes).unwrap();
    format!("sqlite://{}", path.display())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn old_log_verifies_and_reads_with_typed_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let url = copy_of_fixture(dir.path(), |_| {});
    rt().block_on(async {
        let store = open_store(&url, DEFAULT_DATABASE_TIMEOUT).await.unwrap();
        let report = audit::verify(store.as_ref()).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.count, report.last_seq), (30, 30));
        assert_eq!(report.last_hash, LAST_HASH);

        let rows = store.audit_page(0, 100).await.unwrap();
        let mut actions = Vec::new();
        for row in &rows {
            let action = AuditAction::parse(&row.entry.action)
                .unwrap_or_else(|| panic!("row {}: action {:?}", row.seq, row.entry.action));
            let decision = AuditDecision::parse(&row.entry.decision)
                .unwrap_or_else(|| panic!("row {}: decision {:?}", row.seq, row.entry.decision));
            actions.push((action, decision));
        }
        for expected in [
            (AuditAction::Executing, AuditDecision::Allow),
            (AuditAction::Executed, AuditDecision::Allow),
            (AuditAction::Refused, AuditDecision::Deny),
            (AuditAction::Requested, AuditDecision::NeedsApproval),
            (AuditAction::VoteRefused, AuditDecision::Deny),
            (AuditAction::Voted, AuditDecision::None),
            (AuditAction::Executing, AuditDecision::Approved),
            (AuditAction::Executing, AuditDecision::BreakGlass),
            (AuditAction::Denied, AuditDecision::Deny),
            (AuditAction::Cancelled, AuditDecision::None),
        ] {
            assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
        }

        // The jsonl export of the same log, made by the old binary, equals what is read now
        // and each of its rows hashes to what it says.
        let exported: Vec<AuditRow> = std::fs::read_to_string(fixture("audit-v1.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(exported, rows);
        for row in &exported {
            assert_eq!(
                chain_hash(&row.prev_hash, &audit::canonical(&row.entry, row.seq)),
                row.hash
            );
        }

        let events: Vec<IncidentEventRow> = store.incident_events(IncidentId(1)).await.unwrap();
        let kinds: Vec<IncidentEventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                IncidentEventKind::Declared,
                IncidentEventKind::BreakGlass,
                IncidentEventKind::Operation,
                IncidentEventKind::Update,
                IncidentEventKind::Severity,
                IncidentEventKind::Commander,
                IncidentEventKind::Resolved,
            ]
        );
        let states: Vec<RequestState> = {
            let mut v = Vec::new();
            for id in 1..=6 {
                v.push(
                    store
                        .get_request(RequestId(id))
                        .await
                        .unwrap()
                        .unwrap()
                        .state,
                );
            }
            v
        };
        assert_eq!(
            states,
            [
                RequestState::Succeeded,
                RequestState::Succeeded,
                RequestState::Denied,
                RequestState::Succeeded,
                RequestState::Succeeded,
                RequestState::Cancelled,
            ]
        );
        store.close().await;
    });
}

#[test]
fn one_byte_edit_of_the_old_log_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let url = copy_of_fixture(dir.path(), |bytes| {
        let needle = b"allowed without approval";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("an audit reason in the file");
        bytes[at] = b'A';
    });
    rt().block_on(async {
        let store = open_store(&url, DEFAULT_DATABASE_TIMEOUT).await.unwrap();
        let report = audit::verify(store.as_ref()).await.unwrap();
        let broken = report.broken.expect("the edit is noticed");
        assert!(
            matches!(broken.kind, audit::BreakKind::ContentMismatch { .. }),
            "{broken}"
        );
        store.close().await;
    });
}
