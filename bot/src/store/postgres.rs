//! PostgreSQL backend: several replicas share one database, so every invariant that spans
//! statements is enforced by the database (advisory lock, SKIP LOCKED, unique keys), never
//! by in-process state.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::common::{self, *};
use super::*;

/// Key of the transaction-scoped advisory lock that serialises audit appends across replicas
/// (ASCII "erlmcpau").
const AUDIT_LOCK: i64 = 0x65726c6d_63706175;

/// Retries of an incident event append that lost the race for the next seq.
const EVENT_SEQ_RETRIES: usize = 20;

pub struct PgStore {
    pool: PgPool,
    audit: tokio::sync::mpsc::Sender<AuditJob>,
}

/// Appends waiting for the audit writer.
struct AuditJob {
    entry: NewAuditEntry,
    reply: tokio::sync::oneshot::Sender<StoreResult<AuditRow>>,
}

/// Most appends one transaction carries.
const AUDIT_BATCH: usize = 256;

/// Group commit for the audit chain: appends that arrive together share one transaction
/// (one advisory lock, one fsync) instead of queueing on the lock one commit at a time.
/// Each caller still returns only after its row is committed.
async fn audit_writer(pool: PgPool, mut rx: tokio::sync::mpsc::Receiver<AuditJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < AUDIT_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let entries = jobs.iter().map(|j| j.entry.clone()).collect();
        match append_batch(&pool, entries).await {
            Ok(rows) => {
                for (job, row) in jobs.into_iter().zip(rows) {
                    let _ = job.reply.send(Ok(row));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(same_error(&e)));
                }
            }
        }
    }
}

fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Database(m) => StoreError::Database(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
    }
}

async fn append_batch(pool: &PgPool, entries: Vec<NewAuditEntry>) -> StoreResult<Vec<AuditRow>> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Held until commit: reading the last hash and inserting its successors is one step for
    // every replica.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut last: Option<(i64, String)> = sqlx::query_as(LAST_AUDIT)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let row = audit::next_row(entry, last.take())?;
        let e = &row.entry;
        sqlx::query(INSERT_AUDIT)
            .bind(row.seq)
            .bind(to_ms(e.at))
            .bind(&e.action)
            .bind(&e.who.platform)
            .bind(&e.who.user_id)
            .bind(&e.who.display_name)
            .bind(&e.channel)
            .bind(&e.operation)
            .bind(&e.arguments)
            .bind(&e.environment)
            .bind(e.request_id.map(|r| r.0))
            .bind(&e.decision)
            .bind(&e.reason)
            .bind(&e.votes)
            .bind(&e.outcome)
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        last = Some((row.seq, row.hash.clone()));
        rows.push(row);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(rows)
}

