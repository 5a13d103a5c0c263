//! PostgreSQL backend: several replicas share one database, so every invariant that spans
//! statements is enforced by the database (advisory lock, SKIP LOCKED, unique keys), never
//! by in-process state.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::{ConnectOptions, Connection, Executor};

use super::batch::{AuditWork, Done};
use super::common::{self, *};
use super::pg_writer::{self, AUDIT_BATCH, AuditJob, millis};
use super::*;

type Queries = common::Queries<Postgres>;

/// Longest a new connection may take, the pool's included.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Retries of an incident event append that lost the race for the next seq.
const EVENT_SEQ_RETRIES: usize = 20;

pub struct PgStore {
    pool: PgPool,
    /// Longest a statement through the store may run, lock waits included.
    statement_timeout: Duration,
    /// Longest the store waits for any answer to a call (see [`pg_writer::answer_bound`]).
    answer_within: Duration,
    audit: tokio::sync::mpsc::Sender<AuditJob>,
    /// When delivery keys past their hour were last deleted by this process (the bot's
    /// clock, ms; `i64::MIN` = not yet).
    forgotten_at: std::sync::atomic::AtomicI64,
    deliveries: super::pg_deliveries::Deliveries,
}

impl PgStore {
    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_stalling_after(url, pg_writer::STATEMENT_TIMEOUT).await
    }

    /// `connect`, with every statement through the store cancelled after `statement_timeout`
    /// (migrations and pruning aside, see [`Self::migrate`] and `prune_audit`).
    pub(crate) async fn connect_stalling_after(
        url: &str,
        statement_timeout: Duration,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        // One direct connection first: the pool would retry until its timeout and then report
        // only "pool timed out", hiding the cause (refused, bad role, TLS...).
        // Bounded: a host that drops packets would keep the connect waiting on the kernel's
        // SYN retries for minutes.
        let probe = tokio::time::timeout(CONNECT_WITHIN, options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "PostgreSQL did not answer a connection within {}",
                    pg_writer::seconds(CONNECT_WITHIN)
                ))
            })?
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        let _ = probe.close().await;
        // Bounded like the audit writer's groups, for the same reason: a read or write held
        // up by a lock another session keeps would otherwise hold the request waiting on it,
        // and the pool connection under it, for ever. Set once per connection, as it opens.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_WITHIN)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(set_statement_timeout(statement_timeout))
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?;
        let (audit, rx) = tokio::sync::mpsc::channel(4 * AUDIT_BATCH);
        tokio::spawn(pg_writer::run(pool.clone(), statement_timeout, rx));
        let deliveries = super::pg_deliveries::Deliveries::start(pool.clone());
        Ok(PgStore {
            pool,
            statement_timeout,
            answer_within: pg_writer::answer_bound(statement_timeout),
            audit,
            forgotten_at: std::sync::atomic::AtomicI64::new(i64::MIN),
            deliveries,
        })
    }

    /// Safe to run from several replicas at once: sqlx takes an advisory lock. Not bounded by
    /// the statement timeout: a replica waits for another one's migrations however long they
    /// take, and a migration over a large table may rightly take minutes.
    pub async fn migrate(&self) -> StoreResult<()> {
        let failed =
            |e: &dyn std::fmt::Display| StoreError::Database(format!("migration failed: {e}"));
        let mut conn = self.pool.acquire().await.map_err(|e| failed(&e))?;
        conn.execute(set_statement_timeout(Duration::ZERO))
            .await
            .map_err(|e| failed(&e))?;
        let result = sqlx::migrate!("../migrations/postgres")
            .run(&mut *conn)
            .await;
        let restored = set_statement_timeout(self.statement_timeout);
        if conn.execute(restored).await.is_err() {
            // Never back in the pool without the bound every other connection has.
            drop(conn.detach());
        }
        result.map_err(|e| failed(&e))
    }

    /// `connect` then `migrate`.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_within(url, pg_writer::STATEMENT_TIMEOUT).await
    }

    /// `open`, with statements cancelled after `statement_timeout`.
    pub async fn open_within(url: &str, statement_timeout: Duration) -> StoreResult<Self> {
        let store = Self::connect_stalling_after(url, statement_timeout).await?;
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

    /// Hands `work` to the audit writer and waits until its transaction is committed.
    async fn audited(&self, work: AuditWork) -> StoreResult<Done> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the audit writer has stopped".into());
        self.audit
            .send(AuditJob { work, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// `call`, given up once it has had no answer for [`pg_writer::answer_bound`], for the
    /// calls a [`Call`] cannot carry: those that take the pool itself (reads run side by
    /// side, a transaction of their own) and the delivery keys' writer. A connection they
    /// leave half way goes back through the pool's check.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(self.answer_within, call)
            .await
            .unwrap_or_else(|_| Err(pg_writer::no_answer(self.answer_within)))
    }

    /// A [`Call`] on this store's pool.
    fn call(&self) -> Call<'_> {
        Call {
            pool: &self.pool,
            within: self.answer_within,
            conn: None,
            answered: false,
            refused: None,
        }
    }
}

