//! Every explicit limit of Lookout in one place, each with the reason for its value.
//!
//! A monitor faces untrusted input on every side (target bodies, API requests,
//! config written by hand), so nothing is unbounded. Where a limit is a user's
//! setting, the constant here is its default.

use std::time::Duration;

/// A config file larger than this is refused before parsing: real files are a few KiB.
pub const CONFIG_FILE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Parser events per config file; bounds work on hostile or generated YAML.
pub const CONFIG_YAML_EVENTS_MAX: usize = 200_000;
/// Aliases per config file: an anchor reused a few times is normal, thousands is a bomb.
pub const CONFIG_YAML_ALIASES_MAX: usize = 1_000;
/// Nesting depth per config file. Our deepest structure (a browser step's
/// fields) is 7 levels; each level costs tens of KiB of stack in a debug
/// build, and reloads parse on tokio's 2 MiB blocking threads, where 64
/// levels overflowed the stack (found by tests/fuzz_config.rs).
pub const CONFIG_YAML_DEPTH_MAX: usize = 32;
/// Compiled size of a `body_matches` regular expression: bounds memory and
/// matching time on hostile patterns.
pub const REGEX_BYTES_MAX: usize = 1024 * 1024;
/// Longest duration accepted anywhere in the config (about 400 days): larger
/// values are typos, and would overflow time arithmetic.
pub const DURATION_MAX: Duration = Duration::from_secs(400 * 86_400);
/// Farthest a deadline is put in the scheduler's queue: tokio-util's
/// DelayQueue panics past about 795 days, and a cron expression can fire
/// years ahead (`0 0 29 2 *`). A deadline beyond it is queued at the
/// horizon and queued again from there, once a day.
pub const SCHEDULE_QUEUE_HORIZON: Duration = Duration::from_secs(86_400);
/// How many config errors are reported before the rest are summarised.
pub const CONFIG_ERRORS_MAX: usize = 200;

/// Default check timeout (DESIGN.md).
pub const CHECK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Shortest schedule interval accepted: faster is a load test, not monitoring.
pub const CHECK_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Default consecutive failures before a region counts as failing (DESIGN.md).
pub const ALERT_FAILURES_DEFAULT: u32 = 2;
/// Default consecutive successes before a region recovers (DESIGN.md).
pub const ALERT_SUCCESSES_DEFAULT: u32 = 1;

/// Bytes of a target's response body that a probe reads; the rest is not fetched,
/// so a huge or endless body cannot exhaust memory or time.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Size of a `ca_file`: a bundle of every public root is about 250 KiB.
pub const CA_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Bytes of a TCP banner read while looking for `expect`.
pub const TCP_BANNER_BYTES_MAX: usize = 64 * 1024;
/// Once a TCP server has sent part of its banner, a pause this long means
/// it has said all it will, and the banner is judged on what arrived.
pub const TCP_BANNER_IDLE: Duration = Duration::from_millis(500);
/// Redirects followed before the probe reports a loop (DESIGN.md).
pub const HTTP_REDIRECTS_MAX: usize = 10;
/// Characters of an error message kept in a result: one line, human readable.
pub const RESULT_ERROR_CHARS_MAX: usize = 300;

/// Checks running at once in one probe. Each holds a socket and little memory;
/// the limit protects the probe's own file descriptors and CPU.
pub const PROBE_CONCURRENCY_DEFAULT: usize = 256;
/// Results buffered between the scheduler and the transport. When full, the
/// scheduler waits (back-pressure) rather than dropping results.
pub const RESULT_QUEUE_CAPACITY: usize = 4_096;
/// Results sent to the aggregator in one batch.
pub const RESULT_BATCH_MAX: usize = 500;

/// Results kept in storage (days); older ones are pruned in the background.
pub const RETENTION_DEFAULT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Incident events are kept at least this long, whatever `--retention`
/// says: the status page shows 90 days of daily status from them, and they
/// are a few rows per incident.
pub const EVENTS_KEPT_MIN: Duration = Duration::from_secs(92 * 86_400);
/// Hourly latency roll-ups are kept this long (one small row per check,
/// region and hour), for baselines and long-range figures.
pub const ROLLUPS_KEPT: Duration = Duration::from_secs(400 * 86_400);
/// How often finished hours are rolled up, and hours rolled up per go.
pub const ROLLUP_EVERY: Duration = Duration::from_secs(60);
pub const ROLLUP_HOURS_PER_GO: usize = 24;
/// How often the status page's figures (uptime, daily bars, percentiles)
/// may be recomputed; between, the page is served from the last ones.
pub const STATUS_CACHE_FOR: Duration = Duration::from_secs(5);
/// Events and raw results a status page computation reads at most: a
/// flapping check or a huge fleet degrades the figures, never the service.
pub const STATUS_EVENTS_MAX: usize = 200_000;
pub const STATUS_RAW_RESULTS_MAX: usize = 500_000;
/// `?refresh=` of the status page is clamped to this range (seconds).
pub const STATUS_REFRESH_MIN: u64 = 5;
pub const STATUS_REFRESH_MAX: u64 = 3600;
/// `p95_above_baseline`: the recent window compared with the 7-day baseline,
/// the results each side needs before it says anything, and how often it
/// is judged.
pub const LATENCY_RECENT_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const LATENCY_BASELINE_WINDOW: Duration = Duration::from_secs(7 * 86_400);
pub const LATENCY_RECENT_MIN_RESULTS: usize = 5;
pub const LATENCY_BASELINE_MIN_RESULTS: u64 = 50;
pub const LATENCY_JUDGE_EVERY: Duration = Duration::from_secs(60);
/// A check made degraded by `p95_above_baseline` is up again only once its
/// p95 falls below this share of the line it crossed, so a p95 hovering at
/// the line does not flip the state every minute.
pub const LATENCY_RECOVERY_RATIO: f64 = 0.8;

