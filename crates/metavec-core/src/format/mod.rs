//! Bytes shared by every metavec file: the preamble (magic, kind, version, header crc) and alignment.
//!
//! ```text
//! offset size field
//!  0      8   magic        0x89 'M' 'V' 'C' '\r' '\n' 0x1A '\n'  (PNG-style: catches text-mode mangling)
//!  8      4   kind         ASCII tag: "SEGM", "WAL ", "MANI", "TOKS"
//! 12      2   major        format major version (a reader refuses a major it does not know)
//! 14      2   minor        format minor version (additive changes only)
//! 16      4   flags        kind-specific, 0 today
//! 20      4   header_len   bytes of kind-specific header that follow the preamble
//! 24      4   header_crc   crc32 of bytes 0..24 followed by the header bytes
//! 28      4   reserved     zero
//! ```
//! All integers are little-endian.

use std::path::Path;

use crate::error::{Error, Result};

pub const MAGIC: [u8; 8] = [0x89, b'M', b'V', b'C', b'\r', b'\n', 0x1A, b'\n'];
pub const PREAMBLE_LEN: usize = 32;
/// Vector blocks start on this boundary.
pub const ALIGN: usize = 64;

#[cfg(not(target_endian = "little"))]
compile_error!("metavec's file formats are little-endian and the readers map them in place");

/// The kind tag of a metavec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Wal,
    Manifest,
    /// A segment's token index (`index::tokens`).
    Tokens,
    /// A segment's vector-0 graph as searches walk it (`index::walk`).
    Graph,
}

impl FileKind {
    pub fn tag(self) -> [u8; 4] {
        match self {
            FileKind::Segment => *b"SEGM",
            FileKind::Wal => *b"WAL ",
            FileKind::Manifest => *b"MANI",
            FileKind::Tokens => *b"TOKS",
            FileKind::Graph => *b"HNSW",
        }
    }

    /// (major, minor) written by this build.
    pub fn version(self) -> (u16, u16) {
        match self {
            FileKind::Segment => (1, 1),
            FileKind::Wal => (1, 0),
            FileKind::Manifest => (1, 0),
            FileKind::Tokens => (1, 0),
            FileKind::Graph => (1, 0),
        }
    }
}

/// A decoded preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub kind: FileKind,
    pub major: u16,
    pub minor: u16,
    pub flags: u32,
    pub header_len: u32,
}

/// Preamble + header bytes for a new file of `kind`.
pub fn encode_preamble(kind: FileKind, flags: u32, header: &[u8]) -> Vec<u8> {
    let (major, minor) = kind.version();
    let mut out = Vec::with_capacity(PREAMBLE_LEN + header.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&kind.tag());
    out.extend_from_slice(&major.to_le_bytes());
    out.extend_from_slice(&minor.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..24]);
    h.update(header);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(header);
    out
}

/// Checks magic, kind, major version and header crc; returns the preamble and the header bytes.
pub fn decode_preamble<'a>(
    bytes: &'a [u8],
    kind: FileKind,
    path: &Path,
) -> Result<(Preamble, &'a [u8])> {
    if bytes.len() < PREAMBLE_LEN {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "file is {} bytes, shorter than the {PREAMBLE_LEN}-byte preamble",
                bytes.len()
            ),
        ));
    }
    if bytes[..8] != MAGIC {
        return Err(Error::corruption(path, 0, "bad magic: not a metavec file"));
    }
    if bytes[8..12] != kind.tag() {
        return Err(Error::corruption(
            path,
            8,
            format!(
                "file kind is {:?}, expected {:?}",
                String::from_utf8_lossy(&bytes[8..12]),
                String::from_utf8_lossy(&kind.tag())
            ),
        ));
    }
    let major = u16_at(bytes, 12);
    let minor = u16_at(bytes, 14);
    let flags = u32_at(bytes, 16);
    let header_len = u32_at(bytes, 20);
    let stored_crc = u32_at(bytes, 24);
    let (known_major, _) = kind.version();
    if major != known_major {
        return Err(Error::corruption(
            path,
            12,
            format!("format version {major}.{minor} is not readable by this build (reads {known_major}.x)"),
        ));
    }
    let end = PREAMBLE_LEN
        .checked_add(header_len as usize)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            Error::corruption(
                path,
                20,
                format!("header length {header_len} runs past the end of the file"),
            )
        })?;
    let header = &bytes[PREAMBLE_LEN..end];
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..24]);
    h.update(header);
    if h.finalize() != stored_crc {
        return Err(Error::corruption(path, 24, "header checksum mismatch"));
    }
    Ok((
        Preamble {
            kind,
            major,
            minor,
            flags,
            header_len,
        },
        header,
    ))
}

/// Rounds `n` up to the next multiple of [`ALIGN`].
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The little-endian f32 values of `bytes`, 4 bytes each (a trailing partial value is not read):
/// the one decoder of stored f32 (WAL vectors, int8 row scales).
pub fn f32s_le(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|c| f32::from_le_bytes(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let p = Path::new("x");
        let bytes = encode_preamble(FileKind::Manifest, 0, b"hello header");
        let (pre, header) = decode_preamble(&bytes, FileKind::Manifest, p).unwrap();
        assert_eq!(header, b"hello header");
        assert_eq!((pre.major, pre.minor), (1, 0));
        for i in 0..bytes.len() {
            if (28..32).contains(&i) {
                continue; // reserved
            }
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(
                    decode_preamble(&bad, FileKind::Manifest, p),
                    Err(Error::Corruption { .. })
                ),
                "flip at {i} not caught"
            );
        }
        assert!(decode_preamble(&bytes, FileKind::Wal, p).is_err());
        assert!(decode_preamble(&bytes[..10], FileKind::Manifest, p).is_err());
    }

    #[test]
    fn f32s_le_reads_what_to_le_bytes_wrote() {
        let values = [0.0f32, -1.5, f32::MIN_POSITIVE, 3e38, f32::INFINITY];
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.extend_from_slice(&[1, 2, 3]); // a partial value is not read
        let back: Vec<u32> = f32s_le(&bytes).map(f32::to_bits).collect();
        assert_eq!(back, values.map(f32::to_bits));
        assert_eq!(f32s_le(&[0x00, 0x00, 0x80, 0x3f]).next(), Some(1.0));
    }
}
