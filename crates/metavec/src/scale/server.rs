//! The server process of `metavec bench scale`: start it (optionally inside a memory cgroup),
//! time how long it takes to serve, stop it with SIGKILL or SIGTERM, and read what the kernel
//! knows of it (bytes written, anonymous RSS). Also the disk bandwidth probe.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The memory cgroup (v1) the server runs in with `--memory-limit-mb`.
pub const CGROUP: &str = "/sys/fs/cgroup/memory/metavec-scale";

/// How long a server may take to open its data directory before it counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3600);

/// How to start the server: `<exe> serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
/// --data-dir <data> [--memtable-mb N] <extra...>`, stderr appended to `log`.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    pub memtable_mb: Option<usize>,
    pub extra: Vec<String>,
    /// A memory cgroup to enter before exec (its `cgroup.procs` must be writable).
    pub cgroup: Option<PathBuf>,
    /// Where the running server's pid is written (to clean up after an interrupted run).
    pub pid_file: PathBuf,
}

/// A running server.
pub struct Server {
    child: Child,
    /// gRPC address, `http://host:port`.
    pub addr: String,
    /// Prometheus address, `host:port`.
    pub metrics: Option<String>,
    pid_file: PathBuf,
}

impl Launch {
    /// Starts a server and waits until it serves (it prints its address once the engine is
    /// open and the port bound). Returns it and that time: the open (recovery) time.
    pub fn start(&self) -> Result<(Server, Duration), String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.data.to_string_lossy().into_owned(),
        ];
        if let Some(mb) = self.memtable_mb {
            args.extend(["--memtable-mb".into(), mb.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut cmd = match &self.cgroup {
            // The shell joins the cgroup, then becomes the server (same pid), so that every page
            // the server touches from its first is charged to the cgroup.
            Some(cg) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
                    .arg(cg)
                    .arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let t = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let _ = std::fs::write(&self.pid_file, child.id().to_string());
        let stdout = child.stdout.take().ok_or("the server has no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end, so that the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("metavec listening on ") {
                    let _ = tx.send((true, a.to_string()));
                } else if let Some(a) = line.strip_prefix("metavec metrics on ") {
                    let _ = tx.send((false, a.to_string()));
                }
            }
        });
        let mut metrics = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((true, addr)) => {
                    let open = t.elapsed();
                    let server = Server {
                        child,
                        addr: format!("http://{addr}"),
                        metrics,
                        pid_file: self.pid_file.clone(),
                    };
                    return Ok((server, open));
                }
                Ok((false, addr)) => metrics = Some(addr),
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!(
                            "the server exited ({status}) before serving; the end of {}:\n{}",
                            self.log.display(),
                            tail(&self.log, 20)
                        ));
                    }
                    if t.elapsed() > OPEN_TIMEOUT {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!(
                            "the server did not serve within {} s; see {}",
                            OPEN_TIMEOUT.as_secs(),
                            self.log.display()
                        ));
                    }
                }
            }
        }
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up (the crash the WAL is for).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// SIGTERM, then waits for the exit; fails unless the server exits with success.
    pub fn terminate(&mut self) -> Result<(), String> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&self.pid_file);
        if status.success() {
            Ok(())
        } else {
            Err(format!("the server exited with {status} after SIGTERM"))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// The last `n` lines of a file (for error messages).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A server left running by an interrupted run (its pid in `pid_file`, its command line naming
/// `serve` and `data`): reads its bytes written, kills it and waits until it is gone. Returns
/// the bytes it had written, or `None` when there was no such process.
pub fn kill_stale(pid_file: &Path, data: &Path) -> Option<u64> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let _ = std::fs::remove_file(pid_file);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !cmdline.contains(" serve ") || !cmdline.contains(&*data.to_string_lossy()) {
        return None;
    }
    let written = write_bytes(pid);
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(30) {
        // Not our child: init reaps it; a zombie's /proc entry has no cmdline left.
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    written
}

/// `write_bytes` of `/proc/PID/io`: bytes the process caused to be sent to storage (counted when
/// pages are dirtied, whoever writes them back).
pub fn write_bytes(pid: u32) -> Option<u64> {
    proc_field(&format!("/proc/{pid}/io"), "write_bytes:")
}

/// `RssAnon` of `/proc/PID/status`, in kB: the process's anonymous resident memory (heap), not
/// its mapped segment files.
pub fn rss_anon_kb(pid: u32) -> Option<u64> {
    proc_field(&format!("/proc/{pid}/status"), "RssAnon:")
}

/// CPU time (clock ticks) used so far by the server's maintenance threads: the flushers and
/// compactors (`flush-*`, `compact-*`) and the build pool (`maintenance-*`).
pub fn maintenance_ticks(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !["maintenance", "merge-", "flush-", "compact-"]
            .iter()
            .any(|p| comm.starts_with(p))
        {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name start at field 3 (state); utime and stime are
        // fields 14 and 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            total += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

fn proc_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Bytes allocated on disk under `dir` (as `du` counts them).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Sequential write bandwidth of the file system holding `dir`, in MB/s: `mb` MiB in 8 MiB
/// chunks, then fdatasync, timed together; the file is removed.
pub fn disk_probe(dir: &Path, mb: usize) -> Result<f64, String> {
    let path = dir.join("disk-probe.tmp");
    let err = |e: std::io::Error| format!("disk probe {}: {e}", path.display());
    let chunk: Vec<u8> = (0..8usize << 20).map(|i| (i * 31 + 7) as u8).collect();
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).map_err(err)?;
    let mut left = mb << 20;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).map_err(err)?;
        left -= n;
    }
    f.sync_data().map_err(err)?;
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).map_err(err)?;
    Ok((mb << 20) as f64 / 1e6 / secs)
}

