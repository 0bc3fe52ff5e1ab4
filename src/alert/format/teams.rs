//! `format: teams`: a message carrying an Adaptive Card (Workflows and
//! incoming webhooks).

use super::*;

pub(super) fn body(event: &AlertEvent) -> Value {
    let color = match (event.event, event.status) {
        (AlertKind::Test, _) => "Accent",
        (_, Status::Down) => "Attention",
        (_, Status::Degraded) => "Warning",
        (_, Status::Up) => "Good",
        (_, Status::Unknown) => "Default",
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": headline(event), "size": "Large", "weight": "Bolder", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": truncate(&event.summary, 2000), "wrap": true}),
    ];
    if !event.regions.is_empty() {
        let facts: Vec<Value> = event
            .regions
            .iter()
            .map(|(name, r)| {
                let mut value = region_line(r);
                if let Some(error) = &r.error {
                    let _ = write!(value, " · {}", truncate(&one_line(error), 500));
                }
                json!({"title": name, "value": value})
            })
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut context = format!("{} since {}", state_change(event), human_time(event.since));
    if let Some(incident) = event.incident {
        let _ = write!(context, " · Incident {incident}");
    }
    body.push(
        json!({"type": "TextBlock", "text": context, "isSubtle": true, "size": "Small", "wrap": true}),
    );
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(url) = &event.url {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in Lookout", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

pub(super) fn group(events: &[AlertEvent]) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": group_subject(events), "size": "Large", "weight": "Bolder", "wrap": true}),
    ];
    for event in events {
        let card = teams::body(event);
        if let Some(items) = card["attachments"][0]["content"]["body"].as_array() {
            body.push(json!({"type": "Container", "separator": true, "items": items}));
        }
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": body},
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn teams_aggregators_unreachable() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Teams, &aggregators_unreachable()));
    }

    #[test]
    fn teams_aggregators_back() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Teams, &aggregators_back()));
    }

    #[test]
    fn teams_down() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Teams, &down()));
    }

    #[test]
    fn teams_up() {
        insta::assert_json_snapshot!(rendered(WebhookFormat::Teams, &up()));
    }

    #[test]
    fn teams_card_shape() {
        let value = rendered(WebhookFormat::Teams, &down());
        let attachment = &value["attachments"][0];
        assert_eq!(value["type"], "message");
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert_eq!(
            attachment["content"]["actions"][0]["type"],
            "Action.OpenUrl"
        );
        let test = rendered(WebhookFormat::Teams, &test_event());
        assert!(test["attachments"][0]["content"].get("actions").is_none());
    }

    #[test]
    fn group_teams() {
        insta::assert_json_snapshot!(grouped(WebhookFormat::Teams));
    }
}
