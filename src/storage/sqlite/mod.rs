//! The SQLite backend: one file, `lookout.db`, in the `--data` directory,
//! in WAL mode, implementing every storage trait.
//!
//! The schema is versioned with `rusqlite_migration` (SQLite's
//! `user_version`, `schema.rs`), so an older database is upgraded in place
//! at start. Writes go through `spawn_blocking` on one connection: SQLite
//! serialises writers anyway, and one connection keeps every transaction
//! simple to reason about. A second, read-only connection serves the long
//! history reads beside ingestion (WAL lets them run at once). The queries
//! live by trait: `ingest.rs`, `outbox.rs`, `history.rs`, `jobs.rs`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite_migration::Migrations;

use super::StorageError;
use crate::clock::Clock;
use crate::limits;

mod announcements;
mod compact;
mod coordination;
mod history;
mod ingest;
mod jobs;
mod outbox;
mod schema;

/// The SQLite backend; cheap to clone (the connections are shared).
#[derive(Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
    /// A second, read-only connection for the status page's long reads: in
    /// WAL mode they run beside ingestion instead of queueing behind it.
    reader: Arc<Mutex<Connection>>,
    /// The file the connections opened, to notice it deleted or replaced.
    file: Arc<DbFile>,
    /// Where bookkeeping times (`updated_at`, `done_at`, the retention
    /// floors, the health row) come from.
    clock: Clock,
    /// Decisions waiting for the writer, committed together (`ingest.rs`).
    decisions: Arc<Mutex<Vec<ingest::Pending>>>,
}

/// The database file as opened: its path and identity (device, inode).
struct DbFile {
    path: std::path::PathBuf,
    identity: (u64, u64),
    /// Whether its loss has been logged (once, not per write).
    reported: std::sync::atomic::AtomicBool,
}

impl DbFile {
    fn open(path: std::path::PathBuf) -> Result<DbFile, StorageError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).map_err(|source| StorageError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
        Ok(DbFile {
            path,
            identity: (meta.dev(), meta.ino()),
            reported: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// An error if the path no longer names the file that was opened: one
    /// `stat` per use of the connection, cheap beside any SQLite statement.
    fn check(&self) -> Result<(), StorageError> {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::Ordering;
        let what = match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                self.reported.store(false, Ordering::Relaxed);
                return Ok(());
            }
            Ok(_) => "replaced",
            Err(_) => "deleted",
        };
        let error = StorageError::FileGone {
            path: self.path.display().to_string(),
            what,
        };
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, "storage is gone");
        }
        Err(error)
    }
}

impl SqliteStorage {
    /// Opens (creating and migrating) `dir/lookout.db`; bookkeeping times
    /// come from `clock`.
    pub fn open(dir: &Path, clock: Clock) -> Result<SqliteStorage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut conn = Connection::open(dir.join("lookout.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The writer's savepoints (one per decision of a group commit)
        // journal the pages they change; past 64 KiB SQLite spills that
        // journal to a temporary file, a write(2) per page. In memory it is
        // a copy, freed at the commit.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            limits::SQLITE_WAL_AUTOCHECKPOINT_PAGES,
        )?;
        conn.busy_timeout(limits::SQLITE_BUSY_TIMEOUT)?;
        // Room for every statement ingest prepares (rusqlite keeps 16):
        // one evicted is prepared again, batch after batch.
        conn.set_prepared_statement_cache_capacity(limits::SQLITE_STATEMENTS_CACHED);
        Migrations::new(schema::migrations()).to_latest(&mut conn)?;
        let reader = Connection::open_with_flags(
            dir.join("lookout.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(limits::SQLITE_BUSY_TIMEOUT)?;
        reader.set_prepared_statement_cache_capacity(limits::SQLITE_STATEMENTS_CACHED);
        Ok(SqliteStorage {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            file: Arc::new(DbFile::open(dir.join("lookout.db"))?),
            clock,
            decisions: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Runs `f` on the read-only connection, off the async threads: the
    /// long history reads, which must not wait behind ingestion.
    async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        self.file.check()?;
        let conn = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Runs `f` on the writer connection, off the async threads, after
    /// checking that the file is still the one opened.
    async fn with<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock, right before the statements run.
            file.check()?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }
}

/// The JSON `body` column of every row `sql` selects, decoded.
fn json_bodies<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| row.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row?)?);
    }
    Ok(out)
}

impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> StorageError {
        StorageError::Database(Box::new(error))
    }
}

impl From<rusqlite_migration::Error> for StorageError {
    fn from(error: rusqlite_migration::Error) -> StorageError {
        StorageError::Migration(Box::new(error))
    }
}
