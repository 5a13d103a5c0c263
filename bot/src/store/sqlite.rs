//! SQLite backend: the embedded default.
//!
//! Every write goes through one writer task that owns one connection. It takes whatever
//! writes are queued, runs them in a single `BEGIN IMMEDIATE` transaction and commits them
//! together; each caller gets its answer only after that commit. With `synchronous=FULL` a commit costs one
//! fsync, so batching is what lets many concurrent callers each wait for durability without
//! paying an fsync apiece. It also means writers in this process never contend for SQLite's
//! lock; other processes are held off by `BEGIN IMMEDIATE` and `busy_timeout`.
//!
//! Reads use a small pool: WAL lets them run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, AuditWork, Done};
use super::common::{self, *};
use super::sqlite_requests::{self, Call};
use super::*;

type Queries = common::Queries<Sqlite>;

/// Most writes committed in one transaction; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;
const QUEUE: usize = 4096;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the readiness write waits for another writer's lock: well inside the probe's
/// deadline, so a locked file is reported as locked rather than as a timeout.
const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one batch may take before the writer stops waiting for its connection (the
/// default; `bot.database_timeout` sets it): far past the busy wait and any sync a working
/// disk needs. Past it, the connection's thread is taken to be lost (a panic there leaves
/// what was sent to it unanswered), and the writer carries on with a new connection rather
/// than holding every write after it.
const STALLED: Duration = erlmcp_commands::config::DEFAULT_DATABASE_TIMEOUT;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<Job>,
    /// The readiness probe's own connection (opened on first use), with a short busy wait:
    /// through the writer task a probe would queue behind a batch stuck in a 10 s wait.
    probe: tokio::sync::Mutex<Option<SqliteConnection>>,
    probe_options: SqliteConnectOptions,
}

impl SqliteStore {
    /// How the store connects: WAL, a sync on every commit, a 10 s wait for another
    /// writer's lock. Public so benchmarks measure raw writes with the same durability.
    pub fn connect_options(url: &str) -> StoreResult<SqliteConnectOptions> {
        Ok(SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(scrub(&e.to_string(), url)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true))
    }

    /// Opens (creating the file if missing) without touching the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_stalling_after(url, STALLED).await
    }

    /// `connect`, with the writer giving up on a batch after `stalled`.
    pub(crate) async fn connect_stalling_after(url: &str, stalled: Duration) -> StoreResult<Self> {
        let options = Self::connect_options(url)?;
        create_in_wal_mode(url, &options).await?;
        // The writer connects first so the file exists and is in WAL mode before readers open.
        let conn = options.connect().await.map_err(|e| connect_err(e, url))?;
        let probe_options = options.clone().busy_timeout(PROBE_BUSY_TIMEOUT);
        let writer_options = options.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // The pool's default ping before every read is a round trip to the connection's
            // thread, and proves nothing here: an in-process connection has no server to
            // lose, and a failing file fails the read itself with its own error.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| connect_err(e, url))?;
        let (writer, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer_loop(conn, writer_options, stalled, rx));
        Ok(SqliteStore {
            pool,
            writer,
            probe: tokio::sync::Mutex::new(None),
            probe_options,
        })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        let failed =
            |e: &dyn std::fmt::Display| StoreError::Database(format!("migration failed: {e}"));
        let mut conn = self.pool.acquire().await.map_err(|e| failed(&e))?;
        // Each migration commits on its own; with synchronous=FULL that is an fsync apiece,
        // most of a fresh start's time. With NORMAL (WAL) they are not synced one by one,
        // yet the first durable commit after them syncs the log they are in: no data write
        // is acknowledged before the schema it relies on is durable, and a schema change
        // lost to a power cut is simply applied again at the next start.
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await
            .map_err(|e| failed(&e))?;
        let result = sqlx::migrate!("../migrations/sqlite").run(&mut *conn).await;
        if sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            // Never back in the pool with weaker durability than every other connection.
            drop(conn.detach());
        }
        result.map_err(|e| failed(&e))
    }

    /// `connect` then `migrate`.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_within(url, STALLED).await
    }

    /// `open`, with the writer giving up on a batch after `stalled`.
    pub async fn open_within(url: &str, stalled: Duration) -> StoreResult<Self> {
        let store = Self::connect_stalling_after(url, stalled).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The read pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the read pool and the probe's connection; the writer stops once the store is
    /// dropped.
    pub async fn close(&self) {
        if let Some(probe) = self.probe.lock().await.take() {
            let _ = probe.close().await;
        }
        self.pool.close().await;
    }

    /// Runs `f` inside the writer's current batch and returns once that batch is durable.
    /// There is no savepoint per job (it would triple the statements per append): when a
    /// statement of `f` fails, the writes of `f`'s earlier statements are committed with the
    /// batch. So `f` issues one writing statement, or orders them so that is harmless. A
    /// caller that stops waiting does not cancel the write.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Writer) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job::Write(Box::new(TypedJob { f, reply })))
            .await
            .map_err(|_| writer_gone())?;
        rx.await.map_err(|_| unconfirmed())?
    }

    /// Hands `work` to the writer, which writes it with the audited work queued beside it
    /// (see `Writer::write_audited`), and waits until that is durable.
    async fn audited(&self, work: AuditWork) -> StoreResult<Done> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job::Audited(Box::new(work), reply))
            .await
            .map_err(|_| writer_gone())?;
        rx.await.map_err(|_| unconfirmed())?
    }
}

