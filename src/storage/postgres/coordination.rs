//! `CoordinationStore` on PostgreSQL: the leader's lease, the replicas'
//! registry and the probes' contact as the replicas share them. Each
//! statement is one atomic upsert, so two replicas taking a lease at once
//! leave exactly one holder.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStorage;
use crate::limits;
use crate::storage::{CoordinationStore, ProbeContact, Replica, RunNowRequest, StorageError};

#[async_trait]
impl CoordinationStore for PostgresStorage {
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                 WHERE leases.holder = excluded.holder OR leases.until_ms <= $4",
                &[
                    &name,
                    &holder,
                    &until.timestamp_millis(),
                    &now.timestamp_millis(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }

    async fn lease_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT holder FROM leases WHERE name = $1 AND until_ms > $2",
                &[&name, &now.timestamp_millis()],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    async fn record_replica(&self, replica: Replica) -> Result<(), StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO replicas (id, listen, config_hash, started_at_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET listen = excluded.listen, config_hash = excluded.config_hash,
                   last_seen_ms = excluded.last_seen_ms",
                &[
                    &replica.id,
                    &replica.listen,
                    &replica.config_hash,
                    &replica.started_at.timestamp_millis(),
                    &replica.last_seen.timestamp_millis(),
                ],
            )
            .await?;
        // Replicas long gone (every restart is a new one) leave.
        let forgotten = replica.last_seen
            - chrono::Duration::from_std(limits::REPLICA_FORGOTTEN_AFTER).unwrap_or_default();
        client
            .execute(
                "DELETE FROM replicas WHERE last_seen_ms < $1",
                &[&forgotten.timestamp_millis()],
            )
            .await?;
        Ok(())
    }

    async fn replicas_since(&self, since: DateTime<Utc>) -> Result<Vec<Replica>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, listen, config_hash, started_at_ms, last_seen_ms FROM replicas
                 WHERE last_seen_ms >= $1 ORDER BY id",
                &[&since.timestamp_millis()],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Replica {
                id: row.try_get(0)?,
                listen: row.try_get(1)?,
                config_hash: row.try_get(2)?,
                started_at: at(row.try_get(3)?),
                last_seen: at(row.try_get(4)?),
            });
        }
        Ok(out)
    }

    async fn record_probe_contacts(&self, contacts: Vec<ProbeContact>) -> Result<(), StorageError> {
        if contacts.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The newest of each wins (GREATEST skips NULLs); the skew and
        // backlog come with the newest report that has them.
        let statement = tx
            .prepare(
                "INSERT INTO probe_contact (region, last_result_ms, last_contact_ms, reported_at_ms, clock_skew_ms, spool_pending)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (region) DO UPDATE SET
                   last_result_ms = GREATEST(excluded.last_result_ms, probe_contact.last_result_ms),
                   last_contact_ms = GREATEST(excluded.last_contact_ms, probe_contact.last_contact_ms),
                   clock_skew_ms = CASE WHEN excluded.reported_at_ms >= coalesce(probe_contact.reported_at_ms, 0)
                     THEN coalesce(excluded.clock_skew_ms, probe_contact.clock_skew_ms) ELSE probe_contact.clock_skew_ms END,
                   spool_pending = CASE WHEN excluded.reported_at_ms >= coalesce(probe_contact.reported_at_ms, 0)
                     THEN coalesce(excluded.spool_pending, probe_contact.spool_pending) ELSE probe_contact.spool_pending END,
                   reported_at_ms = GREATEST(excluded.reported_at_ms, probe_contact.reported_at_ms)",
            )
            .await?;
        // In region order, so that two replicas' merges never wait for
        // each other in a circle.
        let mut contacts = contacts;
        contacts.sort_by(|a, b| a.region.cmp(&b.region));
        for contact in &contacts {
            let reported = contact.last_contact.max(contact.last_result);
            tx.execute(
                &statement,
                &[
                    &contact.region,
                    &contact.last_result.map(|t| t.timestamp_millis()),
                    &contact.last_contact.map(|t| t.timestamp_millis()),
                    &reported.map(|t| t.timestamp_millis()),
                    &contact.clock_skew_ms,
                    &contact
                        .spool_pending
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn probe_contacts(&self) -> Result<Vec<ProbeContact>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT region, last_result_ms, last_contact_ms, clock_skew_ms, spool_pending
                 FROM probe_contact ORDER BY region",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(ProbeContact {
                region: row.try_get(0)?,
                last_result: row.try_get::<_, Option<i64>>(1)?.map(at),
                last_contact: row.try_get::<_, Option<i64>>(2)?.map(at),
                clock_skew_ms: row.try_get(3)?,
                spool_pending: row
                    .try_get::<_, Option<i64>>(4)?
                    .map(|n| u64::try_from(n).unwrap_or(0)),
            });
        }
        Ok(out)
    }

    async fn push_run_now(
        &self,
        origin: &str,
        requests: Vec<(String, String)>,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let (regions, checks): (Vec<String>, Vec<String>) = requests.into_iter().unzip();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO run_now (origin, region, check_name, at_ms)
                 SELECT $1, region, check_name, $4 FROM unnest($2::text[], $3::text[]) AS r(region, check_name)",
                &[&origin, &regions, &checks, &at.timestamp_millis()],
            )
            .await?;
        client
            .execute(
                "DELETE FROM run_now WHERE at_ms < $1",
                &[&forget_before.timestamp_millis()],
            )
            .await?;
        Ok(())
    }

    async fn run_now_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RunNowRequest>, StorageError> {
        let client = self.client().await?;
        // By time, not by number: numbers of concurrent inserts may commit
        // out of order; the caller skips what it has seen.
        let rows = client
            .query(
                "SELECT seq, origin, region, check_name, at_ms FROM run_now WHERE at_ms >= $1 ORDER BY seq LIMIT $2",
                &[&since.timestamp_millis(), &super::big(limits::RUN_NOW_SHARED_MAX)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(RunNowRequest {
                seq: row.try_get(0)?,
                origin: row.try_get(1)?,
                region: row.try_get(2)?,
                check: row.try_get(3)?,
                at: at(row.try_get(4)?),
            });
        }
        Ok(out)
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
