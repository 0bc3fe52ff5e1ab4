//! Latency histograms that summarise stored results, so that figures over
//! days and weeks (the status page's percentiles, the `p95_above_baseline`
//! rule's 7-day baseline) are computed from a few rows per check and hour
//! instead of every result.
//!
//! A [`LatencyHistogram`] counts run times in logarithmic buckets, each 10%
//! wider than the one before, from 1 ms to about 25 minutes (slower runs
//! share the last bucket; no check timeout is that long). Quantiles read from it are within 5% of the exact
//! value, which is finer than run-to-run noise of any network check.
//! Histograms merge by adding counts, so an hour, a day or a week is the
//! sum of its hours. On disk a histogram is its non-empty buckets, five
//! bytes each.
//!
//! Storage keeps one row per (check, region, hour) in `latency_hourly`,
//! written by the roll-up task once the hour is over and rewritten when late
//! results (a probe's spool draining) land in an hour already rolled up.

/// Each bucket's upper bound is this factor times the previous one's.
const GROWTH: f64 = 1.1;
/// Buckets: bound `GROWTH^i` ms for i in 0..BUCKETS; the last also takes
/// anything slower (1.1^149 ms is about 25 minutes). Fits a `u8` index.
const BUCKETS: usize = 150;

/// `counts` reaches only as far as the highest bucket counted (#19: a
/// decoded roll-up of 40-100 ms runs holds 50 buckets, not 150; the status
/// page decodes one per check and hour), so two histograms are equal when
/// their counts are, whatever their lengths.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    counts: Vec<u32>,
    total: u64,
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        let at = |h: &LatencyHistogram, i: usize| h.counts.get(i).copied().unwrap_or(0);
        self.total == other.total
            && (0..self.counts.len().max(other.counts.len())).all(|i| at(self, i) == at(other, i))
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        LatencyHistogram::default()
    }

    fn bucket(ms: f64) -> usize {
        if !ms.is_finite() || ms <= 1.0 {
            return 0;
        }
        let index = (ms.ln() / GROWTH.ln()).ceil();
        (index as usize).min(BUCKETS - 1)
    }

    /// Long enough to count in `bucket`.
    fn reach(&mut self, bucket: usize) {
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
    }

    pub fn record(&mut self, ms: f64) {
        let bucket = Self::bucket(ms);
        self.reach(bucket);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.total += 1;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        if let Some(last) = other.counts.len().checked_sub(1) {
            self.reach(last);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total += other.total;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Empty again, keeping its buckets (to be reused without allocating).
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }

    /// The `q` quantile (0..=1) in ms: the geometric middle of the bucket
    /// it falls in. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(if index == 0 {
                    1.0
                } else {
                    GROWTH.powf(index as f64 - 0.5)
                });
            }
        }
        None
    }

    /// Non-empty buckets as (index, count) pairs, five bytes each.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, count) in self.counts.iter().enumerate() {
            if *count > 0 {
                out.push(index as u8);
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        out
    }

    /// The inverse of `encode`; bytes that do not decode are skipped, so a
    /// damaged row costs its own figures and nothing else.
    pub fn decode(bytes: &[u8]) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::new();
        let highest = bytes
            .chunks_exact(5)
            .map(|chunk| usize::from(chunk[0]))
            .filter(|index| *index < BUCKETS)
            .max();
        if let Some(highest) = highest {
            histogram.counts = Vec::with_capacity(highest + 1);
            histogram.reach(highest);
        }
        for chunk in bytes.chunks_exact(5) {
            let index = usize::from(chunk[0]);
            if index >= BUCKETS {
                continue;
            }
            let count = u32::from_le_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]);
            histogram.counts[index] = histogram.counts[index].saturating_add(count);
            histogram.total += u64::from(count);
        }
        histogram
    }
}

/// One hour of one check in one region.
#[derive(Clone, Debug, PartialEq)]
pub struct HourRollup {
    pub check: String,
    pub region: String,
    pub hour_ms: i64,
    /// Results in the hour, and how many were ok.
    pub total: u64,
    pub ok: u64,
    /// Run times of the ok results (a timeout's duration says nothing about
    /// the service's speed).
    pub latency: LatencyHistogram,
}

/// One hour's results counted into roll-ups, a row at a time: what every
/// storage backend's roll-up feeds from its rows.
pub(crate) struct HourTally {
    hour_ms: i64,
    rollups: std::collections::HashMap<(String, String), HourRollup>,
}

impl HourTally {
    pub(crate) fn new(hour_ms: i64) -> HourTally {
        HourTally {
            hour_ms,
            rollups: std::collections::HashMap::new(),
        }
    }

    /// Counts one result of `check` in `region`: ok ones add their run time.
    pub(crate) fn add(&mut self, check: String, region: String, ok: bool, ms: f64) {
        let hour_ms = self.hour_ms;
        let entry = self
            .rollups
            .entry((check.clone(), region.clone()))
            .or_insert_with(|| HourRollup {
                check,
                region,
                hour_ms,
                total: 0,
                ok: 0,
                latency: LatencyHistogram::new(),
            });
        entry.total += 1;
        if ok {
            entry.ok += 1;
            entry.latency.record(ms);
        }
    }

    /// The hour's roll-ups, one per check and region that had results.
    pub(crate) fn rollups(self) -> impl Iterator<Item = HourRollup> {
        self.rollups.into_values()
    }
}

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The start of the hour `ms` falls in.
pub(crate) fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent() {
        let mut histogram = LatencyHistogram::new();
        for ms in 1..=1000 {
            histogram.record(ms as f64);
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let estimate = histogram.quantile(q).unwrap();
            assert!(
                (estimate - exact).abs() / exact < 0.05,
                "q{q}: {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn encoding_round_trips_and_merging_adds() {
        let mut a = LatencyHistogram::new();
        a.record(3.0);
        a.record(250.0);
        a.record(1e9);
        let decoded = LatencyHistogram::decode(&a.encode());
        assert_eq!(decoded, a);
        assert_eq!(a.encode().len(), 15);
        let mut merged = LatencyHistogram::new();
        merged.merge(&a);
        merged.merge(&decoded);
        assert_eq!(merged.count(), 6);
        assert_eq!(LatencyHistogram::decode(&[200, 1, 0, 0, 0, 7]).count(), 0);
    }

    #[test]
    fn short_and_long_histograms_merge_and_compare_by_counts() {
        // Fast runs only: decoded, it reaches no further than their bucket.
        let mut fast = LatencyHistogram::new();
        fast.record(2.0);
        let mut slow = LatencyHistogram::new();
        slow.record(2.0);
        slow.record(900.0);
        let mut merged = LatencyHistogram::decode(&fast.encode());
        merged.merge(&slow);
        assert_eq!(merged.count(), 3);
        let high = merged.quantile(1.0).unwrap();
        assert!((high - 900.0).abs() / 900.0 < 0.05, "{high}");
        // A cleared long histogram equals a new short one.
        let mut cleared = slow.clone();
        cleared.clear();
        assert_eq!(cleared, LatencyHistogram::new());
        cleared.record(2.0);
        assert_eq!(cleared, fast);
        assert_ne!(cleared, slow);
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        assert_eq!(LatencyHistogram::new().quantile(0.5), None);
        assert_eq!(hour_of(HOUR_MS + 5), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }
}
