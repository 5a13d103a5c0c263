//! Persistence: one `Store` trait, implemented on SQLite (the embedded default) and on
//! PostgreSQL (several replicas). The same contract test suite runs on both.
//!
//! Timestamps are stored as Unix milliseconds (BIGINT) and JSON as TEXT on both backends,
//! so the audit log's canonical form — and so its hashes — are identical on either.

use async_trait::async_trait;
use erlmcp_adapters::chat::{MessageRef, Platform};
use erlmcp_commands::vocab::IncidentEventKind;
use erlmcp_commands::{IncidentId, RequestId, Severity, Timestamp};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointKind};

pub mod audit;
mod batch;
pub(crate) mod common;
mod job_batch;
mod pg_deliveries;
mod pg_requests;
mod pg_writer;
pub mod postgres;
pub mod serve_lock;
pub mod sqlite;
mod sqlite_requests;
// Kept out of the shipped library: only unit tests and the `test-support` feature (enabled
// by dev-dependencies) build it.
#[cfg(any(test, feature = "test-support"))]
pub mod testdb;

#[cfg(test)]
mod contract_tests;

pub use job_batch::{JobDone, NewIncidentEvent};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

// Clone: one failed batch answers every caller that was in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A write was refused, by category only: the driver's text stays out of readiness
    /// answers, which anyone who can reach the probe port reads.
    #[error("{}", .0.as_str())]
    NotWritable(WriteBlock),
}

/// Why the store does not take writes, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBlock {
    /// Another writer holds the lock past the wait allowed.
    Locked,
    ReadOnly,
    DiskFull,
    /// No connection: refused, dropped, pool closed, writer stopped.
    Unreachable,
    /// No answer within the probe's time.
    Timeout,
    /// Anything else the database said.
    Failed,
}

impl WriteBlock {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteBlock::Locked => "database locked",
            WriteBlock::ReadOnly => "database read-only",
            WriteBlock::DiskFull => "disk full",
            WriteBlock::Unreachable => "database unreachable",
            WriteBlock::Timeout => "timeout",
            WriteBlock::Failed => "database error",
        }
    }

    /// The category of a failed write. `backend` says how to read the error code: SQLite's
    /// numeric result codes or PostgreSQL's SQLSTATE.
    pub(crate) fn of(e: &sqlx::Error, backend: Backend) -> WriteBlock {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => WriteBlock::Unreachable,
            sqlx::Error::PoolTimedOut => WriteBlock::Timeout,
            sqlx::Error::Database(d) => {
                let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
                match backend {
                    // Extended result codes keep the primary code in the low byte.
                    Backend::Sqlite => match code.parse::<i64>().map(|c| c & 0xff) {
                        Ok(5 | 6) => WriteBlock::Locked,
                        Ok(8) => WriteBlock::ReadOnly,
                        Ok(13) => WriteBlock::DiskFull,
                        Ok(10 | 14) => WriteBlock::Unreachable,
                        _ => WriteBlock::Failed,
                    },
                    Backend::Postgres => match code.as_str() {
                        "25006" => WriteBlock::ReadOnly,
                        "53100" => WriteBlock::DiskFull,
                        "55P03" | "40P01" => WriteBlock::Locked,
                        "57014" => WriteBlock::Timeout,
                        // Refused at connect: closed to connections, gone, full, or the
                        // bot's role no longer let in.
                        "55000" | "3D000" | "53300" | "28000" | "28P01" => WriteBlock::Unreachable,
                        c if session_ended(c) => WriteBlock::Unreachable,
                        _ => WriteBlock::Failed,
                    },
                }
            }
            _ => WriteBlock::Failed,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use erlmcp_commands::approval::RequestState;

/// A platform user as recorded: who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub platform: String,
    pub user_id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub requester: Who,
    /// Where it was asked: `PLATFORM:CHANNEL_ID` (or `cli`).
    pub channel: String,
    /// The command as typed, for the audit log and the approval message.
    pub command_text: String,
    /// `deploy`, `rollback`, ... (`OperationKind::as_str`).
    pub operation: String,
    pub environment: Option<String>,
    /// The parsed command, JSON (`erlmcp_commands::Command`).
    pub command_json: String,
    /// Approvals needed: count and roles, JSON (`erlmcp_commands::policy::ApprovalRequirement`).
    pub approvals_json: String,
    pub state: RequestState,
    pub break_glass: bool,
    /// The process carrying it out, for a request inserted as `executing`.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: RequestId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub updated_at: Timestamp,
    pub requester: Who,
    pub channel: String,
    pub command_text: String,
    pub operation: String,
    pub environment: Option<String>,
    pub command_json: String,
    pub approvals_json: String,
    pub state: RequestState,
    pub break_glass: bool,
    /// Outcome text once final.
    pub outcome: Option<String>,
    /// Chat message that shows this request, for in-place updates (stored as
    /// `PLATFORM:CHANNEL:ID`).
    pub message_ref: Option<MessageRef>,
    /// The process that carries (or carried) it out.
    pub owner: Option<String>,
    /// The last progress line seen while it was executing.
    pub last_progress: Option<String>,
    /// When an interrupted request was acknowledged.
    pub acknowledged_at: Option<Timestamp>,
}

