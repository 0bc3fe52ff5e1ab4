//! Table tests of the alert policy: every branch of "holding back never
//! loses news", flapping, reminders and first-verdict silence, on plain
//! values (no database, no clock).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::rules::{CheckState, Status, Transition};

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
}

fn change(from: Status, to: Status, at: i64) -> Transition {
    Transition {
        id: Uuid::nil(),
        check: "api".into(),
        from,
        to,
        at: t(at),
        previous_since: None,
        incident: to.is_incident().then(|| Uuid::from_u128(7)),
        summary: String::new(),
        regions: Default::default(),
    }
}

fn state(status: Status, alerted: Option<Status>, held: bool) -> CheckState {
    CheckState {
        status,
        since: Some(t(0)),
        incident: status.is_incident().then(|| Uuid::from_u128(7)),
        alerted,
        held,
        ..CheckState::default()
    }
}

/// (from, to, hold, already flapping) -> told, held and alerted afterwards.
type ChangeCase = (
    Status,
    Status,
    Option<&'static str>,
    bool,
    Told,
    bool,
    Option<Status>,
);

#[test]
fn changes_are_alerted_held_or_not_news() {
    use Status::*;
    let cases: Vec<ChangeCase> = vec![
        (Unknown, Up, None, false, Told::Nothing, false, None),
        (
            Unknown,
            Down,
            None,
            false,
            Told::Alert(AlertKind::Down),
            false,
            Some(Down),
        ),
        (
            Up,
            Down,
            None,
            false,
            Told::Alert(AlertKind::Down),
            false,
            Some(Down),
        ),
        (
            Up,
            Degraded,
            None,
            false,
            Told::Alert(AlertKind::Degraded),
            false,
            Some(Degraded),
        ),
        (
            Degraded,
            Down,
            None,
            false,
            Told::Alert(AlertKind::Down),
            false,
            Some(Down),
        ),
        (
            Down,
            Up,
            None,
            false,
            Told::Alert(AlertKind::Up),
            false,
            Some(Up),
        ),
        (
            Up,
            Down,
            Some("maintenance window `db`"),
            false,
            Told::Held("maintenance window `db`".into()),
            true,
            None,
        ),
        (
            Up,
            Down,
            None,
            true,
            Told::Held("flapping".into()),
            true,
            None,
        ),
        (
            Down,
            Up,
            Some("silenced"),
            false,
            Told::Held("silenced".into()),
            true,
            None,
        ),
        // Not news, whatever holds: nothing is held either.
        (
            Unknown,
            Up,
            Some("silenced"),
            false,
            Told::Nothing,
            false,
            None,
        ),
    ];
    for (from, to, hold, flapping, told, held, alerted) in cases {
        let mut s = state(to, None, false);
        s.flapping = flapping;
        let decided = on_change(&mut s, &change(from, to, 10), hold);
        assert_eq!(decided.told, told, "{from} -> {to} hold {hold:?}");
        assert_eq!(s.held, held, "{from} -> {to} hold {hold:?}");
        assert_eq!(s.alerted, alerted, "{from} -> {to} hold {hold:?}");
        assert!(!decided.flapping_alert);
    }
}

#[test]
fn too_many_changes_are_flapping_said_once_unless_held() {
    for hold in [None, Some("silenced")] {
        let mut s = state(Status::Up, Some(Status::Up), false);
        let mut said = 0;
        for i in 0..(limits::FLAP_CHANGES_MAX as i64 + 3) {
            let (from, to) = if i % 2 == 0 {
                (Status::Up, Status::Down)
            } else {
                (Status::Down, Status::Up)
            };
            s.status = to;
            let decided = on_change(&mut s, &change(from, to, i * 60), hold);
            said += usize::from(decided.flapping_alert);
            if i as usize >= limits::FLAP_CHANGES_MAX {
                assert!(matches!(decided.told, Told::Held(_)), "change {i}");
            }
        }
        assert!(s.flapping && s.held);
        assert_eq!(said, usize::from(hold.is_none()), "hold {hold:?}");
    }
}

