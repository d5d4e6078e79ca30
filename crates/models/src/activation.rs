//! The element types the fused kernels run in, with their activations over whole slices.

use candle_core::WithDType;

/// f32 or f64, with the activations the cells need, applied in place to a slice.
pub(crate) trait Real: WithDType + num_traits::Float + crate::rows::RowKernels {
    /// `x ← tanh(x)`.
    fn tanh_slice(x: &mut [Self]);
    /// `x ← 1 / (1 + e^{−x})`.
    fn sigmoid_slice(x: &mut [Self]);
}

impl Real for f64 {
    fn tanh_slice(x: &mut [f64]) {
        for v in x {
            *v = v.tanh();
        }
    }

    fn sigmoid_slice(x: &mut [f64]) {
        for v in x {
            *v = 1.0 / (1.0 + (-*v).exp());
        }
    }
}

impl Real for f32 {
    fn tanh_slice(x: &mut [f32]) {
        tanh_f32_slice(x)
    }

    fn sigmoid_slice(x: &mut [f32]) {
        sigmoid_f32_slice(x)
    }
}

/// `1.5·2²³`: adding it rounds an f32 of magnitude below 2²² to an integer, which then sits in the
/// low bits of the sum's mantissa.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x` for f32 in a form the compiler vectorises (no calls, no branches): `x = n·ln2 + r` with
/// `|r| ≤ ln2/2`, a degree-6 polynomial for `e^r` (Cephes `expf`'s coefficients, about 1 ulp) and
/// `2^n` built in the exponent bits. `x` is clamped to [−87, 88], where `2^n` is a normal f32.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let fx = shifted - ROUNDER;
    // ln 2 split in a part exact in f32 and the rest.
    let r = x - fx * 0.693_359_4 + fx * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits(((n + 127) as u32) << 23)
}

/// `tanh` for f32: Cephes `tanhf`'s odd polynomial below |x| = 0.625, `1 − 2/(e^{2|x|} + 1)`
/// with the sign of `x` above; both are computed and one is selected, so the loop vectorises.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_8e-2) * z - 5.373_971_6e-2) * z + 0.133_314_42) * z
            - 0.333_332_8)
            * z
            * x
            + x;
    let big = (1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        big
    }
}

/// `x ← tanh(x)`, compiled for AVX-512 and AVX2 as well and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn tanh_f32_slice(x: &mut [f32]) {
    for v in x {
        *v = tanh_f32(*v);
    }
}

/// `x ← 1 / (1 + e^{−x})`, compiled for AVX-512 and AVX2 as well and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn sigmoid_f32_slice(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + exp_f32(-*v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/64 over [−100, 100] and some extremes, against the standard library in f64.
    fn grid() -> Vec<f32> {
        let mut v: Vec<f32> = (-6400..=6400).map(|i| i as f32 / 64.0).collect();
        v.extend([
            1e-6, -1e-6, 1e-30, 0.624_999, 0.625, -0.625, 87.5, -87.5, 1e4, -1e4,
        ]);
        v
    }

    #[test]
    fn f32_tanh_is_within_two_ulp_of_the_exact_value() {
        let xs = grid();
        let mut ys = xs.clone();
        f32::tanh_slice(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).tanh();
            let err = (y as f64 - exact).abs();
            assert!(
                err <= 2.0 * f32::EPSILON as f64 * exact.abs().max(1e-30),
                "tanh({x}) = {y}, exact {exact}"
            );
        }
    }

    #[test]
    fn f32_sigmoid_is_within_a_few_ulp_of_the_exact_value() {
        let xs = grid();
        let mut ys = xs.clone();
        f32::sigmoid_slice(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = 1.0 / (1.0 + (-(x as f64)).exp());
            let err = (y as f64 - exact).abs();
            // Below e^-87 the clamped input gives about 1e-38 instead of a smaller number.
            assert!(
                err <= 4.0 * f32::EPSILON as f64 * exact + 1e-37,
                "sigmoid({x}) = {y}, exact {exact}"
            );
        }
    }
}
