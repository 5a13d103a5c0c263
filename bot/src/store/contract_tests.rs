//! The `Store` contract, run on both backends: every case is an async fn over a [`Db`], and
//! the `contract!` macro makes one test per backend per case.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::TimeZone;
use futures::future::join_all;

use super::audit::{self, BreakKind, ExportFormat};
use super::*;

mod job_batch_cases;
mod pg_silence;
use job_batch_cases::*;

struct Db {
    store: Arc<dyn Store>,
    raw: Raw,
}

/// The backend's own pool, for what the bot must never do itself: tampering with the log.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    fn sqlite(store: SqliteStore) -> Db {
        let raw = Raw::Sqlite(store.pool().clone());
        Db {
            store: Arc::new(store),
            raw,
        }
    }

    fn pg(store: PgStore) -> Db {
        let raw = Raw::Pg(store.pool().clone());
        Db {
            store: Arc::new(store),
            raw,
        }
    }

    async fn exec(&self, sql: &'static str) -> u64 {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.unwrap().rows_affected(),
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.unwrap().rows_affected(),
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    async fn close(&self) {
        match &self.raw {
            Raw::Sqlite(p) => p.close().await,
            Raw::Pg(p) => p.close().await,
        }
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = crate::store::testdb::fresh_sqlite().await;
                    let db = super::Db::sqlite(store);
                    super::$case(&db).await;
                    db.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let name = concat!(module_path!(), "::", stringify!($case));
                    let Some(url) = crate::store::testdb::fresh_postgres_url(name).await else {
                        return;
                    };
                    let store = crate::store::PgStore::open(&url).await.unwrap();
                    let db = super::Db::pg(store);
                    super::$case(&db).await;
                    db.close().await;
                    crate::store::testdb::drop_postgres_database(&url).await;
                }
            )*
        }
    };
}

contract!(
    backend_answers_ping,
    migrations_applied_in_order,
    requests_insert_get_and_transition,
    concurrent_transitions_have_one_winner,
    expired_requests_are_listed,
    finished_requests_are_listed_by_when_they_ended,
    duplicate_voter_counted_once,
    audit_append_and_verify,
    audit_verify_names_an_edited_row,
    audit_verify_names_a_deleted_row,
    audit_concurrent_appends_keep_the_chain,
    audit_export_jsonl_and_csv,
    soak_facts_follow_deploys_and_rollbacks,
    sandbox_get_and_put,
    sandbox_states_are_written_with_outcomes,
    incidents_and_events,
    jobs_claimed_once_by_concurrent_owners,
    jobs_expired_lease_is_taken_over,
    unreachable_database_error_hides_password,
    incident_statuspage_id_is_kept,
    event_keys_remembered_for_an_hour,
    event_keys_past_their_hour_are_new_before_they_are_deleted,
    a_burst_of_event_keys_answers_each_caller_once,
    executing_requests_record_their_owner_and_progress,
    heartbeats_decide_which_requests_are_orphaned,
    interrupting_an_orphan_has_one_winner,
    interrupted_requests_listed_until_acknowledged,
    write_probe_upserts_one_row,
    unreadable_message_ref_is_named,
    requests_are_written_with_their_audit_rows,
    concurrent_audited_request_writes_keep_the_chain,
    failed_audited_writes_leave_nothing,
    incidents_and_events_read_by_the_batch,
    jobs_completed_with_their_events,
    failed_batch_completion_writes_nothing,
);

fn t(ms: i64) -> Timestamp {
    chrono::Utc.timestamp_millis_opt(ms).unwrap()
}

const T0: i64 = 1_700_000_000_000;

fn who(id: &str) -> Who {
    Who {
        platform: "slack".into(),
        user_id: id.into(),
        display_name: format!("User {id}"),
    }
}

fn new_request(expires_at: i64) -> NewRequest {
    NewRequest {
        created_at: t(T0),
        expires_at: t(expires_at),
        requester: who("U1"),
        channel: "slack:C1".into(),
        command_text: "deploy v1.2.3 to prod".into(),
        operation: "deploy".into(),
        environment: Some("prod".into()),
        command_json: r#"{"deploy":{"version":"v1.2.3"}}"#.into(),
        approvals_json: r#"{"count":2}"#.into(),
        state: RequestState::Pending,
        break_glass: false,
        owner: None,
    }
}

fn entry(n: i64) -> NewAuditEntry {
    NewAuditEntry {
        at: t(T0 + n),
        action: "executed".into(),
        who: who("U1"),
        channel: "slack:C1".into(),
        operation: "deploy".into(),
        arguments: format!(r#"{{"n":{n}}}"#),
        environment: Some("prod".into()),
        request_id: Some(RequestId(n)),
        decision: "allow".into(),
        reason: String::new(),
        votes: "[]".into(),
        outcome: "ok".into(),
    }
}

async fn backend_answers_ping(db: &Db) {
    db.store.ping().await.unwrap();
    assert!(matches!(db.store.backend(), "sqlite" | "postgres"));
}

async fn migrations_applied_in_order(db: &Db) {
    let dir = match db.raw {
        Raw::Sqlite(_) => "sqlite",
        Raw::Pg(_) => "postgres",
    };
    let files = migration_files(dir);
    let applied: Vec<i64> = match &db.raw {
        Raw::Sqlite(p) => {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(p)
            .await
        }
        Raw::Pg(p) => {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(p)
            .await
        }
    }
    .unwrap();
    let expected: Vec<i64> = files.iter().map(|(v, _)| *v).collect();
    assert_eq!(applied, expected);
}

async fn requests_insert_get_and_transition(db: &Db) {
    let s = &db.store;
    let row = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    assert_eq!(row.state, RequestState::Pending);
    assert_eq!(row.updated_at, row.created_at);
    assert_eq!(row.outcome, None);
    assert_eq!(s.get_request(row.id).await.unwrap().as_ref(), Some(&row));
    assert_eq!(
        s.get_request(RequestId(row.id.0 + 1000)).await.unwrap(),
        None
    );
    assert_eq!(s.pending_requests().await.unwrap(), vec![row.clone()]);

    let (pending, executing) = (RequestState::Pending, RequestState::Executing);
    assert!(
        s.transition_request(row.id, pending, executing, None, t(T0 + 5))
            .await
            .unwrap()
    );
    assert!(
        !s.transition_request(row.id, pending, executing, None, t(T0 + 6))
            .await
            .unwrap()
    );
    let succeeded = RequestState::Succeeded;
    assert!(
        s.transition_request(row.id, executing, succeeded, Some("ok"), t(T0 + 7))
            .await
            .unwrap()
    );
    let message = MessageRef {
        platform: Platform::Slack,
        channel: "C1".into(),
        id: "1700000000.000100".into(),
    };
    s.set_request_message(row.id, &message).await.unwrap();

    let after = s.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(after.state, RequestState::Succeeded);
    assert_eq!(after.outcome.as_deref(), Some("ok"));
    assert_eq!(after.updated_at, t(T0 + 7));
    assert_eq!(after.message_ref, Some(message));
    let stored: Option<String> = match &db.raw {
        Raw::Sqlite(p) => sqlx::query_scalar("SELECT message_ref FROM requests WHERE id = $1")
            .bind(row.id.0)
            .fetch_one(p)
            .await
            .unwrap(),
        Raw::Pg(p) => sqlx::query_scalar("SELECT message_ref FROM requests WHERE id = $1")
            .bind(row.id.0)
            .fetch_one(p)
            .await
            .unwrap(),
    };
    assert_eq!(stored.as_deref(), Some("slack:C1:1700000000.000100"));
    assert_eq!(after.command_json, row.command_json);
    assert!(s.pending_requests().await.unwrap().is_empty());

    let mut glass = new_request(T0 + 1);
    glass.break_glass = true;
    glass.environment = None;
    let glass = s.insert_request(glass).await.unwrap();
    assert!(glass.break_glass);
    assert_eq!(glass.environment, None);
    assert_ne!(glass.id, row.id);
}

fn executing_request(owner: Option<&str>, at: i64) -> NewRequest {
    NewRequest {
        created_at: t(at),
        expires_at: t(at),
        state: RequestState::Executing,
        owner: owner.map(str::to_string),
        ..new_request(at)
    }
}

async fn executing_requests_record_their_owner_and_progress(db: &Db) {
    let s = &db.store;
    let inserted = s
        .insert_request(executing_request(Some("host-1-aa"), T0))
        .await
        .unwrap();
    assert_eq!(inserted.owner.as_deref(), Some("host-1-aa"));
    assert_eq!(inserted.last_progress, None);
    assert_eq!(inserted.acknowledged_at, None);

    let pending = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    assert_eq!(pending.owner, None);
    let starts = (0..4).map(|i| {
        let store = s.clone();
        tokio::spawn(async move {
            let owner = format!("host-{i}");
            let won = store
                .start_executing(pending.id, RequestState::Pending, &owner, t(T0 + 5))
                .await
                .unwrap();
            won.then_some(owner)
        })
    });
    let winners: Vec<String> = join_all(starts)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let row = s.get_request(pending.id).await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Executing);
    assert_eq!(row.owner.as_deref(), Some(winners[0].as_str()));
    assert_eq!(row.updated_at, t(T0 + 5));

    s.set_request_progress(row.id, "1 of 5 new replicas updated")
        .await
        .unwrap();
    s.set_request_progress(row.id, "2 of 5 new replicas updated")
        .await
        .unwrap();
    let row = s.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(
        row.last_progress.as_deref(),
        Some("2 of 5 new replicas updated")
    );
    // Once final, a late progress line changes nothing.
    assert!(
        s.transition_request(
            row.id,
            RequestState::Executing,
            RequestState::Succeeded,
            Some("done"),
            t(T0 + 6)
        )
        .await
        .unwrap()
    );
    s.set_request_progress(row.id, "late").await.unwrap();
    let row = s.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(
        row.last_progress.as_deref(),
        Some("2 of 5 new replicas updated")
    );
}

