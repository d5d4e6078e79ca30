//! Flat host buffers and one-pass loops over tensors' values: the optimizers' hot path.
//!
//! A candle expression such as `b1·m + (1-b1)·g` runs one op per term, and every op reads its
//! inputs and allocates a full-size result; over a 16,000×50 embedding table that is a dozen
//! passes over 3 MB per Adam step. The helpers here let a transform keep its state as plain
//! vectors and compute each parameter's update in one loop over the gradient's storage.

use candle_core::{DType, Shape, Storage, Tensor, WithDType};
use rnnlab_core::{Error, Result};

/// The float types the one-pass loops run in (the parameters' dtypes: f32 or f64).
pub(crate) trait Real: WithDType + Copy + PartialOrd {
    // (`WithDType::DTYPE` is the matching candle dtype.)
    /// Square root.
    fn sqrt(self) -> Self;
    /// The state vector of this type held by `b`, if `b` holds this type.
    fn slice_mut(b: &mut Buf) -> Option<&mut Vec<Self>>;
}

impl Real for f32 {
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn slice_mut(b: &mut Buf) -> Option<&mut Vec<Self>> {
        match b {
            Buf::F32(v) => Some(v),
            Buf::F64(_) => None,
        }
    }
}

impl Real for f64 {
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn slice_mut(b: &mut Buf) -> Option<&mut Vec<Self>> {
        match b {
            Buf::F64(v) => Some(v),
            Buf::F32(_) => None,
        }
    }
}

/// A flat vector of state values in a parameter's float type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Buf {
    /// f32 values.
    F32(Vec<f32>),
    /// f64 values.
    F64(Vec<f64>),
}

/// The error for a dtype the one-pass loops do not handle.
pub(crate) fn unsupported(what: &str, dtype: DType) -> Error {
    Error::Mismatch(format!(
        "{what}: {dtype:?} tensors are not supported (f32 and f64 are)"
    ))
}

impl Buf {
    /// `n` zeros of `dtype` (f32 or f64; `what` names the owner in the error).
    pub(crate) fn zeros(dtype: DType, n: usize, what: &str) -> Result<Buf> {
        match dtype {
            DType::F32 => Ok(Buf::F32(vec![0.0; n])),
            DType::F64 => Ok(Buf::F64(vec![0.0; n])),
            other => Err(unsupported(what, other)),
        }
    }

    /// The dtype held.
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Buf::F32(_) => DType::F32,
            Buf::F64(_) => DType::F64,
        }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
        }
    }

    /// A CPU tensor of `shape` holding a copy of the values.
    pub(crate) fn to_tensor(&self, shape: &Shape) -> Result<Tensor> {
        let d = candle_core::Device::Cpu;
        Ok(match self {
            Buf::F32(v) => Tensor::from_slice(v, shape, &d)?,
            Buf::F64(v) => Tensor::from_slice(v, shape, &d)?,
        })
    }

    /// Overwrites the values with `t`'s (converted to this buffer's dtype); `t` must hold
    /// exactly as many values, else the error names `key`.
    pub(crate) fn load(&mut self, t: &Tensor, key: &str) -> Result<()> {
        if t.elem_count() != self.len() {
            return Err(Error::Mismatch(format!(
                "state `{key}` has shape {:?} ({} values) but the parameter has {}",
                t.dims(),
                t.elem_count(),
                self.len()
            )));
        }
        let flat = t.flatten_all()?.to_dtype(self.dtype())?;
        match self {
            Buf::F32(v) => *v = flat.to_vec1()?,
            Buf::F64(v) => *v = flat.to_vec1()?,
        }
        Ok(())
    }
}

/// Runs `f` on the values of `t` (a CPU tensor of dtype `T`) in row-major order, without a
/// copy when `t` is contiguous.
pub(crate) fn with_slice<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Mismatch(
            "the optimizers' one-pass loops need CPU tensors".into(),
        ));
    };
    let all = cpu.as_slice::<T>()?;
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::Mismatch("a contiguous tensor without offsets".into()))?;
    Ok(f(&all[a..b]))
}

/// The largest |entry| of `x` as f64; NaN when any entry is NaN.
fn max_abs_of<T: Real>(x: &[T]) -> f64 {
    let mut m = 0f64;
    for v in x {
        let a = v.to_f64().abs();
        if a > m || a.is_nan() {
            m = a;
            if a.is_nan() {
                return a;
            }
        }
    }
    m
}

/// The largest absolute entry of `t` (f32 or f64), NaN when it holds one, in one pass.
pub(crate) fn max_abs(t: &Tensor) -> Result<f64> {
    match t.dtype() {
        DType::F32 => with_slice::<f32, _>(t, max_abs_of),
        DType::F64 => with_slice::<f64, _>(t, max_abs_of),
        other => Err(unsupported("gradient norm", other)),
    }
}

