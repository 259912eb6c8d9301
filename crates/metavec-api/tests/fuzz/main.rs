//! Fuzz target for the proto -> core conversions (CreateCollection, Upsert, Search, SearchBatch):
//! byte-mutated encodings of valid requests go through prost decoding and then the conversion,
//! and requests with arbitrary field values go straight to the conversion. Nothing may panic,
//! a refusal is always `InvalidArgument` (gRPC INVALID_ARGUMENT), and an accepted request has the
//! shape the engine relies on. See docs/FUZZING.md.

#[path = "../../../metavec-core/tests/fuzz/mutate.rs"]
mod mutate;

use metavec_api::convert;
use metavec_api::pb;
use metavec_core::{CollectionConfig, Error};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;

use mutate::{apply, fuzz, mutations};

fn cfg() -> CollectionConfig {
    CollectionConfig::new(4, 8, 4)
}

fn vectors(count: u32, dim: u32) -> pb::Vectors {
    pb::Vectors {
        count,
        dim,
        values: (0..count * dim).map(|i| i as f32 * 0.25 - 1.0).collect(),
        ..Default::default()
    }
}

fn create_seed() -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        name: "docs".into(),
        dim: 4,
        doc_vectors: 8,
        query_vectors: 4,
        budgets: vec![
            pb::Budget { r_q: 1, r_c: 1 },
            pb::Budget { r_q: 2, r_c: 4 },
            pb::Budget { r_q: 4, r_c: 8 },
        ],
        hnsw: Some(pb::HnswParams {
            m: 16,
            ef_construction: 100,
        }),
        dtype: "f32".into(),
        candidate_index: Some(pb::CandidateIndexParams {
            kind: "tokens".into(),
            index_vectors: 4,
            centroids: 16,
        }),
        ..Default::default()
    }
}

fn upsert_seed() -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: "docs".into(),
        documents: (0..3)
            .map(|i| pb::Document {
                id: format!("d{i}"),
                vectors: Some(vectors(8, 4)),
                payload: format!(r#"{{"i":{i}}}"#),
            })
            .collect(),
    }
}

fn search_seed() -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "docs".into(),
        query: Some(vectors(4, 4)),
        budget: Some(pb::Budget { r_q: 2, r_c: 4 }),
        k: 10,
        candidates: 50,
        ef: 64,
        stages: vec![pb::Stage {
            budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
            keep: 20,
        }],
        filter:
            r#"{"and":[{"range":{"field":"i","gte":1}},{"not":{"eq":{"field":"t","value":"x"}}}]}"#
                .into(),
        with_payload: true,
        ..Default::default()
    }
}

fn batch_seed() -> pb::SearchBatchRequest {
    pb::SearchBatchRequest {
        collection: "docs".into(),
        queries: vec![vectors(4, 4), vectors(1, 4)],
        budget: Some(pb::Budget { r_q: 4, r_c: 8 }),
        k: 5,
        exact: true,
        filter: r#"{"in":{"field":"i","values":[1,2]}}"#.into(),
        ..Default::default()
    }
}

fn refused(e: Error) -> Result<(), TestCaseError> {
    let status = convert::to_status(&e);
    prop_assert!(
        matches!(e, Error::InvalidArgument(_)) && status.code() == tonic::Code::InvalidArgument,
        "a bad request must be INVALID_ARGUMENT, got {e:?}"
    );
    Ok(())
}

fn check_create(r: &pb::CreateCollectionRequest) -> Result<(), TestCaseError> {
    match CollectionConfig::try_from(r) {
        Ok(c) => {
            prop_assert!(
                c.dim > 0 && c.doc_vectors > 0 && !c.budgets.is_empty(),
                "{c:?}"
            );
            Ok(())
        }
        Err(e) => refused(e),
    }
}

fn check_upsert(r: pb::UpsertRequest, cfg: &CollectionConfig) -> Result<(), TestCaseError> {
    match convert::documents(r.documents, cfg) {
        Ok(docs) => {
            for d in docs {
                prop_assert_eq!(d.vectors.len(), (cfg.dim * cfg.doc_vectors) as usize);
            }
            Ok(())
        }
        Err(e) => refused(e),
    }
}

fn check_search(r: &pb::SearchRequest, cfg: &CollectionConfig) -> Result<(), TestCaseError> {
    match convert::search_request(r, cfg) {
        Ok(q) => {
            prop_assert_eq!(q.query.len() % cfg.dim as usize, 0);
            Ok(())
        }
        Err(e) => refused(e),
    }
}