async fn heartbeats_decide_which_requests_are_orphaned(db: &Db) {
    let s = &db.store;
    s.heartbeat("alive", t(T0), t(T0)).await.unwrap();
    s.heartbeat("dead", t(T0 - 1000), t(T0)).await.unwrap();
    s.heartbeat("alive", t(T0 - 5), t(T0 + 20_000))
        .await
        .unwrap();
    let replicas = s.replicas().await.unwrap();
    assert_eq!(
        replicas,
        vec![
            ReplicaRow {
                owner: "dead".into(),
                started_at: t(T0 - 1000),
                heartbeat_at: t(T0),
            },
            // A later heartbeat moves heartbeat_at only: started_at is the first one's.
            ReplicaRow {
                owner: "alive".into(),
                started_at: t(T0),
                heartbeat_at: t(T0 + 20_000),
            },
        ]
    );
    // A row silent for a week is forgotten by the next heartbeat, whoever writes it.
    s.heartbeat("long-gone", t(T0 - 8 * 86_400_000), t(T0 - 8 * 86_400_000))
        .await
        .unwrap();
    s.heartbeat("alive", t(T0), t(T0 + 20_000)).await.unwrap();
    assert_eq!(s.replicas().await.unwrap(), replicas);
    let of_alive = s
        .insert_request(executing_request(Some("alive"), T0))
        .await
        .unwrap();
    let of_dead = s
        .insert_request(executing_request(Some("dead"), T0))
        .await
        .unwrap();
    let of_unknown = s
        .insert_request(executing_request(Some("never-seen"), T0))
        .await
        .unwrap();
    let ownerless = s
        .insert_request(executing_request(None, T0 + 10_000))
        .await
        .unwrap();
    let pending = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    let ids = |rows: Vec<RequestRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();

    // Everyone's heartbeat is recent enough: only the owner nobody has heard of is orphaned.
    assert_eq!(
        ids(s.orphaned_requests(t(T0)).await.unwrap()),
        vec![of_unknown.id]
    );
    // The dead owner's heartbeat is now too old; the ownerless one is not old enough yet.
    assert_eq!(
        ids(s.orphaned_requests(t(T0 + 10_000)).await.unwrap()),
        vec![of_dead.id, of_unknown.id]
    );
    assert_eq!(
        ids(s.orphaned_requests(t(T0 + 10_001)).await.unwrap()),
        vec![of_dead.id, of_unknown.id, ownerless.id]
    );
    assert_eq!(
        ids(s.orphaned_requests(t(T0 + 20_001)).await.unwrap()),
        vec![of_alive.id, of_dead.id, of_unknown.id, ownerless.id]
    );
    assert!(
        !ids(s.orphaned_requests(t(T0 + 99_000)).await.unwrap()).contains(&pending.id),
        "a pending request has no owner to lose"
    );
}

async fn interrupting_an_orphan_has_one_winner(db: &Db) {
    let s = &db.store;
    s.heartbeat("dead", t(T0), t(T0)).await.unwrap();
    s.heartbeat("alive", t(T0), t(T0 + 30_000)).await.unwrap();
    let stale_before = t(T0 + 10_000);
    for _ in 0..3 {
        let row = s
            .insert_request(executing_request(Some("dead"), T0))
            .await
            .unwrap();
        let attempts = (0..4).map(|i| {
            let store = s.clone();
            tokio::spawn(async move {
                store
                    .interrupt_request(
                        row.id,
                        Some("dead"),
                        stale_before,
                        "interrupted: dead stopped",
                        t(T0 + 20_000 + i),
                    )
                    .await
                    .unwrap()
            })
        });
        let wins = join_all(attempts)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(wins, 1);
        let row = s.get_request(row.id).await.unwrap().unwrap();
        assert_eq!(row.state, RequestState::Interrupted);
        assert!(row.state.is_final());
        assert_eq!(row.outcome.as_deref(), Some("interrupted: dead stopped"));
    }
    // Not while its owner is alive, nor when the owner named is not the one holding it.
    let live = s
        .insert_request(executing_request(Some("alive"), T0))
        .await
        .unwrap();
    for owner in [Some("alive"), Some("dead"), None] {
        assert!(
            !s.interrupt_request(live.id, owner, stale_before, "x", t(T0 + 20_000))
                .await
                .unwrap(),
            "{owner:?}"
        );
    }
    // An owner whose heartbeat came back between the look and the claim keeps its request.
    let late = s
        .insert_request(executing_request(Some("dead"), T0))
        .await
        .unwrap();
    s.heartbeat("dead", t(T0), t(T0 + 15_000)).await.unwrap();
    assert!(
        !s.interrupt_request(late.id, Some("dead"), stale_before, "x", t(T0 + 20_000))
            .await
            .unwrap()
    );
    // An ownerless one is claimed by naming no owner, once it is older than the cutoff.
    let ownerless = s.insert_request(executing_request(None, T0)).await.unwrap();
    assert!(
        !s.interrupt_request(ownerless.id, None, t(T0), "x", t(T0 + 20_000))
            .await
            .unwrap()
    );
    assert!(
        s.interrupt_request(ownerless.id, None, stale_before, "x", t(T0 + 20_000))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_request(live.id).await.unwrap().unwrap().state,
        RequestState::Executing
    );
}

async fn interrupted_requests_listed_until_acknowledged(db: &Db) {
    let s = &db.store;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let row = s
            .insert_request(executing_request(Some("gone"), T0))
            .await
            .unwrap();
        assert!(
            s.interrupt_request(row.id, Some("gone"), t(T0 + 1), "interrupted", t(T0 + 2))
                .await
                .unwrap()
        );
        ids.push(row.id);
    }
    let listed = |rows: Vec<RequestRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(listed(s.unacknowledged_interrupted().await.unwrap()), ids);
    let pending = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    assert!(
        !s.acknowledge_request(pending.id, t(T0 + 3)).await.unwrap(),
        "only an interrupted request is acknowledged"
    );
    assert!(s.acknowledge_request(ids[0], t(T0 + 3)).await.unwrap());
    assert!(!s.acknowledge_request(ids[0], t(T0 + 4)).await.unwrap());
    let row = s.get_request(ids[0]).await.unwrap().unwrap();
    assert_eq!(row.acknowledged_at, Some(t(T0 + 3)));
    assert_eq!(row.state, RequestState::Interrupted);
    assert_eq!(
        listed(s.unacknowledged_interrupted().await.unwrap()),
        vec![ids[1]]
    );
}

async fn concurrent_transitions_have_one_winner(db: &Db) {
    for _ in 0..5 {
        let row = db
            .store
            .insert_request(new_request(T0 + 60_000))
            .await
            .unwrap();
        let attempts = (0..4).map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .transition_request(
                        row.id,
                        RequestState::Pending,
                        RequestState::Executing,
                        None,
                        t(T0 + i),
                    )
                    .await
                    .unwrap()
            })
        });
        let wins = join_all(attempts)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(wins, 1);
    }
}

async fn expired_requests_are_listed(db: &Db) {
    let s = &db.store;
    let soon = s.insert_request(new_request(T0 + 1_000)).await.unwrap();
    let later = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    let done = s.insert_request(new_request(T0 + 500)).await.unwrap();
    s.transition_request(
        done.id,
        RequestState::Pending,
        RequestState::Denied,
        None,
        t(T0),
    )
    .await
    .unwrap();

    assert!(s.expired_requests(t(T0 + 999)).await.unwrap().is_empty());
    let ids: Vec<_> = s
        .expired_requests(t(T0 + 1_000))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![soon.id]);
    let ids: Vec<_> = s
        .expired_requests(t(T0 + 100_000))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![soon.id, later.id]);
}

async fn finished_requests_are_listed_by_when_they_ended(db: &Db) {
    let s = &db.store;
    let mut ids = Vec::new();
    for (i, to) in [
        RequestState::Succeeded,
        RequestState::Failed,
        RequestState::Denied,
        RequestState::Succeeded,
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
        s.transition_request(
            r.id,
            RequestState::Pending,
            to,
            Some("done"),
            t(T0 + 1_000 * i as i64),
        )
        .await
        .unwrap();
        ids.push(r.id);
    }
    s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    let got: Vec<_> = s
        .requests_finished_between(t(T0), t(T0 + 3_000))
        .await
        .unwrap()
        .iter()
        .map(|r| (r.id, r.state))
        .collect();
    // A denial is not an operation; the end is exclusive; pending ones have not ended.
    assert_eq!(
        got,
        vec![
            (ids[0], RequestState::Succeeded),
            (ids[1], RequestState::Failed)
        ]
    );
}

