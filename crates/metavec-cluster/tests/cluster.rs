//! Cluster mode against three real nats-server processes (a JetStream cluster on 127.0.0.1-3)
//! and three nodes, each with its own engine directory. The nodes reach each other's replicas
//! in-process here ([`InProc`]); the gRPC path between node processes is tested in the server's
//! tests.

mod nats;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use metavec_cluster::log;
use metavec_cluster::node::ShardFuture;
use metavec_cluster::{ClusterError, CollectionEntry, Node, NodeEntry, NodeOptions, Peers};
use metavec_core::{
    Budget, CollectionConfig, CollectionOptions, Document, Dtype, Engine, EngineOptions,
    SearchRequest,
};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

const DIM: usize = 32;
const DOC_VECTORS: usize = 8;
const QUERY_VECTORS: usize = 4;

/// Other nodes' replicas, reached by calling them in this process.
#[derive(Default)]
struct InProc(Mutex<HashMap<String, Weak<Node>>>);

impl Peers for InProc {
    fn search<'a>(
        &'a self,
        node: &'a NodeEntry,
        entry: &'a CollectionEntry,
        shard: u32,
        req: SearchRequest,
        min_seq: u64,
    ) -> ShardFuture<'a> {
        Box::pin(async move {
            let n = self.0.lock().get(&node.id).and_then(Weak::upgrade);
            let n = n.ok_or_else(|| ClusterError::Nats(format!("node {} is down", node.id)))?;
            n.search_local(entry, shard, req, min_seq).await
        })
    }
}

fn config() -> CollectionConfig {
    let mut c = CollectionConfig::new(DIM as u32, DOC_VECTORS as u32, QUERY_VECTORS as u32);
    c.dtype = Dtype::F32;
    c
}

fn small_memtables() -> EngineOptions {
    EngineOptions {
        collection: CollectionOptions {
            memtable_max_bytes: 64 << 10,
            ..Default::default()
        },
    }
}

fn docs(n: usize, seed: u64) -> Vec<Document> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let v = (0..DOC_VECTORS * DIM)
                .map(|_| rng.random::<f32>() - 0.5)
                .collect();
            Document::new(format!("doc-{i:05}"), v).with_payload(format!(r#"{{"i":{i}}}"#))
        })
        .collect()
}

fn queries(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..QUERY_VECTORS * DIM)
                .map(|_| rng.random::<f32>() - 0.5)
                .collect()
        })
        .collect()
}

/// Dropped nodes first, then their directories, then the NATS servers (and the serial lock).
struct Cluster {
    nodes: Vec<Arc<Node>>,
    peers: Arc<InProc>,
    _dirs: Vec<tempfile::TempDir>,
    nats: nats::NatsCluster,
}

async fn cluster(test: &str, max_message_bytes: usize) -> Option<Cluster> {
    let nats = nats::start(test)?;
    nats.ready().await;
    let peers = Arc::new(InProc::default());
    let (mut nodes, mut dirs) = (Vec::new(), Vec::new());
    for id in ["a", "b", "c"] {
        let dir = tempfile::tempdir().unwrap();
        nodes.push(start_node(&nats, id, dir.path(), max_message_bytes, &peers).await);
        dirs.push(dir);
    }
    Some(Cluster {
        nats,
        nodes,
        peers,
        _dirs: dirs,
    })
}

/// A cluster with collection "docs" (4 shards x 2 replicas) created and every node serving it.
async fn with_docs(test: &str) -> Option<(Cluster, CollectionEntry)> {
    let c = cluster(test, 16 << 10).await?;
    let entry = c.nodes[0]
        .create_collection("docs", config(), Some(4), Some(2))
        .await
        .unwrap();
    for n in &c.nodes {
        n.sync().await.unwrap();
    }
    Some((c, entry))
}

