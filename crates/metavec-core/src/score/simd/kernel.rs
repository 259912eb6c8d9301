//! One MaxSim kernel, written once for any x86 vector width: `x86_kernel!` expands it for a
//! register type (`__m256` with AVX2+FMA, `__m512` with AVX-512F) inside that width's module.
//!
//! The update scores 4 query rows x 2 document rows per step with eight accumulators, so each
//! loaded document chunk feeds four FMAs and FMA latency is hidden; a leftover document row is
//! scored against 4 query rows at a time (four independent chains), leftover query rows against
//! 2 document rows at a time. Every dot product accumulates its chunks in order in one
//! register-wide accumulator, which is folded to 8 lanes and summed by one fixed tree
//! ([`tree8`]'s: lanes `((0+1)+(2+3)) + ((4+5)+(6+7))`, then the scalar tail), whether it is
//! reduced alone or jointly with seven others. So a score never depends on how a document's rows
//! were paired or split into layout groups: a document scores bit-identically from the memtable
//! and from a segment, and the joint reduction costs a fraction of eight separate ones.

/// Expands `dot`, `maxsim_update` and `maxsim_update_pair` for a register of `$lanes` f32 lanes:
/// safe entry points that the kernel table (`super::available`, `super::chosen`) hands out only
/// after the runtime check of `$feature`, which is what their SAFETY proofs rest on. Their module
/// is private, so nothing else can reach them.
macro_rules! x86_kernel {
    (
        feature: $feature:literal,
        reg: $reg:ty,
        lanes: $lanes:expr,
        zero: $zero:path,
        load: $load:path,
        fma: $fma:path,
        add: $add:path,
        hsum: $hsum:path,
        fold: $fold:path $(,)?
    ) => {
        /// Dot product; only handed out by the kernel table after runtime detection.
        pub fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            // SAFETY: the only precondition of `dot_4acc` is the CPU feature; the kernel table
            // hands this entry point out only after detecting it at runtime.
            unsafe { dot_4acc(&a[..n], &b[..n]) }
        }

        /// Four independent accumulators hide the FMA latency. `a` and `b` have equal length.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn dot_4acc(a: &[f32], b: &[f32]) -> f32 {
            const L: usize = $lanes;
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc: [$reg; 4] = [$zero(); 4];
            let mut c = 0;
            while c + 4 * L <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: c + 4L <= n, so c + kL + L <= n for k < 4: the L lanes read at
                    // pa/pb + c + kL lie inside both slices (n is the shorter length).
                    unsafe {
                        let x = $load(pa.add(c + L * k));
                        let y = $load(pb.add(c + L * k));
                        *acc = $fma(x, y, *acc);
                    }
                }
                c += 4 * L;
            }
            while c + L <= n {
                // SAFETY: c + L <= n: the L lanes at pa/pb + c lie inside both slices.
                unsafe { acc[0] = $fma($load(pa.add(c)), $load(pb.add(c)), acc[0]) };
                c += L;
            }
            let sum = $add($add(acc[0], acc[1]), $add(acc[2], acc[3]));
            let mut s = $hsum(sum);
            while c < n {
                s += a[c] * b[c];
                c += 1;
            }
            s
        }

        /// `maxes[i] = max(maxes[i], max_j <q_i, d_j>)`; only installed after runtime detection.
        pub fn maxsim_update(
            query: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[f32],
            maxes: &mut [f32],
        ) {
            assert!(query.len() >= r_q * dim && maxes.len() >= r_q);
            if dim == 0 {
                return;
            }
            // SAFETY: the only precondition of `update` is the CPU feature (it indexes with
            // bounds checks); the kernel table hands this out only after detecting it.
            unsafe { update(query, r_q, dim, doc, maxes) }
        }

        /// [`maxsim_update`] with the feature on; `dim > 0`.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn update(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
            let n = doc.len() / dim;
            let mut j = 0;
            while j + 2 <= n {
                let d0 = &doc[j * dim..(j + 1) * dim];
                let d1 = &doc[(j + 1) * dim..(j + 2) * dim];
                let mut i = 0;
                // The first block of query rows also prefetches the next pair of document rows,
                // so streaming a deep prefix from memory overlaps with the arithmetic.
                let next = doc.as_ptr().wrapping_add((j + 2) * dim);
                while i + 4 <= r_q {
                    let q = &query[i * dim..(i + 4) * dim];
                    let pf = if i == 0 { next } else { std::ptr::null() };
                    // SAFETY: q holds 4 rows of `dim` and d0/d1 one row each (sliced so above),
                    // as `dot_4x2` requires; this function has the feature on.
                    let r = unsafe { dot_4x2(q, d0, d1, dim, pf) };
                    for k in 0..4 {
                        let m = r[2 * k].max(r[2 * k + 1]);
                        if m > maxes[i + k] {
                            maxes[i + k] = m;
                        }
                    }
                    i += 4;
                }
                while i < r_q {
                    let q = &query[i * dim..(i + 1) * dim];
                    let r = dot_1x2(q, d0, d1);
                    let m = r[0].max(r[1]);
                    if m > maxes[i] {
                        maxes[i] = m;
                    }
                    i += 1;
                }
                j += 2;
            }
            if j < n {
                let d = &doc[j * dim..(j + 1) * dim];
                let mut i = 0;
                while i + 4 <= r_q {
                    // SAFETY: the query slice holds 4 rows of `dim` and `d` one row, as
                    // `dot_4x1` requires; this function has the feature on.
                    let r = unsafe { dot_4x1(&query[i * dim..(i + 4) * dim], d, dim) };
                    for k in 0..4 {
                        if r[k] > maxes[i + k] {
                            maxes[i + k] = r[k];
                        }
                    }
                    i += 4;
                }
                while i < r_q {
                    let s = dot_1(&query[i * dim..(i + 1) * dim], d);
                    if s > maxes[i] {
                        maxes[i] = s;
                    }
                    i += 1;
                }
            }
        }

        /// [`maxsim_update`] of two documents at once, `a` into `ma` and `b` into `mb`: when
        /// both are single rows (a budget of r_c = 1) they are scored as one row pair, two
        /// independent chains per query row, where scoring them one at a time leaves a single
        /// chain waiting on FMA latency. The same dots, bit for bit, as two separate calls.
        pub fn maxsim_update_pair(
            query: &[f32],
            r_q: usize,
            dim: usize,
            a: &[f32],
            b: &[f32],
            ma: &mut [f32],
            mb: &mut [f32],
        ) {
            assert!(query.len() >= r_q * dim && ma.len() >= r_q && mb.len() >= r_q);
            if dim == 0 {
                return;
            }
            // SAFETY: the only precondition of `update_pair` is the CPU feature (it indexes
            // with bounds checks); the kernel table hands this out only after detecting it.
            unsafe { update_pair(query, r_q, dim, a, b, ma, mb) }
        }

        /// [`maxsim_update_pair`] with the feature on; `dim > 0`.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn update_pair(
            query: &[f32],
            r_q: usize,
            dim: usize,
            a: &[f32],
            b: &[f32],
            ma: &mut [f32],
            mb: &mut [f32],
        ) {
            if a.len() != dim || b.len() != dim {
                update(query, r_q, dim, a, ma);
                update(query, r_q, dim, b, mb);
                return;
            }
            let mut i = 0;
            while i + 4 <= r_q {
                let q = &query[i * dim..(i + 4) * dim];
                // SAFETY: q holds 4 rows of `dim`, and a and b are one row each (checked
                // above), as `dot_4x2` requires; this function has the feature on.
                let r = unsafe { dot_4x2(q, a, b, dim, std::ptr::null()) };
                for k in 0..4 {
                    if r[2 * k] > ma[i + k] {
                        ma[i + k] = r[2 * k];
                    }
                    if r[2 * k + 1] > mb[i + k] {
                        mb[i + k] = r[2 * k + 1];
                    }
                }
                i += 4;
            }
            while i < r_q {
                let r = dot_1x2(&query[i * dim..(i + 1) * dim], a, b);
                if r[0] > ma[i] {
                    ma[i] = r[0];
                }
                if r[1] > mb[i] {
                    mb[i] = r[1];
                }
                i += 1;
            }
        }

        /// The fixed reduction tree of eight accumulators at once: [sum(a0), ..., sum(a7)].
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn tree8(a: [$reg; 8]) -> [f32; 8] {
            let f = a.map(|r| $fold(r));
            let t0 = _mm256_hadd_ps(f[0], f[1]);
            let t1 = _mm256_hadd_ps(f[2], f[3]);
            let t2 = _mm256_hadd_ps(f[4], f[5]);
            let t3 = _mm256_hadd_ps(f[6], f[7]);
            let u0 = _mm256_hadd_ps(t0, t1);
            let u1 = _mm256_hadd_ps(t2, t3);
            let lo = _mm256_permute2f128_ps(u0, u1, 0x20);
            let hi = _mm256_permute2f128_ps(u0, u1, 0x31);
            let mut out = [0.0f32; 8];
            // SAFETY: `out` has room for the 8 f32 the store writes.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(lo, hi)) };
            out
        }

        /// [`tree8`]'s sum of one accumulator (the same additions in the same order).
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn tree1(a: $reg) -> f32 {
            let f = $fold(a);
            let h = _mm256_hadd_ps(f, f);
            let h = _mm256_hadd_ps(h, h);
            _mm_cvtss_f32(_mm_add_ss(
                _mm256_castps256_ps128(h),
                _mm256_extractf128_ps(h, 1),
            ))
        }

        /// One dot product accumulated exactly as each lane of [`dot_4x2`] is.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn dot_1(q: &[f32], d: &[f32]) -> f32 {
            const L: usize = $lanes;
            let dim = q.len().min(d.len());
            let (pq, pd) = (q.as_ptr(), d.as_ptr());
            let mut acc: $reg = $zero();
            let mut c = 0;
            while c + L <= dim {
                // SAFETY: c + L <= dim (the shorter length): the L lanes at pq/pd + c lie
                // inside both rows.
                unsafe { acc = $fma($load(pq.add(c)), $load(pd.add(c)), acc) };
                c += L;
            }
            let mut s = tree1(acc);
            while c < dim {
                s += q[c] * d[c];
                c += 1;
            }
            s
        }

        /// Dots of one query row with 2 document rows (two independent chains).
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $feature)]
        fn dot_1x2(q: &[f32], d0: &[f32], d1: &[f32]) -> [f32; 2] {
            const L: usize = $lanes;
            let dim = q.len().min(d0.len()).min(d1.len());
            let (pq, p0, p1) = (q.as_ptr(), d0.as_ptr(), d1.as_ptr());
            let (mut a0, mut a1): ($reg, $reg) = ($zero(), $zero());
            let mut c = 0;
            while c + L <= dim {
                // SAFETY: c + L <= dim (the shortest length): the L lanes at pq/p0/p1 + c
                // lie inside all three rows.
                unsafe {
                    let y = $load(pq.add(c));
                    a0 = $fma(y, $load(p0.add(c)), a0);
                    a1 = $fma(y, $load(p1.add(c)), a1);
                }
                c += L;
            }
            let (mut s0, mut s1) = (tree1(a0), tree1(a1));
            while c < dim {
                s0 += q[c] * d0[c];
                s1 += q[c] * d1[c];
                c += 1;
            }
            [s0, s1]
        }

        /// Dots of 4 query rows (contiguous in `q`) with one document row: [q0d, q1d, q2d, q3d].
        ///
        /// # Safety
        ///
        /// `q.len() >= 4 * dim` and `d.len() >= dim`: the vector loads read `dim` values of
        /// each row unchecked.
        #[target_feature(enable = $feature)]
        unsafe fn dot_4x1(q: &[f32], d: &[f32], dim: usize) -> [f32; 4] {
            const L: usize = $lanes;
            debug_assert!(q.len() >= 4 * dim && d.len() >= dim);
            let (qp, pd) = (q.as_ptr(), d.as_ptr());
            let mut acc: [$reg; 4] = [$zero(); 4];
            let mut c = 0;
            while c + L <= dim {
                // SAFETY: c + L <= dim: every load reads inside its row (q has 4 rows of dim
                // and d at least dim values, this function's precondition).
                unsafe {
                    let x = $load(pd.add(c));
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = $fma($load(qp.add(k * dim + c)), x, *a);
                    }
                }
                c += L;
            }
            let t = tree8([
                acc[0], acc[1], acc[2], acc[3], acc[0], acc[1], acc[2], acc[3],
            ]);
            let mut out = [t[0], t[1], t[2], t[3]];
            while c < dim {
                for (k, o) in out.iter_mut().enumerate() {
                    *o += q[k * dim + c] * d[c];
                }
                c += 1;
            }
            out
        }

        /// Dots of 4 query rows (contiguous in `q`) with 2 document rows:
        /// [q0d0, q0d1, q1d0, ..., q3d1]. Unless `prefetch` is null, also asks for the cache
        /// lines of the two rows that start there (a hint: the address may lie past the data).
        ///
        /// # Safety
        ///
        /// `q.len() >= 4 * dim`, `d0.len() >= dim` and `d1.len() >= dim`: the vector loads read
        /// `dim` values of each row unchecked. `prefetch` may be any address.
        #[target_feature(enable = $feature)]
        unsafe fn dot_4x2(
            q: &[f32],
            d0: &[f32],
            d1: &[f32],
            dim: usize,
            prefetch: *const f32,
        ) -> [f32; 8] {
            const L: usize = $lanes;
            debug_assert!(q.len() >= 4 * dim && d0.len() >= dim && d1.len() >= dim);
            let qp = q.as_ptr();
            let (p0, p1) = (d0.as_ptr(), d1.as_ptr());
            let mut acc: [$reg; 8] = [$zero(); 8];
            let mut c = 0;
            while c + L <= dim {
                if !prefetch.is_null() {
                    // A prefetch never faults and reads nothing architecturally. Into L2, as
                    // `prefetch` does: at 16 x 64 this took the f32 rerank from ~4.9 to ~4.0 ms.
                    _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(c).cast());
                    _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(dim + c).cast());
                }
                // SAFETY: c + L <= dim: every load reads inside its row (q has 4 rows of dim,
                // d0 and d1 at least dim values each: this function's precondition).
                unsafe {
                    let x0 = $load(p0.add(c));
                    let x1 = $load(p1.add(c));
                    for k in 0..4 {
                        let y = $load(qp.add(k * dim + c));
                        acc[2 * k] = $fma(y, x0, acc[2 * k]);
                        acc[2 * k + 1] = $fma(y, x1, acc[2 * k + 1]);
                    }
                }
                c += L;
            }
            let mut out = tree8(acc);
            while c < dim {
                for k in 0..4 {
                    let y = q[k * dim + c];
                    out[2 * k] += y * d0[c];
                    out[2 * k + 1] += y * d1[c];
                }
                c += 1;
            }
            out
        }
    };
}

pub(super) use x86_kernel;
