//! `/api/v1/announcements`: people's words on the status page. Reading
//! follows the page's access; creating (`POST`), adding an update or
//! changing fields (`PATCH /{id}`) and deleting (`DELETE /{id}`) need the
//! admin token, checked before the body is read. Bodies are bounded in
//! bytes, text lengths and counts (`limits.rs`); the checks and groups an
//! announcement names must exist. The ones written in YAML are read only.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiState, bad_request, discard_body, read_body, require_admin, storage_failure};
use crate::config::Config;
use crate::config::page::{Announcement, AnnouncementUpdate, Severity, UpdateStatus};
use crate::limits;

/// `POST` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAnnouncement {
    id: Option<String>,
    title: String,
    severity: Severity,
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    incident: Option<uuid::Uuid>,
    /// The first update, if it has one already.
    update: Option<NewUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUpdate {
    status: UpdateStatus,
    text: String,
}

/// `PATCH` body: fields to replace, and/or an update to append.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnnouncementPatch {
    title: Option<String>,
    severity: Option<Severity>,
    checks: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    update: Option<NewUpdate>,
}

/// Why a body is refused, said to its sender.
fn invalid(announcement: &Announcement, config: &Config) -> Option<String> {
    let title_chars = announcement.title.chars().count();
    if announcement.title.trim().is_empty() || title_chars > limits::ANNOUNCEMENT_TITLE_CHARS_MAX {
        return Some(format!(
            "`title` must be 1 to {} characters",
            limits::ANNOUNCEMENT_TITLE_CHARS_MAX
        ));
    }
    if announcement.checks.len() + announcement.groups.len() > limits::ANNOUNCEMENT_TARGETS_MAX {
        return Some(format!(
            "at most {} checks and groups",
            limits::ANNOUNCEMENT_TARGETS_MAX
        ));
    }
    if let Some(unknown) = announcement
        .checks
        .iter()
        .find(|c| config.check(c).is_none_or(|c| c.status_page.hidden))
    {
        return Some(format!("no check named {unknown:?} on the status page"));
    }
    if let Some(unknown) = announcement
        .groups
        .iter()
        .find(|g| !config.page.groups.iter().any(|p| p.name == **g))
    {
        return Some(format!("no group named {unknown:?}"));
    }
    if announcement.updates.len() > limits::ANNOUNCEMENT_UPDATES_MAX {
        return Some(format!(
            "at most {} updates; start a new announcement",
            limits::ANNOUNCEMENT_UPDATES_MAX
        ));
    }
    if announcement
        .updates
        .iter()
        .any(|u| u.text.chars().count() > limits::ANNOUNCEMENT_TEXT_CHARS_MAX)
    {
        return Some(format!(
            "an update's `text` is at most {} characters",
            limits::ANNOUNCEMENT_TEXT_CHARS_MAX
        ));
    }
    None
}

fn conflict(message: &str) -> Response {
    (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response()
}

fn no_such(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no announcement {id:?}") })),
    )
        .into_response()
}

/// `GET /api/v1/announcements`: every one, newest first.
pub(super) async fn list(State(api): State<ApiState>) -> Response {
    match super::status_page::announcements(&api.aggregator).await {
        Ok(all) => Json(json!({ "announcements": all })).into_response(),
        Err(error) => storage_failure(error),
    }
}

/// `GET /api/v1/announcements/{id}`.
pub(super) async fn one(State(api): State<ApiState>, Path(id): Path<String>) -> Response {
    if let Some(found) = api
        .aggregator
        .config()
        .announcements
        .iter()
        .find(|a| a.id == id)
    {
        return Json(json!({ "announcement": found })).into_response();
    }
    match api
        .aggregator
        .storage_announcements()
        .announcement(id.clone())
        .await
    {
        Ok(Some(found)) => Json(json!({ "announcement": found })).into_response(),
        Ok(None) => no_such(&id),
        Err(error) => storage_failure(error),
    }
}

