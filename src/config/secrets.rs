//! Secrets: the values that came from the environment (and heartbeat
//! tokens, webhook secrets, SMTP passwords, routing keys), masked in every
//! output in every form they may take on the way there.
//!
//! A value rarely reaches an output as it was typed: URL parsing lowercases
//! a host and maps it through IDNA (punycode, `xn--...`), percent-encodes
//! URL-special characters in a path, query or userinfo, form encoding turns
//! a space into `+`, JSON and HTML escape quotes, a message may be
//! upper-cased. So masking does not look for the value's bytes: each secret
//! becomes one case-insensitive pattern in which every character may appear
//! as itself or in any of those encodings, and runs of host text holding
//! punycode are decoded and searched too. All secrets are one regular
//! expression, so masking a string costs one scan.
//!
//! Two replacements: `****` for outputs ([`Secrets::redact`]), and
//! `${NAME}` for config errors ([`Secrets::name_masked`]), so an operator
//! reading `invalid duration "${TIMEOUT}"` knows which variable to fix
//! without the value being printed.
//!
//! Every secret is also remembered process-wide (bounded), for the log
//! writer ([`LogWriter`]): third-party crates log hosts and URLs at debug and
//! trace level, beyond the reach of our own call sites, so log lines are
//! masked as they are written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};

use crate::limits;

/// Values that came from the environment: they are masked in every output.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Each value, with the environment variable it came from (if any).
    values: BTreeMap<String, Option<String>>,
    masker: OnceLock<Arc<Masker>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values themselves.
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    /// Values shorter than this are not masked: masking `1` or `on` would
    /// garble every message while protecting nothing.
    pub const MASK_MIN_CHARS: usize = 4;

    /// A secret typed into the config itself (a webhook secret, a token).
    pub fn add(&mut self, value: &str) {
        self.insert(value, None);
    }

    /// A secret read from the environment variable `name`.
    pub fn add_named(&mut self, value: &str, name: &str) {
        self.insert(value, Some(name));
    }

    fn insert(&mut self, value: &str, name: Option<&str>) {
        if value.chars().count() < Self::MASK_MIN_CHARS {
            return;
        }
        match self.values.get_mut(value) {
            Some(slot) => {
                if slot.is_none() {
                    *slot = name.map(str::to_string);
                }
            }
            None => {
                self.values
                    .insert(value.to_string(), name.map(str::to_string));
            }
        }
        self.masker = OnceLock::new();
        remember(value);
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret, in any form, replaced by `****`.
    pub fn redact(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        self.masker()
            .replace(text, false, |_| Cow::Borrowed("****"))
    }

    /// `text` with every secret replaced by `${NAME}`, the variable it came
    /// from (`****` for one typed into the config): for config errors.
    pub fn name_masked(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let masker = self.masker();
        masker.replace(text, true, |i| match &masker.names[i] {
            Some(name) => Cow::Owned(format!("${{{name}}}")),
            None => Cow::Borrowed("****"),
        })
    }

    fn masker(&self) -> &Masker {
        self.masker
            .get_or_init(|| Arc::new(Masker::new(self.values.iter())))
    }
}

/// The compiled form of a set of secrets.
struct Masker {
    /// Every secret's pattern, longest secret first (the regex crate takes
    /// the first alternative that matches, so a secret holding another is
    /// masked whole). `None` when it would not compile within the size
    /// limit; then `each` is used one by one.
    all: Option<Regex>,
    /// One expression per secret, only when `all` is `None`.
    each: Vec<Option<Regex>>,
    /// Each pattern anchored, to tell which secret a match of `all` is;
    /// built on first use, since only config errors need to know (to name
    /// the variable).
    anchored: OnceLock<Vec<Option<Regex>>>,
    patterns: Vec<String>,
    size_limit: usize,
    /// Per secret: its IDNA-mapped Unicode form, lowercased, to find it in
    /// decoded punycode.
    mapped: Vec<String>,
    names: Vec<Option<String>>,
}

fn build(pattern: &str, size_limit: usize) -> Option<Regex> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(size_limit)
        .build()
        .ok()
}

