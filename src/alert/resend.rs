//! Keeping Alertmanager's firing alerts alive: Alertmanager ends an alert
//! `resolve_timeout` after it last heard of it, so every `format:
//! alertmanager` channel is sent its firing alerts again each
//! `resend_every`, as Prometheus does.
//!
//! What fires comes from the outbox (`OutboxStore::recent_deliveries`): per
//! check, the newest alert the channel was sent; a check whose last word was
//! a problem (down, degraded, a reminder, a stale probe) is resent, one
//! whose last word was a recovery is not. So routing, holds and silences
//! decided what the channel heard once, and a resend repeats exactly that;
//! it works the same on SQLite and PostgreSQL, and after a restart. Resends
//! are refreshes, not alerts: they go straight out (the next round is the
//! retry) and are not written to the outbox. A check no longer configured is
//! not resent (Alertmanager resolves it after `resolve_timeout`); a check
//! whose last alert is older than `ALERTMANAGER_RESEND_SCAN_MAX` deliveries
//! of the channel, or than the retention, is not resent either.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox::ConfigSource;
use super::{AlertEvent, AlertKind, webhook};
use crate::config::{ChannelKind, Config, WebhookFormat};
use crate::limits;
use crate::storage::{Delivery, DeliveryState, Storage};

pub struct Resender {
    pub storage: Storage,
    pub config: ConfigSource,
    /// Whether this replica resends now: only the leader does, so that
    /// replicas on one database do not each resend.
    pub leading: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Resender {
    /// Resends until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let client = match webhook::client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "the Alertmanager resend cannot start");
                return;
            }
        };
        // When each channel is next due (a reloaded `resend_every` applies
        // from its next round).
        let mut next: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let config = (self.config)();
            let now = Instant::now();
            let leading = (self.leading)();
            for (name, channel) in &config.channels {
                if !leading {
                    break;
                }
                let ChannelKind::Webhook(webhook) = &channel.kind else {
                    continue;
                };
                if webhook.format != WebhookFormat::Alertmanager {
                    continue;
                }
                let due = next
                    .entry(name.clone())
                    .or_insert(now + webhook.resend_every);
                if *due > now {
                    continue;
                }
                *due = now + webhook.resend_every;
                self.resend(&config, &client, name, webhook).await;
            }
            next.retain(|name, _| config.channels.contains_key(name));
            tokio::select! {
                _ = tokio::time::sleep(limits::ALERTMANAGER_RESEND_TICK) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    async fn resend(
        &self,
        config: &Config,
        client: &reqwest::Client,
        name: &str,
        channel: &crate::config::WebhookChannel,
    ) {
        let recent = match self
            .storage
            .outbox()
            .recent_deliveries(name.to_string(), limits::ALERTMANAGER_RESEND_SCAN_MAX)
            .await
        {
            Ok(recent) => recent,
            Err(error) => {
                tracing::warn!(%error, channel = name, "cannot read the outbox to resend Alertmanager alerts");
                return;
            }
        };
        let configured: HashSet<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
        let firing = still_firing(recent, |check| {
            configured.contains(check) || check.starts_with("probe:")
        });
        for chunk in firing.chunks(limits::ALERTMANAGER_ALERTS_PER_POST) {
            let id = uuid::Uuid::now_v7();
            match webhook::send(client, channel, chunk, id).await {
                Ok(()) => {
                    tracing::debug!(
                        channel = name,
                        alerts = chunk.len(),
                        "firing alerts resent to Alertmanager"
                    );
                }
                Err(error) => {
                    let reason = config.secrets.redact(&error.to_string());
                    tracing::warn!(channel = name, alerts = chunk.len(), %reason, "cannot resend firing alerts to Alertmanager; next round tries again");
                }
            }
        }
    }
}

/// Per check, its newest delivery (`recent` is newest first); the events of
/// those that are still a problem, oldest check name first. A dead-lettered
/// newest delivery is not resent (the receiver refused it for good).
pub fn still_firing(recent: Vec<Delivery>, configured: impl Fn(&str) -> bool) -> Vec<AlertEvent> {
    let mut seen = HashSet::new();
    let mut out: Vec<AlertEvent> = Vec::new();
    for delivery in recent {
        // A maintenance notice says nothing of the check's problem (and
        // renders as no alert): the delivery before it is its last word.
        if matches!(
            delivery.event.event,
            AlertKind::MaintenanceStart | AlertKind::MaintenanceEnd
        ) {
            continue;
        }
        if !seen.insert(delivery.event.check.clone()) {
            continue;
        }
        let event = delivery.event;
        let problem = !event.event.is_recovery()
            && event.event != AlertKind::Test
            && (event.status.is_incident() || event.event == AlertKind::ProbeStale);
        if problem && delivery.state != DeliveryState::Dead && configured(&event.check) {
            out.push(event);
        }
    }
    out.sort_by(|a, b| a.check.cmp(&b.check));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Status;
    use std::collections::BTreeMap;

    #[test]
    fn a_maintenance_notice_newer_than_a_down_keeps_it_firing() {
        let recent = vec![
            delivery(
                "api",
                AlertKind::MaintenanceStart,
                Status::Down,
                DeliveryState::Delivered,
            ),
            delivery(
                "api",
                AlertKind::Down,
                Status::Down,
                DeliveryState::Delivered,
            ),
        ];
        let firing = still_firing(recent, |_| true);
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].event, AlertKind::Down);
    }

    fn delivery(check: &str, kind: AlertKind, status: Status, state: DeliveryState) -> Delivery {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        Delivery {
            id: uuid::Uuid::now_v7(),
            event_id: uuid::Uuid::now_v7(),
            channel: "am".into(),
            event: AlertEvent {
                version: "1".into(),
                event: kind,
                check: check.into(),
                status,
                previous_status: Status::Up,
                since: now,
                incident: None,
                summary: String::new(),
                regions: BTreeMap::new(),
                url: None,
                duration_s: None,
                target: String::new(),
                labels: BTreeMap::new(),
                region: None,
                screenshot: None,
                screenshot_result: None,
                ack_url: None,
            },
            state,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: None,
            group_id: None,
        }
    }

    #[test]
    fn the_newest_word_per_check_decides() {
        use AlertKind::*;
        use DeliveryState::*;
        let recent = vec![
            // newest first
            delivery("a", Up, Status::Up, Delivered),
            delivery("b", Reminder, Status::Down, Delivered),
            delivery("c", Degraded, Status::Degraded, Pending),
            delivery("d", Down, Status::Down, Dead),
            delivery("gone", Down, Status::Down, Delivered),
            delivery("a", Down, Status::Down, Delivered),
            delivery("b", Down, Status::Down, Delivered),
            delivery("probe:eu", ProbeStale, Status::Degraded, Delivered),
            delivery("e", Test, Status::Up, Delivered),
        ];
        let firing = still_firing(recent, |c| c != "gone");
        let names: Vec<(&str, AlertKind)> =
            firing.iter().map(|e| (e.check.as_str(), e.event)).collect();
        assert_eq!(
            names,
            vec![("b", Reminder), ("c", Degraded), ("probe:eu", ProbeStale)]
        );
    }
}
