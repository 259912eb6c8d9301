//! Cluster mode: a collection's documents are split over S shards by `crc32(id) mod S`; each
//! shard is a NATS JetStream stream (replicated by NATS, deduplicated by message id) that R
//! serving replicas, each a local engine collection on some node, consume in order and apply
//! through the engine's own write path. The cluster map (nodes, collections, which node serves
//! which shard) is a JetStream KV bucket. Any node is a front: it publishes writes to the shards'
//! streams and acknowledges once every publish is acknowledged, and it answers a search from one
//! caught-up replica per shard, merged by (score desc, id asc) as one server would.
//!
//! See docs/CLUSTER.md for the model: what an acknowledgement means, the resume point of a
//! replica, and failure cases.

pub mod error;
pub mod log;
pub mod map;
pub mod node;
pub mod replica;

pub use error::{ClusterError, Result};
pub use map::{CollectionEntry, NodeEntry};
pub use node::{Node, NodeOptions, Peers, ReadToken, Target};
