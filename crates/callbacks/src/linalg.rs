//! Dense linear algebra in f64 for the spectral monitor, through nalgebra: the eigenvalues of a
//! general real matrix (real Schur form: Hessenberg reduction and Francis double-shift QR) and the
//! largest singular value (Householder bidiagonalisation and implicit-shift QR, values only).
//! Matrices are row-major slices, as tensors flatten. Called once per epoch per gate block, so the
//! full decompositions cost nothing that matters; the per-step `max_singular_value` constraint
//! keeps its own warm-started Lanczos iteration (rnnlab-optim), which is many times cheaper.

use nalgebra::{DMatrix, DVector, Schur, SVD};

/// QR sweeps allowed per row before a decomposition gives up (nalgebra's own default is to
/// iterate until convergence, which some exactly structured matrices never reach).
const SWEEPS_PER_ROW: usize = 30;

fn matrix(a: &[f64], rows: usize, cols: usize) -> DMatrix<f64> {
    assert_eq!(
        a.len(),
        rows * cols,
        "a {rows}x{cols} matrix needs {} values",
        rows * cols
    );
    DMatrix::from_row_slice(rows, cols, a)
}

/// `Q·m·Q` for a fixed Householder reflection `Q = I - 2vvᵀ/vᵀv` (`Q = Qᵀ = Q⁻¹`): a similarity,
/// so the same eigenvalues, without the exact structure (a permutation, say) on which the Schur
/// iteration can stall.
fn reflected(m: &DMatrix<f64>) -> DMatrix<f64> {
    let n = m.nrows();
    let v = DVector::from_fn(n, |i, _| {
        1.0 + ((i as f64 + 1.0) * 0.618_033_988_749_895).fract()
    });
    let q = DMatrix::identity(n, n) - &v * v.transpose() * (2.0 / v.norm_squared());
    &q * m * &q
}

/// The eigenvalues `(re, im)` of the row-major `n × n` matrix `a`, complex pairs as conjugates;
/// `None` when an entry is not finite or the QR iteration does not converge. nalgebra's Schur
/// iteration has no exceptional shifts and stalls on some exactly structured matrices (a cyclic
/// permutation of even size, nalgebra issue 611); there it is run again on a similar matrix.
pub fn eigenvalues(a: &[f64], n: usize) -> Option<Vec<(f64, f64)>> {
    let m = matrix(a, n, n);
    if a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if n == 0 {
        return Some(Vec::new());
    }
    let sweeps = SWEEPS_PER_ROW * n;
    let schur = Schur::try_new(m.clone(), f64::EPSILON, sweeps)
        .or_else(|| Schur::try_new(reflected(&m), f64::EPSILON, sweeps))?;
    Some(
        schur
            .complex_eigenvalues()
            .iter()
            .map(|c| (c.re, c.im))
            .collect(),
    )
}

/// The spectral radius (largest eigenvalue modulus) of the row-major `n × n` matrix `a`; NaN
/// when [`eigenvalues`] has none.
pub fn spectral_radius(a: &[f64], n: usize) -> f64 {
    match eigenvalues(a, n) {
        Some(ev) => ev.iter().map(|(re, im)| re.hypot(*im)).fold(0.0, f64::max),
        None => f64::NAN,
    }
}

