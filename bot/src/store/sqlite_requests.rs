//! The statements of one audited run on SQLite, sent to the connection's thread in as few
//! calls as the chain allows: each call is a round trip to that thread, and the writer is the
//! one serial step on the audited path.
//!
//! A run's request writes go in one call (its finishes in one UPDATE, its new requests in one
//! INSERT, whatever the run's size); its audit rows and sandbox states in a second, which can
//! also carry the COMMIT. Several statements with bound parameters in one query is sqlx's
//! SQLite behaviour (each statement takes the next parameters in turn), which sqlx marks as
//! deprecated for a later release; `several_statements_share_one_call` pins it.

use futures::TryStreamExt;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};
use sqlx::{Either, Executor, FromRow, QueryBuilder};

use super::batch;
use super::common::{self, RequestRaw, convert};
use super::*;

/// A request binds 15 parameters; SQLite takes at most 32,766 a statement.
const REQUESTS_PER_STATEMENT: usize = 1000;

/// A request's outcome, for many requests at once, as a compare-and-set: a request that is
/// no longer executing is left alone, and its id is missing from the ids returned. Between
/// the two parts go the VALUES rows: id, state, outcome, at, progress.
const FINISH_HEAD: &str = "UPDATE requests SET state = f.state, outcome = f.outcome, \
         updated_at = f.at, last_progress = COALESCE(f.progress, last_progress) \
     FROM (SELECT column1 AS id, column2 AS state, column3 AS outcome, column4 AS at, \
         column5 AS progress FROM (";
const FINISH_TAIL: &str = ")) AS f WHERE requests.id = f.id AND requests.state = 'executing' \
     RETURNING requests.id";

/// Statements joined into one query, sent to the connection's thread in one call.
pub(super) struct Call {
    q: QueryBuilder<Sqlite>,
    statements: usize,
}

impl Call {
    pub(super) fn new() -> Call {
        Call {
            q: QueryBuilder::new(""),
            statements: 0,
        }
    }

    /// Appends one statement with no parameters.
    pub(super) fn push(&mut self, sql: &str) {
        self.statement();
        self.q.push(sql);
    }

    /// Starts the next statement, for its caller to write.
    fn statement(&mut self) -> &mut QueryBuilder<Sqlite> {
        if self.statements > 0 {
            self.q.push("; ");
        }
        self.statements += 1;
        &mut self.q
    }

    /// Sends the statements in one call and answers each one's rows, in order. Nothing is
    /// sent when there is none. On an error the statements after the failed one did not run.
    pub(super) async fn send(mut self, conn: &mut SqliteConnection) -> StoreResult<Statements> {
        let mut answers = Vec::with_capacity(self.statements);
        if self.statements == 0 {
            return Ok(Statements(answers.into_iter()));
        }
        let mut rows = Vec::new();
        let mut stream = conn.fetch_many(self.q.build());
        while let Some(step) = stream.try_next().await.map_err(db_err)? {
            match step {
                Either::Left(_) => answers.push(std::mem::take(&mut rows)),
                Either::Right(row) => rows.push(row),
            }
        }
        if answers.len() != self.statements {
            return Err(StoreError::Database(format!(
                "internal error: {} statements sent, {} answered",
                self.statements,
                answers.len()
            )));
        }
        Ok(Statements(answers.into_iter()))
    }
}

/// The rows of each statement sent, in order.
pub(super) struct Statements(std::vec::IntoIter<Vec<SqliteRow>>);

impl Statements {
    pub(super) fn next(&mut self) -> StoreResult<Vec<SqliteRow>> {
        self.0.next().ok_or_else(|| {
            StoreError::Database("internal error: a statement's answer is missing".into())
        })
    }
}

/// Appends the read of the audit chain's newest row; [`tip`] reads its answer.
pub(super) fn push_tip(call: &mut Call) {
    call.push(common::LAST_AUDIT);
}

/// The chain's newest row, `(seq, hash)`, from the answer to [`push_tip`]'s read.
pub(super) fn tip(answers: &mut Statements) -> StoreResult<Option<(i64, String)>> {
    answers.next()?.first().map(tip_of).transpose()
}

