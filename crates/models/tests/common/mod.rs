//! Helpers shared by the model tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use rnnlab_core::{
    seeded, uniform_tensor, Batch, Cell, Model, ModelContext, ParamBuilder, ParamInit, Params,
    Registry, Result, Rng,
};

/// A registry holding this crate's plugins.
pub fn registry() -> Registry {
    let mut r = Registry::empty();
    rnnlab_models::register(&mut r);
    r
}

/// Builds a model from a `[model]` TOML table exactly as the CLI does.
pub fn build_model(
    r: &Registry,
    toml_src: &str,
    vocab: usize,
    classes: usize,
    dtype: DType,
    seed: u64,
) -> Result<Box<dyn Model>> {
    let table: toml::Table = toml::from_str(toml_src).expect("valid TOML");
    let (ctor, p) = r.models.resolve(&table, "model", Some("recurrent"))?;
    let ctx = ModelContext {
        vocab_size: vocab,
        num_classes: classes,
        pretrained: None,
        freeze_embedding: false,
        pad_id: 0,
        registry: r,
    };
    let mut rng = seeded(seed);
    ctor(&p, &ctx, &mut ParamInit::new(&mut rng, dtype, Device::Cpu))
}

/// Builds one cell (`rnn_tanh`, `rnn_relu`, `lstm`, `gru`) with the free constructors.
pub fn make_cell(
    kind: &str,
    input: usize,
    hidden: usize,
    params: &mut Params,
    rng: &mut Rng,
    dtype: DType,
) -> Box<dyn Cell> {
    use rnnlab_models::{gru, lstm, rnn, Nonlinearity};
    let mut pb = ParamBuilder::new(params, rng, dtype, Device::Cpu);
    let mut pb = pb.pp("rnn");
    match kind {
        "rnn_tanh" => Box::new(rnn(input, hidden, Nonlinearity::Tanh, "l0", &mut pb).unwrap()),
        "rnn_relu" => Box::new(rnn(input, hidden, Nonlinearity::Relu, "l0", &mut pb).unwrap()),
        "lstm" => Box::new(lstm(input, hidden, "l0", &mut pb).unwrap()),
        "gru" => Box::new(gru(input, hidden, "l0", &mut pb).unwrap()),
        other => panic!("unknown cell {other}"),
    }
}

/// A `[dims]` tensor drawn from U(-1, 1).
pub fn rand(rng: &mut Rng, dims: &[usize], dtype: DType) -> Tensor {
    uniform_tensor(rng, dims, -1.0, 1.0, dtype, &Device::Cpu).unwrap()
}

/// A variable drawn from U(-1, 1).
pub fn rand_var(rng: &mut Rng, dims: &[usize], dtype: DType) -> Var {
    Var::from_tensor(&rand(rng, dims, dtype)).unwrap()
}

/// Flattened values as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Asserts `|a − b| ≤ atol + rtol·|b|` element-wise.
pub fn assert_close(a: &Tensor, b: &Tensor, rtol: f64, atol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (va, vb) = (values(a), values(b));
    for (i, (x, y)) in va.iter().zip(&vb).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs {y} (diff {:e})",
            (x - y).abs()
        );
    }
}

/// A padded batch of `seqs`; the padding holds `pad` (any id: models must ignore it).
pub fn batch(seqs: &[Vec<u32>], pad: u32) -> Batch {
    let t = seqs.iter().map(|s| s.len()).max().unwrap();
    let mut ids = Vec::new();
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(pad, t - s.len()));
    }
    Batch {
        ids: Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu).unwrap(),
        lengths: seqs.iter().map(|s| s.len()).collect(),
        labels: Tensor::from_vec(vec![0u32; seqs.len()], seqs.len(), &Device::Cpu).unwrap(),
    }
}
