//! Compact encodings of document vectors and their MaxSim update kernels.
//!
//! Query rows always stay f32; a document row is stored as bf16, f16 or int8 (symmetric, one f32
//! scale per vector: `value = q * scale`, `scale = max|x| / 127`) and decoded in registers. Each
//! encoding has a scalar reference here (written for auto-vectorisation: eight accumulators,
//! no `.sum()` in the hot loop) and per-arch kernels in [`super::simd`], chosen once per process
//! together with the f32 ones from one kernel table ([`super::simd::chosen`]) and proptested
//! against the references.

use half::{bf16, f16};

/// `maxes[i] = max(maxes[i], max_j <q_i, d_j>)` for document rows stored as 16-bit values
/// (`doc.len() / dim` rows).
pub type Update16Fn = fn(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]);

/// bf16 rows against the query rounded to bf16 once per search ([`Bf16Query`]): `qb` its bits,
/// `qf` the same values as f32 (exact). The dots are those of f32 MaxSim over the two rounded
/// operands, summed in the kernel's order (the products are exact in f32).
pub type Update16QFn =
    fn(qb: &[u16], qf: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]);

/// bf16 rows against query rows `first..first + r_q` of a [`TileQuery`] (the query rounded to
/// bf16, laid out for the tile multiply), on a matrix unit: `maxes[i] = max(maxes[i], max_j
/// <q_{first + i}, d_j>)`. Every dot sums the same products as [`Update16QFn`]'s, in the unit's
/// order: the same bits wherever a row or a query row sits in a call.
pub type Bf16TilesFn =
    fn(tq: &TileQuery, first: usize, r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]);

/// As [`Update16Fn`] for int8 rows; row `j` is `doc[j * dim..][..dim] * scales[j]`.
pub type UpdateI8Fn =
    fn(query: &[f32], r_q: usize, dim: usize, doc: &[i8], scales: &[f32], maxes: &mut [f32]);

/// The integer int8 update: document rows as [`UpdateI8Fn`], the query rows quantised once per
/// search ([`QuantQuery`]); `maxes[i] = max(maxes[i], <qv_i, d_j> as f32 * (qs[i] * scales[j]))`
/// with the dot in exact i32 arithmetic (so every kernel, any summation order, gives the same
/// bits).
pub type UpdateI8QFn = fn(
    qv: &[i16],
    qs: &[f32],
    r_q: usize,
    dim: usize,
    doc: &[i8],
    scales: &[f32],
    maxes: &mut [f32],
);

/// Dots with int8 rows (the graph walk's scores, the token index's centroid and vector-0
/// scores), the query rows quantised once ([`QuantQuery`]): `out[i * nodes.len() + k] =
/// <qv row i, row nodes[k] of codes> as f32 * (qs[i] * scales[nodes[k]])` for the `nq` query rows
/// (rows of `dim` values), the dot in exact i32 arithmetic: every kernel gives the bits of
/// [`UpdateI8QFn`] on that query row and code row alone.
pub type Int8DotsFn = fn(
    qv: &[i16],
    qs: &[f32],
    nq: usize,
    dim: usize,
    codes: &[i8],
    scales: &[f32],
    nodes: &[u32],
    out: &mut [f32],
);

/// Raw dots of `nq` query rows with every int8 row of a [`Columns`] layout: the query rows as
/// `u8` (`i8` values + 128, [`Columns::query`]), `out[i * cols.padded_rows() + r] = sum_d
/// (q_i[d] + 128) * row_r[d]` in exact i32 arithmetic (callers take off `128 * sum(row_r)`,
/// [`Columns::finish`]).
pub type ColumnDotsFn = fn(qu: &[u8], nq: usize, cols: &Columns, out: &mut [i32]);

/// int8 rows (the token index's centroids) laid out for `vpdpbusd`: in blocks of 16 rows, for
/// every group of 4 dimensions the 16 rows' 4 bytes side by side (64 bytes, one register), so a
/// register of products holds 16 rows' partial dots and no dot needs a horizontal sum. Dimensions
/// and rows are padded with zeros to multiples of 4 and 16.
#[derive(Debug, Clone)]
pub struct Columns {
    /// `blocks * groups * 64` bytes: block `b`, group `g`, row `16b + l`, dims `4g..4g + 4` at
    /// `(b * groups + g) * 64 + 4l`.
    pub bytes: Vec<i8>,
    /// Sum of each row's values (the zero point's correction).
    pub sums: Vec<i32>,
    /// The rows' scales (as [`encode_int8`] gives them).
    pub scales: Vec<f32>,
    pub rows: usize,
    pub dim: usize,
    /// Groups of 4 dimensions: `dim.div_ceil(4)`.
    pub groups: usize,
}

