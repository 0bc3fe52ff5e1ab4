//! The status page as HTML: server-rendered with `maud` (every value
//! escaped), inline CSS, inline SVG charts, no JavaScript. Readable on a
//! phone (one column below 40em), dark when the reader's system is, and
//! `?refresh=N` reloads it every N seconds.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{CheckStatus, DayStatus, Incident, RegionLatency, StatusReport};
use crate::config::page::{Announcement, PageSettings};
use crate::rules::Status;

/// What the page shows beyond the figures: its settings (title, logo,
/// groups, footer) and the announcements, newest first.
pub struct PageView<'a> {
    pub settings: &'a PageSettings,
    pub announcements: &'a [Announcement],
    pub refresh: Option<u64>,
    /// Which checks this view shows (`overview.rs`; the default: the page's
    /// first view).
    pub selection: super::overview::Selection,
}

pub(super) const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#667085;--line:#e4e7ec;
--up:#12b76a;--degraded:#f79009;--down:#f04438;--none:#d0d5dd;--unknown:#98a2b3}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--card:#171a21;--fg:#e6e8ec;
--muted:#98a2b3;--line:#2a2f3a;--none:#344054}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
main{max-width:60em;margin:0 auto;padding:1em}
h1{font-size:1.3em;margin:.2em 0 .8em}h2{font-size:1.05em;margin:1.6em 0 .6em}
.banner{border-radius:10px;padding:1em 1.2em;color:#fff;font-size:1.25em;font-weight:600}
.banner small{display:block;font-weight:400;font-size:.7em;opacity:.9}
.operational{background:var(--up)}.degraded_performance{background:var(--degraded)}
.partial_outage{background:var(--down)}.major_outage{background:#b42318}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.9em 1.1em;margin:.7em 0}
.head{display:flex;flex-wrap:wrap;gap:.3em 1em;align-items:baseline;justify-content:space-between}
.name{font-weight:600;font-size:1.05em}.name a{color:inherit;text-decoration:none}
.badge{display:inline-block;border-radius:99px;padding:.05em .7em;font-size:.85em;font-weight:600;color:#fff}
.badge.up{background:var(--up)}.badge.degraded{background:var(--degraded)}
.badge.down{background:var(--down)}.badge.unknown{background:var(--unknown)}
.muted{color:var(--muted);font-size:.88em}.target{word-break:break-all}
.uptime{display:flex;gap:1.2em;flex-wrap:wrap;margin:.4em 0}
.uptime b{font-variant-numeric:tabular-nums}
.days{display:flex;gap:1px;height:34px;margin:.3em 0}.days i{flex:1;border-radius:1px}
.days i.up{background:var(--up)}.days i.degraded{background:var(--degraded)}
.days i.down{background:var(--down)}.days i.none{background:var(--none)}
.lat{display:grid;grid-template-columns:repeat(auto-fit,minmax(17em,1fr));gap:.5em 1em;margin-top:.4em}
.lat svg{width:100%;height:46px;display:block}
.lat polyline{fill:none;stroke-width:2;stroke-linecap:round}.p50{stroke:var(--up)}.p95{stroke:var(--degraded)}
.k50{color:var(--up)}.k95{color:var(--degraded)}
.err{color:var(--down);font-size:.9em;word-break:break-word}
.shot img{max-width:min(100%,24em);border:1px solid var(--line);border-radius:6px;margin:.3em 0}
.vitals{font-size:.85em;border-collapse:collapse;margin:.4em 0}.vitals td,.vitals th{padding:.1em .5em;text-align:left}
.strip{display:flex;gap:.4em;overflow-x:auto}.strip figure{margin:0;font-size:.75em}.strip img{width:12em;border:1px solid var(--line)}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35em .4em;border-top:1px solid var(--line);vertical-align:top}
th{font-size:.85em;color:var(--muted);font-weight:500}
footer{margin:2em 0 1em;color:var(--muted);font-size:.85em}
.brand{display:flex;gap:.8em;align-items:center}.brand img{max-height:2.4em;max-width:10em}
.group>h2{display:flex;gap:.6em;align-items:center;flex-wrap:wrap}
.note{border-left:5px solid var(--unknown)}.note.maintenance{border-left-color:#2e90fa}
.note.degraded{border-left-color:var(--degraded)}.note.outage{border-left-color:var(--down)}
.note h3{margin:.1em 0 .4em;font-size:1em}.note ol{list-style:none;padding:0;margin:0}
.note li{margin:.4em 0}.note li p{margin:.2em 0}.tag{font-weight:600;font-size:.85em;text-transform:uppercase;color:var(--muted)}
a{color:inherit}
@media (max-width:40em){main{padding:.6em}.banner{font-size:1.1em}}
"#;

/// The whole page; `refresh` seconds adds an auto-refresh; `single` is set
/// on a check's own page (`/checks/{name}`).
pub fn render(report: &StatusReport, refresh: Option<u64>, single: Option<&str>) -> Markup {
    let settings = PageSettings::default();
    let view = PageView {
        settings: &settings,
        announcements: &[],
        refresh,
        selection: Default::default(),
    };
    render_page(report, &view, single)
}

/// The page with its settings and announcements.
pub fn render_page(report: &StatusReport, view: &PageView<'_>, single: Option<&str>) -> Markup {
    let refresh = view.refresh;
    let site = view.settings.title();
    let title = match single {
        Some(name) => format!("{name} · {site}"),
        None => site.to_string(),
    };
    let open: Vec<&Announcement> = view.announcements.iter().filter(|a| a.is_open()).collect();
    let past: Vec<&Announcement> = view.announcements.iter().filter(|a| !a.is_open()).collect();
    let by_name: std::collections::HashMap<&str, &CheckStatus> =
        report.checks.iter().map(|c| (c.name.as_str(), c)).collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) }
                link rel="alternate" type="application/atom+xml" href="/feed.atom" title={(site) " incidents"};
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    div class="brand" {
                        @if let Some(logo) = &view.settings.logo_url { img src=(logo) alt=""; }
                        h1 {
                            @if single.is_some() { a href="/" { (site) } " / " (single.unwrap_or_default()) }
                            @else { (site) }
                        }
                    }
                    @if let Some(description) = view.settings.description.as_ref().filter(|_| single.is_none()) {
                        p class="muted" data-page-description { (description) }
                    }
                    @if single.is_none() && !open.is_empty() {
                        section class="announcements" data-announcements="open" {
                            @for announcement in &open { (announcement_card(announcement)) }
                        }
                    }
                    @if single.is_none() {
                        div class={"banner " (overall_class(report))} data-overall=(overall_class(report)) {
                            (report.overall.headline())
                            small {
                                (report.counts.up) " up · " (report.counts.degraded) " degraded · "
                                (report.counts.down) " down"
                                @if report.counts.unknown > 0 { " · " (report.counts.unknown) " not judged yet" }
                            }
                        }
                    }
                    @if single.is_none() && !super::overview::whole(report, &view.selection) {
                        (super::overview::render(report, &open, &view.selection, refresh))
                    } @else if report.groups.is_empty() || single.is_some() {
                        @for check in &report.checks { (check_card(check, &open, single.is_some())) }
                    } @else {
                        @for group in &report.groups {
                            section class="group" id={"group-" (group.name)} data-group=(group.name) data-group-status=(group.status.as_str()) {
                                (super::overview::group_head(group, &open))
                                @for name in &group.checks {
                                    @if let Some(check) = by_name.get(name.as_str()) { (check_card(check, &open, single.is_some())) }
                                }
                            }
                        }
                    }
                    @if report.checks.is_empty() { p class="muted" { "No checks to show." } }
                    h2 { "Recent incidents" }
                    (incidents(&report.incidents, view.announcements))
                    @if single.is_none() && !past.is_empty() {
                        h2 { "Past announcements" }
                        section class="announcements" data-announcements="past" {
                            @for announcement in &past { (announcement_card(announcement)) }
                        }
                    }
                    footer {
                        @if let Some(link) = &view.settings.footer {
                            a href=(link.url) data-footer-link { (link.text) } " · "
                        }
                        "Daily bars: the last 90 days, today on the right; grey: no data. "
                        "Updated " (report.generated_at.format("%Y-%m-%d %H:%M:%S UTC"))
                        " · " a href={"/api/v1/status" (single.map(|n| format!("/{n}")).unwrap_or_default())} { "JSON" }
                        " · " a href="?refresh=30" { "auto-refresh" }
                        " · " a href="/feed.atom" { "Atom feed" }
                    }
                }
            }
        }
    }
}

