//! The fused CPU sequence kernels of the built-in cells: the whole recurrence forward in one
//! custom op, and the whole of BPTT in its backward.
//!
//! The op takes the input `x` `[B, T, E]`, both weight matrices `[W_ih, W_hh]` (flattened, one
//! tensor) and both biases `[b_ih, b_hh]` `[2·G·H]`, and returns the hidden state of every step,
//! zero where a step is past the sequence's length: `[B, T, H]`, for the LSTM `[2·B, T, H]` (the
//! `h` plane, then the `c` plane, so that `h` is a contiguous view). Forward computes the input
//! product `xp = x W_ihᵀ` of every step as one matrix product, then the recurrence. Backward
//! returns `dx`, `[dW_ih, dW_hh]` and both biases' gradients: `dW_hh`, `dW_ih` and `dx` are one
//! product each over all steps, the biases' gradients sums of the gate gradients. Inside the op
//! none of the `[B, T, G·H]` intermediates becomes a candle tensor, so autograd neither zero-fills
//! nor accumulates them.
//!
//! Inside, the rows of the batch are sorted by length and dealt to one chunk per thread; each chunk
//! runs its rows independently, so at step `k` its active rows are a prefix and only they enter the
//! recurrent product. What backward needs (gate activations, masked previous states) is kept in the
//! op, step-major and compacted to the active rows.

use std::any::Any;
use std::sync::Mutex;

use candle_core::{DType, Shape, Tensor};
use gemm::Parallelism;
use rnnlab_core::{CellState, Error, Result, SeqOutput};

use crate::activation::Real;
use crate::cpu_op::SliceOp3;
use crate::rows::{GruBackward, GruForward, LstmBackward, LstmForward};

/// Which cell's equations the op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FusedCell {
    /// `h' = tanh(a)`.
    RnnTanh,
    /// `h' = relu(a)`.
    RnnRelu,
    /// Gates i, f, g, o.
    Lstm,
    /// Gates r, z, n.
    Gru,
}

impl FusedCell {
    /// Stacked gates `G`.
    fn gates(self) -> usize {
        match self {
            FusedCell::RnnTanh | FusedCell::RnnRelu => 1,
            FusedCell::Lstm => 4,
            FusedCell::Gru => 3,
        }
    }

    /// Values kept per row and step for backward, in units of `H`.
    fn saved(self) -> usize {
        match self {
            // h
            FusedCell::RnnTanh | FusedCell::RnnRelu => 1,
            // i, f, g, o, c, tanh(c)
            FusedCell::Lstm => 6,
            // r, z, n, (h W_hnᵀ + b_hn), h
            FusedCell::Gru => 5,
        }
    }

    /// Planes of the op's output, `[B, T, H]` each: `h` (and the LSTM's `c`).
    fn planes(self) -> usize {
        match self {
            FusedCell::Lstm => 2,
            _ => 1,
        }
    }
}

/// Rows of the batch dealt to one thread, sorted by length (longest first).
#[derive(Debug)]
struct Chunk {
    /// Batch indices.
    rows: Vec<usize>,
    /// Their lengths (non-increasing).
    lens: Vec<usize>,
    /// `active[k]`: rows with more than `k` steps.
    active: Vec<usize>,
    /// `offsets[k]`: the compacted row where step `k` starts; `offsets[K]` is the total.
    offsets: Vec<usize>,
}

impl Chunk {
    fn new(rows: Vec<usize>, lengths: &[usize]) -> Self {
        let lens: Vec<usize> = rows.iter().map(|&b| lengths[b]).collect();
        let steps = lens.first().copied().unwrap_or(0);
        let active: Vec<usize> = (0..steps)
            .map(|k| lens.iter().filter(|&&l| l > k).count())
            .collect();
        let mut offsets = Vec::with_capacity(steps + 1);
        let mut total = 0;
        offsets.push(0);
        for &n in &active {
            total += n;
            offsets.push(total);
        }
        Chunk {
            rows,
            lens,
            active,
            offsets,
        }
    }

    fn steps(&self) -> usize {
        self.active.len()
    }

