//! Running one flow's steps in a session: the settings for before the
//! first page applied, each step timed and judged, the first failure named
//! in plain words (`step 2 fill #email: no element matches`); after each
//! step the page's errors and Web Vitals read (and `fail_on` applied), a
//! film strip frame taken when asked; on failure the page captured (PNG,
//! URL, title).

use std::collections::VecDeque;
use std::sync::Arc;

use base64::Engine;
use fantoccini::Client;
use serde_json::json;
use tokio::time::Instant;

use super::page::{self, Logged};
use super::steps::{Browsing, StepError, run_step};
use super::{BrowserPool, Flow, Slot, close_session, first_line};
use crate::config::browser::{BrowserSpec, FailOn, Step};
use crate::limits;

use crate::result::{
    BrowserFindings, FilmFrame, Outcome, PageError, PageInfo, Report, StepResult, round_ms,
};

/// What the steps leave behind for the result.
#[derive(Default)]
struct Progress {
    steps: Vec<StepResult>,
    browsing: Browsing,
    findings: BrowserFindings,
    /// The last film strip frames: (step, name, JPEG).
    frames: VecDeque<(usize, String, Vec<u8>)>,
    /// The page whose Web Vitals are being read: its time origin and the
    /// step (0-based) that holds them; pages seen so far.
    page_origin: Option<f64>,
    page_step: usize,
    pages: usize,
    notes: Vec<String>,
    /// The failing step: index (1-based), name, error.
    failure: Option<(usize, String, String)>,
    /// When the step running now started (ms from the run's start).
    started_last: Option<f64>,
}