impl Columns {
    /// The layout of `rows` int8 rows of `dim` values (`values`, row-major) with their scales.
    pub fn new(values: &[i8], scales: &[f32], dim: usize) -> Columns {
        let rows = values.len().checked_div(dim).unwrap_or(0);
        let groups = dim.div_ceil(4);
        let blocks = rows.div_ceil(16);
        let mut bytes = vec![0i8; blocks * groups * 64];
        for r in 0..rows {
            let (b, l) = (r / 16, r % 16);
            for (d, &v) in values[r * dim..(r + 1) * dim].iter().enumerate() {
                bytes[(b * groups + d / 4) * 64 + 4 * l + d % 4] = v;
            }
        }
        let sums = values
            .chunks_exact(dim.max(1))
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        Columns {
            bytes,
            sums,
            scales: scales[..rows].to_vec(),
            rows,
            dim,
            groups,
        }
    }

    /// Rows rounded up to whole blocks of 16: the stride of a [`ColumnDotsFn`]'s output.
    pub fn padded_rows(&self) -> usize {
        self.rows.div_ceil(16) * 16
    }

    /// The query rows of `q` (a [`QuantQuery::new_i8`]) as a [`ColumnDotsFn`] reads them:
    /// `value + 128`, each row padded with 128s (zeros) to `4 * groups` values.
    pub fn query(&self, q: &QuantQuery) -> Vec<u8> {
        let w = 4 * self.groups;
        let nq = q.scales.len();
        let mut out = vec![128u8; nq * w];
        for i in 0..nq {
            for (o, &v) in out[i * w..]
                .iter_mut()
                .zip(&q.values[i * self.dim..(i + 1) * self.dim])
            {
                *o = (v + 128) as u8;
            }
        }
        out
    }

    /// `out[i * rows + r] = <q_i, row r>` from a [`ColumnDotsFn`]'s raw sums: `(raw - 128 *
    /// sum(row)) as f32 * (q.scales[i] * scales[r])`, bit for bit what [`Int8DotsFn`] gives for
    /// the same query values (the same integer dot, scaled the same way).
    pub fn finish(&self, q: &QuantQuery, raw: &[i32], out: &mut [f32]) {
        let (n, stride) = (self.rows, self.padded_rows());
        for (i, &qs) in q.scales.iter().enumerate() {
            let (raw, out) = (&raw[i * stride..][..n], &mut out[i * n..][..n]);
            for (r, o) in out.iter_mut().enumerate() {
                let dot = raw[r] - 128 * self.sums[r];
                *o = dot as f32 * (qs * self.scales[r]);
            }
        }
    }
}

/// Scalar reference of [`ColumnDotsFn`].
pub fn column_dots_scalar(qu: &[u8], nq: usize, cols: &Columns, out: &mut [i32]) {
    let (g, stride) = (cols.groups, cols.padded_rows());
    for i in 0..nq {
        let q = &qu[i * 4 * g..(i + 1) * 4 * g];
        for r in 0..stride {
            let (b, l) = (r / 16, r % 16);
            let mut s = 0i32;
            for gi in 0..g {
                let at = (b * g + gi) * 64 + 4 * l;
                for e in 0..4 {
                    s += q[4 * gi + e] as i32 * cols.bytes[at + e] as i32;
                }
            }
            out[i * stride + r] = s;
        }
    }
}

/// The MaxSim update kernels for every compact encoding.
#[derive(Debug, Clone, Copy)]
pub struct CompactKernel {
    pub bf16: Update16Fn,
    /// bf16 rows against the bf16-rounded query: the rerank's bf16 kernel (`vdpbf16ps` where the
    /// CPU has it).
    pub bf16_q: Update16QFn,
    pub f16: Update16Fn,
    pub int8: UpdateI8Fn,
    /// int8 rows against the quantised query: the rerank's int8 kernel.
    pub int8_q: UpdateI8QFn,
    pub int8_dots: Int8DotsFn,
    /// [`Bf16TilesFn`] where the CPU has a matrix unit for bf16 (AMX), for rows `dim` wide with
    /// [`TileQuery::fits`]; `None`: bf16 rows go through `bf16_q`.
    pub bf16_tiles: Option<Bf16TilesFn>,
    /// [`ColumnDotsFn`] where the CPU has `vpdpbusd` (the token index scores its centroids with
    /// it); `None`: the centroids go through `int8_dots`.
    pub column_dots: Option<ColumnDotsFn>,
    /// Rows `bf16_q` prefetches ahead of the ones it scores, spread over its arithmetic (0: it
    /// prefetches nothing). A caller prefetching a bf16 run for it starts only the rows before
    /// this lead ([`super::Rows::prefetch`]).
    pub bf16_q_lead: usize,
}

