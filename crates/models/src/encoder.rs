//! A stack of recurrent layers, each in one or two directions, as `torch.nn.LSTM(num_layers,
//! bidirectional, dropout)` but with any registered cell.

use candle_core::Tensor;
use rnnlab_core::{
    check_value, dropout, dropout_mask, reference_forward_seq, Cell, CellArgs, Error, ParamBuilder,
    ParamSpec, PluginConfig, PluginParams, RecurrentWeight, Registry, Result, Rng, SeqOutput,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The parameter prefix of the encoder's cells (`rnn.weight_ih_l0`, ...), as in PyTorch models.
pub const PREFIX: &str = "rnn";

/// The keys every cell takes besides its own, with their defaults.
pub fn shared_cell_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("hidden", "128", "hidden units per direction (> 0)"),
        ParamSpec::new("layers", "1", "stacked recurrent layers (>= 1)"),
        ParamSpec::new(
            "bidirectional",
            "false",
            "also read each sequence backwards and concatenate both directions",
        ),
        ParamSpec::new(
            "recurrent_dropout",
            "0.0",
            "dropout on h before the recurrent product, one mask per sequence reused at every step, in [0, 1)",
        ),
    ]
}

/// How the encoder runs each cell over a sequence (and the CNN each filter width): the `kernel`
/// key, `"fused"` or `"reference"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// The cell's own [`Cell::forward_seq`] (for the built-in cells: one fused op forward and one
    /// backward); for the CNN, one custom op per filter width.
    #[default]
    Fused,
    /// [`reference_forward_seq`]: one [`Cell::step`] per time step, differentiated by autograd;
    /// for the CNN, candle ops.
    Reference,
}

/// The keys of a cell whose only key of its own is `kernel` (`lstm`, `gru`), besides the shared
/// cell keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// Sequence pass: fused (the cell's own sequence kernel) or reference (step-by-step autograd).
    pub kernel: Kernel,
}

impl PluginConfig for KernelConfig {}

/// Cells × layers × directions. The cells are in PyTorch's order: `l0`, `l0_reverse`, `l1`, ...
pub struct Encoder {
    cells: Vec<Box<dyn Cell>>,
    layers: usize,
    bidirectional: bool,
    layer_dropout: f64,
    recurrent_dropout: f64,
    prefix: String,
    kernel: Kernel,
}

/// What [`Encoder::forward`] returns.
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// `[B, T, D]` the last layer's outputs (both directions concatenated), zero at padding.
    pub outputs: Tensor,
    /// `[B, D]` the last layer's final state: the forward direction's `h` at each sequence's true
    /// length, concatenated with the backward direction's `h` after reading the first token.
    pub last: Tensor,
    /// Every cell's final `h` `[B, H]` in PyTorch's `h_n` order (layer-major, forward first).
    pub h_n: Vec<Tensor>,
}

/// Builds an encoder from a cell table (`{ type = "lstm", hidden = 128, ... }`) at config path
/// `at`, reading `input_size`-wide inputs, with `layer_dropout` between stacked layers. The cells'
/// parameters go under `rnn.` in `pb`.
pub fn encoder(
    cell_table: &toml::Table,
    at: &str,
    input_size: usize,
    layer_dropout: f64,
    registry: &Registry,
    pb: &mut ParamBuilder,
) -> Result<Encoder> {
    let (ctor, p) = registry.cells.resolve(cell_table, at, None)?;
    let hidden = p.usize("hidden")?;
    p.check("hidden", hidden > 0, "must be positive")?;
    let layers = p.usize("layers")?;
    p.check("layers", layers >= 1, "must be at least 1")?;
    let bidirectional = p.bool("bidirectional")?;
    let recurrent_dropout = p.f64("recurrent_dropout")?;
    check_probability(&p, "recurrent_dropout", recurrent_dropout)?;
    // A cell without a `kernel` key has no sequence kernel of its own: it is stepped.
    let kernel: Kernel = if p.has("kernel") {
        p.get("kernel")?
    } else {
        Kernel::Reference
    };
    let dirs = if bidirectional { 2 } else { 1 };
    let mut cells: Vec<Box<dyn Cell>> = Vec::with_capacity(layers * dirs);
    let mut pb = pb.pp(PREFIX);
    for l in 0..layers {
        let input = if l == 0 { input_size } else { hidden * dirs };
        for d in 0..dirs {
            let suffix = if d == 0 {
                format!("l{l}")
            } else {
                format!("l{l}_reverse")
            };
            let args = CellArgs {
                input_size: input,
                hidden_size: hidden,
                suffix,
            };
            let cell = ctor(&p, &args, &mut pb)?;
            if cell.input_size() != input || cell.hidden_size() != hidden {
                return Err(Error::Mismatch(format!(
                    "cell `{}` at `{at}` built {}→{}, asked for {input}→{hidden}",
                    p.str("type").unwrap_or("?"),
                    cell.input_size(),
                    cell.hidden_size()
                )));
            }
            cells.push(cell);
        }
    }
    Encoder::new(
        cells,
        bidirectional,
        layer_dropout,
        recurrent_dropout,
        PREFIX,
    )
    .map(|e| e.with_kernel(kernel))
}

/// Errors unless `value` is in [0, 1).
pub(crate) fn check_probability(p: &PluginParams, key: &str, value: f64) -> Result<()> {
    check_dropout(p.path(), key, value)
}