pub(super) async fn run(pool: &BrowserPool, slot: Arc<Slot>, flow: Flow<'_>) -> Report {
    let clock = Instant::now();
    let deadline = clock + flow.timeout;
    let mut progress = Progress::default();
    let mut client: Option<Client> = None;
    let ran = tokio::time::timeout_at(deadline, async {
        let user_agent = flow.spec.user_agent.as_deref().unwrap_or(&flow.user_agent);
        let started = pool.new_session(&slot, user_agent, flow.timeout).await;
        let session = match started {
            Ok(session) => client.insert(session),
            Err(error) => return Err(format!("cannot start the browser: {error}")),
        };
        if let Err(error) = prepare(session, flow.spec, &mut progress.browsing).await {
            return Err(format!(
                "cannot prepare the browser before the first page: {}",
                flow.secrets.redact(&error)
            ));
        }
        run_steps(session, &flow, clock, &mut progress).await;
        Ok(())
    })
    .await;
    let timed_out = ran.is_err();
    let mut report = Report::default();
    match ran {
        Ok(Err(session_error)) => {
            report.outcome = Outcome::Error;
            report.error = Some(session_error);
        }
        Ok(Ok(())) => match &progress.failure {
            None => report.outcome = Outcome::Ok,
            Some((index, name, error)) => {
                report.outcome = Outcome::Fail;
                report.error = Some(format!("step {index} {name}: {error}"));
            }
        },
        Err(_) => {
            report.outcome = Outcome::Timeout;
            let budget = crate::schedule::format_duration(flow.timeout);
            let index = progress.steps.len() + 1;
            match (client.is_some(), flow.spec.steps.get(index - 1)) {
                (true, Some(step)) => {
                    let name = flow.secrets.redact(&step.describe());
                    let error = format!("timed out after {budget} (the check's timeout)");
                    let result = StepResult {
                        name: name.clone(),
                        at_ms: progress.started_last.unwrap_or_default(),
                        ms: round_ms(clock.elapsed()) - progress.started_last.unwrap_or_default(),
                        ok: false,
                        error: Some(error.clone()),
                        load_ms: None,
                        vitals: None,
                    };
                    notify(&flow, index, &result);
                    progress.steps.push(result);
                    report.error = Some(format!("step {index} {name}: {error}"));
                }
                _ => {
                    report.error = Some(format!("timed out after {budget} starting the browser"));
                }
            }
        }
    }
    // On failure, the page as it was: bounded, a hung browser gives
    // nothing. A failed step leaves the rest of the check's time (at least
    // limits::BROWSER_CAPTURE_MIN); a timeout only limits::BROWSER_CAPTURE_AFTER_TIMEOUT past it.
    if report.outcome != Outcome::Ok
        && let Some(session) = &client
    {
        let until = if timed_out {
            Instant::now() + limits::BROWSER_CAPTURE_AFTER_TIMEOUT
        } else {
            deadline.max(Instant::now() + limits::BROWSER_CAPTURE_MIN)
        };
        let mut png = None;
        let mut page = PageInfo::default();
        let captured =
            tokio::time::timeout_at(until, page::capture(session, &mut png, &mut page)).await;
        if captured.is_err() && png.is_none() {
            progress
                .notes
                .push("the browser did not answer in time; no screenshot".to_string());
        }
        if png.is_some() {
            progress.browsing.screenshot = png;
        }
        report.page = Some(PageInfo {
            url: page.url.map(|u| flow.secrets.redact(&u)),
            title: page.title.map(|t| flow.secrets.redact(&t)),
        });
    }
    // Close: in the background, the result does not wait for it (the
    // direct WebDriver figure a flow is compared with ends at its last step
    // too). The slot stays taken until the browser is gone, so the next
    // flow, the sessions gauge and shutdown all wait for it.
    if let Some(session) = client.take() {
        let holder = slot.clone();
        tokio::spawn(async move {
            holder.end_browser().await;
            close_session(session).await;
            drop(holder);
        });
    }
    drop(slot);
    if let Some(png) = progress.browsing.screenshot.take() {
        if png.len() > limits::BROWSER_SCREENSHOT_BYTES_MAX {
            progress.notes.push(format!(
                "screenshot left out: {} bytes, more than {}",
                png.len(),
                limits::BROWSER_SCREENSHOT_BYTES_MAX
            ));
        } else {
            report.screenshot = Some(base64::engine::general_purpose::STANDARD.encode(png));
        }
    }
    if report.outcome != Outcome::Ok {
        progress.findings.film_strip = film_strip(std::mem::take(&mut progress.frames));
    }
    report.steps = progress.steps;
    report.phases = progress.browsing.phases;
    report.notes = progress.notes;
    report.browser = progress.findings;
    report
}

/// What is set before the first page: the observers of Web Vitals in
/// every new document, cookies, extra headers, the viewport. Also notes the
/// main window.
async fn prepare(
    client: &Client,
    spec: &BrowserSpec,
    browsing: &mut Browsing,
) -> Result<(), String> {
    let main = client
        .window()
        .await
        .map_err(|e| first_line(&e.to_string()))?;
    browsing.seen.push(main.clone());
    browsing.current = Some(main.clone());
    browsing.main = Some(main);
    let cdp = |cmd: &'static str, params: serde_json::Value| async move {
        page::cdp(client, cmd, params)
            .await
            .map_err(|e| format!("{cmd}: {}", first_line(&e.to_string())))
    };
    // Observers from each document's start; where the WebDriver server
    // offers no DevTools they are installed when first read (buffered
    // entries still count), so this is no reason to fail the run.
    if spec.capture.web_vitals
        && let Err(error) = cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": page::VITALS_INSTALL }),
        )
        .await
    {
        tracing::debug!(%error, "no Web Vitals observers before the first page");
    }
    if !spec.cookies.is_empty() || !spec.headers.is_empty() {
        cdp("Network.enable", json!({})).await?;
    }
    let first = spec.first_url().map(|u| u.as_str().to_string());
    for cookie in &spec.cookies {
        let mut params = json!({
            "name": cookie.name,
            "value": cookie.value,
            "path": cookie.path.as_deref().unwrap_or("/"),
            "secure": cookie.secure,
        });
        match (&cookie.domain, &first) {
            (Some(domain), _) => params["domain"] = json!(domain),
            (None, Some(url)) => params["url"] = json!(url),
            (None, None) => {}
        }
        let set = cdp("Network.setCookie", params).await?;
        if set.get("success").and_then(serde_json::Value::as_bool) == Some(false) {
            return Err(format!("the browser refused cookie `{}`", cookie.name));
        }
    }
    if !spec.headers.is_empty() {
        let headers: serde_json::Map<String, serde_json::Value> = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        cdp("Network.setExtraHTTPHeaders", json!({ "headers": headers })).await?;
    }
    if let Some(viewport) = spec.viewport {
        cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": viewport.width, "height": viewport.height,
                    "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
    }
    Ok(())
}

