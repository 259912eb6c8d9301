//! What `metavec bench scale` records at each checkpoint, and how it shows it: a table (or JSON
//! lines), `scale-results.jsonl`, and with `--plot` an SVG and a PNG of every series against
//! the document count.

use serde::{Deserialize, Serialize};

use crate::cli::{outln, CliResult};

/// One budget at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRow {
    /// "r_qxr_c".
    pub budget: String,
    /// Client-side latency of one Search RPC (k = 10, one at a time), over the query set.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The same searches' time inside the server (its `stats.total_us`): the engine without
    /// the network and gRPC framing.
    pub server_p50_ms: f64,
    pub server_p99_ms: f64,
    /// Recall@10 against the incremental exact ground truth.
    pub recall_at_10: f64,
    /// Overlap of the server's exact scan with the ground truth (top 10, over the first
    /// --check-exact queries): 1.0 when the truth models the stored values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_agreement: Option<f64>,
}

/// A restart of the bench itself (a resume) during an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// Documents acknowledged when the run resumed (sending went on from there).
    pub at_docs: usize,
    /// The server's open time on the existing data directory.
    pub restart_s: f64,
}

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub docs: usize,
    pub fraction: f64,
    /// Documents per second of ingest over the interval since the previous checkpoint (wall
    /// time of the Upsert streams only; measurements and restarts excluded).
    pub docs_per_s: f64,
    /// f32 payload MB/s sent over the interval (docs x M_c x D x 4 bytes).
    pub ingest_mb_s: f64,
    /// MB/s the server wrote over the interval (its write_bytes over the ingest time).
    pub write_mb_s: f64,
    /// The disk's sequential write bandwidth measured at the first start (MB/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_mb_s: Option<f64>,
    /// Cumulative f32 payload bytes of the documents acknowledged.
    pub sent_bytes: u64,
    /// Cumulative write_bytes of every server process so far (/proc/PID/io).
    pub written_bytes: u64,
    /// written_bytes / sent_bytes.
    pub write_amplification: f64,
    pub segments: usize,
    pub live_docs: u64,
    pub memtable_docs: u64,
    pub wal_bytes: u64,
    /// The server's anonymous resident memory, MB, once its flushes and merges went quiet (or
    /// after waiting `settle_s`), before the checkpoint's restart.
    pub rss_anon_mb: f64,
    /// RssAnon right after the checkpoint's searches, with flushes and merges still running.
    #[serde(default)]
    pub rss_anon_busy_mb: f64,
    /// Seconds waited for the maintenance threads to go quiet (capped; see `settled`).
    #[serde(default)]
    pub settle_s: f64,
    /// Whether they did within the cap.
    #[serde(default)]
    pub settled: bool,
    /// The memtable's share of that: its documents' f32 vectors (frozen run included), MB.
    #[serde(default)]
    pub memtable_mb: f64,
    /// RssAnon right after the restart that follows the checkpoint (kill -9, recovery, the
    /// memtable replayed from the WAL), MB.
    #[serde(default)]
    pub rss_anon_restart_mb: f64,
    /// Peak memory of the cgroup with --memory-limit-mb (page cache included), MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_peak_mb: Option<f64>,
    /// Bytes on disk under the server's data directory.
    pub disk_bytes: u64,
    /// Flushes and compactions so far (summed over server processes), with their total time.
    pub flushes: u64,
    pub flush_s: f64,
    pub compactions: u64,
    pub compaction_s: f64,
    pub budgets: Vec<BudgetRow>,
    /// kill -9 after measuring, then spawn until serving.
    pub recovery_s: f64,
    /// At the last checkpoint: SIGTERM, wait, then spawn until serving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_open_s: Option<f64>,
    /// Resumes of the bench during this interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<Resume>,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Prints `row` as a table line (and one line per budget), or as one JSON object.
