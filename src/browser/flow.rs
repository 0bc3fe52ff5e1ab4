//! Running one flow's steps in a session: each step timed and judged, the
//! first failure named in plain words (`step 2 fill #email: no element
//! matches`), and on failure the page captured (PNG, URL, title).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use tokio::time::Instant;

use super::{BrowserPool, Flow, Slot, close_session, first_line};
use crate::config::browser::{SelectBy, Selector, Step};
use crate::limits;

use crate::result::{Outcome, PageInfo, Phases, Report, StepResult, round_ms};

/// Why a step failed, in words for people.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("no element matches")]
    NoElement,
    #[error("no element matches within {0}")]
    NotFoundWithin(String),
    #[error("the element is not visible within {0}")]
    NotVisibleWithin(String),
    #[error("{0}")]
    Expectation(String),
    #[error("{0}")]
    WebDriver(String),
}

impl From<CmdError> for StepError {
    fn from(error: CmdError) -> StepError {
        if error.is_no_such_element() {
            return StepError::NoElement;
        }
        let text = match &error {
            CmdError::Standard(wd) => format!("{}: {}", wd.error, first_line(&wd.message)),
            other => first_line(&other.to_string()),
        };
        StepError::WebDriver(text)
    }
}

/// What the steps leave behind for the result.
#[derive(Default)]
struct Progress {
    steps: Vec<StepResult>,
    phases: Phases,
    screenshot: Option<Vec<u8>>,
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
        let started = pool
            .new_session(&slot, &flow.user_agent, flow.timeout)
            .await;
        let session = match started {
            Ok(session) => client.insert(session),
            Err(error) => return Err(error.to_string()),
        };
        run_steps(session, &flow, clock, &mut progress).await;
        Ok(())
    })
    .await;
    let timed_out = ran.is_err();
    let mut report = Report::default();
    match ran {
        Ok(Err(session_error)) => {
            report.outcome = Outcome::Error;
            report.error = Some(format!("cannot start the browser: {session_error}"));
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
        let captured = tokio::time::timeout_at(until, capture(session, &mut png, &mut page)).await;
        if captured.is_err() && png.is_none() {
            progress
                .notes
                .push("the browser did not answer in time; no screenshot".to_string());
        }
        if png.is_some() {
            progress.screenshot = png;
        }
        report.page = Some(PageInfo {
            url: page.url.map(|u| flow.secrets.redact(&u)),
            title: page.title.map(|t| flow.secrets.redact(&t)),
        });
    }
    // Close: at once after success or failure; after a timeout in the
    // background (the browser may hang), the slot staying taken until then.
    if let Some(session) = client.take() {
        if timed_out {
            let holder = slot.clone();
            tokio::spawn(async move {
                close_session(session).await;
                drop(holder);
            });
        } else {
            close_session(session).await;
        }
    }
    drop(slot);
    if let Some(png) = progress.screenshot.take() {
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
    report.steps = progress.steps;
    report.phases = progress.phases;
    report.notes = progress.notes;
    report
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
        let outcome = run_step(client, step, progress).await;
        let ms = round_ms(clock.elapsed() - at);
        let (ok, error, load_ms) = match outcome {
            Ok(load_ms) => (true, None, load_ms),
            Err(error) => (false, Some(flow.secrets.redact(&error.to_string())), None),
        };
        let result = StepResult {
            name: name.clone(),
            at_ms: round_ms(at),
            ms,
            ok,
            error: error.clone(),
            load_ms,
        };
        notify(flow, index, &result);
        progress.steps.push(result);
        progress.started_last = None;
        if let Some(error) = error {
            progress.failure = Some((index, name, error));
            return;
        }
    }
}

/// Runs one step; `Ok(Some(ms))` for a `goto` that measured its load.
async fn run_step(
    client: &Client,
    step: &Step,
    progress: &mut Progress,
) -> Result<Option<f64>, StepError> {
    match step {
        Step::Goto(url) => {
            client.goto(url.as_str()).await?;
            let timing = navigation_timing(client).await;
            if progress.phases == Phases::default()
                && let Some(t) = &timing
            {
                progress.phases = t.phases.clone();
            }
            Ok(timing.and_then(|t| t.load_ms))
        }
        Step::Click(target) => {
            find(client, target, limits::BROWSER_FIND_WAIT)
                .await?
                .click()
                .await?;
            Ok(None)
        }
        Step::Fill { target, text } => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            // Replace what is there; clearing costs a round of focus and
            // change events, so only when there is something to clear.
            let current = element.prop("value").await?;
            if current.is_some_and(|v| !v.is_empty()) {
                element.clear().await?;
            }
            element.send_keys(text).await?;
            Ok(None)
        }
        Step::Select { target, by } => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            let chosen = match by {
                SelectBy::Value(value) => element.select_by_value(value).await,
                SelectBy::Label(label) => element.select_by_label(label).await,
            };
            chosen.map_err(|e| match StepError::from(e) {
                StepError::NoElement => StepError::Expectation(match by {
                    SelectBy::Value(v) => format!("no option with value {v:?}"),
                    SelectBy::Label(l) => format!("no option labelled {l:?}"),
                }),
                other => other,
            })?;
            Ok(None)
        }
        Step::Press { target, key } => {
            let element = match target {
                Some(target) => find(client, target, limits::BROWSER_FIND_WAIT).await?,
                None => client.active_element().await?,
            };
            element.send_keys(&key.code.to_string()).await?;
            Ok(None)
        }
        Step::WaitFor { target, timeout } => {
            wait_visible(client, target, *timeout).await?;
            Ok(None)
        }
        Step::ExpectText { target, text } => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            expect("text", &element.text().await?, text)
        }
        Step::ExpectUrl(expected) => expect("URL", client.current_url().await?.as_str(), expected),
        Step::ExpectTitle(expected) => expect("title", &client.title().await?, expected),
        Step::Screenshot => {
            progress.screenshot = Some(masked_screenshot(client).await?);
            Ok(None)
        }
    }
}

