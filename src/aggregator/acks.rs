//! Acknowledging an incident (`POST /api/v1/incidents/{id}/ack`, or a
//! signed link): one storage decision on the check whose open incident it
//! is, recording `CheckState::ack` (`policy::acknowledge`), after which
//! the policy sends that incident no escalation and no reminders.

use uuid::Uuid;

use crate::alert::ack::{LinkRefused, Verified};
use crate::policy::{self, AckRefused};
use crate::rules::Ack;

use super::*;

/// What acknowledging came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Acked {
    /// Acknowledged now, or before (the first acknowledgement is kept).
    Done { check: String, ack: Ack },
    /// No check has that incident open.
    NotOpen,
}

impl Aggregator {
    /// Acknowledges `incident` (`via`: `api` or `link`).
    pub async fn acknowledge(&self, incident: Uuid, via: &str) -> Result<Acked, StorageError> {
        let Some(check) = self.check_with_incident(incident) else {
            return Ok(Acked::NotOpen);
        };
        let now = self.clock.now();
        let via = via.to_string();
        let held = self.states.for_decision(vec![check.clone()]);
        let load = Load {
            checks: held.revisions,
            results: Vec::new(),
        };
        let copies = held.copies;
        let name = check.clone();
        let (mut committed, outcome) = self
            .storage
            .decide(load, move |mut loaded| {
                let mut batch = Batch::default();
                let (mut state, refreshed) = match loaded.states.remove(&name) {
                    Some(Stored::Changed(revised)) => (revised.state.clone(), Some(revised)),
                    Some(Stored::Current) => match copies.get(&name) {
                        Some(state) => (state.clone(), None),
                        None => return (batch, (Err(AckRefused::NotOpen), None)),
                    },
                    _ => return (batch, (Err(AckRefused::NotOpen), None)),
                };
                let before = state.ack.clone();
                let result = policy::acknowledge(&mut state, incident, now, &via);
                if result.is_ok() && state.ack != before {
                    batch.states.push((name.clone(), state));
                    return (batch, (result, None));
                }
                (batch, (result, refreshed))
            })
            .await?;
        let (result, refreshed) = outcome;
        self.states.merge(committed_states(&mut committed));
        if let Some(revised) = refreshed {
            self.states.merge(vec![(check.clone(), revised)]);
        }
        Ok(match result {
            Ok(ack) => {
                tracing::info!(%check, %incident, via = %ack.via, "incident acknowledged");
                Acked::Done { check, ack }
            }
            Err(AckRefused::NotOpen) => Acked::NotOpen,
        })
    }

    /// The check whose open incident `incident` is.
    pub fn check_with_incident(&self, incident: Uuid) -> Option<String> {
        self.states.read(|states| {
            states
                .iter()
                .find(|(_, r)| r.state.incident == Some(incident))
                .map(|(name, _)| name.clone())
        })
    }

    /// The incident a signed acknowledge link names, if the link is good
    /// now; `Forged` when links are off (no key).
    pub fn verify_ack_link(&self, token: &str) -> Result<Verified, LinkRefused> {
        match &self.ack_key {
            Some(key) => key.verify(token, self.clock.now()),
            None => Err(LinkRefused::Forged),
        }
    }
}
