//! `spectral`: per epoch, the spectral radius and the largest singular value of every recurrent
//! matrix, per gate block (rows `g·H..(g+1)·H` of `weight_hh [G·H, H]`).

use crate::linalg::{sigma_max, spectral_radius};
use candle_core::DType;
use rnnlab_core::{
    check_value, Callback, Control, EpochMetrics, PluginConfig, Registry, Result, TrainView,
};
use serde::{Deserialize, Serialize};

/// Radius and σ_max of one gate block.
#[derive(Clone, Debug, PartialEq)]
pub struct GateSpectrum {
    /// The gate's name (`i`, `f`, `g`, `o`; `r`, `z`, `n`; `h` for a vanilla RNN).
    pub gate: String,
    /// Largest |eigenvalue| (for a diagonal recurrence: max |u|).
    pub radius: f64,
    /// Largest singular value.
    pub sigma_max: f64,
}

/// The spectra of the gate blocks of a recurrent weight with `shape` (`[G·H, H]` or `[H]` for a
/// diagonal recurrence) and row-major `values`; `gates` names the `G` blocks. Blocks larger than
/// `max_dim` get NaN.
pub fn gate_spectra(
    values: &[f64],
    shape: &[usize],
    gates: &[String],
    max_dim: usize,
) -> Vec<GateSpectrum> {
    match shape {
        [h] => {
            // Diagonal recurrence (IndRNN): u ⊙ h, eigenvalues and singular values are |u|.
            let r = values.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let r = if values.iter().any(|v| !v.is_finite()) {
                f64::NAN
            } else {
                r
            };
            let _ = h;
            gates
                .iter()
                .map(|g| GateSpectrum {
                    gate: g.clone(),
                    radius: r,
                    sigma_max: r,
                })
                .collect()
        }
        [rows, h] => {
            let h = *h;
            let g_count = gates.len().max(1);
            if rows % g_count != 0 || rows / g_count != h {
                tracing::warn!(
                    "spectral: a {rows}x{h} recurrent weight does not split into {g_count} square gate blocks"
                );
                return Vec::new();
            }
            gates
                .iter()
                .enumerate()
                .map(|(gi, g)| {
                    let block = &values[gi * h * h..(gi + 1) * h * h];
                    let (radius, sigma) = if h > max_dim {
                        (f64::NAN, f64::NAN)
                    } else {
                        (spectral_radius(block, h), sigma_max(block, h, h))
                    };
                    GateSpectrum {
                        gate: g.clone(),
                        radius,
                        sigma_max: sigma,
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Logs `spectral.<param>.<gate>.radius` and `spectral.<param>.<gate>.sigma_max` per epoch.
#[derive(Clone, Debug)]
pub struct Spectral {
    /// Gate blocks larger than this are skipped (logged as NaN).
    pub max_dim: usize,
    /// Measure every this many epochs (and at epoch 1).
    pub every: usize,
}

impl Spectral {
    /// Adds the figures of every recurrent matrix in `view` to `m`.
    pub fn measure(&self, m: &mut EpochMetrics, view: &TrainView) -> Result<()> {
        for rw in view.recurrent {
            let t = view.params.tensor(&rw.name)?.to_dtype(DType::F64)?;
            let shape = t.dims().to_vec();
            let values = t.flatten_all()?.to_vec1::<f64>()?;
            for s in gate_spectra(&values, &shape, &rw.gates, self.max_dim) {
                m.set(format!("spectral.{}.{}.radius", rw.name, s.gate), s.radius);
                m.set(
                    format!("spectral.{}.{}.sigma_max", rw.name, s.gate),
                    s.sigma_max,
                );
            }
        }
        Ok(())
    }
}

impl Callback for Spectral {
    fn name(&self) -> &str {
        "spectral"
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        if view.epoch.is_multiple_of(self.every.max(1)) || view.epoch == 1 {
            self.measure(metrics, view)?;
        }
        Ok(Control::Continue)
    }

    fn metric_names(&self, ctx: &rnnlab_core::MetricContext) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for rw in ctx.recurrent {
            for g in &rw.gates {
                for f in ["radius", "sigma_max"] {
                    names.push(format!("spectral.{}.{g}.{f}", rw.name));
                }
            }
        }
        Some(names)
    }
}

/// The keys of `type = "spectral"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpectralConfig {
    /// Measure every this many epochs, and at epoch 1 (>= 1).
    pub every: usize,
    /// Gate blocks with more rows are skipped (1..=4096).
    pub max_dim: usize,
}

impl Default for SpectralConfig {
    fn default() -> Self {
        SpectralConfig {
            every: 1,
            max_dim: 512,
        }
    }
}

impl PluginConfig for SpectralConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let (every, max_dim) = (self.every, self.max_dim);
        check_value(at, "every", &every, every >= 1, "must be at least 1")?;
        let ok = (1..=4096).contains(&max_dim);
        check_value(at, "max_dim", &max_dim, ok, "must be in 1..=4096")
    }
}

/// Registers `spectral`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "spectral",
        "per epoch, the spectral radius and largest singular value of every recurrent matrix, per gate block",
        SpectralConfig::default(),
        |c| {
            Ok(Box::new(Spectral {
                max_dim: c.max_dim,
                every: c.every,
            }) as Box<dyn Callback>)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_blocks_are_row_blocks() {
        // Two 2×2 gates stacked as [4, 2]: a rotation scaled by 0.5 and diag(3, -2).
        let (c, s) = (0.5 * 0.3f64.cos(), 0.5 * 0.3f64.sin());
        let v = [c, -s, s, c, 3.0, 0.0, 0.0, -2.0];
        let gates = vec!["r".to_string(), "z".to_string()];
        let out = gate_spectra(&v, &[4, 2], &gates, 512);
        assert_eq!(out.len(), 2);
        assert!((out[0].radius - 0.5).abs() < 1e-12 && (out[0].sigma_max - 0.5).abs() < 1e-9);
        assert!((out[1].radius - 3.0).abs() < 1e-12 && (out[1].sigma_max - 3.0).abs() < 1e-9);
        // A diagonal recurrence: max |u|.
        let d = gate_spectra(&[0.5, -1.25, 1.0], &[3], &["h".to_string()], 512);
        assert_eq!(d[0].radius, 1.25);
        // Too large: NaN, not a silent number.
        assert!(gate_spectra(&v, &[4, 2], &gates, 1)[0].radius.is_nan());
    }
}