/// A running process as the store knows it: its heartbeat says it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    pub owner: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVote {
    pub request_id: RequestId,
    pub voter: Who,
    pub approve: bool,
    pub comment: Option<String>,
    pub at: Timestamp,
}

/// The end of an executing request, for [`Store::finish_request_audited`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishRequest {
    pub id: RequestId,
    pub to: RequestState,
    pub outcome: String,
    /// The newest progress line, stored before the state changes (it is kept only while
    /// executing).
    pub progress: Option<String>,
    pub at: Timestamp,
    /// The sandbox target's state after the operation, written in the same transaction: the
    /// outcome and the world it describes become durable together.
    pub sandbox: Option<SandboxRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    pub request_id: RequestId,
    pub voter: Who,
    pub approve: bool,
    pub comment: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteInsert {
    Inserted,
    /// This voter already voted on this request: the vote is not counted twice.
    AlreadyVoted,
}

/// One entry of the audit log before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at: Timestamp,
    /// An `AuditAction`, kept as the string that was hashed.
    pub action: String,
    pub who: Who,
    pub channel: String,
    /// Operation name (`deploy`) or command name for read-only commands.
    pub operation: String,
    /// Arguments as canonical JSON text.
    pub arguments: String,
    pub environment: Option<String>,
    pub request_id: Option<RequestId>,
    /// An `AuditDecision` (empty for none), kept as the string that was hashed.
    pub decision: String,
    pub reason: String,
    /// Votes so far, JSON text (array).
    pub votes: String,
    /// `ok`, `pending`, `refused`, `failed: ...`, ...
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// Hex SHA-256 of the previous row (`0` * 64 for the first row).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this row's canonical content.
    pub hash: String,
}

/// A completed change on an environment, for the soak precondition and status digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub environment: String,
    pub version: String,
    /// `deploy`, `rollback`
    pub kind: String,
    pub succeeded: bool,
    pub request_id: Option<RequestId>,
    pub at: Timestamp,
}

/// Facts for the soak precondition: the same version deployed to the soak environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoakFacts {
    /// When the most recent successful deploy of this version to the environment finished.
    pub deployed_at: Option<Timestamp>,
    /// A rollback happened in that environment after that deploy.
    pub rolled_back_since: Option<Timestamp>,
}

/// The simulated workload of one environment (sandbox target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRow {
    pub environment: String,
    /// The whole simulated state as JSON; owned by the sandbox target.
    pub state_json: String,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    pub severity: Severity,
    pub title: String,
    pub declared_by: Who,
    pub declared_at: Timestamp,
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: IncidentId,
    pub severity: Severity,
    pub title: String,
    pub declared_by: Who,
    pub declared_at: Timestamp,
    /// Where it was declared.
    pub channel: String,
    /// Channels created for it, JSON object platform -> channel id.
    pub channels_json: String,
    pub commander: Option<String>,
    pub resolved_at: Option<Timestamp>,
    pub summary: Option<String>,
    pub last_human_update_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentEventRow {
    pub incident_id: IncidentId,
    pub seq: i64,
    pub at: Timestamp,
    pub kind: IncidentEventKind,
    pub who: Option<Who>,
    pub text: String,
}

