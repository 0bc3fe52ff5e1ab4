//! Email: a subject a person can triage from a lock screen, a plain-text
//! part and an HTML part, for one alert or a group.

use super::*;

/// A subject a person can triage from a phone lock screen, at most 100
/// characters: `[DOWN] api-health — HTTP 500 in 2/3 regions`,
/// `[UP] api-health — recovered after 12m`,
/// `[REMINDER] api-health still down — HTTP 500 in 2/3 regions`,
/// `[TEST] ops-email — Lookout test notification`.
///
/// The reason is the most common one among the failing regions (an HTTP
/// status when the status is what failed, else the error), counted over the
/// regions with a result; for `degraded`, the degraded regions' reason.
pub fn email_subject(event: &AlertEvent) -> String {
    let check = one_line(&event.check);
    let (head, tail) = match event.event {
        AlertKind::Down => (format!("[DOWN] {check} — "), reason_text(event)),
        AlertKind::Degraded => (format!("[DEGRADED] {check} — "), reason_text(event)),
        AlertKind::Reminder => (
            format!("[REMINDER] {check} still {} — ", event.status),
            reason_text(event),
        ),
        AlertKind::Up => {
            let tail = match event.duration_s {
                Some(secs) => format!("recovered after {}", human_duration(secs)),
                None => "recovered".to_string(),
            };
            (format!("[UP] {check} — "), (tail, String::new()))
        }
        AlertKind::Flapping => (
            format!("[FLAPPING] {check} — "),
            (
                "changing state too often; alerts paused until it settles".to_string(),
                String::new(),
            ),
        ),
        AlertKind::Test => (
            format!("[TEST] {check} — "),
            ("Lookout test notification".to_string(), String::new()),
        ),
        AlertKind::ProbeStale => (
            format!("[PROBE STALE] {check} — "),
            ("stopped reporting".to_string(), String::new()),
        ),
        AlertKind::ProbeBack => (
            format!("[PROBE BACK] {check} — "),
            ("reporting again".to_string(), String::new()),
        ),
        AlertKind::MaintenanceStart => (
            format!("[MAINTENANCE] {check} — "),
            ("maintenance window started".to_string(), String::new()),
        ),
        AlertKind::MaintenanceEnd => (
            format!("[MAINTENANCE OVER] {check} — "),
            ("maintenance window ended".to_string(), String::new()),
        ),
        AlertKind::AggregatorsUnreachable => (
            format!("[AGGREGATORS UNREACHABLE] {check} — "),
            (
                "this probe reaches no aggregator; nothing is judged".to_string(),
                String::new(),
            ),
        ),
        AlertKind::AggregatorsBack => (
            format!("[AGGREGATORS BACK] {check} — "),
            (
                "this probe reaches an aggregator again".to_string(),
                String::new(),
            ),
        ),
    };
    let (reason, counts) = tail;
    let fixed = head.chars().count() + counts.chars().count();
    let room = SUBJECT_CHARS_MAX.saturating_sub(fixed).max(12);
    let subject = format!("{head}{}{counts}", truncate(&reason, room));
    // A very long check name: cut the whole line.
    truncate(&subject, SUBJECT_CHARS_MAX)
}

