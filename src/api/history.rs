//! Gathers `/checks/{name}`'s figures from storage: the check's incident
//! events of the shown days (its incidents, each with its duration), each
//! day's p95 from the hourly roll-ups, and each region's latest failing
//! result among the recent ones with its screenshot when one is kept.
//! What is shown of a failure passes the same redaction as the main page.

use chrono::{Duration, TimeZone, Utc};

use crate::aggregator::Aggregator;
use crate::limits;
use crate::result::Outcome;
use crate::status::check_page::{CheckHistory, LastFailure};
use crate::status::{self, CheckStatus, DAYS_SHOWN};
use crate::storage::StorageError;

pub(super) async fn gather(
    aggregator: &Aggregator,
    check: CheckStatus,
) -> Result<CheckHistory, StorageError> {
    let now = aggregator.clock().now();
    let history = aggregator.history();
    let name = check.name.clone();
    let since = now - Duration::days(DAYS_SHOWN as i64);
    let mut events = history
        .recent_events(name.clone(), limits::STATUS_EVENTS_MAX)
        .await?;
    events.retain(|e| e.at >= since);
    events.reverse();
    let shown: std::collections::HashSet<&str> = [name.as_str()].into_iter().collect();
    let incidents = status::incidents(&events, &shown, now, usize::MAX);

    let mut daily_p95_ms = Vec::with_capacity(check.days.len());
    for day in &check.days {
        let start = Utc
            .from_utc_datetime(&day.date.and_hms_opt(0, 0, 0).unwrap_or_default())
            .timestamp_millis();
        let latency = history
            .check_latency(name.clone(), start, start + 86_400_000)
            .await?;
        daily_p95_ms.push(latency.quantile(0.95));
    }

    let config = aggregator.config();
    let results = history
        .recent_results(name.clone(), limits::CHECK_PAGE_RESULTS_MAX)
        .await?;
    let mut last_failures: Vec<LastFailure> = Vec::new();
    let mut ids = Vec::new();
    for result in results.iter().filter(|r| r.outcome != Outcome::Ok) {
        if last_failures.iter().any(|f| f.region == result.region) {
            continue;
        }
        let reason = result
            .error
            .clone()
            .unwrap_or_else(|| result.outcome.as_str().to_string());
        let reason = match config.check(&name) {
            Some(c) if c.status_page.hide_target => status::hide_target_in(&reason, &c.target()),
            _ => config.secrets.redact(&reason),
        };
        ids.push(result.id.to_string());
        last_failures.push(LastFailure {
            region: result.region.clone(),
            at: result.started_at,
            outcome: result.outcome,
            reason,
            screenshot: Some(result.id.to_string()),
        });
    }
    let kept = history.screenshots_present(ids).await?;
    for failure in &mut last_failures {
        failure.screenshot = failure
            .screenshot
            .take()
            .filter(|id| kept.contains(id))
            .map(|id| format!("/api/v1/results/{id}/screenshot"));
    }
    last_failures.sort_by(|a, b| a.region.cmp(&b.region));
    Ok(CheckHistory {
        check,
        daily_p95_ms,
        incidents,
        last_failures,
    })
}
