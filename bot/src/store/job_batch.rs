//! A chunk of claimed status updates as one unit: its incidents and their events read in two
//! queries, and its events and job completions written in one transaction. With thousands of
//! updates due at once, statements per update — not the work in each — are what a pass
//! costs.
//!
//! The two backends differ in how they take a list: SQLite reads a JSON array with
//! `json_each`, PostgreSQL takes arrays. Either way each kind of row is one statement, so a
//! chunk costs a fixed number of statements whatever its size.

use std::collections::HashSet;

use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool};

use super::common::{IncidentEventRaw, IncidentRaw, convert, event_cols, incident_cols};
use super::*;

/// An incident event to append, its seq taken as the next of its incident's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncidentEvent {
    pub incident: IncidentId,
    pub at: Timestamp,
    pub kind: IncidentEventKind,
    pub who: Option<Who>,
    pub text: String,
}

/// A claimed job's end: rescheduled at `next_due` (deleted when `None`), with the event it
/// produced, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDone {
    pub id: i64,
    pub next_due: Option<Timestamp>,
    pub event: Option<NewIncidentEvent>,
}

/// Retries of a chunk's transaction that lost the race for an incident's next seq (a
/// command appended to the same incident on another replica).
const EVENT_SEQ_RETRIES: usize = 20;

const SQLITE_INCIDENTS_BY_ID: &str = concat!(
    "SELECT ",
    incident_cols!(),
    " FROM incidents WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
);
const SQLITE_EVENTS_OF_INCIDENTS: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM incident_events WHERE incident_id IN (SELECT value FROM json_each($1)) \
     ORDER BY incident_id, seq"
);
const PG_INCIDENTS_BY_ID: &str = concat!(
    "SELECT ",
    incident_cols!(),
    " FROM incidents WHERE id = ANY($1) ORDER BY id"
);
const PG_EVENTS_OF_INCIDENTS: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM incident_events WHERE incident_id = ANY($1) ORDER BY incident_id, seq"
);
/// `$1` is a JSON array of `[id, due_at]`; only rows still leased to `$2` move.
const SQLITE_RESCHEDULE_JOBS: &str = "UPDATE scheduled_jobs SET due_at = u.due_at, \
     lease_owner = NULL, lease_until = NULL \
     FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS due_at \
     FROM json_each($1)) AS u \
     WHERE scheduled_jobs.id = u.id AND scheduled_jobs.lease_owner = $2 \
     RETURNING scheduled_jobs.id";
const SQLITE_FINISH_JOBS: &str = "DELETE FROM scheduled_jobs \
     WHERE id IN (SELECT value FROM json_each($1)) AND lease_owner = $2 RETURNING id";
/// `$1` is a JSON array of `[incident_id, at, kind, who_platform, who_id, who_name, text]`.
const SQLITE_APPEND_EVENTS: &str = concat!(
    "INSERT INTO incident_events (",
    event_cols!(),
    ") SELECT u.incident_id, COALESCE((SELECT MAX(e.seq) FROM incident_events e \
     WHERE e.incident_id = u.incident_id), 0) \
     + ROW_NUMBER() OVER (PARTITION BY u.incident_id ORDER BY u.ord), \
     u.at, u.kind, u.who_platform, u.who_id, u.who_name, u.text \
     FROM (SELECT CAST(key AS INTEGER) AS ord, json_extract(value, '$[0]') AS incident_id, \
     json_extract(value, '$[1]') AS at, json_extract(value, '$[2]') AS kind, \
     json_extract(value, '$[3]') AS who_platform, json_extract(value, '$[4]') AS who_id, \
     json_extract(value, '$[5]') AS who_name, json_extract(value, '$[6]') AS text \
     FROM json_each($1)) AS u"
);
/// Only rows still leased to `$3` move: one whose lease ran out may be another replica's.
const PG_RESCHEDULE_JOBS: &str = "UPDATE scheduled_jobs AS j SET due_at = u.due_at, \
     lease_owner = NULL, lease_until = NULL \
     FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS u(id, due_at) \
     WHERE j.id = u.id AND j.lease_owner = $3 RETURNING j.id";
const PG_FINISH_JOBS: &str =
    "DELETE FROM scheduled_jobs WHERE id = ANY($1) AND lease_owner = $2 RETURNING id";
/// Several events of one incident in a chunk take consecutive seqs, in the order given.
const PG_APPEND_EVENTS: &str = concat!(
    "INSERT INTO incident_events (",
    event_cols!(),
    ") SELECT u.incident_id, COALESCE((SELECT MAX(e.seq) FROM incident_events e \
     WHERE e.incident_id = u.incident_id), 0) \
     + ROW_NUMBER() OVER (PARTITION BY u.incident_id ORDER BY u.ord), \
     u.at, u.kind, u.who_platform, u.who_id, u.who_name, u.text \
     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
     $6::TEXT[], $7::TEXT[]) WITH ORDINALITY \
     AS u(incident_id, at, kind, who_platform, who_id, who_name, text, ord)"
);

/// The rows `sql` reads for `ids`, bound as one JSON array (`json_each`).
async fn sqlite_by_ids<R, T>(
    pool: &SqlitePool,
    sql: &'static str,
    ids: &[IncidentId],
) -> StoreResult<Vec<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    T: TryFrom<R, Error = StoreError>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let raw: Vec<R> = sqlx::query_as::<Sqlite, R>(sql)
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    convert(raw)
}

/// The rows `sql` reads for `ids`, bound as one array (`= ANY`).
async fn pg_by_ids<R, T>(
    pool: &PgPool,
    sql: &'static str,
    ids: &[IncidentId],
) -> StoreResult<Vec<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    T: TryFrom<R, Error = StoreError>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let raw: Vec<R> = sqlx::query_as::<Postgres, R>(sql)
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    convert(raw)
}

