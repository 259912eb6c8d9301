//! `metavec serve`: the gRPC server over one engine.

mod auth;
pub mod cluster;
mod gauges;
mod limit;
mod observe;
mod respond;
mod service;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use metavec_api::pb;
use metavec_core::{CollectionOptions, Engine, EngineOptions};
use tonic::transport::Server;

pub use service::Api;

/// The config file: every `serve` knob, all optional.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_message_bytes: Option<usize>,
    pub memtable_mb: Option<usize>,
    pub verify_on_open: Option<bool>,
    pub compact_fanout: Option<u64>,
    pub compact_max_segments: Option<usize>,
    pub compact_dead_ratio: Option<f64>,
    pub compact_max_mb_per_s: Option<f64>,
    pub api_key: Option<String>,
    pub read_only_key: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub router: Option<bool>,
    pub shards: Option<Vec<String>>,
    pub shard_timeout_ms: Option<u64>,
    pub shard_api_key: Option<String>,
    pub http_listen: Option<String>,
    pub http_cors_origin: Option<String>,
    pub bench_plot: Option<PathBuf>,
    pub cluster: Option<String>,
    pub node_id: Option<String>,
    pub advertise: Option<String>,
    pub stream_replicas: Option<usize>,
}

impl ServeArgs {
    /// Fills every setting that neither a flag nor an environment variable gave from the config
    /// file named by `--config` (precedence: flag > env > file > default).
    pub fn apply_config_file(&mut self, m: &clap::ArgMatches) -> Result<(), String> {
        let Some(path) = self.config.clone() else {
            return Ok(());
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: ServeFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let unset = |id: &str| {
            matches!(
                m.value_source(id),
                None | Some(clap::parser::ValueSource::DefaultValue)
            )
        };
        macro_rules! fill {
            ($($field:ident),*) => {$(
                if unset(stringify!($field)) {
                    if let Some(v) = f.$field {
                        self.$field = v.into();
                    }
                }
            )*};
        }
        if unset("listen") {
            if let Some(v) = f.listen {
                self.listen =
                    parse_listen(&v).map_err(|e| format!("{}: listen: {e}", path.display()))?;
            }
        }
        if unset("http_listen") {
            if let Some(v) = f.http_listen {
                self.http_listen = Some(
                    parse_listen(&v)
                        .map_err(|e| format!("{}: http_listen: {e}", path.display()))?,
                );
            }
        }
        fill!(
            data_dir,
            max_message_bytes,
            memtable_mb,
            verify_on_open,
            compact_fanout,
            compact_max_segments,
            compact_dead_ratio,
            compact_max_mb_per_s,
            metrics_listen,
            tls_cert,
            tls_key,
            router,
            shards,
            shard_timeout_ms
        );
        if unset("http_cors_origin") {
            self.http_cors_origin = f.http_cors_origin.or(self.http_cors_origin.take());
        }
        if unset("bench_plot") {
            self.bench_plot = f.bench_plot.or(self.bench_plot.take());
        }
        if unset("cluster") {
            self.cluster = f.cluster.or(self.cluster.take());
        }
        if unset("node_id") {
            self.node_id = f.node_id.or(self.node_id.take());
        }
        if unset("advertise") {
            self.advertise = f.advertise.or(self.advertise.take());
        }
        if unset("stream_replicas") {
            self.stream_replicas = f.stream_replicas.or(self.stream_replicas.take());
        }
        if unset("shard_api_key") {
            if let Some(k) = f.shard_api_key {
                self.shard_api_key = Some(Secret(k));
            }
        }
        if unset("api_key") {
            if let Some(k) = f.api_key {
                self.api_key = Some(Secret(k));
            }
        }
        if unset("read_only_key") {
            if let Some(k) = f.read_only_key {
                self.read_only_key = Some(Secret(k));
            }
        }
        Ok(())
    }

    /// The effective settings as TOML, keys redacted.
    pub fn to_toml(&self) -> String {
        let redact = |k: &Option<Secret>| k.as_ref().map(|_| "<redacted>".to_string());
        let f = ServeFile {
            listen: Some(self.listen.to_string()),
            data_dir: Some(self.data_dir.clone()),
            max_message_bytes: Some(self.max_message_bytes),
            memtable_mb: Some(self.memtable_mb),
            verify_on_open: Some(self.verify_on_open),
            compact_fanout: Some(self.compact_fanout),
            compact_max_segments: Some(self.compact_max_segments),
            compact_dead_ratio: Some(self.compact_dead_ratio),
            compact_max_mb_per_s: Some(self.compact_max_mb_per_s),
            api_key: redact(&self.api_key),
            read_only_key: redact(&self.read_only_key),
            metrics_listen: self.metrics_listen,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            router: Some(self.router),
            shards: (!self.shards.is_empty()).then(|| self.shards.clone()),
            shard_timeout_ms: Some(self.shard_timeout_ms),
            shard_api_key: redact(&self.shard_api_key),
            http_listen: self.http_listen.map(|a| a.to_string()),
            http_cors_origin: self.http_cors_origin.clone(),
            bench_plot: self.bench_plot.clone(),
            cluster: self.cluster.clone(),
            node_id: self.node_id.clone(),
            advertise: self.advertise.clone(),
            stream_replicas: self.stream_replicas,
        };
        toml::to_string(&f).unwrap_or_default()
    }
}

/// A key that never shows in `Debug` output (and so never in logs).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an api key cannot be empty".into());
        }
        Ok(Secret(s.to_string()))
    }
}