/// Reads an admin request's JSON body, bounded.
async fn admin_body<T: serde::de::DeserializeOwned>(
    api: &ApiState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, Response> {
    if let Some(refused) = require_admin(api, headers) {
        discard_body(body);
        return Err(refused);
    }
    let bytes = read_body(headers, body, limits::ANNOUNCEMENT_BODY_BYTES_MAX)
        .await
        .map_err(IntoResponse::into_response)?;
    serde_json::from_slice(&bytes)
        .map_err(|error| bad_request(&format!("not an announcement: {error}")))
}

/// `POST /api/v1/announcements`.
pub(super) async fn create(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let new: NewAnnouncement = match admin_body(&api, &headers, body).await {
        Ok(new) => new,
        Err(refused) => return refused,
    };
    let now = api.aggregator.clock().now();
    let id = new.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad_request("`id` uses a-z, A-Z, 0-9, - and _ (at most 64): it is in URLs");
    }
    let config = api.aggregator.config();
    let store = api.aggregator.storage_announcements();
    if config.announcements.iter().any(|a| a.id == id) {
        return conflict("an announcement in the config has this id");
    }
    match store.announcement(id.clone()).await {
        Ok(Some(_)) => return conflict("an announcement with this id exists; PATCH it"),
        Ok(None) => {}
        Err(error) => return storage_failure(error),
    }
    match store.announcement_count().await {
        Ok(count) if count >= limits::ANNOUNCEMENTS_STORED_MAX => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": format!("{count} announcements are stored; delete old ones first") })),
            )
                .into_response();
        }
        Ok(_) => {}
        Err(error) => return storage_failure(error),
    }
    let announcement = Announcement {
        id,
        title: new.title,
        severity: new.severity,
        checks: new.checks,
        groups: new.groups,
        incident: new.incident,
        updates: new
            .update
            .into_iter()
            .map(|u| AnnouncementUpdate {
                at: now,
                status: u.status,
                text: u.text,
            })
            .collect(),
        created_at: now,
        source: "api".to_string(),
    };
    if let Some(message) = invalid(&announcement, &config) {
        return bad_request(&message);
    }
    match store.put_announcement(announcement.clone()).await {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({ "announcement": announcement })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

/// `PATCH /api/v1/announcements/{id}`: replaces the given fields and
/// appends `update` (dated now) to the timeline.
pub(super) async fn change(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    let patch: AnnouncementPatch = match admin_body(&api, &headers, body).await {
        Ok(patch) => patch,
        Err(refused) => return refused,
    };
    let config = api.aggregator.config();
    if config.announcements.iter().any(|a| a.id == id) {
        return conflict("this announcement is written in the config; change it there");
    }
    let store = api.aggregator.storage_announcements();
    let mut announcement = match store.announcement(id.clone()).await {
        Ok(Some(found)) => found,
        Ok(None) => return no_such(&id),
        Err(error) => return storage_failure(error),
    };
    if let Some(title) = patch.title {
        announcement.title = title;
    }
    if let Some(severity) = patch.severity {
        announcement.severity = severity;
    }
    if let Some(checks) = patch.checks {
        announcement.checks = checks;
    }
    if let Some(groups) = patch.groups {
        announcement.groups = groups;
    }
    if let Some(update) = patch.update {
        // Never before the previous one, whatever the clock did.
        let at = announcement
            .updates
            .last()
            .map_or(api.aggregator.clock().now(), |last| {
                last.at.max(api.aggregator.clock().now())
            });
        announcement.updates.push(AnnouncementUpdate {
            at,
            status: update.status,
            text: update.text,
        });
    }
    if let Some(message) = invalid(&announcement, &config) {
        return bad_request(&message);
    }
    match store.put_announcement(announcement.clone()).await {
        Ok(()) => Json(json!({ "announcement": announcement })).into_response(),
        Err(error) => storage_failure(error),
    }
}

/// `DELETE /api/v1/announcements/{id}`.
pub(super) async fn remove(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = require_admin(&api, &headers) {
        return refused;
    }
    if api
        .aggregator
        .config()
        .announcements
        .iter()
        .any(|a| a.id == id)
    {
        return conflict("this announcement is written in the config; remove it there");
    }
    match api
        .aggregator
        .storage_announcements()
        .delete_announcement(id.clone())
        .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => no_such(&id),
        Err(error) => storage_failure(error),
    }
}
