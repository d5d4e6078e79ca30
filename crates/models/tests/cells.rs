//! The cells against finite differences, and the fused sequence pass against the step-by-step
//! reference, in values and gradients.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, make_cell, rand, rand_var, values};
use rnnlab_core::{dropout_mask, reference_forward_seq, seeded, Cell, Params, SeqOutput};

const KINDS: [&str; 4] = ["rnn_tanh", "rnn_relu", "lstm", "gru"];

/// The random weights a scalar loss reads the outputs and the final state with.
struct Probe {
    out: Tensor,
    h: Tensor,
    c: Tensor,
}

impl Probe {
    fn new(seed: u64, b: usize, t: usize, h: usize, dtype: DType) -> Self {
        let mut rng = seeded(seed);
        Probe {
            out: rand(&mut rng, &[b, t, h], dtype),
            h: rand(&mut rng, &[b, h], dtype),
            c: rand(&mut rng, &[b, h], dtype),
        }
    }

    fn loss(&self, o: &SeqOutput) -> Tensor {
        let mut l = (o.outputs.mul(&self.out).unwrap().sum_all().unwrap()
            + o.last.h.mul(&self.h).unwrap().sum_all().unwrap())
        .unwrap();
        if let Some(c) = &o.last.c {
            l = (l + c.mul(&self.c).unwrap().sum_all().unwrap()).unwrap();
        }
        l
    }
}

fn run(
    cell: &dyn Cell,
    fused: bool,
    x: &Tensor,
    lengths: &[usize],
    reverse: bool,
    mask: Option<&Tensor>,
) -> SeqOutput {
    if fused {
        cell.forward_seq(x, lengths, reverse, mask).unwrap()
    } else {
        reference_forward_seq(cell, x, lengths, reverse, mask).unwrap()
    }
}

/// Every parameter and the input, as variables.
fn variables(params: &Params, x: &Var) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = params
        .iter()
        .map(|p| (p.name.clone(), p.var.clone()))
        .collect();
    v.push(("x".into(), x.clone()));
    v
}

