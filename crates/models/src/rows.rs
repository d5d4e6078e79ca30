//! The element-wise work of the fused kernels for one row at one step, on slices cut to their
//! exact lengths so that the loops compile to vector instructions (f32 also for AVX2 and AVX-512,
//! chosen at run time, like the activations).

use num_traits::Float;

/// One row's LSTM state update after the gate activations: `c = f ⊙ c_prev + i ⊙ g`,
/// `h = o ⊙ tanh(c)`.
pub(crate) struct LstmForward<'a, T> {
    /// `[4H]` the activated gates i, f, g, o.
    pub gates: &'a [T],
    /// `[H]` the cell state carried in; `c` is written back.
    pub c: &'a mut [T],
    /// `[H]` `c` kept for backward.
    pub c_saved: &'a mut [T],
    /// `[H]` `tanh(c)`, kept for backward (holds `c` on entry to the activation).
    pub tanh_c: &'a mut [T],
    /// `[H]` the hidden state carried on.
    pub h: &'a mut [T],
    /// `[H]` the op's `h` output at this step.
    pub out_h: &'a mut [T],
    /// `[H]` the op's `c` output at this step.
    pub out_c: &'a mut [T],
}

/// One row's GRU step after the recurrent product: `r, z = σ(x_rz + b_ih + rec_rz + b_hh)`,
/// `n = tanh(x_n + b_in + r ⊙ (rec_n + b_hn))`, `h = (1 − z) ⊙ n + z ⊙ h_prev`.
pub(crate) struct GruForward<'a, T> {
    /// `[3H]` this step's input product.
    pub x: &'a [T],
    /// `[3H]` the input bias.
    pub b_ih: &'a [T],
    /// `[3H]` the recurrent bias.
    pub b_hh: &'a [T],
    /// `[3H]` the recurrent product `hm W_hhᵀ` (overwritten).
    pub rec: &'a mut [T],
    /// `[5H]` r, z, n, `rec_n + b_hn`, h kept for backward.
    pub saved: &'a mut [T],
    /// `[H]` the hidden state carried in (unmasked) and on.
    pub h: &'a mut [T],
    /// `[H]` the op's output at this step.
    pub out: &'a mut [T],
}

/// One row's LSTM BPTT at one step.
pub(crate) struct LstmBackward<'a, T> {
    /// `[6H]` saved i, f, g, o, c, tanh(c).
    pub saved: &'a [T],
    /// `[H]` the cell state that entered the step (zeros at the first step).
    pub c_prev: &'a [T],
    /// `[H]` the gradient of the `h` output at this step.
    pub grad_h: &'a [T],
    /// `[H]` the gradient of the `c` output at this step.
    pub grad_c: &'a [T],
    /// `[H]` the gradient reaching `h` from later steps; zeroed.
    pub dh: &'a mut [T],
    /// `[H]` the gradient reaching `c` from later steps; becomes the one for `c_prev`.
    pub dc: &'a mut [T],
    /// `[4H]` the pre-activation gate gradients.
    pub d: &'a mut [T],
}

/// One row's GRU BPTT at one step.
pub(crate) struct GruBackward<'a, T> {
    /// `[5H]` saved r, z, n, `h W_hnᵀ + b_hn`, h.
    pub saved: &'a [T],
    /// `[H]` the hidden state that entered the step (zeros at the first step).
    pub h_prev: &'a [T],
    /// `[H]` the output's gradient at this step.
    pub grad_out: &'a [T],
    /// `[H]` the gradient reaching `h` from later steps; becomes the one for `h_prev` (direct
    /// path only).
    pub dh: &'a mut [T],
    /// `[3H]` the gradient of the input product (r, z, n).
    pub dx: &'a mut [T],
    /// `[3H]` the gradient of the recurrent product (r, z, `r ⊙` n).
    pub d: &'a mut [T],
}

/// The row kernels for an element type; f32 runs versions compiled for wider vectors.
pub(crate) trait RowKernels: Float {
    /// See [`LstmForward`]; applies `tanh` to `tanh_c` with `tanh`.
    fn lstm_forward(a: LstmForward<'_, Self>, tanh: fn(&mut [Self])) {
        lstm_forward_body(a, tanh)
    }
    /// See [`GruForward`]; `sigmoid` and `tanh` are applied to whole slices.
    fn gru_forward(a: GruForward<'_, Self>, sigmoid: fn(&mut [Self]), tanh: fn(&mut [Self])) {
        gru_forward_body(a, sigmoid, tanh)
    }
    /// See [`LstmBackward`].
    fn lstm_backward(a: LstmBackward<'_, Self>) {
        lstm_backward_body(a)
    }
    /// See [`GruBackward`].
    fn gru_backward(a: GruBackward<'_, Self>) {
        gru_backward_body(a)
    }
}

impl RowKernels for f64 {}

