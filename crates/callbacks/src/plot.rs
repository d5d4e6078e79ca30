//! Figures of one run or several (plotters, PNG and SVG): accuracy and loss curves, gradient-norm
//! percentiles with the warn/explode lines, spectral radius, learning rate, predicted shares and
//! the confusion matrix. Used by the `plots` callback and by `rnnlab report`.
//!
//! Text needs a TrueType font: `RNNLAB_FONT` (a `.ttf` path), else DejaVu Sans or Liberation Sans
//! where the system has them. Without one the figures are drawn without text (curves, grid and
//! threshold lines only) and a warning says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use rnnlab_core::{EpochMetrics, Error, Result};

const W: u32 = 900;
const H: u32 = 540;

/// One curve: a name and `(epoch, value)` points (non-finite values dropped).
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Dashed (drawn thinner and lighter).
    pub light: bool,
    /// A shaded band `(x, low, high)` around the curve (e.g. the spread over seeds); empty: none.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// The series of `key` in `history` (`None` when it is never logged).
    pub fn from_history(name: &str, history: &[EpochMetrics], key: &str) -> Option<Series> {
        let points: Vec<(f64, f64)> = history
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let e = m.get("epoch").unwrap_or((i + 1) as f64);
                m.get(key).filter(|v| v.is_finite()).map(|v| (e, v))
            })
            .collect();
        (!points.is_empty()).then(|| Series {
            name: name.to_string(),
            points,
            light: false,
            band: Vec::new(),
        })
    }
}

/// A line chart: curves and horizontal reference lines.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// Y axis description.
    pub y_desc: String,
    /// Curves.
    pub series: Vec<Series>,
    /// Horizontal lines `(label, y)`.
    pub hlines: Vec<(String, f64)>,
    /// Plot log10 of the values (for ranges over decades).
    pub log10: bool,
}

/// Whether a text font is available (registered once per process).
pub fn has_font() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(p) = std::env::var("RNNLAB_FONT") {
            candidates.push(p.into());
        }
        for p in [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/Library/Fonts/Arial.ttf",
            "C:\\Windows\\Fonts\\arial.ttf",
        ] {
            candidates.push(p.into());
        }
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!(
            "plots: no TrueType font found (set RNNLAB_FONT to a .ttf file): figures are drawn without text"
        );
        false
    })
}

fn perr(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Mismatch(format!("plot {}: {e}", path.display()))
}

/// Draws `chart` into `stem.png` / `stem.svg`; returns the files written.
pub fn line_chart(stem: &Path, formats: &[String], chart: &LineChart) -> Result<Vec<PathBuf>> {
    Figure::Lines(chart).write(stem, formats)
}

/// `chart` as an SVG document of `size` pixels, for inlining into HTML.
pub fn line_chart_svg(chart: &LineChart, size: (u32, u32)) -> Result<String> {
    Figure::Lines(chart).svg(size)
}

/// Draws a confusion matrix (`counts[true][predicted]`, cells shaded by row share) into
/// `stem.png` / `stem.svg`.
pub fn confusion_chart(
    stem: &Path,
    formats: &[String],
    title: &str,
    counts: &[Vec<u64>],
    labels: &[String],
) -> Result<Vec<PathBuf>> {
    Figure::Confusion {
        title,
        counts,
        labels,
    }
    .write(stem, formats)
}

/// A confusion matrix as an SVG document of `size` pixels, for inlining into HTML (see
/// [`confusion_chart`]).
pub fn confusion_chart_svg(
    title: &str,
    counts: &[Vec<u64>],
    labels: &[String],
    size: (u32, u32),
) -> Result<String> {
    Figure::Confusion {
        title,
        counts,
        labels,
    }
    .svg(size)
}

/// A figure that draws on any backend.
enum Figure<'a> {
    Lines(&'a LineChart),
    Confusion {
        title: &'a str,
        counts: &'a [Vec<u64>],
        labels: &'a [String],
    },
}

