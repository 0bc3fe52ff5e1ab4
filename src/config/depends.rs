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
