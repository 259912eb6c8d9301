use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use metavec_api::pb;
use metavec_api::pb::{
    admin_client::AdminClient, collections_client::CollectionsClient,
    documents_client::DocumentsClient, search_client::SearchClient,
};
use metavec_core::synth::SynthData;
use tonic::transport::Channel;

/// A test whose tool (Python with its packages, a built example) is missing: under `CI=true`
/// (`.ci/run` sets it) that is a failure, since CI installs every tool; elsewhere the test says
/// SKIPPED and passes.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true, and the test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// A running `metavec serve` child process.
pub struct Server {
    child: Child,
    pub addr: String,
    /// The bound metrics address, with `--metrics-listen` (`metavec metrics on ADDR`).
    pub metrics_addr: Option<String>,
    /// The bound HTTP API address, with `--http-listen` (`metavec http on ADDR`).
    pub http_addr: Option<String>,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_logging(dir, extra, "warn", Stdio::inherit())
    }

    /// `start` with a `RUST_LOG` filter and somewhere for the server's log (its stderr).
    pub fn start_logging(dir: &Path, extra: &[&str], rust_log: &str, log: Stdio) -> Server {
        Self::start_env(dir, extra, rust_log, log, &[])
    }

    /// `start_logging` with extra environment variables.
    pub fn start_env(
        dir: &Path,
        extra: &[&str],
        rust_log: &str,
        log: Stdio,
        env: &[(&str, &Path)],
    ) -> Server {
        Self::start_at("127.0.0.1:0", dir, extra, rust_log, log, env)
    }

    /// `start_env` listening on `listen` (an IP:PORT; port 0 picks a free one).
    pub fn start_at(
        listen: &str,
        dir: &Path,
        extra: &[&str],
        rust_log: &str,
        log: Stdio,
        env: &[(&str, &Path)],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metavec"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start metavec");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for (i, prefix) in [
                    "metavec listening on ",
                    "metavec metrics on ",
                    "metavec http on ",
                ]
                .into_iter()
                .enumerate()
                {
                    if let Some(addr) = line.strip_prefix(prefix) {
                        let _ = tx.send((i, addr.to_string()));
                    }
                }
            }
        });
        // The metrics and HTTP lines, when there are some, come before the gRPC one.
        let (mut metrics_addr, mut http_addr) = (None, None);
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok((0, addr)) => break addr,
                Ok((1, addr)) => metrics_addr = Some(addr),
                Ok((_, addr)) => http_addr = Some(addr),
                Err(e) => panic!("server did not report its address: {e}"),
            }
        };
        Server {
            child,
            addr,
            metrics_addr,
            http_addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap().success()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn clients(&self) -> Clients {
        let ch = self.channel().await;
        Clients {
            collections: CollectionsClient::new(ch.clone()),
            documents: DocumentsClient::new(ch.clone()).max_encoding_message_size(usize::MAX),
            search: SearchClient::new(ch.clone()),
            admin: AdminClient::new(ch),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Clients {
    pub collections: CollectionsClient<Channel>,
    pub documents: DocumentsClient<Channel>,
    pub search: SearchClient<Channel>,
    pub admin: AdminClient<Channel>,
}

pub fn vectors(count: u32, dim: u32, values: Vec<f32>) -> pb::Vectors {
    pb::Vectors {
        count,
        dim,
        values,
        ..Default::default()
    }
}

pub fn synth_doc(data: &SynthData, i: usize) -> pb::Document {
    let s = &data.spec;
    pb::Document {
        id: SynthData::id(i),
        vectors: Some(vectors(
            s.doc_vectors() as u32,
            s.dim as u32,
            data.doc(i).to_vec(),
        )),
        payload: format!(r#"{{"i":{i}}}"#),
    }
}

/// One Upsert stream carrying `batches`.
pub async fn upsert(
    c: &mut Clients,
    batches: Vec<pb::UpsertRequest>,
) -> Result<pb::UpsertResponse, tonic::Status> {
    c.documents
        .upsert(tokio_stream::iter(batches))
        .await
        .map(|r| r.into_inner())
}

pub fn create_req(
    name: &str,
    dim: u32,
    doc_vectors: u32,
    query_vectors: u32,
) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        name: name.into(),
        dim,
        doc_vectors,
        query_vectors,
        ..Default::default()
    }
}

pub fn search_req(
    collection: &str,
    query: pb::Vectors,
    r_q: u32,
    r_c: u32,
    k: u32,
) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: collection.into(),
        query: Some(query),
        budget: Some(pb::Budget { r_q, r_c }),
        k,
        ..Default::default()
    }
}

/// A stored document as the oracle tests keep it: its vectors and its payload text.
pub type Doc = (Vec<f32>, String);

/// The stored documents among `ids`, by id (one Get).
pub async fn stored(
    c: &mut Clients,
    collection: &str,
    ids: Vec<String>,
) -> std::collections::BTreeMap<String, Doc> {
    c.documents
        .get(pb::GetRequest {
            collection: collection.into(),
            ids,
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .documents
        .into_iter()
        .map(|d| (d.id, (d.vectors.unwrap().values, d.payload)))
        .collect()
}
