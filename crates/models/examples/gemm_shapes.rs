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
        let tg = time(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        });
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
}