fn overall_class(report: &StatusReport) -> &'static str {
    match report.overall {
        super::Overall::Operational => "operational",
        super::Overall::DegradedPerformance => "degraded_performance",
        super::Overall::PartialOutage => "partial_outage",
        super::Overall::MajorOutage => "major_outage",
    }
}

/// An announcement: its severity, title, affected checks and groups, and
/// its timeline oldest first, each text in the safe Markdown subset.
pub fn announcement_card(announcement: &Announcement) -> Markup {
    html! {
        article class={"card note " (announcement.severity.as_str())} id={"announcement-" (announcement.id)}
            data-announcement=(announcement.id) data-severity=(announcement.severity.as_str())
            data-open=(announcement.is_open()) {
            h3 { span class="tag" { (announcement.severity.as_str()) } " " (announcement.title) }
            @if !announcement.checks.is_empty() || !announcement.groups.is_empty() {
                div class="muted" {
                    "Affects: "
                    @for (i, name) in announcement.groups.iter().chain(&announcement.checks).enumerate() {
                        @if i > 0 { ", " }
                        (name)
                    }
                }
            }
            (timeline(announcement))
        }
    }
}

/// An announcement's updates, oldest first.
pub fn timeline(announcement: &Announcement) -> Markup {
    html! {
        ol class="timeline" {
            @for update in &announcement.updates {
                li data-update=(update.status.as_str()) {
                    span class="tag" { (update.status.label()) } " "
                    span class="muted" { (update.at.format("%Y-%m-%d %H:%M UTC")) }
                    // Built by `markdown::to_html` from a fixed list of tags
                    // around escaped text: the one place user text is not
                    // escaped by maud, because it already is.
                    div class="text" { (PreEscaped(super::markdown::to_html(&update.text))) }
                }
            }
        }
    }
}

