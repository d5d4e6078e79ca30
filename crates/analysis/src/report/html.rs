//! `rnnlab report RUN... --html DIR`: one self-contained `DIR/report.html` comparing runs.
//!
//! The page holds the comparison table (the same cells as the Markdown report), the curves
//! overlaying the runs and each run's confusion matrices as inline SVG (drawn by
//! [`rnnlab_callbacks::plot`]), each run's diagnosis ([`crate::diagnose`]) and the keys of the
//! resolved configs whose values differ between runs. No scripts, no external files: a
//! Content-Security-Policy forbids every fetch, so the page shows the same offline as online.
//! Every text taken from a run is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rnnlab_callbacks::plot;

use super::{cells, headings, row, NamedRun, RunRow, TABLE_NOTE};
use crate::diagnose::{self, Diagnosis, Verdict};

/// `text` with the characters HTML gives a meaning to replaced by references (for element
/// content and quoted attribute values).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The final confusion matrices a run wrote (`confusion.json`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct RunConfusion {
    /// Class names in index order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Val split.
    pub val: Option<ConfusionCounts>,
    /// Test split.
    pub test: Option<ConfusionCounts>,
}

/// `counts[true][predicted]` of one split.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ConfusionCounts {
    /// The matrix.
    pub counts: Vec<Vec<u64>>,
}

/// Everything the page shows of one run.
struct RunPage {
    name: String,
    history: Vec<rnnlab_core::EpochMetrics>,
    confusion: Option<RunConfusion>,
    config: Option<toml::Table>,
    diagnosis: Diagnosis,
}

