//! How deep the default deep-budget path must go: on a stored bench collection (`metavec bench
//! --data-dir DD`), recall@10 against the exact top 10 at the budget (`gt_rq*_rc*_k10.npy` beside
//! the queries, as the reference pipeline writes them) and the median latency (one thread) of
//! token-index candidate settings (lists probed, candidates kept) with and without an exact
//! first stage at (4,8) keeping few. `nprobe auto` is the adaptive probe, `cands 0` the default
//! count.
//!
//! `cargo run --release -p metavec-core --example depth_study -- DATA_DIR NPY_DIR [queries]`

use std::path::Path;
use std::time::Instant;

use metavec_core::search::Stage;
use metavec_core::{Budget, Engine, EngineOptions, SearchRequest};

fn npy(path: &Path) -> (Vec<u8>, Vec<usize>, String) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let h = String::from_utf8_lossy(&b[10..10 + hl]).to_string();
    let shape: Vec<usize> = h
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let descr = h.split("'descr': '").nth(1).unwrap()[..3].to_string();
    (b[10 + hl..].to_vec(), shape, descr)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dd, nd) = (Path::new(&args[1]), Path::new(&args[2]));
    let nq_max: usize = args.get(3).map_or(100, |s| s.parse().unwrap());
    // One thread, as `metavec bench` and the reference time a query.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .unwrap();
    let engine = Engine::open(dd, EngineOptions::default()).unwrap();
    // `MV_COLLECTION=bench-contiguous`: the per-document baseline `metavec bench` also stores.
    let name = std::env::var("MV_COLLECTION").unwrap_or_else(|_| "bench".into());
    let coll = engine.collection(&name).unwrap();
    // Every block's checksum once, untimed (a search checks a block on first touch).
    coll.verify().unwrap();
    let (qb, qs, _) = npy(&nd.join("queries.npy"));
    let q: Vec<f32> = bytemuck_cast(&qb);
    let (mq, dim) = (qs[1], qs[2]);
    let nq = qs[0].min(nq_max);
    type Setting = (Option<u32>, u32, Option<u32>);
    let budgets: [(Budget, Vec<Setting>); 3] = [
        (
            Budget::new(1, 1),
            vec![
                (None, 0, None),
                (None, 64, None),
                (None, 128, None),
                (None, 200, None),
                (None, 320, None),
            ],
        ),
        (
            Budget::new(4, 8),
            vec![
                (None, 0, None),
                (None, 100, None),
                (None, 200, None),
                (Some(8), 100, None),
                (Some(16), 100, None),
                (Some(16), 200, None),
                (Some(32), 100, None),
                (Some(32), 200, None),
                (Some(64), 200, None),
                (None, 200, None),
                (None, 1000, None),
            ],
        ),
        (
            Budget::new(16, 64),
            vec![
                (None, 0, None),
                (None, 200, None),
                (None, 400, None),
                (Some(16), 200, None),
                (Some(16), 400, Some(50)),
                (Some(16), 400, Some(100)),
                (Some(32), 400, Some(50)),
                (Some(32), 400, Some(100)),
                (Some(32), 1000, Some(100)),
                (None, 1000, Some(50)),
                (None, 1000, Some(100)),
                (None, 1000, Some(200)),
                (None, 1000, None),
            ],
        ),
    ];
    // Optional: only settings whose line starts with this (e.g. "(4, 8) nprobe   16"), and
    // the timed pass repeated (for a profiler).
    let only = args.get(4).cloned();
    let repeat: usize = args.get(5).map_or(1, |s| s.parse().unwrap());
    for (b, settings) in budgets {
        if b.r_q as usize > mq {
            // The queries carry fewer vectors than this budget uses.
            continue;
        }
        let k = 10;
        // One exact search touches every block this budget reads: the timings below are a
        // serving process's steady state, as in `metavec bench`.
        let warm = SearchRequest::new(q[..b.r_q as usize * dim].to_vec(), b, 10).exact();
        coll.search(&warm).unwrap();
        let gt_path = nd.join(format!("gt_rq{}_rc{}_k10.npy", b.r_q, b.r_c));
        let mut gt: Vec<i64> = Vec::new();
        if gt_path.exists() {
            let (gb, _, descr) = npy(&gt_path);
            assert_eq!(descr, "<i8", "gt must be int64");
            gt = gb
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
        }
        if gt.len() < nq * k {
            // No reference truth: the exact scan's.
            gt = (0..nq)
                .flat_map(|i| {
                    let r = SearchRequest::new(
                        q[i * mq * dim..(i * mq + b.r_q as usize) * dim].to_vec(),
                        b,
                        k as u32,
                    )
                    .exact();
                    coll.search(&r)
                        .unwrap()
                        .hits
                        .iter()
                        .map(|h| h.id.parse::<i64>().unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            // Kept beside the queries (as the reference writes it) for the next run.
            let header =
                format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({nq}, {k}), }}");
            let mut header = header.into_bytes();
            while (10 + header.len() + 1) % 64 != 0 {
                header.push(b' ');
            }
            header.push(b'\n');
            let mut out = b"\x93NUMPY\x01\x00".to_vec();
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
            out.extend_from_slice(&header);
            for g in &gt {
                out.extend_from_slice(&g.to_le_bytes());
            }
            if let Err(e) = std::fs::write(&gt_path, out) {
                eprintln!("{}: {e}", gt_path.display());
            }
        }
        for (nprobe, cands, stage) in settings {
            let label = format!(
                "{b} nprobe {:>4} cands {cands:>5} stage(4x8) keep {:>5}",
                nprobe.map_or("auto".into(), |n| n.to_string()),
                stage.map_or("-".into(), |n| n.to_string()),
            );
            if only
                .as_ref()
                .is_some_and(|o| !label.starts_with(o.as_str()))
            {
                continue;
            }
            let reqs: Vec<SearchRequest> = (0..nq)
                .map(|i| {
                    let mut r = SearchRequest::new(
                        q[i * mq * dim..(i * mq + b.r_q as usize) * dim].to_vec(),
                        b,
                        k as u32,
                    );
                    r.allow_untrained_budget = true;
                    r.nprobe = nprobe;
                    r.candidates = (cands > 0).then_some(cands);
                    if let Some(keep) = stage {
                        r.stages = vec![Stage {
                            budget: Budget::new(4, 8),
                            keep,
                        }];
                    }
                    r
                })
                .collect();
            for r in reqs.iter().take(5) {
                coll.search(r).unwrap();
            }
            let mut lat = Vec::new();
            let mut recall = 0.0;
            let (mut cand_ms, mut rr_ms) = (Vec::new(), Vec::new());
            // `MV_EACH=n`: each query n times in a row (its rows then sit in the caches: the
            // rerank's arithmetic without its memory traffic).
            let each: usize = std::env::var("MV_EACH").map_or(1, |s| s.parse().unwrap());
            let order = reqs
                .iter()
                .enumerate()
                .flat_map(|x| std::iter::repeat_n(x, each));
            for (i, r) in order.cycle().take(nq * repeat * each) {
                let t = Instant::now();
                let res = coll.search(r).unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                cand_ms.push(res.stats.candidate_time.as_secs_f64() * 1e3);
                rr_ms.push(res.stats.rerank_time.as_secs_f64() * 1e3);
                let truth = &gt[i * k..(i + 1) * k];
                recall += truth
                    .iter()
                    .filter(|t| res.hits.iter().any(|h| h.id == t.to_string()))
                    .count() as f64
                    / k as f64;
            }
            let p50 = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            println!(
                "{label}: p50 {:.3} ms (cand {:.3}, rerank {:.3}) recall {:.3}",
                p50(&mut lat),
                p50(&mut cand_ms),
                p50(&mut rr_ms),
                recall / (nq * repeat) as f64
            );
        }
    }
}

fn bytemuck_cast(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
