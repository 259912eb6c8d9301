//! `metavec serve --cluster NATS_URLS --node-id ID`: one node of a cluster (docs/CLUSTER.md).
//!
//! Every node serves the same four services as a single server, so clients do not change; any
//! node is a front. Writes are published to the shards' NATS streams ([`Node::upsert`]) and
//! acknowledged once every publish is; the answer carries a read token (`metavec-read-token`
//! response header) that a later search may send back for read-your-writes. Reads go to one
//! replica per shard ([`Node::on_shards`]): this node's own through its local [`Api`], another
//! node's through that node's gRPC port, as the same request marked with the shard
//! (`metavec-shard`) and the sequence its replica must have handled first (`metavec-min-seq`).
//! Searches merge by (score desc, id asc), the single server's order.
//!
//! DeleteByFilter and SetPayload are published as ops that every replica evaluates where they
//! stand in the stream (no read-then-write at the front). Not in cluster mode yet
//! (UNIMPLEMENTED, naming issue #21): DeleteCollection and snapshots. Flush, Compact and Stats
//! act on this node's replicas.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metavec_api::{convert, pb, to_status};
use metavec_cluster::{ClusterError, CollectionEntry, Node, ReadToken, Target};
use pb::admin_server::Admin;
use pb::collections_client::CollectionsClient;
use pb::collections_server::Collections;
use pb::documents_client::DocumentsClient;
use pb::documents_server::Documents;
use pb::search_client::SearchClient;
use pb::search_server::Search;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

use super::service::Api;
use crate::router::{
    add_compaction, add_stats, merge_get, merge_info, merge_scroll, merge_search,
    merge_search_batch, scroll_limit,
};

/// Marks a request another node sends to one of this node's replicas: the shard number.
pub const SHARD_HEADER: &str = "metavec-shard";
/// With [`SHARD_HEADER`]: the stream sequence the replica must have handled before answering.
pub const MIN_SEQ_HEADER: &str = "metavec-min-seq";
/// A write's answer carries its read token here; a search may send it back (read-your-writes).
pub const READ_TOKEN_HEADER: &str = "metavec-read-token";

/// A write's idempotency key (1..=128 visible ASCII characters): a retry with the same key within
/// two minutes is applied once (docs/CLUSTER.md).
pub const IDEMPOTENCY_KEY_HEADER: &str = "metavec-idempotency-key";

/// A cluster node's gRPC API.
#[derive(Clone)]
pub struct ClusterApi(Arc<Inner>);

struct Inner {
    node: Arc<Node>,
    /// This node's own service, over the local collections holding its replicas.
    local: Api,
    /// One lazily connected channel per peer address.
    channels: Mutex<HashMap<String, Channel>>,
    /// How long a call to one replica may take (its wait for a read token included).
    timeout: Duration,
    /// Sent to peers as `authorization: Bearer <key>` (every node shares the admin key).
    key: Option<MetadataValue<Ascii>>,
    max_message_bytes: usize,
}

/// How a shard's call reaches its replica.
enum Via {
    /// This node's replica: the local collection's name.
    Local(String),
    /// Another node's: its channel, the shard and the sequence to wait for.
    Remote(Channel, u32, u64),
}

/// A cluster error as the gRPC status a single server would give for it.
fn status(e: ClusterError) -> Status {
    match e {
        ClusterError::Engine(e) => to_status(&e),
        ClusterError::Remote { code, message } => Status::new(Code::from(code), message),
        ClusterError::NotFound(n) => {
            Status::not_found(format!("collection {n:?} does not exist in the cluster"))
        }
        ClusterError::AlreadyExists(n) => {
            Status::already_exists(format!("collection {n:?} already exists in the cluster"))
        }
        ClusterError::Invalid(m) => Status::invalid_argument(m),
        ClusterError::Corrupt(m) => Status::data_loss(m),
        e @ (ClusterError::Unavailable { .. } | ClusterError::Nats(_) | ClusterError::Peer(_)) => {
            Status::unavailable(e.to_string())
        }
    }
}

