//! `metavec serve --router --shards a:port,b:port,...`: a stateless front for N shard servers.
//!
//! It serves the same four services as a shard, so clients do not change. A document lives on
//! shard `crc32(id) mod N` (crc32 IEEE of the id's UTF-8 bytes; the shard list's order is part of
//! the placement, so it must not change while data exists). Writes and reads by id go to the
//! owning shard; searches fan out to every shard in parallel, each under a timeout, and the hits
//! are merged by (score descending, id ascending), the single server's order, so N shards give
//! the top-k one server holding all documents would. A shard that is down or too slow fails the
//! request with UNAVAILABLE naming it, unless the search asks for `allow_partial`.
//!
//! Not atomic across shards: an Upsert batch or a Delete whose ids span shards is applied shard
//! by shard; if one shard fails, the others' parts stay applied (the error names the shard).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use metavec_api::pb;
use pb::admin_client::AdminClient;
use pb::collections_client::CollectionsClient;
use pb::documents_client::DocumentsClient;
use pb::search_client::SearchClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

/// One shard: its address and a lazily connected, shared channel.
#[derive(Clone)]
struct Shard {
    addr: String,
    channel: Channel,
}

#[derive(Clone)]
pub struct Router {
    shards: Vec<Shard>,
    timeout: Duration,
    /// Sent to the shards as `authorization: Bearer <key>`.
    key: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    max_message_bytes: usize,
}

/// Which shard owns `id`, of `n`.
pub fn owner(id: &str, n: usize) -> usize {
    crc32fast::hash(id.as_bytes()) as usize % n
}

impl Router {
    pub fn new(
        shards: &[String],
        timeout: Duration,
        key: Option<&str>,
        max_message_bytes: usize,
    ) -> Result<Router, String> {
        if shards.is_empty() {
            return Err("--router needs --shards host:port,host:port,...".into());
        }
        let shards = shards
            .iter()
            .map(|a| {
                let url = if a.contains("://") {
                    a.clone()
                } else {
                    format!("http://{a}")
                };
                let channel = Endpoint::from_shared(url)
                    .map_err(|e| format!("shard address {a:?}: {e}"))?
                    .connect_timeout(timeout)
                    .connect_lazy();
                Ok(Shard {
                    addr: a.clone(),
                    channel,
                })
            })
            .collect::<Result<_, String>>()?;
        let key = key
            .map(|k| format!("Bearer {k}").parse())
            .transpose()
            .map_err(|_| "the shard api key is not valid header text".to_string())?;
        Ok(Router {
            shards,
            timeout,
            key,
            max_message_bytes,
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(k) = &self.key {
            r.metadata_mut().insert("authorization", k.clone());
        }
        r
    }

    fn collections(&self, s: usize) -> CollectionsClient<Channel> {
        CollectionsClient::new(self.shards[s].channel.clone())
    }

    fn documents(&self, s: usize) -> DocumentsClient<Channel> {
        DocumentsClient::new(self.shards[s].channel.clone())
            .max_encoding_message_size(self.max_message_bytes)
            .max_decoding_message_size(self.max_message_bytes)
    }

    fn search_client(&self, s: usize) -> SearchClient<Channel> {
        SearchClient::new(self.shards[s].channel.clone())
            .max_encoding_message_size(self.max_message_bytes)
            .max_decoding_message_size(self.max_message_bytes)
    }

    fn admin(&self, s: usize) -> AdminClient<Channel> {
        AdminClient::new(self.shards[s].channel.clone())
    }

    /// Runs `call` on shards `which` in parallel, each under the timeout; results in that order,
    /// each error prefixed with its shard.
    async fn fan<T, F, Fut>(&self, which: &[usize], call: F) -> Vec<Result<T, Status>>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let calls = which.iter().map(|&s| {
            let fut = call(s);
            let addr = self.shards[s].addr.clone();
            let timeout = self.timeout;
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(e)) => Err(shard_status(&addr, e)),
                    Err(_) => Err(Status::unavailable(format!(
                        "shard {addr} did not answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            }
        });
        futures_util::future::join_all(calls).await
    }

    fn all(&self) -> Vec<usize> {
        (0..self.shards.len()).collect()
    }

    /// Every shard must succeed; the first failure is the answer.
    async fn on_all<T, F, Fut>(&self, call: F) -> Result<Vec<T>, Status>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.fan(&self.all(), call).await.into_iter().collect()
    }

    /// Search results of every shard, or (with `allow_partial`) of those that answered. A shard
    /// refusing the request itself (bad input, unknown collection) fails it whatever the flag.
    async fn gather<T, F, Fut>(
        &self,
        allow_partial: bool,
        call: F,
    ) -> Result<(Vec<T>, Vec<String>), Status>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for r in self.fan(&self.all(), call).await {
            match r {
                Ok(v) => ok.push(v),
                Err(e) if matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                    failed.push(e)
                }
                Err(e) => return Err(e),
            }
        }
        if !failed.is_empty() && (!allow_partial || ok.is_empty()) {
            let msgs: Vec<&str> = failed.iter().map(|e| e.message()).collect();
            return Err(Status::unavailable(msgs.join("; ")));
        }
        Ok((ok, failed.iter().map(|e| e.message().to_string()).collect()))
    }
}

