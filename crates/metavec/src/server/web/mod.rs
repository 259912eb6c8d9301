//! The HTTP/JSON API (`--http-listen`) and the web console, beside the gRPC port in the same
//! process. Every route is one gRPC method called in-process on the same [`Backend`] (a data
//! server's [`Api`] or a cluster node's [`ClusterApi`](super::cluster::ClusterApi)): its JSON body
//! becomes that method's request, the key is checked by the same [`Keys::check`] under that
//! method's name (so the read-only key reads and nothing more), and a failed call's
//! `tonic::Status` becomes one error body, `{"error": {"code", "message"}}`, under the HTTP
//! status of [`http_status`]. Upsert, a client stream in gRPC, goes through
//! [`Backend::upsert_message`], what each message of that stream goes through. The request's
//! `metavec-*` headers (a cluster's read token and idempotency key) travel as the call's gRPC
//! metadata, and the answer's (a cluster write's read token) come back as HTTP headers.

mod console;
pub mod json;
mod values;

use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use bytes::Bytes;
use metavec_api::pb;
use metavec_api::pb::{
    admin_server::Admin, collections_server::Collections, documents_server::Documents,
    search_server::Search,
};
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use utoipa::OpenApi;

use super::auth::Keys;
use super::Api;
use json::*;

/// What the HTTP API calls: the four gRPC services, and one message of an upsert (a gRPC client
/// stream cannot be made in-process).
#[tonic::async_trait]
pub trait Backend: Collections + Documents + Search + Admin + Send + Sync + 'static {
    /// Writes one upsert message as the Upsert stream writes each of its messages; `md` is the
    /// request's metadata.
    async fn upsert_message(
        &self,
        md: MetadataMap,
        msg: pb::UpsertRequest,
    ) -> std::result::Result<tonic::Response<pb::UpsertResponse>, Status>;
}

#[tonic::async_trait]
impl Backend for Api {
    async fn upsert_message(
        &self,
        _md: MetadataMap,
        msg: pb::UpsertRequest,
    ) -> std::result::Result<tonic::Response<pb::UpsertResponse>, Status> {
        let ack = self.upsert_batch(msg, true).await?;
        Ok(tonic::Response::new(pb::UpsertResponse {
            upserted: ack.count as u64,
            batches: 1,
            last_seq: ack.seq,
        }))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct HttpState {
    pub api: std::sync::Arc<dyn Backend>,
    pub keys: Keys,
    /// The largest request body, in bytes (`--max-message-bytes`).
    pub max_body: usize,
    /// The SVG the console shows as the quality-latency curve (`--bench-plot`).
    pub bench_plot: Option<PathBuf>,
}

/// A failed request: a gRPC status, answered as the one error body.
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

/// The HTTP status and the error body's `code` of a gRPC status code. FAILED_PRECONDITION (a
/// budget the stored vectors no longer serve, an empty collection to train) is 409 Conflict: the
/// request is fine, the collection's state is not; 412 is for conditional headers, which this
/// API has none of. RESOURCE_EXHAUSTED is always about size here (a body or an answer past the
/// message limit): 413.
pub fn http_status(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "ok"),
        Code::Cancelled => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "cancelled",
        ),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::ResourceExhausted => (StatusCode::PAYLOAD_TOO_LARGE, "resource_exhausted"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "out_of_range"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = http_status(self.0.code());
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: self.0.message().into(),
            },
        };
        (status, Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<Json<T>, ApiError>;

/// An answer with the `metavec-*` headers of the gRPC answer it came from.
type Tagged<T> = std::result::Result<(HeaderMap, Json<T>), ApiError>;

/// The request's `metavec-*` headers, as the metadata of the gRPC call that serves it.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut md = HeaderMap::new();
    for (k, v) in headers {
        if k.as_str().starts_with("metavec-") {
            md.append(k.clone(), v.clone());
        }
    }
    MetadataMap::from_headers(md)
}

/// The `metavec-*` headers of a gRPC answer, for the HTTP answer.
fn answer_headers(md: MetadataMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in md.into_headers() {
        if let Some(k) = k.filter(|k| k.as_str().starts_with("metavec-")) {
            out.append(k, v);
        }
    }
    out
}

