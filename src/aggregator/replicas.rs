//! What one replica takes from the others through the shared database, and
//! gives them: what the probes said to whichever replica they reached
//! (contact, skew, backlog), the check states other replicas committed, and
//! the silences made through another replica's API.
//!
//! Every replica shares and refreshes every `PROBE_CONTACT_SHARE_EVERY`
//! (`sync_with_replicas`); only the leader judges liveness (its tick), so
//! a probe that reports to any replica is never stale, and a stale probe
//! that reports again to any replica is back at the leader's next tick.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::limits;
use crate::storage::{Batch, ProbeContact, StorageError};

/// Fast-confirmation requests crossing replicas.
#[derive(Default)]
pub(super) struct SharedRunNow {
    /// Made here, not yet written for the others.
    outgoing: Vec<(String, String)>,
    /// The others' requests already put in this replica's queues, by
    /// number, with when they were made (forgotten after the window).
    taken: HashMap<i64, DateTime<Utc>>,
}

use super::*;

impl Aggregator {
    /// Gives the others what this replica's probes said, and takes what
    /// theirs said, the states they committed and the live silences.
    pub async fn sync_with_replicas(&self) -> Result<(), StorageError> {
        self.exchange_run_now().await?;
        let coordination = self.storage.coordination();
        coordination
            .record_probe_contacts(self.contacts_to_share())
            .await?;
        let shared = coordination.probe_contacts().await?;
        self.merge_shared_contacts(shared);
        self.states
            .merge(self.storage.ingest().load_states().await?);
        let now = self.clock.now();
        let silences = self.storage.ingest().live_silences(now).await?;
        *self.silences.write().unwrap_or_else(|p| p.into_inner()) = silences;
        Ok(())
    }

    /// Queues a fast-confirmation request for the other replicas (when
    /// there may be any), and wakes the share loop to write it now.
    pub(super) fn share_run_now(&self, region: &str, check: &str) {
        if !self.replicas.as_ref().is_some_and(|r| r.shared()) {
            return;
        }
        let mut shared = self
            .shared_run_now
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if shared.outgoing.len() < limits::RUN_NOW_QUEUE_MAX {
            shared
                .outgoing
                .push((region.to_string(), check.to_string()));
        }
        drop(shared);
        self.share_wake.notify_one();
    }

    /// Writes this replica's fast-confirmation requests, and queues the
    /// others' for the probes that long-poll here.
    async fn exchange_run_now(&self) -> Result<(), StorageError> {
        let Some(me) = self.replicas.as_ref().map(|r| r.id().to_string()) else {
            return Ok(());
        };
        let now = self.clock.now();
        let window = chrono::Duration::from_std(limits::RUN_NOW_SHARED_WINDOW).unwrap_or_default();
        let outgoing = std::mem::take(
            &mut self
                .shared_run_now
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .outgoing,
        );
        let coordination = self.storage.coordination();
        if let Err(error) = coordination
            .push_run_now(&me, outgoing.clone(), now, now - window)
            .await
        {
            // Kept for the next share (within the queue's bound).
            let mut shared = self
                .shared_run_now
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let room = limits::RUN_NOW_QUEUE_MAX.saturating_sub(shared.outgoing.len());
            shared.outgoing.extend(outgoing.into_iter().take(room));
            return Err(error);
        }
        // Nothing from before this replica started: those were for others.
        let since = (now - window).max(self.started_at);
        let requests = coordination.run_now_since(since).await?;
        let mut shared = self
            .shared_run_now
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shared.taken.retain(|_, at| *at >= since);
        for request in requests {
            if request.origin == me || shared.taken.contains_key(&request.seq) {
                continue;
            }
            shared.taken.insert(request.seq, request.at);
            self.hub.request_run_now(&request.region, &request.check);
        }
        Ok(())
    }

    /// This replica's probes as it last heard them.
    fn contacts_to_share(&self) -> Vec<ProbeContact> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes
            .values()
            .filter(|p| p.last_result.is_some() || p.last_contact.is_some())
            .map(|p| ProbeContact {
                region: p.region.clone(),
                last_result: p.last_result,
                last_contact: p.last_contact,
                clock_skew_ms: p.clock_skew_ms,
                spool_pending: p.spool_pending,
            })
            .collect()
    }

    /// The newest contact and result of each probe, whoever heard them;
    /// skew and backlog from the shared record (the newest report).
    fn merge_shared_contacts(&self, shared: Vec<ProbeContact>) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for contact in shared {
            let probe = probes
                .entry(contact.region.clone())
                .or_insert_with(|| ProbeStatus {
                    region: contact.region.clone(),
                    ..ProbeStatus::default()
                });
            probe.last_result = probe.last_result.max(contact.last_result);
            probe.last_contact = probe.last_contact.max(contact.last_contact);
            if contact.clock_skew_ms.is_some() {
                probe.clock_skew_ms = contact.clock_skew_ms;
            }
            if contact.spool_pending.is_some() {
                probe.spool_pending = contact.spool_pending;
            }
        }
    }

    /// Back events for stale probes that reported (to any replica) after
    /// they went stale: the leader's part of a recovery another replica
    /// heard. A probe that reports to this replica is claimed back by the
    /// ingest itself.
    pub(super) async fn probes_back_elsewhere(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let reported: Vec<String> = {
            let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            probes
                .values()
                .filter(|p| p.stale)
                .filter(|p| match (p.last_result, p.since) {
                    (Some(last), Some(since)) => last > since,
                    (Some(_), None) => true,
                    _ => false,
                })
                .map(|p| p.region.clone())
                .collect()
        };
        if reported.is_empty() {
            return Ok(());
        }
        let config = self.config();
        let mut batch = Batch::default();
        let back = self.claim_probes_back(&config, &reported, now, &mut batch);
        let mut claim = probes::BackClaim {
            aggregator: self,
            back,
            committed: false,
        };
        let alerts_queued = !batch.deliveries.is_empty();
        self.storage.ingest().write_batch(batch).await?;
        claim.committed = true;
        self.note_probes_reported(&reported, now, &claim.back);
        if alerts_queued {
            self.alert_wake.notify_one();
        }
        Ok(())
    }

    /// Forgets which probes this replica found stale, when it stops
    /// leading: the next leader decides, and this one reads it all again
    /// if it leads again.
    pub fn forget_probe_liveness(&self) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for probe in probes.values_mut() {
            probe.stale = false;
            probe.incident = None;
        }
    }

    /// Takes over the probes' liveness as storage knows it, when this
    /// replica becomes leader: the previous leader may have found probes
    /// stale (or back) since this replica last looked.
    pub async fn take_over_probe_liveness(&self) -> Result<(), StorageError> {
        let mut latest: BTreeMap<String, crate::rules::ProbeEvent> = BTreeMap::new();
        for event in self.storage.ingest().last_probe_events().await? {
            latest.insert(event.region.clone(), event);
        }
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for (region, event) in latest {
            let probe = probes.entry(region.clone()).or_insert_with(|| ProbeStatus {
                region,
                ..ProbeStatus::default()
            });
            probe.stale = event.stale;
            probe.since = Some(event.at);
            probe.incident = event.stale.then_some(event.incident);
        }
        Ok(())
    }
}