pub fn print_row(row: &Row, header: bool, json: bool) -> CliResult {
    if json {
        outln!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
        return Ok(());
    }
    if header {
        outln!(
            "{:>9} {:>5} {:>8} {:>7} {:>7} {:>6} {:>5} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8}",
            "docs",
            "frac",
            "docs/s",
            "MB/s in",
            "MB/s wr",
            "WA",
            "segs",
            "live",
            "RSS MB",
            "disk MB",
            "flushes",
            "compacts",
            "recov s"
        );
    }
    outln!(
        "{:>9} {:>5.2} {:>8.0} {:>7.1} {:>7.1} {:>6.2} {:>5} {:>9} {:>8.0} {:>9.0} {:>8} {:>8} {:>8.2}",
        row.docs,
        row.fraction,
        row.docs_per_s,
        row.ingest_mb_s,
        row.write_mb_s,
        row.write_amplification,
        row.segments,
        row.live_docs,
        row.rss_anon_mb,
        mb(row.disk_bytes),
        row.flushes,
        row.compactions,
        row.recovery_s
    );
    let budgets: Vec<String> = row
        .budgets
        .iter()
        .map(|b| {
            format!(
                "{} p50 {:.2} p99 {:.2} ms (server {:.2}/{:.2}) recall {:.3}",
                b.budget, b.p50_ms, b.p99_ms, b.server_p50_ms, b.server_p99_ms, b.recall_at_10
            )
        })
        .collect();
    outln!("          {}", budgets.join(" | "));
    let mut notes = Vec::new();
    if let Some(d) = row.disk_mb_s {
        notes.push(format!("disk {d:.0} MB/s"));
    }
    if let Some(p) = row.cgroup_peak_mb {
        notes.push(format!("cgroup peak {p:.0} MB"));
    }
    let per_doc = |rss: f64| (rss - row.memtable_mb).max(0.0) * 1e6 / row.docs.max(1) as f64;
    notes.push(format!(
        "RssAnon less memtable {:.0} B/doc with builds running ({:.0} MB), {:.0} B/doc {} after {:.0} s, {:.0} B/doc after restart ({:.0} MB)",
        per_doc(row.rss_anon_busy_mb),
        row.rss_anon_busy_mb,
        per_doc(row.rss_anon_mb),
        if row.settled { "settled" } else { "still busy" },
        row.settle_s,
        per_doc(row.rss_anon_restart_mb),
        row.rss_anon_restart_mb
    ));
    notes.push(format!(
        "flush {:.1} s, compaction {:.1} s",
        row.flush_s, row.compaction_s
    ));
    let agree: Vec<String> = row
        .budgets
        .iter()
        .filter_map(|b| b.exact_agreement.map(|a| format!("{a:.2}")))
        .collect();
    if !agree.is_empty() {
        notes.push(format!("exact scan vs truth {}", agree.join("/")));
    }
    if let Some(c) = row.clean_open_s {
        notes.push(format!("clean open {c:.2} s"));
    }
    for r in &row.resumes {
        notes.push(format!(
            "resumed at {} (open {:.2} s)",
            r.at_docs, r.restart_s
        ));
    }
    outln!("          {}", notes.join(", "));
    Ok(())
}

