//! Signed audit checkpoints against someone with write access to the database: each story
//! runs on SQLite and on PostgreSQL (when ERLMCP_TEST_POSTGRES_URL is set), drives the real
//! engine, then tampers with the database through its own pool and checks what
//! verification against the checkpoint file says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use erlmcp_adapters::target::NoProgress;
use erlmcp_bot::app::{self, App, BuildOptions};
use erlmcp_bot::checkpoint::{self, CheckpointKind, CheckpointReport, CheckpointVerifier};
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::engine::Invocation;
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::store::{AuditRow, PgStore, Store, audit, testdb};
use erlmcp_commands::render::ReplyKind;

/// A fixed key pair (seed of 32 bytes 0x2a), so failures are reproducible.
const SIGNING_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

struct World {
    app: App,
    clock: ManualClock,
    raw: Raw,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

fn config(file: &Path) -> erlmcp_commands::config::Config {
    let text = format!(
        r#"
[audit]
signing_key = "{SIGNING_KEY}"
checkpoint_file = "{}"
checkpoint_every = "5m"

[roles]
sre = ["local:sre"]
lead = ["local:lead"]

[environments.staging]
target = "sandbox"
replicas = 3

[[rules]]
operation = "scale"
roles = ["sre"]

[[rules]]
operation = "audit.prune"
roles = ["sre"]
approvals = {{ count = 1, from = ["lead"] }}
"#,
        file.display()
    );
    erlmcp_bot::config::from_toml(&text).expect("test config")
}

async fn world(store: Arc<dyn Store>, raw: Raw) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("checkpoints.jsonl");
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
    let app = app::build(
        config(&file),
        store,
        Arc::new(clock.clone()),
        BuildOptions {
            sandbox_step: Duration::ZERO,
            ..BuildOptions::default()
        },
    )
    .await
    .expect("bot builds");
    World {
        app,
        clock,
        raw,
        file,
        _dir: dir,
    }
}

impl World {
    async fn say(&self, who: &str, text: &str) -> erlmcp_commands::render::Reply {
        let actor = self.app.engine.actor("local", who, who, &[]);
        self.app
            .engine
            .handle(Invocation {
                actor,
                channel: "local:test".into(),
                text: text.into(),
                progress: Arc::new(NoProgress),
            })
            .await
    }

    /// Runs `n` scale operations, each followed by its checkpoint.
    async fn operations(&self, n: usize) {
        for i in 0..n {
            let reply = self
                .say("sre", &format!("scale staging {}", 2 + i % 3))
                .await;
            assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text());
            self.clock.advance(chrono::Duration::seconds(20));
            let newest = self.store().audit_tail(1).await.unwrap()[0].seq;
            self.app.engine.checkpointed_through(newest).await;
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.app.store
    }

    fn checkpoint_text(&self) -> String {
        std::fs::read_to_string(&self.file).expect("checkpoint file")
    }

    async fn verify_against(&self, store: &dyn Store, text: &str) -> CheckpointReport {
        let key = checkpoint::CheckpointSigner::from_base64(SIGNING_KEY)
            .unwrap()
            .verifying_key();
        let mut v =
            CheckpointVerifier::new(checkpoint::read_checkpoints(text).unwrap(), Some(&key));
        audit::for_each_row(store, |row| v.feed(row)).await.unwrap();
        v.finish()
    }

    async fn verify(&self) -> CheckpointReport {
        self.verify_against(self.store().as_ref(), &self.checkpoint_text())
            .await
    }

    async fn exec(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.unwrap().rows_affected(),
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.unwrap().rows_affected(),
        }
    }

    async fn rows(&self) -> Vec<AuditRow> {
        let mut rows = Vec::new();
        audit::for_each_row(self.store().as_ref(), |r| {
            rows.push(r.clone());
            true
        })
        .await
        .unwrap();
        rows
    }

    fn key(&self) -> ed25519_dalek::VerifyingKey {
        checkpoint::CheckpointSigner::from_base64(SIGNING_KEY)
            .unwrap()
            .verifying_key()
    }
}

fn broken(r: &CheckpointReport) -> &str {
    r.broken
        .as_deref()
        .unwrap_or_else(|| panic!("expected a break: {r:?}"))
}

// --- the stories, each run on both backends ---

