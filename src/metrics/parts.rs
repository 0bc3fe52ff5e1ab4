//! `/metrics` in parts (#19): at 10,000 checks the whole exposition is tens
//! of MiB, so a scrape may ask for a part of it. `?part=lookout` is every
//! series without a `check` label (Lookout's own: HTTP, scheduler, regions,
//! outbox, ...); `?shard=K/N` the series with a `check` label of the checks
//! whose name hashes (FNV-1a, 32 bits) to `K` modulo `N`; `?check=NAME`
//! (repeatable) those of the checks named. The lookout part and the `N`
//! shards are disjoint and together hold every sample of the whole.
//!
//! The parts are cut from the text: a sample is kept by its `check` label's
//! value, a family's `# HELP`/`# TYPE`/`# UNIT` lines come along with its
//! first kept sample. The snapshot is narrowed to the part's checks before
//! it is encoded, so a shard costs about its share of the whole.

use std::collections::HashSet;

use super::fnv1a_32;
use crate::limits;

/// Which series a scrape asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Everything (plain `/metrics`).
    #[default]
    All,
    /// The series without a `check` label.
    Lookout,
    /// The series of the checks in shard `index` of `of`.
    Shard { index: u32, of: u32 },
    /// The series of the checks named.
    Checks(HashSet<String>),
}

/// Why a `/metrics` query was refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("`part` must be `lookout`, not `{0}`")]
    Part(String),
    #[error(
        "`shard` must be K/N with N from 1 to {max} and K below N (for example 0/4), not `{0}`",
        max = limits::METRICS_SHARDS_MAX
    )]
    Shard(String),
    #[error("at most {max} `check` names in one scrape", max = limits::METRICS_CHECKS_MAX)]
    TooManyChecks,
    #[error("give one of `part`, `shard` and `check`, not several")]
    Several,
    #[error("unknown query key `{0}`: expected one of `part`, `shard`, `check`")]
    Unknown(String),
}

impl Scope {
    /// The scope of a query string (`None`: no query).
    pub fn from_query(query: Option<&str>) -> Result<Scope, ScopeError> {
        let mut scope = Scope::All;
        let mut names = HashSet::new();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let next = match key.as_ref() {
                "part" if value == "lookout" => Scope::Lookout,
                "part" => return Err(ScopeError::Part(cut(&value))),
                "shard" => parse_shard(&value).ok_or_else(|| ScopeError::Shard(cut(&value)))?,
                "check" => {
                    if names.len() >= limits::METRICS_CHECKS_MAX {
                        return Err(ScopeError::TooManyChecks);
                    }
                    names.insert(value.into_owned());
                    Scope::Checks(HashSet::new())
                }
                // Anything else is a typo worth saying.
                other => return Err(ScopeError::Unknown(cut(other))),
            };
            scope = match (scope, next) {
                (Scope::All, next) => next,
                (Scope::Checks(held), Scope::Checks(_)) => Scope::Checks(held),
                _ => return Err(ScopeError::Several),
            };
        }
        Ok(match scope {
            Scope::Checks(_) => Scope::Checks(names),
            other => other,
        })
    }

    /// Whether the series of `check` (`None`: a series without the label)
    /// belong to this part.
    pub fn keeps(&self, check: Option<&str>) -> bool {
        match (self, check) {
            (Scope::All, _) => true,
            (Scope::Lookout, check) => check.is_none(),
            (_, None) => false,
            (Scope::Shard { index, of }, Some(name)) => shard_of(name, *of) == *index,
            (Scope::Checks(names), Some(name)) => names.contains(name),
        }
    }

    /// Whether the part has any per-check series at all.
    pub fn has_checks(&self) -> bool {
        !matches!(self, Scope::Lookout)
    }

    /// Whether the part has Lookout's own series.
    pub fn has_own(&self) -> bool {
        matches!(self, Scope::All | Scope::Lookout)
    }
}

/// The shard (of `of`) a check's series are in.
pub fn shard_of(check: &str, of: u32) -> u32 {
    fnv1a_32(check.as_bytes()) % of.max(1)
}

