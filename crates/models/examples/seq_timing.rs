//! Times one encoder forward + backward (batch 64, 32 steps, 50 → 128) per cell and kernel.
//! `cargo run --release -p rnnlab-models --example seq_timing`; env `CELLS=lstm,gru`,
//! `ONLY_FUSED=1`, `ITERS=12`, `LOSS=last` (the loss reads only the final hidden state).

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Var};
use rnnlab_core::{seeded, uniform_tensor, ParamBuilder, Params, Registry};

fn main() -> rnnlab_core::Result<()> {
    let mut r = Registry::empty();
    rnnlab_models::register(&mut r);
    let (b, t, e, h) = (64, 32, 50, 128);
    let only = std::env::var("CELLS").unwrap_or_else(|_| "rnn,lstm,gru".into());
    for cell in only.split(',') {
        let kernels: &[&str] = if std::env::var_os("ONLY_FUSED").is_some() {
            &["fused"]
        } else {
            &["fused", "reference"]
        };
        for &kernel in kernels {
            let table: toml::Table = toml::from_str(&format!(
                "type = \"{cell}\"\nhidden = {h}\nkernel = \"{kernel}\""
            ))
            .expect("toml");
            let mut params = Params::new();
            let mut rng = seeded(1);
            let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
            let enc = rnnlab_models::encoder(&table, "cell", e, 0.0, &r, &mut pb)?;
            let x = Var::from_tensor(&uniform_tensor(
                &mut rng,
                &[b, t, e],
                -1.0,
                1.0,
                DType::F32,
                &Device::Cpu,
            )?)?;
            let lengths = vec![t; b];
            let mut times = Vec::new();
            let iters: usize = std::env::var("ITERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(12);
            let last_only = std::env::var("LOSS").is_ok_and(|v| v == "last");
            for i in 0..iters {
                let start = Instant::now();
                let out = enc.forward(x.as_tensor(), &lengths, true, &mut rng)?;
                let fwd = start.elapsed().as_secs_f64();
                let loss = if last_only {
                    out.last.sum_all()?
                } else {
                    out.outputs.sum_all()?.add(&out.last.sum_all()?)?
                };
                let g = loss.backward()?;
                let total = start.elapsed().as_secs_f64();
                std::hint::black_box(g);
                if i >= 2 {
                    times.push((fwd, total));
                }
            }
            times.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (f, tot) = times[times.len() / 2];
            println!(
                "{cell:5} {kernel:10} fwd {:7.2} ms  fwd+bwd {:7.2} ms",
                f * 1e3,
                tot * 1e3
            );
        }
    }
    Ok(())
}
