//! `format: alertmanager`: alerts pushed into Alertmanager through its API
//! v2 (`POST /api/v2/alerts`), as Prometheus does, so Alertmanager's
//! routing, grouping, silences and inhibition apply to Lookout's alerts.
//!
//! Each open problem is one alert, identified by its labels: `alertname`
//! (`LookoutCheckDown`, `LookoutCheckDegraded`, `LookoutProbeStale`, or
//! `LookoutTest` for `lookout alert test`), `check`, `severity` (critical
//! for down, warning otherwise, unless the check has a `severity` label)
//! and the check's own labels. A firing alert has no `endsAt` (Alertmanager
//! ends it `resolve_timeout` after the last time it heard of it, which is
//! why `alert::resend` sends it again); a recovery sends the same labels
//! with `endsAt`. A change between degraded and down fires the one and
//! resolves the other in the same request.

use super::alertmanager::prometheus_label_name;
use super::*;

/// The alerts for `events`, one JSON array (the body of one POST).
pub(super) fn alerts(events: &[AlertEvent]) -> Value {
    Value::Array(events.iter().flat_map(event_alerts).collect())
}

/// What an alert is about, which names it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Problem {
    Down,
    Degraded,
    ProbeStale,
    Test,
}

impl Problem {
    fn alertname(self) -> &'static str {
        match self {
            Problem::Down => "LookoutCheckDown",
            Problem::Degraded => "LookoutCheckDegraded",
            Problem::ProbeStale => "LookoutProbeStale",
            Problem::Test => "LookoutTest",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Problem::Down => "critical",
            Problem::Degraded | Problem::ProbeStale => "warning",
            Problem::Test => "info",
        }
    }

    /// The problem a status is, if it is one.
    fn of(status: Status) -> Option<Problem> {
        match status {
            Status::Down => Some(Problem::Down),
            Status::Degraded => Some(Problem::Degraded),
            Status::Up | Status::Unknown => None,
        }
    }
}

/// The alerts one event fires or resolves.
fn event_alerts(event: &AlertEvent) -> Vec<Value> {
    let mut out = Vec::new();
    match event.event {
        // Active for a few minutes, so receivers behind Alertmanager get it,
        // then over by itself.
        AlertKind::Test => out.push(alert(
            event,
            Problem::Test,
            event.since,
            event
                .since
                .checked_add_signed(chrono::TimeDelta::minutes(5)),
        )),
        AlertKind::ProbeStale => out.push(alert(event, Problem::ProbeStale, event.since, None)),
        AlertKind::ProbeBack => {
            out.push(alert(
                event,
                Problem::ProbeStale,
                started(event),
                Some(event.since),
            ));
        }
        // A probe's own alert: firing while it reaches no aggregator.
        AlertKind::AggregatorsUnreachable => {
            out.push(alert(event, Problem::Down, event.since, None));
        }
        AlertKind::AggregatorsBack => {
            out.push(alert(
                event,
                Problem::Down,
                started(event),
                Some(event.since),
            ));
        }
        AlertKind::Up => {
            if let Some(problem) = Problem::of(event.previous_status) {
                out.push(alert(event, problem, started(event), Some(event.since)));
            }
        }
        // A maintenance window is Alertmanager's to model (a silence), not
        // an alert: its notices go to the other formats only.
        AlertKind::MaintenanceStart | AlertKind::MaintenanceEnd => {}
        AlertKind::Down | AlertKind::Degraded | AlertKind::Reminder | AlertKind::Flapping => {
            if let Some(problem) = Problem::of(event.status) {
                out.push(alert(event, problem, event.since, None));
            }
            // Degraded to down (or back): the other alert ends now.
            if let Some(previous) = Problem::of(event.previous_status)
                && Some(previous) != Problem::of(event.status)
                && matches!(event.event, AlertKind::Down | AlertKind::Degraded)
            {
                out.push(alert(event, previous, event.since, Some(event.since)));
            }
        }
    }
    out
}

/// A recovery's `since` is the recovery; the problem began `duration_s`
/// earlier.
fn started(event: &AlertEvent) -> DateTime<Utc> {
    event
        .duration_s
        .and_then(|s| i64::try_from(s).ok())
        .and_then(chrono::TimeDelta::try_seconds)
        .and_then(|d| event.since.checked_sub_signed(d))
        .unwrap_or(event.since)
}

fn alert(
    event: &AlertEvent,
    problem: Problem,
    starts: DateTime<Utc>,
    ends: Option<DateTime<Utc>>,
) -> Value {
    let mut object = Map::new();
    object.insert("labels".into(), json!(labels(event, problem)));
    object.insert("annotations".into(), json!(annotations(event)));
    object.insert("startsAt".into(), json!(rfc3339(starts)));
    if let Some(ends) = ends {
        object.insert("endsAt".into(), json!(rfc3339(ends)));
    }
    if let Some(url) = event.url.as_deref().filter(|u| is_web_url(u)) {
        object.insert("generatorURL".into(), json!(url));
    }
    Value::Object(object)
}

