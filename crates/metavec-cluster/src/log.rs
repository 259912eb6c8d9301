//! What a shard's stream carries: one message per write, or for a batch larger than one message,
//! its parts and then a commit record.
//!
//! ```text
//! message := magic "MVC1" | kind u8 | reserved [3] | batch [16] | part u32 | parts u32 | body
//!   kind 1 Whole:  body is one WAL record (metavec-core's `wal::record` framing, checksummed)
//!   kind 2 Part:   body is one WAL upsert record holding part `part` of `parts` of `batch`
//!   kind 3 Commit: no body; the batch's `parts` parts are applied, in part order, as one upsert
//!   kind 4 Op:     body is one conditional write as JSON ([`Op`]): a delete by filter or a
//!                  payload update, evaluated by each replica against its state at that point
//!                  of the stream (the same on every replica), with a crc32 of the JSON after it
//! ```
//! The WAL framing carries its own crc32, so a message is checked end to end. A replica buffers
//! parts until the batch is complete (its commit and every part it names, in any order: a part
//! sent again lands after the commit); a batch never completed (the front died between
//! publishes) is never applied. Every message has a `Nats-Msg-Id` of `batch` and `part` (the commit's part
//! is `parts`), so a front's retry of a publish is dropped by the stream's duplicate window.

use metavec_core::wal::record::{self, Record};
use metavec_core::Document;

use crate::error::{ClusterError, Result};

const MAGIC: &[u8; 4] = b"MVC1";
const HEADER_LEN: usize = 32;

/// The kind of a stream message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Whole = 1,
    Part = 2,
    Commit = 3,
    Op = 4,
}

/// A write whose effect depends on the state it meets: replicas evaluate it where it stands in
/// the stream, so a front never reads and then writes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Deletes the documents whose payload matches `filter` (filter JSON, as a request gives it).
    DeleteByFilter { filter: String },
    /// Sets (or with `merge`, merges into) the payload of `ids`; None clears it. Every id must
    /// be stored, else nothing changes.
    SetPayload {
        ids: Vec<String>,
        payload: Option<String>,
        merge: bool,
    },
}

/// A decoded stream message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    pub batch: [u8; 16],
    pub part: u32,
    pub parts: u32,
    /// `None` for a commit and an op.
    pub record: Option<Record>,
    /// An op message's write.
    pub op: Option<Op>,
}

/// The `Nats-Msg-Id` of a message: the batch in hex and the part.
pub fn message_id(batch: &[u8; 16], part: u32) -> String {
    let mut s = String::with_capacity(40);
    for b in batch {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('-');
    s.push_str(&part.to_string());
    s
}

fn header(kind: Kind, batch: &[u8; 16], part: u32, parts: u32, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(batch);
    out.extend_from_slice(&part.to_le_bytes());
    out.extend_from_slice(&parts.to_le_bytes());
    out
}

/// One message holding a whole write (`record` is a framed WAL record).
pub fn whole(batch: &[u8; 16], record: &[u8]) -> Vec<u8> {
    let mut out = header(Kind::Whole, batch, 0, 1, record.len());
    out.extend_from_slice(record);
    out
}

/// Part `part` of `parts` of an upsert batch.
pub fn part(batch: &[u8; 16], part: u32, parts: u32, docs: &[Document]) -> Vec<u8> {
    let rec = record::encode_upsert(0, docs);
    let mut out = header(Kind::Part, batch, part, parts, rec.len());
    out.extend_from_slice(&rec);
    out
}

/// One message holding a conditional write.
pub fn op(batch: &[u8; 16], op: &Op) -> Vec<u8> {
    let json = serde_json::to_vec(op).expect("an op serialises");
    let mut out = header(Kind::Op, batch, 0, 1, json.len() + 4);
    out.extend_from_slice(&json);
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out
}

/// The commit record of a batch of `parts` parts.
pub fn commit(batch: &[u8; 16], parts: u32) -> Vec<u8> {
    header(Kind::Commit, batch, parts, parts, 0)
}

/// Decodes a message of a collection with `floats_per_doc` floats per document.
pub fn decode(buf: &[u8], floats_per_doc: usize) -> Result<Message> {
    if buf.len() < HEADER_LEN || &buf[..4] != MAGIC {
        return Err(ClusterError::Corrupt(
            "stream message without the MVC1 header".into(),
        ));
    }
    let kind = match buf[4] {
        1 => Kind::Whole,
        2 => Kind::Part,
        3 => Kind::Commit,
        4 => Kind::Op,
        k => return Err(ClusterError::Corrupt(format!("unknown message kind {k}"))),
    };
    let mut batch = [0u8; 16];
    batch.copy_from_slice(&buf[8..24]);
    let part = u32::from_le_bytes(buf[24..28].try_into().unwrap());
    let parts = u32::from_le_bytes(buf[28..32].try_into().unwrap());
    let body = &buf[HEADER_LEN..];
    let op = match kind {
        Kind::Op => {
            let (json, crc) = body
                .split_last_chunk::<4>()
                .ok_or_else(|| ClusterError::Corrupt("op message without its checksum".into()))?;
            if crc32fast::hash(json) != u32::from_le_bytes(*crc) {
                return Err(ClusterError::Corrupt(
                    "op message: checksum mismatch".into(),
                ));
            }
            let op = serde_json::from_slice(json)
                .map_err(|e| ClusterError::Corrupt(format!("op message: {e}")))?;
            Some(op)
        }
        _ => None,
    };
    let record = match kind {
        Kind::Commit | Kind::Op => None,
        Kind::Whole | Kind::Part => {
            let (rec, len) = record::decode(body, floats_per_doc)
                .map_err(|e| ClusterError::Corrupt(format!("stream record: {e:?}")))?;
            if len != body.len() {
                return Err(ClusterError::Corrupt(format!(
                    "stream record of {len} bytes in a body of {}",
                    body.len()
                )));
            }
            Some(rec)
        }
    };
    Ok(Message {
        kind,
        batch,
        part,
        parts,
        record,
        op,
    })
}

/// Splits `docs` into runs whose encoded size stays under `max_bytes` (at least one document a
/// run: a single document larger than the limit is the caller's error to report).
pub fn split(docs: &[Document], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, HEADER_LEN + record::RECORD_HEADER_LEN + 4);
    for (i, d) in docs.iter().enumerate() {
        let size =
            2 + d.id.len() + 4 + d.payload.as_ref().map_or(0, |p| p.len()) + 4 * d.vectors.len();
        if i > start && bytes + size > max_bytes {
            runs.push(start..i);
            start = i;
            bytes = HEADER_LEN + record::RECORD_HEADER_LEN + 4;
        }
        bytes += size;
    }
    if start < docs.len() {
        runs.push(start..docs.len());
    }
    runs
}