pub(super) async fn sqlite_incidents_by_id(
    pool: &SqlitePool,
    ids: &[IncidentId],
) -> StoreResult<Vec<IncidentRow>> {
    sqlite_by_ids::<IncidentRaw, _>(pool, SQLITE_INCIDENTS_BY_ID, ids).await
}

pub(super) async fn sqlite_events_of_incidents(
    pool: &SqlitePool,
    ids: &[IncidentId],
) -> StoreResult<Vec<IncidentEventRow>> {
    sqlite_by_ids::<IncidentEventRaw, _>(pool, SQLITE_EVENTS_OF_INCIDENTS, ids).await
}

pub(super) async fn pg_incidents_by_id(
    pool: &PgPool,
    ids: &[IncidentId],
) -> StoreResult<Vec<IncidentRow>> {
    pg_by_ids::<IncidentRaw, _>(pool, PG_INCIDENTS_BY_ID, ids).await
}

pub(super) async fn pg_events_of_incidents(
    pool: &PgPool,
    ids: &[IncidentId],
) -> StoreResult<Vec<IncidentEventRow>> {
    pg_by_ids::<IncidentEventRaw, _>(pool, PG_EVENTS_OF_INCIDENTS, ids).await
}

/// Inside the SQLite writer's transaction: three statements for the whole chunk, as each
/// statement is a hand-over to the connection's thread and back.
pub(super) async fn sqlite_complete_jobs_with_events(
    conn: &mut sqlx::SqliteConnection,
    owner: &str,
    done: &[JobDone],
) -> StoreResult<Vec<bool>> {
    let again: Vec<serde_json::Value> = done
        .iter()
        .filter_map(|d| d.next_due.map(|t| serde_json::json!([d.id, to_ms(t)])))
        .collect();
    let stop: Vec<i64> = done
        .iter()
        .filter(|d| d.next_due.is_none())
        .map(|d| d.id)
        .collect();
    let mut held: HashSet<i64> = HashSet::with_capacity(done.len());
    if !again.is_empty() {
        let ids: Vec<i64> = sqlx::query_scalar::<Sqlite, i64>(SQLITE_RESCHEDULE_JOBS)
            .bind(serde_json::Value::from(again).to_string())
            .bind(owner)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        held.extend(ids);
    }
    if !stop.is_empty() {
        let ids: Vec<i64> = sqlx::query_scalar::<Sqlite, i64>(SQLITE_FINISH_JOBS)
            .bind(serde_json::Value::from(stop).to_string())
            .bind(owner)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        held.extend(ids);
    }
    let events: Vec<serde_json::Value> = done
        .iter()
        .filter(|d| held.contains(&d.id))
        .filter_map(|d| d.event.as_ref())
        .map(|e| {
            let who = e.who.as_ref();
            serde_json::json!([
                e.incident.0,
                to_ms(e.at),
                e.kind.as_str(),
                who.map(|w| &w.platform),
                who.map(|w| &w.user_id),
                who.map(|w| &w.display_name),
                e.text,
            ])
        })
        .collect();
    if !events.is_empty() {
        sqlx::query::<Sqlite>(SQLITE_APPEND_EVENTS)
            .bind(serde_json::Value::from(events).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(done.iter().map(|d| held.contains(&d.id)).collect())
}

pub(super) async fn pg_complete_jobs_with_events(
    pool: &PgPool,
    owner: &str,
    done: &[JobDone],
) -> StoreResult<Vec<bool>> {
    let mut attempt = 0;
    loop {
        match pg_try_complete(pool, owner, done).await {
            Err(sqlx::Error::Database(d))
                if d.is_unique_violation() && attempt < EVENT_SEQ_RETRIES =>
            {
                attempt += 1;
            }
            result => return result.map_err(db_err),
        }
    }
}

async fn pg_try_complete(
    pool: &PgPool,
    owner: &str,
    done: &[JobDone],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (again, due): (Vec<i64>, Vec<i64>) = done
        .iter()
        .filter_map(|d| d.next_due.map(|t| (d.id, to_ms(t))))
        .unzip();
    let stop: Vec<i64> = done
        .iter()
        .filter(|d| d.next_due.is_none())
        .map(|d| d.id)
        .collect();
    let mut held: HashSet<i64> = HashSet::with_capacity(done.len());
    if !again.is_empty() {
        let ids: Vec<i64> = sqlx::query_scalar(PG_RESCHEDULE_JOBS)
            .bind(again)
            .bind(due)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        held.extend(ids);
    }
    if !stop.is_empty() {
        let ids: Vec<i64> = sqlx::query_scalar(PG_FINISH_JOBS)
            .bind(stop)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        held.extend(ids);
    }
    let events: Vec<&NewIncidentEvent> = done
        .iter()
        .filter(|d| held.contains(&d.id))
        .filter_map(|d| d.event.as_ref())
        .collect();
    if !events.is_empty() {
        let who = |f: fn(&Who) -> &str| -> Vec<Option<String>> {
            events
                .iter()
                .map(|e| e.who.as_ref().map(|w| f(w).to_string()))
                .collect()
        };
        sqlx::query(PG_APPEND_EVENTS)
            .bind(events.iter().map(|e| e.incident.0).collect::<Vec<i64>>())
            .bind(events.iter().map(|e| to_ms(e.at)).collect::<Vec<i64>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.kind.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(who(|w| &w.platform))
            .bind(who(|w| &w.user_id))
            .bind(who(|w| &w.display_name))
            .bind(
                events
                    .iter()
                    .map(|e| e.text.as_str())
                    .collect::<Vec<&str>>(),
            )
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(done.iter().map(|d| held.contains(&d.id)).collect())
}