async fn clean_log_with_checkpoints_verifies(w: World) {
    w.operations(3).await;
    // The cadence's checkpoint too, through the scheduler's lease.
    let scheduler = Scheduler::new(w.app.engine.clone(), "test-owner");
    scheduler.install().await.unwrap();
    assert!(scheduler.tick().await >= 1);
    let periodic = |w: &World| {
        checkpoint::read_checkpoints(&w.checkpoint_text())
            .unwrap()
            .iter()
            .filter(|c| c.checkpoint.kind == CheckpointKind::Periodic)
            .count()
    };
    assert_eq!(periodic(&w), 1);
    // On the cadence: not again a minute later, again once checkpoint_every has passed.
    w.clock.advance(chrono::Duration::minutes(1));
    scheduler.tick().await;
    assert_eq!(periodic(&w), 1);
    w.clock.advance(chrono::Duration::minutes(4));
    scheduler.tick().await;
    assert_eq!(periodic(&w), 2);
    let text = w.checkpoint_text();
    let kinds: Vec<CheckpointKind> = checkpoint::read_checkpoints(&text)
        .unwrap()
        .iter()
        .map(|c| c.checkpoint.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == CheckpointKind::Operation)
            .count(),
        3
    );
    assert_eq!(kinds.last(), Some(&CheckpointKind::Periodic));
    let r = w.verify().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.unanchored, 0);
    assert_eq!(r.checkpoints, 5);
    // The store keeps its copy for exports (one per row and kind).
    assert_eq!(w.store().checkpoints().await.unwrap().len(), 4);
    // A row written after the newest checkpoint is reported, not failed.
    // (A refusal is audited, and refusals ask for no checkpoint.)
    assert_eq!(
        w.say("lead", "scale staging 4").await.kind,
        ReplyKind::Refused
    );
    let r = w.verify().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.unanchored, 1);
    let summary = checkpoint::summary(&r, chrono::Duration::minutes(5), true);
    assert!(summary.contains("only chained"), "{summary}");
}

async fn last_two_rows_deleted_names_the_checkpoint(w: World) {
    w.operations(3).await;
    let last = w.rows().await.last().unwrap().seq;
    assert_eq!(
        w.exec(&format!("DELETE FROM audit_log WHERE seq > {}", last - 2))
            .await,
        2
    );
    // The chain alone cannot tell.
    assert!(audit::verify(w.store().as_ref()).await.unwrap().is_ok());
    let r = w.verify().await;
    let msg = broken(&r);
    let lines = w.checkpoint_text().lines().count();
    assert!(
        msg.contains(&format!("checkpoint on line {lines} (row #{last}")),
        "{msg}"
    );
    assert!(msg.contains("deleted"), "{msg}");
}

async fn rewritten_chain_with_recomputed_hashes_fails(w: World) {
    w.operations(2).await;
    // Rewrite every row's outcome and recompute every hash, as an attacker with the
    // database and this source code would.
    let mut prev = audit::GENESIS.to_string();
    for row in w.rows().await {
        let mut entry = row.entry.clone();
        entry.outcome = format!("{} (edited)", entry.outcome);
        let hash = audit::chain_hash(&prev, &audit::canonical(&entry, row.seq));
        w.exec(&format!(
            "UPDATE audit_log SET outcome = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE seq = {}",
            entry.outcome.replace('\'', "''"),
            row.seq
        ))
        .await;
        prev = hash;
    }
    assert!(audit::verify(w.store().as_ref()).await.unwrap().is_ok());
    let r = w.verify().await;
    let msg = broken(&r);
    assert!(
        msg.contains("hash differs from the checkpoint on line 1"),
        "{msg}"
    );
}

async fn replaced_by_an_empty_database_fails(w: World) {
    w.operations(2).await;
    let (empty, _tmp) = testdb::fresh_sqlite().await;
    let r = w.verify_against(&empty, &w.checkpoint_text()).await;
    let msg = broken(&r);
    assert!(msg.contains("covers rows the log no longer holds"), "{msg}");
    assert!(msg.contains("ends at row #0"), "{msg}");
}

async fn altered_signature_in_the_file_fails(w: World) {
    w.operations(3).await;
    let text = w.checkpoint_text();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut c = checkpoint::parse_line(&lines[1]).unwrap().unwrap();
    let mut sig = c.signature.into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    c.signature = String::from_utf8(sig).unwrap();
    lines[1] = c.to_line();
    let r = w
        .verify_against(w.store().as_ref(), &lines.join("\n"))
        .await;
    let msg = broken(&r);
    assert!(msg.starts_with("checkpoint on line 2 "), "{msg}");
    assert!(msg.contains("signature invalid"), "{msg}");
}

