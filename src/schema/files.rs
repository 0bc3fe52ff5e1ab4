//! The schemas of an alerts file (channels, defaults, routes, maintenance),
//! the probes file, and the status page's settings and announcements.

use serde_json::{Value, json};

use super::{
    boolean, cron, duration, list, name, object, one_of, pattern, string, string_list, string_map,
    with,
};

const RFC3339: &str = r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})|.*\$\{.*\}.*)$";

/// The webhook formats the decoder knows.
pub(super) const WEBHOOK_FORMATS: [&str; 8] = [
    "json",
    "slack",
    "discord",
    "teams",
    "pagerduty",
    "alertmanager",
    "alertmanager_webhook",
    "template",
];

pub(super) fn alerts_file() -> Value {
    let email = object(
        vec![
            (
                "smtp",
                with(
                    pattern(r"^(?:(smtp|smtps|smtp\+insecure)://.+|.*\$\{.*\}.*)$"),
                    "smtp:// (STARTTLS), smtps:// (TLS) or smtp+insecure:// (plain, local relays).",
                    json!("smtp://smtp.example.com:587"),
                ),
            ),
            (
                "username",
                with(
                    string(),
                    "SMTP AUTH user (AUTH when set).",
                    json!("${SMTP_USER}"),
                ),
            ),
            (
                "password",
                with(
                    string(),
                    "SMTP AUTH password (a secret).",
                    json!("${SMTP_PASSWORD}"),
                ),
            ),
            (
                "from",
                with(
                    string(),
                    "The sender.",
                    json!("Lookout <lookout@example.com>"),
                ),
            ),
            (
                "to",
                with(
                    string_list(),
                    "The recipients.",
                    json!(["oncall@example.com"]),
                ),
            ),
            (
                "ca_file",
                with(
                    string(),
                    "PEM roots trusted for the SMTP server's certificate, added to the system's.",
                    json!("/etc/lookout/smtp-ca.pem"),
                ),
            ),
            (
                "system_roots",
                with(
                    boolean(),
                    "With ca_file: also trust the system's roots (default true); false trusts only ca_file.",
                    json!(false),
                ),
            ),
            (
                "tls_verify",
                with(
                    boolean(),
                    "false accepts any certificate (logged as a warning at start; default true).",
                    json!(true),
                ),
            ),
        ],
        &["smtp", "from", "to"],
    );
    let webhook = object(
        vec![
            (
                "url",
                with(
                    string(),
                    "The http:// or https:// URL alerts are POSTed to.",
                    json!("https://hooks.example.com/lookout"),
                ),
            ),
            (
                "format",
                with(
                    one_of(&WEBHOOK_FORMATS),
                    "The payload's shape (default json).",
                    json!("slack"),
                ),
            ),
            (
                "secret",
                with(
                    string(),
                    "Signs every delivery (X-Lookout-Signature).",
                    json!("${WEBHOOK_SECRET}"),
                ),
            ),
            (
                "headers",
                with(
                    string_map(),
                    "Extra request headers.",
                    json!({"X-Team": "payments"}),
                ),
            ),
            (
                "routing_key",
                with(
                    string(),
                    "PagerDuty Events API v2 integration key (format: pagerduty).",
                    json!("${PAGERDUTY_KEY}"),
                ),
            ),
            (
                "urls",
                with(
                    string_list(),
                    "format: alertmanager: every Alertmanager of an HA pair (each gets every alert).",
                    json!(["http://am-1:9093", "http://am-2:9093"]),
                ),
            ),
            (
                "resend_every",
                with(
                    duration(),
                    "format: alertmanager: how often a firing alert is sent again (default 1m).",
                    json!("1m"),
                ),
            ),
            (
                "method",
                with(
                    string(),
                    "format: template: the HTTP method (default POST).",
                    json!("POST"),
                ),
            ),
            (
                "body",
                with(
                    json!({"anyOf": [string(), string_map()]}),
                    "format: template: the body as a template, or one per event kind (down, up, degraded, reminder, group, default, ...).",
                    json!("{\"text\": {{ summary | tojson }}}"),
                ),
            ),
        ],
        &[],
    );
    let channel = object(
        vec![
            (
                "email",
                with(
                    email,
                    "Alerts by email.",
                    json!({"smtp": "smtp://smtp.example.com:587", "from": "lookout@example.com", "to": ["oncall@example.com"]}),
                ),
            ),
            (
                "webhook",
                with(
                    webhook,
                    "Alerts by HTTP POST.",
                    json!({"url": "https://hooks.example.com/lookout", "format": "json"}),
                ),
            ),
            (
                "group_window",
                with(
                    duration(),
                    "Fold alerts raised within this into one message (default 0, at most 10m).",
                    json!("30s"),
                ),
            ),
            (
                "fallback",
                with(
                    boolean(),
                    "Also sent to the probes: one that reaches no aggregator alerts through it itself (default false).",
                    json!(true),
                ),
            ),
        ],
        &[],
    );
    let mut channel = channel;
    channel["oneOf"] = json!([{"required": ["email"]}, {"required": ["webhook"]}]);
    let route = object(
        vec![
            (
                "match",
                with(
                    string_map(),
                    "Labels a check must carry.",
                    json!({"team": "payments"}),
                ),
            ),
            (
                "channels",
                with(
                    string_list(),
                    "The channels its alerts go to.",
                    json!(["payments-email"]),
                ),
            ),
        ],
        &["match", "channels"],
    );
    let window = object(
        vec![
            (
                "name",
                with(name(), "The window's name.", json!("db-upgrade")),
            ),
            (
                "checks",
                with(
                    string_list(),
                    "Checks it holds alerts back for.",
                    json!(["api-health"]),
                ),
            ),
            (
                "labels",
                with(
                    string_map(),
                    "Or: checks carrying these labels.",
                    json!({"team": "payments"}),
                ),
            ),
            (
                "from",
                with(
                    pattern(RFC3339),
                    "A one-off window's start (RFC 3339).",
                    json!("2026-11-30T22:00:00Z"),
                ),
            ),
            (
                "until",
                with(
                    pattern(RFC3339),
                    "A one-off window's end (RFC 3339).",
                    json!("2026-11-30T23:00:00Z"),
                ),
            ),
            (
                "cron",
                with(cron(), "A recurring window's starts.", json!("0 3 * * *")),
            ),
            (
                "duration",
                with(
                    duration(),
                    "How long a recurring window lasts.",
                    json!("30m"),
                ),
            ),
            (
                "tz",
                with(
                    string(),
                    "The IANA time zone of `cron`.",
                    json!("Europe/Paris"),
                ),
            ),
            (
                "announce",
                with(
                    boolean(),
                    "Send one message to the checks' channels when the window starts and one when it ends.",
                    json!(true),
                ),
            ),
        ],
        &["name"],
    );
    object(
        vec![
            (
                "channels",
                with(
                    json!({"type": "object", "propertyNames": {"pattern": "^[a-z0-9_-]+$"}, "additionalProperties": channel}),
                    "Alert channels by name.",
                    json!({"ops-webhook": {"webhook": {"url": "https://hooks.example.com/lookout"}}}),
                ),
            ),
            (
                "defaults",
                with(
                    object(
                        vec![(
                            "channels",
                            with(
                                string_list(),
                                "Channels of checks that name none.",
                                json!(["ops-webhook"]),
                            ),
                        )],
                        &[],
                    ),
                    "Defaults for every check.",
                    json!({"channels": ["ops-webhook"]}),
                ),
            ),
            (
                "routes",
                with(
                    list(route),
                    "Label routes: a check without `alert.channels` goes to every route it matches.",
                    json!([{"match": {"team": "payments"}, "channels": ["payments-email"]}]),
                ),
            ),
            (
                "maintenance",
                with(
                    list(window),
                    "Maintenance windows: results recorded, alerts held back.",
                    json!([{"name": "db-upgrade", "checks": ["api-health"], "from": "2026-11-30T22:00:00Z", "until": "2026-11-30T23:00:00Z"}]),
                ),
            ),
        ],
        &[],
    )
}

