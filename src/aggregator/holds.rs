//! What holds a check's alerts back right now: maintenance windows from the
//! config and silences made through the API (kept in storage, cached here).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::alert::silence::Silence;
use crate::config::{Check, Config};
use crate::limits;
use crate::storage::StorageError;

use super::*;

impl Aggregator {
    /// Why alerts for `check` are held back at `now`, if they are: an
    /// active maintenance window or silence.
    pub(super) fn muted(
        &self,
        config: &Config,
        check: &Check,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if let Some(window) = config.maintenance_for(check, now) {
            return Some(format!("maintenance window `{}`", window.name));
        }
        if let Some(dep) = self.dependency_down(check) {
            return Some(judge::dependency_hold(&dep));
        }
        let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
        silences
            .iter()
            .find(|s| s.active_at(now) && s.matches(check))
            .map(|s| {
                format!(
                    "silenced by {} until {}: {}",
                    s.author,
                    s.expires_at.to_rfc3339(),
                    s.reason
                )
            })
    }

    /// The first of `check`'s `depends_on` that is down (as the state
    /// cache has it), if any: its outage explains this check's.
    pub(super) fn dependency_down(&self, check: &Check) -> Option<String> {
        if check.depends_on.is_empty() {
            return None;
        }
        self.states.read(|states| {
            check
                .depends_on
                .iter()
                .find(|dep| {
                    states
                        .get(dep.as_str())
                        .is_some_and(|s| s.state.status == crate::rules::Status::Down)
                })
                .cloned()
        })
    }

    /// Adds a silence (stored, so it survives restarts).
    pub async fn add_silence(
        &self,
        silence: Silence,
    ) -> Result<Result<Silence, String>, StorageError> {
        let now = self.clock.now();
        {
            let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
            if silences.iter().filter(|s| s.active_at(now)).count() >= limits::SILENCES_ACTIVE_MAX {
                return Ok(Err(format!(
                    "at most {} silences at once",
                    limits::SILENCES_ACTIVE_MAX
                )));
            }
        }
        self.storage.ingest().insert_silence(&silence).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(silence.clone());
        tracing::info!(silence = %silence.id, author = %silence.author, reason = %silence.reason, until = %silence.expires_at, "silence added");
        Ok(Ok(silence))
    }

    /// Ends a silence early; false when none had that id.
    pub async fn remove_silence(&self, id: Uuid) -> Result<bool, StorageError> {
        let removed = self.storage.ingest().delete_silence(id).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != id);
        Ok(removed)
    }

    /// Silences still in force.
    pub fn silences(&self) -> Vec<Silence> {
        let now = self.clock.now();
        let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
        silences
            .iter()
            .filter(|s| s.active_at(now) || s.created_at > now)
            .cloned()
            .collect()
    }
}
