//! Named parameters, their gradients, and a builder that initialises them from the run's generator.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;

use crate::{Error, Result, Rng};

/// One named parameter. Frozen parameters are stored (and checkpointed) but get no gradient.
#[derive(Clone, Debug)]
pub struct Param {
    /// PyTorch-style name, e.g. `rnn.weight_hh_l0`.
    pub name: String,
    /// The value.
    pub var: Var,
    /// Whether the optimizer updates it.
    pub trainable: bool,
}

/// An ordered collection of named parameters: the model's state, in registration order.
#[derive(Clone, Debug, Default)]
pub struct Params {
    items: Vec<Param>,
}

impl Params {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter; names must be unique.
    pub fn insert(&mut self, name: impl Into<String>, var: Var, trainable: bool) -> Result<()> {
        let name = name.into();
        if self.get(&name).is_some() {
            return Err(Error::Mismatch(format!("parameter `{name}` defined twice")));
        }
        self.items.push(Param {
            name,
            var,
            trainable,
        });
        Ok(())
    }

    /// All parameters in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.items.iter()
    }

    /// The trainable parameters in registration order.
    pub fn trainable(&self) -> impl Iterator<Item = &Param> {
        self.items.iter().filter(|p| p.trainable)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.items.iter().find(|p| p.name == name)
    }

    /// The value of the parameter called `name`, detached from autograd (so arithmetic on it
    /// builds no graph), or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.get(name)
            .map(|p| p.var.as_tensor().detach())
            .ok_or_else(|| Error::Mismatch(format!("no parameter `{name}`")))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Total number of scalar values in trainable parameters.
    pub fn trainable_count(&self) -> usize {
        self.trainable().map(|p| p.var.elem_count()).sum()
    }

    /// A name → tensor map of every parameter (for checkpoints).
    pub fn to_map(&self) -> BTreeMap<String, Tensor> {
        self.items
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }

    /// The names in `map` that are no parameter here (a checkpoint of another model).
    pub fn unknown_in<'m>(&self, map: &'m BTreeMap<String, Tensor>) -> Vec<&'m String> {
        map.keys().filter(|k| self.get(k).is_none()).collect()
    }

    /// Overwrites every parameter from `map`; names and shapes must match exactly.
    pub fn load_map(&self, map: &BTreeMap<String, Tensor>) -> Result<()> {
        for p in &self.items {
            let t = map
                .get(&p.name)
                .ok_or_else(|| Error::Mismatch(format!("checkpoint has no `{}`", p.name)))?;
            if t.dims() != p.var.dims() {
                return Err(Error::Mismatch(format!(
                    "`{}`: checkpoint shape {:?}, model shape {:?}",
                    p.name,
                    t.dims(),
                    p.var.dims()
                )));
            }
            p.var
                .set(&t.to_dtype(p.var.dtype())?.to_device(p.var.device())?)?;
        }
        let unknown = self.unknown_in(map);
        if !unknown.is_empty() {
            return Err(Error::Mismatch(format!(
                "checkpoint has tensors the model does not: {unknown:?}"
            )));
        }
        Ok(())
    }
}

/// Gradients (or, after an optimizer transform, updates) of the trainable parameters, by name,
/// in the parameters' order.
#[derive(Clone, Debug, Default)]
pub struct Grads {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    /// The squared norms, once computed, until a tensor is changed through `iter_mut`: the
    /// trainer's global norm and the grad_norm monitor read the same raw gradients.
    squared: std::sync::OnceLock<Vec<f64>>,
}

impl Grads {
    /// Takes the gradient of every trainable parameter out of a backward pass; a parameter that
    /// the loss does not reach gets zeros.
    pub fn from_backward(
        params: &Params,
        store: &mut candle_core::backprop::GradStore,
    ) -> Result<Self> {
        let mut g = Grads::default();
        for p in params.trainable() {
            // Detached: a gradient that keeps its op history would chain every step's graph
            // into the optimizer's state (moments, averages) and grow without bound.
            let t = match store.remove(p.var.as_tensor()) {
                Some(t) => t.detach(),
                None => p.var.as_tensor().zeros_like()?,
            };
            g.names.push(p.name.clone());
            g.tensors.push(t);
        }
        Ok(g)
    }