/// Reads `file` when it exists (`None` when it does not), parsed by `parse`; any other failure
/// is an error naming the file.
fn read_optional<T>(file: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(&text)
            .map(Some)
            .with_context(|| format!("reading {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

fn load(run: &Path, (name, history): NamedRun, t: &diagnose::Thresholds) -> Result<RunPage> {
    let confusion = read_optional(&run.join("confusion.json"), |s| {
        Ok(serde_json::from_str::<RunConfusion>(s)?)
    })?;
    let config = read_optional(&run.join("config.resolved.toml"), |s| {
        Ok(toml::from_str::<toml::Table>(s)?)
    })?;
    let diagnosis =
        diagnose::diagnose(run, t).with_context(|| format!("diagnosing {}", run.display()))?;
    Ok(RunPage {
        name,
        history,
        confusion,
        config,
        diagnosis,
    })
}

/// The page of `runs` (run folders); `window` is K of the swing / std columns and of diagnose.
pub fn render(runs: &[PathBuf], window: usize) -> Result<String> {
    let (_, loaded) = super::report(runs, window)?;
    let thresholds = diagnose::Thresholds {
        window,
        ..Default::default()
    };
    let pages: Vec<RunPage> = runs
        .iter()
        .zip(loaded)
        .map(|(run, named)| load(run, named, &thresholds))
        .collect::<Result<_>>()?;
    let rows: Vec<RunRow> = pages
        .iter()
        .map(|p| row(&p.name, &p.history, window))
        .collect();
    let names: Vec<&str> = pages.iter().map(|p| p.name.as_str()).collect();

    let mut h = String::new();
    let title = format!("rnnlab report: {}", names.join(", "));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    let _ = writeln!(
        h,
        "<header><h1>Run comparison</h1><p class=\"meta\">{} run{}: {} · written by rnnlab {}</p>\n\
         <nav><a href=\"#table\">table</a> <a href=\"#curves\">curves</a> \
         <a href=\"#confusion\">confusion matrices</a> <a href=\"#diagnosis\">diagnosis</a> \
         <a href=\"#config\">config differences</a></nav></header>",
        pages.len(),
        if pages.len() == 1 { "" } else { "s" },
        escape(&names.join(", ")),
        env!("CARGO_PKG_VERSION"),
    );
    section_table(&mut h, &rows, window);
    let labels = pages
        .iter()
        .find_map(|p| p.confusion.as_ref().map(|c| c.labels.clone()))
        .unwrap_or_default();
    let named: Vec<NamedRun> = pages
        .iter()
        .map(|p| (p.name.clone(), p.history.clone()))
        .collect();
    section_curves(&mut h, &named, &labels)?;
    section_confusion(&mut h, &pages)?;
    section_diagnosis(&mut h, &pages);
    section_config(&mut h, &pages);
    h.push_str("</main>\n</body>\n</html>\n");
    Ok(h)
}

/// Writes `dir/report.html` (see [`render`]); returns its path. Nothing is written when a run
/// cannot be read.
pub fn write(runs: &[PathBuf], dir: &Path, window: usize) -> Result<PathBuf> {
    let page = render(runs, window)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("report.html");
    rnnlab_core::write_atomic(&path, page.as_bytes())?;
    Ok(path)
}

fn section_table(h: &mut String, rows: &[RunRow], window: usize) {
    h.push_str("<section id=\"table\"><h2>Comparison</h2>\n<div class=\"scroll\"><table class=\"runs\">\n<thead><tr>");
    for head in headings(window) {
        let _ = write!(h, "<th>{}</th>", escape(&head));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        h.push_str("<tr class=\"run\">");
        for (i, c) in cells(r).iter().enumerate() {
            let tag = if i == 0 { "th scope=\"row\"" } else { "td" };
            let close = if i == 0 { "th" } else { "td" };
            let _ = write!(h, "<{tag}>{}</{close}>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    let _ = writeln!(
        h,
        "</tbody></table></div>\n<p class=\"note\">{}</p></section>",
        escape(TABLE_NOTE)
    );
}

/// Pixel size of the curves: about the width they are shown at, so their text stays legible.
const CURVE_SIZE: (u32, u32) = (640, 400);
/// Pixel size of the confusion matrices.
const CONFUSION_SIZE: (u32, u32) = (480, 450);

/// `svg` (a document from the plot module) with `title` as its accessible name, inside a
/// `<figure>`; captioned with the title when the plot module draws no text (no font found).
fn figure(svg: &str, title: &str) -> Result<String> {
    figure_with(svg, title, !plot::has_font())
}

fn figure_with(svg: &str, title: &str, caption: bool) -> Result<String> {
    let Some(open_end) = svg
        .find("<svg")
        .and_then(|i| svg[i..].find('>').map(|j| i + j + 1))
    else {
        bail!("the plot module returned no <svg> element for `{title}`");
    };
    let t = escape(title);
    let caption = if caption {
        format!("<figcaption>{t}</figcaption>")
    } else {
        String::new()
    };
    Ok(format!(
        "<figure>{}<title>{t}</title>{}{caption}</figure>\n",
        &svg[..open_end],
        &svg[open_end..]
    ))
}

fn section_curves(h: &mut String, runs: &[NamedRun], labels: &[String]) -> Result<()> {
    h.push_str("<section id=\"curves\"><h2>Curves</h2>\n<div class=\"figures\">\n");
    let charts = plot::compare_charts(runs, labels);
    if charts.is_empty() {
        h.push_str("<p class=\"none\">No run logged any metric to draw.</p>\n");
    }
    for (_, chart) in &charts {
        h.push_str(&figure(
            &plot::line_chart_svg(chart, CURVE_SIZE)?,
            &chart.title,
        )?);
    }
    h.push_str("</div></section>\n");
    Ok(())
}

fn section_confusion(h: &mut String, pages: &[RunPage]) -> Result<()> {
    h.push_str("<section id=\"confusion\"><h2>Confusion matrices</h2>\n<p class=\"note\">Final evaluation (confusion.json): rows true class, columns predicted, cells shaded by the share of their row.</p>\n");
    for p in pages {
        let _ = writeln!(h, "<h3>{}</h3>", escape(&p.name));
        let Some(c) = &p.confusion else {
            h.push_str("<p class=\"none\">No confusion.json in this run folder.</p>\n");
            continue;
        };
        h.push_str("<div class=\"figures confusion\">\n");
        for (split, counts) in [("val", &c.val), ("test", &c.test)] {
            if let Some(counts) = counts {
                let title = format!("{}: confusion matrix ({split}, final epoch)", p.name);
                let svg =
                    plot::confusion_chart_svg(&title, &counts.counts, &c.labels, CONFUSION_SIZE)?;
                h.push_str(&figure(&svg, &title)?);
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
    Ok(())
}

fn section_diagnosis(h: &mut String, pages: &[RunPage]) {
    h.push_str("<section id=\"diagnosis\"><h2>Diagnosis</h2>\n");
    for p in pages {
        let d = &p.diagnosis;
        let _ = writeln!(
            h,
            "<article class=\"diagnosis\"><h3>{} <span class=\"meta\">({} epochs)</span></h3>",
            escape(&p.name),
            d.epochs
        );
        let holding: Vec<_> = d
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Holds)
            .collect();
        if holding.is_empty() {
            h.push_str("<p class=\"clear\">No cause holds.</p>\n");
        }
        for f in &holding {
            let _ = write!(
                h,
                "<div class=\"finding holds\"><h4>{} — holds</h4><p class=\"rule\">Rule: {}</p><ul>",
                escape(f.cause.title()),
                escape(&f.rule)
            );
            for e in &f.evidence {
                let _ = write!(h, "<li>{}</li>", escape(e));
            }
            h.push_str("</ul></div>\n");
        }
        let fixes = d.fixes();
        if !fixes.is_empty() {
            h.push_str("<h4>Fixes, in order</h4><ol class=\"fixes\">");
            for x in &fixes {
                let _ = write!(h, "<li><code>{}</code></li>", escape(&x.to_string()));
            }
            h.push_str("</ol>\n");
        }
        let rest: Vec<_> = d
            .findings
            .iter()
            .filter(|f| f.verdict != Verdict::Holds)
            .collect();
        let _ = write!(
            h,
            "<details><summary>Checked and not holding ({})</summary><ul>",
            rest.len()
        );
        for f in rest {
            let what = match &f.verdict {
                Verdict::Unknown(why) => format!("not evaluated: {why}"),
                _ => format!("{} ({})", f.evidence.join("; "), f.rule),
            };
            let _ = write!(
                h,
                "<li><b>{}</b>: {}</li>",
                escape(f.cause.title()),
                escape(&what)
            );
        }
        h.push_str("</ul></details></article>\n");
    }
    h.push_str("</section>\n");
}

/// `table` as dotted keys (`optim.transforms.0.lr`) and TOML values. Arrays of scalars stay one
/// value; arrays holding tables or arrays are indexed.
pub fn flatten(table: &toml::Table) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(&key(k), v, out);
                }
            }
            toml::Value::Array(a) if a.iter().any(|x| x.is_table() || x.is_array()) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&key(&i.to_string()), v, out);
                }
            }
            v => {
                out.insert(prefix.to_string(), v.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", &toml::Value::Table(table.clone()), &mut out);
    out
}

/// The dotted keys whose values are not the same in every config (a key missing from some
/// counts as different), with each config's value.
pub fn config_differences(
    configs: &[BTreeMap<String, String>],
) -> Vec<(String, Vec<Option<String>>)> {
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<Option<String>> = configs.iter().map(|c| c.get(k).cloned()).collect();
            values
                .windows(2)
                .any(|w| w[0] != w[1])
                .then(|| (k.clone(), values))
        })
        .collect()
}

fn section_config(h: &mut String, pages: &[RunPage]) {
    h.push_str("<section id=\"config\"><h2>Config differences</h2>\n");
    let with: Vec<&RunPage> = pages.iter().filter(|p| p.config.is_some()).collect();
    for p in pages.iter().filter(|p| p.config.is_none()) {
        let _ = writeln!(
            h,
            "<p class=\"none\">{}: no config.resolved.toml in this run folder.</p>",
            escape(&p.name)
        );
    }
    if with.len() < 2 {
        h.push_str("<p class=\"none\">Fewer than two resolved configs: nothing to compare.</p>\n");
    } else {
        let flat: Vec<_> = with
            .iter()
            .map(|p| flatten(p.config.as_ref().expect("filtered on config")))
            .collect();
        let diffs = config_differences(&flat);
        if diffs.is_empty() {
            h.push_str("<p class=\"none\">The resolved configs are the same.</p>\n");
        } else {
            h.push_str("<div class=\"scroll\"><table class=\"config\"><thead><tr><th>key</th>");
            for p in &with {
                let _ = write!(h, "<th>{}</th>", escape(&p.name));
            }
            h.push_str("</tr></thead><tbody>\n");
            for (k, values) in diffs {
                let _ = write!(h, "<tr><th scope=\"row\"><code>{}</code></th>", escape(&k));
                for v in values {
                    match v {
                        Some(v) => {
                            let _ = write!(h, "<td><code>{}</code></td>", escape(&v));
                        }
                        None => h.push_str("<td class=\"absent\">–</td>"),
                    }
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</tbody></table></div>\n");
        }
    }
    for p in &with {
        let text =
            toml::to_string(p.config.as_ref().expect("filtered on config")).unwrap_or_default();
        let _ = writeln!(
            h,
            "<details><summary>Resolved config of {}</summary><pre>{}</pre></details>",
            escape(&p.name),
            escape(&text)
        );
    }
    h.push_str("</section>\n");
}

const STYLE: &str = "
body { margin: 0; background: #f6f7f9; color: #1d2330; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
header { border-bottom: 2px solid #d5dae3; margin-bottom: 8px; }
h1 { margin: 8px 0 2px; font-size: 26px; }
h2 { margin: 28px 0 10px; font-size: 20px; border-bottom: 1px solid #d5dae3; padding-bottom: 4px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
h4 { margin: 10px 0 4px; font-size: 15px; }
.meta { color: #5b6475; font-weight: normal; margin: 0 0 6px; }
nav a { margin-right: 14px; color: #1f5fbf; text-decoration: none; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #d5dae3; padding: 4px 8px; text-align: right; white-space: nowrap; }
thead th { background: #e9edf3; text-align: center; white-space: normal; vertical-align: bottom; }
tbody th { text-align: left; }
table.config td, table.config th { text-align: left; }
td.absent { color: #8a93a3; text-align: center; }
.note { color: #5b6475; font-size: 13px; max-width: 100ch; }
.none { color: #5b6475; font-style: italic; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 14px; }
.figures.confusion { grid-template-columns: repeat(auto-fill, minmax(360px, 480px)); }
figure { margin: 0; background: #fff; border: 1px solid #d5dae3; border-radius: 4px; padding: 6px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 12px; color: #5b6475; text-align: center; }
article.diagnosis { background: #fff; border: 1px solid #d5dae3; border-radius: 4px; padding: 4px 16px 10px; margin-bottom: 12px; }
.finding.holds { border-left: 4px solid #c0392b; padding-left: 10px; margin: 8px 0; }
.finding.holds h4 { color: #a12b1f; }
.rule { color: #5b6475; font-size: 13px; margin: 2px 0; }
.clear { color: #1e7b34; font-weight: 600; }
ol.fixes code, td code, th code { background: #eef1f6; padding: 1px 4px; border-radius: 3px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: #33405a; }
pre { background: #fff; border: 1px solid #d5dae3; padding: 8px; overflow-x: auto; font-size: 12px; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_every_markup_character() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(escape("plain – text"), "plain – text");
    }

    #[test]
    fn flatten_gives_dotted_keys_and_indexes_arrays_of_tables() {
        let t: toml::Table = toml::from_str(
            r#"
            seed = 42
            [data]
            size = 1200
            formats = ["png", "svg"]
            split = { val = 0.1 }
            [optim]
            transforms = [{ type = "clip_global_norm", max_norm = 5.0 }, { type = "adam", lr = 0.003 }]
            "#,
        )
        .unwrap();
        let f = flatten(&t);
        let want: Vec<(&str, &str)> = vec![
            ("data.formats", r#"["png", "svg"]"#),
            ("data.size", "1200"),
            ("data.split.val", "0.1"),
            ("optim.transforms.0.max_norm", "5.0"),
            ("optim.transforms.0.type", r#""clip_global_norm""#),
            ("optim.transforms.1.lr", "0.003"),
            ("optim.transforms.1.type", r#""adam""#),
            ("seed", "42"),
        ];
        let got: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_keys_that_differ_are_listed_and_a_missing_key_differs() {
        let c = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = c(&[("seed", "1"), ("lr", "0.1"), ("epochs", "2")]);
        let b = c(&[
            ("seed", "2"),
            ("lr", "0.1"),
            ("epochs", "2"),
            ("ema", "0.9"),
        ]);
        let d = config_differences(&[a, b]);
        assert_eq!(
            d,
            vec![
                ("ema".to_string(), vec![None, Some("0.9".to_string())]),
                (
                    "seed".to_string(),
                    vec![Some("1".to_string()), Some("2".to_string())]
                ),
            ]
        );
    }

    #[test]
    fn a_figure_gets_its_escaped_title_inside_the_svg() {
        let svg = "<svg width=\"9\" viewBox=\"0 0 9 9\">\n<rect/>\n</svg>\n";
        let f = figure_with(svg, "a <b> & c", true).unwrap();
        assert_eq!(
            f,
            "<figure><svg width=\"9\" viewBox=\"0 0 9 9\"><title>a &lt;b&gt; &amp; c</title>\n<rect/>\n</svg>\n\
             <figcaption>a &lt;b&gt; &amp; c</figcaption></figure>\n"
        );
        assert_eq!(
            figure_with(svg, "t", false).unwrap(),
            "<figure><svg width=\"9\" viewBox=\"0 0 9 9\"><title>t</title>\n<rect/>\n</svg>\n</figure>\n"
        );
        assert!(figure("no figure", "t").is_err());
    }

    #[test]
    fn a_broken_confusion_file_is_an_error_naming_it_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(
            run.join(rnnlab_core::METRICS_FILE),
            "{\"epoch\":1,\"val_acc\":60.0,\"train_loss\":0.7}\n{\"epoch\":2,\"val_acc\":70.0,\"train_loss\":0.6}\n",
        )
        .unwrap();
        std::fs::write(run.join("confusion.json"), "{ \"labels\": [").unwrap();
        let out = dir.path().join("html");
        let err = write(std::slice::from_ref(&run), &out, 10).unwrap_err();
        assert!(format!("{err:#}").contains("confusion.json"), "{err:#}");
        assert!(!out.join("report.html").exists());

        // Without confusion.json and config the page says so instead of failing.
        std::fs::remove_file(run.join("confusion.json")).unwrap();
        let page = std::fs::read_to_string(write(&[run], &out, 10).unwrap()).unwrap();
        assert!(page.contains("No confusion.json in this run folder."));
        assert!(page.contains("r: no config.resolved.toml in this run folder."));
        assert_eq!(page.matches("<tr class=\"run\">").count(), 1);
    }
}
