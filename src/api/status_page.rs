//! The status page's routes and who may read them: `/` and
//! `/checks/{name}` (HTML), `/api/v1/status[/{name}]` (JSON), screenshots,
//! `/feed.atom[?group=NAME]`, the badges under `/badge/`, and reading
//! announcements. All of them sit behind `status_page.access` (`public`,
//! `token`: a bearer token or `?key=`, `basic`: bcrypt-hashed users);
//! `/health`, `/metrics` (its own token) and the probe routes do not.
//!
//! A successful basic check is remembered for a few minutes (by a hash of
//! the header and the stored hash), because bcrypt is slow on purpose and a
//! page of badges would otherwise pay it per image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::rendered::{Kind, RenderCache};
use super::{ApiState, PageQuery, not_found, storage_failure};
use crate::aggregator::Aggregator;
use crate::config::page::{Announcement, PageAccess};
use crate::limits;
use crate::status::overview::Selection;
use crate::status::{StatusReport, badge, check_page, feed};

/// The routes that follow `status_page.access`.
pub(super) fn routes(state: ApiState) -> Router<ApiState> {
    let cache = Arc::new(BasicCache::default());
    Router::new()
        .route("/", get(page))
        .route("/checks/{name}", get(history_page))
        .route("/api/v1/status", get(super::status_json))
        .route("/api/v1/status/{name}", get(super::check_status_json))
        .route(
            "/api/v1/results/{id}/screenshot",
            get(super::result_screenshot),
        )
        .route("/feed.atom", get(atom))
        .route("/badge/{*path}", get(badge_svg))
        .route(
            "/api/v1/announcements",
            get(super::announcements::list).post(super::announcements::create),
        )
        .route(
            "/api/v1/announcements/{id}",
            get(super::announcements::one)
                .patch(super::announcements::change)
                .delete(super::announcements::remove),
        )
        .route_layer(axum::middleware::from_fn_with_state((state, cache), guard))
}

/// Verified basic credentials: sha256(header, hash) -> when verified.
#[derive(Default)]
struct BasicCache(Mutex<HashMap<[u8; 32], Instant>>);

impl BasicCache {
    fn key(header: &str, hash: &str) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(header.as_bytes());
        context.update(b"\0");
        context.update(hash.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(context.finish().as_ref());
        key
    }

    fn fresh(&self, key: &[u8; 32]) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .is_some_and(|at| at.elapsed() < limits::BASIC_AUTH_CACHE_FOR)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= limits::BASIC_AUTH_CACHE_ENTRIES_MAX {
            map.retain(|_, at| at.elapsed() < limits::BASIC_AUTH_CACHE_FOR);
            if map.len() >= limits::BASIC_AUTH_CACHE_ENTRIES_MAX {
                map.clear();
            }
        }
        map.insert(key, Instant::now());
    }
}

/// Lets a request through when `status_page.access` allows it; else 401.
async fn guard(
    State((api, cache)): State<(ApiState, Arc<BasicCache>)>,
    request: Request,
    next: Next,
) -> Response {
    let config = api.aggregator.config();
    // Changing announcements needs the admin token (its own check), which
    // a private page's credentials do not replace.
    let admin_write = request.method() != axum::http::Method::GET
        && request.method() != axum::http::Method::HEAD
        && request.uri().path().starts_with("/api/v1/announcements");
    let allowed = admin_write
        || match &config.page.access {
            PageAccess::Public => true,
            PageAccess::Token(token) => token_presented(request.headers(), request.uri(), token),
            PageAccess::Basic(users) => basic_presented(request.headers(), users, &cache).await,
        };
    if allowed {
        return next.run(request).await;
    }
    let challenge = match &config.page.access {
        PageAccess::Basic(_) => "Basic realm=\"status\", charset=\"UTF-8\"",
        _ => "Bearer realm=\"status\"",
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(json!({ "error": "this status page is private: it needs credentials" })),
    )
        .into_response()
}

fn token_presented(headers: &HeaderMap, uri: &axum::http::Uri, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= limits::PAGE_CREDENTIAL_BYTES_MAX)
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = uri
        .query()
        .filter(|q| q.len() <= limits::PAGE_CREDENTIAL_BYTES_MAX)
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "key")
                .map(|(_, v)| v.into_owned())
        });
    [bearer.map(str::to_string), key]
        .into_iter()
        .flatten()
        .any(|presented| bool::from(presented.as_bytes().ct_eq(token.as_bytes())))
}

async fn basic_presented(
    headers: &HeaderMap,
    users: &[crate::config::page::BasicUser],
    cache: &BasicCache,
) -> bool {
    use base64::Engine;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= limits::PAGE_CREDENTIAL_BYTES_MAX)
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((name, password)) = text.split_once(':') else {
        return false;
    };
    let Some(user) = users.iter().find(|u| u.name == name) else {
        return false;
    };
    let key = BasicCache::key(value, &user.password_hash);
    if cache.fresh(&key) {
        return true;
    }
    let (password, hash) = (password.to_string(), user.password_hash.clone());
    // bcrypt takes tens of milliseconds by design: off the async threads.
    let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    if verified {
        cache.remember(key);
    }
    verified
}

