//! The operations CLI: client subcommands that talk gRPC to a running server (`--addr`), and
//! offline subcommands (`inspect`, `verify`) that read a stopped server's data directory.

pub mod docs;
pub mod npy;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use metavec_api::pb;
use metavec_api::pb::{
    admin_client::AdminClient, collections_client::CollectionsClient,
    documents_client::DocumentsClient, search_client::SearchClient,
};
use tonic::transport::Channel;

/// Why a command stopped.
#[derive(Debug)]
pub enum CliError {
    /// Reported on stderr, with a non-zero exit.
    Failed(String),
    /// Whoever read stdout closed it (`metavec --json search ... | head -2`): the command stops
    /// quietly and exits 0, as Unix tools do.
    StdoutClosed,
}

impl From<String> for CliError {
    fn from(e: String) -> Self {
        CliError::Failed(e)
    }
}

pub type CliResult = Result<(), CliError>;

/// Writes one line of command output to stdout (`println!` panics when the pipe is closed).
pub fn write_line(args: std::fmt::Arguments<'_>) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::Failed(format!("writing to stdout: {e}")),
        })
}

/// `println!` for command output: `?`-returns [`CliError::StdoutClosed`] once stdout is gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;

/// The ids and flags of [`Remote`]'s connection options (hidden under the commands that do not
/// connect).
pub const CLIENT_FLAGS: [(&str, &str); 3] = [
    ("addr", "addr"),
    ("auth_key", "auth-key"),
    ("tls_ca", "tls-ca"),
];

/// Options every client subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Server address: HOST:PORT, or http:// / https:// HOST:PORT.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "METAVEC_ADDR",
        global = true
    )]
    pub addr: String,
    /// Print JSON (one object per line) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// API key sent as `authorization: Bearer <key>` (one the server takes with --api-key or
    /// --read-only-key). Its variable is METAVEC_AUTH_KEY, not the server's METAVEC_API_KEY.
    #[arg(long, env = "METAVEC_AUTH_KEY", global = true, hide_env_values = true)]
    pub auth_key: Option<String>,
    /// CA certificate (PEM) to reach a TLS server (use an https:// address).
    #[arg(long, env = "METAVEC_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
}

