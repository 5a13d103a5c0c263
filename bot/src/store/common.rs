//! Row shapes, SQL and queries shared by both backends. SQLite accepts PostgreSQL's `$N`
//! placeholders, so one text serves both wherever the dialects agree; the contract tests run
//! each on both.

use std::marker::PhantomData;

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;

macro_rules! request_cols {
    () => {
        "id, created_at, expires_at, updated_at, requester_platform, requester_id, \
         requester_name, channel, command_text, operation, environment, command_json, \
         approvals_json, state, break_glass, outcome, message_ref, owner, last_progress, \
         acknowledged_at"
    };
}
macro_rules! vote_cols {
    () => {
        "request_id, voter_platform, voter_id, voter_name, approve, comment, at"
    };
}
macro_rules! audit_cols {
    () => {
        "seq, at, action, who_platform, who_id, who_name, channel, operation, arguments, \
         environment, request_id, decision, reason, votes, outcome, prev_hash, hash"
    };
}
macro_rules! deployment_cols {
    () => {
        "environment, version, kind, succeeded, request_id, at"
    };
}
macro_rules! incident_cols {
    () => {
        "id, severity, title, declared_by_platform, declared_by_id, declared_by_name, \
         declared_at, channel, channels_json, commander, resolved_at, summary, \
         last_human_update_at"
    };
}
macro_rules! event_cols {
    () => {
        "incident_id, seq, at, kind, who_platform, who_id, who_name, text"
    };
}
macro_rules! job_cols {
    () => {
        "id, key, kind, payload, due_at, lease_owner, lease_until"
    };
}
pub(crate) use {audit_cols, event_cols, incident_cols, job_cols, request_cols};

pub const INSERT_REQUEST: &str = concat!(
    "INSERT INTO requests (created_at, expires_at, updated_at, requester_platform, \
     requester_id, requester_name, channel, command_text, operation, environment, \
     command_json, approvals_json, state, break_glass, owner) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING ",
    request_cols!()
);
pub const GET_REQUEST: &str = concat!("SELECT ", request_cols!(), " FROM requests WHERE id = $1");
pub const PENDING_REQUESTS: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE state = 'pending' ORDER BY id"
);
pub const EXPIRED_REQUESTS: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at, id"
);
// Operations that ended in [$1, $2): what the daily report calls yesterday's.
pub const REQUESTS_FINISHED_BETWEEN: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE state IN ('succeeded', 'failed', 'interrupted') \
     AND updated_at >= $1 AND updated_at < $2 ORDER BY updated_at, id"
);
pub const TRANSITION_REQUEST: &str = "UPDATE requests SET state = $1, \
     outcome = COALESCE($2, outcome), updated_at = $3 WHERE id = $4 AND state = $5";
// The end of an executing request: its last progress line (kept when none is given) and
// its outcome in one statement.
pub const SET_REQUEST_MESSAGE: &str = "UPDATE requests SET message_ref = $1 WHERE id = $2";
pub const START_EXECUTING: &str = "UPDATE requests SET state = 'executing', owner = $1, \
     updated_at = $2 WHERE id = $3 AND state = $4";
pub const SET_REQUEST_PROGRESS: &str =
    "UPDATE requests SET last_progress = $1 WHERE id = $2 AND state = 'executing'";
pub const HEARTBEAT: &str = "INSERT INTO replicas (owner, started_at, heartbeat_at) \
     VALUES ($1, $2, $3) ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
// Every process start adds a row; one silent for a week is long gone (a request it held
// is orphaned whether or not its row is still there).
pub const FORGET_REPLICAS: &str = "DELETE FROM replicas WHERE heartbeat_at < $1";
pub const REPLICA_MEMORY_MS: i64 = 7 * 24 * 3_600_000;
pub const REPLICAS: &str =
    "SELECT owner, started_at, heartbeat_at FROM replicas ORDER BY started_at, owner";
// Live replicas are those with a heartbeat at or after the cutoff ($1).
pub const ORPHANED_REQUESTS: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE state = 'executing' AND CASE WHEN owner IS NULL \
     THEN updated_at < $1 ELSE NOT EXISTS (SELECT 1 FROM replicas \
     WHERE replicas.owner = requests.owner AND replicas.heartbeat_at >= $1) END ORDER BY id"
);
pub const INTERRUPT_REQUEST: &str = "UPDATE requests SET state = 'interrupted', \
     outcome = $1, updated_at = $2 WHERE id = $3 AND state = 'executing' \
     AND owner IS NOT DISTINCT FROM $4 AND NOT EXISTS (SELECT 1 FROM replicas \
     WHERE replicas.owner = $4 AND replicas.heartbeat_at >= $5) \
     AND (owner IS NOT NULL OR updated_at < $5)";
