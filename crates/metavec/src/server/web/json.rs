//! The HTTP API's JSON bodies and their conversions to and from the gRPC messages. Each request
//! body becomes the gRPC request it stands for, so validation stays the gRPC handlers'; the
//! schemas (utoipa) are what `/openapi.json` describes.

use metavec_api::pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::Status;
use utoipa::ToSchema;

pub use super::values::{Budget, BudgetJson, Vectors, VectorsJson};

/// The one error body of every failed request.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: the gRPC status code in snake case and a message naming the field.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_argument`, `unauthenticated`, `permission_denied`, `not_found`,
    /// `already_exists`, `failed_precondition`, `resource_exhausted`, `unavailable`,
    /// `deadline_exceeded`, `internal`, ...
    pub code: String,
    pub message: String,
}

fn pair(b: &pb::Budget) -> [u32; 2] {
    [b.r_q, b.r_c]
}

/// A filter: a JSON object in the filter grammar (docs/OPERATIONS.md, "Filters"), or the same
/// as a string.
fn filter_text(f: Option<Value>) -> String {
    match f {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
    }
}

/// A payload: a JSON object (or null for none), stored as its text.
fn payload_text(p: Option<Value>) -> String {
    match p {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// A stored payload's text as JSON (an unparsable one as a string, never an error).
fn payload_value(p: String) -> Option<Value> {
    (!p.is_empty()).then(|| serde_json::from_str(&p).unwrap_or(Value::String(p)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// 1..=64 ASCII letters, digits, '_' or '-'.
    pub name: String,
    /// Width of every vector.
    pub dim: u32,
    /// M_c: vectors per document.
    pub doc_vectors: u32,
    /// M_q: the most vectors a query may carry.
    pub query_vectors: u32,
    /// Trained budgets (empty: the MetaEmbed ladder cut to the counts).
    #[serde(default)]
    #[schema(value_type = Vec<Budget>)]
    pub budgets: Vec<BudgetJson>,
    /// "bf16" (default), "f32", "f16" or "int8".
    #[serde(default)]
    pub dtype: String,
    /// Cluster mode only: shards, fixed at creation (0 or absent: 4 x nodes).
    #[serde(default)]
    pub shards: u32,
    /// Cluster mode only: serving replicas of each shard (0 or absent: min(2, nodes)).
    #[serde(default)]
    pub replicas: u32,
}

impl CreateCollection {
    pub fn into_pb(self) -> pb::CreateCollectionRequest {
        pb::CreateCollectionRequest {
            name: self.name,
            dim: self.dim,
            doc_vectors: self.doc_vectors,
            query_vectors: self.query_vectors,
            budgets: self.budgets.into_iter().map(|b| b.0).collect(),
            dtype: self.dtype,
            shards: self.shards,
            replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// A sealed segment.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Segment {
    pub id: u64,
    pub docs: u64,
    pub live_docs: u64,
    pub file_bytes: u64,
    pub index_bytes: u64,
}

/// A collection's configuration and sizes.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Collection {
    pub name: String,
    pub dim: u32,
    pub doc_vectors: u32,
    pub query_vectors: u32,
    pub dtype: String,
    /// Trained budgets as `[r_q, r_c]`.
    pub budgets: Vec<[u32; 2]>,
    /// The trained budgets the stored vectors can still serve.
    pub servable_budgets: Vec<[u32; 2]>,
    /// Vectors per document kept on disk (the depth).
    pub stored_vectors: u32,
    pub live_docs: u64,
    pub memtable_docs: u64,
    pub wal_bytes: u64,
    pub segments: Vec<Segment>,
}

impl From<pb::CollectionInfo> for Collection {
    fn from(i: pb::CollectionInfo) -> Self {
        let cfg = i.config.unwrap_or_default();
        Collection {
            name: i.name,
            dim: cfg.dim,
            doc_vectors: cfg.doc_vectors,
            query_vectors: cfg.query_vectors,
            dtype: cfg.dtype,
            budgets: cfg.budgets.iter().map(pair).collect(),
            servable_budgets: i.servable_budgets.iter().map(pair).collect(),
            stored_vectors: i.stored_vectors,
            live_docs: i.live_docs,
            memtable_docs: i.memtable_docs,
            wal_bytes: i.wal_bytes,
            segments: i
                .segments
                .into_iter()
                .map(|s| Segment {
                    id: s.id,
                    docs: s.docs,
                    live_docs: s.live_docs,
                    file_bytes: s.file_bytes,
                    index_bytes: s.index_bytes,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<Collection>,
}

/// A document to write.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// UTF-8, 1..=256 bytes; replaces the document with the same id.
    pub id: String,
    /// doc_vectors vectors of dim numbers.
    #[schema(value_type = Vectors)]
    pub vectors: VectorsJson,
    /// A JSON object, or null for none.
    #[serde(default)]
    pub payload: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upsert {
    /// Written and made durable together; duplicate ids are refused.
    pub documents: Vec<DocumentIn>,
}

impl Upsert {
    pub fn into_pb(self, collection: String) -> pb::UpsertRequest {
        pb::UpsertRequest {
            collection,
            documents: self
                .documents
                .into_iter()
                .map(|d| pb::Document {
                    id: d.id,
                    vectors: Some(d.vectors.0),
                    payload: payload_text(d.payload),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Upserted {
    /// Documents written.
    pub upserted: u64,
    /// WAL sequence number of the write (0 in cluster mode, whose answer carries a read token in
    /// the `metavec-read-token` header instead).
    pub last_seq: u64,
}

/// A stored document.
#[derive(Serialize, ToSchema)]
pub struct DocumentOut {
    pub id: String,
    /// The stored (normalised) vectors: one array a vector, or packed f32 when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vectors>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl DocumentOut {
    pub fn new(d: pb::Document, packed: bool) -> Self {
        DocumentOut {
            id: d.id,
            vectors: d.vectors.map(|v| Vectors::of(v, packed)),
            payload: payload_value(d.payload),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDocuments {
    pub ids: Vec<String>,
    /// Only say which ids exist (documents with id alone).
    #[serde(default)]
    pub ids_only: bool,
    /// Vectors in the packed form (base64 of little-endian f32), not as nested arrays.
    #[serde(default)]
    pub packed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    /// Found documents, in the order of first mention.
    pub documents: Vec<DocumentOut>,
    /// Ids not stored.
    pub missing_ids: Vec<String>,
}

/// Deletes by ids or by filter (exactly one of them).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteDocuments {
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// A payload filter (docs/OPERATIONS.md, "Filters").
    #[serde(default)]
    pub filter: Option<Value>,
}

pub enum Deletion {
    Ids(pb::DeleteRequest),
    Filter(pb::DeleteByFilterRequest),
}

impl DeleteDocuments {
    pub fn into_pb(self, collection: String) -> Result<Deletion, Status> {
        match (self.ids, self.filter) {
            (Some(ids), None) => Ok(Deletion::Ids(pb::DeleteRequest { collection, ids })),
            (None, Some(f)) => Ok(Deletion::Filter(pb::DeleteByFilterRequest {
                collection,
                filter: filter_text(Some(f)),
            })),
            _ => Err(Status::invalid_argument(
                "set exactly one of ids and filter",
            )),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Scroll {
    /// Start after this id (the previous page's next_cursor).
    #[serde(default)]
    pub cursor: String,
    /// Documents per page, 1..=10000 (0 or unset: 100).
    #[serde(default)]
    pub limit: u32,
    #[serde(default)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub with_vectors: bool,
    #[serde(default)]
    pub with_payload: bool,
    /// Vectors in the packed form (base64 of little-endian f32), not as nested arrays.
    #[serde(default)]
    pub packed: bool,
}

impl Scroll {
    pub fn into_pb(self, collection: String) -> pb::ScrollRequest {
        pb::ScrollRequest {
            collection,
            cursor: self.cursor,
            limit: self.limit,
            filter: filter_text(self.filter),
            with_vectors: self.with_vectors,
            with_payload: self.with_payload,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Page {
    pub documents: Vec<DocumentOut>,
    /// The next page's cursor; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Count {
    #[serde(default)]
    pub filter: Option<Value>,
}

impl Count {
    pub fn into_pb(self, collection: String) -> pb::CountRequest {
        pb::CountRequest {
            collection,
            filter: filter_text(self.filter),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Counted {
    pub count: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPayload {
    /// 1..=1000 stored ids.
    pub ids: Vec<String>,
    /// A JSON object, or null (with merge unset: clears the payload).
    #[serde(default)]
    pub payload: Option<Value>,
    /// Set the object's top-level keys, keeping the others.
    #[serde(default)]
    pub merge: bool,
}

impl SetPayload {
    pub fn into_pb(self, collection: String) -> pb::SetPayloadRequest {
        pb::SetPayloadRequest {
            collection,
            ids: self.ids,
            payload: payload_text(self.payload),
            merge: self.merge,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Updated {
    pub updated: u64,
}

/// One cascade stage.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[schema(value_type = Budget)]
    pub budget: BudgetJson,
    /// Candidates kept for the next stage (at least k).
    pub keep: u32,
}

fn default_k() -> u32 {
    10
}

/// A search: `query` vectors, or `query_id` (a stored document's first vectors as the query).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    #[serde(default)]
    #[schema(value_type = Option<Vectors>)]
    pub query: Option<VectorsJson>,
    /// Use this stored document's vectors as the query (its first query_vectors).
    #[serde(default)]
    pub query_id: Option<String>,
    /// Required unless latency_target_us is set.
    #[serde(default)]
    #[schema(value_type = Option<Budget>)]
    pub budget: Option<BudgetJson>,
    /// Hits, 1..=10000 (default 10).
    #[serde(default = "default_k")]
    pub k: u32,
    #[serde(default)]
    pub filter: Option<Value>,
    /// Cascade stages before the final one at `budget`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Score every live document (ground truth).
    #[serde(default)]
    pub exact: bool,
    #[serde(default)]
    pub with_payload: bool,
    #[serde(default)]
    pub candidates: u32,
    #[serde(default)]
    pub ef: u32,
    #[serde(default)]
    pub nprobe: u32,
    #[serde(default)]
    pub allow_untrained_budget: bool,
    #[serde(default)]
    pub no_prune: bool,
    /// Auto budget: the largest trained budget whose recent latency fits.
    #[serde(default)]
    pub latency_target_us: u32,
    /// "" or "vector0".
    #[serde(default)]
    pub candidate_index: String,
}

impl Search {
    /// The gRPC request, with `query` as the query vectors (the caller resolves `query_id`).
    pub fn into_pb(self, collection: String, query: Option<pb::Vectors>) -> pb::SearchRequest {
        pb::SearchRequest {
            collection,
            query,
            budget: self.budget.map(|b| b.0),
            k: self.k,
            candidates: self.candidates,
            ef: self.ef,
            exact: self.exact,
            with_payload: self.with_payload,
            allow_untrained_budget: self.allow_untrained_budget,
            stages: self
                .stages
                .into_iter()
                .map(|s| pb::Stage {
                    budget: Some(s.budget.0),
                    keep: s.keep,
                })
                .collect(),
            no_prune: self.no_prune,
            filter: filter_text(self.filter),
            latency_target_us: self.latency_target_us,
            allow_partial: false,
            nprobe: self.nprobe,
            candidate_index: self.candidate_index,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// What one cascade stage did.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct StageStats {
    pub budget: [u32; 2],
    pub scored: u64,
    pub pruned: u64,
    pub dot_products: u64,
    pub vector_bytes_read: u64,
    pub kept: u64,
}

/// What a search did (as the gRPC SearchStats).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SearchStats {
    pub candidates: u64,
    pub docs_scored: u64,
    pub vector_bytes_read: u64,
    pub dot_products: u64,
    pub segments: u32,
    pub candidate_us: u64,
    pub rerank_us: u64,
    pub merge_us: u64,
    pub total_us: u64,
    pub pruned: u64,
    pub stages: Vec<StageStats>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    /// Best first: by score descending, then id ascending.
    pub hits: Vec<Hit>,
    /// The budget used, `[r_q, r_c]`.
    pub budget: [u32; 2],
    pub stats: SearchStats,
}

impl From<pb::SearchResponse> for SearchResult {
    fn from(r: pb::SearchResponse) -> Self {
        let s = r.stats.unwrap_or_default();
        SearchResult {
            hits: r
                .hits
                .into_iter()
                .map(|h| Hit {
                    id: h.id,
                    score: h.score,
                    payload: payload_value(h.payload),
                })
                .collect(),
            budget: pair(&r.budget.unwrap_or_default()),
            stats: SearchStats {
                candidates: s.candidates,
                docs_scored: s.docs_scored,
                vector_bytes_read: s.vector_bytes_read,
                dot_products: s.dot_products,
                segments: s.segments,
                candidate_us: s.candidate_us,
                rerank_us: s.rerank_us,
                merge_us: s.merge_us,
                total_us: s.total_us,
                pruned: s.pruned,
                stages: s
                    .stages
                    .into_iter()
                    .map(|t| StageStats {
                        budget: pair(&t.budget.unwrap_or_default()),
                        scored: t.scored,
                        pruned: t.pruned,
                        dot_products: t.dot_products,
                        vector_bytes_read: t.vector_bytes_read,
                        kept: t.kept,
                    })
                    .collect(),
            },
        }
    }
}

/// Sizes of one collection.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CollectionStats {
    pub name: String,
    pub live_docs: u64,
    pub memtable_docs: u64,
    pub segments: u32,
    pub segment_bytes: u64,
    pub index_bytes: u64,
    pub wal_bytes: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub collections: Vec<CollectionStats>,
}

impl From<pb::StatsResponse> for Stats {
    fn from(r: pb::StatsResponse) -> Self {
        Stats {
            collections: r
                .collections
                .into_iter()
                .map(|c| CollectionStats {
                    name: c.name,
                    live_docs: c.live_docs,
                    memtable_docs: c.memtable_docs,
                    segments: c.segments,
                    segment_bytes: c.segment_bytes,
                    index_bytes: c.index_bytes,
                    wal_bytes: c.wal_bytes,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Flushed {
    /// Collections that got a new segment.
    pub flushed: Vec<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Compact {
    /// Shrink to this r_c (a trained boundary); 0 or unset keeps every vector.
    #[serde(default)]
    pub keep_r_c: u32,
}

/// What a compaction did.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Compacted {
    pub merged_segments: Vec<u64>,
    pub new_segment: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub elapsed_ms: u64,
    pub stored_vectors: u32,
}

impl From<pb::CompactResponse> for Compacted {
    fn from(r: pb::CompactResponse) -> Self {
        Compacted {
            merged_segments: r.merged_segments,
            new_segment: r.new_segment,
            docs_in: r.docs_in,
            docs_out: r.docs_out,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            elapsed_ms: r.elapsed_ms,
            stored_vectors: r.stored_vectors,
        }
    }
}

/// A snapshot.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub name: String,
    pub collection: String,
    pub created_unix_ms: u64,
    pub last_seq: u64,
    pub bytes: u64,
    /// Files in the snapshot.
    pub files: usize,
}

impl From<pb::SnapshotInfo> for Snapshot {
    fn from(s: pb::SnapshotInfo) -> Self {
        Snapshot {
            name: s.name,
            collection: s.collection,
            created_unix_ms: s.created_unix_ms,
            last_seq: s.last_seq,
            bytes: s.bytes,
            files: s.files.len(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Snapshots {
    pub snapshots: Vec<Snapshot>,
}
