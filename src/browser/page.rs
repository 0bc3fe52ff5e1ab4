//! What a flow learns from the page beyond its steps, and the WebDriver
//! commands fantoccini has no method for: Chrome DevTools commands through
//! chromedriver's `goog/cdp/execute` (extra headers, cookies before the
//! first page, the viewport, scripts run in every new document, JPEG
//! thumbnails), the browser's log (`se/log`: console errors and failed
//! requests), Web Vitals from PerformanceObservers, and the navigation
//! timing and failure capture.
//!
//! Web Vitals are the browser's own figures: an observer script is added to
//! every new document (and installed on demand where it missed one, a
//! popup), observing with `buffered: true` so entries from before it ran
//! count too; after each step its figures are read back.

use fantoccini::Client;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};

use crate::limits;
use crate::result::{PageInfo, Phases, WebVitals};

/// A command under the session's URL (`session/{id}/{path}`), POSTed with
/// a JSON body.
#[derive(Debug)]
struct SessionCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or(""),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// One Chrome DevTools Protocol command, through chromedriver.
pub(super) async fn cdp(client: &Client, cmd: &str, params: Value) -> Result<Value, CmdError> {
    client
        .issue_cmd(SessionCommand {
            path: "goog/cdp/execute",
            body: json!({ "cmd": cmd, "params": params }),
        })
        .await
}

/// Back to the top document of the window (WebDriver's `frame: null`).
pub(super) async fn frame_top(client: &Client) -> Result<(), CmdError> {
    client
        .issue_cmd(SessionCommand {
            path: "frame",
            body: json!({ "id": null }),
        })
        .await
        .map(|_| ())
}

/// A console error or a failed request, as the browser logged it.
#[derive(Debug, PartialEq)]
pub(super) enum Logged {
    Console(String),
    Request {
        message: String,
        url: Option<String>,
        status: Option<u16>,
    },
}

/// The browser log's entries since the last read (chromedriver drains it),
/// the errors among them: `SEVERE` entries, those of source `network`
/// being failed requests.
pub(super) async fn read_errors(client: &Client) -> Result<Vec<Logged>, CmdError> {
    let entries = client
        .issue_cmd(SessionCommand {
            path: "se/log",
            body: json!({ "type": "browser" }),
        })
        .await?;
    let Some(entries) = entries.as_array() else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter()
        .take(limits::BROWSER_LOG_ENTRIES_PER_READ_MAX)
        .filter_map(classify)
        .collect())
}

fn classify(entry: &Value) -> Option<Logged> {
    let level = entry.get("level").and_then(Value::as_str).unwrap_or("");
    let message = entry.get("message").and_then(Value::as_str).unwrap_or("");
    let source = entry.get("source").and_then(Value::as_str).unwrap_or("");
    if level != "SEVERE" || message.is_empty() {
        return None;
    }
    // "URL - Failed to load resource: the server responded with a status of 404 (Not Found)"
    // "URL - Failed to load resource: net::ERR_CONNECTION_REFUSED"
    if source == "network" || message.contains("Failed to load resource") {
        let (url, what) = match message.split_once(" - ") {
            Some((url, what)) if !url.contains(' ') => (Some(url.to_string()), what),
            _ => (None, message),
        };
        let status = what
            .split_once("status of ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|code| code.parse::<u16>().ok());
        // The browser's own request for the site's icon, not the page's.
        if url.as_deref().is_some_and(|u| u.ends_with("/favicon.ico")) {
            return None;
        }
        let what = what
            .strip_prefix("Failed to load resource: ")
            .unwrap_or(what)
            .to_string();
        return Some(Logged::Request {
            message: what,
            url,
            status,
        });
    }
    Some(Logged::Console(console_text(message)))
}

/// chromedriver writes a console message as `URL LINE:COL "text"`; the
/// text (unquoted) is what a person reads, the place after it.
fn console_text(message: &str) -> String {
    let mut parts = message.splitn(3, ' ');
    let (Some(place), Some(position), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return message.to_string();
    };
    let positioned = position.split(':').all(|n| n.parse::<u32>().is_ok());
    if !positioned {
        return message.to_string();
    }
    let text = match serde_json::from_str::<String>(rest) {
        Ok(unquoted) => unquoted,
        Err(_) => rest.to_string(),
    };
    format!("{text} (at {place}:{position})")
}

/// Installs the Web Vitals observers in a document, once: each observer's
/// entries are folded into `window.__lookoutVitals`.
pub(super) const VITALS_INSTALL: &str = r#"(() => {
  if (window.__lookoutVitals) { return; }
  const v = window.__lookoutVitals = { lcp: null, cls: 0, win: 0, winStart: 0, winLast: 0,
                                       shifts: false, inp: {}, longtasks: [], observers: [] };
  const observe = (type, fold, extra) => {
    try {
      const o = new PerformanceObserver(list => list.getEntries().forEach(fold));
      o.observe(Object.assign({ type, buffered: true }, extra || {}));
      v.observers.push([o, fold]);
    } catch (e) { /* an entry type this browser lacks */ }
  };
  observe('largest-contentful-paint', e => { v.lcp = e.startTime; });
  observe('layout-shift', e => {
    v.shifts = true;
    if (e.hadRecentInput) { return; }
    // Session windows as web-vitals: shifts less than 1 s apart, 5 s at most.
    if (v.win > 0 && e.startTime - v.winLast < 1000 && e.startTime - v.winStart < 5000) {
      v.win += e.value;
    } else {
      v.win = e.value; v.winStart = e.startTime;
    }
    v.winLast = e.startTime;
    if (v.win > v.cls) { v.cls = v.win; }
  });
  observe('event', e => {
    if (e.interactionId) { v.inp[e.interactionId] = Math.max(v.inp[e.interactionId] || 0, e.duration); }
  }, { durationThreshold: 16 });
  observe('longtask', e => { if (v.longtasks.length < 1000) { v.longtasks.push([e.startTime, e.duration]); } });
})();"#;

