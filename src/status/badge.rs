//! README badges as shields-style flat SVG: a grey label on the left, the
//! value on a coloured right half (`/badge/{check}/status.svg`,
//! `.../uptime/{24h|7d|30d}.svg`, `.../latency.svg`, and the same for a
//! group). Text widths are estimated from Verdana 11px classes of glyphs,
//! as shields does without a font at hand; every text is escaped by maud.

use maud::html;

use crate::rules::Status;

pub const GREEN: &str = "#4c1";
pub const YELLOW_GREEN: &str = "#97ca00";
pub const YELLOW: &str = "#dfb317";
pub const RED: &str = "#e05d44";
pub const GREY: &str = "#9f9f9f";
pub const BLUE: &str = "#007ec6";

/// The words and colour of a state.
pub fn status_message(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Up => ("up", GREEN),
        Status::Degraded => ("degraded", YELLOW),
        Status::Down => ("down", RED),
        Status::Unknown => ("unknown", GREY),
    }
}

/// An uptime percent, never rounded up to 100%, and its colour.
pub fn uptime_message(uptime: Option<f64>) -> (String, &'static str) {
    match uptime {
        None => ("no data".to_string(), GREY),
        Some(v) => {
            let text = if v < 100.0 {
                format!("{:.2}%", (v * 100.0).floor() / 100.0)
            } else {
                "100%".to_string()
            };
            let colour = if v >= 99.9 {
                GREEN
            } else if v >= 99.0 {
                YELLOW_GREEN
            } else if v >= 95.0 {
                YELLOW
            } else {
                RED
            };
            (text, colour)
        }
    }
}

/// A p95 in ms, and its colour (blue: latency has no good or bad of its own).
pub fn latency_message(p95_ms: Option<f64>) -> (String, &'static str) {
    match p95_ms {
        None => ("no data".to_string(), GREY),
        Some(v) if v >= 1000.0 => (format!("{:.2}s", v / 1000.0), BLUE),
        Some(v) => (format!("{v:.0}ms"), BLUE),
    }
}

/// Estimated width in px of `text` in Verdana 11px.
fn text_width(text: &str) -> f64 {
    text.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' => 3.7,
            'f' | 'r' | 't' | ' ' | '(' | ')' | '[' | ']' | '-' => 4.9,
            'm' | 'w' | 'M' | 'W' | '%' => 10.5,
            'A'..='Z' => 7.6,
            '0'..='9' => 7.0,
            _ => 6.6,
        })
        .sum()
}

/// The badge: `label` on grey, `message` on `colour`.
pub fn render(label: &str, message: &str, colour: &str) -> String {
    let label_w = (text_width(label) + 10.0).round();
    let message_w = (text_width(message) + 10.0).round();
    let width = label_w + message_w;
    let label_x = label_w / 2.0;
    let message_x = label_w + message_w / 2.0;
    let title = format!("{label}: {message}");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height="20" role="img" aria-label=(title) {
            title { (title) }
            linearGradient id="s" x2="0" y2="100%" {
                stop offset="0" stop-color="#bbb" stop-opacity=".1" {}
                stop offset="1" stop-opacity=".1" {}
            }
            clipPath id="r" { rect width=(width) height="20" rx="3" fill="#fff" {} }
            g clip-path="url(#r)" {
                rect width=(label_w) height="20" fill="#555" {}
                rect x=(label_w) width=(message_w) height="20" fill=(colour) data-part="message" {}
                rect width=(width) height="20" fill="url(#s)" {}
            }
            g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11" {
                text x=(label_x) y="15" fill="#010101" fill-opacity=".3" { (label) }
                text x=(label_x) y="14" { (label) }
                text x=(message_x) y="15" fill="#010101" fill-opacity=".3" { (message) }
                text x=(message_x) y="14" { (message) }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_carries_its_words_and_colour_escaped() {
        let svg = render("a<b", "down", RED);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("fill=\"#e05d44\""));
        assert!(svg.contains(">a&lt;b</text>") && svg.contains(">down</text>"));
        assert_eq!(uptime_message(Some(99.999)).0, "99.99%");
        assert_eq!(uptime_message(Some(100.0)), ("100%".to_string(), GREEN));
        assert_eq!(uptime_message(Some(90.0)).1, RED);
        assert_eq!(latency_message(Some(1234.0)).0, "1.23s");
    }
}
