//! metavec's gRPC contract: the types and service stubs generated from `proto/metavec/v1`,
//! conversions between them and metavec-core, and the one mapping from engine errors to
//! gRPC statuses.
//!
//! A Rust client (add `metavec-api`, `tonic` and `tokio` to your crate; a complete program that
//! creates a collection, streams documents, searches and reads back is
//! `examples/client.rs`: `cargo run --release -p metavec-api --example client`):
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use metavec_api::pb::{collections_client::CollectionsClient, ListCollectionsRequest};
//! let mut client = CollectionsClient::connect("http://127.0.0.1:50051").await?;
//! let list = client.list_collections(ListCollectionsRequest {}).await?.into_inner();
//! println!("{} collections", list.collections.len());
//! # Ok(()) }
//! ```

pub mod convert;

/// Generated protobuf types and gRPC stubs of package `metavec.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/metavec.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/metavec_descriptor.bin"));

pub use convert::to_status;
