//! `metavec bench`: the end-to-end benchmark anyone can rerun. It loads a `.npy` set (or makes a
//! seeded synthetic one), ingests it into a fresh engine in a temporary directory, seals it, and
//! for each budget measures, on the same queries in the same process: QPS on one thread and on
//! all threads, p50/p99, recall@10 against the exact scan at that budget, vector bytes read and
//! dot products per query, and the exact scan's own QPS as the baseline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use metavec_core::synth::{generate, SynthSpec};
use metavec_core::{
    Budget, Collection, CollectionConfig, CollectionOptions, Document, Dtype, Engine,
    EngineOptions, SearchRequest, SearchStats,
};
use rayon::prelude::*;

use crate::cli::{outln, CliResult};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory with docs.npy [N, M_c, D] and queries.npy [Q, M_q, D] (else synthetic data).
    #[arg(long)]
    pub npy_dir: Option<PathBuf>,
    /// Synthetic: number of documents.
    #[arg(long, default_value_t = 20_000)]
    pub docs: usize,
    /// Synthetic: width D of every vector.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Synthetic: M_c, vectors per document.
    #[arg(long, default_value_t = 64)]
    pub doc_vectors: usize,
    /// Synthetic: M_q, vectors per query.
    #[arg(long, default_value_t = 16)]
    pub query_vectors: usize,
    /// Queries to time (per budget).
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Synthetic: seed of the generator (same seed, same data).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Budgets to measure, e.g. "1x1,4x8,16x64" (default: every trained budget).
    #[arg(long)]
    pub budgets: Option<String>,
    /// Candidates per segment, reranked exactly that many (default: the engine's: 320 from the
    /// HNSW; from the token index up to 1000, reranked progressively).
    #[arg(long)]
    pub candidates: Option<u32>,
    /// Hits per query (recall is recall@k).
    #[arg(short, long, default_value_t = 10)]
    pub k: u32,
    /// Write the data set as f32 docs.npy / queries.npy here (e.g. for ../shared/bench's reference pipeline).
    #[arg(long)]
    pub write_npy: Option<PathBuf>,
    /// Quality-vs-latency curve: PATH.svg and PATH.png (recall@10 per budget, and with --qrels
    /// nDCG@10 of the returned ranking beside it).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the baseline run on the per-document contiguous layout (it ingests the data again).
    #[arg(long)]
    pub no_baseline: bool,
    /// Storage dtype of the segments: f32, bf16, f16 or int8. With a compact dtype every row
    /// also reports its quality against f32: recall@10 of the exact top 10 against the exact f32
    /// top 10 at the same budget (brute force over the raw data).
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Relevance judgements `query_idx<TAB>doc_idx<TAB>grade` (0-based rows of the .npy files):
    /// adds nDCG@10 of the exact ranking, and of the exact f32 ranking with a compact dtype.
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Keep the engine in DIR instead of a temporary directory. When DIR already holds the
    /// bench's collection, nothing is ingested: only `queries.npy` of --npy-dir is read and the
    /// stored collection is measured (how `benches/wide.sh` measures a collection larger than
    /// the memory it is given). Implies --no-baseline.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Synthetic profile: "easy" (vector 0 already decides the ranking) or "hard" (documents of a
    /// topic nearly coincide at vector 0 and only deeper vectors tell them apart; see
    /// `SynthSpec::hard`).
    #[arg(long, default_value = "easy")]
    pub profile: String,
    /// Also measure every budget with vector-0 candidates only (the HNSW walk), beside the
    /// collection's default candidate stage.
    #[arg(long)]
    pub vector0: bool,
    /// Flush a segment whenever the memtable passes this many MB, as `metavec serve` does (its
    /// default is 64); otherwise everything is sealed into one segment. Compaction stays off.
    #[arg(long)]
    pub memtable_mb: Option<usize>,
    /// Token index: posting lists probed per query vector (default: the engine's).
    #[arg(long)]
    pub nprobe: Option<u32>,
    /// Candidate index of the collection: tokens (default) or vector0.
    #[arg(long, default_value = "tokens")]
    pub candidate_index: String,
    /// Token index: centroids per segment (default: the engine's).
    #[arg(long)]
    pub centroids: Option<u32>,
    /// Token index: vectors per document indexed (default: the engine's).
    #[arg(long)]
    pub index_vectors: Option<u32>,
    /// Also measure each budget as a two-stage cascade: first the largest trained budget below
    /// it, keeping this many candidates, then the budget itself (recall still against the exact
    /// scan at the budget). Budgets with no trained budget below them are skipped.
    #[arg(long)]
    pub cascade: Option<u32>,
    /// Also measure the core's bounds in this process (the FMA and `vpmaddwd` peaks on
    /// registers, one core reading blocks the size of a candidate's rows at random places of a
    /// mapped 1 GiB file) and print each budget's rerank against them: GFLOP/s, GB/s, the bound
    /// that applies and the percentage of it reached. Writes PREFIX.svg and PREFIX.png.
    #[arg(long, value_name = "PREFIX")]
    pub roofline: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    /// "grouped" (metavec's layout) or "contiguous" (the per-document baseline).
    layout: &'static str,
    budget: String,
    /// Where candidates came from: "default" (the collection's candidate stage: the token
    /// index at r_c > 1) or "vector0" (the vector-0 HNSW only).
    candidates_from: &'static str,
    candidates_per_query: u64,
    /// Of them, scored by the rerank's first stage (the rest pruned by a bound).
    docs_scored_per_query: u64,
    /// The cascade's first stage, as "r_qxr_c:keep" (absent for a plain search).
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    qps_1_thread: f64,
    qps_all_threads: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Medians of the candidate stage (HNSW walks + memtable) and of the rerank, 1 thread.
    candidate_p50_ms: f64,
    rerank_p50_ms: f64,
    recall_at_10: f64,
    vector_bytes_per_query: u64,
    /// Distinct 4 KiB pages of vectors read (what the layout costs in memory traffic).
    vector_pages_per_query: u64,
    dot_products_per_query: u64,
    exact_qps_1_thread: f64,
    exact_pages_per_query: u64,
    speedup_vs_exact: f64,
    /// Storage dtype of vectors 1.. (vector 0 is always f32).
    dtype: &'static str,
    /// With a compact dtype: recall@10 of this dtype's exact top 10 against the exact f32 top 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_recall_vs_f32: Option<f64>,
    /// With a compact dtype: recall@10 of the search's own top 10 (its candidate stage and its
    /// kernels, e.g. int8 rows against the quantised query) against the exact f32 top 10 at the
    /// same budget: what a user of this dtype gets, where `recall_at_10` compares with the
    /// dtype's own exact scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    search_recall_vs_f32: Option<f64>,
    /// With --qrels: nDCG@10 of the exact ranking at this budget (this dtype), and of f32's.
    #[serde(skip_serializing_if = "Option::is_none")]
    ndcg_at_10: Option<f64>,
    /// With --qrels: nDCG@10 of the search's own ranking.
    #[serde(skip_serializing_if = "Option::is_none")]
    ndcg_at_10_search: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ndcg_at_10_f32: Option<f64>,
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn write_npy(path: &std::path::Path, shape: &[u64], data: &[f32]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| e.to_string())?;
    w.extend(data.iter().copied()).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())
}

