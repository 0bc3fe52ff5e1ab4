//! The status page's own settings and the announcements written in YAML:
//! a checks file's top-level `status_page:` (at most one across files) and
//! `announcements:` (any file). Decoded here, beside their model; the
//! loader checks across files that a group names existing checks.
//!
//! ```yaml
//! status_page:
//!   title: Example status
//!   description: What our customers rely on
//!   logo: https://example.com/logo.svg
//!   footer: { text: Example Inc., url: https://example.com }
//!   access: token            # public (default) | token | basic
//!   token: ${STATUS_TOKEN}   # access: token (16 characters or more)
//!   users:                   # access: basic, bcrypt hashes only
//!     - { name: ops, password_hash: "$2b$12$..." }
//!   metrics_token: ${METRICS_TOKEN}
//!   groups:
//!     - name: Website
//!       description: The shop
//!       checks: [web, cdn]
//!     - name: Payments
//!       labels: { team: payments }
//! announcements:
//!   - id: db-upgrade
//!     title: Database upgrade
//!     severity: maintenance
//!     groups: [Payments]
//!     updates:
//!       - { at: "2026-03-01T10:00:00Z", status: investigating, text: "Planned, **30 min**" }
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::decode::Ctx;
use super::yaml::{Node, Pos};
use crate::limits;