pub const UNACKNOWLEDGED_INTERRUPTED: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE state = 'interrupted' AND acknowledged_at IS NULL ORDER BY id"
);
pub const ACKNOWLEDGE_REQUEST: &str = "UPDATE requests SET acknowledged_at = $1 \
     WHERE id = $2 AND state = 'interrupted' AND acknowledged_at IS NULL";

pub const INSERT_VOTE: &str = concat!(
    "INSERT INTO votes (",
    vote_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (request_id, voter_platform, voter_id) DO NOTHING"
);
pub const VOTES: &str = concat!(
    "SELECT ",
    vote_cols!(),
    " FROM votes WHERE request_id = $1 ORDER BY at, voter_platform, voter_id"
);

pub const LAST_AUDIT: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
pub const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
);
pub const AUDIT_PAGE: &str = concat!(
    "SELECT ",
    audit_cols!(),
    " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
);
pub const AUDIT_TAIL: &str = concat!(
    "SELECT ",
    audit_cols!(),
    " FROM audit_log ORDER BY seq DESC LIMIT $1"
);

pub const SAVE_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (seq, hash, at, kind, signature) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq, kind) DO NOTHING";
pub const CHECKPOINTS: &str =
    "SELECT seq, hash, at, kind, signature FROM audit_checkpoints ORDER BY seq, at";
// Never the newest row: it is the chain's tip, which the next append links to.
pub const NEWEST_ROW_BEFORE: &str = "SELECT seq, hash FROM audit_log WHERE at < $1 \
     AND seq < (SELECT MAX(seq) FROM audit_log) ORDER BY seq DESC LIMIT 1";
pub const PRUNE_AUDIT: &str = "DELETE FROM audit_log WHERE seq <= $1";
pub const PRUNE_CHECKPOINTS: &str = "DELETE FROM audit_checkpoints WHERE seq < $1";

pub const RECORD_DEPLOYMENT: &str = concat!(
    "INSERT INTO deployments (",
    deployment_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)"
);
pub const SOAK_DEPLOYED_AT: &str = "SELECT MAX(at) FROM deployments WHERE environment = $1 \
     AND version = $2 AND kind = 'deploy' AND succeeded = TRUE";
// Any rollback attempt counts, failed ones included: someone judged the version bad.
pub const SOAK_ROLLED_BACK: &str = "SELECT MAX(at) FROM deployments WHERE environment = $1 \
     AND kind = 'rollback' AND at >= $2";
pub const DEPLOYMENTS: &str = concat!(
    "SELECT ",
    deployment_cols!(),
    " FROM deployments WHERE environment = $1 ORDER BY at DESC, id DESC LIMIT $2"
);

pub const SANDBOX_GET: &str =
    "SELECT environment, state_json, updated_at FROM sandbox WHERE environment = $1";
pub const SANDBOX_PUT: &str = "INSERT INTO sandbox (environment, state_json, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (environment) DO UPDATE \
     SET state_json = excluded.state_json, updated_at = excluded.updated_at";

pub const INSERT_INCIDENT: &str = concat!(
    "INSERT INTO incidents (severity, title, declared_by_platform, declared_by_id, \
     declared_by_name, declared_at, channel) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
    incident_cols!()
);
pub const GET_INCIDENT: &str =
    concat!("SELECT ", incident_cols!(), " FROM incidents WHERE id = $1");
pub const OPEN_INCIDENTS: &str = concat!(
    "SELECT ",
    incident_cols!(),
    " FROM incidents WHERE resolved_at IS NULL ORDER BY id"
);
pub const UPDATE_INCIDENT: &str = "UPDATE incidents SET severity = $1, title = $2, \
     channel = $3, channels_json = $4, commander = $5, resolved_at = $6, summary = $7, \
     last_human_update_at = $8 WHERE id = $9";
pub const APPEND_INCIDENT_EVENT: &str = concat!(
    "INSERT INTO incident_events (",
    event_cols!(),
    ") SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7 \
     FROM incident_events WHERE incident_id = $1 RETURNING ",
    event_cols!()
);
pub const INCIDENT_EVENTS: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM incident_events WHERE incident_id = $1 ORDER BY seq"
);

pub const SET_INCIDENT_STATUSPAGE_ID: &str =
    "UPDATE incidents SET statuspage_id = $1 WHERE id = $2";
pub const INCIDENT_STATUSPAGE_ID: &str = "SELECT statuspage_id FROM incidents WHERE id = $1";