/// A replica's answer as a cluster error: a failure of the way to it (another replica may
/// answer) or a refusal of the request (the answer).
fn from_status(who: &str, e: Status) -> ClusterError {
    match e.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            ClusterError::Peer(format!("{who}: {}", e.message()))
        }
        // Connection failures surface as Unknown from the transport.
        Code::Unknown if e.message().contains("transport") => {
            ClusterError::Peer(format!("{who}: {}", e.message()))
        }
        code => ClusterError::Remote {
            code: code as i32,
            message: e.message().to_string(),
        },
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not available in cluster mode yet (issue #21: cluster mode, part 2); \
         docs/CLUSTER.md lists what a cluster serves"
    ))
}

/// The read token a client sent, if any.
fn read_token(md: &MetadataMap) -> Result<Option<ReadToken>, Status> {
    let Some(v) = md.get(READ_TOKEN_HEADER) else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| {
        Status::invalid_argument(format!("{READ_TOKEN_HEADER} header is not ASCII text"))
    })?;
    text.parse().map(Some).map_err(status)
}

/// A write's answer, its read token in the `metavec-read-token` header (digits, ':' and ',').
fn with_read_token<T>(msg: T, token: &ReadToken) -> Response<T> {
    let mut resp = Response::new(msg);
    if let Ok(v) = token.to_string().parse() {
        resp.metadata_mut().insert(READ_TOKEN_HEADER, v);
    }
    resp
}

/// The client's idempotency key, if any.
fn idempotency_key(md: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(v) = md.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(Status::invalid_argument(format!(
            "{IDEMPOTENCY_KEY_HEADER} header: 1..=128 visible ASCII characters"
        ))),
    }
}

fn header_number<T: std::str::FromStr>(md: &MetadataMap, name: &str) -> Result<Option<T>, Status> {
    md.get(name)
        .map(|v| {
            v.to_str().ok().and_then(|t| t.parse().ok()).ok_or_else(|| {
                Status::invalid_argument(format!("{name} header is not a non-negative integer"))
            })
        })
        .transpose()
}

/// Calls `$method` for one shard over `$via`: the local service with the replica's collection
/// name, or the peer's `$client` with the request marked for the shard.
macro_rules! on_replica {
    ($api:expr, $via:expr, $msg:expr, $client:ident . $method:ident, $field:ident) => {{
        let mut m = $msg;
        match $via {
            Via::Local(local) => {
                m.$field = local;
                $api.0.local.$method(Request::new(m)).await
            }
            Via::Remote(ch, shard, min_seq) => {
                let lim = $api.0.max_message_bytes;
                let mut c = $client::new(ch)
                    .max_decoding_message_size(lim)
                    .max_encoding_message_size(lim);
                c.$method($api.peer_request(m, shard, min_seq)).await
            }
        }
    }};
}

/// A request another node addressed to one of this node's replicas (see
/// [`ClusterApi::addressed`]) is answered here by the local service, on the replica's collection.
macro_rules! answer_addressed {
    ($api:expr, $req:ident, $method:ident) => {
        if let Some(local) = $api
            .addressed($req.metadata(), &$req.get_ref().collection)
            .await?
        {
            let mut r = $req.into_inner();
            r.collection = local;
            return $api.0.local.$method(Request::new(r)).await;
        }
    };
}

impl ClusterApi {
    pub fn new(
        node: Arc<Node>,
        local: Api,
        timeout: Duration,
        key: Option<&str>,
        max_message_bytes: usize,
    ) -> Result<ClusterApi, String> {
        let key = key
            .map(|k| format!("Bearer {k}").parse())
            .transpose()
            .map_err(|_| "the api key is not valid header text".to_string())?;
        Ok(ClusterApi(Arc::new(Inner {
            node,
            local,
            channels: Mutex::new(HashMap::new()),
            timeout,
            key,
            max_message_bytes,
        })))
    }

