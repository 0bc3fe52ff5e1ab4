//! The compact result row on SQLite: one `ProbeResult` in about 50 bytes
//! (an ordinary https result) instead of its ~400 bytes of JSON.
//!
//! Layout (migration 12, `schema.rs`):
//! - `results`, WITHOUT ROWID, keyed `(check_id, started_at_ms, region_id)`:
//!   the one b-tree serves the by-check reads (newest first), dedup of a
//!   batch sent again, and retention (per check, oldest first). Columns:
//!   `outcome` (0 ok, 1 fail, 2 timeout, 3 error), `duration_us`, `packed`
//!   (below) and `body`, the JSON of what neither covers (`Rest`: browser
//!   steps, icmp/grpc figures, notes, a timing finer than a microsecond, a
//!   text too long to look up), NULL for an ordinary result.
//! - `result_checks` (check names) and `result_texts` (regions, probes,
//!   errors, addresses, versions, certificate expiries): each text once,
//!   referenced by integer; `seen_ms` says when a row last used it, so
//!   retention can prune the texts no kept row can name.
//!
//! `packed` is a varint (LEB128) mask saying which fields follow, then each
//! present field in mask order: unsigned varints, zigzag for the signed,
//! the id's 16 raw bytes. Timings are whole microseconds (a result's are:
//! `round_ms`); a timing that is not goes to `body` whole, so a result read
//! back equals the one stored, field for field.
//!
//! The result id: a probe names each run `ProbeResult::run_id` (check,
//! region, probe and start, hashed), so the id is computed again on read
//! and stored only when it is something else (an older probe's random id,
//! an import). Dedup therefore goes by the natural key, which is what the
//! id stood for: one run of one check in one region at one millisecond.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits;
use crate::result::{
    BrowserFindings, GrpcFigures, IcmpFigures, Outcome, PageInfo, Phases, ProbeResult, StepResult,
};
use crate::storage::StorageError;

/// One result as its row's columns.
pub(super) struct Row {
    pub check_id: i64,
    pub started_at_ms: i64,
    pub region_id: i64,
    pub outcome: i64,
    pub duration_us: i64,
    pub packed: Vec<u8>,
    pub body: Option<String>,
}

/// What the columns and `packed` do not cover, as JSON in `body`.
#[derive(Default, Serialize, Deserialize)]
struct Rest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phases_ms: Option<Phases>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    degraded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    steps: Vec<StepResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    screenshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<PageInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icmp: Option<IcmpFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grpc: Option<GrpcFigures>,
    #[serde(flatten)]
    browser: BrowserFindings,
}

impl Rest {
    fn is_empty(&self) -> bool {
        self.duration_ms.is_none()
            && self.phases_ms.is_none()
            && self.error.is_none()
            && self.degraded.is_none()
            && self.address.is_none()
            && self.ip_family.is_none()
            && self.http_version.is_none()
            && self.notes.is_empty()
            && self.steps.is_empty()
            && self.screenshot.is_none()
            && self.page.is_none()
            && self.icmp.is_none()
            && self.grpc.is_none()
            && self.browser == BrowserFindings::default()
    }
}

// The fields of `packed`, by mask bit, in the order they follow the mask.
const RECEIVED: u64 = 1 << 0;
const PROBE: u64 = 1 << 1;
const STATUS: u64 = 1 << 2;
const DNS: u64 = 1 << 3;
const CONNECT: u64 = 1 << 4;
const TLS: u64 = 1 << 5;
const TTFB: u64 = 1 << 6;
const TRANSFER: u64 = 1 << 7;
const ERROR: u64 = 1 << 8;
const DEGRADED: u64 = 1 << 9;
const ADDRESS: u64 = 1 << 10;
const IP_FAMILY: u64 = 1 << 11;
const HTTP_VERSION: u64 = 1 << 12;
const CERT_EXPIRY: u64 = 1 << 13;
const ID: u64 = 1 << 14;
const NANOS: u64 = 1 << 15;
const PHASE_BITS: [u64; 5] = [DNS, CONNECT, TLS, TTFB, TRANSFER];

/// An outcome as its column stores it.
pub(super) fn outcome_code(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Fail => 1,
        Outcome::Timeout => 2,
        Outcome::Error => 3,
    }
}