pub fn run(mut a: BenchArgs) -> CliResult {
    let say = |s: String| {
        if !a.json {
            eprintln!("{s}");
        }
    };
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let opts = CollectionOptions {
        memtable_max_bytes: a.memtable_mb.map_or(usize::MAX, |mb| mb << 20),
        compact_fanout: usize::MAX,
        compact_max_segments: usize::MAX,
        ..Default::default()
    };
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let engine =
        Engine::open(&root, EngineOptions { collection: opts }).map_err(|e| e.to_string())?;
    if a.data_dir.is_some() {
        a.no_baseline = true;
    }
    let stored = engine.collection("bench").ok();
    let (docs, queries, n, mc, mq, dim) = match (&a.npy_dir, &stored) {
        (Some(dir), Some(coll)) => {
            let cfg = coll.config();
            let (q, qs) = crate::cli::npy::read(&dir.join("queries.npy"))?;
            if qs.len() != 3 || qs[2] != cfg.dim as usize {
                return Err(format!("queries.npy must be [Q, M_q, {}]", cfg.dim).into());
            }
            say(format!(
                "reusing the stored collection in {} ({} docs, dtype {})",
                root.display(),
                coll.len(),
                cfg.dtype
            ));
            let (mc, mq, dim) = (cfg.doc_vectors as usize, qs[1], cfg.dim as usize);
            (Vec::new(), q, coll.len(), mc, mq, dim)
        }
        (None, Some(_)) => {
            return Err(format!(
                "{} already holds a bench collection: pass --npy-dir with its queries.npy",
                root.display()
            )
            .into())
        }
        (Some(dir), None) => {
            let (d, ds) = crate::cli::npy::read(&dir.join("docs.npy"))?;
            let (q, qs) = crate::cli::npy::read(&dir.join("queries.npy"))?;
            let (&[n, mc, dim], &[_, mq, qd]) = (&ds[..], &qs[..]) else {
                return Err("docs.npy must be [N, M_c, D] and queries.npy [Q, M_q, D]"
                    .to_string()
                    .into());
            };
            if qd != dim {
                return Err(format!("queries have dim {qd}, documents {dim}").into());
            }
            (d, q, n, mc, mq, dim)
        }
        (None, None) => {
            let cfg =
                CollectionConfig::new(a.dim as u32, a.doc_vectors as u32, a.query_vectors as u32);
            let ladder: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
            let t = Instant::now();
            let spec = match a.profile.as_str() {
                "easy" => SynthSpec::new(a.docs, a.queries, a.dim, &ladder, a.seed),
                "hard" => SynthSpec::hard(a.docs, a.queries, a.dim, &ladder, a.seed),
                p => return Err(format!("--profile {p:?}: expected easy or hard").into()),
            };
            let d = generate(&spec);
            say(format!(
                "generated {} profile: {} docs x {} x {} in {:.1}s",
                a.profile,
                a.docs,
                a.doc_vectors,
                a.dim,
                t.elapsed().as_secs_f64()
            ));
            (
                d.docs,
                d.queries,
                a.docs,
                a.doc_vectors,
                a.query_vectors,
                a.dim,
            )
        }
    };
    let nq = (queries.len() / (mq * dim)).min(a.queries);
    if let Some(dir) = a.write_npy.as_ref().filter(|_| stored.is_none()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        write_npy(
            &dir.join("docs.npy"),
            &[n as u64, mc as u64, dim as u64],
            &docs,
        )?;
        write_npy(
            &dir.join("queries.npy"),
            &[nq as u64, mq as u64, dim as u64],
            &queries[..nq * mq * dim],
        )?;
    }
    let mut cfg = CollectionConfig::new(dim as u32, mc as u32, mq as u32);
    cfg.dtype = metavec_core::Dtype::parse(&a.dtype).map_err(|e| format!("--dtype: {e}"))?;
    cfg.candidates.index = metavec_core::config::CandidateIndex::parse(&a.candidate_index)
        .map_err(|e| format!("--candidate-index: {e}"))?;
    cfg.candidates.centroids = a.centroids.unwrap_or(0);
    cfg.candidates.index_vectors = a.index_vectors.unwrap_or(0);
    let budgets: Vec<Budget> = match &a.budgets {
        Some(s) => s
            .split(',')
            .map(|b| crate::cli::parse_budget(b).map(|b| Budget::new(b.r_q, b.r_c)))
            .collect::<Result<_, _>>()?,
        None => cfg.budgets.clone(),
    };

    let qrels = match &a.qrels {
        Some(p) => Some(read_qrels(p)?),
        None => None,
    };
    let data = Data {
        docs: &docs,
        queries: &queries,
        n,
        mq,
        dim,
        nq,
        per: mc * dim,
        qrels: qrels.as_ref(),
        truth_f32: stored.is_none() && (cfg.dtype != metavec_core::Dtype::F32 || qrels.is_some()),
    };
    let (coll, ingest, build) = match stored {
        Some(coll) => (coll, Duration::ZERO, Duration::ZERO),
        None => load(&engine, "bench", cfg.clone(), &data, a.json)?,
    };
    // A search checks a vector block's checksum the first time it touches it: every block is
    // checked once here, untimed, as the reference loads its array before it times anything.
    // Otherwise the first budget to reach a layout group pays for its blocks in its timed loop.
    coll.verify().map_err(|e| e.to_string())?;
    let info = coll.info();
    let seg_bytes: u64 = info.segments.iter().map(|s| s.file_bytes).sum();
    let index_bytes: u64 = info.segments.iter().map(|s| s.index_bytes).sum();
    let token_bytes = files_ending(&root, ".tok");
    let head = serde_json::json!({
        "docs": n, "dim": dim, "doc_vectors": mc, "query_vectors": mq, "queries": nq,
        "ingest_docs_per_s": (!ingest.is_zero()).then(|| (n as f64 / ingest.as_secs_f64()).round()),
        "build_s": (build.as_secs_f64() * 100.0).round() / 100.0,
        "segment_bytes": seg_bytes, "index_bytes": index_bytes, "token_index_bytes": token_bytes,
        "segments": info.segments.len(), "threads": rayon::current_num_threads(),
    });
    if a.json {
        outln!("{head}");
    } else {
        outln!(
            "{n} docs x {mc} x {dim} ({}): {}, {} segments {} MB, HNSW {} MB, token index {} MB ({} B/doc), {} threads",
            coll.config().dtype,
            if ingest.is_zero() {
                "stored collection reused".to_string()
            } else {
                format!(
                    "ingest {:.0} docs/s, build (segment + HNSW) {:.1} s",
                    n as f64 / ingest.as_secs_f64(),
                    build.as_secs_f64()
                )
            },
            info.segments.len(),
            seg_bytes / 1_000_000,
            (index_bytes - token_bytes) / 1_000_000,
            token_bytes / 1_000_000,
            token_bytes / n.max(1) as u64,
            rayon::current_num_threads()
        );
    }

    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &b in &budgets {
        let row = measure(&coll, &data, b, &a, &one, "grouped", &[], false)?;
        print_row(&row, rows.is_empty(), a.json)?;
        rows.push(row);
    }
    let mut v0_rows = Vec::new();
    if a.vector0 {
        if !a.json {
            outln!("vector-0 candidates only (the HNSW walk), same collection and queries");
        }
        for &b in &budgets {
            let row = measure(&coll, &data, b, &a, &one, "grouped", &[], true)?;
            print_row(&row, v0_rows.is_empty(), a.json)?;
            v0_rows.push(row);
        }
    }
    if let Some(keep) = a.cascade {
        if !a.json {
            outln!(
                "cascade: each budget after the largest trained budget below it, keeping {keep}"
            );
        }
        let trained = coll.config().budgets.clone();
        let mut header = true;
        for &b in &budgets {
            let Some(&below) = trained
                .iter()
                .filter(|p| p.r_q <= b.r_q && p.r_c <= b.r_c && **p != b)
                .max_by_key(|p| (p.r_c, p.r_q))
            else {
                continue;
            };
            let stages = [metavec_core::search::Stage {
                budget: below,
                keep: keep.max(a.k),
            }];
            let row = measure(&coll, &data, b, &a, &one, "grouped", &stages, false)?;
            print_row(&row, header, a.json)?;
            header = false;
        }
    }
    if let Some(path) = &a.plot {
        plot(path, &rows, &v0_rows)?;
    }
    if let Some(prefix) = &a.roofline {
        let points: Vec<crate::roofline::Point> = rows
            .iter()
            .map(|r| crate::roofline::Point {
                budget: r.budget.clone(),
                r_c: r
                    .budget
                    .split_once('x')
                    .and_then(|(_, c)| c.parse().ok())
                    .unwrap_or(1),
                dtype: r.dtype,
                candidates: r.docs_scored_per_query,
                dots: r.dot_products_per_query,
                bytes: r.vector_bytes_per_query,
                rerank_ms: r.rerank_p50_ms,
            })
            .collect();
        crate::roofline::report(&points, dim, &root, Some(prefix), a.json)?;
    }
    if a.no_baseline {
        return Ok(());
    }
    // The same engine and data with one group of all M_c vectors per document (trained budgets
    // reduced to (M_q, M_c)): the per-document contiguous layout the grouped one is measured
    // against. Searches at the smaller budgets read the same rows, from a different layout.
    engine
        .delete_collection("bench")
        .map_err(|e| e.to_string())?;
    drop(coll);
    let mut flat = cfg.clone();
    flat.budgets = vec![Budget::new(mq as u32, mc as u32)];
    let (coll, _, _) = load(&engine, "bench-contiguous", flat, &data, a.json)?;
    coll.verify().map_err(|e| e.to_string())?;
    if !a.json {
        outln!("baseline: the same engine with a per-document contiguous layout");
    }
    for (i, &b) in budgets.iter().enumerate() {
        let row = measure(&coll, &data, b, &a, &one, "contiguous", &[], false)?;
        print_row(&row, i == 0, a.json)?;
    }
    Ok(())
}