    fn node(&self) -> &Node {
        &self.0.node
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClusterError> {
        let mut channels = self.0.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let c = Endpoint::from_shared(url)
            .map_err(|e| ClusterError::Peer(format!("peer address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn peer_request<M>(&self, msg: M, shard: u32, min_seq: u64) -> Request<M> {
        let mut r = Request::new(msg);
        r.set_timeout(self.0.timeout);
        let md = r.metadata_mut();
        md.insert(SHARD_HEADER, shard.into());
        md.insert(MIN_SEQ_HEADER, min_seq.into());
        if let Some(k) = &self.0.key {
            md.insert("authorization", k.clone());
        }
        r
    }

    /// For a request another node addressed to one of this node's replicas, the local
    /// collection's name once that replica has handled the request's sequence; None for a
    /// client's request.
    async fn addressed(&self, md: &MetadataMap, name: &str) -> Result<Option<String>, Status> {
        let Some(shard) = header_number::<u32>(md, SHARD_HEADER)? else {
            return Ok(None);
        };
        let min_seq = header_number::<u64>(md, MIN_SEQ_HEADER)?.unwrap_or(0);
        let entry = self.node().entry(name).await.map_err(status)?;
        if shard >= entry.shards {
            return Err(Status::invalid_argument(format!(
                "{SHARD_HEADER} is {shard}; collection {name:?} has {} shards",
                entry.shards
            )));
        }
        self.node()
            .local_replica(&entry, shard, min_seq)
            .await
            .map_err(status)?;
        Ok(Some(entry.local_name(shard)))
    }

    /// One upsert message, split per shard and published (the `index`th write under an
    /// idempotency key); its read token.
    async fn publish_upsert(
        &self,
        msg: pb::UpsertRequest,
        key: Option<(&str, u64)>,
    ) -> Result<ReadToken, Status> {
        let entry = self.entry(&msg.collection).await?;
        let docs = convert::documents(msg.documents, &entry.config).map_err(|e| to_status(&e))?;
        self.node()
            .upsert_keyed(&msg.collection, docs, key)
            .await
            .map_err(status)
    }

    async fn entry(&self, name: &str) -> Result<CollectionEntry, Status> {
        self.node().entry(name).await.map_err(status)
    }

    /// Runs `call` for each shard of `shards` on one of its replicas (see [`Node::on_shards`]),
    /// each under the timeout.
    async fn fan<T, F, Fut>(
        &self,
        entry: &CollectionEntry,
        shards: &[u32],
        token: Option<&ReadToken>,
        call: F,
    ) -> Result<Vec<(u32, Result<T, ClusterError>)>, Status>
    where
        F: Fn(u32, Via) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let timeout = self.0.timeout;
        self.node()
            .on_shards(entry, shards, token, |s, target| {
                let (via, who) = match target {
                    Target::Local(_) => (Ok(Via::Local(entry.local_name(s))), "this node".into()),
                    Target::Remote(node, min_seq) => (
                        self.channel(&node.addr)
                            .map(|ch| Via::Remote(ch, s, min_seq)),
                        format!("node {} ({})", node.id, node.addr),
                    ),
                };
                let fut = via.map(|v| call(s, v));
                async move {
                    match tokio::time::timeout(timeout, fut?).await {
                        Ok(Ok(r)) => Ok(r.into_inner()),
                        Ok(Err(e)) => Err(from_status(&who, e)),
                        Err(_) => Err(ClusterError::Peer(format!(
                            "{who} did not answer within {} ms",
                            timeout.as_millis()
                        ))),
                    }
                }
            })
            .await
            .map_err(status)
    }

    /// Every shard's answer (from replicas that handled `token`); the first failure fails the
    /// call.
    async fn on_every_shard<T, F, Fut>(
        &self,
        entry: &CollectionEntry,
        token: Option<&ReadToken>,
        call: F,
    ) -> Result<Vec<T>, Status>
    where
        F: Fn(u32, Via) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let shards: Vec<u32> = (0..entry.shards).collect();
        self.fan(entry, &shards, token, call)
            .await?
            .into_iter()
            .map(|(_, r)| r.map_err(status))
            .collect()
    }

    /// Search answers of every shard, or (with `allow_partial`) of those that answered, and
    /// the unavailable shards' reasons.
    async fn gather<T, F, Fut>(
        &self,
        entry: &CollectionEntry,
        token: Option<&ReadToken>,
        allow_partial: bool,
        call: F,
    ) -> Result<(Vec<T>, Vec<String>), Status>
    where
        F: Fn(u32, Via) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let shards: Vec<u32> = (0..entry.shards).collect();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (_, r) in self.fan(entry, &shards, token, call).await? {
            match r {
                Ok(v) => ok.push(v),
                Err(e @ ClusterError::Unavailable { .. }) => failed.push(e.to_string()),
                Err(e) => return Err(status(e)),
            }
        }
        if !failed.is_empty() && (!allow_partial || ok.is_empty()) {
            return Err(Status::unavailable(failed.join("; ")));
        }
        Ok((ok, failed))
    }

    /// A collection's info: its shards' infos (one replica each) summed under its name.
    async fn info(
        &self,
        entry: &CollectionEntry,
        token: Option<&ReadToken>,
    ) -> Result<pb::CollectionInfo, Status> {
        let infos = self
            .on_every_shard(entry, token, |_, via| async move {
                let req = pb::GetCollectionRequest {
                    name: entry.name.clone(),
                };
                on_replica!(self, via, req, CollectionsClient.get_collection, name)
            })
            .await?;
        let mut info = merge_info(infos);
        info.name = entry.name.clone();
        Ok(info)
    }

    /// The cluster names of this node's replicas of `name` ("" = of every collection), with
    /// their local collections' names.
    async fn own_replicas(&self, name: &str) -> Result<Vec<(String, String)>, Status> {
        let entries = if name.is_empty() {
            self.node().collections().await.map_err(status)?
        } else {
            vec![self.entry(name).await?]
        };
        let mut out = Vec::new();
        for e in entries {
            for s in e.shards_of(self.node().id()) {
                if self.node().replica(&e, s).is_some() {
                    out.push((e.name.clone(), e.local_name(s)));
                }
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl Collections for ClusterApi {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let r = req.into_inner();
        let cfg = metavec_core::CollectionConfig::try_from(&r).map_err(|e| to_status(&e))?;
        let nonzero = |v: u32| (v != 0).then_some(v);
        let entry = self
            .node()
            .create_collection(&r.name, cfg, nonzero(r.shards), nonzero(r.replicas))
            .await
            .map_err(status)?;
        // This node's replicas start now; the others' at their next sync (about a second).
        self.node().sync().await.map_err(status)?;
        let cfg = &entry.config;
        Ok(Response::new(pb::CollectionInfo {
            name: entry.name.clone(),
            config: Some(cfg.into()),
            stored_vectors: cfg.doc_vectors,
            servable_budgets: cfg.budgets.iter().copied().map(pb::Budget::from).collect(),
            ..Default::default()
        }))
    }

    async fn get_collection(
        &self,
        req: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        if let Some(local) = self.addressed(req.metadata(), &req.get_ref().name).await? {
            return self
                .0
                .local
                .get_collection(Request::new(pb::GetCollectionRequest { name: local }))
                .await;
        }
        let token = read_token(req.metadata())?;
        let entry = self.entry(&req.get_ref().name).await?;
        Ok(Response::new(self.info(&entry, token.as_ref()).await?))
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let mut collections = Vec::new();
        for e in self.node().collections().await.map_err(status)? {
            collections.push(self.info(&e, None).await?);
        }
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        _req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        Err(unimplemented("DeleteCollection"))
    }
}

#[tonic::async_trait]
impl Documents for ClusterApi {
    /// Each message is one write: split per shard, published, acknowledged once every publish
    /// is. The response's `metavec-read-token` header covers every message of the stream; with
    /// a `metavec-idempotency-key` header, a retried stream is applied once.
    async fn upsert(
        &self,
        req: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let key = idempotency_key(req.metadata())?;
        let mut stream = req.into_inner();
        let mut out = pb::UpsertResponse::default();
        let mut token = ReadToken::default();
        while let Some(msg) = stream.message().await? {
            let key = key.as_deref().map(|k| (k, u64::from(out.batches)));
            out.upserted += msg.documents.len() as u64;
            token.merge(&self.publish_upsert(msg, key).await?);
            out.batches += 1;
        }
        Ok(with_read_token(out, &token))
    }

    /// `deleted` counts the requested ids that existed when the delete was published.
    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let key = idempotency_key(req.metadata())?;
        let r = req.into_inner();
        let existing = self
            .get(Request::new(pb::GetRequest {
                collection: r.collection.clone(),
                ids: r.ids.clone(),
                ids_only: true,
            }))
            .await?
            .into_inner();
        let token = self
            .node()
            .delete_keyed(&r.collection, &r.ids, key.as_deref().map(|k| (k, 0)))
            .await
            .map_err(status)?;
        let deleted = existing.documents.len() as u64;
        Ok(with_read_token(pb::DeleteResponse { deleted }, &token))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        answer_addressed!(self, req, get);
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        let entry = self.entry(&r.collection).await?;
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); entry.shards as usize];
        for (i, id) in r.ids.iter().enumerate() {
            metavec_core::document::validate_id(id, &format!("ids[{i}]"))
                .map_err(|e| to_status(&e))?;
            parts[entry.shard_of(id) as usize].push(id.clone());
        }
        let which: Vec<u32> = (0..entry.shards)
            .filter(|&s| !parts[s as usize].is_empty())
            .collect();
        let got = self
            .fan(&entry, &which, token.as_ref(), |s, via| {
                let req = pb::GetRequest {
                    collection: r.collection.clone(),
                    ids: parts[s as usize].clone(),
                    ids_only: r.ids_only,
                };
                async move { on_replica!(self, via, req, DocumentsClient.get, collection) }
            })
            .await?
            .into_iter()
            .map(|(_, g)| g.map_err(status))
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(merge_get(r.ids, got)))
    }