/// Creates (or reuses) the memory cgroup [`CGROUP`] with a limit of `mb` MiB, page cache
/// included.
pub fn memory_cgroup(mb: u64) -> Result<PathBuf, String> {
    let cg = PathBuf::from(CGROUP);
    std::fs::create_dir_all(&cg).map_err(|e| format!("{}: {e}", cg.display()))?;
    let limit = cg.join("memory.limit_in_bytes");
    std::fs::write(&limit, (mb << 20).to_string())
        .map_err(|e| format!("{}: {e}", limit.display()))?;
    // Leftover peaks of an earlier run would be misread as this one's.
    let _ = std::fs::write(cg.join("memory.max_usage_in_bytes"), "0");
    Ok(cg)
}

/// Writes dirty pages back and drops the page cache (root only).
pub fn drop_page_cache() -> Result<(), String> {
    // sync(1): a file's sync_all would not write back the other files' dirty pages.
    let status = std::process::Command::new("sync")
        .status()
        .map_err(|e| format!("sync: {e}"))?;
    if !status.success() {
        return Err(format!("sync: {status}"));
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("/proc/sys/vm/drop_caches: {e}"))
}

/// The cgroup's peak memory use (page cache included), in bytes.
pub fn cgroup_max_usage(cg: &Path) -> Option<u64> {
    std::fs::read_to_string(cg.join("memory.max_usage_in_bytes"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Flush and compaction counts and total milliseconds of one collection since the server
/// started, from its Prometheus endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Maintenance {
    pub flushes: u64,
    pub flush_ms: u64,
    pub compactions: u64,
    pub compaction_ms: u64,
}

impl std::ops::Add for Maintenance {
    type Output = Maintenance;
    fn add(self, o: Maintenance) -> Maintenance {
        Maintenance {
            flushes: self.flushes + o.flushes,
            flush_ms: self.flush_ms + o.flush_ms,
            compactions: self.compactions + o.compactions,
            compaction_ms: self.compaction_ms + o.compaction_ms,
        }
    }
}

/// Scrapes `metavec_maintenance_total` and `metavec_maintenance_milliseconds_total` of
/// `collection` (HTTP/1.0 over a plain socket: one request, read to the end).
pub fn maintenance(metrics: &str, collection: &str) -> Result<Maintenance, String> {
    let mut s = std::net::TcpStream::connect(metrics).map_err(|e| format!("{metrics}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: metavec\r\n\r\n")
        .map_err(|e| format!("{metrics}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("{metrics}: {e}"))?;
    let mut m = Maintenance::default();
    let coll = format!("collection=\"{collection}\"");
    for line in body.lines().filter(|l| l.contains(&coll)) {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        let (total, ms) = (
            line.starts_with("metavec_maintenance_total{"),
            line.starts_with("metavec_maintenance_milliseconds_total{"),
        );
        match (total, ms) {
            (true, _) if line.contains("work=\"flush\"") => m.flushes = value(),
            (true, _) if line.contains("work=\"compaction\"") => m.compactions = value(),
            (_, true) if line.contains("work=\"flush\"") => m.flush_ms = value(),
            (_, true) if line.contains("work=\"compaction\"") => m.compaction_ms = value(),
            _ => {}
        }
    }
    Ok(m)
}
