//! Browser flows: a `browser` check drives headless Chromium through its
//! steps over WebDriver (fantoccini), and reports each step, the page's load
//! timing, and on failure a screenshot, the URL and the title.
//!
//! `BrowserPool` is what a probe holds: the WebDriver server (a local
//! chromedriver it starts and owns, `driver.rs`, or an existing one given
//! with `--webdriver`), and a limit on sessions running at once, with
//! queueing. Time spent queued does not count against a check's timeout:
//! the timeout starts when the flow has its session slot, so a busy probe
//! makes flows late, never failed.
//!
//! Cleanup is structural. A session slot (`Slot`) owns the semaphore permit,
//! the gauge count and the temporary Chromium profile; it is shared by the
//! flow, the task creating the session and the task closing it, and when the
//! last of them lets go it kills whatever browser still runs with that
//! profile (the closing task kills it first, before the session's close)
//! and removes the profile. So success, failure, timeout, a hung
//! browser and a cancelled run all end the same way: no browser left, the
//! slot free again.

pub mod driver;
mod flow;
mod page;
mod steps;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::config::Secrets;
use crate::config::browser::BrowserSpec;
use crate::limits;

use crate::result::{Phases, Report, StepResult};
use driver::LocalDriver;

/// Told of each step as it finishes: the check's name, the step's 1-based
/// index, and how it went.
pub type StepObserver = Arc<dyn Fn(&str, usize, &StepResult) + Send + Sync>;

/// Where the browser sessions come from, and how many at once.
#[derive(Clone, Debug)]
pub struct BrowserOptions {
    /// An existing WebDriver server; `None`: start chromedriver from PATH.
    pub webdriver: Option<Url>,
    /// Sessions at once; more flows wait their turn.
    pub sessions: usize,
    /// Where each run's fresh Chromium profile is made (and removed after);
    /// `None`: the system's temporary directory.
    pub profiles_in: Option<PathBuf>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            webdriver: None,
            sessions: limits::BROWSER_SESSIONS_DEFAULT,
            profiles_in: None,
        }
    }
}

/// The probe's browser sessions. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct BrowserPool {
    inner: Arc<Inner>,
}

struct Inner {
    remote: Option<Url>,
    local: tokio::sync::Mutex<Option<LocalDriver>>,
    permits: Arc<Semaphore>,
    in_use: Arc<AtomicUsize>,
    /// Woken whenever a slot is given back (shutdown waits on it).
    freed: Notify,
    closed: AtomicBool,
    chromium: Option<PathBuf>,
    no_sandbox: bool,
    profiles_in: PathBuf,
}

/// One flow at a time per slot; dropping it (wherever the last holder is)
/// kills what is left of its browser, removes its profile and frees it.
struct Slot {
    inner: Arc<Inner>,
    profile: Option<PathBuf>,
    permit: Option<OwnedSemaphorePermit>,
    /// Set once `end_browser` killed the browser: the release then has no
    /// second scan of /proc to make.
    ended: AtomicBool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Scanning /proc and removing a profile of a few thousand files is
        // blocking work: off the async threads, the slot staying taken (the
        // permit and the count held) until it is done.
        let release = Release {
            inner: self.inner.clone(),
            profile: self.profile.take(),
            browser_ended: self.ended.load(Ordering::SeqCst),
            _permit: self.permit.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(release));
            }
            Err(_) => drop(release),
        }
    }
}

impl Slot {
    /// Ends the browser of a finished run: kills what runs with the slot's
    /// profile (nothing for a remote WebDriver server, which owns its
    /// browsers). Given its own `--user-data-dir`, chromedriver quits the
    /// browser gracefully, so that Chromium writes the profile back (about
    /// 50 ms more here, longer for a busy page); this profile is removed
    /// after the run, so there is nothing to keep. Killed first, the
    /// browser is gone at once and the session's close only tidies
    /// chromedriver's books; a command of a hung browser still in flight
    /// fails at once instead of holding the close.
    async fn end_browser(&self) {
        let Some(profile) = self.profile.clone() else {
            return;
        };
        let killed =
            tokio::task::spawn_blocking(move || driver::kill_browser_of_profile(&profile)).await;
        if let Ok(killed) = killed {
            tracing::trace!(killed, "browser of a finished run ended");
            self.ended.store(true, Ordering::SeqCst);
        }
    }
}

