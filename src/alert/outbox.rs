//! The durable outbox and its dispatcher.
//!
//! Design note (limits, format, recovery):
//! - **Format.** One SQLite row per (event, channel) in `outbox`, holding the
//!   channel-agnostic `AlertEvent` as JSON, a delivery id (stable across
//!   attempts), `state` (pending, delivered, dead), `attempts`,
//!   `next_attempt_at` and the last error. Rows are inserted in the same
//!   transaction as the state change that raised them, so an event is never
//!   recorded without its alerts, nor an alert sent for an event not recorded.
//! - **Delivery.** The dispatcher polls for due rows (woken at once by
//!   `Notify` when new rows commit, and every `ALERT_POLL_EVERY` regardless),
//!   sends up to `ALERT_CONCURRENCY` at a time, each in its own task, so one
//!   channel's slow or failing receiver never holds another's alerts.
//! - **Retries.** Retryable failures (connection, timeout, 5xx, 429, SMTP 4xx)
//!   wait `ALERT_RETRY_BASE * 2^attempts` (capped at `ALERT_RETRY_MAX`, ±20 %
//!   jitter so a fleet does not retry in step), or longer when the receiver's
//!   `Retry-After` says so. Permanent refusals, and anything still failing
//!   `max_age` after its event, go to `dead`: logged, listed by the API.
//! - **Recovery.** State lives only in the table: after a crash (even
//!   SIGKILL) the next dispatcher finds pending rows and sends them.
//!   Delivery is at-least-once: a crash between a receiver's 2xx and the
//!   `delivered` write resends, with the same delivery id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AlertEvent, DeliveryError, email, format, webhook};
use crate::config::{ChannelKind, Config};
use crate::limits;
use crate::storage::{Delivery, DeliveryState, Storage};

/// Reads the live config: channels may change on reload.
pub type ConfigSource = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

pub struct Dispatcher {
    pub storage: Storage,
    pub config: ConfigSource,
    pub wake: Arc<Notify>,
    pub max_age: Duration,
}

