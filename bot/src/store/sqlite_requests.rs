//! The request writes of one audited run on SQLite: its new requests in one INSERT and its
//! finishes in one UPDATE, whatever the run's size. Each statement is a round trip to the
//! connection's thread, and the writer is the one serial step on the audited path.

use sqlx::sqlite::{Sqlite, SqliteConnection};

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

/// Inserts `news`, answering their rows in the same order.
pub(super) async fn insert_requests(
    conn: &mut SqliteConnection,
    news: &[&NewRequest],
) -> StoreResult<Vec<RequestRow>> {
    let sql = common::INSERT_REQUEST;
    let values = sql.find(" VALUES").unwrap_or(sql.len());
    let returning = sql.find(" RETURNING").unwrap_or(sql.len());
    let mut rows = Vec::with_capacity(news.len());
    for chunk in news.chunks(REQUESTS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(&sql[..values]);
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
        let raw: Vec<RequestRaw> = q
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        if raw.len() != chunk.len() {
            return Err(StoreError::Database(format!(
                "internal error: {} requests inserted, {} asked",
                raw.len(),
                chunk.len()
            )));
        }
        let mut inserted: Vec<RequestRow> = convert(raw)?;
        // RETURNING comes in no promised order; the ids do: each new row takes the next id,
        // in the order of VALUES.
        inserted.sort_by_key(|r| r.id.0);
        rows.extend(inserted);
    }
    Ok(rows)
}

/// Applies `finishes` as if one after another (see [`batch::finish_rounds`]), answering for
/// each whether it moved its request.
pub(super) async fn finish_requests(
    conn: &mut SqliteConnection,
    finishes: &[&FinishRequest],
) -> StoreResult<Vec<bool>> {
    let mut moved = vec![false; finishes.len()];
    for these in batch::finish_rounds(finishes) {
        for chunk in these.chunks(REQUESTS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(FINISH_HEAD);
            q.push_values(chunk, |mut b, &i| {
                let f = finishes[i];
                b.push_bind(f.id.0)
                    .push_bind(f.to.as_str())
                    .push_bind(f.outcome.clone())
                    .push_bind(to_ms(f.at))
                    .push_bind(f.progress.clone());
            });
            q.push(FINISH_TAIL);
            let ids: Vec<i64> = q
                .build_query_scalar()
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for &i in chunk {
                moved[i] = ids.contains(&finishes[i].id.0);
            }
        }
    }
    Ok(moved)
}