impl PgStore {
    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        // One direct connection first: the pool would retry until its timeout and then report
        // only "pool timed out", hiding the cause (refused, bad role, TLS...).
        let probe = options
            .connect()
            .await
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        let (audit, rx) = tokio::sync::mpsc::channel(4 * AUDIT_BATCH);
        tokio::spawn(audit_writer(pool.clone(), rx));
        Ok(PgStore { pool, audit })
    }

    /// Safe to run from several replicas at once: sqlx takes an advisory lock.
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// `connect` then `migrate`.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    async fn insert_request(&self, new: NewRequest) -> StoreResult<RequestRow> {
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
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        raw.try_into()
    }

    async fn get_request(&self, id: RequestId) -> StoreResult<Option<RequestRow>> {
        let raw: Option<RequestRaw> = sqlx::query_as(GET_REQUEST)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    async fn pending_requests(&self) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(PENDING_REQUESTS)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn transition_request(
        &self,
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
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_request_message(&self, id: RequestId, message_ref: &str) -> StoreResult<()> {
        sqlx::query(SET_REQUEST_MESSAGE)
            .bind(message_ref)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn expired_requests(&self, now: Timestamp) -> StoreResult<Vec<RequestRow>> {
        let raw: Vec<RequestRaw> = sqlx::query_as(EXPIRED_REQUESTS)
            .bind(to_ms(now))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn insert_vote(&self, vote: NewVote) -> StoreResult<VoteInsert> {
        let done = sqlx::query(INSERT_VOTE)
            .bind(vote.request_id.0)
            .bind(&vote.voter.platform)
            .bind(&vote.voter.user_id)
            .bind(&vote.voter.display_name)
            .bind(vote.approve)
            .bind(&vote.comment)
            .bind(to_ms(vote.at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(if done.rows_affected() == 1 {
            VoteInsert::Inserted
        } else {
            VoteInsert::AlreadyVoted
        })
    }

    async fn votes(&self, id: RequestId) -> StoreResult<Vec<VoteRow>> {
        let raw: Vec<VoteRaw> = sqlx::query_as(VOTES)
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditRow> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the audit writer has stopped".into());
        self.audit
            .send(AuditJob { entry, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    async fn audit_page(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let raw: Vec<AuditRaw> = sqlx::query_as(AUDIT_PAGE)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn audit_tail(&self, n: u32) -> StoreResult<Vec<AuditRow>> {
        let raw: Vec<AuditRaw> = sqlx::query_as(AUDIT_TAIL)
            .bind(i64::from(n))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn record_deployment(&self, rec: DeploymentRecord) -> StoreResult<()> {
        sqlx::query(RECORD_DEPLOYMENT)
            .bind(&rec.environment)
            .bind(&rec.version)
            .bind(&rec.kind)
            .bind(rec.succeeded)
            .bind(rec.request_id.map(|r| r.0))
            .bind(to_ms(rec.at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn soak_facts(&self, environment: &str, version: &str) -> StoreResult<SoakFacts> {
        let deployed: Option<i64> = sqlx::query_scalar(SOAK_DEPLOYED_AT)
            .bind(environment)
            .bind(version)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(deployed) = deployed else {
            return Ok(SoakFacts::default());
        };
        let rolled_back: Option<i64> = sqlx::query_scalar(SOAK_ROLLED_BACK)
            .bind(environment)
            .bind(deployed)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(SoakFacts {
            deployed_at: Some(from_ms(deployed)?),
            rolled_back_since: rolled_back.map(from_ms).transpose()?,
        })
    }

    async fn deployments(
        &self,
        environment: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        let raw: Vec<DeploymentRaw> = sqlx::query_as(DEPLOYMENTS)
            .bind(environment)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn sandbox_get(&self, environment: &str) -> StoreResult<Option<SandboxRow>> {
        let raw: Option<SandboxRaw> = sqlx::query_as(SANDBOX_GET)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    async fn sandbox_put(&self, row: SandboxRow) -> StoreResult<()> {
        sqlx::query(SANDBOX_PUT)
            .bind(&row.environment)
            .bind(&row.state_json)
            .bind(to_ms(row.updated_at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_incident(&self, new: NewIncident) -> StoreResult<IncidentRow> {
        let raw: IncidentRaw = sqlx::query_as(INSERT_INCIDENT)
            .bind(new.severity.as_str())
            .bind(&new.title)
            .bind(&new.declared_by.platform)
            .bind(&new.declared_by.user_id)
            .bind(&new.declared_by.display_name)
            .bind(to_ms(new.declared_at))
            .bind(&new.channel)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        raw.try_into()
    }

    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>> {
        let raw: Option<IncidentRaw> = sqlx::query_as(GET_INCIDENT)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        raw.map(TryInto::try_into).transpose()
    }

    async fn open_incidents(&self) -> StoreResult<Vec<IncidentRow>> {
        let raw: Vec<IncidentRaw> = sqlx::query_as(OPEN_INCIDENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn update_incident(&self, row: &IncidentRow) -> StoreResult<()> {
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
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no incident {}", row.id)));
        }
        Ok(())
    }

    async fn append_incident_event(
        &self,
        incident: IncidentId,
        at: Timestamp,
        kind: &str,
        who: Option<&Who>,
        text: &str,
    ) -> StoreResult<IncidentEventRow> {
        // Two replicas can compute the same next seq; the primary key rejects the loser,
        // which simply tries again with the new maximum.
        let mut attempt = 0;
        loop {
            let result = sqlx::query_as::<_, IncidentEventRaw>(APPEND_INCIDENT_EVENT)
                .bind(incident.0)
                .bind(to_ms(at))
                .bind(kind)
                .bind(who.map(|w| &w.platform))
                .bind(who.map(|w| &w.user_id))
                .bind(who.map(|w| &w.display_name))
                .bind(text)
                .fetch_one(&self.pool)
                .await;
            match result {
                Ok(raw) => return raw.try_into(),
                Err(sqlx::Error::Database(d))
                    if d.is_unique_violation() && attempt < EVENT_SEQ_RETRIES =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    }

    async fn incident_events(&self, incident: IncidentId) -> StoreResult<Vec<IncidentEventRow>> {
        let raw: Vec<IncidentEventRaw> = sqlx::query_as(INCIDENT_EVENTS)
            .bind(incident.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        common::convert(raw)
    }

    async fn set_incident_statuspage_id(
        &self,
        incident: IncidentId,
        statuspage_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(SET_INCIDENT_STATUSPAGE_ID)
            .bind(statuspage_id)
            .bind(incident.0)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn incident_statuspage_id(&self, incident: IncidentId) -> StoreResult<Option<String>> {
        let id: Option<Option<String>> = sqlx::query_scalar(INCIDENT_STATUSPAGE_ID)
            .bind(incident.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(id.flatten())
    }

    async fn upsert_job(
        &self,
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
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_job(&self, key: &str) -> StoreResult<()> {
        sqlx::query(DELETE_JOB)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn claim_due_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<JobRow>> {
        // SKIP LOCKED: replicas claiming at the same moment each take different rows instead
        // of queueing behind one another; a row whose lease changed under us is re-checked
        // against the WHERE clause before it is locked.
        const CLAIM: &str = concat!(
            "UPDATE scheduled_jobs SET lease_owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM scheduled_jobs WHERE due_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id LIMIT $4 \
             FOR UPDATE SKIP LOCKED) RETURNING ",
            job_cols!()
        );
        let raw: Vec<JobRaw> = sqlx::query_as(CLAIM)
            .bind(owner)
            .bind(to_ms(lease_until))
            .bind(to_ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut jobs: Vec<JobRow> = common::convert(raw)?;
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    async fn complete_job(
        &self,
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
                    .execute(&self.pool)
                    .await
            }
            None => {
                sqlx::query(FINISH_JOB)
                    .bind(id)
                    .bind(owner)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn remember_event(&self, key: &str, at: Timestamp) -> StoreResult<bool> {
        // Forget first, so a key past its hour counts as new on this very call.
        sqlx::query(FORGET_EVENTS)
            .bind(to_ms(at) - EVENT_MEMORY_MS)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        let first = sqlx::query(REMEMBER_EVENT)
            .bind(key)
            .bind(to_ms(at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected()
            == 1;
        Ok(first)
    }
}