async fn duplicate_voter_counted_once(db: &Db) {
    let s = &db.store;
    let req = s.insert_request(new_request(T0 + 60_000)).await.unwrap();
    let vote = |id: &str, approve: bool, at: i64| NewVote {
        request_id: req.id,
        voter: who(id),
        approve,
        comment: Some("lgtm, \"ship it\"".into()),
        at: t(at),
    };
    assert_eq!(
        s.insert_vote(vote("U2", true, T0 + 1)).await.unwrap(),
        VoteInsert::Inserted
    );
    assert_eq!(
        s.insert_vote(vote("U2", false, T0 + 2)).await.unwrap(),
        VoteInsert::AlreadyVoted
    );
    let mut other_platform = vote("U2", true, T0 + 3);
    other_platform.voter.platform = "discord".into();
    assert_eq!(
        s.insert_vote(other_platform).await.unwrap(),
        VoteInsert::Inserted
    );

    let concurrent = (0..6).map(|_| {
        let store = s.clone();
        let v = vote("U3", true, T0 + 4);
        tokio::spawn(async move { store.insert_vote(v).await.unwrap() })
    });
    let inserted = join_all(concurrent)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap() == VoteInsert::Inserted)
        .count();
    assert_eq!(inserted, 1);

    let votes = s.votes(req.id).await.unwrap();
    assert_eq!(votes.len(), 3);
    assert_eq!(votes[0], vote("U2", true, T0 + 1).into_row());
    assert!(
        s.votes(RequestId(req.id.0 + 1000))
            .await
            .unwrap()
            .is_empty()
    );

    let orphan = NewVote {
        request_id: RequestId(req.id.0 + 1000),
        ..vote("U4", true, T0)
    };
    assert!(matches!(
        s.insert_vote(orphan).await,
        Err(StoreError::Conflict(_))
    ));
}

impl NewVote {
    fn into_row(self) -> VoteRow {
        VoteRow {
            request_id: self.request_id,
            voter: self.voter,
            approve: self.approve,
            comment: self.comment,
            at: self.at,
        }
    }
}

async fn append(db: &Db, n: i64) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    for i in 1..=n {
        rows.push(db.store.append_audit(entry(i)).await.unwrap());
    }
    rows
}

async fn audit_append_and_verify(db: &Db) {
    let empty = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(empty.is_ok());
    assert_eq!((empty.count, empty.last_hash.as_str()), (0, audit::GENESIS));

    let rows = append(db, 5).await;
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(rows[0].prev_hash, audit::GENESIS);
    for pair in rows.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(db.store.audit_page(0, 100).await.unwrap(), rows);
    assert_eq!(
        db.store.audit_page(2, 2).await.unwrap(),
        rows[2..4].to_vec()
    );
    let tail = db.store.audit_tail(2).await.unwrap();
    assert_eq!(tail, vec![rows[4].clone(), rows[3].clone()]);

    let report = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.count, report.last_seq), (5, 5));
    assert_eq!(report.last_hash, rows[4].hash);
}

async fn audit_verify_names_an_edited_row(db: &Db) {
    append(db, 5).await;
    assert_eq!(
        db.exec("UPDATE audit_log SET outcome = 'refused' WHERE seq = 3")
            .await,
        1
    );
    let report = audit::verify(db.store.as_ref()).await.unwrap();
    let broken = report.broken.expect("an edited row must break the chain");
    assert_eq!(broken.seq, 3);
    assert!(
        matches!(broken.kind, BreakKind::ContentMismatch { .. }),
        "{broken:?}"
    );
    assert!(broken.to_string().contains("edited"));
    assert_eq!(report.last_seq, 2);
}

async fn audit_verify_names_a_deleted_row(db: &Db) {
    append(db, 5).await;
    assert_eq!(db.exec("DELETE FROM audit_log WHERE seq = 3").await, 1);
    let broken = audit::verify(db.store.as_ref())
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.seq, 4);
    assert_eq!(broken.kind, BreakKind::SeqGap { expected: 3 });

    // Renumbering to hide the gap still leaves row 3 pointing at the deleted row.
    db.exec("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
        .await;
    let broken = audit::verify(db.store.as_ref())
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.seq, 3);
    assert!(
        matches!(broken.kind, BreakKind::ContentMismatch { .. }),
        "{broken:?}"
    );
}

async fn audit_concurrent_appends_keep_the_chain(db: &Db) {
    let tasks = (0..50).map(|task| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..4 {
                seqs.push(store.append_audit(entry(task * 10 + i)).await.unwrap().seq);
            }
            seqs
        })
    });
    assert_one_chain(db.store.as_ref(), tasks, 200).await;
}

/// The seqs the `tasks` were given are exactly 1..=`n`, and the chain of `n` rows verifies:
/// no fork, no gap, whoever appended.
async fn assert_one_chain(
    store: &dyn Store,
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<Vec<i64>>>,
    n: i64,
) {
    let seqs: HashSet<i64> = join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(seqs, (1..=n).collect());
    let report = audit::verify(store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.count, n as u64);
}

fn finish(id: RequestId, to: RequestState, progress: Option<&str>) -> FinishRequest {
    FinishRequest {
        id,
        to,
        outcome: format!("{} {}", id, to.as_str()),
        progress: progress.map(str::to_string),
        at: t(T0 + 5_000),
        sandbox: None,
    }
}

fn sandbox_state(env: &str, n: i64) -> SandboxRow {
    SandboxRow {
        environment: env.into(),
        state_json: format!(r#"{{"replicas":{n}}}"#),
        updated_at: t(T0 + n),
    }
}

/// Operations finishing side by side, several in one environment: each outcome carries the
/// sandbox's state after it, and the environment ends in the state of the last one written.
async fn sandbox_states_are_written_with_outcomes(db: &Db) {
    let tasks = (0..24).map(|task| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut start = entry(task);
            start.request_id = None;
            let (row, _) = store
                .insert_request_audited(executing_request(Some("me"), T0), start)
                .await
                .unwrap();
            let mut f = finish(row.id, RequestState::Succeeded, None);
            f.sandbox = Some(sandbox_state(&format!("env{}", task % 3), task));
            let mut end = entry(task);
            end.request_id = Some(row.id);
            let (moved, audited) = store.finish_request_audited(f, end).await.unwrap();
            assert!(moved);
            (task, audited.seq)
        })
    });
    let written: Vec<(i64, i64)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for env in 0..3 {
        let last = written
            .iter()
            .filter(|(task, _)| task % 3 == env)
            .max_by_key(|(_, seq)| *seq)
            .map(|(task, _)| *task)
            .unwrap();
        let stored = db
            .store
            .sandbox_get(&format!("env{env}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, sandbox_state(&format!("env{env}"), last));
    }
    let report = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(report.is_ok() && report.count == 48, "{report:?}");
}

async fn requests_are_written_with_their_audit_rows(db: &Db) {
    let mut e = entry(1);
    e.request_id = None;
    let (row, audited) = db
        .store
        .insert_request_audited(executing_request(Some("me"), T0), e)
        .await
        .unwrap();
    assert_eq!(audited.entry.request_id, Some(row.id));
    assert_eq!(audited.seq, 1);
    let stored = db.store.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Executing);

    let (moved, outcome) = db
        .store
        .finish_request_audited(
            finish(row.id, RequestState::Succeeded, Some("3 of 3 updated")),
            entry(2),
        )
        .await
        .unwrap();
    assert!(moved);
    assert_eq!(outcome.seq, 2);
    assert_eq!(outcome.prev_hash, audited.hash);
    let stored = db.store.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Succeeded);
    assert_eq!(
        stored.outcome.as_deref(),
        Some(&*format!("{} succeeded", row.id))
    );
    assert_eq!(stored.last_progress.as_deref(), Some("3 of 3 updated"));

    // No longer executing: the state stays, the audit row is still written.
    let (moved, late) = db
        .store
        .finish_request_audited(finish(row.id, RequestState::Failed, Some("late")), entry(3))
        .await
        .unwrap();
    assert!(!moved);
    assert_eq!(late.seq, 3);
    let stored = db.store.get_request(row.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Succeeded);
    assert_eq!(stored.last_progress.as_deref(), Some("3 of 3 updated"));
    let report = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(report.is_ok() && report.count == 3, "{report:?}");
}

/// Many operations at once, each a request with its audit row then an outcome with its
/// own: one chain, and every request's rows in the order it wrote them.
async fn concurrent_audited_request_writes_keep_the_chain(db: &Db) {
    let tasks = (0..40).map(|task| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut start = entry(task);
            start.request_id = None;
            start.action = "executing".into();
            let (row, first) = store
                .insert_request_audited(executing_request(Some("me"), T0), start)
                .await
                .unwrap();
            let mut end = entry(task);
            end.request_id = Some(row.id);
            let (moved, second) = store
                .finish_request_audited(finish(row.id, RequestState::Succeeded, None), end)
                .await
                .unwrap();
            assert!(moved);
            (row.id, first.seq, second.seq)
        })
    });
    let written: Vec<(RequestId, i64, i64)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let rows = db.store.audit_page(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 80);
    let by_seq: BTreeMap<i64, &AuditRow> = rows.iter().map(|r| (r.seq, r)).collect();
    for (id, first, second) in &written {
        assert!(first < second, "{id}: {first} then {second}");
        assert_eq!(by_seq[first].entry.request_id, Some(*id));
        assert_eq!(by_seq[first].entry.action, "executing");
        assert_eq!(by_seq[second].entry.request_id, Some(*id));
        let stored = db.store.get_request(*id).await.unwrap().unwrap();
        assert_eq!(stored.state, RequestState::Succeeded);
    }
    let report = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(report.is_ok() && report.count == 80, "{report:?}");
}

