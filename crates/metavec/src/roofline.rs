//! `metavec bench --roofline`: where each budget's rerank stands against the core's bounds,
//! measured in the same process (`metavec_core::score::roofline`).

use std::time::Duration;

use metavec_core::score::roofline::{self, Attained, ComputePeaks, GatherFile};

use crate::cli::{outln, CliResult};

/// One measured search row, as the roofline needs it.
pub struct Point {
    pub budget: String,
    pub r_c: u32,
    pub dtype: &'static str,
    pub candidates: u64,
    pub dots: u64,
    pub bytes: u64,
    pub rerank_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Line {
    roofline: bool,
    budget: String,
    dtype: &'static str,
    /// The instruction whose peak bounds it.
    peak: &'static str,
    peak_gflops: f64,
    /// Random reads of one candidate's rows (its bytes per query / candidates).
    block_bytes: u64,
    gather_gbps: f64,
    #[serde(flatten)]
    at: Attained,
}

/// Measures the bounds, prints one line per point against them (a table, or JSON lines), and
/// with `plot` writes PREFIX.svg and PREFIX.png.
pub fn report(
    points: &[Point],
    dim: usize,
    scratch: &std::path::Path,
    plot: Option<&std::path::Path>,
    json: bool,
) -> CliResult {
    let peaks = roofline::compute_peaks(Duration::from_millis(400));
    // Larger than the last-level cache by far, so the blocks come from memory, as a
    // collection's candidates do.
    let file = GatherFile::new(scratch, 1 << 30).map_err(|e| format!("roofline file: {e}"))?;
    if !json {
        let all: Vec<String> = peaks
            .all()
            .iter()
            .map(|(n, p)| format!("{n} {p:.1}"))
            .collect();
        outln!(
            "roofline (one core, kernel set {}): {} GFLOP/s (2 per multiply-add)",
            peaks.kernel,
            all.join(", ")
        );
        outln!(
            "{:<8} {:>5} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7}",
            "budget",
            "dtype",
            "peak",
            "block B",
            "read GB/s",
            "FLOP/B",
            "GFLOP/s",
            "GB/s",
            "bound",
            "by",
            "% bound"
        );
    }
    let mut lines = Vec::new();
    for p in points {
        let (peak_name, peak) = peak_of(&peaks, p);
        let block = p.bytes / p.candidates.max(1);
        let gbps = roofline::gather_gbps(&file, block as usize, Duration::from_millis(800), 7);
        let flop = 2.0 * p.dots as f64 * dim as f64;
        let at = roofline::attained(flop, p.bytes as f64, p.rerank_ms / 1e3, peak, gbps);
        let line = Line {
            roofline: true,
            budget: p.budget.clone(),
            dtype: p.dtype,
            peak: peak_name,
            peak_gflops: peak,
            block_bytes: block,
            gather_gbps: gbps,
            at,
        };
        if json {
            outln!(
                "{}",
                serde_json::to_string(&line).map_err(|e| e.to_string())?
            );
        } else {
            outln!(
                "{:<8} {:>5} {:>8} {:>9} {:>10.1} {:>9.2} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>6.0}%",
                line.budget,
                line.dtype,
                line.peak,
                line.block_bytes,
                line.gather_gbps,
                at.intensity,
                at.gflops,
                at.gbps,
                at.bound_gflops,
                at.bound_by,
                at.percent
            );
        }
        lines.push(line);
    }
    if let Some(prefix) = plot {
        let svg = svg(&peaks, &lines)?;
        crate::scale::report::write_svg_png(prefix, &svg)?;
    }
    Ok(())
}

/// The instruction that bounds a point: vector 0 is always f32 (an FMA), deeper rows use their
/// dtype's kernel.
fn peak_of(peaks: &ComputePeaks, p: &Point) -> (&'static str, f64) {
    match metavec_core::config::Dtype::parse(p.dtype) {
        Ok(d) if p.r_c > 1 => peaks.for_dtype(d),
        _ => ("vfmadd", peaks.fma_gflops),
    }
}

/// One colour per instruction, for its peak and the points it bounds.
fn color_of(peak: &str) -> plotters::style::RGBColor {
    use plotters::style::colors::*;
    match peak {
        "vpmaddwd" => RED,
        "vpdpwssd" => MAGENTA,
        "vdpbf16ps" => GREEN,
        _ => BLUE,
    }
}

/// The roofline on log-log axes: the compute peaks, the read bandwidth's slopes, and one point
/// per measured rerank joined to its own bound.
fn svg(peaks: &ComputePeaks, lines: &[Line]) -> Result<String, String> {
    use plotters::prelude::*;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top_peak = peaks.all().iter().map(|p| p.1).fold(0.0, f64::max);
        let top = top_peak * 2.0;
        let (x0, x1) = (0.05f64, 200.0f64);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "MaxSim rerank against the roofline (one core, {})",
                    peaks.kernel
                ),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((x0..x1).log_scale(), (0.1f64..top).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity (FLOP per byte read)")
            .y_desc("GFLOP/s")
            .draw()
            .map_err(|e| e.to_string())?;
        // Each point's memory bound uses the bandwidth measured at its own block size: the
        // slopes drawn are the slowest and the fastest of those, and each point is joined to a
        // hollow mark at its own bound.
        let bws = lines.iter().map(|l| l.gather_gbps);
        let (lo, hi) = (
            bws.clone().fold(f64::INFINITY, f64::min),
            bws.fold(0.0f64, f64::max),
        );
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (10.0, 10.0)
        };
        for (bw, style) in [(lo, BLACK.mix(0.5)), (hi, BLACK.mix(0.25))] {
            let knee = (top_peak / bw).clamp(x0, x1);
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, (x0 * bw).max(0.1)), (knee, top_peak)],
                    style,
                ))
                .map_err(|e| e.to_string())?
                .label(format!("read {bw:.1} GB/s (block size of a point)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        for (name, peak) in peaks.all() {
            let color = color_of(name);
            chart
                .draw_series(LineSeries::new(vec![(x0, peak), (x1, peak)], &color))
                .map_err(|e| e.to_string())?
                .label(format!("{name} peak {peak:.0} GFLOP/s"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .draw_series(lines.iter().map(|l| {
                let c = color_of(l.peak);
                let x = l.at.intensity.clamp(x0, x1);
                PathElement::new(
                    vec![(x, l.at.gflops.max(0.1)), (x, l.at.bound_gflops.max(0.1))],
                    c.mix(0.4),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(lines.iter().map(|l| {
                let c = color_of(l.peak);
                EmptyElement::at((l.at.intensity.clamp(x0, x1), l.at.bound_gflops.max(0.1)))
                    + Circle::new((0, 0), 5, c.stroke_width(1))
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(lines.iter().map(|l| {
                let c = color_of(l.peak);
                EmptyElement::at((l.at.intensity.clamp(x0, x1), l.at.gflops.max(0.1)))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(
                        format!("{} {} {:.0}%", l.budget, l.dtype, l.at.percent),
                        (6, -14),
                        ("sans-serif", 12),
                    )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