/// `--listen`: an IP:PORT, or a HOST:PORT resolved once at start (its first address).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!(
            "{s:?} is not HOST:PORT or IP:PORT (e.g. 127.0.0.1:50051): {e}"
        )),
    }
}

/// Binds a port (`flag` names the setting), saying which address failed and why in terms an
/// operator can act on.
async fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                " (another process serves on that port: stop it or pick another with {flag})"
            ),
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)".into(),
            std::io::ErrorKind::AddrNotAvailable => {
                " (no interface of this machine has that address)".into()
            }
            _ => String::new(),
        };
        format!("cannot listen on {addr}: {e}{hint}")
    })
}

/// Everything `serve` needs, from flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to serve gRPC on: IP:PORT or HOST:PORT (`localhost:50051`; port 0 picks a free
    /// one, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50051", env = "METAVEC_LISTEN", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, default_value = "./metavec-data", env = "METAVEC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Largest gRPC message accepted or sent, in bytes; larger requests get RESOURCE_EXHAUSTED,
    /// and so do Get and Search answers that would pass it (stopped while they are gathered).
    #[arg(long, default_value_t = 64 << 20, env = "METAVEC_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: usize,
    /// A memtable above this many MiB is sealed into a segment.
    #[arg(long, default_value_t = 64, env = "METAVEC_MEMTABLE_MB")]
    pub memtable_mb: usize,
    /// Check every vector block checksum when a collection opens (slower start).
    #[arg(long, env = "METAVEC_VERIFY_ON_OPEN")]
    pub verify_on_open: bool,
    /// Size-tiered compaction: this many segments of one size tier are merged into one of the
    /// next (a document is rewritten about log_fanout(docs / flush size) times).
    #[arg(long, default_value_t = 4, env = "METAVEC_COMPACT_FANOUT", value_parser = clap::value_parser!(u64).range(2..))]
    pub compact_fanout: u64,
    /// More sealed segments than this in a collection: the smallest are merged.
    #[arg(long, default_value_t = 32, env = "METAVEC_COMPACT_MAX_SEGMENTS")]
    pub compact_max_segments: usize,
    /// A segment with more than this fraction of its documents deleted or overwritten is
    /// rewritten.
    #[arg(long, default_value_t = 0.3, env = "METAVEC_COMPACT_DEAD_RATIO")]
    pub compact_dead_ratio: f64,
    /// A merge reads at most this many MB/s of vectors (0: no limit), to leave disk bandwidth
    /// to ingest and searches.
    #[arg(long, default_value_t = 0.0, env = "METAVEC_COMPACT_MAX_MB_PER_S")]
    pub compact_max_mb_per_s: f64,
    /// Require `authorization: Bearer <key>` on every RPC but health and reflection.
    #[arg(long, env = "METAVEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// A key that may call only the read RPCs (search, get, list, stats).
    #[arg(long, env = "METAVEC_READ_ONLY_KEY", hide_env_values = true)]
    pub read_only_key: Option<Secret>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9090; off when unset).
    #[arg(long, env = "METAVEC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// TOML file with any of these settings (keys as the flags, with '_' for '-'); environment
    /// variables override it, flags override both.
    #[arg(long, env = "METAVEC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (keys redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// TLS certificate chain (PEM); with --tls-key, the port speaks TLS.
    #[arg(long, env = "METAVEC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "METAVEC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Run as a stateless router in front of --shards instead of serving a data directory.
    #[arg(long, env = "METAVEC_ROUTER")]
    pub router: bool,
    /// Shard servers (host:port, comma-separated); a document lives on shard
    /// crc32(id) mod N, so the order matters and must not change while data exists.
    #[arg(long, env = "METAVEC_SHARDS", value_delimiter = ',')]
    pub shards: Vec<String>,
    /// How long the router waits for a shard, per call, in milliseconds.
    #[arg(long, default_value_t = 5_000, env = "METAVEC_SHARD_TIMEOUT_MS")]
    pub shard_timeout_ms: u64,
    /// Key the router sends to the shards (`authorization: Bearer <key>`).
    #[arg(long, env = "METAVEC_SHARD_API_KEY", hide_env_values = true)]
    pub shard_api_key: Option<Secret>,
    /// Also serve the HTTP/JSON API and the web console on this address (e.g. 127.0.0.1:50052;
    /// off when unset; port 0 picks a free one, printed on stdout). Plain HTTP, same keys as gRPC.
    #[arg(long, env = "METAVEC_HTTP_LISTEN", value_parser = parse_listen)]
    pub http_listen: Option<SocketAddr>,
    /// Allow browsers on this origin (e.g. https://console.example.com) to call the HTTP API
    /// (CORS); no CORS headers when unset.
    #[arg(long, env = "METAVEC_HTTP_CORS_ORIGIN")]
    pub http_cors_origin: Option<String>,
    /// The SVG that `metavec bench --plot PATH` wrote, shown by the web console as the
    /// quality-latency curve (read on each view).
    #[arg(long, env = "METAVEC_BENCH_PLOT")]
    pub bench_plot: Option<PathBuf>,
    /// Join a cluster (docs/CLUSTER.md): the NATS servers holding its streams and map,
    /// comma-separated (nats://10.0.0.1:4222,nats://10.0.0.2:4222,...). Needs --node-id.
    #[arg(long, env = "METAVEC_CLUSTER")]
    pub cluster: Option<String>,
    /// With --cluster: this node's id (1..=64 letters, digits, '_' or '-'), the same across
    /// restarts on the same --data-dir.
    #[arg(long, env = "METAVEC_NODE_ID")]
    pub node_id: Option<String>,
    /// With --cluster: host:port other nodes reach this node's gRPC port at (default: the bound
    /// --listen address).
    #[arg(long, env = "METAVEC_ADVERTISE")]
    pub advertise: Option<String>,
    /// With --cluster: NATS servers holding each new shard stream and the map (default 3 when
    /// --cluster lists 3 or more servers, else 1).
    #[arg(long, env = "METAVEC_STREAM_REPLICAS")]
    pub stream_replicas: Option<usize>,
}

