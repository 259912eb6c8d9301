//! A cluster node: registers itself in the map, runs the replicas the map assigns it, and is a
//! front for any collection (writes published per shard, searches answered from one caught-up
//! replica per shard and merged).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, kv, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;

use metavec_core::document::prepare_batch;
use metavec_core::wal::record;
use metavec_core::{Collection, CollectionConfig, Document, Engine, Hit, SearchRequest};

use crate::error::{ClusterError, Result};
use crate::log;
use crate::map::{self, CollectionEntry, NodeEntry};
use crate::replica::Replica;

/// How long a write's messages (and a node's registration, and a new collection's wait for its
/// streams' leaders) are retried while a stream has no leader to take them.
const SETTLE_RETRY: Duration = Duration::from_secs(15);

/// Pauses between tries until [`SETTLE_RETRY`] has passed: 50 ms, doubling up to 1 s.
struct Backoff {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            deadline: tokio::time::Instant::now() + SETTLE_RETRY,
            pause: Duration::from_millis(50),
        }
    }

    /// Sleeps before the next try; false (at once) once the time is up.
    async fn wait(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}

/// One message of a write, sent and waiting for its ack.
struct Sent {
    shard: u32,
    subject: String,
    id: String,
    /// The body, kept to send it again.
    body: bytes::Bytes,
    ack: PublishAckFuture,
}

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,nats://127.0.0.2:4222`).
    pub nats_url: String,
    pub node_id: String,
    /// host:port other nodes reach this node's gRPC API at.
    pub advertise: String,
    /// NATS servers holding each shard stream and the map (3 in production; at most the
    /// servers in the cluster).
    pub stream_replicas: usize,
    /// Largest stream message: a batch above it is split into parts and a commit.
    pub max_message_bytes: usize,
    /// How long a search waits for a replica to reach a read token.
    pub read_wait: Duration,
}

impl NodeOptions {
    pub fn new(nats_url: impl Into<String>, node_id: impl Into<String>) -> Self {
        NodeOptions {
            nats_url: nats_url.into(),
            node_id: node_id.into(),
            advertise: String::new(),
            stream_replicas: 1,
            max_message_bytes: 1 << 20,
            read_wait: Duration::from_secs(5),
        }
    }
}

