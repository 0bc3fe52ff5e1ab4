//! Durable state in SQLite: results, each check's rule state, incident events.
//!
//! One file, `lookout.db`, in the `--data` directory, in WAL mode. The schema
//! is versioned with `rusqlite_migration` (SQLite's `user_version`), so an
//! older database is upgraded in place at start. All calls go through
//! `spawn_blocking` on one connection: SQLite serialises writers anyway, and
//! one connection keeps every transaction simple to reason about.
//!
//! Invariant: a batch of results, the check states they changed and the
//! events they raised are written in one transaction: after a crash either
//! all of it is there or none is, and the probe resends (ids make that safe).

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use crate::alert::AlertEvent;
use crate::alert::silence::Silence;
use crate::clock::Clock;
use crate::limits;
use crate::result::ProbeResult;
use crate::rules::{CheckState, ProbeEvent, Transition};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migrating the database: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Task(String),
    /// The database file was deleted, or another file put in its place,
    /// under the running process: writes would go to a file nobody will
    /// ever open again, so none are made.
    #[error(
        "the database file {path} was {what} while Lookout had it open; restart Lookout once it is back (nothing is written meanwhile)"
    )]
    FileGone { path: String, what: &'static str },
}

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE results (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        region TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX results_by_check ON results (check_name, started_at_ms DESC);
    CREATE INDEX results_by_age ON results (started_at_ms);
    CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        incident TEXT,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_check ON events (check_name, at_ms DESC);
    CREATE TABLE health_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        touched_at_ms INTEGER NOT NULL
    );",
    ),
    // The alert outbox: one row per (event, channel). Written in the same
    // transaction as the event; a dispatcher sends, retries, dead-letters.
    M::up(
        "CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL,
            check_name TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            event TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at_ms INTEGER NOT NULL,
            next_attempt_at_ms INTEGER NOT NULL,
            last_error TEXT,
            done_at_ms INTEGER
        );
        CREATE INDEX outbox_due ON outbox (state, next_attempt_at_ms);
        CREATE UNIQUE INDEX outbox_once ON outbox (event_id, channel);",
    ),
    M::up(
        "CREATE TABLE silences (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        );",
    ),
    // Deliveries folded into one message share a group id, so a retry
    // resends exactly the same set under the same delivery id.
    M::up(
        "ALTER TABLE outbox ADD COLUMN group_id TEXT; CREATE INDEX outbox_group ON outbox (group_id);",
    ),
    // A region's probe going stale and coming back.
    M::up(
        "CREATE TABLE probe_events (
            id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            stale INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX probe_events_by_region ON probe_events (region, at_ms DESC);",
    ),
    // Hourly latency roll-ups (see rollup.rs), how far they reach, and the
    // hours late results landed in after they were rolled up.
    M::up(
        "CREATE TABLE latency_hourly (
            check_name TEXT NOT NULL,
            region TEXT NOT NULL,
            hour_ms INTEGER NOT NULL,
            total INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (check_name, hour_ms, region)
        ) WITHOUT ROWID;
        CREATE INDEX latency_hourly_by_hour ON latency_hourly (hour_ms);
        CREATE TABLE rollup_mark (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            rolled_until_ms INTEGER NOT NULL
        );
        CREATE TABLE rollup_dirty (hour_ms INTEGER PRIMARY KEY);",
    ),
    // Browser checks' screenshots (PNG), apart from the result JSON so
    // listing results stays light; bounded per check and in total.
    M::up(
        "CREATE TABLE screenshots (
            result_id TEXT PRIMARY KEY,
            check_name TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            png BLOB NOT NULL
        );
        CREATE INDEX screenshots_by_check ON screenshots (check_name, at_ms DESC);
        CREATE INDEX screenshots_by_age ON screenshots (at_ms);",
    ),
];

/// What one ingested batch writes.
#[derive(Default)]
pub struct Batch {
    pub results: Vec<(ProbeResult, DateTime<Utc>)>,
    pub states: Vec<(String, CheckState)>,
    pub events: Vec<Transition>,
    /// Alert deliveries the events raised, one per channel.
    pub deliveries: Vec<Delivery>,
    pub probe_events: Vec<ProbeEvent>,
    /// Browser screenshots (PNG) of results in this batch, by result id.
    pub screenshots: Vec<Screenshot>,
}