/// The frames kept, the newest first when the bytes run out, then in order.
fn film_strip(frames: VecDeque<(usize, String, Vec<u8>)>) -> Vec<FilmFrame> {
    let mut total = 0usize;
    let mut kept = Vec::new();
    for (step, name, jpeg) in frames.into_iter().rev() {
        if jpeg.len() > limits::BROWSER_FILM_STRIP_FRAME_BYTES_MAX
            || total + jpeg.len() > limits::BROWSER_FILM_STRIP_BYTES_MAX
        {
            continue;
        }
        total += jpeg.len();
        kept.push(FilmFrame {
            step,
            name,
            jpeg: base64::engine::general_purpose::STANDARD.encode(jpeg),
        });
    }
    kept.reverse();
    kept
}

/// After a step: back to the main window if the popup it was in closed,
/// the page's errors (failing the step under `fail_on`), its Web Vitals,
/// a film strip frame. What the browser cannot tell now is left out.
async fn after_step(
    client: &Client,
    flow: &Flow<'_>,
    index: usize,
    name: &str,
    progress: &mut Progress,
) -> Option<String> {
    let mut failure = None;
    if progress.browsing.current != progress.browsing.main
        && let (Ok(handles), Some(current)) = (client.windows().await, &progress.browsing.current)
        && !handles.contains(current)
    {
        back_to_main(client, index, progress).await;
    }
    let spec = flow.spec;
    if spec.capture.errors
        && let Ok(logged) = page::read_errors(client).await
    {
        let cut = |text: &str| {
            shorten_to(
                &flow.secrets.redact(text),
                limits::BROWSER_PAGE_ERROR_CHARS_MAX,
            )
        };
        for entry in logged {
            let (list, error, fails) = match entry {
                Logged::Console(message) => {
                    let message = cut(&message);
                    let fails = spec
                        .fail_on
                        .contains(&FailOn::ConsoleError)
                        .then(|| format!("the page logged a console error: {message}"));
                    (
                        &mut progress.findings.console_errors,
                        PageError {
                            step: index,
                            message,
                            url: None,
                            status: None,
                        },
                        fails,
                    )
                }
                Logged::Request {
                    message,
                    url,
                    status,
                } => {
                    let message = cut(&message);
                    let url = url.map(|u| cut(&u));
                    let fails = spec.fail_on.contains(&FailOn::RequestError).then(|| {
                        format!(
                            "a request of the page failed: {} {message}",
                            url.as_deref().unwrap_or("(unknown URL)")
                        )
                    });
                    (
                        &mut progress.findings.request_errors,
                        PageError {
                            step: index,
                            message,
                            url,
                            status,
                        },
                        fails,
                    )
                }
            };
            if failure.is_none() {
                failure = fails;
            }
            if list.len() < limits::BROWSER_PAGE_ERRORS_MAX {
                list.push(error);
            }
        }
    }
    read_page_vitals(client, flow, index, progress).await;
    if spec.film_strip
        && let Ok(jpeg) = page::thumbnail(client).await
    {
        if progress.frames.len() == limits::BROWSER_FILM_STRIP_FRAMES_MAX {
            progress.frames.pop_front();
        }
        progress.frames.push_back((index, name.to_string(), jpeg));
    }
    failure
}

