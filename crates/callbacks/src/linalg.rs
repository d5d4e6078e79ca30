//! Small dense linear algebra in f64 for the monitors: eigenvalues of a general real matrix
//! (balancing, Hessenberg reduction, Francis double-shift QR) and the largest singular value
//! (power iteration on `AᵀA`). Meant for matrices up to a few hundred rows.

/// A row-major square matrix of size `n`.
#[derive(Clone, Debug, PartialEq)]
pub struct Square {
    /// Rows and columns.
    pub n: usize,
    /// `n * n` values, row-major.
    pub a: Vec<f64>,
}

impl Square {
    /// A matrix from row-major values; `a.len()` must be `n * n`.
    pub fn new(n: usize, a: Vec<f64>) -> Self {
        assert_eq!(a.len(), n * n, "a {n}x{n} matrix needs {} values", n * n);
        Square { n, a }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }

    fn at_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.a[i * self.n + j]
    }
}

/// The eigenvalues `(re, im)` of a real square matrix, complex pairs as conjugates; `None` when
/// the QR iteration does not converge (it does for any finite matrix in practice).
pub fn eigenvalues(m: &Square) -> Option<Vec<(f64, f64)>> {
    if m.a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut h = m.clone();
    balance(&mut h);
    hessenberg(&mut h);
    hqr(&mut h)
}

/// The spectral radius (largest eigenvalue modulus) of a real square matrix; NaN when the matrix
/// has a non-finite entry.
pub fn spectral_radius(m: &Square) -> f64 {
    match eigenvalues(m) {
        Some(ev) => ev.iter().map(|(re, im)| re.hypot(*im)).fold(0.0, f64::max),
        None => f64::NAN,
    }
}

/// The largest singular value of the row-major `rows × cols` matrix `a`, by power iteration on
/// `AᵀA` with a Rayleigh quotient (relative tolerance 1e-12, at most 2000 iterations).
pub fn sigma_max(a: &[f64], rows: usize, cols: usize) -> f64 {
    assert_eq!(a.len(), rows * cols);
    if a.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    // A fixed start that no structured matrix is orthogonal to in practice.
    let mut v: Vec<f64> = (0..cols)
        .map(|i| 1.0 + ((i as f64 + 1.0) * 0.618_033_988_749_895).fract())
        .collect();
    normalize(&mut v);
    let mut av = vec![0.0; rows];
    let mut lambda = 0.0;
    for _ in 0..2000 {
        for (r, out) in av.iter_mut().enumerate() {
            *out = (0..cols).map(|c| a[r * cols + c] * v[c]).sum();
        }
        let mut w: Vec<f64> = (0..cols)
            .map(|c| (0..rows).map(|r| a[r * cols + c] * av[r]).sum())
            .collect();
        // Rayleigh quotient vᵀAᵀAv = |Av|² for the unit vector v.
        let next: f64 = av.iter().map(|x| x * x).sum();
        let norm = normalize(&mut w);
        if norm == 0.0 {
            return 0.0;
        }
        let done = (next - lambda).abs() <= 1e-12 * next.abs();
        lambda = next;
        v = w;
        if done {
            break;
        }
    }
    lambda.max(0.0).sqrt()
}

fn normalize(v: &mut [f64]) -> f64 {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    n
}

/// Diagonal similarity scaling by powers of 2 so rows and columns have comparable norms
/// (Parlett and Reinsch); leaves the eigenvalues unchanged.
fn balance(m: &mut Square) {
    let n = m.n;
    const RADIX: f64 = 2.0;
    let sqrdx = RADIX * RADIX;
    let mut done = false;
    while !done {
        done = true;
        for i in 0..n {
            let (mut c, mut r) = (0.0, 0.0);
            for j in 0..n {
                if j != i {
                    c += m.at(j, i).abs();
                    r += m.at(i, j).abs();
                }
            }
            if c != 0.0 && r != 0.0 {
                let mut g = r / RADIX;
                let mut f = 1.0;
                let s = c + r;
                while c < g {
                    f *= RADIX;
                    c *= sqrdx;
                }
                g = r * RADIX;
                while c > g {
                    f /= RADIX;
                    c /= sqrdx;
                }
                if (c + r) / f < 0.95 * s {
                    done = false;
                    let g = 1.0 / f;
                    for j in 0..n {
                        *m.at_mut(i, j) *= g;
                    }
                    for j in 0..n {
                        *m.at_mut(j, i) *= f;
                    }
                }
            }
        }
    }
}