/// The audit table cannot be written: every concurrent write fails, none leaves a request
/// behind or moves one, and the chain goes on unbroken once the table is back.
async fn failed_audited_writes_leave_nothing(db: &Db) {
    let (executing, _) = db
        .store
        .insert_request_audited(executing_request(Some("me"), T0), entry(1))
        .await
        .unwrap();
    db.exec("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await;
    let tasks = (0..20).map(|task| {
        let store = db.store.clone();
        tokio::spawn(async move {
            if task % 2 == 0 {
                store
                    .insert_request_audited(executing_request(Some("me"), T0), entry(task))
                    .await
                    .map(|_| ())
            } else {
                let mut f = finish(executing.id, RequestState::Succeeded, Some("done"));
                f.sandbox = Some(sandbox_state("prod", task));
                store
                    .finish_request_audited(f, entry(task))
                    .await
                    .map(|_| ())
            }
        })
    });
    for r in join_all(tasks).await {
        assert!(
            r.unwrap().is_err(),
            "a write without its audit row succeeded"
        );
    }
    db.exec("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await;
    let stored = db.store.get_request(executing.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Executing);
    assert_eq!(stored.last_progress, None);
    assert_eq!(db.store.sandbox_get("prod").await.unwrap(), None);
    let executing_now = db.store.orphaned_requests(t(T0 + 60_000)).await.unwrap();
    assert_eq!(executing_now.len(), 1, "no request without its audit row");
    db.store.append_audit(entry(99)).await.unwrap();
    let report = audit::verify(db.store.as_ref()).await.unwrap();
    assert!(report.is_ok() && report.count == 2, "{report:?}");
}

async fn audit_export_jsonl_and_csv(db: &Db) {
    let mut tricky = entry(1);
    tricky.reason = "needs two, \"senior\" approvers\nsecond line".into();
    tricky.who.display_name = " Ann, Jr.".into();
    tricky.environment = None;
    tricky.request_id = None;
    db.store.append_audit(tricky).await.unwrap();
    append(db, 2).await;
    let rows = db.store.audit_page(0, 100).await.unwrap();

    let mut jsonl = Vec::new();
    assert_eq!(
        audit::export(db.store.as_ref(), ExportFormat::Jsonl, &mut jsonl)
            .await
            .unwrap(),
        3
    );
    let parsed: Vec<AuditRow> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, rows);

    let mut csv = Vec::new();
    assert_eq!(
        audit::export(db.store.as_ref(), ExportFormat::Csv, &mut csv)
            .await
            .unwrap(),
        3
    );
    let records = parse_csv(&String::from_utf8(csv).unwrap());
    assert_eq!(records.len(), 4);
    assert_eq!(records[0], audit::CSV_HEADER.map(String::from).to_vec());
    let col = |name: &str| audit::CSV_HEADER.iter().position(|h| *h == name).unwrap();
    let first = &records[1];
    assert_eq!(first[col("reason")], rows[0].entry.reason);
    assert_eq!(first[col("who_display_name")], " Ann, Jr.");
    assert_eq!(first[col("environment")], "");
    assert_eq!(first[col("hash")], rows[0].hash);
    assert_eq!(records[3][col("prev_hash")], rows[1].hash);
    assert_eq!(records[3][col("at_ms")], (T0 + 2).to_string());
    assert_eq!(records[3][col("arguments")], r#"{"n":2}"#);
}

/// A strict RFC 4180 reader, independent of the writer under test.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => {
                assert!(field.is_empty(), "quote inside an unquoted field");
                quoted = true;
            }
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n')),
            (false, '\n') => panic!("bare LF ends a record"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            record.push(std::mem::take(&mut field));
            records.push(std::mem::take(&mut record));
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "truncated CSV"
    );
    records
}

async fn soak_facts_follow_deploys_and_rollbacks(db: &Db) {
    let s = &db.store;
    let rec = |version: &str, kind: &str, succeeded: bool, at: i64| DeploymentRecord {
        environment: "staging".into(),
        version: version.into(),
        kind: kind.into(),
        succeeded,
        request_id: None,
        at: t(at),
    };
    assert_eq!(
        s.soak_facts("staging", "v1").await.unwrap(),
        SoakFacts::default()
    );

    s.record_deployment(rec("v1", "deploy", true, T0 + 1_000))
        .await
        .unwrap();
    s.record_deployment(rec("v2", "deploy", false, T0 + 1_500))
        .await
        .unwrap();
    let facts = s.soak_facts("staging", "v1").await.unwrap();
    assert_eq!(
        facts,
        SoakFacts {
            deployed_at: Some(t(T0 + 1_000)),
            rolled_back_since: None
        }
    );
    assert_eq!(
        s.soak_facts("staging", "v2").await.unwrap(),
        SoakFacts::default()
    );
    assert_eq!(
        s.soak_facts("prod", "v1").await.unwrap(),
        SoakFacts::default()
    );

    s.record_deployment(rec("v0", "rollback", true, T0 + 2_000))
        .await
        .unwrap();
    let facts = s.soak_facts("staging", "v1").await.unwrap();
    assert_eq!(facts.rolled_back_since, Some(t(T0 + 2_000)));

    // Redeploying the version starts a new soak: the earlier rollback no longer counts.
    s.record_deployment(rec("v1", "deploy", true, T0 + 3_000))
        .await
        .unwrap();
    let facts = s.soak_facts("staging", "v1").await.unwrap();
    assert_eq!(
        facts,
        SoakFacts {
            deployed_at: Some(t(T0 + 3_000)),
            rolled_back_since: None
        }
    );

    let mut history = s.deployments("staging", 10).await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].at, t(T0 + 3_000));
    assert_eq!(history[1].kind, "rollback");
    history.truncate(0);
    assert_eq!(s.deployments("staging", 2).await.unwrap().len(), 2);
    assert!(s.deployments("prod", 10).await.unwrap().is_empty());
}

async fn sandbox_get_and_put(db: &Db) {
    let s = &db.store;
    assert_eq!(s.sandbox_get("prod").await.unwrap(), None);
    let row = SandboxRow {
        environment: "prod".into(),
        state_json: r#"{"replicas":3}"#.into(),
        updated_at: t(T0),
    };
    s.sandbox_put(row.clone()).await.unwrap();
    assert_eq!(s.sandbox_get("prod").await.unwrap(), Some(row));
    let newer = SandboxRow {
        environment: "prod".into(),
        state_json: r#"{"replicas":5}"#.into(),
        updated_at: t(T0 + 1),
    };
    s.sandbox_put(newer.clone()).await.unwrap();
    assert_eq!(s.sandbox_get("prod").await.unwrap(), Some(newer));
    assert_eq!(s.sandbox_get("staging").await.unwrap(), None);
}

async fn incidents_and_events(db: &Db) {
    let s = &db.store;
    let inc = s
        .insert_incident(NewIncident {
            severity: Severity::P1,
            title: "API errors".into(),
            declared_by: who("U1"),
            declared_at: t(T0),
            channel: "slack:C1".into(),
        })
        .await
        .unwrap();
    assert_eq!(inc.severity, Severity::P1);
    assert_eq!(inc.channels_json, "{}");
    assert_eq!((inc.commander.as_ref(), inc.resolved_at), (None, None));
    assert_eq!(s.get_incident(inc.id).await.unwrap().as_ref(), Some(&inc));
    assert_eq!(s.open_incidents().await.unwrap(), vec![inc.clone()]);

    let declared = s
        .append_incident_event(
            inc.id,
            t(T0),
            IncidentEventKind::Declared,
            Some(&who("U1")),
            "API errors",
        )
        .await
        .unwrap();
    assert_eq!((declared.seq, declared.who.as_ref()), (1, Some(&who("U1"))));
    let update = s
        .append_incident_event(
            inc.id,
            t(T0 + 1),
            IncidentEventKind::StatusUpdate,
            None,
            "still failing",
        )
        .await
        .unwrap();
    assert_eq!((update.seq, update.who.as_ref()), (2, None));

    let more = (0..20).map(|i| {
        let store = s.clone();
        let id = inc.id;
        tokio::spawn(async move {
            store
                .append_incident_event(id, t(T0 + 2 + i), IncidentEventKind::Update, None, "x")
                .await
                .unwrap()
                .seq
        })
    });
    let seqs: HashSet<i64> = join_all(more)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(seqs, (3..=22).collect());
    let events = s.incident_events(inc.id).await.unwrap();
    assert_eq!(events.len(), 22);
    assert_eq!(events[0], declared);
    assert_eq!(events[1], update);

    let missing = s
        .append_incident_event(
            IncidentId(inc.id.0 + 1000),
            t(T0),
            IncidentEventKind::Update,
            None,
            "x",
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::Conflict(_))),
        "{missing:?}"
    );

    let mut resolved = inc.clone();
    resolved.severity = Severity::P0;
    resolved.commander = Some("slack:U2".into());
    resolved.channels_json = r#"{"slack":"C9"}"#.into();
    resolved.resolved_at = Some(t(T0 + 100));
    resolved.summary = Some("bad config".into());
    resolved.last_human_update_at = Some(t(T0 + 90));
    s.update_incident(&resolved).await.unwrap();
    assert_eq!(s.get_incident(inc.id).await.unwrap(), Some(resolved));
    assert!(s.open_incidents().await.unwrap().is_empty());
}

async fn incident_statuspage_id_is_kept(db: &Db) {
    let s = &db.store;
    let inc = s
        .insert_incident(NewIncident {
            severity: Severity::P2,
            title: "slow".into(),
            declared_by: who("U1"),
            declared_at: t(T0),
            channel: "cli".into(),
        })
        .await
        .unwrap();
    assert_eq!(s.incident_statuspage_id(inc.id).await.unwrap(), None);
    s.set_incident_statuspage_id(inc.id, "sp-123")
        .await
        .unwrap();
    assert_eq!(
        s.incident_statuspage_id(inc.id).await.unwrap().as_deref(),
        Some("sp-123")
    );
    assert_eq!(
        s.incident_statuspage_id(IncidentId(inc.id.0 + 1000))
            .await
            .unwrap(),
        None
    );
}

/// A reference no platform here can read is reported with the request, not guessed at.
async fn unreadable_message_ref_is_named(db: &Db) {
    let row = db
        .store
        .insert_request(new_request(T0 + 60_000))
        .await
        .unwrap();
    assert_eq!(
        db.exec("UPDATE requests SET message_ref = 'irc:C1:1'")
            .await,
        1
    );
    let err = db.store.get_request(row.id).await.unwrap_err().to_string();
    assert!(err.contains("unreadable message reference"), "{err}");
    assert!(err.contains("irc:C1:1"), "{err}");
}

