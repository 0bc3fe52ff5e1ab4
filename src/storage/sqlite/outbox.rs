//! `OutboxStore` on SQLite: due rows, groups, attempts; and the one reader
//! of outbox rows that the history listing shares.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::SqliteStorage;
use crate::alert::AlertEvent;
use crate::limits;
use crate::storage::{Delivery, DeliveryState, OutboxStore, StorageError};

#[async_trait]
impl OutboxStore for SqliteStorage {
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1
             ORDER BY attempts, next_attempt_at_ms, id LIMIT ?2",
            Value::Integer(now.timestamp_millis()),
            limit,
        )
        .await
    }

    async fn next_due_deliveries(
        &self,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, DateTime<Utc>)>, StorageError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, next_attempt_at_ms FROM outbox WHERE state = 'pending' ORDER BY next_attempt_at_ms LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at) = row?;
                if let (Ok(id), Some(at)) = (id.parse(), DateTime::from_timestamp_millis(at)) {
                    out.push((id, at));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn claim_group(
        &self,
        channel: String,
        group_id: uuid::Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let group = group_id.to_string();
        let claimed = group.clone();
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET group_id = ?1 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND channel = ?2 AND group_id IS NULL
                   ORDER BY created_at_ms, id LIMIT ?3)",
                params![claimed, channel, limit as i64],
            )?;
            Ok(())
        })
        .await?;
        self.group_members(group).await
    }

    async fn group_members(&self, group_id: String) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE group_id = ?1 ORDER BY created_at_ms, id LIMIT ?2",
            Value::Text(group_id),
            limits::ALERT_GROUP_MAX,
        )
        .await
    }

    async fn record_attempt(
        &self,
        id: uuid::Uuid,
        state: DeliveryState,
        next_attempt_at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StorageError> {
        let now = self.clock.now().timestamp_millis();
        self.with(move |conn| {
            let done = (state != DeliveryState::Pending).then_some(now);
            conn.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at_ms = ?3,
                 last_error = ?4, done_at_ms = ?5 WHERE id = ?1",
                params![
                    id.to_string(),
                    state.as_str(),
                    next_attempt_at.timestamp_millis(),
                    error,
                    done
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn recent_deliveries(
        &self,
        channel: String,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            "SELECT id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id
             FROM outbox WHERE channel = ?1 ORDER BY created_at_ms DESC, rowid DESC LIMIT ?2",
            Value::Text(channel),
            limit,
        )
        .await
    }

    async fn attachment(&self, result_id: String) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT png FROM screenshots WHERE result_id = ?1",
                    params![result_id],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()?)
        })
        .await
    }
}

impl SqliteStorage {
    pub(super) async fn deliveries(
        &self,
        sql: &'static str,
        bound: Value,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![bound, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    id,
                    event_id,
                    channel,
                    event,
                    state,
                    attempts,
                    created,
                    next,
                    last_error,
                    group,
                ) = row?;
                // One unreadable row must not stop every other alert.
                let (Ok(id), Ok(event_id), Ok(event)) = (
                    id.parse(),
                    event_id.parse(),
                    serde_json::from_str::<AlertEvent>(&event),
                ) else {
                    tracing::error!(delivery = %id, "an outbox row cannot be read; skipped");
                    continue;
                };
                out.push(Delivery {
                    id,
                    event_id,
                    channel,
                    event,
                    state: DeliveryState::parse(&state),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    created_at: DateTime::from_timestamp_millis(created).unwrap_or_default(),
                    next_attempt_at: DateTime::from_timestamp_millis(next).unwrap_or_default(),
                    last_error,
                    group_id: group.and_then(|g| g.parse().ok()),
                });
            }
            Ok(out)
        })
        .await
    }
}