/// The largest singular value of the row-major `rows × cols` matrix `a`; NaN when an entry is
/// not finite or the SVD does not converge.
pub fn sigma_max(a: &[f64], rows: usize, cols: usize) -> f64 {
    let m = matrix(a, rows, cols);
    if a.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let sweeps = SWEEPS_PER_ROW * rows.min(cols);
    match SVD::try_new_unordered(m, false, false, f64::EPSILON, sweeps) {
        Some(svd) => svd.singular_values.iter().copied().fold(0.0, f64::max),
        None => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `U·diag(s)·Vᵀ` (row-major) with orthogonal `U`, `V` from the QR factorisations of two
    /// fixed matrices picked by `seed`: a matrix whose singular values are `s`.
    fn with_singular_values(s: &[f64], seed: f64) -> Vec<f64> {
        let n = s.len();
        let q = |k: f64| {
            DMatrix::from_fn(n, n, |i, j| ((i * n + j) as f64 * k + seed).sin())
                .qr()
                .q()
        };
        let a = q(0.37) * DMatrix::from_diagonal(&DVector::from_row_slice(s)) * q(1.91).transpose();
        a.transpose().as_slice().to_vec()
    }

    /// `Q D Q` for the Householder reflection of [`reflected`]: same eigenvalues as `D`, row-major.
    fn conjugate(d: &[f64], n: usize) -> Vec<f64> {
        reflected(&matrix(d, n, n)).transpose().as_slice().to_vec()
    }

    fn sorted_moduli(a: &[f64], n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = eigenvalues(a, n)
            .unwrap()
            .iter()
            .map(|(a, b)| a.hypot(*b))
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    #[test]
    fn rotation_has_a_complex_pair_on_its_radius() {
        // 1.3 · rotation by 0.7 rad: eigenvalues 1.3·e^{±0.7i}; power iteration on A would not converge.
        let (c, s) = (0.7f64.cos() * 1.3, 0.7f64.sin() * 1.3);
        let m = [c, -s, s, c];
        let ev = eigenvalues(&m, 2).unwrap();
        for (re, im) in &ev {
            assert!(
                (re - c).abs() < 1e-12 && (im.abs() - s).abs() < 1e-12,
                "{ev:?}"
            );
        }
        assert!((spectral_radius(&m, 2) - 1.3).abs() < 1e-12);
        // A rotation is 1.3 times orthogonal: every singular value is 1.3.
        assert!((sigma_max(&m, 2, 2) - 1.3).abs() < 1e-9);
    }

    #[test]
    fn defective_and_conjugated_matrices() {
        // Jordan block of 0.9 (defective: one eigenvector) hidden by a similarity transform.
        let j = [0.9, 1.0, 0.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.9];
        let r = spectral_radius(&conjugate(&j, 3), 3);
        // A triple defective eigenvalue moves by ~eps^(1/3) under rounding.
        assert!((r - 0.9).abs() < 1e-4, "{r}");
        // Nilpotent: radius 0 though the norm is not.
        let nil = [0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0];
        assert!(spectral_radius(&conjugate(&nil, 3), 3) < 1e-3);
        assert!((sigma_max(&nil, 3, 3) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn block_rotations_and_reals_of_size_64() {
        // 64×64: 24 rotation blocks (moduli 0.2..1.15) and 16 reals (-1.7 is the largest), conjugated.
        let n = 64;
        let mut d = vec![0.0; n * n];
        let mut want = Vec::new();
        for b in 0..24 {
            let rho = 0.2 + 0.04 * b as f64;
            let th = 0.1 + 0.12 * b as f64;
            let (c, s) = (rho * th.cos(), rho * th.sin());
            let i = 2 * b;
            d[i * n + i] = c;
            d[i * n + i + 1] = -s;
            d[(i + 1) * n + i] = s;
            d[(i + 1) * n + i + 1] = c;
            want.push(rho);
            want.push(rho);
        }
        for k in 0..16 {
            let v = if k == 7 { -1.7 } else { 0.05 * k as f64 - 0.3 };
            d[(48 + k) * n + 48 + k] = v;
            want.push(v.abs());
        }
        // Upper-triangular coupling keeps the eigenvalues.
        for i in 0..n {
            for j in (i + 2)..n {
                d[i * n + j] = 0.01 * ((i * j) % 5) as f64;
            }
        }
        want.sort_by(|a, b| a.total_cmp(b));
        let got = sorted_moduli(&conjugate(&d, n), n);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-8, "got {g}, want {w}");
        }
        assert!((spectral_radius(&conjugate(&d, n), n) - 1.7).abs() < 1e-9);
    }

    #[test]
    fn a_cyclic_permutation_that_stalls_schur_is_answered_on_a_similar_matrix() {
        // A cyclic permutation of even size stalls nalgebra's Schur iteration (issue 611); its
        // eigenvalues are the 10th roots of unity, its singular values all 1.
        let n = 10;
        let mut p = vec![0.0; n * n];
        (0..n).for_each(|i| p[((i + 1) % n) * n + i] = 1.0);
        assert!(Schur::try_new(matrix(&p, n, n), f64::EPSILON, SWEEPS_PER_ROW * n).is_none());
        let ev = eigenvalues(&p, n).unwrap();
        assert_eq!(ev.len(), n);
        for (re, im) in &ev {
            assert!((re.hypot(*im) - 1.0).abs() < 1e-9, "{ev:?}");
            // a 10th root of unity: angle a multiple of 2π/10
            let k = im.atan2(*re) / (2.0 * std::f64::consts::PI / 10.0);
            assert!((k - k.round()).abs() < 1e-6, "{ev:?}");
        }
        assert!((spectral_radius(&p, n) - 1.0).abs() < 1e-9);
        assert!((sigma_max(&p, n, n) - 1.0).abs() < 1e-12);
        // Non-finite entries: NaN, not a panic.
        p[3] = f64::NAN;
        assert!(spectral_radius(&p, n).is_nan() && sigma_max(&p, n, n).is_nan());
    }

    #[test]
    fn sigma_max_of_a_rectangular_matrix() {
        // [[3, 0], [0, 4], [0, 0]]: singular values 4 and 3.
        assert!((sigma_max(&[3.0, 0.0, 0.0, 4.0, 0.0, 0.0], 3, 2) - 4.0).abs() < 1e-9);
        // Rank one u vᵀ: σ = |u||v|.
        let u = [1.0, 2.0, 2.0];
        let v = [3.0, 4.0];
        let a: Vec<f64> = (0..6).map(|k| u[k / 2] * v[k % 2]).collect();
        assert!((sigma_max(&a, 3, 2) - 15.0).abs() < 1e-9);
        assert_eq!(sigma_max(&[0.0; 6], 2, 3), 0.0);
    }

    #[test]
    fn known_singular_values() {
        for (s, seed) in [
            (vec![3.0, 2.0, 0.5, 0.1], 0.7),
            (vec![0.2, 1.5, 1.4, 0.3, 0.9], 1.3),
            (vec![4.0], 0.1),
            // close top values, where power iteration crawls: 2.0, 1.999, 1.998, ...
            ((0..24).map(|i| 2.0 - 0.001 * i as f64).collect(), 0.9),
        ] {
            let n = s.len();
            let a = with_singular_values(&s, seed);
            let want = s.iter().cloned().fold(0.0, f64::max);
            let got = sigma_max(&a, n, n);
            assert!(
                (got - want).abs() < 1e-9 * want,
                "{got} vs {want} for {s:?}"
            );
            // [a; 0] (a taller matrix) has the same singular values
            let mut tall = a.clone();
            tall.extend(vec![0.0; n * n]);
            let got = sigma_max(&tall, 2 * n, n);
            assert!((got - want).abs() < 1e-9 * want, "tall: {got} vs {want}");
        }
    }
}