impl RowKernels for f32 {
    fn lstm_forward(a: LstmForward<'_, f32>, tanh: fn(&mut [f32])) {
        lstm_forward_f32(a, tanh)
    }
    fn gru_forward(a: GruForward<'_, f32>, sigmoid: fn(&mut [f32]), tanh: fn(&mut [f32])) {
        gru_forward_f32(a, sigmoid, tanh)
    }
    fn lstm_backward(a: LstmBackward<'_, f32>) {
        lstm_backward_f32(a)
    }
    fn gru_backward(a: GruBackward<'_, f32>) {
        gru_backward_f32(a)
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn lstm_forward_f32<'a>(a: LstmForward<'a, f32>, tanh: fn(&mut [f32])) {
    lstm_forward_body(a, tanh)
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn gru_forward_f32<'a>(a: GruForward<'a, f32>, sigmoid: fn(&mut [f32]), tanh: fn(&mut [f32])) {
    gru_forward_body(a, sigmoid, tanh)
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn lstm_backward_f32<'a>(a: LstmBackward<'a, f32>) {
    lstm_backward_body(a)
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn gru_backward_f32<'a>(a: GruBackward<'a, f32>) {
    gru_backward_body(a)
}

#[inline(always)]
fn lstm_forward_body<T: Float>(a: LstmForward<'_, T>, tanh: fn(&mut [T])) {
    let h = a.c.len();
    let (i, rest) = a.gates[..4 * h].split_at(h);
    let (f, rest) = rest.split_at(h);
    let (g, o) = rest.split_at(h);
    let (c_saved, tanh_c, hs) = (&mut a.c_saved[..h], &mut a.tanh_c[..h], &mut a.h[..h]);
    let (out_h, out_c) = (&mut a.out_h[..h], &mut a.out_c[..h]);
    for j in 0..h {
        let c = f[j] * a.c[j] + i[j] * g[j];
        a.c[j] = c;
        c_saved[j] = c;
        tanh_c[j] = c;
        out_c[j] = c;
    }
    tanh(tanh_c);
    for j in 0..h {
        let v = o[j] * tanh_c[j];
        hs[j] = v;
        out_h[j] = v;
    }
}

#[inline(always)]
fn gru_forward_body<T: Float>(a: GruForward<'_, T>, sigmoid: fn(&mut [T]), tanh: fn(&mut [T])) {
    let h = a.h.len();
    let (x, b_ih, b_hh) = (&a.x[..3 * h], &a.b_ih[..3 * h], &a.b_hh[..3 * h]);
    let rec = &mut a.rec[..3 * h];
    // r, z from the sums of both products and both biases.
    for j in 0..2 * h {
        rec[j] = rec[j] + b_hh[j] + x[j] + b_ih[j];
    }
    let (rz, hn) = rec.split_at_mut(2 * h);
    sigmoid(rz);
    let (vr, rest) = a.saved[..5 * h].split_at_mut(h);
    let (vz, rest) = rest.split_at_mut(h);
    let (vn, rest) = rest.split_at_mut(h);
    let (vhn, vh) = rest.split_at_mut(h);
    let (r, z) = rz.split_at(h);
    let (xn, bn_i, bn_h) = (&x[2 * h..], &b_ih[2 * h..], &b_hh[2 * h..]);
    for j in 0..h {
        let hn_j = hn[j] + bn_h[j];
        vr[j] = r[j];
        vz[j] = z[j];
        vhn[j] = hn_j;
        vn[j] = xn[j] + bn_i[j] + r[j] * hn_j;
    }
    tanh(vn);
    let out = &mut a.out[..h];
    for j in 0..h {
        // (1 − z) ⊙ n + z ⊙ h_prev, with the carried (unmasked) h_prev.
        let v = vn[j] + vz[j] * (a.h[j] - vn[j]);
        a.h[j] = v;
        vh[j] = v;
        out[j] = v;
    }
}

#[inline(always)]
fn lstm_backward_body<T: Float>(a: LstmBackward<'_, T>) {
    let h = a.dh.len();
    let one = T::one();
    let (gi, rest) = a.saved[..6 * h].split_at(h);
    let (gf, rest) = rest.split_at(h);
    let (gg, rest) = rest.split_at(h);
    let (go, rest) = rest.split_at(h);
    let tc = &rest[h..2 * h];
    let c_prev = &a.c_prev[..h];
    let (gh, gc) = (&a.grad_h[..h], &a.grad_c[..h]);
    let dc = &mut a.dc[..h];
    let (di, rest) = a.d[..4 * h].split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dg, d_o) = rest.split_at_mut(h);
    for j in 0..h {
        let dhv = a.dh[j] + gh[j];
        let dcv = dc[j] + gc[j] + dhv * go[j] * (one - tc[j] * tc[j]);
        let (i, f, g, o) = (gi[j], gf[j], gg[j], go[j]);
        di[j] = dcv * g * i * (one - i);
        df[j] = dcv * c_prev[j] * f * (one - f);
        dg[j] = dcv * i * (one - g * g);
        d_o[j] = dhv * tc[j] * o * (one - o);
        dc[j] = dcv * f;
        a.dh[j] = T::zero();
    }
}

#[inline(always)]
fn gru_backward_body<T: Float>(a: GruBackward<'_, T>) {
    let h = a.dh.len();
    let one = T::one();
    let (vr, rest) = a.saved[..5 * h].split_at(h);
    let (vz, rest) = rest.split_at(h);
    let (vn, rest) = rest.split_at(h);
    let vhn = &rest[..h];
    let (h_prev, go) = (&a.h_prev[..h], &a.grad_out[..h]);
    let (xr, rest) = a.dx[..3 * h].split_at_mut(h);
    let (xz, xn) = rest.split_at_mut(h);
    let (dr, rest) = a.d[..3 * h].split_at_mut(h);
    let (dz, dn) = rest.split_at_mut(h);
    for j in 0..h {
        let dhv = a.dh[j] + go[j];
        let (r, z, n) = (vr[j], vz[j], vn[j]);
        let dan = dhv * (one - z) * (one - n * n);
        let dar = dan * vhn[j] * r * (one - r);
        let daz = dhv * (h_prev[j] - n) * z * (one - z);
        xr[j] = dar;
        xz[j] = daz;
        xn[j] = dan;
        dr[j] = dar;
        dz[j] = daz;
        dn[j] = dan * r;
        // The direct path h_prev → h' (through z ⊙ h_prev).
        a.dh[j] = dhv * z;
    }
}
