//! Alert events and channels the format tests share.

use super::*;
use crate::rules::Verdict;
use chrono::TimeZone;
use uuid::Uuid;
pub(super) const INCIDENT: &str = "0196f1c2-7a00-7000-8000-00000000abcd";

pub(super) fn region(
    outcome: Outcome,
    status: Option<u16>,
    ms: f64,
    error: Option<&str>,
) -> RegionDetail {
    let verdict = if outcome == Outcome::Ok {
        Verdict::Passing
    } else {
        Verdict::Failing
    };
    RegionDetail {
        verdict,
        stale: false,
        outcome,
        status,
        duration_ms: ms,
        error: error.map(String::from),
        degraded: None,
    }
}

pub(super) fn down() -> AlertEvent {
    let mut regions = BTreeMap::new();
    regions.insert(
        "ap-south".to_string(),
        region(Outcome::Ok, Some(200), 41.2, None),
    );
    regions.insert(
        "eu-west".to_string(),
        region(
            Outcome::Fail,
            Some(500),
            31.0,
            Some("status 500 not in [200]"),
        ),
    );
    regions.insert(
        "us-east".to_string(),
        region(
            Outcome::Timeout,
            None,
            5000.0,
            Some("timed out after 5s waiting for the response"),
        ),
    );
    AlertEvent {
        version: "1".to_string(),
        event: AlertKind::Down,
        check: "api-health".to_string(),
        status: Status::Down,
        previous_status: Status::Up,
        since: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
        incident: Some(Uuid::parse_str(INCIDENT).unwrap()),
        summary: "api-health is DOWN in 2 of 3 regions (eu-west, us-east): status 500 not in [200]"
            .to_string(),
        regions,
        url: Some("http://status.example.com/checks/api-health".to_string()),
        duration_s: None,
        target: "https://api.example.com/health".to_string(),
        labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

pub(super) fn up() -> AlertEvent {
    let mut event = down();
    event.event = AlertKind::Up;
    event.status = Status::Up;
    event.previous_status = Status::Down;
    event.since = Utc.with_ymd_and_hms(2026, 11, 24, 12, 12, 0).unwrap();
    event.summary = "api-health is UP again after 12m down".to_string();
    event.duration_s = Some(720);
    for (i, r) in event.regions.values_mut().enumerate() {
        *r = region(Outcome::Ok, Some(200), 40.0 + i as f64, None);
    }
    event
}

pub(super) fn test_event() -> AlertEvent {
    AlertEvent {
        version: "1".to_string(),
        event: AlertKind::Test,
        check: "ops-email".to_string(),
        status: Status::Up,
        previous_status: Status::Up,
        since: Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap(),
        incident: None,
        summary: "Lookout test notification for channel ops-email".to_string(),
        regions: BTreeMap::new(),
        url: None,
        duration_s: None,
        target: String::new(),
        labels: BTreeMap::new(),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

pub(super) fn channel(format: WebhookFormat) -> WebhookChannel {
    WebhookChannel {
        url: "https://hooks.example.com/lookout".parse().unwrap(),
        urls: vec!["https://hooks.example.com/lookout".parse().unwrap()],
        resend_every: crate::limits::ALERTMANAGER_RESEND_DEFAULT,
        template: None,
        format,
        secret: None,
        headers: Vec::new(),
        routing_key: (format == WebhookFormat::PagerDuty)
            .then(|| "R0UT1NGKEY0000000000000000000000".to_string()),
    }
}

pub(super) fn rendered(format: WebhookFormat, event: &AlertEvent) -> Value {
    webhook_body(format, event, &channel(format))
}

pub(super) fn grouped(format: WebhookFormat) -> Value {
    let mut other = down();
    other.check = "web".to_string();
    webhook_group_body(format, &[down(), other, up()], &channel(format))
}

/// A probe's own alert: it reaches no aggregator.
pub(super) fn aggregators_unreachable() -> AlertEvent {
    crate::alert::for_aggregators(
        "eu-west",
        "probe-eu-1",
        &[
            "https://lookout-a.example.com/".to_string(),
            "https://lookout-b.example.com/".to_string(),
        ],
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
        None,
        Uuid::parse_str(INCIDENT).unwrap(),
    )
}

/// Its note: one answers again, 7 minutes later.
pub(super) fn aggregators_back() -> AlertEvent {
    crate::alert::for_aggregators(
        "eu-west",
        "probe-eu-1",
        &[
            "https://lookout-a.example.com/".to_string(),
            "https://lookout-b.example.com/".to_string(),
        ],
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
        Some(Utc.with_ymd_and_hms(2026, 11, 24, 12, 7, 0).unwrap()),
        Uuid::parse_str(INCIDENT).unwrap(),
    )
}