/// A browser check's screenshot, kept apart from its result.
#[derive(Clone, Debug)]
pub struct Screenshot {
    pub result_id: uuid::Uuid,
    pub check: String,
    pub at: DateTime<Utc>,
    /// Taken by a run that failed (alerts show only those).
    pub failed: bool,
    pub png: Vec<u8>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up: a permanent refusal, or retried past the maximum age.
    Dead,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> DeliveryState {
        match text {
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            _ => DeliveryState::Pending,
        }
    }
}

/// One alert to one channel. `id` is the delivery id receivers see in
/// `X-Lookout-Delivery`, the same on every attempt.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Delivery {
    pub id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub channel: String,
    pub event: AlertEvent,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// Set when the delivery was folded with others into one message.
    pub group_id: Option<uuid::Uuid>,
}

#[derive(Clone)]
pub struct Storage {
    conn: Arc<Mutex<Connection>>,
    /// A second, read-only connection for the status page's long reads: in
    /// WAL mode they run beside ingestion instead of queueing behind it.
    reader: Arc<Mutex<Connection>>,
    /// The file the connections opened, to notice it deleted or replaced.
    file: Arc<DbFile>,
    /// Where bookkeeping times (`updated_at`, `done_at`) come from; also
    /// the clock of the aggregator built on this storage.
    clock: Clock,
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

impl Storage {
    /// Opens (creating and migrating) `dir/lookout.db`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut conn = Connection::open(dir.join("lookout.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(limits::SQLITE_BUSY_TIMEOUT)?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        let reader = Connection::open_with_flags(
            dir.join("lookout.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(limits::SQLITE_BUSY_TIMEOUT)?;
        Ok(Storage {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            file: Arc::new(DbFile::open(dir.join("lookout.db"))?),
            clock: Clock::System,
        })
    }

