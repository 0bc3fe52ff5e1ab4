//! `/checks/{name}`: one check's history on a page of its own, without
//! JavaScript: its card as on the main page, 90 days of daily uptime and
//! p95, every incident of those days with its written updates and
//! duration, and each region's latest failure (reason, time, screenshot).
//! Pure: the API gathers the figures (`CheckHistory`).

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Serialize;

use super::page::{STYLE, check_card, human_duration, ms, percent, status_word, timeline};
use super::{CheckStatus, DayStatus, Incident};
use crate::config::page::{Announcement, PageSettings};

/// Everything the page shows of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckHistory {
    pub check: CheckStatus,
    /// Beside `check.days`, one each: the day's p95 of ok run times.
    pub daily_p95_ms: Vec<Option<f64>>,
    /// Newest first, every one of the shown days.
    pub incidents: Vec<Incident>,
    pub last_failures: Vec<LastFailure>,
}

/// A region's latest failing result.
#[derive(Clone, Debug, Serialize)]
pub struct LastFailure {
    pub region: String,
    pub at: DateTime<Utc>,
    pub outcome: crate::result::Outcome,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
}

/// A day's uptime percent from its judged and down seconds.
pub fn day_uptime(day: &super::Day) -> Option<f64> {
    (day.judged_s > 0).then(|| (day.judged_s - day.down_s) as f64 * 100.0 / day.judged_s as f64)
}

pub fn render(
    history: &CheckHistory,
    settings: &PageSettings,
    announcements: &[Announcement],
) -> Markup {
    let check = &history.check;
    let shown = check.display_name.as_deref().unwrap_or(&check.name);
    let site = settings.title();
    let open: Vec<&Announcement> = announcements.iter().filter(|a| a.is_open()).collect();
    let about: Vec<&Announcement> = announcements
        .iter()
        .filter(|a| a.checks.contains(&check.name) && a.incident.is_none())
        .collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (shown) " · " (site) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main data-check-page=(check.name) {
                    h1 { a href="/" { (site) } " / " (shown) }
                    (check_card(check, &open, true))
                    h2 { "Failures by region" }
                    @if history.last_failures.is_empty() {
                        p class="muted" { "No failing run in the results kept." }
                    }
                    @for failure in &history.last_failures {
                        div class="card" data-failure-region=(failure.region) {
                            b { (failure.region) } " "
                            span class="muted" { (failure.at.format("%Y-%m-%d %H:%M:%S UTC")) " · " (failure.outcome.as_str()) }
                            div class="err" { (failure.reason) }
                            @if let Some(screenshot) = &failure.screenshot {
                                a class="shot" href=(screenshot) {
                                    img src=(screenshot) loading="lazy" alt={"Screenshot of the failing run in " (failure.region)};
                                }
                            }
                        }
                    }
                    h2 { "Incidents in the last 90 days" }
                    @if history.incidents.is_empty() {
                        p class="muted" { "No incidents in the last 90 days." }
                    } @else {
                        table data-incidents {
                            tr { th { "Started" } th { "Lasted" } th { "State" } th { "What happened" } }
                            @for incident in &history.incidents {
                                tr data-incident=(incident.id) {
                                    td { (incident.started.format("%Y-%m-%d %H:%M UTC")) }
                                    td data-duration-s=(incident.duration_s) {
                                        (human_duration(incident.duration_s))
                                        @if incident.ended.is_none() { " (ongoing)" }
                                    }
                                    td { span class={"badge " (incident.status.as_str())} { (status_word(incident.status)) } }
                                    td {
                                        (incident.summary)
                                        @for note in announcements.iter().filter(|a| a.incident == Some(incident.id)) {
                                            (timeline(note))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !about.is_empty() {
                        h2 { "Announcements" }
                        @for note in &about { (super::page::announcement_card(note)) }
                    }
                    h2 { "Daily uptime and p95" }
                    table data-daily {
                        tr { th { "Day" } th { "Uptime" } th { "p95" } th { "State" } }
                        @for (day, p95) in check.days.iter().zip(&history.daily_p95_ms).rev() {
                            tr data-day=(day.date) {
                                td { (day.date) }
                                td { (percent(day_uptime(day))) }
                                td { (ms(*p95)) }
                                td { (day_word(day.status)) }
                            }
                        }
                    }
                    footer {
                        a href={"/api/v1/status/" (check.name)} { "JSON" }
                        " · " a href="/" { "All checks" }
                    }
                }
            }
        }
    }
}

fn day_word(status: DayStatus) -> &'static str {
    match status {
        DayStatus::Up => "up",
        DayStatus::Degraded => "degraded",
        DayStatus::Down => "down",
        DayStatus::None => "no data",
    }
}