impl Figure<'_> {
    fn size(&self) -> (u32, u32) {
        match self {
            Figure::Lines(_) => (W, H),
            Figure::Confusion { .. } => (640, 600),
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let text = has_font();
        match self {
            Figure::Lines(chart) => draw_lines(root, chart, text),
            Figure::Confusion {
                title,
                counts,
                labels,
            } => draw_confusion(root, title, counts, labels, text),
        }
    }

    /// Writes `stem.<format>` for each of `formats` (png, svg).
    fn write(&self, stem: &Path, formats: &[String]) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for f in formats {
            let path = stem.with_extension(f);
            match f.as_str() {
                "png" => rnnlab_core::write_atomic_with(&path, |tmp| {
                    let root = BitMapBackend::new(tmp, self.size()).into_drawing_area();
                    self.draw(&root).map_err(|e| perr(&path, e))?;
                    root.present().map_err(|e| perr(&path, e))
                })?,
                "svg" => rnnlab_core::write_atomic_with(&path, |tmp| {
                    let root = SVGBackend::new(tmp, self.size()).into_drawing_area();
                    self.draw(&root).map_err(|e| perr(&path, e))?;
                    root.present().map_err(|e| perr(&path, e))
                })?,
                other => {
                    return Err(Error::invalid(
                        "plots.formats",
                        format!("unknown format `{other}`"),
                    ))
                }
            }
            out.push(path);
        }
        Ok(out)
    }

    /// The figure as an SVG document of `size` pixels.
    fn svg(&self, size: (u32, u32)) -> Result<String> {
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
            let fail = |e: String| Error::Mismatch(format!("plot (svg): {e}"));
            self.draw(&root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        Ok(buf)
    }
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &LineChart,
    text: bool,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(s)?;
    let tf = |v: f64| if chart.log10 { v.max(1e-12).log10() } else { v };
    let ys = chart
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| tf(p.1))
                .chain(s.band.iter().flat_map(|b| [tf(b.1), tf(b.2)]))
        })
        .chain(chart.hlines.iter().map(|h| tf(h.1)))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let mut b = ChartBuilder::on(root);
    b.margin(15);
    if text {
        b.caption(&chart.title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut c = b.build_cartesian_2d(x0..x1, lo..hi).map_err(s)?;
    let y_desc = if chart.log10 {
        format!("log10 {}", chart.y_desc)
    } else {
        chart.y_desc.clone()
    };
    let mut mesh = c.configure_mesh();
    if text {
        mesh.x_desc("epoch").y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(s)?;
    for (i, h) in chart.hlines.iter().enumerate() {
        // One line is a reference (grey, apart from the curves' palette); of a warn / explode
        // pair the last is red.
        let color = if chart.hlines.len() == 1 {
            RGBColor(90, 90, 90)
        } else if i == chart.hlines.len() - 1 {
            RED
        } else {
            RGBColor(230, 150, 0)
        };
        let y = tf(h.1);
        let a = c
            .draw_series(LineSeries::new(
                vec![(x0, y), (x1, y)],
                color.stroke_width(2),
            ))
            .map_err(s)?;
        if text {
            a.label(h.0.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    for (i, ser) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = if ser.light {
            color.mix(0.5).stroke_width(1)
        } else {
            color.stroke_width(2)
        };
        if ser.band.len() > 1 {
            let mut outline: Vec<(f64, f64)> = ser.band.iter().map(|b| (b.0, tf(b.1))).collect();
            outline.extend(ser.band.iter().rev().map(|b| (b.0, tf(b.2))));
            c.draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.15).filled(),
            )))
            .map_err(s)?;
        }
        let pts: Vec<(f64, f64)> = ser.points.iter().map(|p| (p.0, tf(p.1))).collect();
        let a = c
            .draw_series(LineSeries::new(pts.clone(), style))
            .map_err(s)?;
        if text {
            a.label(ser.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if pts.len() <= 60 {
            c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(s)?;
        }
    }
    if text && !(chart.series.is_empty() && chart.hlines.is_empty()) {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(s)?;
    }
    Ok(())
}

fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    counts: &[Vec<u64>],
    labels: &[String],
    text: bool,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(s)?;
    let n = counts.len().max(1);
    let mut b = ChartBuilder::on(root);
    b.margin(15);
    if text {
        b.caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut c = b
        .build_cartesian_2d(0f64..n as f64, 0f64..n as f64)
        .map_err(s)?;
    let mut mesh = c.configure_mesh();
    mesh.disable_mesh().x_labels(0).y_labels(0);
    if text {
        let order: Vec<String> = (0..n)
            .map(|k| labels.get(k).cloned().unwrap_or_else(|| k.to_string()))
            .collect();
        mesh.x_desc(format!("predicted ({})", order.join(", ")))
            .y_desc(format!("true ({}, top to bottom)", order.join(", ")));
    }
    mesh.draw().map_err(s)?;
    for (r, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (col, &v) in row.iter().enumerate() {
            let share = v as f64 / total;
            let shade = (255.0 * (1.0 - share)) as u8;
            let y = (n - 1 - r) as f64;
            let x = col as f64;
            c.draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                RGBColor(shade, shade, 255).filled(),
            )))
            .map_err(s)?;
            if text {
                let color = if share > 0.5 { WHITE } else { BLACK };
                c.draw_series(std::iter::once(Text::new(
                    format!("{v}"),
                    (x + 0.4, y + 0.55),
                    ("sans-serif", 18).into_font().color(&color),
                )))
                .map_err(s)?;
            }
        }
    }
    Ok(())
}

