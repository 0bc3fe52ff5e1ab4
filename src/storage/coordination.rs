//! What the replicas of one aggregator agree on through the database: who
//! leads the periodic jobs (a lease), which replicas run and with what
//! config, what the probes last told whichever replica they reached, and
//! who is sending which alert (delivery claims, in `OutboxStore`).
//!
//! A lease is a row (name, holder, until): taken when free or expired,
//! renewed by its holder, given up at a graceful stop. Time is the
//! deciding replica's clock; replicas on one database are expected to be
//! within a second or two of each other (NTP), and every lease is many
//! seconds long, so that skew never hands a lease to two holders at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StorageError;

/// The lease whose holder runs the periodic jobs (ticks, roll-up,
/// retention, latency baseline).
pub const LEADER_LEASE: &str = "leader";

/// One aggregator replica as it last recorded itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// `--replica-id`, else the host name and the listening address: a
    /// process restarted on the same host and port is the same replica.
    pub id: String,
    /// The address it serves on, as it was told to listen.
    pub listen: String,
    /// The hash of the checks and alerts it runs (`Config::hash`).
    pub config_hash: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What a region's probe last told any replica. Merged, never replaced:
/// the newest contact and the newest result win, whichever replica heard
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeContact {
    pub region: String,
    /// When its latest result arrived (the receiving replica's clock).
    pub last_result: Option<DateTime<Utc>>,
    /// When it last asked for checks or run-now requests.
    pub last_contact: Option<DateTime<Utc>>,
    /// Its clock's skew on its last batch, and its spool backlog as it last
    /// said; taken from the newest report that has them.
    pub clock_skew_ms: Option<i64>,
    pub spool_pending: Option<u64>,
}

/// A replica's claim on deliveries: `owner` sends them, and no other
/// replica takes them before `until`, after which they are free again (the
/// owner died mid-send, or was cut off).
#[derive(Clone, Debug)]
pub struct Claim {
    pub owner: String,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A fast-confirmation request one replica made, for the replica the
/// region's probe long-polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunNowRequest {
    /// Its number, for telling requests already seen apart.
    pub seq: i64,
    /// The replica that made it (which has it in its own queue already).
    pub origin: String,
    pub region: String,
    pub check: String,
    pub at: DateTime<Utc>,
}

/// Leases, the replicas' registry and the probes' shared contact.
#[async_trait]
pub trait CoordinationStore: Send + Sync {
    /// Takes lease `name` for `holder` until `until` if it is free, expired
    /// at `now`, or already `holder`'s (a renewal). True when `holder`
    /// holds it after the call.
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError>;

    /// Gives up `name` if `holder` holds it (a graceful stop: the next
    /// replica need not wait for the lease to run out).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError>;

    /// Who holds `name` at `now`, if anyone.
    async fn lease_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StorageError>;

    /// Records (inserts or refreshes) one replica.
    async fn record_replica(&self, replica: Replica) -> Result<(), StorageError>;

    /// Every replica seen since `since`, by id.
    async fn replicas_since(&self, since: DateTime<Utc>) -> Result<Vec<Replica>, StorageError>;

    /// Merges what probes told this replica into the shared record.
    async fn record_probe_contacts(&self, contacts: Vec<ProbeContact>) -> Result<(), StorageError>;

    /// What every region's probe last told any replica, by region.
    async fn probe_contacts(&self) -> Result<Vec<ProbeContact>, StorageError>;

    /// Records fast-confirmation requests (region, check) that `origin`
    /// made at `at`, and forgets those older than `forget_before`.
    async fn push_run_now(
        &self,
        origin: &str,
        requests: Vec<(String, String)>,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StorageError>;

    /// The requests made since `since`, oldest first.
    async fn run_now_since(&self, since: DateTime<Utc>)
    -> Result<Vec<RunNowRequest>, StorageError>;
}
