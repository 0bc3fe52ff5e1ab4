//! A remote probe's queue of results waiting for the aggregator: on disk
//! first, in memory when the disk will not take them.
//!
//! Every batch is written here before it is sent (write, then rename, so a
//! file is whole or absent), and removed once the aggregator has accepted
//! it. A probe killed at any moment therefore loses at most the results it
//! had not yet handed to the spool (milliseconds' worth), an aggregator that
//! is away for hours costs nothing but disk, and the backlog drains oldest
//! first when it is back. The spool is bounded (`limits::SPOOL_BYTES_MAX`):
//! past it the oldest batches are dropped, counted and logged.
//!
//! When the spool cannot be written (a read-only or full filesystem), new
//! results wait in a bounded in-memory queue instead (`--memory-queue`) and
//! are sent from there; they move to disk, in order, as soon as a write
//! works again. Only when that queue is full too (the aggregator cannot be
//! reached either) are results dropped: the oldest first, counted by reason
//! and logged. A sent file that cannot be removed (read-only) is forgotten
//! as delivered, never sent in a loop; a restart may resend it, which the
//! aggregator ignores (results are idempotent by id).
//!
//! Files are named `{sequence:020}-{results}.json`, so the directory listing
//! alone gives the order and the number of results waiting.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::limits;
use crate::result::ProbeResult;

/// Why results were lost (the `reason` label of the dropped counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The spool reached its bound and dropped its oldest batches, or the
    /// probe stopped with results in memory that a full disk could not take.
    SpoolFull,
    /// The probe stopped with results in memory that the spool could not
    /// take (read-only, permissions, I/O errors).
    SpoolNotWritable,
    /// The in-memory queue overflowed while the spool could not be written
    /// and the aggregator could not be reached.
    QueueFull,
}

impl DropReason {
    #[cfg(test)]
    pub(crate) const ALL: [DropReason; 3] = [
        DropReason::SpoolFull,
        DropReason::SpoolNotWritable,
        DropReason::QueueFull,
    ];
}

/// What happened to the probe's results since it started: the counters of
/// its `/metrics`. The spool counts what it spools and drops; the uplink
/// what was made, sent and rejected.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub made: AtomicU64,
    pub sent: AtomicU64,
    pub spooled: AtomicU64,
    pub rejected: AtomicU64,
    dropped: [AtomicU64; 3],
}

impl Counts {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    fn drop_results(&self, reason: DropReason, n: u64) -> u64 {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed) + n
    }
}

/// The spool's present state, for `/metrics` and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    /// Results waiting for the aggregator (disk and memory).
    pub pending: u64,
    /// Bytes and files in the spool directory (files already sent but not
    /// removable included).
    pub bytes: u64,
    pub files: u64,
    /// Results waiting in memory because the spool could not take them.
    pub in_memory: u64,
    /// Whether the last write to the spool worked.
    pub writable: bool,
}

/// One spooled batch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    seq: u64,
    results: u64,
    bytes: u64,
}

impl Entry {
    fn file_name(&self) -> String {
        format!("{:020}-{}.json", self.seq, self.results)
    }

    fn parse(name: &str, bytes: u64) -> Option<Entry> {
        let stem = name.strip_suffix(".json")?;
        let (seq, results) = stem.split_once('-')?;
        Some(Entry {
            seq: seq.parse().ok()?,
            results: results.parse().ok()?,
            bytes,
        })
    }
}

/// A file that is done with (sent, or refused) but could not be removed or
/// moved: kept on disk, tried again later, never sent again by this run.
struct Leftover {
    entry: Entry,
    to_rejected: bool,
}

/// Why the spool last refused a write.
struct Unwritable {
    full: bool,
    error: String,
}

struct State {
    entries: VecDeque<Entry>,
    next_seq: u64,
    /// Bytes of `entries`.
    bytes: u64,
    leftovers: Vec<Leftover>,
    memory: VecDeque<ProbeResult>,
    /// Results taken out of `memory` by a send in flight.
    memory_out: usize,
    unwritable: Option<Unwritable>,
    /// When a line about dropped results was last logged, and how many
    /// were dropped since without a line.
    drops_logged_at: Option<Instant>,
    drops_unlogged: u64,
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    memory_max: usize,
    state: Mutex<State>,
    /// Results waiting (for the `lookout_spool_pending` gauge and header).
    pending: AtomicU64,
    counts: Counts,
}

