//! The schema of a checks file: the check, its nine kinds, `expect`,
//! `alert`, `status_page` and the browser flow's steps.

use serde_json::{Value, json};

use super::check_alert::{alert, check_page};
use super::{
    boolean, cron, duration, host_port, integer, list, name, number, object, one_of, pattern,
    string, string_list, string_map, with,
};

const IP_FAMILY: &str =
    "Which address family to connect over: any (the resolver's order), ipv4 or ipv6.";

fn ip_family() -> Value {
    with(one_of(&["any", "ipv4", "ipv6"]), IP_FAMILY, json!("ipv4"))
}

fn tls_verify() -> Value {
    with(
        boolean(),
        "Check the server's certificate chain and name (default true).",
        json!(true),
    )
}

fn ca_file() -> Value {
    with(
        string(),
        "A PEM file of CA certificates (or the server's own certificate) to trust.",
        json!("/etc/ssl/private-ca.pem"),
    )
}

fn client_cert() -> Value {
    with(
        string(),
        "A PEM client certificate chain, shown to servers that ask (with `client_key`).",
        json!("/etc/lookout/probe.pem"),
    )
}

fn client_key() -> Value {
    with(
        string(),
        "The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `client_cert`.",
        json!("/etc/lookout/probe.key"),
    )
}

fn headers(what: &str) -> Value {
    with(
        string_map(),
        what,
        json!({"Authorization": "Bearer ${API_TOKEN}"}),
    )
}

pub(super) fn checks_file() -> Value {
    object(
        vec![
            (
                "checks",
                with(
                    list(check()),
                    "The checks of this file, run on their schedules.",
                    json!([{"name": "api-health", "http": {"url": "https://api.example.com/health"}, "every": "30s"}]),
                ),
            ),
            (
                "status_page",
                with(
                    super::files::page(),
                    "The status page's settings (in one checks file only).",
                    json!({"title": "Example status", "access": "basic", "users": [{"name": "ana", "password_hash": "$2b$12$abcdefghijklmnopqrstuv"}]}),
                ),
            ),
            (
                "announcements",
                with(
                    list(super::files::announcement()),
                    "Incidents and maintenance posted on the status page.",
                    json!([{"id": "db-2026-03", "title": "Database maintenance", "severity": "maintenance", "updates": [{"at": "2026-03-01T10:00:00Z", "status": "identified", "text": "Upgrading."}]}]),
                ),
            ),
        ],
        &[],
    )
}

