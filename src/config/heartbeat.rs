//! The `heartbeat` check kind: pushed, not probed. Its token (a secret, at
//! least 16 characters), the `period` pings are due on (an interval or a
//! cron expression) and the grace before a missed ping counts.

use std::time::Duration;

use chrono_tz::Tz;

use super::decode::{self, Ctx};
use super::yaml::Node;
use crate::schedule::{CronSchedule, Schedule};

#[derive(Clone, Debug)]
pub struct HeartbeatSpec {
    pub token: String,
    /// How often pings are due: an interval or a cron schedule.
    pub period: Schedule,
    pub grace: Duration,
}
/// Heartbeat tokens shorter than this could be guessed from outside.
const HEARTBEAT_TOKEN_CHARS_MIN: usize = 16;

pub(super) fn decode_heartbeat(ctx: &mut Ctx, name: &str, node: &Node) -> Option<HeartbeatSpec> {
    let what = format!("`heartbeat` of check `{name}`");
    let fields = ctx.fields(node, &what, &["token", "period", "grace", "tz"])?;
    let token = match fields.get("token") {
        Some(n) => ctx.string(n, "`token`").and_then(|t| {
            let valid = t.len() >= HEARTBEAT_TOKEN_CHARS_MIN
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if valid {
                ctx.secrets.add(&t);
                Some(t)
            } else {
                ctx.error(
                    n.pos,
                    format!("`token` must be at least {HEARTBEAT_TOKEN_CHARS_MIN} characters of [A-Za-z0-9_-]: it is the ping URL's only secret"),
                );
                None
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `token`"));
            None
        }
    };
    let tz = match fields.get("tz") {
        Some(n) => {
            decode::field(|| {
                let text = ctx.string(n, "`tz`")?;
                match text.parse::<Tz>() {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        ctx.error(n.pos, format!("unknown time zone `{text}`; expected an IANA name such as Europe/Paris"));
                        None
                    }
                }
            })
        }
        None => Some(Tz::UTC),
    };
    let period = match fields.get("period") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`period`")?;
            // A duration (`24h`), or a cron expression for when the job runs.
            let looks_like_cron = text.split_whitespace().count() == 5 || text.starts_with('@');
            match crate::schedule::parse_duration(&text) {
                Ok(d) if !d.is_zero() => Some(Schedule::Every(d)),
                _ if looks_like_cron => match CronSchedule::parse(&text, tz.unwrap_or(Tz::UTC)) {
                    Ok(cron) => Some(Schedule::Cron(Box::new(cron))),
                    Err(message) => {
                        ctx.error(n.pos, message);
                        None
                    }
                },
                _ => {
                    ctx.error(n.pos, format!("`period` `{text}` must be a duration (24h) or a cron expression (\"0 2 * * *\")"));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `period`"));
            None
        }
    };
    let grace = match fields.get("grace") {
        Some(n) => ctx.duration(n, "`grace`"),
        None => Some(Duration::ZERO),
    };
    Some(HeartbeatSpec {
        token: token?,
        period: period?,
        grace: grace?,
    })
}
