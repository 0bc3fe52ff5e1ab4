//! The aggregator's copy of every check's rule state, for the reads that
//! must not wait on the database: check views, `/metrics`, the status page,
//! and the cheap pre-checks of ticks, heartbeats and fast confirmation.
//!
//! It is never what a decision rests on: a decision reads the stored state
//! inside its transaction (`storage::Stored`), and this copy only saves
//! reading the state back when it is current. Each entry carries the
//! revision it was stored at and a newer revision always wins, so commits
//! that finish in either order leave the newest state here.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::rules::CheckState;
use crate::storage::Revised;

/// What the cache holds of the checks a decision is about.
#[derive(Default)]
pub(super) struct Held {
    /// Each check with the revision held (`None`: not held), for storage.
    pub(super) revisions: Vec<(String, Option<u64>)>,
    /// The copies held, for the decision where storage finds them current.
    pub(super) copies: HashMap<String, CheckState>,
}

#[derive(Default)]
pub(super) struct StateCache {
    states: RwLock<HashMap<String, Revised>>,
}

impl StateCache {
    pub(super) fn new(states: impl IntoIterator<Item = (String, Revised)>) -> StateCache {
        StateCache {
            states: RwLock::new(states.into_iter().collect()),
        }
    }

    pub(super) fn get(&self, check: &str) -> Option<CheckState> {
        self.read(|states| states.get(check).map(|r| r.state.clone()))
    }

    /// What `f` makes of a check's state, read in place (no copy: fast
    /// confirmation reads one per result).
    pub(super) fn read_state<T>(&self, check: &str, f: impl FnOnce(&CheckState) -> T) -> Option<T> {
        self.read(|states| states.get(check).map(|r| f(&r.state)))
    }

    /// A copy of every state.
    pub(super) fn snapshot(&self) -> HashMap<String, CheckState> {
        self.read(|states| {
            states
                .iter()
                .map(|(name, r)| (name.clone(), r.state.clone()))
                .collect()
        })
    }

    /// Reads the states in place (no copy); `f` must be quick, it holds
    /// the lock that commits wait for.
    pub(super) fn read<R>(&self, f: impl FnOnce(&HashMap<String, Revised>) -> R) -> R {
        f(&self.states.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// What a decision about `checks` sends to storage (the revision held
    /// of each) and keeps (the copies it uses where storage finds them
    /// current).
    pub(super) fn for_decision(&self, checks: impl IntoIterator<Item = String>) -> Held {
        self.read(|states| {
            let mut held = Held::default();
            for check in checks {
                let cached = states.get(&check);
                held.revisions
                    .push((check.clone(), cached.map(|r| r.revision)));
                if let Some(cached) = cached {
                    held.copies.insert(check, cached.state.clone());
                }
            }
            held
        })
    }

    /// Takes in states as stored; an older revision than the one held is
    /// ignored (a commit that finished earlier, taken in later).
    pub(super) fn merge(&self, stored: impl IntoIterator<Item = (String, Revised)>) {
        let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
        for (check, revised) in stored {
            match states.get(&check) {
                Some(held) if held.revision >= revised.revision => {}
                _ => {
                    states.insert(check, revised);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Status;

    fn at(revision: u64, status: Status) -> Revised {
        Revised {
            state: CheckState {
                status,
                ..CheckState::default()
            },
            revision,
        }
    }

    #[test]
    fn the_newest_revision_wins_whatever_order_commits_are_taken_in() {
        let cache = StateCache::default();
        cache.merge([("api".to_string(), at(2, Status::Down))]);
        cache.merge([("api".to_string(), at(1, Status::Up))]);
        assert_eq!(cache.get("api").map(|s| s.status), Some(Status::Down));
        cache.merge([("api".to_string(), at(3, Status::Up))]);
        assert_eq!(cache.get("api").map(|s| s.status), Some(Status::Up));
    }

    #[test]
    fn a_decision_names_the_revision_held_or_none() {
        let cache = StateCache::new([("api".to_string(), at(4, Status::Up))]);
        let held = cache.for_decision(["api".to_string(), "web".to_string()]);
        assert_eq!(
            held.revisions,
            vec![("api".to_string(), Some(4)), ("web".to_string(), None)]
        );
        assert_eq!(held.copies.len(), 1);
    }
}
