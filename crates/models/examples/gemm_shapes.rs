//! Times the matrix products of a fused LSTM step (batch 64, 32 steps, H = 128) with the `gemm`
//! crate and with `matrixmultiply`, one thread: the numbers behind the fused kernels' choice.
//! `cargo run --release -p rnnlab-models --example gemm_shapes`

use std::time::Instant;

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..5 {
        f();
    }
    let mut v: Vec<f64> = (0..31)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // (m, n, k, what); row-major A [m, k], B [k, n] (B given transposed where the kernel has it so)
    let shapes = [
        (32, 512, 128, "h·W_hhᵀ, half batch"),
        (64, 512, 128, "h·W_hhᵀ, full batch"),
        (32, 128, 512, "dG·W_hh, half batch"),
        (512, 128, 2048, "dW_hh = dGᵀ·hm"),
        (32, 128, 128, "RNN h·W_hhᵀ, half batch"),
        (32, 384, 128, "GRU h·W_hhᵀ, half batch"),
    ];
    for (m, n, k, what) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let tg = time(|| strided((m, n, k), &mut c, (n, 1), &a, (k, 1), &b, (n, 1)));
        let tm = time(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        println!(
            "{m:4}x{n:4}x{k:5} {what:26} gemm {:7.1} µs {:6.1} GFLOP/s | matrixmultiply {:7.1} µs {:6.1} GFLOP/s",
            tg * 1e6,
            flops / tg / 1e9,
            tm * 1e6,
            flops / tm / 1e9
        );
    }
    orientations();
}

/// `dst = lhs · rhs` through `gemm` with explicit strides (row stride, column stride) of each.
#[allow(clippy::too_many_arguments)]
fn strided(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (d_rs, d_cs): (usize, usize),
    lhs: &[f32],
    (l_rs, l_cs): (usize, usize),
    rhs: &[f32],
    (r_rs, r_cs): (usize, usize),
) {
    // SAFETY: every caller below sizes the buffers for these shapes and strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            d_cs as isize,
            d_rs as isize,
            false,
            lhs.as_ptr(),
            l_cs as isize,
            l_rs as isize,
            rhs.as_ptr(),
            r_cs as isize,
            r_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The per-step products of the fused LSTM (32 rows of a chunk, H = 128, G = 512) laid out as
/// the kernel stores them, computed as `rows × gates` (row-major view) and as
/// `gates × rows` (the column-major view `gemm` is written for, with `W_hh` transposed once).
fn orientations() {
    let (n, h, g) = (32usize, 128usize, 512usize);
    let hm: Vec<f32> = (0..n * h).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..g * h).map(|i| (i % 5) as f32 * 0.1).collect(); // W_hh [G, H]
    let wt: Vec<f32> = (0..h * g).map(|i| w[(i % g) * h + i / g]).collect(); // [H, G]
    let dg: Vec<f32> = (0..n * g).map(|i| (i % 3) as f32 * 0.1).collect();
    let mut rec = vec![0f32; n * g];
    let mut dhm = vec![0f32; n * h];
    let flops = 2.0 * (n * g * h) as f64;
    let report = |what: &str, t: f64| {
        println!(
            "{what:48} {:7.1} µs {:6.1} GFLOP/s",
            t * 1e6,
            flops / t / 1e9
        )
    };
    let t = time(|| strided((n, g, h), &mut rec, (g, 1), &hm, (h, 1), &w, (1, h)));
    report("rec = hm·W_hhᵀ  rows×gates (as now)", t);
    let t = time(|| strided((g, n, h), &mut rec, (1, g), &w, (h, 1), &hm, (1, h)));
    report("recᵀ = W_hh·hmᵀ gates×rows, W_hh as stored", t);
    let t = time(|| strided((g, n, h), &mut rec, (1, g), &wt, (1, g), &hm, (1, h)));
    report("recᵀ = W_hh·hmᵀ gates×rows, W_hhᵀ copy", t);
    let t = time(|| strided((n, h, g), &mut dhm, (h, 1), &dg, (g, 1), &w, (h, 1)));
    report("dhm = dG·W_hh  rows×H (as now)", t);
    let t = time(|| strided((h, n, g), &mut dhm, (1, h), &w, (1, h), &dg, (1, g)));
    report("dhmᵀ = W_hhᵀ·dGᵀ H×rows, W_hh as stored", t);
}
