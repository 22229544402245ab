//! Frozen linear layers for sampling on the CPU: the weight held as bf16, multiplied by a
//! hand-written kernel.
//!
//! Why by hand: decoding n sequences multiplies an `[n, in]` activation (n ≈ 10) by every weight
//! of the model once per step, so the step is bound by streaming the weights from memory; f32
//! weights stream 2 GB per step for the 0.5B model. bf16 halves that, and on CPUs with
//! AVX512-BF16 (`vdpbf16ps`, 32 multiply-adds per instruction) doubles the arithmetic rate as
//! well. Candle's bf16 matmul goes through the `gemm` crate's generic path, slower than its f32
//! one on these CPUs (models.md), and no crate offers this skinny GEMM over bf16 weights; llama.cpp
//! is the peer that does, in C. Qwen2.5 was trained in bf16, so bf16 weights lose nothing that the
//! GGUF's 4–8-bit weights had.
//!
//! Results of one row never depend on the other rows of the batch: each output is one dot
//! product whose order of operations is fixed (a per-sample seed gives the same text whatever
//! else is in the batch).

use half::bf16;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Columns are padded to a multiple of this (one 512-bit register of bf16) with zeros.
const LANES: usize = 32;

/// The instruction sets a kernel needs; the fastest the CPU has is picked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX512-BF16: activations rounded to bf16, `vdpbf16ps` with f32 accumulation.
    Avx512Bf16,
    /// AVX2 + FMA: bf16 weights widened to f32 in registers, f32 activations.
    Avx2,
    /// Portable: the same arithmetic as `Avx2`, one element at a time.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU runs, unless `ILF_BF16_KERNEL` (`avx512bf16`, `avx2` or
    /// `scalar`) names another one it runs: benchmarks use it to measure the AVX2 kernel on a
    /// CPU that also has AVX512-BF16.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let all = Kernel::available();
            let wanted = std::env::var("ILF_BF16_KERNEL").ok().and_then(|v| {
                match v.to_ascii_lowercase().as_str() {
                    "avx512bf16" => Some(Kernel::Avx512Bf16),
                    "avx2" => Some(Kernel::Avx2),
                    "scalar" => Some(Kernel::Scalar),
                    _ => None,
                }
            });
            match wanted {
                Some(k) if all.contains(&k) => k,
                Some(k) => {
                    tracing::warn!(
                        "ILF_BF16_KERNEL={k:?}: this CPU cannot run it; using {:?}",
                        all[0]
                    );
                    all[0]
                }
                None => all[0],
            }
        })
    }

    /// Every kernel this CPU runs, fastest first (tests compare them all to a reference).
    pub fn available() -> Vec<Kernel> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
            {
                out.push(Kernel::Avx512Bf16);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                out.push(Kernel::Avx2);
            }
        }
        out.push(Kernel::Scalar);
        out
    }
}

/// An `[out, in]` weight as bf16, each row padded with zeros to a multiple of 32 columns.
#[derive(Debug)]
pub struct Bf16Weight {
    data: Vec<bf16>,
    rows: usize,
    cols: usize,
    stride: usize,
}

/// Rows of the weight handed to one rayon task: enough work to amortise the task, small enough
/// that the 0.5B model's 128-row K/V projections still split over two cores.
const ROWS_PER_TASK: usize = 64;