pub async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let opts = EngineOptions {
        collection: CollectionOptions {
            memtable_max_bytes: args.memtable_mb << 20,
            verify_on_open: args.verify_on_open,
            compact_fanout: args.compact_fanout as usize,
            compact_max_segments: args.compact_max_segments,
            compact_dead_ratio: args.compact_dead_ratio,
            compact_max_mb_per_s: args.compact_max_mb_per_s,
            ..Default::default()
        },
    };
    if args.router {
        if args.http_listen.is_some() {
            return Err(
                "--http-listen is not served by a router (--router): give it to the shard \
                servers, or call the router over gRPC"
                    .into(),
            );
        }
        let router = crate::router::Router::new(
            &args.shards,
            std::time::Duration::from_millis(args.shard_timeout_ms),
            args.shard_api_key.as_ref().map(|k| k.0.as_str()),
            args.max_message_bytes,
        )?;
        tracing::info!(shards = ?args.shards, "routing");
        let listener = bind(args.listen, "--listen").await?;
        if let Some(addr) = args.metrics_listen {
            install_metrics(addr, None).await?;
        }
        return run(router, listener, &args, "router").await;
    }
    // The ports first: a port in use fails here, before a data directory is created or opened.
    let listener = bind(args.listen, "--listen").await?;
    let http_listener = match args.http_listen {
        Some(addr) => Some(bind(addr, "--http-listen").await?),
        None => None,
    };
    let cors = match &args.http_cors_origin {
        Some(o) => Some(
            o.parse::<::http::HeaderValue>()
                .map_err(|e| format!("--http-cors-origin {o:?}: {e}"))?,
        ),
        None => None,
    };
    if args.cluster.is_some() && !args.shards.is_empty() {
        return Err(
            "--shards is for a router (--router); a cluster's shards are in its map: drop --shards"
                .into(),
        );
    }
    if args.cluster.is_none() && (args.node_id.is_some() || args.advertise.is_some()) {
        return Err(
            "--node-id and --advertise are for cluster mode: add --cluster NATS_URLS".into(),
        );
    }
    let dir = args.data_dir.clone();
    let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::open(&dir, opts)).await??);
    let api = Api {
        engine: engine.clone(),
        max_response_bytes: args.max_message_bytes,
    };
    if let Some(addr) = args.metrics_listen {
        install_metrics(addr, Some(engine.clone())).await?;
    }
    if let Some(urls) = args.cluster.clone() {
        let capi = join_cluster(&args, &urls, &listener, api).await?;
        let http_task = serve_http(http_listener, Arc::new(capi.clone()), &args, cors)?;
        run(capi, listener, &args, "cluster node").await?;
        if let Some(t) = http_task {
            t.await??;
        }
        drop(engine);
        return Ok(());
    }
    let what = format!(
        "data dir {}, {} collections",
        args.data_dir.display(),
        engine.list_collections().len()
    );
    let http_task = serve_http(http_listener, Arc::new(api.clone()), &args, cors)?;
    run(api, listener, &args, &what).await?;
    if let Some(t) = http_task {
        t.await??;
    }
    tracing::info!("shutting down: in-flight requests finished; every acknowledged write is already in the fsynced WAL");
    drop(engine);
    Ok(())
}

