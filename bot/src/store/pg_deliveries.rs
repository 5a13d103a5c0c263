//! Group commit for delivery keys on PostgreSQL. Every acknowledgement waits for its key to
//! be durable, and at a few thousand deliveries a second one commit per key is what the
//! ack's tail is made of. Keys that arrive together are written by one statement (one round
//! trip, one commit); each caller still gets its own answer, and only once its key is
//! committed.

use std::sync::Arc;

use erlmcp_adapters::chat::Platform;
use erlmcp_commands::Timestamp;
use sqlx::postgres::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::common::EVENT_MEMORY_MS;
use super::{StoreError, StoreResult, db_err, to_ms};

/// Most keys one statement carries (three arrays bound, so no parameter limit applies).
const BATCH: usize = 512;
/// Batches in flight at once: the next one goes out while the last one commits, so a key
/// that just missed a batch does not wait a whole commit for it.
const IN_FLIGHT: usize = 2;

/// The multi-row form of `REMEMBER_EVENT`: one row per key, in key order so that two
/// batches (from this process or another replica) lock shared rows in the same order and
/// never deadlock. A key past its hour counts as new, as in the one-row form; the rows
/// returned are the keys that were new.
const REMEMBER_EVENTS: &str = "INSERT INTO inbound_deliveries (platform, key, seen_at) \
     SELECT p, k, s FROM unnest($1::text[], $2::text[], $3::bigint[]) \
         WITH ORDINALITY AS d(p, k, s, n) ORDER BY n \
     ON CONFLICT (platform, key) DO UPDATE SET seen_at = excluded.seen_at \
     WHERE inbound_deliveries.seen_at < excluded.seen_at - $4 \
     RETURNING platform, key";

/// One key to write: platform, key, seen at (ms).
type Row<'a> = (&'static str, &'a str, i64);

struct Job {
    platform: Platform,
    key: String,
    at: Timestamp,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// The way in to the writer task; dropping it stops the task.
pub(super) struct Deliveries {
    tx: mpsc::Sender<Job>,
}

impl Deliveries {
    pub(super) fn start(pool: PgPool) -> Deliveries {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(writer(pool, rx));
        Deliveries { tx }
    }

    /// True the first time `key` is seen (or when it was last seen over an hour before
    /// `at`); answered once the key is committed.
    pub(super) async fn remember(
        &self,
        platform: Platform,
        key: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let (reply, rx) = oneshot::channel();
        let gone = || StoreError::Unavailable("the delivery key writer has stopped".into());
        self.tx
            .send(Job {
                platform,
                key: key.to_string(),
                at,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn writer(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = Vec::with_capacity(BATCH);
        if rx.recv_many(&mut jobs, BATCH).await == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, jobs).await;
            drop(permit);
        });
    }
}

/// Writes one batch and answers every job in it.
async fn write(pool: &PgPool, jobs: Vec<Job>) {
    let (unique, firsts) = plan(&jobs);
    let result = upsert(pool, &unique).await;
    for (i, job) in jobs.into_iter().enumerate() {
        let answer = match &result {
            // A key sent twice in one batch: the later one is a replay of the earlier.
            Ok(new) => Ok(firsts[i].is_some_and(|u| new[u])),
            Err(e) => Err(e.clone()),
        };
        let _ = job.reply.send(answer);
    }
}

/// One row per distinct (platform, key), sorted; and for each job, the row it owns (`None`
/// for a later copy of a key already in the batch). A statement may not upsert the same row
/// twice, so copies cannot go in it.
fn plan(jobs: &[Job]) -> (Vec<Row<'_>>, Vec<Option<usize>>) {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| {
        (jobs[a].platform.as_str(), jobs[a].key.as_str(), a).cmp(&(
            jobs[b].platform.as_str(),
            jobs[b].key.as_str(),
            b,
        ))
    });
    let mut unique: Vec<Row<'_>> = Vec::with_capacity(jobs.len());
    let mut firsts = vec![None; jobs.len()];
    for i in order {
        let j = &jobs[i];
        let same = unique
            .last()
            .is_some_and(|(p, k, _)| *p == j.platform.as_str() && *k == j.key);
        if !same {
            firsts[i] = Some(unique.len());
            unique.push((j.platform.as_str(), j.key.as_str(), to_ms(j.at)));
        }
    }
    (unique, firsts)
}

/// Upserts `rows` in one statement; for each row, whether it was new.
async fn upsert(pool: &PgPool, rows: &[Row<'_>]) -> StoreResult<Vec<bool>> {
    let platforms: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let seen: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let new: Vec<(String, String)> = sqlx::query_as(REMEMBER_EVENTS)
        .bind(&platforms)
        .bind(&keys)
        .bind(&seen)
        .bind(EVENT_MEMORY_MS)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    // `rows` are sorted by (platform, key); what comes back is in no promised order.
    let mut answer = vec![false; rows.len()];
    for (p, k) in &new {
        if let Ok(i) = rows.binary_search_by(|r| (r.0, r.1).cmp(&(p.as_str(), k.as_str()))) {
            answer[i] = true;
        }
    }
    Ok(answer)
}
