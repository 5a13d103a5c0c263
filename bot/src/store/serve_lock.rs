//! One `serve` per SQLite file. SQLite's own locks keep the file consistent, but two serving
//! processes would each run the scheduler, each reconcile the other's requests as orphans
//! and each hold Socket Mode; several replicas need PostgreSQL.
//!
//! The guard is an exclusive advisory lock on `FILE.lock` beside the database, taken only by
//! `serve`: `exec`, `migrate` and `audit` keep working beside a running server, as the
//! README's walk-through does. The kernel drops the lock when the process dies, so a crash
//! leaves nothing to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use sqlx::sqlite::SqliteConnectOptions;

/// Held for as long as `serve` runs; dropping it releases the file.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    path: PathBuf,
}

impl ServeLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error(
        "{database} is already served by another erlmcp-bot ({holder}, lock {lock}); SQLite \
         allows one `serve` per file: stop that process, or use PostgreSQL \
         (bot.database_url = \"postgres://...\") to run several replicas"
    )]
    Held {
        database: String,
        lock: String,
        holder: String,
    },
    #[error("cannot lock {lock} for {database}: {source}")]
    Io {
        database: String,
        lock: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Url(String),
}

/// Locks the SQLite file named by `url` for this process; `None` for an in-memory database,
/// which no other process can open.
pub fn lock_sqlite_for_serve(url: &str) -> Result<Option<ServeLock>, ServeLockError> {
    if super::sqlite::is_in_memory(url) {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| ServeLockError::Url(super::scrub(&e.to_string(), url)))?;
    let database = options.get_filename();
    let mut lock = database.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let shown = |p: &Path| p.display().to_string();
    let io = |source| ServeLockError::Io {
        database: shown(database),
        lock: shown(&lock),
        source,
    };
    // Not truncated on open: the holder's pid in it is what a refused process reports.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "process unknown".to_string(),
                h => h.to_string(),
            };
            return Err(ServeLockError::Held {
                database: shown(database),
                lock: shown(&lock),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "pid {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(Some(ServeLock {
        _file: file,
        path: lock,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_file_and_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bot.db");
        let url = format!("sqlite://{}", db.display());
        let first = lock_sqlite_for_serve(&url).unwrap().expect("a file lock");
        assert_eq!(first.path(), dir.path().join("bot.db.lock"));

        let err = lock_sqlite_for_serve(&url).unwrap_err().to_string();
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("PostgreSQL"), "{err}");

        drop(first);
        assert!(
            lock_sqlite_for_serve(&url).unwrap().is_some(),
            "released on drop"
        );
    }

    #[test]
    fn in_memory_databases_need_no_lock() {
        assert!(lock_sqlite_for_serve("sqlite::memory:").unwrap().is_none());
    }
}