/// The encoded size of one document in a part (for the caller's limit check).
pub fn doc_bytes(d: &Document) -> usize {
    HEADER_LEN
        + record::RECORD_HEADER_LEN
        + 4
        + 2
        + d.id.len()
        + 4
        + d.payload.as_ref().map_or(0, |p| p.len())
        + 4 * d.vectors.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, n: usize) -> Document {
        Document::new(id, (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn messages_round_trip_and_a_flipped_byte_is_caught() {
        let b = [7u8; 16];
        let docs = vec![doc("a", 8), doc("b", 8).with_payload(r#"{"x":1}"#)];
        let m = decode(&part(&b, 1, 3, &docs), 8).unwrap();
        assert_eq!((m.kind, m.part, m.parts, m.batch), (Kind::Part, 1, 3, b));
        assert_eq!(
            m.record,
            Some(Record::Upsert {
                seq: 0,
                docs: docs.clone()
            })
        );
        let c = decode(&commit(&b, 3), 8).unwrap();
        assert_eq!((c.kind, c.parts, c.record), (Kind::Commit, 3, None));
        let w = whole(&b, &record::encode_delete(0, &["a".to_string()]));
        assert!(matches!(
            decode(&w, 8).unwrap().record,
            Some(Record::Delete { .. })
        ));
        let mut bad = part(&b, 0, 1, &docs);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad, 8).is_err());
        assert!(decode(b"nope", 8).is_err());
        for o in [
            Op::DeleteByFilter {
                filter: r#"{"eq":{"field":"x","value":1}}"#.into(),
            },
            Op::SetPayload {
                ids: vec!["a".into(), "b".into()],
                payload: None,
                merge: true,
            },
        ] {
            let mut msg = op(&b, &o);
            let m = decode(&msg, 8).unwrap();
            assert_eq!((m.kind, m.op, m.record), (Kind::Op, Some(o), None));
            let at = HEADER_LEN + 3;
            msg[at] ^= 1;
            assert!(
                decode(&msg, 8).is_err(),
                "a flipped byte in an op is caught"
            );
        }
        assert_eq!(message_id(&[0xab; 16], 2), format!("{}-2", "ab".repeat(16)));
    }

    #[test]
    fn split_keeps_each_run_under_the_limit() {
        let docs: Vec<Document> = (0..10).map(|i| doc(&format!("d{i}"), 100)).collect();
        let one = doc_bytes(&docs[0]) - HEADER_LEN - record::RECORD_HEADER_LEN - 4;
        let limit = HEADER_LEN + record::RECORD_HEADER_LEN + 4 + 3 * one;
        let runs = split(&docs, limit);
        assert_eq!(runs, vec![0..3, 3..6, 6..9, 9..10]);
        for r in &runs {
            assert!(part(&[0; 16], 0, 1, &docs[r.clone()]).len() <= limit);
        }
        assert_eq!(
            split(&docs, 1),
            (0..10).map(|i| i..i + 1).collect::<Vec<_>>()
        );
        assert!(split(&[], 10).is_empty());
    }
}
