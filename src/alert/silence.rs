//! Ad-hoc silences: "hold back alerts for these checks until then", made
//! through the API (`POST /api/v1/silences`) by someone, for a reason. Results
//! are still recorded and shown; only alerts wait, and a check still down
//! when its silence ends alerts then (the aggregator's `held` state).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Check;
use crate::config::alerting::labels_match;
use crate::limits;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: Uuid,
    /// A check by name; and/or labels every matched check carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Silence {
    pub fn matches(&self, check: &Check) -> bool {
        self.check.as_ref().is_none_or(|name| *name == check.name)
            && labels_match(&self.labels, &check.labels)
    }

    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.created_at <= now && now < self.expires_at
    }
}

/// A `POST /api/v1/silences` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub check: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    /// Either an absolute expiry...
    pub expires_at: Option<DateTime<Utc>>,
    /// ...or a duration from now, such as `2h`.
    pub duration: Option<String>,
}

impl NewSilence {
    /// Checks the request and makes the silence, or says what is wrong.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Silence, String> {
        if self.check.is_none() && self.labels.is_empty() {
            return Err("a silence needs `check` or `labels` to say what it covers".into());
        }
        for (what, text) in [("reason", &self.reason), ("author", &self.author)] {
            if text.trim().is_empty() {
                return Err(format!("`{what}` is required"));
            }
            if text.chars().count() > limits::SILENCE_TEXT_CHARS_MAX {
                return Err(format!(
                    "`{what}` is longer than {} characters",
                    limits::SILENCE_TEXT_CHARS_MAX
                ));
            }
        }
        if self.labels.len() > limits::SILENCE_LABELS_MAX {
            return Err(format!("at most {} labels", limits::SILENCE_LABELS_MAX));
        }
        let expires_at = match (self.expires_at, &self.duration) {
            (Some(at), None) => at,
            (None, Some(text)) => {
                let d = crate::schedule::parse_duration(text)?;
                now + chrono::Duration::from_std(d).map_err(|e| e.to_string())?
            }
            _ => {
                return Err(
                    "give exactly one of `expires_at` (RFC 3339) or `duration` (such as 2h)".into(),
                );
            }
        };
        if expires_at <= now {
            return Err("the silence would already be over".into());
        }
        let longest = chrono::Duration::from_std(limits::SILENCE_DURATION_MAX)
            .unwrap_or(chrono::Duration::MAX);
        if expires_at - now > longest {
            return Err(format!(
                "a silence lasts at most {}; use a maintenance window for longer",
                crate::schedule::format_duration(limits::SILENCE_DURATION_MAX)
            ));
        }
        Ok(Silence {
            id: Uuid::now_v7(),
            check: self.check,
            labels: self.labels,
            reason: self.reason,
            author: self.author,
            created_at: now,
            expires_at,
        })
    }
}
