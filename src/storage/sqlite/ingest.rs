//! `IngestStore` on SQLite: the decision transaction (the states and ids it
//! reads, then results, states, events, probe events, outbox rows and
//! screenshots written together), the restore reads, silences. Decisions
//! that wait for the writer are committed together, each in a savepoint
//! (`commit_queued`).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{SqliteStorage, compact, json_bodies};
use crate::alert::silence::Silence;
use crate::limits;
use crate::rules::ProbeEvent;
use crate::storage::{
    Batch, Committed, Decided, Decision, IngestStore, Load, Loaded, ResultKey, Revised, Screenshot,
    StorageError, Stored,
};

#[async_trait]
impl IngestStore for SqliteStorage {
    async fn known_result_ids(&self, keys: Vec<ResultKey>) -> Result<Vec<String>, StorageError> {
        self.with(move |conn| {
            Ok(stored_runs(conn, &keys)?
                .into_iter()
                .map(|key| key.id.clone())
                .collect())
        })
        .await
    }

    async fn decide(&self, load: Load, decide: Decision) -> Result<Committed, StorageError> {
        let (reply, committed) = tokio::sync::oneshot::channel();
        lock(&self.decisions).push(Pending {
            load,
            decide,
            written_at: self.clock.now().timestamp_millis(),
            reply,
        });
        // Every decision queued is followed by a turn of the writer that
        // commits what is queued: this decision, or nothing when an earlier
        // turn took it along.
        let queue = self.decisions.clone();
        let turn = self
            .with(move |conn| {
                commit_queued(conn, &queue);
                Ok(())
            })
            .await;
        if let Err(error) = turn {
            // The turn did not run (the file is gone, the task failed):
            // what is still queued fails with it, this decision among them
            // unless a turn already took it.
            let stranded = std::mem::take(&mut *lock(&self.decisions));
            for pending in stranded {
                let _ = pending.reply.send(Err(copy_of(&error)));
            }
        }
        committed.await.map_err(|_| {
            StorageError::Task("the writer stopped before committing the decision".into())
        })?
    }

    async fn load_states(&self) -> Result<Vec<(String, Revised)>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT check_name, state, revision FROM check_state")?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, json, revision) = row?;
                out.push((
                    name,
                    Revised {
                        state: serde_json::from_str(&json)?,
                        revision: revision.max(0) as u64,
                    },
                ));
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