/// `single`: on a check's own page, which also shows film strips.
pub fn check_card(check: &CheckStatus, open: &[&Announcement], single: bool) -> Markup {
    let notes: Vec<&&Announcement> = open
        .iter()
        .filter(|a| a.checks.contains(&check.name))
        .collect();
    html! {
        section class="card" id={"check-" (check.name)} data-check=(check.name) data-status=(check.status.as_str()) {
            div class="head" {
                span class="name" { a href={"/checks/" (check.name)} { (check.display_name.as_deref().unwrap_or(&check.name)) } }
                span {
                    span class={"badge " (check.status.as_str())} { (status_word(check.status)) }
                    @if let Some(since) = check.since {
                        " " span class="muted" { "since " (since.format("%Y-%m-%d %H:%M UTC")) }
                    }
                }
            }
            @if let Some(description) = &check.description { div class="muted" { (description) } }
            @if let Some(because) = &check.because {
                div class="err" data-because { "down, because " (because) }
            }
            @if !check.depends_on.is_empty() {
                div class="muted" data-depends-on { "depends on " (check.depends_on.join(", ")) }
            }
            @if let Some(at) = check.acknowledged_at {
                div class="muted" data-acknowledged { "acknowledged " (at.format("%Y-%m-%d %H:%M UTC")) }
            }
            @for note in &notes {
                div class="muted" data-check-announcement=(note.id) {
                    span class="tag" { (note.severity.as_str()) } " " a href={"/#announcement-" (note.id)} { (note.title) }
                }
            }
            @if let Some(target) = &check.target { div class="muted target" { (check.kind) " · " (target) } }
            div class="uptime" {
                span { "24h " b { (percent(check.uptime.day)) } }
                span { "7d " b { (percent(check.uptime.week)) } }
                span { "30d " b { (percent(check.uptime.month)) } }
            }
            (day_bar(check))
            @for (region, now) in &check.regions {
                @if let Some(error) = now.error.as_ref().filter(|_| now.outcome != crate::result::Outcome::Ok) {
                    div class="err" { (region) ": " (error) }
                }
                @if let Some(screenshot) = &now.screenshot {
                    a class="shot" href=(screenshot) {
                        img src=(screenshot) loading="lazy" alt={"Screenshot of the failing run in " (region)};
                    }
                }
                (browser_pages(region, now, single))
            }
            @if !check.latency.is_empty() {
                div class="lat" {
                    @for (region, latency) in &check.latency { (latency_chart(region, latency)) }
                }
            }
        }
    }
}

