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

#[test]
fn recall_save_load_and_filter() {
    let dim = 32;
    let v = unit_vectors(2_000, dim, 1);
    let qs = unit_vectors(20, dim, 2);
    let idx = VectorIndex::build(&v, dim, P);
    assert_eq!(idx.len(), 2_000);
    let all = |_: usize| true;
    let mut hit = 0;
    for q in qs.chunks(dim) {
        let got: Vec<usize> = idx
            .search(q, 10, 64, &all)
            .into_iter()
            .map(|x| x.0)
            .collect();
        hit += brute(&v, dim, q, 10)
            .iter()
            .filter(|i| got.contains(i))
            .count();
    }
    assert!(hit as f64 / 200.0 >= 0.9, "recall {}", hit as f64 / 200.0);

    let dir = tempfile::tempdir().unwrap();
    let files = idx.save(dir.path(), "seg-1").unwrap();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.exists()));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    let back = VectorIndex::load(dir.path(), "seg-1", dim, 2_000).unwrap();
    for q in qs.chunks(dim) {
        assert_eq!(idx.search(q, 10, 64, &all), back.search(q, 10, 64, &all));
    }
    let even = |i: usize| i % 2 == 0;
    for q in qs.chunks(dim) {
        let r = back.search(q, 10, 64, &even);
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|(i, _)| i % 2 == 0));
    }
    assert!(VectorIndex::load(dir.path(), "seg-1", dim + 1, 2_000).is_err());
    assert!(VectorIndex::load(dir.path(), "seg-1", dim, 1_999).is_err());
    assert!(VectorIndex::load(dir.path(), "nope", dim, 10).is_err());
}

#[test]
fn tiny_and_degenerate_inputs() {
    let empty = VectorIndex::build(&[], 8, P);
    assert!(empty.is_empty());
    assert!(empty.search(&[0.0; 8], 5, 10, &|_| true).is_empty());
    let dir = tempfile::tempdir().unwrap();
    assert!(empty.save(dir.path(), "e").unwrap().is_empty());
    assert!(VectorIndex::load(dir.path(), "e", 8, 0).unwrap().is_empty());

    let one = unit_vectors(1, 8, 3);
    let idx = VectorIndex::build(&one, 8, P);
    let r = idx.search(&one, 10, 0, &|_| true);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, 0);
    assert!((r[0].1 - 1.0).abs() < 1e-5);
    assert!(idx.search(&one, 0, 10, &|_| true).is_empty());
    // Identical vectors never give a negative distance (the DistDot pitfall).
    assert!(UnitDot.eval(&one, &one) >= 0.0);
}

#[test]
fn garbage_files_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in VectorIndex::file_names("bad") {
        std::fs::write(dir.path().join(name), b"definitely not an hnsw dump").unwrap();
    }
    assert!(VectorIndex::load(dir.path(), "bad", 8, 10).is_err());
}

#[test]
fn send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<VectorIndex>();
}
