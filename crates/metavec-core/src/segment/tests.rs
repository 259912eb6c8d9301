use crate::config::Dtype;
use std::io::{Read, Seek, SeekFrom, Write};

use super::*;
use crate::collection::Run;
use crate::config::CollectionConfig;
use crate::synth::{generate, SynthSpec};
use crate::{Document, Error};

fn fixture(n: usize) -> (tempfile::TempDir, CollectionConfig, Run) {
    let cfg = CollectionConfig::new(16, 16, 8).with_dtype(Dtype::F32);
    let ladder: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
    let data = generate(&SynthSpec::new(n, 1, 16, &ladder, 3));
    let docs = (0..n)
        .map(|i| Document {
            id: format!("d{i}"),
            vectors: data.doc(i).to_vec(),
            payload: (i % 2 == 0).then(|| format!(r#"{{"i":{i}}}"#)),
        })
        .map(std::sync::Arc::new)
        .collect();
    (tempfile::tempdir().unwrap(), cfg, Run { docs, dim: 16 })
}

#[test]
fn prefix_reads_only_the_groups_below_r_c() {
    let (dir, cfg, run) = fixture(300);
    let built = build_segment(dir.path(), 1, &cfg, &run).unwrap();
    assert_eq!(built.n_docs, 300);
    let seg = Segment::open(dir.path(), 1, &cfg).unwrap();
    assert_eq!(seg.len(), 300);
    assert_eq!(seg.payload(2), Some(r#"{"i":2}"#));
    assert_eq!(seg.payload(1), None);
    let mut parts = Vec::new();
    for r_c in [1usize, 4, 8, 16, 5] {
        let bytes = seg.prefix(123, r_c, &mut parts).unwrap();
        assert_eq!(bytes, (r_c * 16 * 4) as u64);
        let mut got = Vec::new();
        parts.iter().for_each(|p| p.decode_into(16, &mut got));
        assert_eq!(got, run.docs[123].vectors[..r_c * 16]);
    }
    assert_eq!(seg.vectors(7).unwrap(), run.docs[7].vectors);
    assert_eq!(
        seg.rows(9, 4, 8).unwrap(),
        &run.docs[9].vectors[4 * 16..8 * 16]
    );
    assert_eq!(
        seg.rows(9, 5, 7).unwrap(),
        &run.docs[9].vectors[5 * 16..7 * 16]
    );
    assert!(
        seg.rows(9, 2, 6).is_err(),
        "a range across groups is refused"
    );
    // Groups are laid out contiguously, 64-byte aligned, one per trained r_c boundary.
    let bounds: Vec<u32> = seg.groups().iter().map(|g| g.start + g.width).collect();
    assert_eq!(bounds, vec![1, 4, 8, 16]);
    assert!(seg.groups().iter().all(|g| g.offset % 64 == 0));
    seg.verify().unwrap();
}

fn flip(path: &std::path::Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x01;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
}

#[test]
fn flipped_vector_byte_is_a_corruption_error_naming_the_file() {
    let (dir, cfg, run) = fixture(300);
    build_segment(dir.path(), 1, &cfg, &run).unwrap();
    let path = dir.path().join(file_name(1));
    let g = {
        let seg = Segment::open(dir.path(), 1, &cfg).unwrap();
        seg.groups()[2].clone()
    };
    // Flip one byte of doc 0's vectors in group 2.
    flip(&path, g.offset + 5);
    let seg =
        Segment::open(dir.path(), 1, &cfg).expect("data blocks are checked on touch, not at open");
    let mut parts = Vec::new();
    // A prefix that stays below the damaged group still reads.
    seg.prefix(0, 4, &mut parts).unwrap();
    match seg.prefix(0, 8, &mut parts) {
        Err(Error::Corruption {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, g.offset);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(seg.verify(), Err(Error::Corruption { .. })));
}

#[test]
fn flipped_header_or_footer_fails_open() {
    let (dir, cfg, run) = fixture(50);
    build_segment(dir.path(), 1, &cfg, &run).unwrap();
    let path = dir.path().join(file_name(1));
    let len = std::fs::metadata(&path).unwrap().len();
    for at in [0u64, 9, 13, 40, len - 3, len - 20] {
        flip(&path, at);
        let r = Segment::open(dir.path(), 1, &cfg);
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "flip at {at}: {r:?}"
        );
        flip(&path, at);
    }
    Segment::open(dir.path(), 1, &cfg).unwrap();
    // The wrong collection shape is refused too.
    let other = CollectionConfig::new(8, 16, 8).with_dtype(Dtype::F32);
    assert!(matches!(
        Segment::open(dir.path(), 1, &other),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn compact_dtypes_keep_vector_0_f32_and_store_deeper_groups_compact() {
    use crate::config::Dtype;
    for (dtype, tol) in [(Dtype::Bf16, 4e-3), (Dtype::F16, 5e-4), (Dtype::Int8, 8e-3)] {
        let (dir, mut cfg, run) = fixture(200);
        cfg.budgets = vec![crate::Budget::new(2, 4), crate::Budget::new(8, 16)];
        cfg.dtype = dtype;
        build_segment(dir.path(), 1, &cfg, &run).unwrap();
        let seg = Segment::open(dir.path(), 1, &cfg).unwrap();
        // Vector 0 gets a group of its own even though no trained budget has r_c = 1.
        let bounds: Vec<u32> = seg.groups().iter().map(|g| g.start + g.width).collect();
        assert_eq!(bounds, vec![1, 4, 16], "{dtype}");
        let row = dtype.row_bytes(16) as u64;
        let mut parts = Vec::new();
        for r_c in [1usize, 3, 4, 9, 16] {
            let bytes = seg.prefix(57, r_c, &mut parts).unwrap();
            assert_eq!(bytes, 64 + (r_c as u64 - 1) * row, "{dtype} r_c {r_c}");
            let mut got = Vec::new();
            parts.iter().for_each(|p| p.decode_into(16, &mut got));
            let want = &run.docs[57].vectors[..r_c * 16];
            assert_eq!(got[..16], want[..16], "{dtype}: vector 0 is exact");
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= tol, "{dtype}: {g} vs {w}");
            }
        }
        let all = seg.vectors(3).unwrap();
        assert_eq!(all.len(), 16 * 16);
        assert_eq!(*seg.rows(3, 5, 9).unwrap(), all[5 * 16..9 * 16]);
        seg.verify().unwrap();
        // A collection of another dtype refuses the file.
        let mut other = cfg.clone();
        other.dtype = Dtype::F32;
        assert!(Segment::open(dir.path(), 1, &other).is_err(), "{dtype}");
    }
}

#[test]
fn ids_are_found_in_place_whether_or_not_the_segment_is_in_id_order() {
    let (dir, cfg, mut run) = fixture(300);
    // Insertion order: "d10" sorts before "d2", so this segment needs a permutation at open.
    build_segment(dir.path(), 1, &cfg, &run).unwrap();
    run.docs.sort_by(|a, b| a.id.cmp(&b.id));
    build_segment(dir.path(), 2, &cfg, &run).unwrap();
    let unsorted = Segment::open(dir.path(), 1, &cfg).unwrap();
    let sorted = Segment::open(dir.path(), 2, &cfg).unwrap();
    assert_eq!(
        unsorted.heap_bytes() - sorted.heap_bytes(),
        300 * 4,
        "only the segment out of id order keeps a permutation"
    );
    for seg in [&unsorted, &sorted] {
        assert_eq!(seg.ids().len(), 300);
        for (ord, id) in seg.ids().enumerate() {
            assert_eq!(seg.doc_id(ord), id);
            assert_eq!(seg.find(id), Some(ord as u32), "{id}");
        }
        for absent in ["", "d", "d300", "d0 ", "e", "c9"] {
            assert_eq!(seg.find(absent), None, "{absent:?}");
        }
    }
    let at = sorted.find("d2").unwrap() as usize;
    assert_eq!(sorted.payload(at), Some(r#"{"i":2}"#));
    assert_eq!(sorted.payload(sorted.find("d3").unwrap() as usize), None);
    assert_eq!(unsorted.payload(2), sorted.payload(at));
}
