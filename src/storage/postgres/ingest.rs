//! `IngestStore` on PostgreSQL: the decision transaction (a lock per check,
//! the states and ids it reads, then everything written together in one
//! statement per table), the restore reads, silences.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::{PostgresStorage, big, json_bodies};
use crate::alert::silence::Silence;
use crate::limits;
use crate::rules::ProbeEvent;
use crate::storage::{
    Batch, Committed, Decided, Decision, IngestStore, Load, Loaded, ResultKey, Revised, Screenshot,
    StorageError, Stored,
};

/// The first key of the advisory locks taken per check (the second is the
/// hash of the check's name), apart from the migrations' lock.
const CHECK_LOCK_SPACE: i32 = 0x4c6b;

#[async_trait]
impl IngestStore for PostgresStorage {
    async fn known_result_ids(&self, keys: Vec<ResultKey>) -> Result<Vec<String>, StorageError> {
        let ids: Vec<String> = keys.into_iter().map(|key| key.id).collect();
        let client = self.client().await?;
        let rows = client
            .query("SELECT id FROM results WHERE id = ANY($1)", &[&ids])
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    async fn decide(&self, load: Load, decide: Decision) -> Result<Committed, StorageError> {
        let written_at = self.clock.now().timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let loaded = load_for_decision(&tx, load).await?;
        let Decided { batch, outcome } = decide(loaded);
        let revisions = write_batch(&tx, &batch, written_at).await?;
        tx.commit().await?;
        Ok(Committed {
            batch,
            revisions,
            outcome,
        })
    }

    async fn load_states(&self) -> Result<Vec<(String, Revised)>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT check_name, state, revision FROM check_state", &[])
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Revised {
                        state: serde_json::from_str(row.try_get::<_, &str>(1)?)?,
                        revision: row.try_get::<_, i64>(2)?.max(0) as u64,
                    },
                ))
            })
            .collect()
    }

    async fn last_probe_events(&self) -> Result<Vec<ProbeEvent>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM probe_events p WHERE at_ms = (SELECT MAX(at_ms) FROM probe_events q WHERE q.region = p.region)",
                &[],
            )
            .await?;
        json_bodies(&rows)
    }

    async fn keep_key(&self, name: String, fresh: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO lookout_keys (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &fresh],
            )
            .await?;
        let row = client
            .query_one("SELECT value FROM lookout_keys WHERE name = $1", &[&name])
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn insert_silence(&self, silence: &Silence) -> Result<(), StorageError> {
        let body = serde_json::to_string(silence)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO silences (id, body, expires_at_ms) VALUES ($1, $2, $3)",
                &[
                    &silence.id.to_string(),
                    &body,
                    &silence.expires_at.timestamp_millis(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn delete_silence(&self, id: uuid::Uuid) -> Result<bool, StorageError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM silences WHERE id = $1", &[&id.to_string()])
            .await?;
        Ok(deleted > 0)
    }

    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM silences WHERE expires_at_ms <= $1",
                &[&now.timestamp_millis()],
            )
            .await?;
        let rows = client
            .query("SELECT body FROM silences ORDER BY expires_at_ms", &[])
            .await?;
        json_bodies(&rows)
    }
}

/// Locks the checks a decision is about, then reads what it needs.
async fn load_for_decision(tx: &Transaction<'_>, load: Load) -> Result<Loaded, StorageError> {
    let mut loaded = Loaded::default();
    if !load.checks.is_empty() {
        let names: Vec<&str> = load.checks.iter().map(|(name, _)| name.as_str()).collect();
        let held: Vec<Option<i64>> = load
            .checks
            .iter()
            .map(|(_, revision)| revision.map(|r| i64::try_from(r).unwrap_or(i64::MAX)))
            .collect();
        // In the order of the lock keys, so that two decisions about
        // overlapping checks never wait for each other in a circle.
        tx.query(
            "SELECT pg_advisory_xact_lock($2, key) FROM
               (SELECT DISTINCT hashtext(name) AS key FROM unnest($1::text[]) AS name ORDER BY key) AS keys",
            &[&names, &CHECK_LOCK_SPACE],
        )
        .await?;
        for (name, _) in &load.checks {
            loaded.states.insert(name.clone(), Stored::Absent);
        }
        let rows = tx
            .query(
                "SELECT s.check_name, s.revision, CASE WHEN s.revision = h.held THEN NULL ELSE s.state END
                 FROM unnest($1::text[], $2::bigint[]) AS h(name, held)
                 JOIN check_state s ON s.check_name = h.name",
                &[&names, &held],
            )
            .await?;
        for row in rows {
            let name: String = row.try_get(0)?;
            let revision: i64 = row.try_get(1)?;
            let found = match row.try_get::<_, Option<&str>>(2)? {
                None => Stored::Current,
                Some(json) => Stored::Changed(Revised {
                    state: serde_json::from_str(json)?,
                    revision: revision.max(0) as u64,
                }),
            };
            loaded.states.insert(name, found);
        }
    }
    if !load.results.is_empty() {
        let ids: Vec<&str> = load.results.iter().map(|key| key.id.as_str()).collect();
        let rows = tx
            .query("SELECT id FROM results WHERE id = ANY($1)", &[&ids])
            .await?;
        for row in rows {
            loaded.known_ids.insert(row.try_get(0)?);
        }
    }
    Ok(loaded)
}

