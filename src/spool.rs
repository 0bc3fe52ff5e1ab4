//! A remote probe's on-disk queue of result batches.
//!
//! Every batch is written here before it is sent (write, then rename, so a
//! file is whole or absent), and removed once the aggregator has accepted
//! it. A probe killed at any moment therefore loses at most the results it
//! had not yet handed to the spool (milliseconds' worth), an aggregator that
//! is away for hours costs nothing but disk, and the backlog drains oldest
//! first when it is back. The spool is bounded (`limits::SPOOL_BYTES_MAX`):
//! past it the oldest batches are dropped, counted and logged.
//!
//! Files are named `{sequence:020}-{results}.json`, so the directory listing
//! alone gives the order and the number of results waiting.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::probe::ProbeResult;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
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

struct State {
    entries: std::collections::VecDeque<Entry>,
    next_seq: u64,
    bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Results waiting (for the `lookout_spool_pending` gauge).
    pending: AtomicU64,
    /// Results dropped because the spool was full, since start.
    dropped: AtomicU64,
}

/// Batches read back for sending: their results, and what to remove once
/// the aggregator has them.
pub struct Drain {
    pub results: Vec<ProbeResult>,
    seqs: Vec<u64>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, picking up what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut entries = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io(dir))? {
            let item = item.map_err(io(dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never renamed, never sent.
                let _ = std::fs::remove_file(item.path());
                continue;
            }
            let bytes = item.metadata().map(|m| m.len()).unwrap_or(0);
            if let Some(entry) = Entry::parse(name, bytes) {
                entries.push(entry);
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
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                entries: entries.into(),
                next_seq,
                bytes,
            }),
            pending: AtomicU64::new(pending),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Results waiting to be sent.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Results dropped because the spool was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes a batch. Blocking file I/O: call from `spawn_blocking`.
    pub fn append(&self, results: &[ProbeResult]) -> Result<(), SpoolError> {
        if results.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(results).map_err(|e| SpoolError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry {
            seq: state.next_seq,
            results: results.len() as u64,
            bytes: body.len() as u64,
        };
        let path = self.dir.join(entry.file_name());
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &body).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        state.next_seq += 1;
        state.bytes += entry.bytes;
        self.pending.fetch_add(entry.results, Ordering::Relaxed);
        state.entries.push_back(entry);
        // Over the bound: the oldest go, loudly.
        while state.bytes > self.max_bytes && state.entries.len() > 1 {
            let Some(oldest) = state.entries.pop_front() else {
                break;
            };
            let _ = std::fs::remove_file(self.dir.join(oldest.file_name()));
            state.bytes -= oldest.bytes;
            self.pending.fetch_sub(oldest.results, Ordering::Relaxed);
            let total = self.dropped.fetch_add(oldest.results, Ordering::Relaxed) + oldest.results;
            tracing::error!(
                dropped = oldest.results,
                dropped_total = total,
                max_bytes = self.max_bytes,
                "spool full: dropped the oldest results (the aggregator has been unreachable too long)"
            );
        }
        Ok(())
    }

    /// Reads the oldest batches, up to `max_files` and `max_results`
    /// results (at least one batch). A file that cannot be read back is
    /// moved to `rejected/` and skipped. Blocking: call from `spawn_blocking`.
    pub fn oldest(&self, max_files: usize, max_results: usize) -> Result<Drain, SpoolError> {
        let entries: Vec<Entry> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut taken = Vec::new();
            let mut count = 0u64;
            for entry in state.entries.iter().take(max_files) {
                if !taken.is_empty() && count + entry.results > max_results as u64 {
                    break;
                }
                count += entry.results;
                taken.push(entry.clone());
            }
            taken
        };
        let mut drain = Drain {
            results: Vec::new(),
            seqs: Vec::new(),
        };
        for entry in entries {
            let path = self.dir.join(entry.file_name());
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Vec<ProbeResult>>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(results) => {
                    drain.results.extend(results);
                    drain.seqs.push(entry.seq);
                }
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "unreadable spool file; moved to rejected/");
                    self.set_aside(&[entry.seq])?;
                }
            }
        }
        Ok(drain)
    }

    /// Forgets batches the aggregator has accepted.
    pub fn remove(&self, drain: &Drain) -> Result<(), SpoolError> {
        self.take_out(&drain.seqs, None)
    }

    /// Moves batches the aggregator refused for good to `rejected/`, where
    /// a person can look at them; they are not sent again.
    pub fn reject(&self, drain: &Drain) -> Result<(), SpoolError> {
        self.set_aside(&drain.seqs)
    }

    fn set_aside(&self, seqs: &[u64]) -> Result<(), SpoolError> {
        let rejected = self.dir.join("rejected");
        std::fs::create_dir_all(&rejected).map_err(io(&rejected))?;
        self.take_out(seqs, Some(&rejected))
    }

    fn take_out(&self, seqs: &[u64], move_to: Option<&Path>) -> Result<(), SpoolError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            let Some(index) = state.entries.iter().position(|e| e.seq == *seq) else {
                continue;
            };
            let Some(entry) = state.entries.remove(index) else {
                continue;
            };
            let path = self.dir.join(entry.file_name());
            match move_to {
                Some(dir) => {
                    std::fs::rename(&path, dir.join(entry.file_name())).map_err(io(&path))?
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&path)(e)),
                },
            }
            state.bytes -= entry.bytes;
            self.pending.fetch_sub(entry.results, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;
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
            let spool = Spool::open(dir.path(), u64::MAX).unwrap();
            spool.append(&first).unwrap();
            spool.append(&second).unwrap();
            assert_eq!(spool.pending(), 5);
        }
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.pending(), 5);
        let drain = spool.oldest(1, 1000).unwrap();
        assert_eq!(drain.results, first);
        spool.remove(&drain).unwrap();
        let drain = spool.oldest(10, 1000).unwrap();
        assert_eq!(drain.results, second);
        spool.remove(&drain).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(spool.oldest(10, 1000).unwrap().results.is_empty());
        // New batches after a reopen still sort after the old ones.
        spool.append(&first).unwrap();
        let reopened = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(reopened.oldest(10, 1000).unwrap().results, first);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&batch(1)).unwrap().len() as u64;
        let spool = Spool::open(dir.path(), one * 2 + one / 2).unwrap();
        let batches: Vec<_> = (0..4).map(|_| batch(1)).collect();
        for b in &batches {
            spool.append(b).unwrap();
        }
        assert_eq!(spool.dropped(), 2);
        assert_eq!(spool.pending(), 2);
        let drain = spool.oldest(10, 1000).unwrap();
        assert_eq!(
            drain.results,
            [batches[2].clone(), batches[3].clone()].concat()
        );
    }

    #[test]
    fn rejected_and_unreadable_batches_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.append(&batch(1)).unwrap();
        let good = batch(2);
        spool.append(&good).unwrap();
        std::fs::write(dir.path().join(format!("{:020}-1.json", 0)), b"not json").unwrap();
        let drain = spool.oldest(10, 1000).unwrap();
        assert_eq!(drain.results, good);
        assert!(
            dir.path()
                .join("rejected")
                .join(format!("{:020}-1.json", 0))
                .exists()
        );
        spool.reject(&drain).unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("rejected"))
                .unwrap()
                .count(),
            2
        );
    }
}