/// The main page's Web Vitals, read after step `index` (1-based) or
/// before it leaves the page: a page not seen before is the step's, one
/// seen updates the step that opened it.
async fn read_page_vitals(client: &Client, flow: &Flow<'_>, index: usize, progress: &mut Progress) {
    if !flow.spec.capture.web_vitals || !progress.browsing.in_main_page() {
        return;
    }
    let Ok(Some((origin, mut vitals))) = page::read_vitals(client).await else {
        return;
    };
    vitals.url = vitals.url.map(|u| flow.secrets.redact(&u));
    let same_page = progress.page_origin == Some(origin);
    if !same_page {
        // Before a step ran, a new page is only the last step's doing.
        if index > progress.steps.len() || progress.pages >= limits::BROWSER_VITALS_PAGES_MAX {
            return;
        }
        progress.pages += 1;
        progress.page_origin = Some(origin);
        progress.page_step = index - 1;
    }
    if let Some(step) = progress.steps.get_mut(progress.page_step) {
        step.vitals = Some(vitals);
    }
}

/// Switches back to the main window (the one the flow drove closed);
/// whether it could.
async fn back_to_main(client: &Client, index: usize, progress: &mut Progress) -> bool {
    let Some(main) = progress.browsing.main.clone() else {
        return false;
    };
    if progress.browsing.current.as_ref() == Some(&main)
        || client.switch_to_window(main.clone()).await.is_err()
    {
        return false;
    }
    progress.browsing.current = Some(main);
    progress.browsing.frame_depth = 0;
    progress.notes.push(format!(
        "step {index}: the window closed; back in the main window"
    ));
    true
}

/// `text` cut to `max` characters (marked with `…`).
fn shorten_to(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn notify(flow: &Flow<'_>, index: usize, result: &StepResult) {
    if let Some(observer) = flow.on_step {
        observer(flow.check, index, result);
    }
}

async fn run_steps(client: &Client, flow: &Flow<'_>, clock: Instant, progress: &mut Progress) {
    for (i, step) in flow.spec.steps.iter().enumerate() {
        let index = i + 1;
        let name = flow.secrets.redact(&step.describe());
        let at = clock.elapsed();
        progress.started_last = Some(round_ms(at));
        // The page being left: its Web Vitals as they stand now (a late
        // image, a shift after the last step's read).
        if matches!(step, Step::Goto(_)) && progress.page_origin.is_some() {
            read_page_vitals(client, flow, index, progress).await;
        }
        let mut outcome = run_step(client, step, &mut progress.browsing).await;
        // A popup that closed itself: the flow goes on in the main window.
        if matches!(outcome, Err(StepError::WindowClosed))
            && back_to_main(client, index, progress).await
        {
            outcome = run_step(client, step, &mut progress.browsing).await;
        }
        let ms = round_ms(clock.elapsed() - at);
        let (ok, error, load_ms) = match outcome {
            Ok(load_ms) => (true, None, load_ms),
            Err(error) => (false, Some(flow.secrets.redact(&error.to_string())), None),
        };
        progress.steps.push(StepResult {
            name: name.clone(),
            at_ms: round_ms(at),
            ms,
            ok,
            error: error.clone(),
            load_ms,
            vitals: None,
        });
        let page_failure = after_step(client, flow, index, &name, progress).await;
        let error = error.or(page_failure);
        let Some(result) = progress.steps.last_mut() else {
            return;
        };
        if let Some(error) = &error {
            result.ok = false;
            result.error = Some(error.clone());
        }
        notify(flow, index, result);
        progress.started_last = None;
        if let Some(error) = error {
            progress.failure = Some((index, name, error));
            return;
        }
    }
}
