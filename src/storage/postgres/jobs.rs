//! `JobStore` on PostgreSQL: hourly roll-ups (one transaction per hour,
//! holding the roll-up mark against ingestion's late-hour marking),
//! retention in bounded batches, the health row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{PostgresStorage, big};
use crate::rollup::{HOUR_MS, HourTally, hour_of};
use crate::storage::{JobStore, StorageError};

#[async_trait]
impl JobStore for PostgresStorage {
    async fn roll_up(&self, now: DateTime<Utc>, hours_max: usize) -> Result<usize, StorageError> {
        let current_hour = hour_of(now.timestamp_millis());
        let mut client = self.client().await?;
        let mark: Option<i64> = client
            .query_opt("SELECT rolled_until_ms FROM rollup_mark WHERE id = 1", &[])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        let start = match mark {
            Some(mark) => mark,
            None => {
                let oldest: Option<i64> = client
                    .query_one("SELECT MIN(started_at_ms) FROM results", &[])
                    .await?
                    .try_get(0)?;
                hour_of(oldest.unwrap_or(current_hour))
            }
        };
        let mut hours: Vec<i64> = client
            .query(
                "SELECT hour_ms FROM rollup_dirty WHERE hour_ms < $1 ORDER BY hour_ms LIMIT $2",
                &[&start, &big(hours_max)],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut next = start;
        while hours.len() < hours_max && next < current_hour {
            hours.push(next);
            next += HOUR_MS;
        }
        // One transaction per hour, so ingestion waits at most one hour's
        // roll-up for the mark.
        for hour in &hours {
            roll_up_hour(&mut client, *hour, start).await?;
        }
        Ok(hours.len())
    }

    async fn prune_older_than(
        &self,
        cutoff: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StorageError> {
        let crate::storage::Cutoffs {
            results: cutoff,
            events: events_cutoff,
            rollups: rollups_cutoff,
        } = crate::storage::Cutoffs::for_pruning(cutoff, self.clock.now());
        // Pending deliveries are never pruned: they are alerts still owed.
        let statements: [(&str, i64); 6] = [
            (
                "DELETE FROM results WHERE id IN (SELECT id FROM results WHERE started_at_ms < $1 LIMIT $2)",
                cutoff,
            ),
            (
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at_ms < $1 LIMIT $2)",
                events_cutoff,
            ),
            (
                "DELETE FROM probe_events WHERE id IN (SELECT id FROM probe_events WHERE at_ms < $1 LIMIT $2)",
                events_cutoff,
            ),
            (
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at_ms < $1 AND state <> 'pending' LIMIT $2)",
                cutoff,
            ),
            (
                "DELETE FROM latency_hourly WHERE (check_name, hour_ms, region) IN
                 (SELECT check_name, hour_ms, region FROM latency_hourly WHERE hour_ms < $1 LIMIT $2)",
                rollups_cutoff,
            ),
            (
                "DELETE FROM screenshots WHERE result_id IN (SELECT result_id FROM screenshots WHERE at_ms < $1 LIMIT $2)",
                cutoff,
            ),
        ];
        let client = self.client().await?;
        let mut total = 0;
        for (sql, cutoff_ms) in statements {
            loop {
                let deleted = client.execute(sql, &[&cutoff_ms, &big(batch)]).await?;
                let deleted = usize::try_from(deleted).unwrap_or(usize::MAX);
                total += deleted;
                if deleted < batch {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }

    async fn health_probe(&self) -> Result<(), StorageError> {
        let now = self.clock.now().timestamp_millis();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO health_probe (id, touched_at_ms) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET touched_at_ms = excluded.touched_at_ms",
                &[&now],
            )
            .await?;
        let read: Option<i64> = client
            .query_opt("SELECT touched_at_ms FROM health_probe WHERE id = 1", &[])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        // Another replica may have touched it since: newer is as good.
        if read.is_some_and(|read| read >= now) {
            Ok(())
        } else {
            Err(StorageError::Task("health row did not read back".into()))
        }
    }

    /// There is no file: a server that went away fails the next statement
    /// and `health_probe`.
    fn check_file(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Rolls up the results of the hour starting at `hour` into
/// `latency_hourly`, in one transaction, and moves the mark past it.
async fn roll_up_hour(
    client: &mut deadpool_postgres::Client,
    hour: i64,
    start: i64,
) -> Result<(), StorageError> {
    let tx = client.transaction().await?;
    // Exclusively: a batch writing late results into this hour either
    // committed before (its results are read below) or waits and then
    // marks the hour dirty for another round.
    tx.execute("SELECT 1 FROM rollup_mark WHERE id = 1 FOR UPDATE", &[])
        .await?;
    let rows = tx
        .query(
            "SELECT check_name, region, outcome = 'ok', duration_ms FROM results
             WHERE started_at_ms >= $1 AND started_at_ms < $2",
            &[&hour, &(hour + HOUR_MS)],
        )
        .await?;
    let mut tally = HourTally::new(hour);
    for row in rows {
        tally.add(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
    }
    tx.execute("DELETE FROM latency_hourly WHERE hour_ms = $1", &[&hour])
        .await?;
    for rollup in tally.rollups() {
        tx.execute(
            "INSERT INTO latency_hourly (check_name, region, hour_ms, total, ok, hist)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &rollup.check,
                &rollup.region,
                &rollup.hour_ms,
                &i64::try_from(rollup.total).unwrap_or(i64::MAX),
                &i64::try_from(rollup.ok).unwrap_or(i64::MAX),
                &rollup.latency.encode(),
            ],
        )
        .await?;
    }
    tx.execute("DELETE FROM rollup_dirty WHERE hour_ms = $1", &[&hour])
        .await?;
    let reached = (hour + HOUR_MS).max(start);
    tx.execute(
        "UPDATE rollup_mark SET rolled_until_ms = GREATEST(COALESCE(rolled_until_ms, $1), $1) WHERE id = 1",
        &[&reached],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