/// Starts node `id` on the engine directory `dir` (made or reopened), registered with `peers`.
async fn start_node(
    nats: &nats::NatsCluster,
    id: &str,
    dir: &std::path::Path,
    max_message_bytes: usize,
    peers: &Arc<InProc>,
) -> Arc<Node> {
    let engine = Arc::new(Engine::open(dir, small_memtables()).unwrap());
    let mut opts = NodeOptions::new(nats.url(), id);
    opts.stream_replicas = 3;
    opts.max_message_bytes = max_message_bytes;
    let node = Node::start(engine, opts).await.unwrap();
    peers.0.lock().insert(id.to_string(), Arc::downgrade(&node));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_replicated_collection_answers_as_one_node_does() {
    let Some(c) = cluster(
        "a_sharded_replicated_collection_answers_as_one_node_does",
        16 << 10,
    )
    .await
    else {
        return;
    };
    let entry = c.nodes[0]
        .create_collection("docs", config(), Some(4), Some(2))
        .await
        .unwrap();
    assert_eq!((entry.shards, entry.replicas), (4, 2));
    assert!(matches!(
        c.nodes[1]
            .create_collection("docs", config(), Some(4), Some(2))
            .await,
        Err(ClusterError::AlreadyExists(_))
    ));
    for n in &c.nodes {
        n.sync().await.unwrap();
    }

    // The same documents in one engine: the answer the cluster must give.
    let single_dir = tempfile::tempdir().unwrap();
    let single = Engine::open(single_dir.path(), small_memtables()).unwrap();
    let one = single.create_collection("docs", config()).unwrap();

    // 600 documents of 1 KiB through all three fronts, in batches of 100: each shard's share of
    // a batch (~25 KiB) is above the 16 KiB message limit, so it goes as parts and a commit.
    let all = docs(600, 7);
    let started = Instant::now();
    let mut token = metavec_cluster::ReadToken::default();
    for (i, batch) in all.chunks(100).enumerate() {
        let t = c.nodes[i % 3].upsert("docs", batch.to_vec()).await.unwrap();
        token.0.extend(t.0);
        one.upsert(batch.to_vec()).unwrap();
    }
    println!(
        "ingested 600 documents through three fronts in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // A deletion through another front.
    let gone: Vec<String> = (0..600).step_by(7).map(|i| format!("doc-{i:05}")).collect();
    let t = c.nodes[2].delete("docs", &gone).await.unwrap();
    token.0.extend(t.0);
    one.delete(&gone).unwrap();

    let qs = queries(20, 11);
    let mut recall_sum = 0.0;
    for (qi, q) in qs.iter().enumerate() {
        for budget in [Budget::new(1, 1), Budget::new(2, 4), Budget::new(4, 8)] {
            let exact = SearchRequest::new(q.clone(), budget, 10).exact();
            let want = one.search(&exact).unwrap().hits;
            let front = &c.nodes[qi % 3];
            let got = front
                .search("docs", &exact, Some(&token), false, c.peers.as_ref())
                .await
                .unwrap();
            let ids = |h: &[metavec_core::Hit]| h.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "query {qi} at {budget:?}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g.score.to_bits(),
                    w.score.to_bits(),
                    "{} at {budget:?}",
                    g.id
                );
            }
            let approx = front
                .search(
                    "docs",
                    &SearchRequest::new(q.clone(), budget, 10),
                    Some(&token),
                    false,
                    c.peers.as_ref(),
                )
                .await
                .unwrap();
            let hit = approx
                .iter()
                .filter(|h| want.iter().any(|w| w.id == h.id))
                .count();
            recall_sum += hit as f64 / want.len() as f64;
        }
    }
    let recall = recall_sum / (qs.len() * 3) as f64;
    println!("default search recall@10 against the single node's exact: {recall:.3}");
    assert!(recall >= 0.95, "recall@10 {recall:.3}");

    // Every shard's replicas hold the same documents: each replica's count matches the single
    // node's count of that shard's ids.
    for s in 0..entry.shards {
        let want = (0..600)
            .map(|i| format!("doc-{i:05}"))
            .filter(|id| entry.shard_of(id) == s && !gone.contains(id))
            .count() as u64;
        for n in &c.nodes {
            if let Some(r) = n.replica(&entry, s) {
                assert!(
                    r.wait_for(
                        token
                            .0
                            .iter()
                            .filter(|(x, _)| *x == s)
                            .map(|(_, q)| *q)
                            .max()
                            .unwrap_or(0),
                        Duration::from_secs(30)
                    )
                    .await
                );
                assert_eq!(
                    r.collection.count(None).unwrap(),
                    want,
                    "shard {s} on {}",
                    n.id()
                );
            }
        }
    }
}