    async fn scroll(
        &self,
        req: Request<pb::ScrollRequest>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        answer_addressed!(self, req, scroll);
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        let entry = self.entry(&r.collection).await?;
        let pages = self
            .on_every_shard(&entry, token.as_ref(), |_, via| {
                let req = r.clone();
                async move { on_replica!(self, via, req, DocumentsClient.scroll, collection) }
            })
            .await?;
        Ok(Response::new(merge_scroll(pages, scroll_limit(&r))))
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        answer_addressed!(self, req, count);
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        let entry = self.entry(&r.collection).await?;
        let counts = self
            .on_every_shard(&entry, token.as_ref(), |_, via| {
                let req = r.clone();
                async move { on_replica!(self, via, req, DocumentsClient.count, collection) }
            })
            .await?;
        Ok(Response::new(pb::CountResponse {
            count: counts.iter().map(|c| c.count).sum(),
        }))
    }

    /// Published to every shard as an op each replica evaluates where it stands in the stream;
    /// `deleted` counts the documents that matched when it was published (read with the
    /// request's read token).
    async fn delete_by_filter(
        &self,
        req: Request<pb::DeleteByFilterRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let key = idempotency_key(req.metadata())?;
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        if convert::filter(&r.filter)
            .map_err(|e| to_status(&e))?
            .is_none()
        {
            return Err(Status::invalid_argument(
                "filter is empty: DeleteByFilter needs a filter (to delete every document, \
                 delete the collection)",
            ));
        }
        let entry = self.entry(&r.collection).await?;
        let counts = self
            .on_every_shard(&entry, token.as_ref(), |_, via| {
                let req = pb::CountRequest {
                    collection: r.collection.clone(),
                    filter: r.filter.clone(),
                };
                async move { on_replica!(self, via, req, DocumentsClient.count, collection) }
            })
            .await?;
        let written = self
            .node()
            .delete_by_filter_keyed(&r.collection, &r.filter, key.as_deref().map(|k| (k, 0)))
            .await
            .map_err(status)?;
        let deleted = counts.iter().map(|c| c.count).sum();
        Ok(with_read_token(pb::DeleteResponse { deleted }, &written))
    }

