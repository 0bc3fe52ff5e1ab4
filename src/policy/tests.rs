//! Table tests of the alert policy: every branch of "holding back never
//! loses news", flapping, reminders and first-verdict silence, on plain
//! values (no database, no clock).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::config::{Escalation, Flapping};
use crate::limits;
use crate::rules::{AnnouncedWindow, CheckState, Status, Transition};

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

fn settings(remind_every: Option<Duration>) -> Settings<'static> {
    Settings {
        remind_every,
        flapping: Flapping::default(),
        escalate: &[],
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
        let decided = on_change(&mut s, &change(from, to, 10), hold, Flapping::default());
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
            let decided = on_change(&mut s, &change(from, to, i * 60), hold, Flapping::default());
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
        let decided = on_change(
            &mut s,
            &change(from, to, i * spacing),
            None,
            Flapping::default(),
        );
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
        } = on_tick(&current, false, &settings(None), t(100))
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
        on_tick(
            &current,
            true,
            &settings(Some(Duration::from_secs(60))),
            t(10_000)
        ),
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
    assert_eq!(
        on_tick(&current, false, &settings(None), t(window - 1)),
        OnTick::Judge
    );
    // Quiet a whole window: the state people have not heard is said.
    let OnTick::Update { state, alert } = on_tick(&current, false, &settings(None), t(window))
    else {
        panic!("flapping must settle");
    };
    assert!(!state.flapping && !state.held);
    assert_eq!(alert.map(|a| a.kind), Some(AlertKind::Down));
    // Settled while a silence is on: flapping ends, nothing said yet.
    let OnTick::Update { state, alert } = on_tick(&current, true, &settings(None), t(window))
    else {
        panic!("flapping must settle under a hold too");
    };
    assert!(!state.flapping && state.held);
    assert_eq!(alert, None);
}

#[test]
fn a_check_still_down_is_reminded_every_interval_never_while_held() {
    let every = Some(Duration::from_secs(3600));
    let down = state(Status::Down, Some(Status::Down), false);
    assert_eq!(
        on_tick(&down, false, &settings(every), t(3599)),
        OnTick::Judge
    );
    let OnTick::Update { state, alert } = on_tick(&down, false, &settings(every), t(3600)) else {
        panic!("a reminder is due");
    };
    assert_eq!(state.reminded_at, Some(t(3600)));
    assert_eq!(
        alert,
        Some(Announcement {
            kind: AlertKind::Reminder,
            previously: Some(Status::Down),
            channels: None,
        })
    );
    // The next one counts from the last reminder.
    assert_eq!(
        on_tick(&state, false, &settings(every), t(7199)),
        OnTick::Judge
    );
    // Never while a hold lasts, while flapping, when people were not told
    // it is down, or without remind_every.
    assert_eq!(
        on_tick(&down, true, &settings(every), t(3600)),
        OnTick::Judge
    );
    let mut flapping = down.clone();
    flapping.flapping = true;
    flapping.changes = vec![t(3000)];
    assert_eq!(
        on_tick(&flapping, false, &settings(every), t(3600)),
        OnTick::Judge
    );
    let unheard = state_unheard();
    assert_eq!(
        on_tick(&unheard, false, &settings(every), t(3600)),
        OnTick::Judge
    );
    assert_eq!(
        on_tick(&down, false, &settings(None), t(3600)),
        OnTick::Judge
    );
}

fn state_unheard() -> CheckState {
    state(Status::Down, Some(Status::Up), false)
}

fn escalation(after: u64, channel: &str) -> Escalation {
    Escalation {
        after: Duration::from_secs(after),
        channels: vec![channel.to_string()],
    }
}

