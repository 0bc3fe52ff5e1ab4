//! The durable outbox and its dispatcher.
//!
//! Design note (limits, format, recovery):
//! - **Format.** One row per (event, channel) in `outbox`, holding the
//!   channel-agnostic `AlertEvent` as JSON, a delivery id (stable across
//!   attempts), `state` (pending, delivered, dead), `attempts`,
//!   `next_attempt_at` and the last error. Rows are inserted in the same
//!   transaction as the state change that raised them, so an event is never
//!   recorded without its alerts, nor an alert sent for an event not recorded.
//! - **Delivery.** The dispatcher polls for due rows (woken at once by
//!   `Notify` when new rows commit, and every `ALERT_POLL_EVERY` regardless),
//!   sends up to `ALERT_CONCURRENCY` at a time, each in its own task, and at
//!   most `ALERT_CHANNEL_CONCURRENCY` per channel, so one channel's slow or
//!   failing receiver holds only its own slots, never another's alerts.
//! - **Retries.** Retryable failures (connection, timeout, 5xx, 429, SMTP 4xx)
//!   wait `ALERT_RETRY_BASE * 2^attempts` (capped at `ALERT_RETRY_MAX`, ±20 %
//!   jitter so a fleet does not retry in step), or longer when the receiver's
//!   `Retry-After` says so. Permanent refusals, and anything still failing
//!   `max_age` after its event, go to `dead`: logged, listed by the API.
//! - **Claims.** Several replicas share one outbox: a dispatcher claims the
//!   rows it sends (`claim_due`, one replica at a time, a group whole) for
//!   `claim_for`, and cuts each attempt to half of that; rows a dead
//!   replica held are free again when its claim runs out.
//! - **Recovery.** State lives only in the table: after a crash (even
//!   SIGKILL) the next dispatcher finds pending rows and sends them.
//!   Delivery is at-least-once: a crash between a receiver's 2xx and the
//!   `delivered` write resends, with the same delivery id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
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
    /// Who claims the deliveries this dispatcher sends (its replica's id).
    pub owner: String,
    /// How long a claim holds; an attempt is cut off at half of it, so it
    /// ends (and frees the claim) before another replica may retake it.
    pub claim_for: Duration,
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
        // Ids being sent, and per channel how many sends are open. A
        // finished task's ids leave only when the loop reaps it, which is
        // after its result was written and before the next query: a row can
        // never be picked up again mid-send.
        let mut in_flight = InFlight::default();
        let mut tasks: JoinSet<(String, Vec<uuid::Uuid>)> = JoinSet::new();
        loop {
            while let Some(done) = tasks.try_join_next() {
                in_flight.reap(done);
            }
            match self
                .storage
                .outbox()
                .claim_due(self.claim(), limits::ALERT_BATCH)
                .await
            {
                Ok(due) => {
                    for delivery in due {
                        if in_flight.ids.contains(&delivery.id) {
                            continue; // already being sent
                        }
                        // A slow or failing receiver holds at most its own
                        // few slots; the other channels go on.
                        if in_flight.open(&delivery.channel) >= limits::ALERT_CHANNEL_CONCURRENCY {
                            continue;
                        }
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            break; // every slot busy: the next round takes the rest
                        };
                        let config = (self.config)();
                        let members = self.gather(&config, delivery).await;
                        if members.iter().any(|m| in_flight.ids.contains(&m.id)) {
                            continue;
                        }
                        let channel = members
                            .first()
                            .map(|m| m.channel.clone())
                            .unwrap_or_default();
                        in_flight.start(&channel, members.iter().map(|m| m.id));
                        let attempt = Attempt {
                            owner: self.owner.clone(),
                            storage: self.storage.clone(),
                            config,
                            client: client.clone(),
                            max_age: self.max_age,
                            cut_off: self.claim_for / 2,
                        };
                        tasks.spawn(async move {
                            let ids: Vec<uuid::Uuid> = members.iter().map(|m| m.id).collect();
                            // A panic in one send must not leave its ids in
                            // flight forever: catch it, report, release.
                            let sent = std::panic::AssertUnwindSafe(attempt.deliver(members)).catch_unwind().await;
                            if sent.is_err() {
                                tracing::error!(channel = %channel, "an alert delivery panicked; it will be retried");
                            }
                            drop(permit);
                            (channel, ids)
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the alert outbox"),
            }
            let sleep = self.until_next_due(&in_flight.ids).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => in_flight.reap(done),
                _ = cancel.cancelled() => {
                    tasks.abort_all();
                    // What it held is free at once for the other replicas
                    // (or the next start), not after the claim runs out.
                    if let Err(error) = self.storage.outbox().release_claims(self.owner.clone()).await {
                        tracing::warn!(%error, "cannot free this replica's delivery claims; they free themselves when the claim runs out");
                    }
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
            Some(group) => self.storage.outbox().group_members(group.to_string()).await,
            None => {
                self.storage
                    .outbox()
                    .claim_group(
                        delivery.channel.clone(),
                        delivery.id,
                        limits::ALERT_GROUP_MAX,
                        self.claim(),
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

    /// A claim from now for `claim_for`.
    fn claim(&self) -> crate::storage::Claim {
        let now = self.storage.clock().now();
        crate::storage::Claim {
            owner: self.owner.clone(),
            now,
            until: now + chrono::Duration::from_std(self.claim_for).unwrap_or_default(),
        }
    }

    /// How long until a delivery that is not already being sent falls due
    /// (at most the poll interval). Rows in flight are still `pending` and
    /// due; counting them would spin this loop for the length of a send.
    async fn until_next_due(&self, in_flight: &HashSet<uuid::Uuid>) -> Duration {
        match self
            .storage
            .outbox()
            .next_due_deliveries(self.owner.clone(), limits::ALERT_BATCH)
            .await
        {
            Ok(upcoming) => upcoming
                .into_iter()
                .find(|(id, _)| !in_flight.contains(id))
                .map(|(_, at)| {
                    (at - self.storage.clock().now())
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or(limits::ALERT_POLL_EVERY)
                .min(limits::ALERT_POLL_EVERY),
            Err(_) => limits::ALERT_POLL_EVERY,
        }
    }
}

struct Attempt {
    /// The replica whose claim this attempt is made under.
    owner: String,
    storage: Storage,
    config: Arc<Config>,
    client: reqwest::Client,
    max_age: Duration,
    /// An attempt still running after this is given up (and retried), so
    /// that it never outlives its claim.
    cut_off: Duration,
}

/// What the dispatcher is sending right now.
#[derive(Default)]
struct InFlight {
    ids: HashSet<uuid::Uuid>,
    per_channel: std::collections::HashMap<String, usize>,
}

impl InFlight {
    fn open(&self, channel: &str) -> usize {
        self.per_channel.get(channel).copied().unwrap_or(0)
    }

    fn start(&mut self, channel: &str, ids: impl Iterator<Item = uuid::Uuid>) {
        self.ids.extend(ids);
        *self.per_channel.entry(channel.to_string()).or_default() += 1;
    }

    /// Takes a finished send out (its result is already written).
    fn reap(&mut self, done: Result<(String, Vec<uuid::Uuid>), tokio::task::JoinError>) {
        match done {
            Ok((channel, ids)) => {
                for id in ids {
                    self.ids.remove(&id);
                }
                if let Some(open) = self.per_channel.get_mut(&channel) {
                    *open = open.saturating_sub(1);
                }
            }
            // Only cancellation gets here (panics are caught in the task),
            // and the dispatcher is stopping then.
            Err(error) => tracing::debug!(%error, "an alert delivery task ended early"),
        }
    }
}

impl Attempt {
    /// One attempt for `members` (one delivery, or a folded group, which
    /// succeed or fail together under the first member's delivery id).
    async fn deliver(self, members: Vec<Delivery>) {
        let Some(first) = members.first() else {
            return;
        };
        // A group goes out under its group id (the same on every retry);
        // a lone delivery under its own, even if it was grouped before.
        let id = if members.len() > 1 {
            first.group_id.unwrap_or(first.id)
        } else {
            first.id
        };
        let events: Vec<AlertEvent> = members.iter().map(|m| m.event.clone()).collect();
        let screenshots = self.screenshots(&first.channel, &events).await;
        let send = send_events(
            &self.config,
            &self.client,
            &first.channel,
            &events,
            id,
            screenshots,
        );
        let outcome = match tokio::time::timeout(self.cut_off, send).await {
            Ok(outcome) => outcome,
            Err(_) => Err(DeliveryError::Retryable {
                reason: format!(
                    "no answer within {} s (half this replica's claim on the delivery)",
                    self.cut_off.as_secs_f64()
                ),
                retry_after: None,
            }),
        };
        let now = self.storage.clock().now();
        let checks: Vec<&str> = events.iter().map(|e| e.check.as_str()).collect();
        let checks = checks.join(", ");
        // Mask secrets before the reason reaches a log line or the table.
        let outcome = outcome.map_err(|e| match e {
            DeliveryError::Permanent { reason } => DeliveryError::Permanent {
                reason: self.config.secrets.redact(&reason),
            },
            DeliveryError::Retryable {
                reason,
                retry_after,
            } => DeliveryError::Retryable {
                reason: self.config.secrets.redact(&reason),
                retry_after,
            },
        });
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
        for member in &members {
            match self
                .storage
                .outbox()
                .record_attempt(member.id, self.owner.clone(), state, next, error.clone())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(delivery = %member.id, "this attempt outlived its claim; the replica that holds the delivery now records it")
                }
                Err(e) => {
                    tracing::error!(error = %e, delivery = %member.id, "cannot record a delivery attempt; it will be tried again")
                }
            }
        }
    }
}

impl Attempt {
    /// The screenshots to attach to an email: those of its browser-check
    /// alerts that storage still keeps (retention may have dropped one).
    async fn screenshots(
        &self,
        channel: &str,
        events: &[AlertEvent],
    ) -> Vec<(String, String, Vec<u8>)> {
        let is_email = self
            .config
            .channels
            .get(channel)
            .is_some_and(|c| matches!(c.kind, ChannelKind::Email(_)));
        if !is_email {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for event in events {
            let Some(id) = event.screenshot_result else {
                continue;
            };
            match self.storage.outbox().attachment(id.to_string()).await {
                // A grouped email of many failing flows stays small enough
                // for mail servers; the others are linked in the text.
                Ok(Some(png)) if bytes + png.len() > limits::EMAIL_ATTACHMENTS_BYTES_MAX => {}
                Ok(Some(png)) => {
                    bytes += png.len();
                    out.push((
                        format!("{}-{id}.png", event.check),
                        "image/png".to_string(),
                        png,
                    ))
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot read a screenshot to attach"),
            }
        }
        out
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
        Vec::new(),
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
    attachments: Vec<(String, String, Vec<u8>)>,
) -> Result<(), DeliveryError> {
    let Some(channel) = config.channels.get(channel) else {
        return Err(DeliveryError::Permanent {
            reason: format!("channel `{channel}` is no longer configured"),
        });
    };
    send_to_channel(client, channel, events, id, attachments).await
}

/// Sends `events` as one message to `channel`, as delivery `id` (also what a
/// probe uses for its fallback alert, without an outbox).
pub async fn send_to_channel(
    client: &reqwest::Client,
    channel: &crate::config::Channel,
    events: &[AlertEvent],
    id: uuid::Uuid,
    attachments: Vec<(String, String, Vec<u8>)>,
) -> Result<(), DeliveryError> {
    match &channel.kind {
        ChannelKind::Webhook(webhook) => webhook::send(client, webhook, events, id).await,
        ChannelKind::Email(mail) => {
            let message = email::EmailMessage {
                delivery: Some(id),
                subject: format::group_subject(events),
                text: format::group_email_text(events),
                html: format::group_email_html(events),
                attachments,
            };
            email::send(mail, &message).await
        }
    }
}

/// Exponential backoff with ±20 % jitter, at least what the receiver asked.
pub(crate) fn retry_delay(attempts: u32, retry_after: Option<Duration>) -> Duration {
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