/// The plain-text part of an alert email: the summary, the state change and
/// since when, the per-region table, the incident and the link.
pub fn email_text(event: &AlertEvent) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", one_line(&event.summary));
    out.push('\n');
    for (key, value) in detail_rows(event) {
        let _ = writeln!(out, "{:<10} {value}", format!("{key}:"));
    }
    if !event.regions.is_empty() {
        out.push('\n');
        let header = ["Region", "Outcome", "Status", "Time", "Error"].map(String::from);
        let rows: Vec<[String; 5]> = event
            .regions
            .iter()
            .map(|(name, r)| {
                [
                    one_line(name),
                    r.outcome.as_str().to_string(),
                    r.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
                    format_ms(r.duration_ms),
                    r.error
                        .as_deref()
                        .map_or_else(String::new, |e| truncate(&one_line(e), 300)),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if event.event == AlertKind::Test {
        out.push_str(
            "\nThis is a test notification sent by `lookout alert test`; no check changed state.\n",
        );
    }
    if let Some(url) = &event.url {
        let _ = writeln!(
            out,
            "\nView {} on the status page: {url}",
            one_line(&event.check)
        );
    }
    if let Some(shot) = &event.screenshot {
        let _ = writeln!(out, "Screenshot of the failing page: {shot}");
    }
    if let Some(ack) = &event.ack_url {
        let _ = writeln!(out, "Acknowledge (stops escalation and reminders): {ack}");
    }
    out.push_str("\n-- \nSent by Lookout.\n");
    out
}

/// The HTML part of an alert email: the content of `email_text` as simple,
/// inline-styled HTML (tables, no CSS classes, no images) that mail clients
/// render. Every user-derived string is HTML-escaped.
pub fn email_html(event: &AlertEvent) -> String {
    const CELL: &str =
        "padding:6px 10px;border:1px solid #d0d7de;text-align:left;vertical-align:top";
    let color = format!("#{:06x}", status_color(event));
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n</head>\n\
         <body style=\"margin:0;padding:16px;background:#ffffff;color:#1f2328;\
         font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5\">\n",
        escape_html(&email_subject(event))
    );
    let _ = write!(
        out,
        "<div style=\"border-left:4px solid {color};padding:4px 12px;margin:0 0 16px\">\n\
         <h1 style=\"font-size:18px;margin:0 0 4px;color:{color}\">{}</h1>\n\
         <p style=\"margin:0\">{}</p>\n</div>\n",
        escape_html(&headline(event)),
        escape_html(&one_line(&event.summary))
    );
    out.push_str("<table style=\"border-collapse:collapse;margin:0 0 16px\">\n");
    for (key, value) in detail_rows(event) {
        let _ = writeln!(
            out,
            "<tr><th style=\"padding:2px 12px 2px 0;text-align:left;color:#57606a;font-weight:normal\">{}</th>\
             <td style=\"padding:2px 0\">{}</td></tr>",
            escape_html(key),
            escape_html(&value)
        );
    }
    out.push_str("</table>\n");
    if !event.regions.is_empty() {
        out.push_str("<table style=\"border-collapse:collapse;margin:0 0 16px\">\n<tr>");
        for title in ["Region", "Outcome", "Status", "Time", "Error"] {
            let _ = write!(out, "<th style=\"{CELL};background:#f6f8fa\">{title}</th>");
        }
        out.push_str("</tr>\n");
        for (name, r) in &event.regions {
            let outcome_color = if r.outcome == Outcome::Ok {
                "#1a7f37"
            } else {
                "#cf222e"
            };
            let _ = writeln!(
                out,
                "<tr><td style=\"{CELL}\">{}</td>\
                 <td style=\"{CELL};color:{outcome_color};font-weight:bold\">{}</td>\
                 <td style=\"{CELL}\">{}</td><td style=\"{CELL};white-space:nowrap\">{}</td>\
                 <td style=\"{CELL}\">{}</td></tr>",
                escape_html(name),
                r.outcome.as_str(),
                r.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
                format_ms(r.duration_ms),
                r.error
                    .as_deref()
                    .map_or_else(String::new, |e| escape_html(&truncate(&one_line(e), 300)))
            );
        }
        out.push_str("</table>\n");
    }
    if event.event == AlertKind::Test {
        out.push_str(
            "<p style=\"margin:0 0 16px\">This is a test notification sent by \
             <code>lookout alert test</code>; no check changed state.</p>\n",
        );
    }
    if let Some(url) = event.url.as_deref().filter(|u| is_web_url(u)) {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:#0969da\">View {} on the status page</a></p>",
            escape_html(url),
            escape_html(&event.check)
        );
    }
    if let Some(shot) = event.screenshot.as_deref().filter(|u| is_web_url(u)) {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:#0969da\">Screenshot of the failing page</a></p>",
            escape_html(shot)
        );
    }
    if let Some(ack) = event.ack_url.as_deref().filter(|u| is_web_url(u)) {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:#0969da\">Acknowledge (stops escalation and reminders)</a></p>",
            escape_html(ack)
        );
    }
    out.push_str(
        "<p style=\"margin:0;color:#57606a;font-size:12px\">Sent by Lookout.</p>\n</body>\n</html>\n",
    );
    out
}