/// Old keys are deleted now and then, not on every call; a key past its hour is new either
/// way, and the table does not keep what is past its hour for long.
async fn event_keys_past_their_hour_are_new_before_they_are_deleted(db: &Db) {
    use super::common::EVENT_MEMORY_MS;
    let s = &db.store;
    let slack = Platform::Slack;
    assert!(s.remember_event(slack, "A", t(T0)).await.unwrap());
    assert!(s.remember_event(slack, "B", t(T0 + 10)).await.unwrap());
    // Old keys were deleted just now (nothing was old): the next deletion is not due yet.
    assert!(
        s.remember_event(slack, "C", t(T0 + EVENT_MEMORY_MS - 5))
            .await
            .unwrap()
    );
    assert!(
        s.remember_event(slack, "A", t(T0 + EVENT_MEMORY_MS + 1))
            .await
            .unwrap(),
        "A is past its hour, whether or not its row was deleted"
    );
    assert!(
        !s.remember_event(slack, "A", t(T0 + EVENT_MEMORY_MS + 2))
            .await
            .unwrap(),
        "and is remembered afresh"
    );
    assert!(
        !s.remember_event(slack, "C", t(T0 + EVENT_MEMORY_MS + 3))
            .await
            .unwrap()
    );
    // Much later everything above is past its hour and gets deleted.
    let later = T0 + 3 * EVENT_MEMORY_MS;
    assert!(s.remember_event(slack, "D", t(later)).await.unwrap());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM inbound_deliveries").await,
        1,
        "only D is left"
    );
}

async fn event_keys_remembered_for_an_hour(db: &Db) {
    let s = &db.store;
    let tries = (0..4).map(|_| {
        let store = s.clone();
        tokio::spawn(async move {
            store
                .remember_event(Platform::Slack, "Ev1", t(T0))
                .await
                .unwrap()
        })
    });
    let firsts = join_all(tries)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(firsts, 1);
    let slack = Platform::Slack;
    assert!(s.remember_event(slack, "Ev2", t(T0 + 1)).await.unwrap());
    assert!(
        !s.remember_event(slack, "Ev1", t(T0 + 300_000))
            .await
            .unwrap()
    );
    // Keys are per platform: the same key from another one is another delivery.
    let discord = Platform::Discord;
    assert!(
        s.remember_event(discord, "Ev1", t(T0 + 300_000))
            .await
            .unwrap()
    );
    assert!(
        !s.remember_event(discord, "Ev1", t(T0 + 300_001))
            .await
            .unwrap()
    );
    // Remembering a later key forgets the ones older than an hour.
    assert!(
        s.remember_event(slack, "Ev3", t(T0 + 3_600_001))
            .await
            .unwrap()
    );
    assert!(
        s.remember_event(slack, "Ev1", t(T0 + 3_600_002))
            .await
            .unwrap()
    );
}

/// Keys that arrive together (PostgreSQL writes them in one statement) are each answered
/// for themselves: one first delivery per key however many copies arrive at once, copies
/// of one key in the same instant included, and every key durable once answered.
async fn a_burst_of_event_keys_answers_each_caller_once(db: &Db) {
    let keys = 60;
    let copies = 4;
    let tries = (0..keys * copies).map(|i| {
        let store = db.store.clone();
        // Both platforms: a key is per platform, so these are 2 x 30 distinct deliveries.
        let platform = if i % 2 == 0 {
            Platform::Slack
        } else {
            Platform::Discord
        };
        let key = format!("Ev{}", (i / 2) % (keys / 2));
        tokio::spawn(async move {
            let first = store.remember_event(platform, &key, t(T0)).await.unwrap();
            (platform, key, first)
        })
    });
    let mut firsts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in join_all(tries).await {
        let (platform, key, first) = r.unwrap();
        *firsts
            .entry((platform.as_str().to_string(), key))
            .or_default() += usize::from(first);
    }
    assert_eq!(firsts.len(), keys);
    assert!(
        firsts.values().all(|n| *n == 1),
        "one first delivery per key: {firsts:?}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM inbound_deliveries").await,
        keys as i64
    );
    // Every later copy within the hour is a replay.
    let again = (0..keys / 2).map(|i| {
        let store = db.store.clone();
        tokio::spawn(async move {
            store
                .remember_event(Platform::Discord, &format!("Ev{i}"), t(T0 + 60_000))
                .await
                .unwrap()
        })
    });
    assert!(join_all(again).await.into_iter().all(|r| !r.unwrap()));
}

async fn write_probe_upserts_one_row(db: &Db) {
    let s = &db.store;
    s.check_writable(t(T0)).await.unwrap();
    s.check_writable(t(T0 + 500)).await.unwrap();
    // Every probe rewrites the same row, so probing forever never grows the table.
    assert_eq!(
        db.exec("UPDATE store_probe SET probed_at = probed_at")
            .await,
        1
    );
    assert_eq!(
        db.exec("UPDATE store_probe SET probed_at = probed_at WHERE probed_at = 1700000000500")
            .await,
        1
    );
}

/// A second connection to `url`, holding SQLite's write lock until it rolls back.
async fn hold_write_lock(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    other
}

/// Fails unless `started` was less than `limit` ago.
fn within(started: Instant, limit: std::time::Duration) {
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
}

/// `write`'s answer, failing round `round` of a test when none comes within 30 s.
async fn answered<T>(round: usize, write: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(std::time::Duration::from_secs(30), write)
        .await
        .unwrap_or_else(|_| panic!("round {round}: the writer stopped answering"))
}

/// A second connection holding SQLite's write lock: the probe says "locked" within about a
/// second, however long the store's own writers would wait, and recovers once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_probe_reports_a_held_lock() {
    let (url, _dir) = testdb::fresh_sqlite_url();
    let store = SqliteStore::open(&url).await.unwrap();
    store.check_writable(t(T0)).await.unwrap();
    let mut other = hold_write_lock(&url).await;
    let started = Instant::now();
    let err = store.check_writable(t(T0 + 1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotWritable(WriteBlock::Locked)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "database locked");
    within(started, std::time::Duration::from_secs(3));
    assert!(
        store.ping().await.is_ok(),
        "reads still work, which is why ping is not enough"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.check_writable(t(T0 + 2)).await.unwrap();
    store.close().await;
}

/// The audit table is renamed under the writer by another connection. Every write that needs
/// it fails with SQLite's own error, and none of them hangs: the writer forgets its prepared
/// statements whenever it rolls back. Kept, a statement that the rollback marked as expired
/// and that then fails to re-prepare makes sqlx 0.9 panic on the connection's thread as it
/// resets a multi-statement call, and the writer's next request to that thread is never
/// answered. The sequence is the one that led there: a kept call fails, a call of a new
/// shape fails as it prepares, the kept call runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_survives_a_schema_changed_under_it() {
    let (url, _dir) = testdb::fresh_sqlite_url();
    let store = SqliteStore::open(&url).await.unwrap();
    store.append_audit(entry(1)).await.unwrap();
    let ddl = async |sql: &'static str| {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    };
    ddl("ALTER TABLE audit_log RENAME TO audit_log_elsewhere").await;
    for round in 0..3 {
        let kept = store.append_audit(entry(2));
        let new_shape = store.insert_request_audited(new_request(T0 + 60), entry(3));
        for err in [
            answered(round, kept).await.err(),
            answered(round, new_shape).await.err(),
        ] {
            let err = err.expect("the audit table is gone");
            assert!(
                err.to_string().contains("no such table: audit_log"),
                "{err}"
            );
        }
    }
    ddl("ALTER TABLE audit_log_elsewhere RENAME TO audit_log").await;
    store.append_audit(entry(4)).await.unwrap();
    store
        .insert_request_audited(new_request(T0 + 60), entry(5))
        .await
        .unwrap();
    assert_eq!(store.pending_requests().await.unwrap().len(), 1);
    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.audit_tail(10).await.unwrap().len(), 3);
    store.close().await;
}