/// Starts the HTTP/JSON API and console on `listener` (`--http-listen`), if given, over `api`.
fn serve_http(
    listener: Option<tokio::net::TcpListener>,
    api: Arc<dyn web::Backend>,
    args: &ServeArgs,
    cors: Option<::http::HeaderValue>,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, Box<dyn std::error::Error>> {
    let Some(l) = listener else {
        return Ok(None);
    };
    let local = l.local_addr()?;
    let state = web::HttpState {
        api,
        keys: keys(args),
        max_body: args.max_message_bytes,
        bench_plot: args.bench_plot.clone(),
    };
    let router = web::router(state, cors.as_ref());
    tracing::info!(addr = %local, cors = ?args.http_cors_origin, "HTTP API and console");
    if args.tls_cert.is_some() && !local.ip().is_loopback() {
        tracing::warn!(addr = %local, "the HTTP port is plain HTTP (--tls-cert is the gRPC port's): keys sent to it travel in the clear; put a TLS proxy in front or bind it to loopback");
    }
    // Before the gRPC line, which tests and scripts wait for.
    println!("metavec http on {local}");
    Ok(Some(tokio::spawn(web::serve(l, router, shutdown_signal()))))
}

/// Registers this node in the cluster at `urls`, starts the replicas the map gives it and a
/// loop that starts new ones (about every second), and returns its gRPC API.
async fn join_cluster(
    args: &ServeArgs,
    urls: &str,
    listener: &tokio::net::TcpListener,
    api: Api,
) -> Result<cluster::ClusterApi, Box<dyn std::error::Error>> {
    let node_id = args.node_id.clone().ok_or(
        "--cluster needs --node-id: a name for this node (letters, digits, '_', '-'), the same across restarts",
    )?;
    let bound = listener.local_addr()?;
    let advertise = match &args.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(format!(
            "--listen {bound} is not an address other nodes can dial: give --advertise HOST:PORT"
        )
            .into())
        }
        None => bound.to_string(),
    };
    let servers = metavec_cluster::node::servers(urls);
    let mut opts = metavec_cluster::NodeOptions::new(urls, node_id);
    opts.advertise = advertise.clone();
    opts.stream_replicas = args
        .stream_replicas
        .unwrap_or(if servers.len() >= 3 { 3 } else { 1 });
    let read_wait = opts.read_wait;
    let node = metavec_cluster::Node::start(api.engine.clone(), opts).await?;
    node.sync().await?;
    tracing::info!(node = node.id(), %advertise, nats = urls, "joined the cluster");
    let syncing = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = syncing.sync().await {
                tracing::warn!(error = %e, "cluster map sync failed; retrying");
            }
        }
    });
    Ok(cluster::ClusterApi::new(
        node,
        api,
        std::time::Duration::from_millis(args.shard_timeout_ms) + read_wait,
        args.api_key.as_ref().map(|k| k.0.as_str()),
        args.max_message_bytes,
    )?)
}

