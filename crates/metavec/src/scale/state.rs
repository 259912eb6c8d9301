//! The resumable state of `metavec bench scale` (DIR/scale-state.json): the run's parameters,
//! the documents acknowledged, the ground truth so far, the byte and maintenance totals of
//! server processes that have exited, and the rows recorded.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::report::{Resume, Row};
use super::server::{self, Maintenance, Server};
use super::truth::Truth;

pub const STATE_FILE: &str = "scale-state.json";
/// Bumped when the state's fields change meaning.
pub const STATE_VERSION: u32 = 1;

/// What fixes a run: a resume with other values is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub docs: usize,
    pub dim: usize,
    pub doc_vectors: usize,
    pub query_vectors: usize,
    pub budgets: Vec<(usize, usize)>,
    pub dtype: String,
    pub profile: String,
    pub queries: usize,
    pub checkpoints: usize,
    pub seed: u64,
    pub memtable_mb: Option<usize>,
    pub server_args: Vec<String>,
    pub memory_limit_mb: Option<u64>,
}

/// A reading of the running server, saved with the state: if the bench dies with it, the next
/// run counts its bytes written from here.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Live {
    pub pid: u32,
    pub write_bytes: u64,
    pub maintenance: Maintenance,
}

/// Everything a resume needs (DIR/scale-state.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub params: Params,
    /// Documents 0..acked are durable (their Upsert streams were answered).
    pub acked: usize,
    pub truth: Truth,
    /// Bytes written and maintenance done by server processes that have exited.
    pub written_done: u64,
    pub maintenance_done: Maintenance,
    pub live: Option<Live>,
    /// Documents sent over the wire, resends after a resume included.
    pub sent_docs: u64,
    /// Ingest wall time since the last checkpoint.
    pub interval_ingest_s: f64,
    pub disk_mb_s: Option<f64>,
    /// Resumes since the last checkpoint.
    pub resumes: Vec<Resume>,
    pub rows: Vec<Row>,
}

impl State {
    pub fn written(&self, server: &Server) -> u64 {
        self.written_done + server::write_bytes(server.pid()).unwrap_or(0)
    }
}

/// Writes `state` to DIR/scale-state.json: a temporary file, fsynced, renamed, directory fsynced.
pub fn save(dir: &Path, state: &State) -> Result<(), String> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// The fields where two parameter sets differ, as "name: stored vs given".
fn differences(stored: &Params, given: &Params, ignore: &[&str]) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(stored).unwrap_or_default(),
        serde_json::to_value(given).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["(unreadable)".into()];
    };
    a.iter()
        .filter(|(k, v)| !ignore.contains(&k.as_str()) && b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {v} in the state, {} given",
                b.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect()
}

/// The state in `dir`, if any: refused when another build wrote it or when it was written with
/// other parameters (but for the names in `ignore`); a data directory without a state is refused
/// too (not a run of ours).
pub fn load(dir: &Path, params: &Params, ignore: &[&str]) -> Result<Option<State>, String> {
    let path = dir.join(STATE_FILE);
    let stored: State = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("data").exists() {
                return Err(format!(
                    "{} holds a data directory but no {STATE_FILE}: use an empty --data-dir",
                    dir.display()
                ));
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if stored.version != STATE_VERSION {
        return Err(format!(
            "{}: state version {}, this build writes {STATE_VERSION}",
            path.display(),
            stored.version
        ));
    }
    let diff = differences(&stored.params, params, ignore);
    if !diff.is_empty() {
        return Err(format!(
            "{} was written with other parameters ({}); pass the same flags to resume, or use \
             another --data-dir",
            path.display(),
            diff.join("; ")
        ));
    }
    Ok(Some(stored))
}