/// Makes a database file that does not exist yet, in WAL mode, on a short connection of its
/// own. Left to the writer's connection, the switch to WAL would run under `synchronous=FULL`
/// through a rollback journal: four syncs (journal, its directory, journal again, database)
/// for a file that holds nothing yet, most of a fresh start's time. Here it runs unsynced,
/// then the database file alone is synced: SQLite throws a WAL away when it finds an empty
/// database file beside it, so the first page must be on disk before any commit the WAL will
/// hold is acknowledged. The WAL itself, and the directory entries with it, are synced by
/// SQLite at the first durable commit.
async fn create_in_wal_mode(url: &str, options: &SqliteConnectOptions) -> StoreResult<()> {
    if is_in_memory(url) {
        return Ok(());
    }
    let path = options.get_filename().to_path_buf();
    if tokio::fs::try_exists(&path).await.unwrap_or(true) {
        return Ok(());
    }
    let unsynced = options
        .clone()
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Off);
    let mut conn = unsynced.connect().await.map_err(|e| connect_err(e, url))?;
    let switched = sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await
        .map_err(|e| connect_err(e, url));
    let _ = conn.close().await;
    switched?;
    let synced = async {
        tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?
            .sync_all()
            .await
    };
    synced.await.map_err(|e| {
        StoreError::Unavailable(format!(
            "could not sync the new database file {}: {e}",
            path.display()
        ))
    })
}

/// Whether `url` names an in-memory database, which has no file on disk.
pub(crate) fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

fn connect_err(e: sqlx::Error, url: &str) -> StoreError {
    StoreError::Unavailable(scrub(&e.to_string(), url))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer task has stopped".into())
}

/// The writer dropped a write without answering it: it gave up on a stalled batch.
fn unconfirmed() -> StoreError {
    StoreError::Unavailable(
        "the SQLite database did not answer in time; this write was not confirmed".into(),
    )
}

/// The writer task's connection and what it knows inside the current transaction.
pub(crate) struct Writer {
    conn: SqliteConnection,
    /// `(seq, hash)` of the newest audit row, once read in this transaction: `BEGIN
    /// IMMEDIATE` keeps other processes from appending until commit, so later appends in the
    /// same batch need not read it again. Outer `None` = not read yet.
    audit_tip: Option<Option<(i64, String)>>,
    /// When delivery keys past their hour were last deleted (the bot's clock, ms).
    forgotten_at: Option<i64>,
    /// Nothing has been written yet in the current transaction.
    fresh: bool,
    /// A unit failed with no savepoint under it (it was first in the transaction): the
    /// transaction is rolled back, not committed.
    roll_back: bool,
}

impl Writer {
    fn new(conn: SqliteConnection) -> Writer {
        Writer {
            conn,
            audit_tip: None,
            forgotten_at: None,
            fresh: false,
            roll_back: false,
        }
    }