/// A JSON request body, read within the body limit and parsed with the path of a bad field in
/// the message (`documents[0].vectors: ...`). An empty body is `{}`; the content type is not
/// checked, so `curl -d` works without `-H 'content-type: application/json'`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<HttpState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &HttpState) -> std::result::Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError(if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Status::resource_exhausted(format!(
                    "request body is larger than the {}-byte limit (--max-message-bytes)",
                    state.max_body
                ))
            } else {
                Status::invalid_argument(format!("cannot read the request body: {}", r.body_text()))
            })
        })?;
        let text: &[u8] = if bytes.trim_ascii().is_empty() {
            b"{}"
        } else {
            &bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ApiError(Status::invalid_argument(if path == "." {
                format!("invalid JSON body: {inner}")
            } else {
                format!("invalid JSON body at {path}: {inner}")
            }))
        })
    }
}

/// A path's `{name}`, its rejection (not UTF-8 once decoded) in the error body.
pub struct Name(pub String);

impl FromRequestParts<HttpState> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> std::result::Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(n)| Name(n))
            .map_err(|r| ApiError(Status::invalid_argument(r.body_text())))
    }
}

impl HttpState {
    /// Checks the request's key as for the gRPC method `rpc`: `authorization: Bearer KEY`, or
    /// `x-api-key: KEY` when there is no authorization header.
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        rpc: &str,
    ) -> std::result::Result<(), ApiError> {
        let bearer;
        let auth = match (
            headers.get(http::header::AUTHORIZATION),
            headers.get("x-api-key"),
        ) {
            (Some(a), _) => Some(a.as_bytes()),
            (None, Some(k)) => {
                bearer = [&b"Bearer "[..], k.as_bytes()].concat();
                Some(&bearer[..])
            }
            (None, None) => None,
        };
        self.keys.check(rpc, auth).map_err(ApiError)
    }
}

/// Runs one gRPC method of the API in-process (the key was checked by the route's
/// [`check_key`] layer), returning its message or the error body. With the request's `headers`:
/// their `metavec-*` ones go along, and the answer's come back beside the message.
macro_rules! call {
    ($state:expr, $method:ident, $req:expr) => {
        $state
            .api
            .$method(tonic::Request::new($req))
            .await
            .map_err(ApiError)?
            .into_inner()
    };
    ($state:expr, $method:ident, $req:expr, $headers:expr) => {{
        let req = tonic::Request::from_parts(metadata($headers), Default::default(), $req);
        let (md, msg, _) = $state
            .api
            .$method(req)
            .await
            .map_err(ApiError)?
            .into_parts();
        (answer_headers(md), msg)
    }};
}