/// How long a shard stream remembers message ids: a keyed write retried within it is applied once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A write's batch id (its messages' ids derive from it): random, or from an idempotency key,
/// the write's index within the client's request, the collection and the shard.
fn batch_id(entry: &CollectionEntry, shard: u32, key: Option<(&str, u64)>) -> [u8; 16] {
    use sha2::Digest;
    let Some((key, index)) = key else {
        return rand::random();
    };
    let mut h = sha2::Sha256::new();
    for part in [
        b"metavec-write".as_slice(),
        entry.uid.as_bytes(),
        key.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(shard.to_le_bytes());
    h.update(index.to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// A payload update's arguments as a single server checks them: 1..=1000 distinct valid ids, a
/// payload that is a JSON object within the size limit.
pub fn check_set_payload(ids: &[String], payload: Option<&str>) -> Result<()> {
    let max = metavec_core::collection::MAX_SET_PAYLOAD_IDS;
    if ids.is_empty() || ids.len() > max {
        return Err(ClusterError::Invalid(format!(
            "ids has {} entries: a payload update names 1..={max} ids",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        metavec_core::document::validate_id(id, &format!("ids[{i}]"))?;
        if !seen.insert(id.as_str()) {
            return Err(ClusterError::Invalid(format!(
                "ids[{i}] {id:?} appears twice"
            )));
        }
    }
    if let Some(p) = payload {
        metavec_core::document::validate_payload(p, "payload")?;
    }
    Ok(())
}

/// A comma-separated server list as the client takes it.
pub fn servers(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Per shard, the stream sequence of the last message a write published there: a search given
/// this token reads from replicas that have applied it (read-your-writes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadToken(pub Vec<(u32, u64)>);

impl ReadToken {
    /// The sequence shard `shard` must have reached (0: any).
    pub fn seq(&self, shard: u32) -> u64 {
        self.0
            .iter()
            .filter(|(s, _)| *s == shard)
            .map(|(_, q)| *q)
            .max()
            .unwrap_or(0)
    }

    /// Adds `other`'s positions, keeping the later one per shard: the token of both writes.
    pub fn merge(&mut self, other: &ReadToken) {
        for &(s, q) in &other.0 {
            match self.0.iter_mut().find(|(x, _)| *x == s) {
                Some(e) => e.1 = e.1.max(q),
                None => self.0.push((s, q)),
            }
        }
        self.0.sort_unstable();
    }
}

/// `shard:sequence` pairs joined by commas (`0:12,3:40`), the form of the `metavec-read-token`
/// header.
impl std::fmt::Display for ReadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (s, q)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{s}:{q}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ReadToken {
    type Err = ClusterError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            ClusterError::Invalid(format!(
                "read token {text:?}: expected shard:sequence pairs joined by commas, as a write returned it"
            ))
        };
        let mut t = ReadToken::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (s, q) = pair.split_once(':').ok_or_else(bad)?;
            let s = s.parse().map_err(|_| bad())?;
            let q = q.parse().map_err(|_| bad())?;
            t.merge(&ReadToken(vec![(s, q)]));
        }
        Ok(t)
    }
}

/// Where [`Node::on_shards`] runs a shard's call.
#[derive(Debug, Clone)]
pub enum Target {
    /// This node's replica, which has handled the read token's sequence.
    Local(Arc<Collection>),
    /// Another node's replica: the call must ask it to wait for this sequence first.
    Remote(NodeEntry, u64),
}

/// A future of a remote shard search.
pub type ShardFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Hit>>> + Send + 'a>>;

/// How a front reaches another node's replica of a shard.
pub trait Peers: Send + Sync {
    /// Searches `node`'s replica of `shard` of `entry` once it has handled `min_seq`.
    fn search<'a>(
        &'a self,
        node: &'a NodeEntry,
        entry: &'a CollectionEntry,
        shard: u32,
        req: SearchRequest,
        min_seq: u64,
    ) -> ShardFuture<'a>;
}

/// A node of the cluster.
pub struct Node {
    opts: NodeOptions,
    js: jetstream::Context,
    kv: kv::Store,
    engine: Arc<Engine>,
    replicas: Mutex<HashMap<(String, u32), Arc<Replica>>>,
    /// Held through [`Node::sync`], so two syncs never start the same replica twice.
    syncing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.opts.node_id)
            .finish()
    }
}

impl Node {
    /// Connects to NATS, makes sure the map bucket exists, and registers this node.
    pub async fn start(engine: Arc<Engine>, opts: NodeOptions) -> Result<Arc<Node>> {
        map::check_token("node id", &opts.node_id)?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .connect(servers(&opts.nats_url))
            .await
            .map_err(|e| ClusterError::Nats(format!("connect to {}: {e}", opts.nats_url)))?;
        let js = jetstream::new(client);
        // The map's bucket: opened, or made by the first node. A NATS cluster that has just
        // started may not have elected its JetStream leader yet (the request times out), and
        // nodes starting side by side race to make the bucket: retry both.
        let mut backoff = Backoff::new();
        let kv = loop {
            let made = match js.get_key_value(map::BUCKET).await {
                Ok(kv) => Ok(kv),
                Err(_) => js
                    .create_key_value(kv::Config {
                        bucket: map::BUCKET.to_string(),
                        history: 5,
                        num_replicas: opts.stream_replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(ClusterError::nats),
            };
            match made {
                Ok(kv) => break kv,
                Err(e) => {
                    tracing::debug!(error = %e, "opening the cluster map; retrying");
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
            }
        };
        let me = NodeEntry {
            id: opts.node_id.clone(),
            addr: opts.advertise.clone(),
        };
        let value: bytes::Bytes = serde_json::to_vec(&me).unwrap().into();
        // A bucket just made (here or by a node starting beside this one) may not have elected
        // its leader yet: its first put finds no stream. A put is idempotent, so retry it.
        loop {
            match kv.put(map::node_key(&me.id), value.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "registering in the cluster map; retrying");
                    if !backoff.wait().await {
                        return Err(ClusterError::nats(e));
                    }
                }
            }
        }
        Ok(Arc::new(Node {
            opts,
            js,
            kv,
            engine,
            replicas: Mutex::new(HashMap::new()),
            syncing: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn id(&self) -> &str {
        &self.opts.node_id
    }

    /// The map's keys that start with `prefix` (deleted ones included: their get finds
    /// nothing). One stream-info request to the bucket's stream leader, where the KV client's
    /// `keys()` creates a consumer for each listing, and timed out on every call while one of
    /// three NATS servers was down (nats-server issue 3791; measured here: every map sync and
    /// every search through the node that had been connected to it failed for minutes).
    async fn map_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let head = format!("$KV.{}.", map::BUCKET);
        let mut subjects = self
            .kv
            .stream
            .info_with_subjects(format!("{head}{prefix}>"))
            .await
            .map_err(ClusterError::nats)?;
        let mut out = Vec::new();
        while let Some(x) = subjects.next().await {
            let (subject, _) = x.map_err(ClusterError::nats)?;
            if let Some(key) = subject.strip_prefix(&head) {
                out.push(key.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The nodes registered in the map, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>> {
        let mut out = Vec::new();
        for k in self.map_keys("node.").await? {
            if let Some(v) = self.kv.get(&k).await.map_err(ClusterError::nats)? {
                out.push(
                    serde_json::from_slice::<NodeEntry>(&v)
                        .map_err(|e| ClusterError::Corrupt(format!("map entry {k}: {e}")))?,
                );
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Creates a collection cluster-wide: its shard streams, then its map entry (create if
    /// absent: the first of two concurrent creations wins, the other gets AlreadyExists).
    /// `shards` defaults to 4 x nodes, `replicas` to min(2, nodes).
    pub async fn create_collection(
        &self,
        name: &str,
        config: CollectionConfig,
        shards: Option<u32>,
        replicas: Option<u32>,
    ) -> Result<CollectionEntry> {
        metavec_core::config::validate_collection_name(name)?;
        config.validate()?;
        let nodes: Vec<String> = self.nodes().await?.into_iter().map(|n| n.id).collect();
        let n = nodes.len() as u32;
        let shards = shards.unwrap_or(4 * n);
        let replicas = replicas.unwrap_or(2.min(n));
        if shards == 0 || replicas == 0 || replicas > n {
            return Err(ClusterError::Invalid(format!(
                "shards {shards} and replicas {replicas}: both >= 1, replicas <= nodes ({n})"
            )));
        }
        if self.entry(name).await.is_ok() {
            return Err(ClusterError::AlreadyExists(name.to_string()));
        }
        let entry = CollectionEntry {
            name: name.to_string(),
            uid: format!("{:016x}", rand::random::<u64>()),
            config,
            shards,
            replicas,
            assign: map::place(&nodes, shards, replicas),
        };
        for s in 0..shards {
            self.js
                .get_or_create_stream(stream::Config {
                    name: entry.stream(s),
                    subjects: vec![entry.subject(s)],
                    num_replicas: self.opts.stream_replicas,
                    duplicate_window: DUPLICATE_WINDOW,
                    max_message_size: (self.opts.max_message_bytes + 4096) as i32,
                    ..Default::default()
                })
                .await
                .map_err(ClusterError::nats)?;
        }
        for s in 0..shards {
            self.await_leader(&entry.stream(s)).await?;
        }
        let value = serde_json::to_vec(&entry).unwrap();
        match self
            .kv
            .create(map::collection_key(name), value.into())
            .await
        {
            Ok(_) => Ok(entry),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ClusterError::AlreadyExists(name.to_string()))
            }
            Err(e) => Err(ClusterError::nats(e)),
        }
    }

    /// A collection's map entry.
    pub async fn entry(&self, name: &str) -> Result<CollectionEntry> {
        let v = self
            .kv
            .get(map::collection_key(name))
            .await
            .map_err(ClusterError::nats)?
            .ok_or_else(|| ClusterError::NotFound(name.to_string()))?;
        serde_json::from_slice(&v).map_err(|e| ClusterError::Corrupt(format!("map entry: {e}")))
    }

    /// Every collection of the cluster map, by name.
    pub async fn collections(&self) -> Result<Vec<CollectionEntry>> {
        let names: Vec<String> = self
            .map_keys("collection.")
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix("collection.").map(str::to_string))
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.entry(&name).await {
                Ok(e) => out.push(e),
                // Deleted between the listing and the read.
                Err(ClusterError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Starts the replicas the map assigns this node and that are not running yet (a local
    /// collection is created on first start and reopened after a restart).
    pub async fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock().await;
        for entry in self.collections().await? {
            for s in entry.shards_of(self.id()) {
                let key = (entry.uid.clone(), s);
                if self.replicas.lock().contains_key(&key) {
                    continue;
                }
                let local = entry.local_name(s);
                let coll = match self.engine.collection(&local) {
                    Ok(c) => c,
                    Err(_) => self
                        .engine
                        .create_collection(&local, entry.config.clone())?,
                };
                let r = Replica::start(self.js.clone(), &entry, s, coll);
                self.replicas.lock().insert(key, Arc::new(r));
            }
        }
        Ok(())
    }

    /// This node's running replica of a shard.
    pub fn replica(&self, entry: &CollectionEntry, shard: u32) -> Option<Arc<Replica>> {
        self.replicas
            .lock()
            .get(&(entry.uid.clone(), shard))
            .cloned()
    }

    /// Upserts documents: validated and normalised here (replicas apply the same bits), split
    /// per shard, each shard's share published as one message or as parts and a commit.
    /// Returns once every publish is acknowledged by JetStream.
    pub async fn upsert(&self, name: &str, docs: Vec<Document>) -> Result<ReadToken> {
        self.upsert_keyed(name, docs, None).await
    }

    /// [`Node::upsert`] with an idempotency key: the messages' ids derive from `key` (with the
    /// collection, the shard and `key.1`, the write's index within the client's request), so a
    /// retry of the same write with the same key within the streams' duplicate window
    /// ([`DUPLICATE_WINDOW`]) is dropped by JetStream and answers with the first one's
    /// sequences. Without a key every write gets random ids.
    pub async fn upsert_keyed(
        &self,
        name: &str,
        mut docs: Vec<Document>,
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken> {
        let entry = self.entry(name).await?;
        prepare_batch(&mut docs, &entry.config)?;
        let mut per: Vec<Vec<Document>> = vec![Vec::new(); entry.shards as usize];
        for d in docs {
            per[entry.shard_of(&d.id) as usize].push(d);
        }
        let limit = self.opts.max_message_bytes;
        if let Some(d) = per.iter().flatten().find(|d| log::doc_bytes(d) > limit) {
            return Err(ClusterError::Invalid(format!(
                "document {:?} is {} bytes encoded, above the cluster's message limit of {limit}",
                d.id,
                log::doc_bytes(d)
            )));
        }
        let mut acks: Vec<Sent> = Vec::new();
        for (s, docs) in per.iter().enumerate() {
            if docs.is_empty() {
                continue;
            }
            let s = s as u32;
            let batch = batch_id(&entry, s, key);
            let runs = log::split(docs, limit);
            let msgs: Vec<(u32, Vec<u8>)> = if runs.len() == 1 {
                vec![(0, log::whole(&batch, &record::encode_upsert(0, docs)))]
            } else {
                let n = runs.len() as u32;
                runs.iter()
                    .enumerate()
                    .map(|(i, r)| (i as u32, log::part(&batch, i as u32, n, &docs[r.clone()])))
                    .chain(std::iter::once((n, log::commit(&batch, n))))
                    .collect()
            };
            for (part, body) in msgs {
                acks.push(self.publish(&entry, s, &batch, part, body).await?);
            }
        }
        self.settle(acks).await
    }

    /// Deletes documents by id (ids that do not exist are ignored).
    pub async fn delete(&self, name: &str, ids: &[String]) -> Result<ReadToken> {
        self.delete_keyed(name, ids, None).await
    }

    /// [`Node::delete`] with an idempotency key (see [`Node::upsert_keyed`]).
    pub async fn delete_keyed(
        &self,
        name: &str,
        ids: &[String],
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken> {
        let entry = self.entry(name).await?;
        let mut per: Vec<Vec<String>> = vec![Vec::new(); entry.shards as usize];
        for (i, id) in ids.iter().enumerate() {
            metavec_core::document::validate_id(id, &format!("ids[{i}]"))?;
            per[entry.shard_of(id) as usize].push(id.clone());
        }
        let mut acks = Vec::new();
        for (s, ids) in per.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let batch = batch_id(&entry, s as u32, key);
            let body = log::whole(&batch, &record::encode_delete(0, ids));
            acks.push(self.publish(&entry, s as u32, &batch, 0, body).await?);
        }
        self.settle(acks).await
    }

    /// Deletes the documents whose payload matches `filter` (filter JSON): one op to every
    /// shard, evaluated by each replica where it stands in the stream.
    pub async fn delete_by_filter_keyed(
        &self,
        name: &str,
        filter: &str,
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken> {
        let entry = self.entry(name).await?;
        metavec_core::search::Filter::parse(filter)?;
        let op = log::Op::DeleteByFilter {
            filter: filter.to_string(),
        };
        let shards: Vec<(u32, log::Op)> = (0..entry.shards).map(|s| (s, op.clone())).collect();
        self.publish_ops(&entry, shards, key).await
    }

    /// Sets (`merge`: merges into) the payload of `ids` (1..=1000 distinct ids; None clears
    /// it): one op to each shard holding some of them. Whether they exist is the caller's to
    /// check; a replica that finds one missing changes nothing on that shard.
    pub async fn set_payload_keyed(
        &self,
        name: &str,
        ids: &[String],
        payload: Option<&str>,
        merge: bool,
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken> {
        let entry = self.entry(name).await?;
        check_set_payload(ids, payload)?;
        let mut per: Vec<Vec<String>> = vec![Vec::new(); entry.shards as usize];
        for id in ids {
            per[entry.shard_of(id) as usize].push(id.clone());
        }
        let shards = per
            .into_iter()
            .enumerate()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| {
                let op = log::Op::SetPayload {
                    ids,
                    payload: payload.map(str::to_string),
                    merge,
                };
                (s as u32, op)
            })
            .collect();
        self.publish_ops(&entry, shards, key).await
    }

    async fn publish_ops(
        &self,
        entry: &CollectionEntry,
        ops: Vec<(u32, log::Op)>,
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken> {
        let mut acks = Vec::new();
        for (s, op) in ops {
            let batch = batch_id(entry, s, key);
            let body = log::op(&batch, &op);
            if body.len() > self.opts.max_message_bytes {
                return Err(ClusterError::Invalid(format!(
                    "the write is {} bytes encoded, above the cluster's message limit of {}",
                    body.len(),
                    self.opts.max_message_bytes
                )));
            }
            acks.push(self.publish(entry, s, &batch, 0, body).await?);
        }
        self.settle(acks).await
    }

    /// Sends one message of a write; its ack is awaited by [`Node::settle`].
    async fn publish(
        &self,
        entry: &CollectionEntry,
        shard: u32,
        batch: &[u8; 16],
        part: u32,
        body: Vec<u8>,
    ) -> Result<Sent> {
        let subject = entry.subject(shard);
        let id = log::message_id(batch, part);
        let body = bytes::Bytes::from(body);
        let ack = self.send(&subject, &id, body.clone()).await?;
        Ok(Sent {
            shard,
            subject,
            id,
            body,
            ack,
        })
    }

    async fn send(&self, subject: &str, id: &str, body: bytes::Bytes) -> Result<PublishAckFuture> {
        self.js
            .send_publish(
                subject.to_string(),
                jetstream::message::PublishMessage::build()
                    .payload(body)
                    .message_id(id),
            )
            .await
            .map_err(ClusterError::nats)
    }

    /// Awaits every ack; the answer's read token holds each shard's last sequence. A message
    /// whose stream had no leader to take it (just created, or electing after a NATS server was
    /// lost) or whose ack timed out is sent again under the same message id (the stream's
    /// duplicate window drops a second copy) until [`SETTLE_RETRY`] has passed. A part sent
    /// again may land after its batch's commit: a replica applies a batch when it is complete,
    /// whichever message completes it.
    async fn settle(&self, acks: Vec<Sent>) -> Result<ReadToken> {
        let mut backoff = Backoff::new();
        let mut token = ReadToken::default();
        for sent in acks {
            let mut ack = sent.ack.await;
            while let Err(e) = &ack {
                let transient = matches!(
                    e.kind(),
                    jetstream::context::PublishErrorKind::StreamNotFound
                        | jetstream::context::PublishErrorKind::TimedOut
                );
                tracing::debug!(error = %e, subject = %sent.subject, "publish not taken; sending again");
                if !transient || !backoff.wait().await {
                    break;
                }
                ack = match self.send(&sent.subject, &sent.id, sent.body.clone()).await {
                    Ok(f) => f.await,
                    Err(e) => return Err(e),
                };
            }
            let ack = ack.map_err(ClusterError::nats)?;
            token.0.retain(|(x, _)| *x != sent.shard);
            token.0.push((sent.shard, ack.sequence));
        }
        token.0.sort_unstable();
        Ok(token)
    }

    /// Waits until stream `name` has a leader (a stream just created elects one within about a
    /// second), so the first write to it is taken.
    async fn await_leader(&self, name: &str) -> Result<()> {
        let mut backoff = Backoff::new();
        loop {
            let mut stream = self.js.get_stream(name).await.map_err(ClusterError::nats)?;
            let led = match stream.info().await {
                Ok(info) => info
                    .cluster
                    .as_ref()
                    .is_none_or(|c| c.leader.as_deref().is_some_and(|l| !l.is_empty())),
                Err(_) => false,
            };
            if led {
                return Ok(());
            }
            if !backoff.wait().await {
                return Err(ClusterError::Nats(format!(
                    "stream {name} has no leader after {SETTLE_RETRY:?}"
                )));
            }
        }
    }

    /// Runs `call` once per shard of `shards`, in parallel, each on one replica that has handled
    /// `token`'s sequence for it: this node's own first, then the others in map order. A replica
    /// that cannot answer ([`ClusterError::is_unavailable`]) passes the call to the next; any
    /// other error is the shard's answer. A shard no replica answers gets
    /// [`ClusterError::Unavailable`] naming it and the last reason.
    pub async fn on_shards<T, F, Fut>(
        &self,
        entry: &CollectionEntry,
        shards: &[u32],
        token: Option<&ReadToken>,
        call: F,
    ) -> Result<Vec<(u32, Result<T>)>>
    where
        F: Fn(u32, Target) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let nodes: HashMap<String, NodeEntry> = self
            .nodes()
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let per_shard = shards.iter().map(|&s| {
            let min_seq = token.map_or(0, |t| t.seq(s));
            let (nodes, call) = (&nodes, &call);
            async move {
                let mut why = String::from("no replica assigned");
                let mut order: Vec<&String> = entry.assign[s as usize].iter().collect();
                order.sort_by_key(|n| *n != self.id());
                for n in order {
                    let target = if n == self.id() {
                        match self.local_replica(entry, s, min_seq).await {
                            Ok(c) => Target::Local(c),
                            Err(e) => {
                                why = format!("{n}: {e}");
                                continue;
                            }
                        }
                    } else if let Some(node) = nodes.get(n) {
                        Target::Remote(node.clone(), min_seq)
                    } else {
                        why = format!("node {n} is not registered");
                        continue;
                    };
                    match call(s, target).await {
                        Ok(v) => return (s, Ok(v)),
                        Err(e) if e.is_unavailable() => why = format!("{n}: {e}"),
                        Err(e) => return (s, Err(e)),
                    }
                }
                let e = ClusterError::Unavailable {
                    collection: entry.name.clone(),
                    shard: s,
                    why,
                };
                (s, Err(e))
            }
        });
        Ok(futures_util::future::join_all(per_shard).await)
    }

    /// Searches a collection: each shard from one replica that has handled `token`'s sequence
    /// for it (see [`Node::on_shards`]), merged by (score desc, id asc), cut to k. A shard no
    /// replica answers fails the search with Unavailable naming it, unless `allow_partial`,
    /// which leaves it out. Other nodes' replicas are reached through `peers`.
    pub async fn search(
        &self,
        name: &str,
        req: &SearchRequest,
        token: Option<&ReadToken>,
        allow_partial: bool,
        peers: &dyn Peers,
    ) -> Result<Vec<Hit>> {
        let entry = self.entry(name).await?;
        let shards: Vec<u32> = (0..entry.shards).collect();
        let results = self
            .on_shards(&entry, &shards, token, |s, target| {
                let (req, entry) = (req.clone(), &entry);
                async move {
                    match target {
                        Target::Local(c) => search_in(c, req).await,
                        Target::Remote(node, min_seq) => {
                            peers.search(&node, entry, s, req, min_seq).await
                        }
                    }
                }
            })
            .await?;
        let mut hits = Vec::new();
        for (_, r) in results {
            match r {
                Ok(h) => hits.extend(h),
                Err(ClusterError::Unavailable { .. }) if allow_partial => {}
                Err(e) => return Err(e),
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits.truncate(req.k as usize);
        Ok(hits)
    }

    /// This node's replica of `shard`, once it has handled `min_seq` (at most the node's read
    /// wait); Unavailable if the node runs none or it stays behind.
    pub async fn local_replica(
        &self,
        entry: &CollectionEntry,
        shard: u32,
        min_seq: u64,
    ) -> Result<Arc<Collection>> {
        if self.replica(entry, shard).is_none() && entry.shards_of(self.id()).contains(&shard) {
            // Assigned since the last sync (a collection just created): start it now.
            self.sync().await?;
        }
        let r = self
            .replica(entry, shard)
            .ok_or_else(|| ClusterError::Unavailable {
                collection: entry.name.clone(),
                shard,
                why: format!("node {} runs no replica of it", self.id()),
            })?;
        if !r.wait_for(min_seq, self.opts.read_wait).await {
            return Err(ClusterError::Unavailable {
                collection: entry.name.clone(),
                shard,
                why: format!(
                    "node {}'s replica is at sequence {}, the read token asks for {min_seq}",
                    self.id(),
                    r.handled()
                ),
            });
        }
        Ok(r.collection.clone())
    }

    /// Searches this node's replica of `shard` once it has handled `min_seq`.
    pub async fn search_local(
        &self,
        entry: &CollectionEntry,
        shard: u32,
        req: SearchRequest,
        min_seq: u64,
    ) -> Result<Vec<Hit>> {
        search_in(self.local_replica(entry, shard, min_seq).await?, req).await
    }
}

/// Searches a local replica's collection on the blocking pool.
async fn search_in(c: Arc<Collection>, req: SearchRequest) -> Result<Vec<Hit>> {
    let resp = tokio::task::spawn_blocking(move || c.search(&req))
        .await
        .map_err(|e| ClusterError::Peer(format!("search task: {e}")))??;
    Ok(resp.hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tokens_merge_per_shard_and_round_trip_as_header_text() {
        let mut a: ReadToken = "0:12, 3:40".parse().unwrap();
        a.merge(&ReadToken(vec![(3, 7), (1, 5), (0, 20)]));
        assert_eq!(a, ReadToken(vec![(0, 20), (1, 5), (3, 40)]));
        assert_eq!(a.to_string(), "0:20,1:5,3:40");
        assert_eq!(a.to_string().parse::<ReadToken>().unwrap(), a);
        assert_eq!(a.seq(3), 40);
        assert_eq!(a.seq(2), 0);
        assert_eq!("".parse::<ReadToken>().unwrap(), ReadToken::default());
        for bad in ["0", "x:1", "0:-1", "0:1;1:2"] {
            let e = bad.parse::<ReadToken>().unwrap_err().to_string();
            assert!(e.contains("shard:sequence"), "{bad}: {e}");
        }
    }
}