/// Whether every entry of `t` (f32 or f64) is finite, in one pass without a temporary.
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    fn check<T: Real>(x: &[T]) -> bool {
        // No early exit: a branch-free loop vectorises; a bad step is rare.
        x.iter().fold(true, |ok, v| ok & v.to_f64().is_finite())
    }
    match t.dtype() {
        DType::F32 => with_slice::<f32, _>(t, check),
        DType::F64 => with_slice::<f64, _>(t, check),
        other => Err(unsupported("skip_nonfinite", other)),
    }
}

/// `y + s·x` in `y`'s dtype (f32 or f64; `x` is converted to it), in one pass into a new
/// tensor shaped like `y`.
pub(crate) fn axpy(y: &Tensor, s: f64, x: &Tensor, what: &str) -> Result<Tensor> {
    fn run<T: Real>(y: &Tensor, s: f64, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(T::DTYPE)?;
        let s = T::from_f64(s);
        let out: Vec<T> = with_slice::<T, _>(y, |ys| {
            with_slice::<T, _>(&x, |xs| {
                ys.iter().zip(xs).map(|(&y, &x)| y + x * s).collect()
            })
        })??;
        Ok(Tensor::from_vec(out, y.shape(), y.device())?)
    }
    if y.dims() != x.dims() {
        return Err(Error::Mismatch(format!(
            "{what}: shapes {:?} and {:?} differ",
            y.dims(),
            x.dims()
        )));
    }
    match y.dtype() {
        DType::F32 => run::<f32>(y, s, x),
        DType::F64 => run::<f64>(y, s, x),
        other => Err(unsupported(what, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn norms_read_strided_and_offset_views() -> Result<()> {
        let d = Device::Cpu;
        // 0..20 as [4, 5]; the transpose is strided, the narrow starts at an offset.
        let t = Tensor::arange(0f32, 20.0, &d)?.reshape((4, 5))?;
        let all: f64 = (0..20).map(|i| (i * i) as f64).sum();
        assert_eq!(rnnlab_core::squared_norm(&t)?, all);
        assert_eq!(rnnlab_core::squared_norm(&t.t()?)?, all);
        let tail = t.narrow(0, 2, 2)?; // rows 2 and 3: 10..20
        assert_eq!(
            rnnlab_core::squared_norm(&tail)?,
            (10..20).map(|i| (i * i) as f64).sum::<f64>()
        );
        assert_eq!(max_abs(&(tail.neg()?))?, 19.0);
        let t64 = Tensor::new(&[3f64, -4.0, 1e-3], &d)?;
        assert_eq!(rnnlab_core::squared_norm(&t64)?, 25.0 + 1e-6);
        assert!(max_abs(&Tensor::new(&[1f32, f32::NAN, 5.0], &d)?)?.is_nan());
        assert!(max_abs(&Tensor::new(&[1u32, 2], &d)?).is_err());
        assert!(all_finite(&t.t()?)?);
        // f64 entries whose sum overflows are still finite
        assert!(all_finite(&Tensor::new(&[1e308f64, 1e308], &d)?)?);
        assert!(!all_finite(&Tensor::new(&[1f32, f32::NEG_INFINITY], &d)?)?);
        assert!(!all_finite(&Tensor::new(&[f64::NAN, 0.0], &d)?)?);
        Ok(())
    }

    #[test]
    fn buffers_round_trip_through_tensors() -> Result<()> {
        let mut b = Buf::zeros(DType::F32, 6, "test")?;
        let t = Tensor::new(&[[1f64, 2., 3.], [4., 5., 6.]], &candle_core::Device::Cpu)?;
        b.load(&t, "m.w")?;
        assert_eq!(b, Buf::F32(vec![1., 2., 3., 4., 5., 6.]));
        let back = b.to_tensor(&Shape::from((2, 3)))?;
        assert_eq!(back.to_vec2::<f32>()?, [[1., 2., 3.], [4., 5., 6.]]);
        let e = b.load(
            &Tensor::zeros(4, DType::F32, &candle_core::Device::Cpu)?,
            "m.w",
        );
        assert!(e.unwrap_err().to_string().contains("m.w"));
        assert!(Buf::zeros(DType::BF16, 2, "adam").is_err());
        // y + s·x, with x strided and in another dtype
        let d = candle_core::Device::Cpu;
        let y = Tensor::new(&[[1f32, 2.], [3., 4.]], &d)?;
        let x = Tensor::new(&[[10f64, 30.], [20., 40.]], &d)?.t()?;
        let r = axpy(&y, 0.5, &x, "test")?;
        assert_eq!(r.dtype(), DType::F32);
        assert_eq!(r.to_vec2::<f32>()?, [[6., 12.], [18., 24.]]);
        assert!(axpy(&y, 1.0, &Tensor::zeros(4, DType::F32, &d)?, "wd")
            .unwrap_err()
            .to_string()
            .contains("wd"));
        Ok(())
    }
}
