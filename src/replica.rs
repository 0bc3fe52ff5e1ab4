//! This aggregator process as one replica among several on one database:
//! its identity, the leader's lease it takes and renews (the leader alone
//! runs the periodic jobs), and its record in the replicas' registry
//! (`GET /api/v1/aggregators`, `/health`).
//!
//! On SQLite there is one replica and it always leads (it takes no lease:
//! a restart after SIGKILL must not wait for its own old one); on PostgreSQL every
//! replica tries for the lease every `LEADER_RENEW_EVERY`, and the one that
//! holds it renews it. A replica that cannot reach the database steps down
//! at once (it could not renew, and another may take the lease when it runs
//! out); one that is stopped gives the lease up, so the next takes it at
//! its next try rather than when the lease runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::limits;
use crate::storage::{LEADER_LEASE, Replica, Storage, StorageError};

/// This process's part among the replicas.
pub struct Replicas {
    storage: Storage,
    id: String,
    listen: String,
    started_at: DateTime<Utc>,
    config_hash: RwLock<String>,
    /// On a database several replicas share (PostgreSQL): the lease is
    /// taken and renewed; otherwise this one always leads.
    shared: bool,
    leader: AtomicBool,
    /// Until when (monotonic) the last renewal lets it lead: a renewal that
    /// hangs must not leave it leading past its lease, which another
    /// replica may take once it runs out.
    leads_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Told when this replica becomes leader (true) or stops being it.
    leading: tokio::sync::watch::Sender<bool>,
}

/// One replica as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaView {
    pub id: String,
    pub listen: String,
    pub config_hash: String,
    pub leader: bool,
    pub last_seen: DateTime<Utc>,
    /// Whether it runs another config than this replica.
    pub config_differs: bool,
}

impl Replicas {
    /// This replica, named `id` (`--replica-id`), or by host and listening
    /// address: a process restarted on the same host and port is the same
    /// replica, and takes back at once the lease and claims it held.
    pub fn new(
        storage: Storage,
        id: Option<String>,
        listen: String,
        config_hash: String,
        shared: bool,
    ) -> Arc<Replicas> {
        let id = id.unwrap_or_else(|| format!("{}/{}", crate::hostname(), listen));
        let started_at = storage.clock().now();
        let (leading, _) = tokio::sync::watch::channel(false);
        Arc::new(Replicas {
            storage,
            id,
            listen,
            started_at,
            config_hash: RwLock::new(config_hash),
            shared,
            leader: AtomicBool::new(false),
            leads_until: std::sync::Mutex::new(None),
            leading,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether other replicas may share this one's database.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Whether this replica holds the leader's lease: its last try took it,
    /// and the lease that try took has not run out (a renewal may hang).
    pub fn is_leader(&self) -> bool {
        if !self.leader.load(Ordering::Relaxed) {
            return false;
        }
        if !self.shared {
            return true;
        }
        let until = *self.leads_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Changes of leadership, for what must be re-read on taking it over.
    pub fn watch_leading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The config this replica runs changed (a reload).
    pub fn set_config_hash(&self, hash: String) {
        *self.config_hash.write().unwrap_or_else(|p| p.into_inner()) = hash;
    }

    pub fn config_hash(&self) -> String {
        self.config_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tries for (or renews) the lease once, and records this replica.
    pub async fn refresh(&self) -> Result<bool, StorageError> {
        if !self.shared {
            self.set_leader(true);
            return Ok(true);
        }
        let asked = tokio::time::Instant::now();
        let now = self.storage.clock().now();
        let until = now + chrono::Duration::from_std(limits::LEADER_LEASE_FOR).unwrap_or_default();
        // Bounded: a renewal that does not come back in time is a failed
        // one (this replica steps down; another may take the lease).
        let held = match tokio::time::timeout(
            limits::LEADER_RENEW_EVERY,
            self.storage
                .coordination()
                .hold_lease(LEADER_LEASE, &self.id, now, until),
        )
        .await
        {
            Ok(held) => held,
            Err(_) => Err(StorageError::Task(format!(
                "the database did not answer the lease's renewal within {} s",
                limits::LEADER_RENEW_EVERY.as_secs()
            ))),
        };
        match held {
            Ok(true) => {
                // Counted from when it was asked, less a renewal's time for
                // the clocks of the replicas not to agree exactly.
                let lasts = limits::LEADER_LEASE_FOR.saturating_sub(limits::LEADER_RENEW_EVERY);
                *self.leads_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(asked + lasts);
                self.set_leader(true);
            }
            Ok(false) | Err(_) => self.set_leader(false),
        }
        held
    }

    fn set_leader(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::Relaxed);
        if was != leader {
            if leader {
                tracing::info!(replica = %self.id, "this replica leads the periodic jobs now");
            } else {
                tracing::warn!(replica = %self.id, "this replica no longer leads the periodic jobs");
            }
            self.leading.send_replace(leader);
        }
    }

    async fn record(&self) -> Result<(), StorageError> {
        self.storage
            .coordination()
            .record_replica(Replica {
                id: self.id.clone(),
                listen: self.listen.clone(),
                config_hash: self.config_hash(),
                started_at: self.started_at,
                last_seen: self.storage.clock().now(),
            })
            .await
    }

    /// Renews the lease and the registry until `cancel`, then gives the
    /// lease up.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut renew = tokio::time::interval(limits::LEADER_RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut record = tokio::time::interval(limits::REPLICA_RECORD_EVERY);
        record.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    match self.refresh().await {
                        Ok(_) => failing = false,
                        Err(error) if !failing => {
                            failing = true;
                            tracing::error!(%error, "cannot reach the database for the leader's lease; not leading");
                        }
                        Err(_) => {}
                    }
                }
                _ = record.tick(), if self.shared => {
                    if let Err(error) = self.record().await {
                        tracing::debug!(%error, "cannot record this replica");
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
        if self.shared && self.is_leader() {
            self.set_leader(false);
            if let Err(error) = self
                .storage
                .coordination()
                .release_lease(LEADER_LEASE, &self.id)
                .await
            {
                tracing::warn!(%error, "cannot give up the leader's lease; it runs out by itself");
            }
        }
    }

    /// Every replica seen lately, this one first, with who leads.
    pub async fn list(&self) -> Result<Vec<ReplicaView>, StorageError> {
        let now = self.storage.clock().now();
        let since =
            now - chrono::Duration::from_std(limits::REPLICA_LIVE_WITHIN).unwrap_or_default();
        let coordination = self.storage.coordination();
        let leader = if self.shared {
            coordination.lease_holder(LEADER_LEASE, now).await?
        } else {
            Some(self.id.clone())
        };
        let mine = self.config_hash();
        let mut seen = coordination.replicas_since(since).await?;
        if !seen.iter().any(|r| r.id == self.id) {
            // Not recorded yet (just started): it is running all the same.
            seen.push(Replica {
                id: self.id.clone(),
                listen: self.listen.clone(),
                config_hash: mine.clone(),
                started_at: self.started_at,
                last_seen: now,
            });
        }
        let mut views: Vec<ReplicaView> = seen
            .into_iter()
            .map(|r| ReplicaView {
                leader: leader.as_deref() == Some(r.id.as_str()),
                config_differs: r.config_hash != mine,
                id: r.id,
                listen: r.listen,
                config_hash: r.config_hash,
                last_seen: r.last_seen,
            })
            .collect();
        views.sort_by_key(|v| (v.id != self.id, v.id.clone()));
        Ok(views)
    }
}