impl Bf16Weight {
    /// Rounds an `[rows, cols]` row-major f32 matrix to bf16 (round to nearest even).
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "Bf16Weight::from_f32: shape");
        let stride = cols.div_ceil(LANES) * LANES;
        let mut data = vec![bf16::ZERO; rows * stride];
        data.par_chunks_mut(stride)
            .zip(w.par_chunks(cols.max(1)))
            .for_each(|(dst, src)| {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = bf16::from_f32(*s);
                }
            });
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }

    /// The transpose of an `[rows, cols]` row-major f32 matrix, rounded to bf16: a `[cols, rows]`
    /// weight (backward's `dy W` is then also a `matmul_t`). Copied in 64 × 64 blocks so both
    /// sides are read and written a cache line at a time.
    pub fn from_f32_transposed(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            w.len(),
            rows * cols,
            "Bf16Weight::from_f32_transposed: shape"
        );
        const B: usize = 64;
        let stride = rows.div_ceil(LANES) * LANES;
        let mut data = vec![bf16::ZERO; cols * stride];
        data.par_chunks_mut(B * stride)
            .enumerate()
            .for_each(|(blk, dst)| {
                let c0 = blk * B;
                let nc = dst.len() / stride;
                for r0 in (0..rows).step_by(B) {
                    for r in r0..(r0 + B).min(rows) {
                        let src = &w[r * cols + c0..r * cols + c0 + nc];
                        for (dc, v) in src.iter().enumerate() {
                            dst[dc * stride + r] = bf16::from_f32(*v);
                        }
                    }
                }
            });
        Self {
            data,
            rows: cols,
            cols: rows,
            stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The weight back as f32 `[rows, cols]` (exports and merges read it).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            let row = &self.data[r * self.stride..r * self.stride + self.cols];
            out.extend(row.iter().map(|v| v.to_f32()));
        }
        out
    }

    /// `x Wᵀ` for `x` of `[m, cols]` (row-major f32): returns `[m, rows]`.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_t_with(Kernel::best(), x, m)
    }

    /// [`Self::matmul_t`] with a chosen kernel (which the CPU must support).
    pub fn matmul_t_with(&self, kernel: Kernel, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "Bf16Weight::matmul_t: input shape");
        let (n, stride) = (self.rows, self.stride);
        if m == 0 || n == 0 {
            return vec![0.0; m * n];
        }
        // Activations padded like the weight, in the kernel's element type.
        let xs = Activations::new(kernel, x, m, self.cols, stride);
        let mut out = vec![0f32; m * n];
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..n.div_ceil(ROWS_PER_TASK))
            .into_par_iter()
            .for_each(|task| {
                let r0 = task * ROWS_PER_TASK;
                let rows = ROWS_PER_TASK.min(n - r0);
                let w = &self.data[r0 * stride..(r0 + rows) * stride];
                // SAFETY: task `t` writes only columns `r0..r0 + rows` of the `[m, n]` output, so
                // no two tasks touch the same element, and `out` outlives the parallel loop.
                let dst = Out {
                    ptr: unsafe { out_ptr.get().add(r0) },
                    row_stride: n,
                };
                block(kernel, w, rows, &xs, m, stride, dst);
            });
        out
    }
}

/// The output buffer shared by the rayon tasks, each writing its own columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements (see `matmul_t_with`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Where a task's results go: element (activation row `i`, weight row `r`) of the task is
/// `ptr + i * row_stride + r`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    row_stride: usize,
}

impl Out {
    /// The block whose element (0, 0) is this one's (`r`, `i`).
    ///
    /// # Safety
    /// `(r, i)` must be inside this block.
    #[inline(always)]
    unsafe fn at(self, r: usize, i: usize) -> Out {
        Out {
            ptr: self.ptr.add(i * self.row_stride + r),
            row_stride: self.row_stride,
        }
    }

    /// # Safety
    /// `(r, i)` must be inside the task's block.
    #[inline(always)]
    unsafe fn put(self, r: usize, i: usize, v: f32) {
        *self.ptr.add(i * self.row_stride + r) = v;
    }
}

/// A frozen weight that training differentiates through (LoRA's base): `W` and `Wᵀ` as bf16,
/// together the memory of one f32 copy, so the forward `x Wᵀ` and the backward `dy W` both run
/// on the bf16 kernel.
#[derive(Debug)]
pub struct FrozenBf16 {
    /// `[out, in]`.
    pub w: Bf16Weight,
    /// `[in, out]`.
    pub wt: Bf16Weight,
}

