//! The keys of issue #16's alert policy that span checks or steps:
//! `depends_on` across every checks file (names that exist, no cycles,
//! each error at the position of the name that makes it), and a check's
//! `alert.escalate` steps and `alert.flapping` thresholds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ConfigError;
use super::check::{Escalation, Flapping};
use super::decode::{self, Ctx};
use super::yaml::{Node, Pos};
use crate::limits;

/// `alert.escalate: [{after: 15m, channels: [pager]}, ...]`, sorted by
/// `after`. Channel names go to `refs` for the cross-file pass.
pub(super) fn decode_escalate(
    ctx: &mut Ctx,
    node: &Node,
    refs: &mut Vec<(String, Pos)>,
) -> Option<Vec<Escalation>> {
    let items = ctx.list(node, "`escalate`")?;
    if items.len() > limits::ESCALATION_STEPS_MAX {
        ctx.error(
            node.pos,
            format!(
                "`escalate` has at most {} steps",
                limits::ESCALATION_STEPS_MAX
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut steps = Vec::with_capacity(items.len());
    for item in items {
        let Some(fields) = ctx.fields(item, "a step of `escalate`", &["after", "channels"]) else {
            ok = false;
            continue;
        };
        let after = match fields.get("after") {
            Some(n) => ctx.duration(n, "`after`"),
            None => {
                ctx.error(fields.pos, "a step of `escalate` needs `after: 15m`");
                None
            }
        };
        let channels = match fields.get("channels") {
            Some(n) => ctx.string_list(n, "`channels`").and_then(|list| {
                if list.is_empty() {
                    ctx.error(n.pos, "`channels` of an `escalate` step names at least one");
                    return None;
                }
                refs.extend(list.iter().cloned());
                Some(list.into_iter().map(|(c, _)| c).collect())
            }),
            None => {
                ctx.error(fields.pos, "a step of `escalate` needs `channels: [...]`");
                None
            }
        };
        match (after, channels) {
            (Some(after), Some(channels)) => steps.push(Escalation { after, channels }),
            _ => ok = false,
        }
    }
    steps.sort_by_key(|s| s.after);
    ok.then_some(steps)
}

/// `alert.flapping: {changes: 5, within: 1h}`; either key may be left out.
pub(super) fn decode_flapping(ctx: &mut Ctx, node: &Node) -> Option<Flapping> {
    let fields = ctx.fields(node, "`flapping`", &["changes", "within"])?;
    let mut flapping = Flapping::default();
    let mut ok = true;
    if let Some(n) = fields.get("changes") {
        match ctx.positive_u32(n, "`changes`") {
            Some(v) if v as usize <= limits::FLAP_CHANGES_LIMIT => flapping.changes = v as usize,
            Some(_) => {
                let message = format!("`changes` must be at most {}", limits::FLAP_CHANGES_LIMIT);
                ctx.error(n.pos, message);
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("within") {
        match ctx.duration(n, "`within`") {
            Some(d) if !d.is_zero() => flapping.within = d,
            Some(_) => {
                ctx.error(n.pos, "`within` must be more than 0");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(flapping)
}

/// The cross-file rules of `depends_on`: every name a check that exists,
/// not the check itself, and no cycle (reported once, at the name that
/// closes it, with the whole loop).
pub(super) fn check_dependencies(
    edges: &[(String, String, Pos, PathBuf)],
    names: &BTreeMap<String, (PathBuf, Pos)>,
    errors: &mut Vec<ConfigError>,
) {
    let known: Vec<&str> = names.keys().map(String::as_str).collect();
    let mut graph: BTreeMap<&str, Vec<(&str, Pos, &PathBuf)>> = BTreeMap::new();
    for (check, dep, pos, file) in edges {
        let message = if check == dep {
            Some(format!("check `{check}` cannot depend on itself"))
        } else if !names.contains_key(dep) {
            let hint = decode::suggest(dep, &known)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            Some(format!("`depends_on` names unknown check `{dep}`{hint}"))
        } else {
            None
        };
        match message {
            Some(message) => errors.push(ConfigError {
                file: file.clone(),
                pos: *pos,
                message,
            }),
            None => graph
                .entry(check.as_str())
                .or_default()
                .push((dep.as_str(), *pos, file)),
        }
    }
    // Depth-first from every check; `done` holds checks known to reach no
    // cycle, `path` the checks on the way to the current one.
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    for start in graph.keys().copied().collect::<Vec<_>>() {
        let mut path: Vec<&str> = Vec::new();
        visit(start, &graph, &mut path, &mut done, errors);
    }
}

fn visit<'a>(
    check: &'a str,
    graph: &BTreeMap<&'a str, Vec<(&'a str, Pos, &'a PathBuf)>>,
    path: &mut Vec<&'a str>,
    done: &mut std::collections::BTreeSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) {
    if done.contains(check) {
        return;
    }
    path.push(check);
    for (dep, pos, file) in graph.get(check).map(Vec::as_slice).unwrap_or_default() {
        if path.len() >= limits::DEPENDS_CHAIN_MAX {
            errors.push(ConfigError {
                file: (*file).clone(),
                pos: *pos,
                message: format!(
                    "`depends_on` chains more than {} checks",
                    limits::DEPENDS_CHAIN_MAX
                ),
            });
            continue;
        }
        if let Some(at) = path.iter().position(|c| c == dep) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(dep);
            errors.push(ConfigError {
                file: (*file).clone(),
                pos: *pos,
                message: format!("`depends_on` makes a cycle: {}", cycle.join(" -> ")),
            });
            continue;
        }
        visit(dep, graph, path, done, errors);
    }
    path.pop();
    done.insert(check);
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::load_from_texts;

    fn errors(checks: &str, alerts: &str) -> Vec<String> {
        let checks = [(PathBuf::from("checks/c.yaml"), checks.to_string())];
        let alerts = [(PathBuf::from("alerts/a.yaml"), alerts.to_string())];
        match load_from_texts(&checks, &alerts, Path::new("alerts"), &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const CHANNELS: &str = "channels:\n  ops:\n    webhook: { url: \"http://127.0.0.1:1/\" }\n  pager:\n    webhook: { url: \"http://127.0.0.1:2/\" }\n";

    fn check(name: &str, extra: &str) -> String {
        format!("  - name: {name}\n    tcp: {{ address: \"127.0.0.1:1\" }}\n    every: 1m\n{extra}")
    }

    /// (checks after the header, expected errors).
    #[test]
    fn depends_on_escalate_and_flapping_are_checked_with_positions() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                check("a", "    depends_on: [a]\n"),
                vec!["checks/c.yaml:5:18: check `a` cannot depend on itself"],
            ),
            (
                check("a", "    depends_on: [bb]\n") + &check("b", ""),
                vec![
                    "checks/c.yaml:5:18: `depends_on` names unknown check `bb`; did you mean `b`?",
                ],
            ),
            (
                check("a", "    depends_on: [b]\n")
                    + &check("b", "    depends_on: [c]\n")
                    + &check("c", "    depends_on: [a]\n"),
                vec!["checks/c.yaml:13:18: `depends_on` makes a cycle: a -> b -> c -> a"],
            ),
            (
                check("a", "    depends_on: [b]\n") + &check("b", ""),
                vec![],
            ),
            (
                check(
                    "a",
                    "    alert: { escalate: [{ after: 5m, channels: [pagr] }] }\n",
                ),
                vec!["checks/c.yaml:5:49: unknown channel `pagr`; did you mean `pager`?"],
            ),
            (
                check("a", "    alert: { escalate: [{ channels: [pager] }] }\n"),
                vec!["checks/c.yaml:5:25: a step of `escalate` needs `after: 15m`"],
            ),
            (
                check(
                    "a",
                    "    alert: { escalate: [{ after: 5m, channels: [] }] }\n",
                ),
                vec!["checks/c.yaml:5:48: `channels` of an `escalate` step names at least one"],
            ),
            (
                check("a", "    alert: { flapping: { changes: 0 } }\n"),
                vec!["checks/c.yaml:5:35: `changes` must be a whole number of at least 1"],
            ),
            (
                check(
                    "a",
                    "    alert: { flapping: { changes: 101, within: 0s } }\n",
                ),
                vec![
                    "checks/c.yaml:5:35: `changes` must be at most 100",
                    "checks/c.yaml:5:48: `within` must be more than 0",
                ],
            ),
            (
                check(
                    "a",
                    "    alert: { flapping: { changes: 3, within: 10m }, escalate: [{ after: 1m, channels: [pager] }] }\n",
                ),
                vec![],
            ),
        ];
        for (body, want) in cases {
            let got = errors(&format!("checks:\n{body}"), CHANNELS);
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn escalation_steps_and_flapping_reach_the_check() {
        let body = check(
            "a",
            "    alert: { flapping: { changes: 3, within: 10m }, escalate: [{ after: 1h, channels: [ops] }, { after: 1m, channels: [pager] }] }\n",
        );
        let checks = [(PathBuf::from("checks/c.yaml"), format!("checks:\n{body}"))];
        let alerts = [(PathBuf::from("alerts/a.yaml"), CHANNELS.to_string())];
        let config = load_from_texts(&checks, &alerts, Path::new("alerts"), &|_| None)
            .unwrap_or_else(|e| panic!("{}", e.0.len()));
        let rules = &config.checks[0].alert;
        assert_eq!(rules.flapping.changes, 3);
        assert_eq!(rules.flapping.within.as_secs(), 600);
        let afters: Vec<u64> = rules.escalate.iter().map(|s| s.after.as_secs()).collect();
        assert_eq!(afters, [60, 3600], "in order of `after`");
    }
}