/// How often the retention pruner runs.
pub const RETENTION_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per prune statement, so pruning never holds the write lock long.
pub const RETENTION_PRUNE_BATCH: usize = 10_000;

/// How long a SQLite statement waits for a lock held by another connection
/// (a second process on the same file) before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL pages after which a SQLite commit checkpoints (SQLite's default is
/// 1,000, 4 MB). Ingest rewrites the same hot pages (each check's newest
/// leaf, the check states) batch after batch; a longer WAL copies each of
/// them back once per checkpoint instead of every few batches, and syncs
/// far less often. The WAL file grows to about 40 MB and stays there.
pub const SQLITE_WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements each SQLite connection keeps: more than the queries
/// it caches (about 40), so none is evicted and prepared again.
pub const SQLITE_STATEMENTS_CACHED: usize = 128;

/// SQLite keeps a result's repeated texts (errors, addresses, versions,
/// certificate expiries) once, in a lookup table, up to this size each: an
/// error is at most `RESULT_ERROR_CHARS_MAX` chars (4 bytes each at worst);
/// anything longer is one of a kind, kept in the row's JSON instead.
pub const SQLITE_TEXT_INTERNED_BYTES_MAX: usize = 4 * RESULT_ERROR_CHARS_MAX;
/// How stale a lookup text's `seen_ms` may get before a use refreshes it
/// (one write per text and hour at most, not one per result); texts unseen
/// for longer than the results are kept, plus this and a day, are pruned.
pub const SQLITE_TEXT_SEEN_REFRESH_MS: i64 = 3_600_000;

/// `?limit=` default and maximum for `GET /api/v1/checks/{name}/results`.
pub const API_RESULTS_LIMIT_DEFAULT: usize = 100;
pub const API_RESULTS_LIMIT_MAX: usize = 1_000;
/// Request bodies the aggregator accepts.
pub const API_BODY_BYTES_MAX: usize = 1024 * 1024;
/// A request to the aggregator's API that takes longer than this is cut off.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `/health` gives storage this long to answer before it calls it failing.
pub const HEALTH_STORAGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long shutdown waits for running checks and in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One alert delivery attempt (SMTP session or webhook request) is cut off after this.
pub const ALERT_SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// First retry delay of a failed delivery; it doubles each attempt, with jitter.
pub const ALERT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
pub const ALERT_RETRY_MAX: Duration = Duration::from_secs(300);
/// A receiver's `Retry-After` is honoured up to this.
pub const ALERT_RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// A delivery still failing this long after its event is dead-lettered (default).
pub const ALERT_MAX_AGE_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Deliveries in flight at once.
pub const ALERT_CONCURRENCY: usize = 16;
/// Deliveries in flight to one channel: a slow or dead receiver holds only
/// these, never the slots of other channels.
pub const ALERT_CHANNEL_CONCURRENCY: usize = 2;
/// Due deliveries fetched per outbox poll.
pub const ALERT_BATCH: usize = 64;
/// The dispatcher looks at the outbox at least this often, even unprompted.
pub const ALERT_POLL_EVERY: Duration = Duration::from_secs(1);

/// Characters of a silence's `reason` or `author`.
pub const SILENCE_TEXT_CHARS_MAX: usize = 500;
/// Labels in a silence's matcher.
pub const SILENCE_LABELS_MAX: usize = 20;
/// Longest silence: longer holds belong in a maintenance window in YAML.
pub const SILENCE_DURATION_MAX: Duration = Duration::from_secs(30 * 86_400);
/// Active silences at once.
pub const SILENCES_ACTIVE_MAX: usize = 1_000;

/// A check changing state more than `FLAP_CHANGES_MAX` times within
/// `FLAP_WINDOW` is flapping: reported once, then per-change alerts pause
/// until it has been stable for a whole window.
pub const FLAP_CHANGES_MAX: usize = 5;
pub const FLAP_WINDOW: Duration = Duration::from_secs(3600);

/// Longest `group_window`: grouping trades speed for fewer messages, and an
/// alert held longer than this is late.
pub const ALERT_GROUP_WINDOW_MAX: Duration = Duration::from_secs(600);
/// Alerts folded into one grouped message at most: Discord shows 10 embeds
/// a message, the tightest of the formats.
pub const ALERT_GROUP_MAX: usize = 10;

/// A result batch a probe may POST: `RESULT_BATCH_MAX` results with room
/// for long errors and notes. Larger bodies are refused with 413.
pub const RESULTS_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The longest a probe's long-poll (specs, run-now requests) is held open:
/// under `API_REQUEST_TIMEOUT` and under common proxies' idle timeouts.
pub const PROBE_LONG_POLL_MAX: Duration = Duration::from_secs(25);
/// Checks asked to run now that wait for one region's probe; past this,
/// further requests are dropped (a probe that is not polling).
pub const RUN_NOW_QUEUE_MAX: usize = 10_000;
/// Bytes a probe keeps in its spool while the aggregator is unreachable.
/// Past it, the oldest batches are dropped, counted and logged: at a
/// result a second of ~500 bytes, 1 GiB is weeks of results.
pub const SPOOL_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Spooled batches sent in one POST when draining a backlog.
pub const SPOOL_DRAIN_FILES_MAX: usize = 64;
/// How long a probe waits for the aggregator's answer to one request
/// (long-polls get `PROBE_LONG_POLL_MAX` on top).
pub const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a check-specs document a probe accepts from the aggregator.
pub const PROBE_SPECS_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Quiet time after a change in `checks/`, `alerts/` or `probes.yaml`
/// before reloading: editors write files in several steps.
pub const CONFIG_RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);