/// Central differences of the loss against backward, for every entry of every variable.
fn check_gradients(kind: &str, fused: bool, reverse: bool, with_mask: bool) {
    let (b, t, e, h) = (3, 4, 3, 2);
    let lengths = [4, 2, 1];
    let mut rng = seeded(7);
    let mut params = Params::new();
    let cell = make_cell(kind, e, h, &mut params, &mut rng, DType::F64);
    let x = rand_var(&mut rng, &[b, t, e], DType::F64);
    let mask =
        with_mask.then(|| dropout_mask(&mut rng, &[b, h], 0.4, DType::F64, &Device::Cpu).unwrap());
    let probe = Probe::new(11, b, t, h, DType::F64);
    let loss = |x: &Tensor| {
        probe.loss(&run(
            cell.as_ref(),
            fused,
            x,
            &lengths,
            reverse,
            mask.as_ref(),
        ))
    };
    let grads = loss(x.as_tensor()).backward().unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    for (name, var) in variables(&params, &x) {
        let analytic = match grads.get(var.as_tensor()) {
            Some(g) => values(g),
            None => vec![0.0; var.elem_count()],
        };
        let base = values(var.as_tensor());
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(x.as_tensor()).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            let a = analytic[i];
            assert!(
                (a - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{kind} fused={fused} reverse={reverse} mask={with_mask}: d loss / d {name}[{i}] = {a}, finite differences {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40);
}

#[test]
fn fused_gradients_match_finite_differences() {
    for kind in KINDS {
        check_gradients(kind, true, false, false);
        check_gradients(kind, true, true, false);
        check_gradients(kind, true, false, true);
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    for kind in KINDS {
        check_gradients(kind, false, false, true);
        check_gradients(kind, false, true, false);
    }
}

/// Fused against reference: outputs, final state and gradients of every variable.
fn compare(kind: &str, dtype: DType, lengths: &[usize], t: usize, reverse: bool, with_mask: bool) {
    let (e, h) = (5, 4);
    let b = lengths.len();
    let (rtol, atol) = if dtype == DType::F64 {
        (1e-9, 1e-12)
    } else {
        (1e-4, 1e-6)
    };
    let mut rng = seeded(3);
    let mut params = Params::new();
    let cell = make_cell(kind, e, h, &mut params, &mut rng, dtype);
    let x = rand_var(&mut rng, &[b, t, e], dtype);
    let mask =
        with_mask.then(|| dropout_mask(&mut rng, &[b, h], 0.5, dtype, &Device::Cpu).unwrap());
    let probe = Probe::new(5, b, t, h, dtype);
    let what =
        format!("{kind} {dtype:?} lengths={lengths:?} T={t} reverse={reverse} mask={with_mask}");
    let fused = run(
        cell.as_ref(),
        true,
        x.as_tensor(),
        lengths,
        reverse,
        mask.as_ref(),
    );
    let refr = run(
        cell.as_ref(),
        false,
        x.as_tensor(),
        lengths,
        reverse,
        mask.as_ref(),
    );
    assert_close(
        &fused.outputs,
        &refr.outputs,
        rtol,
        atol,
        &format!("{what}: outputs"),
    );
    assert_close(
        &fused.last.h,
        &refr.last.h,
        rtol,
        atol,
        &format!("{what}: h"),
    );
    assert_eq!(fused.last.c.is_some(), kind == "lstm");
    if let (Some(a), Some(b)) = (&fused.last.c, &refr.last.c) {
        assert_close(a, b, rtol, atol, &format!("{what}: c"));
    }
    let gf = probe.loss(&fused).backward().unwrap();
    let gr = probe.loss(&refr).backward().unwrap();
    for (name, var) in variables(&params, &x) {
        let (a, b) = (gf.get(var.as_tensor()), gr.get(var.as_tensor()));
        assert_eq!(a.is_some(), b.is_some(), "{what}: gradient of {name}");
        if let (Some(a), Some(b)) = (a, b) {
            assert_close(a, b, rtol, atol, &format!("{what}: d/d{name}"));
        }
    }
}

#[test]
fn fused_forward_equals_reference() {
    for kind in KINDS {
        for dtype in [DType::F64, DType::F32] {
            for reverse in [false, true] {
                compare(kind, dtype, &[6, 3, 1, 4], 6, reverse, false);
                compare(kind, dtype, &[6, 3, 1, 4], 6, reverse, true);
                compare(kind, dtype, &[1, 1], 1, reverse, false);
                compare(kind, dtype, &[1, 2], 3, reverse, true);
                compare(kind, dtype, &[5, 5, 5], 5, reverse, false);
            }
        }
    }
}

#[test]
fn outputs_are_zero_at_padding_and_reverse_starts_at_the_last_true_token() {
    let mut rng = seeded(1);
    let mut params = Params::new();
    let cell = make_cell("lstm", 3, 2, &mut params, &mut rng, DType::F64);
    let x = rand(&mut rng, &[2, 4, 3], DType::F64);
    for reverse in [false, true] {
        let out = cell.forward_seq(&x, &[4, 2], reverse, None).unwrap();
        let pad = values(&out.outputs.get(1).unwrap().narrow(0, 2, 2).unwrap());
        assert!(pad.iter().all(|&v| v == 0.0), "{pad:?}");
        // The second sequence alone, unpadded, gives the same outputs and final state.
        let alone = cell
            .forward_seq(
                &x.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap(),
                &[2],
                reverse,
                None,
            )
            .unwrap();
        let batched = out
            .outputs
            .narrow(0, 1, 1)
            .unwrap()
            .narrow(1, 0, 2)
            .unwrap();
        assert_close(&batched, &alone.outputs, 1e-12, 1e-12, "outputs");
        assert_close(
            &out.last.h.get(1).unwrap(),
            &alone.last.h.get(0).unwrap(),
            1e-12,
            1e-12,
            "h",
        );
    }
    // Reversed, the final state is the output at the first position.
    let out = cell.forward_seq(&x, &[4, 2], true, None).unwrap();
    assert_close(
        &out.last.h,
        &out.outputs.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(),
        0.0,
        0.0,
        "first",
    );
}

#[test]
fn recurrent_weights_name_the_gates() {
    let mut rng = seeded(1);
    for (kind, gates) in [
        ("rnn_tanh", vec!["h"]),
        ("lstm", vec!["i", "f", "g", "o"]),
        ("gru", vec!["r", "z", "n"]),
    ] {
        let mut params = Params::new();
        let cell = make_cell(kind, 3, 2, &mut params, &mut rng, DType::F32);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rnn.weight_ih_l0",
                "rnn.weight_hh_l0",
                "rnn.bias_ih_l0",
                "rnn.bias_hh_l0"
            ]
        );
        let g = gates.len();
        assert_eq!(
            params.get("rnn.weight_ih_l0").unwrap().var.dims(),
            [g * 2, 3]
        );
        assert_eq!(
            params.get("rnn.weight_hh_l0").unwrap().var.dims(),
            [g * 2, 2]
        );
        let w = cell.recurrent_weights();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].name, "rnn.weight_hh_l0");
        assert_eq!(w[0].gates, gates);
        // PyTorch's init: every entry within ±1/√H.
        for p in params.iter() {
            assert!(values(p.var.as_tensor())
                .iter()
                .all(|v| v.abs() <= 1.0 / 2f64.sqrt()));
        }
    }
}
