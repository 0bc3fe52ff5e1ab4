//! The exposition as the scraper asked for it: OpenMetrics as
//! `prometheus_client` writes it, or the classic text format 0.0.4
//! translated from it (moved out of `metrics.rs` for its size, #19).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};

/// Answers a scrape in the format the scraper asked for.
pub fn respond(openmetrics: String, accept: Option<&HeaderValue>) -> Response {
    let wants_openmetrics = accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            openmetrics,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            to_prometheus_text(&openmetrics),
        )
            .into_response()
    }
}

/// OpenMetrics text, as `prometheus_client` writes it, in the classic
/// Prometheus text format 0.0.4: counters are declared under their sample
/// name (`x_total`, not `x`), and `# UNIT` and `# EOF` are dropped. The two
/// formats are otherwise the same for the gauges, counters and histograms
/// used here.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let declared = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        if let Some((prefix, rest)) = declared
            && let Some((name, tail)) = rest.split_once(' ')
            && counters.contains(&name)
        {
            out.push_str(prefix);
            out.push_str(name);
            out.push_str("_total ");
            out.push_str(tail);
            out.push('\n');
            continue;
        }
        // A counter's creation time has no place in 0.0.4.
        if counters
            .iter()
            .any(|c| line.starts_with(c) && line[c.len()..].starts_with("_created"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