/// Writes a batch inside `tx`, one statement per table; returns the
/// revision each state got.
async fn write_batch(
    tx: &Transaction<'_>,
    batch: &Batch,
    written_at: i64,
) -> Result<HashMap<String, u64>, StorageError> {
    if !batch.results.is_empty() {
        mark_late_hours(tx, batch).await?;
        let mut columns = ResultColumns::default();
        for (result, received_at) in &batch.results {
            columns.id.push(result.id.to_string());
            columns.check.push(result.check.clone());
            columns.region.push(result.region.clone());
            columns.started.push(result.started_at.timestamp_millis());
            columns.received.push(received_at.timestamp_millis());
            columns.outcome.push(result.outcome.as_str());
            columns.duration.push(result.duration_ms);
            columns.body.push(serde_json::to_string(result)?);
        }
        tx.execute(
            "INSERT INTO results (id, check_name, region, started_at_ms, received_at_ms, outcome, duration_ms, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::float8[], $8::text[])
             ON CONFLICT DO NOTHING",
            &[
                &columns.id,
                &columns.check,
                &columns.region,
                &columns.started,
                &columns.received,
                &columns.outcome,
                &columns.duration,
                &columns.body,
            ],
        )
        .await?;
    }
    let mut revisions = HashMap::new();
    if !batch.states.is_empty() {
        let names: Vec<&str> = batch.states.iter().map(|(name, _)| name.as_str()).collect();
        let states = batch
            .states
            .iter()
            .map(|(_, state)| serde_json::to_string(state))
            .collect::<Result<Vec<String>, _>>()?;
        let rows = tx
            .query(
                "INSERT INTO check_state (check_name, state, updated_at_ms, revision)
                 SELECT name, state, $3, 1 FROM unnest($1::text[], $2::text[]) AS t(name, state)
                 ON CONFLICT (check_name) DO UPDATE SET state = excluded.state,
                     updated_at_ms = excluded.updated_at_ms, revision = check_state.revision + 1
                 RETURNING check_name, revision",
                &[&names, &states, &written_at],
            )
            .await?;
        for row in rows {
            let revision: i64 = row.try_get(1)?;
            revisions.insert(row.try_get(0)?, revision.max(0) as u64);
        }
    }
    if !batch.events.is_empty() {
        let mut id = Vec::new();
        let mut check = Vec::new();
        let mut incident = Vec::new();
        let mut from = Vec::new();
        let mut to = Vec::new();
        let mut at = Vec::new();
        let mut body = Vec::new();
        for event in &batch.events {
            id.push(event.id.to_string());
            check.push(event.check.as_str());
            incident.push(event.incident.map(|i| i.to_string()));
            from.push(event.from.as_str());
            to.push(event.to.as_str());
            at.push(event.at.timestamp_millis());
            body.push(serde_json::to_string(event)?);
        }
        tx.execute(
            "INSERT INTO events (id, check_name, incident, from_status, to_status, at_ms, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[])
             ON CONFLICT DO NOTHING",
            &[&id, &check, &incident, &from, &to, &at, &body],
        )
        .await?;
    }
    if !batch.probe_events.is_empty() {
        let mut id = Vec::new();
        let mut region = Vec::new();
        let mut stale = Vec::new();
        let mut at = Vec::new();
        let mut body = Vec::new();
        for event in &batch.probe_events {
            id.push(event.id.to_string());
            region.push(event.region.as_str());
            stale.push(event.stale);
            at.push(event.at.timestamp_millis());
            body.push(serde_json::to_string(event)?);
        }
        tx.execute(
            "INSERT INTO probe_events (id, region, stale, at_ms, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::text[])
             ON CONFLICT DO NOTHING",
            &[&id, &region, &stale, &at, &body],
        )
        .await?;
    }
    if !batch.deliveries.is_empty() {
        let mut id = Vec::new();
        let mut event_id = Vec::new();
        let mut check = Vec::new();
        let mut channel = Vec::new();
        let mut kind = Vec::new();
        let mut event = Vec::new();
        let mut created = Vec::new();
        let mut next = Vec::new();
        for d in &batch.deliveries {
            id.push(d.id.to_string());
            event_id.push(d.event_id.to_string());
            check.push(d.event.check.as_str());
            channel.push(d.channel.as_str());
            kind.push(d.event.event.as_str());
            event.push(serde_json::to_string(&d.event)?);
            created.push(d.created_at.timestamp_millis());
            next.push(d.next_attempt_at.timestamp_millis());
        }
        tx.execute(
            "INSERT INTO outbox (id, event_id, check_name, channel, kind, event, state, attempts, created_at_ms, next_attempt_at_ms)
             SELECT id, event_id, check_name, channel, kind, event, 'pending', 0, created, next
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
                  AS t(id, event_id, check_name, channel, kind, event, created, next)
             ON CONFLICT DO NOTHING",
            &[&id, &event_id, &check, &channel, &kind, &event, &created, &next],
        )
        .await?;
    }
    if !batch.screenshots.is_empty() {
        store_screenshots(tx, &batch.screenshots).await?;
    }
    Ok(revisions)
}