/// The route's key check as for the gRPC method `rpc` ("/metavec.v1.Service/Method"), run as a
/// layer of the handler so that it comes before the body is read.
async fn check_key(
    State((s, rpc)): State<(HttpState, &'static str)>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match s.authorize(req.headers(), rpc) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// `handler` behind the key check of gRPC method `rpc` ("Service/Method").
macro_rules! keyed {
    ($state:expr, $rpc:literal, $handler:expr) => {
        axum::handler::Handler::layer(
            $handler,
            axum::middleware::from_fn_with_state(
                ($state.clone(), concat!("/metavec.v1.", $rpc)),
                check_key,
            ),
        )
    };
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = "4XX", body = ErrorBody)))]
async fn list_collections(State(s): State<HttpState>) -> Result<CollectionList> {
    let r = call!(s, list_collections, pb::ListCollectionsRequest {});
    Ok(Json(CollectionList {
        collections: r.collections.into_iter().map(Collection::from).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollection,
    responses((status = 200, body = Collection), (status = "4XX", body = ErrorBody)))]
async fn create_collection(
    State(s): State<HttpState>,
    Body(b): Body<CreateCollection>,
) -> Result<Collection> {
    let r = call!(s, create_collection, b.into_pb());
    Ok(Json(r.into()))
}

#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = Collection), (status = "4XX", body = ErrorBody)))]
async fn get_collection(State(s): State<HttpState>, Name(name): Name) -> Result<Collection> {
    let r = call!(s, get_collection, pb::GetCollectionRequest { name });
    Ok(Json(r.into()))
}

/// Deleted: an empty object.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Empty {}

#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = Empty), (status = "4XX", body = ErrorBody)))]
async fn delete_collection(State(s): State<HttpState>, Name(name): Name) -> Result<Empty> {
    call!(s, delete_collection, pb::DeleteCollectionRequest { name });
    Ok(Json(Empty {}))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = Upsert,
    responses((status = 200, body = Upserted), (status = "4XX", body = ErrorBody)))]
async fn upsert(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(name): Name,
    Body(b): Body<Upsert>,
) -> Tagged<Upserted> {
    let (md, ack, _) = s
        .api
        .upsert_message(metadata(&headers), b.into_pb(name))
        .await?
        .into_parts();
    Ok((
        answer_headers(md),
        Json(Upserted {
            upserted: ack.upserted,
            last_seq: ack.last_seq,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents/get", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = GetDocuments,
    responses((status = 200, body = DocumentList), (status = "4XX", body = ErrorBody)))]
async fn get_documents(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(collection): Name,
    Body(b): Body<GetDocuments>,
) -> Tagged<DocumentList> {
    let req = pb::GetRequest {
        collection,
        ids: b.ids,
        ids_only: b.ids_only,
    };
    let (h, r) = call!(s, get, req, &headers);
    Ok((
        h,
        Json(DocumentList {
            documents: r
                .documents
                .into_iter()
                .map(|d| DocumentOut::new(d, b.packed))
                .collect(),
            missing_ids: r.missing_ids,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents/delete", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = DeleteDocuments,
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_documents(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(collection): Name,
    Body(b): Body<DeleteDocuments>,
) -> Tagged<Deleted> {
    let (h, r) = match b.into_pb(collection)? {
        Deletion::Ids(req) => call!(s, delete, req, &headers),
        Deletion::Filter(req) => call!(s, delete_by_filter, req, &headers),
    };
    Ok((h, Json(Deleted { deleted: r.deleted })))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents/scroll", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = Scroll,
    responses((status = 200, body = Page), (status = "4XX", body = ErrorBody)))]
async fn scroll(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(collection): Name,
    Body(b): Body<Scroll>,
) -> Tagged<Page> {
    let packed = b.packed;
    let (h, r) = call!(s, scroll, b.into_pb(collection), &headers);
    Ok((
        h,
        Json(Page {
            documents: r
                .documents
                .into_iter()
                .map(|d| DocumentOut::new(d, packed))
                .collect(),
            next_cursor: (!r.next_cursor.is_empty()).then_some(r.next_cursor),
        }),
    ))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents/count", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = Count,
    responses((status = 200, body = Counted), (status = "4XX", body = ErrorBody)))]
async fn count(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(collection): Name,
    Body(b): Body<Count>,
) -> Tagged<Counted> {
    let (h, r) = call!(s, count, b.into_pb(collection), &headers);
    Ok((h, Json(Counted { count: r.count })))
}

#[utoipa::path(post, path = "/v1/collections/{name}/documents/payload", tag = "documents",
    params(("name" = String, Path, description = "Collection name")), request_body = SetPayload,
    responses((status = 200, body = Updated), (status = "4XX", body = ErrorBody)))]
async fn set_payload(
    State(s): State<HttpState>,
    Name(collection): Name,
    Body(b): Body<SetPayload>,
) -> Result<Updated> {
    let r = call!(s, set_payload, b.into_pb(collection));
    Ok(Json(Updated { updated: r.updated }))
}

#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "search",
    params(("name" = String, Path, description = "Collection name")), request_body = json::Search,
    responses((status = 200, body = SearchResult), (status = "4XX", body = ErrorBody)))]
async fn search(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Name(collection): Name,
    Body(b): Body<json::Search>,
) -> Tagged<SearchResult> {
    let query = match (b.query.as_ref().is_some(), b.query_id.clone()) {
        (true, None) => b.query.as_ref().map(|q| q.0.clone()),
        (false, Some(id)) => Some(query_of(&s, &headers, &collection, id).await?),
        _ => {
            return Err(ApiError(Status::invalid_argument(
                "set exactly one of query and query_id",
            )))
        }
    };
    let mut b = b;
    b.query = None;
    let req = b.into_pb(collection, query);
    let (h, r) = call!(s, search, req, &headers);
    Ok((h, Json(r.into())))
}

/// A stored document's first vectors as a query: as many as the collection's query_vectors
/// allows (a search at budget (r_q, r_c) uses the first r_q of them).
async fn query_of(
    s: &HttpState,
    headers: &HeaderMap,
    collection: &str,
    id: String,
) -> std::result::Result<pb::Vectors, ApiError> {
    let info = call!(
        s,
        get_collection,
        pb::GetCollectionRequest {
            name: collection.into()
        }
    );
    let (_, got) = call!(
        s,
        get,
        pb::GetRequest {
            collection: collection.into(),
            ids: vec![id.clone()],
            ids_only: false
        },
        headers
    );
    let mut v = got
        .documents
        .into_iter()
        .next()
        .and_then(|d| d.vectors)
        .ok_or_else(|| {
            ApiError(Status::not_found(format!(
                "query_id {id:?}: no such document"
            )))
        })?;
    let n = v.count.min(info.config.unwrap_or_default().query_vectors);
    v.values.truncate(n as usize * v.dim as usize);
    v.count = n;
    Ok(v)
}

#[utoipa::path(get, path = "/v1/stats", tag = "admin",
    responses((status = 200, body = Stats), (status = "4XX", body = ErrorBody)))]
async fn stats(State(s): State<HttpState>) -> Result<Stats> {
    let r = call!(s, stats, pb::StatsRequest::default());
    Ok(Json(r.into()))
}

#[utoipa::path(post, path = "/v1/collections/{name}/flush", tag = "admin",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = Flushed), (status = "4XX", body = ErrorBody)))]
async fn flush(State(s): State<HttpState>, Name(collection): Name) -> Result<Flushed> {
    let r = call!(s, flush, pb::FlushRequest { collection });
    Ok(Json(Flushed { flushed: r.flushed }))
}

#[utoipa::path(post, path = "/v1/collections/{name}/compact", tag = "admin",
    params(("name" = String, Path, description = "Collection name")), request_body = Compact,
    responses((status = 200, body = Compacted), (status = "4XX", body = ErrorBody)))]