/// `[3 alerts] 2 DOWN, 1 UP — api, db, web`.
pub fn group_subject(events: &[AlertEvent]) -> String {
    if let [single] = events {
        return email_subject(single);
    }
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for event in events {
        *counts.entry(kind_word(event)).or_default() += 1;
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(word, n)| format!("{n} {word}"))
        .collect();
    let mut checks: Vec<&str> = Vec::new();
    for event in events {
        if !checks.contains(&event.check.as_str()) {
            checks.push(&event.check);
        }
    }
    let subject = format!(
        "[{} alerts] {} — {}",
        events.len(),
        counts.join(", "),
        checks.join(", ")
    );
    truncate(&one_line(&subject), SUBJECT_CHARS_MAX)
}

/// Several alerts as one plain-text email.
pub fn group_email_text(events: &[AlertEvent]) -> String {
    events
        .iter()
        .map(email_text)
        .collect::<Vec<_>>()
        .join("\n----------------------------------------\n\n")
}

/// Several alerts as one HTML email: each alert's body, one after another.
pub fn group_email_html(events: &[AlertEvent]) -> String {
    if let [single] = events {
        return email_html(single);
    }
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body style=\"margin:0;padding:16px\">\n",
        escape_html(&group_subject(events))
    );
    for event in events {
        let html = email_html(event);
        let inner = html
            .split_once("<body")
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(_, rest)| rest.rsplit_once("</body>").map_or(rest, |(inner, _)| inner))
            .unwrap_or(&html);
        out.push_str("<div style=\"border-bottom:1px solid #d0d7de;margin-bottom:16px\">\n");
        out.push_str(inner);
        out.push_str("</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn email_aggregators_unreachable() {
        let event = aggregators_unreachable();
        insta::assert_snapshot!(format!(
            "{}\n\n{}\n\n{}",
            email_subject(&event),
            email_text(&event),
            email_html(&event)
        ));
    }

    #[test]
    fn email_aggregators_back() {
        let event = aggregators_back();
        insta::assert_snapshot!(format!(
            "{}\n\n{}\n\n{}",
            email_subject(&event),
            email_text(&event),
            email_html(&event)
        ));
    }

    #[test]
    fn email_subject_down() {
        insta::assert_snapshot!(email_subject(&down()));
    }

    #[test]
    fn email_text_down() {
        insta::assert_snapshot!(email_text(&down()));
    }

    #[test]
    fn email_html_down() {
        insta::assert_snapshot!(email_html(&down()));
    }

    #[test]
    fn subjects_of_each_kind() {
        assert_eq!(
            email_subject(&down()),
            "[DOWN] api-health — HTTP 500 in 2/3 regions"
        );
        assert_eq!(
            email_subject(&up()),
            "[UP] api-health — recovered after 12m"
        );
        let mut reminder = down();
        reminder.event = AlertKind::Reminder;
        reminder.previous_status = Status::Down;
        assert_eq!(
            email_subject(&reminder),
            "[REMINDER] api-health still down — HTTP 500 in 2/3 regions"
        );
        assert_eq!(
            email_subject(&test_event()),
            "[TEST] ops-email — Lookout test notification"
        );

        let mut degraded = down();
        degraded.event = AlertKind::Degraded;
        degraded.status = Status::Degraded;
        degraded.summary = "api-health is DEGRADED in 1 of 1 regions: slower than 800ms".into();
        let mut slow = region(Outcome::Ok, Some(200), 912.0, None);
        slow.degraded = Some("slower than 800ms".into());
        degraded.regions = BTreeMap::from([
            ("eu-west".to_string(), slow),
            (
                "us-east".to_string(),
                region(Outcome::Ok, Some(200), 80.0, None),
            ),
        ]);
        assert_eq!(
            email_subject(&degraded),
            "[DEGRADED] api-health — slower than 800ms in 1/2 regions"
        );
        // Degraded as a whole (the latency baseline): the rules' reason.
        degraded.regions.clear();
        degraded.summary =
            "api-health is DEGRADED: p95 412ms over the last 15m is above 2x its 7-day p95".into();
        assert_eq!(
            email_subject(&degraded),
            "[DEGRADED] api-health — p95 412ms over the last 15m is above 2x its 7-day p95"
        );

        // Without an HTTP status, the error is the reason.
        let mut refused = down();
        for r in refused.regions.values_mut() {
            *r = region(Outcome::Error, None, 2.0, Some("connection refused"));
        }
        assert_eq!(
            email_subject(&refused),
            "[DOWN] api-health — connection refused in 3/3 regions"
        );
    }

    #[test]
    fn long_reasons_keep_the_subject_short() {
        let mut event = down();
        for r in event.regions.values_mut() {
            *r = region(Outcome::Error, None, 2.0, Some(&"x\ny".repeat(200)));
        }
        let subject = email_subject(&event);
        assert!(subject.chars().count() <= SUBJECT_CHARS_MAX, "{subject}");
        assert!(subject.ends_with("… in 3/3 regions"), "{subject}");
        assert!(!subject.contains('\n'));
    }

    #[test]
    fn up_durations_read_well() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(720), "12m");
        assert_eq!(human_duration(3_725), "1h 2m");
        assert_eq!(human_duration(90_061), "1d 1h");
        assert_eq!(human_duration(86_400 + 5), "1d");
    }

    #[test]
    fn html_escapes_user_text() {
        let mut event = down();
        event.regions.get_mut("eu-west").unwrap().error =
            Some("<script>alert('x')</script> & \"more\"".to_string());
        event.check = "a<b".to_string();
        let html = email_html(&event);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        assert!(!html.contains("a<b"));
        assert!(html.contains("a&lt;b"));
    }

    #[test]
    fn html_links_only_web_urls() {
        let mut event = down();
        event.url = Some("javascript:alert(1)".to_string());
        assert!(!email_html(&event).contains("javascript:"));
        assert!(
            email_html(&down()).contains("href=\"http://status.example.com/checks/api-health\"")
        );
    }

    #[test]
    fn text_has_the_table_and_link() {
        let text = email_text(&down());
        assert!(text.contains("eu-west   fail     500     31 ms    status 500 not in [200]"));
        assert!(text.contains("http://status.example.com/checks/api-health"));
        assert!(text.contains(INCIDENT));
    }

    #[test]
    fn group_email() {
        let mut other = down();
        other.check = "web".to_string();
        let events = [down(), other, up()];
        assert_eq!(
            group_subject(&events),
            "[3 alerts] 2 DOWN, 1 UP — api-health, web"
        );
        let text = group_email_text(&events);
        assert_eq!(
            text.matches("----------------------------------------")
                .count(),
            2
        );
        let html = group_email_html(&events);
        assert_eq!(
            html.matches("<body").count(),
            1,
            "one document, three sections"
        );
        assert_eq!(html.matches("<div style=\"border-bottom").count(), 3);
        assert_eq!(
            group_subject(&events[..1]),
            email_subject(&events[0]),
            "one alert is not a group"
        );
    }
}
