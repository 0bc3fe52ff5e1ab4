//! `expect:` of a check: accepted statuses (codes and classes such as
//! `2xx`), what the body must contain or match (a size-bounded regex) and
//! the latency above which the check is degraded.

use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::decode::Ctx;
use super::yaml::{Node, Value};
use crate::limits;

#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// Empty: any 2xx.
    pub status: Vec<StatusRange>,
    pub body_contains: Option<String>,
    pub body_matches: Option<Regex>,
    pub max_latency: Option<Duration>,
    /// icmp: the loss (percent) must stay below this; `None`: one reply is enough.
    pub packet_loss_below: Option<f64>,
}

/// One accepted status: `200`, or a class such as `2xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}xx", self.low / 100)
        }
    }
}
pub(super) fn decode_expect(ctx: &mut Ctx, name: &str, node: &Node) -> Option<Expect> {
    let fields = ctx.fields(
        node,
        &format!("`expect` of check `{name}`"),
        &[
            "status",
            "body_contains",
            "body_matches",
            "max_latency",
            "packet_loss_below",
        ],
    )?;
    let mut expect = Expect::default();
    let mut ok = true;
    if let Some(n) = fields.get("status") {
        let items: Vec<&Node> = match &n.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            match parse_status(&item.value) {
                Some(range) => expect.status.push(range),
                None => {
                    ctx.error(
                        item.pos,
                        "`status` entries must be codes (100-599) or classes such as 2xx",
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(n) = fields.get("body_contains") {
        expect.body_contains = ctx.string(n, "`body_contains`");
        ok &= expect.body_contains.is_some();
    }
    if let Some(n) = fields.get("body_matches") {
        let compiled = ctx.string(n, "`body_matches`").and_then(|pattern| {
            match regex::RegexBuilder::new(&pattern)
                .size_limit(limits::REGEX_BYTES_MAX)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    let why = e.to_string().lines().last().unwrap_or_default().to_string();
                    ctx.error(
                        n.pos,
                        format!("invalid regular expression in `body_matches`: {why}"),
                    );
                    None
                }
            }
        });
        ok &= compiled.is_some();
        expect.body_matches = compiled;
    }
    if let Some(n) = fields.get("max_latency") {
        expect.max_latency = ctx.duration(n, "`max_latency`");
        ok &= expect.max_latency.is_some();
    }
    if let Some(n) = fields.get("packet_loss_below") {
        expect.packet_loss_below = ctx
            .string(n, "`packet_loss_below`")
            .and_then(|text| match parse_percent(&text) {
                Some(percent) => Some(percent),
                None => {
                    ctx.error(
                        n.pos,
                        format!("`packet_loss_below` must be a percentage above 0 and at most 100 such as `50%`, found `{text}`"),
                    );
                    None
                }
            });
        ok &= expect.packet_loss_below.is_some();
    }
    ok.then_some(expect)
}

/// `50%` or `50`: a percentage above 0, at most 100.
fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim());
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 100.0)
}

fn parse_status(value: &Value) -> Option<StatusRange> {
    let text = match value {
        Value::Number(n) | Value::String(n) => n.trim().to_ascii_lowercase(),
        _ => return None,
    };
    if let Some(class) = text.strip_suffix("xx") {
        let class: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some(StatusRange {
            low: class * 100,
            high: class * 100 + 99,
        });
    }
    let code: u16 = text.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some(StatusRange {
        low: code,
        high: code,
    })
}