fn parse_shard(value: &str) -> Option<Scope> {
    let (k, n) = value.split_once('/')?;
    let (index, of): (u32, u32) = (k.trim().parse().ok()?, n.trim().parse().ok()?);
    (of >= 1 && of as usize <= limits::METRICS_SHARDS_MAX && index < of)
        .then_some(Scope::Shard { index, of })
}

/// A query value as an error quotes it: at most 64 characters.
fn cut(value: &str) -> String {
    value.chars().take(64).collect()
}

/// The value of a sample line's `check` label (`None`: it has none).
pub fn check_label(line: &str) -> Option<&str> {
    let open = line.find('{')?;
    // Labels end at the first `}` outside a quoted value; check names are
    // plain (the config's name rule), but read escapes all the same.
    let labels = &line[open + 1..];
    let mut rest = labels;
    loop {
        let (name, after) = rest.split_once("=\"")?;
        let name = name.trim_start_matches(',');
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if name == "check" {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
        if !rest.starts_with(',') {
            return None;
        }
    }
}

/// Appends the lines of `text` that belong to `scope` to `out`: samples by
/// their `check` label, a family's comment lines with its first kept
/// sample; `# EOF` is left to the caller.
pub fn filter_into(out: &mut String, text: &str, scope: &Scope) {
    // The comment lines of the family being read, until a sample is kept.
    let mut header = String::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with('#') {
            if line.starts_with("# HELP ") {
                header.clear();
            }
            header.push_str(line);
            header.push('\n');
            continue;
        }
        if !scope.keeps(check_label(line)) {
            continue;
        }
        out.push_str(&header);
        header.clear();
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_scopes_or_plain_errors() {
        let table: &[(&str, Result<Scope, ScopeError>)] = &[
            ("", Ok(Scope::All)),
            ("part=lookout", Ok(Scope::Lookout)),
            ("shard=0/4", Ok(Scope::Shard { index: 0, of: 4 })),
            ("shard=3/4", Ok(Scope::Shard { index: 3, of: 4 })),
            ("shard=4/4", Err(ScopeError::Shard("4/4".into()))),
            ("shard=0/0", Err(ScopeError::Shard("0/0".into()))),
            ("shard=x", Err(ScopeError::Shard("x".into()))),
            ("part=all", Err(ScopeError::Part("all".into()))),
            ("part=lookout&shard=0/2", Err(ScopeError::Several)),
            ("limit=3", Err(ScopeError::Unknown("limit".into()))),
            (
                "check=a&check=b",
                Ok(Scope::Checks(["a", "b"].map(String::from).into())),
            ),
        ];
        for (query, expected) in table {
            assert_eq!(&Scope::from_query(Some(query)), expected, "{query}");
        }
        let many: String = (0..=limits::METRICS_CHECKS_MAX)
            .map(|i| format!("check=c{i}&"))
            .collect();
        assert_eq!(
            Scope::from_query(Some(&many)),
            Err(ScopeError::TooManyChecks)
        );
    }

    #[test]
    fn the_check_label_is_read_wherever_it_stands() {
        let table = [
            ("probe_success{check=\"api\",region=\"eu\"} 1", Some("api")),
            ("x{region=\"eu\",check=\"web-1\"} 1", Some("web-1")),
            ("x{target=\"a,check=\\\"no\\\"\",check=\"b\"} 1", Some("b")),
            ("x{checks=\"no\"} 1", None),
            ("lookout_heartbeat_unknown_pings_total 3", None),
            ("http_requests_total{method=\"GET\",route=\"/\"} 2", None),
        ];
        for (line, expected) in table {
            assert_eq!(check_label(line), expected, "{line}");
        }
    }

    #[test]
    fn a_family_keeps_its_comments_only_with_a_sample() {
        let text = "# HELP a A.\n# TYPE a gauge\na{check=\"x\"} 1\na{check=\"y\"} 2\n\
                    # HELP b B.\n# TYPE b gauge\nb 3\n# EOF\n";
        let mut out = String::new();
        filter_into(&mut out, text, &Scope::Checks(["y".to_string()].into()));
        assert_eq!(out, "# HELP a A.\n# TYPE a gauge\na{check=\"y\"} 2\n");
        let mut own = String::new();
        filter_into(&mut own, text, &Scope::Lookout);
        assert_eq!(own, "# HELP b B.\n# TYPE b gauge\nb 3\n");
    }
}
