//! The plumbing shared by the crate's CPU custom ops: an op written over slices in f32 or f64
//! ([`SliceOp3`]) becomes candle's `CustomOp3` with [`custom_op3!`].

use candle_core::{CpuStorage, DType, Device, Layout, Shape, Storage, Tensor, WithDType};
use rnnlab_core::{Error, Result};

use crate::activation::Real;

/// A three-input op on contiguous CPU values. Backward gets the output's gradient and the first
/// two inputs (the crate's ops recompute nothing from the third, a bias).
pub(crate) trait SliceOp3 {
    /// The op's name in error messages.
    const NAME: &'static str;

    /// The output's values and shape.
    fn forward_slices<T: Real>(&self, a: &[T], b: &[T], c: &[T]) -> Result<(Vec<T>, Shape)>;

    /// The gradients of the three inputs, values and shape each.
    fn backward_slices<T: Real>(
        &self,
        grad: &[T],
        a: &[T],
        b: &[T],
    ) -> Result<[(Vec<T>, Shape); 3]>;
}

/// The values of a contiguous CPU tensor `what` as a slice.
fn slice_of<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => Err(Error::Mismatch(format!(
            "custom op input {what} is not contiguous"
        ))),
    }
}

/// An rnnlab error as candle's (custom ops return candle's).
fn to_candle(e: Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// `CustomOp3::cpu_fwd` of `op`.
pub(crate) fn cpu_fwd3<O: SliceOp3>(
    op: &O,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> candle_core::Result<(CpuStorage, Shape)> {
    fn run<T: Real, O: SliceOp3>(
        op: &O,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let (v, shape) = op.forward_slices(
            slice_of::<T>(s1, l1, "1")?,
            slice_of::<T>(s2, l2, "2")?,
            slice_of::<T>(s3, l3, "3")?,
        )?;
        Ok((T::to_cpu_storage_owned(v), shape))
    }
    let args = ((s1, l1), (s2, l2), (s3, l3));
    match s1 {
        CpuStorage::F32(_) => run::<f32, O>(op, args.0, args.1, args.2),
        CpuStorage::F64(_) => run::<f64, O>(op, args.0, args.1, args.2),
        _ => Err(Error::Mismatch(format!("{}: f32 or f64 only", O::NAME))),
    }
    .map_err(to_candle)
}

/// `CustomOp3::bwd` of `op`: every input gets a gradient.
pub(crate) fn cpu_bwd3<O: SliceOp3>(
    op: &O,
    a: &Tensor,
    b: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dev = a.device();
    let (grad, a, b) = (grad.contiguous()?, a.contiguous()?, b.contiguous()?);
    let (gs, gl) = grad.storage_and_layout();
    let (as_, al) = a.storage_and_layout();
    let (bs, bl) = b.storage_and_layout();
    let (Storage::Cpu(gs), Storage::Cpu(as_), Storage::Cpu(bs)) = (&*gs, &*as_, &*bs) else {
        return Err(candle_core::Error::Msg(format!(
            "{}: backward on a CPU op with tensors elsewhere",
            O::NAME
        )));
    };
    fn run<T: Real, O: SliceOp3>(
        op: &O,
        (gs, gl): (&CpuStorage, &Layout),
        (as_, al): (&CpuStorage, &Layout),
        (bs, bl): (&CpuStorage, &Layout),
    ) -> Result<[(Vec<T>, Shape); 3]> {
        op.backward_slices(
            slice_of::<T>(gs, gl, "grad")?,
            slice_of::<T>(as_, al, "1")?,
            slice_of::<T>(bs, bl, "2")?,
        )
    }
    type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);
    fn tensors<T: WithDType>(
        grads: [(Vec<T>, Shape); 3],
        dev: &Device,
    ) -> candle_core::Result<Grads> {
        let [a, b, c] = grads.map(|(v, s)| Tensor::from_vec(v, s, dev));
        Ok((Some(a?), Some(b?), Some(c?)))
    }
    let args = ((gs, gl), (as_, al), (bs, bl));
    match b.dtype() {
        DType::F32 => tensors(
            run::<f32, O>(op, args.0, args.1, args.2).map_err(to_candle)?,
            dev,
        ),
        DType::F64 => tensors(
            run::<f64, O>(op, args.0, args.1, args.2).map_err(to_candle)?,
            dev,
        ),
        other => Err(candle_core::Error::Msg(format!(
            "{}: dtype {other:?} (f32 or f64 only)",
            O::NAME
        ))),
    }
}

/// Implements candle's `CustomOp3` for a [`SliceOp3`] type: CPU forward and backward over its
/// slices.
macro_rules! custom_op3 {
    ($op:ty) => {
        impl candle_core::CustomOp3 for $op {
            fn name(&self) -> &'static str {
                <$op as $crate::cpu_op::SliceOp3>::NAME
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::cpu_op::cpu_fwd3(self, (s1, l1), (s2, l2), (s3, l3))
            }

            fn bwd(
                &self,
                a: &candle_core::Tensor,
                b: &candle_core::Tensor,
                _c: &candle_core::Tensor,
                _res: &candle_core::Tensor,
                grad: &candle_core::Tensor,
            ) -> candle_core::Result<(
                Option<candle_core::Tensor>,
                Option<candle_core::Tensor>,
                Option<candle_core::Tensor>,
            )> {
                $crate::cpu_op::cpu_bwd3(self, a, b, grad)
            }
        }
    };
}
pub(crate) use custom_op3;
