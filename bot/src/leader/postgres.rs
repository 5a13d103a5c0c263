//! Leader election on PostgreSQL: a session-level advisory lock held on a connection of its
//! own. The database releases the lock when that session ends, so a leader that dies hands
//! over as soon as its connection drops; a leader that loses its connection stops leading at
//! once, since it can no longer know whether it holds the lock.
//!
//! The connection must reach PostgreSQL itself, not a pooler in transaction mode: a session
//! lock through such a pooler belongs to whichever client shares the server connection.

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};

use super::Candidate;
use crate::store::scrub;

/// Key of the leader lock (ASCII "erlmcpld"), apart from the audit and migration locks.
pub const LEADER_LOCK: i64 = 0x65726c6d_63706c64;

/// How long one statement or connection attempt may take before the round counts as failed.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AdvisoryLock {
    options: PgConnectOptions,
    url: String,
    key: i64,
    period: Duration,
    conn: Option<PgConnection>,
    holding: bool,
}

impl AdvisoryLock {
    /// `period` is how often the lock is tried (follower) or the connection checked (leader).
    pub fn new(database_url: &str, key: i64, period: Duration) -> anyhow::Result<AdvisoryLock> {
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|e| anyhow::anyhow!(scrub(&e.to_string(), database_url)))?
            // The server notices a vanished leader (a node lost, not a process killed)
            // within about 11 s instead of the kernel's two hours, and frees the lock.
            .options([
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
            ])
            .application_name("erlmcp-bot leader election");
        Ok(AdvisoryLock {
            options,
            url: database_url.to_string(),
            key,
            period: period.max(Duration::from_millis(500)),
            conn: None,
            holding: false,
        })
    }

    fn lost(&mut self, what: &str, e: impl std::fmt::Display) -> String {
        // Dropped, not closed: a broken session cannot be asked to say goodbye, and the
        // server ends it (and frees the lock) when the socket goes.
        self.conn = None;
        let was = std::mem::take(&mut self.holding);
        let e = scrub(&e.to_string(), &self.url);
        if was {
            format!("lost the leader lock's connection ({what}): {e}")
        } else {
            format!("{what}: {e}")
        }
    }
}

async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", STATEMENT_TIMEOUT.as_secs())),
    }
}

#[async_trait]
impl Candidate for AdvisoryLock {
    async fn round(&mut self) -> Result<bool, String> {
        if self.conn.is_none() {
            match timed(self.options.connect()).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Err(self.lost("cannot connect", e)),
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        if self.holding {
            // Held by this session for as long as the session lives: only the session
            // needs checking.
            return match timed(sqlx::query("SELECT 1").execute(&mut *conn)).await {
                Ok(_) => Ok(true),
                Err(e) => Err(self.lost("check", e)),
            };
        }
        let got = timed(
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn),
        )
        .await;
        match got {
            Ok(got) => {
                self.holding = got;
                Ok(got)
            }
            Err(e) => Err(self.lost("try lock", e)),
        }
    }

    async fn resign(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if std::mem::take(&mut self.holding) {
            let _ = timed(
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(self.key)
                    .execute(&mut conn),
            )
            .await;
        }
        let _ = tokio::time::timeout(STATEMENT_TIMEOUT, conn.close()).await;
    }

    fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdb;

    fn lock(url: &str) -> AdvisoryLock {
        // Advisory locks are per database, and each test has a database of its own.
        AdvisoryLock::new(url, LEADER_LOCK, Duration::from_millis(50)).unwrap()
    }

    #[tokio::test]
    async fn one_session_leads_and_hands_over_when_it_resigns_or_its_connection_dies() {
        let Some(url) = testdb::fresh_postgres_url("leader_advisory_lock").await else {
            return;
        };
        let (mut a, mut b) = (lock(&url), lock(&url));
        assert_eq!(a.round().await, Ok(true));
        assert_eq!(b.round().await, Ok(false));
        assert_eq!(a.round().await, Ok(true), "a leader keeps leading");
        assert_eq!(b.round().await, Ok(false));

        a.resign().await;
        assert_eq!(b.round().await, Ok(true), "released at once");
        assert_eq!(a.round().await, Ok(false));

        // The leader's session is killed from outside (as when its process or node dies):
        // it stops leading on its next round, and the lock is free for the other.
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(b.conn.as_mut().unwrap())
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
        let lost = b.round().await.unwrap_err();
        assert!(lost.contains("lost the leader lock's connection"), "{lost}");
        assert!(!lost.contains("postgres://"), "no URL in errors: {lost}");
        // The server frees the lock once the terminated backend has exited, a moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while a.round().await != Ok(true) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was never freed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.round().await, Ok(false), "reconnects as a follower");
        a.resign().await;
        b.resign().await;
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_failed_round_without_the_password() {
        let mut c = lock("postgres://bot:s3cret@127.0.0.1:1/none");
        let e = c.round().await.unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