/// A browser check's latest run: each page's Web Vitals, the console
/// errors and failed requests, and (on the check's page) the film strip.
fn browser_pages(region: &str, now: &super::RegionNow, single: bool) -> Markup {
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |ms| format!("{ms:.0} ms"));
    html! {
        @if !now.pages.is_empty() {
            table class="vitals" {
                caption { "Web Vitals · " (region) }
                tr { th { "step" } th { "page" } th { "TTFB" } th { "FCP" } th { "LCP" } th { "CLS" } th { "INP" } th { "TBT" } }
                @for (step, v) in &now.pages {
                    tr {
                        td { (step) }
                        td class="target" { (v.url.as_deref().unwrap_or("")) }
                        td { (ms(v.ttfb_ms)) } td { (ms(v.fcp_ms)) } td { (ms(v.lcp_ms)) }
                        td { (v.cls.map_or("–".to_string(), |c| format!("{c:.3}"))) }
                        td { (ms(v.inp_ms)) } td { (ms(v.tbt_ms)) }
                    }
                }
            }
        }
        @for e in &now.console_errors {
            div class="err" { (region) ": step " (e.step) " console error: " (e.message) }
        }
        @for e in &now.request_errors {
            div class="err" { (region) ": step " (e.step) " request failed: " (e.url.as_deref().unwrap_or("")) " " (e.message) }
        }
        @if single && !now.film_strip.is_empty() {
            div class="strip" {
                @for frame in &now.film_strip {
                    figure {
                        img src={"data:image/jpeg;base64," (frame.jpeg)} alt={"After step " (frame.step) ": " (frame.name)};
                        figcaption { (frame.step) ". " (frame.name) }
                    }
                }
            }
        }
    }
}

pub(super) fn status_word(status: Status) -> &'static str {
    match status {
        Status::Up => "Operational",
        Status::Degraded => "Degraded",
        Status::Down => "Down",
        Status::Unknown => "Not judged yet",
    }
}

pub(super) fn percent(value: Option<f64>) -> String {
    match value {
        // Never round a real outage up to 100%.
        Some(v) if v < 100.0 => format!("{:.2}%", (v * 100.0).floor() / 100.0),
        Some(_) => "100%".to_string(),
        None => "–".to_string(),
    }
}

/// 90 thin bars, one a day, oldest on the left. Days with downtime carry a
/// tooltip saying how much; the others (good, or no data: grey) stay a few
/// bytes, so a page of a thousand checks stays small.
fn day_bar(check: &CheckStatus) -> Markup {
    html! {
        div class="days" role="img" aria-label={"Daily status of " (check.name) " over " (check.days.len()) " days"} {
            @for day in &check.days {
                @if matches!(day.status, DayStatus::Up | DayStatus::None) {
                    i class=(day_class(day.status)) {}
                } @else {
                    i class=(day_class(day.status)) title={(day.date) ": " (day_text(day))} {}
                }
            }
        }
    }
}

