//! Errors of cluster mode.

/// What a cluster operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The engine refused (bad input, a missing collection, ...): its error as is.
    #[error(transparent)]
    Engine(#[from] metavec_core::Error),
    /// NATS or JetStream failed or timed out.
    #[error("nats: {0}")]
    Nats(String),
    /// No live replica of a shard could answer.
    #[error("shard {shard} of collection {collection:?} has no live replica: {why}")]
    Unavailable {
        collection: String,
        shard: u32,
        why: String,
    },
    /// Another node could not be reached, or did not answer in time: the next replica may.
    #[error("peer: {0}")]
    Peer(String),
    /// Another node (or this node's own service) refused the request: its gRPC status code and
    /// message, passed on as they are.
    #[error("{message}")]
    Remote { code: i32, message: String },
    #[error("collection {0:?} already exists in the cluster")]
    AlreadyExists(String),
    #[error("collection {0:?} does not exist in the cluster")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A stream message or map entry that does not decode.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl ClusterError {
    /// A failure of this replica or of the way to it, not of the request: another replica of
    /// the shard may answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClusterError::Unavailable { .. } | ClusterError::Nats(_) | ClusterError::Peer(_)
        )
    }

    pub(crate) fn nats(e: impl std::fmt::Display) -> Self {
        ClusterError::Nats(e.to_string())
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