/// The check's labels (names made valid Prometheus label names, empty
/// values dropped: Alertmanager drops them too), then ours: `alertname` and
/// `check` always win, `severity` only when the check has none.
fn labels(event: &AlertEvent, problem: Problem) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = event
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (prometheus_label_name(k), v.clone()))
        .collect();
    labels.insert("alertname".into(), problem.alertname().into());
    labels.insert("check".into(), event.check.clone());
    labels
        .entry("severity".into())
        .or_insert_with(|| problem.severity().into());
    labels
}

/// `summary`, `description` (one line per region: outcome, status, time,
/// error or why it is degraded), `status_page`, `incident`.
fn annotations(event: &AlertEvent) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("summary".to_string(), one_line(&event.summary));
    let mut description = region_description(event);
    for (name, r) in &event.regions {
        if let Some(why) = &r.degraded {
            if !description.is_empty() {
                description.push('\n');
            }
            let _ = write!(description, "{name}: degraded: {}", one_line(why));
        }
    }
    if description.is_empty() {
        description = one_line(&event.summary);
    }
    out.insert("description".to_string(), description);
    if let Some(url) = &event.url {
        out.insert("status_page".to_string(), url.clone());
    }
    if let Some(incident) = event.incident {
        out.insert("incident".to_string(), incident.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn alertmanager_api_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(
            WebhookFormat::Alertmanager,
            &aggregators_unreachable()
        ));
    }

    #[test]
    fn alertmanager_api_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Alertmanager, &aggregators_back()));
    }

    #[test]
    fn alertmanager_api_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Alertmanager, &down()));
    }

    #[test]
    fn alertmanager_api_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Alertmanager, &up()));
    }

    #[test]
    fn api_down_is_one_firing_alert_without_ends() {
        let value = rendered(WebhookFormat::Alertmanager, &down());
        let alerts = value.as_array().cloned().unwrap_or_default();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a["labels"]["alertname"], "LookoutCheckDown");
        assert_eq!(a["labels"]["check"], "api-health");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["team"], "payments");
        assert_eq!(a["startsAt"], "2026-11-24T12:00:00Z");
        assert!(a.get("endsAt").is_none());
        assert_eq!(
            a["generatorURL"],
            "http://status.example.com/checks/api-health"
        );
        assert_eq!(
            a["annotations"]["status_page"],
            "http://status.example.com/checks/api-health"
        );
        let description = a["annotations"]["description"].as_str().unwrap_or("");
        assert!(
            description.contains("eu-west: fail · HTTP 500 · 31 ms: status 500 not in [200]"),
            "{description}"
        );
        assert!(description.contains("us-east: timeout"), "{description}");
    }

    #[test]
    fn api_recovery_resolves_the_same_labels() {
        let firing = rendered(WebhookFormat::Alertmanager, &down());
        let resolved = rendered(WebhookFormat::Alertmanager, &up());
        assert_eq!(firing[0]["labels"], resolved[0]["labels"]);
        assert_eq!(resolved[0]["startsAt"], "2026-11-24T12:00:00Z");
        assert_eq!(resolved[0]["endsAt"], "2026-11-24T12:12:00Z");
    }

    #[test]
    fn api_severity_label_of_the_check_wins_but_names_do_not() {
        let mut event = down();
        event.labels.insert("severity".into(), "page".into());
        event.labels.insert("alertname".into(), "spoof".into());
        event.labels.insert("my-team".into(), "x".into());
        let value = rendered(WebhookFormat::Alertmanager, &event);
        assert_eq!(value[0]["labels"]["severity"], "page");
        assert_eq!(value[0]["labels"]["alertname"], "LookoutCheckDown");
        assert_eq!(value[0]["labels"]["my_team"], "x");
    }

    #[test]
    fn api_degraded_to_down_fires_one_and_resolves_the_other() {
        let mut event = down();
        event.previous_status = Status::Degraded;
        let value = rendered(WebhookFormat::Alertmanager, &event);
        assert_eq!(value[0]["labels"]["alertname"], "LookoutCheckDown");
        assert_eq!(value[1]["labels"]["alertname"], "LookoutCheckDegraded");
        assert_eq!(value[1]["labels"]["severity"], "warning");
        assert_eq!(value[1]["endsAt"], "2026-11-24T12:00:00Z");
        // A reminder repeats the alert it reminds of, nothing else.
        event.event = AlertKind::Reminder;
        let value = rendered(WebhookFormat::Alertmanager, &event);
        assert_eq!(value.as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn api_probe_stale_and_test() {
        let mut event = down();
        event.event = AlertKind::ProbeStale;
        event.status = Status::Degraded;
        let value = rendered(WebhookFormat::Alertmanager, &event);
        assert_eq!(value[0]["labels"]["alertname"], "LookoutProbeStale");
        assert_eq!(value[0]["labels"]["severity"], "warning");
        let value = rendered(WebhookFormat::Alertmanager, &test_event());
        assert_eq!(value[0]["labels"]["alertname"], "LookoutTest");
        assert_eq!(value[0]["endsAt"], "2026-11-24T09:35:00Z");
        assert!(value[0].get("generatorURL").is_none());
    }
}