/// What a slot gives back, in its own drop: runs on a blocking thread.
struct Release {
    inner: Arc<Inner>,
    profile: Option<PathBuf>,
    /// Its browser was killed already (`Slot::end_browser`): nothing of it
    /// runs, and chromedriver starts no browser on a session's close.
    browser_ended: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            if !self.browser_ended {
                let killed = driver::kill_browser_of_profile(profile);
                if killed > 0 {
                    tracing::debug!(killed, "killed browser processes left by a session");
                }
            }
            if let Err(error) = std::fs::remove_dir_all(profile)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, profile = %profile.display(), "cannot remove a browser profile");
            }
        }
        self.inner.in_use.fetch_sub(1, Ordering::SeqCst);
        self.inner.freed.notify_waiters();
    }
}

/// One run of a flow, as the runner hands it over.
pub struct Flow<'a> {
    pub check: &'a str,
    pub spec: &'a BrowserSpec,
    pub timeout: Duration,
    pub user_agent: String,
    pub secrets: &'a Secrets,
    pub on_step: Option<&'a StepObserver>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Driver(#[from] driver::DriverError),
    #[error("cannot create the browser profile directory: {0}")]
    Profile(std::io::Error),
    #[error("the WebDriver server refused a session: {0}")]
    NewSession(String),
    #[error("starting the browser took longer than {0}s")]
    StartTimeout(u64),
    #[error("the probe is shutting down")]
    Closed,
}

impl BrowserPool {
    pub fn new(options: BrowserOptions) -> BrowserPool {
        let local = options.webdriver.is_none();
        BrowserPool {
            inner: Arc::new(Inner {
                remote: options.webdriver,
                local: tokio::sync::Mutex::new(None),
                permits: Arc::new(Semaphore::new(options.sessions.max(1))),
                in_use: Arc::new(AtomicUsize::new(0)),
                freed: Notify::new(),
                closed: AtomicBool::new(false),
                chromium: if local { find_chromium() } else { None },
                // A WebDriver server given by URL is almost always a
                // container (Selenium images, a chromedriver sidecar), where
                // the sandbox cannot start; locally, decide from here.
                no_sandbox: !local || needs_no_sandbox(),
                profiles_in: options.profiles_in.unwrap_or_else(std::env::temp_dir),
            }),
        }
    }