pub(super) fn probes_file() -> Value {
    let region = object(
        vec![(
            "token",
            with(
                string(),
                "The region's probe token (a secret; take it from the environment).",
                json!("${PROBE_TOKEN_EU_WEST}"),
            ),
        )],
        &["token"],
    );
    object(
        vec![(
            "probes",
            with(
                json!({"type": "object", "propertyNames": {"pattern": "^[a-z0-9_-]+$"}, "additionalProperties": region}),
                "Regions and their probe tokens.",
                json!({"eu-west": {"token": "${PROBE_TOKEN_EU_WEST}"}}),
            ),
        )],
        &["probes"],
    )
}

pub(super) fn page() -> Value {
    let footer = object(
        vec![
            (
                "text",
                with(string(), "The link's text.", json!("Contact us")),
            ),
            (
                "url",
                with(
                    string(),
                    "An http:// or https:// URL.",
                    json!("https://example.com/contact"),
                ),
            ),
        ],
        &["url"],
    );
    let group = object(
        vec![
            ("name", with(string(), "The group's name.", json!("API"))),
            (
                "description",
                with(string(), "What it holds.", json!("The public API.")),
            ),
            (
                "checks",
                with(
                    string_list(),
                    "Checks in it by name.",
                    json!(["api-health"]),
                ),
            ),
            (
                "labels",
                with(
                    string_map(),
                    "Or: checks carrying these labels.",
                    json!({"team": "payments"}),
                ),
            ),
        ],
        &["name"],
    );
    let user = object(
        vec![
            ("name", with(string(), "The user's name.", json!("ana"))),
            (
                "password_hash",
                with(
                    string(),
                    "A bcrypt hash of the password.",
                    json!("$2b$12$abcdefghijklmnopqrstuv"),
                ),
            ),
        ],
        &["name", "password_hash"],
    );
    object(
        vec![
            (
                "title",
                with(string(), "The page's title.", json!("Example status")),
            ),
            (
                "description",
                with(
                    string(),
                    "A line under the title.",
                    json!("Live status of our services."),
                ),
            ),
            (
                "logo",
                with(
                    string(),
                    "The logo's URL.",
                    json!("https://example.com/logo.png"),
                ),
            ),
            (
                "footer",
                with(
                    footer,
                    "A link in the footer.",
                    json!({"text": "Contact", "url": "https://example.com/contact"}),
                ),
            ),
            (
                "groups",
                with(
                    list(group),
                    "Sections of the page.",
                    json!([{"name": "API", "checks": ["api-health"]}]),
                ),
            ),
            (
                "access",
                with(
                    one_of(&["public", "token", "basic"]),
                    "Who may see the page (default public).",
                    json!("token"),
                ),
            ),
            (
                "token",
                with(
                    string(),
                    "access: token: the page's token (16 characters or more).",
                    json!("${STATUS_TOKEN}"),
                ),
            ),
            (
                "users",
                with(
                    list(user),
                    "access: basic: users and bcrypt hashes.",
                    json!([{"name": "ana", "password_hash": "$2b$12$abcdefghijklmnopqrstuv"}]),
                ),
            ),
            (
                "metrics_token",
                with(
                    string(),
                    "A bearer token that /metrics requires.",
                    json!("${METRICS_TOKEN}"),
                ),
            ),
        ],
        &[],
    )
}