impl Masker {
    fn new<'a>(values: impl Iterator<Item = (&'a String, &'a Option<String>)>) -> Masker {
        Masker::within(values, limits::SECRETS_REGEX_BYTES_MAX)
    }

    /// `size_limit`: of each compiled expression (tests make it small).
    fn within<'a>(
        values: impl Iterator<Item = (&'a String, &'a Option<String>)>,
        size_limit: usize,
    ) -> Masker {
        let build = |p: &str| build(p, size_limit);
        let mut secrets: Vec<(&String, &Option<String>)> = values.collect();
        secrets.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        let full: Vec<String> = secrets.iter().map(|(v, _)| pattern(v)).collect();
        let all = build(&full.join("|"));
        // Too large together: one by one, and a secret too large even alone
        // in all its forms still matches as its own text, in any case.
        let (patterns, each) = match &all {
            Some(_) => (full, Vec::new()),
            None => {
                let patterns: Vec<String> = full
                    .into_iter()
                    .zip(&secrets)
                    .map(|(p, (v, _))| {
                        if build(&p).is_some() {
                            p
                        } else {
                            regex::escape(v)
                        }
                    })
                    .collect();
                let each = patterns.iter().map(|p| build(p)).collect();
                (patterns, each)
            }
        };
        Masker {
            all,
            each,
            anchored: OnceLock::new(),
            mapped: secrets.iter().map(|(v, _)| idna_mapped(v)).collect(),
            names: secrets.iter().map(|(_, n)| (*n).clone()).collect(),
            patterns,
            size_limit,
        }
    }

    /// Which secret `found` (a match of `all`) is; 0 when none claims it.
    fn which(&self, found: &str) -> usize {
        self.anchored
            .get_or_init(|| {
                self.patterns
                    .iter()
                    .map(|p| build(&format!("^(?:{p})$"), self.size_limit))
                    .collect()
            })
            .iter()
            .position(|re| re.as_ref().is_some_and(|re| re.is_match(found)))
            .unwrap_or(0)
    }

    /// `text` with each secret found replaced by `with(index)`.
    /// `named`: whether `with` needs the index (else it is always 0).
    fn replace<'m>(
        &'m self,
        text: &str,
        named: bool,
        with: impl Fn(usize) -> Cow<'m, str>,
    ) -> String {
        let mut out = match &self.all {
            Some(all) => all
                .replace_all(text, |caps: &regex::Captures| {
                    with(if named { self.which(&caps[0]) } else { 0 })
                })
                .into_owned(),
            None => {
                let mut out = text.to_string();
                for (i, re) in self.each.iter().enumerate() {
                    if let Some(re) = re {
                        out = re
                            .replace_all(&out, |_: &regex::Captures| with(i))
                            .into_owned();
                    }
                }
                out
            }
        };
        // A host holding a non-ASCII secret is shown as punycode: decode each
        // run of host text that has some and look for the secret there.
        if out
            .as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"xn--"))
        {
            out = punycode_runs()
                .replace_all(&out, |caps: &regex::Captures| {
                    let run = &caps[0];
                    let decoded = url::quirks::domain_to_unicode(run).to_lowercase();
                    match self
                        .mapped
                        .iter()
                        .position(|m| !m.is_empty() && decoded.contains(m.as_str()))
                    {
                        Some(i) => with(i),
                        None => Cow::Owned(run.to_string()),
                    }
                })
                .into_owned();
        }
        out
    }
}

/// Runs of host characters holding punycode (`xn--`).
fn punycode_runs() -> &'static Regex {
    static RUNS: OnceLock<Regex> = OnceLock::new();
    RUNS.get_or_init(|| {
        Regex::new(r"(?i)[a-z0-9.-]*xn--[a-z0-9.-]*").expect("the punycode pattern compiles")
    })
}

/// The secret as IDNA maps it in a host (lowercased, normalised), or its
/// lowercase when it cannot be a host.
fn idna_mapped(secret: &str) -> String {
    let ascii = url::quirks::domain_to_ascii(secret);
    if ascii.is_empty() {
        secret.to_lowercase()
    } else {
        url::quirks::domain_to_unicode(&ascii).to_lowercase()
    }
}

/// A pattern matching `secret` whatever happened to it on its way to an
/// output: any letter case (the regex is case-insensitive, hex digits
/// included), each character as itself, percent-encoded (its UTF-8 bytes),
/// `+` for a space (forms), JSON- or backslash-escaped, an HTML character
/// reference; and its IDNA forms when it can be a host name.
fn pattern(secret: &str) -> String {
    let mut alternatives = vec![char_pattern(secret)];
    if !secret.is_ascii() {
        let ascii = url::quirks::domain_to_ascii(secret);
        if !ascii.is_empty() {
            alternatives.push(regex::escape(&ascii));
            let mapped = url::quirks::domain_to_unicode(&ascii);
            if mapped != secret.to_lowercase() {
                alternatives.push(char_pattern(&mapped));
            }
        }
    }
    alternatives.join("|")
}