/// (state, seconds since the status began, held now) -> the escalation
/// step paged (None: none; a never-told check held until now gets its
/// catch-up on its own channels first).
#[test]
fn open_incidents_escalate_step_by_step_until_acknowledged() {
    let steps = [escalation(60, "pager"), escalation(300, "boss")];
    let settings = Settings {
        remind_every: None,
        flapping: Flapping::default(),
        escalate: &steps,
    };
    let down = state(Status::Down, Some(Status::Down), false);
    let incident = Uuid::from_u128(7);
    let one_sent = CheckState {
        escalated: Some(Box::new(Escalated {
            incident,
            steps: 1,
            paged_at: None,
        })),
        ..down.clone()
    };
    let all_sent = CheckState {
        escalated: Some(Box::new(Escalated {
            incident,
            steps: 2,
            paged_at: None,
        })),
        ..down.clone()
    };
    let sent_for_another = CheckState {
        escalated: Some(Box::new(Escalated {
            incident: Uuid::from_u128(8),
            steps: 2,
            paged_at: None,
        })),
        ..down.clone()
    };
    let acked = CheckState {
        ack: Some(Box::new(Ack {
            incident,
            at: t(1),
            via: "api".into(),
        })),
        ..down.clone()
    };
    let acked_other = CheckState {
        ack: Some(Box::new(Ack {
            incident: Uuid::from_u128(8),
            at: t(1),
            via: "api".into(),
        })),
        ..down.clone()
    };
    let degraded = state(Status::Degraded, Some(Status::Degraded), false);
    let unheard = state(Status::Down, None, true);
    let flapping = CheckState {
        flapping: true,
        ..down.clone()
    };
    let up = state(Status::Up, Some(Status::Up), false);
    type Case<'a> = (
        &'a str,
        &'a CheckState,
        i64,
        bool,
        Option<(&'a str, AlertKind, u32)>,
    );
    let cases: Vec<Case> = vec![
        ("too early", &down, 59, false, None),
        (
            "first step",
            &down,
            60,
            false,
            Some(("pager", AlertKind::Down, 1)),
        ),
        ("second too early", &one_sent, 299, false, None),
        (
            "second step",
            &one_sent,
            300,
            false,
            Some(("boss", AlertKind::Down, 2)),
        ),
        ("all steps sent", &all_sent, 10_000, false, None),
        (
            "steps of an old incident",
            &sent_for_another,
            60,
            false,
            Some(("pager", AlertKind::Down, 1)),
        ),
        ("acknowledged", &acked, 10_000, false, None),
        (
            "another incident acked",
            &acked_other,
            60,
            false,
            Some(("pager", AlertKind::Down, 1)),
        ),
        (
            "degraded escalates as degraded",
            &degraded,
            60,
            false,
            Some(("pager", AlertKind::Degraded, 1)),
        ),
        ("held now", &down, 60, true, None),
        ("never told (held)", &unheard, 60, false, None),
        ("flapping", &flapping, 60, false, None),
        ("up", &up, 60, false, None),
    ];
    for (name, current, at, held_now, want) in cases {
        let got = on_tick(current, held_now, &settings, t(at));
        match (want, got) {
            (None, OnTick::Judge) => {}
            (None, OnTick::Update { alert, state }) => {
                // A catch-up (the hold is over) goes to the check's own
                // channels and is not a step.
                assert!(
                    alert.is_none_or(|a| a.channels.is_none()),
                    "{name}: no escalation"
                );
                let steps = |s: &CheckState| s.escalated.as_ref().map_or(0, |e| e.steps);
                assert_eq!(steps(&state), steps(current), "{name}");
            }
            (Some((channel, kind, steps)), OnTick::Update { state, alert }) => {
                let alert = alert.unwrap_or_else(|| panic!("{name}: no alert"));
                assert_eq!(alert.channels, Some(vec![channel.to_string()]), "{name}");
                assert_eq!(alert.kind, kind, "{name}");
                assert_eq!(
                    state.escalated.map(|e| (e.incident, e.steps)),
                    Some((incident, steps)),
                    "{name}"
                );
            }
            (Some(_), OnTick::Judge) => panic!("{name}: expected an escalation"),
        }
    }
}

#[test]
fn an_acknowledged_incident_gets_no_reminders() {
    let every = Some(Duration::from_secs(60));
    let mut down = state(Status::Down, Some(Status::Down), false);
    assert!(matches!(
        on_tick(&down, false, &settings(every), t(60)),
        OnTick::Update { .. }
    ));
    let ack = acknowledge(&mut down, Uuid::from_u128(7), t(30), "link");
    assert_eq!(ack.map(|a| a.via), Ok("link".to_string()));
    assert_eq!(
        on_tick(&down, false, &settings(every), t(6000)),
        OnTick::Judge
    );
}

