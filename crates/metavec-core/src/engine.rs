//! The engine: a data directory holding the catalogue and every collection.
//!
//! ```text
//! <data>/catalog/                       sled: the collection catalogue
//! <data>/collections/<name>.<gen>/MANIFEST
//! <data>/collections/<name>.<gen>/segments/seg-<id>.mvs, seg-<id>.hnsw, seg-<id>.tok
//!   (segments written before the `.hnsw` graph file: seg-<id>.hnsw.graph and seg-<id>.hnsw.data)
//! <data>/collections/<name>.<gen>/wal/wal-<gen>.log
//! ```
//! Every collection gets a directory generation of its own (see [`crate::catalog`]); a collection
//! created before generations keeps `collections/<name>/`. Creation writes the collection
//! directory first and the catalogue entry last; deletion removes the catalogue entry first, then
//! stops the collection's maintenance (a compaction is cancelled, a flush or snapshot finishes),
//! then removes the directory. A directory without a catalogue entry is garbage from a crash and
//! is removed at open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use crate::catalog::{Catalog, CatalogEntry};
use crate::collection::{Collection, CollectionInfo, CollectionOptions};
use crate::config::{validate_collection_name, CollectionConfig};
use crate::error::{Error, IoContext, Result};
use crate::snapshot::{restore_files, SnapshotInfo};

/// Engine-wide options.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub collection: CollectionOptions,
}

#[derive(Debug)]
pub struct Engine {
    root: PathBuf,
    catalog: Catalog,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Collections that failed to open, with the reason; the rest keep serving.
    broken: RwLock<HashMap<String, String>>,
    ddl: Mutex<()>,
    opts: EngineOptions,
}

impl Engine {
    /// Opens (or creates) a data directory and every collection in it, recovering each from its
    /// manifest and WAL.
    pub fn open(root: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        let root = root.as_ref().to_path_buf();
        let coll_root = root.join("collections");
        std::fs::create_dir_all(&coll_root).at(&coll_root)?;
        let snap_root = root.join("snapshots");
        std::fs::create_dir_all(&snap_root).at(&snap_root)?;
        for dirent in std::fs::read_dir(&snap_root).at(&snap_root)? {
            let dirent = dirent.at(&snap_root)?;
            if dirent.file_name().to_string_lossy().ends_with(".tmp") {
                tracing::info!(dir = %dirent.path().display(), "removing an unfinished snapshot");
                std::fs::remove_dir_all(dirent.path()).at(&dirent.path())?;
            }
        }
        let catalog = Catalog::open(&root.join("catalog"))?;
        let mut collections = HashMap::new();
        let mut broken = HashMap::new();
        let entries = catalog.list()?;
        for (name, entry) in &entries {
            let dir = coll_root.join(entry.dir_name(name));
            match Collection::open(name, &dir, entry.config.clone(), opts.collection.clone()) {
                Ok(c) => {
                    collections.insert(name.clone(), c);
                }
                Err(e) => {
                    tracing::error!(collection = %name, error = %e, "collection failed to open; serving the others");
                    broken.insert(name.clone(), e.to_string());
                }
            }
        }
        for dirent in std::fs::read_dir(&coll_root).at(&coll_root)? {
            let dirent = dirent.at(&coll_root)?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            if !entries.iter().any(|(n, e)| e.dir_name(n) == name) {
                tracing::info!(dir = %dirent.path().display(), "removing a collection directory the catalogue does not list");
                std::fs::remove_dir_all(dirent.path()).at(&dirent.path())?;
            }
        }
        Ok(Engine {
            root,
            catalog,
            collections: RwLock::new(collections),
            broken: RwLock::new(broken),
            ddl: Mutex::new(()),
            opts,
        })
    }

