//! `OutboxStore` on SQLite: due rows, groups, attempts; and the one reader
//! of outbox rows that the history listing shares.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::SqliteStorage;
use crate::alert::AlertEvent;
use crate::limits;
use crate::storage::{Claim, Delivery, DeliveryState, OutboxStore, StorageError};

/// The columns `delivery_rows` reads, in its order.
const DELIVERY_COLUMNS: &str = "id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id";

#[async_trait]
impl OutboxStore for SqliteStorage {
    async fn claim_due(&self, claim: Claim, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        self.with(move |conn| {
            let now = claim.now.timestamp_millis();
            let until = claim.until.timestamp_millis();
            // IMMEDIATE: claims are taken one writer at a time.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE outbox SET claimed_by = ?1, claim_until_ms = ?2 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at_ms <= ?3
                     AND (claim_until_ms IS NULL OR claim_until_ms <= ?3 OR claimed_by = ?1)
                   ORDER BY attempts, next_attempt_at_ms, id LIMIT ?4)",
                params![claim.owner, until, now, limit as i64],
            )?;
            // A group goes whole: its other pending members follow.
            tx.execute(
                "UPDATE outbox SET claimed_by = ?1, claim_until_ms = ?2
                 WHERE state = 'pending' AND group_id IN (
                   SELECT group_id FROM outbox WHERE claimed_by = ?1 AND claim_until_ms = ?2 AND group_id IS NOT NULL)
                   AND (claim_until_ms IS NULL OR claim_until_ms <= ?3 OR claimed_by = ?1)",
                params![claim.owner, until, now],
            )?;
            let claimed = delivery_rows(
                &tx,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM outbox
                     WHERE state = 'pending' AND claimed_by = ?1 AND claim_until_ms = ?2
                     ORDER BY attempts, next_attempt_at_ms, id"
                ),
                params![claim.owner, until],
            )?;
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn next_due_deliveries(
        &self,
        owner: String,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, DateTime<Utc>)>, StorageError> {
        self.with(move |conn| {
            // Another replica's claim holds a row until the claim runs out.
            let mut stmt = conn.prepare_cached(
                "SELECT id, CASE WHEN claimed_by IS NOT NULL AND claimed_by != ?1 AND claim_until_ms > next_attempt_at_ms
                                 THEN claim_until_ms ELSE next_attempt_at_ms END AS due
                 FROM outbox WHERE state = 'pending' ORDER BY due LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![owner, limit as i64], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
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
        claim: Claim,
    ) -> Result<Vec<Delivery>, StorageError> {
        let group = group_id.to_string();
        let claimed = group.clone();
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET group_id = ?1, claimed_by = ?4, claim_until_ms = ?5 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND channel = ?2 AND group_id IS NULL
                     AND (claim_until_ms IS NULL OR claim_until_ms <= ?6 OR claimed_by = ?4)
                   ORDER BY created_at_ms, id LIMIT ?3)",
                params![
                    claimed,
                    channel,
                    limit as i64,
                    claim.owner,
                    claim.until.timestamp_millis(),
                    claim.now.timestamp_millis()
                ],
            )?;
            Ok(())
        })
        .await?;
        self.group_members(group).await
    }

    async fn release_claims(&self, owner: String) -> Result<(), StorageError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET claimed_by = NULL, claim_until_ms = NULL WHERE claimed_by = ?1 AND state = 'pending'",
                params![owner],
            )?;
            Ok(())
        })
        .await
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
        owner: String,
        state: DeliveryState,
        next_attempt_at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<bool, StorageError> {
        let now = self.clock.now().timestamp_millis();
        self.with(move |conn| {
            let done = (state != DeliveryState::Pending).then_some(now);
            let changed = conn.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at_ms = ?3,
                 last_error = ?4, done_at_ms = ?5, claimed_by = NULL, claim_until_ms = NULL
                 WHERE id = ?1 AND (claimed_by IS NULL OR claimed_by = ?6)",
                params![
                    id.to_string(),
                    state.as_str(),
                    next_attempt_at.timestamp_millis(),
                    error,
                    done,
                    owner
                ],
            )?;
            Ok(changed == 1)
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
        self.with(move |conn| delivery_rows(conn, sql, params![bound, limit as i64]))
            .await
    }
}

/// The deliveries `sql` selects (its columns `DELIVERY_COLUMNS`); a row
/// that cannot be read is logged and skipped.
fn delivery_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Delivery>, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| {
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
        let (id, event_id, channel, event, state, attempts, created, next, last_error, group) =
            row?;
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
}