pub(super) fn announcement() -> Value {
    let update = object(
        vec![
            (
                "at",
                with(
                    pattern(RFC3339),
                    "When (RFC 3339).",
                    json!("2026-03-01T10:00:00Z"),
                ),
            ),
            (
                "status",
                with(
                    one_of(&["investigating", "identified", "monitoring", "resolved"]),
                    "Where the incident stands.",
                    json!("identified"),
                ),
            ),
            (
                "text",
                with(string(), "What happened.", json!("Upgrading the database.")),
            ),
        ],
        &["at", "status", "text"],
    );
    object(
        vec![
            (
                "id",
                with(
                    string(),
                    "A stable id (its URL and feed entry).",
                    json!("db-2026-03"),
                ),
            ),
            (
                "title",
                with(string(), "The headline.", json!("Database maintenance")),
            ),
            (
                "severity",
                with(
                    one_of(&["info", "maintenance", "degraded", "outage"]),
                    "How bad it is.",
                    json!("maintenance"),
                ),
            ),
            (
                "checks",
                with(string_list(), "Checks it concerns.", json!(["api-health"])),
            ),
            (
                "groups",
                with(
                    string_list(),
                    "Status page groups it concerns.",
                    json!(["API"]),
                ),
            ),
            (
                "updates",
                with(
                    list(update),
                    "Its updates, in any order.",
                    json!([{"at": "2026-03-01T10:00:00Z", "status": "identified", "text": "Upgrading."}]),
                ),
            ),
        ],
        &["id", "title", "severity", "updates"],
    )
}