    /// Every id must be stored (read with the request's read token), else NOT_FOUND and
    /// nothing is published; then one op per shard holding some of the ids.
    async fn set_payload(
        &self,
        req: Request<pb::SetPayloadRequest>,
    ) -> Result<Response<pb::SetPayloadResponse>, Status> {
        let key = idempotency_key(req.metadata())?;
        let token = req.metadata().get(READ_TOKEN_HEADER).cloned();
        let r = req.into_inner();
        let payload = (!r.payload.is_empty()).then_some(r.payload.as_str());
        metavec_cluster::node::check_set_payload(&r.ids, payload).map_err(status)?;
        let mut get = Request::new(pb::GetRequest {
            collection: r.collection.clone(),
            ids: r.ids.clone(),
            ids_only: true,
        });
        if let Some(t) = token {
            get.metadata_mut().insert(READ_TOKEN_HEADER, t);
        }
        let found = self.get(get).await?.into_inner();
        if let Some(id) = found.missing_ids.first() {
            return Err(Status::not_found(format!(
                "document {id:?} is not in collection {:?}",
                r.collection
            )));
        }
        let written = self
            .node()
            .set_payload_keyed(
                &r.collection,
                &r.ids,
                payload,
                r.merge,
                key.as_deref().map(|k| (k, 0)),
            )
            .await
            .map_err(status)?;
        let updated = r.ids.len() as u64;
        Ok(with_read_token(
            pb::SetPayloadResponse { updated },
            &written,
        ))
    }
}

