//! A serving replica: an ordered consumer of one shard's stream that applies each write to a
//! local engine collection through its ordinary write path (WAL, memtable, segments).
//!
//! **Resume point.** After each message the replica records, in `cluster-resume` in the local
//! collection's directory (written to a temporary file, synced, renamed), two sequences: where to
//! resume reading (the first part of the oldest batch still waiting for its commit, else the
//! message after the last one handled) and the last message applied. The engine's own WAL makes
//! each applied write durable before that record is written. On restart the replica reads from
//! the resume point but applies only messages after the last applied one (earlier ones only refill
//! the buffers of batches waiting for their commit), so at most the one message in flight at a
//! crash is applied twice. That is harmless for an upsert or a delete by id (the same documents
//! written again, the same ids removed again). It is not for an [`Op`](crate::log::Op), whose
//! effect depends on the state it meets: before applying one, the replica records the op's
//! sequence with the engine's last WAL sequence, and on restart an engine past that sequence
//! means the op is in (an op writes one WAL record, or none when it changes nothing, in which
//! case applying it again changes nothing either).
//!
//! **Batches.** Parts are buffered by batch id until the batch is complete: its commit and every
//! part it names are in (a part whose publish failed is sent again under its message id and may
//! land after the commit). A batch not complete within [`ABANDONED_AFTER`] of its first message
//! (stream timestamps, so every replica drops the same ones) is dropped: its front failed before
//! every publish was acknowledged, and it acknowledged nothing.
//!
//! **Ops a replica refuses** (a SetPayload naming a document deleted since the front checked it,
//! a merged payload over the size limit) are refused by every replica alike, at the same point of
//! the stream: the replica logs a warning and goes on, as the single server would have answered
//! the call with an error and changed nothing.

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
use crate::log::{self, Kind, Op};
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
        let handled = Arc::new(AtomicU64::new(
            Resume::read(&resume_path, &collection).applied,
        ));
        let stream = entry.stream(shard);
        let floats = (entry.config.doc_vectors * entry.config.dim) as usize;
        let (c, h) = (collection.clone(), handled.clone());
        let task = tokio::spawn(async move {
            // Reconnects after any failure, from the resume point it recorded.
            loop {
                let from = Resume::read(&resume_path, &c);
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
    /// The part count its commit gave, once the commit came: a part sent again after a failed
    /// publish can land after its commit, and the batch applies when its last part is in.
    committed: Option<u32>,
}

impl Pending {
    fn complete(&self) -> bool {
        self.committed
            .is_some_and(|n| self.parts.len() as u32 == n && self.parts.keys().copied().eq(0..n))
    }
}

/// What `cluster-resume` records: `resume applied`, or `resume applied op engine` while an op
/// (stream sequence `op`) is being applied over an engine whose last WAL sequence was `engine`.
/// An older file holds `resume` alone (every message before it applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    /// The stream sequence to start reading at.
    resume: u64,
    /// The last stream sequence applied (0: none).
    applied: u64,
}

impl Resume {
    /// The recorded point, an op in flight resolved against the engine (none recorded: the
    /// stream's start).
    fn read(path: &Path, coll: &Collection) -> Resume {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let n: Vec<u64> = text
            .split_whitespace()
            .map_while(|t| t.parse().ok())
            .collect();
        match n[..] {
            [resume] => Resume {
                resume,
                applied: resume.saturating_sub(1),
            },
            [resume, applied] => Resume { resume, applied },
            [resume, applied, op, engine] => Resume {
                resume,
                applied: if coll.last_seq() > engine {
                    op
                } else {
                    applied
                },
            },
            _ => Resume {
                resume: 1,
                applied: 0,
            },
        }
    }
}

async fn consume(
    js: &jetstream::Context,
    stream: &str,
    from: Resume,
    floats: usize,
    coll: &Arc<Collection>,
    handled: &AtomicU64,
    resume_path: &Path,
) -> Result<()> {
    let s = js.get_stream(stream).await.map_err(ClusterError::nats)?;
    let consumer = s
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.resume.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(ClusterError::nats)?;
    let mut messages = consumer.messages().await.map_err(ClusterError::nats)?;
    let mut pending: HashMap<[u8; 16], Pending> = HashMap::new();
    let mut applied = from.applied;
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
                if last > handled.load(Ordering::Acquire).max(applied) {
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
        // Already in the engine (read again for the parts of a batch still waiting).
        let done = seq <= applied;
        match m.kind {
            Kind::Whole if !done => {
                apply(coll, m.record.expect("a whole message holds a record")).await?
            }
            Kind::Whole => {}
            Kind::Part | Kind::Commit => {
                let p = pending.entry(m.batch).or_insert(Pending {
                    first_seq: seq,
                    first_at: at,
                    parts: BTreeMap::new(),
                    committed: None,
                });
                match (m.kind, m.record) {
                    (Kind::Part, Some(Record::Upsert { docs, .. })) => {
                        p.parts.insert(m.part, docs);
                    }
                    (Kind::Commit, _) => p.committed = Some(m.parts),
                    _ => {}
                }
                // The batch applies at the message that completes it (its commit, or a part sent
                // again that lands after the commit); on a replay that message is `done`.
                if p.complete() {
                    let p = pending.remove(&m.batch).expect("just seen");
                    if !done {
                        let docs: Vec<Document> = p.parts.into_values().flatten().collect();
                        apply(coll, Record::Upsert { seq: 0, docs }).await?;
                    }
                }
            }
            Kind::Op if !done => {
                let op = m.op.expect("an op message holds an op");
                let resume = pending.values().map(|p| p.first_seq).min().unwrap_or(seq);
                write_resume(
                    resume_path,
                    &format!("{resume} {applied} {seq} {}", coll.last_seq()),
                )?;
                apply_op(coll, op, stream, seq).await?;
            }
            Kind::Op => {}
        }
        applied = applied.max(seq);
        let horizon = at - ABANDONED_AFTER.as_nanos() as i128;
        pending.retain(|_, p| p.first_at >= horizon);
        let resume = pending
            .values()
            .map(|p| p.first_seq)
            .min()
            .unwrap_or(seq + 1);
        write_resume(resume_path, &format!("{resume} {applied}"))?;
        handled.fetch_max(seq, Ordering::AcqRel);
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

/// Applies an op; one the engine refuses (every replica alike) is logged and skipped.
async fn apply_op(coll: &Arc<Collection>, op: Op, stream: &str, seq: u64) -> Result<()> {
    let c = coll.clone();
    let done = tokio::task::spawn_blocking(move || match op {
        Op::DeleteByFilter { filter } => {
            let f = metavec_core::search::Filter::parse(&filter)?;
            c.delete_by_filter(&f).map(|_| ())
        }
        Op::SetPayload {
            ids,
            payload,
            merge,
        } => {
            let how = if merge {
                metavec_core::PayloadUpdate::Merge
            } else {
                metavec_core::PayloadUpdate::Overwrite
            };
            c.set_payload(&ids, payload.as_deref(), how).map(|_| ())
        }
    })
    .await
    .map_err(|e| ClusterError::Nats(format!("apply task: {e}")))?;
    match done {
        Ok(()) => Ok(()),
        Err(e @ (metavec_core::Error::NotFound(_) | metavec_core::Error::InvalidArgument(_))) => {
            tracing::warn!(stream, seq, error = %e, "an op refused by the engine: skipped (as on every replica)");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn write_resume(path: &Path, text: &str) -> Result<()> {
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
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use metavec_core::{CollectionConfig, Engine, EngineOptions};

    #[test]
    fn the_resume_file_says_what_is_applied_and_an_op_in_flight_is_resolved_by_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        let coll = engine
            .create_collection("c", CollectionConfig::new(4, 2, 1))
            .unwrap();
        let path = coll.dir().join(RESUME_FILE);
        let at = |resume, applied| Resume { resume, applied };
        assert_eq!(Resume::read(&path, &coll), at(1, 0), "no file: the start");
        write_resume(&path, "7").unwrap();
        assert_eq!(Resume::read(&path, &coll), at(7, 6), "an older file");
        write_resume(&path, "3 9").unwrap();
        assert_eq!(Resume::read(&path, &coll), at(3, 9));
        // An op at sequence 10 recorded over the engine's last WAL sequence: not in yet...
        write_resume(&path, &format!("3 9 10 {}", coll.last_seq())).unwrap();
        assert_eq!(
            Resume::read(&path, &coll),
            at(3, 9),
            "the op is applied again"
        );
        // ... and in once the engine has written past it.
        coll.upsert(vec![Document::new("a", vec![1.0; 8])]).unwrap();
        assert_eq!(
            Resume::read(&path, &coll),
            at(3, 10),
            "the op is not applied twice"
        );
        write_resume(&path, "garbage").unwrap();
        assert_eq!(Resume::read(&path, &coll), at(1, 0));
    }
}
