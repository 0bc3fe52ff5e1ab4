//! `HistoryStore` on SQLite: the API's, the status page's and the latency
//! baseline's reads. The long ones (status page, baselines) go to the
//! read-only connection, so they never queue behind ingestion.

use std::collections::HashSet;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, compact, json_bodies};
use crate::result::{Outcome, ProbeResult};
use crate::rollup::{HourRollup, LatencyHistogram};
use crate::rules::{ProbeEvent, Transition};
use crate::storage::{Delivery, DeliveryState, HistoryStore, StorageError};

#[async_trait]
impl HistoryStore for SqliteStorage {
    async fn recent_results(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<ProbeResult>, StorageError> {
        self.with(move |conn| {
            let Some(check_id) = compact::check_id(conn, &check)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM results r WHERE r.check_id = ?1
                 ORDER BY r.started_at_ms DESC, r.region_id DESC LIMIT ?2",
                compact::COLUMNS
            ))?;
            let mut rows = stmt.query(params![check_id, limit as i64])?;
            let mut texts = compact::Texts::new(conn);
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(compact::decode(check.clone(), row, 0, &mut texts)?);
            }
            Ok(out)
        })
        .await
    }

    async fn recent_events(
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

    async fn recent_probe_events(&self, limit: usize) -> Result<Vec<ProbeEvent>, StorageError> {
        self.with(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM probe_events ORDER BY at_ms DESC, id DESC LIMIT ?1",
                params![limit as i64],
            )
        })
        .await
    }

    async fn events_since(
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

    async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<(Vec<HourRollup>, Option<i64>), StorageError> {
        self.read(move |conn| {
            let mark: Option<i64> = conn
                .query_row("SELECT rolled_until_ms FROM rollup_mark", [], |row| row.get(0))
                .optional()?;
            let mut stmt = conn.prepare_cached(
                "SELECT check_name, region, hour_ms, total, ok, hist FROM latency_hourly WHERE hour_ms >= ?1",
            )?;
            let rows = stmt.query_map(params![since_ms], |row| {
                let hist: Vec<u8> = row.get(5)?;
                Ok(HourRollup {
                    check: row.get(0)?,
                    region: row.get(1)?,
                    hour_ms: row.get(2)?,
                    total: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    ok: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                    latency: LatencyHistogram::decode(&hist),
                })
            })?;
            Ok((rows.collect::<Result<_, _>>()?, mark))
        })
        .await
    }

    async fn raw_latencies_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, i64, bool, f64)>, StorageError> {
        self.read(move |conn| {
            // Check by check along the key (CROSS JOIN keeps that order):
            // the table has no index by time alone.
            let mut stmt = conn.prepare_cached(
                "SELECT c.name, t.text, r.started_at_ms, r.outcome, r.duration_us, r.body
                 FROM result_checks c CROSS JOIN results r ON r.check_id = c.id AND r.started_at_ms >= ?1
                 JOIN result_texts t ON t.id = r.region_id
                 ORDER BY r.started_at_ms DESC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![since_ms, limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get::<_, i64>(3)? == compact::outcome_code(Outcome::Ok),
                    compact::duration_ms(row.get(4)?, row.get::<_, Option<String>>(5)?.as_deref())?,
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn check_latency(
        &self,
        check: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<LatencyHistogram, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT hist FROM latency_hourly WHERE check_name = ?1 AND hour_ms >= ?2 AND hour_ms < ?3",
            )?;
            let rows = stmt.query_map(params![check, from_ms, to_ms], |row| row.get::<_, Vec<u8>>(0))?;
            let mut merged = LatencyHistogram::new();
            for row in rows {
                merged.merge(&LatencyHistogram::decode(&row?));
            }
            Ok(merged)
        })
        .await
    }

    async fn recent_ok_latencies(
        &self,
        check: String,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<f64>, StorageError> {
        self.read(move |conn| {
            let Some(check_id) = compact::check_id(conn, &check)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(
                "SELECT duration_us, body FROM results
                 WHERE check_id = ?1 AND started_at_ms >= ?2 AND outcome = ?3
                 ORDER BY started_at_ms DESC LIMIT ?4",
            )?;
            let ok = compact::outcome_code(Outcome::Ok);
            let mut rows = stmt.query(params![check_id, since_ms, ok, limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(compact::duration_ms(
                    row.get(0)?,
                    row.get::<_, Option<String>>(1)?.as_deref(),
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn screenshots_present(
        &self,
        result_ids: Vec<String>,
    ) -> Result<HashSet<String>, StorageError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT 1 FROM screenshots WHERE result_id = ?1")?;
            let mut present = HashSet::new();
            for id in result_ids {
                if stmt.exists(params![id])? {
                    present.insert(id);
                }
            }
            Ok(present)
        })
        .await
    }

    async fn screenshot(
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

    async fn deliveries_in_state(
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

    async fn pending_delivery_count(&self) -> Result<u64, StorageError> {
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
}

impl SqliteStorage {
    /// Rows of JSON `body` selected by `sql` (params: check, limit), decoded.
    pub(super) async fn newest_bodies<T>(
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
}