/// Upserts `batch` through `node`, retrying a failed publish (the NATS server it talks to may be
/// gone) for up to 60 s; returns the token and whether it had to retry.
async fn upsert_retrying(
    node: &Node,
    batch: &[Document],
) -> (metavec_cluster::ReadToken, Option<Duration>) {
    let started = Instant::now();
    let mut retried = false;
    loop {
        match node.upsert("docs", batch.to_vec()).await {
            Ok(t) => return (t, retried.then(|| started.elapsed())),
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "writes did not resume within 60 s: {e}"
                );
                retried = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Waits until every replica of every shard has handled the token's sequence for it.
async fn settle(nodes: &[Arc<Node>], entry: &CollectionEntry, token: &metavec_cluster::ReadToken) {
    for s in 0..entry.shards {
        let seq = token
            .0
            .iter()
            .filter(|(x, _)| *x == s)
            .map(|(_, q)| *q)
            .max()
            .unwrap_or(0);
        for n in nodes {
            if let Some(r) = n.replica(entry, s) {
                assert!(
                    r.wait_for(seq, Duration::from_secs(60)).await,
                    "shard {s} on {} stuck at {} of {seq}",
                    n.id(),
                    r.handled()
                );
            }
        }
    }
}

/// Every document of `want` is in each replica of its shard with the same vector bits and
/// payload.
fn all_present(nodes: &[Arc<Node>], entry: &CollectionEntry, want: &[Document]) {
    for n in nodes {
        for s in entry.shards_of(n.id()) {
            let r = n.replica(entry, s).expect("a running replica");
            let ids: Vec<String> = want
                .iter()
                .filter(|d| entry.shard_of(&d.id) == s)
                .map(|d| d.id.clone())
                .collect();
            let got = r.collection.get(&ids).unwrap();
            for (id, g) in ids.iter().zip(got) {
                let g = g.unwrap_or_else(|| panic!("{id} missing from shard {s} on {}", n.id()));
                let w = want.iter().find(|d| &d.id == id).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&g.vectors), bits(&w.vectors), "{id} on {}", n.id());
                assert_eq!(g.payload, w.payload, "{id}");
            }
        }
    }
}

