//! The catalogue of collections, in sled: tree `collections`, key = name, value = JSON record.
//!
//! Each collection lives in its own directory, `collections/<name>.<generation>/`, with a
//! generation no other collection has had (sled's durable monotonic id), so a collection created
//! after another of the same name was deleted never shares a path with it — whatever the old one's
//! maintenance still does. Entries written before generations have none, and their directory is
//! `collections/<name>/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::CollectionConfig;
use crate::error::{Error, Result};

/// What the catalogue stores per collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub config: CollectionConfig,
    pub created_unix_ms: u64,
    /// The generation in the directory name; `None` for the layout before generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl CatalogEntry {
    /// The name of the directory (under `collections/`) of the collection `name`.
    pub fn dir_name(&self, name: &str) -> String {
        match self.generation {
            Some(g) => format!("{name}.{g}"),
            None => name.to_string(),
        }
    }
}

#[derive(Debug)]
pub struct Catalog {
    db: sled::Db,
    tree: sled::Tree,
}

/// Whether sled could not take its directory's file lock: sled reports it as an `Other` error
/// "could not acquire lock on ..." (wrapping the `WouldBlock` of the lock call).
fn is_lock_held(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
}

fn cat_err(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) if is_lock_held(&io) => Error::FailedPrecondition(format!(
            "data directory is in use by another process ({io})"
        )),
        other => Error::Catalog(other.to_string()),
    }
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog> {
        // sled releases its file lock when the last of its background threads lets go of a
        // dropped database, which can be a moment after the drop: a reopen in the same process
        // (an engine closed and opened again) retries for up to 10 s before it calls the directory
        // busy (1 s was not always enough on a loaded CI machine).
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if is_lock_held(&io) && tries < 500 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(cat_err(e)),
            }
        };
        let tree = db.open_tree("collections").map_err(cat_err)?;
        Ok(Catalog { db, tree })
    }

    pub fn list(&self) -> Result<Vec<(String, CatalogEntry)>> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(cat_err)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let entry: CatalogEntry = serde_json::from_slice(&v).map_err(|e| {
                Error::Catalog(format!("catalogue entry {name:?} does not parse: {e}"))
            })?;
            out.push((name, entry));
        }
        Ok(out)
    }

    pub fn contains(&self, name: &str) -> Result<bool> {
        self.tree.contains_key(name).map_err(cat_err)
    }

    pub fn get(&self, name: &str) -> Result<Option<CatalogEntry>> {
        let Some(v) = self.tree.get(name).map_err(cat_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| Error::Catalog(format!("catalogue entry {name:?} does not parse: {e}")))
    }

    /// A directory generation never handed out before, also across crashes and restarts.
    pub fn next_generation(&self) -> Result<u64> {
        self.db.generate_id().map_err(cat_err)
    }

    /// Inserts and makes the insert durable.
    pub fn insert(&self, name: &str, entry: &CatalogEntry) -> Result<()> {
        let v = serde_json::to_vec(entry).map_err(|e| Error::Catalog(e.to_string()))?;
        self.tree.insert(name, v).map_err(cat_err)?;
        self.db.flush().map_err(cat_err)?;
        Ok(())
    }

    /// Removes and makes the removal durable.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.tree.remove(name).map_err(cat_err)?;
        self.db.flush().map_err(cat_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled lets go of its file lock a moment after the drop (its background threads hold the
    /// database): a catalogue opened again at once waits for it instead of calling the directory
    /// busy. sled reports the held lock as an `Other` error "could not acquire lock on ...", not
    /// as `WouldBlock` (CI, 2026-12-06: the engine model test's reopen failed so).
    #[test]
    fn a_catalogue_reopened_at_once_after_a_write_opens() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..30u64 {
            let c = Catalog::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
            c.next_generation().unwrap();
            drop(c);
        }
        let c = Catalog::open(dir.path()).unwrap();
        assert!(c.next_generation().unwrap() >= 30);
        // A catalogue still open is busy, and said so (after the wait).
        let err = Catalog::open(dir.path()).err().unwrap();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
}