    /// This storage, and everything built on it, on `clock` (tests).
    pub fn with_clock(mut self, clock: Clock) -> Storage {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// An error if the database file was deleted or replaced since it was
    /// opened (checked before every use of the connections, too).
    pub fn check_file(&self) -> Result<(), StorageError> {
        self.file.check()
    }

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

    /// Ids among `ids` that are already stored: the aggregator skips them.
    pub async fn known_result_ids(&self, ids: Vec<String>) -> Result<Vec<String>, StorageError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT 1 FROM results WHERE id = ?1")?;
            let mut known = Vec::new();
            for id in ids {
                if stmt.exists(params![id])? {
                    known.push(id);
                }
            }
            Ok(known)
        })
        .await
    }

    /// Writes a batch in one transaction. Results already stored are ignored.
    pub async fn write_batch(&self, batch: Batch) -> Result<(), StorageError> {
        let written_at = self.clock.now().timestamp_millis();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert_result = tx.prepare_cached(
                    "INSERT OR IGNORE INTO results
                     (id, check_name, region, started_at_ms, received_at_ms, outcome, duration_ms, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                // Late results in an hour already rolled up: roll it up again.
                let rolled_until: i64 = tx
                    .query_row("SELECT rolled_until_ms FROM rollup_mark", [], |row| row.get(0))
                    .optional()?
                    .unwrap_or(i64::MIN);
                let mut mark_dirty =
                    tx.prepare_cached("INSERT OR IGNORE INTO rollup_dirty (hour_ms) VALUES (?1)")?;
                for (result, _) in &batch.results {
                    let at = result.started_at.timestamp_millis();
                    if at < rolled_until {
                        mark_dirty.execute(params![crate::rollup::hour_of(at)])?;
                    }
                }
                for (result, received_at) in &batch.results {
                    insert_result.execute(params![
                        result.id.to_string(),
                        result.check,
                        result.region,
                        result.started_at.timestamp_millis(),
                        received_at.timestamp_millis(),
                        result.outcome.as_str(),
                        result.duration_ms,
                        serde_json::to_string(result)?,
                    ])?;
                }
                let mut upsert_state = tx.prepare_cached(
                    "INSERT INTO check_state (check_name, state, updated_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (check_name) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                )?;
                for (check, state) in &batch.states {
                    upsert_state.execute(params![
                        check,
                        serde_json::to_string(state)?,
                        written_at
                    ])?;
                }
                let mut insert_event = tx.prepare_cached(
                    "INSERT OR IGNORE INTO events (id, check_name, incident, from_status, to_status, at_ms, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for event in &batch.events {
                    insert_event.execute(params![
                        event.id.to_string(),
                        event.check,
                        event.incident.map(|i| i.to_string()),
                        event.from.as_str(),
                        event.to.as_str(),
                        event.at.timestamp_millis(),
                        serde_json::to_string(event)?,
                    ])?;
                }
            }
            {
                let mut insert_probe_event = tx.prepare_cached(
                    "INSERT OR IGNORE INTO probe_events (id, region, stale, at_ms, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for event in &batch.probe_events {
                    insert_probe_event.execute(params![
                        event.id.to_string(),
                        event.region,
                        event.stale,
                        event.at.timestamp_millis(),
                        serde_json::to_string(event)?,
                    ])?;
                }
                let mut insert_delivery = tx.prepare_cached(
                    "INSERT OR IGNORE INTO outbox
                     (id, event_id, check_name, channel, kind, event, state, attempts, created_at_ms, next_attempt_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8)",
                )?;
                for d in &batch.deliveries {
                    insert_delivery.execute(params![
                        d.id.to_string(),
                        d.event_id.to_string(),
                        d.event.check,
                        d.channel,
                        d.event.event.as_str(),
                        serde_json::to_string(&d.event)?,
                        d.created_at.timestamp_millis(),
                        d.next_attempt_at.timestamp_millis(),
                    ])?;
                }
            }
            if !batch.screenshots.is_empty() {
                store_screenshots(&tx, &batch.screenshots)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Which of `result_ids` have a stored screenshot (the status page
    /// links those).
    pub async fn screenshots_present(
        &self,
        result_ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT 1 FROM screenshots WHERE result_id = ?1")?;
            let mut present = std::collections::HashSet::new();
            for id in result_ids {
                if stmt.exists(params![id])? {
                    present.insert(id);
                }
            }
            Ok(present)
        })
        .await
    }

    /// A stored screenshot (PNG) by result id.
    pub async fn screenshot(
        &self,
        result_id: String,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT check_name, png FROM screenshots WHERE result_id = ?1",
                    params![result_id],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
                )
                .optional()?)
        })
        .await
    }

    pub async fn load_states(&self) -> Result<Vec<(String, CheckState)>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT check_name, state FROM check_state")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, json) = row?;
                out.push((name, serde_json::from_str(&json)?));
            }
            Ok(out)
        })
        .await
    }

    /// The newest `limit` results of a check, newest first.
    pub async fn recent_results(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<ProbeResult>, StorageError> {
        self.newest_bodies("SELECT body FROM results WHERE check_name = ?1 ORDER BY started_at_ms DESC, id DESC LIMIT ?2", check, limit)
            .await
    }

    /// The newest `limit` incident events of a check, newest first.
    pub async fn recent_events(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        self.newest_bodies(
            "SELECT body FROM events WHERE check_name = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
            check,
            limit,
        )
        .await
    }

    /// The newest `limit` probe events of every region, newest first.
    pub async fn recent_probe_events(&self, limit: usize) -> Result<Vec<ProbeEvent>, StorageError> {
        self.with(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM probe_events ORDER BY at_ms DESC, id DESC LIMIT ?1",
                params![limit as i64],
            )
        })
        .await
    }

    /// Each region's latest probe event: which probes were stale when the
    /// aggregator stopped.
    pub async fn last_probe_events(&self) -> Result<Vec<ProbeEvent>, StorageError> {
        self.with(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM probe_events p WHERE at_ms = (SELECT MAX(at_ms) FROM probe_events q WHERE q.region = p.region)",
                [],
            )
        })
        .await
    }

    /// Rows of JSON `body` selected by `sql` (params: check, limit), decoded.
    async fn newest_bodies<T>(
        &self,
        sql: &'static str,
        check: String,
        limit: usize,
    ) -> Result<Vec<T>, StorageError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.with(move |conn| json_bodies(conn, sql, params![check, limit as i64]))
            .await
    }

    /// Rolls up the results of finished hours into `latency_hourly`: hours
    /// late results landed in, then the hours since the last roll-up, at most
    /// `hours_max` hours per call (one transaction each). Returns how many
    /// hours were rolled up; call again while it returns `hours_max`.
    pub async fn roll_up(
        &self,
        now: DateTime<Utc>,
        hours_max: usize,
    ) -> Result<usize, StorageError> {
        use crate::rollup::{HOUR_MS, hour_of};
        let current_hour = hour_of(now.timestamp_millis());
        let (start, hours) = self
            .with(move |conn| {
                let mark: Option<i64> = conn
                    .query_row("SELECT rolled_until_ms FROM rollup_mark", [], |row| {
                        row.get(0)
                    })
                    .optional()?;
                let start = match mark {
                    Some(mark) => mark,
                    None => {
                        let oldest: Option<i64> = conn.query_row(
                            "SELECT MIN(started_at_ms) FROM results",
                            [],
                            |row| row.get(0),
                        )?;
                        hour_of(oldest.unwrap_or(current_hour))
                    }
                };
                let mut hours: Vec<i64> = {
                    let mut stmt = conn.prepare_cached(
                        "SELECT hour_ms FROM rollup_dirty WHERE hour_ms < ?1 ORDER BY hour_ms LIMIT ?2",
                    )?;
                    let rows =
                        stmt.query_map(params![start, hours_max as i64], |row| row.get(0))?;
                    rows.collect::<Result<_, _>>()?
                };
                let mut next = start;
                while hours.len() < hours_max && next < current_hour {
                    hours.push(next);
                    next += HOUR_MS;
                }
                Ok((start, hours))
            })
            .await?;
        // One transaction per hour, each its own turn on the connection, so
        // ingestion waits at most one hour's roll-up.
        for hour in &hours {
            let hour = *hour;
            self.with(move |conn| roll_up_hour(conn, hour, start))
                .await?;
        }
        Ok(hours.len())
    }

    /// Every hourly roll-up from `since_ms` on (hour starts), and how far
    /// roll-ups reach (results from there on are not rolled up yet).
    pub async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<(Vec<crate::rollup::HourRollup>, Option<i64>), StorageError> {
        self.read(move |conn| {
            let mark: Option<i64> = conn
                .query_row("SELECT rolled_until_ms FROM rollup_mark", [], |row| row.get(0))
                .optional()?;
            let mut stmt = conn.prepare_cached(
                "SELECT check_name, region, hour_ms, total, ok, hist FROM latency_hourly WHERE hour_ms >= ?1",
            )?;
            let rows = stmt.query_map(params![since_ms], |row| {
                let hist: Vec<u8> = row.get(5)?;
                Ok(crate::rollup::HourRollup {
                    check: row.get(0)?,
                    region: row.get(1)?,
                    hour_ms: row.get(2)?,
                    total: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    ok: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                    latency: crate::rollup::LatencyHistogram::decode(&hist),
                })
            })?;
            Ok((rows.collect::<Result<_, _>>()?, mark))
        })
        .await
    }

    /// `check`'s ok run times over the hours [from_ms, to_ms), all
    /// regions merged, from the roll-ups: the baseline of
    /// `p95_above_baseline`.
    pub async fn check_latency(
        &self,
        check: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<crate::rollup::LatencyHistogram, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT hist FROM latency_hourly WHERE check_name = ?1 AND hour_ms >= ?2 AND hour_ms < ?3",
            )?;
            let rows = stmt.query_map(params![check, from_ms, to_ms], |row| row.get::<_, Vec<u8>>(0))?;
            let mut merged = crate::rollup::LatencyHistogram::new();
            for row in rows {
                merged.merge(&crate::rollup::LatencyHistogram::decode(&row?));
            }
            Ok(merged)
        })
        .await
    }

    /// Raw results from `since_ms` on, as (check, region, started_at_ms,
    /// ok, duration_ms), newest first: the hour not rolled up yet. At most
    /// `limit` rows (the newest).
    pub async fn raw_latencies_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, i64, bool, f64)>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT check_name, region, started_at_ms, outcome, duration_ms FROM results
                 WHERE started_at_ms >= ?1 ORDER BY started_at_ms DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since_ms, limit as i64], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get_ref(3)?.as_str().unwrap_or_default() == "ok",
                    row.get(4)?,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Run times (ms) of `check`'s ok results from `since_ms` on, newest
    /// first, at most `limit`: the recent window of `p95_above_baseline`.
    pub async fn recent_ok_latencies(
        &self,
        check: String,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<f64>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT duration_ms FROM results
                 WHERE check_name = ?1 AND started_at_ms >= ?2 AND outcome = 'ok'
                 ORDER BY started_at_ms DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![check, since_ms, limit as i64], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Every incident event from `since_ms` on, oldest first, at most `limit`.
    pub async fn events_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        self.read(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM events WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
                params![since_ms, limit as i64],
            )
            .map(|mut newest_first: Vec<Transition>| {
                // Capped, the oldest are the ones left out.
                newest_first.reverse();
                newest_first
            })
        })
        .await
    }

    /// Deliveries still owed (pending), for the outbox backlog metric.
    pub async fn pending_delivery_count(&self) -> Result<u64, StorageError> {
        self.with(|conn| {
            let count: i64 = conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Deletes results and finished deliveries older than `cutoff`, `batch`
    /// rows per transaction, letting other work take the connection between
    /// batches so pruning never stalls ingestion. Incident events are kept
    /// at least `limits::EVENTS_KEPT_MIN` (the status page's 90 days) and
    /// hourly roll-ups `limits::ROLLUPS_KEPT`, whatever `cutoff` says: both
    /// are small. Returns the rows deleted.
    pub async fn prune_older_than(
        &self,
        cutoff: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StorageError> {
        let now = self.clock.now();
        let at_least = |keep: std::time::Duration| {
            let floor = chrono::Duration::from_std(keep)
                .ok()
                .and_then(|keep| now.checked_sub_signed(keep))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            cutoff.min(floor).timestamp_millis()
        };
        let events_cutoff = at_least(limits::EVENTS_KEPT_MIN);
        let rollups_cutoff = at_least(limits::ROLLUPS_KEPT);
        let cutoff = cutoff.timestamp_millis();
        // Pending deliveries are never pruned: they are alerts still owed.
        let tables: [(&str, &str, i64); 6] = [
            (
                "results",
                "rowid IN (SELECT rowid FROM results WHERE started_at_ms < ?1 LIMIT ?2)",
                cutoff,
            ),
            (
                "events",
                "rowid IN (SELECT rowid FROM events WHERE at_ms < ?1 LIMIT ?2)",
                events_cutoff,
            ),
            (
                "probe_events",
                "rowid IN (SELECT rowid FROM probe_events WHERE at_ms < ?1 LIMIT ?2)",
                events_cutoff,
            ),
            (
                "outbox",
                "rowid IN (SELECT rowid FROM outbox WHERE created_at_ms < ?1 AND state != 'pending' LIMIT ?2)",
                cutoff,
            ),
            (
                "latency_hourly",
                "(check_name, hour_ms, region) IN (SELECT check_name, hour_ms, region FROM latency_hourly WHERE hour_ms < ?1 LIMIT ?2)",
                rollups_cutoff,
            ),
            (
                "screenshots",
                "rowid IN (SELECT rowid FROM screenshots WHERE at_ms < ?1 LIMIT ?2)",
                cutoff,
            ),
        ];
        let mut total = 0;
        for (table, condition, cutoff_ms) in tables {
            loop {
                let sql = format!("DELETE FROM {table} WHERE {condition}");
                let deleted = self
                    .with(move |conn| Ok(conn.execute(&sql, params![cutoff_ms, batch as i64])?))
                    .await?;
                total += deleted;
                if deleted < batch {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }

    /// Pending deliveries due by `now`, oldest first, at most `limit`.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1
             ORDER BY attempts, next_attempt_at_ms, id LIMIT ?2",
            Value::Integer(now.timestamp_millis()),
            limit,
        )
        .await
    }

    /// The newest deliveries in `state` (for the API and `alert` listings).
    pub async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE state = ?1 ORDER BY created_at_ms DESC, id DESC LIMIT ?2",
            Value::Text(state.as_str().to_string()),
            limit,
        )
        .await
    }

    /// Folds the pending, ungrouped deliveries of `channel` (at most `limit`,
    /// oldest first) into group `group_id`, and returns every member.
    pub async fn claim_group(
        &self,
        channel: String,
        group_id: uuid::Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let group = group_id.to_string();
        let claimed = group.clone();
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET group_id = ?1 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND channel = ?2 AND group_id IS NULL
                   ORDER BY created_at_ms, id LIMIT ?3)",
                params![claimed, channel, limit as i64],
            )?;
            Ok(())
        })
        .await?;
        self.group_members(group).await
    }

    /// The deliveries folded into a group.
    pub async fn group_members(&self, group_id: String) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE group_id = ?1 ORDER BY created_at_ms, id LIMIT ?2",
            Value::Text(group_id),
            limits::ALERT_GROUP_MAX,
        )
        .await
    }

    /// The next pending deliveries by due time (id, due), soonest first.
    pub async fn next_due_deliveries(
        &self,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, DateTime<Utc>)>, StorageError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, next_attempt_at_ms FROM outbox WHERE state = 'pending' ORDER BY next_attempt_at_ms LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at) = row?;
                if let (Ok(id), Some(at)) = (id.parse(), DateTime::from_timestamp_millis(at)) {
                    out.push((id, at));
                }
            }
            Ok(out)
        })
        .await
    }

    /// When the next pending delivery falls due, if any.
    pub async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StorageError> {
        self.with(|conn| {
            let ms: Option<i64> = conn.query_row(
                "SELECT MIN(next_attempt_at_ms) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            Ok(ms.and_then(DateTime::from_timestamp_millis))
        })
        .await
    }

    /// Pending deliveries: the outbox backlog.
    pub async fn pending_deliveries(&self) -> Result<u64, StorageError> {
        self.with(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// Records the outcome of one attempt.
    pub async fn record_attempt(
        &self,
        id: uuid::Uuid,
        state: DeliveryState,
        next_attempt_at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StorageError> {
        let now = self.clock.now().timestamp_millis();
        self.with(move |conn| {
            let done = (state != DeliveryState::Pending).then_some(now);
            conn.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at_ms = ?3,
                 last_error = ?4, done_at_ms = ?5 WHERE id = ?1",
                params![
                    id.to_string(),
                    state.as_str(),
                    next_attempt_at.timestamp_millis(),
                    error,
                    done
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn deliveries(
        &self,
        sql: &'static str,
        bound: Value,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![bound, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    id,
                    event_id,
                    channel,
                    event,
                    state,
                    attempts,
                    created,
                    next,
                    last_error,
                    group,
                ) = row?;
                // One unreadable row must not stop every other alert.
                let (Ok(id), Ok(event_id), Ok(event)) = (
                    id.parse(),
                    event_id.parse(),
                    serde_json::from_str::<AlertEvent>(&event),
                ) else {
                    tracing::error!(delivery = %id, "an outbox row cannot be read; skipped");
                    continue;
                };
                out.push(Delivery {
                    id,
                    event_id,
                    channel,
                    event,
                    state: DeliveryState::parse(&state),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    created_at: DateTime::from_timestamp_millis(created).unwrap_or_default(),
                    next_attempt_at: DateTime::from_timestamp_millis(next).unwrap_or_default(),
                    last_error,
                    group_id: group.and_then(|g| g.parse().ok()),
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn insert_silence(&self, silence: &Silence) -> Result<(), StorageError> {
        let (id, body, expires) = (
            silence.id.to_string(),
            serde_json::to_string(silence)?,
            silence.expires_at.timestamp_millis(),
        );
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO silences (id, body, expires_at_ms) VALUES (?1, ?2, ?3)",
                params![id, body, expires],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes a silence; false when there was none with that id.
    pub async fn delete_silence(&self, id: uuid::Uuid) -> Result<bool, StorageError> {
        self.with(move |conn| {
            Ok(conn.execute(
                "DELETE FROM silences WHERE id = ?1",
                params![id.to_string()],
            )? > 0)
        })
        .await
    }

    /// Silences not yet expired at `now`; expired ones are deleted.
    pub async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StorageError> {
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM silences WHERE expires_at_ms <= ?1",
                params![now.timestamp_millis()],
            )?;
            json_bodies(conn, "SELECT body FROM silences ORDER BY expires_at_ms", [])
        })
        .await
    }

    /// A real write and read, for `/health`.
    pub async fn health_probe(&self) -> Result<(), StorageError> {
        let now = self.clock.now().timestamp_millis();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO health_probe (id, touched_at_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET touched_at_ms = excluded.touched_at_ms",
                params![now],
            )?;
            let read: Option<i64> = conn
                .query_row(
                    "SELECT touched_at_ms FROM health_probe WHERE id = 1",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            if read == Some(now) {
                Ok(())
            } else {
                Err(StorageError::Task("health row did not read back".into()))
            }
        })
        .await
    }
}

/// Rolls up the results of the hour starting at `hour` into
/// `latency_hourly`, in one transaction, and moves the mark past it.
fn roll_up_hour(conn: &mut Connection, hour: i64, start: i64) -> Result<(), StorageError> {
    use crate::rollup::{HOUR_MS, HourRollup, LatencyHistogram};
    let tx = conn.transaction()?;
    let mut rollups: std::collections::HashMap<(String, String), HourRollup> =
        std::collections::HashMap::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT check_name, region, outcome, duration_ms FROM results
             WHERE started_at_ms >= ?1 AND started_at_ms < ?2",
        )?;
        let mut rows = stmt.query(params![hour, hour + HOUR_MS])?;
        while let Some(row) = rows.next()? {
            let check: String = row.get(0)?;
            let region: String = row.get(1)?;
            let ok = row.get_ref(2)?.as_str().unwrap_or_default() == "ok";
            let ms: f64 = row.get(3)?;
            let entry = rollups
                .entry((check.clone(), region.clone()))
                .or_insert_with(|| HourRollup {
                    check,
                    region,
                    hour_ms: hour,
                    total: 0,
                    ok: 0,
                    latency: LatencyHistogram::new(),
                });
            entry.total += 1;
            if ok {
                entry.ok += 1;
                entry.latency.record(ms);
            }
        }
    }
    tx.execute(
        "DELETE FROM latency_hourly WHERE hour_ms = ?1",
        params![hour],
    )?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO latency_hourly (check_name, region, hour_ms, total, ok, hist)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for rollup in rollups.values() {
            insert.execute(params![
                rollup.check,
                rollup.region,
                rollup.hour_ms,
                rollup.total as i64,
                rollup.ok as i64,
                rollup.latency.encode(),
            ])?;
        }
    }
    tx.execute("DELETE FROM rollup_dirty WHERE hour_ms = ?1", params![hour])?;
    let reached = (hour + HOUR_MS).max(start);
    tx.execute(
        "INSERT INTO rollup_mark (id, rolled_until_ms) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET rolled_until_ms = MAX(rolled_until_ms, excluded.rolled_until_ms)",
        params![reached],
    )?;
    tx.commit()?;
    Ok(())
}

/// The JSON `body` column of every row `sql` selects, decoded.
/// Inserts screenshots, then keeps the newest `SCREENSHOTS_PER_CHECK_MAX`
/// of each check and at most `SCREENSHOTS_BYTES_MAX` in all (oldest go).
fn store_screenshots(
    tx: &rusqlite::Transaction<'_>,
    screenshots: &[Screenshot],
) -> Result<(), StorageError> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO screenshots (result_id, check_name, at_ms, png) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut checks: Vec<&str> = Vec::new();
    for shot in screenshots {
        insert.execute(params![
            shot.result_id.to_string(),
            shot.check,
            shot.at.timestamp_millis(),
            shot.png,
        ])?;
        if !checks.contains(&shot.check.as_str()) {
            checks.push(&shot.check);
        }
    }
    let mut keep_newest = tx.prepare_cached(
        "DELETE FROM screenshots WHERE check_name = ?1 AND result_id NOT IN
         (SELECT result_id FROM screenshots WHERE check_name = ?1 ORDER BY at_ms DESC, result_id DESC LIMIT ?2)",
    )?;
    for check in checks {
        keep_newest.execute(params![check, limits::SCREENSHOTS_PER_CHECK_MAX as i64])?;
    }
    // The total cap: drop the oldest until under it. Each round removes
    // one batch's worth at most, and rounds are bounded.
    for _ in 0..limits::SCREENSHOTS_PER_CHECK_MAX {
        let total: i64 = tx.query_row(
            "SELECT COALESCE(SUM(length(png)), 0) FROM screenshots",
            [],
            |row| row.get(0),
        )?;
        if total as u64 <= limits::SCREENSHOTS_BYTES_MAX {
            break;
        }
        tx.execute(
            "DELETE FROM screenshots WHERE result_id IN
             (SELECT result_id FROM screenshots ORDER BY at_ms, result_id LIMIT ?1)",
            params![screenshots.len().max(1) as i64],
        )?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Outcome;
    use uuid::Uuid;

    fn result(check: &str, started_at: DateTime<Utc>) -> ProbeResult {
        ProbeResult::for_test(check, Outcome::Ok, started_at)
    }

    #[tokio::test]
    async fn results_are_idempotent_ordered_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let now = Utc::now();
        let old = result("api", now - chrono::Duration::days(40));
        let recent: Vec<ProbeResult> = (0..5)
            .map(|i| result("api", now - chrono::Duration::seconds(i)))
            .collect();
        let mut batch = Batch::default();
        batch.results.push((old.clone(), now));
        batch
            .results
            .extend(recent.iter().map(|r| (r.clone(), now)));
        storage.write_batch(batch).await.unwrap();
        // The same results again: ignored, not duplicated.
        let mut again = Batch::default();
        again.results.push((recent[0].clone(), now));
        storage.write_batch(again).await.unwrap();
        assert_eq!(
            storage
                .known_result_ids(vec![recent[0].id.to_string(), "x".into()])
                .await
                .unwrap()
                .len(),
            1
        );

        let listed = storage.recent_results("api".into(), 100).await.unwrap();
        assert_eq!(listed.len(), 6);
        assert_eq!(listed[0], recent[0], "newest first");
        assert_eq!(listed[5], old);

        let deleted = storage
            .prune_older_than(now - chrono::Duration::days(30), 2)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        let listed = storage.recent_results("api".into(), 100).await.unwrap();
        assert_eq!(listed, recent);
        storage.health_probe().await.unwrap();
    }

    #[tokio::test]
    async fn finished_hours_are_rolled_up_and_late_results_roll_them_up_again() {
        use crate::rollup::{HOUR_MS, hour_of};
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let now = Utc::now();
        let current = hour_of(now.timestamp_millis());
        let two_hours_ago =
            DateTime::from_timestamp_millis(current - 2 * HOUR_MS + 60_000).unwrap();
        let mut batch = Batch::default();
        for i in 0..4 {
            let mut r = result("api", two_hours_ago + chrono::Duration::seconds(i));
            r.duration_ms = 100.0;
            batch.results.push((r, now));
        }
        let mut failed = ProbeResult::for_test("api", Outcome::Timeout, two_hours_ago);
        failed.duration_ms = 9_000.0;
        batch.results.push((failed, now));
        // The current hour is not over: not rolled up.
        batch.results.push((result("api", now), now));
        storage.write_batch(batch).await.unwrap();

        assert_eq!(storage.roll_up(now, 24).await.unwrap(), 2);
        assert_eq!(storage.roll_up(now, 24).await.unwrap(), 0, "nothing new");
        let (rollups, mark) = storage.rollups_since(current - 3 * HOUR_MS).await.unwrap();
        assert_eq!(mark, Some(current));
        assert_eq!(rollups.len(), 1);
        assert_eq!((rollups[0].total, rollups[0].ok), (5, 4));
        let p50 = rollups[0].latency.quantile(0.5).unwrap();
        assert!((p50 - 100.0).abs() < 5.0, "{p50}");

        // A spooled result arrives late for that hour: rolled up again.
        let mut late = Batch::default();
        late.results.push((
            result("api", two_hours_ago + chrono::Duration::minutes(5)),
            now,
        ));
        storage.write_batch(late).await.unwrap();
        assert_eq!(storage.roll_up(now, 24).await.unwrap(), 1);
        let (rollups, _) = storage.rollups_since(current - 3 * HOUR_MS).await.unwrap();
        assert_eq!((rollups[0].total, rollups[0].ok), (6, 5));
        let baseline = storage
            .check_latency("api".into(), current - 3 * HOUR_MS, current)
            .await
            .unwrap();
        assert_eq!(baseline.count(), 5);
    }

    #[tokio::test]
    async fn reopening_runs_migrations_once_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.states.push(("api".into(), CheckState::default()));
        storage.write_batch(batch).await.unwrap();
        drop(storage);
        let storage = Storage::open(dir.path()).unwrap();
        assert_eq!(storage.load_states().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn pruning_keeps_alerts_still_owed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let old = Utc::now() - chrono::Duration::days(40);
        let delivery = |channel: &str| Delivery {
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            channel: channel.into(),
            event: crate::alert::AlertEvent {
                version: "1".into(),
                event: crate::alert::AlertKind::Down,
                check: "api".into(),
                status: crate::rules::Status::Down,
                previous_status: crate::rules::Status::Up,
                since: old,
                incident: None,
                summary: "api is DOWN".into(),
                regions: Default::default(),
                url: None,
                duration_s: None,
                target: String::new(),
                labels: Default::default(),
                region: None,
                screenshot: None,
                screenshot_result: None,
            },
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: old,
            next_attempt_at: old,
            last_error: None,
            group_id: None,
        };
        let (sent, owed) = (delivery("a"), delivery("b"));
        let batch = Batch {
            deliveries: vec![sent.clone(), owed.clone()],
            ..Batch::default()
        };
        storage.write_batch(batch).await.unwrap();
        storage
            .record_attempt(sent.id, DeliveryState::Delivered, Utc::now(), None)
            .await
            .unwrap();
        storage
            .prune_older_than(Utc::now() - chrono::Duration::days(30), 10)
            .await
            .unwrap();
        let pending = storage
            .deliveries_in_state(DeliveryState::Pending, 10)
            .await
            .unwrap();
        assert_eq!(
            pending.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![owed.id]
        );
        assert!(
            storage
                .deliveries_in_state(DeliveryState::Delivered, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
