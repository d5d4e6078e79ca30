//! The fused sequence kernels against the step-by-step autograd reference, through the whole
//! encoder: random shapes (length 1, uneven lengths, several layers, both directions, recurrent
//! and layer dropout, batches big enough to be split across threads), values and every gradient,
//! to 1e-9 in f64 and rtol 1e-4 in f32.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, rand, rand_var, registry};
use rand::Rng as _;
use rnnlab_core::{seeded, ParamBuilder, Params};
use rnnlab_models::{encoder, Kernel};

/// One encoder pass and its gradients: the outputs, the final states, and d/d(every parameter
/// and the input), by name.
struct Pass {
    outputs: Tensor,
    last: Tensor,
    h_n: Vec<Tensor>,
    grads: BTreeMap<String, Tensor>,
}

#[allow(clippy::too_many_arguments)]
fn pass(
    kernel: &str,
    cell: &str,
    layers: usize,
    bidirectional: bool,
    hidden: usize,
    x: &Tensor,
    lengths: &[usize],
    dtype: DType,
) -> Pass {
    let r = registry();
    let table: toml::Table = toml::from_str(&format!(
        "type = \"{cell}\"\nhidden = {hidden}\nlayers = {layers}\nbidirectional = {bidirectional}\nrecurrent_dropout = 0.3\nkernel = \"{kernel}\""
    ))
    .unwrap();
    let mut params = Params::new();
    let mut init_rng = seeded(11);
    let mut pb = ParamBuilder::new(&mut params, &mut init_rng, dtype, Device::Cpu);
    let enc = encoder(&table, "model.cell", x.dim(2).unwrap(), 0.2, &r, &mut pb).unwrap();
    assert_eq!(
        enc.kernel(),
        if kernel == "fused" {
            Kernel::Fused
        } else {
            Kernel::Reference
        }
    );
    let xv = Var::from_tensor(x).unwrap();
    // Both kernels draw the same dropout masks from the same seed.
    let mut rng = seeded(23);
    let out = enc
        .forward(xv.as_tensor(), lengths, true, &mut rng)
        .unwrap();
    let mut probe_rng = seeded(5);
    let (b, t, d) = out.outputs.dims3().unwrap();
    let mut loss = out
        .outputs
        .mul(&rand(&mut probe_rng, &[b, t, d], dtype))
        .unwrap()
        .sum_all()
        .unwrap();
    let lp = rand(&mut probe_rng, out.last.dims(), dtype);
    loss = (loss + out.last.mul(&lp).unwrap().sum_all().unwrap()).unwrap();
    for hn in &out.h_n {
        let p = rand(&mut probe_rng, hn.dims(), dtype);
        loss = (loss + hn.mul(&p).unwrap().sum_all().unwrap()).unwrap();
    }
    let g = loss.backward().unwrap();
    let mut grads = BTreeMap::new();
    for p in params.iter() {
        if let Some(t) = g.get(p.var.as_tensor()) {
            grads.insert(p.name.clone(), t.clone());
        }
    }
    grads.insert("x".into(), g.get(xv.as_tensor()).unwrap().clone());
    Pass {
        outputs: out.outputs,
        last: out.last,
        h_n: out.h_n,
        grads,
    }
}

/// Compares the two kernels on random shapes drawn from `case`; `big` draws batches of 19 or 40.
fn check(cell: &str, dtype: DType, case: u64, big: bool) {
    let mut rng = seeded(1000 + case);
    let b = if big {
        [19, 40][rng.random_range(0..2)]
    } else {
        [1, 3, 19, 40][rng.random_range(0..4)]
    };
    let t = [1, 2, 7, 12][rng.random_range(0..4)];
    let layers = rng.random_range(1..=2);
    let bidirectional = rng.random_bool(0.5);
    let hidden = [4, 9, 33][rng.random_range(0..3)];
    let mut lengths: Vec<usize> = (0..b).map(|_| rng.random_range(1..=t)).collect();
    if case.is_multiple_of(3) {
        lengths[0] = t;
    }
    let x = rand_var(&mut rng, &[b, t, 6], dtype);
    let what = format!(
        "{cell} {dtype:?} B={b} T={t} layers={layers} bi={bidirectional} H={hidden} lengths={lengths:?}"
    );
    let run = |kernel| {
        pass(
            kernel,
            cell,
            layers,
            bidirectional,
            hidden,
            x.as_tensor(),
            &lengths,
            dtype,
        )
    };
    let (f, r) = (run("fused"), run("reference"));
    let (rtol, atol) = if dtype == DType::F64 {
        (1e-9, 1e-12)
    } else {
        (1e-4, 1e-5)
    };
    assert_close(
        &f.outputs,
        &r.outputs,
        rtol,
        atol,
        &format!("{what}: outputs"),
    );
    assert_close(&f.last, &r.last, rtol, atol, &format!("{what}: last"));
    for (a, b) in f.h_n.iter().zip(&r.h_n) {
        assert_close(a, b, rtol, atol, &format!("{what}: h_n"));
    }
    assert_eq!(
        f.grads.keys().collect::<Vec<_>>(),
        r.grads.keys().collect::<Vec<_>>(),
        "{what}: the same parameters get gradients"
    );
    for (name, a) in &f.grads {
        assert_close(a, &r.grads[name], rtol, atol, &format!("{what}: d/d{name}"));
    }
}

#[test]
fn fused_encoder_matches_reference_in_f64() {
    for cell in ["rnn", "lstm", "gru"] {
        for case in 0..8 {
            check(cell, DType::F64, case, false);
        }
    }
}

#[test]
fn fused_encoder_matches_reference_in_f32() {
    for cell in ["rnn", "lstm", "gru"] {
        for case in 0..8 {
            check(cell, DType::F32, case, false);
        }
    }
}

#[test]
fn fused_encoder_matches_reference_split_over_three_threads() {
    // Batches of 19 and 40 rows are dealt to up to three chunks run in parallel.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for cell in ["rnn", "lstm", "gru"] {
            for case in 8..14 {
                check(cell, DType::F64, case, true);
                check(cell, DType::F32, case, true);
            }
        }
    });
}

#[test]
fn kernel_key_is_checked() {
    let r = registry();
    let err = |kernel: &str| -> String {
        let text = format!("type = \"lstm\"\nkernel = {kernel}");
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut params = Params::new();
        let mut rng = seeded(1);
        let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
        encoder(&table, "model.cell", 4, 0.0, &r, &mut pb)
            .err()
            .expect("an unknown kernel is an error")
            .to_string()
    };
    let e = err("\"fusd\"");
    assert!(e.contains("model.cell.kernel"), "{e}");
    assert!(
        e.ends_with("`fusd` is not one of fused, reference, did you mean `fused`?"),
        "{e}"
    );
    let e = err("3");
    assert!(e.contains("model.cell.kernel"), "{e}");
    assert!(e.ends_with("expected a string, got 3"), "{e}");
}
