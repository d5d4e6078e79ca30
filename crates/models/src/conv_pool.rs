//! One filter width of the Kim CNN: 1-D convolution over each sequence's true tokens, ReLU and max
//! over time, as one CPU custom op ([`conv_max_pool`]) and as candle ops ([`reference_conv_max_pool`]).
//!
//! For a row of length `l` and filter width `w`, the windows start at `0..max(l − w + 1, 1)`; a
//! window reads the row's tokens and zeros past its end (so a row shorter than the filter has one
//! window), never the batch's padding. The feature of map `j` is
//! `relu(b_j + max_p Σ_{k,e} W[j, e, k] · x[p + k, e])`.
//!
//! The op unfolds the valid windows of all rows into one `[N, w·E]` matrix (a window is a
//! contiguous slice of the row, taps then channels) and computes all of them with one matrix
//! product `[N, w·E] × [w·E, M]`; its work follows the real tokens, not the padded length. It keeps
//! which window won each (row, map); backward sends each feature's gradient to that window alone,
//! which costs `B·M·w·E` multiply-adds, no product over all windows. A tie goes to the first
//! window (as `torch.max(dim)`; `amax` would split it), a feature that the ReLU zeroed gets none.
//!
//! candle 0.11's own `conv1d` is not used: its CPU backward gives wrong gradients for both the
//! input (the matrix product behind `conv_transpose1d` folds a transposed left operand's batches
//! as if they were row-major) and the kernel (`conv1d` with a non-contiguous kernel copies it and
//! then reads the original).

use std::sync::Mutex;

use candle_core::{Shape, Tensor};
use rnnlab_core::{length_mask, Error, Result};

use crate::activation::Real;
use crate::cpu_op::SliceOp3;
use crate::fused::{matmul, parallelism};

/// No window won: the ReLU zeroed the feature.
const NONE: u32 = u32::MAX;

/// The number of windows of a row of length `len` for a filter of width `width`.
fn windows(len: usize, width: usize) -> usize {
    (len + 1).saturating_sub(width).max(1)
}

/// The op (see the module docs): inputs `x` `[B, T, E]`, `weight` `[M, E, w]`, `bias` `[M]`;
/// output `[B, M]`.
struct ConvMaxPool {
    lengths: Vec<usize>,
    /// B, T, E, M, w.
    dims: (usize, usize, usize, usize, usize),
    threads: usize,
    /// Per (row, map): the start of the window that won, or [`NONE`]; written by forward.
    argmax: Mutex<Vec<u32>>,
}

/// `weight` `[M, E, w]` as rows `[M, w·E]` ordered tap, then channel (a window's order).
fn tap_major<T: Real>(weight: &[T], m: usize, e: usize, w: usize) -> Vec<T> {
    let mut out = vec![T::zero(); m * w * e];
    for j in 0..m {
        for c in 0..e {
            for k in 0..w {
                out[(j * w + k) * e + c] = weight[(j * e + c) * w + k];
            }
        }
    }
    out
}

/// `dst += g · src`.
fn axpy<T: Real>(dst: &mut [T], g: T, src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += g * *s;
    }
}

impl ConvMaxPool {
    fn forward<T: Real>(&self, x: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
        let (b, t, e, m, w) = self.dims;
        let we = w * e;
        let counts: Vec<usize> = self.lengths.iter().map(|&l| windows(l, w)).collect();
        let n: usize = counts.iter().sum();
        // The valid windows of every row, one per matrix row; zeros past a row's end.
        let mut u = vec![T::zero(); n * we];
        let mut r = 0;
        for (row, (&l, &c)) in self.lengths.iter().zip(&counts).enumerate() {
            for p in 0..c {
                let taps = w.min(l - p);
                let start = (row * t + p) * e;
                u[r * we..r * we + taps * e].copy_from_slice(&x[start..start + taps * e]);
                r += 1;
            }
        }
        let wt = tap_major(weight, m, e, w);
        // z = u · wtᵀ  [N, M]
        let mut z = vec![T::zero(); n * m];
        matmul(
            (n, m, we),
            &mut z,
            (m, 1),
            false,
            &u,
            (we, 1),
            &wt,
            (1, we),
            parallelism(self.threads),
        );
        let mut out = vec![T::zero(); b * m];
        let mut argmax = vec![NONE; b * m];
        let mut first = 0;
        let mut won = vec![0u32; m];
        for (row, &c) in counts.iter().enumerate() {
            let best = &mut out[row * m..(row + 1) * m];
            best.copy_from_slice(&z[first * m..(first + 1) * m]);
            won.fill(0);
            for p in 1..c {
                let zp = &z[(first + p) * m..(first + p + 1) * m];
                for j in 0..m {
                    // A NaN wins and stays, so that divergence shows in the loss.
                    if zp[j] > best[j] || zp[j].is_nan() && !best[j].is_nan() {
                        best[j] = zp[j];
                        won[j] = p as u32;
                    }
                }
            }
            for j in 0..m {
                let v = best[j] + bias[j];
                if v > T::zero() || v.is_nan() {
                    best[j] = v;
                    argmax[row * m + j] = won[j];
                } else {
                    best[j] = T::zero();
                }
            }
            first += c;
        }
        *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = argmax;
        out
    }