    /// Runs `f` as one unit inside the batch's transaction: a later statement's failure
    /// takes back the earlier ones (see `SqliteStore::write`), so a job of several writes
    /// leaves all or nothing.
    async fn atomically<T>(
        &mut self,
        f: impl for<'w> FnOnce(&'w mut Writer) -> BoxFuture<'w, StoreResult<T>>,
    ) -> StoreResult<T> {
        if self.fresh {
            // First in its transaction: rolling the whole transaction back undoes exactly
            // this unit, which saves the savepoint's two statements, each a round trip to
            // the connection's thread.
            let result = f(self).await;
            if result.is_err() {
                self.audit_tip = None;
                self.roll_back = true;
            }
            return result;
        }
        exec(&mut self.conn, "SAVEPOINT job").await?;
        match f(self).await {
            Ok(v) => {
                exec(&mut self.conn, "RELEASE job").await?;
                Ok(v)
            }
            Err(e) => {
                // The chain's tip may have moved inside the undone part.
                self.audit_tip = None;
                self.rollback_unit().await;
                Err(e)
            }
        }
    }

    /// Rolls the transaction back, then forgets every prepared statement (see
    /// [`Writer::forget_statements`]). With no transaction left open (a failed COMMIT may
    /// have ended it) the ROLLBACK fails, harmlessly.
    async fn rollback(&mut self) {
        let _ = exec(&mut self.conn, "ROLLBACK").await;
        self.forget_statements().await;
    }

    /// Undoes the current unit's part of the transaction (see `atomically`), then forgets
    /// every prepared statement.
    async fn rollback_unit(&mut self) {
        let _ = exec(&mut self.conn, "ROLLBACK TO job").await;
        let _ = exec(&mut self.conn, "RELEASE job").await;
        self.forget_statements().await;
    }

    /// A rollback over a schema another connection changed marks this connection's prepared
    /// statements as expired. When one of them is a later statement of a multi-statement
    /// call and no longer compiles, sqlx 0.9 panics on the connection's thread as it resets
    /// that call, and nothing sent to the thread after it is answered. Statements prepared
    /// afresh fail as they prepare instead. Rollbacks are rare, so preparing again after one
    /// costs nothing that matters; keeping statements prepared is worth a quarter of the
    /// audited path's throughput, so they are kept otherwise.
    async fn forget_statements(&mut self) {
        let _ = self.conn.clear_cached_statements().await;
    }

    /// Audited work queued together, as one unit (see `atomically`): its new requests,
    /// finishes and audit rows, in two calls to the connection's thread. The first makes the
    /// request writes (and reads the chain's tip, unless this transaction already has);
    /// the second inserts the audit rows chained onto the ids and outcomes it answered, and
    /// the sandbox's new states. `alone`: the run has its transaction to itself, so the
    /// first call also opens it and the second commits it; on an error the caller rolls back.
    async fn write_audited(
        &mut self,
        works: Vec<AuditWork>,
        alone: bool,
    ) -> StoreResult<Vec<Done>> {
        let (finishes, news) = batch::request_writes(&works);
        let known_tip = self.audit_tip.take();
        let mut first = Call::new();
        if alone {
            first.push("BEGIN IMMEDIATE");
        }
        if known_tip.is_none() {
            sqlite_requests::push_tip(&mut first);
        }
        let pushed = sqlite_requests::push_request_writes(&mut first, &finishes, &news);
        let mut answers = first.send(&mut self.conn).await?;
        if alone {
            answers.next()?;
        }
        let tip = match known_tip {
            Some(tip) => tip,
            None => sqlite_requests::tip(&mut answers)?,
        };
        let (moved, inserted) = pushed.answers(&finishes, &mut answers)?;
        let mut chained = batch::chain(works, inserted, tip)?;
        let states = batch::newest_states(std::mem::take(&mut chained.states));
        let mut second = Call::new();
        sqlite_requests::push_chain_writes(&mut second, &chained.rows, &states);
        if alone {
            second.push("COMMIT");
        }
        second.send(&mut self.conn).await?;
        self.audit_tip = Some(chained.tip.take());
        chained.done(moved)
    }
}

/// What the writer is handed: any write, or audited work it groups with its neighbours.
enum Job {
    Write(Box<dyn WriteJob>),
    Audited(Box<AuditWork>, oneshot::Sender<StoreResult<Done>>),
}

