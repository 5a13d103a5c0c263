//! The audit chain's writer on PostgreSQL. Work that arrives together shares one
//! transaction (one advisory lock, one WAL flush) instead of queueing on the lock one commit
//! at a time. Each caller still returns only after its rows are committed; when the
//! transaction fails, every caller in it gets the error and none of its rows exist.
//!
//! The writer is the one serial step on the audited path, and its time goes in round trips,
//! so a group costs a fixed few whatever it carries: the opening (transaction, lock and the
//! chain's tip), the new requests, the finishes with the audit rows and the sandbox's
//! states, and the commit.

use std::time::Duration;

use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use sqlx::{Either, Executor, Row};

use super::batch::{self, AuditWork, Done};
use super::common::{LAST_AUDIT, audit_cols};
use super::pg_requests::{self, finish_requests_sql};
use super::*;

/// Key of the transaction-scoped advisory lock that serialises audit appends across replicas
/// (ASCII "erlmcpau").
const AUDIT_LOCK: i64 = 0x65726c6d_63706175;

/// Most appends one transaction carries.
pub(super) const AUDIT_BATCH: usize = 256;

/// Longest any statement of a group may run, waits for locks included (the default;
/// `bot.database_timeout` sets it): far past what a working server needs. A group held up
/// longer (a lock another session keeps, the audit lock held by a replica that hangs) is
/// cancelled by the server and rolled back, and its callers get an error, rather than every
/// audited operation after it waiting for ever.
/// Every pool connection has the same bound for the session; the writer sets its own for
/// each group as well, so the audit path keeps it behind a pooler in transaction mode,
/// which does not carry a session's settings from one transaction to the next.
pub(super) const STATEMENT_TIMEOUT: Duration = erlmcp_commands::config::DEFAULT_DATABASE_TIMEOUT;

/// Opens a group's transaction, bounds its statements' time, takes the audit lock and reads
/// the chain's tip, in one round trip: a simple query may carry several statements when none
/// binds a parameter. Under READ COMMITTED each statement takes a fresh snapshot, so the tip
/// is read once the lock is held, after the last append of whichever replica held it before.
fn open_sql(statement_timeout: Duration) -> String {
    format!(
        "BEGIN; SET LOCAL statement_timeout = {}; SELECT pg_advisory_xact_lock({AUDIT_LOCK}); \
         {LAST_AUDIT}",
        millis(statement_timeout)
    )
}

/// Longest the store waits for any answer to a call or an audit group: the statement limit,
/// and as long again (at most 10 s more) for the answer to come back. The server cancels a
/// statement at the limit and answers at once, so silence past this means the server or the
/// network to it has stopped answering: a host that drops packets, or a server frozen with
/// its socket open, would otherwise keep the caller waiting on the kernel's retransmissions
/// for a quarter of an hour.
pub(super) fn answer_bound(statement_timeout: Duration) -> Duration {
    statement_timeout + statement_timeout.min(Duration::from_secs(10))
}

/// A call given up at [`answer_bound`]. A write in it may or may not have been committed.
pub(super) fn no_answer(within: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "PostgreSQL sent no answer within {}: the server or the network to it has stopped \
         answering, so any write in this call is not confirmed",
        seconds(within)
    ))
}

/// `d` as a person reads it in an error: `70s`, `0.6s`.
pub(super) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `d` as PostgreSQL's timeout settings take it (milliseconds); at least 1, since 0 turns
/// the bound off.
pub(super) fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// How many statements [`open_sql`] holds: the tip's row comes after the others' results.
const OPEN_STATEMENTS: usize = 4;

/// A group's last round of finishes, its audit rows and the sandbox states its finishes
/// carry, in one statement of fixed text (so prepared once per connection, whatever the
/// group's size), answering the ids of the requests the finishes moved. The audit rows'
/// chain does not depend on which finishes moved, and no finish names a request inserted in
/// the same group, so all three can go together, after the new requests. PostgreSQL runs
/// every data-modifying CTE whether or not its output is read. Any list may be empty.
const WRITE_GROUP: &str = concat!(
    "WITH finished AS (",
    finish_requests_sql!(),
    "), audit AS (INSERT INTO audit_log (",
    audit_cols!(),
    ") SELECT * FROM unnest($6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], \
         $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[])), \
     sandbox AS (INSERT INTO sandbox (environment, state_json, updated_at) \
         SELECT * FROM unnest($23::text[], $24::text[], $25::bigint[]) \
         ON CONFLICT (environment) DO UPDATE \
         SET state_json = excluded.state_json, updated_at = excluded.updated_at) \
     SELECT id FROM finished"
);