fn check() -> Value {
    let mut schema = object(
        vec![
            (
                "name",
                with(
                    name(),
                    "Unique name of the check, [a-z0-9_-]+ (at most 64 characters).",
                    json!("api-health"),
                ),
            ),
            (
                "description",
                with(
                    string(),
                    "What the check watches, for people.",
                    json!("The public API answers."),
                ),
            ),
            (
                "http",
                with(
                    http(),
                    "An HTTP(S) request and what its answer must be.",
                    json!({"url": "https://api.example.com/health"}),
                ),
            ),
            (
                "tcp",
                with(
                    tcp(),
                    "A TCP connection, optionally a banner.",
                    json!({"address": "smtp.example.com:25", "expect": "220 "}),
                ),
            ),
            (
                "tls",
                with(
                    tls(),
                    "A TLS handshake: chain, name and expiry of the certificate.",
                    json!({"address": "example.com:443", "expires_within": "14d"}),
                ),
            ),
            (
                "dns",
                with(
                    dns(),
                    "A DNS query and the values its answer must hold.",
                    json!({"name": "example.com", "type": "MX"}),
                ),
            ),
            (
                "browser",
                with(
                    super::browser::browser(),
                    "A user flow in a real browser (chromedriver).",
                    json!({"steps": [{"goto": "https://app.example.com/"}]}),
                ),
            ),
            (
                "heartbeat",
                with(
                    heartbeat(),
                    "A job that pings Lookout (pushed, not probed).",
                    json!({"token": "${BACKUP_PING_TOKEN}", "period": "0 2 * * *", "grace": "1h"}),
                ),
            ),
            (
                "icmp",
                with(
                    icmp(),
                    "Echo requests (ping) to a host.",
                    json!({"host": "example.com", "count": 3}),
                ),
            ),
            (
                "grpc",
                with(
                    grpc(),
                    "The standard gRPC health check (grpc.health.v1.Health/Check).",
                    json!({"address": "grpc.example.com:443", "tls": true}),
                ),
            ),
            (
                "websocket",
                with(
                    websocket(),
                    "A WebSocket upgrade, optionally a message and its answer.",
                    json!({"url": "wss://example.com/ws", "send": "ping", "expect": "pong"}),
                ),
            ),
            (
                "every",
                with(
                    duration(),
                    "How often the check runs (or `cron`).",
                    json!("30s"),
                ),
            ),
            (
                "cron",
                with(
                    cron(),
                    "When the check runs: five cron fields or @hourly, @daily... (UTC unless `tz`).",
                    json!("*/5 * * * *"),
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
                "timeout",
                with(
                    duration(),
                    "The whole run's time limit (default 10s).",
                    json!("5s"),
                ),
            ),
            (
                "regions",
                with(
                    string_list(),
                    "The regions that run the check (default: every region known).",
                    json!(["eu-west", "us-east"]),
                ),
            ),
            (
                "expect",
                with(
                    expect(),
                    "What a successful answer looks like.",
                    json!({"status": [200], "max_latency": "800ms"}),
                ),
            ),
            (
                "alert",
                with(
                    alert(),
                    "When and whom the check alerts.",
                    json!({"channels": ["ops-webhook"], "failures": 2}),
                ),
            ),
            (
                "labels",
                with(
                    string_map(),
                    "Free-form labels, for routing alerts and grouping on the status page.",
                    json!({"team": "payments"}),
                ),
            ),
            (
                "depends_on",
                with(
                    string_list(),
                    "Checks this one depends on: while one is down, this check's down is recorded, not paged.",
                    json!(["db-primary"]),
                ),
            ),
            (
                "status_page",
                with(
                    check_page(),
                    "How the check appears on the status page.",
                    json!({"display_name": "Checkout API"}),
                ),
            ),
        ],
        &["name"],
    );
    schema["oneOf"] = json!(
        [
            "http",
            "tcp",
            "tls",
            "dns",
            "browser",
            "heartbeat",
            "icmp",
            "grpc",
            "websocket"
        ]
        .iter()
        .map(|k| json!({"required": [k]}))
        .collect::<Vec<_>>()
    );
    schema
}

fn http() -> Value {
    object(
        vec![
            (
                "url",
                with(
                    string(),
                    "The http:// or https:// URL to request.",
                    json!("https://api.example.com/health"),
                ),
            ),
            (
                "method",
                with(
                    one_of(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
                    "The request method (default GET).",
                    json!("GET"),
                ),
            ),
            ("headers", headers("Request headers.")),
            (
                "body",
                with(string(), "The request body.", json!("{\"ping\": true}")),
            ),
            (
                "follow_redirects",
                with(
                    boolean(),
                    "Follow redirects, at most 10 (default true).",
                    json!(true),
                ),
            ),
            ("tls_verify", tls_verify()),
            ("ca_file", ca_file()),
            ("client_cert", client_cert()),
            ("client_key", client_key()),
            (
                "proxy",
                with(
                    string(),
                    "An HTTP proxy every request goes through (CONNECT for https).",
                    json!("http://proxy.internal:3128"),
                ),
            ),
            (
                "proxy_from_env",
                with(
                    boolean(),
                    "Honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY (default false).",
                    json!(false),
                ),
            ),
            ("ip_family", ip_family()),
        ],
        &["url"],
    )
}

fn tcp() -> Value {
    object(
        vec![
            (
                "address",
                with(
                    host_port(),
                    "host:port to connect to.",
                    json!("smtp.example.com:25"),
                ),
            ),
            (
                "send",
                with(string(), "Text to write once connected.", json!("PING\r\n")),
            ),
            (
                "expect",
                with(
                    string(),
                    "A substring the banner must contain.",
                    json!("220 "),
                ),
            ),
            ("ip_family", ip_family()),
        ],
        &["address"],
    )
}

fn tls() -> Value {
    object(
        vec![
            (
                "address",
                with(
                    host_port(),
                    "host:port of the TLS server.",
                    json!("example.com:443"),
                ),
            ),
            (
                "server_name",
                with(
                    string(),
                    "The name the certificate must hold (default: the host of `address`).",
                    json!("example.com"),
                ),
            ),
            (
                "ca_file",
                with(
                    string(),
                    "Trust only the CA certificates of this PEM file.",
                    json!("/etc/ssl/private-ca.pem"),
                ),
            ),
            ("client_cert", client_cert()),
            ("client_key", client_key()),
            (
                "expires_within",
                with(
                    duration(),
                    "Degraded when the certificate expires within this (default 14d).",
                    json!("14d"),
                ),
            ),
            ("ip_family", ip_family()),
        ],
        &["address"],
    )
}

fn dns() -> Value {
    let types = [
        "A", "AAAA", "CNAME", "MX", "TXT", "NS", "a", "aaaa", "cname", "mx", "txt", "ns",
    ];
    object(
        vec![
            (
                "name",
                with(string(), "The domain name to query.", json!("example.com")),
            ),
            (
                "type",
                with(one_of(&types), "The record type (default A).", json!("MX")),
            ),
            (
                "resolver",
                with(
                    host_port(),
                    "ip:port of the name server to ask (default: the system's).",
                    json!("1.1.1.1:53"),
                ),
            ),
            (
                "expect",
                with(
                    string_list(),
                    "Values the answer must hold, every one.",
                    json!(["192.0.2.1"]),
                ),
            ),
            ("ip_family", ip_family()),
        ],
        &["name"],
    )
}

fn heartbeat() -> Value {
    let period = json!({"anyOf": [{"type": "string", "pattern": super::DURATION_PATTERN}, {"type": "string", "pattern": super::CRON_PATTERN}]});
    object(
        vec![
            (
                "token",
                with(
                    pattern(r"^(?:[A-Za-z0-9_-]{16,}|.*\$\{.*\}.*)$"),
                    "The ping URL's secret: 16 or more characters of [A-Za-z0-9_-].",
                    json!("${BACKUP_PING_TOKEN}"),
                ),
            ),
            (
                "period",
                with(
                    period,
                    "How often the job runs: a duration or its cron schedule.",
                    json!("0 2 * * *"),
                ),
            ),
            (
                "grace",
                with(
                    duration(),
                    "How late a ping may be before the check is down.",
                    json!("1h"),
                ),
            ),
            (
                "tz",
                with(
                    string(),
                    "The IANA time zone of a cron `period`.",
                    json!("Europe/Paris"),
                ),
            ),
        ],
        &["token", "period"],
    )
}

fn icmp() -> Value {
    object(
        vec![
            (
                "host",
                with(
                    string(),
                    "A host name or an IPv4/IPv6 address.",
                    json!("example.com"),
                ),
            ),
            (
                "count",
                with(
                    integer(1, Some(100)),
                    "Echo requests per run (default 3).",
                    json!(3),
                ),
            ),
            (
                "interval",
                with(
                    duration(),
                    "Between echo requests (default 200ms, at least 10ms).",
                    json!("200ms"),
                ),
            ),
            (
                "payload_size",
                with(
                    integer(0, Some(1472)),
                    "Payload bytes (default 56).",
                    json!(56),
                ),
            ),
            ("ip_family", ip_family()),
        ],
        &["host"],
    )
}

fn grpc() -> Value {
    object(
        vec![
            (
                "address",
                with(
                    host_port(),
                    "host:port of the gRPC server.",
                    json!("grpc.example.com:443"),
                ),
            ),
            (
                "service",
                with(
                    string(),
                    "The service to ask about (default \"\": the server as a whole).",
                    json!(""),
                ),
            ),
            (
                "tls",
                with(
                    boolean(),
                    "Connect with TLS (default false: plaintext HTTP/2).",
                    json!(true),
                ),
            ),
            (
                "metadata",
                with(
                    string_map(),
                    "Request metadata (text keys).",
                    json!({"authorization": "Bearer ${GRPC_TOKEN}"}),
                ),
            ),
            ("ip_family", ip_family()),
            ("tls_verify", tls_verify()),
            ("ca_file", ca_file()),
            ("client_cert", client_cert()),
            ("client_key", client_key()),
        ],
        &["address"],
    )
}

fn websocket() -> Value {
    object(
        vec![
            (
                "url",
                with(
                    string(),
                    "The ws:// or wss:// URL.",
                    json!("wss://example.com/ws"),
                ),
            ),
            ("headers", headers("Headers sent with the handshake.")),
            (
                "send",
                with(
                    string(),
                    "A text message to send once connected.",
                    json!("{\"type\":\"ping\"}"),
                ),
            ),
            (
                "expect",
                with(
                    string(),
                    "A substring of the first message received.",
                    json!("pong"),
                ),
            ),
            ("ip_family", ip_family()),
            ("tls_verify", tls_verify()),
            ("ca_file", ca_file()),
            ("client_cert", client_cert()),
            ("client_key", client_key()),
        ],
        &["url"],
    )
}

fn expect() -> Value {
    let status = json!({"anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": "^(?:[1-5][0-9][0-9]|[1-5]xx)$"},
        {"type": "array", "items": {"anyOf": [
            {"type": "integer", "minimum": 100, "maximum": 599},
            {"type": "string", "pattern": "^(?:[1-5][0-9][0-9]|[1-5]xx)$"},
        ]}},
    ]});
    let header = json!({"anyOf": [
        {"type": "string"},
        object(vec![
            ("matches", with(string(), "A regular expression the header's value must match.", json!("json"))),
            ("allow_missing", with(boolean(), "The header may be absent (default false).", json!(true))),
        ], &["matches"]),
    ]});
    object(
        vec![
            (
                "status",
                with(
                    status,
                    "Status codes, or classes such as 2xx, that count as up (default: any 2xx).",
                    json!([200, "3xx"]),
                ),
            ),
            (
                "body_contains",
                with(
                    string(),
                    "The body must contain this text.",
                    json!("\"status\":\"healthy\""),
                ),
            ),
            (
                "body_matches",
                with(
                    string(),
                    "The body must match this regular expression.",
                    json!("\"db\":\\s*\"ok\""),
                ),
            ),
            (
                "max_latency",
                with(
                    duration(),
                    "Slower than this (but otherwise ok): degraded.",
                    json!("800ms"),
                ),
            ),
            (
                "packet_loss_below",
                with(
                    pattern(r"^(?:[0-9]{1,3}(\.[0-9]+)?%|.*\$\{.*\}.*)$"),
                    "icmp: fail at this loss or more.",
                    json!("50%"),
                ),
            ),
            (
                "body_not_contains",
                with(
                    string(),
                    "The body must not contain this text.",
                    json!("\"maintenance\""),
                ),
            ),
            (
                "body_not_matches",
                with(
                    string(),
                    "The body must not match this regular expression.",
                    json!("error|fail"),
                ),
            ),
            (
                "headers",
                with(
                    json!({"type": "object", "additionalProperties": header}),
                    "Response headers: name to a regex (a missing header fails).",
                    json!({"content-type": "json"}),
                ),
            ),
            (
                "json",
                with(
                    list(json_assertion()),
                    "JSONPath assertions on the body (RFC 9535), one operator each.",
                    json!([{"path": "$.status", "equals": "UP"}]),
                ),
            ),
            (
                "http_version",
                with(
                    one_of(&["1.1", "2"]),
                    "The HTTP version that must answer.",
                    json!("2"),
                ),
            ),
        ],
        &[],
    )
}