/// A per-shard closure for [`Router::fan`]: `each!(router, s => client.method(message))` calls
/// `method` on shard `s`'s `client` with `message` (evaluated per shard, may use `s`) under the
/// router's timeout and key.
macro_rules! each {
    ($router:expr, $s:ident => $client:ident.$method:ident($msg:expr)) => {
        |$s| {
            let mut c = $router.$client($s);
            let q = $router.req($msg);
            async move { c.$method(q).await }
        }
    };
}

/// A shard's error, its code kept and its address named.
fn shard_status(addr: &str, e: Status) -> Status {
    let code = match e.code() {
        // Connection failures surface as Unknown/Internal from the transport: the shard is down.
        Code::Unknown if e.message().contains("transport") => Code::Unavailable,
        Code::Cancelled => Code::Unavailable,
        c => c,
    };
    Status::new(code, format!("shard {addr}: {}", e.message()))
}

/// Sums the sizes of one collection's infos from every shard into the first.
pub(crate) fn merge_info(mut infos: Vec<pb::CollectionInfo>) -> pb::CollectionInfo {
    let mut first = infos.remove(0);
    for i in infos {
        first.live_docs += i.live_docs;
        first.memtable_docs += i.memtable_docs;
        first.wal_bytes += i.wal_bytes;
        first.segments.extend(i.segments);
    }
    first
}

/// The documents of every shard's Get, in the request's order, as a single server answers.
pub(crate) fn merge_get(ids: Vec<String>, parts: Vec<pb::GetResponse>) -> pb::GetResponse {
    let mut found: HashMap<String, pb::Document> = HashMap::new();
    for d in parts.into_iter().flat_map(|g| g.documents) {
        found.insert(d.id.clone(), d);
    }
    let mut out = pb::GetResponse::default();
    for id in ids {
        match found.get(&id) {
            Some(d) => out.documents.push(d.clone()),
            None => out.missing_ids.push(id),
        }
    }
    out
}

/// A Scroll page's size: `limit`, 0 = 100.
pub(crate) fn scroll_limit(r: &pb::ScrollRequest) -> usize {
    if r.limit == 0 {
        100
    } else {
        r.limit as usize
    }
}

/// Every shard's page after the cursor, merged by id: the first `limit` of the union are the
/// collection's (each shard gave its first `limit`).
pub(crate) fn merge_scroll(pages: Vec<pb::ScrollResponse>, limit: usize) -> pb::ScrollResponse {
    let more = pages.iter().any(|p| !p.next_cursor.is_empty());
    let mut docs: Vec<pb::Document> = pages.into_iter().flat_map(|p| p.documents).collect();
    docs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let more = more || docs.len() > limit;
    docs.truncate(limit);
    let next_cursor = match docs.last() {
        Some(d) if more => d.id.clone(),
        _ => String::new(),
    };
    pb::ScrollResponse {
        documents: docs,
        next_cursor,
    }
}