async fn compact(
    State(s): State<HttpState>,
    Name(collection): Name,
    Body(b): Body<Compact>,
) -> Result<Compacted> {
    let req = pb::CompactRequest {
        collection,
        keep_r_c: b.keep_r_c,
    };
    let r = call!(s, compact, req);
    Ok(Json(r.into()))
}

#[utoipa::path(post, path = "/v1/collections/{name}/snapshots", tag = "admin",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = Snapshot), (status = "4XX", body = ErrorBody)))]
async fn create_snapshot(State(s): State<HttpState>, Name(collection): Name) -> Result<Snapshot> {
    let r = call!(s, create_snapshot, pb::CreateSnapshotRequest { collection });
    Ok(Json(r.into()))
}

#[utoipa::path(get, path = "/v1/collections/{name}/snapshots", tag = "admin",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = Snapshots), (status = "4XX", body = ErrorBody)))]
async fn list_snapshots(State(s): State<HttpState>, Name(collection): Name) -> Result<Snapshots> {
    let r = call!(s, list_snapshots, pb::ListSnapshotsRequest { collection });
    Ok(Json(Snapshots {
        snapshots: r.snapshots.into_iter().map(Snapshot::from).collect(),
    }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "metavec HTTP/JSON API",
        description = "The gRPC API (proto/metavec/v1/metavec.proto) over HTTP/JSON; see docs/OPERATIONS.md, \"HTTP API and console\"."
    ),
    paths(
        list_collections,
        create_collection,
        get_collection,
        delete_collection,
        upsert,
        get_documents,
        delete_documents,
        scroll,
        count,
        set_payload,
        search,
        stats,
        flush,
        compact,
        create_snapshot,
        list_snapshots
    ),
    components(schemas(ErrorBody)),
    modifiers(&KeySchemes),
    security(("bearer" = []), ("api_key" = []))
)]
pub struct ApiDoc;

/// The two ways to send a key, as security schemes: every `/v1` route takes either (and needs
/// none when the server has no key).
struct KeySchemes;