#[test]
fn changes_older_than_the_window_do_not_count_towards_flapping() {
    let mut s = state(Status::Up, Some(Status::Up), false);
    let spacing = limits::FLAP_WINDOW.as_secs() as i64 / limits::FLAP_CHANGES_MAX as i64 + 1;
    for i in 0..20 {
        let (from, to) = if i % 2 == 0 {
            (Status::Up, Status::Down)
        } else {
            (Status::Down, Status::Up)
        };
        let decided = on_change(&mut s, &change(from, to, i * spacing), None);
        assert!(matches!(decided.told, Told::Alert(_)), "change {i}");
    }
    assert!(!s.flapping);
}

#[test]
fn when_a_hold_ends_what_people_have_not_heard_is_announced() {
    use Status::*;
    // (status now, last announced) -> announcement
    let cases = [
        (Down, Some(Up), Some(AlertKind::Down)),
        (Down, None, Some(AlertKind::Down)),
        (Down, Some(Down), None),
        (Degraded, Some(Up), Some(AlertKind::Degraded)),
        (Degraded, Some(Down), Some(AlertKind::Degraded)),
        (Up, Some(Down), Some(AlertKind::Up)),
        (Up, Some(Up), None),
        (Up, None, None),
    ];
    for (status, alerted, kind) in cases {
        let current = state(status, alerted, true);
        let OnTick::Update {
            state: after,
            alert,
        } = on_tick(&current, false, None, t(100))
        else {
            panic!("a hold that ended must update {status} / {alerted:?}");
        };
        assert_eq!(
            alert.as_ref().map(|a| a.kind),
            kind,
            "{status} / {alerted:?}"
        );
        if let Some(alert) = alert {
            assert_eq!(alert.previously, alerted);
            assert_eq!(after.alerted, Some(status));
        } else {
            assert_eq!(after.alerted, alerted);
        }
        assert!(!after.held);
    }
}

#[test]
fn while_a_hold_lasts_nothing_is_said() {
    let current = state(Status::Down, Some(Status::Up), true);
    assert_eq!(
        on_tick(&current, true, Some(Duration::from_secs(60)), t(10_000)),
        OnTick::Judge
    );
}

#[test]
fn flapping_settles_after_a_quiet_window_and_catches_up() {
    let window = limits::FLAP_WINDOW.as_secs() as i64;
    let mut current = state(Status::Down, Some(Status::Up), true);
    current.flapping = true;
    current.changes = vec![t(0)];
    // Not yet quiet long enough.
    assert_eq!(on_tick(&current, false, None, t(window - 1)), OnTick::Judge);
    // Quiet a whole window: the state people have not heard is said.
    let OnTick::Update { state, alert } = on_tick(&current, false, None, t(window)) else {
        panic!("flapping must settle");
    };
    assert!(!state.flapping && !state.held);
    assert_eq!(alert.map(|a| a.kind), Some(AlertKind::Down));
    // Settled while a silence is on: flapping ends, nothing said yet.
    let OnTick::Update { state, alert } = on_tick(&current, true, None, t(window)) else {
        panic!("flapping must settle under a hold too");
    };
    assert!(!state.flapping && state.held);
    assert_eq!(alert, None);
}

#[test]
fn a_check_still_down_is_reminded_every_interval_never_while_held() {
    let every = Some(Duration::from_secs(3600));
    let down = state(Status::Down, Some(Status::Down), false);
    assert_eq!(on_tick(&down, false, every, t(3599)), OnTick::Judge);
    let OnTick::Update { state, alert } = on_tick(&down, false, every, t(3600)) else {
        panic!("a reminder is due");
    };
    assert_eq!(state.reminded_at, Some(t(3600)));
    assert_eq!(
        alert,
        Some(Announcement {
            kind: AlertKind::Reminder,
            previously: Some(Status::Down)
        })
    );
    // The next one counts from the last reminder.
    assert_eq!(on_tick(&state, false, every, t(7199)), OnTick::Judge);
    // Never while a hold lasts, while flapping, when people were not told
    // it is down, or without remind_every.
    assert_eq!(on_tick(&down, true, every, t(3600)), OnTick::Judge);
    let mut flapping = down.clone();
    flapping.flapping = true;
    flapping.changes = vec![t(3000)];
    assert_eq!(on_tick(&flapping, false, every, t(3600)), OnTick::Judge);
    let unheard = state_unheard();
    assert_eq!(on_tick(&unheard, false, every, t(3600)), OnTick::Judge);
    assert_eq!(on_tick(&down, false, None, t(3600)), OnTick::Judge);
}

fn state_unheard() -> CheckState {
    state(Status::Down, Some(Status::Up), false)
}
