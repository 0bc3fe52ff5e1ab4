//! `p95_above_baseline`: a check's recent p95 against its own 7-day
//! baseline from the hourly roll-ups, fed to the rules as `Input::Latency`.

use chrono::{DateTime, Utc};

use crate::limits;
use crate::storage::StorageError;

use super::*;

impl Aggregator {
    /// The `p95_above_baseline` rule: for each check that has it, compares
    /// the p95 of its ok runs over `LATENCY_RECENT_WINDOW` with its own p95
    /// over the `LATENCY_BASELINE_WINDOW` before (from the roll-ups), and
    /// makes the check degraded while the recent one is above the factor.
    pub async fn judge_latency(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
        use crate::rollup::hour_of;
        let config = self.config();
        let mut verdicts = Vec::new();
        for check in config.checks.iter() {
            let Some(factor) = check.alert.p95_above_baseline else {
                // The rule may have been removed by a reload: an anomaly it
                // left must not keep the check degraded.
                verdicts.push((check.name.clone(), None));
                continue;
            };
            let recent_from =
                now - chrono::Duration::from_std(limits::LATENCY_RECENT_WINDOW).unwrap_or_default();
            let mut recent = self
                .storage
                .history()
                .recent_ok_latencies(check.name.clone(), recent_from.timestamp_millis(), 100_000)
                .await?;
            let baseline_to = hour_of(recent_from.timestamp_millis());
            let baseline_from = baseline_to
                - i64::try_from(limits::LATENCY_BASELINE_WINDOW.as_millis()).unwrap_or(i64::MAX);
            let baseline = self
                .storage
                .history()
                .check_latency(check.name.clone(), baseline_from, baseline_to)
                .await?;
            let anomaly = match baseline.quantile(0.95) {
                Some(base)
                    if recent.len() >= limits::LATENCY_RECENT_MIN_RESULTS
                        && baseline.count() >= limits::LATENCY_BASELINE_MIN_RESULTS =>
                {
                    recent.sort_by(f64::total_cmp);
                    let rank =
                        ((recent.len() as f64 * 0.95).ceil() as usize).clamp(1, recent.len());
                    let p95 = recent[rank - 1];
                    // Hysteresis: once degraded, it takes a clear drop (not
                    // a p95 hovering at the line) to be up again.
                    let anomalous_now = self
                        .states
                        .get(&check.name)
                        .is_some_and(|s| s.latency_anomaly.is_some());
                    let line = if anomalous_now {
                        base * factor * limits::LATENCY_RECOVERY_RATIO
                    } else {
                        base * factor
                    };
                    (p95 > line).then(|| {
                        format!(
                            "p95 {p95:.0}ms over the last {} is above {factor}x its 7-day p95 ({base:.0}ms)",
                            crate::schedule::format_duration(limits::LATENCY_RECENT_WINDOW)
                        )
                    })
                }
                _ => None,
            };
            verdicts.push((check.name.clone(), anomaly));
        }
        // Only the verdicts that differ from the cached copies go to a
        // decision, which compares them with the stored states again.
        verdicts.retain(|(name, anomaly)| {
            self.states
                .get(name)
                .is_some_and(|state| &state.latency_anomaly != anomaly)
        });
        if verdicts.is_empty() {
            return Ok(IngestReport::default());
        }
        let checks: Vec<String> = verdicts.iter().map(|(name, _)| name.clone()).collect();
        let judge = self.judge(&config, &checks, now);
        let (load, judge) = self.load_for(checks, Vec::new(), judge);
        let (committed, judged) = self
            .storage
            .decide(load, move |loaded| judge.latency(loaded, verdicts))
            .await?;
        Ok(self.committed(committed, judged, |_| {}))
    }
}