fn json_assertion() -> Value {
    let value = json!({});
    object(
        vec![
            (
                "path",
                with(string(), "An RFC 9535 JSONPath.", json!("$.db.latency_ms")),
            ),
            (
                "equals",
                with(
                    value.clone(),
                    "Every selected value equals this JSON value.",
                    json!("UP"),
                ),
            ),
            (
                "not_equals",
                with(
                    value.clone(),
                    "No selected value equals this JSON value.",
                    json!("DOWN"),
                ),
            ),
            (
                "contains",
                with(
                    value,
                    "A substring of a string, or an element of a list.",
                    json!("ok"),
                ),
            ),
            (
                "matches",
                with(
                    string(),
                    "A regular expression, against a string or a number's text.",
                    json!("^v[0-9]+"),
                ),
            ),
            ("below", with(number(), "A number below this.", json!(200))),
            ("above", with(number(), "A number above this.", json!(0))),
            (
                "exists",
                with(boolean(), "Whether the path selects anything.", json!(true)),
            ),
            (
                "length",
                with(
                    integer(0, None),
                    "The length of a list, string or object.",
                    json!(3),
                ),
            ),
            (
                "length_above",
                with(integer(0, None), "A length above this.", json!(0)),
            ),
            (
                "length_below",
                with(integer(0, None), "A length below this.", json!(100)),
            ),
        ],
        &["path"],
    )
}
