//! Record framing and batch encoding.
//!
//! ```text
//! record := len u32 | crc u32 | kind u8 | reserved [3] | seq u64 | payload [len]
//!           crc = crc32(kind | reserved | seq | payload)
//! upsert payload := count u32, then per doc:
//!           id_len u16 | id | payload_len u32 (u32::MAX = none) | payload | vectors [M_c * D] f32
//! delete payload := count u32, then per id: id_len u16 | id
//! ```
//! Vectors are stored already normalised, so replay is bit-identical to the acknowledged write.

use crate::error::{Error, Result};
use crate::format::{u16_at, u32_at, u64_at};
use crate::Document;

pub const RECORD_HEADER_LEN: usize = 20;
/// A record larger than this is treated as a corrupt length.
pub const MAX_RECORD_LEN: usize = 1 << 31;
const NO_PAYLOAD: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Upsert = 1,
    Delete = 2,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Upsert),
            2 => Some(RecordKind::Delete),
            _ => None,
        }
    }
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Upsert { seq: u64, docs: Vec<Document> },
    Delete { seq: u64, ids: Vec<String> },
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Upsert { seq, .. } | Record::Delete { seq, .. } => *seq,
        }
    }
}

/// Frames an upsert batch. `docs` must be validated (ids <= 256 bytes) and normalised.
pub fn encode_upsert(seq: u64, docs: &[Document]) -> Vec<u8> {
    let floats: usize = docs.iter().map(|d| d.vectors.len()).sum();
    let mut p = Vec::with_capacity(4 + floats * 4 + docs.len() * 64);
    p.extend_from_slice(&(docs.len() as u32).to_le_bytes());
    for d in docs {
        put_str16(&mut p, &d.id);
        match &d.payload {
            Some(json) => {
                p.extend_from_slice(&(json.len() as u32).to_le_bytes());
                p.extend_from_slice(json.as_bytes());
            }
            None => p.extend_from_slice(&NO_PAYLOAD.to_le_bytes()),
        }
        for v in &d.vectors {
            p.extend_from_slice(&v.to_le_bytes());
        }
    }
    frame(RecordKind::Upsert, seq, &p)
}

pub fn encode_delete(seq: u64, ids: &[String]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + ids.iter().map(|i| i.len() + 2).sum::<usize>());
    p.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        put_str16(&mut p, id);
    }
    frame(RecordKind::Delete, seq, &p)
}

fn put_str16(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u16).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn frame(kind: RecordKind, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Why a record could not be decoded; recovery truncates the file at its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the announced payload: a torn write.
    Truncated,
    /// Length, checksum or structure is wrong.
    Corrupt(String),
}

/// Decodes the record at the start of `buf`; returns it and its framed length.
/// `floats_per_doc` is M_c * D of the collection.
pub fn decode(buf: &[u8], floats_per_doc: usize) -> Result<(Record, usize), DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let len = u32_at(buf, 0) as usize;
    if len > MAX_RECORD_LEN {
        return Err(DecodeError::Corrupt(format!(
            "record length {len} is implausible"
        )));
    }
    let total = RECORD_HEADER_LEN + len;
    if buf.len() < total {
        return Err(DecodeError::Truncated);
    }
    let crc = u32_at(buf, 4);
    if crc32fast::hash(&buf[8..total]) != crc {
        return Err(DecodeError::Corrupt("record checksum mismatch".into()));
    }
    let seq = u64_at(buf, 12);
    let payload = &buf[RECORD_HEADER_LEN..total];
    let kind = RecordKind::from_u8(buf[8])
        .ok_or_else(|| DecodeError::Corrupt(format!("unknown record kind {}", buf[8])))?;
    let mut cur = Cursor { b: payload, at: 0 };
    let record = match kind {
        RecordKind::Upsert => {
            let n = cur.u32()? as usize;
            let mut docs = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = cur.str16()?;
                let plen = cur.u32()?;
                let payload = if plen == NO_PAYLOAD {
                    None
                } else {
                    Some(cur.utf8(plen as usize)?)
                };
                let raw = cur.take(floats_per_doc * 4)?;
                let vectors = crate::format::f32s_le(raw).collect();
                docs.push(Document {
                    id,
                    vectors,
                    payload,
                });
            }
            Record::Upsert { seq, docs }
        }
        RecordKind::Delete => {
            let n = cur.u32()? as usize;
            let mut ids = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                ids.push(cur.str16()?);
            }
            Record::Delete { seq, ids }
        }
    };
    if cur.at != payload.len() {
        return Err(DecodeError::Corrupt("record has trailing bytes".into()));
    }
    Ok((record, total))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                DecodeError::Corrupt("record payload is shorter than its contents".into())
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let n = u16_at(self.take(2)?, 0) as usize;
        self.utf8(n)
    }
    fn utf8(&mut self, n: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| DecodeError::Corrupt("record holds invalid UTF-8".into()))
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Corruption {
            path: Default::default(),
            offset: 0,
            message: format!("{e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc(id: &str, n: usize, payload: Option<&str>) -> Document {
        Document {
            id: id.into(),
            vectors: (0..n).map(|i| i as f32 * 0.25 - 1.0).collect(),
            payload: payload.map(str::to_string),
        }
    }

    #[test]
    fn round_trip() {
        let docs = vec![doc("a", 6, Some(r#"{"x":1}"#)), doc("βeta", 6, None)];
        let bytes = encode_upsert(7, &docs);
        let (rec, used) = decode(&bytes, 6).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(rec, Record::Upsert { seq: 7, docs });
        let ids = vec!["a".to_string(), "b".to_string()];
        let bytes = encode_delete(8, &ids);
        assert_eq!(decode(&bytes, 6).unwrap().0, Record::Delete { seq: 8, ids });
    }

    #[test]
    fn every_prefix_is_truncated_and_every_flip_is_caught() {
        let bytes = encode_upsert(1, &[doc("abc", 4, Some("{}"))]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 4).is_err(), "prefix {cut} decoded");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad, 4).is_err(), "flip at {i} not caught");
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), fpd in 0usize..8) {
            let _ = decode(&bytes, fpd);
        }
    }
}
