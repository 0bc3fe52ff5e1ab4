//! When no aggregator answers: the probe notes when one last did
//! (`Contact`), and once none has for `--aggregator-down-after` it sends ONE
//! alert itself, through the channels marked `fallback: true` that came with
//! its checks (cached in the spool with them), and ONE note when contact
//! returns. Each is retried with backoff while its receiver fails; the
//! retries live in memory (the aggregator, whose outbox would keep them, is
//! out of reach), so a probe restarted meanwhile starts counting again.
//!
//! The decision is pure (`step`); the clock is tokio's monotonic one for the
//! silence, the wall clock only for what people read.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::*;
use crate::alert::{self, AlertEvent, DeliveryError};
use crate::config::Channel;

/// When an aggregator last answered (any answer from one: a refusal is an
/// answer too). Until the first, the probe's start counts.
pub(crate) struct Contact {
    last: Mutex<(tokio::time::Instant, DateTime<Utc>)>,
}

impl Contact {
    pub(crate) fn new() -> Contact {
        Contact {
            last: Mutex::new((tokio::time::Instant::now(), crate::clock::now())),
        }
    }

    pub(crate) fn answered(&self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (tokio::time::Instant::now(), crate::clock::now());
    }

    /// How long since the last answer, and when it was (wall time).
    fn silence(&self) -> (Duration, DateTime<Utc>) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        (last.0.elapsed(), last.1)
    }
}

/// The fallback channels the aggregator sent last, with their secrets.
#[derive(Default)]
pub(crate) struct FallbackChannels {
    pub channels: Vec<Channel>,
    pub secrets: Arc<Secrets>,
}

/// Who is speaking, for the alert.
pub(crate) struct Speaker {
    pub region: String,
    pub probe: String,
    pub aggregators: Vec<String>,
}

/// Whether people were told that no aggregator answers.
#[derive(Clone, Debug, PartialEq)]
enum Watch {
    InContact,
    /// Paged: the aggregators were last heard at `since`.
    Lost {
        since: DateTime<Utc>,
        incident: Uuid,
    },
}

#[derive(Debug, PartialEq)]
enum Step {
    Nothing,
    /// Send the alert: silent since `since`.
    Page,
    /// Send the note: contact is back.
    Note,
}

/// What to do, `silent` after the last answer.
fn step(watch: &Watch, silent: Duration, down_after: Duration) -> Step {
    match watch {
        Watch::InContact if silent >= down_after => Step::Page,
        Watch::Lost { .. } if silent < down_after => Step::Note,
        _ => Step::Nothing,
    }
}

/// Watches `contact` until `cancel`: one alert per loss of every
/// aggregator, one note when one answers again.
pub(crate) async fn watch_contact(
    contact: Arc<Contact>,
    speaker: Speaker,
    channels: watch::Receiver<Arc<FallbackChannels>>,
    down_after: Duration,
    cancel: CancellationToken,
) {
    let client = match crate::alert::webhook::client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!("{error}; the probe cannot send its fallback alert");
            return;
        }
    };
    let mut watch = Watch::InContact;
    // The last send per channel: a note goes after its alert.
    let mut sending: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(limits::PROBE_CONTACT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let (silent, last) = contact.silence();
        let event = match step(&watch, silent, down_after) {
            Step::Nothing => continue,
            Step::Page => {
                let incident = Uuid::now_v7();
                watch = Watch::Lost {
                    since: last,
                    incident,
                };
                alert::for_aggregators(
                    &speaker.region,
                    &speaker.probe,
                    &speaker.aggregators,
                    last,
                    None,
                    incident,
                )
            }
            Step::Note => {
                let Watch::Lost { since, incident } = watch else {
                    continue;
                };
                watch = Watch::InContact;
                alert::for_aggregators(
                    &speaker.region,
                    &speaker.probe,
                    &speaker.aggregators,
                    since,
                    Some(last),
                    incident,
                )
            }
        };
        let current = channels.borrow().clone();
        let names: Vec<&str> = current.channels.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            tracing::error!(
                "{}; no channel is marked `fallback: true` in the aggregator's alerts/ (or none was received yet), so nobody is told",
                current.secrets.redact(&event.summary)
            );
            continue;
        }
        tracing::warn!(
            "{}; telling channels {}",
            current.secrets.redact(&event.summary),
            names.join(", ")
        );
        let delivery = Uuid::now_v7();
        for channel in &current.channels {
            let previous = sending.remove(&channel.name);
            let task = tokio::spawn(deliver(
                client.clone(),
                channel.clone(),
                current.secrets.clone(),
                event.clone(),
                delivery,
                previous,
                cancel.clone(),
            ));
            sending.insert(channel.name.clone(), task);
        }
    }
}

/// Sends `event` to `channel` (after `previous`, the send before it, is
/// done), retrying with backoff while the receiver fails.
async fn deliver(
    client: reqwest::Client,
    channel: Channel,
    secrets: Arc<Secrets>,
    event: AlertEvent,
    delivery: Uuid,
    previous: Option<JoinHandle<()>>,
    cancel: CancellationToken,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let what = event.event.as_str();
    for attempt in 0..limits::FALLBACK_ALERT_ATTEMPTS_MAX {
        let sent = tokio::select! {
            sent = alert::outbox::send_to_channel(&client, &channel, std::slice::from_ref(&event), delivery, Vec::new()) => sent,
            _ = cancel.cancelled() => return,
        };
        let retry_after = match sent {
            Ok(()) => {
                tracing::info!(channel = %channel.name, "sent the {what} alert");
                return;
            }
            Err(DeliveryError::Permanent { reason }) => {
                tracing::error!(
                    channel = %channel.name,
                    "the {what} alert was refused for good: {}",
                    secrets.redact(&reason)
                );
                return;
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let wait = alert::outbox::retry_delay(attempt, retry_after);
                tracing::warn!(
                    channel = %channel.name,
                    "the {what} alert did not go through ({}); trying again in {:.0}s (kept in memory only)",
                    secrets.redact(&reason),
                    wait.as_secs_f64()
                );
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(retry_after) => {}
            _ = cancel.cancelled() => return,
        }
    }
    tracing::error!(
        channel = %channel.name,
        "gave up on the {what} alert after {} attempts",
        limits::FALLBACK_ALERT_ATTEMPTS_MAX
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_loss_and_one_note_when_contact_returns() {
        let down_after = Duration::from_secs(120);
        let lost = Watch::Lost {
            since: chrono::DateTime::UNIX_EPOCH,
            incident: Uuid::nil(),
        };
        let table = [
            (Watch::InContact, 0, Step::Nothing),
            (Watch::InContact, 119, Step::Nothing),
            (Watch::InContact, 120, Step::Page),
            (Watch::InContact, 3600, Step::Page),
            // Paged: staying silent pages no more.
            (lost.clone(), 120, Step::Nothing),
            (lost.clone(), 86_400, Step::Nothing),
            // An answer: the note.
            (lost.clone(), 0, Step::Note),
        ];
        for (watch, silent, expected) in table {
            assert_eq!(
                step(&watch, Duration::from_secs(silent), down_after),
                expected,
                "{watch:?} silent {silent}s"
            );
        }
    }
}
