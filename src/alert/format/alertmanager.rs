//! `format: alertmanager_webhook`: Alertmanager's webhook payload (version 4), with
//! Prometheus-style labels and fingerprints, so tools built for
//! Alertmanager receivers take Lookout's alerts.

use super::*;

/// Alertmanager's webhook payload, version 4. One alert per check and
/// severity, so its labels (and fingerprint) are the same when it fires and
/// when it resolves. A change between degraded and down resolves the alert
/// of the previous severity in the same message, as Alertmanager would.
pub(super) fn body(event: &AlertEvent) -> Value {
    const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
    let url = event.url.clone().unwrap_or_default();
    let description = region_description(event);
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), one_line(&event.summary));
    annotations.insert("description".to_string(), description);
    if let Some(incident) = event.incident {
        annotations.insert("incident".to_string(), incident.to_string());
    }
    let alert =
        |status: &str, severity: &str, starts: DateTime<Utc>, ends: Option<DateTime<Utc>>| {
            let labels = alert_labels(event, severity);
            json!({
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(starts),
                "endsAt": ends.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                "generatorURL": url,
                "fingerprint": fingerprint(&labels),
            })
        };
    let mut alerts = Vec::new();
    if event.event.is_recovery() || event.event == AlertKind::MaintenanceEnd {
        // `since` is the recovery; the outage began `duration_s` earlier.
        let started = event
            .duration_s
            .and_then(|s| i64::try_from(s).ok())
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|d| event.since.checked_sub_signed(d))
            .unwrap_or(event.since);
        alerts.push(alert(
            "resolved",
            status_severity(event.previous_status),
            started,
            Some(event.since),
        ));
    } else {
        let current = severity(event);
        alerts.push(alert("firing", current, event.since, None));
        if matches!(event.event, AlertKind::Down | AlertKind::Degraded)
            && event.previous_status.is_incident()
            && status_severity(event.previous_status) != current
        {
            // When the previous state began is not in the event.
            alerts.push(alert(
                "resolved",
                status_severity(event.previous_status),
                event.since,
                Some(event.since),
            ));
        }
    }
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let common = |key: &str| -> Map<String, Value> {
        let mut common = alerts[0][key].as_object().cloned().unwrap_or_default();
        common.retain(|k, v| alerts.iter().all(|a| &a[key][k] == v));
        common
    };
    let group_labels = json!({"alertname": ALERTNAME, "check": event.check});
    json!({
        "version": "4",
        "groupKey": format!(
            "{{}}:{{alertname=\"{ALERTNAME}\", check=\"{}\"}}",
            go_quote_inner(&event.check)
        ),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "lookout",
        "groupLabels": group_labels,
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": url,
        "alerts": alerts,
    })
}

pub(super) fn group(events: &[AlertEvent]) -> Value {
    let bodies: Vec<Value> = events.iter().map(body).collect();
    let alerts: Vec<Value> = bodies
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .collect();
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    let common = |key: &str| {
        let mut common = alerts
            .first()
            .and_then(|a| a[key].as_object().cloned())
            .unwrap_or_default();
        common.retain(|k, v| alerts.iter().all(|a| &a[key][k] == v));
        common
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{ALERTNAME}\"}}"),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "lookout",
        "groupLabels": {"alertname": ALERTNAME},
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": bodies.first().map(|b| b["externalURL"].clone()).unwrap_or(Value::Null),
        "alerts": alerts,
    })
}

/// The `alertname` label of every alert in the Alertmanager format.
const ALERTNAME: &str = "LookoutCheck";

/// The check's labels (names made valid Prometheus label names), then ours,
/// which win: `alertname`, `check`, `severity`.
fn alert_labels(event: &AlertEvent, severity: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = event
        .labels
        .iter()
        .map(|(k, v)| (prometheus_label_name(k), v.clone()))
        .collect();
    labels.insert("alertname".into(), ALERTNAME.into());
    labels.insert("check".into(), event.check.clone());
    labels.insert("severity".into(), severity.into());
    labels
}

/// Prometheus's label-set fingerprint, as Alertmanager computes it: FNV-1a
/// 64 over the sorted names and values, each followed by byte 255, printed
/// as 16 hex digits.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const SEPARATOR: u8 = 0xff;
    let mut hasher = fnv::FnvHasher::default();
    for (name, value) in labels {
        hasher.write(name.as_bytes());
        hasher.write_u8(SEPARATOR);
        hasher.write(value.as_bytes());
        hasher.write_u8(SEPARATOR);
    }
    format!("{:016x}", hasher.finish())
}

pub(super) fn prometheus_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A string as inside Go's `%q`, enough for label values in a group key.
fn go_quote_inner(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn alertmanager_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(
            WebhookFormat::Alertmanager,
            &aggregators_unreachable()
        ));
    }

    #[test]
    fn alertmanager_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Alertmanager, &aggregators_back()));
    }

    #[test]
    fn alertmanager_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::AlertmanagerWebhook, &down()));
    }

    #[test]
    fn alertmanager_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::AlertmanagerWebhook, &up()));
    }

    #[test]
    fn alertmanager_fires_and_resolves_the_same_alert() {
        let firing = rendered(WebhookFormat::AlertmanagerWebhook, &down());
        let resolved = rendered(WebhookFormat::AlertmanagerWebhook, &up());
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["alerts"][0]["status"], "firing");
        assert_eq!(firing["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["startsAt"], "2026-11-24T12:00:00Z");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2026-11-24T12:12:00Z");
        assert_eq!(
            firing["groupKey"],
            "{}:{alertname=\"LookoutCheck\", check=\"api-health\"}"
        );
        assert_eq!(firing["commonLabels"]["team"], "payments");
        assert_eq!(firing["commonLabels"]["severity"], "critical");

        let print = firing["alerts"][0]["fingerprint"].as_str().unwrap();
        assert_eq!(print.len(), 16);
        assert!(print.chars().all(|c| c.is_ascii_hexdigit()));
        // Stable across calls, and the same alert when it resolves.
        assert_eq!(
            rendered(WebhookFormat::AlertmanagerWebhook, &down())["alerts"][0]["fingerprint"],
            print
        );
        assert_eq!(resolved["alerts"][0]["fingerprint"], print);
    }

    #[test]
    fn alertmanager_fingerprint_is_prometheus_s() {
        // Prometheus: FNV-1a 64 over name, 0xff, value, 0xff; an empty set
        // hashes to the offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in [b'a', 0xff, b'b', 0xff] {
            expected ^= u64::from(byte);
            expected = expected.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fingerprint(&labels), format!("{expected:016x}"));
    }

    #[test]
    fn alertmanager_escalation_resolves_the_warning() {
        let mut event = down();
        event.previous_status = Status::Degraded;
        let value = rendered(WebhookFormat::AlertmanagerWebhook, &event);
        let alerts = value["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["labels"]["severity"], "critical");
        assert_eq!(alerts[1]["labels"]["severity"], "warning");
        assert_eq!(alerts[1]["status"], "resolved");
        assert_eq!(value["status"], "firing");
        assert!(value["commonLabels"].get("severity").is_none());
        assert_eq!(value["commonLabels"]["check"], "api-health");
    }

    #[test]
    fn group_alertmanager() {
        insta::assert_json_snapshot!(grouped(WebhookFormat::AlertmanagerWebhook));
    }
}
