//! Bounded responses: Get, Search and SearchBatch reserve the encoded size of every part of a
//! response as they gather it and stop at the server's message limit (`--max-message-bytes`), so
//! a request for 300 copies of a 1 MB document or 400 hits with payloads is refused with
//! RESOURCE_EXHAUSTED after at most the limit plus one document, not built in full and then
//! refused by the encoder.
//!
//! What a response reserved is reported to the client in the `metavec-response-reserved-bytes`
//! metadata (on success and on RESOURCE_EXHAUSTED alike), and the largest figure since start is
//! the `metavec_response_reserved_bytes_max` gauge.

use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// Metadata key carrying the bytes a response reserved.
pub const RESERVED_KEY: &str = "metavec-response-reserved-bytes";

/// The largest reservation of any response since start.
static PEAK: AtomicU64 = AtomicU64::new(0);

/// The bytes one response may still take.
#[derive(Debug)]
pub struct ResponseBudget {
    limit: usize,
    reserved: usize,
}

/// The bytes `m` takes as one element of a repeated (or an embedded) message field: its tag, its
/// length prefix and its encoding.
pub fn framed<M: Message>(m: &M) -> usize {
    let len = m.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// The same for a string field.
pub fn framed_str(s: &str) -> usize {
    1 + prost::length_delimiter_len(s.len()) + s.len()
}

impl ResponseBudget {
    pub fn new(limit: usize) -> Self {
        ResponseBudget { limit, reserved: 0 }
    }

    /// Counts `n` bytes the response now holds. Once the total passes the limit the response is
    /// refused (`what` says what was being gathered); the part that passed it is already held,
    /// so a response never holds more than the limit plus one part.
    pub fn reserve(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<(), Status> {
        self.reserved = self.reserved.saturating_add(n);
        if self.reserved <= self.limit {
            return Ok(());
        }
        let limit = self.limit;
        Err(self.status(Status::new(
            Code::ResourceExhausted,
            format!(
                "the response would exceed the {limit}-byte message limit (--max-message-bytes): \
                 {}; ask for fewer ids, hits or queries, or without payloads",
                what()
            ),
        )))
    }

    fn metadata(&self) -> MetadataMap {
        let peak = self.reserved as u64;
        if PEAK.fetch_max(peak, Ordering::Relaxed) < peak {
            metrics::gauge!("metavec_response_reserved_bytes_max").set(peak as f64);
        }
        let mut m = MetadataMap::new();
        m.insert(RESERVED_KEY, MetadataValue::from(peak));
        m
    }

    /// `status` with what this response reserved in its metadata.
    pub fn status(&self, status: Status) -> Status {
        Status::with_metadata(status.code(), status.message(), self.metadata())
    }

    /// The finished response, with what it reserved in its metadata.
    pub fn response<T>(&self, body: T) -> tonic::Response<T> {
        tonic::Response::from_parts(self.metadata(), body, Default::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_reports_what_it_holds() {
        let mut b = ResponseBudget::new(100);
        b.reserve(60, || unreachable!()).unwrap();
        b.reserve(40, || unreachable!()).unwrap();
        let e = b.reserve(10, || "document 2 of 3".into()).unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(
            e.message().contains(
                "exceed the 100-byte message limit (--max-message-bytes): document 2 of 3"
            ),
            "{}",
            e.message()
        );
        assert_eq!(e.metadata().get(RESERVED_KEY).unwrap(), "110");
        let r = b.response(());
        assert_eq!(r.metadata().get(RESERVED_KEY).unwrap(), "110");
    }

    #[test]
    fn framing_counts_what_prost_encodes() {
        let hit = metavec_api::pb::Hit {
            id: "x".repeat(300),
            score: 1.0,
            payload: "y".repeat(200),
        };
        let resp = metavec_api::pb::SearchResponse {
            hits: vec![hit.clone(), hit.clone()],
            ..Default::default()
        };
        assert_eq!(resp.encoded_len(), 2 * framed(&hit));
        let get = metavec_api::pb::GetResponse {
            documents: vec![],
            missing_ids: vec!["abc".into(), "z".repeat(200)],
        };
        assert_eq!(
            get.encoded_len(),
            framed_str("abc") + framed_str(&"z".repeat(200))
        );
    }
}