fn tip_of(row: &SqliteRow) -> StoreResult<(i64, String)> {
    use sqlx::Row;
    Ok((
        row.try_get("seq").map_err(db_err)?,
        row.try_get("hash").map_err(db_err)?,
    ))
}

/// The request writes of a run, as pushed: which finishes and how many new requests each
/// statement carries.
pub(super) struct RequestStatements {
    finishes: Vec<Vec<usize>>,
    inserts: Vec<usize>,
}

/// Appends `finishes` and the inserts of `news`. The finishes are applied as if one after
/// another (see [`batch::finish_rounds`]).
pub(super) fn push_request_writes(
    call: &mut Call,
    finishes: &[&FinishRequest],
    news: &[&NewRequest],
) -> RequestStatements {
    let mut pushed = RequestStatements {
        finishes: Vec::new(),
        inserts: Vec::new(),
    };
    for these in batch::finish_rounds(finishes) {
        for chunk in these.chunks(REQUESTS_PER_STATEMENT) {
            let q = call.statement();
            q.push(FINISH_HEAD);
            q.push_values(chunk, |mut b, &i| {
                let f = finishes[i];
                b.push_bind(f.id.0)
                    .push_bind(f.to.as_str())
                    .push_bind(f.outcome.clone())
                    .push_bind(to_ms(f.at))
                    .push_bind(f.progress.clone());
            });
            q.push(FINISH_TAIL);
            pushed.finishes.push(chunk.to_vec());
        }
    }
    let sql = common::INSERT_REQUEST;
    let values = sql.find(" VALUES").unwrap_or(sql.len());
    let returning = sql.find(" RETURNING").unwrap_or(sql.len());
    for chunk in news.chunks(REQUESTS_PER_STATEMENT) {
        let q = call.statement();
        q.push(&sql[..values]);
        q.push_values(chunk, |mut b, n| {
            b.push_bind(to_ms(n.created_at))
                .push_bind(to_ms(n.expires_at))
                .push_bind(to_ms(n.created_at))
                .push_bind(n.requester.platform.clone())
                .push_bind(n.requester.user_id.clone())
                .push_bind(n.requester.display_name.clone())
                .push_bind(n.channel.clone())
                .push_bind(n.command_text.clone())
                .push_bind(n.operation.clone())
                .push_bind(n.environment.clone())
                .push_bind(n.command_json.clone())
                .push_bind(n.approvals_json.clone())
                .push_bind(n.state.as_str())
                .push_bind(n.break_glass)
                .push_bind(n.owner.clone());
        });
        q.push(&sql[returning..]);
        pushed.inserts.push(chunk.len());
    }
    pushed
}

impl RequestStatements {
    /// For each finish (in the order given) whether it moved its request, and the new
    /// requests' rows in the order of their inserts.
    pub(super) fn answers(
        self,
        finishes: &[&FinishRequest],
        answers: &mut Statements,
    ) -> StoreResult<(Vec<bool>, Vec<RequestRow>)> {
        let mut moved = vec![false; finishes.len()];
        for chunk in self.finishes {
            let ids = answers
                .next()?
                .iter()
                .map(|r| sqlx::Row::try_get::<i64, _>(r, 0))
                .collect::<Result<Vec<i64>, _>>()
                .map_err(db_err)?;
            for i in chunk {
                moved[i] = ids.contains(&finishes[i].id.0);
            }
        }
        let mut rows = Vec::new();
        for asked in self.inserts {
            let raw = answers
                .next()?
                .iter()
                .map(RequestRaw::from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            if raw.len() != asked {
                return Err(StoreError::Database(format!(
                    "internal error: {} requests inserted, {asked} asked",
                    raw.len(),
                )));
            }
            let mut inserted: Vec<RequestRow> = convert(raw)?;
            // RETURNING comes in no promised order; the ids do: each new row takes the next
            // id, in the order of VALUES.
            inserted.sort_by_key(|r| r.id.0);
            rows.extend(inserted);
        }
        Ok((moved, rows))
    }
}

/// At most this many rows in one multi-row statement: an audit row binds 17 parameters, and
/// SQLite takes at most 32,766 a statement.
const ROWS_PER_INSERT: usize = 1000;

/// Appends the inserts of a run's audit rows and the upserts of its sandbox states.
pub(super) fn push_chain_writes(call: &mut Call, rows: &[AuditRow], states: &[SandboxRow]) {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        push_audit_rows(call.statement(), chunk);
    }
    for chunk in states.chunks(ROWS_PER_INSERT) {
        push_sandbox_states(call.statement(), chunk);
    }
}

