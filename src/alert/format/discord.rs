//! `format: discord`: an execute-webhook message with one embed per alert
//! (ten at most), within Discord's limits, mentions disabled.

use super::*;

/// Discord's embed limits: title 256, description 4096, 25 fields, field
/// name 256 and value 1024, footer 2048, and 6000 characters in all.
pub(super) fn body(event: &AlertEvent) -> Value {
    const FIELDS_MAX: usize = 25;
    const EMBED_TOTAL_MAX: usize = 6000;
    let title = truncate(&headline(event), 256);
    let mut description = truncate(&event.summary, 4096);
    let footer = match event.incident {
        Some(incident) => format!("Lookout · incident {incident}"),
        None => "Lookout".to_string(),
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    let shown = if event.regions.len() > FIELDS_MAX {
        FIELDS_MAX - 1
    } else {
        FIELDS_MAX
    };
    for (name, r) in event.regions.iter().take(shown) {
        let mut value = region_line(r);
        if let Some(error) = &r.error {
            value.push('\n');
            value.push_str(&one_line(error));
        }
        fields.push((truncate(name, 256), truncate(&value, 1024)));
    }
    if event.regions.len() > shown {
        let more = event.regions.len() - shown;
        fields.push(("…".to_string(), format!("and {more} more regions")));
    }
    // The 6000-character total: shorten the description, then drop fields.
    let len = |s: &str| s.chars().count();
    let total = |description: &str, fields: &[(String, String)]| {
        len(&title)
            + len(description)
            + len(&footer)
            + fields.iter().map(|(n, v)| len(n) + len(v)).sum::<usize>()
    };
    let excess = total(&description, &fields).saturating_sub(EMBED_TOTAL_MAX);
    if excess > 0 {
        let keep = len(&description).saturating_sub(excess).max(200);
        description = truncate(&description, keep);
    }
    while total(&description, &fields) > EMBED_TOTAL_MAX && fields.pop().is_some() {}

    let mut embed = Map::new();
    embed.insert("title".into(), json!(title));
    embed.insert("description".into(), json!(description));
    embed.insert("color".into(), json!(status_color(event)));
    embed.insert(
        "fields".into(),
        Value::Array(
            fields
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value, "inline": true}))
                .collect(),
        ),
    );
    embed.insert("timestamp".into(), json!(rfc3339(event.since)));
    embed.insert("footer".into(), json!({"text": footer}));
    if let Some(url) = &event.url {
        embed.insert("url".into(), json!(url));
    }
    json!({
        "content": truncate(&email_subject(event), 2000),
        "embeds": [Value::Object(embed)],
        "allowed_mentions": {"parse": []},
    })
}

pub(super) fn group(events: &[AlertEvent]) -> Value {
    // Discord takes 10 embeds a message.
    let embeds: Vec<Value> = events
        .iter()
        .take(10)
        .filter_map(|event| discord::body(event)["embeds"].get(0).cloned())
        .collect();
    json!({"content": truncate(&group_subject(events), 2000), "embeds": embeds, "allowed_mentions": {"parse": []}})
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn discord_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Discord, &aggregators_unreachable()));
    }

    #[test]
    fn discord_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Discord, &aggregators_back()));
    }

    #[test]
    fn discord_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Discord, &down()));
    }

    #[test]
    fn discord_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Discord, &up()));
    }

    #[test]
    fn discord_truncates_to_its_limits() {
        let mut event = down();
        event.summary = "x".repeat(10_000);
        event.check = "c".repeat(300);
        for i in 0..30 {
            event.regions.insert(
                format!("region-{i:02}"),
                region(Outcome::Error, None, 1.0, Some(&"e".repeat(2000))),
            );
        }
        let value = rendered(WebhookFormat::Discord, &event);
        let embed = &value["embeds"][0];
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(chars(&embed["title"]) <= 256);
        let description = embed["description"].as_str().unwrap();
        assert!(description.chars().count() <= 4096);
        assert!(description.ends_with('…'));
        let fields = embed["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        let mut total = chars(&embed["title"]) + chars(&embed["description"]);
        total += chars(&embed["footer"]["text"]);
        for field in fields {
            assert!(chars(&field["name"]) <= 256);
            assert!(chars(&field["value"]) <= 1024);
            total += chars(&field["name"]) + chars(&field["value"]);
        }
        assert!(total <= 6000, "{total}");
        assert!(chars(&value["content"]) <= 2000);
    }

    #[test]
    fn discord_only_long_summary_is_cut_to_4096() {
        let mut event = down();
        event.summary = "y".repeat(5000);
        let value = rendered(WebhookFormat::Discord, &event);
        let description = value["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), 4096);
        assert!(description.ends_with("y…"));
        assert_eq!(value["embeds"][0]["color"], 0xE0_1E_3C);
        assert_eq!(value["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn group_discord() {
        insta::assert_json_snapshot!(grouped(WebhookFormat::Discord));
    }
}