/// The HTTP API's upsert: one message, as one message of the Upsert stream.
#[tonic::async_trait]
impl super::web::Backend for ClusterApi {
    async fn upsert_message(
        &self,
        md: MetadataMap,
        msg: pb::UpsertRequest,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let key = idempotency_key(&md)?;
        let upserted = msg.documents.len() as u64;
        let token = self
            .publish_upsert(msg, key.as_deref().map(|k| (k, 0)))
            .await?;
        let out = pb::UpsertResponse {
            upserted,
            batches: 1,
            last_seq: 0,
        };
        Ok(with_read_token(out, &token))
    }
}

#[tonic::async_trait]
impl Search for ClusterApi {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        answer_addressed!(self, req, search);
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        let entry = self.entry(&r.collection).await?;
        let (parts, failed) = self
            .gather(&entry, token.as_ref(), r.allow_partial, |_, via| {
                let req = r.clone();
                async move { on_replica!(self, via, req, SearchClient.search, collection) }
            })
            .await?;
        Ok(Response::new(merge_search(parts, r.k as usize, failed)))
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        answer_addressed!(self, req, search_batch);
        let token = read_token(req.metadata())?;
        let r = req.into_inner();
        let entry = self.entry(&r.collection).await?;
        let (parts, failed) = self
            .gather(&entry, token.as_ref(), r.allow_partial, |_, via| {
                let req = r.clone();
                async move { on_replica!(self, via, req, SearchClient.search_batch, collection) }
            })
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
impl Admin for ClusterApi {
    /// Seals this node's replicas of the collection ("" = of every collection).
    async fn flush(
        &self,
        req: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        let mut flushed = Vec::new();
        for (name, local) in self.own_replicas(&req.get_ref().collection).await? {
            let f = self
                .0
                .local
                .flush(Request::new(pb::FlushRequest { collection: local }))
                .await?
                .into_inner();
            if !f.flushed.is_empty() {
                flushed.push(name);
            }
        }
        flushed.dedup();
        Ok(Response::new(pb::FlushResponse { flushed }))
    }

    /// Compacts this node's replicas of the collection, one after another.
    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let r = req.into_inner();
        if r.collection.is_empty() {
            return Err(Status::invalid_argument("collection is empty"));
        }
        let mut out = pb::CompactResponse::default();
        for (_, local) in self.own_replicas(&r.collection).await? {
            let c = self
                .0
                .local
                .compact(Request::new(pb::CompactRequest {
                    collection: local,
                    ..r.clone()
                }))
                .await?
                .into_inner();
            add_compaction(&mut out, c);
        }
        Ok(Response::new(out))
    }

    /// This node's replicas, summed per collection.
    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let mut by_name: BTreeMap<String, pb::CollectionStats> = BTreeMap::new();
        for (name, local) in self.own_replicas(&req.get_ref().collection).await? {
            let s = self
                .0
                .local
                .stats(Request::new(pb::StatsRequest { collection: local }))
                .await?
                .into_inner();
            for c in s.collections {
                let e = by_name
                    .entry(name.clone())
                    .or_insert_with(|| pb::CollectionStats {
                        name: name.clone(),
                        ..Default::default()
                    });
                add_stats(e, &c);
            }
        }
        Ok(Response::new(pb::StatsResponse {
            collections: by_name.into_values().collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        _req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        Err(unimplemented("CreateSnapshot"))
    }

    async fn list_snapshots(
        &self,
        _req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        Err(unimplemented("ListSnapshots"))
    }

    async fn delete_snapshot(
        &self,
        _req: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        Err(unimplemented("DeleteSnapshot"))
    }

    async fn restore_snapshot(
        &self,
        _req: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        Err(unimplemented("RestoreSnapshot"))
    }
}
