use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    for row in v.chunks_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn brute(v: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<usize> {
    let mut s: Vec<(usize, f32)> = v
        .chunks(dim)
        .enumerate()
        .map(|(i, r)| (i, crate::score::dot_scalar(r, q)))
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.into_iter().take(k).map(|x| x.0).collect()
}

const P: HnswParams = HnswParams {
    m: 16,
    ef_construction: 100,
};

fn all(_: usize) -> bool {
    true
}

/// A selective filter decides what enters the results, not where the walk goes: with 2% of the
/// ids allowed the walk still finds the allowed ids nearest to the query.
#[test]
fn selective_filter_keeps_recall_and_unfiltered_walk_matches_filtered_all() {
    let dim = 32;
    let v = unit_vectors(3_000, dim, 11);
    let qs = unit_vectors(20, dim, 12);
    let idx = VectorIndex::build(&v, dim, P);
    let rare = |i: usize| i % 50 == 3;
    let allowed: Vec<f32> = v
        .chunks(dim)
        .enumerate()
        .filter(|(i, _)| rare(*i))
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    let ids: Vec<usize> = (0..3_000).filter(|&i| rare(i)).collect();
    let (mut hit, mut total) = (0, 0);
    for q in qs.chunks(dim) {
        assert_eq!(idx.search(q, 10, 80, &all), idx.search_all(q, 10, 80));
        let got: Vec<usize> = idx.search(q, 10, 200, &rare).iter().map(|x| x.0).collect();
        assert!(got.iter().all(|&i| rare(i)), "a filtered-out id came back");
        let want: Vec<usize> = brute(&allowed, dim, q, 10)
            .iter()
            .map(|&j| ids[j])
            .collect();
        hit += want.iter().filter(|i| got.contains(i)).count();
        total += want.len();
    }
    let recall = hit as f64 / total as f64;
    assert!(recall >= 0.9, "recall {recall} with 2% of ids allowed");
}

#[test]
fn recall_save_load_and_filter() {
    let dim = 32;
    let v = unit_vectors(2_000, dim, 1);
    let qs = unit_vectors(20, dim, 2);
    let idx = VectorIndex::build(&v, dim, P);
    assert_eq!(idx.len(), 2_000);
    let mut hit = 0;
    for q in qs.chunks(dim) {
        let res = idx.search(q, 10, 64, &all);
        assert_eq!(res.len(), 10);
        assert!(res.windows(2).all(|w| w[0].1 >= w[1].1), "not best first");
        let got: Vec<usize> = res.iter().map(|x| x.0).collect();
        hit += brute(&v, dim, q, 10)
            .iter()
            .filter(|i| got.contains(i))
            .count();
    }
    let recall = hit as f64 / 200.0;
    assert!(recall >= 0.9, "recall {recall}");

    let dir = tempfile::tempdir().unwrap();
    let files = idx.save(dir.path(), "seg-000001").unwrap();
    let want: Vec<PathBuf> = VectorIndex::file_names("seg-000001")
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    assert_eq!(files, want);
    assert!(files.iter().all(|f| f.is_file()));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["seg-000001.hnsw"]);

    let back = VectorIndex::load(dir.path(), "seg-000001", dim, 2_000).unwrap();
    assert_eq!(back.len(), 2_000);
    assert_eq!(back.byte_len(), idx.byte_len());
    for q in qs.chunks(dim) {
        assert_eq!(idx.search(q, 10, 64, &all), back.search(q, 10, 64, &all));
    }
    // The mapped graph is the file: saved again, it writes the same bytes.
    let again = back.save(dir.path(), "again").unwrap();
    assert_eq!(
        std::fs::read(&again[0]).unwrap(),
        std::fs::read(&files[0]).unwrap()
    );

    // The graph hnsw_rs dumped for segments written before the `.hnsw` file: read, frozen, and
    // walked alike (the same build parameters give the same graph up to insertion order, so
    // compare recall, not lists).
    let legacy = VectorIndex::write_legacy_dump(&v, dim, P, dir.path(), "old").unwrap();
    assert_eq!(legacy.len(), 2);
    let old = VectorIndex::load(dir.path(), "old", dim, 2_000).unwrap();
    let mut old_hit = 0;
    for q in qs.chunks(dim) {
        let got: Vec<usize> = old.search(q, 10, 64, &all).iter().map(|x| x.0).collect();
        old_hit += brute(&v, dim, q, 10)
            .iter()
            .filter(|i| got.contains(i))
            .count();
    }
    assert!(old_hit as f64 / 200.0 >= 0.9, "legacy recall {old_hit}/200");

    let even = |i: usize| i & 1 == 0;
    for g in [&idx, &back] {
        for q in qs.chunks(dim) {
            let r = g.search(q, 10, 64, &even);
            assert_eq!(r.len(), 10);
            assert!(r.iter().all(|(i, _)| i & 1 == 0));
        }
    }
    // Nothing allowed, or a single id allowed, with the narrowest search.
    for q in qs.chunks(dim) {
        assert!(back.search(q, 10, 0, &|_| false).is_empty());
        let one = back.search(q, 1, 0, &|i| i == 7);
        assert!(one.iter().all(|(i, _)| *i == 7));
    }

    assert!(VectorIndex::load(dir.path(), "seg-000001", dim + 1, 2_000).is_err());
    assert!(VectorIndex::load(dir.path(), "seg-000001", dim, 1_999).is_err());
    assert!(VectorIndex::load(dir.path(), "nope", dim, 10).is_err());
}