fn outcome_of(code: i64) -> Result<Outcome, StorageError> {
    Ok(match code {
        0 => Outcome::Ok,
        1 => Outcome::Fail,
        2 => Outcome::Timeout,
        3 => Outcome::Error,
        other => return Err(StorageError::Corrupt(format!("outcome code {other}"))),
    })
}

/// `ms` in whole microseconds, when that is exactly what it is.
fn whole_us(ms: f64) -> Option<u64> {
    let us = (ms * 1000.0).round();
    // 2^53: every integer below is an exact f64.
    if (0.0..9_007_199_254_740_992.0).contains(&us) && us / 1000.0 == ms {
        Some(us as u64)
    } else {
        None
    }
}

/// Milliseconds from a duration column (approximate only for a duration
/// `body` keeps exactly).
pub(super) fn ms_of_us(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// A row's duration in ms, exact: `body`'s when it keeps one, else the
/// column's (for the reads that want no more of the row).
pub(super) fn duration_ms(duration_us: i64, body: Option<&str>) -> Result<f64, StorageError> {
    #[derive(Deserialize)]
    struct Duration {
        #[serde(default)]
        duration_ms: Option<f64>,
    }
    Ok(match body {
        Some(json) => serde_json::from_str::<Duration>(json)?
            .duration_ms
            .unwrap_or(ms_of_us(duration_us)),
        None => ms_of_us(duration_us),
    })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Reads `packed` front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, StorageError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&byte, rest)) = self.0.split_first() else {
                break;
            };
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(StorageError::Corrupt("a packed result is cut short".into()))
    }

    fn bytes16(&mut self) -> Result<[u8; 16], StorageError> {
        if self.0.len() < 16 {
            return Err(StorageError::Corrupt("a packed id is cut short".into()));
        }
        let (head, rest) = self.0.split_at(16);
        self.0 = rest;
        let mut out = [0u8; 16];
        out.copy_from_slice(head);
        Ok(out)
    }
}

/// Check names and texts to integers, inside a writing transaction: each
/// looked up (or added) once per batch; `seen_ms` refreshed at most hourly.
pub(super) struct Names<'c> {
    conn: &'c Connection,
    now_ms: i64,
    checks: HashMap<String, i64>,
    texts: HashMap<String, i64>,
}

impl<'c> Names<'c> {
    pub(super) fn new(conn: &'c Connection, now_ms: i64) -> Names<'c> {
        Names {
            conn,
            now_ms,
            checks: HashMap::new(),
            texts: HashMap::new(),
        }
    }

    pub(super) fn check(&mut self, name: &str) -> Result<i64, StorageError> {
        if let Some(id) = self.checks.get(name) {
            return Ok(*id);
        }
        let id = intern(self.conn, "result_checks", "name", name, self.now_ms)?;
        self.checks.insert(name.to_string(), id);
        Ok(id)
    }

    pub(super) fn text(&mut self, text: &str) -> Result<i64, StorageError> {
        if let Some(id) = self.texts.get(text) {
            return Ok(*id);
        }
        let id = intern(self.conn, "result_texts", "text", text, self.now_ms)?;
        self.texts.insert(text.to_string(), id);
        Ok(id)
    }
}

fn intern(
    conn: &Connection,
    table: &str,
    column: &str,
    text: &str,
    now_ms: i64,
) -> Result<i64, StorageError> {
    let found: Option<(i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT id, seen_ms FROM {table} WHERE {column} = ?1"
        ))?
        .query_row(params![text], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match found {
        Some((id, seen)) => {
            if seen < now_ms - limits::SQLITE_TEXT_SEEN_REFRESH_MS {
                conn.prepare_cached(&format!("UPDATE {table} SET seen_ms = ?2 WHERE id = ?1"))?
                    .execute(params![id, now_ms])?;
            }
            Ok(id)
        }
        None => Ok(conn
            .prepare_cached(&format!(
                "INSERT INTO {table} ({column}, seen_ms) VALUES (?1, ?2) RETURNING id"
            ))?
            .query_row(params![text, now_ms], |row| row.get(0))?),
    }
}

/// The stored id of a check, if any row was ever written for it.
pub(super) fn check_id(conn: &Connection, name: &str) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT id FROM result_checks WHERE name = ?1")?
        .query_row(params![name], |row| row.get(0))
        .optional()?)
}