/// A job for the scheduler (status updates, request expiry), claimed with a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    /// `incident_update:INC-7`, `expire:R-42`: unique per job.
    pub key: String,
    pub kind: String,
    pub payload: String,
    pub due_at: Timestamp,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Cheap liveness check: the database answers a query.
    async fn ping(&self) -> StoreResult<()>;

    /// Proves the store takes a write by upserting one row (`store_probe`), for /readyz. A
    /// failure is `StoreError::NotWritable` with its category. Bounded on its own by the
    /// backend's lock wait; callers add their own deadline.
    async fn check_writable(&self, at: Timestamp) -> StoreResult<()>;

    /// Closes the connections (on shutdown: lets SQLite checkpoint its WAL).
    async fn close(&self) {}

    // --- requests and votes ---
    async fn insert_request(&self, new: NewRequest) -> StoreResult<RequestRow>;
    async fn get_request(&self, id: RequestId) -> StoreResult<Option<RequestRow>>;
    async fn pending_requests(&self) -> StoreResult<Vec<RequestRow>>;
    /// Compare-and-set of a request's state: true when this call made the change. This is
    /// what makes two simultaneous approvals execute once.
    async fn transition_request(
        &self,
        id: RequestId,
        from: RequestState,
        to: RequestState,
        outcome: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    async fn set_request_message(&self, id: RequestId, message_ref: &MessageRef)
    -> StoreResult<()>;
    /// Compare-and-set from `from` to `executing`, recording the process that carries it out.
    async fn start_executing(
        &self,
        id: RequestId,
        from: RequestState,
        owner: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Keeps the latest progress line of an executing request (no-op once it is final).
    async fn set_request_progress(&self, id: RequestId, line: &str) -> StoreResult<()>;

    // --- process ownership ---
    /// Creates or refreshes this process's heartbeat row; rows silent for a week are
    /// forgotten.
    async fn heartbeat(&self, owner: &str, started_at: Timestamp, at: Timestamp)
    -> StoreResult<()>;
    async fn replicas(&self) -> StoreResult<Vec<ReplicaRow>>;
    /// Executing requests whose owner's heartbeat is older than `stale_before`, or whose
    /// owner has no heartbeat at all (an ownerless one counts once it is older than that).
    async fn orphaned_requests(&self, stale_before: Timestamp) -> StoreResult<Vec<RequestRow>>;
    /// Compare-and-set `executing` -> `interrupted`, only while it is still held by
    /// `dead_owner` and that owner's heartbeat is still older than `stale_before`: with
    /// several replicas reconciling at once exactly one call returns true. An ownerless one
    /// (`dead_owner = None`) must also have been last updated before `stale_before`.
    async fn interrupt_request(
        &self,
        id: RequestId,
        dead_owner: Option<&str>,
        stale_before: Timestamp,
        outcome: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Interrupted requests nobody has acknowledged yet, oldest first.
    async fn unacknowledged_interrupted(&self) -> StoreResult<Vec<RequestRow>>;
    /// Marks an interrupted request acknowledged; true when this call did it.
    async fn acknowledge_request(&self, id: RequestId, at: Timestamp) -> StoreResult<bool>;
    /// Pending requests whose expiry is at or before `now`.
    async fn expired_requests(&self, now: Timestamp) -> StoreResult<Vec<RequestRow>>;
    /// Requests that ended (succeeded, failed, interrupted) in `[from, to)`, oldest first.
    async fn requests_finished_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<RequestRow>>;
    /// One vote per (request, voter platform, voter id).
    async fn insert_vote(&self, vote: NewVote) -> StoreResult<VoteInsert>;
    async fn votes(&self, id: RequestId) -> StoreResult<Vec<VoteRow>>;

    // --- audit log ---
    /// Appends one entry to the hash chain and makes it durable before returning.
    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditRow>;
    /// Inserts a request and appends its audit entry (`request_id` set to the new id) in one
    /// transaction, durable before returning: a request never exists without the record of
    /// why, and one durable write instead of two is what an operation waits for before it
    /// runs. On error neither was written.
    async fn insert_request_audited(
        &self,
        new: NewRequest,
        entry: NewAuditEntry,
    ) -> StoreResult<(RequestRow, AuditRow)>;
    /// Ends an executing request in one transaction: stores `progress` as its last line,
    /// moves it from `executing` to `to` with `outcome` (compare-and-set: false when it was
    /// no longer executing) and appends `entry`, which is written either way. On error none
    /// of it was written.
    async fn finish_request_audited(
        &self,
        finish: FinishRequest,
        entry: NewAuditEntry,
    ) -> StoreResult<(bool, AuditRow)>;
    /// Rows with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>>;
    /// The newest `n` rows, newest first.
    async fn audit_tail(&self, n: u32) -> StoreResult<Vec<AuditRow>>;
    /// Keeps a signed checkpoint for `audit export`; nothing verifies against this copy.
    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()>;
    /// Every stored checkpoint, oldest first.
    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
    /// `(seq, hash)` of the newest row written before `before`, never the log's newest row
    /// (the next append links to it).
    async fn newest_audit_before(&self, before: Timestamp) -> StoreResult<Option<(i64, String)>>;
    /// Deletes rows up to and including `through`, and checkpoints older than it, in one
    /// transaction; returns the rows deleted. Only after a prune checkpoint at `through`.
    async fn prune_audit(&self, through: i64) -> StoreResult<u64>;

    // --- deployment history ---
    async fn record_deployment(&self, rec: DeploymentRecord) -> StoreResult<()>;
    async fn soak_facts(&self, environment: &str, version: &str) -> StoreResult<SoakFacts>;
    /// Most recent first.
    async fn deployments(
        &self,
        environment: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeploymentRecord>>;

    // --- sandbox target ---
    async fn sandbox_get(&self, environment: &str) -> StoreResult<Option<SandboxRow>>;
    async fn sandbox_put(&self, row: SandboxRow) -> StoreResult<()>;

    // --- incidents ---
    async fn insert_incident(&self, new: NewIncident) -> StoreResult<IncidentRow>;
    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>>;
    async fn open_incidents(&self) -> StoreResult<Vec<IncidentRow>>;
    async fn update_incident(&self, row: &IncidentRow) -> StoreResult<()>;
    async fn append_incident_event(
        &self,
        incident: IncidentId,
        at: Timestamp,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> StoreResult<IncidentEventRow>;
    async fn incident_events(&self, incident: IncidentId) -> StoreResult<Vec<IncidentEventRow>>;
    /// Keeps the status page's id for an incident (a column apart from `IncidentRow`, which
    /// only the incident work needs).
    async fn set_incident_statuspage_id(
        &self,
        incident: IncidentId,
        statuspage_id: &str,
    ) -> StoreResult<()>;
    async fn incident_statuspage_id(&self, incident: IncidentId) -> StoreResult<Option<String>>;
    /// The incidents among `ids` that exist, in id order, in one query.
    async fn incidents_by_id(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentRow>>;
    /// Every event of the incidents among `ids`, by incident then seq, in one query.
    async fn events_of_incidents(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentEventRow>>;

    // --- scheduled jobs ---
    /// Creates the job or, when the key exists, moves its due time.
    async fn upsert_job(
        &self,
        key: &str,
        kind: &str,
        payload: &str,
        due_at: Timestamp,
    ) -> StoreResult<()>;
    async fn delete_job(&self, key: &str) -> StoreResult<()>;
    /// Claims up to `limit` jobs due at `now` whose lease is free or expired, leasing them to
    /// `owner` until `lease_until`. Each due job is claimed by one caller only, across
    /// processes (FOR UPDATE SKIP LOCKED on PostgreSQL, a conditional UPDATE on SQLite).
    async fn claim_due_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<JobRow>>;
    /// Completes a claimed job: reschedules it (`next_due`) or deletes it (`None`), releasing
    /// the lease; false when `owner` no longer holds it.
    async fn complete_job(
        &self,
        id: i64,
        owner: &str,
        next_due: Option<Timestamp>,
    ) -> StoreResult<bool>;

    /// Completes claimed jobs in one transaction, each with the incident event it produced:
    /// a job `owner` still holds is rescheduled (or deleted) and its event appended; one
    /// whose lease was lost is left as it is, event and all. Returns, job for job, whether
    /// it was still held. On error none of it was written, and the jobs stay leased.
    async fn complete_jobs_with_events(
        &self,
        owner: &str,
        done: Vec<JobDone>,
    ) -> StoreResult<Vec<bool>>;

    // --- chat platform deliveries ---
    /// Records an inbound delivery key of one platform (Slack's `event_id`); true the first
    /// time it is seen, false for a retry already taken by this or another replica. Keys
    /// older than an hour are forgotten: Slack's last retry comes about five minutes after
    /// the original.
    async fn remember_event(
        &self,
        platform: Platform,
        key: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// Opens the store named by `database_url` (`sqlite:...`, `postgres://...`,
/// `postgresql://...`) and brings its schema up to date. A write (on SQLite) or a statement
/// (on PostgreSQL) held up longer than `limit` is given up with an error.
pub async fn open_store(
    database_url: &str,
    limit: std::time::Duration,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use anyhow::Context as _;
    let shown = redact_url(database_url);
    let store: std::sync::Arc<dyn Store> = match Backend::of(database_url)? {
        Backend::Sqlite => std::sync::Arc::new(
            SqliteStore::open_within(database_url, limit)
                .await
                .with_context(|| format!("opening {shown}"))?,
        ),
        Backend::Postgres => std::sync::Arc::new(
            PgStore::open_within(database_url, limit)
                .await
                .with_context(|| format!("opening {shown}"))?,
        ),
    };
    Ok(store)
}

/// Applies pending migrations and closes the connection (the `migrate` subcommand).
pub async fn migrate_only(database_url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let shown = redact_url(database_url);
    match Backend::of(database_url)? {
        Backend::Sqlite => {
            let store = SqliteStore::open(database_url)
                .await
                .with_context(|| format!("migrating {shown}"))?;
            store.close().await;
        }
        Backend::Postgres => {
            let store = PgStore::open(database_url)
                .await
                .with_context(|| format!("migrating {shown}"))?;
            store.close().await;
        }
    }
    Ok(())
}

/// For `serve`: on SQLite, the file's single-process lock (see [`serve_lock`]); PostgreSQL
/// takes any number of replicas.
pub fn lock_for_serve(database_url: &str) -> anyhow::Result<Option<serve_lock::ServeLock>> {
    match Backend::of(database_url)? {
        Backend::Sqlite => Ok(serve_lock::lock_sqlite_for_serve(database_url)?),
        Backend::Postgres => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!(
                "unsupported database URL {}: expected sqlite:, postgres: or postgresql:",
                redact_url(url)
            )
        }
    }
}

/// The URL with its password replaced by `***`, safe for logs and error messages. A URL that
/// does not parse is not shown at all: where its password would be cannot be told.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(unparseable database URL)".to_string();
    };
    match parsed.password() {
        Some(pw) if !pw.is_empty() => {
            // Setting a password only fails on URLs that cannot hold one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Removes the URL's password, encoded or decoded, from a driver message: connection errors
/// can echo the URL or its parts.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_string();
    let parsed = url::Url::parse(url).ok();
    if let Some(pw) = parsed
        .as_ref()
        .and_then(|u| u.password())
        .filter(|pw| !pw.is_empty())
    {
        out = out.replace(pw, "***");
        let decoded = percent_encoding::percent_decode_str(pw).decode_utf8_lossy();
        if !decoded.is_empty() {
            out = out.replace(decoded.as_ref(), "***");
        }
    }
    out
}

/// Maps a driver error onto the store's vocabulary: connection trouble is `Unavailable`
/// (worth retrying), constraint violations are `Conflict`.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    db_err_of(&e)
}

/// [`db_err`] for an error the caller keeps.
pub(crate) fn db_err_of(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(
            "no database connection could be had in time: the server may be unreachable, or \
             every connection is busy"
                .into(),
        ),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(d) => {
            if d.is_unique_violation() || d.is_foreign_key_violation() || d.is_check_violation() {
                StoreError::Conflict(d.message().to_string())
            } else if held_up(d.as_ref()) {
                StoreError::Unavailable(format!(
                    "{}: held up past the bot's time limit, most likely by a lock another \
                     session holds",
                    d.message()
                ))
            } else if is_busy(d.as_ref()) {
                StoreError::Unavailable(d.message().to_string())
            } else {
                StoreError::Database(d.message().to_string())
            }
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// PostgreSQL cancelled the statement at the bot's `statement_timeout` or `lock_timeout`
/// (57014 is also an operator's cancel, which says so instead of "timeout").
fn held_up(d: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(d.code().as_deref(), Some("57014" | "55P03")) && d.message().contains("timeout")
}

/// A PostgreSQL SQLSTATE the server sends as it drops the session: connection exceptions
/// (08xxx) and shutdowns (57P0x).
pub(crate) fn session_ended(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P0")
}

/// SQLite's BUSY/LOCKED (another writer held the lock past busy_timeout) and PostgreSQL's
/// connection-class SQLSTATEs (08xxx, 57P0x: shutdown) are transient.
fn is_busy(d: &dyn sqlx::error::DatabaseError) -> bool {
    match d.code() {
        Some(code) => {
            let code = code.as_ref();
            matches!(code, "5" | "6" | "261" | "517") || session_ended(code)
        }
        None => false,
    }
}

pub(crate) fn to_ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> StoreResult<Timestamp> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Database(format!("timestamp out of range: {ms}")))
}