pub const UPSERT_JOB: &str = "INSERT INTO scheduled_jobs (key, kind, payload, due_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE \
     SET kind = excluded.kind, payload = excluded.payload, due_at = excluded.due_at";
pub const DELETE_JOB: &str = "DELETE FROM scheduled_jobs WHERE key = $1";
pub const RESCHEDULE_JOB: &str = "UPDATE scheduled_jobs SET due_at = $1, \
     lease_owner = NULL, lease_until = NULL WHERE id = $2 AND lease_owner = $3";
pub const FINISH_JOB: &str = "DELETE FROM scheduled_jobs WHERE id = $1 AND lease_owner = $2";
/// A key remembered more than [`EVENT_MEMORY_MS`] ago (`$4` is that horizon) counts as new
/// and is remembered afresh, so the answer does not depend on when old keys were last
/// deleted: the ack path pays for one statement, not a delete and an insert.
pub const REMEMBER_EVENT: &str = "INSERT INTO inbound_deliveries (platform, key, seen_at) \
     VALUES ($1, $2, $3) ON CONFLICT (platform, key) DO UPDATE SET seen_at = excluded.seen_at \
     WHERE inbound_deliveries.seen_at < $4";
pub const FORGET_EVENTS: &str = "DELETE FROM inbound_deliveries WHERE seen_at < $1";
pub const PROBE_WRITE: &str = "INSERT INTO store_probe (id, probed_at) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at";
/// How long an event key is remembered, in milliseconds.
pub const EVENT_MEMORY_MS: i64 = 3_600_000;
/// Keys past their hour are deleted at most this often (per process), not on every call.
pub const FORGET_EVERY_MS: i64 = 60_000;

/// Whether keys past their hour are due to be deleted at `now_ms`, given when that was last
/// done (`last_ms`); a clock that went back (a manual one in tests) counts as due.
pub fn forget_due(last_ms: Option<i64>, now_ms: i64) -> bool {
    last_ms.is_none_or(|last| now_ms < last || now_ms - last >= FORGET_EVERY_MS)
}

#[derive(sqlx::FromRow)]
pub struct RequestRaw {
    id: i64,
    created_at: i64,
    expires_at: i64,
    updated_at: i64,
    requester_platform: String,
    requester_id: String,
    requester_name: String,
    channel: String,
    command_text: String,
    operation: String,
    environment: Option<String>,
    command_json: String,
    approvals_json: String,
    state: String,
    break_glass: bool,
    outcome: Option<String>,
    message_ref: Option<String>,
    owner: Option<String>,
    last_progress: Option<String>,
    acknowledged_at: Option<i64>,
}

