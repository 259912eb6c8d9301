//! Fuzz targets for the decoders that read bytes from disk: WAL records and files, segment open
//! (plus touching every block), and the manifest. See docs/FUZZING.md.
//!
//! Each target mutates a real encoding produced by the engine and checks that decoding never
//! panics, fails only with the typed error (`DecodeError` for a record, `Error::Corruption`
//! naming the file otherwise), and that the unmutated seed still round-trips.

mod mutate;

use std::path::Path;
use std::sync::Arc;

use metavec_core::config::CollectionConfig;
use metavec_core::manifest::{FileCheck, Manifest, SegmentEntry};
use metavec_core::segment::builder::DocSource;
use metavec_core::segment::{build_segment, Segment};
use metavec_core::wal::record::{self, DecodeError, Record};
use metavec_core::wal::{reader::scan_file, writer::Wal};
use metavec_core::{Document, Error};
use proptest::prelude::*;

use mutate::{apply, fix_preamble_crc, fix_record_crc, fuzz, mutations};

const DIM: usize = 16;
const DOC_VECTORS: usize = 16;
const FLOATS: usize = DIM * DOC_VECTORS;

fn cfg() -> CollectionConfig {
    CollectionConfig::new(DIM as u32, DOC_VECTORS as u32, 8)
}

fn docs(n: usize) -> Vec<Arc<Document>> {
    (0..n)
        .map(|i| {
            let vectors = (0..FLOATS)
                .map(|j| ((i * 31 + j * 7) % 97) as f32 / 97.0 - 0.5)
                .collect();
            Arc::new(Document {
                id: format!("doc-{i}"),
                vectors,
                payload: (i % 2 == 0).then(|| format!(r#"{{"i":{i},"tag":"t{}"}}"#, i % 3)),
            })
        })
        .collect()
}

fn expect_corruption(e: &Error, path: &Path) -> Result<(), TestCaseError> {
    match e {
        Error::Corruption { path: p, .. } if p.starts_with(path) || path.starts_with(p) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected Corruption naming {}, got {other:?}",
            path.display()
        ))),
    }
}

