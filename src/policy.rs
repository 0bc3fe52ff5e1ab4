//! The alert policy: what people are told about a check, and when. Pure, in
//! the style of `rules.rs`: a check's state (as the rules left it), the
//! change or the time, and whether a hold (maintenance window, silence) is
//! in force go in; decisions and the updated bookkeeping come out. No I/O,
//! no clock: the aggregator builds the alert events and writes them.
//!
//! What it decides (ARCHITECTURE.md, "Holding back never loses news"):
//! - a change that is news (down, degraded, or up after an incident) is
//!   alerted unless held back by a hold or by flapping; the first verdict of
//!   a check (unknown to up) is news to nobody;
//! - more than `FLAP_CHANGES_MAX` changes within `FLAP_WINDOW` is flapping:
//!   said once, then changes are held until the check is stable that long;
//! - when a hold ends (or flapping settles), the current state is announced
//!   if it is not what people last heard, and nothing is said if it is;
//! - a check still down is reminded every `remind_every`, never while held.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alert::AlertKind;
use crate::limits;
use crate::rules::{CheckState, Status, Transition};

/// What a change of state comes to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OnChange {
    /// The check has just started flapping and no hold mutes it: say so once.
    pub flapping_alert: bool,
    pub told: Told,
}

/// Whether a change is alerted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Told {
    /// Tell the check's channels.
    Alert(AlertKind),
    /// News, held back (why: the hold, or flapping); announced when it ends.
    Held(String),
    /// Not news to anyone (a first verdict of up, degraded to down is
    /// still news: see `alert_kind`).
    Nothing,
}

/// An alert about the check's current state, from the passing of time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub kind: AlertKind,
    /// What people had last heard, for the payload's `previous_status`.
    pub previously: Option<Status>,
}

/// What the passing of time comes to.
#[derive(Debug, PartialEq)]
pub(crate) enum OnTick {
    /// The policy has nothing to do; the rules may still (staleness).
    Judge,
    /// The bookkeeping changes (a hold or flapping ended, a reminder went
    /// out), with an alert to send or not.
    Update {
        state: CheckState,
        alert: Option<Announcement>,
    },
}

/// The alert a change from `from` to `to` makes, if it is news.
pub(crate) fn alert_kind(from: Status, to: Status) -> Option<AlertKind> {
    match (from, to) {
        (_, Status::Down) => Some(AlertKind::Down),
        (_, Status::Degraded) => Some(AlertKind::Degraded),
        (from, Status::Up) if from.is_incident() => Some(AlertKind::Up),
        _ => None,
    }
}

/// Decides about `transition` of the check whose state (already moved by
/// the rules) is `state`, and records it there (flapping clock, `held`,
/// `alerted`). `hold`: why alerts are held back now, if they are.
pub(crate) fn on_change(
    state: &mut CheckState,
    transition: &Transition,
    hold: Option<&str>,
) -> OnChange {
    let flapping_started = note_change(state, transition.at);
    let flapping_alert = flapping_started && hold.is_none();
    let Some(kind) = alert_kind(transition.from, transition.to) else {
        return OnChange {
            flapping_alert,
            told: Told::Nothing,
        };
    };
    let why = hold
        .map(str::to_string)
        .or_else(|| state.flapping.then(|| "flapping".to_string()));
    let told = match why {
        Some(why) => {
            state.held = true;
            Told::Held(why)
        }
        None => {
            state.held = false;
            state.alerted = Some(transition.to);
            state.alerted_incident = transition.incident.or(state.alerted_incident);
            Told::Alert(kind)
        }
    };
    OnChange {
        flapping_alert,
        told,
    }
}

/// Decides what time passing to `now` does for a check in `current`:
/// `held_now` says whether a hold is in force, `remind_every` is the
/// check's reminder interval.
pub(crate) fn on_tick(
    current: &CheckState,
    held_now: bool,
    remind_every: Option<Duration>,
    now: DateTime<Utc>,
) -> OnTick {
    let settled = current.flapping
        && current
            .changes
            .last()
            .is_none_or(|last| stable_since(*last, now));
    if settled || (current.held && !held_now && !current.flapping) {
        // Stable again, or the hold is over: announce what people have not
        // heard yet (once no hold is in force).
        let mut state = current.clone();
        state.flapping = false;
        if held_now {
            return OnTick::Update { state, alert: None };
        }
        state.held = false;
        let alert = catch_up_kind(state.alerted, state.status).map(|kind| Announcement {
            kind,
            previously: state.alerted,
        });
        if alert.is_some() {
            state.alerted = Some(state.status);
            state.alerted_incident = state.incident.or(state.alerted_incident);
        }
        return OnTick::Update { state, alert };
    }
    if let Some(every) = remind_every
        && !held_now
        && !current.held
        && !current.flapping
        && current.alerted == Some(Status::Down)
        && current.status == Status::Down
        && reminder_due(current, every, now)
    {
        let mut state = current.clone();
        state.reminded_at = Some(now);
        return OnTick::Update {
            state,
            alert: Some(Announcement {
                kind: AlertKind::Reminder,
                previously: current.alerted,
            }),
        };
    }
    OnTick::Judge
}

/// What to announce when a hold ends, given what was last announced: the
/// current state if people have not heard it, nothing if they have.
pub(crate) fn catch_up_kind(alerted: Option<Status>, now: Status) -> Option<AlertKind> {
    match now {
        Status::Down if alerted != Some(Status::Down) => Some(AlertKind::Down),
        Status::Degraded if alerted != Some(Status::Degraded) => Some(AlertKind::Degraded),
        Status::Up if alerted.is_some_and(Status::is_incident) => Some(AlertKind::Up),
        _ => None,
    }
}

/// Records a state change; true when it makes the check start flapping.
fn note_change(state: &mut CheckState, at: DateTime<Utc>) -> bool {
    let window = chrono::Duration::from_std(limits::FLAP_WINDOW).unwrap_or(chrono::Duration::MAX);
    state
        .changes
        .retain(|t| at.signed_duration_since(*t) < window);
    state.changes.push(at);
    if state.changes.len() > limits::FLAP_CHANGES_MAX + 1 {
        state.changes.remove(0);
    }
    if !state.flapping && state.changes.len() > limits::FLAP_CHANGES_MAX {
        state.flapping = true;
        state.held = true;
        return true;
    }
    false
}

/// No state change for a whole flapping window since `last`.
fn stable_since(last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - last)
        .to_std()
        .is_ok_and(|quiet| quiet >= limits::FLAP_WINDOW)
}

/// Whether a check down since `since` (or last reminded) is due a reminder.
fn reminder_due(state: &CheckState, every: Duration, now: DateTime<Utc>) -> bool {
    let Some(anchor) = state.reminded_at.or(state.since) else {
        return false;
    };
    (now - anchor)
        .to_std()
        .is_ok_and(|elapsed| elapsed >= every)
}

#[cfg(test)]
mod tests;