/// Every shard's SearchBatch answer, split per query and merged as [`merge_search`] does.
pub(crate) fn merge_search_batch(
    parts: Vec<pb::SearchBatchResponse>,
    queries: usize,
    k: usize,
    failed: Vec<String>,
) -> pb::SearchBatchResponse {
    let mut per_query: Vec<Vec<pb::SearchResponse>> = vec![Vec::new(); queries];
    for p in parts {
        for (i, res) in p.results.into_iter().enumerate().take(queries) {
            per_query[i].push(res);
        }
    }
    pb::SearchBatchResponse {
        results: per_query
            .into_iter()
            .map(|q| merge_search(q, k, failed.clone()))
            .collect(),
    }
}

/// Adds one part's sizes (a shard's, a replica's) to a collection's stats.
pub(crate) fn add_stats(into: &mut pb::CollectionStats, c: &pb::CollectionStats) {
    into.live_docs += c.live_docs;
    into.memtable_docs += c.memtable_docs;
    into.segments += c.segments;
    into.segment_bytes += c.segment_bytes;
    into.index_bytes += c.index_bytes;
    into.wal_bytes += c.wal_bytes;
}

/// Adds one part's compaction report to `into`; times add up (parts compacted one after
/// another; a caller running them in parallel keeps the largest instead).
pub(crate) fn add_compaction(into: &mut pb::CompactResponse, c: pb::CompactResponse) {
    into.merged_segments.extend(c.merged_segments);
    into.docs_in += c.docs_in;
    into.docs_out += c.docs_out;
    into.bytes_before += c.bytes_before;
    into.bytes_after += c.bytes_after;
    into.elapsed_ms += c.elapsed_ms;
    into.stored_vectors = c.stored_vectors;
}

/// Hits of every shard, best first by (score descending, id ascending), the best `k`.
pub(crate) fn merge_search(
    parts: Vec<pb::SearchResponse>,
    k: usize,
    failed: Vec<String>,
) -> pb::SearchResponse {
    let mut out = pb::SearchResponse {
        partial: !failed.is_empty(),
        shards_failed: failed,
        ..Default::default()
    };
    let mut stats = pb::SearchStats::default();
    for p in parts {
        out.hits.extend(p.hits);
        out.budget = out.budget.or(p.budget);
        if let Some(s) = p.stats {
            stats.candidates += s.candidates;
            stats.docs_scored += s.docs_scored;
            stats.vector_bytes_read += s.vector_bytes_read;
            stats.dot_products += s.dot_products;
            stats.segments += s.segments;
            stats.pruned += s.pruned;
            // Shards run in parallel: the slowest one is the time.
            stats.candidate_us = stats.candidate_us.max(s.candidate_us);
            stats.rerank_us = stats.rerank_us.max(s.rerank_us);
            stats.merge_us = stats.merge_us.max(s.merge_us);
            stats.total_us = stats.total_us.max(s.total_us);
        }
    }
    // The order one server gives (score desc, id asc), so a sharded answer equals a single one.
    out.hits
        .sort_by(|a, b| metavec_core::search::hit_order((a.score, &a.id), (b.score, &b.id)));
    out.hits.truncate(k);
    out.stats = Some(stats);
    out
}