#[test]
fn tiny_and_degenerate_inputs() {
    let empty = VectorIndex::build(&[], 8, P);
    assert!(empty.is_empty());
    assert!(empty.search(&[0.0; 8], 5, 10, &all).is_empty());
    let dir = tempfile::tempdir().unwrap();
    assert!(empty.save(dir.path(), "e").unwrap().is_empty());
    assert!(VectorIndex::load(dir.path(), "e", 8, 0).unwrap().is_empty());
    assert!(VectorIndex::build(&[1.0; 8], 0, P).is_empty());

    let one = unit_vectors(1, 8, 3);
    let idx = VectorIndex::build(&one, 8, P);
    assert_eq!(idx.len(), 1);
    let r = idx.search(&one, 10, 0, &all);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, 0);
    assert!(
        (r[0].1 - 1.0).abs() < 1e-2,
        "the walk scores on its int8 copy"
    );
    assert!(idx.search(&one, 0, 10, &all).is_empty());
    assert!(idx.search(&one, 1, 10, &|_| false).is_empty());
    assert!(idx.search(&one[..7], 1, 10, &all).is_empty(), "wrong dim");
    idx.save(dir.path(), "one").unwrap();
    let back = VectorIndex::load(dir.path(), "one", 8, 1).unwrap();
    assert_eq!(back.search(&one, 3, 3, &all), r);

    // Extreme build parameters are clamped rather than hitting hnsw_rs's exit/u8 limits.
    let v = unit_vectors(40, 8, 4);
    for m in [0, 1, 256, 10_000] {
        let g = VectorIndex::build(
            &v,
            8,
            HnswParams {
                m,
                ef_construction: 0,
            },
        );
        // (With m = 2 and ef_construction = 1 the graph is too poor to promise the exact match.)
        assert_eq!(g.search(&v[..8], 1, 16, &all).len(), 1);
        let name = format!("m{m}");
        g.save(dir.path(), &name).unwrap();
        VectorIndex::load(dir.path(), &name, 8, 40).unwrap();
    }
}

#[test]
fn distance_is_never_negative_or_nan() {
    let v = unit_vectors(200, 32, 9);
    for a in v.chunks(32) {
        let d = UnitDot.eval(a, a);
        assert!((0.0..1e-5).contains(&d), "{d}");
        // Scaled a hair above unit length: the dot exceeds 1, the distance clamps to 0.
        let b: Vec<f32> = a.iter().map(|x| x * 1.0001).collect();
        assert_eq!(UnitDot.eval(a, &b), 0.0);
    }
    let nan = [f32::NAN; 32];
    let inf = [f32::INFINITY; 32];
    for x in [&nan, &inf] {
        let d = UnitDot.eval(x, &v[..32]);
        assert!(d >= 0.0, "{d}");
    }
    // Garbage queries do not trip hnsw_rs's distance asserts.
    let idx = VectorIndex::build(&v, 32, P);
    let _ = idx.search(&nan, 5, 10, &all);
    let _ = idx.search(&inf, 5, 10, &all);
    let _ = idx.search(&[0.0; 32], 5, 10, &all);
}

