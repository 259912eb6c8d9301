//! A run of stored document vectors in whatever encoding its layout group uses, and the one place
//! that dispatches a MaxSim update, a decode or a prefetch on that encoding.

use smallvec::SmallVec;

use super::compact::{self, CompactKernel};
use super::Kernel;

/// The rows of a query (the same rows [`Rows::update`] gets as f32) in the forms the compact
/// kernels read, each made once per search where some segment stores that dtype.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryForms<'a> {
    /// Quantised for int8 rows ([`compact::QuantQuery::rows`]).
    pub int8: Option<(&'a [i16], &'a [f32])>,
    /// Rounded to bf16 for bf16 rows ([`compact::Bf16Query::rows`]).
    pub bf16: Option<(&'a [u16], &'a [f32])>,
    /// The whole query rounded to bf16 in the tile layout, and the first of its rows these are:
    /// bf16 rows go through [`CompactKernel::bf16_tiles`] where the kernel set has it.
    pub bf16_tiles: Option<(&'a compact::TileQuery, usize)>,
}

/// Consecutive vectors of one document as they sit in a segment (or the memtable, always f32).
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
    F16(&'a [u16]),
    /// `values` holds the rows back to back; `scales` one little-endian f32 per row (unaligned).
    Int8 {
        values: &'a [i8],
        scales: &'a [u8],
    },
}

impl Rows<'_> {
    /// Bytes these rows occupy in storage.
    pub fn bytes(&self) -> u64 {
        (match self {
            Rows::F32(v) => v.len() * 4,
            Rows::Bf16(v) | Rows::F16(v) => v.len() * 2,
            Rows::Int8 { values, scales } => values.len() + scales.len(),
        }) as u64
    }

    /// `maxes[i] = max(maxes[i], max_j <q_i, d_j>)` over these rows (see [`super::UpdateFn`]).
    /// int8 and bf16 rows meet the query in the form `forms` gives for their dtype (quantised,
    /// rounded to bf16) through that kernel; without one, `query` through the f32-query kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        kern: &Kernel,
        ck: &CompactKernel,
        query: &[f32],
        forms: QueryForms<'_>,
        r_q: usize,
        dim: usize,
        maxes: &mut [f32],
    ) {
        match *self {
            Rows::F32(d) => (kern.update)(query, r_q, dim, d, maxes),
            Rows::Bf16(d) => match (forms.bf16_tiles, ck.bf16_tiles, forms.bf16) {
                (Some((tq, first)), Some(tiles), _)
                    if r_q * d.len() >= compact::TILE_MIN_DOTS * dim =>
                {
                    tiles(tq, first, r_q, dim, d, maxes)
                }
                (_, _, Some((qb, qf))) => (ck.bf16_q)(qb, qf, r_q, dim, d, maxes),
                _ => (ck.bf16)(query, r_q, dim, d, maxes),
            },
            Rows::F16(d) => (ck.f16)(query, r_q, dim, d, maxes),
            Rows::Int8 { values, scales } => {
                let s = scales_of(scales);
                match forms.int8 {
                    Some((qv, qs)) => (ck.int8_q)(qv, qs, r_q, dim, values, &s, maxes),
                    None => (ck.int8)(query, r_q, dim, values, &s, maxes),
                }
            }
        }
    }

    /// Appends the rows decoded to f32.
    pub fn decode_into(&self, dim: usize, out: &mut Vec<f32>) {
        match *self {
            Rows::F32(d) => out.extend_from_slice(d),
            Rows::Bf16(d) => out.extend(compact::decode_bf16(d)),
            Rows::F16(d) => out.extend(compact::decode_f16(d)),
            Rows::Int8 { values, scales } => {
                out.extend(compact::decode_int8(values, &scales_of(scales), dim))
            }
        }
    }

    /// Starts loading the rows into cache (a hint, see [`super::simd::prefetch`]) ahead of an
    /// [`Rows::update`] with the same `ck` (`bf16_query`: its forms hold the bf16 query). Where
    /// that kernel streams the rows itself (bf16 rows against the bf16 query on a kernel with a
    /// [`CompactKernel::bf16_q_lead`]), only
    /// the rows before its lead: the rest, prefetched in one burst, would queue behind each other
    /// instead of overlapping the arithmetic.
    pub fn prefetch(&self, ck: &CompactKernel, bf16_query: bool, dim: usize) {
        match *self {
            Rows::F32(d) => super::simd::prefetch(d),
            Rows::Bf16(d) if bf16_query && ck.bf16_q_lead > 0 => {
                super::simd::prefetch(&d[..d.len().min(ck.bf16_q_lead * dim)])
            }
            Rows::Bf16(d) | Rows::F16(d) => super::simd::prefetch(d),
            Rows::Int8 { values, scales } => {
                super::simd::prefetch(values);
                super::simd::prefetch(scales);
            }
        }
    }

    /// The storage byte ranges these rows cover, as (start address, length) pairs.
    pub fn spans(&self) -> [(usize, usize); 2] {
        fn span<T>(s: &[T]) -> (usize, usize) {
            (s.as_ptr() as usize, std::mem::size_of_val(s))
        }
        match *self {
            Rows::F32(d) => [span(d), (0, 0)],
            Rows::Bf16(d) | Rows::F16(d) => [span(d), (0, 0)],
            Rows::Int8 { values, scales } => [span(values), span(scales)],
        }
    }
}