/// Browser sessions (Chromium instances) running at once in one probe
/// (`--browser-sessions`): each costs a few hundred MiB and a core while it
/// loads pages, so a small machine runs two; further flows queue.
pub const BROWSER_SESSIONS_DEFAULT: usize = 2;
/// Steps in one browser flow: a flow is a short user journey, not a crawler.
pub const BROWSER_STEPS_MAX: usize = 100;
/// A `wait_for` step without its own `timeout` waits this long (and never
/// longer than what is left of the check's timeout).
pub const BROWSER_WAIT_FOR_DEFAULT: Duration = Duration::from_secs(10);
/// How often `wait_for` looks for its element.
pub const BROWSER_WAIT_POLL: Duration = Duration::from_millis(100);
/// A PNG screenshot larger than this is dropped (with a note): results
/// travel in 16 MiB batches, and the aggregator keeps screenshots.
pub const BROWSER_SCREENSHOT_BYTES_MAX: usize = 1024 * 1024;
/// Every browser window has this size, so screenshots and layouts compare
/// from run to run.
pub const BROWSER_WINDOW_WIDTH: u32 = 1280;
pub const BROWSER_WINDOW_HEIGHT: u32 = 800;
/// Closing a session (after success, failure or timeout) gets this long;
/// past it the browser is killed.
pub const BROWSER_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Creating a session (starting Chromium) gets this long when the check's
/// own timeout is longer.
pub const BROWSER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a freshly started chromedriver gets to answer `/status`.
pub const CHROMEDRIVER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After asking chromedriver to stop (SIGTERM), how long before SIGKILL.
pub const CHROMEDRIVER_STOP_GRACE: Duration = Duration::from_secs(2);
/// Screenshots the aggregator keeps per check (the newest), and in all:
/// they are for looking at recent failures, not an archive.
pub const SCREENSHOTS_PER_CHECK_MAX: usize = 20;
pub const SCREENSHOTS_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Bytes of screenshots in one result batch a probe sends: past it, the
/// screenshots of the oldest results in the batch are left out (noted), so
/// a batch stays well under `RESULTS_BODY_BYTES_MAX`.
pub const BATCH_SCREENSHOT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Screenshots attached to one alert email at most, in bytes: a grouped
/// alert of many failing flows stays under common mail servers' message
/// limits (10 MiB and up, after base64); the rest are linked.
pub const EMAIL_ATTACHMENTS_BYTES_MAX: usize = 6 * 1024 * 1024;

// Hardening: clocks, result batches, fast confirmation, heartbeats, storage.

/// How fast Lookout's clock (`clock::now`) may close a gap to the system
/// clock: 1 % of the time that passes. A step of the system clock (NTP, a
/// VM restore) is then absorbed over 100 times its size, and any duration
/// measured meanwhile is off by at most 1 %, far inside every window the
/// rules use.
pub const CLOCK_SLEW_RATE: f64 = 0.01;
/// A system-clock step larger than this is followed at once (with a
/// warning) rather than slewed: hours off is a clock set right (a VM
/// resumed, a host booted with a wrong clock), and slewing it away at 1 %
/// would leave dates wrong for days.
pub const CLOCK_STEP_FOLLOWED: Duration = Duration::from_secs(3600);
/// A timestamp in a result batch further than this from the aggregator's
/// clock is refused (400 naming the field): no probe's clock is a century
/// off, and beyond it time arithmetic can overflow.
pub const RESULT_TIME_SPAN_MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
/// The oldest a result may be dated when it arrives (its age on the probe's
/// clock is clamped to this): a spool holds weeks of results, and results
/// older than any retention are of no use to the rules.
pub const RESULT_AGE_MAX: Duration = Duration::from_secs(400 * 86_400);
/// A result older than this when it arrives is stored as history but not
/// judged: what a check did a day ago says nothing about it now, and an id
/// pruned by retention must not come back as the region's latest result.
/// (A backlog from a probe cut off for hours is still judged in order.)
pub const RESULT_JUDGED_AGE_MAX: Duration = Duration::from_secs(86_400);
/// Largest duration (of a run, a phase, a step) a result may report:
/// checks time out in seconds and browser flows in minutes; more is garbage.
pub const RESULT_DURATION_MAX: Duration = Duration::from_secs(86_400);
/// Strings in a result a probe posts are cut to these many characters
/// (error and degraded reasons, notes, step names and errors, page title),
/// and lists to these many entries, before they cost storage or a page.
pub const RESULT_TEXT_CHARS_MAX: usize = 1_000;
pub const RESULT_URL_CHARS_MAX: usize = 2_048;
pub const RESULT_NOTES_MAX: usize = 20;
/// Longest check, region or probe name a result may carry (names are a
/// few dozen characters; an unknown one is refused, never stored).
pub const RESULT_NAME_CHARS_MAX: usize = 200;
/// Heartbeat pings of one check are coalesced within windows this long:
/// the first and one change of kind (a `/fail` after successes) are stored
/// and judged at once, the rest counted, the latest of them stored when the
/// window closes if it changes the verdict: a job pinging in a loop (even
/// alternating kinds) writes a few rows a second, not thousands, and no
/// change of its word is lost.
pub const HEARTBEAT_PING_GAP_MIN: Duration = Duration::from_secs(1);
/// A check is run early (fast confirmation's run-now) at most once per its
/// interval, and never more often than this: a target never gets more than
/// about twice its configured rate from one probe, however results arrive
/// or how often the aggregator asks.
pub const RUN_NOW_FLOOR_MIN: Duration = Duration::from_millis(500);

