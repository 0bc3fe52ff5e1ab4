//! Acknowledging incidents over HTTP: `POST /api/v1/incidents/{id}/ack`
//! (the admin token, as for silences) and the signed link alerts carry,
//! `/ack/{token}`. A GET of the link only shows a confirmation page with a
//! button (mail scanners and chat unfurlers fetch links; a fetch must not
//! acknowledge), and the button's POST acknowledges. A link that is
//! altered, foreign or expired is refused with 403/410 and changes nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use serde_json::json;

use super::shared::ApiState;
use super::{bad_request, require_admin, storage_failure};
use crate::aggregator::Acked;
use crate::alert::ack::LinkRefused;
use crate::status::markdown::escape_into;

/// `POST /api/v1/incidents/{id}/ack`.
pub(super) async fn by_api(
    State(api): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    super::discard_body(body);
    if let Some(refused) = require_admin(&api, &headers) {
        return refused;
    }
    let Ok(incident) = id.parse::<uuid::Uuid>() else {
        return bad_request("the incident id must be a UUID");
    };
    match api.aggregator.acknowledge(incident, "api").await {
        Ok(Acked::Done { check, ack }) => {
            Json(json!({ "incident": incident, "check": check, "ack": ack })).into_response()
        }
        Ok(Acked::NotOpen) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no check has this incident open" })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

/// `GET /ack/{token}`: what the link would acknowledge, and a button.
pub(super) async fn confirm(State(api): State<ApiState>, Path(token): Path<String>) -> Response {
    let verified = match api.aggregator.verify_ack_link(&token) {
        Ok(verified) => verified,
        Err(refused) => return refused_page(&refused),
    };
    let check = api
        .aggregator
        .check_with_incident(verified.incident)
        .unwrap_or_else(|| "(no check has it open any more)".to_string());
    let mut body = String::from("<h1>Acknowledge this incident?</h1>\n<p>Check <b>");
    escape_into(&mut body, &check);
    body.push_str("</b>, incident <code>");
    escape_into(&mut body, &verified.incident.to_string());
    body.push_str(
        "</code>. Acknowledging stops its escalation and reminders.</p>\n<form method=\"post\">\
         <button type=\"submit\">Acknowledge</button></form>\n",
    );
    page(StatusCode::OK, &body)
}

/// `POST /ack/{token}`: acknowledges.
pub(super) async fn acknowledge(
    State(api): State<ApiState>,
    Path(token): Path<String>,
    body: axum::body::Body,
) -> Response {
    super::discard_body(body);
    let verified = match api.aggregator.verify_ack_link(&token) {
        Ok(verified) => verified,
        Err(refused) => return refused_page(&refused),
    };
    match api.aggregator.acknowledge(verified.incident, "link").await {
        Ok(Acked::Done { check, .. }) => {
            let mut body = String::from("<h1>Acknowledged</h1>\n<p>Check <b>");
            escape_into(&mut body, &check);
            body.push_str("</b>: no more escalation or reminders for this incident.</p>\n");
            page(StatusCode::OK, &body)
        }
        Ok(Acked::NotOpen) => page(
            StatusCode::NOT_FOUND,
            "<h1>Nothing to acknowledge</h1>\n<p>This incident is over.</p>\n",
        ),
        Err(error) => storage_failure(error),
    }
}

fn refused_page(refused: &LinkRefused) -> Response {
    let status = match refused {
        LinkRefused::Expired => StatusCode::GONE,
        LinkRefused::Forged => StatusCode::FORBIDDEN,
        LinkRefused::Malformed => StatusCode::NOT_FOUND,
    };
    let mut body = String::from("<h1>Link refused</h1>\n<p>");
    escape_into(&mut body, &refused.to_string());
    body.push_str(".</p>\n");
    page(status, &body)
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"robots\" content=\"noindex\"><title>Lookout</title></head>\n<body>\n{body}</body></html>\n"
    );
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}