/// Reads the figures (installing the observers where they are missing).
const VITALS_READ: &str = r#"
  const v = window.__lookoutVitals;
  for (const [o, fold] of v.observers) { o.takeRecords().forEach(fold); }
  const types = PerformanceObserver.supportedEntryTypes || [];
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  const fcp = paint ? paint.startTime : null;
  let tbt = null;
  if (fcp !== null && types.includes('longtask')) {
    tbt = 0;
    for (const [start, duration] of v.longtasks) {
      if (start + duration > fcp && duration > 50) { tbt += duration - 50; }
    }
  }
  const inps = Object.values(v.inp);
  return { origin: performance.timeOrigin, url: location.href,
           ttfb: nav && nav.responseStart > 0 ? nav.responseStart : null,
           fcp, lcp: v.lcp, cls: types.includes('layout-shift') ? v.cls : null,
           inp: inps.length ? Math.max(...inps) : null, tbt };"#;

/// The page's Web Vitals now, and its time origin (which page it is).
pub(super) async fn read_vitals(client: &Client) -> Result<Option<(f64, WebVitals)>, CmdError> {
    let script = format!("{VITALS_INSTALL}\n{VITALS_READ}");
    let value = client.execute(&script, vec![]).await?;
    let Some(origin) = value.get("origin").and_then(Value::as_f64) else {
        return Ok(None);
    };
    let ms = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(round3)
    };
    let cls = value
        .get("cls")
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| (v * 10_000.0).round() / 10_000.0);
    Ok(Some((
        origin,
        WebVitals {
            url: value.get("url").and_then(Value::as_str).map(str::to_string),
            ttfb_ms: ms("ttfb"),
            fcp_ms: ms("fcp"),
            lcp_ms: ms("lcp"),
            cls,
            inp_ms: ms("inp"),
            tbt_ms: ms("tbt"),
        },
    )))
}

/// A JPEG thumbnail of the viewport for the film strip.
pub(super) async fn thumbnail(client: &Client) -> Result<Vec<u8>, CmdError> {
    use base64::Engine;
    let size = client
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await?;
    let side = |i: usize| size.get(i).and_then(Value::as_f64).unwrap_or(0.0);
    let (width, height) = (side(0), side(1));
    let mut params = json!({
        "format": "jpeg",
        "quality": limits::BROWSER_FILM_STRIP_JPEG_QUALITY,
    });
    if width > 0.0 && height > 0.0 {
        params["clip"] = json!({ "x": 0, "y": 0, "width": width, "height": height,
                                 "scale": limits::BROWSER_FILM_STRIP_SCALE });
    }
    let shot = cdp(client, "Page.captureScreenshot", params).await?;
    let data = shot.get("data").and_then(Value::as_str).unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| {
            CmdError::NotW3C(Value::String(format!(
                "a thumbnail that is not base64: {e}"
            )))
        })
}

