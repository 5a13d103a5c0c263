//! The request writes of one audit group on PostgreSQL: every new request of the group in
//! one INSERT and every round of finishes in one UPDATE (the last round inside the writer's
//! audit-row statement), whatever the group's size. The audit writer is the one serial step
//! on the audited path, and its time goes in round trips.

use sqlx::postgres::{PgArguments, PgConnection, Postgres};

use super::batch;
use super::common::{RequestRaw, convert, request_cols};
use super::*;

/// The multi-row form of `INSERT_REQUEST`. The ids are drawn from the column's sequence
/// beside each input row's ordinal (a CTE with a volatile function is evaluated once), so
/// the rows come back in input order without relying on the order of RETURNING.
const INSERT_REQUESTS: &str = concat!(
    "WITH input AS (SELECT nextval(pg_get_serial_sequence('requests', 'id')) AS id, i.* \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::boolean[], $14::text[]) \
         WITH ORDINALITY AS i(created_at, expires_at, requester_platform, requester_id, \
             requester_name, channel, command_text, operation, environment, command_json, \
             approvals_json, state, break_glass, owner, ord)), \
     inserted AS (INSERT INTO requests (id, created_at, expires_at, updated_at, \
             requester_platform, requester_id, requester_name, channel, command_text, \
             operation, environment, command_json, approvals_json, state, break_glass, owner) \
         OVERRIDING SYSTEM VALUE \
         SELECT id, created_at, expires_at, created_at, requester_platform, requester_id, \
             requester_name, channel, command_text, operation, environment, command_json, \
             approvals_json, state, break_glass, owner FROM input \
         RETURNING ",
    request_cols!(),
    ") SELECT inserted.* FROM inserted JOIN input USING (id) ORDER BY input.ord"
);

/// A request's outcome, for many requests at once, as a compare-and-set: a request that is
/// no longer executing is left alone, and its id is missing from the rows returned. One
/// UPDATE changes a row at most once, so a round's ids must be distinct (see
/// [`finish_early_rounds`]). Its parameters are `$1` to `$5`, so it may open a larger statement.
macro_rules! finish_requests_sql {
    () => {
        "UPDATE requests AS r SET state = f.state, outcome = f.outcome, \
             updated_at = f.at, last_progress = COALESCE(f.progress, r.last_progress) \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
             AS f(id, state, outcome, at, progress) \
         WHERE r.id = f.id AND r.state = 'executing' \
         RETURNING r.id"
    };
}
pub(super) use finish_requests_sql;

/// Inserts `news`, answering their rows in the same order.
pub(super) async fn insert_requests(
    conn: &mut PgConnection,
    news: &[&NewRequest],
) -> StoreResult<Vec<RequestRow>> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewRequest) -> String| news.iter().map(|n| f(n)).collect::<Vec<_>>();
    let raw: Vec<RequestRaw> = sqlx::query_as(INSERT_REQUESTS)
        .bind(news.iter().map(|n| to_ms(n.created_at)).collect::<Vec<_>>())
        .bind(news.iter().map(|n| to_ms(n.expires_at)).collect::<Vec<_>>())
        .bind(column(|n| n.requester.platform.clone()))
        .bind(column(|n| n.requester.user_id.clone()))
        .bind(column(|n| n.requester.display_name.clone()))
        .bind(column(|n| n.channel.clone()))
        .bind(column(|n| n.command_text.clone()))
        .bind(column(|n| n.operation.clone()))
        .bind(
            news.iter()
                .map(|n| n.environment.clone())
                .collect::<Vec<_>>(),
        )
        .bind(column(|n| n.command_json.clone()))
        .bind(column(|n| n.approvals_json.clone()))
        .bind(column(|n| n.state.as_str().to_string()))
        .bind(news.iter().map(|n| n.break_glass).collect::<Vec<_>>())
        .bind(news.iter().map(|n| n.owner.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    if raw.len() != news.len() {
        return Err(StoreError::Database(format!(
            "internal error: {} requests inserted, {} asked",
            raw.len(),
            news.len()
        )));
    }
    convert(raw)
}

/// [`finish_requests_sql`] on its own.
const FINISH_REQUESTS: &str = finish_requests_sql!();

/// A statement that returns the ids of the requests it moved.
pub(super) type Ids<'q> = sqlx::query::QueryScalar<'q, Postgres, i64, PgArguments>;

/// Applies every round of `finishes` but the last (see [`batch::finish_rounds`]), each in
/// its own statement, answering for each finish whether it moved its request so far, and
/// the last round's finishes: the caller binds them with [`bind_finishes`] into the
/// statement that opens with [`finish_requests_sql`], and notes its answer with
/// [`note_moved`]. A group rarely names a request twice, so there is rarely a round before
/// the last.
pub(super) async fn finish_early_rounds(
    conn: &mut PgConnection,
    finishes: &[&FinishRequest],
) -> StoreResult<(Vec<bool>, Vec<usize>)> {
    let mut moved = vec![false; finishes.len()];
    let mut rounds = batch::finish_rounds(finishes);
    let last = rounds.pop().unwrap_or_default();
    let finish_ids: Vec<i64> = finishes.iter().map(|f| f.id.0).collect();
    for these in rounds {
        let ids = bind_finishes(sqlx::query_scalar(FINISH_REQUESTS), finishes, &these)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        note_moved(&mut moved, &finish_ids, &these, &ids);
    }
    Ok((moved, last))
}

/// Binds `$1` to `$5` of [`finish_requests_sql`] to the finishes at `these`.
pub(super) fn bind_finishes<'q>(
    q: Ids<'q>,
    finishes: &[&FinishRequest],
    these: &[usize],
) -> Ids<'q> {
    let pick = |f: fn(&FinishRequest) -> Option<String>| {
        these.iter().map(|&i| f(finishes[i])).collect::<Vec<_>>()
    };
    q.bind(these.iter().map(|&i| finishes[i].id.0).collect::<Vec<_>>())
        .bind(pick(|f| Some(f.to.as_str().to_string())))
        .bind(pick(|f| Some(f.outcome.clone())))
        .bind(
            these
                .iter()
                .map(|&i| to_ms(finishes[i].at))
                .collect::<Vec<_>>(),
        )
        .bind(pick(|f| f.progress.clone()))
}

/// Records which of the finishes at `these` moved their request: those whose id came back.
/// `finish_ids` holds each finish's request id.
pub(super) fn note_moved(moved: &mut [bool], finish_ids: &[i64], these: &[usize], ids: &[i64]) {
    for &i in these {
        moved[i] = ids.contains(&finish_ids[i]);
    }
}