/// Reduces to upper Hessenberg form by stabilized elementary similarity transforms (Gaussian
/// elimination with pivoting); entries below the subdiagonal are set to zero.
fn hessenberg(m: &mut Square) {
    let n = m.n;
    for k in 1..n.saturating_sub(1) {
        let mut x = 0.0f64;
        let mut piv = k;
        for j in k..n {
            if m.at(j, k - 1).abs() > x.abs() {
                x = m.at(j, k - 1);
                piv = j;
            }
        }
        if piv != k {
            for j in (k - 1)..n {
                m.a.swap(piv * n + j, k * n + j);
            }
            for j in 0..n {
                m.a.swap(j * n + piv, j * n + k);
            }
        }
        if x != 0.0 {
            for i in (k + 1)..n {
                let mut y = m.at(i, k - 1);
                if y != 0.0 {
                    y /= x;
                    *m.at_mut(i, k - 1) = 0.0;
                    for j in k..n {
                        let v = m.at(k, j);
                        *m.at_mut(i, j) -= y * v;
                    }
                    for j in 0..n {
                        let v = m.at(j, i);
                        *m.at_mut(j, k) += y * v;
                    }
                }
            }
        }
    }
}

fn sign(a: f64, b: f64) -> f64 {
    if b >= 0.0 {
        a.abs()
    } else {
        -a.abs()
    }
}