impl Job {
    fn abort(self, err: StoreError) {
        match self {
            Job::Write(job) => job.abort(err),
            Job::Audited(_, reply) => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

impl Writer {
    /// One job in the writer's batch for a whole chunk, all or nothing.
    async fn complete_jobs_with_events(
        &mut self,
        owner: String,
        done: Vec<JobDone>,
    ) -> StoreResult<Vec<bool>> {
        self.atomically(move |w| {
            Box::pin(async move {
                job_batch::sqlite_complete_jobs_with_events(&mut w.conn, &owner, &done).await
            })
        })
        .await
    }
}

/// A queued write, type-erased so one channel carries every kind.
trait WriteJob: Send {
    /// Runs the write; the returned completion delivers the answer once the transaction's
    /// fate is known (`None` = committed).
    fn run<'c>(self: Box<Self>, w: &'c mut Writer) -> BoxFuture<'c, Ran>;
    /// Answers without running (no transaction could be started).
    fn abort(self: Box<Self>, err: StoreError);
}

/// Delivers a job's answer given the fate of its transaction (`Some` = it failed).
type Complete = Box<dyn FnOnce(Option<&StoreError>) + Send>;

struct Ran {
    ok: bool,
    complete: Complete,
}

struct TypedJob<T, F> {
    f: F,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Writer) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, w: &'c mut Writer) -> BoxFuture<'c, Ran> {
        let TypedJob { f, reply } = *self;
        Box::pin(async move {
            let result = f(w).await;
            Ran {
                ok: result.is_ok(),
                complete: Box::new(move |commit_err: Option<&StoreError>| {
                    let answer = match (result, commit_err) {
                        (Ok(_), Some(e)) => Err(e.clone()),
                        (result, _) => result,
                    };
                    let _ = reply.send(answer);
                }),
            }
        })
    }

    fn abort(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }
}

async fn writer_loop(
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    stalled: Duration,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut writer = Some(Writer::new(conn));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let w = match writer.as_mut() {
            Some(w) => w,
            None => match options.connect().await {
                Ok(conn) => writer.insert(Writer::new(conn)),
                Err(e) => {
                    let err = StoreError::Unavailable(format!(
                        "the SQLite writer could not reconnect: {e}"
                    ));
                    for job in batch.drain(..) {
                        job.abort(err.clone());
                    }
                    continue;
                }
            },
        };
        if tokio::time::timeout(stalled, run_batch(w, &mut batch))
            .await
            .is_err()
        {
            // The batch's callers were dropped with it and are told their writes were not
            // confirmed. Whatever the old connection had not committed is rolled back when
            // SQLite closes it; the next batch opens a new one.
            tracing::error!(
                after_secs = stalled.as_secs_f64(),
                "the SQLite writer's connection stopped answering; reconnecting"
            );
            batch.clear();
            writer = None;
        }
    }
    if let Some(w) = writer {
        let _ = w.conn.close().await;
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_err)
}

/// Runs the queued jobs in as few transactions as possible: one, unless a job fails. A failed
/// job ends its transaction, because some SQLite errors (I/O, full disk) roll back the whole
/// transaction and later statements would then run outside it; the COMMIT that follows
/// reports that to every job in it. Audited work queued side by side is written as one unit:
/// when it fails, every write in it fails and none of them is kept.
async fn run_batch(w: &mut Writer, batch: &mut Vec<Job>) {
    if !batch.is_empty() && batch.iter().all(|j| matches!(j, Job::Audited(..))) {
        return run_audited_alone(w, batch).await;
    }
    let mut jobs = batch.drain(..).peekable();
    while jobs.peek().is_some() {
        if let Err(e) = begin(w).await {
            for job in jobs {
                job.abort(e.clone());
            }
            return;
        }
        let mut done: Vec<Complete> = Vec::new();
        while let Some(job) = jobs.next() {
            let ok = match job {
                Job::Write(job) => {
                    let ran = job.run(w).await;
                    done.push(ran.complete);
                    ran.ok
                }
                Job::Audited(work, reply) => {
                    let (mut works, mut replies) = (vec![*work], vec![reply]);
                    while let Some(Job::Audited(..)) = jobs.peek() {
                        if let Some(Job::Audited(work, reply)) = jobs.next() {
                            works.push(*work);
                            replies.push(reply);
                        }
                    }
                    let result = w
                        .atomically(move |w| Box::pin(w.write_audited(works, false)))
                        .await;
                    let ok = result.is_ok();
                    done.push(Box::new(move |commit_err: Option<&StoreError>| {
                        answer_audited(replies, result, commit_err)
                    }));
                    ok
                }
            };
            if !ok {
                break;
            }
            w.fresh = false;
        }
        let failure = if w.roll_back {
            // A unit failed first in its transaction. It keeps its own error; anything that
            // answered Ok around it would be told its writes are gone, as they are.
            w.rollback().await;
            Some(StoreError::Database(
                "the transaction was rolled back after a failed write".into(),
            ))
        } else {
            let failure = exec(&mut w.conn, "COMMIT").await.err();
            if failure.is_some() {
                w.rollback().await;
            }
            failure
        };
        w.audit_tip = None;
        for complete in done {
            complete(failure.as_ref());
        }
    }
}