impl Dispatcher {
    /// Delivers until `cancel`; deliveries in flight at cancellation are left
    /// pending (and resent by the next start).
    pub async fn run(self, cancel: CancellationToken) {
        let client = match webhook::client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "alert dispatcher cannot start; alerts stay in the outbox");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(limits::ALERT_CONCURRENCY));
        // Ids being sent. A finished task's id leaves this set only when the
        // loop reaps it, which is after its result was written and before
        // the next query: a row can never be picked up again mid-send.
        let mut in_flight: HashSet<uuid::Uuid> = HashSet::new();
        let mut tasks: JoinSet<Vec<uuid::Uuid>> = JoinSet::new();
        loop {
            while let Some(done) = tasks.try_join_next() {
                reap(done, &mut in_flight);
            }
            match self
                .storage
                .due_deliveries(Utc::now(), limits::ALERT_BATCH)
                .await
            {
                Ok(due) => {
                    for delivery in due {
                        if in_flight.contains(&delivery.id) {
                            continue; // already being sent
                        }
                        let config = (self.config)();
                        let members = self.gather(&config, delivery).await;
                        if members.iter().any(|m| in_flight.contains(&m.id)) {
                            continue;
                        }
                        in_flight.extend(members.iter().map(|m| m.id));
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let attempt = Attempt {
                            storage: self.storage.clone(),
                            config,
                            client: client.clone(),
                            max_age: self.max_age,
                        };
                        tasks.spawn(async move {
                            let ids = members.iter().map(|m| m.id).collect();
                            attempt.deliver(members).await;
                            drop(permit);
                            ids
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the alert outbox"),
            }
            let sleep = self.until_next_due().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done, &mut in_flight),
                _ = cancel.cancelled() => {
                    tasks.abort_all();
                    return;
                }
            }
        }
    }

    /// What goes out with `delivery`: itself, or, for a channel with a
    /// `group_window`, every alert folded into its group (claimed now, or
    /// already claimed by an earlier attempt, so retries resend the same set).
    async fn gather(&self, config: &Config, delivery: Delivery) -> Vec<Delivery> {
        if !config
            .channels
            .get(&delivery.channel)
            .is_some_and(|c| c.groups())
        {
            return vec![delivery];
        }
        let group = match delivery.group_id {
            Some(group) => self.storage.group_members(group.to_string()).await,
            None => {
                self.storage
                    .claim_group(
                        delivery.channel.clone(),
                        delivery.id,
                        limits::ALERT_GROUP_MAX,
                    )
                    .await
            }
        };
        match group {
            Ok(members) if !members.is_empty() => members,
            Ok(_) => vec![delivery],
            Err(error) => {
                tracing::error!(%error, "cannot group alerts; sending one alone");
                vec![delivery]
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        match self.storage.next_delivery_due().await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(limits::ALERT_POLL_EVERY),
            _ => limits::ALERT_POLL_EVERY,
        }
    }
}

struct Attempt {
    storage: Storage,
    config: Arc<Config>,
    client: reqwest::Client,
    max_age: Duration,
}

/// Takes a finished delivery out of the in-flight set.
fn reap(
    done: Result<Vec<uuid::Uuid>, tokio::task::JoinError>,
    in_flight: &mut HashSet<uuid::Uuid>,
) {
    match done {
        Ok(ids) => {
            for id in ids {
                in_flight.remove(&id);
            }
        }
        // A panicked send: its id stays in flight until restart rather
        // than being retried in a loop; say so loudly.
        Err(error) => tracing::error!(%error, "an alert delivery task failed"),
    }
}

impl Attempt {
    /// One attempt for `members` (one delivery, or a folded group, which
    /// succeed or fail together under the first member's delivery id).
    async fn deliver(self, members: Vec<Delivery>) {
        let Some(first) = members.first() else {
            return;
        };
        let id = first.group_id.unwrap_or(first.id);
        let events: Vec<AlertEvent> = members.iter().map(|m| m.event.clone()).collect();
        let outcome = send_events(&self.config, &self.client, &first.channel, &events, id).await;
        let now = Utc::now();
        let checks: Vec<&str> = events.iter().map(|e| e.check.as_str()).collect();
        let checks = checks.join(", ");
        let (state, next, error) = match outcome {
            Ok(()) => {
                tracing::info!(channel = %first.channel, checks = %checks, alerts = events.len(), delivery = %id, "alert delivered");
                (DeliveryState::Delivered, now, None)
            }
            Err(DeliveryError::Permanent { reason }) => {
                tracing::error!(channel = %first.channel, checks = %checks, delivery = %id, %reason, "alert refused for good; dead-lettered");
                (DeliveryState::Dead, now, Some(reason))
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let next = now
                    + chrono::Duration::from_std(retry_delay(first.attempts, retry_after))
                        .unwrap_or_default();
                let age = (now - first.created_at).to_std().unwrap_or_default();
                if age >= self.max_age {
                    tracing::error!(channel = %first.channel, checks = %checks, delivery = %id, %reason, attempts = first.attempts + 1, "alert undeliverable for {:?}; dead-lettered", self.max_age);
                    (DeliveryState::Dead, now, Some(reason))
                } else {
                    tracing::warn!(channel = %first.channel, checks = %checks, delivery = %id, %reason, attempts = first.attempts + 1, next = %next, "alert delivery failed; will retry");
                    (DeliveryState::Pending, next, Some(reason))
                }
            }
        };
        let error = error.map(|e| self.config.secrets.redact(&e));
        for member in &members {
            if let Err(e) = self
                .storage
                .record_attempt(member.id, state, next, error.clone())
                .await
            {
                tracing::error!(error = %e, delivery = %member.id, "cannot record a delivery attempt; it will be tried again");
            }
        }
    }
}

/// Sends one delivery to its channel, as the config has it now.
pub async fn send(
    config: &Config,
    client: &reqwest::Client,
    delivery: &Delivery,
) -> Result<(), DeliveryError> {
    send_events(
        config,
        client,
        &delivery.channel,
        std::slice::from_ref(&delivery.event),
        delivery.id,
    )
    .await
}

/// Sends `events` as one message to `channel`, as delivery `id`.
async fn send_events(
    config: &Config,
    client: &reqwest::Client,
    channel: &str,
    events: &[AlertEvent],
    id: uuid::Uuid,
) -> Result<(), DeliveryError> {
    let Some(channel) = config.channels.get(channel) else {
        return Err(DeliveryError::Permanent {
            reason: format!("channel `{channel}` is no longer configured"),
        });
    };
    match &channel.kind {
        ChannelKind::Webhook(webhook) => webhook::send(client, webhook, events, id).await,
        ChannelKind::Email(mail) => {
            let message = email::EmailMessage {
                delivery: Some(id),
                subject: format::group_subject(events),
                text: format::group_email_text(events),
                html: format::group_email_html(events),
            };
            email::send(mail, &message).await
        }
    }
}

/// Exponential backoff with ±20 % jitter, at least what the receiver asked.
fn retry_delay(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = limits::ALERT_RETRY_BASE
        .saturating_mul(1u32 << attempts.min(16))
        .min(limits::ALERT_RETRY_MAX);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    let delay = exponential.mul_f64(jitter);
    delay.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        for attempts in 0..5u32 {
            let base = limits::ALERT_RETRY_BASE.as_secs_f64() * f64::from(1u32 << attempts);
            let delay = retry_delay(attempts, None).as_secs_f64();
            assert!(
                delay >= base * 0.8 - 1e-9 && delay <= base * 1.2 + 1e-9,
                "{attempts}: {delay}"
            );
        }
        assert!(retry_delay(40, None) <= limits::ALERT_RETRY_MAX.mul_f64(1.2));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }
}