    /// Builds gradients from name/tensor pairs (tests, fixtures).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        let (names, tensors) = pairs.into_iter().unzip();
        Grads {
            names,
            tensors,
            squared: Default::default(),
        }
    }

    /// Name and tensor pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names
            .iter()
            .map(|s| s.as_str())
            .zip(self.tensors.iter())
    }

    /// Names with mutable tensors, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        self.squared = Default::default();
        self.names
            .iter()
            .map(|s| s.as_str())
            .zip(self.tensors.iter_mut())
    }

    /// The gradient of `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.tensors[i])
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The squared L2 norm of each entry, in order, as f64.
    pub fn squared_norms(&self) -> Result<Vec<f64>> {
        if let Some(v) = self.squared.get() {
            return Ok(v.clone());
        }
        let v: Vec<f64> = self
            .tensors
            .iter()
            .map(squared_norm)
            .collect::<Result<_>>()?;
        Ok(self.squared.get_or_init(|| v).clone())
    }

    /// The global L2 norm over all entries (as `torch.nn.utils.clip_grad_norm_` computes it).
    pub fn global_norm(&self) -> Result<f64> {
        Ok(self.squared_norms()?.iter().sum::<f64>().sqrt())
    }
}

/// The squared L2 norm of `t`, summed in f64: for a contiguous f32 or f64 CPU tensor in one pass
/// over its values, without a temporary; otherwise through tensor ops.
pub fn squared_norm(t: &Tensor) -> Result<f64> {
    fn sum_sq<T: candle_core::WithDType>(x: &[T]) -> f64 {
        // Eight running sums, so the loop vectorises.
        let mut acc = [0f64; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..8 {
                let v = c[k].to_f64();
                acc[k] += v * v;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>()
    }
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            match cpu {
                candle_core::CpuStorage::F32(v) => return Ok(sum_sq(&v[a..b])),
                candle_core::CpuStorage::F64(v) => return Ok(sum_sq(&v[a..b])),
                _ => {}
            }
        }
    }
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// Where a model's parameters come from, as candle-nn's `VarBuilder` backends: drawn from the
/// run's generator ([`ParamInit::new`]) or taken from a checkpoint's weights
/// ([`ParamInit::from_weights`]). A model constructor makes its own [`Params`] and a
/// [`ParamBuilder`] over it with [`ParamInit::builder`]: that store is the model's one
/// parameter store ([`crate::Model::params`]).
pub struct ParamInit<'a> {
    rng: &'a mut Rng,
    weights: Option<&'a BTreeMap<String, Tensor>>,
    dtype: DType,
    device: Device,
}

impl<'a> ParamInit<'a> {
    /// Fresh parameters, drawn from `rng`.
    pub fn new(rng: &'a mut Rng, dtype: DType, device: Device) -> Self {
        ParamInit {
            rng,
            weights: None,
            dtype,
            device,
        }
    }

    /// The parameters of `weights` (a checkpoint, by full name); `rng` still feeds plugins that
    /// draw (the drawn values are dropped); each weight must be there with the shape the model asks for.
    pub fn from_weights(
        rng: &'a mut Rng,
        weights: &'a BTreeMap<String, Tensor>,
        dtype: DType,
        device: Device,
    ) -> Self {
        ParamInit {
            weights: Some(weights),
            ..ParamInit::new(rng, dtype, device)
        }
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The parameters' device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A builder that adds to `params` (the model's store), from this source.
    pub fn builder<'b>(&'b mut self, params: &'b mut Params) -> ParamBuilder<'b> {
        ParamBuilder {
            weights: self.weights,
            ..ParamBuilder::new(params, self.rng, self.dtype, self.device.clone())
        }
    }
}