fn char_pattern(secret: &str) -> String {
    let mut out = String::with_capacity(secret.len() * 8);
    for c in secret.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            continue;
        }
        out.push_str("(?:");
        out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        // Percent-encoded, byte by byte.
        out.push('|');
        for byte in c.encode_utf8(&mut [0; 4]).bytes() {
            let _ = write!(out, "%{byte:02X}");
        }
        // JSON's \uXXXX (a surrogate pair beyond the BMP) and HTML's &#N; / &#xN;.
        let mut units = [0u16; 2];
        out.push('|');
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, r"\\u{unit:04X}");
        }
        let _ = write!(out, "|&#0*{};|&#x0*{:X};", c as u32, c as u32);
        match c {
            ' ' => out.push_str(r"|\+"),
            '"' => out.push_str(r#"|\\"|&quot;"#),
            '\\' => out.push_str(r"|\\\\"),
            '/' => out.push_str(r"|\\/"),
            '&' => out.push_str("|&amp;"),
            '<' => out.push_str("|&lt;"),
            '>' => out.push_str("|&gt;"),
            '\'' => out.push_str(r"|\\'|&apos;"),
            '\n' => out.push_str(r"|\\n"),
            '\r' => out.push_str(r"|\\r"),
            '\t' => out.push_str(r"|\\t"),
            _ => {}
        }
        out.push(')');
    }
    out
}

/// Every secret this process has seen, for the log writer.
struct Remembered {
    secrets: Secrets,
    /// Oldest first, to forget the oldest past the limit.
    order: std::collections::VecDeque<String>,
    masker: Option<Arc<Masker>>,
    /// Bumped whenever a value is added, so a masker compiled from an older
    /// set is not kept.
    generation: u64,
}

fn remembered() -> &'static Mutex<Remembered> {
    static ALL: OnceLock<Mutex<Remembered>> = OnceLock::new();
    ALL.get_or_init(|| {
        Mutex::new(Remembered {
            secrets: Secrets::default(),
            order: std::collections::VecDeque::new(),
            masker: None,
            generation: 0,
        })
    })
}

fn remember(value: &str) {
    let mut all = remembered().lock().unwrap_or_else(|p| p.into_inner());
    if all.secrets.values.contains_key(value) {
        return;
    }
    all.secrets.values.insert(value.to_string(), None);
    all.order.push_back(value.to_string());
    while all.order.len() > limits::SECRETS_REMEMBERED_MAX {
        if let Some(oldest) = all.order.pop_front() {
            all.secrets.values.remove(&oldest);
        }
    }
    all.masker = None;
    all.generation += 1;
}

/// `text` masked with every secret this process has seen.
pub fn redact_remembered(text: &str) -> String {
    let (values, generation) = {
        let all = remembered().lock().unwrap_or_else(|p| p.into_inner());
        if all.secrets.values.is_empty() {
            return text.to_string();
        }
        match &all.masker {
            Some(masker) => {
                let masker = masker.clone();
                drop(all);
                return masker.replace(text, false, |_| Cow::Borrowed("****"));
            }
            None => (all.secrets.values.clone(), all.generation),
        }
    };
    // Compiled without the lock held: other log lines (on other threads)
    // meanwhile mask with a masker built here too, never wait for this one.
    let masker = Arc::new(Masker::new(values.iter()));
    {
        let mut all = remembered().lock().unwrap_or_else(|p| p.into_inner());
        if all.generation == generation {
            all.masker = Some(masker.clone());
        }
    }
    masker.replace(text, false, |_| Cow::Borrowed("****"))
}

/// A `tracing_subscriber` writer to stderr that masks every secret this
/// process has seen in each log line: `.with_writer(LogWriter)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