// Probe resilience (the remote probe's uplink and spool; issue 21).

/// A probe gives up connecting to its aggregator after this long (TCP and
/// TLS): far above a transcontinental handshake, short enough that an
/// address that drops packets is retried rather than waited on.
pub const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest time between the starts of two long-poll requests (specs,
/// run-now), whatever the answer: a proxy that answers at once (200 with the
/// same document, 5xx, garbage, resets) costs at most one request per
/// route this often, never a tight loop. A real change is still picked up
/// at once by the request that follows.
pub const PROBE_POLL_GAP_MIN: Duration = Duration::from_secs(2);
/// Results a probe keeps in memory while its spool cannot be written
/// (read-only, full disk), sent directly when the aggregator answers
/// (`--memory-queue`). At ~500 bytes a result, 10 000 is ~5 MiB: hours of
/// a busy probe, and nothing next to the memory of a browser session.
/// Past it the oldest are dropped and counted.
pub const PROBE_MEMORY_QUEUE_DEFAULT: usize = 10_000;
/// Bytes of the aggregator's answer to a results batch or a run-now
/// long-poll a probe reads: both are small JSON objects.
pub const PROBE_ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of an error answer's body a probe reads to quote it in its log.
pub const PROBE_ERROR_BODY_BYTES_MAX: usize = 4 * 1024;
/// Results refused by the aggregator (within an accepted batch) that a
/// probe names in its log one by one; the rest are summed up.
pub const PROBE_REFUSED_LOGGED_MAX: usize = 10;
/// Backoff between a probe's attempts to reach its aggregator: from a
/// blink (a restart is over in a second) doubling to a few seconds, so an
/// outage costs a handful of requests a minute per route, and the spool
/// drains soon after the aggregator is back.
pub const PROBE_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A send still in flight when the probe is asked to stop gets this long;
/// what it does not deliver stays in the spool for the next start.
pub const PROBE_FINAL_SEND_GRACE: Duration = Duration::from_secs(2);
/// A line about dropped results at most this often: a probe that drops
/// results drops some with every run of every check, and one line with the
/// count says as much as a thousand.
pub const PROBE_DROP_LOG_EVERY: Duration = Duration::from_secs(10);

// --- config hardening (issue #14: secrets, config files, fuzzing) ---

/// Compiled size of the one regular expression that masks every secret in
/// all its forms. Generous (a few hundred secrets of a hundred characters
/// fit); past it each secret is matched on its own, slower but as thorough.
pub const SECRETS_REGEX_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Secrets remembered process-wide for masking log lines. Reloads may bring
/// new values (rotated tokens); old ones stay masked until this many newer
/// ones have been seen, so memory stays bounded however often config changes.
pub const SECRETS_REMEMBERED_MAX: usize = 2_000;
/// YAML files in one config directory: thousands of checks fit in far
/// fewer; more is a wrong `--checks` (a home or data directory), refused
/// before reading them all.
pub const CONFIG_DIR_FILES_MAX: usize = 10_000;

// Listeners (issue 14: every listener bounded; src/listener.rs).

/// Client connections one listener serves at once (`--max-connections`):
/// far more than the people, probes and scrapers of a monitor, far fewer
/// than the descriptors its probes need. Past it, an idle connection makes
/// room (the longest idle first), or the newcomer gets 503 and is closed.
pub const HTTP_CONNECTIONS_MAX_DEFAULT: usize = 4_096;
/// Of the process's descriptor limit (`RLIMIT_NOFILE`, raised to its hard
/// limit at start), clients may hold at most this share (1/N): the rest is
/// the probes' (a socket or two per running check, browsers, alert
/// deliveries, SQLite), which clients can therefore never starve.
pub const HTTP_DESCRIPTOR_SHARE_DIVISOR: u64 = 2;
/// A client has this long to send a whole request head (`--header-timeout`),
/// counted from the connection and, on a kept-alive connection, from the
/// end of the last response (hyper counts the keep-alive wait too):
/// slowloris connections, trickling a header at a time, are closed. Ten
/// seconds is plenty over any real network, and outlives the gaps between a
/// busy probe's requests, so its connection is reused.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight and no byte moving either way
/// for this long is closed (`--idle-timeout`): a client that stops reading
/// a response (the status page is megabytes for a large fleet) would hold
/// the connection and its buffered body forever, as no timer of hyper's
/// runs while a response is written.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of one request head, and headers in it: real requests carry a few
/// hundred bytes; this bounds what a connection can make us buffer.
pub const HTTP_HEADER_BYTES_MAX: usize = 32 * 1024;
pub const HTTP_HEADERS_MAX: usize = 100;
/// Connections waiting in the kernel to be accepted. The accept loop takes
/// them at once (serving, evicting or refusing), so this only absorbs bursts.
pub const HTTP_LISTEN_BACKLOG: u32 = 1_024;
/// Refused connections (503) being answered at once, each holding its
/// descriptor for at most `HTTP_REFUSAL_LINGER` while it reads what the
/// client sent (closing on unread bytes would reset the connection and lose
/// the 503). Past it, refused connections are closed at once.
pub const HTTP_REFUSALS_MAX: usize = 64;
pub const HTTP_REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// When full, this many of the oldest connections are looked at to find
/// the longest idle one: bounded work per accepted connection.
pub const HTTP_EVICT_SCAN_MAX: usize = 64;
/// How long a newcomer waits for the idle connection it displaced to close
/// before it is refused instead. It closes at its task's next turn, well
/// under a millisecond, unless it just took a request (then it finishes
/// that first) or the machine is starved of CPU: seconds, not forever.
pub const HTTP_EVICT_WAIT: Duration = Duration::from_secs(2);
/// Newcomers waiting at once for that, each holding its descriptor (so
/// they count against the clients' share, as refusals do): evictions
/// overlap instead of each waiting for the last; past it, accepting waits.
pub const HTTP_EVICTIONS_PENDING_MAX: usize = 64;
/// After an accept error that is not the client's (out of descriptors or
/// memory), the listener pauses this long instead of spinning.
pub const HTTP_ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// "Connection limit reached" and accept errors are logged at most this
/// often: under a flood, one line per connection would be a flood of its own.
pub const HTTP_WARN_EVERY: Duration = Duration::from_secs(10);
/// Connections to a probe's `--metrics-listen` endpoint at once: Prometheus
/// and a person or two.
pub const PROBE_METRICS_CONNECTIONS_MAX: usize = 64;
/// A request refused before its body was read (401, 403, 413) still has its
/// body coming: it is read and thrown away, up to these bytes and this time,
/// so that a client still sending sees the answer instead of a connection
/// reset (closing on unread bytes resets it). Nothing is kept; past either
/// bound the connection is closed. Twice the largest body any route takes.
pub const HTTP_REFUSED_BODY_DRAIN_BYTES_MAX: usize = 2 * RESULTS_BODY_BYTES_MAX;
pub const HTTP_REFUSED_BODY_DRAIN_TIME: Duration = Duration::from_secs(5);

// Limits that lived beside their code (issue 12: every limit here).

/// How long the resolver waits for an answer (UDP retransmits included)
/// before reporting the server silent. The check's own timeout usually cuts
/// in first; this bounds the resolver's background work after the check gave
/// up, and is the usual resolv.conf default.
pub const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers listed in the `answers:` note (and after `got` in a failure); the
/// rest are counted. A round-robin set rarely has more than a dozen.
pub const DNS_NOTE_ANSWERS_MAX: usize = 20;
/// Characters of one answer shown in the note; a TXT record can hold 64 KiB.
pub const DNS_ANSWER_CHARS_MAX: usize = 200;
/// How long closing the connection (close_notify, FIN) may take after a
/// handshake; the verdict is already known, so a slow peer must not turn it
/// into a timeout.
pub const TLS_CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Names of a misnamed certificate quoted in the failure reason.
pub const TLS_NAMES_SHOWN_MAX: usize = 5;
/// How long shutdown waits for sessions to close by themselves (a hung one
/// gets `BROWSER_CLOSE_GRACE` to close, then its slot's cleanup) before it
/// stops chromedriver under them.
pub const BROWSER_SHUTDOWN_SESSIONS_WAIT: Duration = Duration::from_secs(8);
/// How long click, fill, select, press and expect_text look for their
/// element before "no element matches": a page still settling after a
/// navigation gets this much grace, a broken page fails quickly.
pub const BROWSER_FIND_WAIT: Duration = Duration::from_secs(2);
/// After a timeout, capturing the page (screenshot, URL, title) gets this
/// long: a hung browser must not hold the result past its deadline.
pub const BROWSER_CAPTURE_AFTER_TIMEOUT: Duration = Duration::from_millis(600);
/// After a failed step, capturing gets what is left of the check's
/// timeout, and at least this.
pub const BROWSER_CAPTURE_MIN: Duration = Duration::from_secs(2);
/// How long `serve`'s shipper waits for more results once one arrived,
/// before storing them as one batch: a transaction per result costs more
/// than the probe that made it (a WAL commit, statements, a blocking-pool
/// hand-off), and 100 ms is small against any alerting delay a user sets.
pub const LOCAL_SHIP_GATHER: Duration = Duration::from_millis(100);
/// `serve`'s in-memory shipping retries a batch the aggregator could not
/// store with this backoff (doubling): quick after a blip, never a tight
/// loop while storage fails.
pub const LOCAL_SHIP_RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
pub const LOCAL_SHIP_RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// How often the aggregator lets time pass for staleness.
pub const AGGREGATOR_TICK_EVERY: Duration = Duration::from_secs(1);

// --- PostgreSQL (#13) ---

/// Connections one aggregator keeps to PostgreSQL: ingest, the API's reads,
/// the dispatcher and the jobs each take one for a statement or a
/// transaction; more would only queue inside the server.
pub const POSTGRES_POOL_MAX: usize = 16;
/// How long a statement waits for a free connection before it fails (the
/// probe resends, the API answers 503): a stuck pool must not hang ingest.
pub const POSTGRES_WAIT_MAX: Duration = Duration::from_secs(10);
/// How long opening a connection may take, TLS included.
pub const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
// --- new check kinds (#15 part B) ---
/// The largest WebSocket message (and frame) a `websocket` check reads: the
/// first message is only searched for `expect`, and a server must not make
/// a probe buffer without end.
pub const WEBSOCKET_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Control frames (ping, pong) a `websocket` check skips while waiting for
/// the first data message: a server that only pings must not keep it busy.
pub const WEBSOCKET_CONTROL_FRAMES_MAX: usize = 16;
/// How long the closing handshake may take once the verdict is known; a
/// server that never answers the close must not turn it into a timeout.
pub const WEBSOCKET_CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Characters of the first message quoted when `expect` fails.
pub const WEBSOCKET_QUOTED_CHARS_MAX: usize = 80;
/// The largest gRPC health answer decoded: a `HealthCheckResponse` is a few
/// bytes, so anything near this is not a health server.
pub const GRPC_RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// The largest header block (HTTP/2 headers and trailers) a `grpc` check
/// accepts from the server.
pub const GRPC_HEADER_BYTES_MAX: u32 = 64 * 1024;
/// Echo requests one `icmp` run may send: each waits for its reply, and a
/// check is a probe, not a flood.
pub const ICMP_COUNT_MAX: u32 = 100;
/// `count` when the check does not say (as `ping -c 3`).
pub const ICMP_COUNT_DEFAULT: u32 = 3;
/// `interval` when the check does not say.
pub const ICMP_INTERVAL_DEFAULT: Duration = Duration::from_millis(200);
/// The shortest `interval`: ping(8) refuses less than 200ms to non-root
/// users; 10ms keeps a burst of `ICMP_COUNT_MAX` polite.
pub const ICMP_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// Payload bytes of an echo request by default (as ping(8): 64 on the wire).
pub const ICMP_PAYLOAD_BYTES_DEFAULT: usize = 56;
/// The largest payload: what fits one 1500-byte IPv4 packet unfragmented
/// (1500 - 20 IP - 8 ICMP).
pub const ICMP_PAYLOAD_BYTES_MAX: usize = 1472;
/// The buffer one received ICMP packet is read into: the largest echo we
/// send, plus an IPv4 header with options (raw sockets get it too).
pub const ICMP_RECEIVE_BYTES_MAX: usize = ICMP_PAYLOAD_BYTES_MAX + 8 + 60;
/// The part of the check's timeout kept for the result: an `icmp` run stops
/// waiting for replies this long before the timeout (or at 90% of a shorter
/// one), so lost packets are counted as lost rather than the run timing out.
pub const ICMP_RESULT_MARGIN: Duration = Duration::from_millis(100);
// --- browser flows for real apps (#20) ---
/// Bytes of an `eval` or `wait_for_js` script: a check runs an expression
/// or a few lines, not an application.
pub const BROWSER_SCRIPT_BYTES_MAX: usize = 16 * 1024;
/// Cookies and extra headers set before the first page: an app's session
/// and consent cookies, an auth header or two.
pub const BROWSER_COOKIES_MAX: usize = 20;
pub const BROWSER_HEADERS_MAX: usize = 20;
/// Pixels of a viewport side: beyond a 4K screen a screenshot only costs.
pub const BROWSER_VIEWPORT_SIDE_MAX: u32 = 4096;
/// Bytes of a file `upload` hands the browser: chromedriver sends it base64
/// in one request, held in memory twice.
pub const BROWSER_UPLOAD_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Bytes of a file `include:` reads, and parameters one include gives.
pub const BROWSER_INCLUDE_BYTES_MAX: u64 = 256 * 1024;
pub const BROWSER_INCLUDE_PARAMS_MAX: usize = 32;
/// How long `window: new` (and `{title|url}`) waits for the window to be
/// there: a popup opens a moment after the click that asked for it.
pub const BROWSER_WINDOW_WAIT: Duration = Duration::from_secs(5);
/// Console errors and failed requests kept per run (the first ones: the
/// first is what `fail_on` names), and characters of each message or URL.
pub const BROWSER_PAGE_ERRORS_MAX: usize = 20;
pub const BROWSER_PAGE_ERROR_CHARS_MAX: usize = 300;
/// Log entries read from the browser per step: a page that logs in a loop
/// must not make one read unbounded.
pub const BROWSER_LOG_ENTRIES_PER_READ_MAX: usize = 500;
/// Pages with Web Vitals per run (each navigation is one).
pub const BROWSER_VITALS_PAGES_MAX: usize = 20;
/// The film strip of a failing run: at most this many thumbnails (the last
/// steps before the failure), each and all together within these bytes
/// (JPEG), so a result with one stays well inside a batch's bound.
pub const BROWSER_FILM_STRIP_FRAMES_MAX: usize = 8;
pub const BROWSER_FILM_STRIP_FRAME_BYTES_MAX: usize = 48 * 1024;
pub const BROWSER_FILM_STRIP_BYTES_MAX: usize = 256 * 1024;
/// A film strip frame's scale (of the viewport) and JPEG quality: enough to
/// see which page and which state, a tenth of a full screenshot's bytes.
pub const BROWSER_FILM_STRIP_SCALE: f64 = 0.4;
pub const BROWSER_FILM_STRIP_JPEG_QUALITY: u32 = 50;
// --- status page (#17) ---
/// A page or metrics token shorter than this is guessable.
pub const PAGE_TOKEN_CHARS_MIN: usize = 16;
/// Groups on one page: each is a section and a roll-up; more is not a page
/// anyone reads.
pub const PAGE_GROUPS_MAX: usize = 200;
/// A group's name: a heading and a badge label.
pub const PAGE_GROUP_NAME_CHARS_MAX: usize = 80;
/// A check's `display_name`: a card's heading.
pub const PAGE_DISPLAY_NAME_CHARS_MAX: usize = 120;
/// Announcements stored through the API; a flood of POSTs must not grow
/// the page (every open one is on it) or the database without bound.
pub const ANNOUNCEMENTS_STORED_MAX: usize = 1_000;
/// Announcements the page, the feed and `GET /api/v1/announcements` read.
pub const ANNOUNCEMENTS_LISTED_MAX: usize = 200;
/// One announcement's request body.
pub const ANNOUNCEMENT_BODY_BYTES_MAX: usize = 64 * 1024;
/// An announcement's title.
pub const ANNOUNCEMENT_TITLE_CHARS_MAX: usize = 200;
/// One update's text (Markdown): a few paragraphs.
pub const ANNOUNCEMENT_TEXT_CHARS_MAX: usize = 8_000;
/// Updates on one announcement's timeline.
pub const ANNOUNCEMENT_UPDATES_MAX: usize = 50;
/// Checks and groups one announcement names.
pub const ANNOUNCEMENT_TARGETS_MAX: usize = 100;
/// Entries in one Atom feed: newest first, enough for any reader's poll.
pub const FEED_ENTRIES_MAX: usize = 100;
/// How long a client and a shared cache may keep a badge: README badges
/// are fetched through image proxies, which must not hammer the page.
pub const BADGE_MAX_AGE_S: u64 = 60;
/// Successful HTTP basic checks remembered (bcrypt costs ~100 ms a check,
/// so a page of badges must not pay it per image), and for how long.
pub const BASIC_AUTH_CACHE_ENTRIES_MAX: usize = 256;
pub const BASIC_AUTH_CACHE_FOR: Duration = Duration::from_secs(300);
/// An `Authorization` header or `?key=` longer than this is refused unread.
pub const PAGE_CREDENTIAL_BYTES_MAX: usize = 1024;
/// Recent results `/checks/{name}` reads for each region's latest failure.
pub const CHECK_PAGE_RESULTS_MAX: usize = 2_000;
// --- probe features (#15 part A) ---
/// A TLS 1.3 server judges a client certificate after the client's side of
/// the handshake is done, and says no with an alert: a `tls` check whose
/// server asked for a certificate waits this long for that verdict (on
/// loopback or across a region it comes in milliseconds; a server that
/// accepted and says nothing costs the check this much, once).
pub const TLS_CLIENT_CERT_VERDICT_WAIT: Duration = Duration::from_secs(1);
/// `expect.json`: at most this many assertions per check (the body they
/// read is bounded by `HTTP_BODY_BYTES_MAX`, so parsing it is too).
pub const JSON_ASSERTIONS_MAX: usize = 64;
/// `expect.headers`: at most this many header assertions per check.
pub const HEADER_ASSERTIONS_MAX: usize = 64;
/// A failure sentence quotes a selected JSON value up to this many
/// characters: a whole object would drown the reason.
pub const JSON_VALUE_SHOWN_CHARS_MAX: usize = 80;
/// JSONPath expressions longer than this are refused at load: paths are
/// typed by people, and serde_json_path's evaluation cost grows with them.
pub const JSON_PATH_CHARS_MAX: usize = 512;

/// How long a replica's claim on the deliveries it is sending holds
/// (default of `--delivery-claim`): another replica retakes them only
/// after it runs out, so it must outlast any one attempt
/// (`ALERT_SEND_TIMEOUT`, which an attempt is also cut to half the claim
/// by); a replica that dies mid-send delays those alerts by at most this.
pub const DELIVERY_CLAIM_DEFAULT: Duration = Duration::from_secs(60);
/// The shortest claim the flag takes: below it, a slow database round
/// trip could outlive the claim.
pub const DELIVERY_CLAIM_MIN: Duration = Duration::from_secs(2);
/// How long the leader's lease lasts: a replica that dies as leader is
/// replaced within this (plus one renewal), and no two replicas lead at
/// once unless their clocks differ by more than it.
pub const LEADER_LEASE_FOR: Duration = Duration::from_secs(8);
/// How often a replica renews (or tries to take) the leader's lease: a
/// quarter of the lease, so that two missed renewals still keep it.
pub const LEADER_RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a replica records itself in the replicas' registry.
pub const REPLICA_RECORD_EVERY: Duration = Duration::from_secs(5);
/// A replica not seen for this long is shown as gone (three missed
/// records, so a slow database does not make it flicker).
pub const REPLICA_LIVE_WITHIN: Duration = Duration::from_secs(20);
/// Replicas not seen for this long are deleted from the registry (every
/// restart makes a new one).
pub const REPLICA_FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How often a replica shares what its probes told it (contact, skew,
/// backlog) with the others, and the leader reads what they shared: well
/// inside a probe's staleness window (3 intervals), so no replica's
/// silence makes a reporting probe look stale.
pub const PROBE_CONTACT_SHARE_EVERY: Duration = Duration::from_secs(1);
/// Fast-confirmation requests read from the other replicas per share: a
/// few seconds' worth at the rate the queues take (`RUN_NOW_QUEUE_MAX` per
/// region).
pub const RUN_NOW_SHARED_MAX: usize = 10_000;
/// How far back a replica looks for the others' fast-confirmation
/// requests (several shares, so a slow one misses none), and how long
/// they are kept: a confirmation asked for longer ago is moot.
pub const RUN_NOW_SHARED_WINDOW: Duration = Duration::from_secs(10);
// --- alerts out (#16 part A) ---
/// `format: alertmanager`: firing alerts are sent again this often unless
/// `resend_every` says otherwise (Prometheus resends every minute too), so
/// Alertmanager's `resolve_timeout` (5m by default) never ends an open outage.
pub const ALERTMANAGER_RESEND_DEFAULT: Duration = Duration::from_secs(60);
/// The shortest `resend_every`: more often only adds load to Alertmanager.
pub const ALERTMANAGER_RESEND_MIN: Duration = Duration::from_secs(1);
/// Outbox rows of one Alertmanager channel the resend reads, newest first,
/// to find each check's last alert: a check whose last word is older than
/// that many deliveries to the channel is not resent.
pub const ALERTMANAGER_RESEND_SCAN_MAX: usize = 5_000;
/// `format: alertmanager`: at most this many `urls` per channel (an HA
/// cluster is a handful of members).
pub const ALERTMANAGER_URLS_MAX: usize = 16;
/// A `format: template` template (url, a header, a body) is at most this
/// long, and renders to at most `TEMPLATE_OUTPUT_BYTES_MAX`: a loop in a
/// template cannot build an unbounded request.
pub const TEMPLATE_SOURCE_BYTES_MAX: usize = 64 * 1024;
pub const TEMPLATE_OUTPUT_BYTES_MAX: usize = 256 * 1024;
/// minijinja's fuel: how many instructions one render may take.
pub const TEMPLATE_FUEL: u64 = 200_000;
/// A resend posts at most this many alerts per request to Alertmanager (its
/// API takes any number; this keeps one body small).
pub const ALERTMANAGER_ALERTS_PER_POST: usize = 200;
/// How often the resend loop looks whether a channel's `resend_every` is up.
pub const ALERTMANAGER_RESEND_TICK: Duration = Duration::from_secs(1);
/// Checks one check's `depends_on` may list: a dependency explains an
/// outage; a long list is a route, not a dependency.
pub const CHECK_DEPENDS_MAX: usize = 32;
/// Longest chain of `depends_on` the cycle check follows (it recurses).
pub const DEPENDS_CHAIN_MAX: usize = 64;
/// Steps of one check's `alert.escalate`.
pub const ESCALATION_STEPS_MAX: usize = 10;
/// Highest `alert.flapping.changes`: the state keeps one timestamp per
/// change counted, so this bounds what a stored state holds.
pub const FLAP_CHANGES_LIMIT: usize = 100;
/// How long a signed acknowledge link in an alert stays good.
pub const ACK_LINK_VALID_FOR: Duration = Duration::from_secs(7 * 86_400);
/// Shortest `--ack-key`: it is all that stands between a guess and an
/// acknowledged page.
pub const ACK_KEY_CHARS_MIN: usize = 16;

/// Aggregators one probe may list in `--aggregator`: replicas of one
/// deployment are a handful; a request tries each at most once.
pub const PROBE_AGGREGATORS_MAX: usize = 16;
/// `--aggregator-down-after` default: a probe that has reached no aggregator
/// this long sends its fallback alert. Long enough for a rolling restart of
/// every replica, short enough to page within minutes of a real loss.
pub const PROBE_AGGREGATOR_DOWN_AFTER_DEFAULT: Duration = Duration::from_secs(120);
/// How often a probe looks at when an aggregator last answered.
pub const PROBE_CONTACT_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Attempts at one fallback alert per channel (kept in memory: the
/// aggregator's outbox is out of reach); with `ALERT_RETRY_MAX` between the
/// later ones, about four hours.
pub const FALLBACK_ALERT_ATTEMPTS_MAX: u32 = 50;
/// Fallback channels an aggregator sends a probe (and a probe takes).
pub const FALLBACK_CHANNELS_MAX: usize = 32;
// --- recovery as fast as outage (#19) ---
/// Fast confirmation asks a region to run a check now at most this many
/// times each way (towards failing, towards passing) per status of the
/// check and staleness window, even when `failures` or `successes` ask for
/// more: a flapping region or a storm of results cannot make the
/// aggregator ask without end.
pub const RUN_NOW_ASKS_MAX: u32 = 3;
/// A probe runs one check at most this many times beside its schedule
/// (run-now requests) within one interval of the check (a minute for cron
/// schedules): confirming an outage takes up to `failures` (2 by default)
/// and a recovery `successes` (1), so a short outage and its recovery fit
/// in one interval with one to spare. However often the aggregator asks,
/// a target sees at most this many extra requests per interval from one
/// probe.
pub const RUN_NOW_RUNS_PER_INTERVAL_MAX: usize = 4;
/// Run-now requests a probe runs at once (each a check run of its own,
/// beside the scheduler's): more wait for one to finish.
pub const RUN_NOW_CONCURRENT_MAX: usize = 16;

/// Check cards one view of the status page shows (#19). A page with at
/// most this many shown checks is the whole page as before; a larger one
/// shows the failing checks and the groups' roll-ups first, and the rest
/// a group or a page at a time, so a 10,000-check page stays a few
/// hundred KiB a browser can lay out.
pub const STATUS_PAGE_CARDS_MAX: usize = 100;
/// Rendered variants (query strings) of the page kept compressed at once;
/// past it the cache starts over. Groups and pages are bounded by the
/// config, `refresh` by its clamp, so this only bounds a visitor cycling
/// through them.
pub const STATUS_RENDERED_VARIANTS_MAX: usize = 64;
/// `/metrics?shard=K/N`: the most shards a scrape may split the per-check
/// series into.
pub const METRICS_SHARDS_MAX: usize = 1024;
/// `/metrics?check=NAME`: the most check names one scrape may list.
pub const METRICS_CHECKS_MAX: usize = 256;
/// Bytes a cached status body is written into its gzip encoder in, and
/// inflated in for a client that does not take gzip: what one rendering
/// or one plain response holds at a time besides the compressed body.
pub const STATUS_RENDER_CHUNK: usize = 64 * 1024;

// --- memory (#19) ---
/// glibc malloc arenas at most. Its default (eight per core) lets every
/// blocking-pool thread keep an arena of its own, each holding freed memory
/// the others cannot reuse; two serve a two-worker runtime without lock
/// contention worth measuring (`scripts/bench-peer` CPU per probe).
pub const MALLOC_ARENAS_MAX: i32 = 2;
/// Ingest decisions committed together on SQLite (group commit): enough
/// for every client posting at once on a busy aggregator; bounded so one
/// commit, and the wait of the first decision in it, stays short.
pub const SQLITE_DECISIONS_PER_COMMIT_MAX: usize = 32;
/// How often free heap pages are handed back to the kernel (`memory.rs`):
/// a trim walks the heap (a few ms at 50 MiB), and memory freed by a burst
/// (a /metrics scrape, a status page render, a reload) is back within it.
pub const MEMORY_RELEASE_EVERY: Duration = Duration::from_secs(30);