impl utoipa::Modify for KeySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(http::header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError(Status::internal(format!("openapi: {e}"))).into_response(),
    }
}

/// One log line per HTTP request (debug when it succeeded, warn with the status otherwise) and
/// `metavec_http_requests_total{method, status}`: what the `observe` layer does for gRPC, which
/// HTTP requests do not pass through.
async fn observe(req: Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    let (status, us) = (res.status().as_u16(), start.elapsed().as_micros() as u64);
    if res.status().is_success() {
        tracing::debug!(%method, path, status, us, "http request");
    } else {
        tracing::warn!(%method, path, status, us, "http request failed");
    }
    metrics::counter!("metavec_http_requests_total", "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
    res
}

async fn no_route(req: Request) -> ApiError {
    ApiError(Status::not_found(format!(
        "no route {} {}",
        req.method(),
        req.uri().path()
    )))
}

async fn no_method(req: Request) -> Response {
    let (_, code) = http_status(Code::InvalidArgument);
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
        },
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// The routes, with the body limit and (when `cors_origin` is set) CORS.
pub fn router(state: HttpState, cors_origin: Option<&HeaderValue>) -> Router {
    let max_body = state.max_body;
    let k = &state;
    let c = "/v1/collections/{name}";
    let keyed: [(String, MethodRouter<HttpState>); 14] = [
        (
            "/v1/collections".into(),
            get(keyed!(k, "Collections/ListCollections", list_collections)).post(keyed!(
                k,
                "Collections/CreateCollection",
                create_collection
            )),
        ),
        (
            c.into(),
            get(keyed!(k, "Collections/GetCollection", get_collection)).delete(keyed!(
                k,
                "Collections/DeleteCollection",
                delete_collection
            )),
        ),
        (
            format!("{c}/documents"),
            post(keyed!(k, "Documents/Upsert", upsert)),
        ),
        (
            format!("{c}/documents/get"),
            post(keyed!(k, "Documents/Get", get_documents)),
        ),
        // DeleteByFilter is a write as Delete is: one check serves both.
        (
            format!("{c}/documents/delete"),
            post(keyed!(k, "Documents/Delete", delete_documents)),
        ),
        (
            format!("{c}/documents/scroll"),
            post(keyed!(k, "Documents/Scroll", scroll)),
        ),
        (
            format!("{c}/documents/count"),
            post(keyed!(k, "Documents/Count", count)),
        ),
        (
            format!("{c}/documents/payload"),
            post(keyed!(k, "Documents/SetPayload", set_payload)),
        ),
        (
            format!("{c}/search"),
            post(keyed!(k, "Search/Search", search)),
        ),
        (format!("{c}/flush"), post(keyed!(k, "Admin/Flush", flush))),
        (
            format!("{c}/compact"),
            post(keyed!(k, "Admin/Compact", compact)),
        ),
        (
            format!("{c}/snapshots"),
            get(keyed!(k, "Admin/ListSnapshots", list_snapshots)).post(keyed!(
                k,
                "Admin/CreateSnapshot",
                create_snapshot
            )),
        ),
        ("/v1/stats".into(), get(keyed!(k, "Admin/Stats", stats))),
        (
            "/v1/console/bench-plot".into(),
            get(keyed!(k, "Admin/Stats", console::bench_plot)),
        ),
    ];
    let mut r = Router::new();
    for (path, route) in keyed {
        r = r.route(&path, route);
    }
    let mut r = r
        // No key: the OpenAPI document and the console's own files hold no data.
        .route("/openapi.json", get(openapi))
        .merge(console::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(observe))
        .with_state(state);
    if let Some(origin) = cors_origin {
        r = r.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::AllowOrigin::list([origin.clone()]))
                .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
                .allow_headers([
                    http::header::AUTHORIZATION,
                    http::header::CONTENT_TYPE,
                    http::HeaderName::from_static("x-api-key"),
                    http::HeaderName::from_static("metavec-read-token"),
                    http::HeaderName::from_static("metavec-idempotency-key"),
                ])
                .expose_headers([http::HeaderName::from_static("metavec-read-token")]),
        );
    }
    r
}

/// Serves `router` on `listener` until `shutdown` resolves (in-flight requests finish first).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