/// The scalar references, as a [`CompactKernel`].
pub const SCALAR: CompactKernel = CompactKernel {
    bf16: update_bf16_scalar,
    bf16_q: update_bf16_q_scalar,
    f16: update_f16_scalar,
    int8: update_int8_scalar,
    int8_q: update_int8_q_scalar,
    int8_dots: dots_int8_scalar,
    bf16_tiles: None,
    column_dots: None,
    bf16_q_lead: 0,
};

/// The compact kernels of this process ([`super::simd::chosen`]).
pub fn compact_kernel() -> CompactKernel {
    super::simd::chosen().compact
}

/// f32 -> bf16 bits, round to nearest even (NaN stays NaN).
pub fn encode_bf16(src: &[f32]) -> Vec<u16> {
    src.iter().map(|&x| bf16::from_f32(x).to_bits()).collect()
}

/// bf16 bits -> f32: the one bf16 decoder (the SIMD kernels' tails, the rows, the API's and the
/// CLI's input). Exact, a shift: a signalling NaN stays signalling (`half` would quiet it), as in
/// the kernels' vector decode.
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// bf16 bits -> f32 (exact).
pub fn decode_bf16(src: &[u16]) -> Vec<f32> {
    src.iter().map(|&b| bf16_to_f32(b)).collect()
}

/// f32 -> IEEE half bits, round to nearest even; values past 65504 become infinity, so only unit
/// (or similarly bounded) vectors belong in f16.
pub fn encode_f16(src: &[f32]) -> Vec<u16> {
    src.iter().map(|&x| f16::from_f32(x).to_bits()).collect()
}

/// IEEE half bits -> f32: the one f16 decoder (the SIMD kernels' tails, the rows, the API's
/// input). Exact.
#[inline(always)]
pub fn f16_to_f32(b: u16) -> f32 {
    f16::from_bits(b).to_f32()
}

/// IEEE half bits -> f32 (exact).
pub fn decode_f16(src: &[u16]) -> Vec<f32> {
    src.iter().map(|&b| f16_to_f32(b)).collect()
}

/// Symmetric int8 with one scale per row of `dim` values: `scale = max|x| / 127` (0 for an
/// all-zero row), `q = round(x / scale)` in -127..=127. Returns (values, scales).
pub fn encode_int8(src: &[f32], dim: usize) -> (Vec<i8>, Vec<f32>) {
    if dim == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut values = Vec::with_capacity(src.len());
    let mut scales = Vec::with_capacity(src.len() / dim);
    for row in src.chunks_exact(dim) {
        let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            0.0
        };
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        values.extend(
            row.iter()
                .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (values, scales)
}

/// The largest magnitude a query value is quantised to at width `dim`: the sum of `dim` products
/// with int8 values (at most 127 in magnitude) then fits an i32 whatever the order of the
/// additions, so the integer dot is exact in every kernel. 32,767 up to 516 dims; 8,256 at 2,048;
/// 4,128 at 4,096; 1,032 at 16,384 (10 bits: still 12x finer than the int8 rows it meets).
pub fn query_quant_max(dim: usize) -> i16 {
    (i32::MAX as usize / (127 * dim.max(1))).min(i16::MAX as usize) as i16
}

/// A query's rows quantised for [`UpdateI8QFn`]: row `i` is `values[i * dim..][..dim] *
/// scales[i]`, symmetric, `scale = max|x| / query_quant_max(dim)` (0 for an all-zero row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantQuery {
    pub values: Vec<i16>,
    pub scales: Vec<f32>,
}

impl QuantQuery {
    /// Quantises the rows of `q` (`q.len() / dim` rows of `dim` values; finite values).
    pub fn new(q: &[f32], dim: usize) -> QuantQuery {
        Self::with_top(q, dim, query_quant_max(dim))
    }

    /// [`Self::new`] in the int8 range (`scale = max|x| / 127`), as [`Columns`] needs.
    pub fn new_i8(q: &[f32], dim: usize) -> QuantQuery {
        Self::with_top(q, dim, 127)
    }

