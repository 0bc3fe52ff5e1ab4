//! `format: template` webhooks rendered: the channel's url, method,
//! headers and body templates (`config::WebhookTemplate`) over an alert's
//! fields. Pure: the same events render the same request, so a retry sends
//! what the first attempt sent.
//!
//! A template sees the alert event's JSON fields (`event`, `check`,
//! `status`, `previous_status`, `since`, `incident`, `summary`, `regions`,
//! `url`, `duration_s`, `target`, `labels`, `region`), plus `headline`
//! (`api is DOWN`), `description` (one line per region) and `alerts` (every
//! event of the message; one unless grouped). A grouped message has
//! `event: group` and `count`, and the first alert's other fields.

use serde_json::{Map, Value};

use super::AlertEvent;
use crate::config::WebhookTemplate;
use crate::limits;

/// A request, rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// The request for `events`, or `None` when the templates have no body for
/// this kind of event (the channel does not want it). An error is a
/// template that fails on these values, or a URL that is not http(s).
pub fn render(
    template: &WebhookTemplate,
    events: &[AlertEvent],
) -> Result<Option<Request>, String> {
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let kind = if events.len() > 1 {
        "group"
    } else {
        first.event.as_str()
    };
    let body_source = if template.bodies.is_empty() {
        None
    } else {
        match template
            .bodies
            .get(kind)
            .or_else(|| template.bodies.get("default"))
        {
            Some(body) => Some(body.as_str()),
            None => return Ok(None),
        }
    };
    let context = context(events, kind);
    let env = crate::config::template_engine();
    let one = |what: &str, source: &str| -> Result<String, String> {
        let out = env
            .render_str(source, &context)
            .map_err(|e| format!("template {what} failed: {}", error_text(&e)))?;
        if out.len() > limits::TEMPLATE_OUTPUT_BYTES_MAX {
            return Err(format!(
                "template {what} rendered more than {} bytes",
                limits::TEMPLATE_OUTPUT_BYTES_MAX
            ));
        }
        Ok(out)
    };
    let url_text = one("url", &template.url)?;
    let url = reqwest::Url::parse(url_text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| "the url template did not render an http:// or https:// URL".to_string())?;
    let mut headers = Vec::new();
    for (name, value) in &template.headers {
        let value = one(&format!("header {name}"), value)?;
        // A header value is one line.
        headers.push((
            name.clone(),
            value.replace(['\r', '\n'], " ").trim().to_string(),
        ));
    }
    let body = body_source.map(|b| one("body", b)).transpose()?;
    if let Some(body) = &body
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        let json = serde_json::from_str::<Value>(body).is_ok();
        headers.push((
            "Content-Type".to_string(),
            if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }
            .to_string(),
        ));
    }
    let method = reqwest::Method::from_bytes(template.method.as_bytes())
        .map_err(|_| format!("invalid method `{}`", template.method))?;
    Ok(Some(Request {
        method,
        url,
        headers,
        body,
    }))
}

/// The values a template sees.
fn context(events: &[AlertEvent], kind: &str) -> Value {
    let alerts: Vec<Value> = events.iter().map(one_event).collect();
    let mut context = match alerts.first() {
        Some(Value::Object(first)) => first.clone(),
        _ => Map::new(),
    };
    context.insert("event".into(), Value::String(kind.to_string()));
    context.insert("count".into(), Value::from(events.len()));
    if events.len() > 1 {
        let lines: Vec<String> = events.iter().map(|e| e.summary.clone()).collect();
        context.insert("summary".into(), Value::String(lines.join("\n")));
    }
    context.insert("alerts".into(), Value::Array(alerts));
    Value::Object(context)
}

fn one_event(event: &AlertEvent) -> Value {
    let mut value = match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    value.insert(
        "headline".into(),
        Value::String(super::format::headline_of(event)),
    );
    value.insert(
        "description".into(),
        Value::String(super::format::description_of(event)),
    );
    Value::Object(value)
}

/// The engine's message without its debug rendering of the template.
fn error_text(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use std::collections::BTreeMap;

    fn event(kind: AlertKind) -> AlertEvent {
        AlertEvent {
            version: "1".into(),
            event: kind,
            check: "api".into(),
            status: crate::rules::Status::Down,
            previous_status: crate::rules::Status::Up,
            since: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            incident: Some(uuid::Uuid::nil()),
            summary: "api is \"DOWN\"\nnow".into(),
            regions: BTreeMap::new(),
            url: None,
            duration_s: None,
            target: "https://x".into(),
            labels: BTreeMap::new(),
            region: None,
            screenshot: None,
            screenshot_result: None,
        }
    }

    fn template(bodies: &[(&str, &str)]) -> WebhookTemplate {
        WebhookTemplate {
            url: "https://h/{{ check }}/{{ event }}".into(),
            method: "PUT".into(),
            headers: vec![("X-Kind".into(), "{{ event | upper }}".into())],
            bodies: bodies
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn renders_url_method_headers_and_a_json_body() {
        let t = template(&[("default", r#"{"text": {{ summary | tojson }}}"#)]);
        let request = render(&t, &[event(AlertKind::Down)]).ok().flatten();
        let request = request.expect("a request");
        assert_eq!(request.method, reqwest::Method::PUT);
        assert_eq!(request.url.as_str(), "https://h/api/down");
        assert!(request.headers.contains(&("X-Kind".into(), "DOWN".into())));
        assert!(
            request
                .headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        let body: Value =
            serde_json::from_str(request.body.as_deref().unwrap_or("")).unwrap_or_default();
        assert_eq!(body["text"], "api is \"DOWN\"\nnow");
    }

    #[test]
    fn a_body_per_kind_and_kinds_without_one_are_not_sent() {
        let t = template(&[("down", "D"), ("up", "U")]);
        let body = |k| render(&t, &[event(k)]).ok().flatten().and_then(|r| r.body);
        assert_eq!(body(AlertKind::Down).as_deref(), Some("D"));
        assert_eq!(body(AlertKind::Up).as_deref(), Some("U"));
        assert_eq!(render(&t, &[event(AlertKind::Reminder)]), Ok(None));
        let grouped = template(&[(
            "group",
            "{{ count }} {% for a in alerts %}{{ a.check }};{% endfor %}",
        )]);
        let request = render(&grouped, &[event(AlertKind::Down), event(AlertKind::Up)]);
        assert_eq!(
            request.ok().flatten().and_then(|r| r.body).as_deref(),
            Some("2 api;api;")
        );
    }

    #[test]
    fn a_bad_url_or_a_failing_template_is_an_error() {
        let mut t = template(&[]);
        t.url = "ftp://x".into();
        assert!(render(&t, &[event(AlertKind::Down)]).is_err());
        t.url = "https://h/{{ no_such_function() }}".into();
        assert!(render(&t, &[event(AlertKind::Down)]).is_err());
        // Fuel bounds a runaway loop.
        t.url = "https://h/{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into();
        assert!(render(&t, &[event(AlertKind::Down)]).is_err());
    }
}
