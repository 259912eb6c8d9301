//! The cluster map, in a JetStream KV bucket: `node.{id}` -> [`NodeEntry`], `collection.{name}`
//! -> [`CollectionEntry`]. A collection is written once, with create-if-absent, so two fronts
//! creating the same name race to one winner; later changes of an entry (part 2's rebalancing)
//! go through compare-and-set on its revision.

use serde::{Deserialize, Serialize};

use metavec_core::CollectionConfig;

use crate::error::{ClusterError, Result};

/// The KV bucket of the cluster map.
pub const BUCKET: &str = "metavec_cluster";

/// A node as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: String,
    /// host:port of its gRPC API.
    pub addr: String,
}

/// A collection: its config, shard count, serving replication factor and which nodes serve
/// each shard's replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionEntry {
    pub name: String,
    /// Names the streams and the local collections, so a re-created name starts clean.
    pub uid: String,
    pub config: CollectionConfig,
    pub shards: u32,
    pub replicas: u32,
    /// `assign[s]`: the node ids serving shard `s`.
    pub assign: Vec<Vec<String>>,
}

impl CollectionEntry {
    /// The stream of shard `s`.
    pub fn stream(&self, s: u32) -> String {
        format!("MV_{}_{s}", self.uid)
    }

    /// The subject the stream of shard `s` takes.
    pub fn subject(&self, s: u32) -> String {
        format!("mv.{}.{s}", self.uid)
    }

    /// The local engine collection holding a replica of shard `s`.
    pub fn local_name(&self, s: u32) -> String {
        format!("{}_{}_s{s}", self.name, self.uid)
    }

    /// The shard of a document id: `crc32(id) mod shards`.
    pub fn shard_of(&self, id: &str) -> u32 {
        crc32fast::hash(id.as_bytes()) % self.shards
    }

    /// The shards `node` serves.
    pub fn shards_of(&self, node: &str) -> Vec<u32> {
        (0..self.shards)
            .filter(|&s| self.assign[s as usize].iter().any(|n| n == node))
            .collect()
    }
}

/// Replica `r` of shard `s` on node `(s + r) mod n` of the sorted ids: each node serves
/// `shards * replicas / n` replicas (within one), no shard twice on a node while
/// `replicas <= n`.
pub fn place(nodes: &[String], shards: u32, replicas: u32) -> Vec<Vec<String>> {
    let mut sorted = nodes.to_vec();
    sorted.sort();
    let n = sorted.len();
    (0..shards as usize)
        .map(|s| {
            (0..replicas as usize)
                .map(|r| sorted[(s + r) % n].clone())
                .collect()
        })
        .collect()
}

/// A node id or collection name as a KV key token: ASCII letters, digits, `_` and `-`.
pub fn check_token(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ClusterError::Invalid(format!(
            "{what} {s:?}: 1..=64 ASCII letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}

pub fn node_key(id: &str) -> String {
    format!("node.{id}")
}

pub fn collection_key(name: &str) -> String {
    format!("collection.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_replicas_and_never_doubles_a_shard_on_a_node() {
        let nodes: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let a = place(&nodes, 12, 2);
        assert_eq!(a[0], vec!["a", "b"]);
        assert_eq!(a[2], vec!["c", "a"]);
        for s in &a {
            assert_ne!(s[0], s[1]);
        }
        for n in ["a", "b", "c"] {
            let held = a.iter().filter(|s| s.iter().any(|x| x == n)).count();
            assert_eq!(held, 8, "{n}");
        }
        let e = CollectionEntry {
            name: "docs".into(),
            uid: "u1".into(),
            config: CollectionConfig::new(8, 4, 4),
            shards: 12,
            replicas: 2,
            assign: a,
        };
        assert_eq!(e.shards_of("a").len(), 8);
        assert!(e.shard_of("some-id") < 12);
        assert!(metavec_core::config::validate_collection_name(&e.local_name(11)).is_ok());
        assert!(check_token("node id", "n-1_a").is_ok());
        assert!(check_token("node id", "n.1").is_err());
        assert!(check_token("node id", "").is_err());
    }
}