async fn export_verifies_offline_and_not_after_one_byte_changes(w: World) {
    w.operations(3).await;
    let mut out = Vec::new();
    audit::export(w.store().as_ref(), audit::ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""type":"checkpoint""#));
    let key = w.key();
    let r = checkpoint::verify_export(&text, Some(&key));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.checkpoints, 3);
    // Every single-byte change anywhere is caught: rows, checkpoint records, signatures.
    let bytes = text.as_bytes();
    let step = (bytes.len() / 97).max(1);
    let mut tried = 0;
    for i in (0..bytes.len()).step_by(step) {
        if bytes[i] == b'\n' {
            continue;
        }
        let mut changed = bytes.to_vec();
        changed[i] = if bytes[i] == b'7' { b'8' } else { b'7' };
        let Ok(changed) = String::from_utf8(changed) else {
            continue;
        };
        let r = checkpoint::verify_export(&changed, Some(&key));
        assert!(!r.is_ok(), "byte {i} changed and still verifies");
        tried += 1;
    }
    assert!(tried > 50, "{tried}");
}

async fn prune_keeps_verify_passing(w: World) {
    w.operations(3).await;
    let cut = w.clock_now();
    w.clock.advance(chrono::Duration::hours(1));
    w.operations(2).await;
    let date = cut.to_rfc3339();
    let reply = w.say("sre", &format!("audit prune --before {date}")).await;
    assert_eq!(reply.kind, ReplyKind::Accepted, "{}", reply.text());
    let id = reply
        .text()
        .split_whitespace()
        .find(|t| t.starts_with("R-"))
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    let reply = w.say("lead", &format!("approve {id}")).await;
    assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text());
    assert!(reply.text().contains("pruned"), "{}", reply.text());
    let rows = w.rows().await;
    assert!(rows[0].seq > 1, "older rows are gone");
    assert!(rows.iter().any(|r| r.entry.operation == "audit.prune"));
    // The chain starts from the stored prune checkpoint; against the signed one in the
    // file it is whole too.
    let plain = audit::verify(w.store().as_ref()).await.unwrap();
    assert!(plain.is_ok(), "{plain:?}");
    assert_eq!(plain.first_seq, rows[0].seq);
    let r = w.verify().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.complete_from, rows[0].seq);
    // An export of the pruned log carries its genesis and verifies offline.
    let mut out = Vec::new();
    audit::export(w.store().as_ref(), audit::ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    let r = checkpoint::verify_export(&String::from_utf8(out).unwrap(), Some(&w.key()));
    assert!(r.is_ok(), "{r:?}");
    // Deleting further rows by hand is not a prune.
    w.exec(&format!(
        "DELETE FROM audit_log WHERE seq = {}",
        rows[0].seq
    ))
    .await;
    let r = w.verify().await;
    assert!(broken(&r).contains("no prune checkpoint"), "{r:?}");
}

/// Pruning "everything" keeps the newest row: the next append must link to it, not
/// start a new chain at row 1.
async fn prune_of_everything_keeps_the_chain_tip(w: World) {
    w.operations(2).await;
    let reply = w.say("sre", "audit prune --before 2999-01-01").await;
    let id = reply
        .text()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|t| t.starts_with("R-"))
        .unwrap()
        .to_string();
    let reply = w.say("lead", &format!("approve {id}")).await;
    assert_eq!(reply.kind, ReplyKind::Ok, "{}", reply.text());
    w.operations(1).await;
    let rows = w.rows().await;
    assert!(rows[0].seq > 1, "{rows:?}");
    let r = w.verify().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.last_seq, rows.last().unwrap().seq);
}

impl World {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use erlmcp_bot::clock::Clock;
        self.clock.now()
    }
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _tmp) = super::testdb::fresh_sqlite().await;
                    let raw = super::Raw::Sqlite(store.pool().clone());
                    let store: std::sync::Arc<dyn super::Store> = std::sync::Arc::new(store);
                    super::$case(super::world(store, raw).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let name = concat!("checkpoints_postgres_", stringify!($case));
                    let Some(url) = super::testdb::fresh_postgres_url(name).await else {
                        return;
                    };
                    let store = super::PgStore::open(&url).await.expect("postgres");
                    let raw = super::Raw::Pg(store.pool().clone());
                    let store: std::sync::Arc<dyn super::Store> = std::sync::Arc::new(store);
                    super::$case(super::world(store, raw).await).await;
                    super::testdb::drop_postgres_database(&url).await;
                }
            )*
        }
    };
}

on_both!(
    clean_log_with_checkpoints_verifies,
    last_two_rows_deleted_names_the_checkpoint,
    rewritten_chain_with_recomputed_hashes_fails,
    replaced_by_an_empty_database_fails,
    altered_signature_in_the_file_fails,
    export_verifies_offline_and_not_after_one_byte_changes,
    prune_keeps_verify_passing,
    prune_of_everything_keeps_the_chain_tip,
);
