//! Compact storage dtypes over gRPC and the CLI: a collection created with `dtype = "bf16"` or
//! `"f16"` (gRPC) or `--dtype int8` (CLI) reports its dtype, stores vector 0 exactly and the rest rounded, and
//! exact search over gRPC equals MaxSim over the vectors Get returns. Its segment is smaller than
//! the f32 one of the same data.

use std::process::Command;

use metavec_api::pb;
use metavec_core::score::maxsim_reference;
use metavec_core::synth::{generate, SynthData, SynthSpec};

use crate::support::*;

const DIM: u32 = 32;
const MC: u32 = 16;
const N: usize = 400;

async fn load(c: &mut Clients, name: &str, data: &SynthData) -> u64 {
    let batch = pb::UpsertRequest {
        collection: name.into(),
        documents: (0..N).map(|i| synth_doc(data, i)).collect(),
    };
    upsert(c, vec![batch]).await.unwrap();
    c.admin
        .flush(pb::FlushRequest {
            collection: name.into(),
        })
        .await
        .unwrap();
    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    info.segments.iter().map(|s| s.file_bytes).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_dtypes_over_grpc_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let data = generate(&SynthSpec::new(
        N,
        5,
        DIM as usize,
        &[(1, 1), (2, 4), (4, 8), (8, 16)],
        3,
    ));

    // "f": f32 storage asked for; "d": the default dtype (bf16).
    let mut req = create_req("f", DIM, MC, 8);
    req.dtype = "f32".into();
    c.collections.create_collection(req.clone()).await.unwrap();
    req.name = "d".into();
    req.dtype = String::new();
    let info = c.collections.create_collection(req.clone()).await.unwrap();
    assert_eq!(
        info.into_inner().config.unwrap().dtype,
        "bf16",
        "the default dtype"
    );
    for (name, dtype) in [("b", "bf16"), ("h", "f16")] {
        req.name = name.into();
        req.dtype = dtype.into();
        let info = c
            .collections
            .create_collection(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.config.unwrap().dtype, dtype);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "--addr",
            &server.addr,
            "--json",
            "collections",
            "create",
            "i",
        ])
        .args([
            "--dim",
            "32",
            "--doc-vectors",
            "16",
            "--query-vectors",
            "8",
            "--dtype",
            "int8",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""dtype":"int8""#), "{stdout}");

    let f32_bytes = load(&mut c, "f", &data).await;

    // Raw bf16 on the wire (half the bytes of f32): stored as the exactly widened values.
    let bits: Vec<u16> = data
        .doc(0)
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_bits())
        .collect();
    let doc = pb::Document {
        id: "raw".into(),
        vectors: Some(pb::Vectors {
            count: MC,
            dim: DIM,
            bf16: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
            ..Default::default()
        }),
        payload: String::new(),
    };
    let batch = pb::UpsertRequest {
        collection: "f".into(),
        documents: vec![doc],
    };
    upsert(&mut c, vec![batch]).await.unwrap();
    let mut widened: Vec<f32> = bits
        .iter()
        .map(|&b| half::bf16::from_bits(b).to_f32())
        .collect();
    metavec_core::document::normalize_rows(&mut widened, DIM as usize, "x").unwrap();
    let got = stored(&mut c, "f", vec!["raw".into()]).await;
    assert_eq!(got["raw"].0, widened);
    for (name, tol) in [("b", 4e-3f32), ("h", 5e-4), ("i", 8e-3)] {
        let bytes = load(&mut c, name, &data).await;
        assert!(
            bytes * 10 < f32_bytes * 7,
            "{name}: {bytes} vs f32 {f32_bytes}"
        );
        let ids: Vec<String> = (0..N).map(SynthData::id).collect();
        let got = stored(&mut c, name, ids.clone()).await;
        let exact = stored(&mut c, "f", ids).await;
        assert_eq!(got.len(), N);
        let d = DIM as usize;
        for (id, (v, _)) in &got {
            let f = &exact[id].0;
            assert_eq!(v[..d], f[..d], "{name}: vector 0 is stored f32");
            let worst = v
                .iter()
                .zip(f)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= tol && worst > 0.0, "{name} {id}: off by {worst}");
        }
        for qi in 0..5 {
            let q = data.query(qi)[..4 * d].to_vec();
            let mut r = search_req(name, vectors(4, DIM, q.clone()), 4, 8, 10);
            r.exact = true;
            let res = c.search.search(r).await.unwrap().into_inner();
            let mut qn = q;
            metavec_core::document::normalize_rows(&mut qn, d, "q").unwrap();
            let mut oracle: Vec<(f32, &String)> = got
                .iter()
                .map(|(id, (v, _))| (maxsim_reference(&qn, 4, v, 8, d), id))
                .collect();
            oracle.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            assert_eq!(res.hits.len(), oracle.len().min(10), "{name}: hit count");
            for (h, (s, _)) in res.hits.iter().zip(&oracle) {
                let want = maxsim_reference(&qn, 4, &got[&h.id].0, 8, d);
                assert!(
                    (h.score - want).abs() < 1e-4,
                    "{name}: {} vs {want}",
                    h.score
                );
                assert!((h.score - s).abs() < 1e-4, "{name}: rank order");
            }
        }
    }
}