/// The figures of one run (`history`), with the final confusion matrices when given, written
/// into `dir`; returns the files written.
pub fn run_plots(
    history: &[EpochMetrics],
    confusions: &[(String, Vec<Vec<u64>>)],
    labels: &[String],
    dir: &Path,
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut line = |name: &str, chart: LineChart| -> Result<()> {
        if !chart.series.is_empty() {
            files.extend(line_chart(&dir.join(name), formats, &chart)?);
        }
        Ok(())
    };
    let pick = |pairs: &[(&str, &str)]| -> Vec<Series> {
        pairs
            .iter()
            .filter_map(|(n, k)| Series::from_history(n, history, k))
            .collect()
    };
    line(
        "accuracy",
        LineChart {
            title: "accuracy".into(),
            y_desc: "accuracy (%)".into(),
            series: pick(&[
                ("train", "train_acc"),
                ("val", "val_acc"),
                ("test", "test_acc"),
                ("raw val", "raw_val_acc"),
            ]),
            hlines: vec![],
            log10: false,
        },
    )?;
    line(
        "loss",
        LineChart {
            title: "loss".into(),
            y_desc: "cross-entropy".into(),
            series: pick(&[
                ("train", "train_loss"),
                ("val", "val_loss"),
                ("test", "test_loss"),
            ]),
            hlines: vec![],
            log10: false,
        },
    )?;
    line("grad_norm", grad_norm_chart(history))?;
    let radius: Vec<Series> = metric_keys(history, "spectral.", ".radius")
        .iter()
        .filter_map(|k| {
            let name = k
                .trim_start_matches("spectral.")
                .trim_end_matches(".radius");
            Series::from_history(name, history, k)
        })
        .collect();
    line(
        "spectral_radius",
        LineChart {
            title: "spectral radius of the recurrent matrices (per gate)".into(),
            y_desc: "largest |eigenvalue|".into(),
            series: radius,
            hlines: vec![("1".into(), 1.0)],
            log10: false,
        },
    )?;
    line(
        "lr",
        LineChart {
            title: "learning rate".into(),
            y_desc: "lr".into(),
            series: pick(&[
                ("lr (last step)", "lr"),
                ("min", "lr_monitor.min"),
                ("max", "lr_monitor.max"),
            ]),
            hlines: vec![],
            log10: false,
        },
    )?;
    let mut shares: Vec<Series> = Vec::new();
    for k in metric_keys(history, "predictions.val.share.", "") {
        let c = k.trim_start_matches("predictions.val.share.");
        shares.extend(Series::from_history(&format!("pred {c}"), history, &k));
        if let Some(mut t) = Series::from_history(
            &format!("true {c}"),
            history,
            &format!("predictions.val.true_share.{c}"),
        ) {
            t.light = true;
            shares.push(t);
        }
    }
    line(
        "predicted_shares",
        LineChart {
            title: "predicted class shares on val".into(),
            y_desc: "share (%)".into(),
            series: shares,
            hlines: vec![],
            log10: false,
        },
    )?;
    for (split, counts) in confusions {
        files.extend(confusion_chart(
            &dir.join(format!("confusion_{split}")),
            formats,
            &format!("confusion matrix ({split}, final epoch)"),
            counts,
            labels,
        )?);
    }
    Ok(files)
}