pub(super) struct NavigationTiming {
    pub load_ms: Option<f64>,
    pub phases: Phases,
}

/// The browser's own timing of the last navigation (Navigation Timing
/// Level 2), read with a script. `None` where the page does not offer it.
pub(super) async fn navigation_timing(client: &Client) -> Option<NavigationTiming> {
    const SCRIPT: &str = "const e = performance.getEntriesByType('navigation')[0];
        if (!e) { return null; }
        return { start: e.startTime, dns_start: e.domainLookupStart, dns_end: e.domainLookupEnd,
                 connect_start: e.connectStart, connect_end: e.connectEnd,
                 tls_start: e.secureConnectionStart, request: e.requestStart,
                 response_start: e.responseStart, response_end: e.responseEnd,
                 load_end: e.loadEventEnd };";
    let value = client.execute(SCRIPT, vec![]).await.ok()?;
    let get = |key: &str| value.get(key).and_then(serde_json::Value::as_f64);
    let span = |a: &str, b: &str| match (get(a), get(b)) {
        (Some(a), Some(b)) if b >= a => Some(round3(b - a)),
        _ => None,
    };
    let load_ms = match (get("start"), get("load_end")) {
        (Some(start), Some(end)) if end > 0.0 && end >= start => Some(round3(end - start)),
        _ => None,
    };
    let tls = match (get("tls_start"), get("connect_end")) {
        (Some(start), Some(end)) if start > 0.0 && end >= start => Some(round3(end - start)),
        _ => None,
    };
    Some(NavigationTiming {
        load_ms,
        phases: Phases {
            dns: span("dns_start", "dns_end"),
            connect: span("connect_start", "connect_end"),
            tls,
            ttfb: span("request", "response_start"),
            transfer: span("response_start", "response_end"),
        },
    })
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// The page as it is: a PNG, and its URL and title, each if it answers
/// (what arrived before a deadline is kept).
pub(super) async fn capture(client: &Client, png: &mut Option<Vec<u8>>, page: &mut PageInfo) {
    page.url = client.current_url().await.ok().map(|u| u.to_string());
    page.title = client.title().await.ok();
    *png = masked_screenshot(client).await.ok();
}

/// A screenshot in which what was typed into form fields shows as dots:
/// the values often come from the environment (users, one-time codes,
/// keys), and screenshots go to the status page and alert emails. Only the
/// display changes; the fields keep their values.
pub(super) async fn masked_screenshot(client: &Client) -> Result<Vec<u8>, CmdError> {
    const MASK: &str = "for (const field of document.querySelectorAll('input, textarea')) {
            const kind = (field.getAttribute('type') || 'text').toLowerCase();
            if (!['hidden', 'checkbox', 'radio', 'submit', 'button', 'reset', 'image', 'file', 'range', 'color'].includes(kind)) {
                field.style.setProperty('-webkit-text-security', 'disc', 'important');
            }
        }";
    // A page that refuses scripts still gets its screenshot.
    let _ = client.execute(MASK, vec![]).await;
    client.screenshot().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_log_is_sorted_into_console_errors_and_failed_requests() {
        let missing = json!({ "level": "SEVERE", "source": "network",
            "message": "http://127.0.0.1:9/missing.js - Failed to load resource: the server responded with a status of 404 (Not Found)" });
        assert_eq!(
            classify(&missing),
            Some(Logged::Request {
                message: "the server responded with a status of 404 (Not Found)".into(),
                url: Some("http://127.0.0.1:9/missing.js".into()),
                status: Some(404),
            })
        );
        let console = json!({ "level": "SEVERE", "source": "console-api",
            "message": "http://127.0.0.1:9/page 12:14 \"checkout broke\"" });
        assert_eq!(
            classify(&console),
            Some(Logged::Console(
                "checkout broke (at http://127.0.0.1:9/page:12:14)".into()
            ))
        );
        let warning =
            json!({ "level": "WARNING", "source": "console-api", "message": "x 1:1 \"y\"" });
        assert_eq!(classify(&warning), None);
    }
}