    /// Browser sessions running now (starting, running steps, or closing):
    /// the `lookout_browser_sessions_in_use` gauge.
    pub fn sessions_in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::SeqCst)
    }

    /// The same count as a shared atomic, for a metrics registry to read.
    pub fn sessions_gauge(&self) -> Arc<AtomicUsize> {
        self.inner.in_use.clone()
    }

    /// The local chromedriver's process id, when one runs (tests look for
    /// its descendants).
    pub async fn chromedriver_pid(&self) -> Option<u32> {
        self.inner.local.lock().await.as_ref().map(|d| d.pid())
    }

    /// Stops taking flows, waits (bounded) for sessions to close, then
    /// stops the local chromedriver and every browser it started.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.permits.close();
        if !self
            .sessions_freed_within(limits::BROWSER_SHUTDOWN_SESSIONS_WAIT)
            .await
        {
            tracing::warn!(
                sessions = self.sessions_in_use(),
                "browser sessions still open at shutdown; stopping chromedriver anyway"
            );
        }
        if let Some(driver) = self.inner.local.lock().await.take() {
            driver.stop().await;
            tracing::debug!("chromedriver stopped");
        }
        // Closes still waiting on the stopped chromedriver fail at once now,
        // and their slots are given back.
        self.sessions_freed_within(limits::CHROMEDRIVER_STOP_GRACE)
            .await;
    }

    /// Waits until no session is in use, at most `wait`; whether it got there.
    async fn sessions_freed_within(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.inner.freed.notified();
            if self.sessions_in_use() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.sessions_in_use() == 0;
            }
        }
    }

    /// The WebDriver URL, starting (or restarting) the local chromedriver.
    async fn webdriver_url(&self) -> Result<String, SessionError> {
        if let Some(remote) = &self.inner.remote {
            return Ok(remote.as_str().trim_end_matches('/').to_string());
        }
        let mut local = self.inner.local.lock().await;
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SessionError::Closed);
        }
        if let Some(driver) = local.as_mut() {
            if driver.is_alive() {
                return Ok(driver.url());
            }
            tracing::warn!("chromedriver exited; starting it again");
        }
        let driver = LocalDriver::start().await?;
        let url = driver.url();
        tracing::info!(%url, pid = driver.pid(), "chromedriver started");
        *local = Some(driver);
        Ok(url)
    }

    /// Runs one flow: waits for a session slot (not counted against the
    /// timeout), then runs every step within `flow.timeout`.
    pub async fn run(&self, flow: Flow<'_>) -> Report {
        let queued = tokio::time::Instant::now();
        let Some(slot) = self.slot().await else {
            return Report::error(SessionError::Closed.to_string(), Phases::default());
        };
        let waited = queued.elapsed();
        let mut report = flow::run(self, slot, flow).await;
        report.waited = waited;
        if waited >= Duration::from_millis(1) {
            report.notes.push(format!(
                "waited {}ms for a browser session",
                waited.as_millis()
            ));
        }
        report
    }

    /// Waits for a session slot (`None`: the pool is shut down), with the
    /// path of the fresh profile it owns when the browser is local.
    async fn slot(&self) -> Option<Arc<Slot>> {
        let permit = self.inner.permits.clone().acquire_owned().await.ok()?;
        self.inner.in_use.fetch_add(1, Ordering::SeqCst);
        let profile = self.inner.remote.is_none().then(|| {
            self.inner
                .profiles_in
                .join(format!("lookout-chromium-{}", uuid::Uuid::now_v7()))
        });
        Some(Arc::new(Slot {
            inner: self.inner.clone(),
            profile,
            permit: Some(permit),
            ended: AtomicBool::new(false),
        }))
    }

    /// The local chromedriver's home directory (its XDG config and cache),
    /// when one runs: crash handlers are found by it.
    pub async fn chromedriver_home(&self) -> Option<PathBuf> {
        self.inner
            .local
            .lock()
            .await
            .as_ref()
            .map(|d| d.home().to_path_buf())
    }

    /// Creates a WebDriver session for `slot`. The creation runs in a task
    /// of its own holding the slot: if the flow gives up waiting (timeout,
    /// cancellation), a session created later is closed by that task and
    /// never leaks.
    async fn new_session(
        &self,
        slot: &Arc<Slot>,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<fantoccini::Client, SessionError> {
        let url = self.webdriver_url().await?;
        if let Some(profile) = &slot.profile {
            make_profile(profile).map_err(SessionError::Profile)?;
        }
        let caps = self.capabilities(slot.profile.as_ref(), user_agent, timeout);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let holder = slot.clone();
        tokio::spawn(async move {
            let mut builder = fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            );
            builder.capabilities(caps);
            let made =
                tokio::time::timeout(limits::BROWSER_START_TIMEOUT, builder.connect(&url)).await;
            let made = match made {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(error)) => Err(SessionError::NewSession(first_line(&error.to_string()))),
                Err(_) => Err(SessionError::StartTimeout(
                    limits::BROWSER_START_TIMEOUT.as_secs(),
                )),
            };
            if let Err(Ok(client)) = tx.send(made) {
                // Nobody waits for it any more: close it at once.
                close_session(client).await;
            }
            drop(holder);
        });
        match rx.await {
            Ok(made) => made,
            Err(_) => Err(SessionError::Closed),
        }
    }

    fn capabilities(
        &self,
        profile: Option<&PathBuf>,
        user_agent: &str,
        timeout: Duration,
    ) -> fantoccini::wd::Capabilities {
        let mut args = vec![
            "--headless=new".to_string(),
            format!(
                "--window-size={},{}",
                limits::BROWSER_WINDOW_WIDTH,
                limits::BROWSER_WINDOW_HEIGHT
            ),
            // No traffic of the browser's own: updates, sync, metrics,
            // safe-browsing lists, translation. The probe measures the site.
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-default-apps".to_string(),
            "--disable-sync".to_string(),
            "--disable-extensions".to_string(),
            "--disable-crash-reporter".to_string(),
            "--disable-features=Translate,OptimizationHints,MediaRouter".to_string(),
            "--metrics-recording-only".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--password-store=basic".to_string(),
            "--mute-audio".to_string(),
            "--disable-gpu".to_string(),
            // Containers give /dev/shm 64 MiB; Chromium would crash on it.
            "--disable-dev-shm-usage".to_string(),
            format!("--user-agent={user_agent}"),
        ];
        if let Some(profile) = profile {
            args.push(format!("--user-data-dir={}", profile.display()));
        }
        if self.inner.no_sandbox {
            // Chromium's sandbox cannot start as root or in most containers.
            args.push("--no-sandbox".to_string());
        }
        let mut chrome = json!({ "args": args });
        if let Some(binary) = &self.inner.chromium {
            chrome["binary"] = json!(binary.display().to_string());
        }
        let ms = timeout.as_millis().min(u128::from(u32::MAX)) as u64;
        let mut caps = fantoccini::wd::Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        caps.insert("pageLoadStrategy".into(), json!("normal"));
        caps.insert("unhandledPromptBehavior".into(), json!("dismiss"));
        // The browser's log holds the page's console errors and failed
        // requests (read after each step).
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        caps.insert(
            "timeouts".into(),
            json!({ "implicit": 0, "pageLoad": ms, "script": ms }),
        );
        caps
    }
}