/// A batch of nothing but audited work: one unit in a transaction of its own, which its two
/// calls open and commit (see `Writer::write_audited`). The common batch under load, and the
/// one the audited path waits on twice per operation.
async fn run_audited_alone(w: &mut Writer, batch: &mut Vec<Job>) {
    let (mut works, mut replies) = (Vec::with_capacity(batch.len()), Vec::new());
    for job in batch.drain(..) {
        if let Job::Audited(work, reply) = job {
            works.push(*work);
            replies.push(reply);
        }
    }
    w.audit_tip = None;
    let result = w.write_audited(works, true).await;
    if result.is_err() {
        // Whatever ran of the BEGIN and the writes, and a COMMIT that failed, is undone.
        w.rollback().await;
    }
    // Another process may append to the chain once this transaction is over.
    w.audit_tip = None;
    answer_audited(replies, result, None);
}

/// Opens the writer's transaction. The chain's tip is read by the first audited work in it,
/// in the same call as its request writes.
async fn begin(w: &mut Writer) -> StoreResult<()> {
    w.audit_tip = None;
    w.fresh = true;
    w.roll_back = false;
    exec(&mut w.conn, "BEGIN IMMEDIATE").await
}

/// Writes `works` as one run of the writer, on a connection of its own, and commits it.
#[cfg(test)]
pub(crate) async fn write_run(url: &str, works: Vec<AuditWork>) -> StoreResult<Vec<Done>> {
    let conn = SqliteStore::connect_options(url)?
        .connect()
        .await
        .map_err(db_err)?;
    let mut w = Writer::new(conn);
    let done = w.write_audited(works, true).await;
    if done.is_err() {
        w.rollback().await;
    }
    done
}

