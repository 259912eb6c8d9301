use super::*;
use crate::score::maxsim_update_scalar;
use proptest::prelude::*;

fn vecs(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> std::result::Result<(), TestCaseError> {
    for (x, y) in a.iter().zip(b) {
        prop_assert!((x - y).abs() <= tol * (1.0 + x.abs()), "{} vs {}", x, y);
    }
    Ok(())
}

#[test]
fn encode_decode_bounds() {
    let x = vecs(384 * 3, 5);
    let b = decode_bf16(&encode_bf16(&x));
    let h = decode_f16(&encode_f16(&x));
    for (v, (p, q)) in x.iter().zip(b.iter().zip(&h)) {
        // bf16 keeps 8 significant bits, f16 11: relative error <= 2^-9 and 2^-12.
        assert!((v - p).abs() <= v.abs() / 256.0, "bf16 {v} -> {p}");
        assert!((v - q).abs() <= v.abs() / 2048.0 + 1e-7, "f16 {v} -> {q}");
    }
    let (vals, scales) = encode_int8(&x, 384);
    assert_eq!(vals.len(), x.len());
    assert_eq!(scales.len(), 3);
    let d = decode_int8(&vals, &scales, 384);
    for (r, (row, dec)) in x.chunks(384).zip(d.chunks(384)).enumerate() {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(vals[r * 384..(r + 1) * 384].iter().any(|q| q.abs() == 127));
        for (v, p) in row.iter().zip(dec) {
            assert!((v - p).abs() <= max / 254.0 * 1.0001, "int8 {v} -> {p}");
        }
    }
    // An all-zero row gets scale 0 and decodes to zeros, never NaN.
    let (vals, scales) = encode_int8(&[0.0; 8], 8);
    assert_eq!(scales, vec![0.0]);
    assert_eq!(decode_int8(&vals, &scales, 8), vec![0.0; 8]);
}

proptest! {
    #[test]
    fn compact_kernels_match_scalar_references(
        r_q in 1usize..11, n in 1usize..9, dim in 1usize..70, seed in 0u64..1000,
    ) {
        let q = vecs(r_q * dim, seed);
        let d = vecs(n * dim, seed + 1);
        // Every kernel set this CPU has, not only the chosen one (see `simd::under_test`).
        for set in crate::score::simd::under_test() {
            check_kernel(set.name, set.compact, &q, r_q, dim, &d)?;
        }
    }
}

proptest! {
    /// bf16 rows on tiles (AMX where the CPU has it) against the scalar bf16-query reference:
    /// any number of rows (full blocks of 16 and a tail), query rows from any offset of a query of
    /// up to two tile blocks, widths of one to twelve steps.
    #[test]
    fn tile_kernels_match_the_bf16_query_reference(
        rows in 1usize..70, total in 1usize..33, from in 0usize..32, steps in 1usize..13,
        seed in 0u64..1000,
    ) {
        let dim = 32 * steps;
        let first = from % total;
        let r_q = total - first;
        let q = vecs(total * dim, seed);
        let d = vecs(rows * dim, seed + 1);
        let (qb, bits) = (Bf16Query::new(&q), encode_bf16(&d));
        let tq = TileQuery::new(&qb.bits, dim);
        let mut want = vec![f32::NEG_INFINITY; r_q];
        let (qr, qf) = qb.rows(dim, first, total);
        update_bf16_q_scalar(qr, qf, r_q, dim, &bits, &mut want);
        for set in crate::score::simd::under_test() {
            let Some(tiles) = set.compact.bf16_tiles else { continue };
            let mut got = vec![f32::NEG_INFINITY; r_q];
            tiles(&tq, first, r_q, dim, &bits, &mut got);
            close(&want, &got, 1e-4)
                .map_err(|e| TestCaseError::fail(format!("{} bf16_tiles: {e}", set.name)))?;
        }
    }
}

#[test]
fn a_tile_query_holds_each_value_pair_where_the_tile_multiply_reads_it() {
    let (rows, dim) = (18, 64);
    let bits: Vec<u16> = (0..rows * dim).map(|i| i as u16).collect();
    let tq = TileQuery::new(&bits, dim);
    assert_eq!(tq.tiles.len(), 2 * 2 * 256);
    for g in 0..rows {
        for p in 0..dim / 2 {
            let word = tq.tile(g / 16, p / 16)[(p % 16) * 16 + g % 16];
            assert_eq!(word & 0xffff, (g * dim + 2 * p) as u32);
            assert_eq!(word >> 16, (g * dim + 2 * p + 1) as u32);
        }
    }
    // The second block's padding columns are zeros.
    assert!(tq.tile(1, 0)[2..16].iter().all(|&w| w == 0));
    assert!(!TileQuery::fits(0) && !TileQuery::fits(100) && TileQuery::fits(3584));
}

fn check_kernel(
    name: &str,
    k: CompactKernel,
    q: &[f32],
    r_q: usize,
    dim: usize,
    d: &[f32],
) -> std::result::Result<(), TestCaseError> {
    let fresh = || vec![f32::NEG_INFINITY; r_q];

    let bits = encode_bf16(d);
    let (mut a, mut b) = (fresh(), fresh());
    update_bf16_scalar(q, r_q, dim, &bits, &mut a);
    (k.bf16)(q, r_q, dim, &bits, &mut b);
    close(&a, &b, 1e-4)?;
    // The reference equals f32 MaxSim over the decoded rows.
    let mut c = fresh();
    maxsim_update_scalar(q, r_q, dim, &decode_bf16(&bits), &mut c);
    close(&a, &c, 1e-4)?;

    // bf16 rows against the bf16-rounded query (`vdpbf16ps` where the set has it): within
    // summation order of the reference, and within the query's rounding (each value moves by at
    // most 2^-9 of itself) of the f32-query bf16 update.
    let qb = Bf16Query::new(q);
    let (mut qa, mut qbm) = (fresh(), fresh());
    update_bf16_q_scalar(&qb.bits, &qb.rounded, r_q, dim, &bits, &mut qa);
    (k.bf16_q)(&qb.bits, &qb.rounded, r_q, dim, &bits, &mut qbm);
    close(&qa, &qbm, 1e-4).map_err(|e| TestCaseError::fail(format!("{name} bf16_q: {e}")))?;
    let mut c = fresh();
    maxsim_update_scalar(&qb.rounded, r_q, dim, &decode_bf16(&bits), &mut c);
    close(&qa, &c, 1e-4)?;
    for (x, y) in qa.iter().zip(&a) {
        // |q| <= 1, |d| <= 1: the rounding moves the dot by at most dim * 2^-9.
        let tol = dim as f32 / 512.0 + 1e-4 * (1.0 + y.abs());
        prop_assert!((x - y).abs() <= tol, "{}: bf16_q {} vs bf16 {}", name, x, y);
    }

    let bits = encode_f16(d);
    let (mut a, mut b) = (fresh(), fresh());
    update_f16_scalar(q, r_q, dim, &bits, &mut a);
    (k.f16)(q, r_q, dim, &bits, &mut b);
    close(&a, &b, 1e-4)?;
    let mut c = fresh();
    maxsim_update_scalar(q, r_q, dim, &decode_f16(&bits), &mut c);
    close(&a, &c, 1e-4)?;

    let (vals, scales) = encode_int8(d, dim);
    let (mut a, mut b) = (fresh(), fresh());
    update_int8_scalar(q, r_q, dim, &vals, &scales, &mut a);
    (k.int8)(q, r_q, dim, &vals, &scales, &mut b);
    close(&a, &b, 1e-4)?;
    let mut c = fresh();
    maxsim_update_scalar(q, r_q, dim, &decode_int8(&vals, &scales, dim), &mut c);
    close(&a, &c, 1e-4)?;

    // The integer kernel: bit-identical to its scalar reference (exact i32 dots), and within the
    // query's rounding of the f32-query int8 update: each query value moves by at most half a
    // step, max|q_i| / (2 * query_quant_max(dim)), against row values of at most 127 * scale.
    let qq = QuantQuery::new(q, dim);
    let (mut qa, mut qb) = (fresh(), fresh());
    update_int8_q_scalar(&qq.values, &qq.scales, r_q, dim, &vals, &scales, &mut qa);
    (k.int8_q)(&qq.values, &qq.scales, r_q, dim, &vals, &scales, &mut qb);
    for (x, y) in qa.iter().zip(&qb) {
        prop_assert_eq!(x.to_bits(), y.to_bits(), "{}: int8_q {} vs {}", name, x, y);
    }
    let smax = scales.iter().fold(0.0f32, |m, &s| m.max(s));
    for (i, (x, y)) in qa.iter().zip(&a).enumerate() {
        let qmax = q[i * dim..(i + 1) * dim]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let step = qmax / query_quant_max(dim) as f32;
        let tol = 0.5 * step * 127.0 * smax * dim as f32 + 1e-4 * (1.0 + y.abs());
        prop_assert!(
            (x - y).abs() <= tol,
            "{}: int8_q {} vs int8 {} (tol {})",
            name,
            x,
            y,
            tol
        );
    }

    // The dots of every query row with several rows at once: bit-identical to the integer
    // update of that query row and node alone and to the scalar reference, in any node order,
    // repeats included (every blocking of query rows and nodes is met: r_q and the node count
    // vary).
    let n = d.len() / dim;
    let nodes: Vec<u32> = (0..n as u32).rev().chain(0..n as u32).collect();
    let m = nodes.len();
    let mut out = vec![0.0f32; r_q * m];
    (k.int8_dots)(
        &qq.values, &qq.scales, r_q, dim, &vals, &scales, &nodes, &mut out,
    );
    let mut reference = vec![0.0f32; r_q * m];
    dots_int8_scalar(
        &qq.values,
        &qq.scales,
        r_q,
        dim,
        &vals,
        &scales,
        &nodes,
        &mut reference,
    );
    for (slot, (o, r)) in out.iter().zip(&reference).enumerate() {
        let (i, node) = (slot / m, nodes[slot % m] as usize);
        let mut mx = [f32::NEG_INFINITY];
        (k.int8_q)(
            &qq.values[i * dim..(i + 1) * dim],
            &qq.scales[i..i + 1],
            1,
            dim,
            &vals[node * dim..(node + 1) * dim],
            &scales[node..node + 1],
            &mut mx,
        );
        prop_assert_eq!(
            o.to_bits(),
            mx[0].to_bits(),
            "{}: row {} node {}",
            name,
            i,
            node
        );
        prop_assert_eq!(
            o.to_bits(),
            r.to_bits(),
            "{}: row {} node {} vs scalar",
            name,
            i,
            node
        );
    }

    // Compact scores stay near the f32 ones (values in [-1, 1]): the dtype's error bound.
    let mut exact = fresh();
    maxsim_update_scalar(q, r_q, dim, d, &mut exact);
    let tol = dim as f32 / 127.0;
    close(&exact, &a, tol)?;
    Ok(())
}

/// At the quantisation bound (every value at full scale, one sign) the i32 dot reaches its
/// largest magnitude without wrapping, in every kernel, up to the widest rows a collection takes.
#[test]
fn int8_q_at_the_quantisation_bound_does_not_wrap() {
    for dim in [
        1usize,
        516,
        517,
        2048,
        3584,
        crate::config::MAX_DIM as usize,
    ] {
        for sign in [1.0f32, -1.0] {
            let q = vec![sign; dim];
            let d = vec![1.0f32; 2 * dim];
            let (vals, scales) = encode_int8(&d, dim);
            let qq = QuantQuery::new(&q, dim);
            assert!(qq.values.iter().all(|&v| v.abs() == query_quant_max(dim)));
            for set in crate::score::simd::under_test() {
                let mut m = vec![f32::NEG_INFINITY];
                (set.compact.int8_q)(&qq.values, &qq.scales, 1, dim, &vals, &scales, &mut m);
                let want = sign * dim as f32;
                assert!(
                    (m[0] - want).abs() <= 1e-3 * dim as f32,
                    "{} dim {dim}: {} vs {want}",
                    set.name,
                    m[0]
                );
            }
        }
    }
}

proptest! {
    /// The column layout's dots (every kernel this CPU has, and the scalar reference) equal
    /// `int8_dots` on the same int8 query bit for bit: the same integer dot, the same scaling.
    #[test]
    fn column_dots_equal_int8_dots(
        nq in 1usize..10, rows in 1usize..70, dim in 1usize..50, seed in 0u64..1000,
    ) {
        let q = vecs(nq * dim, seed);
        let (values, scales) = encode_int8(&vecs(rows * dim, seed + 7), dim);
        let cols = Columns::new(&values, &scales, dim);
        let qq = QuantQuery::new_i8(&q, dim);
        let nodes: Vec<u32> = (0..rows as u32).collect();
        let mut want = vec![0f32; nq * rows];
        dots_int8_scalar(&qq.values, &qq.scales, nq, dim, &values, &scales, &nodes, &mut want);
        let qu = cols.query(&qq);
        let mut kernels: Vec<(&str, ColumnDotsFn)> = vec![("scalar", column_dots_scalar)];
        for set in crate::score::simd::under_test() {
            if let Some(f) = set.compact.column_dots {
                kernels.push((set.name, f));
            }
        }
        for (name, f) in kernels {
            let mut raw = vec![0i32; nq * cols.padded_rows()];
            f(&qu, nq, &cols, &mut raw);
            let mut got = vec![0f32; nq * rows];
            cols.finish(&qq, &raw, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), bits(&want), "{}", name);
        }
    }
}
