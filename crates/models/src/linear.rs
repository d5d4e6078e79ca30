//! Affine layer, as `torch.nn.Linear`: `y = x Wᵀ + b`.

use candle_core::Tensor;
use rnnlab_core::{Error, ParamBuilder, Result};

/// `weight` `[out, in]` and `bias` `[out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

/// A `weight` `[out, in]` and `bias` `[out]` under `pb`'s prefix, both U(-1/√in, 1/√in) as
/// PyTorch's default init.
pub fn linear(input: usize, output: usize, pb: &mut ParamBuilder) -> Result<Linear> {
    if input == 0 || output == 0 {
        return Err(Error::invalid(
            "linear",
            format!("input ({input}) and output ({output}) sizes must be positive"),
        ));
    }
    let bound = 1.0 / (input as f64).sqrt();
    let weight = pb.uniform("weight", &[output, input], bound)?;
    let bias = pb.uniform("bias", &[output], bound)?;
    Ok(Linear { weight, bias })
}

impl Linear {
    /// `x Wᵀ + b` for `x` `[N, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}