/// Every announcement: the config's and the stored ones, newest first.
pub(super) async fn announcements(
    aggregator: &Aggregator,
) -> Result<Vec<Announcement>, crate::storage::StorageError> {
    let mut all = aggregator.config().announcements.clone();
    all.extend(
        aggregator
            .storage_announcements()
            .list_announcements(limits::ANNOUNCEMENTS_LISTED_MAX)
            .await?,
    );
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    all.truncate(limits::ANNOUNCEMENTS_LISTED_MAX);
    Ok(all)
}

/// `GET /`: the status page (`?group=`, `?status=failing`, `?page=` select
/// its checks past `STATUS_PAGE_CARDS_MAX`), rendered and gzipped once per
/// report and query (`rendered.rs`).
async fn page(
    State(aggregator): State<Arc<Aggregator>>,
    State(cache): State<Arc<RenderCache>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let (report, notes) = match report_and_notes(&aggregator).await {
        Ok(both) => both,
        Err(error) => return storage_failure(error),
    };
    let config = aggregator.config();
    let refresh = query.refresh();
    let selection = Selection {
        group: query.group.clone(),
        failing: query.status.as_deref() == Some("failing"),
        page: query.page.unwrap_or(1),
    };
    if !crate::status::overview::exists(&report, &selection) {
        return not_found_group(selection.group.as_deref().unwrap_or_default());
    }
    let key = format!(
        "{}|{}|{}|{}",
        refresh.unwrap_or(0),
        selection.failing,
        selection.page,
        selection.group.as_deref().unwrap_or_default()
    );
    let stamp = super::rendered::fingerprint(&notes);
    let (written, settings) = (report.clone(), config.clone());
    let body = cache
        .get_or_render(
            Kind::Html,
            &key,
            (&report, &config, stamp),
            move |out: &mut dyn std::io::Write| {
                let view = crate::status::page::PageView {
                    settings: &settings.page,
                    announcements: &notes,
                    refresh,
                    selection,
                };
                let html = crate::status::page::render_page(&written, &view, None).into_string();
                out.write_all(html.as_bytes()).map_err(|e| e.to_string())
            },
        )
        .await;
    match body {
        Ok(body) => body.respond(&headers, !matches!(config.page.access, PageAccess::Public)),
        Err(error) => {
            tracing::error!(%error, "cannot render the status page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn report_and_notes(
    aggregator: &Aggregator,
) -> Result<(Arc<StatusReport>, Vec<Announcement>), crate::storage::StorageError> {
    Ok((
        aggregator.status_report().await?,
        announcements(aggregator).await?,
    ))
}

/// `GET /checks/{name}`: one check's history (alerts link here).
async fn history_page(
    State(aggregator): State<Arc<Aggregator>>,
    Path(name): Path<String>,
) -> Response {
    let (report, notes) = match report_and_notes(&aggregator).await {
        Ok(both) => both,
        Err(error) => return storage_failure(error),
    };
    let Some(check) = report.checks.iter().find(|c| c.name == name) else {
        return not_found(&name);
    };
    match super::history::gather(&aggregator, check.clone()).await {
        Ok(history) => {
            let config = aggregator.config();
            axum::response::Html(check_page::render(&history, &config.page, &notes).into_string())
                .into_response()
        }
        Err(error) => storage_failure(error),
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    group: Option<String>,
}

/// `GET /feed.atom[?group=NAME]`.
async fn atom(
    State(aggregator): State<Arc<Aggregator>>,
    Query(query): Query<FeedQuery>,
) -> Response {
    let (report, notes) = match report_and_notes(&aggregator).await {
        Ok(both) => both,
        Err(error) => return storage_failure(error),
    };
    let config = aggregator.config();
    let group = match &query.group {
        Some(name) => match report.groups.iter().find(|g| g.name == *name) {
            Some(group) => Some((group.name.as_str(), group.checks.as_slice())),
            None => return not_found_group(name),
        },
        None => None,
    };
    let scope = feed::FeedScope {
        base: "",
        title: config.page.title(),
        group,
    };
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        feed::render(&report, &notes, &scope),
    )
        .into_response()
}

fn not_found_group(name: &str) -> Response {
    let body = json!({ "error": format!("no group named {name:?}") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// What a badge shows.
enum BadgeKind {
    Status,
    Uptime(Window),
    Latency,
}

#[derive(Clone, Copy)]
enum Window {
    Day,
    Week,
    Month,
}

/// `check/status.svg`, `check/uptime/24h.svg`, `check/latency.svg`, and
/// the same after `group/NAME/`. `None`: no such badge.
fn parse_badge_path(path: &str) -> Option<(bool, String, BadgeKind)> {
    let parts: Vec<&str> = path.split('/').collect();
    let kind = |rest: &[&str]| -> Option<BadgeKind> {
        match rest {
            ["status.svg"] => Some(BadgeKind::Status),
            ["latency.svg"] => Some(BadgeKind::Latency),
            ["uptime", window] => match *window {
                "24h.svg" => Some(BadgeKind::Uptime(Window::Day)),
                "7d.svg" => Some(BadgeKind::Uptime(Window::Week)),
                "30d.svg" => Some(BadgeKind::Uptime(Window::Month)),
                _ => None,
            },
            _ => None,
        }
    };
    match parts.as_slice() {
        ["group", group, rest @ ..] if kind(rest).is_some() => {
            Some((true, (*group).to_string(), kind(rest)?))
        }
        [check, rest @ ..] => Some((false, (*check).to_string(), kind(rest)?)),
        _ => None,
    }
}

/// `GET /badge/...`: a shields-style SVG; 404 for hidden or unknown checks.
async fn badge_svg(
    State(aggregator): State<Arc<Aggregator>>,
    Path(path): Path<String>,
) -> Response {
    let Some((is_group, name, kind)) = parse_badge_path(&path) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such badge" })),
        )
            .into_response();
    };
    let report = match aggregator.status_report().await {
        Ok(report) => report,
        Err(error) => return storage_failure(error),
    };
    let svg = if is_group {
        let Some(group) = report.groups.iter().find(|g| g.name == name) else {
            return not_found_group(&name);
        };
        let members: Vec<&crate::status::CheckStatus> = report
            .checks
            .iter()
            .filter(|c| group.checks.contains(&c.name))
            .collect();
        match kind {
            BadgeKind::Status => {
                let (message, colour) = badge::status_message(group.status);
                badge::render(&group.name, message, colour)
            }
            BadgeKind::Uptime(window) => {
                // The group's uptime: the mean of its checks' (each judged).
                let values: Vec<f64> = members.iter().filter_map(|c| pick(c, window)).collect();
                let mean =
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                let (message, colour) = badge::uptime_message(mean);
                badge::render(
                    &format!("uptime {}", window_label(window)),
                    &message,
                    colour,
                )
            }
            BadgeKind::Latency => {
                let worst = members
                    .iter()
                    .filter_map(|c| p95(c))
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
                let (message, colour) = badge::latency_message(worst);
                badge::render("p95", &message, colour)
            }
        }
    } else {
        // Hidden checks are not in the report: 404, like their pages.
        let Some(check) = report.checks.iter().find(|c| c.name == name) else {
            return not_found(&name);
        };
        let label = check
            .display_name
            .clone()
            .unwrap_or_else(|| check.name.clone());
        match kind {
            BadgeKind::Status => {
                let (message, colour) = badge::status_message(check.status);
                badge::render(&label, message, colour)
            }
            BadgeKind::Uptime(window) => {
                let (message, colour) = badge::uptime_message(pick(check, window));
                badge::render(
                    &format!("uptime {}", window_label(window)),
                    &message,
                    colour,
                )
            }
            BadgeKind::Latency => {
                let (message, colour) = badge::latency_message(p95(check));
                badge::render("p95", &message, colour)
            }
        }
    };
    let cache = format!("max-age={}", limits::BADGE_MAX_AGE_S);
    let private = !matches!(aggregator.config().page.access, PageAccess::Public);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&if private {
                    format!("private, {cache}")
                } else {
                    format!("public, {cache}")
                })
                .unwrap_or(HeaderValue::from_static("no-cache")),
            ),
        ],
        svg,
    )
        .into_response()
}

fn pick(check: &crate::status::CheckStatus, window: Window) -> Option<f64> {
    match window {
        Window::Day => check.uptime.day,
        Window::Week => check.uptime.week,
        Window::Month => check.uptime.month,
    }
}

fn window_label(window: Window) -> &'static str {
    match window {
        Window::Day => "24h",
        Window::Week => "7d",
        Window::Month => "30d",
    }
}

/// The worst p95 over the last 24 h across the check's regions.
fn p95(check: &crate::status::CheckStatus) -> Option<f64> {
    check
        .latency
        .values()
        .filter_map(|l| l.p95_ms)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

/// `/metrics` when `status_page.metrics_token` is set: `None` to go on.
pub(super) fn metrics_refused(aggregator: &Aggregator, headers: &HeaderMap) -> Option<Response> {
    use subtle::ConstantTimeEq;
    let config = aggregator.config();
    let expected = config.page.metrics_token.as_deref()?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "this needs the metrics token (Authorization: Bearer ...)\n",
            )
                .into_response(),
        )
    }
}