#[tonic::async_trait]
impl pb::collections_server::Collections for Router {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let r = req.into_inner();
        let infos = self
            .on_all(each!(self, s => collections.create_collection(r.clone())))
            .await?;
        Ok(Response::new(merge_info(infos)))
    }

    async fn get_collection(
        &self,
        req: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let r = req.into_inner();
        let infos = self
            .on_all(each!(self, s => collections.get_collection(r.clone())))
            .await?;
        Ok(Response::new(merge_info(infos)))
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let lists = self
            .on_all(each!(self, s => collections.list_collections(pb::ListCollectionsRequest {})))
            .await?;
        let mut by_name: BTreeMap<String, Vec<pb::CollectionInfo>> = BTreeMap::new();
        for c in lists.into_iter().flat_map(|l| l.collections) {
            by_name.entry(c.name.clone()).or_default().push(c);
        }
        Ok(Response::new(pb::ListCollectionsResponse {
            collections: by_name.into_values().map(merge_info).collect(),
        }))
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let r = req.into_inner();
        self.on_all(each!(self, s => collections.delete_collection(r.clone())))
            .await?;
        Ok(Response::new(pb::DeleteCollectionResponse {}))
    }
}

#[tonic::async_trait]
impl pb::documents_server::Documents for Router {
    async fn upsert(
        &self,
        req: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let mut stream = req.into_inner();
        let mut out = pb::UpsertResponse::default();
        let n = self.shards.len();
        while let Some(msg) = stream.message().await? {
            let mut parts: Vec<Vec<pb::Document>> = vec![Vec::new(); n];
            for d in msg.documents {
                parts[owner(&d.id, n)].push(d);
            }
            let which: Vec<usize> = (0..n).filter(|&s| !parts[s].is_empty()).collect();
            let acks = self
                .fan(&which, |s| {
                    let batch = pb::UpsertRequest {
                        collection: msg.collection.clone(),
                        documents: parts[s].clone(),
                    };
                    {
                        let mut c = self.documents(s);
                        let q = self.req(tokio_stream::iter(vec![batch]));
                        async move { c.upsert(q).await }
                    }
                })
                .await;
            for a in acks {
                let a = a?;
                out.upserted += a.upserted;
                out.last_seq = out.last_seq.max(a.last_seq);
            }
            out.batches += 1;
        }
        Ok(Response::new(out))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let n = self.shards.len();
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); n];
        for id in r.ids {
            parts[owner(&id, n)].push(id);
        }
        let which: Vec<usize> = (0..n).filter(|&s| !parts[s].is_empty()).collect();
        let mut deleted = 0;
        for d in self
            .fan(
                &which,
                each!(self, s => documents.delete(pb::DeleteRequest {
                    collection: r.collection.clone(),
                    ids: parts[s].clone(),
                })),
            )
            .await
        {
            deleted += d?.deleted;
        }
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        let n = self.shards.len();
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); n];
        for id in &r.ids {
            parts[owner(id, n)].push(id.clone());
        }
        let which: Vec<usize> = (0..n).filter(|&s| !parts[s].is_empty()).collect();
        let got = self
            .fan(
                &which,
                each!(self, s => documents.get(pb::GetRequest {
                    collection: r.collection.clone(),
                    ids: parts[s].clone(),
                    ids_only: r.ids_only,
                })),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(merge_get(r.ids, got)))
    }
    /// Every shard's page after the cursor, merged by id: the first `limit` of the union are
    /// the collection's (each shard gave its first `limit`).
    async fn scroll(
        &self,
        req: Request<pb::ScrollRequest>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let r = req.into_inner();
        let limit = scroll_limit(&r);
        let pages = self
            .on_all(each!(self, s => documents.scroll(r.clone())))
            .await?;
        Ok(Response::new(merge_scroll(pages, limit)))
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let r = req.into_inner();
        let counts = self
            .on_all(each!(self, s => documents.count(r.clone())))
            .await?;
        Ok(Response::new(pb::CountResponse {
            count: counts.iter().map(|c| c.count).sum(),
        }))
    }

    /// On every shard; not atomic across shards (a failed shard fails the call, the others'
    /// deletes stand).
    async fn delete_by_filter(
        &self,
        req: Request<pb::DeleteByFilterRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let acks = self
            .on_all(each!(self, s => documents.delete_by_filter(r.clone())))
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            deleted: acks.iter().map(|a| a.deleted).sum(),
        }))
    }

    /// Each shard updates its own ids, all or nothing per shard.
    async fn set_payload(
        &self,
        req: Request<pb::SetPayloadRequest>,
    ) -> Result<Response<pb::SetPayloadResponse>, Status> {
        let r = req.into_inner();
        if r.ids.is_empty() {
            return Err(Status::invalid_argument(
                "ids has 0 entries: a payload update names 1..=1000 ids",
            ));
        }
        let n = self.shards.len();
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); n];
        for id in &r.ids {
            parts[owner(id, n)].push(id.clone());
        }
        let which: Vec<usize> = (0..n).filter(|&s| !parts[s].is_empty()).collect();
        let mut updated = 0;
        for a in self
            .fan(
                &which,
                each!(self, s => documents.set_payload(pb::SetPayloadRequest {
                    ids: parts[s].clone(),
                    ..r.clone()
                })),
            )
            .await
        {
            updated += a?.updated;
        }
        Ok(Response::new(pb::SetPayloadResponse { updated }))
    }
}

