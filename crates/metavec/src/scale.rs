//! `metavec bench scale`: a real `metavec serve` process, driven over gRPC as a client would,
//! measured as its collection grows. Documents come from a seeded stream
//! ([`SynthStream`]), are sent in order over streaming Upserts, and an exact ground truth is kept
//! as they go (for a fixed query set, the MaxSim top 10 at every trained budget over every
//! document sent so far). At each checkpoint (k / --checkpoints of --docs) one row is recorded:
//! ingest rate, bytes written by the server against bytes sent (write amplification), segments,
//! memory, disk, search latency and recall at every budget; then the server is killed with
//! SIGKILL and restarted (recovery time, no acknowledged document lost).
//!
//! Everything lives in --data-dir: the server's data (`data/`), its log (`server.log`), the
//! bench's state (`scale-state.json`, rewritten atomically after every acknowledged stream of
//! about 1% of the documents) and the rows (`scale-results.jsonl`). Run again with the same
//! flags and it resumes where the last acknowledged stream ended.

pub(crate) mod report;
mod server;
mod state;
mod truth;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use metavec_api::pb;
use metavec_api::pb::{
    collections_client::CollectionsClient, documents_client::DocumentsClient,
    search_client::SearchClient,
};
use metavec_core::config::default_budgets;
use metavec_core::synth::{SynthSpec, SynthStream};
use metavec_core::Dtype;
use rayon::prelude::*;
use tonic::transport::Channel;

use crate::cli::{CliError, CliResult};
use report::{BudgetRow, Resume, Row};
use server::{Launch, Maintenance, Server};
use state::{save, Live, Params, State, STATE_VERSION};
use truth::{Scorer, Truth};

/// The collection the scenario fills.
const COLLECTION: &str = "scale";
/// Hits per search, and the depth of the ground truth.
const K: usize = 10;
/// Searches per budget before timing (cold pages, connection).
const WARMUP: usize = 5;
const RESULTS_FILE: &str = "scale-results.jsonl";

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Directory of the run: the server's data (DIR/data), its log, the bench's state and
    /// results. A directory that holds a state resumes it (with the same parameters).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Documents to ingest in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub docs: usize,
    /// Width D of every vector.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// M_c, vectors per document.
    #[arg(long, default_value_t = 32)]
    pub doc_vectors: usize,
    /// M_q, vectors per query.
    #[arg(long, default_value_t = 16)]
    pub query_vectors: usize,
    /// Storage dtype of the collection: f32, bf16, f16 or int8. With bf16 and f16 every value is
    /// rounded to it before sending, so the f32 sent is what a segment stores.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Synthetic profile: "hard" (only deeper vectors tell a topic's documents apart) or "easy".
    #[arg(long, default_value = "hard")]
    pub profile: String,
    /// Queries of the fixed query set (each timed and scored at every budget).
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
    /// Documents per Upsert message (0 = as many as fit in about 4 MiB of f32).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Checkpoints, evenly spaced: one row at every k / CHECKPOINTS of --docs.
    #[arg(long, default_value_t = 4)]
    pub checkpoints: usize,
    /// Stop (cleanly, resumable) after this many checkpoints of this run.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// The server's --memtable-mb (default: the server's).
    #[arg(long)]
    pub memtable_mb: Option<usize>,
    /// An extra argument for `metavec serve`, e.g. --server-arg=--compact-max-segments=4
    /// (repeat for several).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Run the server in the memory cgroup (v1) /sys/fs/cgroup/memory/metavec-scale limited to
    /// this many MiB, page cache included (needs root; skipped with a message otherwise).
    #[arg(long)]
    pub memory_limit_mb: Option<u64>,
    /// Seed of the generator (same seed, same data).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// One JSON object per checkpoint on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write PREFIX.svg and PREFIX.png: every series against the document count.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Queries also run as exact scans at each checkpoint, to check the ground truth.
    #[arg(long, default_value_t = 2)]
    pub check_exact: usize,
    /// Start the run's server on the stored collection and measure every budget's search once
    /// more at the documents acknowledged so far (this binary's search path, the run's queries
    /// and ground truth); nothing is ingested and the recorded rows stay as they were. It may
    /// pass another `--memory-limit-mb` than the run did (or none): the same collection searched
    /// capped and in RAM; a capped remeasure drops the page cache first. Other `--server-arg`s
    /// may be given too (e.g. `--server-arg=--compact-fanout=1000000`: no merge meanwhile).
    #[arg(long)]
    pub remeasure: bool,
    /// MiB written (then fdatasync'd) in DIR at the first start to measure the disk's sequential
    /// write bandwidth (0 = skip).
    #[arg(long, default_value_t = 1024)]
    pub disk_probe_mb: usize,
}