impl FrozenBf16 {
    /// From an `[out, in]` row-major f32 weight.
    pub fn from_f32(w: &[f32], out: usize, inp: usize) -> Self {
        Self {
            w: Bf16Weight::from_f32(w, out, inp),
            wt: Bf16Weight::from_f32_transposed(w, out, inp),
        }
    }
}

/// The activations in the layout a kernel reads: rows padded to `stride` with zeros.
enum Activations {
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
}

impl Activations {
    fn new(kernel: Kernel, x: &[f32], m: usize, cols: usize, stride: usize) -> Self {
        match kernel {
            Kernel::Avx512Bf16 => {
                let mut v = vec![bf16::ZERO; m * stride];
                for (dst, src) in v.chunks_exact_mut(stride).zip(x.chunks_exact(cols)) {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = bf16::from_f32(*s);
                    }
                }
                Activations::Bf16(v)
            }
            Kernel::Avx2 | Kernel::Scalar => {
                let mut v = vec![0f32; m * stride];
                for (dst, src) in v.chunks_exact_mut(stride).zip(x.chunks_exact(cols)) {
                    dst[..cols].copy_from_slice(src);
                }
                Activations::F32(v)
            }
        }
    }
}

/// `out(r, i) = dot(w[r], x[i])` for the `rows` weight rows of one task.
fn block(
    kernel: Kernel,
    w: &[bf16],
    rows: usize,
    xs: &Activations,
    m: usize,
    stride: usize,
    out: Out,
) {
    match (kernel, xs) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Bf16, Activations::Bf16(x)) => {
            // SAFETY: `Kernel::available` saw AVX512F and AVX512-BF16; the slices hold
            // `rows` and `m` rows of `stride` elements and `out` covers `rows × m`.
            unsafe { x86::block_avx512bf16(w, rows, x, m, stride, out) }
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, Activations::F32(x)) => {
            // SAFETY: as above, with AVX2 and FMA.
            unsafe { x86::block_avx2(w, rows, x, m, stride, out) }
        }
        (_, Activations::F32(x)) => block_scalar(w, rows, x, m, stride, out),
        (k, _) => panic!("bf16 kernel {k:?} is not available on this CPU"),
    }
}

fn block_scalar(w: &[bf16], rows: usize, x: &[f32], m: usize, stride: usize, out: Out) {
    for r in 0..rows {
        let wr = &w[r * stride..(r + 1) * stride];
        for i in 0..m {
            let xr = &x[i * stride..(i + 1) * stride];
            // Eight partial sums, like the AVX2 kernel's lanes, so both round alike.
            let mut acc = [0f32; 8];
            for (wc, xc) in wr.chunks_exact(8).zip(xr.chunks_exact(8)) {
                for l in 0..8 {
                    acc[l] = wc[l].to_f32().mul_add(xc[l], acc[l]);
                }
            }
            // SAFETY: r < rows and i < m.
            unsafe { out.put(r, i, acc.iter().sum()) };
        }
    }
}

