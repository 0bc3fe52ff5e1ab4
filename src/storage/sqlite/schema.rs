//! The SQLite schema as numbered migrations, applied in order at open
//! (`user_version` says how far a file is); append only: a migration that
//! shipped is never edited, a change is a new one.

use rusqlite_migration::M;

/// Every migration, oldest first (a function, not a constant: a migration
/// that moves rows in Rust carries a hook).
pub(super) fn migrations() -> Vec<M<'static>> {
    vec![
        M::up(
            "CREATE TABLE results (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        region TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX results_by_check ON results (check_name, started_at_ms DESC);
    CREATE INDEX results_by_age ON results (started_at_ms);
    CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        incident TEXT,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_check ON events (check_name, at_ms DESC);
    CREATE TABLE health_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        touched_at_ms INTEGER NOT NULL
    );",
        ),
        // The alert outbox: one row per (event, channel). Written in the same
        // transaction as the event; a dispatcher sends, retries, dead-letters.
        M::up(
            "CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL,
            check_name TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            event TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at_ms INTEGER NOT NULL,
            next_attempt_at_ms INTEGER NOT NULL,
            last_error TEXT,
            done_at_ms INTEGER
        );
        CREATE INDEX outbox_due ON outbox (state, next_attempt_at_ms);
        CREATE UNIQUE INDEX outbox_once ON outbox (event_id, channel);",
        ),
        M::up(
            "CREATE TABLE silences (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        );",
        ),
        // Deliveries folded into one message share a group id, so a retry
        // resends exactly the same set under the same delivery id.
        M::up(
            "ALTER TABLE outbox ADD COLUMN group_id TEXT; CREATE INDEX outbox_group ON outbox (group_id);",
        ),
        // A region's probe going stale and coming back.
        M::up(
            "CREATE TABLE probe_events (
            id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            stale INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX probe_events_by_region ON probe_events (region, at_ms DESC);",
        ),
        // Hourly latency roll-ups (see rollup.rs), how far they reach, and the
        // hours late results landed in after they were rolled up.
        M::up(
            "CREATE TABLE latency_hourly (
            check_name TEXT NOT NULL,
            region TEXT NOT NULL,
            hour_ms INTEGER NOT NULL,
            total INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (check_name, hour_ms, region)
        ) WITHOUT ROWID;
        CREATE INDEX latency_hourly_by_hour ON latency_hourly (hour_ms);
        CREATE TABLE rollup_mark (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            rolled_until_ms INTEGER NOT NULL
        );
        CREATE TABLE rollup_dirty (hour_ms INTEGER PRIMARY KEY);",
        ),
        // Browser checks' screenshots (PNG), apart from the result JSON so
        // listing results stays light; bounded per check and in total.
        M::up(
            "CREATE TABLE screenshots (
            result_id TEXT PRIMARY KEY,
            check_name TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            png BLOB NOT NULL
        );
        CREATE INDEX screenshots_by_check ON screenshots (check_name, at_ms DESC);
        CREATE INDEX screenshots_by_age ON screenshots (at_ms);",
        ),
        // Each check state's revision: a decision that finds its copy current
        // does not read the state back (see `IngestStore::decide`).
        M::up("ALTER TABLE check_state ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;"),
        // The status page's announcements written through the API (#17),
        // whole as JSON; listed newest first by creation.
        M::up(
            "CREATE TABLE announcements (
            id TEXT PRIMARY KEY,
            created_at_ms INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX announcements_by_age ON announcements (created_at_ms DESC);",
        ),
        // Several replicas (#13): delivery claims with a lease, the leases
        // themselves (the leader's), the replicas' registry, and what the
        // probes last told any replica.
        M::up(
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
        ALTER TABLE outbox ADD COLUMN claim_until_ms INTEGER;
        CREATE INDEX outbox_by_channel ON outbox (channel, created_at_ms);
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            until_ms INTEGER NOT NULL
        );
        CREATE TABLE replicas (
            id TEXT PRIMARY KEY,
            listen TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            started_at_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL
        );
        CREATE TABLE probe_contact (
            region TEXT PRIMARY KEY,
            last_result_ms INTEGER,
            last_contact_ms INTEGER,
            reported_at_ms INTEGER,
            clock_skew_ms INTEGER,
            spool_pending INTEGER
        );
        CREATE TABLE run_now (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            origin TEXT NOT NULL,
            region TEXT NOT NULL,
            check_name TEXT NOT NULL,
            at_ms INTEGER NOT NULL
        );
        CREATE INDEX run_now_by_age ON run_now (at_ms);",
        ),
        // Keys Lookout makes for itself once and keeps (the acknowledge-link
        // key, #16), by name.
        M::up(
            "CREATE TABLE lookout_keys (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL
        );",
        ),
        // Compact results (#19, `compact.rs`): names and repeated texts once,
        // in lookup tables; integers for the rest; one WITHOUT ROWID b-tree on
        // (check, start, region) instead of a UUID key and two indexes. The
        // hook moves every stored row over and drops the old table.
        M::up_with_hook(
            "ALTER TABLE results RENAME TO results_json;
        CREATE TABLE result_checks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            seen_ms INTEGER NOT NULL
        );
        CREATE TABLE result_texts (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL UNIQUE,
            seen_ms INTEGER NOT NULL
        );
        CREATE TABLE results (
            check_id INTEGER NOT NULL,
            started_at_ms INTEGER NOT NULL,
            region_id INTEGER NOT NULL,
            outcome INTEGER NOT NULL,
            duration_us INTEGER NOT NULL,
            packed BLOB NOT NULL,
            body TEXT,
            PRIMARY KEY (check_id, started_at_ms, region_id)
        ) WITHOUT ROWID;",
            super::compact::migrate_json_rows,
        ),
    ]
}