/// The stored id of a text, if any row was ever written with it.
pub(super) fn text_id(conn: &Connection, text: &str) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT id FROM result_texts WHERE text = ?1")?
        .query_row(params![text], |row| row.get(0))
        .optional()?)
}

/// Texts by id, for reads: each looked up once per read.
pub(super) struct Texts<'c> {
    conn: &'c Connection,
    known: HashMap<i64, String>,
}

impl<'c> Texts<'c> {
    pub(super) fn new(conn: &'c Connection) -> Texts<'c> {
        Texts {
            conn,
            known: HashMap::new(),
        }
    }

    pub(super) fn get(&mut self, id: i64) -> Result<String, StorageError> {
        if let Some(text) = self.known.get(&id) {
            return Ok(text.clone());
        }
        let text: String = self
            .conn
            .prepare_cached("SELECT text FROM result_texts WHERE id = ?1")?
            .query_row(params![id], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StorageError::Corrupt(format!("result text {id} is gone")))?;
        self.known.insert(id, text.clone());
        Ok(text)
    }
}

/// A text interned when short enough, else kept for `body`.
fn short_text(
    names: &mut Names<'_>,
    text: &Option<String>,
    bit: u64,
    mask: &mut u64,
    fields: &mut Vec<(u64, u64)>,
) -> Result<Option<String>, StorageError> {
    match text {
        Some(text) if text.len() <= limits::SQLITE_TEXT_INTERNED_BYTES_MAX => {
            *mask |= bit;
            fields.push((bit, names.text(text)? as u64));
            Ok(None)
        }
        other => Ok(other.clone()),
    }
}

/// The row of `result`, received at `received_at_ms`.
pub(super) fn encode(
    result: &ProbeResult,
    received_at_ms: i64,
    names: &mut Names<'_>,
) -> Result<Row, StorageError> {
    let started_at_ms = result.started_at.timestamp_millis();
    let mut mask = 0u64;
    // (bit, value) in bit order; the id apart (raw bytes, not a varint).
    let mut fields: Vec<(u64, u64)> = Vec::with_capacity(12);
    let mut rest = Rest::default();
    mask |= RECEIVED;
    fields.push((RECEIVED, zigzag(received_at_ms.wrapping_sub(started_at_ms))));
    mask |= PROBE;
    fields.push((PROBE, names.text(&result.probe)? as u64));
    if let Some(status) = result.status {
        mask |= STATUS;
        fields.push((STATUS, u64::from(status)));
    }
    let p = &result.phases_ms;
    let phases = [p.dns, p.connect, p.tls, p.ttfb, p.transfer];
    let whole: Option<Vec<Option<u64>>> = phases
        .iter()
        .map(|phase| match phase {
            None => Some(None),
            Some(ms) => whole_us(*ms).map(Some),
        })
        .collect();
    match whole {
        Some(whole) => {
            for (bit, us) in PHASE_BITS.iter().zip(whole) {
                if let Some(us) = us {
                    mask |= bit;
                    fields.push((*bit, us));
                }
            }
        }
        None => rest.phases_ms = Some(result.phases_ms.clone()),
    }
    rest.error = short_text(names, &result.error, ERROR, &mut mask, &mut fields)?;
    rest.degraded = short_text(names, &result.degraded, DEGRADED, &mut mask, &mut fields)?;
    rest.address = short_text(names, &result.address, ADDRESS, &mut mask, &mut fields)?;
    rest.ip_family = short_text(names, &result.ip_family, IP_FAMILY, &mut mask, &mut fields)?;
    rest.http_version = short_text(
        names,
        &result.http_version,
        HTTP_VERSION,
        &mut mask,
        &mut fields,
    )?;
    if let Some(expiry) = result.cert_expiry {
        // The same for every run until the certificate is renewed: a text.
        let text = expiry.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        mask |= CERT_EXPIRY;
        fields.push((CERT_EXPIRY, names.text(&text)? as u64));
    }
    let id = (result.id != result.own_run_id()).then_some(result.id);
    if id.is_some() {
        mask |= ID;
    }
    let nanos = result.started_at.timestamp_subsec_nanos() % 1_000_000;
    if nanos != 0 {
        mask |= NANOS;
        fields.push((NANOS, u64::from(nanos)));
    }
    let duration_us = match whole_us(result.duration_ms) {
        Some(us) => i64::try_from(us).unwrap_or(i64::MAX),
        None => {
            rest.duration_ms = Some(result.duration_ms);
            // The column still says about how long (roll-ups read it).
            let us = (result.duration_ms * 1000.0).round();
            if us.is_finite() { us as i64 } else { 0 }
        }
    };
    rest.notes = result.notes.clone();
    rest.steps = result.steps.clone();
    rest.screenshot = result.screenshot.clone();
    rest.page = result.page.clone();
    rest.icmp = result.icmp.clone();
    rest.grpc = result.grpc.clone();
    rest.browser = result.browser.clone();

    let mut packed = Vec::with_capacity(40);
    put_varint(&mut packed, mask);
    for (bit, value) in fields.iter().filter(|(bit, _)| *bit < ID) {
        debug_assert!(mask & bit != 0);
        put_varint(&mut packed, *value);
    }
    if let Some(id) = id {
        packed.extend_from_slice(id.as_bytes());
    }
    for (_, value) in fields.iter().filter(|(bit, _)| *bit > ID) {
        put_varint(&mut packed, *value);
    }
    Ok(Row {
        check_id: names.check(&result.check)?,
        started_at_ms,
        region_id: names.text(&result.region)?,
        outcome: outcome_code(result.outcome),
        duration_us,
        packed,
        body: if rest.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&rest)?)
        },
    })
}