/// Results read back for sending: from spool files, or from the memory
/// queue. Hand it back with `remove` (delivered), `reject` (refused for
/// good) or `put_back` (to try again).
#[derive(Debug)]
pub(crate) struct Drain {
    pub results: Vec<ProbeResult>,
    seqs: Vec<u64>,
    from_memory: bool,
}

impl Drain {
    /// The batches it holds: one per spool file, or one from memory.
    pub(crate) fn batches(&self) -> usize {
        if self.from_memory { 1 } else { self.seqs.len() }
    }
}

fn is_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl Spool {
    /// Opens (creating) the spool in `dir`, picking up what an earlier run
    /// left. A directory that cannot be created or read is logged and the
    /// probe goes on with results in memory until it can be written.
    pub(crate) fn open(dir: &Path, max_bytes: u64, memory_max: usize) -> Spool {
        let mut entries = Vec::new();
        let mut unwritable = None;
        let listing = std::fs::create_dir_all(dir).and_then(|()| std::fs::read_dir(dir));
        match listing {
            Ok(listing) => {
                for item in listing.flatten() {
                    let name = item.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if name.ends_with(".tmp") {
                        // A write cut short by a crash: never renamed, never sent.
                        let _ = std::fs::remove_file(item.path());
                        continue;
                    }
                    let bytes = item.metadata().map(|m| m.len()).unwrap_or(0);
                    let Some(entry) = Entry::parse(name, bytes) else {
                        continue;
                    };
                    match looks_whole(&item.path(), bytes) {
                        Ok(()) => entries.push(entry),
                        Err(why) => {
                            let moved = move_to_rejected(dir, name);
                            tracing::warn!(
                                "spool file {} is damaged ({why}); {}",
                                item.path().display(),
                                match moved {
                                    Ok(()) => "moved to rejected/, not sent".to_string(),
                                    Err(e) => format!("not sent (it cannot be moved: {e})"),
                                }
                            );
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(
                    "the spool directory {} cannot be used ({error}); results are kept in memory (up to {memory_max}) and sent directly until it can",
                    dir.display()
                );
                unwritable = Some(Unwritable {
                    full: is_full(&error),
                    error: error.to_string(),
                });
            }
        }
        entries.sort_by_key(|e| e.seq);
        let next_seq = entries.last().map(|e| e.seq + 1).unwrap_or(0);
        let bytes = entries.iter().map(|e| e.bytes).sum();
        let pending = entries.iter().map(|e| e.results).sum();
        if pending > 0 {
            tracing::info!(
                results = pending,
                batches = entries.len(),
                "spool holds results from an earlier run; sending them first"
            );
        }
        Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            memory_max,
            state: Mutex::new(State {
                entries: entries.into(),
                next_seq,
                bytes,
                leftovers: Vec::new(),
                memory: VecDeque::new(),
                memory_out: 0,
                unwritable,
                drops_logged_at: None,
                drops_unlogged: 0,
            }),
            pending: AtomicU64::new(pending),
            counts: Counts::default(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Results waiting to be sent.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Results dropped since start, for every reason.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|r| self.counts.dropped(*r))
            .sum()
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    pub(crate) fn figures(&self) -> Figures {
        let state = self.lock();
        let leftover_bytes: u64 = state.leftovers.iter().map(|l| l.entry.bytes).sum();
        Figures {
            pending: self.pending(),
            bytes: state.bytes + leftover_bytes,
            files: (state.entries.len() + state.leftovers.len()) as u64,
            in_memory: (state.memory.len() + state.memory_out) as u64,
            writable: state.unwritable.is_none(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a batch: on disk if the spool takes it, otherwise in memory.
    /// Blocking file I/O: call from `spawn_blocking`.
    pub(crate) fn append(&self, results: Vec<ProbeResult>) {
        if results.is_empty() {
            return;
        }
        self.pending
            .fetch_add(results.len() as u64, Ordering::Relaxed);
        let mut state = self.lock();
        // What waits in memory goes to disk first, so the order holds; not
        // while part of it is being sent (it may come back).
        if !state.memory.is_empty() && state.memory_out == 0 {
            self.flush_memory(&mut state);
        }
        if state.memory.is_empty() && state.memory_out == 0 {
            match self.write(&mut state, &results) {
                Ok(()) => {
                    if let Some(was) = state.unwritable.take() {
                        tracing::info!(
                            "the spool {} can be written again (it could not: {})",
                            self.dir.display(),
                            was.error
                        );
                    }
                    return;
                }
                Err(error) => self.note_unwritable(&mut state, &error),
            }
        }
        state.memory.extend(results);
        self.bound_memory(&mut state);
    }

    /// Moves the memory queue to disk, oldest first, as far as the disk takes it.
    fn flush_memory(&self, state: &mut State) {
        let before = state.memory.len();
        while !state.memory.is_empty() {
            let n = state.memory.len().min(limits::RESULT_BATCH_MAX);
            let chunk: Vec<ProbeResult> = state.memory.iter().take(n).cloned().collect();
            match self.write(state, &chunk) {
                Ok(()) => {
                    state.memory.drain(..n);
                }
                Err(error) => {
                    self.note_unwritable(state, &error);
                    break;
                }
            }
        }
        if state.memory.is_empty()
            && let Some(was) = state.unwritable.take()
        {
            tracing::info!(
                "the spool {} can be written again (it could not: {}); the {before} results kept in memory are in it now",
                self.dir.display(),
                was.error
            );
        }
    }

    /// One batch file, whole or not at all.
    fn write(&self, state: &mut State, results: &[ProbeResult]) -> Result<(), std::io::Error> {
        let body = serde_json::to_vec(results).map_err(std::io::Error::other)?;
        let entry = Entry {
            seq: state.next_seq,
            results: results.len() as u64,
            bytes: body.len() as u64,
        };
        let path = self.dir.join(entry.file_name());
        let tmp = path.with_extension("tmp");
        let mut written = std::fs::write(&tmp, &body);
        if matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            // The directory went away (or never could be made at start).
            written = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(&tmp, &body));
        }
        if let Err(error) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
            // A partial file on a full disk takes the room the next try needs.
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        state.next_seq += 1;
        state.bytes += entry.bytes;
        Counts::add(&self.counts.spooled, results.len());
        state.entries.push_back(entry);
        self.bound_disk(state);
        Ok(())
    }

    /// Over the bound: the oldest batches go, loudly.
    fn bound_disk(&self, state: &mut State) {
        while state.bytes > self.max_bytes && state.entries.len() > 1 {
            let Some(oldest) = state.entries.pop_front() else {
                break;
            };
            let path = self.dir.join(oldest.file_name());
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), %error, "cannot remove a dropped spool file");
            }
            state.bytes -= oldest.bytes;
            self.pending.fetch_sub(oldest.results, Ordering::Relaxed);
            let total = self
                .counts
                .drop_results(DropReason::SpoolFull, oldest.results);
            tracing::error!(
                dropped = oldest.results,
                dropped_total = total,
                max_bytes = self.max_bytes,
                "spool full: dropped the oldest results (the aggregator has been unreachable too long)"
            );
        }
    }

    fn note_unwritable(&self, state: &mut State, error: &std::io::Error) {
        let full = is_full(error);
        let changed = state.unwritable.as_ref().is_none_or(|u| u.full != full);
        if changed {
            tracing::error!(
                "the spool {} cannot be written ({error}); results are kept in memory (up to {}) and sent directly",
                self.dir.display(),
                self.memory_max
            );
        }
        state.unwritable = Some(Unwritable {
            full,
            error: error.to_string(),
        });
    }

    /// Over the memory bound (those being sent count too): the oldest
    /// waiting go, counted.
    fn bound_memory(&self, state: &mut State) {
        let over = (state.memory.len() + state.memory_out)
            .saturating_sub(self.memory_max)
            .min(state.memory.len());
        if over == 0 {
            return;
        }
        state.memory.drain(..over);
        self.pending.fetch_sub(over as u64, Ordering::Relaxed);
        let total = self.counts.drop_results(DropReason::QueueFull, over as u64);
        state.drops_unlogged += over as u64;
        let due = state
            .drops_logged_at
            .is_none_or(|at| at.elapsed() >= limits::PROBE_DROP_LOG_EVERY);
        if due {
            let why = state
                .unwritable
                .as_ref()
                .map_or("unknown", |u| u.error.as_str());
            tracing::error!(
                "results lost: the spool {} cannot be written ({why}) and the aggregator cannot be reached, so the in-memory queue is full ({} results); dropped the oldest {} ({total} since start)",
                self.dir.display(),
                self.memory_max,
                state.drops_unlogged
            );
            state.drops_logged_at = Some(Instant::now());
            state.drops_unlogged = 0;
        }
    }

    /// The oldest results: spool files first, up to `max_files` and
    /// `max_results` results (at least one file); when there are none, up
    /// to `max_results` from memory. A file that cannot be read back is
    /// moved to `rejected/` and skipped. Blocking: call from `spawn_blocking`.
    pub(crate) fn oldest(&self, max_files: usize, max_results: usize) -> Drain {
        loop {
            let taken: Vec<Entry> = {
                let mut state = self.lock();
                let mut taken = Vec::new();
                let mut count = 0u64;
                for entry in state.entries.iter().take(max_files) {
                    if !taken.is_empty() && count + entry.results > max_results as u64 {
                        break;
                    }
                    count += entry.results;
                    taken.push(entry.clone());
                }
                if taken.is_empty() {
                    return self.take_from_memory(&mut state, max_results);
                }
                taken
            };
            // Read without the lock: new results keep coming meanwhile.
            let mut drain = Drain {
                results: Vec::new(),
                seqs: Vec::new(),
                from_memory: false,
            };
            let mut unreadable = Vec::new();
            for entry in taken {
                let path = self.dir.join(entry.file_name());
                let parsed = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<Vec<ProbeResult>>(&bytes)
                            .map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(results) => {
                        drain.results.extend(results);
                        drain.seqs.push(entry.seq);
                    }
                    Err(error) => unreadable.push((entry, path, error)),
                }
            }
            if unreadable.is_empty() {
                return drain;
            }
            let mut state = self.lock();
            for (entry, path, error) in unreadable {
                if !state.entries.iter().any(|e| e.seq == entry.seq) {
                    continue; // dropped by the bound meanwhile
                }
                tracing::error!(file = %path.display(), %error, "unreadable spool file; moved to rejected/, not sent");
                self.take_out(&mut state, &[entry.seq], true);
            }
            if !drain.seqs.is_empty() {
                return drain;
            }
            // Every file read was unreadable, and is out of the way: again.
        }
    }

    /// Up to `max_results` from the memory queue, once the disk has none.
    fn take_from_memory(&self, state: &mut State, max_results: usize) -> Drain {
        let mut drain = Drain {
            results: Vec::new(),
            seqs: Vec::new(),
            from_memory: false,
        };
        if state.entries.is_empty() && state.memory_out == 0 {
            let n = state.memory.len().min(max_results);
            if n > 0 {
                drain.results = state.memory.drain(..n).collect();
                drain.from_memory = true;
                state.memory_out = n;
            }
        }
        drain
    }

    /// Forgets results the aggregator has accepted. Blocking.
    pub(crate) fn remove(&self, drain: Drain) {
        let mut state = self.lock();
        if drain.from_memory {
            state.memory_out = 0;
            self.pending
                .fetch_sub(drain.results.len() as u64, Ordering::Relaxed);
        } else {
            self.take_out(&mut state, &drain.seqs, false);
        }
    }

    /// Results that were not delivered and are tried again later.
    pub(crate) fn put_back(&self, drain: Drain) {
        if !drain.from_memory {
            return; // still in their files
        }
        let mut state = self.lock();
        state.memory_out = 0;
        for result in drain.results.into_iter().rev() {
            state.memory.push_front(result);
        }
        self.bound_memory(&mut state);
    }

    /// Sets aside results the aggregator refused for good: to `rejected/`,
    /// where a person can look at them; they are not sent again. Blocking.
    pub(crate) fn reject(&self, drain: Drain) {
        let mut state = self.lock();
        if drain.from_memory {
            state.memory_out = 0;
            self.pending
                .fetch_sub(drain.results.len() as u64, Ordering::Relaxed);
            let name = format!("{:020}-{}-memory.json", state.next_seq, drain.results.len());
            state.next_seq += 1;
            let kept = serde_json::to_vec(&drain.results)
                .map_err(std::io::Error::other)
                .and_then(|body| {
                    let dir = self.dir.join("rejected");
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join(&name), body)
                });
            if let Err(error) = kept {
                tracing::error!(
                    "cannot keep {} refused results in {}/rejected/ ({error}); they are not sent again",
                    drain.results.len(),
                    self.dir.display()
                );
            }
        } else {
            self.take_out(&mut state, &drain.seqs, true);
        }
    }

    /// At shutdown: what waits in memory goes to disk if it can; what
    /// cannot is lost, counted and logged. Blocking.
    pub(crate) fn flush_at_shutdown(&self) {
        let mut state = self.lock();
        if state.memory.is_empty() && state.memory_out == 0 {
            return;
        }
        self.flush_memory(&mut state);
        let lost = (state.memory.len() + state.memory_out) as u64;
        if lost == 0 {
            return;
        }
        let (reason, why) = match &state.unwritable {
            Some(u) if u.full => (DropReason::SpoolFull, u.error.clone()),
            Some(u) => (DropReason::SpoolNotWritable, u.error.clone()),
            None => (DropReason::SpoolNotWritable, "unknown".to_string()),
        };
        state.memory.clear();
        state.memory_out = 0;
        self.pending.fetch_sub(lost, Ordering::Relaxed);
        let total = self.counts.drop_results(reason, lost);
        tracing::error!(
            "results lost: stopping with {lost} results that neither the spool {} ({why}) nor the aggregator could take ({total} dropped for this reason since start)",
            self.dir.display()
        );
    }

    /// Takes batches out of the queue (delivered, or to `rejected/`); a
    /// file that cannot be removed or moved stays a leftover, tried again
    /// later, never sent again.
    fn take_out(&self, state: &mut State, seqs: &[u64], to_rejected: bool) {
        self.retry_leftovers(state);
        for seq in seqs {
            let Some(index) = state.entries.iter().position(|e| e.seq == *seq) else {
                continue;
            };
            let Some(entry) = state.entries.remove(index) else {
                continue;
            };
            state.bytes -= entry.bytes;
            self.pending.fetch_sub(entry.results, Ordering::Relaxed);
            if let Err(error) = self.finish_file(&entry, to_rejected) {
                tracing::warn!(
                    "cannot {} spool file {} ({error}); it stays on disk, and is not sent again",
                    if to_rejected {
                        "move to rejected/ the"
                    } else {
                        "remove the sent"
                    },
                    self.dir.join(entry.file_name()).display()
                );
                state.leftovers.push(Leftover { entry, to_rejected });
            }
        }
    }

    fn retry_leftovers(&self, state: &mut State) {
        state
            .leftovers
            .retain(|l| self.finish_file(&l.entry, l.to_rejected).is_err());
    }

    fn finish_file(&self, entry: &Entry, to_rejected: bool) -> Result<(), std::io::Error> {
        let name = entry.file_name();
        let done = if to_rejected {
            move_to_rejected(&self.dir, &name)
        } else {
            std::fs::remove_file(self.dir.join(&name))
        };
        match done {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn move_to_rejected(dir: &Path, name: &str) -> Result<(), std::io::Error> {
    let rejected = dir.join("rejected");
    std::fs::create_dir_all(&rejected)?;
    std::fs::rename(dir.join(name), rejected.join(name))
}

/// A cheap look at a spool file at start: readable, and shaped like a JSON
/// list (a file cut short by a power loss is not). The whole file is read
/// only when it is sent.
fn looks_whole(path: &Path, bytes: u64) -> Result<(), String> {
    if bytes < 2 {
        return Err("empty".into());
    }
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    let mut last = [0u8; 1];
    file.read_exact(&mut first).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::End(-1)).map_err(|e| e.to_string())?;
    file.read_exact(&mut last).map_err(|e| e.to_string())?;
    if first[0] == b'[' && last[0] == b']' {
        Ok(())
    } else {
        Err("not a whole batch".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Outcome;
    use chrono::Utc;

    fn batch(n: usize) -> Vec<ProbeResult> {
        (0..n)
            .map(|_| ProbeResult::for_test("api", Outcome::Ok, Utc::now()))
            .collect()
    }

    #[test]
    fn drains_oldest_first_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let first = batch(2);
        let second = batch(3);
        {
            let spool = Spool::open(dir.path(), u64::MAX, 10);
            spool.append(first.clone());
            spool.append(second.clone());
            assert_eq!(spool.pending(), 5);
            assert_eq!(spool.counts().spooled.load(Ordering::Relaxed), 5);
        }
        let spool = Spool::open(dir.path(), u64::MAX, 10);
        assert_eq!(spool.pending(), 5);
        assert_eq!(spool.figures().files, 2);
        let drain = spool.oldest(1, 1000);
        assert_eq!(drain.results, first);
        spool.remove(drain);
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, second);
        spool.remove(drain);
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.figures().files, 0);
        assert_eq!(spool.figures().bytes, 0);
        assert!(spool.oldest(10, 1000).results.is_empty());
        // New batches after a reopen still sort after the old ones.
        spool.append(first.clone());
        let reopened = Spool::open(dir.path(), u64::MAX, 10);
        assert_eq!(reopened.oldest(10, 1000).results, first);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&batch(1)).unwrap().len() as u64;
        let spool = Spool::open(dir.path(), one * 2 + one / 2, 10);
        let batches: Vec<_> = (0..4).map(|_| batch(1)).collect();
        for b in &batches {
            spool.append(b.clone());
        }
        assert_eq!(spool.counts().dropped(DropReason::SpoolFull), 2);
        assert_eq!(spool.dropped(), 2);
        assert_eq!(spool.pending(), 2);
        let drain = spool.oldest(10, 1000);
        assert_eq!(
            drain.results,
            [batches[2].clone(), batches[3].clone()].concat()
        );
    }

    #[test]
    fn rejected_and_unreadable_batches_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), u64::MAX, 10);
        spool.append(batch(1));
        let good = batch(2);
        spool.append(good.clone());
        std::fs::write(dir.path().join(format!("{:020}-1.json", 0)), b"not json").unwrap();
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, good);
        assert!(
            dir.path()
                .join("rejected")
                .join(format!("{:020}-1.json", 0))
                .exists()
        );
        spool.reject(drain);
        assert_eq!(spool.pending(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("rejected"))
                .unwrap()
                .count(),
            2
        );
    }

    #[test]
    fn damaged_files_are_not_counted_as_pending_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), u64::MAX, 10);
            spool.append(batch(3));
        }
        std::fs::write(dir.path().join(format!("{:020}-7.json", 5)), b"[{\"id\":").unwrap();
        std::fs::write(dir.path().join(format!("{:020}-2.json", 6)), b"").unwrap();
        let spool = Spool::open(dir.path(), u64::MAX, 10);
        assert_eq!(spool.pending(), 3);
        assert_eq!(spool.figures().files, 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("rejected"))
                .unwrap()
                .count(),
            2
        );
    }

    /// Makes `dir` unusable for the spool (a file where the directory
    /// was: root ignores permissions, a file in the way stops everyone).
    fn block(dir: &Path) {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::write(dir, b"in the way").unwrap();
    }

    fn unblock(dir: &Path) {
        std::fs::remove_file(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }

    #[test]
    fn an_unwritable_spool_keeps_results_in_memory_in_order_until_it_can_be_written() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        let spool = Spool::open(&dir, u64::MAX, 100);
        let on_disk = batch(2);
        spool.append(on_disk.clone());
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, on_disk);
        block(&dir);
        let first = batch(3);
        spool.append(first.clone());
        let figures = spool.figures();
        assert!(!figures.writable);
        assert_eq!((figures.pending, figures.in_memory), (5, 3));
        // The sent file cannot be removed: forgotten as sent all the same.
        spool.remove(drain);
        assert_eq!(spool.pending(), 3);
        // Sent from memory; a failed send puts them back in front.
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, first);
        let second = batch(2);
        spool.append(second.clone());
        spool.put_back(drain);
        assert_eq!(spool.figures().in_memory, 5);
        // Writable again: memory goes to disk first, then the new batch.
        unblock(&dir);
        let third = batch(1);
        spool.append(third.clone());
        let figures = spool.figures();
        assert!(figures.writable);
        assert_eq!((figures.pending, figures.in_memory), (6, 0));
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, [first, second, third].concat());
        spool.remove(drain);
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.dropped(), 0);
    }

    #[test]
    fn memory_past_its_bound_drops_the_oldest_and_the_rest_is_counted_at_shutdown() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        let spool = Spool::open(&dir, u64::MAX, 4);
        block(&dir);
        let results = batch(6);
        for r in &results {
            spool.append(vec![r.clone()]);
        }
        assert_eq!(spool.counts().dropped(DropReason::QueueFull), 2);
        assert_eq!(spool.pending(), 4);
        let drain = spool.oldest(10, 1000);
        assert_eq!(drain.results, results[2..].to_vec());
        spool.put_back(drain);
        spool.flush_at_shutdown();
        assert_eq!(spool.counts().dropped(DropReason::SpoolNotWritable), 4);
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.dropped(), 6);
    }
}
