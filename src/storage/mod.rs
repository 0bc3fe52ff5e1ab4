//! Durable state, as traits grouped by who uses them, and the handle that
//! carries one backend behind all of them.
//!
//! Each consumer names the trait it needs, so a backend knows what every
//! call is for and a reader sees who writes what: `IngestStore` (the
//! aggregator's ingest, ticks, restore and silences), `OutboxStore` (the
//! alert dispatcher), `HistoryStore` (every read the API, the status page,
//! `/metrics` and the latency baseline make) and `JobStore` (the periodic
//! roll-up and retention jobs, `/health`, the file check), and
//! `CoordinationStore` (leases, replicas and probe contact shared by the
//! replicas of one aggregator, in `coordination.rs`). SQLite, in
//! `sqlite/`, is the default backend, PostgreSQL, in `postgres/`, the one
//! several aggregators share; `tests.rs` is one suite written against the
//! traits, and both backends run it.
//!
//! The traits are object-safe (through `async_trait`: native `async fn` in
//! traits cannot be called on a `dyn`), because the backend will be chosen
//! at run time. `Storage` is the cheap-to-clone handle: it holds the
//! backend and hands each consumer its trait (`storage.ingest()`,
//! `.outbox()`, `.history()`, `.jobs()`), so a call says what it is for;
//! it also carries the clock everything built on it dates by.
//!
//! Invariant: a batch of results, the check states they changed and the
//! events, probe events, deliveries and screenshots they raised are written
//! in one transaction: after a crash either all of it is there or none is,
//! and the probe resends (ids make that safe).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::alert::AlertEvent;
use crate::alert::silence::Silence;
use crate::clock::Clock;
use crate::config::page::Announcement;
use crate::result::ProbeResult;
use crate::rollup::{HourRollup, LatencyHistogram};
use crate::rules::{CheckState, ProbeEvent, Transition};

mod coordination;
pub(crate) mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use coordination::{
    Claim, CoordinationStore, LEADER_LEASE, ProbeContact, Replica, RunNowRequest,
};
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// The database failed a statement or the connection to it (the
    /// backend's own error inside: each backend converts its errors).
    #[error("database: {0}")]
    Database(#[source] BackendError),
    #[error("migrating the database: {0}")]
    Migration(#[source] BackendError),
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
    /// A stored row does not decode (a lookup text gone, a cut blob).
    #[error("a stored row cannot be read back: {0}")]
    Corrupt(String),
}

/// A backend's own error, carried by `StorageError` without naming the
/// backend's types.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What `JobStore::prune_older_than` deletes before, per kind of row, in
/// ms: results, screenshots and finished deliveries at `cutoff`; incident
/// and probe events kept at least `EVENTS_KEPT_MIN` and roll-ups
/// `ROLLUPS_KEPT` before `now`, whatever `cutoff` says. Every backend
/// prunes by these.
pub(crate) struct Cutoffs {
    pub(crate) results: i64,
    pub(crate) events: i64,
    pub(crate) rollups: i64,
}

impl Cutoffs {
    pub(crate) fn for_pruning(cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Cutoffs {
        let at_least = |keep: std::time::Duration| {
            let floor = chrono::Duration::from_std(keep)
                .ok()
                .and_then(|keep| now.checked_sub_signed(keep))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            cutoff.min(floor).timestamp_millis()
        };
        Cutoffs {
            results: cutoff.timestamp_millis(),
            events: at_least(crate::limits::EVENTS_KEPT_MIN),
            rollups: at_least(crate::limits::ROLLUPS_KEPT),
        }
    }
}

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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub(crate) fn parse(text: &str) -> DeliveryState {
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

/// A check's rule state as stored, with its revision: every write of a
/// state adds one, so a copy held elsewhere can tell whether it is current.
#[derive(Clone, Debug, PartialEq)]
pub struct Revised {
    pub state: CheckState,
    pub revision: u64,
}

/// What a decision asks an ingest transaction to load.
#[derive(Clone, Debug, Default)]
pub struct Load {
    /// Checks whose stored state the decision reads, each with the revision
    /// of the copy the caller already holds (`None`: it holds none).
    pub checks: Vec<(String, Option<u64>)>,
    /// Results the decision needs to know are stored already.
    pub results: Vec<ResultKey>,
}

/// What names a stored result: its id, and the run it stands for (check,
/// region, start). SQLite finds a result by the run (it keeps no id that
/// `ProbeResult::run_id` can compute), PostgreSQL by the id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResultKey {
    pub id: String,
    pub check: String,
    pub region: String,
    pub started_at_ms: i64,
}

impl ResultKey {
    pub fn of(result: &ProbeResult) -> ResultKey {
        ResultKey {
            id: result.id.to_string(),
            check: result.check.clone(),
            region: result.region.clone(),
            started_at_ms: result.started_at.timestamp_millis(),
        }
    }
}

/// A check's stored state, as an ingest transaction found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// Stored at the revision the caller named: its copy is current (the
    /// state is not read back, which keeps a busy ingest cheap).
    Current,
    /// Stored at another revision than the caller's: this is the truth.
    Changed(Revised),
    /// Never stored.
    Absent,
}

/// What an ingest transaction loaded, for the decision it runs.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every check of `Load::checks`.
    pub states: std::collections::HashMap<String, Stored>,
    /// The ids of `Load::results` that are stored already.
    pub known_ids: HashSet<String>,
}