    fn with_top(q: &[f32], dim: usize, top: i16) -> QuantQuery {
        if dim == 0 {
            return QuantQuery::default();
        }
        let top = top as f32;
        let mut out = QuantQuery {
            values: Vec::with_capacity(q.len()),
            scales: Vec::with_capacity(q.len() / dim),
        };
        for row in q.chunks_exact(dim) {
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let (scale, inv) = if max > 0.0 && max.is_finite() {
                (max / top, top / max)
            } else {
                (0.0, 0.0)
            };
            out.values.extend(
                row.iter()
                    .map(|x| (x * inv).round().clamp(-top, top) as i16),
            );
            out.scales.push(scale);
        }
        out
    }

    /// Rows `a..b` as (values, scales).
    pub fn rows(&self, dim: usize, a: usize, b: usize) -> (&[i16], &[f32]) {
        (&self.values[a * dim..b * dim], &self.scales[a..b])
    }
}

/// Scalar reference of [`UpdateI8QFn`].
pub fn update_int8_q_scalar(
    qv: &[i16],
    qs: &[f32],
    r_q: usize,
    dim: usize,
    doc: &[i8],
    scales: &[f32],
    maxes: &mut [f32],
) {
    if dim == 0 {
        return;
    }
    for (j, d) in doc.chunks_exact(dim).enumerate() {
        for (i, m) in maxes.iter_mut().enumerate().take(r_q) {
            let q = &qv[i * dim..(i + 1) * dim];
            let dot: i32 = q.iter().zip(d).map(|(&a, &b)| a as i32 * b as i32).sum();
            let v = dot as f32 * (qs[i] * scales[j]);
            if v > *m {
                *m = v;
            }
        }
    }
}

/// A query's rows rounded to bf16 for [`Update16QFn`] (round to nearest even, as the rows were).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bf16Query {
    pub bits: Vec<u16>,
    /// `bits` as f32 (exact).
    pub rounded: Vec<f32>,
}

impl Bf16Query {
    pub fn new(q: &[f32]) -> Bf16Query {
        let bits = encode_bf16(q);
        let rounded = decode_bf16(&bits);
        Bf16Query { bits, rounded }
    }

    /// Rows `a..b` as (bits, f32 values).
    pub fn rows(&self, dim: usize, a: usize, b: usize) -> (&[u16], &[f32]) {
        (
            &self.bits[a * dim..b * dim],
            &self.rounded[a * dim..b * dim],
        )
    }
}

/// Calls with fewer dots than this (query rows x document rows) go through `bf16_q` where a set
/// has [`Bf16TilesFn`]: a tile call costs ~0.2 us whatever it scores (configuring, releasing, a
/// chain of products), where `vdpbf16ps` scores 4 query rows by 4 document rows of 384 in about
/// that (measured on one core, rows in L1: 4 x 4 0.21 us against 0.23-0.36 on tiles, 4 x 8 0.38
/// against 0.35, 16 x 4 0.74 against 0.35, 16 x 48 8.8 against 0.61). Each dot of a search is
/// computed once, by one kernel or the other; the two differ only in summation order.
pub const TILE_MIN_DOTS: usize = 32;

/// A query rounded to bf16 ([`Bf16Query::bits`]) laid out as the right-hand tiles of a bf16 tile
/// multiply (AMX `tdpbf16ps`): the query rows in blocks of 16 (columns of the product, zero rows
/// padding the last block), and per block, for every 32 dimensions (one step), a 16 x 16 tile of
/// `u32`: row `r`, column `n` holds query row `16b + n`'s values `32s + 2r` and `32s + 2r + 1`
/// (the first in the low half). Made once per search; 1 KiB per block and step (12 KiB for 16
/// rows of 384).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TileQuery {
    pub tiles: Vec<u32>,
    /// Query rows (before padding).
    pub rows: usize,
    pub dim: usize,
}

impl TileQuery {
    /// Values per step: one tile row of 64 bytes of bf16.
    pub const STEP: usize = 32;

    /// Whether rows `dim` wide have a tile layout: whole steps only.
    pub fn fits(dim: usize) -> bool {
        dim > 0 && dim.is_multiple_of(Self::STEP)
    }

