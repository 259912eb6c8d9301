//! A serving replica: an ordered consumer of one shard's stream that applies each write to a
//! local engine collection through its ordinary write path (WAL, memtable, segments).
//!
//! **Resume point.** After each message the replica records, in `cluster-resume` in the local
//! collection's directory (written to a temporary file, synced, renamed), the stream sequence to
//! resume from: the first part of the oldest batch still waiting for its commit, else the message
//! after the last one handled. The engine's own WAL makes each applied write durable before that
//! record moves past it, so a restart (or kill -9) replays at most a suffix of messages it had
//! already applied, in stream order. Replaying a suffix in order ends in the same state: an upsert
//! writes the same documents again, a delete removes the same ids, and whatever followed is
//! written again after them.
//!
//! **Batches.** Parts are buffered by batch id until their commit; a batch whose commit has not
//! come within [`ABANDONED_AFTER`] of its first part (stream timestamps, so every replica drops the
//! same ones) is dropped: its front failed before committing, and it acknowledged nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use metavec_core::wal::record::Record;
use metavec_core::Collection;
use metavec_core::Document;

use crate::error::{ClusterError, Result};
use crate::log::{self, Kind};
use crate::map::CollectionEntry;

/// A batch's parts are dropped when no commit came this long (stream time) after the first.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(300);

const RESUME_FILE: &str = "cluster-resume";

/// A consumer quiet this long while its stream has newer messages is replaced.
const STALL_CHECK: Duration = Duration::from_secs(2);

/// A running replica of one shard.
pub struct Replica {
    pub collection: Arc<Collection>,
    /// The stream sequence of the last message handled (0: none).
    handled: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("collection", &self.collection.name())
            .field("handled", &self.handled())
            .finish()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Replica {
    /// Starts consuming shard `shard` of `entry` into `collection` from its recorded resume
    /// point.
    pub fn start(
        js: jetstream::Context,
        entry: &CollectionEntry,
        shard: u32,
        collection: Arc<Collection>,
    ) -> Replica {
        let resume_path = collection.dir().join(RESUME_FILE);
        let from = read_resume(&resume_path).unwrap_or(1);
        let handled = Arc::new(AtomicU64::new(from.saturating_sub(1)));
        let stream = entry.stream(shard);
        let floats = (entry.config.doc_vectors * entry.config.dim) as usize;
        let (c, h) = (collection.clone(), handled.clone());
        let task = tokio::spawn(async move {
            // Reconnects after any failure, from the resume point it recorded.
            loop {
                let from = read_resume(&resume_path).unwrap_or(1);
                match consume(&js, &stream, from, floats, &c, &h, &resume_path).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(stream = %stream, error = %e, "replica consumer stopped; restarting")
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Replica {
            collection,
            handled,
            task,
        }
    }

    /// The stream sequence of the last message handled.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// Waits until the replica has handled `seq` (a front's read token), at most `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.handled() < seq {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

struct Pending {
    first_seq: u64,
    first_at: i128,
    parts: BTreeMap<u32, Vec<Document>>,
}

async fn consume(
    js: &jetstream::Context,
    stream: &str,
    from: u64,
    floats: usize,
    coll: &Arc<Collection>,
    handled: &AtomicU64,
    resume_path: &Path,
) -> Result<()> {
    let s = js.get_stream(stream).await.map_err(ClusterError::nats)?;
    let consumer = s
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(ClusterError::nats)?;
    let mut messages = consumer.messages().await.map_err(ClusterError::nats)?;
    let mut pending: HashMap<[u8; 16], Pending> = HashMap::new();
    loop {
        let next = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(_) => {
                // Quiet: fine if the stream has nothing newer. If it has, the consumer was lost
                // (it lived on a NATS server that died): start a new one from the resume point.
                let last = s
                    .get_info()
                    .await
                    .map_err(ClusterError::nats)?
                    .state
                    .last_sequence;
                if last > handled.load(Ordering::Acquire) {
                    return Err(ClusterError::Nats(format!(
                        "consumer of {stream} stalled at {} of {last}",
                        handled.load(Ordering::Acquire)
                    )));
                }
                continue;
            }
        };
        let msg = next.map_err(ClusterError::nats)?;
        let (seq, at) = {
            let info = msg.info().map_err(ClusterError::nats)?;
            (info.stream_sequence, info.published.unix_timestamp_nanos())
        };
        let m = log::decode(&msg.payload, floats)?;
        match m.kind {
            Kind::Whole => apply(coll, m.record.expect("a whole message holds a record")).await?,
            Kind::Part => {
                let p = pending.entry(m.batch).or_insert(Pending {
                    first_seq: seq,
                    first_at: at,
                    parts: BTreeMap::new(),
                });
                if let Some(Record::Upsert { docs, .. }) = m.record {
                    p.parts.insert(m.part, docs);
                }
            }
            Kind::Commit => {
                if let Some(p) = pending.remove(&m.batch) {
                    if p.parts.len() as u32 == m.parts && p.parts.keys().copied().eq(0..m.parts) {
                        let docs: Vec<Document> = p.parts.into_values().flatten().collect();
                        apply(coll, Record::Upsert { seq: 0, docs }).await?;
                    } else {
                        tracing::warn!(
                            stream,
                            seq,
                            "a commit without all its parts: batch dropped"
                        );
                    }
                }
            }
        }
        let horizon = at - ABANDONED_AFTER.as_nanos() as i128;
        pending.retain(|_, p| p.first_at >= horizon);
        let resume = pending
            .values()
            .map(|p| p.first_seq)
            .min()
            .unwrap_or(seq + 1);
        write_resume(resume_path, resume)?;
        handled.store(seq, Ordering::Release);
    }
}

async fn apply(coll: &Arc<Collection>, rec: Record) -> Result<()> {
    let c = coll.clone();
    tokio::task::spawn_blocking(move || match rec {
        Record::Upsert { docs, .. } => c.upsert(docs).map(|_| ()),
        Record::Delete { ids, .. } => c.delete(&ids).map(|_| ()),
    })
    .await
    .map_err(|e| ClusterError::Nats(format!("apply task: {e}")))??;
    Ok(())
}

fn read_resume(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_resume(path: &Path, seq: u64) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let io = |e: std::io::Error| {
        ClusterError::Engine(metavec_core::Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(seq.to_string().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