/// Creates parameters under a name prefix, as candle-nn's `VarBuilder`: either drawing every
/// initial value from the run's generator ([`ParamBuilder::new`], [`ParamInit::new`]), or taking
/// each from a checkpoint's weights by its full name ([`ParamInit::from_weights`]), so that one
/// constructor both builds a fresh model and loads a trained one.
pub struct ParamBuilder<'a> {
    params: &'a mut Params,
    rng: &'a mut Rng,
    prefix: String,
    dtype: DType,
    device: Device,
    weights: Option<&'a BTreeMap<String, Tensor>>,
}

impl<'a> ParamBuilder<'a> {
    /// A builder that adds to `params`, drawing from `rng`.
    pub fn new(params: &'a mut Params, rng: &'a mut Rng, dtype: DType, device: Device) -> Self {
        ParamBuilder {
            params,
            rng,
            prefix: String::new(),
            dtype,
            device,
            weights: None,
        }
    }

    /// The checkpoint's tensor for the parameter `name` (under the prefix), when this builder
    /// loads one: for a constructor whose shapes come from data it no longer has (the width of
    /// a pretrained embedding).
    pub fn stored(&self, name: &str) -> Option<&Tensor> {
        self.weights?.get(&self.full_name(name))
    }

    /// A builder whose names start with `prefix.` (nested prefixes join with dots).
    pub fn pp(&mut self, prefix: &str) -> ParamBuilder<'_> {
        let prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}.{prefix}", self.prefix)
        };
        ParamBuilder {
            params: self.params,
            rng: self.rng,
            prefix,
            dtype: self.dtype,
            device: self.device.clone(),
            weights: self.weights,
        }
    }

    /// The dtype parameters are created in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The run's generator (for plugins that draw more than initial values).
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// The full name a parameter called `name` gets from this builder (`prefix.name`).
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Adds `tensor` as a parameter called `name` (under the prefix) and returns its tensor;
    /// a loading builder adds the checkpoint's tensor of that name instead.
    pub fn add(&mut self, name: &str, tensor: Tensor, trainable: bool) -> Result<Tensor> {
        let tensor = match self.weights {
            None => tensor,
            Some(weights) => {
                let key = self.full_name(name);
                let stored = weights.get(&key).ok_or_else(|| {
                    Error::Mismatch(format!("the checkpoint has no parameter `{key}`"))
                })?;
                if stored.dims() != tensor.dims() {
                    return Err(Error::Mismatch(format!(
                        "`{key}`: the checkpoint's shape {:?} is not the model's {:?}",
                        stored.dims(),
                        tensor.dims()
                    )));
                }
                if tensor.is_variable() {
                    // A variable another store holds (a forked builder's): load into it, so
                    // both stores keep sharing it.
                    Var::from_tensor(&tensor)?.set(&stored.to_dtype(tensor.dtype())?)?;
                    tensor
                } else {
                    // A copy: the model must not share storage with the caller's tensors (a
                    // live model's variables, say).
                    stored.copy()?
                }
            }
        };
        let var = Var::from_tensor(&tensor.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        let t = var.as_tensor().clone();
        self.params.insert(self.full_name(name), var, trainable)?;
        Ok(t)
    }

    /// A trainable parameter drawn from U(-bound, bound), as PyTorch's default RNN and Linear init.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        let t = uniform_tensor(self.rng, shape, -bound, bound, self.dtype, &self.device)?;
        self.add(name, t, true)
    }

    /// A trainable parameter of zeros.
    pub fn zeros(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::zeros(shape, self.dtype, &self.device)?;
        self.add(name, t, true)
    }
}

