//! The four gRPC services. Handlers stay thin: validate, convert, run the engine on the blocking
//! pool, convert back. Engine errors map through `metavec_api::to_status`; logging and metrics
//! for every RPC are the `observe` layer's, so a handler only records the request's collection
//! (and budget) into its span. Get and the searches gather their answers within the message
//! limit (see `respond`).

use std::collections::HashSet;
use std::sync::Arc;

use metavec_api::convert;
use metavec_api::pb;
use metavec_api::to_status;
use metavec_core::{CollectionConfig, Engine};
use rayon::prelude::*;
use tonic::{Request, Response, Status, Streaming};

use super::respond::{framed, framed_str, ResponseBudget};

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    /// The largest response the server builds (`--max-message-bytes`).
    pub max_response_bytes: usize,
}

/// Runs engine work on the blocking pool; a panic inside becomes INTERNAL, never a crash.
/// The request's span follows the work onto the pool, so engine events carry its fields.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(r) => r,
        Err(e) => Err(Status::internal(format!("request task failed: {e}"))),
    }
}

/// `blocking` for engine calls.
async fn engine_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, metavec_core::Error> + Send + 'static,
) -> Result<T, Status> {
    blocking(move || f().map_err(|e| to_status(&e))).await
}

fn status(e: metavec_core::Error) -> Status {
    to_status(&e)
}

/// Names the collection in the request's span (see `observe`); "" (all collections) names none.
fn record_collection(name: &str) {
    if !name.is_empty() {
        tracing::Span::current().record("collection", name);
    }
}

/// Per-budget search figures: latency, documents scored, vector bytes read.
fn record_search(r: &metavec_core::SearchResponse) {
    let budget = format!("{}x{}", r.budget.r_q, r.budget.r_c);
    let s = &r.stats;
    metrics::histogram!("metavec_search_seconds", "budget" => budget.clone())
        .record(s.total_time.as_secs_f64());
    metrics::counter!("metavec_search_docs_scored_total", "budget" => budget.clone())
        .increment(s.docs_scored);
    metrics::counter!("metavec_search_vector_bytes_read_total", "budget" => budget)
        .increment(s.vector_bytes_read);
}

/// The most a hit can take in a response, payload included.
fn max_hit_bytes(with_payload: bool) -> usize {
    let payload = if with_payload {
        metavec_core::document::MAX_PAYLOAD_BYTES + 8
    } else {
        0
    };
    // id (tag, length, bytes), score (tag, f32), the hit's own tag and length.
    metavec_core::config::MAX_ID_BYTES + 3 + 5 + 6 + payload
}

impl Api {
    fn collection(&self, name: &str) -> Result<Arc<metavec_core::Collection>, Status> {
        record_collection(name);
        self.engine.collection(name).map_err(status)
    }

    /// Applies one Upsert batch, durable when this returns: a message of the gRPC stream, or the
    /// body of an HTTP upsert (which cannot be called as a client stream). `name_span` records
    /// the collection in the request's span.
    pub async fn upsert_batch(
        &self,
        msg: pb::UpsertRequest,
        name_span: bool,
    ) -> Result<metavec_core::WriteAck, Status> {
        let coll = if name_span {
            self.collection(&msg.collection)?
        } else {
            self.engine.collection(&msg.collection).map_err(status)?
        };
        let docs = convert::documents(msg.documents, coll.config()).map_err(status)?;
        let ack = engine_call(move || coll.upsert(docs)).await?;
        metrics::counter!("metavec_upserted_docs_total").increment(ack.count as u64);
        Ok(ack)
    }