    fn tokens(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    /// The time index of local row `i` at step `k`.
    fn time(&self, i: usize, k: usize, reverse: bool) -> usize {
        if reverse {
            self.lens[i] - 1 - k
        } else {
            k
        }
    }
}

/// Splits the batch into at most `threads` chunks with about the same work: rows sorted by length
/// (longest first) and dealt in turn.
fn plan(lengths: &[usize], threads: usize) -> Vec<Chunk> {
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&b| lengths[b] > 0).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    // Below about 8 rows per chunk the per-step products get too thin to pay for a thread.
    let n = threads.min(order.len() / 8).max(1);
    let mut rows = vec![Vec::new(); n];
    for (j, b) in order.into_iter().enumerate() {
        rows[j % n].push(b);
    }
    rows.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| Chunk::new(r, lengths))
        .collect()
}

/// A raw pointer that chunks write through; each chunk writes only its own rows.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: the chunks write disjoint rows (each batch row belongs to exactly one chunk).
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// # Safety
    /// `start..start + len` must be in bounds and written by no one else meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, each given by its row and column strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    debug_assert!(k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    debug_assert!(k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the strides and sizes stay inside the slices (checked above in debug builds; every
    // caller passes buffers sized from the same m, n, k).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// What one chunk keeps for backward.
struct ChunkSaved<T> {
    /// `[N, H]` the masked previous state that entered each step's recurrent product.
    hm: Vec<T>,
    /// `[N, S·H]` the cell's values per step (see [`FusedCell::saved`]).
    vals: Vec<T>,
}

/// Shapes and settings of one call.
#[derive(Clone, Debug)]
struct Dims {
    b: usize,
    t: usize,
    /// Input width.
    e: usize,
    h: usize,
}

/// The recurrence as a candle custom op (see the module docs). Its output is `[P·B, T, H]`: `P`
/// planes of `[B, T, H]` ([`FusedCell::planes`]), so that `h` alone is a contiguous view.
pub(crate) struct FusedSeq {
    cell: FusedCell,
    lengths: Vec<usize>,
    reverse: bool,
    /// `[B, H]` recurrent-dropout mask, as f64 (converted per call).
    mask: Option<Vec<f64>>,
    dims: Dims,
    threads: usize,
    saved: Mutex<Option<Box<dyn Any + Send>>>,
}

impl FusedSeq {
    fn chunks(&self) -> Vec<Chunk> {
        plan(&self.lengths, self.threads)
    }

