//! `HistoryStore` on PostgreSQL: the API's, the status page's and the
//! latency baseline's reads, each on a pooled connection of its own.

use std::collections::HashSet;

use async_trait::async_trait;

use super::outbox::DELIVERY_COLUMNS;
use super::{PostgresStorage, big, json_bodies};
use crate::result::ProbeResult;
use crate::rollup::{HourRollup, LatencyHistogram};
use crate::rules::{ProbeEvent, Transition};
use crate::storage::{Delivery, DeliveryState, HistoryStore, StorageError};

#[async_trait]
impl HistoryStore for PostgresStorage {
    async fn recent_results(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<ProbeResult>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM results WHERE check_name = $1 ORDER BY started_at_ms DESC, id DESC LIMIT $2",
                &[&check, &big(limit)],
            )
            .await?;
        json_bodies(&rows)
    }

    async fn recent_events(
        &self,
        check: String,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM events WHERE check_name = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
                &[&check, &big(limit)],
            )
            .await?;
        json_bodies(&rows)
    }

    async fn recent_probe_events(&self, limit: usize) -> Result<Vec<ProbeEvent>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM probe_events ORDER BY at_ms DESC, id DESC LIMIT $1",
                &[&big(limit)],
            )
            .await?;
        json_bodies(&rows)
    }

    async fn events_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM events WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
                &[&since_ms, &big(limit)],
            )
            .await?;
        // Capped, the oldest are the ones left out.
        let mut newest_first: Vec<Transition> = json_bodies(&rows)?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<(Vec<HourRollup>, Option<i64>), StorageError> {
        let client = self.client().await?;
        let mark: Option<i64> = client
            .query_opt("SELECT rolled_until_ms FROM rollup_mark WHERE id = 1", &[])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        let rows = client
            .query(
                "SELECT check_name, region, hour_ms, total, ok, hist FROM latency_hourly WHERE hour_ms >= $1",
                &[&since_ms],
            )
            .await?;
        let rollups = rows
            .iter()
            .map(|row| {
                Ok(HourRollup {
                    check: row.try_get(0)?,
                    region: row.try_get(1)?,
                    hour_ms: row.try_get(2)?,
                    total: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
                    ok: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
                    latency: LatencyHistogram::decode(row.try_get(5)?),
                })
            })
            .collect::<Result<_, StorageError>>()?;
        Ok((rollups, mark))
    }

    async fn raw_latencies_since(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, i64, bool, f64)>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT check_name, region, started_at_ms, outcome = 'ok', duration_ms FROM results
                 WHERE started_at_ms >= $1 ORDER BY started_at_ms DESC LIMIT $2",
                &[&since_ms, &big(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                ))
            })
            .collect()
    }

    async fn check_latency(
        &self,
        check: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<LatencyHistogram, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT hist FROM latency_hourly WHERE check_name = $1 AND hour_ms >= $2 AND hour_ms < $3",
                &[&check, &from_ms, &to_ms],
            )
            .await?;
        let mut merged = LatencyHistogram::new();
        for row in rows {
            merged.merge(&LatencyHistogram::decode(row.try_get(0)?));
        }
        Ok(merged)
    }

    async fn recent_ok_latencies(
        &self,
        check: String,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<f64>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT duration_ms FROM results
                 WHERE check_name = $1 AND started_at_ms >= $2 AND outcome = 'ok'
                 ORDER BY started_at_ms DESC LIMIT $3",
                &[&check, &since_ms, &big(limit)],
            )
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    async fn screenshots_present(
        &self,
        result_ids: Vec<String>,
    ) -> Result<HashSet<String>, StorageError> {
        if result_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT result_id FROM screenshots WHERE result_id = ANY($1)",
                &[&result_ids],
            )
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    async fn screenshot(
        &self,
        result_id: String,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT check_name, png FROM screenshots WHERE result_id = $1",
                &[&result_id],
            )
            .await?;
        match row {
            Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
            None => Ok(None),
        }
    }

    async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2"
            ),
            &[&state.as_str(), &big(limit)],
        )
        .await
    }

    async fn pending_delivery_count(&self) -> Result<u64, StorageError> {
        let client = self.client().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