/// Work waiting for the audit writer.
pub(super) struct AuditJob {
    pub(super) work: AuditWork,
    pub(super) reply: tokio::sync::oneshot::Sender<StoreResult<Done>>,
}

/// Takes whatever is queued, up to [`AUDIT_BATCH`], and writes it as one group. Gives its
/// connection back once the pool is closing, since closing waits for every connection; work
/// that comes later finds the pool closed and is refused.
pub(super) async fn run(
    pool: PgPool,
    statement_timeout: Duration,
    mut rx: tokio::sync::mpsc::Receiver<AuditJob>,
) {
    let mut closed = std::pin::pin!(pool.close_event());
    let mut writer = Writer::new(pool.clone(), statement_timeout);
    let within = answer_bound(statement_timeout);
    let mut jobs = Vec::with_capacity(AUDIT_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut jobs, AUDIT_BATCH) => if n == 0 {
                return;
            },
            () = &mut closed, if writer.conn.is_some() => {
                writer.conn = None;
                continue;
            }
        }
        let (work, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.work, j.reply)).unzip();
        let written = match tokio::time::timeout(within, writer.write(work)).await {
            Ok(written) => written,
            Err(_) => {
                // The group's state is unknown, its COMMIT may have reached the server: the
                // connection goes, and each caller is told its write is not confirmed.
                writer.discard();
                Err(no_answer(within))
            }
        };
        match written {
            Ok(done) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(done));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The writer keeps one connection from group to group. Taking it from the pool each time
/// would cost two more round trips a group (the pool checks a connection when it hands it
/// out and again when it takes it back), on the path every audited operation waits on twice.
pub(super) struct Writer {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    /// [`open_sql`]'s text, made once.
    open: String,
}

impl Writer {
    pub(super) fn new(pool: PgPool, statement_timeout: Duration) -> Self {
        Writer {
            pool,
            conn: None,
            open: open_sql(statement_timeout),
        }
    }