/// The columns of the results of a batch, for one `unnest` insert.
#[derive(Default)]
struct ResultColumns {
    id: Vec<String>,
    check: Vec<String>,
    region: Vec<String>,
    started: Vec<i64>,
    received: Vec<i64>,
    outcome: Vec<&'static str>,
    duration: Vec<f64>,
    body: Vec<String>,
}

/// Late results in an hour already rolled up: roll it up again. The mark
/// is read with a share lock, so a roll-up (which takes it exclusively)
/// either ran before, and this batch marks its hour, or runs after, and
/// sees this batch's results.
async fn mark_late_hours(tx: &Transaction<'_>, batch: &Batch) -> Result<(), StorageError> {
    let rolled_until: Option<i64> = tx
        .query_opt(
            "SELECT rolled_until_ms FROM rollup_mark WHERE id = 1 FOR SHARE",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .flatten();
    let Some(rolled_until) = rolled_until else {
        return Ok(());
    };
    let mut hours: Vec<i64> = batch
        .results
        .iter()
        .map(|(result, _)| result.started_at.timestamp_millis())
        .filter(|at| *at < rolled_until)
        .map(crate::rollup::hour_of)
        .collect();
    hours.sort_unstable();
    hours.dedup();
    if !hours.is_empty() {
        tx.execute(
            "INSERT INTO rollup_dirty (hour_ms) SELECT * FROM unnest($1::bigint[]) ON CONFLICT DO NOTHING",
            &[&hours],
        )
        .await?;
    }
    Ok(())
}

/// Inserts screenshots, then keeps the newest `SCREENSHOTS_PER_CHECK_MAX`
/// of each check and at most `SCREENSHOTS_BYTES_MAX` in all (oldest go).
async fn store_screenshots(
    tx: &Transaction<'_>,
    screenshots: &[Screenshot],
) -> Result<(), StorageError> {
    let mut checks: Vec<&str> = Vec::new();
    for shot in screenshots {
        tx.execute(
            "INSERT INTO screenshots (result_id, check_name, at_ms, png) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[
                &shot.result_id.to_string(),
                &shot.check,
                &shot.at.timestamp_millis(),
                &shot.png,
            ],
        )
        .await?;
        if !checks.contains(&shot.check.as_str()) {
            checks.push(&shot.check);
        }
    }
    for check in checks {
        tx.execute(
            "DELETE FROM screenshots WHERE check_name = $1 AND result_id NOT IN
             (SELECT result_id FROM screenshots WHERE check_name = $1 ORDER BY at_ms DESC, result_id DESC LIMIT $2)",
            &[&check, &big(limits::SCREENSHOTS_PER_CHECK_MAX)],
        )
        .await?;
    }
    // The total cap: drop the oldest until under it, in bounded rounds.
    for _ in 0..limits::SCREENSHOTS_PER_CHECK_MAX {
        let total: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(length(png)), 0)::bigint FROM screenshots",
                &[],
            )
            .await?
            .try_get(0)?;
        if total.max(0) as u64 <= limits::SCREENSHOTS_BYTES_MAX {
            break;
        }
        tx.execute(
            "DELETE FROM screenshots WHERE result_id IN
             (SELECT result_id FROM screenshots ORDER BY at_ms, result_id LIMIT $1)",
            &[&big(screenshots.len().max(1))],
        )
        .await?;
    }
    Ok(())
}
