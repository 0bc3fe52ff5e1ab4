//! The `icmp` check kind: `count` echo requests `interval` apart to `host`
//! (a name or an IPv4/IPv6 address), `payload_size` bytes each. Whether the
//! loss is acceptable is `expect.packet_loss_below` (default: one reply).

use super::check::{IpFamily, check_literal_family, decode_ip_family};
use std::time::Duration;

use super::decode::Ctx;
use super::yaml::{Node, Pos, Value};
use crate::limits;

#[derive(Clone, Debug)]
pub struct IcmpSpec {
    /// A name (resolved at each run) or an IP address, without brackets.
    pub host: String,
    pub count: u32,
    pub interval: Duration,
    pub payload_size: usize,
    /// Which addresses of `host` to ping (the first of that family).
    pub ip_family: IpFamily,
}

impl IcmpSpec {
    /// How long sending takes: the last request leaves this long after the first.
    pub fn sending_time(&self) -> Duration {
        self.interval.saturating_mul(self.count.saturating_sub(1))
    }
}

pub(super) fn decode_icmp(ctx: &mut Ctx, name: &str, node: &Node) -> Option<IcmpSpec> {
    let what = format!("`icmp` of check `{name}`");
    let fields = ctx.fields(
        node,
        &what,
        &["host", "count", "interval", "payload_size", "ip_family"],
    )?;
    let ip_family = decode_ip_family(ctx, &fields);
    let host = match fields.get("host") {
        Some(n) => ctx.string(n, "`host`").and_then(|text| {
            let host = text.trim_start_matches('[').trim_end_matches(']');
            let plausible = !host.is_empty()
                && !host.contains(['/', ' ', '@'])
                && (host.parse::<std::net::IpAddr>().is_ok() || !host.contains(':'));
            if plausible {
                Some(host.to_string())
            } else {
                ctx.error(
                    n.pos,
                    format!(
                        "`host` must be a host name or an IP address (no port), found `{text}`"
                    ),
                );
                None
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `host`"));
            None
        }
    };
    if let (Some(host), Some(family)) = (&host, ip_family)
        && !check_literal_family(ctx, &fields, family, host)
    {
        return None;
    }
    let count = match fields.get("count") {
        Some(n) => ctx.positive_u32(n, "`count`").and_then(|count| {
            if count > limits::ICMP_COUNT_MAX {
                ctx.error(
                    n.pos,
                    format!("`count` must be at most {}", limits::ICMP_COUNT_MAX),
                );
                None
            } else {
                Some(count)
            }
        }),
        None => Some(limits::ICMP_COUNT_DEFAULT),
    };
    let interval = match fields.get("interval") {
        Some(n) => ctx.duration(n, "`interval`").and_then(|interval| {
            if interval < limits::ICMP_INTERVAL_MIN {
                ctx.error(
                    n.pos,
                    format!(
                        "`interval` must be at least {}ms",
                        limits::ICMP_INTERVAL_MIN.as_millis()
                    ),
                );
                None
            } else {
                Some(interval)
            }
        }),
        None => Some(limits::ICMP_INTERVAL_DEFAULT),
    };
    let payload_size = match fields.get("payload_size") {
        Some(n) => payload_size(ctx, n),
        None => Some(limits::ICMP_PAYLOAD_BYTES_DEFAULT),
    };
    Some(IcmpSpec {
        host: host?,
        count: count?,
        interval: interval?,
        payload_size: payload_size?,
        ip_family: ip_family?,
    })
}

fn payload_size(ctx: &mut Ctx, node: &Node) -> Option<usize> {
    let parsed = match &node.value {
        Value::Number(n) => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= limits::ICMP_PAYLOAD_BYTES_MAX),
        _ => None,
    };
    if parsed.is_none() {
        ctx.error(
            node.pos,
            format!(
                "`payload_size` must be a whole number of bytes from 0 to {}",
                limits::ICMP_PAYLOAD_BYTES_MAX
            ),
        );
    }
    parsed
}

/// The requests must all leave within the check's timeout, with time left
/// for the last reply.
pub(super) fn check_fits_timeout(ctx: &mut Ctx, spec: &IcmpSpec, timeout: Duration, pos: Pos) {
    let sending = spec.sending_time();
    if sending >= timeout {
        ctx.error(
            pos,
            format!(
                "`icmp` sends {} requests {} apart, {} in all, which does not fit in the check's `timeout` of {}",
                spec.count,
                crate::schedule::format_duration(spec.interval),
                crate::schedule::format_duration(sending),
                crate::schedule::format_duration(timeout),
            ),
        );
    }
}
