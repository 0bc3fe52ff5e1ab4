//! The status page of a large fleet (#19): past `STATUS_PAGE_CARDS_MAX`
//! shown checks the page no longer inlines every check's card (10,000 of
//! them were 27 MiB a browser could barely lay out). Its first view keeps
//! the banner, the announcements and the incidents, and shows the failing
//! checks' cards (down first, then degraded), then each group rolled up
//! (its state, counts, failing members, a link to its checks) or, without
//! groups, the other checks a page at a time. `?group=NAME`, `?status=failing`
//! and `?page=N` select one group's checks, the failing ones, and a page of
//! `STATUS_PAGE_CARDS_MAX` cards; each check's history stays on
//! `/checks/{name}`. A page with fewer checks and no selection is the page
//! as it always was. Pure, like the rest of `status`.

use std::collections::HashMap;

use maud::{Markup, html};

use super::groups::GroupStatus;
use super::page::check_card;
use super::{CheckStatus, StatusReport};
use crate::config::page::Announcement;
use crate::limits::STATUS_PAGE_CARDS_MAX;
use crate::rules::Status;

/// Which checks a view of the page shows (from its query string).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    /// One group's checks.
    pub group: Option<String>,
    /// Only the checks down or degraded.
    pub failing: bool,
    /// 1-based page of cards (0 and 1 are the first).
    pub page: usize,
}

impl Selection {
    /// Whether this is the page's first view (no selection at all).
    pub fn is_first_view(&self) -> bool {
        self.group.is_none() && !self.failing && self.page <= 1
    }

    fn page(&self) -> usize {
        self.page.max(1)
    }

    /// The query string of this selection at another page.
    fn href(&self, page: usize, refresh: Option<u64>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(group) = &self.group {
            query.append_pair("group", group);
        }
        if self.failing {
            query.append_pair("status", "failing");
        }
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        if let Some(seconds) = refresh {
            query.append_pair("refresh", &seconds.to_string());
        }
        format!("/?{}", query.finish())
    }
}

/// Whether the page shows every check's card (the page as it always was).
pub fn whole(report: &StatusReport, selection: &Selection) -> bool {
    selection.is_first_view() && report.checks.len() <= STATUS_PAGE_CARDS_MAX
}

/// Whether a selection names something the report has (`false`: 404).
pub fn exists(report: &StatusReport, selection: &Selection) -> bool {
    selection
        .group
        .as_ref()
        .is_none_or(|name| report.groups.iter().any(|g| &g.name == name))
}

fn failing(check: &CheckStatus) -> bool {
    matches!(check.status, Status::Down | Status::Degraded)
}

/// The failing checks: down first, then degraded, each in report order.
fn failing_checks(report: &StatusReport) -> Vec<&CheckStatus> {
    let mut list: Vec<&CheckStatus> = report.checks.iter().filter(|c| failing(c)).collect();
    list.sort_by_key(|c| c.status != Status::Down);
    list
}

/// The checks part of a large page (or of any selection).
pub fn render(
    report: &StatusReport,
    open: &[&Announcement],
    selection: &Selection,
    refresh: Option<u64>,
) -> Markup {
    let by_name: HashMap<&str, &CheckStatus> =
        report.checks.iter().map(|c| (c.name.as_str(), c)).collect();
    if let Some(group) = selection
        .group
        .as_ref()
        .and_then(|name| report.groups.iter().find(|g| &g.name == name))
    {
        let members: Vec<&CheckStatus> = group
            .checks
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .collect();
        return html! {
            p data-back { a href="/" { "← the whole page" } }
            section class="group" id={"group-" (group.name)} data-group=(group.name) data-group-status=(group.status.as_str()) {
                (group_head(group, open))
                (cards(&members, open, selection, refresh))
            }
        };
    }
    let failing = failing_checks(report);
    if selection.failing {
        return html! {
            p data-back { a href="/" { "← the whole page" } }
            section data-failing {
                h2 { "Failing now (" (failing.len()) ")" }
                @if failing.is_empty() { p class="muted" { "Nothing is down or degraded." } }
                (cards(&failing, open, selection, refresh))
            }
        };
    }
    let first = selection.page() == 1;
    html! {
        @if first {
            section data-failing {
                h2 { "Failing now (" (failing.len()) ")" }
                @if failing.is_empty() { p class="muted" { "Nothing is down or degraded." } }
                @for check in failing.iter().take(STATUS_PAGE_CARDS_MAX) { (check_card(check, open, false)) }
                @if failing.len() > STATUS_PAGE_CARDS_MAX {
                    p data-more-failing {
                        a href=(Selection { failing: true, ..Selection::default() }.href(2, refresh)) {
                            "All " (failing.len()) " failing checks, " (STATUS_PAGE_CARDS_MAX) " a page"
                        }
                    }
                }
            }
        }
        @if report.groups.is_empty() {
            @let rest: Vec<&CheckStatus> = report.checks.iter().filter(|c| !self::failing(c)).collect();
            section data-other-checks {
                h2 { "Other checks (" (rest.len()) ")" }
                (cards(&rest, open, selection, refresh))
            }
        } @else {
            @for group in &report.groups {
                section class="group" id={"group-" (group.name)} data-group=(group.name) data-group-status=(group.status.as_str()) data-collapsed {
                    (group_head(group, open))
                    (group_summary(group, &by_name))
                }
            }
        }
    }
}

