//! `IngestStore` on SQLite: the batch transaction (results, states, events,
//! probe events, outbox rows, screenshots), the restore reads, silences.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, json_bodies};
use crate::alert::silence::Silence;
use crate::limits;
use crate::rules::{CheckState, ProbeEvent};
use crate::storage::{Batch, IngestStore, Screenshot, StorageError};

#[async_trait]
impl IngestStore for SqliteStorage {
    async fn known_result_ids(&self, ids: Vec<String>) -> Result<Vec<String>, StorageError> {
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

    async fn write_batch(&self, batch: Batch) -> Result<(), StorageError> {
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

    async fn load_states(&self) -> Result<Vec<(String, CheckState)>, StorageError> {
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

    async fn last_probe_events(&self) -> Result<Vec<ProbeEvent>, StorageError> {
        self.with(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM probe_events p WHERE at_ms = (SELECT MAX(at_ms) FROM probe_events q WHERE q.region = p.region)",
                [],
            )
        })
        .await
    }

    async fn insert_silence(&self, silence: &Silence) -> Result<(), StorageError> {
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

    async fn delete_silence(&self, id: uuid::Uuid) -> Result<bool, StorageError> {
        self.with(move |conn| {
            Ok(conn.execute(
                "DELETE FROM silences WHERE id = ?1",
                params![id.to_string()],
            )? > 0)
        })
        .await
    }

    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StorageError> {
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM silences WHERE expires_at_ms <= ?1",
                params![now.timestamp_millis()],
            )?;
            json_bodies(conn, "SELECT body FROM silences ORDER BY expires_at_ms", [])
        })
        .await
    }
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