/// One log line, buffered so it is masked whole, written on drop.
pub struct LineWriter {
    buffer: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let masked = redact_remembered(&text);
        self.buffer.clear();
        std::io::Write::write_all(&mut std::io::stderr().lock(), masked.as_bytes())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buffer: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[(&str, &str)]) -> Secrets {
        let mut s = Secrets::default();
        for (value, name) in values {
            s.add_named(value, name);
        }
        s
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let s = secrets(&[("HostS3cr3t", "HOST"), ("p@ss wörd/&\"x", "PASS")]);
        for text in [
            "HostS3cr3t",
            "hosts3cr3t",
            "HOSTS3CR3T",
            "p@ss wörd/&\"x",
            "p%40ss%20w%C3%B6rd%2F%26%22x",
            "p%40ss+w%c3%b6rd%2f%26%22x",
            "P@SS WÖRD/&\"X",
            r#"p@ss w\u00F6rd\/&\"x"#,
            "p@ss w&#246;rd/&amp;&quot;x",
            "p@ss%20w%C3%B6rd/&%22x",
        ] {
            assert_eq!(s.redact(&format!("<{text}>")), "<****>", "{text}");
        }
        assert_eq!(s.redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_secret_host_is_masked_as_punycode() {
        let s = secrets(&[("Bücher-Geheim", "HOST")]);
        // A whole label: its own punycode.
        let shown = url::Url::parse("http://api.Bücher-Geheim.invalid/x")
            .unwrap()
            .to_string();
        assert!(shown.contains("xn--"), "{shown}");
        assert_eq!(s.redact(&shown), "http://api.****.invalid/x");
        // Part of a label: the run of host text holding it goes.
        let shown = url::Url::parse("http://api-Bücher-Geheim.invalid/x")
            .unwrap()
            .to_string();
        let masked = s.redact(&format!("DNS lookup of {shown} failed"));
        assert_eq!(masked, "DNS lookup of http://****/x failed");
    }

    #[test]
    fn config_errors_name_the_variable() {
        let s = secrets(&[("S3cr3t-Value", "TIMEOUT")]);
        let mut typed = s.clone();
        typed.add("typed-in-secret");
        assert_eq!(
            typed.name_masked("invalid duration \"s3cr3t-value\" and typed-in-secret"),
            "invalid duration \"${TIMEOUT}\" and ****"
        );
    }

    #[test]
    fn short_values_and_debug_output_show_nothing() {
        let s = secrets(&[("on", "FLAG"), ("long-secret", "X")]);
        assert_eq!(s.redact("on and on"), "on and on");
        assert_eq!(format!("{s:?}"), "Secrets(1 values)");
    }

    #[test]
    fn the_longest_secret_is_masked_whole() {
        let s = secrets(&[("abcd", "A"), ("abcdefgh", "B")]);
        assert_eq!(s.name_masked("x abcdefgh y abcd"), "x ${B} y ${A}");
    }

    #[test]
    fn many_secrets_are_all_masked() {
        const N: usize = 300;
        let values: Vec<String> = (0..N)
            .map(|i| format!("s3cret-{i:03}/p@ss wörd&\"{i}"))
            .collect();
        let mut s = Secrets::default();
        for (i, v) in values.iter().enumerate() {
            s.add_named(v, &format!("V{i}"));
        }
        let text = format!("a {} b {}", values[7].to_uppercase(), values[N - 1]);
        assert_eq!(s.redact(&text), "a **** b ****");
        assert_eq!(s.name_masked(&text), format!("a ${{V7}} b ${{V{}}}", N - 1));
        let plain = "GET http://example.test/health: status 500 not in [2xx]";
        assert_eq!(s.redact(plain), plain);
    }

    #[test]
    fn secrets_too_many_for_one_expression_are_masked_one_by_one() {
        let values: Vec<(String, Option<String>)> = (0..40)
            .map(|i| (format!("s3cret-{i:02}/p@ss&\"{i}"), Some(format!("V{i}"))))
            .collect();
        let masker = Masker::within(values.iter().map(|(v, n)| (v, n)), 20_000);
        assert!(masker.all.is_none(), "the limit is small enough to split");
        let text = format!("a {} b", values[3].0.to_uppercase());
        assert_eq!(
            masker.replace(&text, false, |_| Cow::Borrowed("****")),
            "a **** b"
        );
    }

    #[test]
    fn log_lines_are_masked_with_every_secret_seen() {
        let _ = secrets(&[("remembered-s3cret", "R")]);
        assert_eq!(
            redact_remembered("host=Some(\"REMEMBERED-S3CRET.invalid\")"),
            "host=Some(\"****.invalid\")"
        );
    }
}