    async fn keep_key(&self, name: String, fresh: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO lookout_keys (name, value) VALUES (?1, ?2)",
                params![name, fresh],
            )?;
            let value: Vec<u8> = conn.query_row(
                "SELECT value FROM lookout_keys WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?;
            Ok(value)
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

/// Inserts screenshots, then keeps the newest `SCREENSHOTS_PER_CHECK_MAX`
/// of each check and at most `SCREENSHOTS_BYTES_MAX` in all (oldest go).
fn store_screenshots(
    tx: &rusqlite::Connection,
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

/// A decision waiting for the writer, and where its commit (or its error)
/// is told.
pub(super) struct Pending {
    load: Load,
    decide: Decision,
    written_at: i64,
    reply: tokio::sync::oneshot::Sender<Result<Committed, StorageError>>,
}

fn lock(queue: &Mutex<Vec<Pending>>) -> std::sync::MutexGuard<'_, Vec<Pending>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Group commit: the decisions queued (at most
/// `limits::SQLITE_DECISIONS_PER_COMMIT_MAX`) in one transaction, each in a
/// savepoint of its own. Concurrent batches mostly touch the same pages
/// (each spreads over the same checks' rows), and a commit writes every
/// page it changed to the WAL: one commit for several batches writes those
/// pages once. Each decision still runs on what the ones before it wrote;
/// one that fails is rolled back alone and told its error; the others are
/// told once the commit holds.
fn commit_queued(conn: &mut rusqlite::Connection, queue: &Mutex<Vec<Pending>>) {
    let mut taken: Vec<Pending> = {
        let mut queued = lock(queue);
        let count = queued.len().min(limits::SQLITE_DECISIONS_PER_COMMIT_MAX);
        queued.drain(..count).collect()
    };
    if taken.is_empty() {
        return;
    }
    // IMMEDIATE: the write lock is taken before the reads, so no other
    // writer (this process or another) changes what a decision read before
    // it commits.
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = StorageError::from(error);
            for pending in taken {
                let _ = pending.reply.send(Err(copy_of(&error)));
            }
            return;
        }
    };
    if let [_] = taken.as_slice() {
        // Alone, a decision needs no savepoint: the transaction is its
        // own, and a failure rolls back nothing but it. (A savepoint
        // journals each page it changes the first time: a cost per page
        // and decision, in group commits only.)
        let Some(pending) = taken.pop() else { return };
        let committed = decide_on(
            &tx,
            pending.load,
            pending.decide,
            pending.written_at,
            &WrittenEarlier::default(),
        )
        .and_then(|committed| Ok(tx.commit().map(|()| committed)?));
        let _ = pending.reply.send(committed);
        return;
    }
    let mut decided = Vec::with_capacity(taken.len());
    let mut queued = taken.into_iter();
    while let Some(pending) = queued.next() {
        let earlier = WrittenEarlier::of(&decided);
        let outcome = decide_in_savepoint(
            &mut tx,
            pending.load,
            pending.decide,
            pending.written_at,
            &earlier,
        );
        drop(earlier);
        match outcome {
            Ok(committed) => decided.push((committed, pending.reply)),
            Err(error) if tx.is_autocommit() => {
                // SQLite rolled the whole transaction back (a full disk,
                // an I/O error, a trigger's ROLLBACK): what the decisions
                // before wrote is gone, and a savepoint opened now would
                // be a transaction of its own, outside the write lock.
                // Every decision of the group is told.
                for (_, reply) in decided {
                    let _ = reply.send(Err(copy_of(&error)));
                }
                for rest in queued {
                    let _ = rest.reply.send(Err(copy_of(&error)));
                }
                let _ = pending.reply.send(Err(error));
                return;
            }
            Err(error) => {
                let _ = pending.reply.send(Err(error));
            }
        }
    }
    match tx.commit() {
        Ok(()) => {
            for (committed, reply) in decided {
                let _ = reply.send(Ok(committed));
            }
        }
        Err(error) => {
            let error = StorageError::from(error);
            for (_, reply) in decided {
                let _ = reply.send(Err(copy_of(&error)));
            }
        }
    }
}

/// One decision of a group: its reads, the decision and its writes, kept or
/// rolled back together.
fn decide_in_savepoint(
    tx: &mut Transaction<'_>,
    load: Load,
    decide: Decision,
    written_at: i64,
    earlier: &WrittenEarlier<'_>,
) -> Result<Committed, StorageError> {
    let savepoint = tx.savepoint()?;
    let committed = decide_on(&savepoint, load, decide, written_at, earlier)?;
    savepoint.commit()?;
    Ok(committed)
}

/// A decision's reads, the decision and its writes, on `conn` (the
/// transaction or a savepoint in it); the caller commits or rolls back.
fn decide_on(
    conn: &rusqlite::Connection,
    load: Load,
    decide: Decision,
    written_at: i64,
    earlier: &WrittenEarlier<'_>,
) -> Result<Committed, StorageError> {
    let loaded = load_for_decision(conn, load, earlier)?;
    let Decided { batch, outcome } = decide(loaded);
    let revisions = write_batch(conn, &batch, written_at)?;
    Ok(Committed {
        batch,
        revisions,
        outcome,
    })
}

/// An error told to every decision it stops: the file's loss as itself,
/// anything else by its message.
fn copy_of(error: &StorageError) -> StorageError {
    match error {
        StorageError::FileGone { path, what } => StorageError::FileGone {
            path: path.clone(),
            what,
        },
        other => StorageError::Task(other.to_string()),
    }
}

/// The states the decisions before this one in a group commit wrote, by
/// check: what the transaction holds for those checks (a decision that
/// failed was rolled back, and is not here), so they are not read back
/// and decoded from the rows just written.
#[derive(Default)]
struct WrittenEarlier<'a> {
    states: HashMap<&'a str, (u64, &'a crate::rules::CheckState)>,
}