/// A group's heading: its name, roll-up badge, description and open
/// announcements (the whole page's group sections use it too).
pub(super) fn group_head(group: &GroupStatus, open: &[&Announcement]) -> Markup {
    html! {
        h2 {
            span { (group.name) }
            span class={"badge " (group.status.as_str())} data-rollup=(group.overall.as_str()) { (group.overall.headline()) }
        }
        @if let Some(description) = &group.description { div class="muted" { (description) } }
        @for note in open.iter().filter(|a| a.groups.contains(&group.name)) {
            div class="muted" data-group-announcement=(note.id) {
                span class="tag" { (note.severity.as_str()) } " " a href={"/#announcement-" (note.id)} { (note.title) }
            }
        }
    }
}

/// Failing members a rolled-up group names.
const FAILING_NAMED: usize = 10;

/// A group rolled up: its counts, its failing members, a link to them all.
fn group_summary(group: &GroupStatus, by_name: &HashMap<&str, &CheckStatus>) -> Markup {
    let c = &group.counts;
    let failing: Vec<&CheckStatus> = group
        .checks
        .iter()
        .filter_map(|n| by_name.get(n.as_str()).copied())
        .filter(|c| failing(c))
        .collect();
    let link = Selection {
        group: Some(group.name.clone()),
        ..Selection::default()
    }
    .href(1, None);
    html! {
        div class="card" data-group-summary {
            div class="muted" data-group-counts {
                (group.checks.len()) " checks: " (c.up) " up · " (c.degraded) " degraded · " (c.down) " down"
                @if c.unknown > 0 { " · " (c.unknown) " not judged yet" }
            }
            @if !failing.is_empty() {
                div class="err" data-group-failing {
                    "Failing: "
                    @for (i, check) in failing.iter().take(FAILING_NAMED).enumerate() {
                        @if i > 0 { ", " }
                        a href={"/checks/" (check.name)} { (check.display_name.as_deref().unwrap_or(&check.name)) }
                    }
                    @if failing.len() > FAILING_NAMED { " and " (failing.len() - FAILING_NAMED) " more" }
                }
            }
            a href=(link) data-group-link { "Show its " (group.checks.len()) " checks" }
        }
    }
}

/// A page of cards and the links to the other pages.
fn cards(
    list: &[&CheckStatus],
    open: &[&Announcement],
    selection: &Selection,
    refresh: Option<u64>,
) -> Markup {
    let pages = list.len().div_ceil(STATUS_PAGE_CARDS_MAX).max(1);
    let page = selection.page().min(pages);
    let shown = list
        .iter()
        .skip((page - 1) * STATUS_PAGE_CARDS_MAX)
        .take(STATUS_PAGE_CARDS_MAX);
    html! {
        @for check in shown { (check_card(check, open, false)) }
        @if pages > 1 { (pager(selection, page, pages, refresh)) }
    }
}