/// Serves the Prometheus text format over HTTP on `addr` (every path; `/metrics` by convention),
/// the per-collection gauges of `engine` refreshed at each scrape. Binds here rather than in the
/// exporter so that the bound address is known: it is printed as `metavec metrics on ADDR`, and
/// `--metrics-listen 127.0.0.1:0` works (tests and scripts read the port from that line).
async fn install_metrics(
    addr: SocketAddr,
    engine: Option<Arc<Engine>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])?
        .install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "Prometheus metrics at /metrics");
    println!("metavec metrics on {local}");
    // The exporter's own upkeep (histogram buckets), which `install` would have scheduled.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    continue;
                }
            };
            let (handle, engine) = (handle.clone(), engine.clone());
            let scrape = hyper::service::service_fn(move |_req| {
                let (handle, engine) = (handle.clone(), engine.clone());
                async move {
                    // The gauges take a read lock per collection: off the async workers.
                    let text = tokio::task::spawn_blocking(move || {
                        if let Some(engine) = engine {
                            gauges::refresh(&engine);
                        }
                        handle.render()
                    })
                    .await
                    .unwrap_or_default();
                    let mut res =
                        http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, scrape)
                    .await
                {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
    });
    Ok(())
}

/// Serves the four metavec services of `api` (a data server or a router), plus health and
/// reflection, behind the logging/metrics, auth and message-size layers, until SIGTERM/SIGINT.
async fn run<T>(
    api: T,
    listener: tokio::net::TcpListener,
    args: &ServeArgs,
    what: &str,
) -> Result<(), Box<dyn std::error::Error>>
where
    T: pb::collections_server::Collections
        + pb::documents_server::Documents
        + pb::search_server::Search
        + pb::admin_server::Admin
        + Clone,
{
    let limit = args.max_message_bytes;

    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::collections_server::CollectionsServer<T>>()
        .await;
    health
        .set_serving::<pb::documents_server::DocumentsServer<T>>()
        .await;
    health
        .set_serving::<pb::search_server::SearchServer<T>>()
        .await;
    health
        .set_serving::<pb::admin_server::AdminServer<T>>()
        .await;
    // Both reflection versions: grpcurl and most tools ask for v1alpha first or only.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(metavec_api::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let local = listener.local_addr()?;
    tracing::info!(addr = %local, what, "metavec serving");
    // Tests and scripts read this line to learn the port when --listen asks for port 0.
    println!("metavec listening on {local}");

    let keys = keys(args);
    let mut builder = Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    tracing::info!(
        auth = keys.enabled(),
        tls = args.tls_cert.is_some(),
        "transport security"
    );
    builder
        .layer(observe::ObserveLayer)
        .layer(auth::AuthLayer(keys))
        .layer(tower::util::MapRequestLayer::new(
            move |req: http::Request<tonic::body::Body>| {
                req.map(|b| limit::LimitBody::wrap(b, limit))
            },
        ))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::collections_server::CollectionsServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            pb::documents_server::DocumentsServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            pb::search_server::SearchServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            pb::admin_server::AdminServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(
            // Replies are small frames written as they are ready: with Nagle's algorithm on, each
            // waited for the client's delayed ACK (about 40 ms a Search on Linux).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown_signal(),
        )
        .await?;
    Ok(())
}

/// The keys of `--api-key` and `--read-only-key`, for the gRPC and the HTTP port alike.
fn keys(args: &ServeArgs) -> auth::Keys {
    auth::Keys {
        admin: args
            .api_key
            .as_ref()
            .map(|k| std::sync::Arc::from(k.0.as_bytes())),
        read_only: args
            .read_only_key
            .as_ref()
            .map(|k| std::sync::Arc::from(k.0.as_bytes())),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