/// What a fresh profile starts with: the preferences chromedriver writes
/// into a profile it makes itself. Without them a new profile has Safe
/// Browsing on, and the first page of every run waits for its first check
/// (about 0.3-0.4 s here); search suggestions and translation are off too.
/// The probe measures the site, not the browser's own services.
///
/// The browser starts on `data:,`, as it does in a profile chromedriver
/// makes (where chromedriver puts the URL on the command line; given a
/// `--user-data-dir` it puts none). Otherwise the first tab is the New Tab
/// Page, still loading when the session is made: the first DevTools
/// command then waits for it, 1.1-5 s here, and closing waits again.
const PROFILE_PREFERENCES: &str = r#"{"browser":{"check_default_browser":false},"credentials_enable_service":false,"distribution":{"import_bookmarks":false,"import_history":false,"import_search_engine":false,"make_chrome_default_for_user":false,"skip_first_run_ui":true},"dns_prefetching":{"enabled":false},"profile":{"password_manager_enabled":false},"safebrowsing":{"enabled":false},"search":{"suggest_enabled":false},"session":{"restore_on_startup":4,"startup_urls":["data:,"]},"translate":{"enabled":false}}"#;
/// The browser-wide part (`Local State`), as chromedriver writes it.
const PROFILE_LOCAL_STATE: &str =
    r#"{"background_mode":{"enabled":false},"ssl":{"rev_checking":{"enabled":false}}}"#;

/// Makes a run's fresh, empty profile directory with the preferences above.
fn make_profile(profile: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(profile.join("Default"))?;
    std::fs::write(
        profile.join("Default").join("Preferences"),
        PROFILE_PREFERENCES,
    )?;
    std::fs::write(profile.join("Local State"), PROFILE_LOCAL_STATE)
}

/// Closes a session, bounded: a browser that does not answer is killed
/// when its slot is let go.
async fn close_session(client: fantoccini::Client) {
    match tokio::time::timeout(limits::BROWSER_CLOSE_GRACE, client.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing a browser session failed"),
        Err(_) => tracing::warn!("a browser session did not close in time; killing it"),
    }
}

/// The Chromium binary for goog:chromeOptions (Debian names it
/// `chromium`, which chromedriver does not look for by itself).
fn find_chromium() -> Option<PathBuf> {
    driver::find_on_path(&[
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ])
}

/// Chromium's sandbox cannot start as root, nor in most containers (the
/// default seccomp profiles, Kubernetes' `restricted` level): there it runs
/// with `--no-sandbox`. Elsewhere it keeps its sandbox.
fn needs_no_sandbox() -> bool {
    nix::unistd::geteuid().is_root()
        || std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("container").is_some()
}

/// WebDriver errors carry a stack of lines (session info, backtrace).
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh profile opens on `data:,`, as one chromedriver makes does;
    /// on the New Tab Page the first DevTools command waited for it to load
    /// (1-5 s a run, #19). Real chromedriver and Chromium.
    #[tokio::test]
    async fn a_fresh_session_starts_on_a_blank_page() {
        let pool = BrowserPool::new(BrowserOptions {
            sessions: 1,
            ..BrowserOptions::default()
        });
        let slot = pool.slot().await.expect("a slot");
        let session = pool
            .new_session(&slot, "lookout-test", Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("no session: {e}"));
        let first = session.current_url().await.map(|u| u.to_string());
        close_session(session).await;
        drop(slot);
        pool.shutdown().await;
        assert_eq!(first.ok().as_deref(), Some("data:,"));
    }
}