#[test]
fn unit_dot_keeps_its_recorded_name() {
    // hnsw_rs records this in every dump and load_hnsw_with_dist compares it verbatim.
    assert_eq!(
        std::any::type_name::<UnitDot>(),
        "metavec_core::index::UnitDot"
    );
}

#[test]
fn garbage_files_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in VectorIndex::legacy_file_names("bad") {
        std::fs::write(dir.path().join(name), b"definitely not an hnsw dump").unwrap();
    }
    assert!(VectorIndex::load(dir.path(), "bad", 8, 10).is_err());
    std::fs::write(dir.path().join("bad.hnsw"), b"not a graph file either").unwrap();
    let e = VectorIndex::load(dir.path(), "bad", 8, 10).unwrap_err();
    assert!(
        matches!(e, crate::Error::Corruption { .. }) && e.to_string().contains("bad.hnsw"),
        "{e}"
    );
    // One of the two legacy files missing.
    let v = unit_vectors(10, 8, 5);
    VectorIndex::write_legacy_dump(&v, 8, P, dir.path(), "half").unwrap();
    std::fs::remove_file(dir.path().join("half.hnsw.data")).unwrap();
    assert!(VectorIndex::load(dir.path(), "half", 8, 10).is_err());
}

/// Every truncation and every single-byte corruption of `files` (copied under the basename
/// `x`) comes back as Ok (a corruption no check can notice, e.g. in a vector) or Err, never a
/// crash; a truncation is always an Err.
fn damage_never_crashes(
    dir: &Path,
    files: &[PathBuf],
    names: &[String],
    dim: usize,
    n: usize,
    v: &[f32],
) {
    for (which, src) in files.iter().enumerate() {
        for (src, dst) in files.iter().zip(names) {
            std::fs::copy(src, dir.join(dst)).unwrap();
        }
        let good = std::fs::read(src).unwrap();
        let target = dir.join(&names[which]);
        for cut in 0..good.len() {
            std::fs::write(&target, &good[..cut]).unwrap();
            assert!(
                VectorIndex::load(dir, "x", dim, n).is_err(),
                "file {which} cut at {cut}"
            );
        }
        for pos in 0..good.len() {
            let mut bad = good.clone();
            bad[pos] ^= 0xa5;
            std::fs::write(&target, &bad).unwrap();
            if let Ok(g) = VectorIndex::load(dir, "x", dim, n) {
                for q in v.chunks(dim) {
                    let _ = g.search(q, 5, 8, &all);
                }
            }
        }
        std::fs::remove_file(&target).unwrap();
    }
}

/// hnsw_rs's loader exits the process on a short `.hnsw.data`, aborts on huge counts and reads
/// out of bounds on short records; metavec's own graph file is range-checked at open.
#[test]
fn truncated_or_corrupted_graphs_never_crash() {
    let dim = 4;
    let n = 30;
    let v = unit_vectors(n, dim, 6);
    let params = HnswParams {
        m: 4,
        ef_construction: 16,
    };
    let dir = tempfile::tempdir().unwrap();
    let legacy = VectorIndex::write_legacy_dump(&v, dim, params, dir.path(), "old").unwrap();
    damage_never_crashes(
        dir.path(),
        &legacy,
        &VectorIndex::legacy_file_names("x"),
        dim,
        n,
        &v,
    );
    let idx = VectorIndex::build(&v, dim, params);
    let files = idx.save(dir.path(), "good").unwrap();
    damage_never_crashes(
        dir.path(),
        &files,
        &VectorIndex::file_names("x"),
        dim,
        n,
        &v,
    );
    for name in ["good", "old"] {
        let back = VectorIndex::load(dir.path(), name, dim, n).unwrap();
        assert_eq!(back.search(&v[..dim], 1, 8, &all)[0].0, 0);
    }
}

#[test]
fn save_into_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let idx = VectorIndex::build(&unit_vectors(10, 8, 7), 8, P);
    assert!(idx.save(&dir.path().join("no/such/dir"), "s").is_err());
}

#[test]
fn send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<VectorIndex>();
}
