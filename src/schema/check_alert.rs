//! The schema of a check's `alert:` (thresholds, channels, reminders,
//! escalation, flapping) and `status_page:` settings.

use serde_json::{Value, json};

use super::{boolean, duration, integer, list, object, pattern, string, string_list, with};

pub(super) fn alert() -> Value {
    object(
        vec![
            (
                "channels",
                with(
                    string_list(),
                    "Channels to alert (default: `defaults.channels` of alerts/).",
                    json!(["ops-webhook"]),
                ),
            ),
            (
                "failures",
                with(
                    integer(1, None),
                    "Consecutive failures before a region fails (default 2).",
                    json!(2),
                ),
            ),
            (
                "successes",
                with(
                    integer(1, None),
                    "Consecutive successes before it recovers (default 1).",
                    json!(1),
                ),
            ),
            (
                "quorum",
                with(
                    integer(1, None),
                    "Failing regions needed for down (default: a majority).",
                    json!(2),
                ),
            ),
            (
                "remind_every",
                with(duration(), "Remind while down, this often.", json!("1h")),
            ),
            (
                "escalate",
                with(
                    list(object(
                        vec![
                            (
                                "after",
                                with(
                                    duration(),
                                    "How long after the first page, unacknowledged.",
                                    json!("15m"),
                                ),
                            ),
                            (
                                "channels",
                                with(string_list(), "The channels paged then.", json!(["pager"])),
                            ),
                        ],
                        &["after", "channels"],
                    )),
                    "Further channels paged while an incident stays open and unacknowledged.",
                    json!([{"after": "15m", "channels": ["pager"]}]),
                ),
            ),
            (
                "flapping",
                with(
                    object(
                        vec![
                            (
                                "changes",
                                with(
                                    integer(1, Some(100)),
                                    "More status changes than this within `within` is flapping.",
                                    json!(5),
                                ),
                            ),
                            (
                                "within",
                                with(duration(), "Counted over this long.", json!("10m")),
                            ),
                        ],
                        &[],
                    ),
                    "When alerts pause as flapping (default: more than 5 changes within 1h).",
                    json!({"changes": 5, "within": "1h"}),
                ),
            ),
            (
                "p95_above_baseline",
                with(
                    pattern(r"^(?:[0-9]+(\.[0-9]+)?x|.*\$\{.*\}.*)$"),
                    "Degraded while the last 15 min's p95 is over this multiple of the 7-day p95.",
                    json!("2x"),
                ),
            ),
        ],
        &[],
    )
}

pub(super) fn check_page() -> Value {
    object(
        vec![
            (
                "hidden",
                with(
                    boolean(),
                    "Not on the status page at all (default false).",
                    json!(false),
                ),
            ),
            (
                "hide_target",
                with(
                    boolean(),
                    "Shown without its URL or address (default false).",
                    json!(false),
                ),
            ),
            (
                "display_name",
                with(
                    string(),
                    "The name the page shows (default: the check's name).",
                    json!("Checkout API"),
                ),
            ),
        ],
        &[],
    )
}