/// A batch whose connection stops answering: its caller is told the write was not confirmed
/// once the writer stops waiting, rather than never, and the writes after it go through on a
/// new connection. Here the stall is a lock held past the writer's patience; in the field it
/// is a connection thread that died with a write in its queue. The store is opened as the
/// bot opens it, so the patience is the one `open_store` is given (`bot.database_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_gives_up_on_a_stalled_batch_and_reconnects() {
    let (url, _dir) = testdb::fresh_sqlite_url();
    let stalled = std::time::Duration::from_millis(300);
    let store = open_store(&url, stalled).await.unwrap();
    store.append_audit(entry(1)).await.unwrap();
    let mut other = hold_write_lock(&url).await;
    let started = Instant::now();
    let err = store.append_audit(entry(2)).await.unwrap_err();
    within(started, std::time::Duration::from_secs(5));
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("not confirmed"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    store.append_audit(entry(3)).await.unwrap();
    let report = audit::verify(store.as_ref()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.audit_tail(10).await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_probe_reports_a_read_only_file() {
    let (url, dir) = testdb::fresh_sqlite_url();
    drop(SqliteStore::open(&url).await.unwrap());
    let ro = format!("sqlite://{}?mode=ro", dir.path().join("bot.db").display());
    let store = SqliteStore::connect(&ro).await.unwrap();
    let err = store.check_writable(t(T0)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotWritable(WriteBlock::ReadOnly)),
        "{err:?}"
    );
}

/// PostgreSQL switched to read-only for new sessions, and the pool's sessions ended (what a
/// failover to a replica or `default_transaction_read_only` does): the probe says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_probe_reports_read_only() {
    use sqlx::Connection;
    let Some(url) = testdb::fresh_postgres_url("postgres_write_probe_reports_read_only").await
    else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    store.check_writable(t(T0)).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    set_read_only(&mut admin, true).await;
    let err = store.check_writable(t(T0 + 1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotWritable(WriteBlock::ReadOnly)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "database read-only");
    set_read_only(&mut admin, false).await;
    store.check_writable(t(T0 + 2)).await.unwrap();
    let _ = admin.close().await;
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// Makes the current database read-only (or writable again) for new sessions and ends every
/// other session on it, so pools reconnect under the new setting.
pub(crate) async fn set_read_only(admin: &mut sqlx::PgConnection, on: bool) {
    let sql = if on {
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$"
    } else {
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = off', current_database()); END $$"
    };
    sqlx::query(sql).execute(&mut *admin).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *admin)
    .await
    .unwrap();
}

async fn jobs_claimed_once_by_concurrent_owners(db: &Db) {
    let s = &db.store;
    for i in 0..10 {
        s.upsert_job(
            &format!("expire:R-{i}"),
            "expire",
            &format!("{i}"),
            t(T0 + i),
        )
        .await
        .unwrap();
    }
    s.upsert_job(
        "incident_update:INC-1",
        "incident_update",
        "",
        t(T0 + 100_000),
    )
    .await
    .unwrap();
    // Upserting an existing key moves it instead of adding a second job.
    s.upsert_job("expire:R-9", "expire", "moved", t(T0 + 200_000))
        .await
        .unwrap();

    let claims = ["a", "b", "c"].map(|owner| {
        let store = s.clone();
        tokio::spawn(async move {
            store
                .claim_due_jobs(owner, t(T0 + 50), t(T0 + 900_000), 4)
                .await
                .unwrap()
        })
    });
    let mut claimed = BTreeMap::new();
    for (owner, jobs) in ["a", "b", "c"].into_iter().zip(join_all(claims).await) {
        for job in jobs.unwrap() {
            assert_eq!(job.lease_owner.as_deref(), Some(owner));
            assert_eq!(job.lease_until, Some(t(T0 + 900_000)));
            assert!(
                claimed.insert(job.key.clone(), owner).is_none(),
                "{} claimed twice",
                job.key
            );
        }
    }
    assert_eq!(claimed.len(), 9);
    assert!(!claimed.contains_key("expire:R-9"));
    assert!(
        s.claim_due_jobs("d", t(T0 + 50), t(T0 + 60_000), 100)
            .await
            .unwrap()
            .is_empty()
    );

    let later = s
        .claim_due_jobs("d", t(T0 + 300_000), t(T0 + 360_000), 100)
        .await
        .unwrap();
    let keys: Vec<_> = later.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(keys, ["incident_update:INC-1", "expire:R-9"]);
    assert_eq!(later[1].payload, "moved");
}

async fn jobs_expired_lease_is_taken_over(db: &Db) {
    let s = &db.store;
    s.upsert_job("incident_update:INC-7", "incident_update", "{}", t(T0))
        .await
        .unwrap();
    let a = s
        .claim_due_jobs("a", t(T0), t(T0 + 1_000), 10)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        s.claim_due_jobs("b", t(T0 + 500), t(T0 + 1_500), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let b = s
        .claim_due_jobs("b", t(T0 + 2_000), t(T0 + 3_000), 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].id, a[0].id);
    assert_eq!(b[0].lease_owner.as_deref(), Some("b"));

    assert!(
        !s.complete_job(a[0].id, "a", Some(t(T0 + 10_000)))
            .await
            .unwrap()
    );
    assert!(
        s.complete_job(b[0].id, "b", Some(t(T0 + 10_000)))
            .await
            .unwrap()
    );
    assert!(
        s.claim_due_jobs("c", t(T0 + 9_999), t(T0 + 20_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s
        .claim_due_jobs("c", t(T0 + 10_000), t(T0 + 20_000), 10)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].due_at, t(T0 + 10_000));

    assert!(s.complete_job(c[0].id, "c", None).await.unwrap());
    assert!(!s.complete_job(c[0].id, "c", None).await.unwrap());
    assert!(
        s.claim_due_jobs("c", t(T0 + 99_000), t(T0 + 100_000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    s.upsert_job("expire:R-1", "expire", "", t(T0))
        .await
        .unwrap();
    s.delete_job("expire:R-1").await.unwrap();
    s.delete_job("expire:R-1").await.unwrap();
    assert!(
        s.claim_due_jobs("c", t(T0 + 99_000), t(T0 + 100_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unreachable_database_error_hides_password(db: &Db) {
    let url = match db.raw {
        Raw::Sqlite(_) => "sqlite:///nonexistent-dir-erlmcp/sub/bot.db",
        // Port 9 (discard) refuses connections: the error must not echo the password.
        Raw::Pg(_) => "postgres://bot:s3cr3t-pw@127.0.0.1:9/bot?connect_timeout=2",
    };
    let err = match open_store(url, std::time::Duration::from_secs(60)).await {
        Ok(_) => panic!("{url} should not open"),
        Err(e) => format!("{e:#}"),
    };
    if matches!(db.raw, Raw::Pg(_)) {
        assert!(!err.contains("s3cr3t-pw"), "{err}");
        assert!(err.contains("***"), "{err}");
    }
}

#[test]
fn redaction() {
    assert_eq!(
        redact_url("postgres://bot:pa%40ss@db:5432/bot"),
        "postgres://bot:***@db:5432/bot"
    );
    assert_eq!(redact_url("postgres://bot@db/bot"), "postgres://bot@db/bot");
    assert_eq!(
        redact_url("sqlite:///var/lib/bot.db"),
        "sqlite:///var/lib/bot.db"
    );
    assert_eq!(
        scrub(
            "auth failed for pa@ss and pa%40ss",
            "postgres://bot:pa%40ss@db/bot"
        ),
        "auth failed for *** and ***"
    );
}

#[test]
fn redaction_replaces_the_password_not_the_first_match() {
    // The password "bo" also starts the user name and the database name.
    assert_eq!(
        redact_url("postgres://bot:bo@db:5432/bot"),
        "postgres://bot:***@db:5432/bot"
    );
    assert_eq!(
        redact_url("postgres://bot:pw@db/bot?password=x"),
        "postgres://bot:***@db/bot?password=x"
    );
    let unparseable = redact_url("postgres://bot:s3cret@[db/bot");
    assert!(!unparseable.contains("s3cret"), "{unparseable}");
}

// --- migrations ---

/// Deliveries remembered in `slack_events` (migration 0002) before 0007 replaced it.
const OLD_DELIVERIES: [(&str, i64); 3] = [
    ("slack:Ev1", T0),
    ("slack-trigger:1337.42", T0 + 1),
    ("slack-action:U1:1700000000.1", T0 + 2),
];

/// 0007 moves `slack_events` into `inbound_deliveries` as Slack's rows, and a replay of one
/// of them is still recognized afterwards.
async fn check_deliveries_kept(store: &dyn Store, rows: Vec<(String, String, i64)>) {
    let mut expected: Vec<(String, String, i64)> = OLD_DELIVERIES
        .iter()
        .map(|(k, at)| ("slack".to_string(), k.to_string(), *at))
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
    for (key, _) in OLD_DELIVERIES {
        assert!(
            !store
                .remember_event(Platform::Slack, key, t(T0 + 60_000))
                .await
                .unwrap(),
            "{key} was forgotten by the migration"
        );
    }
    assert!(
        store
            .remember_event(Platform::Discord, "slack:Ev1", t(T0 + 60_000))
            .await
            .unwrap()
    );
}

const OLD_DELIVERY_INSERT: &str = "INSERT INTO slack_events (event_key, seen_at) VALUES ($1, $2)";
const DELIVERY_ROWS: &str =
    "SELECT platform, key, seen_at FROM inbound_deliveries ORDER BY platform, key";

#[tokio::test]
async fn slack_events_rows_kept_by_0007_on_sqlite() {
    let (url, _dir) = testdb::fresh_sqlite_url();
    let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate!("../migrations/sqlite")
        .run_to(4, &pool)
        .await
        .unwrap();
    for (key, at) in OLD_DELIVERIES {
        sqlx::query(OLD_DELIVERY_INSERT)
            .bind(key)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&url).await.unwrap();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(DELIVERY_ROWS)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let old_table: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'slack_events'")
            .fetch_optional(store.pool())
            .await
            .unwrap();
    assert_eq!(old_table, None);
    check_deliveries_kept(&store, rows).await;
    store.close().await;
}

#[tokio::test]
async fn slack_events_rows_kept_by_0007_on_postgres() {
    let Some(url) = testdb::fresh_postgres_url("slack_events_rows_kept_by_0007_on_postgres").await
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate!("../migrations/postgres")
        .run_to(4, &pool)
        .await
        .unwrap();
    for (key, at) in OLD_DELIVERIES {
        sqlx::query(OLD_DELIVERY_INSERT)
            .bind(key)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = PgStore::open(&url).await.unwrap();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(DELIVERY_ROWS)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let old_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('slack_events')::text")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(old_table, None);
    check_deliveries_kept(&store, rows).await;
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// Two replicas on one database, each batching the keys that reach it: a delivery retried
/// to both at once is taken by exactly one, whichever way their batches interleave (and the
/// keys are sent in opposite orders, which two batches locking rows in arrival order
/// could deadlock on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_take_each_delivery_once() {
    let Some(url) = testdb::fresh_postgres_url("postgres_replicas_take_each_delivery_once").await
    else {
        return;
    };
    let a = Arc::new(PgStore::open(&url).await.unwrap());
    let b = Arc::new(PgStore::connect(&url).await.unwrap());
    let keys = 200;
    let mut tries = Vec::new();
    for round in 0..3 {
        for i in 0..keys {
            for (store, key) in [(&a, i), (&b, keys - 1 - i)] {
                let store: Arc<dyn Store> = store.clone();
                tries.push(tokio::spawn(async move {
                    let key = format!("Ev{key}");
                    let first = store
                        .remember_event(Platform::Slack, &key, t(T0 + round))
                        .await
                        .unwrap();
                    (key, first)
                }));
            }
        }
    }
    let mut firsts: BTreeMap<String, usize> = BTreeMap::new();
    for r in join_all(tries).await {
        let (key, first) = r.unwrap();
        *firsts.entry(key).or_default() += usize::from(first);
    }
    assert_eq!(firsts.len(), keys);
    assert!(firsts.values().all(|n| *n == 1), "{firsts:?}");
    a.close().await;
    b.close().await;
    testdb::drop_postgres_database(&url).await;
}

fn migration_files(backend: &str) -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(backend);
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name
                .split('_')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: NNNN_name.sql"));
            (version, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort_by_key(|(v, _)| *v);
    files
}

/// `NOT NULL` columns without a `DEFAULT` make later `ADD COLUMN`s and hand-written inserts
/// fail. These are exempt because every insert writes them and no default would be
/// meaningful: a made-up time, identity or hash would hide a bug rather than prevent one.
const WRITTEN_BY_EVERY_INSERT: &[&str] = &[
    // When: a zero timestamp would silently pass expiry and soak checks.
    "requests.created_at",
    "requests.expires_at",
    "requests.updated_at",
    "votes.at",
    "audit_log.at",
    "deployments.at",
    "sandbox.updated_at",
    "incidents.declared_at",
    "incident_events.at",
    "scheduled_jobs.due_at",
    "slack_events.seen_at",
    "inbound_deliveries.seen_at",
    // Who and what: the rows mean nothing without them.
    "requests.requester_platform",
    "requests.requester_id",
    "requests.operation",
    "votes.approve",
    "audit_log.action",
    "deployments.environment",
    "deployments.version",
    "deployments.kind",
    "deployments.succeeded",
    "incidents.severity",
    "incident_events.kind",
    "scheduled_jobs.key",
    "scheduled_jobs.kind",
    // The chain: a default hash would be a forged link.
    "audit_log.prev_hash",
    "audit_log.hash",
];

#[derive(Debug, PartialEq)]
struct Column {
    table: String,
    name: String,
    not_null: bool,
    default: bool,
    primary_key: bool,
}

/// Columns declared by `CREATE TABLE` and `ALTER TABLE ... ADD COLUMN`, in order.
fn declared_columns(sql: &str) -> Vec<Column> {
    let sql: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut columns = Vec::new();
    for stmt in sql.split(';') {
        let stmt = stmt.trim();
        let upper = stmt.to_ascii_uppercase();
        let words: Vec<&str> = stmt.split_whitespace().collect();
        if upper.starts_with("CREATE TABLE") {
            let table = words[2].trim_end_matches('(').to_string();
            let body = &stmt[stmt.find('(').unwrap() + 1..stmt.rfind(')').unwrap()];
            let mut primary = Vec::new();
            let mut table_cols = Vec::new();
            for item in split_top_level(body) {
                let item_upper = item.to_ascii_uppercase();
                if item_upper.starts_with("PRIMARY KEY") {
                    let cols = &item[item.find('(').unwrap() + 1..item.rfind(')').unwrap()];
                    primary.extend(cols.split(',').map(|c| c.trim().to_string()));
                } else if ["UNIQUE", "CONSTRAINT", "FOREIGN", "CHECK"]
                    .iter()
                    .any(|k| item_upper.starts_with(k))
                {
                } else {
                    table_cols.push(column(&table, &item));
                }
            }
            for mut c in table_cols {
                c.primary_key |= primary.contains(&c.name);
                columns.push(c);
            }
        } else if upper.starts_with("ALTER TABLE") && upper.contains(" ADD COLUMN ") {
            let def = &stmt[upper.find(" ADD COLUMN ").unwrap() + " ADD COLUMN ".len()..];
            columns.push(column(words[2], def));
        }
    }
    columns
}

fn column(table: &str, def: &str) -> Column {
    let upper = def.to_ascii_uppercase();
    Column {
        table: table.to_string(),
        name: def.split_whitespace().next().unwrap().to_string(),
        not_null: upper.contains("NOT NULL"),
        default: upper.contains(" DEFAULT "),
        primary_key: upper.contains("PRIMARY KEY"),
    }
}

fn split_top_level(body: &str) -> Vec<String> {
    let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_string());
    }
    items
}

#[test]
fn not_null_columns_have_defaults() {
    for backend in ["sqlite", "postgres"] {
        let mut exempt_used = HashSet::new();
        for (version, sql) in migration_files(backend) {
            for c in declared_columns(&sql) {
                let qualified = format!("{}.{}", c.table, c.name);
                if !c.not_null || c.default || c.primary_key {
                    assert!(
                        !WRITTEN_BY_EVERY_INSERT.contains(&qualified.as_str()) || c.not_null,
                        "{qualified} is exempt but nullable"
                    );
                    continue;
                }
                assert!(
                    WRITTEN_BY_EVERY_INSERT.contains(&qualified.as_str()),
                    "{backend} migration {version}: {qualified} is NOT NULL without DEFAULT"
                );
                exempt_used.insert(qualified);
            }
        }
        let stale: Vec<_> = WRITTEN_BY_EVERY_INSERT
            .iter()
            .filter(|c| !exempt_used.contains(**c))
            .collect();
        assert!(
            stale.is_empty(),
            "{backend}: exemptions for columns that need none: {stale:?}"
        );
    }
}

#[test]
fn schemas_are_parallel() {
    let shape = |backend| {
        migration_files(backend)
            .iter()
            .flat_map(|(_, sql)| declared_columns(sql))
            .map(|c| (c.table, c.name, c.not_null, c.default, c.primary_key))
            .collect::<Vec<_>>()
    };
    let sqlite = shape("sqlite");
    assert!(
        sqlite.len() > 50,
        "parser found only {} columns",
        sqlite.len()
    );
    assert_eq!(sqlite, shape("postgres"));
    let versions = |b| {
        migration_files(b)
            .into_iter()
            .map(|(v, _)| v)
            .collect::<Vec<_>>()
    };
    assert_eq!(versions("sqlite"), versions("postgres"));
}

#[test]
fn parser_sees_table_primary_keys() {
    let cols = declared_columns(
        "CREATE TABLE v (a BIGINT NOT NULL, b TEXT NOT NULL DEFAULT '', PRIMARY KEY (a)); -- x\nALTER TABLE v ADD COLUMN c TEXT NOT NULL;",
    );
    let flags: Vec<_> = cols
        .iter()
        .map(|c| (c.name.as_str(), c.not_null, c.default, c.primary_key))
        .collect();
    assert_eq!(
        flags,
        [
            ("a", true, false, true),
            ("b", true, true, false),
            ("c", true, false, false)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_probe_reports_unreachable() {
    use sqlx::Connection;
    let Some(url) = testdb::fresh_postgres_url("postgres_write_probe_reports_unreachable").await
    else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    store.check_writable(t(T0)).await.unwrap();
    // From the server's admin database: a database cannot close its own doors.
    let admin_url = std::env::var(testdb::POSTGRES_URL_VAR).unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let allow = |on: bool| format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS {on}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
        .execute(&mut admin)
        .await
        .unwrap();
    testdb::end_sessions(&url).await;
    let err = store.check_writable(t(T0 + 1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotWritable(WriteBlock::Unreachable)),
        "{err:?}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
        .execute(&mut admin)
        .await
        .unwrap();
    store.check_writable(t(T0 + 2)).await.unwrap();
    let _ = admin.close().await;
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// One group of the PostgreSQL audit writer holding new requests, finishes and a plain
/// append: each caller gets its own answer, as if the writes had gone one by one. Called on
/// the writer directly, since whether concurrent callers share a group is up to timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_answers_each_request_and_finish() {
    let name = "store::contract_tests::postgres_group_answers_each_request_and_finish";
    let Some(url) = testdb::fresh_postgres_url(name).await else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    let pool = store.pool().clone();
    group_answers_each_request_and_finish(&store, |work| async move {
        super::pg_writer::Writer::new(pool, super::pg_writer::STATEMENT_TIMEOUT)
            .write(work)
            .await
    })
    .await;
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// The bound the held-lock tests give the store's statements.
const PG_BOUND: std::time::Duration = std::time::Duration::from_millis(300);

/// A migrated store on a fresh PostgreSQL database, its statements bounded at [`PG_BOUND`].
async fn pg_store_bounded(name: &str) -> Option<(PgStore, String)> {
    let url = testdb::fresh_postgres_url(name).await?;
    let store = PgStore::connect_stalling_after(&url, PG_BOUND)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((store, url))
}

/// Another session, holding `tables` exclusively until it commits.
async fn pg_hold_tables(url: &str, tables: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut other = sqlx::PgConnection::connect(url).await.unwrap();
    let lock = format!("BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut other)
        .await
        .unwrap();
    other
}

/// A session holds a lock the audit writer needs and keeps it: the writer's group is
/// cancelled by the server once its statement has waited too long, the caller gets that
/// error, nothing of the group stays, and the next append goes through once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_writer_gives_up_on_a_held_lock() {
    let name = "store::contract_tests::postgres_audit_writer_gives_up_on_a_held_lock";
    let Some((store, url)) = pg_store_bounded(name).await else {
        return;
    };
    let first = store.append_audit(entry(1)).await.unwrap();
    let mut other = pg_hold_tables(&url, "audit_log").await;
    let started = Instant::now();
    let err = store
        .insert_request_audited(new_request(T0 + 60_000), entry(2))
        .await
        .unwrap_err();
    within(started, std::time::Duration::from_secs(5));
    assert!(err.to_string().contains("statement timeout"), "{err}");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    assert!(store.pending_requests().await.unwrap().is_empty());
    let second = store.append_audit(entry(3)).await.unwrap();
    assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// The same bound holds for the pool's reads and writes, so a lock held elsewhere fails
/// one command instead of holding it and its connection for ever. Pruning may run long but
/// still waits on a lock only that long. The store is opened as the bot opens it, so the
/// bound is the one `open_store` is given (`bot.database_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statements_give_up_on_a_held_lock() {
    let name = "store::contract_tests::postgres_statements_give_up_on_a_held_lock";
    let Some(url) = testdb::fresh_postgres_url(name).await else {
        return;
    };
    let store = open_store(&url, PG_BOUND).await.unwrap();
    let row = store
        .insert_request(new_request(T0 + 60_000))
        .await
        .unwrap();
    store.append_audit(entry(1)).await.unwrap();
    let mut other = pg_hold_tables(&url, "requests, audit_log").await;

    let started = Instant::now();
    let read = store.get_request(row.id).await.unwrap_err();
    assert!(matches!(read, StoreError::Unavailable(_)), "{read:?}");
    assert!(read.to_string().contains("statement timeout"), "{read}");
    assert!(read.to_string().contains("another session"), "{read}");
    let write = store
        .insert_request(new_request(T0 + 60_000))
        .await
        .unwrap_err();
    assert!(write.to_string().contains("statement timeout"), "{write}");
    let prune = store.prune_audit(1).await.unwrap_err();
    assert!(prune.to_string().contains("lock timeout"), "{prune}");
    within(started, std::time::Duration::from_secs(10));
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    assert_eq!(store.pending_requests().await.unwrap().len(), 1);
    assert_eq!(store.prune_audit(1).await.unwrap(), 1);
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// Migrations are not bounded: a replica waits out another one's, however long they take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_wait_for_a_held_lock() {
    let name = "store::contract_tests::postgres_migrations_wait_for_a_held_lock";
    let Some((store, url)) = pg_store_bounded(name).await else {
        return;
    };
    let mut other = pg_hold_tables(&url, "_sqlx_migrations").await;
    let held = 4 * PG_BOUND;
    let release = tokio::spawn(async move {
        tokio::time::sleep(held).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    });
    let started = Instant::now();
    store.migrate().await.unwrap();
    assert!(started.elapsed() >= held, "{:?}", started.elapsed());
    release.await.unwrap();

    // The connection the migrations ran on went back to the pool bounded again.
    let mut conn = store.pool().acquire().await.unwrap();
    let bound: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(bound, "300ms");
    drop(conn);
    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// The PostgreSQL audit writer keeps its connection from group to group. A group that fails
/// leaves nothing behind and the next goes through; a connection cut between groups (a
/// server restart) costs no caller an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_writer_recovers_its_connection() {
    let name = "store::contract_tests::postgres_audit_writer_recovers_its_connection";
    let Some(url) = testdb::fresh_postgres_url(name).await else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    let first = store.append_audit(entry(1)).await.unwrap();

    // PostgreSQL refuses a NUL in text, so the group fails at its audit rows, after its
    // request was inserted.
    let mut bad = entry(2);
    bad.outcome = "nul \0 here".into();
    let err = store
        .insert_request_audited(new_request(T0 + 60_000), bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(store.pending_requests().await.unwrap().is_empty());
    let second = store.append_audit(entry(3)).await.unwrap();
    assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));

    // The writer's kept connection is among them (without its second try, this test fails
    // at the next append).
    assert!(testdb::end_sessions(&url).await > 0);
    let third = store.append_audit(entry(4)).await.unwrap();
    assert_eq!((third.seq, &third.prev_hash), (3, &second.hash));
    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.count, 3);

    store.close().await;
    testdb::drop_postgres_database(&url).await;
}

/// The same of one run of the SQLite writer.
#[tokio::test]
async fn sqlite_run_answers_each_request_and_finish() {
    let (url, _dir) = testdb::fresh_sqlite_url();
    let store = SqliteStore::open(&url).await.unwrap();
    let at = url.clone();
    group_answers_each_request_and_finish(&store, |work| async move {
        super::sqlite::write_run(&at, work).await
    })
    .await;
    store.close().await;
}

async fn group_answers_each_request_and_finish<F, Fut>(store: &dyn Store, write: F)
where
    F: FnOnce(Vec<super::batch::AuditWork>) -> Fut,
    Fut: std::future::Future<Output = StoreResult<Vec<super::batch::Done>>>,
{
    use super::batch::{AuditWork, Done};

    let [a, b, c] = [1, 2, 3].map(|_| executing_request(Some("me"), T0));
    let a = store.insert_request(a).await.unwrap().id;
    let b = store.insert_request(b).await.unwrap().id;
    let c = store.insert_request(c).await.unwrap().id;
    // Already ended: a finish of it must not move it.
    assert!(
        store
            .transition_request(
                c,
                RequestState::Executing,
                RequestState::Failed,
                Some("x"),
                t(T0)
            )
            .await
            .unwrap()
    );
    let fresh = |n: i64| {
        let mut e = entry(n);
        e.request_id = None;
        e
    };
    let mut pending = new_request(T0 + 60_000);
    pending.command_text = "second".into();
    let mut b_done = finish(b, RequestState::Succeeded, Some("2 of 2"));
    b_done.sandbox = Some(sandbox_state("prod", 7));
    let work = vec![
        AuditWork::Request(executing_request(Some("me"), T0), fresh(1)),
        AuditWork::Finish(finish(a, RequestState::Succeeded, Some("a done")), entry(2)),
        AuditWork::Append(entry(3)),
        AuditWork::Request(pending, fresh(4)),
        AuditWork::Finish(finish(c, RequestState::Succeeded, Some("late")), entry(5)),
        AuditWork::Finish(b_done, entry(6)),
        // The same request again in the same group: the first finish already moved it.
        AuditWork::Finish(finish(a, RequestState::Failed, Some("again")), entry(7)),
        AuditWork::Request(executing_request(None, T0), fresh(8)),
    ];
    let done = write(work).await.unwrap();
    assert_eq!(done.len(), 8);

    let mut inserted = Vec::new();
    let mut moved = Vec::new();
    for (i, d) in done.iter().enumerate() {
        let audit = match d {
            Done::Appended(audit) => audit,
            Done::Requested(row, audit) => {
                assert_eq!(audit.entry.request_id, Some(row.id));
                assert_eq!(db_request(store, row.id).await, **row);
                inserted.push((**row).clone());
                audit
            }
            Done::Finished(m, audit) => {
                moved.push(*m);
                audit
            }
        };
        assert_eq!(audit.seq, i as i64 + 1);
    }
    assert_eq!(moved, vec![true, false, true, false]);
    assert_eq!(inserted.len(), 3);
    assert_eq!(inserted[0].state, RequestState::Executing);
    assert_eq!(inserted[1].command_text, "second");
    assert_eq!(inserted[1].state, RequestState::Pending);
    assert_eq!(inserted[2].owner, None);
    assert!(inserted.windows(2).all(|w| w[0].id < w[1].id));
    assert!(inserted[0].id.0 > c.0);

    let a_now = db_request(store, a).await;
    assert_eq!(a_now.state, RequestState::Succeeded);
    assert_eq!(a_now.outcome.as_deref(), Some(&*format!("{a} succeeded")));
    assert_eq!(a_now.last_progress.as_deref(), Some("a done"));
    let b_now = db_request(store, b).await;
    assert_eq!(b_now.state, RequestState::Succeeded);
    assert_eq!(b_now.last_progress.as_deref(), Some("2 of 2"));
    let c_now = db_request(store, c).await;
    assert_eq!(c_now.state, RequestState::Failed);
    assert_eq!(c_now.outcome.as_deref(), Some("x"));
    assert_eq!(c_now.last_progress, None);
    assert_eq!(
        store.sandbox_get("prod").await.unwrap(),
        Some(sandbox_state("prod", 7))
    );
    let report = audit::verify(store).await.unwrap();
    assert!(report.is_ok() && report.count == 8, "{report:?}");
}

/// Two replicas, each with its own audit writer, append at once: the advisory lock makes
/// each group read the tip the other last committed, so the chain has no fork and no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_append_one_chain() {
    let name = "store::contract_tests::postgres_replicas_append_one_chain";
    let Some(url) = testdb::fresh_postgres_url(name).await else {
        return;
    };
    let a = Arc::new(PgStore::open(&url).await.unwrap());
    let b = Arc::new(PgStore::open(&url).await.unwrap());
    let tasks = (0..40).map(|task| {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..5 {
                let (row, audit) = store
                    .insert_request_audited(executing_request(Some("me"), T0), entry(task * 10 + i))
                    .await
                    .unwrap();
                assert_eq!(audit.entry.request_id, Some(row.id));
                seqs.push(audit.seq);
            }
            seqs
        })
    });
    assert_one_chain(a.as_ref(), tasks, 200).await;
    a.close().await;
    b.close().await;
    testdb::drop_postgres_database(&url).await;
}

async fn db_request(store: &dyn Store, id: RequestId) -> RequestRow {
    store.get_request(id).await.unwrap().unwrap()
}