fn check_batch(r: &pb::SearchBatchRequest, cfg: &CollectionConfig) -> Result<(), TestCaseError> {
    match convert::search_batch_request(r, cfg) {
        Ok(qs) => {
            prop_assert_eq!(qs.len(), r.queries.len());
            for q in qs {
                prop_assert_eq!(q.query.len() % cfg.dim as usize, 0);
            }
            Ok(())
        }
        Err(e) => refused(e),
    }
}

/// Every seed round-trips through prost and converts.
#[test]
fn seeds_convert() {
    let cfg = cfg();
    assert_eq!(CollectionConfig::try_from(&create_seed()).unwrap().dim, 4);
    assert_eq!(
        convert::documents(upsert_seed().documents, &cfg)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(convert::search_request(&search_seed(), &cfg).unwrap().k, 10);
    assert_eq!(
        convert::search_batch_request(&batch_seed(), &cfg)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn fuzz_proto_conversion() {
    let cfg = cfg();
    let seeds = [
        create_seed().encode_to_vec(),
        upsert_seed().encode_to_vec(),
        search_seed().encode_to_vec(),
        batch_seed().encode_to_vec(),
    ];
    fuzz("proto_bytes", (0usize..4, mutations(6)), |(which, muts)| {
        let bytes = apply(&seeds[which], &muts);
        match which {
            0 => match pb::CreateCollectionRequest::decode(&bytes[..]) {
                Ok(r) => check_create(&r),
                Err(_) => Ok(()),
            },
            1 => match pb::UpsertRequest::decode(&bytes[..]) {
                Ok(r) => check_upsert(r, &cfg),
                Err(_) => Ok(()),
            },
            2 => match pb::SearchRequest::decode(&bytes[..]) {
                Ok(r) => check_search(&r, &cfg),
                Err(_) => Ok(()),
            },
            _ => match pb::SearchBatchRequest::decode(&bytes[..]) {
                Ok(r) => check_batch(&r, &cfg),
                Err(_) => Ok(()),
            },
        }
    });

    // Arbitrary field values: small and extreme numbers, short vectors, odd strings.
    let num = || prop_oneof![0u32..20, Just(u32::MAX), Just(1 << 16), any::<u32>()];
    let budget = move || (num(), num()).prop_map(|(r_q, r_c)| pb::Budget { r_q, r_c });
    let vecs = move || {
        (num(), num(), proptest::collection::vec(any::<f32>(), 0..40)).prop_map(
            |(count, dim, values)| pb::Vectors {
                count,
                dim,
                values,
                ..Default::default()
            },
        )
    };
    let text = || {
        prop_oneof![
            Just(String::new()),
            ".{0,24}",
            r#"\{"(eq|in|range|and|or|not)":[-0-9a-z{}\[\]":,]{0,24}\}"#
        ]
    };
    let fields = (
        (
            num(),
            num(),
            num(),
            proptest::collection::vec(budget(), 0..4),
        ),
        (num(), num(), text()),
        (
            proptest::option::of(vecs()),
            proptest::option::of(budget()),
            num(),
            num(),
            any::<bool>(),
        ),
        (
            proptest::collection::vec((proptest::option::of(budget()), num()), 0..3),
            text(),
        ),
        (proptest::collection::vec(vecs(), 0..3), text()),
    );
    fuzz("proto_fields", fields, |(c, h, s, st, b)| {
        let create = pb::CreateCollectionRequest {
            name: "x".into(),
            dim: c.0,
            doc_vectors: c.1,
            query_vectors: c.2,
            budgets: c.3,
            hnsw: Some(pb::HnswParams {
                m: h.0,
                ef_construction: h.1,
            }),
            dtype: h.2.clone(),
            candidate_index: Some(pb::CandidateIndexParams {
                kind: b.1.clone(),
                index_vectors: c.1 % 11,
                centroids: h.0,
            }),
            ..Default::default()
        };
        check_create(&create)?;
        let upsert = pb::UpsertRequest {
            collection: "x".into(),
            documents: vec![pb::Document {
                id: h.2,
                vectors: s.0.clone(),
                payload: st.1.clone(),
            }],
        };
        check_upsert(upsert, &cfg)?;
        let search = pb::SearchRequest {
            collection: "x".into(),
            query: s.0,
            budget: s.1,
            k: s.2,
            candidates: s.3,
            exact: s.4,
            latency_target_us: s.3 % 3,
            stages: st
                .0
                .into_iter()
                .map(|(budget, keep)| pb::Stage { budget, keep })
                .collect(),
            filter: st.1,
            nprobe: s.2 % 7,
            candidate_index: b.1.clone(),
            ..Default::default()
        };
        check_search(&search, &cfg)?;
        let batch = pb::SearchBatchRequest {
            collection: "x".into(),
            queries: b.0,
            budget: s.1,
            k: s.2,
            filter: b.1,
            ..Default::default()
        };
        check_batch(&batch, &cfg)
    });
}