fn day_class(status: DayStatus) -> &'static str {
    match status {
        DayStatus::Up => "up",
        DayStatus::Degraded => "degraded",
        DayStatus::Down => "down",
        DayStatus::None => "none",
    }
}

fn day_text(day: &super::Day) -> String {
    match day.status {
        DayStatus::None => "no data".to_string(),
        DayStatus::Up => "no incident".to_string(),
        _ => {
            let mut parts = Vec::new();
            if day.down_s > 0 {
                parts.push(format!("down {}", human_duration(day.down_s)));
            }
            if day.degraded_s > 0 {
                parts.push(format!("degraded {}", human_duration(day.degraded_s)));
            }
            parts.join(", ")
        }
    }
}

pub fn human_duration(seconds: i64) -> String {
    crate::schedule::format_duration_approx(std::time::Duration::from_secs(
        u64::try_from(seconds).unwrap_or(0),
    ))
}

/// p50 and p95 per hour over the last 24 h, as two polylines.
fn latency_chart(region: &str, latency: &RegionLatency) -> Markup {
    let (w, h) = (240.0, 46.0);
    let max = latency
        .hours
        .iter()
        .filter_map(|p| p.p95_ms)
        .fold(1.0_f64, f64::max);
    let n = latency.hours.len().max(2) as f64 - 1.0;
    let points = |pick: &dyn Fn(&super::HourPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        latency
            .hours
            .iter()
            .enumerate()
            .filter_map(|(i, p)| pick(p).map(|v| (i as f64 * w / n, h - 2.0 - v / max * (h - 4.0))))
            .collect()
    };
    let joined = |list: &[(f64, f64)]| -> String {
        list.iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A single hour of data is drawn as a short dash, so it still shows.
    let dash = |mut list: Vec<(f64, f64)>| {
        if let [(x, y)] = list[..] {
            list = vec![(x - 3.0, y), (x, y)];
        }
        list
    };
    let p95 = dash(points(&|p| p.p95_ms));
    let p50 = dash(points(&|p| p.p50_ms));
    html! {
        div data-region=(region) {
            div class="muted" {
                (region) " · " span class="k50" { "p50" } " " b { (ms(latency.p50_ms)) }
                " · " span class="k95" { "p95" } " " b { (ms(latency.p95_ms)) }
            }
            svg viewBox={"0 0 " (w) " " (h)} preserveAspectRatio="none" role="img"
                aria-label={"Latency in " (region) " over 24 hours"} {
                polyline class="p95" points=(joined(&p95)) {}
                polyline class="p50" points=(joined(&p50)) {}
            }
        }
    }
}

pub(super) fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1000.0 => format!("{:.2}s", v / 1000.0),
        Some(v) => format!("{v:.0}ms"),
        None => "–".to_string(),
    }
}

pub fn incidents(list: &[Incident], written: &[Announcement]) -> Markup {
    html! {
        @if list.is_empty() {
            p class="muted" { "No incidents in the last 90 days." }
        } @else {
            table {
                tr { th { "Check" } th { "Started" } th { "Lasted" } th { "What happened" } }
                @for incident in list {
                    tr data-incident=(incident.id) {
                        td { a href={"/checks/" (incident.check)} { (incident.check) } br; span class={"badge " (incident.status.as_str())} { (status_word(incident.status)) } }
                        td { (incident.started.format("%Y-%m-%d %H:%M UTC")) }
                        td {
                            (human_duration(incident.duration_s))
                            @if incident.ended.is_none() { " (ongoing)" }
                        }
                        td {
                            (incident.summary)
                            @for note in written.iter().filter(|a| a.incident == Some(incident.id)) {
                                (timeline(note))
                            }
                        }
                    }
                }
            }
        }
    }
}