/// Who may read the page, its JSON, its feed and its badges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PageAccess {
    #[default]
    Public,
    /// `Authorization: Bearer TOKEN` or `?key=TOKEN`.
    Token(String),
    /// HTTP basic: user names and their bcrypt hashes.
    Basic(Vec<BasicUser>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicUser {
    pub name: String,
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`), never a password.
    pub password_hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FooterLink {
    pub text: String,
    pub url: String,
}

/// One group of checks on the page, in the order the file gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageGroup {
    pub name: String,
    pub description: Option<String>,
    /// Checks by name, in this order first.
    pub checks: Vec<String>,
    /// And checks carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
}

impl PageGroup {
    pub fn contains(&self, check: &super::Check) -> bool {
        self.checks.contains(&check.name)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| check.labels.get(k) == Some(v)))
    }
}

/// `status_page:` of a checks file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSettings {
    pub title: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<String>,
    pub footer: Option<FooterLink>,
    pub groups: Vec<PageGroup>,
    pub access: PageAccess,
    /// `/metrics` wants `Authorization: Bearer` this when set.
    pub metrics_token: Option<String>,
}

impl PageSettings {
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or("Lookout status")
    }
}

/// How bad an announcement says things are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Maintenance,
    Degraded,
    Outage,
}

impl Severity {
    pub const NAMES: [&'static str; 4] = ["info", "maintenance", "degraded", "outage"];

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "info" => Some(Severity::Info),
            "maintenance" => Some(Severity::Maintenance),
            "degraded" => Some(Severity::Degraded),
            "outage" => Some(Severity::Outage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Maintenance => "maintenance",
            Severity::Degraded => "degraded",
            Severity::Outage => "outage",
        }
    }
}

/// Where an incident stands, as its writers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl UpdateStatus {
    pub const NAMES: [&'static str; 4] = ["investigating", "identified", "monitoring", "resolved"];

    pub fn parse(text: &str) -> Option<UpdateStatus> {
        match text {
            "investigating" => Some(UpdateStatus::Investigating),
            "identified" => Some(UpdateStatus::Identified),
            "monitoring" => Some(UpdateStatus::Monitoring),
            "resolved" => Some(UpdateStatus::Resolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStatus::Investigating => "investigating",
            UpdateStatus::Identified => "identified",
            UpdateStatus::Monitoring => "monitoring",
            UpdateStatus::Resolved => "resolved",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            UpdateStatus::Investigating => "Investigating",
            UpdateStatus::Identified => "Identified",
            UpdateStatus::Monitoring => "Monitoring",
            UpdateStatus::Resolved => "Resolved",
        }
    }
}

/// One entry of an announcement's timeline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnnouncementUpdate {
    pub at: DateTime<Utc>,
    pub status: UpdateStatus,
    /// Plain text or the small Markdown subset of `status::markdown`.
    pub text: String,
}

/// Words from the people who run the service: a notice, a maintenance, or
/// the written side of an incident. From YAML (`source: config`, read
/// only) or the API (`source: api`, stored).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// An automatic incident this gives the written side of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<uuid::Uuid>,
    /// Oldest first.
    pub updates: Vec<AnnouncementUpdate>,
    pub created_at: DateTime<Utc>,
    #[serde(default = "api_source")]
    pub source: String,
}

fn api_source() -> String {
    "api".to_string()
}

impl Announcement {
    /// Open until its latest update says resolved.
    pub fn is_open(&self) -> bool {
        self.updates
            .last()
            .is_none_or(|u| u.status != UpdateStatus::Resolved)
    }

    /// When it last changed: its latest update, else its creation.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updates
            .iter()
            .map(|u| u.at)
            .max()
            .unwrap_or(self.created_at)
            .max(self.created_at)
    }
}

/// What a checks file's page parts hold, with positions for the cross-file
/// pass.
#[derive(Default)]
pub(super) struct PageRefs {
    pub(super) settings: Vec<(PageSettings, Pos)>,
    pub(super) announcements: Vec<(Announcement, Pos)>,
    /// Check names the groups and announcements name.
    pub(super) check_refs: Vec<(String, Pos)>,
    /// Group names announcements name.
    pub(super) group_refs: Vec<(String, Pos)>,
}

pub(super) fn decode_page(ctx: &mut Ctx, node: &Node, refs: &mut PageRefs) {
    let Some(fields) = ctx.fields(
        node,
        "`status_page`",
        &[
            "title",
            "description",
            "logo",
            "footer",
            "groups",
            "access",
            "token",
            "users",
            "metrics_token",
        ],
    ) else {
        return;
    };
    let mut ok = true;
    let text = |ctx: &mut Ctx, key: &str, ok: &mut bool| -> Option<String> {
        let node = fields.get(key)?;
        let value = ctx.string(node, &format!("`{key}`"));
        *ok &= value.is_some();
        value
    };
    let mut settings = PageSettings {
        title: text(ctx, "title", &mut ok),
        description: text(ctx, "description", &mut ok),
        logo_url: text(ctx, "logo", &mut ok),
        metrics_token: text(ctx, "metrics_token", &mut ok),
        ..PageSettings::default()
    };
    if let (Some(url), Some(node)) = (&settings.logo_url, fields.get("logo"))
        && !is_web_url(url)
    {
        ctx.error(node.pos, "`logo` must be an http:// or https:// URL");
        ok = false;
    }
    if let (Some(token), Some(node)) = (&settings.metrics_token, fields.get("metrics_token"))
        && token.len() < limits::PAGE_TOKEN_CHARS_MIN
    {
        let message = format!(
            "`metrics_token` must be at least {} characters",
            limits::PAGE_TOKEN_CHARS_MIN
        );
        ctx.error(node.pos, message);
        ok = false;
    }
    if let Some(node) = fields.get("footer") {
        match decode_footer(ctx, node) {
            Some(footer) => settings.footer = Some(footer),
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("groups") {
        match decode_groups(ctx, node, refs) {
            Some(groups) => settings.groups = groups,
            None => ok = false,
        }
    }
    match decode_access(ctx, &fields) {
        Some(access) => settings.access = access,
        None => ok = false,
    }
    if ok {
        refs.settings.push((settings, node.pos));
    }
}

fn is_web_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn decode_footer(ctx: &mut Ctx, node: &Node) -> Option<FooterLink> {
    let fields = ctx.fields(node, "`footer`", &["text", "url"])?;
    let text = fields.get("text").and_then(|n| ctx.string(n, "`text`"));
    let url = match fields.get("url") {
        Some(n) => {
            let url = ctx.string(n, "`url`")?;
            if !is_web_url(&url) {
                ctx.error(n.pos, "`footer.url` must be an http:// or https:// URL");
                return None;
            }
            url
        }
        None => {
            ctx.error(node.pos, "`footer` needs a `url`");
            return None;
        }
    };
    Some(FooterLink {
        text: text.unwrap_or_else(|| url.clone()),
        url,
    })
}

fn decode_groups(ctx: &mut Ctx, node: &Node, refs: &mut PageRefs) -> Option<Vec<PageGroup>> {
    let items = ctx.list(node, "`groups`")?;
    let mut groups: Vec<PageGroup> = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(fields) = ctx.fields(
            item,
            "a group",
            &["name", "description", "checks", "labels"],
        ) else {
            ok = false;
            continue;
        };
        let Some(name) = fields.get("name").and_then(|n| ctx.string(n, "`name`")) else {
            ctx.error(item.pos, "a group needs a `name`");
            ok = false;
            continue;
        };
        if name.trim().is_empty() || name.len() > limits::PAGE_GROUP_NAME_CHARS_MAX {
            let message = format!(
                "a group's name must be 1 to {} characters",
                limits::PAGE_GROUP_NAME_CHARS_MAX
            );
            ctx.error(item.pos, message);
            ok = false;
            continue;
        }
        if name == OTHER_GROUP || groups.iter().any(|g| g.name == name) {
            ctx.error(item.pos, format!("group `{name}` is already defined (`{OTHER_GROUP}` is kept for the checks in no group)"));
            ok = false;
            continue;
        }
        let description = fields
            .get("description")
            .and_then(|n| ctx.string(n, "`description`"));
        let checks = match fields.get("checks") {
            Some(n) => ctx.string_list(n, "`checks`").unwrap_or_default(),
            None => Vec::new(),
        };
        let labels: BTreeMap<String, String> = match fields.get("labels") {
            Some(n) => ctx
                .string_map(n, "`labels`")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            None => BTreeMap::new(),
        };
        if checks.is_empty() && labels.is_empty() {
            ctx.error(
                item.pos,
                format!("group `{name}` needs `checks` or `labels`"),
            );
            ok = false;
            continue;
        }
        refs.check_refs.extend(checks.iter().cloned());
        groups.push(PageGroup {
            name,
            description,
            checks: checks.into_iter().map(|(c, _)| c).collect(),
            labels,
        });
    }
    if groups.len() > limits::PAGE_GROUPS_MAX {
        let message = format!("at most {} groups", limits::PAGE_GROUPS_MAX);
        ctx.error(node.pos, message);
        ok = false;
    }
    ok.then_some(groups)
}

/// The name of the section that holds the checks in no group.
pub const OTHER_GROUP: &str = "Other";

fn decode_access(ctx: &mut Ctx, fields: &super::decode::Fields<'_>) -> Option<PageAccess> {
    let mode = match fields.get("access") {
        Some(n) => ctx.string(n, "`access`")?,
        None => "public".to_string(),
    };
    let pos = fields.get("access").map(|n| n.pos).unwrap_or(fields.pos);
    match mode.as_str() {
        "public" => Some(PageAccess::Public),
        "token" => {
            let Some(node) = fields.get("token") else {
                ctx.error(
                    pos,
                    "`access: token` needs `token` (from the environment: `token: ${STATUS_TOKEN}`)",
                );
                return None;
            };
            let token = ctx.string(node, "`token`")?;
            if token.len() < limits::PAGE_TOKEN_CHARS_MIN {
                let message = format!(
                    "`token` must be at least {} characters",
                    limits::PAGE_TOKEN_CHARS_MIN
                );
                ctx.error(node.pos, message);
                return None;
            }
            Some(PageAccess::Token(token))
        }
        "basic" => {
            let Some(node) = fields.get("users") else {
                ctx.error(
                    pos,
                    "`access: basic` needs `users` with `name` and `password_hash`",
                );
                return None;
            };
            decode_users(ctx, node).map(PageAccess::Basic)
        }
        other => {
            ctx.error(
                pos,
                format!("`access` must be public, token or basic, found `{other}`"),
            );
            None
        }
    }
}

fn decode_users(ctx: &mut Ctx, node: &Node) -> Option<Vec<BasicUser>> {
    let items = ctx.list(node, "`users`")?;
    let mut users = Vec::new();
    let mut ok = !items.is_empty();
    if items.is_empty() {
        ctx.error(node.pos, "`users` needs at least one user");
    }
    for item in items {
        let Some(fields) = ctx.fields(item, "a user", &["name", "password_hash"]) else {
            ok = false;
            continue;
        };
        let name = fields.get("name").and_then(|n| ctx.string(n, "`name`"));
        let hash = fields
            .get("password_hash")
            .and_then(|n| ctx.string(n, "`password_hash`"));
        match (name, hash) {
            (Some(name), Some(hash)) if !name.is_empty() && !name.contains(':') => {
                if !is_bcrypt_hash(&hash) {
                    let pos = fields
                        .get("password_hash")
                        .map(|n| n.pos)
                        .unwrap_or(item.pos);
                    ctx.error(
                        pos,
                        "`password_hash` must be a bcrypt hash ($2b$...), never a password; make one with `htpasswd -nbB user password`",
                    );
                    ok = false;
                } else {
                    users.push(BasicUser {
                        name,
                        password_hash: hash,
                    });
                }
            }
            _ => {
                ctx.error(
                    item.pos,
                    "a user needs a `name` (without `:`) and a `password_hash`",
                );
                ok = false;
            }
        }
    }
    ok.then_some(users)
}

/// `$2a$`, `$2b$` or `$2y$`, a two-digit cost, and 53 characters of salt
/// and hash: 60 in all.
pub fn is_bcrypt_hash(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() == 60
        && (text.starts_with("$2a$") || text.starts_with("$2b$") || text.starts_with("$2y$"))
        && bytes[4].is_ascii_digit()
        && bytes[5].is_ascii_digit()
        && bytes[6] == b'$'
}

pub(super) fn decode_announcements(ctx: &mut Ctx, node: &Node, refs: &mut PageRefs) {
    let Some(items) = ctx.list(node, "`announcements`") else {
        return;
    };
    for item in items {
        if let Some(announcement) = decode_announcement(ctx, item, refs) {
            refs.announcements.push((announcement, item.pos));
        }
    }
}

fn decode_announcement(ctx: &mut Ctx, item: &Node, refs: &mut PageRefs) -> Option<Announcement> {
    let fields = ctx.fields(
        item,
        "an announcement",
        &["id", "title", "severity", "checks", "groups", "updates"],
    )?;
    let mut ok = true;
    let required = |ctx: &mut Ctx, key: &str| -> Option<(String, Pos)> {
        match fields.get(key) {
            Some(n) => ctx.string(n, &format!("`{key}`")).map(|s| (s, n.pos)),
            None => {
                ctx.error(item.pos, format!("an announcement needs `{key}`"));
                None
            }
        }
    };
    let id = required(ctx, "id");
    let title = required(ctx, "title");
    let severity = required(ctx, "severity").and_then(|(text, pos)| {
        let parsed = Severity::parse(&text);
        if parsed.is_none() {
            let message = format!(
                "`severity` must be one of {}, found `{text}`",
                Severity::NAMES.join(", ")
            );
            ctx.error(pos, message);
        }
        parsed
    });
    if let Some((id, pos)) = &id
        && !super::check::is_valid_name(id)
    {
        ctx.error(
            *pos,
            "an announcement's `id` uses a-z, 0-9, - and _ (it is in URLs)",
        );
        ok = false;
    }
    let checks = match fields.get("checks") {
        Some(n) => ctx.string_list(n, "`checks`").unwrap_or_default(),
        None => Vec::new(),
    };
    let groups = match fields.get("groups") {
        Some(n) => ctx.string_list(n, "`groups`").unwrap_or_default(),
        None => Vec::new(),
    };
    let mut updates = Vec::new();
    if let Some(node) = fields.get("updates") {
        for update in ctx.list(node, "`updates`").unwrap_or_default() {
            match decode_update(ctx, update) {
                Some(u) => updates.push(u),
                None => ok = false,
            }
        }
    }
    updates.sort_by_key(|u: &AnnouncementUpdate| u.at);
    let created_at = updates.first().map(|u| u.at).unwrap_or_default();
    refs.check_refs.extend(checks.iter().cloned());
    refs.group_refs.extend(groups.iter().cloned());
    let ((id, _), (title, _), severity) = (id?, title?, severity?);
    ok.then(|| Announcement {
        id,
        title,
        severity,
        checks: checks.into_iter().map(|(c, _)| c).collect(),
        groups: groups.into_iter().map(|(g, _)| g).collect(),
        incident: None,
        updates,
        created_at,
        source: "config".to_string(),
    })
}

fn decode_update(ctx: &mut Ctx, node: &Node) -> Option<AnnouncementUpdate> {
    let fields = ctx.fields(node, "an update", &["at", "status", "text"])?;
    let (Some(at), Some(status), Some(text)) =
        (fields.get("at"), fields.get("status"), fields.get("text"))
    else {
        ctx.error(node.pos, "an update needs `at`, `status` and `text`");
        return None;
    };
    let at_text = ctx.string(at, "`at`")?;
    let Ok(when) = DateTime::parse_from_rfc3339(&at_text) else {
        ctx.error(
            at.pos,
            format!(
                "`at` must be an RFC 3339 time such as 2026-03-01T10:00:00Z, found `{at_text}`"
            ),
        );
        return None;
    };
    let status_text = ctx.string(status, "`status`")?;
    let Some(parsed) = UpdateStatus::parse(&status_text) else {
        let message = format!(
            "`status` must be one of {}, found `{status_text}`",
            UpdateStatus::NAMES.join(", ")
        );
        ctx.error(status.pos, message);
        return None;
    };
    let text = ctx.string(text, "`text`")?;
    Some(AnnouncementUpdate {
        at: when.with_timezone(&Utc),
        status: parsed,
        text,
    })
}