    /// The outputs `[B, T, W·H]` from the input `x` `[B, T, E]`, both weight matrices
    /// (`[W_ih, W_hh]` flattened) and both biases.
    fn forward<T: Real>(&self, x: &[T], weights: &[T], bias: &[T]) -> Vec<T> {
        let Dims { b, t, e, h } = self.dims;
        let cell = self.cell;
        let g = cell.gates() * h;
        let (w_ih, w_hh) = weights.split_at(g * e);
        // xp = x · W_ihᵀ for every step at once ([B·T, E] × [E, G]).
        let mut xp = vec![T::zero(); b * t * g];
        matmul(
            (b * t, g, e),
            &mut xp,
            (g, 1),
            false,
            x,
            (e, 1),
            w_ih,
            (1, e),
            parallelism(self.threads),
        );
        let xp = &xp[..];
        let mask: Option<Vec<T>> = self
            .mask
            .as_ref()
            .map(|m| m.iter().map(|&v| T::from_f64(v)).collect());
        let mut out = vec![T::zero(); cell.planes() * b * t * h];
        let out_ptr = SharedMut(out.as_mut_ptr());
        // W_hhᵀ [H, G], for the per-step products (see forward_chunk).
        let mut w_hh_t = vec![T::zero(); g * h];
        for (a, row) in w_hh.chunks_exact(h).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                w_hh_t[k * g + a] = v;
            }
        }
        let w_hh_t = &w_hh_t[..];
        let chunks = self.chunks();
        let run = |ch: &Chunk| -> ChunkSaved<T> {
            forward_chunk(
                cell,
                ch,
                self.reverse,
                &self.dims,
                xp,
                w_hh_t,
                bias,
                mask.as_deref(),
                out_ptr,
                g,
            )
        };
        let saved: Vec<ChunkSaved<T>> = if chunks.len() > 1 {
            use rayon::prelude::*;
            chunks.par_iter().map(run).collect()
        } else {
            chunks.iter().map(run).collect()
        };
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some(Box::new(saved));
        }
        out
    }

    /// `dx`, `[dW_ih, dW_hh]` and `[db_ih, db_hh]` from the gradient of the output.
    fn backward<T: Real>(
        &self,
        grad: &[T],
        x: &[T],
        weights: &[T],
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let Dims { b, t, e, h } = self.dims;
        let (w_ih, w_hh) = weights.split_at(self.cell.gates() * h * e);
        let cell = self.cell;
        let g = cell.gates() * h;
        let slot = self
            .saved
            .lock()
            .map_err(|_| Error::Mismatch("fused recurrence: poisoned saved state".into()))?;
        let saved = slot
            .as_ref()
            .and_then(|s| s.downcast_ref::<Vec<ChunkSaved<T>>>())
            .ok_or_else(|| {
                Error::Mismatch("fused recurrence: backward without its forward".into())
            })?;
        let mask: Option<Vec<T>> = self
            .mask
            .as_ref()
            .map(|m| m.iter().map(|&v| T::from_f64(v)).collect());
        let chunks = self.chunks();
        let mut dxp = vec![T::zero(); b * t * g];
        let dxp_ptr = SharedMut(dxp.as_mut_ptr());
        let run = |(ch, sv): (&Chunk, &ChunkSaved<T>)| -> (Vec<T>, Vec<T>) {
            backward_chunk(
                cell,
                ch,
                self.reverse,
                &self.dims,
                grad,
                w_hh,
                mask.as_deref(),
                sv,
                dxp_ptr,
                g,
            )
        };
        let dgs: Vec<(Vec<T>, Vec<T>)> = if chunks.len() > 1 {
            use rayon::prelude::*;
            chunks.par_iter().zip(saved.par_iter()).map(run).collect()
        } else {
            chunks.iter().zip(saved.iter()).map(run).collect()
        };
        // [dW_ih, dW_hh]; dW_hh = Σ over every active (row, step) of dG_recᵀ · hm: one product
        // per chunk.
        let mut dw_all = vec![T::zero(); g * (e + h)];
        let (dw_ih, dw) = dw_all.split_at_mut(g * e);
        // [db_ih, db_hh]
        let mut db = vec![T::zero(); 2 * g];
        let par = parallelism(self.threads);
        for (k, ((ch, sv), (dg, db_ih))) in chunks.iter().zip(saved).zip(&dgs).enumerate() {
            let n = ch.tokens();
            matmul(
                (g, h, n),
                dw,
                (h, 1),
                k > 0,
                dg,
                (1, g),
                &sv.hm,
                (h, 1),
                par,
            );
            for (d, &v) in db[..g].iter_mut().zip(db_ih) {
                *d += v;
            }
            for row in dg.chunks_exact(g) {
                for (d, &v) in db[g..].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
        // dW_ih = dxpᵀ · x and dx = dxp · W_ih, over every (row, step) at once (padded steps have
        // dxp = 0).
        matmul(
            (g, e, b * t),
            dw_ih,
            (e, 1),
            false,
            &dxp,
            (1, g),
            x,
            (e, 1),
            par,
        );
        let mut dx = vec![T::zero(); b * t * e];
        matmul(
            (b * t, e, g),
            &mut dx,
            (e, 1),
            false,
            &dxp,
            (g, 1),
            w_ih,
            (e, 1),
            par,
        );
        Ok((dx, dw_all, db))
    }
}

/// `gemm`'s setting for `threads` threads of the current rayon pool.
pub(crate) fn parallelism(threads: usize) -> Parallelism {
    if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Runs one chunk's rows forward; writes their outputs and returns what backward needs.
#[allow(clippy::too_many_arguments)]
fn forward_chunk<T: Real>(
    cell: FusedCell,
    ch: &Chunk,
    reverse: bool,
    dims: &Dims,
    xp: &[T],
    w_hh_t: &[T],
    bias: &[T],
    mask: Option<&[T]>,
    out: SharedMut<T>,
    g: usize,
) -> ChunkSaved<T> {
    let Dims { b, t: tt, h, .. } = *dims;
    // Where the LSTM's c plane starts in the output.
    let plane = b * tt * h;
    let s = cell.saved() * h;
    let nb = ch.rows.len();
    let total = ch.tokens();
    let (b_ih, b_hh) = bias.split_at(g);
    // Both biases in one, for the cells that add them together.
    let b_sum: Vec<T> = b_ih.iter().zip(b_hh).map(|(&a, &b)| a + b).collect();
    let mut hm = vec![T::zero(); total * h];
    let mut vals = vec![T::zero(); total * s];
    let mut state_h = vec![T::zero(); nb * h];
    let mut state_c = vec![T::zero(); if cell == FusedCell::Lstm { nb * h } else { 0 }];
    let mut rec = vec![T::zero(); nb * g];
    for k in 0..ch.steps() {
        let n = ch.active[k];
        let off = ch.offsets[k];
        // The masked previous state of the active rows, kept for backward.
        let block = &mut hm[off * h..(off + n) * h];
        for i in 0..n {
            let dst = &mut block[i * h..(i + 1) * h];
            let src = &state_h[i * h..(i + 1) * h];
            match mask {
                Some(m) => {
                    let mb = &m[ch.rows[i] * h..(ch.rows[i] + 1) * h];
                    for ((d, &x), &mv) in dst.iter_mut().zip(src).zip(mb) {
                        *d = x * mv;
                    }
                }
                None => dst.copy_from_slice(src),
            }
        }
        // rec = hm · W_hhᵀ   ([n, H] × [H, G]), computed as recᵀ = W_hh · hmᵀ ([G, H] × [H, n])
        // from the transposed copy: gates along the rows is the column-major layout `gemm`
        // runs fastest (`cargo run --release -p rnnlab-models --example gemm_shapes`).
        matmul(
            (g, n, h),
            &mut rec[..n * g],
            (1, g),
            false,
            w_hh_t,
            (1, g),
            block,
            (1, h),
            Parallelism::None,
        );
        for i in 0..n {
            let bi = ch.rows[i];
            let ti = ch.time(i, k, reverse);
            let x = &xp[(bi * tt + ti) * g..(bi * tt + ti + 1) * g];
            let r = &mut rec[i * g..(i + 1) * g];
            let v = &mut vals[(off + i) * s..(off + i + 1) * s];
            let hs = &mut state_h[i * h..(i + 1) * h];
            // SAFETY: row `bi` belongs to this chunk only.
            let at = bi * tt + ti;
            let o = unsafe { out.slice(at * h, h) };
            match cell {
                FusedCell::RnnTanh | FusedCell::RnnRelu => {
                    for j in 0..h {
                        r[j] = x[j] + r[j] + b_sum[j];
                    }
                    if cell == FusedCell::RnnTanh {
                        T::tanh_slice(r);
                    } else {
                        for a in r.iter_mut() {
                            if *a < T::zero() {
                                *a = T::zero();
                            }
                        }
                    }
                    hs.copy_from_slice(r);
                    v.copy_from_slice(r);
                    o.copy_from_slice(r);
                }
                FusedCell::Lstm => {
                    for ((a, &xv), &bv) in r.iter_mut().zip(x).zip(&b_sum) {
                        *a += xv + bv;
                    }
                    let (ifg, og) = r.split_at_mut(3 * h);
                    let (if_, gg) = ifg.split_at_mut(2 * h);
                    T::sigmoid_slice(if_);
                    T::tanh_slice(gg);
                    T::sigmoid_slice(og);
                    let (gates, rest) = v.split_at_mut(4 * h);
                    gates.copy_from_slice(r);
                    let (c_saved, tanh_c) = rest.split_at_mut(h);
                    T::lstm_forward(
                        LstmForward {
                            gates,
                            c: &mut state_c[i * h..(i + 1) * h],
                            c_saved,
                            tanh_c,
                            h: hs,
                            out_h: o,
                            // SAFETY: as `o`, in the c plane.
                            out_c: unsafe { out.slice(plane + at * h, h) },
                        },
                        T::tanh_slice,
                    );
                }
                FusedCell::Gru => T::gru_forward(
                    GruForward {
                        x,
                        b_ih,
                        b_hh,
                        rec: r,
                        saved: v,
                        h: hs,
                        out: o,
                    },
                    T::sigmoid_slice,
                    T::tanh_slice,
                ),
            }
        }
    }
    ChunkSaved { hm, vals }
}

/// BPTT over one chunk's rows; writes their `dxp` rows and returns the recurrent-side gate
/// gradients `[N, G]` (compacted like the saved values) and the sum of the `dxp` rows (`db_ih`).
#[allow(clippy::too_many_arguments)]
fn backward_chunk<T: Real>(
    cell: FusedCell,
    ch: &Chunk,
    reverse: bool,
    dims: &Dims,
    grad: &[T],
    w_hh: &[T],
    mask: Option<&[T]>,
    sv: &ChunkSaved<T>,
    dxp: SharedMut<T>,
    g: usize,
) -> (Vec<T>, Vec<T>) {
    let Dims { b, t: tt, h, .. } = *dims;
    // Where the gradient's c plane starts (LSTM).
    let plane = b * tt * h;
    let s = cell.saved() * h;
    let nb = ch.rows.len();
    let mut db_ih = vec![T::zero(); g];
    let mut dg = vec![T::zero(); ch.tokens() * g];
    // The gradient reaching each row's state from later steps.
    let mut dh = vec![T::zero(); nb * h];
    let mut dc = vec![T::zero(); if cell == FusedCell::Lstm { nb * h } else { 0 }];
    let mut dhm = vec![T::zero(); nb * h];
    // The state entering a row's first step.
    let zeros = vec![T::zero(); h];
    let one = T::one();
    for k in (0..ch.steps()).rev() {
        let n = ch.active[k];
        let off = ch.offsets[k];
        for i in 0..n {
            let bi = ch.rows[i];
            let ti = ch.time(i, k, reverse);
            let at = bi * tt + ti;
            let go = &grad[at * h..(at + 1) * h];
            let v = &sv.vals[(off + i) * s..(off + i + 1) * s];
            let d = &mut dg[(off + i) * g..(off + i + 1) * g];
            // SAFETY: row `bi` belongs to this chunk only.
            let dx = unsafe { dxp.slice((bi * tt + ti) * g, g) };
            let dhi = &mut dh[i * h..(i + 1) * h];
            // The state this row carried into step k (the LSTM's c, the GRU's h: both kept at
            // 4H of the previous step's values); zero at its first step.
            let prev = (k > 0 && s > 4 * h).then(|| {
                let at = (ch.offsets[k - 1] + i) * s + 4 * h;
                &sv.vals[at..at + h]
            });
            match cell {
                FusedCell::RnnTanh => {
                    for j in 0..h {
                        let hv = v[j];
                        d[j] = (dhi[j] + go[j]) * (one - hv * hv);
                        dhi[j] = T::zero();
                    }
                    dx.copy_from_slice(d);
                }
                FusedCell::RnnRelu => {
                    for j in 0..h {
                        let on = if v[j] > T::zero() { one } else { T::zero() };
                        d[j] = (dhi[j] + go[j]) * on;
                        dhi[j] = T::zero();
                    }
                    dx.copy_from_slice(d);
                }
                FusedCell::Lstm => {
                    T::lstm_backward(LstmBackward {
                        saved: v,
                        c_prev: prev.unwrap_or(&zeros),
                        grad_h: go,
                        grad_c: &grad[plane + at * h..plane + (at + 1) * h],
                        dh: dhi,
                        dc: &mut dc[i * h..(i + 1) * h],
                        d,
                    });
                    dx.copy_from_slice(d);
                }
                FusedCell::Gru => T::gru_backward(GruBackward {
                    saved: v,
                    h_prev: prev.unwrap_or(&zeros),
                    grad_out: go,
                    dh: dhi,
                    dx,
                    d,
                }),
            }
            for (acc, &v) in db_ih.iter_mut().zip(dx.iter()) {
                *acc += v;
            }
        }
        // dhm = dG_rec · W_hh   ([n, G] × [G, H]); dh_prev += dhm ⊙ mask.
        matmul(
            (n, h, g),
            &mut dhm[..n * h],
            (h, 1),
            false,
            &dg[off * g..(off + n) * g],
            (g, 1),
            w_hh,
            (h, 1),
            Parallelism::None,
        );
        for i in 0..n {
            let dhi = &mut dh[i * h..(i + 1) * h];
            let src = &dhm[i * h..(i + 1) * h];
            match mask {
                Some(m) => {
                    let mb = &m[ch.rows[i] * h..(ch.rows[i] + 1) * h];
                    for j in 0..h {
                        dhi[j] += src[j] * mb[j];
                    }
                }
                None => {
                    for j in 0..h {
                        dhi[j] += src[j];
                    }
                }
            }
        }
    }
    (dg, db_ih)
}

impl SliceOp3 for FusedSeq {
    const NAME: &'static str = "fused recurrence";

    /// The outputs from `x`, both weight matrices and both biases.
    fn forward_slices<T: Real>(
        &self,
        x: &[T],
        weights: &[T],
        bias: &[T],
    ) -> Result<(Vec<T>, Shape)> {
        let Dims { b, t, e, h } = self.dims;
        let g = self.cell.gates() * h;
        if x.len() != b * t * e || weights.len() != g * (e + h) || bias.len() != 2 * g {
            return Err(Error::Mismatch(format!(
                "fused recurrence: x {}, weights {}, biases {} values for B={b}, T={t}, E={e}, G·H={g}, H={h}",
                x.len(),
                weights.len(),
                bias.len()
            )));
        }
        let shape = Shape::from((self.cell.planes() * b, t, h));
        Ok((self.forward(x, weights, bias), shape))
    }

    /// `dx`, `[dW_ih, dW_hh]` and both biases' gradients.
    fn backward_slices<T: Real>(
        &self,
        grad: &[T],
        x: &[T],
        weights: &[T],
    ) -> Result<[(Vec<T>, Shape); 3]> {
        let Dims { b, t, e, h } = self.dims;
        let g = self.cell.gates() * h;
        let (dx, dw, db) = self.backward(grad, x, weights)?;
        Ok([
            (dx, Shape::from((b, t, e))),
            (dw, Shape::from(g * (e + h))),
            (db, Shape::from(2 * g)),
        ])
    }
}

crate::cpu_op::custom_op3!(FusedSeq);

/// Whether the fused op can run on `x` (a CPU tensor of f32 or f64).
pub(crate) fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Runs `cell` over `x` `[B, T, E]` with weights `w_ih` `[G·H, E]`, `w_hh` `[G·H, H]` and biases
/// `[G·H]`, as [`rnnlab_core::reference_forward_seq`] would.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_seq(
    cell: FusedCell,
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: &Tensor,
    b_hh: &Tensor,
    lengths: &[usize],
    reverse: bool,
    h_mask: Option<&Tensor>,
) -> Result<SeqOutput> {
    let (b, t, e) = x.dims3()?;
    let (gh, h) = w_hh.dims2()?;
    if gh != cell.gates() * h || w_ih.dims() != [gh, e] || lengths.len() != b {
        return Err(Error::Mismatch(format!(
            "fused recurrence: x [{b}, {t}, {e}], weight_ih {:?}, weight_hh [{gh}, {h}] with {} lengths",
            w_ih.dims(),
            lengths.len()
        )));
    }
    let (dtype, device) = (x.dtype(), x.device());
    let lengths: Vec<usize> = lengths.iter().map(|&l| l.min(t)).collect();
    let zero_state = || -> Result<SeqOutput> {
        let z = Tensor::zeros((b, h), dtype, device)?;
        Ok(SeqOutput {
            outputs: Tensor::zeros((b, t, h), dtype, device)?,
            last: CellState {
                h: z.clone(),
                c: (cell == FusedCell::Lstm).then_some(z),
            },
        })
    };
    if t == 0 || b == 0 {
        return zero_state();
    }
    let mask = match h_mask {
        Some(m) => {
            let m = m.to_dtype(DType::F64)?;
            if m.dims() != [b, h] {
                return Err(Error::Mismatch(format!(
                    "recurrent-dropout mask {:?}, expected [{b}, {h}]",
                    m.dims()
                )));
            }
            Some(m.flatten_all()?.to_vec1::<f64>()?)
        }
        None => None,
    };
    let op = FusedSeq {
        cell,
        lengths: lengths.clone(),
        reverse,
        mask,
        dims: Dims { b, t, e, h },
        threads: rayon::current_num_threads(),
        saved: Mutex::new(None),
    };
    // Both weight matrices as one input (the op has three): a copy of G·H·(E+H) values.
    let weights = Tensor::cat(&[w_ih.flatten_all()?, w_hh.flatten_all()?], 0)?;
    let res = x
        .contiguous()?
        .apply_op3(&weights, &Tensor::cat(&[b_ih, b_hh], 0)?, op)?;
    // The final state: the output at each sequence's last step read (t = len−1 forward, t = 0
    // backward); a sequence of length 0 reads a padded step, which is zero. The LSTM's c is read
    // at the same steps of the second plane.
    let planes = cell.planes();
    let idx: Vec<u32> = (0..planes)
        .flat_map(|p| {
            lengths.iter().enumerate().map(move |(bi, &l)| {
                let ti = if reverse || l == 0 { 0 } else { l - 1 };
                (p * b * t + bi * t + ti) as u32
            })
        })
        .collect();
    let idx = Tensor::from_vec(idx, planes * b, device)?;
    // [planes·B, H]
    let finals = res.reshape((planes * b * t, h))?.index_select(&idx, 0)?;
    let (outputs, last) = if cell == FusedCell::Lstm {
        (
            res.narrow(0, 0, b)?,
            CellState {
                h: finals.narrow(0, 0, b)?,
                c: Some(finals.narrow(0, b, b)?),
            },
        )
    } else {
        (res, CellState { h: finals, c: None })
    };
    Ok(SeqOutput { outputs, last })
}
