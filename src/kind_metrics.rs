//! The Prometheus series of the `icmp` and `grpc` kinds, named as
//! blackbox_exporter names them (`probe_icmp_duration_seconds{phase}`,
//! `probe_icmp_reply_hop_limit`, `probe_grpc_healthcheck_response
//! {serving_status}`, `probe_grpc_status_code`), built from the latest
//! results at each scrape as `metrics`' other `probe_*` gauges are. Apart
//! from `metrics.rs` so each kind's figures stay beside each other.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::CheckSnapshot;
use crate::result::ProbeResult;

type FloatGauge = Gauge<f64, AtomicU64>;

/// The serving statuses of `grpc.health.v1`, as blackbox lists them.
const SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Target {
    check: String,
    region: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetPhase {
    check: String,
    region: String,
    target: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetServing {
    check: String,
    region: String,
    target: String,
    serving_status: &'static str,
}

/// Adds the icmp and grpc series for `results`, each labelled with its
/// check's target; results of checks no longer configured are left out.
pub(crate) fn register(
    registry: &mut Registry,
    results: &[ProbeResult],
    checks: &HashMap<&str, &CheckSnapshot>,
) {
    let icmp_duration = Family::<TargetPhase, FloatGauge>::default();
    let hop_limit = Family::<Target, Gauge>::default();
    let serving = Family::<TargetServing, Gauge>::default();
    let status_code = Family::<Target, Gauge>::default();
    for result in results {
        let Some(check) = checks.get(result.check.as_str()) else {
            continue;
        };
        let target = check.target.as_str();
        let labels = Target {
            check: result.check.clone(),
            region: result.region.clone(),
            target: target.to_string(),
        };
        let phase = |phase| TargetPhase {
            check: labels.check.clone(),
            region: labels.region.clone(),
            target: labels.target.clone(),
            phase,
        };
        if let Some(icmp) = &result.icmp {
            if let Some(ms) = result.phases_ms.dns {
                icmp_duration
                    .get_or_create(&phase("resolve"))
                    .set(ms / 1000.0);
            }
            if let Some(ms) = icmp.rtt_avg_ms {
                icmp_duration.get_or_create(&phase("rtt")).set(ms / 1000.0);
            }
            if let Some(limit) = icmp.reply_hop_limit {
                hop_limit.get_or_create(&labels).set(i64::from(limit));
            }
        }
        if let Some(grpc) = &result.grpc {
            status_code
                .get_or_create(&labels)
                .set(i64::from(grpc.status_code));
            if let Some(current) = &grpc.serving_status {
                for candidate in SERVING_STATUSES {
                    serving
                        .get_or_create(&TargetServing {
                            check: labels.check.clone(),
                            region: labels.region.clone(),
                            target: labels.target.clone(),
                            serving_status: candidate,
                        })
                        .set(i64::from(candidate == current));
                }
            }
        }
    }
    registry.register_with_unit(
        "probe_icmp_duration",
        "Phases of the latest ICMP run (resolve; rtt: the mean round trip), as blackbox_exporter",
        Unit::Seconds,
        icmp_duration,
    );
    registry.register(
        "probe_icmp_reply_hop_limit",
        "TTL (IPv4) or hop limit (IPv6) of the latest echo reply, as blackbox_exporter",
        hop_limit,
    );
    registry.register(
        "probe_grpc_healthcheck_response",
        "1 for the serving status the latest gRPC health check answered, 0 for the others",
        serving,
    );
    registry.register(
        "probe_grpc_status_code",
        "gRPC status code of the latest health check call (0: OK)",
        status_code,
    );
}