/// Normalised as the engine stores them (what a replica must hold bit for bit).
fn normalised(docs: &[Document]) -> Vec<Document> {
    let mut d = docs.to_vec();
    metavec_core::document::prepare_batch(&mut d, &config()).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_nats_leader_of_a_stream_during_ingest_loses_no_acknowledged_write() {
    let Some((mut c, entry)) =
        with_docs("killing_the_nats_leader_of_a_stream_during_ingest_loses_no_acknowledged_write")
            .await
    else {
        return;
    };
    let all = docs(1200, 21);
    let mut token = metavec_cluster::ReadToken::default();
    let mut acked = Vec::new();
    let mut resumed_after = None;
    for (i, batch) in all.chunks(20).enumerate() {
        if i == 20 {
            let leader = c.nats.leader(&entry.stream(0)).await;
            println!(
                "kill -9 nats server n{} (leader of {})",
                leader + 1,
                entry.stream(0)
            );
            c.nats.kill(leader);
        }
        let (t, retried) = upsert_retrying(&c.nodes[i % 3], batch).await;
        if resumed_after.is_none() && i >= 20 {
            resumed_after = Some(retried.unwrap_or_default());
        }
        token.0.extend(t.0);
        acked.extend_from_slice(batch);
    }
    println!(
        "the first write after the kill was acknowledged {:.2}s after it began",
        resumed_after.unwrap().as_secs_f64()
    );
    let t = Instant::now();
    settle(&c.nodes, &entry, &token).await;
    println!(
        "replicas settled {:.2}s after the last ack",
        t.elapsed().as_secs_f64()
    );
    all_present(&c.nodes, &entry, &normalised(&acked));
    println!(
        "all {} acknowledged documents present, bit-identical",
        acked.len()
    );
    // With one NATS server of three down, every node still reads the cluster map (the KV
    // client's key listing timed out on the node that had been connected to the dead server).
    for n in &c.nodes {
        let listed = n.collections().await.unwrap();
        assert_eq!(listed.len(), 1, "{}", n.id());
        assert_eq!(n.nodes().await.unwrap().len(), 3, "{}", n.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_restarting_everything_the_cluster_answers_the_same() {
    let Some((mut c, entry)) =
        with_docs("after_restarting_everything_the_cluster_answers_the_same").await
    else {
        return;
    };
    let all = docs(400, 33);
    let mut token = metavec_cluster::ReadToken::default();
    for (i, batch) in all.chunks(50).enumerate() {
        token.0.extend(
            c.nodes[i % 3]
                .upsert("docs", batch.to_vec())
                .await
                .unwrap()
                .0,
        );
    }
    settle(&c.nodes, &entry, &token).await;
    let (late, torn) = out_of_order_batches(&c, &entry).await;
    present_or_not(&c.nodes, &entry, &late, &torn);
    let qs = queries(10, 5);
    let answer = |hits: Vec<metavec_core::Hit>| {
        hits.into_iter()
            .map(|h| (h.id, h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    let mut before = Vec::new();
    for q in &qs {
        let req = SearchRequest::new(q.clone(), Budget::new(4, 8), 10).exact();
        before.push(answer(
            c.nodes[1]
                .search("docs", &req, None, false, c.peers.as_ref())
                .await
                .unwrap(),
        ));
    }

    // Stop every node (their engines close with them) and kill -9 every NATS server, then
    // start it all again on the same directories.
    let dirs: Vec<std::path::PathBuf> = c._dirs.iter().map(|d| d.path().to_path_buf()).collect();
    c.nodes.clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        c.nats.kill(i);
    }
    for i in 0..3 {
        c.nats.restart(i);
    }
    let started = Instant::now();
    c.nats.ready().await;
    c.peers = Arc::new(InProc::default());
    for (id, dir) in ["a", "b", "c"].iter().zip(&dirs) {
        let node = start_node(&c.nats, id, dir, 16 << 10, &c.peers).await;
        node.sync().await.unwrap();
        c.nodes.push(node);
    }
    settle(&c.nodes, &entry, &token).await;
    println!(
        "back and caught up {:.1}s after the restart",
        started.elapsed().as_secs_f64()
    );
    for (q, want) in qs.iter().zip(&before) {
        let req = SearchRequest::new(q.clone(), Budget::new(4, 8), 10).exact();
        let got = answer(
            c.nodes[2]
                .search("docs", &req, None, false, c.peers.as_ref())
                .await
                .unwrap(),
        );
        assert_eq!(&got, want);
    }
    all_present(&c.nodes, &entry, &normalised(&all));
    present_or_not(&c.nodes, &entry, &late, &torn);
}

/// Publishes two batches straight to shard 0's stream as a front whose part publishes failed and
/// were sent again would leave them: batch A as part 0, part 2, commit (3 parts), then part 1;
/// batch B as part 0 and commit (2 parts), its part 1 never sent. Returns A's documents (which
/// every replica applies, at the part that completes the batch) and B's (which none applies).
async fn out_of_order_batches(
    c: &Cluster,
    entry: &CollectionEntry,
) -> (Vec<Document>, Vec<Document>) {
    let mut mine: Vec<Document> = docs(200, 77)
        .into_iter()
        .map(|mut d| {
            d.id = format!("late-{}", d.id);
            d
        })
        .filter(|d| entry.shard_of(&d.id) == 0)
        .take(5)
        .collect();
    assert_eq!(mine.len(), 5);
    metavec_core::document::prepare_batch(&mut mine, &entry.config).unwrap();
    let torn = mine.split_off(3);
    let (a, b) = ([0xa1u8; 16], [0xb2u8; 16]);
    let one = |batch: &[u8; 16], i: u32, n: u32, d: &Document| {
        (
            log::message_id(batch, i),
            log::part(batch, i, n, std::slice::from_ref(d)),
        )
    };
    let msgs = vec![
        one(&a, 0, 3, &mine[0]),
        one(&a, 2, 3, &mine[2]),
        (log::message_id(&a, 3), log::commit(&a, 3)),
        one(&a, 1, 3, &mine[1]),
        one(&b, 0, 2, &torn[0]),
        (log::message_id(&b, 2), log::commit(&b, 2)),
    ];
    let client = async_nats::connect(c.nats.url().split(',').next().unwrap())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut last = 0;
    for (id, body) in msgs {
        let ack = js
            .send_publish(
                entry.subject(0),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .message_id(id),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        last = ack.sequence;
    }
    settle(
        &c.nodes,
        entry,
        &metavec_cluster::ReadToken(vec![(0, last)]),
    )
    .await;
    (mine, torn)
}

/// `late` is in every replica of shard 0 (bit for bit), `torn` in none.
fn present_or_not(
    nodes: &[Arc<Node>],
    entry: &CollectionEntry,
    late: &[Document],
    torn: &[Document],
) {
    all_present(nodes, entry, late);
    let ids: Vec<String> = torn.iter().map(|d| d.id.clone()).collect();
    for n in nodes {
        if let Some(r) = n.replica(entry, 0) {
            let got = r.collection.get(&ids).unwrap();
            assert!(
                got.iter().all(Option::is_none),
                "a torn batch applied on {}",
                n.id()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_is_covered_by_the_other_replicas_and_catches_up_on_restart() {
    let Some((mut c, entry)) =
        with_docs("a_stopped_node_is_covered_by_the_other_replicas_and_catches_up_on_restart")
            .await
    else {
        return;
    };
    let all = docs(900, 44);
    let (first, rest) = all.split_at(300);
    let mut token = metavec_cluster::ReadToken::default();
    for batch in first.chunks(50) {
        token
            .0
            .extend(c.nodes[0].upsert("docs", batch.to_vec()).await.unwrap().0);
    }
    settle(&c.nodes, &entry, &token).await;

    // Stop node b: its replicas stop, its engine closes with it. (In one process a node is
    // stopped, not killed: the kill -9 of a node process is the server's test.)
    let b_dir = c._dirs[1].path().to_path_buf();
    let b = c.nodes.remove(1);
    drop(b);
    let stopped = Instant::now();
    let q = queries(1, 9).remove(0);
    let req = SearchRequest::new(q.clone(), Budget::new(2, 4), 10).exact();
    let answered = c.nodes[0]
        .search("docs", &req, Some(&token), false, c.peers.as_ref())
        .await;
    println!(
        "first full answer {:.3}s after node b stopped",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(answered.unwrap().len(), 10);

    // Writes go on without it.
    for (i, batch) in rest.chunks(50).enumerate() {
        let t = c.nodes[i % 2].upsert("docs", batch.to_vec()).await.unwrap();
        token.0.extend(t.0);
    }
    settle(&c.nodes, &entry, &token).await;

    // Node b comes back on its directory and catches up from its resume points.
    let restarted = Instant::now();
    let b = start_node(&c.nats, "b", &b_dir, 16 << 10, &c.peers).await;
    b.sync().await.unwrap();
    c.nodes.insert(1, b);
    settle(&c.nodes, &entry, &token).await;
    println!(
        "node b caught up {:.2}s after its restart",
        restarted.elapsed().as_secs_f64()
    );
    all_present(&c.nodes, &entry, &normalised(&all));
    // b answers alone for its shards as the others do.
    let want = c.nodes[0]
        .search("docs", &req, Some(&token), false, c.peers.as_ref())
        .await
        .unwrap();
    for s in entry.shards_of("b") {
        let from_b = c.nodes[1]
            .search_local(&entry, s, req.clone(), 0)
            .await
            .unwrap();
        let other = entry.assign[s as usize].iter().find(|n| *n != "b").unwrap();
        let o = c.nodes.iter().find(|n| n.id() == other).unwrap();
        let from_o = o.search_local(&entry, s, req.clone(), 0).await.unwrap();
        assert_eq!(from_b, from_o, "shard {s}");
    }
    assert_eq!(want.len(), 10);
}