impl Remote {
    /// Adds the API key, if any, to every request.
    pub fn interceptor(&self) -> Result<impl tonic::service::Interceptor + Clone, String> {
        let value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
            match &self.auth_key {
                Some(k) => Some(
                    format!("Bearer {k}")
                        .parse()
                        .map_err(|_| "the api key must be printable ASCII".to_string())?,
                ),
                None => None,
            };
        Ok(move |mut req: tonic::Request<()>| {
            if let Some(v) = &value {
                req.metadata_mut().insert("authorization", v.clone());
            }
            Ok(req)
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CollectionsCmd {
    /// Create a collection.
    Create {
        /// Name: 1..=64 ASCII letters, digits, '_' or '-'.
        name: String,
        /// Width D of every vector.
        #[arg(long)]
        dim: u32,
        /// M_c: vectors per document, Matryoshka-ordered (vector 0 the coarsest).
        #[arg(long)]
        doc_vectors: u32,
        /// M_q: the most vectors a query may carry.
        #[arg(long)]
        query_vectors: u32,
        /// Trained budgets, e.g. "1x1,2x4,4x8" (default: the MetaEmbed ladder cut to the counts).
        #[arg(long)]
        budgets: Option<String>,
        /// HNSW links per node.
        #[arg(long)]
        hnsw_m: Option<u32>,
        /// HNSW candidate list while building (default 200).
        #[arg(long)]
        ef_construction: Option<u32>,
        /// How segments store vectors 1..: bf16, f32 (reads back bit-exact), f16 or int8.
        #[arg(long, default_value = "bf16")]
        dtype: String,
        /// Candidate index of deep budgets: tokens (default: centroid posting lists over the
        /// first --index-vectors vectors, so deep budgets get their own ranking's candidates) or
        /// vector0 (only the vector-0 HNSW).
        #[arg(long, default_value = "")]
        candidate_index: String,
        /// Vectors per document the token index covers (default 8, capped at --doc-vectors).
        #[arg(long)]
        index_vectors: Option<u32>,
        /// Centroids per segment of the token index (default: ~ one per 400 tokens, at most 4096).
        #[arg(long)]
        centroids: Option<u32>,
        /// Cluster mode only: shards to split the collection into (default 4 x nodes).
        #[arg(long)]
        shards: Option<u32>,
        /// Cluster mode only: serving replicas per shard (default min(2, nodes)).
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// List collections.
    List,
    /// Show one collection.
    Info {
        /// Collection name.
        name: String,
    },
    /// Delete a collection and its files.
    Delete {
        /// Collection name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of a collection while it serves.
    Create {
        /// Collection to snapshot.
        collection: String,
    },
    /// List snapshots.
    List {
        /// Only this collection's snapshots (default: all).
        collection: Option<String>,
    },
    /// Delete a snapshot.
    Delete {
        /// Snapshot name (as `snapshot list` shows it).
        name: String,
    },
    /// Restore a snapshot as a new collection (every checksum is verified first).
    Restore {
        /// Snapshot name (as `snapshot list` shows it).
        name: String,
        /// Name of the new collection.
        #[arg(long = "as")]
        as_collection: String,
    },
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Target collection.
    #[arg(long)]
    pub collection: String,
    /// Documents [N, M_c, D]: f32, f16, or bf16 as uint16.
    #[arg(long)]
    pub npy: PathBuf,
    /// One id per line (default: the row number).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// One JSON object per line, per document.
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// Take each document's id from this field of its payload line (a string or an integer;
    /// dotted paths reach nested fields) instead of --ids or the row number.
    #[arg(long, requires = "payload", conflicts_with = "ids")]
    pub id_field: Option<String>,
    /// Documents per streamed batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Skip documents whose id already exists (to resume an interrupted load).
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Collection to search.
    #[arg(long)]
    pub collection: String,
    /// Queries [Q, M_q, D] (or one query [M_q, D]).
    #[arg(long)]
    pub npy: PathBuf,
    /// Budget "R_QxR_C", e.g. 4x8 (required unless --latency-target-us).
    #[arg(long, required_unless_present = "latency_target_us")]
    pub budget: Option<String>,
    /// Auto budget: the server runs the largest trained budget whose recent average latency fits
    /// this many microseconds (reported per query).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub latency_target_us: Option<u32>,
    /// Hits per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: u32,
    /// Candidates per segment (0 = server default: 320 from the vector-0 HNSW; from the token
    /// index at budgets with r_c > 1, up to 1000 reranked progressively, best first, while they
    /// may still reach the top k). A set value reranks exactly that many.
    #[arg(long, default_value_t = 0)]
    pub candidates: u32,
    /// Token index: posting lists probed per query vector, read exactly (0 = server default:
    /// adaptive, best lists first until no unread document can reach the first candidates).
    #[arg(long, default_value_t = 0)]
    pub nprobe: u32,
    /// Force the candidate source: "vector0" (the vector-0 HNSW) or "tokens" (default: the
    /// collection's choice).
    #[arg(long, default_value = "")]
    pub candidate_index: String,
    /// Score every document (exact ground truth).
    #[arg(long)]
    pub exact: bool,
    /// Return each hit's payload.
    #[arg(long)]
    pub with_payload: bool,
    /// Accept a budget that is not one of the collection's trained pairs.
    #[arg(long)]
    pub allow_untrained_budget: bool,
    /// Cascade stages before the final budget, e.g. "1x1:1000,4x8:100" (budget:keep).
    #[arg(long)]
    pub stages: Option<String>,
    /// Payload filter as JSON, e.g. '{"eq": {"field": "lang", "value": "en"}}'.
    #[arg(long)]
    pub filter: Option<String>,
}

/// A refused call as one line: its status in words, then the server's message (which no
/// longer repeats it).
fn status(s: tonic::Status) -> String {
    let kind = match s.code() {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::ResourceExhausted => "resource exhausted",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DataLoss => "data loss",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        tonic::Code::Cancelled => "cancelled",
        _ => "server error",
    };
    format!("{kind}: {}", s.message())
}

async fn channel(remote: &Remote) -> Result<Channel, String> {
    let addr = &remote.addr;
    let addr = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let mut ep =
        Channel::from_shared(addr.clone()).map_err(|e| format!("bad address {addr}: {e}"))?;
    if let Some(ca) = &remote.tls_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        ep = ep
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            )
            .map_err(|e| format!("tls: {e}"))?;
    }
    ep.connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| {
            // tonic says "transport error"; the cause that helps is at the end of the chain.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let cause = cause.to_string();
            let hint = if cause.to_lowercase().contains("refused") {
                " (is `metavec serve` running there? set the address with --addr or METAVEC_ADDR)"
            } else {
                ""
            };
            format!("cannot connect to {addr}: {cause}{hint}")
        })
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

pub fn parse_budget(s: &str) -> Result<pb::Budget, String> {
    let (q, c) = s
        .split_once(['x', 'X', ','])
        .ok_or_else(|| format!("budget {s:?}: expected R_QxR_C, e.g. 4x8"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("budget {s:?}: {v:?} is not a number"))
    };
    Ok(pb::Budget {
        r_q: p(q)?,
        r_c: p(c)?,
    })
}

fn print_info(i: &pb::CollectionInfo, json: bool) -> CliResult {
    let cfg = i.config.clone().unwrap_or_default();
    if json {
        let v = serde_json::json!({
            "name": i.name, "dim": cfg.dim, "doc_vectors": cfg.doc_vectors, "query_vectors": cfg.query_vectors, "dtype": cfg.dtype,
            "budgets": cfg.budgets.iter().map(|b| format!("{}x{}", b.r_q, b.r_c)).collect::<Vec<_>>(),
            "live_docs": i.live_docs, "memtable_docs": i.memtable_docs, "segments": i.segments.len(),
            "segment_bytes": i.segments.iter().map(|s| s.file_bytes).sum::<u64>(), "wal_bytes": i.wal_bytes,
            "stored_vectors": i.stored_vectors,
            "servable_budgets": i.servable_budgets.iter().map(|b| format!("{}x{}", b.r_q, b.r_c)).collect::<Vec<_>>(),
        });
        outln!("{v}");
    } else {
        let budgets: Vec<String> = cfg
            .budgets
            .iter()
            .map(|b| format!("({},{})", b.r_q, b.r_c))
            .collect();
        // After a shrink-to-budget compaction: the stored depth and the budgets it still serves.
        let shrunk = if i.stored_vectors != 0 && i.stored_vectors < cfg.doc_vectors {
            let serves: Vec<String> = i
                .servable_budgets
                .iter()
                .map(|b| format!("({},{})", b.r_q, b.r_c))
                .collect();
            format!(
                "  stored {} vectors/doc, serves {}",
                i.stored_vectors,
                serves.join(" ")
            )
        } else {
            String::new()
        };
        outln!(
            "{:<24} dim {:<5} M_c {:<4} M_q {:<4} {:<5} docs {:<9} segments {:<3} wal {:>11}  budgets {}{shrunk}",
            i.name,
            cfg.dim,
            cfg.doc_vectors,
            cfg.query_vectors,
            cfg.dtype,
            i.live_docs,
            i.segments.len(),
            size(i.wal_bytes),
            budgets.join(" ")
        );
    }
    Ok(())
}

/// Milliseconds since the Unix epoch as a UTC date and time, e.g. "2026-12-04 14:55:02 UTC".
pub fn utc(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| format!("{ms} ms after the epoch"))
}

/// Bytes in binary units for tables ("1.50 GiB"); `--json` keeps the raw count.
pub fn size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

fn print_snapshot(s: &pb::SnapshotInfo, json: bool) -> CliResult {
    if json {
        outln!(
            "{}",
            serde_json::json!({"name": s.name, "collection": s.collection, "created_unix_ms": s.created_unix_ms,
                "created": utc(s.created_unix_ms), "last_seq": s.last_seq, "bytes": s.bytes, "files": s.files.len()})
        );
    } else {
        outln!(
            "{:<40} {:<24} {}  files {:<4} {:>11}  last_seq {}",
            s.name,
            s.collection,
            utc(s.created_unix_ms),
            s.files.len(),
            size(s.bytes),
            s.last_seq
        );
    }
    Ok(())
}

pub async fn collections(remote: &Remote, cmd: CollectionsCmd) -> CliResult {
    let mut c = CollectionsClient::with_interceptor(channel(remote).await?, remote.interceptor()?);
    match cmd {
        CollectionsCmd::Create {
            name,
            dim,
            doc_vectors,
            query_vectors,
            budgets,
            hnsw_m,
            ef_construction,
            dtype,
            candidate_index,
            index_vectors,
            centroids,
            shards,
            replicas,
        } => {
            let budgets = match budgets {
                Some(b) => b
                    .split(',')
                    .map(parse_budget)
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let req = pb::CreateCollectionRequest {
                name,
                dim,
                doc_vectors,
                query_vectors,
                budgets,
                hnsw: Some(pb::HnswParams {
                    m: hnsw_m.unwrap_or(0),
                    ef_construction: ef_construction.unwrap_or(0),
                }),
                dtype,
                candidate_index: Some(pb::CandidateIndexParams {
                    kind: candidate_index,
                    index_vectors: index_vectors.unwrap_or(0),
                    centroids: centroids.unwrap_or(0),
                }),
                shards: shards.unwrap_or(0),
                replicas: replicas.unwrap_or(0),
            };
            print_info(
                &c.create_collection(req).await.map_err(status)?.into_inner(),
                remote.json,
            )?;
        }
        CollectionsCmd::List => {
            for i in c
                .list_collections(pb::ListCollectionsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .collections
            {
                print_info(&i, remote.json)?;
            }
        }
        CollectionsCmd::Info { name } => {
            let i = c
                .get_collection(pb::GetCollectionRequest { name })
                .await
                .map_err(status)?
                .into_inner();
            print_info(&i, remote.json)?;
            if !remote.json {
                for s in &i.segments {
                    outln!(
                        "  segment {:<6} docs {:<9} live {:<9} file {:>11}  index {:>11}",
                        s.id,
                        s.docs,
                        s.live_docs,
                        size(s.file_bytes),
                        size(s.index_bytes)
                    );
                }
            }
        }
        CollectionsCmd::Delete { name } => {
            c.delete_collection(pb::DeleteCollectionRequest { name: name.clone() })
                .await
                .map_err(status)?;
            outln!("deleted {name}");
        }
    }
    Ok(())
}

fn read_lines(path: &Option<PathBuf>) -> Result<Option<Vec<String>>, String> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|s| s.lines().map(str::to_string).collect())
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .transpose()
}

/// `--id-field`: each payload line's `field` (a string, or an integer written in decimal).
fn ids_from_payloads(lines: &[String], field: &str, a: &LoadArgs) -> Result<Vec<String>, String> {
    let path = a
        .payload
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{path}: line {}: not JSON ({e})", i + 1))?;
            let at = field.split('.').try_fold(&v, |v, k| v.get(k));
            match at {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                Some(other) => Err(format!(
                    "{path}: line {}: --id-field {field:?} is {other}, not a string or an integer",
                    i + 1
                )),
                None => Err(format!(
                    "{path}: line {}: no field {field:?} (--id-field)",
                    i + 1
                )),
            }
        })
        .collect()
}

pub async fn load(remote: &Remote, a: LoadArgs) -> CliResult {
    let (values, shape) = npy::read(&a.npy)?;
    let [n, mc, dim] = shape[..] else {
        return Err(format!("{}: shape {shape:?}, expected [N, M_c, D]", a.npy.display()).into());
    };
    let payloads = read_lines(&a.payload)?;
    let ids = match &a.id_field {
        Some(field) => ids_from_payloads(payloads.as_deref().unwrap_or_default(), field, &a)?,
        None => read_lines(&a.ids)?.unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect()),
    };
    if let (Some(path), true) = (&a.ids, ids.len() < n) {
        return Err(format!(
            "{}: {n} documents in {} but {} ids (one per line)",
            path.display(),
            a.npy.display(),
            ids.len()
        )
        .into());
    }
    if let (Some(path), Some(p)) = (&a.payload, &payloads) {
        if p.len() < n {
            return Err(format!(
                "{}: {n} documents in {} but {} payload lines (one JSON object per line)",
                path.display(),
                a.npy.display(),
                p.len()
            )
            .into());
        }
    }
    let ch = channel(remote).await?;
    let mut docs = DocumentsClient::with_interceptor(ch, remote.interceptor()?)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let mut lookup = docs.clone();
    let pbar = bar(n as u64, "loading");
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(4);
    let collection = a.collection.clone();
    let progress = pbar.clone();
    let batch = a.batch.max(1);
    let producer = tokio::spawn(async move {
        let mut skipped = 0usize;
        for start in (0..n).step_by(batch) {
            let end = (start + batch).min(n);
            let mut rows: Vec<usize> = (start..end).collect();
            if a.resume {
                let have = lookup
                    .get(pb::GetRequest {
                        collection: collection.clone(),
                        ids: ids[start..end].to_vec(),
                        ids_only: true,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                let existing: std::collections::HashSet<String> =
                    have.documents.into_iter().map(|d| d.id).collect();
                rows.retain(|&i| !existing.contains(&ids[i]));
                skipped += end - start - rows.len();
            }
            let documents = rows
                .iter()
                .map(|&i| pb::Document {
                    id: ids[i].clone(),
                    vectors: Some(pb::Vectors {
                        count: mc as u32,
                        dim: dim as u32,
                        values: values[i * mc * dim..(i + 1) * mc * dim].to_vec(),
                        ..Default::default()
                    }),
                    payload: payloads.as_ref().map(|p| p[i].clone()).unwrap_or_default(),
                })
                .collect::<Vec<_>>();
            if !documents.is_empty()
                && tx
                    .send(pb::UpsertRequest {
                        collection: collection.clone(),
                        documents,
                    })
                    .await
                    .is_err()
            {
                break; // the stream failed; its status is reported below
            }
            progress.inc((end - start) as u64);
        }
        Ok::<usize, String>(skipped)
    });
    let resp = docs
        .upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status);
    let skipped = producer.await.map_err(|e| e.to_string())??;
    pbar.finish_and_clear();
    let r = resp?.into_inner();
    if remote.json {
        outln!(
            "{}",
            serde_json::json!({"upserted": r.upserted, "batches": r.batches, "skipped_existing": skipped, "last_seq": r.last_seq})
        );
    } else {
        outln!(
            "upserted {} documents in {} batches ({} already present, skipped)",
            r.upserted,
            r.batches,
            skipped
        );
    }
    Ok(())
}

pub async fn search(remote: &Remote, a: SearchArgs) -> CliResult {
    let (values, shape) = npy::read(&a.npy)?;
    let (q, mq, dim) = match shape[..] {
        [q, mq, dim] => (q, mq, dim),
        [mq, dim] => (1, mq, dim),
        _ => {
            return Err(format!(
                "{}: shape {shape:?}, expected [Q, M_q, D] or [M_q, D]",
                a.npy.display()
            )
            .into())
        }
    };
    let budget = a.budget.as_deref().map(parse_budget).transpose()?;
    let stages = match &a.stages {
        None => Vec::new(),
        Some(spec) => spec
            .split(',')
            .map(|st| {
                let (b, keep) = st
                    .split_once(':')
                    .ok_or_else(|| format!("stage {st:?}: expected R_QxR_C:KEEP, e.g. 1x1:1000"))?;
                let keep = keep
                    .parse()
                    .map_err(|_| format!("stage {st:?}: keep {keep:?} is not a number"))?;
                Ok(pb::Stage {
                    budget: Some(parse_budget(b)?),
                    keep,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    let mut c = SearchClient::with_interceptor(channel(remote).await?, remote.interceptor()?)
        .max_decoding_message_size(usize::MAX);
    let pbar = if q > 1 && !remote.json {
        Some(bar(q as u64, "searching"))
    } else {
        None
    };
    let mut lines = Vec::new();
    for i in 0..q {
        let req = pb::SearchRequest {
            collection: a.collection.clone(),
            query: Some(pb::Vectors {
                count: mq as u32,
                dim: dim as u32,
                values: values[i * mq * dim..(i + 1) * mq * dim].to_vec(),
                ..Default::default()
            }),
            budget,
            k: a.k,
            candidates: a.candidates,
            ef: 0,
            exact: a.exact,
            with_payload: a.with_payload,
            allow_untrained_budget: a.allow_untrained_budget,
            stages: stages.clone(),
            no_prune: false,
            filter: a.filter.clone().unwrap_or_default(),
            latency_target_us: a.latency_target_us.unwrap_or(0),
            allow_partial: false,
            nprobe: a.nprobe,
            candidate_index: a.candidate_index.clone(),
        };
        let r = c
            .search(req)
            .await
            .map_err(|e| {
                // The engine names the request field; here it is a flag.
                status(e).replace(
                    "set allow_untrained_budget",
                    "pass --allow-untrained-budget",
                )
            })?
            .into_inner();
        let st = r.stats.unwrap_or_default();
        let used = r
            .budget
            .map(|b| format!("{}x{}", b.r_q, b.r_c))
            .unwrap_or_default();
        if remote.json {
            outln!(
                "{}",
                serde_json::json!({
                    "query": i,
                    "budget": used,
                    "hits": r.hits.iter().map(|h| serde_json::json!({"id": h.id, "score": h.score, "payload": docs::payload_value(&h.payload)})).collect::<Vec<_>>(),
                    "docs_scored": st.docs_scored, "vector_bytes_read": st.vector_bytes_read, "total_us": st.total_us,
                })
            );
        } else {
            for (rank, h) in r.hits.iter().enumerate() {
                lines.push(format!(
                    "{i:<6} {rank:<5} {:<32} {:>10.5}  {used:<7} {}",
                    h.id,
                    h.score,
                    docs::payload_cell(&h.payload)
                ));
            }
        }
        if let Some(p) = &pbar {
            p.inc(1);
        }
    }
    if let Some(p) = pbar {
        p.finish_and_clear();
    }
    if !remote.json {
        outln!(
            "{:<6} {:<5} {:<32} {:>10}  {:<7} payload",
            "query",
            "rank",
            "id",
            "score",
            "budget"
        );
        for l in lines {
            outln!("{l}");
        }
    }
    Ok(())
}

pub async fn admin(remote: &Remote, what: AdminOp) -> CliResult {
    let mut a = AdminClient::with_interceptor(channel(remote).await?, remote.interceptor()?);
    match what {
        AdminOp::Flush(c) => {
            let r = a
                .flush(pb::FlushRequest {
                    collection: c.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if remote.json {
                outln!("{}", serde_json::json!({"flushed": r.flushed}));
            } else {
                outln!(
                    "flushed: {}",
                    if r.flushed.is_empty() {
                        "nothing to flush".into()
                    } else {
                        r.flushed.join(", ")
                    }
                );
            }
        }
        AdminOp::Stats(c) => {
            let r = a
                .stats(pb::StatsRequest {
                    collection: c.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            for s in r.collections {
                if remote.json {
                    outln!(
                        "{}",
                        serde_json::json!({"name": s.name, "live_docs": s.live_docs, "memtable_docs": s.memtable_docs, "segments": s.segments,
                            "segment_bytes": s.segment_bytes, "index_bytes": s.index_bytes, "wal_bytes": s.wal_bytes})
                    );
                } else {
                    outln!(
                        "{:<24} docs {:<9} memtable {:<8} segments {:<3} segment {:>11}  index {:>11}  wal {:>11}",
                        s.name, s.live_docs, s.memtable_docs, s.segments, size(s.segment_bytes), size(s.index_bytes), size(s.wal_bytes)
                    );
                }
            }
        }
        AdminOp::Compact(collection, keep) => {
            let spinner = ProgressBar::new_spinner();
            spinner.set_message(format!("compacting {collection}"));
            spinner.enable_steady_tick(Duration::from_millis(120));
            let r = a
                .compact(pb::CompactRequest {
                    collection,
                    keep_r_c: keep.unwrap_or(0),
                })
                .await
                .map_err(status);
            spinner.finish_and_clear();
            let r = r?.into_inner();
            if remote.json {
                outln!(
                    "{}",
                    serde_json::json!({"merged_segments": r.merged_segments, "new_segment": r.new_segment, "docs_in": r.docs_in,
                        "docs_out": r.docs_out, "bytes_before": r.bytes_before, "bytes_after": r.bytes_after, "elapsed_ms": r.elapsed_ms, "stored_vectors": r.stored_vectors})
                );
            } else if r.merged_segments.is_empty() {
                outln!("nothing to compact");
            } else {
                outln!(
                    "merged segments {:?} into {}: {} -> {} docs, {} -> {} bytes in {} ms; {} vectors per document stored",
                    r.merged_segments,
                    r.new_segment,
                    r.docs_in,
                    r.docs_out,
                    r.bytes_before,
                    r.bytes_after,
                    r.elapsed_ms,
                    r.stored_vectors
                );
            }
        }
        AdminOp::Snapshot(cmd) => match cmd {
            SnapshotCmd::Create { collection } => {
                let spinner = ProgressBar::new_spinner();
                spinner.set_message(format!("snapshotting {collection}"));
                spinner.enable_steady_tick(Duration::from_millis(120));
                let r = a
                    .create_snapshot(pb::CreateSnapshotRequest { collection })
                    .await
                    .map_err(status);
                spinner.finish_and_clear();
                print_snapshot(&r?.into_inner(), remote.json)?;
            }
            SnapshotCmd::List { collection } => {
                let r = a
                    .list_snapshots(pb::ListSnapshotsRequest {
                        collection: collection.unwrap_or_default(),
                    })
                    .await
                    .map_err(status)?;
                for s in r.into_inner().snapshots {
                    print_snapshot(&s, remote.json)?;
                }
            }
            SnapshotCmd::Delete { name } => {
                a.delete_snapshot(pb::DeleteSnapshotRequest { name: name.clone() })
                    .await
                    .map_err(status)?;
                outln!("deleted snapshot {name}");
            }
            SnapshotCmd::Restore {
                name,
                as_collection,
            } => {
                let i = a
                    .restore_snapshot(pb::RestoreSnapshotRequest {
                        name,
                        as_collection,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                print_info(&i, remote.json)?;
            }
        },
    }
    Ok(())
}

/// Admin operations over gRPC.
pub enum AdminOp {
    Flush(Option<String>),
    Stats(Option<String>),
    Compact(String, Option<u32>),
    Snapshot(SnapshotCmd),
}

/// `inspect` / `verify` on a stopped server's data directory. Verify fails (non-zero exit) on any
/// problem, printing the file and offset. Orphan files (no manifest lists them) are reported but
/// are not a failure: an interrupted write leaves them, and the server removes them at open.
pub fn offline(data_dir: &std::path::Path, verify: bool, json: bool) -> CliResult {
    let reports =
        metavec_core::inspect::inspect_dir(data_dir, verify).map_err(|e| e.to_string())?;
    let mut problems = 0;
    let mut orphans = 0;
    for r in &reports {
        problems += r.problems.len();
        orphans += r.orphans.len();
        if json {
            outln!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
            continue;
        }
        outln!(
            "collection {}  dim {} M_c {} M_q {} dtype {}  manifest v{}  segments {}",
            r.name,
            r.config.dim,
            r.config.doc_vectors,
            r.config.query_vectors,
            r.config.dtype.name(),
            r.manifest_version,
            r.segments.len()
        );
        for s in &r.segments {
            outln!(
                "  segment {:<5} docs {:<8} live {:<8} file {:>13} B  hnsw {:>11} B ({} points)",
                s.id,
                s.docs,
                s.live_docs,
                s.file_bytes,
                s.index_bytes,
                s.hnsw_points
            );
            for g in &s.groups {
                outln!(
                    "    vectors {:<8} {:>13} B  {:>6} blocks of {} docs",
                    g.vectors,
                    g.bytes,
                    g.blocks,
                    g.docs_per_block
                );
            }
        }
        for w in &r.wal {
            outln!(
                "  wal gen {:<4} {:>11} B  {} records ({} docs upserted, {} ids deleted){}",
                w.generation,
                w.bytes,
                w.records,
                w.upserted_docs,
                w.deleted_ids,
                w.bad_record
                    .as_ref()
                    .map(|b| format!("  torn/bad record at {b} (recovery truncates here)"))
                    .unwrap_or_default()
            );
        }
        for p in &r.problems {
            outln!("  PROBLEM: {p}");
        }
        for o in &r.orphans {
            outln!("  ORPHAN: {o} (no manifest lists it; the server removes it at open)");
        }
    }
    if verify {
        if problems > 0 {
            return Err(format!("verify found {problems} problem(s)").into());
        }
        if !json {
            outln!(
                "verify: every checksum of {} collection(s) is good{}",
                reports.len(),
                match orphans {
                    0 => String::new(),
                    n => format!("; {n} orphan file(s), listed above"),
                }
            );
        }
    }
    Ok(())
}