    /// The layout of query rows `bits` (bf16, `dim` wide; `dim` must fit).
    pub fn new(bits: &[u16], dim: usize) -> TileQuery {
        assert!(Self::fits(dim), "tile layout of rows {dim} wide");
        let rows = bits.len() / dim;
        let steps = dim / Self::STEP;
        let mut tiles = vec![0u32; rows.div_ceil(16) * steps * 256];
        for (g, row) in bits.chunks_exact(dim).enumerate() {
            let (b, n) = (g / 16, g % 16);
            for (p, pair) in row.chunks_exact(2).enumerate() {
                let (step, r) = (p / 16, p % 16);
                tiles[((b * steps + step) * 16 + r) * 16 + n] =
                    u32::from(pair[0]) | u32::from(pair[1]) << 16;
            }
        }
        TileQuery { tiles, rows, dim }
    }

    /// The tile of block `b` (query rows `16b..16b + 16`) for step `step`: 256 `u32`.
    pub fn tile(&self, b: usize, step: usize) -> &[u32] {
        let steps = self.dim / Self::STEP;
        &self.tiles[(b * steps + step) * 256..][..256]
    }
}

/// int8 rows back to f32 (`q * scale`).
pub fn decode_int8(values: &[i8], scales: &[f32], dim: usize) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    values
        .chunks_exact(dim)
        .zip(scales)
        .flat_map(|(row, &s)| row.iter().map(move |&q| q as f32 * s))
        .collect()
}

/// Dot of an f32 row with an encoded row, eight accumulators (vectorises without fast-math).
#[inline(always)]
fn dot_decoded<T: Copy>(q: &[f32], d: &[T], dec: impl Fn(T) -> f32) -> f32 {
    let n = q.len().min(d.len());
    let (q, d) = (&q[..n], &d[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&q[c * 8..c * 8 + 8], &d[c * 8..c * 8 + 8]);
        for k in 0..8 {
            acc[k] += x[k] * dec(y[k]);
        }
    }
    let mut tail = 0.0f32;
    for k in chunks * 8..n {
        tail += q[k] * dec(d[k]);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[inline(always)]
fn update_decoded<T: Copy>(
    query: &[f32],
    r_q: usize,
    dim: usize,
    doc: &[T],
    maxes: &mut [f32],
    scale: impl Fn(usize) -> f32,
    dec: impl Fn(T) -> f32 + Copy,
) {
    if dim == 0 {
        return;
    }
    for (j, d) in doc.chunks_exact(dim).enumerate() {
        let s = scale(j);
        for (i, m) in maxes.iter_mut().enumerate().take(r_q) {
            let v = dot_decoded(&query[i * dim..(i + 1) * dim], d, dec) * s;
            if v > *m {
                *m = v;
            }
        }
    }
}

/// Scalar reference of the bf16 update.
pub fn update_bf16_scalar(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
    update_decoded(query, r_q, dim, doc, maxes, |_| 1.0, bf16_to_f32);
}

/// Scalar reference of [`Update16QFn`]: the f32 update over the rounded query.
pub fn update_bf16_q_scalar(
    _qb: &[u16],
    qf: &[f32],
    r_q: usize,
    dim: usize,
    doc: &[u16],
    maxes: &mut [f32],
) {
    update_bf16_scalar(qf, r_q, dim, doc, maxes);
}

/// Scalar reference of the f16 update.
pub fn update_f16_scalar(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
    update_decoded(query, r_q, dim, doc, maxes, |_| 1.0, f16_to_f32);
}

/// Scalar reference of the int8 update: the dot is taken on the raw values, then scaled.
pub fn update_int8_scalar(
    query: &[f32],
    r_q: usize,
    dim: usize,
    doc: &[i8],
    scales: &[f32],
    maxes: &mut [f32],
) {
    update_decoded(query, r_q, dim, doc, maxes, |j| scales[j], |q| q as f32);
}

/// Scalar reference of [`Int8DotsFn`]: one integer int8 update per query row and node.
#[allow(clippy::too_many_arguments)]
pub fn dots_int8_scalar(
    qv: &[i16],
    qs: &[f32],
    nq: usize,
    dim: usize,
    codes: &[i8],
    scales: &[f32],
    nodes: &[u32],
    out: &mut [f32],
) {
    let slots = (0..nq).flat_map(|i| nodes.iter().map(move |&n| (i, n)));
    for (o, (i, n)) in out.iter_mut().zip(slots) {
        let n = n as usize;
        let mut m = [f32::NEG_INFINITY];
        update_int8_q_scalar(
            &qv[i * dim..(i + 1) * dim],
            &qs[i..i + 1],
            1,
            dim,
            &codes[n * dim..(n + 1) * dim],
            &scales[n..n + 1],
            &mut m,
        );
        *o = m[0];
    }
}

#[cfg(test)]
mod tests;
