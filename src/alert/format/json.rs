//! `format: json`: the event itself, DESIGN.md's versioned payload; a
//! group is `{"event": "group", "alerts": [...]}`.

use super::*;

pub(super) fn body(event: &AlertEvent) -> Value {
    // Cannot fail: every map in an event has string keys.
    serde_json::to_value(event).expect("an AlertEvent serializes to JSON")
}

pub(super) fn group(events: &[AlertEvent]) -> Value {
    json!({
        "version": "1",
        "event": "group",
        "summary": group_subject(events),
        "count": events.len(),
        "alerts": events.iter().map(body).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn json_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Json, &aggregators_unreachable()));
    }

    #[test]
    fn json_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Json, &aggregators_back()));
    }

    #[test]
    fn json_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Json, &down()));
    }

    #[test]
    fn json_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Json, &up()));
    }

    #[test]
    fn json_is_the_event_itself() {
        let event = down();
        let value = rendered(WebhookFormat::Json, &event);
        for key in [
            "version",
            "event",
            "check",
            "status",
            "previous_status",
            "since",
            "incident",
            "summary",
            "regions",
            "url",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["since"], "2026-11-24T12:00:00Z");
        let back: AlertEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn group_json() {
        insta::assert_json_snapshot!(grouped(WebhookFormat::Json));
    }
}
