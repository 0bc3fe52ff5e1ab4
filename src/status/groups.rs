//! The page's groups (`status_page.groups`): which shown checks each holds,
//! in the configured order, the checks in no group under "Other", and each
//! group's roll-up: its worst state, and the same headline the whole page
//! uses (`Overall`) over its own counts. Pure, like the rest of `status`.

use std::collections::HashMap;

use serde::Serialize;

use super::{CheckStatus, Counts, Overall, overall};
use crate::config::Config;
use crate::config::page::{OTHER_GROUP, PageGroup};
use crate::rules::Status;

#[derive(Clone, Debug, Serialize)]
pub struct GroupStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The worst state of its checks (`unknown` when none is judged).
    pub status: Status,
    /// The headline over its checks, as the page's banner words it.
    pub overall: Overall,
    pub counts: Counts,
    /// Its shown checks: those named, in the order given, then those its
    /// labels match, by name.
    pub checks: Vec<String>,
}

/// The groups of `config.page` over the shown `checks`; empty when the
/// page has no groups (it is then one list, as before).
pub fn arrange(config: &Config, checks: &[CheckStatus]) -> Vec<GroupStatus> {
    let groups = &config.page.groups;
    if groups.is_empty() {
        return Vec::new();
    }
    // By name, so a page of 10,000 checks in 50 groups stays linear.
    let index: HashMap<&str, &CheckStatus> = checks.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut placed = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(groups.len() + 1);
    for group in groups {
        let members = members(config, group, &index);
        placed.extend(members.iter().cloned());
        out.push(roll_up(
            group.name.clone(),
            group.description.clone(),
            members,
            &index,
        ));
    }
    let mut rest: Vec<String> = checks
        .iter()
        .filter(|c| !placed.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    rest.sort();
    if !rest.is_empty() {
        out.push(roll_up(OTHER_GROUP.to_string(), None, rest, &index));
    }
    out
}

fn members(config: &Config, group: &PageGroup, index: &HashMap<&str, &CheckStatus>) -> Vec<String> {
    let shown = |name: &str| index.contains_key(name);
    let mut names: Vec<String> = Vec::new();
    for name in &group.checks {
        if shown(name) && !names.contains(name) {
            names.push(name.clone());
        }
    }
    let listed: std::collections::HashSet<String> = names.iter().cloned().collect();
    if !group.labels.is_empty() {
        let mut by_label: Vec<String> = config
            .checks
            .iter()
            .filter(|c| group.contains(c) && shown(&c.name) && !listed.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        by_label.sort();
        names.extend(by_label);
    }
    names
}

fn roll_up(
    name: String,
    description: Option<String>,
    members: Vec<String>,
    index: &HashMap<&str, &CheckStatus>,
) -> GroupStatus {
    let mut counts = Counts::default();
    for check in members.iter().filter_map(|name| index.get(name.as_str())) {
        match check.status {
            Status::Up => counts.up += 1,
            Status::Degraded => counts.degraded += 1,
            Status::Down => counts.down += 1,
            Status::Unknown => counts.unknown += 1,
        }
    }
    let status = if counts.down > 0 {
        Status::Down
    } else if counts.degraded > 0 {
        Status::Degraded
    } else if counts.up > 0 {
        Status::Up
    } else {
        Status::Unknown
    };
    GroupStatus {
        name,
        description,
        status,
        overall: overall(&counts),
        counts,
        checks: members,
    }
}
