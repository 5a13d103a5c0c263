//! Fresh databases for tests, shared by the unit and end-to-end suites.
//!
//! PostgreSQL comes from `ERLMCP_TEST_POSTGRES_URL` (an admin URL: each test creates its own
//! database there, so tests run in parallel). Without it a test skips with a loud line on
//! stderr; with `ERLMCP_REQUIRE_POSTGRES=1`, or with a URL that does not work, it fails.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

use super::{PgStore, SqliteStore, redact_url, scrub};

pub const POSTGRES_URL_VAR: &str = "ERLMCP_TEST_POSTGRES_URL";
pub const REQUIRE_POSTGRES_VAR: &str = "ERLMCP_REQUIRE_POSTGRES";

/// Test databases older than this are left over from crashed or failed runs and are dropped.
const STALE_AFTER_SECS: u64 = 6 * 3600;
const DB_PREFIX: &str = "erlmcp_t_";

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}_{}_{}_{}",
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn postgres_required() -> bool {
    std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The URL of a new, empty PostgreSQL database, or `None` (after a loud skip line) when no
/// server is configured. Panics when PostgreSQL is required or configured but unusable.
pub async fn fresh_postgres_url(test_name: &str) -> Option<String> {
    let admin = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            assert!(
                !postgres_required(),
                "{test_name}: {REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set"
            );
            // Written to the stderr handle directly: the test harness captures `eprintln!`
            // of passing tests, and a skip must stay visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (no PostgreSQL): {test_name} — set {POSTGRES_URL_VAR}"
            );
            return None;
        }
    };
    let name = format!("{DB_PREFIX}{}", unique_suffix());
    if let Err(e) = create_database(&admin, &name).await {
        panic!(
            "{test_name}: cannot create a test database on {}: {}",
            redact_url(&admin),
            scrub(&e.to_string(), &admin)
        );
    }
    Some(with_database(&admin, &name))
}

/// A migrated store on a new PostgreSQL database, or `None` after a loud skip.
pub async fn postgres_or_skip(test_name: &str) -> Option<PgStore> {
    let url = fresh_postgres_url(test_name).await?;
    match PgStore::open(&url).await {
        Ok(store) => Some(store),
        Err(e) => panic!("{test_name}: opening {}: {e}", redact_url(&url)),
    }
}

/// Best effort: drops a database made by [`fresh_postgres_url`]. Failed tests that skip this
/// leave their database for inspection; it is swept after a few hours.
pub async fn drop_postgres_database(url: &str) {
    let Some(name) = database_name(url) else {
        return;
    };
    if !name.starts_with(DB_PREFIX) {
        return;
    }
    let Ok(admin) = std::env::var(POSTGRES_URL_VAR) else {
        return;
    };
    if let Ok(mut conn) = PgConnection::connect(&admin).await {
        let _ = conn.execute(sqlx::AssertSqlSafe(drop_sql(&name))).await;
        let _ = conn.close().await;
    }
}

/// Ends every session on the database of `url` (made by [`fresh_postgres_url`]), as a server
/// restart would, answering how many there were. From the server's admin database: a
/// database cannot close its own doors.
pub async fn end_sessions(url: &str) -> usize {
    let name = database_name(url).expect("a database in the URL");
    assert!(name.starts_with(DB_PREFIX), "not a test database: {name}");
    let admin = std::env::var(POSTGRES_URL_VAR).expect("the admin URL");
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("admin connection");
    // Names are generated here (prefix, digits, underscores): nothing to inject.
    let ended = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("ending sessions");
    let _ = conn.close().await;
    ended.len()
}

async fn create_database(admin: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(admin).await?;
    sweep_stale(&mut conn).await;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await?;
    conn.close().await
}

fn drop_sql(name: &str) -> String {
    // Names are generated here (prefix, digits, underscores): nothing to inject.
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

async fn sweep_stale(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE datname LIKE 'erlmcp\\_t\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for name in names {
        let created = name[DB_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER_SECS) {
            let _ = conn.execute(sqlx::AssertSqlSafe(drop_sql(&name))).await;
        }
    }
}

/// `admin` with its path replaced by `/name`, query string kept.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

fn database_name(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let after_scheme = &base[base.find("://")? + 3..];
    let path = &after_scheme[after_scheme.find('/')? + 1..];
    (!path.is_empty()).then(|| path.to_string())
}

/// A directory removed (with the database in it) when dropped.
pub struct TempDb {
    dir: PathBuf,
}

impl TempDb {
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated SQLite store in a new file; keep the `TempDb` alive as long as the store.
pub async fn fresh_sqlite() -> (SqliteStore, TempDb) {
    let (url, dir) = fresh_sqlite_url();
    let store = SqliteStore::open(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    (store, dir)
}

/// The URL of a SQLite file that does not exist yet, in a new directory.
pub fn fresh_sqlite_url() -> (String, TempDb) {
    let dir = std::env::temp_dir().join(format!("erlmcp-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let url = format!("sqlite://{}", dir.join("bot.db").display());
    (url, TempDb { dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_rewriting() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(database_name("postgres://h/x?a=b").as_deref(), Some("x"));
        assert_eq!(database_name("postgres://h"), None);
    }
}