impl TryFrom<RequestRaw> for RequestRow {
    type Error = StoreError;
    fn try_from(r: RequestRaw) -> StoreResult<RequestRow> {
        let state = RequestState::parse(&r.state).ok_or_else(|| {
            StoreError::Database(format!("request {} has unknown state {:?}", r.id, r.state))
        })?;
        let message_ref = match r.message_ref.as_deref() {
            None => None,
            Some(m) => Some(MessageRef::decode(m).ok_or_else(|| {
                StoreError::Database(format!(
                    "request {} has an unreadable message reference {m:?}",
                    r.id
                ))
            })?),
        };
        Ok(RequestRow {
            id: RequestId(r.id),
            created_at: from_ms(r.created_at)?,
            expires_at: from_ms(r.expires_at)?,
            updated_at: from_ms(r.updated_at)?,
            requester: Who {
                platform: r.requester_platform,
                user_id: r.requester_id,
                display_name: r.requester_name,
            },
            channel: r.channel,
            command_text: r.command_text,
            operation: r.operation,
            environment: r.environment,
            command_json: r.command_json,
            approvals_json: r.approvals_json,
            state,
            break_glass: r.break_glass,
            outcome: r.outcome,
            message_ref,
            owner: r.owner,
            last_progress: r.last_progress,
            acknowledged_at: r.acknowledged_at.map(from_ms).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ReplicaRaw {
    owner: String,
    started_at: i64,
    heartbeat_at: i64,
}

impl TryFrom<ReplicaRaw> for ReplicaRow {
    type Error = StoreError;
    fn try_from(r: ReplicaRaw) -> StoreResult<ReplicaRow> {
        Ok(ReplicaRow {
            owner: r.owner,
            started_at: from_ms(r.started_at)?,
            heartbeat_at: from_ms(r.heartbeat_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct VoteRaw {
    request_id: i64,
    voter_platform: String,
    voter_id: String,
    voter_name: String,
    approve: bool,
    comment: Option<String>,
    at: i64,
}

impl TryFrom<VoteRaw> for VoteRow {
    type Error = StoreError;
    fn try_from(r: VoteRaw) -> StoreResult<VoteRow> {
        Ok(VoteRow {
            request_id: RequestId(r.request_id),
            voter: Who {
                platform: r.voter_platform,
                user_id: r.voter_id,
                display_name: r.voter_name,
            },
            approve: r.approve,
            comment: r.comment,
            at: from_ms(r.at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct CheckpointRaw {
    seq: i64,
    hash: String,
    at: i64,
    kind: String,
    signature: String,
}

impl TryFrom<CheckpointRaw> for Checkpoint {
    type Error = StoreError;
    fn try_from(r: CheckpointRaw) -> StoreResult<Checkpoint> {
        Ok(Checkpoint {
            kind: CheckpointKind::parse(&r.kind).ok_or_else(|| {
                StoreError::Database(format!("unknown checkpoint kind {:?}", r.kind))
            })?,
            seq: r.seq,
            hash: r.hash,
            at_ms: r.at,
            signature: r.signature,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRaw {
    seq: i64,
    at: i64,
    action: String,
    who_platform: String,
    who_id: String,
    who_name: String,
    channel: String,
    operation: String,
    arguments: String,
    environment: Option<String>,
    request_id: Option<i64>,
    decision: String,
    reason: String,
    votes: String,
    outcome: String,
    prev_hash: String,
    hash: String,
}

impl TryFrom<AuditRaw> for AuditRow {
    type Error = StoreError;
    fn try_from(r: AuditRaw) -> StoreResult<AuditRow> {
        Ok(AuditRow {
            seq: r.seq,
            entry: NewAuditEntry {
                at: from_ms(r.at)?,
                action: r.action,
                who: Who {
                    platform: r.who_platform,
                    user_id: r.who_id,
                    display_name: r.who_name,
                },
                channel: r.channel,
                operation: r.operation,
                arguments: r.arguments,
                environment: r.environment,
                request_id: r.request_id.map(RequestId),
                decision: r.decision,
                reason: r.reason,
                votes: r.votes,
                outcome: r.outcome,
            },
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct DeploymentRaw {
    environment: String,
    version: String,
    kind: String,
    succeeded: bool,
    request_id: Option<i64>,
    at: i64,
}

impl TryFrom<DeploymentRaw> for DeploymentRecord {
    type Error = StoreError;
    fn try_from(r: DeploymentRaw) -> StoreResult<DeploymentRecord> {
        Ok(DeploymentRecord {
            environment: r.environment,
            version: r.version,
            kind: r.kind,
            succeeded: r.succeeded,
            request_id: r.request_id.map(RequestId),
            at: from_ms(r.at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct SandboxRaw {
    environment: String,
    state_json: String,
    updated_at: i64,
}

impl TryFrom<SandboxRaw> for SandboxRow {
    type Error = StoreError;
    fn try_from(r: SandboxRaw) -> StoreResult<SandboxRow> {
        Ok(SandboxRow {
            environment: r.environment,
            state_json: r.state_json,
            updated_at: from_ms(r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct IncidentRaw {
    id: i64,
    severity: String,
    title: String,
    declared_by_platform: String,
    declared_by_id: String,
    declared_by_name: String,
    declared_at: i64,
    channel: String,
    channels_json: String,
    commander: Option<String>,
    resolved_at: Option<i64>,
    summary: Option<String>,
    last_human_update_at: Option<i64>,
}

impl TryFrom<IncidentRaw> for IncidentRow {
    type Error = StoreError;
    fn try_from(r: IncidentRaw) -> StoreResult<IncidentRow> {
        let severity = Severity::parse(&r.severity).ok_or_else(|| {
            StoreError::Database(format!(
                "incident {} has unknown severity {:?}",
                r.id, r.severity
            ))
        })?;
        Ok(IncidentRow {
            id: IncidentId(r.id),
            severity,
            title: r.title,
            declared_by: Who {
                platform: r.declared_by_platform,
                user_id: r.declared_by_id,
                display_name: r.declared_by_name,
            },
            declared_at: from_ms(r.declared_at)?,
            channel: r.channel,
            channels_json: r.channels_json,
            commander: r.commander,
            resolved_at: r.resolved_at.map(from_ms).transpose()?,
            summary: r.summary,
            last_human_update_at: r.last_human_update_at.map(from_ms).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct IncidentEventRaw {
    incident_id: i64,
    seq: i64,
    at: i64,
    kind: String,
    who_platform: Option<String>,
    who_id: Option<String>,
    who_name: Option<String>,
    text: String,
}

impl TryFrom<IncidentEventRaw> for IncidentEventRow {
    type Error = StoreError;
    fn try_from(r: IncidentEventRaw) -> StoreResult<IncidentEventRow> {
        let who = r.who_platform.map(|platform| Who {
            platform,
            user_id: r.who_id.unwrap_or_default(),
            display_name: r.who_name.unwrap_or_default(),
        });
        let kind = IncidentEventKind::parse(&r.kind).ok_or_else(|| {
            StoreError::Database(format!(
                "incident {} event {} has unknown kind {:?}",
                r.incident_id, r.seq, r.kind
            ))
        })?;
        Ok(IncidentEventRow {
            incident_id: IncidentId(r.incident_id),
            seq: r.seq,
            at: from_ms(r.at)?,
            kind,
            who,
            text: r.text,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct JobRaw {
    id: i64,
    key: String,
    kind: String,
    payload: String,
    due_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
}

impl TryFrom<JobRaw> for JobRow {
    type Error = StoreError;
    fn try_from(r: JobRaw) -> StoreResult<JobRow> {
        Ok(JobRow {
            id: r.id,
            key: r.key,
            kind: r.kind,
            payload: r.payload,
            due_at: from_ms(r.due_at)?,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until.map(from_ms).transpose()?,
        })
    }
}

pub fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

/// Converts claimed jobs and puts them in due order: `RETURNING` promises no order.
pub fn due_order(raw: Vec<JobRaw>) -> StoreResult<Vec<JobRow>> {
    let mut jobs: Vec<JobRow> = convert(raw)?;
    jobs.sort_by_key(|j| (j.due_at, j.id));
    Ok(jobs)
}

/// Each backend's query result has a `rows_affected`, but sqlx puts it behind no trait.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

/// The statements whose text, binds and decoding are the same on both backends. Each takes
/// the executor it runs on, so the SQLite writer passes its connection and PostgreSQL its pool
/// or transaction, and each backend keeps its own way of grouping writes.
///
/// Generic over the database rather than stamped out by a macro: the bounds sqlx needs are
/// stated once, on this impl, and the bodies stay ordinary Rust that the compiler checks once.
pub struct Queries<DB>(PhantomData<DB>);

impl<DB> Queries<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> RequestRaw: FromRow<'r, DB::Row>,
    for<'r> VoteRaw: FromRow<'r, DB::Row>,
    for<'r> AuditRaw: FromRow<'r, DB::Row>,
    for<'r> CheckpointRaw: FromRow<'r, DB::Row>,
    for<'r> DeploymentRaw: FromRow<'r, DB::Row>,
    for<'r> SandboxRaw: FromRow<'r, DB::Row>,
    for<'r> IncidentRaw: FromRow<'r, DB::Row>,
    for<'r> IncidentEventRaw: FromRow<'r, DB::Row>,
    for<'r> JobRaw: FromRow<'r, DB::Row>,
    for<'r> ReplicaRaw: FromRow<'r, DB::Row>,
{
    pub async fn ping<'c>(e: impl Executor<'c, Database = DB>) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(e)
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    // --- requests and votes ---

    pub async fn insert_request<'c>(
        e: impl Executor<'c, Database = DB>,
        new: &NewRequest,
    ) -> StoreResult<RequestRow> {
        let raw: RequestRaw = sqlx::query_as(INSERT_REQUEST)
            .bind(to_ms(new.created_at))
            .bind(to_ms(new.expires_at))
            .bind(to_ms(new.created_at))
            .bind(&new.requester.platform)
            .bind(&new.requester.user_id)
            .bind(&new.requester.display_name)
            .bind(&new.channel)
            .bind(&new.command_text)
            .bind(&new.operation)
            .bind(&new.environment)
            .bind(&new.command_json)
            .bind(&new.approvals_json)
            .bind(new.state.as_str())
            .bind(new.break_glass)
            .bind(&new.owner)
            .fetch_one(e)
            .await
            .map_err(db_err)?;
        raw.try_into()
    }

    pub async fn get_request<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
    ) -> StoreResult<Option<RequestRow>> {
        let raw: Option<RequestRaw> = sqlx::query_as(GET_REQUEST)
            .bind(id.0)
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    pub async fn pending_requests<'c>(
        e: impl Executor<'c, Database = DB>,
    ) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(PENDING_REQUESTS)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn transition_request<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        from: RequestState,
        to: RequestState,
        outcome: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(TRANSITION_REQUEST)
            .bind(to.as_str())
            .bind(outcome)
            .bind(to_ms(at))
            .bind(id.0)
            .bind(from.as_str())
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_request_message<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        message_ref: &MessageRef,
    ) -> StoreResult<()> {
        sqlx::query(SET_REQUEST_MESSAGE)
            .bind(message_ref.encode())
            .bind(id.0)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn start_executing<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        from: RequestState,
        owner: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(START_EXECUTING)
            .bind(owner)
            .bind(to_ms(at))
            .bind(id.0)
            .bind(from.as_str())
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_request_progress<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        line: &str,
    ) -> StoreResult<()> {
        sqlx::query(SET_REQUEST_PROGRESS)
            .bind(line)
            .bind(id.0)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn heartbeat<'c>(
        e: impl Executor<'c, Database = DB>,
        owner: &str,
        started_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(HEARTBEAT)
            .bind(owner)
            .bind(to_ms(started_at))
            .bind(to_ms(at))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn forget_replicas<'c>(
        e: impl Executor<'c, Database = DB>,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(FORGET_REPLICAS)
            .bind(to_ms(now) - REPLICA_MEMORY_MS)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn replicas<'c>(e: impl Executor<'c, Database = DB>) -> StoreResult<Vec<ReplicaRow>> {
        let raw: Vec<ReplicaRaw> = sqlx::query_as(REPLICAS)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn orphaned_requests<'c>(
        e: impl Executor<'c, Database = DB>,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(ORPHANED_REQUESTS)
            .bind(to_ms(stale_before))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn interrupt_request<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        dead_owner: Option<&str>,
        stale_before: Timestamp,
        outcome: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(INTERRUPT_REQUEST)
            .bind(outcome)
            .bind(to_ms(at))
            .bind(id.0)
            .bind(dead_owner)
            .bind(to_ms(stale_before))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn unacknowledged_interrupted<'c>(
        e: impl Executor<'c, Database = DB>,
    ) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(UNACKNOWLEDGED_INTERRUPTED)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn acknowledge_request<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(ACKNOWLEDGE_REQUEST)
            .bind(to_ms(at))
            .bind(id.0)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn expired_requests<'c>(
        e: impl Executor<'c, Database = DB>,
        now: Timestamp,
    ) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(EXPIRED_REQUESTS)
            .bind(to_ms(now))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn requests_finished_between<'c>(
        e: impl Executor<'c, Database = DB>,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(REQUESTS_FINISHED_BETWEEN)
            .bind(to_ms(from))
            .bind(to_ms(to))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn insert_vote<'c>(
        e: impl Executor<'c, Database = DB>,
        vote: &NewVote,
    ) -> StoreResult<VoteInsert> {
        let done = sqlx::query(INSERT_VOTE)
            .bind(vote.request_id.0)
            .bind(&vote.voter.platform)
            .bind(&vote.voter.user_id)
            .bind(&vote.voter.display_name)
            .bind(vote.approve)
            .bind(&vote.comment)
            .bind(to_ms(vote.at))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(if done.rows_affected() == 1 {
            VoteInsert::Inserted
        } else {
            VoteInsert::AlreadyVoted
        })
    }

    pub async fn votes<'c>(
        e: impl Executor<'c, Database = DB>,
        id: RequestId,
    ) -> StoreResult<Vec<VoteRow>> {
        let raw: Vec<VoteRaw> = sqlx::query_as(VOTES)
            .bind(id.0)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    // --- audit log ---

    pub async fn audit_page<'c>(
        e: impl Executor<'c, Database = DB>,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>> {
        let raw: Vec<AuditRaw> = sqlx::query_as(AUDIT_PAGE)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn audit_tail<'c>(
        e: impl Executor<'c, Database = DB>,
        n: u32,
    ) -> StoreResult<Vec<AuditRow>> {
        let raw: Vec<AuditRaw> = sqlx::query_as(AUDIT_TAIL)
            .bind(i64::from(n))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    // --- audit checkpoints ---

    pub async fn save_checkpoint<'c>(
        e: impl Executor<'c, Database = DB>,
        c: &Checkpoint,
    ) -> StoreResult<()> {
        sqlx::query(SAVE_CHECKPOINT)
            .bind(c.seq)
            .bind(&c.hash)
            .bind(c.at_ms)
            .bind(c.kind.as_str())
            .bind(&c.signature)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn checkpoints<'c>(
        e: impl Executor<'c, Database = DB>,
    ) -> StoreResult<Vec<Checkpoint>> {
        let raw: Vec<CheckpointRaw> = sqlx::query_as(CHECKPOINTS)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn newest_row_before<'c>(
        e: impl Executor<'c, Database = DB>,
        before: Timestamp,
    ) -> StoreResult<Option<(i64, String)>> {
        sqlx::query_as(NEWEST_ROW_BEFORE)
            .bind(to_ms(before))
            .fetch_optional(e)
            .await
            .map_err(db_err)
    }

    /// Deletes rows up to and including `through`; the caller runs it in the transaction
    /// that also runs `prune_checkpoints`.
    pub async fn prune_audit<'c>(
        e: impl Executor<'c, Database = DB>,
        through: i64,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(PRUNE_AUDIT)
            .bind(through)
            .execute(e)
            .await
            .map_err(db_err)?
            .rows_affected())
    }

    pub async fn prune_checkpoints<'c>(
        e: impl Executor<'c, Database = DB>,
        before: i64,
    ) -> StoreResult<()> {
        sqlx::query(PRUNE_CHECKPOINTS)
            .bind(before)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // --- deployment history ---

    pub async fn record_deployment<'c>(
        e: impl Executor<'c, Database = DB>,
        rec: &DeploymentRecord,
    ) -> StoreResult<()> {
        sqlx::query(RECORD_DEPLOYMENT)
            .bind(&rec.environment)
            .bind(&rec.version)
            .bind(&rec.kind)
            .bind(rec.succeeded)
            .bind(rec.request_id.map(|r| r.0))
            .bind(to_ms(rec.at))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Two statements: `Copy` admits a pool but not a connection, which would need a reborrow.
    pub async fn soak_facts<'c>(
        e: impl Executor<'c, Database = DB> + Copy,
        environment: &str,
        version: &str,
    ) -> StoreResult<SoakFacts> {
        let deployed: Option<i64> = sqlx::query_scalar(SOAK_DEPLOYED_AT)
            .bind(environment)
            .bind(version)
            .fetch_one(e)
            .await
            .map_err(db_err)?;
        let Some(deployed) = deployed else {
            return Ok(SoakFacts::default());
        };
        let rolled_back: Option<i64> = sqlx::query_scalar(SOAK_ROLLED_BACK)
            .bind(environment)
            .bind(deployed)
            .fetch_one(e)
            .await
            .map_err(db_err)?;
        Ok(SoakFacts {
            deployed_at: Some(from_ms(deployed)?),
            rolled_back_since: rolled_back.map(from_ms).transpose()?,
        })
    }

    pub async fn deployments<'c>(
        e: impl Executor<'c, Database = DB>,
        environment: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        let raw: Vec<DeploymentRaw> = sqlx::query_as(DEPLOYMENTS)
            .bind(environment)
            .bind(i64::from(limit))
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    // --- sandbox target ---

    pub async fn sandbox_get<'c>(
        e: impl Executor<'c, Database = DB>,
        environment: &str,
    ) -> StoreResult<Option<SandboxRow>> {
        let raw: Option<SandboxRaw> = sqlx::query_as(SANDBOX_GET)
            .bind(environment)
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    pub async fn sandbox_put<'c>(
        e: impl Executor<'c, Database = DB>,
        row: &SandboxRow,
    ) -> StoreResult<()> {
        sqlx::query(SANDBOX_PUT)
            .bind(&row.environment)
            .bind(&row.state_json)
            .bind(to_ms(row.updated_at))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // --- incidents ---

    pub async fn insert_incident<'c>(
        e: impl Executor<'c, Database = DB>,
        new: &NewIncident,
    ) -> StoreResult<IncidentRow> {
        let raw: IncidentRaw = sqlx::query_as(INSERT_INCIDENT)
            .bind(new.severity.as_str())
            .bind(&new.title)
            .bind(&new.declared_by.platform)
            .bind(&new.declared_by.user_id)
            .bind(&new.declared_by.display_name)
            .bind(to_ms(new.declared_at))
            .bind(&new.channel)
            .fetch_one(e)
            .await
            .map_err(db_err)?;
        raw.try_into()
    }

    pub async fn get_incident<'c>(
        e: impl Executor<'c, Database = DB>,
        id: IncidentId,
    ) -> StoreResult<Option<IncidentRow>> {
        let raw: Option<IncidentRaw> = sqlx::query_as(GET_INCIDENT)
            .bind(id.0)
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    pub async fn open_incidents<'c>(
        e: impl Executor<'c, Database = DB>,
    ) -> StoreResult<Vec<IncidentRow>> {
        let raw: Vec<IncidentRaw> = sqlx::query_as(OPEN_INCIDENTS)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn update_incident<'c>(
        e: impl Executor<'c, Database = DB>,
        row: &IncidentRow,
    ) -> StoreResult<()> {
        let done = sqlx::query(UPDATE_INCIDENT)
            .bind(row.severity.as_str())
            .bind(&row.title)
            .bind(&row.channel)
            .bind(&row.channels_json)
            .bind(&row.commander)
            .bind(row.resolved_at.map(to_ms))
            .bind(&row.summary)
            .bind(row.last_human_update_at.map(to_ms))
            .bind(row.id.0)
            .execute(e)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no incident {}", row.id)));
        }
        Ok(())
    }

    /// Returns the driver's error as it is: PostgreSQL retries a lost race for the next seq.
    pub async fn append_incident_event<'c>(
        e: impl Executor<'c, Database = DB>,
        incident: IncidentId,
        at: Timestamp,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> Result<IncidentEventRaw, sqlx::Error> {
        sqlx::query_as(APPEND_INCIDENT_EVENT)
            .bind(incident.0)
            .bind(to_ms(at))
            .bind(kind.as_str())
            .bind(who.map(|w| w.platform.as_str()))
            .bind(who.map(|w| w.user_id.as_str()))
            .bind(who.map(|w| w.display_name.as_str()))
            .bind(text)
            .fetch_one(e)
            .await
    }

    pub async fn incident_events<'c>(
        e: impl Executor<'c, Database = DB>,
        incident: IncidentId,
    ) -> StoreResult<Vec<IncidentEventRow>> {
        let raw: Vec<IncidentEventRaw> = sqlx::query_as(INCIDENT_EVENTS)
            .bind(incident.0)
            .fetch_all(e)
            .await
            .map_err(db_err)?;
        convert(raw)
    }

    pub async fn set_incident_statuspage_id<'c>(
        e: impl Executor<'c, Database = DB>,
        incident: IncidentId,
        statuspage_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(SET_INCIDENT_STATUSPAGE_ID)
            .bind(statuspage_id)
            .bind(incident.0)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn incident_statuspage_id<'c>(
        e: impl Executor<'c, Database = DB>,
        incident: IncidentId,
    ) -> StoreResult<Option<String>> {
        let id: Option<Option<String>> = sqlx::query_scalar(INCIDENT_STATUSPAGE_ID)
            .bind(incident.0)
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
        Ok(id.flatten())
    }

    // --- scheduled jobs ---

    pub async fn upsert_job<'c>(
        e: impl Executor<'c, Database = DB>,
        key: &str,
        kind: &str,
        payload: &str,
        due_at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(UPSERT_JOB)
            .bind(key)
            .bind(kind)
            .bind(payload)
            .bind(to_ms(due_at))
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn delete_job<'c>(e: impl Executor<'c, Database = DB>, key: &str) -> StoreResult<()> {
        sqlx::query(DELETE_JOB)
            .bind(key)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// `claim` is the backend's own statement (how it keeps two claimers apart differs); the
    /// binds are the same. Rows come back unconverted and unordered: see `due_order`.
    pub async fn claim_due_jobs<'c>(
        e: impl Executor<'c, Database = DB>,
        claim: &'static str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<JobRaw>> {
        sqlx::query_as(claim)
            .bind(owner)
            .bind(to_ms(lease_until))
            .bind(to_ms(now))
            .bind(i64::from(limit))
            .fetch_all(e)
            .await
            .map_err(db_err)
    }

    pub async fn complete_job<'c>(
        e: impl Executor<'c, Database = DB>,
        id: i64,
        owner: &str,
        next_due: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let done = match next_due {
            Some(due) => {
                sqlx::query(RESCHEDULE_JOB)
                    .bind(to_ms(due))
                    .bind(id)
                    .bind(owner)
                    .execute(e)
                    .await
            }
            None => {
                sqlx::query(FINISH_JOB)
                    .bind(id)
                    .bind(owner)
                    .execute(e)
                    .await
            }
        }
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// The readiness write, with the driver's error kept for its category.
    pub async fn probe_write<'c>(
        e: impl Executor<'c, Database = DB>,
        at: Timestamp,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(PROBE_WRITE)
            .bind(to_ms(at))
            .execute(e)
            .await
            .map(|_| ())
    }

    // --- chat platform deliveries ---

    /// Drops event keys older than `EVENT_MEMORY_MS` before `at`.
    pub async fn forget_events<'c>(
        e: impl Executor<'c, Database = DB>,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(FORGET_EVENTS)
            .bind(to_ms(at) - EVENT_MEMORY_MS)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// True when the key was not yet remembered.
    pub async fn remember_event<'c>(
        e: impl Executor<'c, Database = DB>,
        platform: Platform,
        key: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(REMEMBER_EVENT)
            .bind(platform.as_str())
            .bind(key)
            .bind(to_ms(at))
            .bind(to_ms(at) - EVENT_MEMORY_MS)
            .execute(e)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}
