//! `OutboxStore` on PostgreSQL: due rows, groups, attempts; and the one
//! reader of outbox rows that the history listing shares.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::{PostgresStorage, big};
use crate::alert::AlertEvent;
use crate::limits;
use crate::storage::{Claim, Delivery, DeliveryState, OutboxStore, StorageError};

/// The key of the advisory lock deliveries are claimed under.
const CLAIM_LOCK: i64 = 0x4c6f_6f6b_6f75_7402;

/// The columns `delivery_from` reads, in its order.
pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, channel, event, state, attempts, created_at_ms, next_attempt_at_ms, last_error, group_id";

#[async_trait]
impl OutboxStore for PostgresStorage {
    async fn claim_due(&self, claim: Claim, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let now = claim.now.timestamp_millis();
        let until = claim.until.timestamp_millis();
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // One replica claims at a time: alerts are few, and a group must
            // never be split between two claims.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
                .await?;
            tx.execute(
                "UPDATE outbox SET claimed_by = $1, claim_until_ms = $2 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at_ms <= $3
                     AND (claim_until_ms IS NULL OR claim_until_ms <= $3 OR claimed_by = $1)
                   ORDER BY attempts, next_attempt_at_ms, id LIMIT $4)",
                &[&claim.owner, &until, &now, &big(limit)],
            )
            .await?;
            // A group goes whole: its other pending members follow.
            tx.execute(
                "UPDATE outbox SET claimed_by = $1, claim_until_ms = $2
                 WHERE state = 'pending' AND group_id IN (
                   SELECT group_id FROM outbox WHERE claimed_by = $1 AND claim_until_ms = $2 AND group_id IS NOT NULL)
                   AND (claim_until_ms IS NULL OR claim_until_ms <= $3 OR claimed_by = $1)",
                &[&claim.owner, &until, &now],
            )
            .await?;
            tx.commit().await?;
        }
        self.deliveries(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox
                 WHERE state = 'pending' AND claimed_by = $1 AND claim_until_ms = $2
                 ORDER BY attempts, next_attempt_at_ms, id"
            ),
            &[&claim.owner, &until],
        )
        .await
    }

    async fn next_due_deliveries(
        &self,
        owner: String,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, DateTime<Utc>)>, StorageError> {
        let client = self.client().await?;
        // Another replica's claim holds a row until the claim runs out.
        let rows = client
            .query(
                "SELECT id, CASE WHEN claimed_by IS NOT NULL AND claimed_by <> $1 AND claim_until_ms > next_attempt_at_ms
                                 THEN claim_until_ms ELSE next_attempt_at_ms END AS due
                 FROM outbox WHERE state = 'pending' ORDER BY due LIMIT $2",
                &[&owner, &big(limit)],
            )
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let id: &str = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            if let (Ok(id), Some(at)) = (id.parse(), DateTime::from_timestamp_millis(at)) {
                out.push((id, at));
            }
        }
        Ok(out)
    }

    async fn claim_group(
        &self,
        channel: String,
        group_id: uuid::Uuid,
        limit: usize,
        claim: Claim,
    ) -> Result<Vec<Delivery>, StorageError> {
        let group = group_id.to_string();
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
                .await?;
            tx.execute(
                "UPDATE outbox SET group_id = $1, claimed_by = $4, claim_until_ms = $5 WHERE id IN (
                   SELECT id FROM outbox WHERE state = 'pending' AND channel = $2 AND group_id IS NULL
                     AND (claim_until_ms IS NULL OR claim_until_ms <= $6 OR claimed_by = $4)
                   ORDER BY created_at_ms, id LIMIT $3)",
                &[
                    &group,
                    &channel,
                    &big(limit),
                    &claim.owner,
                    &claim.until.timestamp_millis(),
                    &claim.now.timestamp_millis(),
                ],
            )
            .await?;
            tx.commit().await?;
        }
        self.group_members(group).await
    }

    async fn release_claims(&self, owner: String) -> Result<(), StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE outbox SET claimed_by = NULL, claim_until_ms = NULL WHERE claimed_by = $1 AND state = 'pending'",
                &[&owner],
            )
            .await?;
        Ok(())
    }

    async fn group_members(&self, group_id: String) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE group_id = $1 ORDER BY created_at_ms, id LIMIT $2"
            ),
            &[&group_id, &big(limits::ALERT_GROUP_MAX)],
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
        let done = (state != DeliveryState::Pending).then_some(now);
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE outbox SET state = $2, attempts = attempts + 1, next_attempt_at_ms = $3,
                 last_error = $4, done_at_ms = $5, claimed_by = NULL, claim_until_ms = NULL
                 WHERE id = $1 AND (claimed_by IS NULL OR claimed_by = $6)",
                &[
                    &id.to_string(),
                    &state.as_str(),
                    &next_attempt_at.timestamp_millis(),
                    &error,
                    &done,
                    &owner,
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn recent_deliveries(
        &self,
        channel: String,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE channel = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2"
            ),
            &[&channel, &big(limit)],
        )
        .await
    }

    async fn attachment(&self, result_id: String) -> Result<Option<Vec<u8>>, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT png FROM screenshots WHERE result_id = $1",
                &[&result_id],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }
}

impl PostgresStorage {
    /// The deliveries `sql` selects (its columns `DELIVERY_COLUMNS`).
    pub(super) async fn deliveries(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Delivery>, StorageError> {
        let client = self.client().await?;
        let rows = client.query(sql, params).await?;
        let mut out = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let event_id: String = row.try_get(1)?;
            let event: String = row.try_get(3)?;
            // One unreadable row must not stop every other alert.
            let (Ok(parsed_id), Ok(event_id), Ok(event)) = (
                id.parse(),
                event_id.parse(),
                serde_json::from_str::<AlertEvent>(&event),
            ) else {
                tracing::error!(delivery = %id, "an outbox row cannot be read; skipped");
                continue;
            };
            let state: String = row.try_get(4)?;
            let attempts: i32 = row.try_get(5)?;
            let group: Option<String> = row.try_get(9)?;
            out.push(Delivery {
                id: parsed_id,
                event_id,
                channel: row.try_get(2)?,
                event,
                state: DeliveryState::parse(&state),
                attempts: u32::try_from(attempts).unwrap_or(0),
                created_at: DateTime::from_timestamp_millis(row.try_get(6)?).unwrap_or_default(),
                next_attempt_at: DateTime::from_timestamp_millis(row.try_get(7)?)
                    .unwrap_or_default(),
                last_error: row.try_get(8)?,
                group_id: group.and_then(|g| g.parse().ok()),
            });
        }
        Ok(out)
    }
}