fn status(what: &str) -> impl Fn(tonic::Status) -> String + '_ {
    move |s| format!("{what}: {:?}: {}", s.code(), s.message())
}

fn doc_id(i: usize) -> String {
    // Zero-padded, so that the server's tie order (id ascending) is the index order.
    format!("doc-{i:010}")
}

fn doc_index(id: &str) -> Option<u32> {
    id.strip_prefix("doc-")?.parse().ok()
}

/// The gRPC clients of one server.
struct Clients {
    collections: CollectionsClient<Channel>,
    documents: DocumentsClient<Channel>,
    search: SearchClient<Channel>,
}

async fn connect(server: &Server) -> Result<Clients, String> {
    let ch = Channel::from_shared(server.addr.clone())
        .map_err(|e| format!("{}: {e}", server.addr))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", server.addr))?;
    Ok(Clients {
        collections: CollectionsClient::new(ch.clone()),
        documents: DocumentsClient::new(ch.clone())
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX),
        search: SearchClient::new(ch).max_decoding_message_size(usize::MAX),
    })
}

async fn info(c: &mut Clients) -> Result<pb::CollectionInfo, String> {
    c.collections
        .get_collection(pb::GetCollectionRequest {
            name: COLLECTION.into(),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(status("GetCollection"))
}

/// Everything a run shares.
struct Run {
    dir: PathBuf,
    launch: Launch,
    stream: Arc<SynthStream>,
    scorer: Arc<Scorer>,
    queries: Vec<Vec<f32>>,
    dtype: Dtype,
    batch: usize,
    /// Checkpoint document counts, ascending.
    checkpoints: Vec<usize>,
    /// Documents per acknowledged stream (about 1%).
    unit: usize,
    cgroup: Option<PathBuf>,
    check_exact: usize,
    plot: Option<PathBuf>,
}

pub async fn run(a: ScaleArgs) -> CliResult {
    let json = a.json;
    if a.docs == 0 || a.queries == 0 || a.checkpoints == 0 || a.checkpoints > a.docs {
        return Err(
            "--docs, --queries and --checkpoints must be positive, and --checkpoints at \
                    most --docs"
                .to_string()
                .into(),
        );
    }
    let dtype = Dtype::parse(&a.dtype).map_err(|e| format!("--dtype: {e}"))?;
    let ladder = default_budgets(a.doc_vectors as u32, a.query_vectors as u32);
    let budgets: Vec<(usize, usize)> = ladder
        .iter()
        .map(|b| (b.r_q as usize, b.r_c as usize))
        .collect();
    let b32: Vec<(u32, u32)> = ladder.iter().map(|b| (b.r_q, b.r_c)).collect();
    let spec = match a.profile.as_str() {
        "hard" => SynthSpec::hard(a.docs, a.queries, a.dim, &b32, a.seed),
        "easy" => SynthSpec::new(a.docs, a.queries, a.dim, &b32, a.seed),
        p => return Err(format!("--profile {p:?}: expected hard or easy").into()),
    };
    if spec.doc_vectors() != a.doc_vectors {
        return Err(format!(
            "--doc-vectors {} is not the ladder's largest r_c {}",
            a.doc_vectors,
            spec.doc_vectors()
        )
        .into());
    }
    let params = Params {
        docs: a.docs,
        dim: a.dim,
        doc_vectors: a.doc_vectors,
        query_vectors: a.query_vectors,
        budgets: budgets.clone(),
        dtype: dtype.name().into(),
        profile: a.profile.clone(),
        queries: a.queries,
        checkpoints: a.checkpoints,
        seed: a.seed,
        memtable_mb: a.memtable_mb,
        server_args: a.server_args.clone(),
        memory_limit_mb: a.memory_limit_mb,
    };
    let dir = a.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("--data-dir {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("--data-dir {}: {e}", dir.display()))?;
    // A remeasure may search the stored collection under another memory limit (in RAM against
    // capped) and server flags; every other parameter must match the run's.
    let ignore: &[&str] = if a.remeasure {
        &["memory_limit_mb", "server_args"]
    } else {
        &[]
    };
    let stored = state::load(&dir, &params, ignore)?;
    let say = |s: String| {
        if !json {
            eprintln!("{s}");
        }
    };
    let cgroup = match a.memory_limit_mb {
        Some(mb) => match server::memory_cgroup(mb) {
            Ok(cg) => {
                say(format!(
                    "server memory limited to {mb} MiB ({})",
                    cg.display()
                ));
                Some(cg)
            }
            Err(e) => {
                eprintln!(
                    "--memory-limit-mb {mb}: cannot use the memory cgroup ({e}); running \
                     without a limit"
                );
                None
            }
        },
        None => None,
    };
    let stream = Arc::new(SynthStream::new(spec));
    let queries: Vec<Vec<f32>> = (0..a.queries)
        .into_par_iter()
        .map(|j| stream.query(j))
        .collect();
    let scorer = Arc::new(Scorer::new(&queries, &budgets, a.dim)?);
    let doc_bytes = a.doc_vectors * a.dim * 4;
    let batch = if a.batch > 0 {
        a.batch
    } else {
        ((4 << 20) / doc_bytes).max(1)
    };
    let run = Run {
        launch: Launch {
            exe: std::env::current_exe().map_err(|e| format!("the metavec binary: {e}"))?,
            data: dir.join("data"),
            log: dir.join("server.log"),
            memtable_mb: a.memtable_mb,
            extra: a.server_args.clone(),
            cgroup: cgroup.clone(),
            pid_file: dir.join("server.pid"),
        },
        dir: dir.clone(),
        stream,
        scorer,
        queries,
        dtype,
        batch,
        checkpoints: (1..=a.checkpoints)
            .map(|k| a.docs * k / a.checkpoints)
            .collect(),
        unit: a.docs.div_ceil(100).max(1),
        cgroup,
        check_exact: a.check_exact.min(a.queries),
        plot: a.plot.clone(),
    };
    let title = format!(
        "metavec bench scale: {} x {} x {} {}, {} profile",
        a.docs, a.doc_vectors, a.dim, dtype, a.profile
    );
    let mut header = true;
    let mut state = match stored {
        Some(s) => {
            for r in &s.rows {
                report::print_row(r, header, json)?;
                header = false;
            }
            s
        }
        None => State {
            version: STATE_VERSION,
            params: params.clone(),
            acked: 0,
            truth: Truth::new(a.queries, budgets.len(), K),
            written_done: 0,
            maintenance_done: Maintenance::default(),
            live: None,
            sent_docs: 0,
            interval_ingest_s: 0.0,
            disk_mb_s: None,
            resumes: Vec::new(),
            rows: Vec::new(),
        },
    };
    if a.remeasure {
        server::kill_stale(&run.launch.pid_file, &run.launch.data);
        if run.cgroup.is_some() {
            // Page cache is charged to the cgroup that read it first: pages an uncapped process
            // left behind would be served free of the limit.
            match server::drop_page_cache() {
                Ok(()) => say("page cache dropped (the capped server reads cold)".into()),
                Err(e) => eprintln!("could not drop the page cache ({e}): the cap may not bind"),
            }
        }
        let (mut srv, open) = run.launch.start()?;
        let mut c = connect(&srv).await?;
        say(format!(
            "remeasuring search at {} documents (server open {:.2} s)",
            state.acked,
            open.as_secs_f64()
        ));
        let rows = measure_search(&run, &state, &mut c).await;
        srv.terminate()?;
        if let Some(peak) = run.cgroup.as_deref().and_then(server::cgroup_max_usage) {
            say(format!(
                "peak memory of the capped server: {} MiB (page cache included)",
                peak >> 20
            ));
        }
        for b in rows? {
            say(format!(
                "{} p50 {:.2} p99 {:.2} ms (server {:.2}/{:.2}) recall {:.3}",
                b.budget, b.p50_ms, b.p99_ms, b.server_p50_ms, b.server_p99_ms, b.recall_at_10
            ));
        }
        return Ok(());
    }
    if state.rows.len() == run.checkpoints.len() {
        say(format!(
            "{} is complete ({} checkpoints); nothing to do",
            dir.display(),
            state.rows.len()
        ));
        if let Some(p) = &run.plot {
            report::plot(p, &state.rows, a.docs, &title)?;
        }
        return Ok(());
    }
    // A server an interrupted run left behind: its bytes written count, then it goes.
    let stale = server::kill_stale(&run.launch.pid_file, &run.launch.data);
    if let Some(live) = state.live.take() {
        state.written_done += stale.unwrap_or(live.write_bytes);
        state.maintenance_done = state.maintenance_done + live.maintenance;
    }
    if state.disk_mb_s.is_none() && a.disk_probe_mb > 0 {
        let mbs = server::disk_probe(&dir, a.disk_probe_mb)?;
        say(format!(
            "disk: {mbs:.0} MB/s sequential write ({} MiB + fdatasync)",
            a.disk_probe_mb
        ));
        state.disk_mb_s = Some(mbs);
    }
    let resumed = state.acked > 0 || !state.rows.is_empty();
    let (mut srv, open) = run.launch.start()?;
    let mut c = connect(&srv).await?;
    if resumed {
        say(format!(
            "resuming at {} of {} documents (server open {:.2} s)",
            state.acked,
            a.docs,
            open.as_secs_f64()
        ));
        state.resumes.push(Resume {
            at_docs: state.acked,
            restart_s: secs(open),
        });
    } else {
        say(format!("server open {:.2} s", open.as_secs_f64()));
    }
    ensure_collection(&mut c, &a, dtype).await?;
    let mut done_here = 0;
    let pb = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.docs as u64)
    };
    pb.set_position(state.acked as u64);
    loop {
        let due = run
            .checkpoints
            .iter()
            .position(|&cp| cp <= state.acked && !state.rows.iter().any(|r| r.docs == cp));
        if let Some(i) = due {
            let row = checkpoint(&run, &mut state, &mut srv, &mut c, i).await?;
            report::append(&run.dir.join(RESULTS_FILE), &row)?;
            pb.suspend(|| report::print_row(&row, header, json))?;
            header = false;
            save(&dir, &state)?;
            if let Some(p) = &run.plot {
                report::plot(p, &state.rows, a.docs, &title)?;
            }
            done_here += 1;
            if state.rows.len() == run.checkpoints.len() || a.stop_after == Some(done_here) {
                break;
            }
            continue;
        }
        let next = run
            .checkpoints
            .iter()
            .copied()
            .find(|&cp| cp > state.acked)
            .unwrap_or(a.docs);
        // Streams end on multiples of the unit, so that a resume sends the same streams.
        let end = ((state.acked / run.unit + 1) * run.unit).min(next);
        let t = Instant::now();
        state.truth = ingest(
            &run,
            &mut c,
            state.acked..end,
            std::mem::take(&mut state.truth),
            &pb,
        )
        .await?;
        state.interval_ingest_s += t.elapsed().as_secs_f64();
        state.sent_docs += (end - state.acked) as u64;
        state.acked = end;
        state.live = Some(Live {
            pid: srv.pid(),
            write_bytes: server::write_bytes(srv.pid()).unwrap_or(0),
            maintenance: srv
                .metrics
                .as_deref()
                .and_then(|m| server::maintenance(m, COLLECTION).ok())
                .unwrap_or_default(),
        });
        save(&dir, &state)?;
    }
    pb.finish_and_clear();
    // A clean stop: what the server wrote is counted, the state says so.
    stop_counted(&mut state, &mut srv, false)?;
    save(&dir, &state)?;
    if state.rows.len() < run.checkpoints.len() {
        say(format!(
            "stopped after {done_here} checkpoint(s) at {} documents; run the same command to resume",
            state.acked
        ));
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

/// Creates the collection unless it exists; an existing one must have the run's shape.
async fn ensure_collection(c: &mut Clients, a: &ScaleArgs, dtype: Dtype) -> Result<(), String> {
    let existing = match info(c).await {
        Ok(i) => Some(i),
        Err(e) if e.contains("NotFound") => None,
        Err(e) => return Err(e),
    };
    if let Some(i) = existing {
        let cfg = i.config.unwrap_or_default();
        if (cfg.dim, cfg.doc_vectors, cfg.query_vectors)
            != (a.dim as u32, a.doc_vectors as u32, a.query_vectors as u32)
        {
            return Err(format!(
                "collection {COLLECTION} has dim {} doc_vectors {} query_vectors {}, the run \
                 wants {} {} {}",
                cfg.dim, cfg.doc_vectors, cfg.query_vectors, a.dim, a.doc_vectors, a.query_vectors
            ));
        }
        return Ok(());
    }
    c.collections
        .create_collection(pb::CreateCollectionRequest {
            name: COLLECTION.into(),
            dim: a.dim as u32,
            doc_vectors: a.doc_vectors as u32,
            query_vectors: a.query_vectors as u32,
            dtype: dtype.name().into(),
            ..Default::default()
        })
        .await
        .map_err(status("CreateCollection"))?;
    Ok(())
}

/// Sends documents `range` over one Upsert stream (batches of `run.batch`), while the truth
/// takes them in on a blocking thread; returns the truth once the server has answered (every
/// batch durable).
async fn ingest(
    run: &Run,
    c: &mut Clients,
    range: std::ops::Range<usize>,
    mut truth: Truth,
    pb: &ProgressBar,
) -> Result<Truth, String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(2);
    let (stream, scorer, dtype, batch) =
        (run.stream.clone(), run.scorer.clone(), run.dtype, run.batch);
    let (pb2, start, end) = (pb.clone(), range.start, range.end);
    let producer = tokio::task::spawn_blocking(move || -> Result<Truth, String> {
        let spec = stream.spec();
        let (dim, m_c) = (spec.dim, spec.doc_vectors());
        for s in (start..end).step_by(batch) {
            let e = (s + batch).min(end);
            let docs: Vec<Vec<f32>> = (s..e)
                .into_par_iter()
                .map(|i| {
                    let mut v = stream.doc(i);
                    truth::round_for(dtype, &mut v);
                    v
                })
                .collect();
            let documents = docs
                .iter()
                .enumerate()
                .map(|(j, v)| pb::Document {
                    id: doc_id(s + j),
                    vectors: Some(pb::Vectors {
                        count: m_c as u32,
                        dim: dim as u32,
                        values: v.clone(),
                        ..Default::default()
                    }),
                    payload: String::new(),
                })
                .collect();
            let req = pb::UpsertRequest {
                collection: COLLECTION.into(),
                documents,
            };
            if tx.blocking_send(req).is_err() {
                // The stream failed: its status is the error reported.
                return Ok(truth);
            }
            let stored: Vec<f32> = docs
                .into_par_iter()
                .map(|mut v| truth::stored(dtype, dim, &mut v).map(|()| v))
                .collect::<Result<Vec<_>, _>>()?
                .concat();
            truth.merge(s, &scorer.score(&stored, m_c));
            pb2.inc((e - s) as u64);
        }
        Ok(truth)
    });
    let resp = c
        .documents
        .upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status("Upsert"));
    let truth = producer.await.map_err(|e| e.to_string())??;
    let r = resp?.into_inner();
    if r.upserted != (end - start) as u64 {
        return Err(format!(
            "Upsert of documents {start}..{end} acknowledged {} documents",
            r.upserted
        ));
    }
    Ok(truth)
}

/// The nearest-rank percentile of `v` (seconds, sorted here), in ms to three decimals.
fn pct_ms(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let x = v[((v.len() - 1) as f64 * p).round() as usize];
    (x * 1e6).round() / 1e3
}

/// Times every budget over the query set (one query at a time) and scores its recall; checks
/// the truth against the server's exact scan on the first `run.check_exact` queries.
async fn measure_search(
    run: &Run,
    state: &State,
    c: &mut Clients,
) -> Result<Vec<BudgetRow>, String> {
    let dim = run.stream.spec().dim;
    let mut rows = Vec::new();
    for (bi, &(r_q, r_c)) in state.params.budgets.iter().enumerate() {
        let req = |j: usize, exact: bool| pb::SearchRequest {
            collection: COLLECTION.into(),
            query: Some(pb::Vectors {
                count: r_q as u32,
                dim: dim as u32,
                values: run.queries[j][..r_q * dim].to_vec(),
                ..Default::default()
            }),
            budget: Some(pb::Budget {
                r_q: r_q as u32,
                r_c: r_c as u32,
            }),
            k: K as u32,
            exact,
            ..Default::default()
        };
        let overlap = |hits: &[pb::Hit], j: usize| {
            let top = state.truth.top(j, bi);
            let got: Vec<u32> = hits.iter().filter_map(|h| doc_index(&h.id)).collect();
            top.iter().filter(|t| got.contains(&t.1)).count() as f64 / top.len().max(1) as f64
        };
        let nq = run.queries.len();
        for j in 0..WARMUP.min(nq) {
            c.search
                .search(req(j, false))
                .await
                .map_err(status("Search"))?;
        }
        let mut lat = Vec::with_capacity(nq);
        let mut server_lat = Vec::with_capacity(nq);
        let mut recall = 0.0;
        for j in 0..nq {
            let t = Instant::now();
            let r = c
                .search
                .search(req(j, false))
                .await
                .map_err(status("Search"))?
                .into_inner();
            lat.push(t.elapsed().as_secs_f64());
            server_lat.push(r.stats.map_or(0.0, |s| s.total_us as f64 / 1e6));
            recall += overlap(&r.hits, j);
        }
        let mut agree = None;
        if run.check_exact > 0 {
            let mut sum = 0.0;
            for j in 0..run.check_exact {
                let r = c
                    .search
                    .search(req(j, true))
                    .await
                    .map_err(status("Search (exact)"))?
                    .into_inner();
                sum += overlap(&r.hits, j);
            }
            agree = Some((sum / run.check_exact as f64 * 1e3).round() / 1e3);
        }
        rows.push(BudgetRow {
            budget: format!("{r_q}x{r_c}"),
            p50_ms: pct_ms(&mut lat, 0.5),
            p99_ms: pct_ms(&mut lat, 0.99),
            server_p50_ms: pct_ms(&mut server_lat, 0.5),
            server_p99_ms: pct_ms(&mut server_lat, 0.99),
            recall_at_10: (recall / nq as f64 * 1e3).round() / 1e3,
            exact_agreement: agree,
        });
    }
    Ok(rows)
}

/// Reads what `srv` wrote and did, adds it to the totals of finished processes, and stops it:
/// SIGKILL when `kill9`, else SIGTERM and a wait.
fn stop_counted(state: &mut State, srv: &mut Server, kill9: bool) -> Result<(), String> {
    let written = server::write_bytes(srv.pid()).unwrap_or(0);
    let maint = srv
        .metrics
        .as_deref()
        .and_then(|m| server::maintenance(m, COLLECTION).ok())
        .unwrap_or_default();
    if kill9 {
        srv.kill9();
    } else {
        srv.terminate()?;
    }
    state.written_done += written;
    state.maintenance_done = state.maintenance_done + maint;
    state.live = None;
    Ok(())
}

/// Restarts the server (after it was stopped) and checks that it serves every acknowledged
/// document. Returns the open time.
async fn reopen(
    run: &Run,
    state: &State,
    srv: &mut Server,
    c: &mut Clients,
    how: &str,
) -> Result<f64, String> {
    let (s, open) = run.launch.start()?;
    *srv = s;
    *c = connect(srv).await?;
    let live = info(c).await?.live_docs;
    if live != state.acked as u64 {
        return Err(format!(
            "after {how} the server serves {live} documents, {} were acknowledged",
            state.acked
        ));
    }
    Ok(secs(open))
}

/// Longest wait for the server's flushes and merges to finish before memory is read.
const SETTLE_MAX: Duration = Duration::from_secs(180);

/// Waits until the server's maintenance threads used no CPU for two seconds (or SETTLE_MAX);
/// returns the seconds waited and whether they went quiet.
async fn settle(pid: u32) -> (f64, bool) {
    let started = Instant::now();
    let mut last = server::maintenance_ticks(pid);
    while started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = server::maintenance_ticks(pid);
        if now.is_none() || now == last {
            return (secs(started.elapsed()), true);
        }
        last = now;
    }
    (secs(started.elapsed()), false)
}

