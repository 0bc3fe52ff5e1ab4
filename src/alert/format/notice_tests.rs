//! Snapshots of the maintenance notices (`announce: true`, #16) in every
//! format: each webhook format and the three parts of an email, for the
//! window's start and its end. Beside each format's own tests, so that one
//! file holds the notices' renderings.

use super::fixtures::*;
use super::*;

fn notice(kind: AlertKind) -> AlertEvent {
    let mut event = down();
    event.event = kind;
    event.status = Status::Up;
    event.previous_status = Status::Up;
    event.incident = None;
    event.summary = if kind == AlertKind::MaintenanceStart {
        "api-health: maintenance window `db-upgrade` started; alerts are held back until it ends"
    } else {
        "api-health: maintenance window `db-upgrade` ended; alerts are on again (now UP)"
    }
    .to_string();
    for r in event.regions.values_mut() {
        *r = region(Outcome::Ok, Some(200), 40.0, None);
    }
    event
}

const FORMATS: [(&str, WebhookFormat); 6] = [
    ("json", WebhookFormat::Json),
    ("slack", WebhookFormat::Slack),
    ("discord", WebhookFormat::Discord),
    ("teams", WebhookFormat::Teams),
    ("alertmanager_webhook", WebhookFormat::AlertmanagerWebhook),
    ("pagerduty", WebhookFormat::PagerDuty),
];

#[test]
fn maintenance_notices_in_every_webhook_format() {
    for (kind, word) in [
        (AlertKind::MaintenanceStart, "start"),
        (AlertKind::MaintenanceEnd, "end"),
    ] {
        for (name, format) in FORMATS {
            insta::assert_json_snapshot!(
                format!("{name}_maintenance_{word}"),
                rendered(format, &notice(kind))
            );
        }
    }
}

#[test]
fn maintenance_notices_by_email() {
    for (kind, word) in [
        (AlertKind::MaintenanceStart, "start"),
        (AlertKind::MaintenanceEnd, "end"),
    ] {
        let event = notice(kind);
        insta::assert_snapshot!(
            format!("email_subject_maintenance_{word}"),
            email_subject(&event)
        );
        insta::assert_snapshot!(format!("email_text_maintenance_{word}"), email_text(&event));
        insta::assert_snapshot!(format!("email_html_maintenance_{word}"), email_html(&event));
    }
}

#[test]
fn a_pagerduty_notice_opens_and_closes_its_own_alert() {
    let start = rendered(
        WebhookFormat::PagerDuty,
        &notice(AlertKind::MaintenanceStart),
    );
    let end = rendered(WebhookFormat::PagerDuty, &notice(AlertKind::MaintenanceEnd));
    assert_eq!(start["event_action"], "trigger");
    assert_eq!(start["payload"]["severity"], "info");
    assert_eq!(end["event_action"], "resolve");
    assert_eq!(start["dedup_key"], "lookout-maintenance-api-health");
    assert_eq!(end["dedup_key"], start["dedup_key"]);
}