/// The decision an ingest transaction runs between its reads and its
/// writes: pure (no I/O, no clock), from what was loaded to the batch to
/// write and whatever else the caller wants back (`outcome`).
pub type Decision = Box<dyn FnOnce(Loaded) -> Decided + Send>;

/// A decision's result.
pub struct Decided {
    pub batch: Batch,
    pub outcome: Box<dyn std::any::Any + Send>,
}

/// What an ingest transaction committed: the batch as written, the
/// revision each of its states was written at, and the decision's outcome.
pub struct Committed {
    pub batch: Batch,
    pub revisions: std::collections::HashMap<String, u64>,
    pub outcome: Box<dyn std::any::Any + Send>,
}

/// What the aggregator's ingest, ticks and start-up write and read back:
/// one decision per transaction, and the state it restores from.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// The ids of the results among `keys` that are already stored.
    async fn known_result_ids(&self, keys: Vec<ResultKey>) -> Result<Vec<String>, StorageError>;

    /// In one transaction: loads what `load` names (the checks' states, kept
    /// from every other writer until the commit, and which result ids are
    /// stored), runs `decide` on it, writes the batch it returns and
    /// commits. Two decisions on the same check therefore run one after the
    /// other, each on what the other wrote, whichever process makes them;
    /// nothing in memory has to serialise them. A write that fails commits
    /// nothing. Batch rows already stored (same id) are ignored; states
    /// replace the stored ones at the next revision; late results mark
    /// their hour for another roll-up.
    async fn decide(&self, load: Load, decide: Decision) -> Result<Committed, StorageError>;

    /// Writes a batch that rests on no stored state (probe events, pings),
    /// in one transaction: `decide` without reads.
    async fn write_batch(&self, batch: Batch) -> Result<(), StorageError> {
        let decision: Decision = Box::new(move |_| Decided {
            batch,
            outcome: Box::new(()),
        });
        self.decide(Load::default(), decision).await.map(|_| ())
    }

    /// Every check's stored rule state, with its revision.
    async fn load_states(&self) -> Result<Vec<(String, Revised)>, StorageError>;

    /// Each region's latest probe event: which probes were stale when the
    /// aggregator stopped.
    async fn last_probe_events(&self) -> Result<Vec<ProbeEvent>, StorageError>;

    async fn insert_silence(&self, silence: &Silence) -> Result<(), StorageError>;

    /// The key stored under `name`, storing `fresh` first if there is none:
    /// the first writer's key wins, so every aggregator on one database
    /// signs with the same one.
    async fn keep_key(&self, name: String, fresh: Vec<u8>) -> Result<Vec<u8>, StorageError>;

    /// Deletes a silence; false when there was none with that id.
    async fn delete_silence(&self, id: uuid::Uuid) -> Result<bool, StorageError>;

    /// Silences not yet expired at `now`, soonest to expire first; expired
    /// ones are deleted.
    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StorageError>;
}