#[tonic::async_trait]
impl pb::search_server::Search for Router {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let r = req.into_inner();
        let (parts, failed) = self
            .gather(
                r.allow_partial,
                each!(self, s => search_client.search(r.clone())),
            )
            .await?;
        Ok(Response::new(merge_search(parts, r.k as usize, failed)))
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let r = req.into_inner();
        let (parts, failed) = self
            .gather(
                r.allow_partial,
                each!(self, s => search_client.search_batch(r.clone())),
            )
            .await?;
        Ok(Response::new(merge_search_batch(
            parts,
            r.queries.len(),
            r.k as usize,
            failed,
        )))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Router {
    async fn flush(
        &self,
        req: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        let r = req.into_inner();
        let all = self
            .on_all(each!(self, s => admin.flush(r.clone())))
            .await?;
        let mut flushed: Vec<String> = all.into_iter().flat_map(|f| f.flushed).collect();
        flushed.sort();
        flushed.dedup();
        Ok(Response::new(pb::FlushResponse { flushed }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let r = req.into_inner();
        let all = self
            .on_all(each!(self, s => admin.stats(r.clone())))
            .await?;
        let mut by_name: BTreeMap<String, pb::CollectionStats> = BTreeMap::new();
        for c in all.into_iter().flat_map(|s| s.collections) {
            let e = by_name
                .entry(c.name.clone())
                .or_insert_with(|| pb::CollectionStats {
                    name: c.name.clone(),
                    ..Default::default()
                });
            add_stats(e, &c);
        }
        Ok(Response::new(pb::StatsResponse {
            collections: by_name.into_values().collect(),
        }))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let r = req.into_inner();
        let all = self
            .on_all(each!(self, s => admin.compact(r.clone())))
            .await?;
        let mut out = pb::CompactResponse::default();
        for c in all {
            // Shards compact in parallel: the slowest one is the time.
            let elapsed_ms = out.elapsed_ms.max(c.elapsed_ms);
            add_compaction(&mut out, c);
            out.elapsed_ms = elapsed_ms;
        }
        Ok(Response::new(out))
    }

    async fn create_snapshot(
        &self,
        _req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        Err(unsharded("CreateSnapshot"))
    }

    async fn list_snapshots(
        &self,
        _req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        Err(unsharded("ListSnapshots"))
    }

    async fn delete_snapshot(
        &self,
        _req: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        Err(unsharded("DeleteSnapshot"))
    }

    async fn restore_snapshot(
        &self,
        _req: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        Err(unsharded("RestoreSnapshot"))
    }
}

/// Snapshots belong to each shard's data directory: take and restore them on the shards.
fn unsharded(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not routed: snapshots are per shard; call each shard directly (docs/OPERATIONS.md, Scale-out)"
    ))
}