/// One call of the store on a pool connection of its own, given up once it has had no answer
/// for [`pg_writer::answer_bound`], the wait for a connection included. The server's
/// statement bound cancels a statement held up by a lock and says so; this one is for a
/// server or network gone silent, which would otherwise keep the caller waiting on the
/// kernel's retransmissions for minutes.
struct Call<'p> {
    pool: &'p PgPool,
    within: Duration,
    conn: Option<PoolConnection<Postgres>>,
    /// The connection answered the call, with rows or an error: its state is known.
    answered: bool,
    /// Why no connection could be had, as the driver said it.
    refused: Option<sqlx::Error>,
}

impl Call<'_> {
    async fn run<'s, T, F>(
        &'s mut self,
        call: impl FnOnce(&'s mut PgConnection) -> F,
    ) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>> + 's,
    {
        let Call {
            pool,
            within,
            conn,
            answered,
            refused,
        } = self;
        let work = async move {
            let conn = match pool.acquire().await {
                Ok(c) => conn.insert(c),
                Err(e) => return Err(db_err_of(refused.insert(e))),
            };
            let result = call(conn).await;
            *answered = true;
            result
        };
        match tokio::time::timeout(*within, work).await {
            Ok(result) => result,
            Err(_) => Err(pg_writer::no_answer(*within)),
        }
    }
}

impl Drop for Call<'_> {
    /// A connection whose call was given up (or dropped half way) is closed, never put back:
    /// its state is unknown, and the pool's check of a returned connection would wait on the
    /// silent server as well, holding its place in the pool.
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn
            && !self.answered
        {
            conn.close_on_drop();
        }
    }
}