/// Decodes every record of `buf` the way recovery does: stop at the first error.
fn decode_all(mut buf: &[u8]) -> (Vec<Record>, Option<DecodeError>) {
    let mut out = Vec::new();
    while !buf.is_empty() {
        match record::decode(buf, FLOATS) {
            Ok((rec, used)) => {
                assert!(
                    used > 0 && used <= buf.len(),
                    "decode used {used} of {}",
                    buf.len()
                );
                out.push(rec);
                buf = &buf[used..];
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn record_seed() -> (Vec<u8>, Vec<Record>) {
    let d = docs(3);
    let owned: Vec<Document> = d.iter().map(|d| (**d).clone()).collect();
    let mut bytes = record::encode_upsert(7, &owned);
    bytes.extend(record::encode_delete(8, &["doc-1".into(), "gone".into()]));
    bytes.extend(record::encode_upsert(9, &owned[..1]));
    let expect = vec![
        Record::Upsert {
            seq: 7,
            docs: owned.clone(),
        },
        Record::Delete {
            seq: 8,
            ids: vec!["doc-1".into(), "gone".into()],
        },
        Record::Upsert {
            seq: 9,
            docs: owned[..1].to_vec(),
        },
    ];
    (bytes, expect)
}

#[test]
fn fuzz_wal_record_decoder() {
    let (seed, expect) = record_seed();
    let (got, err) = decode_all(&seed);
    assert_eq!(err, None);
    assert_eq!(got, expect, "the seed round-trips");
    fuzz(
        "wal_record",
        (mutations(6), any::<bool>()),
        |(muts, fix)| {
            let mut bytes = apply(&seed, &muts);
            if fix {
                fix_record_crc(&mut bytes);
            }
            let (recs, _) = decode_all(&bytes);
            for r in &recs {
                if let Record::Upsert { docs, .. } = r {
                    for d in docs {
                        prop_assert_eq!(d.vectors.len(), FLOATS, "decoded doc has the wrong shape");
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_wal_file_scan() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), 3, 0).unwrap();
    let d: Vec<Document> = docs(4).iter().map(|d| (**d).clone()).collect();
    for (i, chunk) in d.chunks(2).enumerate() {
        wal.append(&record::encode_upsert(i as u64 + 1, chunk))
            .unwrap();
    }
    let pos = wal
        .append(&record::encode_delete(10, &["doc-0".into()]))
        .unwrap();
    wal.sync(pos).unwrap();
    drop(wal);
    let path = metavec_core::wal::file_path(dir.path(), 3);
    let seed = std::fs::read(&path).unwrap();
    let scan = scan_file(&path, 3, FLOATS).unwrap();
    assert_eq!(
        (scan.records, scan.upserted_docs, scan.deleted_ids),
        (3, 4, 1)
    );
    assert_eq!(scan.bad, None);

    let work = tempfile::tempdir().unwrap();
    let target = metavec_core::wal::file_path(work.path(), 3);
    fuzz("wal_file", mutations(6), |muts| {
        std::fs::write(&target, apply(&seed, &muts)).unwrap();
        match scan_file(&target, 3, FLOATS) {
            Ok(scan) => prop_assert!(scan.records <= 4, "scan invented records: {scan:?}"),
            Err(e) => expect_corruption(&e, &target)?,
        }
        Ok(())
    });
}

fn manifest_seed() -> Manifest {
    Manifest {
        version: 12,
        next_segment_id: 5,
        wal_start: 9,
        last_seq: 1234,
        segments: vec![
            SegmentEntry {
                id: 3,
                n_docs: 100,
                file_len: 65536,
                index_files: vec![
                    FileCheck {
                        name: "seg-3.hnsw.graph".into(),
                        len: 4000,
                        crc: 0xdead_beef,
                    },
                    FileCheck {
                        name: "seg-3.hnsw.data".into(),
                        len: 9000,
                        crc: 7,
                    },
                ],
                dead: vec![0b1011, 0, u64::MAX],
            },
            SegmentEntry {
                id: 4,
                n_docs: 1,
                file_len: 4096,
                index_files: vec![],
                dead: vec![],
            },
        ],
        stored_vectors: 8,
    }
}

#[test]
fn fuzz_manifest_decoder() {
    let m = manifest_seed();
    let seed = m.encode();
    let path = Path::new("/fuzz/MANIFEST");
    assert_eq!(
        Manifest::decode(&seed, path).unwrap(),
        m,
        "the seed round-trips"
    );
    fuzz("manifest", (mutations(6), any::<bool>()), |(muts, fix)| {
        let mut bytes = apply(&seed, &muts);
        if fix {
            fix_preamble_crc(&mut bytes);
        }
        if let Err(e) = Manifest::decode(&bytes, path) {
            expect_corruption(&e, path)?;
        }
        Ok(())
    });
}

struct Docs(Vec<Arc<Document>>);

impl DocSource for Docs {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn id(&self, i: usize) -> &str {
        &self.0[i].id
    }
    fn rows(
        &self,
        i: usize,
        start: usize,
        end: usize,
    ) -> metavec_core::Result<std::borrow::Cow<'_, [f32]>> {
        Ok(std::borrow::Cow::Borrowed(
            &self.0[i].vectors[start * DIM..end * DIM],
        ))
    }
    fn payload(&self, i: usize) -> Option<&str> {
        self.0[i].payload.as_deref()
    }
}

/// Opens segment 1 in `dir` and reads everything it holds; any failure must be a Corruption.
fn open_and_touch(dir: &Path, cfg: &CollectionConfig) -> metavec_core::Result<Vec<Vec<f32>>> {
    let seg = Segment::open(dir, 1, cfg)?;
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for ord in 0..seg.len() {
        let _ = seg.payload(ord);
        let _ = seg.doc_id(ord);
        for b in &cfg.budgets {
            seg.prefix(ord, (b.r_c as usize).min(DOC_VECTORS), &mut parts)?;
            let mut decoded = Vec::new();
            parts.iter().for_each(|p| p.decode_into(DIM, &mut decoded));
        }
        out.push(seg.vectors(ord)?);
    }
    seg.verify()?;
    Ok(out)
}

#[test]
fn fuzz_segment_open() {
    fuzz_segment(cfg(), "segment_open");
}

/// The same with an int8 segment (f32 vector 0, then int8 rows with their scales after them).
#[test]
fn fuzz_segment_open_int8() {
    let mut cfg = cfg();
    cfg.dtype = metavec_core::Dtype::Int8;
    fuzz_segment(cfg, "segment_open_int8");
}

fn fuzz_segment(cfg: CollectionConfig, name: &str) {
    let src = tempfile::tempdir().unwrap();
    let d = docs(40);
    build_segment(src.path(), 1, &cfg, &Docs(d.clone())).unwrap();
    let vectors = open_and_touch(src.path(), &cfg).unwrap();
    for (got, doc) in vectors.iter().zip(&d) {
        assert_eq!(got.len(), doc.vectors.len());
        for (g, w) in got.iter().zip(&doc.vectors) {
            assert!((g - w).abs() <= 5e-3, "the seed round-trips: {g} vs {w}");
        }
        if cfg.dtype == metavec_core::Dtype::F32 {
            assert_eq!(got, &doc.vectors, "f32 round-trips exactly");
        }
    }

    // A working copy: the HNSW files stay intact, the segment file is mutated.
    let work = tempfile::tempdir().unwrap();
    let seg_name = metavec_core::segment::file_name(1);
    for e in std::fs::read_dir(src.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), work.path().join(e.file_name())).unwrap();
    }
    let seed = std::fs::read(src.path().join(&seg_name)).unwrap();
    let target = work.path().join(&seg_name);
    fuzz(name, (mutations(4), any::<bool>()), |(muts, fix)| {
        let mut bytes = apply(&seed, &muts);
        if fix {
            fix_preamble_crc(&mut bytes);
        }
        std::fs::write(&target, bytes).unwrap();
        if let Err(e) = open_and_touch(work.path(), &cfg) {
            expect_corruption(&e, work.path())?;
        }
        Ok(())
    });
}
