//! metavec-core: the storage and search engine of metavec, a database for Matryoshka
//! multi-vector embeddings (MetaEmbed, ColBERT-style late interaction with a fixed vector count).
//!
//! Synchronous and usable on its own: the gRPC server only converts and calls.
//!
//! ```no_run
//! use metavec_core::{Budget, CollectionConfig, Document, Engine, EngineOptions, SearchRequest};
//!
//! let engine = Engine::open("./metavec-data", EngineOptions::default())?;
//! // D = 4, M_c = 4 vectors per document, M_q = 2 per query; trained budgets (1,1) (2,4).
//! let coll = engine.create_collection("docs", CollectionConfig::new(4, 4, 2))?;
//! let vectors: Vec<f32> = (0..16).map(|i| (i % 5) as f32 + 1.0).collect();
//! coll.upsert(vec![Document::new("a", vectors).with_payload(r#"{"lang":"en"}"#)])?;
//! let query = vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
//! let res = coll.search(&SearchRequest::new(query, Budget::new(2, 4), 10))?;
//! assert_eq!(res.hits[0].id, "a");
//! # Ok::<(), metavec_core::Error>(())
//! ```
//!
//! Data flow: upsert -> WAL (fsync, group commit) -> memtable (searchable at once) -> flush ->
//! sealed segment (prefix-grouped vectors, mmap) + HNSW over vector 0 -> manifest commit.
//! Search: HNSW candidates per segment + memtable scan -> MaxSim over the r_c prefix -> top-k.
#![deny(unsafe_code)]

pub mod background;
pub mod catalog;
pub mod collection;
pub mod compaction;
pub mod config;
pub mod document;
pub mod engine;
pub mod error;
pub mod format;
pub mod index;
pub mod inspect;
pub mod io;
pub mod manifest;
pub mod score;
pub mod search;
pub mod segment;
pub mod snapshot;
pub mod synth;
#[cfg(feature = "fault-injection")]
pub mod testing;
pub mod wal;

pub use collection::{
    Collection, CollectionInfo, CollectionOptions, MaintenanceStats, PayloadUpdate, ScrollPage,
    SegmentInfo, WriteAck,
};
pub use compaction::CompactionReport;
pub use config::{Budget, CollectionConfig, Dtype, HnswConfig};
pub use document::Document;
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result};
pub use search::{Hit, SearchRequest, SearchResponse, SearchStats};
pub use snapshot::SnapshotInfo;
