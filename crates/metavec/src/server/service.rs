//! The four gRPC services. Handlers stay thin: validate, convert, run the engine on the blocking
//! pool, convert back. Engine errors map through `metavec_api::to_status`.

use std::sync::Arc;
use std::time::Instant;

use metavec_api::convert;
use metavec_api::pb;
use metavec_api::to_status;
use metavec_core::Engine;
use rayon::prelude::*;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
}

/// Runs engine work on the blocking pool; a panic inside becomes INTERNAL, never a crash.
/// The request's span follows the work onto the pool, so engine events carry its fields.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, metavec_core::Error> + Send + 'static,
) -> Result<T, Status> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(r) => r.map_err(|e| to_status(&e)),
        Err(e) => Err(Status::internal(format!("request task failed: {e}"))),
    }
}

/// The span of one request: the RPC, the collection and (for searches) the budget. Every event
/// logged while serving it, on the async side or on the blocking pool, carries these fields.
fn rpc_span(rpc: &'static str, collection: &str) -> tracing::Span {
    tracing::info_span!("rpc", rpc, collection, budget = tracing::field::Empty)
}

/// One line per request at debug; failures at warn with their status; a count and a latency
/// histogram per RPC and status code for Prometheus.
fn logged<T>(
    rpc: &'static str,
    collection: &str,
    started: Instant,
    r: Result<T, Status>,
) -> Result<T, Status> {
    let secs = started.elapsed().as_secs_f64();
    let ms = secs * 1e3;
    let code = match &r {
        Ok(_) => "OK".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    metrics::counter!("metavec_requests_total", "rpc" => rpc, "code" => code.clone()).increment(1);
    metrics::histogram!("metavec_request_seconds", "rpc" => rpc, "code" => code).record(secs);
    match &r {
        Ok(_) => tracing::debug!(rpc, collection, ms, "ok"),
        Err(s) => {
            tracing::warn!(rpc, collection, ms, code = ?s.code(), message = s.message(), "request failed")
        }
    }
    r
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

impl Api {
    fn collection(&self, name: &str) -> Result<Arc<metavec_core::Collection>, Status> {
        self.engine.collection(name).map_err(|e| to_status(&e))
    }
}

#[tonic::async_trait]
impl pb::collections_server::Collections for Api {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let name = r.name.clone();
        let engine = self.engine.clone();
        let res = async {
            let cfg = convert::create_request(&r).map_err(|e| to_status(&e))?;
            let info = blocking(move || Ok(engine.create_collection(&r.name, cfg)?.info())).await?;
            Ok(Response::new(convert::info_pb(&info)))
        }
        .await;
        logged("CreateCollection", &name, t, res)
    }

    async fn get_collection(
        &self,
        req: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let t = Instant::now();
        let name = req.into_inner().name;
        let res = self
            .collection(&name)
            .map(|c| Response::new(convert::info_pb(&c.info())));
        logged("GetCollection", &name, t, res)
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let collections = self
            .engine
            .list_collections()
            .iter()
            .map(convert::info_pb)
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let t = Instant::now();
        let name = req.into_inner().name;
        let engine = self.engine.clone();
        let n = name.clone();
        let res = blocking(move || engine.delete_collection(&n))
            .await
            .map(|()| Response::new(pb::DeleteCollectionResponse {}));
        logged("DeleteCollection", &name, t, res)
    }
}

#[tonic::async_trait]
impl pb::documents_server::Documents for Api {
    async fn upsert(
        &self,
        req: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let t = Instant::now();
        let mut stream = req.into_inner();
        let mut out = pb::UpsertResponse::default();
        let mut name = String::new();
        let span = rpc_span("Upsert", &name);
        let res = async {
            loop {
                let Some(msg) = stream.message().await? else {
                    break;
                };
                if name != msg.collection {
                    tracing::Span::current().record("collection", msg.collection.as_str());
                    name.clone_from(&msg.collection);
                }
                let coll = self.collection(&msg.collection)?;
                let docs =
                    convert::documents(msg.documents, coll.config()).map_err(|e| to_status(&e))?;
                let ack = blocking(move || coll.upsert(docs)).await?;
                metrics::counter!("metavec_upserted_docs_total").increment(ack.count as u64);
                out.upserted += ack.count as u64;
                out.batches += 1;
                out.last_seq = ack.seq;
            }
            Ok(Response::new(out))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("Upsert", &name, t, res))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let span = rpc_span("Delete", &r.collection);
        let res = async {
            let coll = self.collection(&r.collection)?;
            let ids = r.ids;
            let ack = blocking(move || coll.delete(&ids)).await?;
            Ok(Response::new(pb::DeleteResponse {
                deleted: ack.count as u64,
            }))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("Delete", &r.collection, t, res))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let span = rpc_span("Get", &r.collection);
        let res = async {
            let coll = self.collection(&r.collection)?;
            let ids = r.ids;
            let (found, ids, cfg) = blocking(move || {
                let found = coll.get(&ids)?;
                Ok((found, ids, coll.config().clone()))
            })
            .await?;
            let mut out = pb::GetResponse::default();
            for (id, d) in ids.into_iter().zip(found) {
                match d {
                    Some(_) if r.ids_only => out.documents.push(pb::Document {
                        id,
                        ..Default::default()
                    }),
                    Some(d) => out.documents.push(convert::document_pb(d, &cfg)),
                    None => out.missing_ids.push(id),
                }
            }
            Ok(Response::new(out))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("Get", &r.collection, t, res))
    }
}

#[tonic::async_trait]
impl pb::search_server::Search for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let span = rpc_span("Search", &r.collection);
        let res = async {
            let coll = self.collection(&r.collection)?;
            let sr = convert::search_request(&r, coll.config()).map_err(|e| to_status(&e))?;
            tracing::Span::current().record("budget", tracing::field::display(sr.budget));
            let resp = blocking(move || coll.search(&sr)).await?;
            record_search(&resp);
            Ok(Response::new(convert::search_response_pb(resp)))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("Search", &r.collection, t, res))
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let span = rpc_span("SearchBatch", &r.collection);
        let res = async {
            let coll = self.collection(&r.collection)?;
            let reqs =
                convert::search_batch_request(&r, coll.config()).map_err(|e| to_status(&e))?;
            if let Some(q) = reqs.first() {
                tracing::Span::current().record("budget", tracing::field::display(q.budget));
            }
            // Queries in parallel on the rayon pool (each search also parallelises inside).
            let results = blocking(move || {
                reqs.par_iter()
                    .map(|q| coll.search(q))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
            results.iter().for_each(record_search);
            Ok(Response::new(pb::SearchBatchResponse {
                results: results
                    .into_iter()
                    .map(convert::search_response_pb)
                    .collect(),
            }))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("SearchBatch", &r.collection, t, res))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Api {
    async fn flush(
        &self,
        req: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        let t = Instant::now();
        let name = req.into_inner().collection;
        let engine = self.engine.clone();
        let n = name.clone();
        let res = blocking(move || {
            let targets = if n.is_empty() {
                engine
                    .list_collections()
                    .into_iter()
                    .map(|c| c.name)
                    .collect()
            } else {
                vec![n]
            };
            let mut flushed = Vec::new();
            for name in targets {
                if engine.collection(&name)?.flush()?.is_some() {
                    flushed.push(name);
                }
            }
            Ok(pb::FlushResponse { flushed })
        })
        .await
        .map(Response::new);
        logged("Flush", &name, t, res)
    }

    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let name = r.collection;
        let keep = (r.keep_r_c != 0).then_some(r.keep_r_c);
        let span = rpc_span("Compact", &name);
        let res = async {
            let coll = self.collection(&name)?;
            let report = blocking(move || coll.compact_keep(keep)).await?;
            Ok(Response::new(convert::compact_pb(&report)))
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| logged("Compact", &name, t, res))
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        let t = Instant::now();
        let name = req.into_inner().collection;
        let engine = self.engine.clone();
        let n = name.clone();
        let res = blocking(move || engine.create_snapshot(&n))
            .await
            .map(|i| Response::new(convert::snapshot_pb(&i)));
        logged("CreateSnapshot", &name, t, res)
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let only = req.into_inner().collection;
        let engine = self.engine.clone();
        let all = blocking(move || engine.list_snapshots()).await?;
        let snapshots = all
            .iter()
            .filter(|s| only.is_empty() || s.collection == only)
            .map(convert::snapshot_pb)
            .collect();
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots }))
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let t = Instant::now();
        let name = req.into_inner().name;
        let engine = self.engine.clone();
        let n = name.clone();
        let res = blocking(move || engine.delete_snapshot(&n))
            .await
            .map(|()| Response::new(pb::DeleteSnapshotResponse {}));
        logged("DeleteSnapshot", &name, t, res)
    }

    async fn restore_snapshot(
        &self,
        req: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let t = Instant::now();
        let r = req.into_inner();
        let engine = self.engine.clone();
        let as_name = r.as_collection.clone();
        let res = blocking(move || Ok(engine.restore_snapshot(&r.name, &r.as_collection)?.info()))
            .await
            .map(|i| Response::new(convert::info_pb(&i)));
        logged("RestoreSnapshot", &as_name, t, res)
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
            collections: infos.iter().map(convert::stats_pb).collect(),
        }))
    }
}