// Index loops over the register tiles keep the (weight row, activation row) pairing of each
// accumulator explicit; the compiler unrolls them over the const sizes.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Out;
    use half::bf16;
    use std::arch::x86_64::*;

    /// Weight rows per tile and activation rows per tile: 4 × 4 accumulators, 4 weight registers
    /// and one activation register fit in the 32 zmm registers.
    const R: usize = 4;
    const MB: usize = 4;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn block_avx512bf16(
        w: &[bf16],
        rows: usize,
        x: &[bf16],
        m: usize,
        stride: usize,
        out: Out,
    ) {
        let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr() as *const u16);
        walk_tiles(rows, m, MB, stride, wp, |r, i, nr, ni, pf| {
            let (wt, xt, ot) = (wp.add(r * stride), xp.add(i * stride), out.at(r, i));
            match (nr, ni) {
                (4, 4) => tile_bf16::<4, 4>(wt, xt, stride, ot, pf),
                (4, 3) => tile_bf16::<4, 3>(wt, xt, stride, ot, pf),
                (4, 2) => tile_bf16::<4, 2>(wt, xt, stride, ot, pf),
                (4, 1) => tile_bf16::<4, 1>(wt, xt, stride, ot, pf),
                (_, 4) => tile_bf16::<1, 4>(wt, xt, stride, ot, pf),
                (_, 3) => tile_bf16::<1, 3>(wt, xt, stride, ot, pf),
                (_, 2) => tile_bf16::<1, 2>(wt, xt, stride, ot, pf),
                _ => tile_bf16::<1, 1>(wt, xt, stride, ot, pf),
            }
        });
    }

    /// The tile walk both kernels share: weight rows in tiles of `R` (a partial tile one row at a
    /// time), activation rows in tiles of up to `mb`. `tile(r, i, nr, ni, prefetch)` computes
    /// one; `prefetch` is the next weight tile on its first pass over a weight tile (so the next
    /// tile's stream from memory overlaps this one's arithmetic), null otherwise.
    #[inline(always)]
    unsafe fn walk_tiles(
        rows: usize,
        m: usize,
        mb: usize,
        stride: usize,
        wp: *const u16,
        mut tile: impl FnMut(usize, usize, usize, usize, *const u16),
    ) {
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(R);
            let mut i = 0;
            while i < m {
                let ni = (m - i).min(mb);
                let pf = if i == 0 && r + nr < rows {
                    wp.add((r + nr) * stride)
                } else {
                    std::ptr::null()
                };
                tile(r, i, nr, ni, pf);
                i += ni;
            }
            r += if nr == R { R } else { 1 };
        }
    }

    /// `NR` weight rows against `NI` activation rows; every accumulator sees the same sequence of
    /// `vdpbf16ps` over the row, whatever the tile, so results do not depend on the batch.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile_bf16<const NR: usize, const NI: usize>(
        w: *const u16,
        x: *const u16,
        stride: usize,
        out: Out,
        prefetch: *const u16,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NI]; NR];
        let mut c = 0;
        while c < stride {
            if !prefetch.is_null() {
                // One 64-byte line per row per chunk: the chunk's 32 bf16.
                for r in 0..R {
                    // `wrapping_add`: the next tile may have fewer than R rows, and a prefetch
                    // past the end never faults.
                    _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(r * stride + c) as *const i8);
                }
            }
            let mut wv = [_mm512_setzero_si512(); NR];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(w.add(r * stride + c) as *const _);
            }
            for i in 0..NI {
                let xv = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    x.add(i * stride + c) as *const _,
                ));
                for r in 0..NR {
                    acc[r][i] = _mm512_dpbf16_ps(
                        acc[r][i],
                        xv,
                        std::mem::transmute::<__m512i, __m512bh>(wv[r]),
                    );
                }
            }
            c += super::LANES;
        }
        for r in 0..NR {
            for i in 0..NI {
                out.put(r, i, _mm512_reduce_add_ps(acc[r][i]));
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_avx2(
        w: &[bf16],
        rows: usize,
        x: &[f32],
        m: usize,
        stride: usize,
        out: Out,
    ) {
        let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr());
        walk_tiles(rows, m, 2, stride, wp, |r, i, nr, ni, pf| {
            let (wt, xt, ot) = (wp.add(r * stride), xp.add(i * stride), out.at(r, i));
            match (nr, ni) {
                (4, 2) => tile_avx2::<4, 2>(wt, xt, stride, ot, pf),
                (4, _) => tile_avx2::<4, 1>(wt, xt, stride, ot, pf),
                (_, 2) => tile_avx2::<1, 2>(wt, xt, stride, ot, pf),
                _ => tile_avx2::<1, 1>(wt, xt, stride, ot, pf),
            }
        });
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const NR: usize, const NI: usize>(
        w: *const u16,
        x: *const f32,
        stride: usize,
        out: Out,
        prefetch: *const u16,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NI]; NR];
        let mut c = 0;
        while c < stride {
            if !prefetch.is_null() && c % super::LANES == 0 {
                // One 64-byte line (32 bf16) per row, every fourth chunk of 8.
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(r * stride + c) as *const i8);
                }
            }
            let mut wv = [_mm256_setzero_ps(); NR];
            for (r, v) in wv.iter_mut().enumerate() {
                // bf16 is the high half of an f32: widen and shift.
                let h = _mm_loadu_si128(w.add(r * stride + c) as *const _);
                *v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            }
            for i in 0..NI {
                let xv = _mm256_loadu_ps(x.add(i * stride + c));
                for r in 0..NR {
                    acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
                }
            }
            c += 8;
        }
        for r in 0..NR {
            for i in 0..NI {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][i]);
                out.put(r, i, lanes.iter().sum());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// f64 reference of `x Wᵀ` over the bf16-rounded weight.
    fn reference(w: &Bf16Weight, x: &[f32], m: usize) -> Vec<f64> {
        let wf = w.to_f32();
        let (n, k) = (w.rows(), w.cols());
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|c| x[i * k + c] as f64 * wf[j * k + c] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_reference_on_odd_shapes() {
        // Shapes with partial tiles in every direction and columns not a multiple of 32.
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 33),
            (10, 130, 100),
            (7, 67, 896),
            (41, 9, 64),
        ] {
            let w = Bf16Weight::from_f32(&random(n * k, 1), n, k);
            let x = random(m * k, 2);
            let want = reference(&w, &x, m);
            for kernel in Kernel::available() {
                let got = w.matmul_t_with(kernel, &x, m);
                // bf16 activations (AVX512-BF16) carry a relative error of 2^-9 per element.
                let tol = match kernel {
                    Kernel::Avx512Bf16 => 2e-2 * (k as f64).sqrt(),
                    _ => 1e-5 * k as f64,
                };
                for (g, r) in got.iter().zip(&want) {
                    assert!(
                        (*g as f64 - r).abs() <= tol,
                        "{kernel:?} m={m} n={n} k={k}: {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_rest_of_the_batch() {
        let (n, k) = (70, 200);
        let w = Bf16Weight::from_f32(&random(n * k, 3), n, k);
        let x = random(11 * k, 4);
        for kernel in Kernel::available() {
            let all = w.matmul_t_with(kernel, &x, 11);
            for i in 0..11 {
                let one = w.matmul_t_with(kernel, &x[i * k..(i + 1) * k], 1);
                assert_eq!(one, all[i * n..(i + 1) * n], "{kernel:?} row {i}");
            }
        }
    }

    #[test]
    fn the_transposed_weight_is_the_transpose() {
        for &(rows, cols) in &[(1, 1), (3, 70), (130, 65), (64, 64)] {
            let v = random(rows * cols, 5);
            let w = Bf16Weight::from_f32(&v, rows, cols).to_f32();
            let t = Bf16Weight::from_f32_transposed(&v, rows, cols);
            assert_eq!((t.rows(), t.cols()), (cols, rows));
            let t = t.to_f32();
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        w[r * cols + c],
                        "({r}, {c}) of {rows}×{cols}"
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_to_bf16_round_trips_representable_values() {
        let vals = [0.0f32, 1.0, -2.5, 0.15625, 3.0e38, -1.0e-30];
        let w = Bf16Weight::from_f32(&vals, 2, 3);
        let back = w.to_f32();
        for (a, b) in vals.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-8), "{a} -> {b}");
        }
        assert_eq!(back[0], 0.0);
        assert_eq!(back[1], 1.0);
        assert_eq!(back[2], -2.5);
    }
}