/// Page links: previous, next, and every page while there are few, else
/// the first, the last and those around this one.
fn pager(selection: &Selection, page: usize, pages: usize, refresh: Option<u64>) -> Markup {
    let near = |p: usize| pages <= 20 || p == 1 || p == pages || p.abs_diff(page) <= 3;
    html! {
        nav class="muted" data-pager data-page=(page) data-pages=(pages) {
            "Page " (page) " of " (pages) ": "
            @if page > 1 { a href=(selection.href(page - 1, refresh)) rel="prev" { "← previous" } " · " }
            @for p in (1..=pages).filter(|p| near(*p)) {
                @if p == page { b { (p) } } @else { a href=(selection.href(p, refresh)) { (p) } }
                " "
            }
            @if page < pages { " · " a href=(selection.href(page + 1, refresh)) rel="next" { "next →" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::page::PageSettings;
    use crate::status::{Counts, Overall, Uptime, page};

    fn check(i: usize) -> CheckStatus {
        let status = match i % 50 {
            0 => Status::Down,
            7 => Status::Degraded,
            _ => Status::Up,
        };
        CheckStatus {
            name: format!("c{i:04}"),
            display_name: None,
            kind: "http",
            description: None,
            target: None,
            status,
            since: None,
            uptime: Uptime::default(),
            days: Vec::new(),
            latency: Default::default(),
            regions: Default::default(),
            depends_on: Vec::new(),
            because: None,
            acknowledged_at: None,
        }
    }

    fn report(checks: usize, groups: usize) -> StatusReport {
        let checks: Vec<CheckStatus> = (0..checks).map(check).collect();
        let groups = (0..groups)
            .map(|g| GroupStatus {
                name: format!("G{g}"),
                description: None,
                status: Status::Up,
                overall: Overall::Operational,
                counts: Counts::default(),
                checks: checks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % groups == g)
                    .map(|(_, c)| c.name.clone())
                    .collect(),
            })
            .collect();
        StatusReport {
            overall: Overall::PartialOutage,
            generated_at: chrono::Utc::now(),
            counts: Counts::default(),
            checks,
            incidents: Vec::new(),
            groups,
        }
    }

    fn html(report: &StatusReport, selection: Selection) -> String {
        let settings = PageSettings::default();
        let view = page::PageView {
            settings: &settings,
            announcements: &[],
            refresh: None,
            selection,
        };
        page::render_page(report, &view, None).into_string()
    }

    fn cards(html: &str) -> Vec<&str> {
        html.match_indices("data-check=\"")
            .map(|(at, _)| {
                let rest = &html[at + 12..];
                &rest[..rest.find('"').unwrap_or(0)]
            })
            .collect()
    }

    #[test]
    fn a_small_page_is_the_whole_page_as_before() {
        let small = report(STATUS_PAGE_CARDS_MAX, 0);
        assert!(whole(&small, &Selection::default()));
        let page = html(&small, Selection::default());
        assert_eq!(cards(&page).len(), STATUS_PAGE_CARDS_MAX);
        assert!(!page.contains("data-failing") && !page.contains("data-pager"));
    }

    #[test]
    fn a_large_page_shows_the_failing_first_and_the_rest_a_page_at_a_time() {
        let large = report(250, 0);
        let first = html(&large, Selection::default());
        assert!(first.contains("data-overall=\"partial_outage\""));
        let shown = cards(&first);
        // 5 down and 5 degraded, down first, then the first 100 others.
        assert_eq!(shown.len(), 10 + STATUS_PAGE_CARDS_MAX, "{shown:?}");
        assert_eq!(&shown[..5], ["c0000", "c0050", "c0100", "c0150", "c0200"]);
        assert_eq!(shown[5], "c0007");
        let unique: std::collections::HashSet<&&str> = shown.iter().collect();
        assert_eq!(unique.len(), shown.len(), "no card twice");
        assert!(first.contains("data-pager") && first.contains("data-pages=\"3\""));
        assert!(first.contains("href=\"/?page=2\""), "{first}");
        let last = html(
            &large,
            Selection {
                page: 3,
                ..Selection::default()
            },
        );
        assert_eq!(cards(&last).len(), 240 - 2 * STATUS_PAGE_CARDS_MAX);
        assert!(!last.contains("data-failing"), "failing on the first view");
        // Every check is on exactly one of the views.
        let mut all: Vec<String> = (1..=3)
            .map(|p| {
                html(
                    &large,
                    Selection {
                        page: p,
                        ..Selection::default()
                    },
                )
            })
            .flat_map(|h| cards(&h).into_iter().map(String::from).collect::<Vec<_>>())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 250);
    }

    #[test]
    fn a_large_grouped_page_rolls_groups_up_and_shows_one_on_demand() {
        let large = report(1000, 10);
        let first = html(&large, Selection::default());
        assert_eq!(cards(&first).len(), 40, "only the failing checks' cards");
        assert_eq!(first.matches("data-group-summary").count(), 10);
        assert!(first.contains("href=\"/?group=G3\""), "{first}");
        assert!(first.contains("data-group-failing"));
        assert!(first.len() < 200_000, "{} bytes", first.len());
        let group = html(
            &large,
            Selection {
                group: Some("G3".into()),
                ..Selection::default()
            },
        );
        let shown = cards(&group);
        assert_eq!(shown.len(), STATUS_PAGE_CARDS_MAX);
        assert!(
            shown
                .iter()
                .all(|n| n[1..].parse::<usize>().unwrap() % 10 == 3)
        );
        assert!(!exists(
            &large,
            &Selection {
                group: Some("nope".into()),
                ..Selection::default()
            }
        ));
    }

    #[test]
    fn many_failing_checks_are_paged_too() {
        let mut large = report(300, 0);
        for c in &mut large.checks {
            c.status = Status::Down;
        }
        let first = html(&large, Selection::default());
        assert_eq!(cards(&first).len(), STATUS_PAGE_CARDS_MAX);
        assert!(
            first.contains("data-more-failing") && first.contains("/?status=failing&amp;page=2")
        );
        let second = html(
            &large,
            Selection {
                failing: true,
                page: 2,
                ..Selection::default()
            },
        );
        assert_eq!(cards(&second).len(), STATUS_PAGE_CARDS_MAX);
        assert!(second.contains("c0100"));
    }
}
