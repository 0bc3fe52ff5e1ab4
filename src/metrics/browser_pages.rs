//! The browser series of a scrape: each page's Web Vitals of the latest
//! browser runs (seconds; CLS unitless in a gauge of its own) and how many
//! console errors and failed requests those runs listed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{CheckRegion, FloatGauge, gauge_value};
use crate::result::ProbeResult;

/// A browser page's Web Vital: `step` is the index of the step that opened
/// the page (bounded by the steps a flow may have).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebVitalLabels {
    check: String,
    region: String,
    step: String,
    vital: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PageLabels {
    check: String,
    region: String,
    step: String,
}

/// The latest browser results' Web Vitals (seconds; CLS unitless in its
/// own gauge) and their console errors and failed requests.
pub(super) fn register(registry: &mut Registry, results: &[&ProbeResult]) {
    let vitals = Family::<WebVitalLabels, FloatGauge>::default();
    let shifts = Family::<PageLabels, FloatGauge>::default();
    let console = Family::<CheckRegion, Gauge>::default();
    let requests = Family::<CheckRegion, Gauge>::default();
    for result in results {
        for (i, step) in result.steps.iter().enumerate() {
            let Some(page) = &step.vitals else {
                continue;
            };
            for (vital, ms) in page.timings() {
                vitals
                    .get_or_create(&WebVitalLabels {
                        check: result.check.clone(),
                        region: result.region.clone(),
                        step: (i + 1).to_string(),
                        vital,
                    })
                    .set(ms / 1000.0);
            }
            if let Some(cls) = page.cls {
                shifts
                    .get_or_create(&PageLabels {
                        check: result.check.clone(),
                        region: result.region.clone(),
                        step: (i + 1).to_string(),
                    })
                    .set(cls);
            }
        }
        {
            let labels = CheckRegion {
                check: result.check.clone(),
                region: result.region.clone(),
            };
            console
                .get_or_create(&labels)
                .set(gauge_value(result.browser.console_errors.len() as u64));
            requests
                .get_or_create(&labels)
                .set(gauge_value(result.browser.request_errors.len() as u64));
        }
    }
    registry.register_with_unit(
        "lookout_browser_web_vital",
        "Web Vitals of each page of the latest browser run (ttfb, fcp, lcp, inp, tbt), by the step that opened it",
        Unit::Seconds,
        vitals,
    );
    registry.register(
        "lookout_browser_cumulative_layout_shift",
        "Cumulative Layout Shift of each page of the latest browser run (unitless), by the step that opened it",
        shifts,
    );
    registry.register(
        "lookout_browser_console_errors",
        "Console errors the pages of the latest browser run logged (the first ones kept)",
        console,
    );
    registry.register(
        "lookout_browser_request_errors",
        "Requests of the pages of the latest browser run that failed (4xx, 5xx, network; the first ones kept)",
        requests,
    );
}
