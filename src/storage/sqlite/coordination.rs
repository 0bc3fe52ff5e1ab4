//! `CoordinationStore` on SQLite: one process owns the file, so the lease
//! is always its own; the tables are kept all the same, so that `serve`
//! and `aggregator` run the same code on either backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStorage;
use crate::limits;
use crate::storage::{CoordinationStore, ProbeContact, Replica, RunNowRequest, StorageError};

#[async_trait]
impl CoordinationStore for SqliteStorage {
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |conn| {
            let changed = conn.execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                 WHERE leases.holder = excluded.holder OR leases.until_ms <= ?4",
                params![name, holder, until.timestamp_millis(), now.timestamp_millis()],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
        .await
    }

    async fn lease_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StorageError> {
        let name = name.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT holder FROM leases WHERE name = ?1 AND until_ms > ?2",
                    params![name, now.timestamp_millis()],
                    |row| row.get::<_, String>(0),
                )
                .optional()?)
        })
        .await
    }

    async fn record_replica(&self, replica: Replica) -> Result<(), StorageError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO replicas (id, listen, config_hash, started_at_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET listen = excluded.listen, config_hash = excluded.config_hash,
                   last_seen_ms = excluded.last_seen_ms",
                params![
                    replica.id,
                    replica.listen,
                    replica.config_hash,
                    replica.started_at.timestamp_millis(),
                    replica.last_seen.timestamp_millis()
                ],
            )?;
            // Replicas long gone (every restart is a new one) leave.
            let forgotten = replica.last_seen
                - chrono::Duration::from_std(limits::REPLICA_FORGOTTEN_AFTER).unwrap_or_default();
            conn.execute(
                "DELETE FROM replicas WHERE last_seen_ms < ?1",
                params![forgotten.timestamp_millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn replicas_since(&self, since: DateTime<Utc>) -> Result<Vec<Replica>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, listen, config_hash, started_at_ms, last_seen_ms FROM replicas
                 WHERE last_seen_ms >= ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![since.timestamp_millis()], |row| {
                Ok(Replica {
                    id: row.get(0)?,
                    listen: row.get(1)?,
                    config_hash: row.get(2)?,
                    started_at: at(row.get(3)?),
                    last_seen: at(row.get(4)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn record_probe_contacts(&self, contacts: Vec<ProbeContact>) -> Result<(), StorageError> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                // The newest of each wins; the skew and backlog come with the
                // newest report that has them.
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO probe_contact (region, last_result_ms, last_contact_ms, reported_at_ms, clock_skew_ms, spool_pending)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (region) DO UPDATE SET
                       last_result_ms = max(coalesce(excluded.last_result_ms, probe_contact.last_result_ms), coalesce(probe_contact.last_result_ms, excluded.last_result_ms)),
                       last_contact_ms = max(coalesce(excluded.last_contact_ms, probe_contact.last_contact_ms), coalesce(probe_contact.last_contact_ms, excluded.last_contact_ms)),
                       clock_skew_ms = CASE WHEN excluded.reported_at_ms >= coalesce(probe_contact.reported_at_ms, 0)
                         THEN coalesce(excluded.clock_skew_ms, probe_contact.clock_skew_ms) ELSE probe_contact.clock_skew_ms END,
                       spool_pending = CASE WHEN excluded.reported_at_ms >= coalesce(probe_contact.reported_at_ms, 0)
                         THEN coalesce(excluded.spool_pending, probe_contact.spool_pending) ELSE probe_contact.spool_pending END,
                       reported_at_ms = max(coalesce(excluded.reported_at_ms, 0), coalesce(probe_contact.reported_at_ms, 0))",
                )?;
                for contact in &contacts {
                    let reported = contact.last_contact.max(contact.last_result);
                    stmt.execute(params![
                        contact.region,
                        contact.last_result.map(|t| t.timestamp_millis()),
                        contact.last_contact.map(|t| t.timestamp_millis()),
                        reported.map(|t| t.timestamp_millis()),
                        contact.clock_skew_ms,
                        contact.spool_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn probe_contacts(&self) -> Result<Vec<ProbeContact>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT region, last_result_ms, last_contact_ms, clock_skew_ms, spool_pending
                 FROM probe_contact ORDER BY region",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(ProbeContact {
                    region: row.get(0)?,
                    last_result: row.get::<_, Option<i64>>(1)?.map(at),
                    last_contact: row.get::<_, Option<i64>>(2)?.map(at),
                    clock_skew_ms: row.get(3)?,
                    spool_pending: row
                        .get::<_, Option<i64>>(4)?
                        .map(|n| u64::try_from(n).unwrap_or(0)),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn push_run_now(
        &self,
        origin: &str,
        requests: Vec<(String, String)>,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let origin = origin.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO run_now (origin, region, check_name, at_ms) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (region, check) in &requests {
                    stmt.execute(params![origin, region, check, at.timestamp_millis()])?;
                }
            }
            tx.execute(
                "DELETE FROM run_now WHERE at_ms < ?1",
                params![forget_before.timestamp_millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn run_now_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RunNowRequest>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, origin, region, check_name, at_ms FROM run_now WHERE at_ms >= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![since.timestamp_millis(), limits::RUN_NOW_SHARED_MAX as i64],
                |row| {
                    Ok(RunNowRequest {
                        seq: row.get(0)?,
                        origin: row.get(1)?,
                        region: row.get(2)?,
                        check: row.get(3)?,
                        at: at(row.get(4)?),
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
