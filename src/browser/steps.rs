//! Running one step of a flow in the session: finding its element (looked
//! for again while a page settles), acting, and judging what the page
//! shows, with the failure in words for people. `Browsing` is what steps
//! change beyond the page: the frame and window later steps are in.

use std::time::Duration;

use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::error::CmdError;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, Locator};
use tokio::time::Instant;

use super::first_line;
use super::page::{frame_top, masked_screenshot, navigation_timing};
use crate::config::browser::{FrameTarget, SelectBy, Selector, Step, WindowTarget, is_truthy};
use crate::limits;
use crate::result::Phases;

/// What the steps change beyond the page.
#[derive(Default)]
pub(super) struct Browsing {
    /// The first page's phases (DNS, connect, TTFB...).
    pub phases: Phases,
    /// From a `screenshot` step.
    pub screenshot: Option<Vec<u8>>,
    /// The window the flow started in, and the one it drives now.
    pub main: Option<WindowHandle>,
    pub current: Option<WindowHandle>,
    /// Every window handle seen (`window: new` is one not among them).
    pub seen: Vec<WindowHandle>,
    /// Frames entered below the window's top document.
    pub frame_depth: usize,
}

impl Browsing {
    /// Whether steps run in the main window's top document (where its
    /// Web Vitals are read).
    pub(super) fn in_main_page(&self) -> bool {
        self.frame_depth == 0 && self.current == self.main
    }
}

/// Why a step failed, in words for people.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
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
    /// The window the step ran in closed (a popup that closed itself).
    #[error("the window closed")]
    WindowClosed,
}

impl From<CmdError> for StepError {
    fn from(error: CmdError) -> StepError {
        if error.is_no_such_element() {
            return StepError::NoElement;
        }
        if let CmdError::Standard(wd) = &error
            && wd.error.to_string() == "no such window"
        {
            return StepError::WindowClosed;
        }
        let text = match &error {
            CmdError::Standard(wd) => format!("{}: {}", wd.error, first_line(&wd.message)),
            other => first_line(&other.to_string()),
        };
        StepError::WebDriver(text)
    }
}

/// Runs one step; `Ok(Some(ms))` for a `goto` that measured its load.
pub(super) async fn run_step(
    client: &Client,
    step: &Step,
    progress: &mut Browsing,
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
        Step::Eval { script, expect } => {
            let value = client.execute(&as_function_body(script), vec![]).await?;
            match expect {
                Some(expected) if !expected.holds(&value) => Err(StepError::Expectation(format!(
                    "the result {} does not {expected}",
                    quoted_result(&value)
                ))),
                _ => Ok(None),
            }
        }
        Step::WaitForJs { script, timeout } => {
            wait_truthy(client, script, *timeout).await?;
            Ok(None)
        }
        Step::Frame(target) => {
            match target {
                FrameTarget::Enter(selector) => {
                    find(client, selector, limits::BROWSER_FIND_WAIT)
                        .await?
                        .enter_frame()
                        .await?;
                    progress.frame_depth += 1;
                }
                FrameTarget::Parent => {
                    client.enter_parent_frame().await?;
                    progress.frame_depth = progress.frame_depth.saturating_sub(1);
                }
                FrameTarget::Top => {
                    frame_top(client).await?;
                    progress.frame_depth = 0;
                }
            }
            Ok(None)
        }
        Step::Window(target) => {
            switch_window(client, target, progress).await?;
            Ok(None)
        }
        Step::Hover(target) => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            scroll_into_view(client, &element).await?;
            let mouse =
                MouseActions::new("lookout-mouse".to_string()).then(PointerAction::MoveToElement {
                    element,
                    duration: None,
                    x: 0.0,
                    y: 0.0,
                });
            client.perform_actions(mouse).await?;
            Ok(None)
        }
        Step::ScrollTo(target) => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            scroll_into_view(client, &element).await?;
            Ok(None)
        }
        Step::Upload { target, file } => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            // chromedriver reads a path typed into a file input as the file.
            element.send_keys(&file.display().to_string()).await?;
            Ok(None)
        }
        Step::Clear(target) => {
            find(client, target, limits::BROWSER_FIND_WAIT)
                .await?
                .clear()
                .await?;
            Ok(None)
        }
        Step::Check(target) | Step::Uncheck(target) => {
            let wanted = matches!(step, Step::Check(_));
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            if element.is_selected().await? != wanted {
                element.click().await?;
            }
            if element.is_selected().await? != wanted {
                return Err(StepError::Expectation(format!(
                    "the box is still {} after a click",
                    if wanted { "unchecked" } else { "checked" }
                )));
            }
            Ok(None)
        }
        Step::ExpectVisible(target) => {
            wait_visible(client, target, limits::BROWSER_FIND_WAIT).await?;
            Ok(None)
        }
        Step::ExpectHidden(target) => {
            wait_hidden(client, target, limits::BROWSER_FIND_WAIT).await?;
            Ok(None)
        }
        Step::ExpectCount { target, count } => {
            // The count may still be settling (a list rendering): looked at
            // again until it holds or the find wait has passed.
            let deadline = Instant::now() + limits::BROWSER_FIND_WAIT;
            loop {
                let found = match client.find_all(locator(target)).await {
                    Ok(all) => all.len() as u64,
                    Err(error) if mid_navigation(&error) => 0,
                    Err(error) => return Err(error.into()),
                };
                if count.holds(found) {
                    return Ok(None);
                }
                if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
                    return Err(StepError::Expectation(format!(
                        "{found} elements match; expected {count}"
                    )));
                }
                tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
            }
        }
        Step::ExpectAttribute { target, name, text } => {
            let element = find(client, target, limits::BROWSER_FIND_WAIT).await?;
            match element.attr(name).await? {
                Some(value) => expect(&format!("attribute {name}"), &value, text),
                None => Err(StepError::Expectation(format!(
                    "the element has no attribute {name:?}"
                ))),
            }
        }
    }
}

