//! `lookout alert test CHANNEL`: send a test notification through a channel
//! now, and say whether it went through, so credentials are proven before an
//! outage needs them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use uuid::Uuid;

use crate::alert::{AlertEvent, AlertKind, outbox, webhook};
use crate::rules::Status;
use crate::storage::{Delivery, DeliveryState};

pub async fn test(checks: &Path, alerts: &Path, channel: &str) -> ExitCode {
    let config = match super::load_or_report(checks, alerts) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if !config.channels.contains_key(channel) {
        let known: Vec<&str> = config.channels.keys().map(String::as_str).collect();
        eprintln!(
            "no channel named `{channel}`; known channels: {}",
            known.join(", ")
        );
        return ExitCode::from(super::EXIT_FAILURE);
    }
    let now = Utc::now();
    let event = AlertEvent {
        version: "1".to_string(),
        event: AlertKind::Test,
        check: channel.to_string(),
        status: Status::Up,
        previous_status: Status::Up,
        since: now,
        incident: None,
        summary: format!(
            "Test notification from Lookout to channel `{channel}`: if you read this, alerts will reach you."
        ),
        regions: BTreeMap::new(),
        url: None,
        duration_s: None,
        target: String::new(),
        labels: BTreeMap::new(),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    };
    let delivery = Delivery {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel: channel.to_string(),
        event,
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        last_error: None,
        group_id: None,
    };
    let client = match webhook::client() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(super::EXIT_FAILURE);
        }
    };
    match outbox::send(&config, &client, &delivery).await {
        Ok(()) => {
            println!(
                "ok: test alert delivered to `{channel}` (delivery {})",
                delivery.id
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "failed: `{channel}`: {}",
                config.secrets.redact(&error.to_string())
            );
            ExitCode::from(super::EXIT_FAILURE)
        }
    }
}