/// `contains "Welcome"` reads as `does not contain "Welcome"`.
/// An `expect_*` step's verdict on what the page showed as `what`.
fn expect(
    what: &str,
    found: &str,
    expected: &crate::config::browser::TextMatch,
) -> Result<Option<f64>, StepError> {
    if expected.matches(found) {
        Ok(None)
    } else {
        Err(StepError::Expectation(format!(
            "{what} {:?} does not {}",
            shorten(found),
            describe_match(expected)
        )))
    }
}

fn describe_match(m: &crate::config::browser::TextMatch) -> String {
    use crate::config::browser::TextMatch;
    match m {
        TextMatch::Contains(s) => format!("contain {s:?}"),
        TextMatch::Equals(s) => format!("equal {s:?}"),
        TextMatch::Regex(re) => format!("match /{}/", re.as_str()),
    }
}

/// Page text in an error: one line, bounded.
fn shorten(text: &str) -> String {
    const CHARS_MAX: usize = 80;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= CHARS_MAX {
        flat
    } else {
        let cut: String = flat.chars().take(CHARS_MAX - 1).collect();
        format!("{cut}…")
    }
}

fn locator(target: &Selector) -> Locator<'_> {
    match target {
        Selector::Css(css) => Locator::Css(css),
        Selector::XPath(xpath) => Locator::XPath(xpath),
        Selector::LinkText(text) => Locator::LinkText(text),
    }
}

/// The first element `target` matches, looking again every poll until
/// `wait` has passed.
async fn find(
    client: &Client,
    target: &Selector,
    wait: Duration,
) -> Result<fantoccini::elements::Element, StepError> {
    let deadline = Instant::now() + wait;
    loop {
        match client.find(locator(target)).await {
            Ok(element) => return Ok(element),
            Err(error) if error.is_no_such_element() || mid_navigation(&error) => {
                if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
                    return Err(StepError::NoElement);
                }
                tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Whether a command failed only because the page was being replaced
/// (a click that submitted a form): chromedriver answers "aborted by
/// navigation", or the old page's script context is gone. Looking again
/// on the new page is the right answer.
fn mid_navigation(error: &CmdError) -> bool {
    let text = error.to_string();
    [
        "aborted by navigation",
        "Execution context was destroyed",
        "no such execution context",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// Waits until `target` is present and displayed.
async fn wait_visible(client: &Client, target: &Selector, wait: Duration) -> Result<(), StepError> {
    let deadline = Instant::now() + wait;
    let within = crate::schedule::format_duration(wait);
    let mut present = false;
    loop {
        match client.find(locator(target)).await {
            Ok(element) => {
                present = true;
                match element.is_displayed().await {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    // Replaced while we looked (a re-render, a new page):
                    // look again.
                    Err(error) if error.is_stale_element_reference() || mid_navigation(&error) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) if error.is_no_such_element() || mid_navigation(&error) => {}
            Err(error) => return Err(error.into()),
        }
        if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
            return Err(if present {
                StepError::NotVisibleWithin(within)
            } else {
                StepError::NotFoundWithin(within)
            });
        }
        tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
    }
}

struct NavigationTiming {
    load_ms: Option<f64>,
    phases: Phases,
}

/// The browser's own timing of the last navigation (Navigation Timing
/// Level 2), read with a script. `None` where the page does not offer it.
async fn navigation_timing(client: &Client) -> Option<NavigationTiming> {
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
async fn capture(client: &Client, png: &mut Option<Vec<u8>>, page: &mut PageInfo) {
    page.url = client.current_url().await.ok().map(|u| u.to_string());
    page.title = client.title().await.ok();
    *png = masked_screenshot(client).await.ok();
}

/// A screenshot in which what was typed into form fields shows as dots:
/// the values often come from the environment (users, one-time codes,
/// keys), and screenshots go to the status page and alert emails. Only the
/// display changes; the fields keep their values.
async fn masked_screenshot(client: &Client) -> Result<Vec<u8>, CmdError> {
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
    fn a_command_cut_short_by_a_new_page_is_looked_at_again() {
        let aborted = CmdError::NotW3C(serde_json::Value::String("aborted by navigation".into()));
        assert!(mid_navigation(&aborted));
        let other = CmdError::NotW3C(serde_json::Value::String("session deleted".into()));
        assert!(!mid_navigation(&other));
    }
}