/// The columns a read selects, in this order, for `decode`.
pub(super) const COLUMNS: &str =
    "r.started_at_ms, r.region_id, r.outcome, r.duration_us, r.packed, r.body";

/// The result of `row` (selected as `COLUMNS`, from index `at` on), of the
/// check named `check`.
pub(super) fn decode(
    check: String,
    row: &rusqlite::Row<'_>,
    at: usize,
    texts: &mut Texts<'_>,
) -> Result<ProbeResult, StorageError> {
    let started_at_ms: i64 = row.get(at)?;
    let region = texts.get(row.get(at + 1)?)?;
    let outcome = outcome_of(row.get(at + 2)?)?;
    let duration_us: i64 = row.get(at + 3)?;
    let packed: Vec<u8> = row.get(at + 4)?;
    let body: Option<String> = row.get(at + 5)?;
    let mut rest: Rest = match body {
        Some(json) => serde_json::from_str(&json)?,
        None => Rest::default(),
    };
    let mut reader = Reader(&packed);
    let mask = reader.varint()?;
    let mut next = |bit: u64| -> Result<Option<u64>, StorageError> {
        if mask & bit == 0 {
            Ok(None)
        } else {
            reader.varint().map(Some)
        }
    };
    // Kept for the record (how late results come); no reader wants it yet.
    let _received_after_ms = next(RECEIVED)?.map(unzigzag);
    let probe = next(PROBE)?;
    let status = next(STATUS)?;
    let mut phases = [None; 5];
    for (slot, bit) in phases.iter_mut().zip(PHASE_BITS) {
        *slot = next(bit)?.map(|us| us as f64 / 1000.0);
    }
    let error = next(ERROR)?;
    let degraded = next(DEGRADED)?;
    let address = next(ADDRESS)?;
    let ip_family = next(IP_FAMILY)?;
    let http_version = next(HTTP_VERSION)?;
    let cert_expiry = next(CERT_EXPIRY)?;
    let stored_id = if mask & ID != 0 {
        Some(Uuid::from_bytes(reader.bytes16()?))
    } else {
        None
    };
    let nanos = if mask & NANOS != 0 {
        reader.varint()?
    } else {
        0
    };
    let mut text = |id: Option<u64>| -> Result<Option<String>, StorageError> {
        id.map(|id| texts.get(id as i64)).transpose()
    };
    let probe = text(probe)?.unwrap_or_default();
    let error = text(error)?.or(rest.error.take());
    let degraded = text(degraded)?.or(rest.degraded.take());
    let address = text(address)?.or(rest.address.take());
    let ip_family = text(ip_family)?.or(rest.ip_family.take());
    let http_version = text(http_version)?.or(rest.http_version.take());
    let cert_expiry = match text(cert_expiry)? {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(&text)
                .map_err(|_| StorageError::Corrupt(format!("certificate expiry {text}")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let started_at = DateTime::from_timestamp_millis(started_at_ms)
        .and_then(|at| at.checked_add_signed(chrono::Duration::nanoseconds(nanos as i64)))
        .ok_or_else(|| StorageError::Corrupt(format!("start {started_at_ms}")))?;
    let [dns, connect, tls, ttfb, transfer] = phases;
    let phases_ms = rest.phases_ms.take().unwrap_or(Phases {
        dns,
        connect,
        tls,
        ttfb,
        transfer,
    });
    let mut result = ProbeResult {
        id: Uuid::nil(),
        check,
        region,
        probe,
        started_at,
        duration_ms: rest.duration_ms.unwrap_or(ms_of_us(duration_us)),
        outcome,
        status: status.map(|s| u16::try_from(s).unwrap_or(u16::MAX)),
        phases_ms,
        error,
        cert_expiry,
        degraded,
        notes: rest.notes,
        steps: rest.steps,
        screenshot: rest.screenshot,
        page: rest.page,
        icmp: rest.icmp,
        grpc: rest.grpc,
        browser: rest.browser,
        address,
        ip_family,
        http_version,
    };
    result.id = stored_id.unwrap_or_else(|| result.own_run_id());
    Ok(result)
}

/// Migration 12's hook: every row of the JSON-bodied table (renamed
/// `results_json`) into the compact one, then the old table dropped. A row
/// whose JSON does not decode could not be read before either: skipped.
pub(super) fn migrate_json_rows(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    let fail = |e: StorageError| rusqlite_migration::HookError::Hook(e.to_string());
    let now_ms = Utc::now().timestamp_millis();
    let mut names = Names::new(tx, now_ms);
    let mut insert = tx.prepare(INSERT)?;
    let mut select = tx.prepare("SELECT body, received_at_ms FROM results_json")?;
    let mut rows = select.query([])?;
    let mut skipped = 0usize;
    while let Some(row) = rows.next()? {
        let body: String = row.get(0)?;
        let received_at_ms: i64 = row.get(1)?;
        let Ok(result) = serde_json::from_str::<ProbeResult>(&body) else {
            skipped += 1;
            continue;
        };
        let encoded = encode(&result, received_at_ms, &mut names).map_err(fail)?;
        insert_row(&mut insert, &encoded)?;
    }
    drop(rows);
    drop(select);
    drop(insert);
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "results whose stored JSON did not decode were left out of the migration"
        );
    }
    tx.execute_batch("DROP TABLE results_json;")?;
    Ok(())
}

/// Inserts a row; one already stored under the same key stays as it was.
pub(super) const INSERT: &str = "INSERT OR IGNORE INTO results
    (check_id, started_at_ms, region_id, outcome, duration_us, packed, body)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub(super) fn insert_row(
    insert: &mut rusqlite::Statement<'_>,
    row: &Row,
) -> Result<usize, rusqlite::Error> {
    insert.execute(params![
        row.check_id,
        row.started_at_ms,
        row.region_id,
        row.outcome,
        row.duration_us,
        row.packed,
        row.body,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ResultKey, Storage};

    fn ordinary(at: DateTime<Utc>) -> ProbeResult {
        let mut r = ProbeResult::for_test("api", Outcome::Ok, at);
        r.status = Some(200);
        r.duration_ms = 71.345;
        r.phases_ms = Phases {
            dns: Some(1.5),
            connect: Some(8.25),
            tls: Some(20.0),
            ttfb: Some(40.5),
            transfer: Some(1.095),
        };
        r.address = Some("192.0.2.7".into());
        r.ip_family = Some("ipv4".into());
        r.http_version = Some("1.1".into());
        r.cert_expiry = DateTime::from_timestamp(1_780_000_000, 0);
        r.id = r.own_run_id();
        r
    }

    #[test]
    fn an_ordinary_result_is_integers_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        rusqlite_migration::Migrations::new(super::super::schema::migrations())
            .to_latest(&mut conn)
            .unwrap();
        let mut names = Names::new(&conn, 0);
        let at = DateTime::from_timestamp_millis(1_773_145_800_123).unwrap();
        let row = encode(&ordinary(at), 1_773_145_800_600, &mut names).unwrap();
        assert_eq!(row.body, None);
        // Mask, lateness, probe, status, five phases, four texts.
        assert!(row.packed.len() <= 24, "{} bytes", row.packed.len());
        // A random id, an inexact timing: kept, in `packed` and `body`.
        let mut odd = ordinary(at);
        odd.id = Uuid::now_v7();
        odd.duration_ms = 1.000_000_1;
        let row = encode(&odd, 0, &mut names).unwrap();
        assert!(row.packed.len() > 16);
        assert_eq!(row.body.as_deref(), Some(r#"{"duration_ms":1.0000001}"#));
    }

    /// Retention takes the lookup texts no kept row can name with the rows
    /// that named them, and keeps those still in use.
    #[tokio::test]
    async fn texts_go_with_the_last_row_that_named_them() {
        use crate::storage::Batch;
        let dir = tempfile::tempdir().unwrap();
        let start = DateTime::from_timestamp_millis(1_773_145_800_000).unwrap();
        let clock = crate::clock::Clock::manual(start);
        let storage = Storage::open_with_clock(dir.path(), clock.clone()).unwrap();
        let mut old = ProbeResult::for_test("api", Outcome::Error, start);
        old.error = Some("an error seen once, long ago".into());
        let mut batch = Batch::default();
        batch.results.push((old, start));
        storage.ingest().write_batch(batch).await.unwrap();
        clock.advance(std::time::Duration::from_secs(40 * 86_400));
        let now = clock.now();
        let mut fresh = ProbeResult::for_test("api", Outcome::Error, now);
        fresh.error = Some("an error of today".into());
        let mut batch = Batch::default();
        batch.results.push((fresh.clone(), now));
        storage.ingest().write_batch(batch).await.unwrap();
        storage
            .jobs()
            .prune_older_than(now - chrono::Duration::days(30), 100)
            .await
            .unwrap();
        let listed = storage
            .history()
            .recent_results("api".into(), 10)
            .await
            .unwrap();
        assert_eq!(listed, vec![fresh]);
        let conn = Connection::open(dir.path().join("lookout.db")).unwrap();
        let texts: Vec<String> = conn
            .prepare("SELECT text FROM result_texts ORDER BY text")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            texts.contains(&"an error of today".to_string()),
            "{texts:?}"
        );
        assert!(
            !texts.contains(&"an error seen once, long ago".to_string()),
            "{texts:?}"
        );
    }

    #[tokio::test]
    async fn json_rows_of_an_older_database_become_compact_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("lookout.db")).unwrap();
        let mut older = super::super::schema::migrations();
        older.truncate(older.len() - 1);
        rusqlite_migration::Migrations::new(older)
            .to_latest(&mut conn)
            .unwrap();
        let at = DateTime::from_timestamp_millis(1_773_145_800_123).unwrap();
        // As an older probe made them: random ids, nanoseconds.
        let mut plain = ordinary(at + chrono::Duration::nanoseconds(456));
        plain.id = Uuid::now_v7();
        let mut failing =
            ProbeResult::for_test("api", Outcome::Error, at + chrono::Duration::seconds(60));
        failing.error = Some("connect: connection refused".into());
        for r in [&plain, &failing] {
            conn.execute(
                "INSERT INTO results (id, check_name, region, started_at_ms, received_at_ms, outcome, duration_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.id.to_string(),
                    r.check,
                    r.region,
                    r.started_at.timestamp_millis(),
                    r.started_at.timestamp_millis() + 500,
                    r.outcome.as_str(),
                    r.duration_ms,
                    serde_json::to_string(r).unwrap(),
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO results (id, check_name, region, started_at_ms, received_at_ms, outcome, duration_ms, body)
             VALUES ('x', 'api', 'local', 1, 1, 'ok', 1.0, 'not json')",
            [],
        )
        .unwrap();
        drop(conn);
        let storage = Storage::open(dir.path()).unwrap();
        let listed = storage
            .history()
            .recent_results("api".into(), 10)
            .await
            .unwrap();
        assert_eq!(listed, vec![failing, plain.clone()]);
        let known = storage
            .ingest()
            .known_result_ids(vec![ResultKey::of(&plain)])
            .await
            .unwrap();
        assert_eq!(known, vec![plain.id.to_string()]);
    }
}