impl<'a> Rows<'a> {
    /// Rows `a..b` of one document's encoded slot in a layout group of `width` rows (the layout
    /// [`encode_rows`] writes: the rows back to back; for int8 their values, then their scales).
    pub fn of_slot(
        dtype: crate::config::Dtype,
        slot: &'a [u8],
        dim: usize,
        width: usize,
        a: usize,
        b: usize,
    ) -> Rows<'a> {
        use crate::config::Dtype;
        let row = dtype.row_bytes(dim);
        let rows = || &slot[a * row..b * row];
        match dtype {
            Dtype::F32 => Rows::F32(bytemuck::cast_slice(rows())),
            Dtype::Bf16 => Rows::Bf16(bytemuck::cast_slice(rows())),
            Dtype::F16 => Rows::F16(bytemuck::cast_slice(rows())),
            Dtype::Int8 => {
                let scales_at = width * dim;
                Rows::Int8 {
                    values: bytemuck::cast_slice(&slot[a * dim..b * dim]),
                    scales: &slot[scales_at + a * 4..scales_at + b * 4],
                }
            }
        }
    }
}

/// int8 scales, copied out of their unaligned little-endian bytes.
fn scales_of(bytes: &[u8]) -> SmallVec<[f32; 64]> {
    crate::format::f32s_le(bytes).collect()
}

/// Encodes f32 rows of `dim` values as `dtype` stores them, appending to `out`. int8 writes the
/// rows' values first, then their scales (see `segment` for the layout).
pub fn encode_rows(dtype: crate::config::Dtype, rows: &[f32], dim: usize, out: &mut Vec<u8>) {
    use crate::config::Dtype;
    match dtype {
        Dtype::F32 => out.extend_from_slice(bytemuck::cast_slice(rows)),
        Dtype::Bf16 => out.extend(
            compact::encode_bf16(rows)
                .iter()
                .flat_map(|b| b.to_le_bytes()),
        ),
        Dtype::F16 => out.extend(
            compact::encode_f16(rows)
                .iter()
                .flat_map(|b| b.to_le_bytes()),
        ),
        Dtype::Int8 => {
            let (values, scales) = compact::encode_int8(rows, dim);
            out.extend(values.iter().map(|&v| v as u8));
            out.extend(scales.iter().flat_map(|s| s.to_le_bytes()));
        }
    }
}
