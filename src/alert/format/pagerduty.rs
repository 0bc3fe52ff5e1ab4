//! `format: pagerduty`: an Events API v2 event whose `dedup_key` is the
//! incident, so the recovery resolves what the outage triggered.

use super::*;

/// PagerDuty Events API v2. A recovery is a minimal `resolve`; everything
/// else is a `trigger` deduplicated on the incident, so reminders add to the
/// open alert and the recovery resolves it.
pub(super) fn body(event: &AlertEvent, channel: &WebhookChannel) -> Value {
    let routing_key = channel.routing_key.clone().unwrap_or_default();
    let dedup_key = match (event.event, event.incident) {
        (AlertKind::Test, _) => format!("lookout-test-{}", event.check),
        // A maintenance notice opens and closes its own alert.
        (AlertKind::MaintenanceStart | AlertKind::MaintenanceEnd, _) => {
            format!("lookout-maintenance-{}", event.check)
        }
        (_, Some(incident)) => incident.to_string(),
        // Not expected (incidents carry an id); still pair trigger and resolve.
        (_, None) => format!("lookout-{}", event.check),
    };
    if event.event.is_recovery() || event.event == AlertKind::MaintenanceEnd {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let mut payload = Map::new();
    payload.insert("summary".into(), json!(truncate(&event.summary, 1024)));
    let source = if event.target.is_empty() {
        &event.check
    } else {
        &event.target
    };
    payload.insert("source".into(), json!(truncate(source, 1024)));
    payload.insert("severity".into(), json!(severity(event)));
    payload.insert("timestamp".into(), json!(rfc3339(event.since)));
    payload.insert("component".into(), json!(event.check));
    if let Some(team) = event.labels.get("team") {
        payload.insert("group".into(), json!(team));
    }
    payload.insert("class".into(), json!(event.event.as_str()));
    let mut details = Map::new();
    details.insert("regions".into(), json!(event.regions));
    details.insert("incident".into(), json!(event.incident));
    details.insert("url".into(), json!(event.url));
    if !event.labels.is_empty() {
        details.insert("labels".into(), json!(event.labels));
    }
    payload.insert("custom_details".into(), Value::Object(details));

    let mut body = Map::new();
    body.insert("routing_key".into(), json!(routing_key));
    body.insert("event_action".into(), json!("trigger"));
    body.insert("dedup_key".into(), json!(dedup_key));
    body.insert("client".into(), json!("Lookout"));
    if let Some(url) = &event.url {
        body.insert("client_url".into(), json!(url));
        body.insert(
            "links".into(),
            json!([{"href": url, "text": "Status page"}]),
        );
    }
    body.insert("payload".into(), Value::Object(payload));
    Value::Object(body)
}

pub(super) fn group(events: &[AlertEvent], channel: &WebhookChannel) -> Value {
    events
        .first()
        .map(|e| body(e, channel))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn pagerduty_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(
            WebhookFormat::PagerDuty,
            &aggregators_unreachable()
        ));
    }

    #[test]
    fn pagerduty_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::PagerDuty, &aggregators_back()));
    }

    #[test]
    fn pagerduty_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::PagerDuty, &down()));
    }

    #[test]
    fn pagerduty_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::PagerDuty, &up()));
    }

    #[test]
    fn pagerduty_resolves_the_incident_it_triggered() {
        let trigger = rendered(WebhookFormat::PagerDuty, &down());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], INCIDENT);
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["group"], "payments");
        assert_eq!(
            trigger["payload"]["source"],
            "https://api.example.com/health"
        );

        let resolve = rendered(WebhookFormat::PagerDuty, &up());
        assert_eq!(
            resolve,
            json!({
                "routing_key": "R0UT1NGKEY0000000000000000000000",
                "event_action": "resolve",
                "dedup_key": INCIDENT,
            })
        );

        let test = rendered(WebhookFormat::PagerDuty, &test_event());
        assert_eq!(test["event_action"], "trigger");
        assert_eq!(test["dedup_key"], "lookout-test-ops-email");
        assert_eq!(test["payload"]["severity"], "info");
        assert_eq!(test["payload"]["source"], "ops-email");
        assert!(test.get("links").is_none());
    }

    #[test]
    fn pagerduty_summary_is_capped() {
        let mut event = down();
        event.summary = "s".repeat(3000);
        let value = rendered(WebhookFormat::PagerDuty, &event);
        assert_eq!(
            value["payload"]["summary"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            1024
        );
    }
}