/// What the alert dispatcher reads and records of the outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims for `claim.owner` the pending deliveries due by `claim.now`
    /// that no other replica holds (unclaimed, or their claim expired),
    /// fewest attempts then soonest first, at most `limit`, and the other
    /// pending members of their groups with them (a group is sent whole, by
    /// one replica). Claims are taken one replica at a time.
    async fn claim_due(&self, claim: Claim, limit: usize) -> Result<Vec<Delivery>, StorageError>;

    /// The next pending deliveries by when `owner` may send them (due, and
    /// free of another replica's claim), soonest first.
    async fn next_due_deliveries(
        &self,
        owner: String,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, DateTime<Utc>)>, StorageError>;

    /// Folds the pending, ungrouped deliveries of `channel` that no other
    /// replica holds (at most `limit`, oldest first) into group `group_id`,
    /// claimed by `claim.owner`, and returns every member.
    async fn claim_group(
        &self,
        channel: String,
        group_id: uuid::Uuid,
        limit: usize,
        claim: Claim,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Frees the claims `owner` still holds on pending deliveries (a
    /// graceful stop).
    async fn release_claims(&self, owner: String) -> Result<(), StorageError>;

    /// The deliveries folded into a group, oldest first.
    async fn group_members(&self, group_id: String) -> Result<Vec<Delivery>, StorageError>;

    /// Records the outcome of `owner`'s attempt (a finished one is dated by
    /// the backend's clock) and frees its claim. False, and nothing
    /// written, when another replica holds the claim by now (this one's ran
    /// out mid-send: the other's attempt decides).
    async fn record_attempt(
        &self,
        id: uuid::Uuid,
        owner: String,
        state: DeliveryState,
        next_attempt_at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<bool, StorageError>;

    /// The PNG of a stored screenshot, by result id, to attach to an email.
    async fn attachment(&self, result_id: String) -> Result<Option<Vec<u8>>, StorageError>;

    /// The newest deliveries to `channel` (any state), newest first, at most
    /// `limit`: what the channel was last told about each check
    /// (`alert::resend` keeps Alertmanager's firing alerts alive from it).
    async fn recent_deliveries(
        &self,
        channel: String,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError>;
}

/// Every read the API, the status page, `/metrics` and the latency
/// baseline make. Reads only: a backend may serve them from a replica or a
/// second connection.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// The newest `limit` results of a check, newest first.
    async fn recent_results(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<ProbeResult>, StorageError>;

    /// The newest `limit` incident events of a check, newest first.
    async fn recent_events(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError>;

    /// The newest `limit` probe events of every region, newest first.
    async fn recent_probe_events(&self, limit: usize) -> Result<Vec<ProbeEvent>, StorageError>;

    /// Every incident event from `since_ms` on, oldest first, at most
    /// `limit` (the newest, when capped).
    async fn events_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError>;

    /// Every hourly roll-up from `since_ms` on (hour starts), and how far
    /// roll-ups reach (results from there on are not rolled up yet).
    async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<(Vec<HourRollup>, Option<i64>), StorageError>;

    /// Raw results from `since_ms` on, as (check, region, started_at_ms,
    /// ok, duration_ms), newest first: the hour not rolled up yet. At most
    /// `limit` rows (the newest).
    async fn raw_latencies_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, i64, bool, f64)>, StorageError>;

    /// `check`'s ok run times over the hours [from_ms, to_ms), all
    /// regions merged, from the roll-ups: the baseline of
    /// `p95_above_baseline`.
    async fn check_latency(
        &self,
        check: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<LatencyHistogram, StorageError>;

    /// Run times (ms) of `check`'s ok results from `since_ms` on, newest
    /// first, at most `limit`: the recent window of `p95_above_baseline`.
    async fn recent_ok_latencies(
        &self,
        check: String,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<f64>, StorageError>;

    /// Which of `result_ids` have a stored screenshot (the status page
    /// links those).
    async fn screenshots_present(
        &self,
        result_ids: Vec<String>,
    ) -> Result<HashSet<String>, StorageError>;

    /// A stored screenshot by result id: its check and PNG.
    async fn screenshot(
        &self,
        result_id: String,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError>;

    /// The newest deliveries in `state` (for the API's alert listing).
    async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Deliveries still owed (pending), for the outbox backlog metric.
    async fn pending_delivery_count(&self) -> Result<u64, StorageError>;
}

/// The periodic jobs' side of storage (roll-up, retention) and the checks
/// that storage still works (`/health`, the tick loop's file check).
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Rolls up the results of finished hours (before `now`'s hour) into
    /// hourly roll-ups: hours late results landed in, then the hours since
    /// the last roll-up, at most `hours_max` per call, each in its own
    /// transaction. Returns how many hours were rolled up; call again while
    /// it returns `hours_max`.
    async fn roll_up(&self, now: DateTime<Utc>, hours_max: usize) -> Result<usize, StorageError>;

    /// Deletes results, screenshots and finished deliveries older than
    /// `cutoff`, `batch` rows per transaction, so pruning never stalls
    /// ingestion. Incident and probe events are kept at least
    /// `limits::EVENTS_KEPT_MIN` (the status page's 90 days) and hourly
    /// roll-ups `limits::ROLLUPS_KEPT` before the backend's clock, whatever
    /// `cutoff` says; pending deliveries are never pruned (alerts still
    /// owed). Returns the rows deleted.
    async fn prune_older_than(
        &self,
        cutoff: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StorageError>;

    /// A real write and read, for `/health`.
    async fn health_probe(&self) -> Result<(), StorageError>;

    /// An error if the storage the backend opened is gone (for SQLite: the
    /// file deleted or replaced), logged once; cheap enough for every tick.
    fn check_file(&self) -> Result<(), StorageError>;
}

/// The status page's announcements written through the API (#17): stored
/// whole, by id; the ones written in YAML live in the config instead.
#[async_trait]
pub trait AnnouncementStore: Send + Sync {
    /// Stores `announcement`, replacing the one with its id if any.
    async fn put_announcement(&self, announcement: Announcement) -> Result<(), StorageError>;

    /// One announcement by id.
    async fn announcement(&self, id: String) -> Result<Option<Announcement>, StorageError>;

    /// The newest `limit` announcements by creation, newest first.
    async fn list_announcements(&self, limit: usize) -> Result<Vec<Announcement>, StorageError>;

    /// Deletes one; false when there was none with that id.
    async fn delete_announcement(&self, id: String) -> Result<bool, StorageError>;

    /// How many are stored (the API refuses more than a bound).
    async fn announcement_count(&self) -> Result<usize, StorageError>;
}

/// A backend: everything the consumers need, in one object.
pub trait Backend:
    IngestStore + OutboxStore + HistoryStore + JobStore + AnnouncementStore + CoordinationStore
{
}

impl<T> Backend for T where
    T: IngestStore + OutboxStore + HistoryStore + JobStore + AnnouncementStore + CoordinationStore
{
}

/// The handle consumers hold: one backend behind every trait, and the clock
/// that the backend and everything built on it date by. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    clock: Clock,
}

impl Storage {
    /// Opens (creating and migrating) the SQLite database `dir/lookout.db`,
    /// on the system clock.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        Storage::open_with_clock(dir, Clock::System)
    }

    /// `open`, with bookkeeping times (`updated_at`, `done_at`, the retention
    /// floors) and the aggregator built on it on `clock` (tests).
    pub fn open_with_clock(dir: &Path, clock: Clock) -> Result<Storage, StorageError> {
        let backend = SqliteStorage::open(dir, clock.clone())?;
        Ok(Storage::new(Arc::new(backend), clock))
    }

    /// Connects to the PostgreSQL database at `url` (migrating it), on
    /// `clock`.
    pub async fn connect_postgres(url: &str, clock: Clock) -> Result<Storage, StorageError> {
        let backend = PostgresStorage::connect(url, clock.clone()).await?;
        Ok(Storage::new(Arc::new(backend), clock))
    }

    /// A handle on any backend (which should date by the same `clock`).
    pub fn new(backend: Arc<dyn Backend>, clock: Clock) -> Storage {
        Storage { backend, clock }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// What the aggregator's ingest, ticks and start-up write and restore.
    pub fn ingest(&self) -> &dyn IngestStore {
        &*self.backend
    }

    /// What the alert dispatcher reads and records.
    pub fn outbox(&self) -> &dyn OutboxStore {
        &*self.backend
    }

    /// The reads of the API, the status page, `/metrics` and the baseline.
    pub fn history(&self) -> &dyn HistoryStore {
        &*self.backend
    }

    /// The periodic jobs, `/health` and the file check.
    pub fn jobs(&self) -> &dyn JobStore {
        &*self.backend
    }

    /// `IngestStore::decide` with a typed outcome: `decide` returns the
    /// batch to write and a `T` that comes back with what was committed.
    pub async fn decide<T, F>(&self, load: Load, decide: F) -> Result<(Committed, T), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Loaded) -> (Batch, T) + Send + 'static,
    {
        let decision: Decision = Box::new(move |loaded| {
            let (batch, outcome) = decide(loaded);
            Decided {
                batch,
                outcome: Box::new(outcome),
            }
        });
        let mut committed = self.backend.decide(load, decision).await?;
        let outcome = std::mem::replace(&mut committed.outcome, Box::new(()));
        // The box holds the `T` boxed just above, so this cannot miss; a
        // backend that swapped it would be a bug, reported, not a panic.
        let outcome = outcome.downcast::<T>().map_err(|_| {
            StorageError::Task("the storage backend returned another decision's outcome".into())
        })?;
        Ok((committed, *outcome))
    }

    /// The status page's announcements written through the API.
    pub fn announcements(&self) -> &dyn AnnouncementStore {
        &*self.backend
    }

    /// Leases, the replicas' registry and the probes' shared contact.
    pub fn coordination(&self) -> &dyn CoordinationStore {
        &*self.backend
    }
}
