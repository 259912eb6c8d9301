//! The engine: a data directory holding the catalogue and every collection.
//!
//! ```text
//! <data>/catalog/                 sled: the collection catalogue
//! <data>/collections/<name>/MANIFEST
//! <data>/collections/<name>/segments/seg-<id>.mvs, seg-<id>.hnsw.graph, seg-<id>.hnsw.data
//! <data>/collections/<name>/wal/wal-<gen>.log
//! ```
//! Creation writes the collection directory first and the catalogue entry last; deletion removes
//! the catalogue entry first. A directory without a catalogue entry is garbage from a crash and
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
        let catalog = Catalog::open(&root.join("catalog"))?;
        let mut collections = HashMap::new();
        let mut broken = HashMap::new();
        let entries = catalog.list()?;
        for (name, entry) in &entries {
            let dir = coll_root.join(name);
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
            if !entries.iter().any(|(n, _)| *n == name) {
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

    /// Stops every background flusher (waiting for flushes in progress). Dropping the engine
    /// does this too; after it, the directory may be opened again.
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.shutdown();
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join("collections").join(name)
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
        let dir = self.dir_of(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).at(&dir)?;
        }
        Collection::create_dir(&dir)?;
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let coll = Collection::open(name, &dir, config.clone(), self.opts.collection.clone())?;
        self.catalog.insert(
            name,
            &CatalogEntry {
                config,
                created_unix_ms,
            },
        )?;
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

    /// Deletes a collection and its files. Handles held elsewhere start failing with NotFound.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let _ddl = self.ddl.lock();
        if !self.catalog.contains(name)? {
            return Err(Error::NotFound(format!(
                "collection {name:?} does not exist"
            )));
        }
        self.catalog.remove(name)?;
        self.broken.write().remove(name);
        if let Some(c) = self.collections.write().remove(name) {
            c.mark_dropped();
            c.shutdown();
        }
        let dir = self.dir_of(name);
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