/// Every key of `history` that starts with `prefix` and ends with `suffix`, in first-seen order.
pub fn metric_keys(history: &[EpochMetrics], prefix: &str, suffix: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for m in history {
        for (k, _) in m.iter() {
            if k.starts_with(prefix) && k.ends_with(suffix) && !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    keys
}

/// Gradient-norm percentiles per epoch (the `grad_norm` monitor's, else the trainer's) with the
/// warn and explode lines.
pub fn grad_norm_chart(history: &[EpochMetrics]) -> LineChart {
    let last = |k: &str| history.iter().rev().find_map(|m| m.get(k));
    let warn = last("grad_norm.warn").unwrap_or(5.0);
    let explode = last("grad_norm.explode").unwrap_or(10.0);
    let mut series: Vec<Series> = ["p50", "p90", "p99", "max"]
        .iter()
        .filter_map(|p| Series::from_history(p, history, &format!("grad_norm.global.{p}")))
        .collect();
    if series.is_empty() {
        series = [
            ("p50", "grad_norm_p50"),
            ("p99", "grad_norm_p99"),
            ("max", "grad_norm_max"),
        ]
        .iter()
        .filter_map(|(n, k)| Series::from_history(n, history, k))
        .collect();
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    LineChart {
        title: "global gradient norm (raw) per epoch".into(),
        y_desc: "L2 norm".into(),
        series,
        hlines: vec![
            (format!("warn {warn}"), warn),
            (format!("explode {explode}"), explode),
        ],
        log10: lo.is_finite() && hi / lo > 100.0,
    }
}

/// Figures overlaying several runs (`(name, history)`), written into `dir`.
pub fn compare_plots(
    runs: &[(String, Vec<EpochMetrics>)],
    dir: &Path,
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for (name, chart) in compare_charts(runs, &[]) {
        files.extend(line_chart(&dir.join(name), formats, &chart)?);
    }
    Ok(files)
}

/// The charts overlaying several runs (`(name, history)`), each with its file stem: val and test
/// accuracy, val and train loss, gradient-norm p50 and p99, learning rate, the largest spectral
/// radius and, per class, the predicted share on val. Charts no run has data for are left out;
/// `labels` names the classes (else their index).
pub fn compare_charts(
    runs: &[(String, Vec<EpochMetrics>)],
    labels: &[String],
) -> Vec<(String, LineChart)> {
    let overlay = |key: &str| -> Vec<Series> {
        runs.iter()
            .filter_map(|(n, h)| Series::from_history(n, h, key))
            .collect()
    };
    let max_radius: Vec<Series> = runs
        .iter()
        .filter_map(|(n, h)| {
            let keys = metric_keys(h, "spectral.", ".radius");
            let points: Vec<(f64, f64)> = h
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let r = keys
                        .iter()
                        .filter_map(|k| m.get(k))
                        .fold(f64::NAN, f64::max);
                    r.is_finite()
                        .then(|| (m.get("epoch").unwrap_or((i + 1) as f64), r))
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                name: n.clone(),
                points,
                light: false,
                band: Vec::new(),
            })
        })
        .collect();
    let grad = |p: &str| {
        let s = overlay(&format!("grad_norm.global.{p}"));
        if s.is_empty() {
            overlay(&format!("grad_norm_{p}"))
        } else {
            s
        }
    };
    let chart = |title: &str, y: &str, series: Vec<Series>, hlines: Vec<(String, f64)>| LineChart {
        title: title.into(),
        y_desc: y.into(),
        series,
        hlines,
        log10: false,
    };
    let mut charts = vec![
        (
            "compare_val_acc".to_string(),
            chart("val accuracy", "accuracy (%)", overlay("val_acc"), vec![]),
        ),
        (
            "compare_test_acc".into(),
            chart("test accuracy", "accuracy (%)", overlay("test_acc"), vec![]),
        ),
        (
            "compare_val_loss".into(),
            chart("val loss", "cross-entropy", overlay("val_loss"), vec![]),
        ),
        (
            "compare_train_loss".into(),
            chart("train loss", "cross-entropy", overlay("train_loss"), vec![]),
        ),
        (
            "compare_grad_norm_p50".into(),
            chart("gradient norm p50", "L2 norm", grad("p50"), vec![]),
        ),
        (
            "compare_grad_norm_p99".into(),
            chart("gradient norm p99", "L2 norm", grad("p99"), vec![]),
        ),
        (
            "compare_lr".into(),
            chart(
                "learning rate (last step of the epoch)",
                "lr",
                overlay("lr"),
                vec![],
            ),
        ),
        (
            "compare_spectral_radius".into(),
            chart(
                "largest spectral radius over the recurrent gate blocks",
                "largest |eigenvalue|",
                max_radius,
                vec![("1".to_string(), 1.0)],
            ),
        ),
    ];
    let mut classes: Vec<String> = Vec::new();
    for (_, h) in runs {
        for k in metric_keys(h, "predictions.val.share.", "") {
            let c = k.trim_start_matches("predictions.val.share.").to_string();
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
    }
    for c in classes {
        let name = c
            .parse::<usize>()
            .ok()
            .and_then(|i| labels.get(i).cloned())
            .unwrap_or_else(|| c.clone());
        // The true share as a line when every run has the same one (the same val split).
        let truth: Vec<f64> = runs
            .iter()
            .filter_map(|(_, h)| {
                h.iter()
                    .rev()
                    .find_map(|m| m.get(&format!("predictions.val.true_share.{c}")))
            })
            .collect();
        let same =
            truth.len() == runs.len() && truth.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-9);
        let hlines = match truth.first() {
            Some(t) if same => vec![(format!("true share {t:.1}"), *t)],
            _ => vec![],
        };
        charts.push((
            format!("compare_predicted_share_{c}"),
            chart(
                &format!("predicted share of class {name} on val"),
                "share (%)",
                overlay(&format!("predictions.val.share.{c}")),
                hlines,
            ),
        ));
    }
    charts.retain(|(_, c)| !c.series.is_empty());
    for (name, c) in &mut charts {
        if name.starts_with("compare_grad_norm") {
            let (lo, hi) = c
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .filter(|v| *v > 0.0)
                .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
            c.log10 = lo.is_finite() && hi / lo > 100.0;
        }
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_small_history_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let h: Vec<EpochMetrics> = (1..=4)
            .map(|e| {
                let mut m = EpochMetrics::new();
                m.set("epoch", e as f64);
                m.set("train_acc", 50.0 + 10.0 * e as f64);
                m.set("val_acc", 55.0 + 8.0 * e as f64);
                m.set("train_loss", 1.0 / e as f64);
                m.set("lr", 0.001);
                m.set("grad_norm.global.p99", 2.0 * e as f64);
                m.set("spectral.rnn.weight_hh_l0.h.radius", 0.9 + 0.05 * e as f64);
                m.set("predictions.val.share.0", 50.0 + e as f64);
                m.set("predictions.val.true_share.0", 50.0);
                m
            })
            .collect();
        let formats = vec!["png".to_string(), "svg".to_string()];
        let files = run_plots(
            &h,
            &[("val".into(), vec![vec![5, 1], vec![2, 7]])],
            &["neg".into(), "pos".into()],
            dir.path(),
            &formats,
        )
        .unwrap();
        for f in [
            "accuracy.png",
            "accuracy.svg",
            "loss.png",
            "grad_norm.png",
            "spectral_radius.svg",
            "lr.png",
            "predicted_shares.png",
            "confusion_val.png",
            "confusion_val.svg",
        ] {
            let p = dir.path().join(f);
            assert!(files.contains(&p), "{f} not written: {files:?}");
            assert!(std::fs::metadata(&p).unwrap().len() > 500, "{f} is empty");
        }
        let png = std::fs::read(dir.path().join("accuracy.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let c = compare_plots(
            &[("a".into(), h.clone()), ("b".into(), h)],
            &dir.path().join("cmp"),
            &formats,
        )
        .unwrap();
        assert!(c.iter().any(|p| p.ends_with("compare_val_acc.png")));
    }

    fn epoch(e: usize, pairs: &[(&str, f64)]) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("epoch", e as f64);
        for (k, v) in pairs {
            m.set(*k, *v);
        }
        m
    }

    #[test]
    fn comparison_charts_overlay_the_runs_and_name_the_classes() {
        let run = |share: f64, truth: f64| -> Vec<EpochMetrics> {
            (1..=3)
                .map(|e| {
                    epoch(
                        e,
                        &[
                            ("val_acc", 60.0 + e as f64),
                            ("grad_norm_p50", 0.5),
                            ("grad_norm_p99", 2.0),
                            ("lr", 0.01),
                            ("predictions.val.share.0", share),
                            ("predictions.val.share.1", 100.0 - share),
                            ("predictions.val.true_share.0", truth),
                            ("predictions.val.true_share.1", 100.0 - truth),
                        ],
                    )
                })
                .collect()
        };
        let labels = ["neg".to_string(), "pos".to_string()];
        let same = compare_charts(
            &[("a".into(), run(40.0, 55.0)), ("b".into(), run(70.0, 55.0))],
            &labels,
        );
        let names: Vec<&str> = same.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "compare_val_acc",
                "compare_grad_norm_p50",
                "compare_grad_norm_p99",
                "compare_lr",
                "compare_predicted_share_0",
                "compare_predicted_share_1",
            ]
        );
        let share = &same[4].1;
        assert_eq!(share.title, "predicted share of class neg on val");
        assert_eq!(share.series.len(), 2);
        assert_eq!(share.series[1].name, "b");
        assert_eq!(
            share.series[1].points,
            [(1.0, 70.0), (2.0, 70.0), (3.0, 70.0)]
        );
        assert_eq!(share.hlines, [("true share 55.0".to_string(), 55.0)]);
        // Different val splits: no single true share to draw.
        let differ = compare_charts(
            &[("a".into(), run(40.0, 55.0)), ("b".into(), run(70.0, 50.0))],
            &[],
        );
        assert_eq!(differ[4].1.title, "predicted share of class 0 on val");
        assert!(differ[4].1.hlines.is_empty());

        let svg = line_chart_svg(&same[0].1, (640, 400)).unwrap();
        assert!(
            svg.starts_with("<svg width=\"640\" height=\"400\""),
            "{svg:.80}"
        );
        // A line per run in the palette's first two colours (and its legend entry), no third.
        for colour in ["#E6194B", "#3CB44B"] {
            let line = format!("stroke=\"{colour}\" stroke-width=\"2\"");
            assert_eq!(svg.matches(&line).count(), 2, "{colour}");
        }
        assert!(!svg.contains("#FFE119"));
        // A lone reference line is grey, not red beside the first run's red.
        let svg = line_chart_svg(share, (640, 400)).unwrap();
        assert!(svg.contains("stroke=\"#5A5A5A\" stroke-width=\"2\""));
        assert!(!svg.contains("#FF0000"));
        let svg = confusion_chart_svg("c", &[vec![5, 1], vec![2, 7]], &labels, (480, 450)).unwrap();
        assert_eq!(
            svg.matches("<rect").count() - 1,
            4,
            "a cell per count, after the background"
        );
    }
}