/// Total bytes of the files under `dir` whose names end with `suffix`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_ending(&p, suffix)
            } else if p.to_string_lossy().ends_with(suffix) {
                e.metadata().map_or(0, |m| m.len())
            } else {
                0
            }
        })
        .sum()
}

/// The data set and the query rows to time.
struct Data<'a> {
    docs: &'a [f32],
    queries: &'a [f32],
    n: usize,
    mq: usize,
    dim: usize,
    nq: usize,
    /// Values per document (M_c * D).
    per: usize,
    qrels: Option<&'a Qrels>,
    /// Whether to compute the exact f32 ranking by brute force (compact dtype or qrels).
    truth_f32: bool,
}

/// query -> doc -> grade.
type Qrels = std::collections::HashMap<usize, std::collections::HashMap<usize, f64>>;

fn read_qrels(path: &std::path::Path) -> Result<Qrels, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Qrels::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || {
            format!(
                "{}:{}: expected query_idx doc_idx grade",
                path.display(),
                n + 1
            )
        };
        let [q, d, g] = f[..] else { return Err(bad()) };
        let (q, d, g) = (
            q.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
            g.parse::<f64>().map_err(|_| bad())?,
        );
        out.entry(q).or_default().insert(d, g);
    }
    Ok(out)
}

