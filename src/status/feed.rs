//! `/feed.atom`: the page's automatic incidents and its announcements as an
//! Atom feed (RFC 4287, written by `atom_syndication`), newest change
//! first, so subscribers follow the page with any feed reader or a
//! feed-to-mail service. `?group=NAME` narrows it to one group's checks and
//! the announcements about that group or its checks. Pure: the report and
//! the announcements are passed in.

use atom_syndication::{Content, Entry, Feed, Link, Person, Text};
use chrono::{DateTime, Utc};

use super::{StatusReport, markdown};
use crate::config::page::Announcement;
use crate::limits;
use crate::rules::Status;

/// What one feed covers.
pub struct FeedScope<'a> {
    /// Absolute base of links (`http://host`), without a trailing slash.
    pub base: &'a str,
    pub title: &'a str,
    /// `Some`: only this group's checks (names) and announcements.
    pub group: Option<(&'a str, &'a [String])>,
}

pub fn render(
    report: &StatusReport,
    announcements: &[Announcement],
    scope: &FeedScope<'_>,
) -> String {
    let in_scope = |check: &str| {
        scope
            .group
            .is_none_or(|(_, members)| members.iter().any(|m| m == check))
    };
    let about_scope = |a: &Announcement| match scope.group {
        None => true,
        Some((group, members)) => {
            a.groups.iter().any(|g| g == group) || a.checks.iter().any(|c| members.contains(c))
        }
    };
    let display = |check: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == check)
            .and_then(|c| c.display_name.clone())
            .unwrap_or_else(|| check.to_string())
    };
    let mut entries: Vec<(DateTime<Utc>, Entry)> = Vec::new();
    for announcement in announcements.iter().filter(|a| about_scope(a)) {
        let mut html = String::new();
        for update in &announcement.updates {
            html.push_str("<p><strong>");
            html.push_str(update.status.label());
            html.push_str("</strong> (");
            html.push_str(&update.at.format("%Y-%m-%d %H:%M UTC").to_string());
            html.push_str(")</p>");
            html.push_str(&markdown::to_html(&update.text));
        }
        let state = if announcement.is_open() {
            ""
        } else {
            " (resolved)"
        };
        let updated = announcement.updated_at();
        entries.push((
            updated,
            entry(
                format!("urn:lookout:announcement:{}", announcement.id),
                format!(
                    "[{}] {}{state}",
                    announcement.severity.as_str(),
                    announcement.title
                ),
                updated,
                Some(announcement.created_at),
                format!("{}/#announcement-{}", scope.base, announcement.id),
                html,
            ),
        ));
    }
    for incident in report.incidents.iter().filter(|i| in_scope(&i.check)) {
        let name = display(&incident.check);
        let what = match incident.status {
            Status::Down => "down",
            Status::Degraded => "degraded",
            _ => "changed",
        };
        let (title, updated) = match incident.ended {
            Some(ended) => (format!("{name} was {what} (resolved)"), ended),
            None => (format!("{name} is {what}"), incident.started),
        };
        let mut html = String::from("<p>");
        markdown::escape_into(&mut html, &incident.summary);
        html.push_str("</p><p>Started ");
        html.push_str(&incident.started.format("%Y-%m-%d %H:%M UTC").to_string());
        html.push_str(", lasted ");
        html.push_str(&super::page::human_duration(incident.duration_s));
        html.push_str(if incident.ended.is_none() {
            " so far"
        } else {
            ""
        });
        html.push_str(".</p>");
        for written in announcements
            .iter()
            .filter(|a| a.incident == Some(incident.id))
        {
            for update in &written.updates {
                html.push_str("<p><strong>");
                html.push_str(update.status.label());
                html.push_str("</strong></p>");
                html.push_str(&markdown::to_html(&update.text));
            }
        }
        entries.push((
            updated,
            entry(
                format!("urn:uuid:{}", incident.id),
                title,
                updated,
                Some(incident.started),
                format!("{}/checks/{}", scope.base, incident.check),
                html,
            ),
        ));
    }
    entries.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    entries.truncate(limits::FEED_ENTRIES_MAX);
    let updated = entries
        .first()
        .map(|(at, _)| *at)
        .unwrap_or(report.generated_at);
    let (id, title, page) = match scope.group {
        Some((group, _)) => (
            format!("urn:lookout:feed:group:{}", urlencode(group)),
            format!("{} · {group}", scope.title),
            format!("{}/#group-{}", scope.base, urlencode(group)),
        ),
        None => (
            "urn:lookout:feed".to_string(),
            scope.title.to_string(),
            format!("{}/", scope.base),
        ),
    };
    let feed = Feed {
        title: Text::plain(title),
        id,
        updated: updated.fixed_offset(),
        authors: vec![Person {
            name: scope.title.to_string(),
            ..Person::default()
        }],
        links: vec![
            link(page, "alternate", Some("text/html")),
            link(
                format!(
                    "{}/feed.atom{}",
                    scope.base,
                    scope
                        .group
                        .map(|(g, _)| format!("?group={}", urlencode(g)))
                        .unwrap_or_default()
                ),
                "self",
                Some("application/atom+xml"),
            ),
        ],
        entries: entries.into_iter().map(|(_, e)| e).collect(),
        ..Feed::default()
    };
    feed.to_string()
}

fn entry(
    id: String,
    title: String,
    updated: DateTime<Utc>,
    published: Option<DateTime<Utc>>,
    href: String,
    html: String,
) -> Entry {
    Entry {
        title: Text::plain(title),
        id,
        updated: updated.fixed_offset(),
        published: published.map(|p| p.fixed_offset()),
        links: vec![link(href, "alternate", Some("text/html"))],
        content: Some(Content {
            value: Some(html),
            content_type: Some("html".to_string()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}

fn link(href: String, rel: &str, mime: Option<&str>) -> Link {
    Link {
        href,
        rel: rel.to_string(),
        mime_type: mime.map(str::to_string),
        ..Link::default()
    }
}

/// A group name in a URL's query or fragment.
pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
