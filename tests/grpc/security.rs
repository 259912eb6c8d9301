//! API keys (admin and read-only, UNAUTHENTICATED / PERMISSION_DENIED) and TLS with a
//! self-signed certificate made in the test.

use metavec_api::pb;
use metavec_api::pb::{collections_client::CollectionsClient, search_client::SearchClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::support::*;

fn with_key(key: &'static str) -> impl tonic::service::Interceptor + Clone {
    move |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        Ok(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_gate_every_rpc_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--api-key",
            "admin-secret",
            "--read-only-key",
            "reader-secret",
        ],
    );
    let ch = server.channel().await;

    // No key, a wrong key: UNAUTHENTICATED. Health needs none.
    let mut anon = CollectionsClient::new(ch.clone());
    let e = anon
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut wrong = CollectionsClient::with_interceptor(ch.clone(), with_key("guess"));
    assert_eq!(
        wrong
            .list_collections(pb::ListCollectionsRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();

    // The admin key can write; the read-only key can read but not write.
    let mut admin = CollectionsClient::with_interceptor(ch.clone(), with_key("admin-secret"));
    admin
        .create_collection(create_req("sec", 4, 4, 2))
        .await
        .unwrap();
    let mut reader = CollectionsClient::with_interceptor(ch.clone(), with_key("reader-secret"));
    assert_eq!(
        reader
            .list_collections(pb::ListCollectionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .collections
            .len(),
        1
    );
    let e = reader
        .create_collection(create_req("nope", 4, 4, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut search = SearchClient::with_interceptor(ch.clone(), with_key("reader-secret"));
    search
        .search(search_req("sec", vectors(2, 4, vec![1.0; 8]), 1, 1, 5))
        .await
        .unwrap();

    // The CLI sends the key too.
    let cli = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_metavec"))
            .args([
                "--addr",
                &server.addr,
                "--auth-key",
                key,
                "collections",
                "list",
            ])
            .env_remove("METAVEC_AUTH_KEY")
            .output()
            .unwrap()
    };
    assert!(cli("reader-secret").status.success());
    let denied = cli("wrong");
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("unauthenticated: invalid api key"), "{err}");
    // The server's key variable is not the client's: a shell that starts a server with
    // METAVEC_API_KEY does not hand that key to every CLI call.
    let env_only = std::process::Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["collections", "list", "--addr", &server.addr])
        .env_remove("METAVEC_AUTH_KEY")
        .env("METAVEC_API_KEY", "reader-secret")
        .output()
        .unwrap();
    assert!(!env_only.status.success());
    let by_var = std::process::Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["collections", "list", "--addr", &server.addr])
        .env("METAVEC_AUTH_KEY", "reader-secret")
        .output()
        .unwrap();
    assert!(
        by_var.status.success(),
        "{}",
        String::from_utf8_lossy(&by_var.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let ch = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = CollectionsClient::new(ch);
    c.create_collection(create_req("tls", 4, 4, 2))
        .await
        .unwrap();
    assert_eq!(
        c.list_collections(pb::ListCollectionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .collections
            .len(),
        1
    );
    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(CollectionsClient::new(ch)
            .list_collections(pb::ListCollectionsRequest {})
            .await
            .is_err());
    }
    // The CLI speaks TLS with --tls-ca.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "--addr",
            &format!(
                "https://localhost:{}",
                server.addr.rsplit(':').next().unwrap()
            ),
            "--tls-ca",
            cert.to_str().unwrap(),
            "collections",
            "list",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls"));
}