/// Answers each caller of a run of audited work once its transaction's fate is known.
fn answer_audited(
    replies: Vec<oneshot::Sender<StoreResult<Done>>>,
    result: StoreResult<Vec<Done>>,
    commit_err: Option<&StoreError>,
) {
    let failed = match (result, commit_err) {
        (Ok(done), None) => {
            for (reply, done) in replies.into_iter().zip(done) {
                let _ = reply.send(Ok(done));
            }
            return;
        }
        (Err(e), _) => e,
        (Ok(_), Some(e)) => e.clone(),
    };
    for reply in replies {
        let _ = reply.send(Err(failed.clone()));
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.writer.is_closed() {
            return Err(writer_gone());
        }
        Queries::ping(&self.pool).await
    }

    async fn check_writable(&self, at: Timestamp) -> StoreResult<()> {
        if self.writer.is_closed() {
            return Err(StoreError::NotWritable(WriteBlock::Unreachable));
        }
        let mut slot = self.probe.lock().await;
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => {
                let c =
                    self.probe_options.connect().await.map_err(|e| {
                        StoreError::NotWritable(WriteBlock::of(&e, Backend::Sqlite))
                    })?;
                slot.insert(c)
            }
        };
        // One autocommit statement: nothing is left open if the caller stops waiting.
        match Queries::probe_write(&mut *conn, at).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let block = WriteBlock::of(&e, Backend::Sqlite);
                if block == WriteBlock::Unreachable {
                    *slot = None;
                }
                Err(StoreError::NotWritable(block))
            }
        }
    }

    async fn insert_request(&self, new: NewRequest) -> StoreResult<RequestRow> {
        self.write(move |c| {
            Box::pin(async move { Queries::insert_request(&mut c.conn, &new).await })
        })
        .await
    }

    async fn get_request(&self, id: RequestId) -> StoreResult<Option<RequestRow>> {
        Queries::get_request(&self.pool, id).await
    }

    async fn pending_requests(&self) -> StoreResult<Vec<RequestRow>> {
        Queries::pending_requests(&self.pool).await
    }

    async fn transition_request(
        &self,
        id: RequestId,
        from: RequestState,
        to: RequestState,
        outcome: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let outcome = outcome.map(str::to_string);
        self.write(move |c| {
            Box::pin(async move {
                Queries::transition_request(&mut c.conn, id, from, to, outcome.as_deref(), at).await
            })
        })
        .await
    }

    async fn set_request_message(
        &self,
        id: RequestId,
        message_ref: &MessageRef,
    ) -> StoreResult<()> {
        let message_ref = message_ref.clone();
        self.write(move |c| {
            Box::pin(
                async move { Queries::set_request_message(&mut c.conn, id, &message_ref).await },
            )
        })
        .await
    }

    async fn start_executing(
        &self,
        id: RequestId,
        from: RequestState,
        owner: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let owner = owner.to_string();
        self.write(move |c| {
            Box::pin(
                async move { Queries::start_executing(&mut c.conn, id, from, &owner, at).await },
            )
        })
        .await
    }

    async fn set_request_progress(&self, id: RequestId, line: &str) -> StoreResult<()> {
        let line = line.to_string();
        self.write(move |c| {
            Box::pin(async move { Queries::set_request_progress(&mut c.conn, id, &line).await })
        })
        .await
    }

    async fn heartbeat(
        &self,
        owner: &str,
        started_at: Timestamp,
        at: Timestamp,
    ) -> StoreResult<()> {
        let owner = owner.to_string();
        self.write(move |c| {
            Box::pin(async move {
                // Forget first: see `write` on a job's failing statement.
                Queries::forget_replicas(&mut c.conn, at).await?;
                Queries::heartbeat(&mut c.conn, &owner, started_at, at).await
            })
        })
        .await
    }

    async fn replicas(&self) -> StoreResult<Vec<ReplicaRow>> {
        Queries::replicas(&self.pool).await
    }

    async fn orphaned_requests(&self, stale_before: Timestamp) -> StoreResult<Vec<RequestRow>> {
        Queries::orphaned_requests(&self.pool, stale_before).await
    }

    async fn interrupt_request(
        &self,
        id: RequestId,
        dead_owner: Option<&str>,
        stale_before: Timestamp,
        outcome: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let (dead_owner, outcome) = (dead_owner.map(str::to_string), outcome.to_string());
        self.write(move |c| {
            Box::pin(async move {
                Queries::interrupt_request(
                    &mut c.conn,
                    id,
                    dead_owner.as_deref(),
                    stale_before,
                    &outcome,
                    at,
                )
                .await
            })
        })
        .await
    }

    async fn unacknowledged_interrupted(&self) -> StoreResult<Vec<RequestRow>> {
        Queries::unacknowledged_interrupted(&self.pool).await
    }

    async fn acknowledge_request(&self, id: RequestId, at: Timestamp) -> StoreResult<bool> {
        self.write(move |c| {
            Box::pin(async move { Queries::acknowledge_request(&mut c.conn, id, at).await })
        })
        .await
    }

    async fn expired_requests(&self, now: Timestamp) -> StoreResult<Vec<RequestRow>> {
        Queries::expired_requests(&self.pool, now).await
    }

    async fn requests_finished_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<RequestRow>> {
        Queries::requests_finished_between(&self.pool, from, to).await
    }

    async fn insert_vote(&self, vote: NewVote) -> StoreResult<VoteInsert> {
        self.write(move |c| Box::pin(async move { Queries::insert_vote(&mut c.conn, &vote).await }))
            .await
    }

    async fn votes(&self, id: RequestId) -> StoreResult<Vec<VoteRow>> {
        Queries::votes(&self.pool, id).await
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
        Queries::audit_page(&self.pool, after, limit).await
    }

    async fn audit_tail(&self, n: u32) -> StoreResult<Vec<AuditRow>> {
        Queries::audit_tail(&self.pool, n).await
    }

    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()> {
        self.write(move |c| {
            Box::pin(async move { Queries::save_checkpoint(&mut c.conn, &checkpoint).await })
        })
        .await
    }

    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        Queries::checkpoints(&self.pool).await
    }

    async fn newest_audit_before(&self, before: Timestamp) -> StoreResult<Option<(i64, String)>> {
        Queries::newest_row_before(&self.pool, before).await
    }

    async fn prune_audit(&self, through: i64) -> StoreResult<u64> {
        // The writer's batch is one transaction, so both deletes land together.
        self.write(move |c| {
            Box::pin(async move {
                let n = Queries::prune_audit(&mut c.conn, through).await?;
                Queries::prune_checkpoints(&mut c.conn, through).await?;
                Ok(n)
            })
        })
        .await
    }

    async fn record_deployment(&self, rec: DeploymentRecord) -> StoreResult<()> {
        self.write(move |c| {
            Box::pin(async move { Queries::record_deployment(&mut c.conn, &rec).await })
        })
        .await
    }

    async fn soak_facts(&self, environment: &str, version: &str) -> StoreResult<SoakFacts> {
        Queries::soak_facts(&self.pool, environment, version).await
    }

    async fn deployments(
        &self,
        environment: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        Queries::deployments(&self.pool, environment, limit).await
    }

    async fn sandbox_get(&self, environment: &str) -> StoreResult<Option<SandboxRow>> {
        Queries::sandbox_get(&self.pool, environment).await
    }

    async fn sandbox_put(&self, row: SandboxRow) -> StoreResult<()> {
        self.write(move |c| Box::pin(async move { Queries::sandbox_put(&mut c.conn, &row).await }))
            .await
    }

    async fn insert_incident(&self, new: NewIncident) -> StoreResult<IncidentRow> {
        self.write(move |c| {
            Box::pin(async move { Queries::insert_incident(&mut c.conn, &new).await })
        })
        .await
    }

    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>> {
        Queries::get_incident(&self.pool, id).await
    }

    async fn open_incidents(&self) -> StoreResult<Vec<IncidentRow>> {
        Queries::open_incidents(&self.pool).await
    }

    async fn update_incident(&self, row: &IncidentRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            Box::pin(async move { Queries::update_incident(&mut c.conn, &row).await })
        })
        .await
    }

    async fn append_incident_event(
        &self,
        incident: IncidentId,
        at: Timestamp,
        kind: IncidentEventKind,
        who: Option<&Who>,
        text: &str,
    ) -> StoreResult<IncidentEventRow> {
        let (who, text) = (who.cloned(), text.to_string());
        self.write(move |c| {
            Box::pin(async move {
                Queries::append_incident_event(&mut c.conn, incident, at, kind, who.as_ref(), &text)
                    .await
                    .map_err(db_err)?
                    .try_into()
            })
        })
        .await
    }

    async fn incident_events(&self, incident: IncidentId) -> StoreResult<Vec<IncidentEventRow>> {
        Queries::incident_events(&self.pool, incident).await
    }

    async fn set_incident_statuspage_id(
        &self,
        incident: IncidentId,
        statuspage_id: &str,
    ) -> StoreResult<()> {
        let statuspage_id = statuspage_id.to_string();
        self.write(move |c| {
            Box::pin(async move {
                Queries::set_incident_statuspage_id(&mut c.conn, incident, &statuspage_id).await
            })
        })
        .await
    }

    async fn incident_statuspage_id(&self, incident: IncidentId) -> StoreResult<Option<String>> {
        Queries::incident_statuspage_id(&self.pool, incident).await
    }

    async fn incidents_by_id(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentRow>> {
        job_batch::sqlite_incidents_by_id(&self.pool, ids).await
    }

    async fn events_of_incidents(&self, ids: &[IncidentId]) -> StoreResult<Vec<IncidentEventRow>> {
        job_batch::sqlite_events_of_incidents(&self.pool, ids).await
    }

    async fn upsert_job(
        &self,
        key: &str,
        kind: &str,
        payload: &str,
        due_at: Timestamp,
    ) -> StoreResult<()> {
        let (key, kind, payload) = (key.to_string(), kind.to_string(), payload.to_string());
        self.write(move |c| {
            Box::pin(async move {
                Queries::upsert_job(&mut c.conn, &key, &kind, &payload, due_at).await
            })
        })
        .await
    }

    async fn delete_job(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.write(move |c| Box::pin(async move { Queries::delete_job(&mut c.conn, &key).await }))
            .await
    }

    async fn claim_due_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<JobRow>> {
        // One statement under SQLite's single-writer lock, so no two callers (in any
        // process) can take the same row.
        const CLAIM: &str = concat!(
            "UPDATE scheduled_jobs SET lease_owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM scheduled_jobs WHERE due_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id LIMIT $4) \
             RETURNING ",
            job_cols!()
        );
        let owner = owner.to_string();
        let raw = self
            .write(move |c| {
                Box::pin(async move {
                    Queries::claim_due_jobs(&mut c.conn, CLAIM, &owner, now, lease_until, limit)
                        .await
                })
            })
            .await?;
        common::due_order(raw)
    }

    async fn complete_job(
        &self,
        id: i64,
        owner: &str,
        next_due: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let owner = owner.to_string();
        self.write(move |c| {
            Box::pin(async move { Queries::complete_job(&mut c.conn, id, &owner, next_due).await })
        })
        .await
    }

    async fn complete_jobs_with_events(
        &self,
        owner: &str,
        done: Vec<JobDone>,
    ) -> StoreResult<Vec<bool>> {
        let owner = owner.to_string();
        self.write(move |c| Box::pin(c.complete_jobs_with_events(owner, done)))
            .await
    }

    async fn remember_event(
        &self,
        platform: Platform,
        key: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |c| {
            Box::pin(async move {
                // Forget first: a job's failed statement must come before any it already
                // wrote (see `write`), or a caller told "error" would find its key taken.
                let now = to_ms(at);
                if common::forget_due(c.forgotten_at, now) {
                    Queries::forget_events(&mut c.conn, at).await?;
                    c.forgotten_at = Some(now);
                }
                Queries::remember_event(&mut c.conn, platform, &key, at).await
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_file_is_made_in_wal_mode_with_its_first_page_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() >= 4096);
        assert!(!dir.path().join("new.db-journal").exists());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // Every connection the store hands out syncs each commit.
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        store.close().await;
        drop(store);

        // Opened again, the file is taken as it is and keeps what was written.
        let store = SqliteStore::open(&url).await.unwrap();
        let migrated: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(migrated > 0);
        store.close().await;
    }

    fn plain_entry(n: i64) -> NewAuditEntry {
        NewAuditEntry {
            at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + n).unwrap(),
            action: "executed".into(),
            who: Who {
                platform: "local".into(),
                user_id: "u".into(),
                display_name: "u".into(),
            },
            channel: "local:c".into(),
            operation: "scale".into(),
            arguments: format!(r#"{{"n":{n}}}"#),
            environment: Some("prod".into()),
            request_id: None,
            decision: "allow".into(),
            reason: String::new(),
            votes: "[]".into(),
            outcome: "ok".into(),
        }
    }

    fn write_job<T, F>(f: F) -> (Job, oneshot::Receiver<StoreResult<T>>)
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Writer) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        (Job::Write(Box::new(TypedJob { f, reply })), rx)
    }

    /// A unit that writes, then fails: its write must not outlive it.
    fn failing_unit(env: &'static str) -> (Job, oneshot::Receiver<StoreResult<()>>) {
        write_job(move |w| {
            Box::pin(w.atomically(move |w| {
                Box::pin(async move {
                    let row = SandboxRow {
                        environment: env.into(),
                        state_json: "{}".into(),
                        updated_at: chrono::Utc::now(),
                    };
                    Queries::sandbox_put(&mut w.conn, &row).await?;
                    exec(&mut w.conn, "INSERT INTO no_such_table VALUES (1)").await
                })
            }))
        })
    }

    fn append(n: i64) -> (Job, oneshot::Receiver<StoreResult<Done>>) {
        let (reply, rx) = oneshot::channel();
        let work = AuditWork::Append(plain_entry(n));
        (Job::Audited(Box::new(work), reply), rx)
    }

    /// First in its transaction a unit runs without a savepoint; after other work, under
    /// one. Either way a failed unit leaves nothing and its neighbours are committed.
    #[tokio::test]
    async fn a_failed_unit_leaves_nothing_first_in_its_transaction_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let conn = SqliteStore::connect_options(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut w = Writer::new(conn);

        let (first_fails, failed) = failing_unit("first");
        let (then_append, appended) = append(1);
        run_batch(&mut w, &mut vec![first_fails, then_append]).await;
        assert!(failed.await.unwrap().is_err());
        assert!(appended.await.unwrap().is_ok());

        let (append_first, appended) = append(2);
        let (then_fails, failed) = failing_unit("second");
        let (last_append, appended_last) = append(3);
        run_batch(&mut w, &mut vec![append_first, then_fails, last_append]).await;
        assert!(appended.await.unwrap().is_ok());
        assert!(failed.await.unwrap().is_err());
        assert!(appended_last.await.unwrap().is_ok());

        for env in ["first", "second"] {
            assert_eq!(store.sandbox_get(env).await.unwrap(), None, "{env}");
        }
        let report = audit::verify(&store).await.unwrap();
        assert!(report.is_ok() && report.count == 3, "{report:?}");
        store.close().await;
    }
}
