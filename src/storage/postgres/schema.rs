//! The PostgreSQL schema as numbered migrations, applied in order at
//! connect; append only, like SQLite's. Replicas that start together take
//! turns: each migrates under a transaction-scoped advisory lock, and the
//! one that comes second finds the work done.

use super::StorageError;

/// The key of the advisory lock the migrations are run under.
const MIGRATION_LOCK: i64 = 0x4c6f_6f6b_6f75_7401;

const MIGRATIONS: &[&str] = &[
    // The tables of SQLite's migrations 1 to 9, as they stand after them.
    "CREATE TABLE results (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        region TEXT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX results_by_check ON results (check_name, started_at_ms DESC);
    CREATE INDEX results_by_age ON results (started_at_ms);
    CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        revision BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        incident TEXT,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_check ON events (check_name, at_ms DESC);
    CREATE INDEX events_by_age ON events (at_ms);
    CREATE TABLE health_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        touched_at_ms BIGINT NOT NULL
    );
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        check_name TEXT NOT NULL,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms BIGINT NOT NULL,
        next_attempt_at_ms BIGINT NOT NULL,
        last_error TEXT,
        done_at_ms BIGINT,
        group_id TEXT
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at_ms);
    CREATE UNIQUE INDEX outbox_once ON outbox (event_id, channel);
    CREATE INDEX outbox_group ON outbox (group_id);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    );
    CREATE TABLE probe_events (
        id TEXT PRIMARY KEY,
        region TEXT NOT NULL,
        stale BOOLEAN NOT NULL,
        at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX probe_events_by_region ON probe_events (region, at_ms DESC);
    CREATE TABLE latency_hourly (
        check_name TEXT NOT NULL,
        region TEXT NOT NULL,
        hour_ms BIGINT NOT NULL,
        total BIGINT NOT NULL,
        ok BIGINT NOT NULL,
        hist BYTEA NOT NULL,
        PRIMARY KEY (check_name, hour_ms, region)
    );
    CREATE INDEX latency_hourly_by_hour ON latency_hourly (hour_ms);
    -- One row, always there (NULL: nothing rolled up yet), so that ingest
    -- and roll-up can lock it against each other.
    CREATE TABLE rollup_mark (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rolled_until_ms BIGINT
    );
    INSERT INTO rollup_mark (id, rolled_until_ms) VALUES (1, NULL);
    CREATE TABLE rollup_dirty (hour_ms BIGINT PRIMARY KEY);
    CREATE TABLE screenshots (
        result_id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        png BYTEA NOT NULL
    );
    CREATE INDEX screenshots_by_check ON screenshots (check_name, at_ms DESC);
    CREATE INDEX screenshots_by_age ON screenshots (at_ms);",
    // The status page's announcements written through the API, whole as
    // JSON; listed newest first by creation (SQLite's migration 10).
    "CREATE TABLE announcements (
        id TEXT PRIMARY KEY,
        created_at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX announcements_by_age ON announcements (created_at_ms DESC);",
    // Several replicas: delivery claims with a lease (and the index the
    // Alertmanager resend reads a channel's newest rows by), the leases
    // themselves (the leader's), the replicas' registry, and what the
    // probes last told any replica (SQLite's migration 11).
    "ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until_ms BIGINT;
    CREATE INDEX outbox_by_channel ON outbox (channel, created_at_ms);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until_ms BIGINT NOT NULL
    );
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        listen TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL
    );
    CREATE TABLE probe_contact (
        region TEXT PRIMARY KEY,
        last_result_ms BIGINT,
        last_contact_ms BIGINT,
        reported_at_ms BIGINT,
        clock_skew_ms BIGINT,
        spool_pending BIGINT
    );
    CREATE TABLE run_now (
        seq BIGSERIAL PRIMARY KEY,
        origin TEXT NOT NULL,
        region TEXT NOT NULL,
        check_name TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    CREATE INDEX run_now_by_age ON run_now (at_ms);",
    // Keys Lookout makes for itself once and keeps (the acknowledge-link
    // key, #16), by name (SQLite's migration 12).
    "CREATE TABLE lookout_keys (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
    );",
];

/// Applies the migrations this database has not had yet.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StorageError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS lookout_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM lookout_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if applied > known {
        return Err(StorageError::Migration(
            format!(
                "the database is at schema version {applied}, newer than this Lookout knows ({known}); run the newer version"
            )
            .into(),
        ));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(applied.max(0) as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| StorageError::Migration(Box::new(e)))?;
        tx.execute(
            "INSERT INTO lookout_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
