//! The small, safe Markdown subset of announcement texts: paragraphs,
//! line breaks, **strong**, *emphasis*, `code`, code blocks, lists, block
//! quotes and links to http(s) or mailto. Parsed by pulldown-cmark and
//! written here tag by tag from a fixed list: everything else (raw HTML,
//! images, headings, tables, a `javascript:` link) comes out as its text,
//! escaped, so a `<script>` in an update stays visible text.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// `text` as HTML made only of the allowed tags around escaped text.
pub fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    // Per open link, whether its target was allowed (a refused one is
    // shown as its text: no opening tag, so no closing one).
    let mut link_open = Vec::new();
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => out.push_str("<p>"),
                Tag::Strong => out.push_str("<strong>"),
                Tag::Emphasis => out.push_str("<em>"),
                Tag::Strikethrough => out.push_str("<del>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(CodeBlockKind::Fenced(_) | CodeBlockKind::Indented) => {
                    out.push_str("<pre><code>")
                }
                Tag::List(Some(_)) => out.push_str("<ol>"),
                Tag::List(None) => out.push_str("<ul>"),
                Tag::Item => out.push_str("<li>"),
                Tag::Link { dest_url, .. } => {
                    let safe = is_safe_link(&dest_url);
                    link_open.push(safe);
                    if safe {
                        out.push_str("<a rel=\"nofollow noopener\" href=\"");
                        escape_into(&mut out, &dest_url);
                        out.push_str("\">");
                    }
                }
                // Headings, tables, images and the rest: their text only.
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("</p>"),
                TagEnd::Strong => out.push_str("</strong>"),
                TagEnd::Emphasis => out.push_str("</em>"),
                TagEnd::Strikethrough => out.push_str("</del>"),
                TagEnd::BlockQuote(_) => out.push_str("</blockquote>"),
                TagEnd::CodeBlock => out.push_str("</code></pre>"),
                TagEnd::List(true) => out.push_str("</ol>"),
                TagEnd::List(false) => out.push_str("</ul>"),
                TagEnd::Item => out.push_str("</li>"),
                TagEnd::Link if link_open.pop().unwrap_or(false) => out.push_str("</a>"),
                TagEnd::Heading(_) => out.push(' '),
                _ => {}
            },
            Event::Text(text) => escape_into(&mut out, &text),
            Event::Code(code) => {
                out.push_str("<code>");
                escape_into(&mut out, &code);
                out.push_str("</code>");
            }
            // Raw HTML is shown as what it is: text.
            Event::Html(html) | Event::InlineHtml(html) => escape_into(&mut out, &html),
            Event::SoftBreak => out.push('\n'),
            Event::HardBreak => out.push_str("<br>"),
            Event::Rule => out.push_str("<hr>"),
            _ => {}
        }
    }
    out
}

fn is_safe_link(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// The text with `& < > " '` escaped (safe in text and in quoted attributes).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The text without any markup, for feed titles and badges.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for event in Parser::new(text) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                out.push_str(&t)
            }
            Event::SoftBreak | Event::HardBreak | Event::End(TagEnd::Paragraph) => out.push(' '),
            _ => {}
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_is_rendered_and_everything_else_is_text() {
        assert_eq!(
            to_html("We are **on it**, see [the log](https://example.com/a?b=1&c=2)."),
            "<p>We are <strong>on it</strong>, see <a rel=\"nofollow noopener\" href=\"https://example.com/a?b=1&amp;c=2\">the log</a>.</p>"
        );
        let script = to_html("<script>alert(1)</script> and <b onclick=x>bold</b>");
        assert!(!script.contains("<script"), "{script}");
        assert!(
            script.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{script}"
        );
        assert!(!script.contains("<b "), "{script}");
        let js = to_html("[click](javascript:alert(1))");
        assert!(!js.contains("href"), "{js}");
        assert!(js.contains("click"));
        let image = to_html("![x](https://example.com/x.png)");
        assert!(!image.contains("<img"), "{image}");
        assert_eq!(
            to_html("- a\n- `b<`"),
            "<ul><li>a</li><li><code>b&lt;</code></li></ul>"
        );
        assert_eq!(plain("**Down** <i>now</i>"), "Down <i>now</i>");
    }
}