    /// Writes `work` in one transaction, answering each work in order.
    pub(super) async fn write(&mut self, work: Vec<AuditWork>) -> StoreResult<Vec<Done>> {
        let (conn, tip) = self.open().await?;
        match write_group(conn, work, tip).await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Whatever the statement that failed, nothing of the group may stay: the
                // transaction is rolled back, or the connection goes and takes it with it.
                if conn.execute("ROLLBACK").await.is_err() {
                    self.discard();
                }
                Err(e)
            }
        }
    }

    /// Opens a group on the kept connection. One that died since the last group (the
    /// server restarted, something cut it while idle) fails here, before anything is
    /// written, so the opening is tried once more on a connection the pool has checked.
    /// An error the server answered (a lock held past the statement bound) is not tried
    /// again: the connection works, and another try would only wait as long again.
    async fn open(&mut self) -> StoreResult<(&mut PgConnection, Option<(i64, String)>)> {
        let mut last = None;
        for _ in 0..2 {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self.conn.insert(self.pool.acquire().await.map_err(db_err)?),
            };
            match open(conn, &self.open).await {
                Ok(tip) => {
                    let conn = self.conn.as_deref_mut().ok_or_else(lost)?;
                    return Ok((conn, tip));
                }
                Err(Opening::Refused(e)) => {
                    self.discard();
                    return Err(e);
                }
                Err(Opening::Failed(e)) => {
                    tracing::debug!(error = %e, "the audit writer's connection failed; taking another");
                    self.discard();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(lost))
    }

    /// Closes the kept connection rather than giving it back: its state is not known.
    fn discard(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

fn lost() -> StoreError {
    StoreError::Database("internal error: the audit writer lost its connection".into())
}

/// Why a group's opening failed.
enum Opening {
    /// The server answered with an error, and keeps the session.
    Refused(StoreError),
    /// The connection failed, or answered what the opening does not expect.
    Failed(StoreError),
}

/// Sends [`open_sql`]'s text, answering the chain's tip.
async fn open(conn: &mut PgConnection, sql: &str) -> Result<Option<(i64, String)>, Opening> {
    let alive = |d: &dyn sqlx::error::DatabaseError| d.code().is_some_and(|c| !session_ended(&c));
    let db_err = |e: sqlx::Error| match &e {
        sqlx::Error::Database(d) if alive(d.as_ref()) => Opening::Refused(db_err(e)),
        _ => Opening::Failed(db_err(e)),
    };
    let mut results = 0;
    let mut tip = None;
    let mut stream = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).fetch_many(&mut *conn);
    while let Some(item) = stream.try_next().await.map_err(db_err)? {
        match item {
            Either::Left(_) => results += 1,
            Either::Right(row) if results == OPEN_STATEMENTS - 1 => {
                tip = Some((
                    row.try_get::<i64, _>(0).map_err(db_err)?,
                    row.try_get::<String, _>(1).map_err(db_err)?,
                ));
            }
            Either::Right(_) => {}
        }
    }
    if results != OPEN_STATEMENTS {
        return Err(Opening::Failed(StoreError::Database(format!(
            "internal error: opening the audit group answered {results} results, not {OPEN_STATEMENTS}"
        ))));
    }
    Ok(tip)
}

/// Everything of a group after its opening, through the commit.
async fn write_group(
    conn: &mut PgConnection,
    work: Vec<AuditWork>,
    tip: Option<(i64, String)>,
) -> StoreResult<Vec<Done>> {
    let (finishes, news) = batch::request_writes(&work);
    let (mut moved, last_round) = pg_requests::finish_early_rounds(conn, &finishes).await?;
    let inserted = pg_requests::insert_requests(conn, &news).await?;
    let q = pg_requests::bind_finishes(sqlx::query_scalar(WRITE_GROUP), &finishes, &last_round);
    let finish_ids: Vec<i64> = finishes.iter().map(|f| f.id.0).collect();
    let mut chained = batch::chain(work, inserted, tip)?;
    let states = batch::newest_states(std::mem::take(&mut chained.states));
    let ids = bind_rows(q, &chained.rows, &states)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    pg_requests::note_moved(&mut moved, &finish_ids, &last_round, &ids);
    let done = chained.done(moved)?;
    conn.execute("COMMIT").await.map_err(db_err)?;
    Ok(done)
}

/// Binds `rows` and `states` to `$6` to `$25` of [`WRITE_GROUP`], column by column.
fn bind_rows<'q>(
    q: pg_requests::Ids<'q>,
    rows: &'q [AuditRow],
    states: &'q [SandboxRow],
) -> pg_requests::Ids<'q> {
    let text = |f: fn(&AuditRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    q.bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| to_ms(r.entry.at)).collect::<Vec<_>>())
        .bind(text(|r| &r.entry.action))
        .bind(text(|r| &r.entry.who.platform))
        .bind(text(|r| &r.entry.who.user_id))
        .bind(text(|r| &r.entry.who.display_name))
        .bind(text(|r| &r.entry.channel))
        .bind(text(|r| &r.entry.operation))
        .bind(text(|r| &r.entry.arguments))
        .bind(
            rows.iter()
                .map(|r| r.entry.environment.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.entry.request_id.map(|id| id.0))
                .collect::<Vec<_>>(),
        )
        .bind(text(|r| &r.entry.decision))
        .bind(text(|r| &r.entry.reason))
        .bind(text(|r| &r.entry.votes))
        .bind(text(|r| &r.entry.outcome))
        .bind(text(|r| &r.prev_hash))
        .bind(text(|r| &r.hash))
        .bind(
            states
                .iter()
                .map(|s| s.environment.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            states
                .iter()
                .map(|s| s.state_json.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            states
                .iter()
                .map(|s| to_ms(s.updated_at))
                .collect::<Vec<_>>(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_holds_the_statements_it_counts() {
        let open = open_sql(Duration::from_secs(60));
        assert_eq!(open.split("; ").count(), OPEN_STATEMENTS);
        assert!(open.contains(&AUDIT_LOCK.to_string()));
        assert!(open.contains("statement_timeout = 60000;"), "{open}");
    }
}