/// (incident open, already acked by) -> result of acknowledging incident 7.
#[test]
fn acknowledging_takes_the_open_incident_once() {
    let seven = Uuid::from_u128(7);
    let cases: Vec<(Status, Option<&str>, Result<&str, AckRefused>)> = vec![
        (Status::Down, None, Ok("api")),
        (Status::Degraded, None, Ok("api")),
        (Status::Down, Some("link"), Ok("link")),
        (Status::Up, None, Err(AckRefused::NotOpen)),
    ];
    for (status, before, want) in cases {
        let mut s = state(status, Some(status), false);
        if let Some(via) = before {
            s.ack = Some(Box::new(Ack {
                incident: seven,
                at: t(1),
                via: via.into(),
            }));
        }
        let got = acknowledge(&mut s, seven, t(5), "api").map(|a| a.via);
        assert_eq!(got, want.map(str::to_string), "{status:?} {before:?}");
    }
    let mut other = state(Status::Down, Some(Status::Down), false);
    assert_eq!(
        acknowledge(&mut other, Uuid::from_u128(9), t(5), "api"),
        Err(AckRefused::NotOpen)
    );
}

/// (changes, within) -> the change (0-based) that starts flapping, changes
/// one minute apart.
#[test]
fn flapping_thresholds_are_the_checks_own() {
    let cases = [
        (
            Flapping {
                changes: 2,
                within: Duration::from_secs(600),
            },
            Some(2),
        ),
        (
            Flapping {
                changes: 5,
                within: Duration::from_secs(3600),
            },
            Some(5),
        ),
        // Changes a minute apart never fit three into two minutes.
        (
            Flapping {
                changes: 2,
                within: Duration::from_secs(120),
            },
            None,
        ),
        (
            Flapping {
                changes: 1,
                within: Duration::from_secs(120),
            },
            Some(1),
        ),
    ];
    for (flapping, want) in cases {
        let mut s = state(Status::Up, Some(Status::Up), false);
        let mut started = None;
        for i in 0..8i64 {
            let (from, to) = if i % 2 == 0 {
                (Status::Up, Status::Down)
            } else {
                (Status::Down, Status::Up)
            };
            s.status = to;
            if on_change(&mut s, &change(from, to, i * 60), None, flapping).flapping_alert {
                started = Some(i);
                break;
            }
        }
        assert_eq!(started, want, "{flapping:?}");
    }
    // Settled after the check's own window, not the default hour.
    let short = Flapping {
        changes: 2,
        within: Duration::from_secs(600),
    };
    let flapping = CheckState {
        flapping: true,
        held: true,
        changes: vec![t(0)],
        ..state(Status::Up, Some(Status::Up), true)
    };
    let settings = Settings {
        remind_every: None,
        flapping: short,
        escalate: &[],
    };
    assert_eq!(on_tick(&flapping, false, &settings, t(599)), OnTick::Judge);
    assert!(matches!(
        on_tick(&flapping, false, &settings, t(600)),
        OnTick::Update { .. }
    ));
}