    /// `dx` `[B, T, E]`, `dweight` `[M, E, w]`, `dbias` `[M]` from the output's gradient.
    fn backward<T: Real>(&self, grad: &[T], x: &[T], weight: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (b, t, e, m, w) = self.dims;
        let we = w * e;
        let argmax = self.argmax.lock().unwrap_or_else(|e| e.into_inner());
        let wt = tap_major(weight, m, e, w);
        let mut dx = vec![T::zero(); b * t * e];
        let mut dwt = vec![T::zero(); m * we];
        let mut db = vec![T::zero(); m];
        for (row, &l) in self.lengths.iter().enumerate() {
            for j in 0..m {
                let (p, g) = (argmax[row * m + j], grad[row * m + j]);
                if p == NONE || g == T::zero() {
                    continue;
                }
                let p = p as usize;
                let len = w.min(l - p) * e;
                let start = (row * t + p) * e;
                db[j] += g;
                axpy(&mut dwt[j * we..j * we + len], g, &x[start..start + len]);
                axpy(&mut dx[start..start + len], g, &wt[j * we..j * we + len]);
            }
        }
        let mut dw = vec![T::zero(); m * we];
        for j in 0..m {
            for c in 0..e {
                for k in 0..w {
                    dw[(j * e + c) * w + k] = dwt[(j * w + k) * e + c];
                }
            }
        }
        (dx, dw, db)
    }
}

impl SliceOp3 for ConvMaxPool {
    const NAME: &'static str = "conv-max-pool";

    fn forward_slices<T: Real>(
        &self,
        x: &[T],
        weight: &[T],
        bias: &[T],
    ) -> Result<(Vec<T>, Shape)> {
        let (b, t, e, m, w) = self.dims;
        if x.len() != b * t * e || weight.len() != m * e * w || bias.len() != m {
            return Err(Error::Mismatch(format!(
                "conv-max-pool: x {}, weight {}, bias {} values for B={b}, T={t}, E={e}, M={m}, w={w}",
                x.len(),
                weight.len(),
                bias.len()
            )));
        }
        Ok((self.forward(x, weight, bias), Shape::from((b, m))))
    }

    fn backward_slices<T: Real>(
        &self,
        grad: &[T],
        x: &[T],
        weight: &[T],
    ) -> Result<[(Vec<T>, Shape); 3]> {
        let (b, t, e, m, w) = self.dims;
        let (dx, dw, db) = self.backward(grad, x, weight);
        Ok([
            (dx, Shape::from((b, t, e))),
            (dw, Shape::from((m, e, w))),
            (db, Shape::from(m)),
        ])
    }
}

crate::cpu_op::custom_op3!(ConvMaxPool);

/// Checks the shapes and returns (B, T, E, M, w).
fn dims(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    lengths: &[usize],
) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, t, e) = x.dims3()?;
    let (m, e2, w) = weight.dims3()?;
    if e2 != e || bias.dims() != [m] || lengths.len() != b || w == 0 {
        return Err(Error::Mismatch(format!(
            "conv-max-pool: x [{b}, {t}, {e}], weight {:?}, bias {:?} with {} lengths",
            weight.dims(),
            bias.dims(),
            lengths.len()
        )));
    }
    if let Some(l) = lengths.iter().find(|&&l| l == 0 || l > t) {
        return Err(Error::Mismatch(format!(
            "conv-max-pool: sequence length {l} outside 1..={t}"
        )));
    }
    Ok((b, t, e, m, w))
}

/// The pooled features `[B, M]` of `x` `[B, T, E]` for one filter bank `weight` `[M, E, w]`,
/// `bias` `[M]` (see the module docs), as one custom op. `x` must be on the CPU in f32 or f64
/// ([`crate::fused::supported`]).
pub(crate) fn conv_max_pool(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    lengths: &[usize],
) -> Result<Tensor> {
    let dims = dims(x, weight, bias, lengths)?;
    if dims.0 == 0 {
        return Ok(Tensor::zeros((0, dims.3), x.dtype(), x.device())?);
    }
    let op = ConvMaxPool {
        lengths: lengths.to_vec(),
        dims,
        threads: rayon::current_num_threads(),
        argmax: Mutex::new(Vec::new()),
    };
    Ok(x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

/// The same function as [`conv_max_pool`] with candle ops on any device: the windows are `w`
/// shifted views of the masked, zero-extended input, concatenated and multiplied by the taps as
/// one matrix product. Ties share the gradient (candle's `max`).
pub(crate) fn reference_conv_max_pool(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    lengths: &[usize],
) -> Result<Tensor> {
    let (b, t, e, m, w) = dims(x, weight, bias, lengths)?;
    let (dtype, device) = (x.dtype(), x.device());
    let mask = length_mask(lengths, t, dtype, device)?.unsqueeze(2)?;
    let mut x = x.broadcast_mul(&mask)?;
    if t < w {
        x = Tensor::cat(&[&x, &Tensor::zeros((b, w - t, e), dtype, device)?], 1)?;
    }
    let positions = t.max(w) - w + 1;
    let shifted: Vec<Tensor> = (0..w)
        .map(|k| x.narrow(1, k, positions))
        .collect::<candle_core::Result<_>>()?;
    // [B·P, w·E], taps then channels; the weight in the same order [M, w·E].
    let u = Tensor::cat(&shifted, 2)?.reshape((b * positions, w * e))?;
    let wt = weight.transpose(1, 2)?.reshape((m, w * e))?;
    let y = u
        .matmul(&wt.t()?)?
        .reshape((b, positions, m))?
        .broadcast_add(bias)?
        .relu()?;
    let valid: Vec<usize> = lengths.iter().map(|&l| windows(l, w)).collect();
    let keep = length_mask(&valid, positions, dtype, device)?.unsqueeze(2)?;
    Ok(y.broadcast_mul(&keep)?.max(1)?)
}