    /// Stops every collection's background threads (waiting for flushes in progress, cancelling
    /// merges). Dropping the engine does this too; after it, the directory may be opened again.
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.shutdown();
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A catalogue entry for a new collection `name`, and its (new) directory.
    fn new_entry(&self, name: &str, config: CollectionConfig) -> Result<(CatalogEntry, PathBuf)> {
        let entry = CatalogEntry {
            config,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            generation: Some(self.catalog.next_generation()?),
        };
        let dir = self.root.join("collections").join(entry.dir_name(name));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).at(&dir)?;
        }
        Ok((entry, dir))
    }

    pub fn create_collection(
        &self,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Arc<Collection>> {
        validate_collection_name(name)?;
        config.validate()?;
        let _ddl = self.ddl.lock();
        if self.catalog.contains(name)? {
            return Err(Error::AlreadyExists(format!(
                "collection {name:?} already exists"
            )));
        }
        let (entry, dir) = self.new_entry(name, config)?;
        Collection::create_dir(&dir)?;
        let coll = Collection::open(
            name,
            &dir,
            entry.config.clone(),
            self.opts.collection.clone(),
        )?;
        self.catalog.insert(name, &entry)?;
        self.broken.write().remove(name);
        self.collections
            .write()
            .insert(name.to_string(), coll.clone());
        tracing::info!(collection = name, "created collection");
        Ok(coll)
    }

    /// The open collection `name`.
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        if let Some(c) = self.collections.read().get(name) {
            return Ok(c.clone());
        }
        if let Some(why) = self.broken.read().get(name) {
            return Err(Error::FailedPrecondition(format!(
                "collection {name:?} could not be opened: {why}"
            )));
        }
        Err(Error::NotFound(format!(
            "collection {name:?} does not exist"
        )))
    }

    pub fn get_collection(&self, name: &str) -> Result<CollectionInfo> {
        Ok(self.collection(name)?.info())
    }

    /// Every open collection, by name.
    pub fn list_collections(&self) -> Vec<CollectionInfo> {
        let mut v: Vec<CollectionInfo> =
            self.collections.read().values().map(|c| c.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn snapshot_dir(&self, name: &str) -> Result<PathBuf> {
        validate_snapshot_name(name)?;
        Ok(self.root.join("snapshots").join(name))
    }

    /// Takes a consistent point-in-time snapshot of a collection while it serves and ingests.
    pub fn create_snapshot(&self, collection: &str) -> Result<SnapshotInfo> {
        let coll = self.collection(collection)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut name = format!("{collection}-{now}");
        let mut n = 1;
        while self.snapshot_dir(&name)?.exists() {
            n += 1;
            name = format!("{collection}-{now}-{n}");
        }
        let dest = self.snapshot_dir(&name)?;
        let started = std::time::Instant::now();
        let info = coll.snapshot_into(&dest, &name, now).inspect_err(|_| {
            // A failed snapshot (disk full, say) leaves no half-written directory behind.
            let _ = std::fs::remove_dir_all(crate::io::tmp_path(&dest));
        })?;
        coll.record_work(
            crate::collection::Work::Snapshot,
            started.elapsed(),
            0,
            info.bytes(),
        );
        tracing::info!(snapshot = %name, files = info.files.len(), bytes = info.bytes(), "snapshot taken");
        Ok(info)
    }

    /// Every complete snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for dirent in std::fs::read_dir(&dir).at(&dir)? {
            let dirent = dirent.at(&dir)?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                continue;
            }
            match SnapshotInfo::load(&dirent.path()) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(snapshot = %name, error = %e, "unreadable snapshot skipped")
                }
            }
        }
        out.sort_by(|a, b| (a.created_unix_ms, &a.name).cmp(&(b.created_unix_ms, &b.name)));
        Ok(out)
    }

    pub fn snapshot_info(&self, name: &str) -> Result<SnapshotInfo> {
        let dir = self.snapshot_dir(name)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("snapshot {name:?} does not exist")));
        }
        SnapshotInfo::load(&dir)
    }

    pub fn delete_snapshot(&self, name: &str) -> Result<()> {
        let dir = self.snapshot_dir(name)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("snapshot {name:?} does not exist")));
        }
        std::fs::remove_dir_all(&dir).at(&dir)
    }

    /// Restores a snapshot as a new collection `as_name`, after checking every file's checksum.
    pub fn restore_snapshot(&self, name: &str, as_name: &str) -> Result<Arc<Collection>> {
        validate_collection_name(as_name)?;
        let src = self.snapshot_dir(name)?;
        if !src.is_dir() {
            return Err(Error::NotFound(format!("snapshot {name:?} does not exist")));
        }
        let info = SnapshotInfo::load(&src)?;
        let _ddl = self.ddl.lock();
        if self.catalog.contains(as_name)? {
            return Err(Error::AlreadyExists(format!(
                "collection {as_name:?} already exists"
            )));
        }
        let (entry, dir) = self.new_entry(as_name, info.config.clone())?;
        restore_files(&*self.opts.collection.storage, &src, &info, &dir).inspect_err(|_| {
            // A failed restore (disk full, say) leaves no half-copied directory behind.
            let _ = std::fs::remove_dir_all(crate::io::tmp_path(&dir));
        })?;
        let coll = Collection::open(
            as_name,
            &dir,
            entry.config.clone(),
            self.opts.collection.clone(),
        )?;
        self.catalog.insert(as_name, &entry)?;
        self.broken.write().remove(as_name);
        self.collections
            .write()
            .insert(as_name.to_string(), coll.clone());
        tracing::info!(snapshot = name, collection = as_name, "restored snapshot");
        Ok(coll)
    }

    /// Deletes a collection and its files. Handles held elsewhere start failing with NotFound.
    /// Returns once the collection's maintenance has stopped: a compaction in progress is
    /// cancelled (it fails with NotFound), a flush or snapshot in progress finishes or is
    /// cancelled the same way, and only then are the files removed. A collection of the same name
    /// may be created meanwhile; it gets a directory of its own.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let (coll, dir) = {
            let _ddl = self.ddl.lock();
            let Some(entry) = self.catalog.get(name)? else {
                return Err(Error::NotFound(format!(
                    "collection {name:?} does not exist"
                )));
            };
            self.catalog.remove(name)?;
            self.broken.write().remove(name);
            let coll = self.collections.write().remove(name);
            if let Some(c) = &coll {
                c.mark_dropped();
            }
            (
                coll,
                self.root.join("collections").join(entry.dir_name(name)),
            )
        };
        // Outside the DDL lock: other collections' DDL need not wait for this one's maintenance.
        if let Some(c) = coll {
            // The background thread (its flush or compaction sees the drop), then any flush,
            // compaction or snapshot an operator started: a merge holds `merge_lock` while it
            // runs, a flush or snapshot `flush_lock`.
            c.shutdown();
            drop(c.merge_lock.lock());
            drop(c.flush_lock.lock());
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted collection's files; they go at next open");
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

/// Snapshot names become directory names: ASCII letters, digits, `_` and `-`, 1..=128 bytes.
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    crate::config::validate_dir_name("snapshot", name, 128)
}