/// A dependency that is down holds the dependent's down back like any
/// hold; its end announces the dependent's down if it is still down, and
/// nothing if it recovered meanwhile.
#[test]
fn a_dependency_hold_pages_the_dependent_afterwards_if_still_down() {
    let mut s = state(Status::Down, Some(Status::Up), false);
    let decided = on_change(
        &mut s,
        &change(Status::Up, Status::Down, 10),
        Some("db is down"),
        Flapping::default(),
    );
    assert_eq!(decided.told, Told::Held("db is down".into()));
    assert!(s.held);
    // Still held while the dependency is down: no page, no escalation.
    assert_eq!(on_tick(&s, true, &settings(None), t(20)), OnTick::Judge);
    let OnTick::Update { alert, .. } = on_tick(&s, false, &settings(None), t(30)) else {
        panic!("the hold's end is news");
    };
    assert_eq!(alert.map(|a| a.kind), Some(AlertKind::Down));
    // Recovered before the dependency: nothing to say.
    let mut r = state(Status::Up, Some(Status::Up), false);
    let _ = on_change(
        &mut r,
        &change(Status::Up, Status::Down, 10),
        Some("db is down"),
        Flapping::default(),
    );
    r.status = Status::Up;
    r.incident = None;
    let _ = on_change(
        &mut r,
        &change(Status::Down, Status::Up, 20),
        Some("db is down"),
        Flapping::default(),
    );
    let OnTick::Update { alert, .. } = on_tick(&r, false, &settings(None), t(30)) else {
        panic!("the hold's end clears `held`");
    };
    assert_eq!(alert, None);
}

/// (announced before, open now) -> the notice and what is kept.
#[test]
fn maintenance_windows_are_announced_once_at_start_and_once_at_end() {
    let w = |name: &str, at: i64| AnnouncedWindow {
        name: name.into(),
        started: t(at),
    };
    type Case = (
        Option<AnnouncedWindow>,
        Option<AnnouncedWindow>,
        Option<(AlertKind, AnnouncedWindow, Option<AnnouncedWindow>)>,
    );
    let cases: Vec<Case> = vec![
        (None, None, None),
        (
            None,
            Some(w("db", 0)),
            Some((AlertKind::MaintenanceStart, w("db", 0), Some(w("db", 0)))),
        ),
        (Some(w("db", 0)), Some(w("db", 0)), None),
        (
            Some(w("db", 0)),
            None,
            Some((AlertKind::MaintenanceEnd, w("db", 0), None)),
        ),
        // The next occurrence of a recurring window, or another window
        // right after: the end of the first, then (next tick) the start.
        (
            Some(w("db", 0)),
            Some(w("db", 86_400)),
            Some((AlertKind::MaintenanceEnd, w("db", 0), None)),
        ),
    ];
    for (before, open, want) in cases {
        let s = CheckState {
            announced_window: before.clone().map(Box::new),
            ..state(Status::Up, Some(Status::Up), false)
        };
        assert_eq!(
            maintenance_notice(&s, open.as_ref()),
            want,
            "{before:?} {open:?}"
        );
    }
}

/// The escalation clock starts when people are paged: a down held back by
/// a dependency (or a maintenance window) and paged at its end escalates
/// `after` from then, not from when it went down.
#[test]
fn escalation_counts_from_the_first_page() {
    let steps = [escalation(60, "pager")];
    let settings = Settings {
        remind_every: None,
        flapping: Flapping::default(),
        escalate: &steps,
    };
    // Down at 0, held until 500, paged then (the catch-up).
    let mut s = state(Status::Down, Some(Status::Up), true);
    let OnTick::Update {
        state: paged,
        alert,
    } = on_tick(&s, false, &settings, t(500))
    else {
        panic!("the catch-up pages");
    };
    assert_eq!(
        alert.map(|a| (a.kind, a.channels)),
        Some((AlertKind::Down, None))
    );
    s = paged;
    assert_eq!(s.escalated.as_ref().and_then(|e| e.paged_at), Some(t(500)));
    assert_eq!(on_tick(&s, false, &settings, t(559)), OnTick::Judge);
    assert!(matches!(
        on_tick(&s, false, &settings, t(560)),
        OnTick::Update {
            alert: Some(Announcement {
                channels: Some(_),
                ..
            }),
            ..
        }
    ));
    // Paged at once by a change: counted from the change.
    let mut c = state(Status::Down, Some(Status::Up), false);
    let told = on_change(
        &mut c,
        &change(Status::Up, Status::Down, 30),
        None,
        Flapping::default(),
    );
    assert_eq!(told.told, Told::Alert(AlertKind::Down));
    assert_eq!(c.escalated.as_ref().and_then(|e| e.paged_at), Some(t(30)));
    assert_eq!(on_tick(&c, false, &settings, t(89)), OnTick::Judge);
}
