//! `format: slack`: an incoming-webhook message with Block Kit blocks,
//! text escaped for mrkdwn and cut to Slack's limits.

use super::*;

/// Block Kit limits: header text 150, section text 3000, field text 2000,
/// 50 blocks per message.
pub(super) fn body(event: &AlertEvent) -> Value {
    const REGION_BLOCKS_MAX: usize = 44;
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline(event), 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_text(&event.summary, 3000)}}),
    ];
    for (name, r) in event.regions.iter().take(REGION_BLOCKS_MAX) {
        let field = |title: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{title}*\n{}", slack_text(value, 1900))});
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{}*", slack_text(name, 2900))},
            "fields": [
                field("Outcome", r.outcome.as_str()),
                field("Status", &r.status.map_or_else(|| "—".to_string(), |s| s.to_string())),
                field("Time", &format_ms(r.duration_ms)),
                field("Error", r.error.as_deref().unwrap_or("—")),
            ],
        }));
    }
    if event.regions.len() > REGION_BLOCKS_MAX {
        let more = event.regions.len() - REGION_BLOCKS_MAX;
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("…and {more} more regions")}]}));
    }
    let mut context = format!("{} since {}", state_change(event), slack_date(event.since));
    if let Some(incident) = event.incident {
        let _ = write!(context, " · Incident `{incident}`");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    if let Some(url) = &event.url {
        // A mrkdwn link rather than a button: a button sends an interaction
        // payload that an incoming-webhook app cannot acknowledge.
        let link = format!(
            "<{}|View {} on the status page>",
            slack_escape(url).replace('|', "%7C"),
            slack_text(&event.check, 200)
        );
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": link}}));
    }
    if let Some(ack) = &event.ack_url {
        let link = format!(
            "<{}|Acknowledge> (stops escalation and reminders)",
            slack_escape(ack).replace('|', "%7C")
        );
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": link}}));
    }
    json!({"text": email_subject(event), "blocks": blocks})
}

pub(super) fn group(events: &[AlertEvent]) -> Value {
    // Slack takes 50 blocks a message: a header, then each alert's first two.
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&group_subject(events), 150), "emoji": true}}),
    ];
    for event in events.iter().take(24) {
        let body = slack::body(event);
        if let Some(items) = body["blocks"].as_array() {
            blocks.extend(items.iter().skip(1).take(1).cloned());
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_text(&headline(event), 300)}]}));
        }
    }
    json!({"text": group_subject(events), "blocks": blocks})
}

/// A Slack date token: shown in the reader's time zone, with a UTC fallback.
fn slack_date(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        human_time(at)
    )
}

/// Slack's three control characters as entities.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// User text for a mrkdwn field: escaped, then cut to `max` characters
/// without splitting an entity.
fn slack_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let total: usize = text.chars().map(slack_escape_len).sum();
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    for c in text.chars() {
        let n = slack_escape_len(c);
        if used + n > budget {
            out.push('…');
            return out;
        }
        used += n;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn slack_escape_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn slack_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Slack, &aggregators_unreachable()));
    }

    #[test]
    fn slack_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Slack, &aggregators_back()));
    }

    #[test]
    fn slack_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Slack, &down()));
    }

    #[test]
    fn slack_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Slack, &up()));
    }

    #[test]
    fn slack_escapes_control_characters() {
        let mut event = down();
        event.summary = "<!channel> a & b > c".to_string();
        let value = rendered(WebhookFormat::Slack, &event);
        let text = value["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(text, "&lt;!channel&gt; a &amp; b &gt; c");
        assert_eq!(slack_text("a&b", 4), "a…");
        assert_eq!(slack_text("a&b", 7), "a&amp;b");
    }

    #[test]
    fn group_slack() {
        insta::assert_json_snapshot!(grouped(WebhookFormat::Slack));
    }
}