/// Eigenvalues of an upper Hessenberg matrix by the Francis double-shift QR algorithm with
/// deflation and exceptional shifts (after EISPACK's `hqr`).
fn hqr(m: &mut Square) -> Option<Vec<(f64, f64)>> {
    let n = m.n;
    let mut wr = vec![0.0; n];
    let mut wi = vec![0.0; n];
    if n == 0 {
        return Some(Vec::new());
    }
    let eps = f64::EPSILON;
    let mut anorm = 0.0;
    for i in 0..n {
        for j in i.saturating_sub(1)..n {
            anorm += m.at(i, j).abs();
        }
    }
    let mut nn = n as isize - 1;
    let mut t = 0.0;
    while nn >= 0 {
        let mut its = 0;
        loop {
            let nnu = nn as usize;
            // Look for a single small subdiagonal element.
            let mut l = nnu;
            while l > 0 {
                let mut s = m.at(l - 1, l - 1).abs() + m.at(l, l).abs();
                if s == 0.0 {
                    s = anorm;
                }
                if m.at(l, l - 1).abs() <= eps * s {
                    *m.at_mut(l, l - 1) = 0.0;
                    break;
                }
                l -= 1;
            }
            let mut x = m.at(nnu, nnu);
            if l == nnu {
                // One root found.
                wr[nnu] = x + t;
                wi[nnu] = 0.0;
                nn -= 1;
                break;
            }
            let mut y = m.at(nnu - 1, nnu - 1);
            let mut w = m.at(nnu, nnu - 1) * m.at(nnu - 1, nnu);
            if l == nnu - 1 {
                // Two roots found.
                let p = 0.5 * (y - x);
                let q = p * p + w;
                let mut z = q.abs().sqrt();
                x += t;
                if q >= 0.0 {
                    z = p + sign(z, p);
                    wr[nnu - 1] = x + z;
                    wr[nnu] = x + z;
                    if z != 0.0 {
                        wr[nnu] = x - w / z;
                    }
                    wi[nnu - 1] = 0.0;
                    wi[nnu] = 0.0;
                } else {
                    wr[nnu - 1] = x + p;
                    wr[nnu] = x + p;
                    wi[nnu - 1] = -z;
                    wi[nnu] = z;
                }
                nn -= 2;
                break;
            }
            if its == 60 {
                return None;
            }
            if its == 10 || its == 20 || its == 40 {
                // Exceptional shift.
                t += x;
                for i in 0..=nnu {
                    *m.at_mut(i, i) -= x;
                }
                let s = m.at(nnu, nnu - 1).abs() + m.at(nnu - 1, nnu - 2).abs();
                x = 0.75 * s;
                y = x;
                w = -0.4375 * s * s;
            }
            its += 1;
            // Form the shift and look for two consecutive small subdiagonal elements.
            let (mut p, mut q, mut r);
            let mut mm = nnu - 2;
            loop {
                let z = m.at(mm, mm);
                let r0 = x - z;
                let s0 = y - z;
                p = (r0 * s0 - w) / m.at(mm + 1, mm) + m.at(mm, mm + 1);
                q = m.at(mm + 1, mm + 1) - z - r0 - s0;
                r = m.at(mm + 2, mm + 1);
                let s = p.abs() + q.abs() + r.abs();
                p /= s;
                q /= s;
                r /= s;
                if mm == l {
                    break;
                }
                let u = m.at(mm, mm - 1).abs() * (q.abs() + r.abs());
                let v =
                    p.abs() * (m.at(mm - 1, mm - 1).abs() + z.abs() + m.at(mm + 1, mm + 1).abs());
                if u <= eps * v {
                    break;
                }
                mm -= 1;
            }
            for i in mm..nnu - 1 {
                *m.at_mut(i + 2, i) = 0.0;
                if i != mm {
                    *m.at_mut(i + 2, i - 1) = 0.0;
                }
            }
            // Double QR step on rows l..=nn and columns mm..=nn.
            for k in mm..nnu {
                if k != mm {
                    p = m.at(k, k - 1);
                    q = m.at(k + 1, k - 1);
                    r = 0.0;
                    if k + 1 != nnu {
                        r = m.at(k + 2, k - 1);
                    }
                    x = p.abs() + q.abs() + r.abs();
                    if x != 0.0 {
                        p /= x;
                        q /= x;
                        r /= x;
                    }
                }
                let s = sign((p * p + q * q + r * r).sqrt(), p);
                if s != 0.0 {
                    if k == mm {
                        if l != mm {
                            *m.at_mut(k, k - 1) = -m.at(k, k - 1);
                        }
                    } else {
                        *m.at_mut(k, k - 1) = -s * x;
                    }
                    p += s;
                    x = p / s;
                    y = q / s;
                    let z = r / s;
                    q /= p;
                    r /= p;
                    for j in k..=nnu {
                        let mut pp = m.at(k, j) + q * m.at(k + 1, j);
                        if k + 1 != nnu {
                            pp += r * m.at(k + 2, j);
                            *m.at_mut(k + 2, j) -= pp * z;
                        }
                        *m.at_mut(k + 1, j) -= pp * y;
                        *m.at_mut(k, j) -= pp * x;
                    }
                    let mmin = if nnu < k + 3 { nnu } else { k + 3 };
                    for i in l..=mmin {
                        let mut pp = x * m.at(i, k) + y * m.at(i, k + 1);
                        if k + 1 != nnu {
                            pp += z * m.at(i, k + 2);
                            *m.at_mut(i, k + 2) -= pp * r;
                        }
                        *m.at_mut(i, k + 1) -= pp * q;
                        *m.at_mut(i, k) -= pp;
                    }
                }
            }
        }
    }
    Some(wr.into_iter().zip(wi).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Q D Qᵀ` for a Householder reflection `Q = I - 2vvᵀ/vᵀv`: same eigenvalues as `D`.
    fn conjugate(d: &Square) -> Square {
        let n = d.n;
        let v: Vec<f64> = (0..n).map(|i| ((i * 7 + 3) % 11) as f64 - 4.5).collect();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let q: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv
            })
            .collect();
        let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
            (0..n * n)
                .map(|k| (0..n).map(|t| a[(k / n) * n + t] * b[t * n + k % n]).sum())
                .collect()
        };
        // Q is symmetric and orthogonal: Qᵀ = Q.
        Square::new(n, mul(&mul(&q, &d.a), &q))
    }

    fn sorted_moduli(m: &Square) -> Vec<f64> {
        let mut v: Vec<f64> = eigenvalues(m)
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
        let m = Square::new(2, vec![c, -s, s, c]);
        let ev = eigenvalues(&m).unwrap();
        for (re, im) in &ev {
            assert!(
                (re - c).abs() < 1e-12 && (im.abs() - s).abs() < 1e-12,
                "{ev:?}"
            );
        }
        assert!((spectral_radius(&m) - 1.3).abs() < 1e-12);
        // A rotation is 1.3 times orthogonal: every singular value is 1.3.
        assert!((sigma_max(&m.a, 2, 2) - 1.3).abs() < 1e-9);
    }

    #[test]
    fn defective_and_conjugated_matrices() {
        // Jordan block of 0.9 (defective: one eigenvector) hidden by a similarity transform.
        let j = Square::new(3, vec![0.9, 1.0, 0.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.9]);
        let r = spectral_radius(&conjugate(&j));
        // A triple defective eigenvalue moves by ~eps^(1/3) under rounding.
        assert!((r - 0.9).abs() < 1e-4, "{r}");
        // Nilpotent: radius 0 though the norm is not.
        let nil = Square::new(3, vec![0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]);
        assert!(spectral_radius(&conjugate(&nil)) < 1e-3);
        assert!((sigma_max(&nil.a, 3, 3) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn block_rotations_and_reals_of_size_64() {
        // 64×64: 24 rotation blocks (moduli 0.2..1.15) and 16 reals (-1.7 is the largest), conjugated.
        let n = 64;
        let mut d = Square::new(n, vec![0.0; n * n]);
        let mut want = Vec::new();
        for b in 0..24 {
            let rho = 0.2 + 0.04 * b as f64;
            let th = 0.1 + 0.12 * b as f64;
            let (c, s) = (rho * th.cos(), rho * th.sin());
            let i = 2 * b;
            *d.at_mut(i, i) = c;
            *d.at_mut(i, i + 1) = -s;
            *d.at_mut(i + 1, i) = s;
            *d.at_mut(i + 1, i + 1) = c;
            want.push(rho);
            want.push(rho);
        }
        for k in 0..16 {
            let v = if k == 7 { -1.7 } else { 0.05 * k as f64 - 0.3 };
            *d.at_mut(48 + k, 48 + k) = v;
            want.push(v.abs());
        }
        // Upper-triangular coupling keeps the eigenvalues.
        for i in 0..n {
            for j in (i + 2)..n {
                *d.at_mut(i, j) = 0.01 * ((i * j) % 5) as f64;
            }
        }
        want.sort_by(|a, b| a.total_cmp(b));
        let got = sorted_moduli(&conjugate(&d));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-8, "got {g}, want {w}");
        }
        assert!((spectral_radius(&conjugate(&d)) - 1.7).abs() < 1e-9);
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
    }
}
