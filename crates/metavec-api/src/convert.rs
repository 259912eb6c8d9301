//! proto <-> core conversions and request validation. Messages name the field and the value.

use metavec_core as core;
use metavec_core::{Budget, CollectionConfig, Error};
use tonic::{Code, Status};

use crate::pb;

/// The one mapping from engine errors to gRPC statuses. Where the code says what kind of error
/// it is, the message is the engine's without its kind ("ids[0] is empty", not "invalid
/// argument: ids[0] is empty"), so no client shows it twice.
pub fn to_status(e: &Error) -> Status {
    let (code, msg) = match e {
        Error::InvalidArgument(m) => (Code::InvalidArgument, m.clone()),
        Error::NotFound(m) => (Code::NotFound, m.clone()),
        Error::AlreadyExists(m) => (Code::AlreadyExists, m.clone()),
        Error::FailedPrecondition(m) => (Code::FailedPrecondition, m.clone()),
        Error::ResourceExhausted(m) => (Code::ResourceExhausted, m.clone()),
        Error::Poisoned(_) => (Code::Unavailable, e.to_string()),
        Error::Corruption { .. } => (Code::DataLoss, e.to_string()),
        _ => (Code::Internal, e.to_string()),
    };
    Status::new(code, msg)
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Checks a `Vectors` block's shape and returns its values.
pub fn vectors(v: Option<&pb::Vectors>, field: &str, dim: u32) -> Result<Vec<f32>, Error> {
    let v = v.ok_or_else(|| invalid(format!("{field} is missing")))?;
    if v.dim != dim {
        return Err(invalid(format!(
            "{field}.dim is {}, collection dim is {dim}",
            v.dim
        )));
    }
    let want = v.count as u64 * v.dim as u64;
    let set = [!v.values.is_empty(), !v.bf16.is_empty(), !v.f16.is_empty()];
    if set.iter().filter(|&&s| s).count() > 1 {
        return Err(invalid(format!(
            "{field}: set exactly one of values, bf16 and f16"
        )));
    }
    let (name, len, raw) = if set[1] {
        ("bf16", v.bf16.len() as u64, Some(&v.bf16))
    } else if set[2] {
        ("f16", v.f16.len() as u64, Some(&v.f16))
    } else {
        ("values", v.values.len() as u64 * 2, None)
    };
    if len != want * 2 {
        return Err(invalid(match raw {
            None => format!(
                "{field} has {} values, count {} x dim {} = {want}",
                v.values.len(),
                v.count,
                v.dim
            ),
            Some(_) => format!(
                "{field}.{name} has {len} bytes, count {} x dim {} x 2 = {}",
                v.count,
                v.dim,
                want * 2
            ),
        }));
    }
    fn halves(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
        b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
    }
    Ok(match name {
        "bf16" => halves(&v.bf16)
            .map(core::score::compact::bf16_to_f32)
            .collect(),
        "f16" => halves(&v.f16)
            .map(core::score::compact::f16_to_f32)
            .collect(),
        _ => v.values.clone(),
    })
}

pub fn budget(b: Option<&pb::Budget>) -> Result<Budget, Error> {
    b.map(Budget::from)
        .ok_or_else(|| invalid("budget is missing: set budget { r_q, r_c }".into()))
}

impl From<&pb::Budget> for Budget {
    fn from(b: &pb::Budget) -> Self {
        Budget::new(b.r_q, b.r_c)
    }
}

impl From<Budget> for pb::Budget {
    fn from(b: Budget) -> Self {
        pb::Budget {
            r_q: b.r_q,
            r_c: b.r_c,
        }
    }
}

/// `shards` and `replicas` belong to cluster mode: a single server (and the shards behind a
/// router) refuses a non-zero value rather than ignore it.
pub fn unclustered(r: &pb::CreateCollectionRequest) -> Result<(), Error> {
    for (field, v) in [("shards", r.shards), ("replicas", r.replicas)] {
        if v != 0 {
            return Err(invalid(format!(
                "{field} is {v}: shards and replicas are for cluster mode (metavec serve --cluster); leave them 0 here"
            )));
        }
    }
    Ok(())
}

impl TryFrom<&pb::CreateCollectionRequest> for CollectionConfig {
    type Error = Error;

    /// The collection a CreateCollection asks for, validated; unset knobs take their defaults.
    fn try_from(r: &pb::CreateCollectionRequest) -> Result<Self, Error> {
        let mut cfg = CollectionConfig::new(r.dim, r.doc_vectors, r.query_vectors);
        if !r.budgets.is_empty() {
            cfg.budgets = r.budgets.iter().map(Budget::from).collect();
        }
        if let Some(h) = &r.hnsw {
            if h.m != 0 {
                cfg.hnsw.m = h.m;
            }
            if h.ef_construction != 0 {
                cfg.hnsw.ef_construction = h.ef_construction;
            }
        }
        if !r.dtype.is_empty() {
            cfg.dtype = core::Dtype::parse(&r.dtype)?;
        }
        if let Some(c) = &r.candidate_index {
            if !c.kind.is_empty() {
                cfg.candidates.index =
                    core::config::CandidateIndex::parse(&c.kind).map_err(|_| {
                        invalid(format!(
                            "candidate_index.kind is {:?}, must be \"tokens\" or \"vector0\"",
                            c.kind
                        ))
                    })?;
            }
            cfg.candidates.index_vectors = c.index_vectors;
            cfg.candidates.centroids = c.centroids;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl From<&CollectionConfig> for pb::CollectionConfig {
    fn from(c: &CollectionConfig) -> Self {
        pb::CollectionConfig {
            dim: c.dim,
            doc_vectors: c.doc_vectors,
            query_vectors: c.query_vectors,
            budgets: c.budgets.iter().copied().map(pb::Budget::from).collect(),
            hnsw: Some(pb::HnswParams {
                m: c.hnsw.m,
                ef_construction: c.hnsw.ef_construction,
            }),
            dtype: c.dtype.name().into(),
            candidate_index: Some(pb::CandidateIndexParams {
                kind: c.candidates.index.name().into(),
                index_vectors: c.candidates.index_vectors,
                centroids: c.candidates.centroids,
            }),
        }
    }
}

impl From<&core::CollectionInfo> for pb::CollectionInfo {
    fn from(i: &core::CollectionInfo) -> Self {
        pb::CollectionInfo {
            name: i.name.clone(),
            config: Some((&i.config).into()),
            live_docs: i.live_docs,
            memtable_docs: i.memtable_docs,
            segments: i
                .segments
                .iter()
                .map(|s| pb::SegmentInfo {
                    id: s.id,
                    docs: s.docs,
                    live_docs: s.live_docs,
                    file_bytes: s.file_bytes,
                    index_bytes: s.index_bytes,
                })
                .collect(),
            wal_bytes: i.wal_bytes,
            stored_vectors: i.stored_vectors,
            // After a shrink only the budgets within the stored depth can still be searched.
            servable_budgets: i
                .config
                .at_depth(i.stored_vectors)
                .budgets
                .into_iter()
                .map(pb::Budget::from)
                .collect(),
        }
    }
}

impl From<&core::CollectionInfo> for pb::CollectionStats {
    fn from(i: &core::CollectionInfo) -> Self {
        pb::CollectionStats {
            name: i.name.clone(),
            live_docs: i.live_docs,
            memtable_docs: i.memtable_docs,
            segments: i.segments.len() as u32,
            segment_bytes: i.segments.iter().map(|s| s.file_bytes).sum(),
            index_bytes: i.segments.iter().map(|s| s.index_bytes).sum(),
            wal_bytes: i.wal_bytes,
        }
    }
}

impl From<&core::SnapshotInfo> for pb::SnapshotInfo {
    fn from(s: &core::SnapshotInfo) -> Self {
        pb::SnapshotInfo {
            name: s.name.clone(),
            collection: s.collection.clone(),
            created_unix_ms: s.created_unix_ms,
            last_seq: s.last_seq,
            bytes: s.bytes(),
            files: s
                .files
                .iter()
                .map(|f| pb::SnapshotFile {
                    path: f.path.clone(),
                    len: f.len,
                    crc32: f.crc32,
                })
                .collect(),
            config: Some((&s.config).into()),
        }
    }
}

impl From<&core::CompactionReport> for pb::CompactResponse {
    fn from(r: &core::CompactionReport) -> Self {
        pb::CompactResponse {
            merged_segments: r.merged.clone(),
            new_segment: r.segment.unwrap_or(0),
            docs_in: r.docs_in,
            docs_out: r.docs_out,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            elapsed_ms: r.elapsed.as_millis() as u64,
            stored_vectors: r.stored_vectors,
        }
    }
}

/// Converts an upsert batch, checking each document's shape against the collection.
pub fn documents(
    docs: Vec<pb::Document>,
    cfg: &CollectionConfig,
) -> Result<Vec<core::Document>, Error> {
    docs.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let field = format!("documents[{i}].vectors");
            let v = d.vectors.as_ref();
            if let Some(v) = v {
                if v.count != cfg.doc_vectors {
                    return Err(invalid(format!(
                        "{field}.count is {} (id {:?}), collection doc_vectors is {}",
                        v.count, d.id, cfg.doc_vectors
                    )));
                }
            }
            let values = vectors(v, &field, cfg.dim)?;
            Ok(core::Document {
                id: d.id,
                vectors: values,
                payload: (!d.payload.is_empty()).then_some(d.payload),
            })
        })
        .collect()
}

/// A stored document as Get returns it. `count` is the number of vectors actually stored for it:
/// after a shrink-to-budget compaction that is the stored depth, not the collection's M_c.
pub fn document_pb(d: core::Document, dim: u32) -> pb::Document {
    let count = if dim == 0 {
        0
    } else {
        (d.vectors.len() / dim as usize) as u32
    };
    pb::Document {
        id: d.id,
        vectors: Some(pb::Vectors {
            count,
            dim,
            values: d.vectors,
            ..Default::default()
        }),
        payload: d.payload.unwrap_or_default(),
    }
}

/// A request's payload filter: "" (or blanks) is none.
pub fn filter(json: &str) -> Result<Option<core::search::Filter>, Error> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    core::search::Filter::parse(json).map(Some)
}

/// The knobs Search and SearchBatch share, as a request without its query.
#[allow(clippy::too_many_arguments)]
fn knobs(
    budget: Budget,
    k: u32,
    candidates: u32,
    ef: u32,
    exact: bool,
    with_payload: bool,
    allow_untrained_budget: bool,
    filter_json: &str,
) -> Result<core::SearchRequest, Error> {
    let mut q = core::SearchRequest::new(Vec::new(), budget, k);
    q.candidates = (candidates != 0).then_some(candidates);
    q.ef = (ef != 0).then_some(ef);
    q.exact = exact;
    q.with_payload = with_payload;
    q.allow_untrained_budget = allow_untrained_budget;
    q.filter = filter(filter_json)?;
    Ok(q)
}

/// The token-index knobs of a search: `nprobe` (0 = default) and `candidate_index` ("" = the
/// collection's choice, "vector0", "tokens").
fn candidate_knobs(q: &mut core::SearchRequest, nprobe: u32, index: &str) -> Result<(), Error> {
    q.nprobe = (nprobe != 0).then_some(nprobe);
    q.candidate_index = match index {
        "" => None,
        s => Some(core::config::CandidateIndex::parse(s).map_err(|_| {
            invalid(format!(
                "candidate_index is {s:?}, must be \"\", \"tokens\" or \"vector0\""
            ))
        })?),
    };
    Ok(())
}

impl TryFrom<&pb::SearchRequest> for core::SearchRequest {
    type Error = Error;

    /// A Search request with its query as sent (the block's own shape checked); the collection's
    /// dim is checked by [`search_request`], which is what a server calls.
    fn try_from(r: &pb::SearchRequest) -> Result<Self, Error> {
        let dim = r.query.as_ref().map_or(0, |q| q.dim);
        search_request_at_dim(r, dim)
    }
}

fn search_request_at_dim(r: &pb::SearchRequest, dim: u32) -> Result<core::SearchRequest, Error> {
    let stages = r
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let b = s
                .budget
                .as_ref()
                .ok_or_else(|| invalid(format!("stages[{i}].budget is missing")))?;
            Ok(core::search::Stage {
                budget: b.into(),
                keep: s.keep,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // With auto budget the engine picks the budget; an unset one is fine then.
    let b = match (&r.budget, r.latency_target_us) {
        (None, t) if t > 0 => Budget::new(1, 1),
        (b, _) => budget(b.as_ref())?,
    };
    let mut q = knobs(
        b,
        r.k,
        r.candidates,
        r.ef,
        r.exact,
        r.with_payload,
        r.allow_untrained_budget,
        &r.filter,
    )?;
    q.stages = stages;
    candidate_knobs(&mut q, r.nprobe, &r.candidate_index)?;
    q.prune = !r.no_prune;
    q.latency_target = (r.latency_target_us > 0)
        .then(|| std::time::Duration::from_micros(r.latency_target_us as u64));
    q.query = vectors(r.query.as_ref(), "query", dim)?;
    Ok(q)
}

/// A Search request for a collection: its query must have the collection's dim.
pub fn search_request(
    r: &pb::SearchRequest,
    cfg: &CollectionConfig,
) -> Result<core::SearchRequest, Error> {
    search_request_at_dim(r, cfg.dim)
}

/// One request per query of a SearchBatch, all with the batch's knobs.
pub fn search_batch_request(
    r: &pb::SearchBatchRequest,
    cfg: &CollectionConfig,
) -> Result<Vec<core::SearchRequest>, Error> {
    if r.queries.is_empty() {
        return Err(invalid("queries is empty".into()));
    }
    let mut shared = knobs(
        budget(r.budget.as_ref())?,
        r.k,
        r.candidates,
        r.ef,
        r.exact,
        r.with_payload,
        r.allow_untrained_budget,
        &r.filter,
    )?;
    candidate_knobs(&mut shared, r.nprobe, &r.candidate_index)?;
    r.queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            Ok(core::SearchRequest {
                query: vectors(Some(q), &format!("queries[{i}]"), cfg.dim)?,
                ..shared.clone()
            })
        })
        .collect()
}

impl From<core::Hit> for pb::Hit {
    fn from(h: core::Hit) -> Self {
        pb::Hit {
            id: h.id,
            score: h.score,
            payload: h.payload.unwrap_or_default(),
        }
    }
}

impl From<core::SearchResponse> for pb::SearchResponse {
    fn from(r: core::SearchResponse) -> Self {
        let s = &r.stats;
        pb::SearchResponse {
            stats: Some(pb::SearchStats {
                candidates: s.candidates,
                docs_scored: s.docs_scored,
                vector_bytes_read: s.vector_bytes_read,
                dot_products: s.dot_products,
                segments: s.segments,
                candidate_us: s.candidate_time.as_micros() as u64,
                rerank_us: s.rerank_time.as_micros() as u64,
                merge_us: s.merge_time.as_micros() as u64,
                total_us: s.total_time.as_micros() as u64,
                pruned: s.pruned,
                stages: s
                    .stages
                    .iter()
                    .map(|st| pb::StageStats {
                        budget: Some(st.budget.into()),
                        scored: st.scored,
                        pruned: st.pruned,
                        dot_products: st.dot_products,
                        vector_bytes_read: st.vector_bytes_read,
                        kept: st.kept,
                    })
                    .collect(),
            }),
            budget: Some(r.budget.into()),
            hits: r.hits.into_iter().map(pb::Hit::from).collect(),
            partial: false,
            shards_failed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_variant() {
        assert_eq!(
            to_status(&Error::InvalidArgument("x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(&Error::Poisoned("x".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(&Error::ResourceExhausted("x".into())).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cfg = CollectionConfig::new(4, 2, 2);
        let d = pb::Document {
            id: "a".into(),
            vectors: Some(pb::Vectors {
                count: 2,
                dim: 3,
                values: vec![0.0; 6],
                ..Default::default()
            }),
            payload: String::new(),
        };
        let e = documents(vec![d], &cfg).unwrap_err().to_string();
        assert!(
            e.contains("documents[0].vectors.dim is 3, collection dim is 4"),
            "{e}"
        );
        let e = vectors(
            Some(&pb::Vectors {
                count: 2,
                dim: 4,
                values: vec![0.0; 7],
                ..Default::default()
            }),
            "query",
            4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("query has 7 values"), "{e}");
    }

    #[test]
    fn raw_half_float_vectors_widen_exactly_and_bad_ones_name_the_field() {
        let vals = [0.5f32, -0.25, 1.0, 0.0, 0.125, -1.0];
        let le = |bits: Vec<u16>| {
            bits.iter()
                .flat_map(|b| b.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let bf = le(vals
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect());
        let hf = le(vals
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect());
        let v = |values: Vec<f32>, bf16: Vec<u8>, f16: Vec<u8>| pb::Vectors {
            count: 2,
            dim: 3,
            values,
            bf16,
            f16,
        };
        // These values are exact in both encodings, so they come back unchanged.
        assert_eq!(
            vectors(Some(&v(vec![], bf.clone(), vec![])), "q", 3).unwrap(),
            vals
        );
        assert_eq!(
            vectors(Some(&v(vec![], vec![], hf.clone())), "q", 3).unwrap(),
            vals
        );
        let e = vectors(Some(&v(vals.to_vec(), bf.clone(), vec![])), "q", 3).unwrap_err();
        assert!(
            e.to_string()
                .contains("q: set exactly one of values, bf16 and f16"),
            "{e}"
        );
        let e = vectors(Some(&v(vec![], bf[..11].to_vec(), vec![])), "q", 3).unwrap_err();
        assert!(
            e.to_string()
                .contains("q.bf16 has 11 bytes, count 2 x dim 3 x 2 = 12"),
            "{e}"
        );
        let e = vectors(Some(&v(vec![], vec![], hf[..10].to_vec())), "q", 3).unwrap_err();
        assert!(e.to_string().contains("q.f16 has 10 bytes"), "{e}");
    }

    #[test]
    fn search_requests_convert_by_try_from_and_the_batch_shares_its_knobs() {
        let cfg = CollectionConfig::new(4, 2, 2);
        let r = pb::SearchRequest {
            collection: "c".into(),
            query: Some(pb::Vectors {
                count: 1,
                dim: 4,
                values: vec![1.0, 0.0, 0.0, 0.0],
                ..Default::default()
            }),
            budget: Some(pb::Budget { r_q: 1, r_c: 2 }),
            k: 7,
            candidates: 50,
            with_payload: true,
            no_prune: true,
            filter: r#"{"eq":{"field":"a","value":1}}"#.into(),
            ..Default::default()
        };
        let q = core::SearchRequest::try_from(&r).unwrap();
        // (core::SearchRequest has no PartialEq; its Debug shows every field.)
        assert_eq!(
            format!("{q:?}"),
            format!("{:?}", search_request(&r, &cfg).unwrap())
        );
        assert_eq!(
            (q.budget, q.k, q.candidates, q.ef),
            (Budget::new(1, 2), 7, Some(50), None)
        );
        assert!(q.with_payload && !q.prune && q.filter.is_some());
        let e = search_request(&r, &CollectionConfig::new(8, 2, 2)).unwrap_err();
        assert!(
            e.to_string()
                .contains("query.dim is 4, collection dim is 8"),
            "{e}"
        );

        let b = pb::SearchBatchRequest {
            collection: "c".into(),
            queries: vec![r.query.clone().unwrap(); 3],
            budget: r.budget,
            k: 7,
            candidates: 50,
            with_payload: true,
            filter: r.filter.clone(),
            ..Default::default()
        };
        for one in search_batch_request(&b, &cfg).unwrap() {
            let want = core::SearchRequest {
                prune: true,
                ..q.clone()
            };
            assert_eq!(format!("{one:?}"), format!("{want:?}"));
        }
    }

    #[test]
    fn info_lists_the_budgets_a_shrunk_collection_still_serves() {
        let mut config = CollectionConfig::new(4, 4, 4);
        config.budgets = vec![Budget::new(1, 1), Budget::new(2, 2), Budget::new(4, 4)];
        let info = core::CollectionInfo {
            name: "c".into(),
            config,
            live_docs: 0,
            memtable_docs: 0,
            segments: Vec::new(),
            wal_bytes: 0,
            stored_vectors: 2,
            maintenance: Default::default(),
        };
        let p = pb::CollectionInfo::from(&info);
        assert_eq!(p.stored_vectors, 2);
        assert_eq!(
            p.servable_budgets,
            [pb::Budget { r_q: 1, r_c: 1 }, pb::Budget { r_q: 2, r_c: 2 }]
        );
        assert_eq!(p.config.unwrap().budgets.len(), 3);
        // A document read back at the stored depth says so in its count.
        let d = document_pb(core::Document::new("a", vec![0.5; 2 * 4]), 4);
        let v = d.vectors.unwrap();
        assert_eq!((v.count, v.dim, v.values.len()), (2, 4, 8));
    }
}