/// Checkpoint `i`: measures, records the row in the state, then kill -9 and restart (and at the
/// last one also SIGTERM and restart).
async fn checkpoint(
    run: &Run,
    state: &mut State,
    srv: &mut Server,
    c: &mut Clients,
    i: usize,
) -> Result<Row, CliError> {
    let p = state.params.clone();
    let docs = state.acked;
    let inf = info(c).await?;
    if inf.live_docs != docs as u64 {
        return Err(format!(
            "at checkpoint {docs} the server serves {} documents",
            inf.live_docs
        )
        .into());
    }
    // Searches first: what follows (sizes, memory, maintenance) is read after them, so that a
    // flush the last stream set off has had the time the searches took to finish.
    let budgets = measure_search(run, state, c).await?;
    let pid = srv.pid();
    let rss_anon_busy_mb = server::rss_anon_kb(pid).unwrap_or(0) as f64 / 1e3;
    let (settle_s, settled) = settle(pid).await;
    let inf = info(c).await?;
    let rss_anon_mb = server::rss_anon_kb(pid).unwrap_or(0) as f64 / 1e3;
    let cgroup_peak_mb = run
        .cgroup
        .as_deref()
        .and_then(server::cgroup_max_usage)
        .map(|b| (b as f64 / 1e6).round());
    let written = state.written(srv);
    let maint = state.maintenance_done
        + srv
            .metrics
            .as_deref()
            .and_then(|m| server::maintenance(m, COLLECTION).ok())
            .unwrap_or_default();
    let disk_bytes = server::disk_usage(&run.launch.data);
    let prev = state.rows.last();
    let prev_docs = prev.map_or(0, |r| r.docs);
    let prev_written = prev.map_or(0, |r| r.written_bytes);
    let doc_bytes = (p.doc_vectors * p.dim * 4) as u64;
    let sent_bytes = docs as u64 * doc_bytes;
    let ingest_s = state.interval_ingest_s.max(1e-9);
    let round = |x: f64, d: f64| (x * d).round() / d;
    let mut row = Row {
        docs,
        fraction: round(docs as f64 / p.docs as f64, 1e4),
        docs_per_s: round((docs - prev_docs) as f64 / ingest_s, 10.0),
        ingest_mb_s: round(
            (docs - prev_docs) as f64 * doc_bytes as f64 / 1e6 / ingest_s,
            10.0,
        ),
        write_mb_s: round(
            written.saturating_sub(prev_written) as f64 / 1e6 / ingest_s,
            10.0,
        ),
        disk_mb_s: state.disk_mb_s.map(|d| d.round()),
        sent_bytes,
        written_bytes: written,
        write_amplification: round(written as f64 / sent_bytes.max(1) as f64, 1e3),
        segments: inf.segments.len(),
        live_docs: inf.live_docs,
        memtable_docs: inf.memtable_docs,
        wal_bytes: inf.wal_bytes,
        rss_anon_mb: round(rss_anon_mb, 10.0),
        rss_anon_busy_mb: round(rss_anon_busy_mb, 10.0),
        settle_s: round(settle_s, 10.0),
        settled,
        memtable_mb: round(inf.memtable_docs as f64 * doc_bytes as f64 / 1e6, 10.0),
        rss_anon_restart_mb: 0.0,
        cgroup_peak_mb,
        disk_bytes,
        flushes: maint.flushes,
        flush_s: round(maint.flush_ms as f64 / 1e3, 10.0),
        compactions: maint.compactions,
        compaction_s: round(maint.compaction_ms as f64 / 1e3, 10.0),
        budgets,
        recovery_s: 0.0,
        clean_open_s: None,
        resumes: std::mem::take(&mut state.resumes),
    };
    stop_counted(state, srv, true)?;
    row.recovery_s = reopen(run, state, srv, c, "kill -9").await?;
    row.rss_anon_restart_mb = round(
        server::rss_anon_kb(srv.pid()).unwrap_or(0) as f64 / 1e3,
        10.0,
    );
    if i + 1 == run.checkpoints.len() {
        stop_counted(state, srv, false)?;
        row.clean_open_s = Some(reopen(run, state, srv, c, "a clean stop").await?);
    }
    state.interval_ingest_s = 0.0;
    state.rows.push(row.clone());
    Ok(row)
}