impl<'a> WrittenEarlier<'a> {
    fn of<R>(decided: &'a [(Committed, R)]) -> WrittenEarlier<'a> {
        let mut states = HashMap::new();
        // In commit order: a later decision's write replaces an earlier one.
        for (committed, _) in decided {
            for (check, state) in &committed.batch.states {
                if let Some(revision) = committed.revisions.get(check) {
                    states.insert(check.as_str(), (*revision, state));
                }
            }
        }
        WrittenEarlier { states }
    }
}

/// Reads what a decision needs, inside its transaction.
fn load_for_decision(
    tx: &rusqlite::Connection,
    load: Load,
    earlier: &WrittenEarlier<'_>,
) -> Result<Loaded, StorageError> {
    let mut loaded = Loaded::default();
    {
        // The state is read back only when the caller's copy is not current.
        let mut stored = tx.prepare_cached(
            "SELECT revision, CASE WHEN revision = ?2 THEN NULL ELSE state END
             FROM check_state WHERE check_name = ?1",
        )?;
        for (check, cached) in load.checks {
            if let Some(&(revision, state)) = earlier.states.get(check.as_str()) {
                let found = if cached == Some(revision) {
                    Stored::Current
                } else {
                    Stored::Changed(Revised {
                        state: state.clone(),
                        revision,
                    })
                };
                loaded.states.insert(check, found);
                continue;
            }
            let row: Option<(i64, Option<String>)> = stored
                .query_row(params![check, cached.map(revision_column)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            let found = match row {
                None => Stored::Absent,
                Some((_, None)) => Stored::Current,
                Some((revision, Some(json))) => Stored::Changed(Revised {
                    state: serde_json::from_str(&json)?,
                    revision: revision.max(0) as u64,
                }),
            };
            loaded.states.insert(check, found);
        }
    }
    for key in stored_runs(tx, &load.results)? {
        loaded.known_ids.insert(key.id.clone());
    }
    Ok(loaded)
}

/// Which of `keys` name runs already stored, by the natural key, not the
/// id (`compact.rs`), since a batch sent again carries the same runs. The
/// check and region ids are looked up once per call, not once per run.
/// (One range read per check instead of a lookup per run was tried: with
/// STAT4 SQLite prepares a range over bound values again at every step,
/// which cost more than the lookups it saved.)
fn stored_runs<'k>(
    conn: &rusqlite::Connection,
    keys: &'k [ResultKey],
) -> Result<Vec<&'k ResultKey>, StorageError> {
    let mut checks: HashMap<&str, Option<i64>> = HashMap::new();
    let mut regions: HashMap<&str, Option<i64>> = HashMap::new();
    let mut one = conn.prepare_cached(
        "SELECT 1 FROM results WHERE check_id = ?1 AND started_at_ms = ?2 AND region_id = ?3",
    )?;
    let mut stored = Vec::new();
    for key in keys {
        let check = match checks.get(key.check.as_str()) {
            Some(id) => *id,
            None => {
                let id = compact::check_id(conn, &key.check)?;
                checks.insert(&key.check, id);
                id
            }
        };
        let region = match regions.get(key.region.as_str()) {
            Some(id) => *id,
            None => {
                let id = compact::text_id(conn, &key.region)?;
                regions.insert(&key.region, id);
                id
            }
        };
        if let (Some(check), Some(region)) = (check, region)
            && one.exists(params![check, key.started_at_ms, region])?
        {
            stored.push(key);
        }
    }
    Ok(stored)
}

/// A revision as SQLite stores it (an i64; no state is written 2^63 times).
fn revision_column(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// Writes a batch inside `tx`; returns the revision each state got.
fn write_batch(
    tx: &rusqlite::Connection,
    batch: &Batch,
    written_at: i64,
) -> Result<HashMap<String, u64>, StorageError> {
    let mut revisions = HashMap::new();
    {
        let mut insert_result = tx.prepare_cached(compact::INSERT)?;
        // Late results in an hour already rolled up: roll it up again.
        let rolled_until: i64 = tx
            .query_row("SELECT rolled_until_ms FROM rollup_mark", [], |row| {
                row.get(0)
            })
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
        let mut names = compact::Names::new(tx, written_at);
        for (result, received_at) in &batch.results {
            let row = compact::encode(result, received_at.timestamp_millis(), &mut names)?;
            compact::insert_row(&mut insert_result, &row)?;
        }
        let mut upsert_state = tx.prepare_cached(
            "INSERT INTO check_state (check_name, state, updated_at_ms, revision) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (check_name) DO UPDATE SET state = excluded.state,
                 updated_at_ms = excluded.updated_at_ms, revision = check_state.revision + 1
             RETURNING revision",
        )?;
        for (check, state) in &batch.states {
            let revision: i64 = upsert_state.query_row(
                params![check, serde_json::to_string(state)?, written_at],
                |row| row.get(0),
            )?;
            revisions.insert(check.clone(), revision.max(0) as u64);
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
        store_screenshots(tx, &batch.screenshots)?;
    }
    Ok(revisions)
}
