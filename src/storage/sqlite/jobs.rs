//! `JobStore` on SQLite: hourly roll-ups (one transaction per hour),
//! retention in bounded batches, the health row and the file check.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStorage;
use crate::storage::{JobStore, StorageError};

#[async_trait]
impl JobStore for SqliteStorage {
    async fn roll_up(&self, now: DateTime<Utc>, hours_max: usize) -> Result<usize, StorageError> {
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
                        // Each check's oldest, along the key.
                        let oldest: Option<i64> = conn.query_row(
                            "SELECT MIN((SELECT MIN(started_at_ms) FROM results r WHERE r.check_id = c.id))
                             FROM result_checks c",
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
        let tables: [(&str, &str, i64); 6] = [
            (
                "results",
                // Check by check along the key (no index by time alone).
                "(check_id, started_at_ms, region_id) IN (SELECT r.check_id, r.started_at_ms, r.region_id
                 FROM result_checks c CROSS JOIN results r ON r.check_id = c.id AND r.started_at_ms < ?1 LIMIT ?2)",
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
        // Lookup texts no kept row can name: unseen since before the
        // results' cutoff, with the refresh's slack and a day for results
        // stamped ahead of the clock.
        let texts_cutoff = cutoff
            .saturating_sub(crate::limits::SQLITE_TEXT_SEEN_REFRESH_MS)
            .saturating_sub(86_400_000);
        let lookups: [(&str, &str, i64); 2] = [
            (
                "result_checks",
                "id IN (SELECT id FROM result_checks WHERE seen_ms < ?1 LIMIT ?2)",
                texts_cutoff,
            ),
            (
                "result_texts",
                "id IN (SELECT id FROM result_texts WHERE seen_ms < ?1 LIMIT ?2)",
                texts_cutoff,
            ),
        ];
        let mut total = 0;
        for (table, condition, cutoff_ms) in tables.into_iter().chain(lookups) {
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

    async fn health_probe(&self) -> Result<(), StorageError> {
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

    fn check_file(&self) -> Result<(), StorageError> {
        self.file.check()
    }
}

/// Rolls up the results of the hour starting at `hour` into
/// `latency_hourly`, in one transaction, and moves the mark past it.
fn roll_up_hour(conn: &mut Connection, hour: i64, start: i64) -> Result<(), StorageError> {
    use crate::rollup::{HOUR_MS, HourTally};
    let tx = conn.transaction()?;
    let mut tally = HourTally::new(hour);
    {
        // Check by check along the key (CROSS JOIN keeps that order).
        let mut stmt = tx.prepare_cached(
            "SELECT c.name, t.text, r.outcome, r.duration_us, r.body
             FROM result_checks c CROSS JOIN results r
                 ON r.check_id = c.id AND r.started_at_ms >= ?1 AND r.started_at_ms < ?2
             JOIN result_texts t ON t.id = r.region_id",
        )?;
        let mut rows = stmt.query(params![hour, hour + HOUR_MS])?;
        let ok_code = super::compact::outcome_code(crate::result::Outcome::Ok);
        while let Some(row) = rows.next()? {
            let ok = row.get::<_, i64>(2)? == ok_code;
            let ms = super::compact::duration_ms(
                row.get(3)?,
                row.get::<_, Option<String>>(4)?.as_deref(),
            )?;
            tally.add(row.get(0)?, row.get(1)?, ok, ms);
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
        for rollup in tally.rollups() {
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