/// For a typed config's `validate`: `{at}.{key}` is a dropout probability, in [0, 1).
pub(crate) fn check_dropout(at: &str, key: &str, value: f64) -> Result<()> {
    check_value(
        at,
        key,
        &value,
        (0.0..1.0).contains(&value),
        "must be in [0, 1)",
    )
}

impl Encoder {
    /// An encoder over `cells` in PyTorch's order (`l0`, `l0_reverse` when `bidirectional`, `l1`,
    /// ...). `prefix` is the name prefix the cells' parameters were created under (it qualifies
    /// the names [`Encoder::recurrent_weights`] reports).
    pub fn new(
        cells: Vec<Box<dyn Cell>>,
        bidirectional: bool,
        layer_dropout: f64,
        recurrent_dropout: f64,
        prefix: &str,
    ) -> Result<Self> {
        let dirs = if bidirectional { 2 } else { 1 };
        if cells.is_empty() || !cells.len().is_multiple_of(dirs) {
            return Err(Error::Mismatch(format!(
                "{} cells for {dirs} direction(s)",
                cells.len()
            )));
        }
        for (what, p) in [
            ("layer_dropout", layer_dropout),
            ("recurrent_dropout", recurrent_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::invalid(what, format!("{p}: must be in [0, 1)")));
            }
        }
        let hidden = cells[0].hidden_size();
        for (k, c) in cells.iter().enumerate() {
            let want_in = if k < dirs {
                cells[0].input_size()
            } else {
                hidden * dirs
            };
            if c.hidden_size() != hidden || c.input_size() != want_in {
                return Err(Error::Mismatch(format!(
                    "cell {k} is {}→{}, expected {want_in}→{hidden}",
                    c.input_size(),
                    c.hidden_size()
                )));
            }
        }
        Ok(Encoder {
            layers: cells.len() / dirs,
            cells,
            bidirectional,
            layer_dropout,
            recurrent_dropout,
            prefix: prefix.to_string(),
            kernel: Kernel::Fused,
        })
    }

    /// Chooses how each cell runs over a sequence (fused by default).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// How each cell runs over a sequence.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    fn run_cell(
        &self,
        cell: &dyn Cell,
        x: &Tensor,
        lengths: &[usize],
        reverse: bool,
        mask: Option<&Tensor>,
    ) -> Result<SeqOutput> {
        match self.kernel {
            Kernel::Fused => cell.forward_seq(x, lengths, reverse, mask),
            Kernel::Reference => reference_forward_seq(cell, x, lengths, reverse, mask),
        }
    }

    /// Input width.
    pub fn input_size(&self) -> usize {
        self.cells[0].input_size()
    }

    /// Hidden width of one direction.
    pub fn hidden_size(&self) -> usize {
        self.cells[0].hidden_size()
    }

    /// Output width: hidden size times the number of directions.
    pub fn output_size(&self) -> usize {
        self.hidden_size() * self.directions()
    }

    /// Number of stacked layers.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The cells in PyTorch's order.
    pub fn cells(&self) -> &[Box<dyn Cell>] {
        &self.cells
    }

    /// The cells' recurrent matrices with their full names (`rnn.weight_hh_l0`); a name that a
    /// cell reports without the encoder's prefix gets it.
    pub fn recurrent_weights(&self) -> Vec<RecurrentWeight> {
        let dotted = format!("{}.", self.prefix);
        self.cells
            .iter()
            .flat_map(|c| c.recurrent_weights())
            .map(|mut w| {
                if !self.prefix.is_empty() && !w.name.starts_with(&dotted) {
                    w.name = format!("{dotted}{}", w.name);
                }
                w
            })
            .collect()
    }

    /// Runs `x` `[B, T, E]` with each sequence's true `lengths`. When `train`, layer dropout and
    /// recurrent dropout (one `[B, H]` mask per layer and direction, reused at every step) draw
    /// from `rng`.
    pub fn forward(
        &self,
        x: &Tensor,
        lengths: &[usize],
        train: bool,
        rng: &mut Rng,
    ) -> Result<EncoderOutput> {
        let (b, _, _) = x.dims3()?;
        let dirs = self.directions();
        let h = self.hidden_size();
        let mut input = x.clone();
        let mut h_n = Vec::with_capacity(self.cells.len());
        let mut last = None;
        for l in 0..self.layers {
            let mut outs = Vec::with_capacity(dirs);
            let mut finals = Vec::with_capacity(dirs);
            for d in 0..dirs {
                let cell = &self.cells[l * dirs + d];
                let mask = if train && self.recurrent_dropout > 0.0 {
                    Some(dropout_mask(
                        rng,
                        &[b, h],
                        self.recurrent_dropout,
                        x.dtype(),
                        x.device(),
                    )?)
                } else {
                    None
                };
                let out = self.run_cell(cell.as_ref(), &input, lengths, d == 1, mask.as_ref())?;
                outs.push(out.outputs);
                finals.push(out.last.h);
            }
            let output = if dirs == 1 {
                outs.pop().expect("one direction")
            } else {
                Tensor::cat(&outs, 2)?
            };
            last = Some(if dirs == 1 {
                finals[0].clone()
            } else {
                Tensor::cat(&finals, 1)?
            });
            h_n.extend(finals);
            input = if l + 1 < self.layers {
                dropout(&output, self.layer_dropout, train, rng)?
            } else {
                output
            };
        }
        Ok(EncoderOutput {
            outputs: input,
            last: last.expect("at least one layer"),
            h_n,
        })
    }
}