/// nDCG@k of a ranking of document indices against graded judgements.
fn ndcg(ranked: &[usize], judged: Option<&std::collections::HashMap<usize, f64>>, k: usize) -> f64 {
    let Some(judged) = judged else { return 0.0 };
    let gain = |g: f64, r: usize| (2f64.powf(g) - 1.0) / ((r + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(r, d)| gain(judged.get(d).copied().unwrap_or(0.0), r))
        .sum();
    let mut ideal: Vec<f64> = judged.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(r, &g)| gain(g, r))
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// The exact f32 top `k` of every timed query at budget `b`, by brute force over the raw data
/// (rows normalised the way the engine stores them), on all threads.
fn f32_truth(d: &Data<'_>, b: Budget, k: usize) -> Vec<Vec<usize>> {
    let (rq, rc, dim) = (b.r_q as usize, b.r_c as usize, d.dim);
    let kern = metavec_core::score::kernel();
    let norm = |v: &[f32]| {
        let mut v = v.to_vec();
        let _ = metavec_core::document::normalize_rows(&mut v, dim, "bench");
        v
    };
    (0..d.nq)
        .into_par_iter()
        .map(|qi| {
            let q = norm(&d.queries[qi * d.mq * dim..(qi * d.mq + rq) * dim]);
            let mut maxes = vec![0f32; rq];
            let mut scored: Vec<(f32, usize)> = (0..d.n)
                .map(|i| {
                    let doc = norm(&d.docs[i * d.per..i * d.per + rc * dim]);
                    maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                    (kern.update)(&q, rq, dim, &doc, &mut maxes);
                    (maxes.iter().sum(), i)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(k).map(|(_, i)| i).collect()
        })
        .collect()
}

/// Creates collection `name`, ingests every document in batches of 500 and seals them into one
/// segment. Returns the collection, the ingest time and the flush (segment + HNSW) time.
fn load(
    engine: &Engine,
    name: &str,
    cfg: CollectionConfig,
    d: &Data<'_>,
    quiet: bool,
) -> Result<(Arc<Collection>, Duration, Duration), String> {
    let coll = engine
        .create_collection(name, cfg)
        .map_err(|e| e.to_string())?;
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(d.n as u64)
    };
    let t = Instant::now();
    for start in (0..d.n).step_by(500) {
        let end = (start + 500).min(d.n);
        let batch = (start..end)
            .map(|i| Document::new(format!("{i}"), d.docs[i * d.per..(i + 1) * d.per].to_vec()))
            .collect();
        coll.upsert(batch).map_err(|e| e.to_string())?;
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    let ingest = t.elapsed();
    let t = Instant::now();
    coll.flush().map_err(|e| e.to_string())?;
    Ok((coll, ingest, t.elapsed()))
}

/// Milliseconds to three decimals.
fn ms(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// Times budget `b` on `coll`: one thread, all threads, then the exact scan (recall truth).
#[allow(clippy::too_many_arguments)]
fn measure(
    coll: &Collection,
    d: &Data<'_>,
    b: Budget,
    a: &BenchArgs,
    one: &rayon::ThreadPool,
    layout: &'static str,
    stages: &[metavec_core::search::Stage],
    vector0: bool,
) -> Result<Row, String> {
    let (mq, dim) = (d.mq, d.dim);
    let reqs: Vec<SearchRequest> = (0..d.nq)
        .map(|i| {
            let mut r = SearchRequest::new(
                d.queries[i * mq * dim..(i * mq + b.r_q as usize) * dim].to_vec(),
                b,
                a.k,
            );
            r.candidates = a.candidates;
            r.nprobe = a.nprobe;
            if vector0 {
                r.candidate_index = Some(metavec_core::config::CandidateIndex::Vector0);
            }
            r.allow_untrained_budget = true;
            r.stages = stages.to_vec();
            r
        })
        .collect();
    let search = |r: &SearchRequest| coll.search(r).map_err(|e| e.to_string());
    // The truth: every live document scored at the budget, in one stage.
    let exact = |r: &SearchRequest| {
        let mut e = r.clone().exact();
        e.stages.clear();
        e
    };
    // Warm up, then time on one thread. One exact search touches every vector block this
    // budget reads (first touches map the pages and check the block crcs), so the timings
    // below are the steady state of a serving process, as for the in-RAM reference pipeline.
    if let Some(r) = reqs.first() {
        one.install(|| search(&exact(r)))?;
    }
    for r in reqs.iter().take(5) {
        one.install(|| search(r))?;
    }
    let nq = reqs.len().max(1);
    // MV_BENCH_REPEAT=N runs the timed loop N - 1 more times first, untimed: for a profiler
    // (`perf record`), so that the plain searches outweigh the exact scans of the recall truth.
    let repeat: usize = std::env::var("MV_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 1..repeat {
        one.install(|| reqs.iter().try_for_each(|r| search(r).map(|_| ())))?;
    }
    // The timed loop runs on the pool's one thread as a whole, as the reference's runs on its
    // own: a query's time is its work, not a hand-off to the pool and back.
    let (mut lat, results, total) = one.install(|| -> Result<_, String> {
        let mut lat = Vec::with_capacity(nq);
        let mut results = Vec::with_capacity(nq);
        let t = Instant::now();
        for r in &reqs {
            let t = Instant::now();
            results.push(search(r)?);
            lat.push(t.elapsed());
        }
        Ok((lat, results, t.elapsed()))
    })?;
    let qps1 = nq as f64 / total.as_secs_f64();
    let t = Instant::now();
    reqs.par_iter().map(search).collect::<Result<Vec<_>, _>>()?;
    let qps_all = nq as f64 / t.elapsed().as_secs_f64();
    // Distinct pages in an untimed pass (counting them costs a sort per query).
    let mut pages = 0;
    for r in &reqs {
        let mut r = r.clone();
        r.count_pages = true;
        pages += one.install(|| search(&r))?.stats.vector_pages;
    }
    // The exact scan reads the same pages for every query: count them once, untimed.
    let exact_pages = match reqs.first() {
        Some(r) => {
            let mut counted = exact(r);
            counted.count_pages = true;
            one.install(|| search(&counted))?.stats.vector_pages * nq as u64
        }
        None => 0,
    };
    let t = Instant::now();
    let mut recall = 0.0;
    let mut exact_tops = Vec::with_capacity(nq);
    for (r, got) in reqs.iter().zip(&results) {
        let truth = one.install(|| search(&exact(r)))?;
        recall += truth
            .hits
            .iter()
            .filter(|h| got.hits.iter().any(|x| x.id == h.id))
            .count() as f64
            / truth.hits.len().max(1) as f64;
        exact_tops.push(
            truth
                .hits
                .iter()
                .filter_map(|h| h.id.parse::<usize>().ok())
                .collect::<Vec<_>>(),
        );
    }
    let exact_qps = nq as f64 / t.elapsed().as_secs_f64();
    let dtype = coll.config().dtype;
    let f32_tops = d.truth_f32.then(|| f32_truth(d, b, a.k as usize));
    let round4 = |x: f64| (x * 1e4).round() / 1e4;
    let search_tops: Vec<Vec<usize>> = results
        .iter()
        .map(|r| {
            r.hits
                .iter()
                .filter_map(|h| h.id.parse::<usize>().ok())
                .collect()
        })
        .collect();
    let recall_vs = |tops: &[Vec<usize>], truth: &[Vec<usize>]| {
        let hit: f64 = tops
            .iter()
            .zip(truth)
            .map(|(g, t)| t.iter().filter(|i| g.contains(i)).count() as f64 / t.len().max(1) as f64)
            .sum();
        round4(hit / nq as f64)
    };
    let compact_truth = f32_tops.as_ref().filter(|_| dtype != Dtype::F32);
    let exact_recall_vs_f32 = compact_truth.map(|f| recall_vs(&exact_tops, f));
    let search_recall_vs_f32 = compact_truth.map(|f| recall_vs(&search_tops, f));
    let mean_ndcg = |tops: &[Vec<usize>]| {
        d.qrels.map(|q| {
            round4(
                tops.iter()
                    .enumerate()
                    .map(|(qi, t)| ndcg(t, q.get(&qi), 10))
                    .sum::<f64>()
                    / nq as f64,
            )
        })
    };
    let ndcg_at_10 = mean_ndcg(&exact_tops);
    let ndcg_at_10_search = mean_ndcg(&search_tops);
    let ndcg_at_10_f32 = f32_tops.as_deref().and_then(mean_ndcg);
    let per_query = |f: &dyn Fn(&SearchStats) -> u64| {
        results.iter().map(|r| f(&r.stats)).sum::<u64>() / nq as u64
    };
    let mut cand: Vec<Duration> = results.iter().map(|r| r.stats.candidate_time).collect();
    let mut rerank: Vec<Duration> = results.iter().map(|r| r.stats.rerank_time).collect();
    Ok(Row {
        layout,
        budget: format!("{}x{}", b.r_q, b.r_c),
        candidates_from: if vector0 { "vector0" } else { "default" },
        candidates_per_query: per_query(&|s| s.candidates),
        docs_scored_per_query: per_query(&|s| s.docs_scored),
        stage: stages
            .first()
            .map(|s| format!("{}x{}:{}", s.budget.r_q, s.budget.r_c, s.keep)),
        qps_1_thread: qps1.round(),
        qps_all_threads: qps_all.round(),
        p50_ms: ms(pct(&mut lat, 0.5)),
        p99_ms: ms(pct(&mut lat, 0.99)),
        candidate_p50_ms: ms(pct(&mut cand, 0.5)),
        rerank_p50_ms: ms(pct(&mut rerank, 0.5)),
        recall_at_10: (recall / nq as f64 * 1000.0).round() / 1000.0,
        vector_bytes_per_query: per_query(&|s| s.vector_bytes_read),
        vector_pages_per_query: pages / nq as u64,
        dot_products_per_query: per_query(&|s| s.dot_products),
        exact_qps_1_thread: (exact_qps * 10.0).round() / 10.0,
        exact_pages_per_query: exact_pages / nq as u64,
        speedup_vs_exact: ((qps1 / exact_qps) * 10.0).round() / 10.0,
        dtype: dtype.name(),
        exact_recall_vs_f32,
        search_recall_vs_f32,
        ndcg_at_10,
        ndcg_at_10_search,
        ndcg_at_10_f32,
    })
}

fn print_row(row: &Row, header: bool, json: bool) -> CliResult {
    if json {
        outln!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
        return Ok(());
    }
    if header {
        outln!(
            "{:<8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>7} {:>12} {:>9} {:>11} {:>10} {:>11} {:>8}",
            "budget",
            "cands",
            "QPS(1t)",
            "QPS(all)",
            "p50 ms",
            "p99 ms",
            "cand ms",
            "rerank ms",
            "recall",
            "bytes/query",
            "pages/q",
            "dots/query",
            "exact QPS",
            "exact pg/q",
            "speedup"
        );
    }
    outln!(
        "{:<8} {:>7} {:>9} {:>9} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>7.3} {:>12} {:>9} {:>11} {:>10} {:>11} {:>7}x",
        row.budget,
        row.candidates_per_query,
        row.qps_1_thread,
        row.qps_all_threads,
        row.p50_ms,
        row.p99_ms,
        row.candidate_p50_ms,
        row.rerank_p50_ms,
        row.recall_at_10,
        row.vector_bytes_per_query,
        row.vector_pages_per_query,
        row.dot_products_per_query,
        row.exact_qps_1_thread,
        row.exact_pages_per_query,
        row.speedup_vs_exact
    );
    let mut quality = Vec::new();
    if let Some(st) = &row.stage {
        let (b, keep) = st.split_once(':').unwrap_or((st, ""));
        quality.push(format!("cascade: {b} keeping {keep}, then {}", row.budget));
    }
    if let Some(r) = row.exact_recall_vs_f32 {
        quality.push(format!("{} exact recall@10 vs f32 exact {r:.4}", row.dtype));
    }
    if let Some(r) = row.search_recall_vs_f32 {
        quality.push(format!("search recall@10 vs f32 exact {r:.4}"));
    }
    if let Some(n) = row.ndcg_at_10_search {
        quality.push(format!("nDCG@10 search {n:.4}"));
    }
    if let Some(n) = row.ndcg_at_10 {
        quality.push(format!("exact {n:.4}"));
    }
    if let Some(n) = row.ndcg_at_10_f32 {
        quality.push(format!("f32 exact {n:.4}"));
    }
    if !quality.is_empty() {
        outln!("         {}", quality.join(", "));
    }
    Ok(())
}

/// Recall@10 against p50 latency, one point per budget: the default candidate stage in blue,
/// vector-0 candidates (with --vector0) in red.
/// Where each point's label goes: beside its point, on the first side whose box overlaps no label
/// placed before it and no other point (labels are ~7 px a character, 14 px tall); `None` when
/// every side is taken (the point is then left unlabelled rather than overprinted).
fn place_labels(points: &[(i32, i32, String)]) -> Vec<Option<(i32, i32)>> {
    type Box = (i32, i32, i32, i32);
    let overlaps = |a: &Box, b: &Box| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let mut taken: Vec<Box> = points
        .iter()
        .map(|&(x, y, _)| (x - 5, y - 5, x + 5, y + 5))
        .collect();
    points
        .iter()
        .map(|(x, y, text)| {
            let w = 7 * text.chars().count() as i32;
            let sides = [
                (6, -16),
                (6, 2),
                (-w - 6, -16),
                (-w - 6, 2),
                (6, -30),
                (6, 16),
                (-w / 2, -32),
                (-w / 2, 10),
            ];
            sides.iter().find_map(|&(dx, dy)| {
                let bx: Box = (x + dx, y + dy, x + dx + w, y + dy + 14);
                let own = (x - 5, y - 5, x + 5, y + 5);
                let clear = taken.iter().all(|t| *t == own || !overlaps(t, &bx));
                clear.then(|| {
                    taken.push(bx);
                    (dx, dy)
                })
            })
        })
        .collect()
}

/// The quality-latency curve: recall@10 against the exact scan and, with --qrels, nDCG@10 of
/// the returned ranking, each against the median latency per budget, for the default candidates
/// and (with --vector0) vector-0 candidates. Written as SVG to `path` and as PNG beside it.
fn plot(path: &std::path::Path, rows: &[Row], v0: &[Row]) -> Result<(), String> {
    use plotters::prelude::*;
    let with_ndcg = rows.iter().chain(v0).any(|r| r.ndcg_at_10_search.is_some());
    /// A panel: its quality measure's name and how to read it off a row.
    type Panel = (&'static str, fn(&Row) -> Option<f64>);
    let panels: Vec<Panel> = if with_ndcg {
        vec![
            ("recall@10 vs exact", |r| Some(r.recall_at_10)),
            ("nDCG@10 of the returned ranking", |r| r.ndcg_at_10_search),
        ]
    } else {
        vec![("recall@10 vs exact", |r| Some(r.recall_at_10))]
    };
    let width = 720 * panels.len() as u32;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len()));
        let all = || rows.iter().chain(v0);
        let xmax = all().map(|r| r.p50_ms).fold(0.0, f64::max) * 1.2 + 0.01;
        for (area, (what, value)) in areas.iter().zip(&panels) {
            let ys: Vec<f64> = all().filter_map(value).collect();
            let ymin = ys.iter().copied().fold(1.0, f64::min).min(0.9) - 0.03;
            let ymax = ys.iter().copied().fold(0.0, f64::max).max(1.0) + 0.02;
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("metavec: {what} vs p50 latency"),
                    ("sans-serif", 18),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..xmax, ymin..ymax)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("p50 latency (ms, 1 thread)")
                .y_desc(*what)
                .draw()
                .map_err(|e| e.to_string())?;
            let mut labelled = Vec::new();
            for (series, color, name) in [
                (rows, BLUE, "default candidates"),
                (v0, RED, "vector-0 candidates"),
            ] {
                let pts: Vec<(f64, f64, String)> = series
                    .iter()
                    .filter_map(|r| value(r).map(|y| (r.p50_ms, y, r.budget.clone())))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), &color))
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
                chart
                    .draw_series(
                        pts.iter()
                            .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
                    )
                    .map_err(|e| e.to_string())?;
                labelled.extend(pts.into_iter().map(|p| (p, color)));
            }
            let at: Vec<(i32, i32, String)> = labelled
                .iter()
                .map(|((x, y, t), _)| {
                    let (px, py) = chart.backend_coord(&(*x, *y));
                    (px, py, t.clone())
                })
                .collect();
            let places = place_labels(&at);
            chart
                .draw_series(
                    labelled
                        .iter()
                        .zip(places)
                        .filter_map(|(((x, y, t), c), off)| {
                            off.map(|off| {
                                EmptyElement::at((*x, *y))
                                    + Text::new(
                                        t.clone(),
                                        off,
                                        ("sans-serif", 13).into_font().color(c),
                                    )
                            })
                        }),
                )
                .map_err(|e| e.to_string())?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let prefix = path.with_extension("");
    crate::scale::report::write_svg_png(&prefix, &text)
}

#[cfg(test)]
mod tests {
    /// Labels of crowded points never overprint one another or another point.
    #[test]
    fn labels_do_not_overlap() {
        let pts: Vec<(i32, i32, String)> = (0..12)
            .map(|i| (100 + 3 * i, 200 - 2 * i, format!("{i}x{}", 4 * i)))
            .collect();
        let places = super::place_labels(&pts);
        let boxes: Vec<(i32, i32, i32, i32)> = pts
            .iter()
            .zip(&places)
            .filter_map(|((x, y, t), p)| {
                p.map(|(dx, dy)| (x + dx, y + dy, x + dx + 7 * t.len() as i32, y + dy + 14))
            })
            .collect();
        assert!(boxes.len() >= 6, "most points keep a label: {places:?}");
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(
                    !(a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3),
                    "{a:?} {b:?}"
                );
            }
            for (x, y, _) in &pts {
                let p = (x - 5, y - 5, x + 5, y + 5);
                assert!(
                    !(a.0 < p.2 && p.0 < a.2 && a.1 < p.3 && p.1 < a.3),
                    "{a:?} on {p:?}"
                );
            }
        }
    }
}