/// Appends `row` to the JSON-lines file `path`.
pub fn append(path: &std::path::Path, row: &Row) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let line = serde_json::to_string(row).map_err(|e| e.to_string())?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// One panel: a title, a y label and named series of (docs, y).
struct Panel {
    title: &'static str,
    y: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

fn panels(rows: &[Row]) -> Vec<Panel> {
    let x = |r: &Row| r.docs as f64;
    let one = |name: &str, f: &dyn Fn(&Row) -> f64| {
        vec![(
            name.to_string(),
            rows.iter().map(|r| (x(r), f(r))).collect(),
        )]
    };
    let per_budget = |f: &dyn Fn(&BudgetRow) -> f64| {
        let names: Vec<String> = rows
            .first()
            .map(|r| r.budgets.iter().map(|b| b.budget.clone()).collect())
            .unwrap_or_default();
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let pts = rows
                    .iter()
                    .filter_map(|r| r.budgets.get(i).map(|b| (x(r), f(b))))
                    .collect();
                (n.clone(), pts)
            })
            .collect()
    };
    vec![
        Panel {
            title: "ingest",
            y: "docs/s",
            series: one("docs/s", &|r| r.docs_per_s),
        },
        Panel {
            title: "write amplification",
            y: "written / sent",
            series: one("WA", &|r| r.write_amplification),
        },
        Panel {
            title: "server RssAnon",
            y: "MB",
            series: one("RssAnon", &|r| r.rss_anon_mb),
        },
        Panel {
            title: "search p50 per budget",
            y: "ms",
            series: per_budget(&|b| b.p50_ms),
        },
        Panel {
            title: "search p50 inside the server",
            y: "ms",
            series: per_budget(&|b| b.server_p50_ms),
        },
        Panel {
            title: "recall@10 per budget",
            y: "recall@10",
            series: per_budget(&|b| b.recall_at_10),
        },
        Panel {
            title: "recovery after kill -9",
            y: "s",
            series: one("recovery", &|r| r.recovery_s),
        },
        Panel {
            title: "data directory on disk",
            y: "MB",
            series: one("disk", &|r| mb(r.disk_bytes)),
        },
        Panel {
            title: "segments",
            y: "count",
            series: one("segments", &|r| r.segments as f64),
        },
    ]
}

/// Draws every panel on one SVG (3 x 3), x = documents.
fn svg(rows: &[Row], total: usize, title: &str) -> Result<String, String> {
    use plotters::prelude::*;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1200, 1000)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        // The whole run on the x axis, so that a partial run shows how far it got.
        let xmax = total.max(1) as f64 * 1.02;
        let xfmt = |v: &f64| {
            if xmax >= 20_000.0 {
                format!("{:.0}k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        };
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (area, p) in root.split_evenly((3, 3)).iter().zip(panels(rows)) {
            let ys = p.series.iter().flat_map(|s| s.1.iter().map(|q| q.1));
            let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
            let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
            let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-3);
            let ymin = if lo >= 0.0 && lo - pad < 0.0 {
                0.0
            } else {
                lo - pad
            };
            let mut chart = ChartBuilder::on(area)
                .caption(p.title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..xmax, ymin..hi + pad)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("documents")
                .y_desc(p.y)
                .x_label_formatter(&xfmt)
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, pts)) in p.series.iter().enumerate() {
                let c = colors[i % colors.len()];
                // The points carry the legend (a line of one point is no line).
                chart
                    .draw_series(pts.iter().map(|&q| Circle::new(q, 3, c.filled())))
                    .map_err(|e| e.to_string())?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c));
                if pts.len() > 1 {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), &c))
                        .map_err(|e| e.to_string())?;
                }
            }
            if p.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 11))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Writes PREFIX.svg and PREFIX.png (the SVG rendered by resvg with the system's fonts).
pub fn plot(
    prefix: &std::path::Path,
    rows: &[Row],
    total: usize,
    title: &str,
) -> Result<(), String> {
    write_svg_png(prefix, &svg(rows, total, title)?)
}

/// Writes `text` as PREFIX.svg, and rendered by resvg with the system's fonts as PREFIX.png.
pub fn write_svg_png(prefix: &std::path::Path, text: &str) -> Result<(), String> {
    use resvg::{tiny_skia, usvg};
    let with_ext = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    let svg_path = with_ext(".svg");
    std::fs::write(&svg_path, text).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // plotters names "sans-serif"; fontdb maps it to Arial, often absent on a server.
    let family = ["Arial", "DejaVu Sans", "Liberation Sans", "Noto Sans"]
        .into_iter()
        .find(|f| {
            db.faces()
                .any(|face| face.families.iter().any(|(n, _)| n == f))
        })
        .or_else(|| {
            db.faces()
                .next()
                .and_then(|f| f.families.first())
                .map(|(n, _)| n.as_str())
        })
        .map(str::to_string);
    if let Some(f) = family {
        db.set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_str(text, &opt).map_err(|e| format!("plot: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("plot: empty image")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let png_path = with_ext(".png");
    pixmap
        .save_png(&png_path)
        .map_err(|e| format!("{}: {e}", png_path.display()))
}