/// One multi-row INSERT of audit rows.
fn push_audit_rows(q: &mut QueryBuilder<Sqlite>, rows: &[AuditRow]) {
    let sql = common::INSERT_AUDIT;
    q.push(&sql[..sql.find(" VALUES").unwrap_or(sql.len())]);
    q.push_values(rows, |mut b, row| {
        let e = &row.entry;
        b.push_bind(row.seq)
            .push_bind(to_ms(e.at))
            .push_bind(e.action.clone())
            .push_bind(e.who.platform.clone())
            .push_bind(e.who.user_id.clone())
            .push_bind(e.who.display_name.clone())
            .push_bind(e.channel.clone())
            .push_bind(e.operation.clone())
            .push_bind(e.arguments.clone())
            .push_bind(e.environment.clone())
            .push_bind(e.request_id.map(|r| r.0))
            .push_bind(e.decision.clone())
            .push_bind(e.reason.clone())
            .push_bind(e.votes.clone())
            .push_bind(e.outcome.clone())
            .push_bind(row.prev_hash.clone())
            .push_bind(row.hash.clone());
    });
}

/// One multi-row upsert of sandbox states (distinct environments).
fn push_sandbox_states(q: &mut QueryBuilder<Sqlite>, states: &[SandboxRow]) {
    let sql = common::SANDBOX_PUT;
    q.push(&sql[..sql.find(" VALUES").unwrap_or(sql.len())]);
    q.push_values(states, |mut b, s| {
        b.push_bind(s.environment.clone())
            .push_bind(s.state_json.clone())
            .push_bind(to_ms(s.updated_at));
    });
    q.push(&sql[sql.find(" ON CONFLICT").unwrap_or(sql.len())..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Row};

    async fn memory() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (x INTEGER NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    fn ints(rows: Vec<SqliteRow>) -> Vec<i64> {
        let mut xs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        xs.sort();
        xs
    }

    /// The writer's two calls per run rest on this: each statement of one query takes the
    /// next bound parameters in turn, and each statement's rows come back apart.
    #[tokio::test]
    async fn several_statements_share_one_call() {
        let mut conn = memory().await;
        let mut call = Call::new();
        call.push("BEGIN IMMEDIATE");
        let q = call.statement();
        q.push("INSERT INTO t (x) VALUES (")
            .push_bind(1i64)
            .push(") RETURNING x");
        let q = call.statement();
        q.push("INSERT INTO t (x) VALUES (")
            .push_bind(2i64)
            .push("), (")
            .push_bind(3i64)
            .push(") RETURNING x");
        call.push("SELECT count(*) FROM t");
        call.push("COMMIT");
        let mut answers = call.send(&mut conn).await.unwrap();
        assert!(answers.next().unwrap().is_empty());
        assert_eq!(ints(answers.next().unwrap()), vec![1]);
        assert_eq!(ints(answers.next().unwrap()), vec![2, 3]);
        assert_eq!(ints(answers.next().unwrap()), vec![3]);
        assert!(answers.next().unwrap().is_empty());
        assert!(answers.next().is_err(), "five statements, five answers");
    }

    /// A failed statement stops the call: what follows it never runs, and the caller
    /// decides what becomes of what ran before (the writer rolls it back).
    #[tokio::test]
    async fn a_failed_statement_ends_the_call() {
        let mut conn = memory().await;
        let mut call = Call::new();
        call.push("INSERT INTO t (x) VALUES (10)");
        call.push("INSERT INTO t (x) VALUES (NULL)");
        call.push("INSERT INTO t (x) VALUES (11)");
        let err = call.send(&mut conn).await.err().expect("the NULL fails");
        assert!(err.to_string().contains("NOT NULL"), "{err}");
        let xs: Vec<i64> = sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(xs, vec![10]);
    }

    #[tokio::test]
    async fn nothing_to_send_is_no_call() {
        let mut conn = memory().await;
        let mut answers = Call::new().send(&mut conn).await.unwrap();
        assert!(answers.next().is_err());
    }
}