    /// Runs `reqs` (the queries of a Search or a SearchBatch) and gathers their hits within the
    /// message limit. When every hit of every query could carry the largest payload and still
    /// fit, the engine returns payloads with the hits; otherwise it ranks without them and the
    /// payloads are read one hit at a time, in result order, until the limit is reached.
    async fn search_bounded(
        &self,
        coll: Arc<metavec_core::Collection>,
        mut reqs: Vec<metavec_core::SearchRequest>,
    ) -> Result<(Vec<pb::SearchResponse>, ResponseBudget), Status> {
        let limit = self.max_response_bytes;
        let with_payload = reqs.iter().any(|q| q.with_payload);
        let worst: usize = reqs
            .iter()
            .map(|q| q.k as usize * max_hit_bytes(with_payload))
            .sum();
        let late_payloads = with_payload && worst > limit;
        if late_payloads {
            reqs.iter_mut().for_each(|q| q.with_payload = false);
        }
        blocking(move || {
            // Queries in parallel on the rayon pool (each search also parallelises inside).
            let results = if reqs.len() == 1 {
                vec![coll.search(&reqs[0]).map_err(status)?]
            } else {
                reqs.par_iter()
                    .map(|q| coll.search(q))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(status)?
            };
            results.iter().for_each(record_search);
            let queries = results.len();
            let mut budget = ResponseBudget::new(limit);
            let mut out = Vec::with_capacity(queries);
            for (qi, r) in results.into_iter().enumerate() {
                let mut resp = pb::SearchResponse::from(metavec_core::SearchResponse {
                    hits: Vec::new(),
                    ..r
                });
                budget.reserve(framed(&resp), || format!("query {qi}"))?;
                let total = r.hits.len();
                for (hi, h) in r.hits.into_iter().enumerate() {
                    let mut hit = pb::Hit::from(h);
                    if late_payloads {
                        // The hit's document as it is now; gone since the ranking: no payload.
                        let doc = coll
                            .get(std::slice::from_ref(&hit.id))
                            .map_err(status)?
                            .pop()
                            .flatten();
                        hit.payload = doc.and_then(|d| d.payload).unwrap_or_default();
                    }
                    budget.reserve(framed(&hit), || {
                        format!(
                            "query {qi} of {queries}, hit {hi} of {total} (k={}) with payloads",
                            reqs[qi].k
                        )
                    })?;
                    resp.hits.push(hit);
                }
                out.push(resp);
            }
            Ok((out, budget))
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::collections_server::Collections for Api {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let r = req.into_inner();
        record_collection(&r.name);
        convert::unclustered(&r).map_err(status)?;
        let cfg = CollectionConfig::try_from(&r).map_err(status)?;
        let engine = self.engine.clone();
        let info = engine_call(move || Ok(engine.create_collection(&r.name, cfg)?.info())).await?;
        Ok(Response::new((&info).into()))
    }

    async fn get_collection(
        &self,
        req: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let c = self.collection(&req.into_inner().name)?;
        Ok(Response::new((&c.info()).into()))
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let collections = self
            .engine
            .list_collections()
            .iter()
            .map(pb::CollectionInfo::from)
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let name = req.into_inner().name;
        record_collection(&name);
        let engine = self.engine.clone();
        engine_call(move || engine.delete_collection(&name)).await?;
        Ok(Response::new(pb::DeleteCollectionResponse {}))
    }
}

#[tonic::async_trait]
impl pb::documents_server::Documents for Api {
    async fn upsert(
        &self,
        req: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let mut stream = req.into_inner();
        let mut out = pb::UpsertResponse::default();
        let mut first = true;
        while let Some(msg) = stream.message().await? {
            // The span names the stream's first collection (a stream naming several is rare;
            // errors name theirs).
            let ack = self.upsert_batch(msg, std::mem::take(&mut first)).await?;
            out.upserted += ack.count as u64;
            out.batches += 1;
            out.last_seq = ack.seq;
        }
        Ok(Response::new(out))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let ids = r.ids;
        let ack = engine_call(move || coll.delete(&ids)).await?;
        Ok(Response::new(pb::DeleteResponse {
            deleted: ack.count as u64,
        }))
    }

    /// Each id is read once, at its first mention, and one document at a time, so the response
    /// stops growing at the message limit.
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        for (i, id) in r.ids.iter().enumerate() {
            metavec_core::document::validate_id(id, &format!("ids[{i}]")).map_err(status)?;
        }
        let mut seen = HashSet::with_capacity(r.ids.len());
        let mut ids = r.ids;
        ids.retain(|id| seen.insert(id.clone()));
        drop(seen);
        let (ids_only, limit) = (r.ids_only, self.max_response_bytes);
        let (out, budget) = blocking(move || {
            let dim = coll.config().dim;
            let total = ids.len();
            let mut budget = ResponseBudget::new(limit);
            let mut out = pb::GetResponse::default();
            for (i, id) in ids.into_iter().enumerate() {
                let what = || format!("document {i} of {total} distinct ids");
                let found = coll
                    .get(std::slice::from_ref(&id))
                    .map_err(status)?
                    .pop()
                    .flatten();
                match found {
                    Some(_) if ids_only => {
                        let d = pb::Document {
                            id,
                            ..Default::default()
                        };
                        budget.reserve(framed(&d), what)?;
                        out.documents.push(d);
                    }
                    Some(d) => {
                        let d = convert::document_pb(d, dim);
                        budget.reserve(framed(&d), what)?;
                        out.documents.push(d);
                    }
                    None => {
                        budget.reserve(framed_str(&id), what)?;
                        out.missing_ids.push(id);
                    }
                }
            }
            Ok((out, budget))
        })
        .await?;
        Ok(budget.response(out))
    }

    /// The page's ids come from one point-in-time view; their documents are then read one at a
    /// time within the message limit (one deleted meanwhile is left out of the page).
    async fn scroll(
        &self,
        req: Request<pb::ScrollRequest>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let filter = convert::filter(&r.filter).map_err(status)?;
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let max = self.max_response_bytes;
        let (out, budget) = blocking(move || {
            let cursor = (!r.cursor.is_empty()).then_some(r.cursor.as_str());
            let page = coll
                .scroll(cursor, limit, filter.as_ref())
                .map_err(status)?;
            let dim = coll.config().dim;
            let total = page.ids.len();
            let mut budget = ResponseBudget::new(max);
            let mut out = pb::ScrollResponse {
                next_cursor: page.next.unwrap_or_default(),
                ..Default::default()
            };
            budget.reserve(framed_str(&out.next_cursor), || "the cursor".into())?;
            for (i, id) in page.ids.into_iter().enumerate() {
                let what = || format!("document {i} of a page of {total}");
                let d = if r.with_vectors || r.with_payload {
                    let Some(d) = coll
                        .get(std::slice::from_ref(&id))
                        .map_err(status)?
                        .pop()
                        .flatten()
                    else {
                        continue;
                    };
                    let mut d = convert::document_pb(d, dim);
                    if !r.with_vectors {
                        d.vectors = None;
                    }
                    if !r.with_payload {
                        d.payload.clear();
                    }
                    d
                } else {
                    pb::Document {
                        id,
                        ..Default::default()
                    }
                };
                budget.reserve(framed(&d), what)?;
                out.documents.push(d);
            }
            Ok((out, budget))
        })
        .await?;
        Ok(budget.response(out))
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let filter = convert::filter(&r.filter).map_err(status)?;
        let count = engine_call(move || coll.count(filter.as_ref())).await?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    async fn delete_by_filter(
        &self,
        req: Request<pb::DeleteByFilterRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let Some(filter) = convert::filter(&r.filter).map_err(status)? else {
            return Err(Status::invalid_argument(
                "filter is empty: DeleteByFilter needs a filter (to delete every document, \
                 delete the collection)",
            ));
        };
        let ack = engine_call(move || coll.delete_by_filter(&filter)).await?;
        Ok(Response::new(pb::DeleteResponse {
            deleted: ack.count as u64,
        }))
    }

    async fn set_payload(
        &self,
        req: Request<pb::SetPayloadRequest>,
    ) -> Result<Response<pb::SetPayloadResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let how = if r.merge {
            metavec_core::PayloadUpdate::Merge
        } else {
            metavec_core::PayloadUpdate::Overwrite
        };
        let ack = engine_call(move || {
            let payload = (!r.payload.is_empty()).then_some(r.payload.as_str());
            coll.set_payload(&r.ids, payload, how)
        })
        .await?;
        Ok(Response::new(pb::SetPayloadResponse {
            updated: ack.count as u64,
        }))
    }
}

#[tonic::async_trait]
impl pb::search_server::Search for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let sr = convert::search_request(&r, coll.config()).map_err(status)?;
        tracing::Span::current().record("budget", tracing::field::display(sr.budget));
        let (mut results, budget) = self.search_bounded(coll, vec![sr]).await?;
        let one = results
            .pop()
            .ok_or_else(|| Status::internal("a search returned no result"))?;
        Ok(budget.response(one))
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let r = req.into_inner();
        let coll = self.collection(&r.collection)?;
        let reqs = convert::search_batch_request(&r, coll.config()).map_err(status)?;
        if let Some(q) = reqs.first() {
            tracing::Span::current().record("budget", tracing::field::display(q.budget));
        }
        let (results, budget) = self.search_bounded(coll, reqs).await?;
        Ok(budget.response(pb::SearchBatchResponse { results }))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Api {
    async fn flush(
        &self,
        req: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        let name = req.into_inner().collection;
        record_collection(&name);
        let engine = self.engine.clone();
        let flushed = engine_call(move || {
            let targets = if name.is_empty() {
                engine
                    .list_collections()
                    .into_iter()
                    .map(|c| c.name)
                    .collect()
            } else {
                vec![name]
            };
            let mut flushed = Vec::new();
            for name in targets {
                if engine.collection(&name)?.flush()?.is_some() {
                    flushed.push(name);
                }
            }
            Ok(flushed)
        })
        .await?;
        Ok(Response::new(pb::FlushResponse { flushed }))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let r = req.into_inner();
        let keep = (r.keep_r_c != 0).then_some(r.keep_r_c);
        let coll = self.collection(&r.collection)?;
        let report = engine_call(move || coll.compact_keep(keep)).await?;
        Ok(Response::new((&report).into()))
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        let name = req.into_inner().collection;
        record_collection(&name);
        let engine = self.engine.clone();
        let info = engine_call(move || engine.create_snapshot(&name)).await?;
        Ok(Response::new((&info).into()))
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let only = req.into_inner().collection;
        record_collection(&only);
        let engine = self.engine.clone();
        let all = engine_call(move || engine.list_snapshots()).await?;
        let snapshots = all
            .iter()
            .filter(|s| only.is_empty() || s.collection == only)
            .map(pb::SnapshotInfo::from)
            .collect();
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots }))
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let name = req.into_inner().name;
        let engine = self.engine.clone();
        engine_call(move || engine.delete_snapshot(&name)).await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    async fn restore_snapshot(
        &self,
        req: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let r = req.into_inner();
        record_collection(&r.as_collection);
        let engine = self.engine.clone();
        let info =
            engine_call(move || Ok(engine.restore_snapshot(&r.name, &r.as_collection)?.info()))
                .await?;
        Ok(Response::new((&info).into()))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let name = req.into_inner().collection;
        let infos = if name.is_empty() {
            self.engine.list_collections()
        } else {
            vec![self.collection(&name)?.info()]
        };
        Ok(Response::new(pb::StatsResponse {
            collections: infos.iter().map(pb::CollectionStats::from).collect(),
        }))
    }
}
