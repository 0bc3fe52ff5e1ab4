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
//! - an open incident people were told of pages each `alert.escalate` step's
//!   channels once its `after` has passed since they were first paged (or,
//!   for a state from before that was noted, since the status began),
//!   unless it is acknowledged (`acknowledge`), held, or flapping; an
//!   acknowledged incident gets no reminders either;
//! - an `announce: true` maintenance window is said once when it opens and
//!   once when it closes (`maintenance_notice`), whatever the check's state;
//! - flapping thresholds are the check's `alert.flapping` (defaults in
//!   `limits`). A dependency that is down is a hold like any other (the
//!   aggregator gives its reason), so a dependent's news waits for it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::alert::AlertKind;
use crate::config::{AlertRules, Escalation, Flapping};
use crate::rules::{Ack, AnnouncedWindow, CheckState, Escalated, Status, Transition};

/// A check's alert settings the policy reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings<'a> {
    pub remind_every: Option<Duration>,
    pub flapping: Flapping,
    pub escalate: &'a [Escalation],
}

impl<'a> Settings<'a> {
    pub(crate) fn of(rules: &'a AlertRules) -> Settings<'a> {
        Settings {
            remind_every: rules.remind_every,
            flapping: rules.flapping,
            escalate: &rules.escalate,
        }
    }
}

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
    /// Where it goes: `None` the check's channels, else these (an
    /// escalation step's).
    pub channels: Option<Vec<String>>,
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
    flapping: Flapping,
) -> OnChange {
    let flapping_started = note_change(state, transition.at, flapping);
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
            note_paged(state, transition.at);
            Told::Alert(kind)
        }
    };
    OnChange {
        flapping_alert,
        told,
    }
}

/// Decides what time passing to `now` does for a check in `current`:
/// `held_now` says whether a hold is in force; `settings` are the check's
/// reminder interval, flapping thresholds and escalation steps.
pub(crate) fn on_tick(
    current: &CheckState,
    held_now: bool,
    settings: &Settings<'_>,
    now: DateTime<Utc>,
) -> OnTick {
    let remind_every = settings.remind_every;
    let settled = current.flapping
        && current
            .changes
            .last()
            .is_none_or(|last| stable_since(*last, now, settings.flapping.within));
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
            channels: None,
        });
        if alert.is_some() {
            state.alerted = Some(state.status);
            state.alerted_incident = state.incident.or(state.alerted_incident);
            note_paged(&mut state, now);
        }
        return OnTick::Update { state, alert };
    }
    if !held_now
        && !current.held
        && !current.flapping
        && let Some(update) = escalation_due(current, settings.escalate, now)
    {
        return update;
    }
    if let Some(every) = remind_every
        && !held_now
        && !current.held
        && !current.flapping
        && !acknowledged(current)
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
                channels: None,
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

/// The maintenance notice due for a check whose announcing window open
/// now is `open` (`None`: none), given the one last announced in `state`:
/// the end of the announced one first (also when the next follows at
/// once), then the start of the open one. The state to keep comes with it.
pub(crate) fn maintenance_notice(
    state: &CheckState,
    open: Option<&AnnouncedWindow>,
) -> Option<(AlertKind, AnnouncedWindow, Option<AnnouncedWindow>)> {
    match (&state.announced_window, open) {
        (Some(said), Some(open)) if **said == *open => None,
        (Some(said), _) => Some((AlertKind::MaintenanceEnd, (**said).clone(), None)),
        (None, Some(open)) => Some((
            AlertKind::MaintenanceStart,
            open.clone(),
            Some(open.clone()),
        )),
        (None, None) => None,
    }
}

/// Whether the open incident of `state` is acknowledged.
pub(crate) fn acknowledged(state: &CheckState) -> bool {
    state
        .ack
        .as_ref()
        .is_some_and(|ack| state.incident == Some(ack.incident))
}

/// The next escalation step of an open incident people were told of and
/// nobody acknowledged, if its time has come.
fn escalation_due(
    current: &CheckState,
    steps: &[Escalation],
    now: DateTime<Utc>,
) -> Option<OnTick> {
    let incident = current.incident?;
    if acknowledged(current)
        || !current.status.is_incident()
        || !current.alerted.is_some_and(Status::is_incident)
    {
        return None;
    }
    let this = current
        .escalated
        .as_ref()
        .filter(|e| e.incident == incident);
    let sent = this.map_or(0, |e| e.steps);
    let step = steps.get(usize::try_from(sent).ok()?)?;
    let since = this.and_then(|e| e.paged_at).or(current.since)?;
    if !(now - since).to_std().is_ok_and(|open| open >= step.after) {
        return None;
    }
    let mut state = current.clone();
    state.escalated = Some(Box::new(Escalated {
        incident,
        steps: sent + 1,
        paged_at: Some(since),
    }));
    let kind = if current.status == Status::Down {
        AlertKind::Down
    } else {
        AlertKind::Degraded
    };
    Some(OnTick::Update {
        state,
        alert: Some(Announcement {
            kind,
            previously: current.alerted,
            channels: Some(step.channels.clone()),
        }),
    })
}

/// Notes when people were first paged about the open incident (the
/// escalation clock), once per incident.
fn note_paged(state: &mut CheckState, at: DateTime<Utc>) {
    let Some(incident) = state.incident.filter(|_| state.status.is_incident()) else {
        return;
    };
    if state
        .escalated
        .as_ref()
        .is_some_and(|e| e.incident == incident)
    {
        return;
    }
    state.escalated = Some(Box::new(Escalated {
        incident,
        steps: 0,
        paged_at: Some(at),
    }));
}

/// Why an acknowledgement was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AckRefused {
    /// The check has no open incident by that id (over, or another one).
    NotOpen,
}

/// Acknowledges `incident` of the check in `state` (`via`: `api` or
/// `link`). Acknowledging again keeps the first acknowledgement.
pub(crate) fn acknowledge(
    state: &mut CheckState,
    incident: Uuid,
    at: DateTime<Utc>,
    via: &str,
) -> Result<Ack, AckRefused> {
    if state.incident != Some(incident) {
        return Err(AckRefused::NotOpen);
    }
    if let Some(ack) = state.ack.as_ref().filter(|a| a.incident == incident) {
        return Ok((**ack).clone());
    }
    let ack = Ack {
        incident,
        at,
        via: via.to_string(),
    };
    state.ack = Some(Box::new(ack.clone()));
    Ok(ack)
}

/// Records a state change; true when it makes the check start flapping.
fn note_change(state: &mut CheckState, at: DateTime<Utc>, flapping: Flapping) -> bool {
    let window = chrono::Duration::from_std(flapping.within).unwrap_or(chrono::Duration::MAX);
    state
        .changes
        .retain(|t| at.signed_duration_since(*t) < window);
    state.changes.push(at);
    while state.changes.len() > flapping.changes + 1 {
        state.changes.remove(0);
    }
    if !state.flapping && state.changes.len() > flapping.changes {
        state.flapping = true;
        state.held = true;
        return true;
    }
    false
}

/// No state change for a whole flapping window (`within`) since `last`.
fn stable_since(last: DateTime<Utc>, now: DateTime<Utc>, within: Duration) -> bool {
    (now - last).to_std().is_ok_and(|quiet| quiet >= within)
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