/// A tensor drawn from U(lo, hi) with the given generator.
pub fn uniform_tensor(
    rng: &mut Rng,
    shape: &[usize],
    lo: f64,
    hi: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

/// A tensor drawn from N(mean, std²) with the given generator.
pub fn normal_tensor(
    rng: &mut Rng,
    shape: &[usize],
    mean: f64,
    std: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    use rand_distr::Distribution;
    let dist = rand_distr::Normal::new(mean, std)
        .map_err(|e| Error::invalid("normal init", e.to_string()))?;
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| dist.sample(rng)).collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

/// An inverted-dropout mask: each entry is 0 with probability `p`, else `1/(1-p)`.
pub fn dropout_mask(
    rng: &mut Rng,
    shape: &[usize],
    p: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let keep = 1.0 / (1.0 - p);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

/// Applies inverted dropout with the run's generator; the identity when `p == 0` or not training.
pub fn dropout(x: &Tensor, p: f64, train: bool, rng: &mut Rng) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = dropout_mask(rng, x.dims(), p, x.dtype(), x.device())?;
    Ok(x.mul(&mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached squared norms follow a change made through `iter_mut`.
    #[test]
    fn squared_norms_are_recomputed_after_a_change() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        let mut g = Grads::from_pairs([("a".to_string(), t(&[3.0, 4.0]))]);
        assert_eq!(g.squared_norms().unwrap(), [25.0]);
        assert_eq!(g.global_norm().unwrap(), 5.0);
        for (_, x) in g.iter_mut() {
            *x = (&*x * 2.0).unwrap();
        }
        assert_eq!(g.squared_norms().unwrap(), [100.0]);
        assert_eq!(g.global_norm().unwrap(), 10.0);
    }

    /// A small "model": `layer.w` drawn U(±1), `layer.b` zeros, under the builder's prefix.
    fn build(pb: &mut ParamBuilder) -> Result<(Tensor, Tensor)> {
        let mut pb = pb.pp("layer");
        Ok((pb.uniform("w", &[2, 3], 1.0)?, pb.zeros("b", &[2])?))
    }

    /// The same constructor builds fresh parameters or takes a checkpoint's, by full name and
    /// shape; what the checkpoint lacks or shapes otherwise is an error naming the parameter.
    #[test]
    fn a_loading_builder_takes_each_parameter_from_the_weights() -> Result<()> {
        let mut rng = crate::seeded(7);
        let mut trained = Params::new();
        build(&mut ParamBuilder::new(
            &mut trained,
            &mut rng,
            DType::F32,
            Device::Cpu,
        ))?;
        let weights = trained.to_map();

        let mut loaded = Params::new();
        let mut other = crate::seeded(99);
        let mut init = ParamInit::from_weights(&mut other, &weights, DType::F32, Device::Cpu);
        let mut pb = init.builder(&mut loaded);
        assert_eq!(
            pb.pp("layer").stored("w").map(|t| t.dims().to_vec()),
            Some(vec![2, 3])
        );
        let (w, b) = build(&mut pb)?;
        assert_eq!(w.to_vec2::<f32>()?, weights["layer.w"].to_vec2::<f32>()?);
        assert_eq!(b.to_vec1::<f32>()?, [0.0, 0.0]);
        // Loaded values are the model's own: writing them leaves the checkpoint's alone.
        loaded.get("layer.w").unwrap().var.set(&Tensor::zeros(
            (2, 3),
            DType::F32,
            &Device::Cpu,
        )?)?;
        assert_ne!(weights["layer.w"].to_vec2::<f32>()?, [[0.0f32; 3]; 2]);

        // What a checkpoint lacks, or shapes otherwise, is an error naming the parameter.
        let load_error = |w: &BTreeMap<String, Tensor>| -> String {
            let (mut p, mut rng) = (Params::new(), crate::seeded(1));
            let mut init = ParamInit::from_weights(&mut rng, w, DType::F32, Device::Cpu);
            let mut pb = init.builder(&mut p);
            build(&mut pb).unwrap_err().to_string()
        };
        let mut partial = weights.clone();
        partial.remove("layer.b");
        let err = load_error(&partial);
        assert!(err.contains("no parameter `layer.b`"), "{err}");
        let mut wide = weights.clone();
        let zeros = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
        wide.insert("layer.w".into(), zeros);
        let err = load_error(&wide);
        assert!(
            err.contains("`layer.w`: the checkpoint's shape [2, 4] is not the model's [2, 3]"),
            "{err}"
        );
        Ok(())
    }
}