/// A script as the body of the function WebDriver runs: an expression
/// gets its `return`; statements that return something keep their own.
fn as_function_body(script: &str) -> String {
    let has_return = script
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|word| word == "return");
    if has_return {
        script.to_string()
    } else {
        format!("return (\n{script}\n);")
    }
}

/// A script's result in an error: JSON, one line, bounded.
fn quoted_result(value: &serde_json::Value) -> String {
    shorten(&value.to_string())
}

/// Runs `script` until its result is truthy, at most `wait`. A script that
/// throws (what it looks at is not there yet) is run again too.
async fn wait_truthy(client: &Client, script: &str, wait: Duration) -> Result<(), StepError> {
    let body = as_function_body(script);
    let deadline = Instant::now() + wait;
    let mut last = String::from("nothing");
    loop {
        match client.execute(&body, vec![]).await {
            Ok(value) if is_truthy(&value) => return Ok(()),
            Ok(value) => last = format!("the result {}", quoted_result(&value)),
            Err(error) if mid_navigation(&error) => {}
            Err(CmdError::Standard(wd)) if wd.error.to_string() == "javascript error" => {
                last = format!("an error: {}", first_line(&wd.message));
            }
            Err(error) => return Err(error.into()),
        }
        if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
            return Err(StepError::Expectation(format!(
                "not truthy within {} (last: {last})",
                crate::schedule::format_duration(wait)
            )));
        }
        tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
    }
}

async fn scroll_into_view(
    client: &Client,
    element: &fantoccini::elements::Element,
) -> Result<(), StepError> {
    let arg = serde_json::to_value(element)
        .map_err(|e| StepError::WebDriver(format!("cannot name the element: {e}")))?;
    client
        .execute(
            "arguments[0].scrollIntoView({ block: 'center', inline: 'nearest' });",
            vec![arg],
        )
        .await?;
    Ok(())
}

/// `window:` steps. Entering a window leaves any frame (a window starts at
/// its top document).
async fn switch_window(
    client: &Client,
    target: &WindowTarget,
    progress: &mut Browsing,
) -> Result<(), StepError> {
    let deadline = Instant::now() + limits::BROWSER_WINDOW_WAIT;
    let within = crate::schedule::format_duration(limits::BROWSER_WINDOW_WAIT);
    loop {
        let handles = client.windows().await?;
        let chosen = match target {
            WindowTarget::Main => progress.main.clone(),
            WindowTarget::New => handles.iter().find(|h| !progress.seen.contains(h)).cloned(),
            WindowTarget::Title(m) | WindowTarget::Url(m) => {
                let mut found = None;
                for handle in &handles {
                    client.switch_to_window(handle.clone()).await?;
                    let text = match target {
                        WindowTarget::Title(_) => client.title().await?,
                        _ => client.current_url().await?.to_string(),
                    };
                    if m.matches(&text) {
                        found = Some(handle.clone());
                        break;
                    }
                }
                if found.is_none()
                    && let Some(back) = progress.current.clone().or(progress.main.clone())
                {
                    client.switch_to_window(back).await?;
                }
                found
            }
        };
        if let Some(handle) = chosen {
            client.switch_to_window(handle.clone()).await?;
            if !progress.seen.contains(&handle) {
                progress.seen.push(handle.clone());
            }
            progress.current = Some(handle);
            progress.frame_depth = 0;
            return Ok(());
        }
        if matches!(target, WindowTarget::Main) {
            return Err(StepError::Expectation(
                "the main window is gone".to_string(),
            ));
        }
        if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
            return Err(StepError::Expectation(match target {
                WindowTarget::New => format!("no new window opened within {within}"),
                WindowTarget::Title(m) => format!("no window's title {m} within {within}"),
                _ => format!(
                    "no window's URL {m} within {within}",
                    m = describe_target(target)
                ),
            }));
        }
        tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
    }
}

fn describe_target(target: &WindowTarget) -> String {
    match target {
        WindowTarget::Url(m) | WindowTarget::Title(m) => m.to_string(),
        WindowTarget::New => "new".to_string(),
        WindowTarget::Main => "main".to_string(),
    }
}

/// Waits until `target` is absent or not displayed.
async fn wait_hidden(client: &Client, target: &Selector, wait: Duration) -> Result<(), StepError> {
    let deadline = Instant::now() + wait;
    loop {
        match client.find(locator(target)).await {
            Ok(element) => match element.is_displayed().await {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(error) if error.is_stale_element_reference() || mid_navigation(&error) => {}
                Err(error) => return Err(error.into()),
            },
            Err(error) if error.is_no_such_element() => return Ok(()),
            Err(error) if mid_navigation(&error) => {}
            Err(error) => return Err(error.into()),
        }
        if Instant::now() + limits::BROWSER_WAIT_POLL > deadline {
            return Err(StepError::Expectation(format!(
                "the element is still visible after {}",
                crate::schedule::format_duration(wait)
            )));
        }
        tokio::time::sleep(limits::BROWSER_WAIT_POLL).await;
    }
}

/// An `expect_*` step's verdict on what the page showed as `what`:
/// `contains "Welcome"` reads as `does not contain "Welcome"`.
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
pub(super) fn shorten(text: &str) -> String {
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
pub(super) fn mid_navigation(error: &CmdError) -> bool {
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
