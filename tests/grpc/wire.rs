//! Smaller protocol defects of issue 16 (defect 8): the `Bearer` scheme is case-insensitive,
//! reflection answers v1alpha as well as v1, and finite but huge (3e38) or subnormal vector
//! values are normalised rather than refused as "zero norm".

use metavec_api::pb;
use metavec_api::pb::collections_client::CollectionsClient;
use tonic::Code;

use crate::support::*;

fn with_auth(value: String) -> impl tonic::service::Interceptor + Clone {
    move |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", value.parse().unwrap());
        Ok(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-key", "k3y"]);
    let ch = server.channel().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEARER"] {
        let mut c =
            CollectionsClient::with_interceptor(ch.clone(), with_auth(format!("{scheme} k3y")));
        c.list_collections(pb::ListCollectionsRequest {})
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
    }
    for bad in ["Bearer k3", "Basic k3y", "Bearerk3y", "k3y"] {
        let mut c = CollectionsClient::with_interceptor(ch.clone(), with_auth(bad.into()));
        let e = c
            .list_collections(pb::ListCollectionsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_v1alpha_too() {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut refl = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "metavec.v1.Collections",
        "metavec.v1.Documents",
        "metavec.v1.Search",
        "metavec.v1.Admin",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_subnormal_values_are_normalised_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("tiny", 4, 1, 1))
        .await
        .unwrap();
    let tiny = f32::from_bits(1); // the smallest subnormal
    let docs = [
        ("huge", [3e38f32, 0.0, 0.0, 0.0]),
        ("subnormal", [0.0, tiny, 0.0, 0.0]),
        ("plain", [0.0, 0.0, 1.0, 1.0]),
    ];
    upsert(
        &mut c,
        vec![pb::UpsertRequest {
            collection: "tiny".into(),
            documents: docs
                .iter()
                .map(|(id, v)| pb::Document {
                    id: (*id).into(),
                    vectors: Some(vectors(1, 4, v.to_vec())),
                    payload: String::new(),
                })
                .collect(),
        }],
    )
    .await
    .expect("huge and subnormal document vectors are accepted");
    // Stored at unit length, direction kept.
    let got = stored(&mut c, "tiny", vec!["huge".into(), "subnormal".into()]).await;
    assert_eq!(got["huge"].0, [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(got["subnormal"].0, [0.0, 1.0, 0.0, 0.0]);

    for (q, want) in [
        ([3e38f32, -3e38, 0.0, 0.0], "huge"),
        ([tiny, 0.0, 0.0, 0.0], "huge"),
        ([0.0, 3e-39, 0.0, 0.0], "subnormal"),
        ([0.0, 0.0, 1e-30, 1e-30], "plain"),
    ] {
        let mut req = search_req("tiny", vectors(1, 4, q.to_vec()), 1, 1, 1);
        req.exact = true;
        let hits = c
            .search
            .search(req)
            .await
            .unwrap_or_else(|e| panic!("{q:?}: {e:?}"))
            .into_inner()
            .hits;
        assert_eq!(hits.len(), 1, "{q:?}");
        assert_eq!(hits[0].id, want, "{q:?}");
    }
    // All zeros is still refused, and says so.
    let e = c
        .search
        .search(search_req("tiny", vectors(1, 4, vec![0.0; 4]), 1, 1, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("all zeros"), "{}", e.message());
}