/// The session's statement bound; `Duration::ZERO` turns it off.
fn set_statement_timeout(d: Duration) -> sqlx::AssertSqlSafe<String> {
    let ms = if d.is_zero() { 0 } else { millis(d) };
    sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}"))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.call().run(Queries::ping).await
    }

    async fn check_writable(&self, at: Timestamp) -> StoreResult<()> {
        let block = |e: &sqlx::Error| StoreError::NotWritable(WriteBlock::of(e, Backend::Postgres));
        let mut call = self.call();
        let probed = call
            .run(|c| async move { Ok(Queries::probe_write(c, at).await) })
            .await;
        match (probed, call.refused.take()) {
            (Ok(written), _) => written.map_err(|e| block(&e)),
            (Err(_), Some(refused)) => Err(block(&refused)),
            (Err(_), None) => Err(StoreError::NotWritable(WriteBlock::Timeout)),
        }
    }

    async fn insert_request(&self, new: NewRequest) -> StoreResult<RequestRow> {
        self.call().run(|c| Queries::insert_request(c, &new)).await
    }

    async fn get_request(&self, id: RequestId) -> StoreResult<Option<RequestRow>> {
        self.call().run(|c| Queries::get_request(c, id)).await
    }

    async fn pending_requests(&self) -> StoreResult<Vec<RequestRow>> {
        self.call().run(Queries::pending_requests).await
    }

    async fn transition_request(
        &self,
        id: RequestId,
        from: RequestState,
        to: RequestState,
        outcome: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.call()
            .run(|c| Queries::transition_request(c, id, from, to, outcome, at))
            .await
    }

    async fn set_request_message(
        &self,
        id: RequestId,
        message_ref: &MessageRef,
    ) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::set_request_message(c, id, message_ref))
            .await
    }

    async fn start_executing(
        &self,
        id: RequestId,
        from: RequestState,
        owner: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.call()
            .run(|c| Queries::start_executing(c, id, from, owner, at))
            .await
    }

    async fn set_request_progress(&self, id: RequestId, line: &str) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::set_request_progress(c, id, line))
            .await
    }

    async fn heartbeat(
        &self,
        owner: &str,
        started_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.call()
            .run(|c| async move {
                Queries::forget_replicas(&mut *c, at).await?;
                Queries::heartbeat(c, owner, started_at, at).await
            })
            .await
    }

    async fn replicas(&self) -> StoreResult<Vec<ReplicaRow>> {
        self.call().run(Queries::replicas).await
    }

    async fn orphaned_requests(&self, stale_before: Timestamp) -> StoreResult<Vec<RequestRow>> {
        self.call()
            .run(|c| Queries::orphaned_requests(c, stale_before))
            .await
    }

    // Two replicas racing: the second UPDATE waits for the first's row lock, then re-reads the
    // row, finds it no longer `executing` and changes nothing.
    async fn interrupt_request(
        &self,
        id: RequestId,
        dead_owner: Option<&str>,
        stale_before: Timestamp,
        outcome: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.call()
            .run(|c| Queries::interrupt_request(c, id, dead_owner, stale_before, outcome, at))
            .await
    }

    async fn unacknowledged_interrupted(&self) -> StoreResult<Vec<RequestRow>> {
        self.call().run(Queries::unacknowledged_interrupted).await
    }

    async fn acknowledge_request(&self, id: RequestId, at: Timestamp) -> StoreResult<bool> {
        self.call()
            .run(|c| Queries::acknowledge_request(c, id, at))
            .await
    }

    async fn expired_requests(&self, now: Timestamp) -> StoreResult<Vec<RequestRow>> {
        self.call().run(|c| Queries::expired_requests(c, now)).await
    }

    async fn requests_finished_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<RequestRow>> {
        self.call()
            .run(|c| Queries::requests_finished_between(c, from, to))
            .await
    }

    async fn insert_vote(&self, vote: NewVote) -> StoreResult<VoteInsert> {
        self.call().run(|c| Queries::insert_vote(c, &vote)).await
    }

    async fn votes(&self, id: RequestId) -> StoreResult<Vec<VoteRow>> {
        self.call().run(|c| Queries::votes(c, id)).await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditRow> {
        self.audited(AuditWork::Append(entry)).await?.appended()
    }

    async fn insert_request_audited(
        &self,
        new: NewRequest,
        entry: NewAuditEntry,
    ) -> StoreResult<(RequestRow, AuditRow)> {
        self.audited(AuditWork::Request(new, entry))
            .await?
            .requested()
    }

    async fn finish_request_audited(
        &self,
        finish: FinishRequest,
        entry: NewAuditEntry,
    ) -> StoreResult<(bool, AuditRow)> {
        self.audited(AuditWork::Finish(finish, entry))
            .await?
            .finished()
    }

    async fn audit_page(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        self.call()
            .run(|c| Queries::audit_page(c, after, limit))
            .await
    }

    async fn audit_tail(&self, n: u32) -> StoreResult<Vec<AuditRow>> {
        self.call().run(|c| Queries::audit_tail(c, n)).await
    }

    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::save_checkpoint(c, &checkpoint))
            .await
    }

    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        self.call().run(Queries::checkpoints).await
    }

    async fn newest_audit_before(&self, before: Timestamp) -> StoreResult<Option<(i64, String)>> {
        self.call()
            .run(|c| Queries::newest_row_before(c, before))
            .await
    }

    async fn prune_audit(&self, through: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Deleting years of rows is real work that may take longer than any statement should
        // wait; waiting on another session's lock is still bounded.
        let limits = format!(
            "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = {}",
            millis(self.statement_timeout)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(limits))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let n = Queries::prune_audit(&mut *tx, through).await?;
        Queries::prune_checkpoints(&mut *tx, through).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn record_deployment(&self, rec: DeploymentRecord) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::record_deployment(c, &rec))
            .await
    }

    async fn soak_facts(&self, environment: &str, version: &str) -> StoreResult<SoakFacts> {
        self.bounded(Queries::soak_facts(&self.pool, environment, version))
            .await
    }

    async fn deployments(
        &self,
        environment: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        self.call()
            .run(|c| Queries::deployments(c, environment, limit))
            .await
    }

    async fn sandbox_get(&self, environment: &str) -> StoreResult<Option<SandboxRow>> {
        self.call()
            .run(|c| Queries::sandbox_get(c, environment))
            .await
    }

    async fn sandbox_put(&self, row: SandboxRow) -> StoreResult<()> {
        self.call().run(|c| Queries::sandbox_put(c, &row)).await
    }

    async fn insert_incident(&self, new: NewIncident) -> StoreResult<IncidentRow> {
        self.call().run(|c| Queries::insert_incident(c, &new)).await
    }

    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>> {
        self.call().run(|c| Queries::get_incident(c, id)).await
    }

    async fn open_incidents(&self) -> StoreResult<Vec<IncidentRow>> {
        self.call().run(Queries::open_incidents).await
    }

    async fn update_incident(&self, row: &IncidentRow) -> StoreResult<()> {
        self.call().run(|c| Queries::update_incident(c, row)).await
    }

    async fn append_incident_event(
        &self,
        incident: IncidentId,
        at: Timestamp,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> StoreResult<IncidentEventRow> {
        // Two replicas can compute the same next seq; the primary key rejects the loser,
        // which simply tries again with the new maximum.
        self.call()
            .run(|c| async move {
                let mut attempt = 0;
                loop {
                    match Queries::append_incident_event(&mut *c, incident, at, kind, who, text)
                        .await
                    {
                        Ok(raw) => return raw.try_into(),
                        Err(sqlx::Error::Database(d))
                            if d.is_unique_violation() && attempt < EVENT_SEQ_RETRIES =>
                        {
                            attempt += 1;
                        }
                        Err(e) => return Err(db_err(e)),
                    }
                }
            })
            .await
    }

    async fn incident_events(&self, incident: IncidentId) -> StoreResult<Vec<IncidentEventRow>> {
        self.call()
            .run(|c| Queries::incident_events(c, incident))
            .await
    }

    async fn set_incident_statuspage_id(
        &self,
        incident: IncidentId,
        statuspage_id: &str,
    ) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::set_incident_statuspage_id(c, incident, statuspage_id))
            .await
    }

    async fn incident_statuspage_id(&self, incident: IncidentId) -> StoreResult<Option<String>> {
        self.call()
            .run(|c| Queries::incident_statuspage_id(c, incident))
            .await
    }

    async fn incidents_by_id(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentRow>> {
        self.bounded(job_batch::pg_incidents_by_id(&self.pool, ids))
            .await
    }

    async fn events_of_incidents(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentEventRow>> {
        self.bounded(job_batch::pg_events_of_incidents(&self.pool, ids))
            .await
    }

    async fn upsert_job(
        &self,
        key: &str,
        kind: &str,
        payload: &str,
        due_at: Timestamp,
    ) -> StoreResult<()> {
        self.call()
            .run(|c| Queries::upsert_job(c, key, kind, payload, due_at))
            .await
    }

    async fn delete_job(&self, key: &str) -> StoreResult<()> {
        self.call().run(|c| Queries::delete_job(c, key)).await
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
        // against the WHERE clause before it is locked. The ids as an array: the rows are
        // then found by primary key, where `IN (subquery)` planned a scan of every job.
        const CLAIM: &str = concat!(
            "UPDATE scheduled_jobs SET lease_owner = $1, lease_until = $2 WHERE id = ANY(ARRAY(\
             SELECT id FROM scheduled_jobs WHERE due_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id LIMIT $4 \
             FOR UPDATE SKIP LOCKED)) RETURNING ",
            job_cols!()
        );
        let mut call = self.call();
        let raw = call
            .run(|c| Queries::claim_due_jobs(c, CLAIM, owner, now, lease_until, limit))
            .await?;
        common::due_order(raw)
    }

    async fn complete_job(
        &self,
        id: i64,
        owner: &str,
        next_due: Option<Timestamp>,
    ) -> StoreResult<bool> {
        self.call()
            .run(|c| Queries::complete_job(c, id, owner, next_due))
            .await
    }

    async fn complete_jobs_with_events(
        &self,
        owner: &str,
        done: Vec<JobDone>,
    ) -> StoreResult<Vec<bool>> {
        self.bounded(job_batch::pg_complete_jobs_with_events(
            &self.pool, owner, &done,
        ))
        .await
    }

    async fn remember_event(
        &self,
        platform: Platform,
        key: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        use std::sync::atomic::Ordering;
        // Two callers may both find it due and both delete: harmless. A key past its hour
        // counts as new whether or not its row is still there (see REMEMBER_EVENT).
        let now = to_ms(at);
        let last = self.forgotten_at.load(Ordering::Relaxed);
        self.bounded(async {
            if common::forget_due((last != i64::MIN).then_some(last), now) {
                self.forgotten_at.store(now, Ordering::Relaxed);
                Queries::forget_events(&self.pool, at).await?;
            }
            self.deliveries.remember(platform, key, at).await
        })
        .await
    }
}
