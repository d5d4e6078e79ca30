//! `rnnlab report RUN... --html DIR` in a real browser: two tiny demo runs, their report loaded by
//! headless Chromium (Debian's `chromium`). The DOM must hold one table row per run with the
//! Markdown report's cells, every figure (by its title), each run's diagnosis and the config
//! keys that differ; the console must stay free of errors; a screenshot must show the figures.
//!
//! Without chromium the test is skipped with a message, unless `CI` is set: there it fails
//! (`.ci/run` installs chromium).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

fn demo() -> String {
    format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// Runs `cmd` with stdout and stderr in files, killing it after `limit`; returns (status ok,
/// stdout, stderr).
fn run_with_limit(mut cmd: Command, dir: &Path, limit: Duration) -> (bool, String, String) {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("start process");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish in {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (status.success(), read(&out), read(&err))
}

fn rnnlab(args: &[&str], dir: &Path) -> String {
    let mut c = Command::new(BIN);
    c.args(args).env("RUST_LOG", "warn");
    let (ok, out, err) = run_with_limit(c, dir, Duration::from_secs(300));
    assert!(ok, "rnnlab {args:?} failed:\n{err}");
    out
}

/// Headless Chromium on `page` with a fresh profile, no network services, and `extra` flags.
fn chromium_cmd(chrome: &Path, profile: &Path, page: &Path, extra: &[String]) -> Command {
    let mut c = Command::new(chrome);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()));
    c
}

/// The text of an HTML fragment: tags dropped, the references a serializer writes decoded.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", "\u{a0}")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every `<open ...>...</close>` element's inner HTML, in order (no nesting of the same tag).
fn elements<'a>(html: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(open) {
        let after = &rest[i..];
        let body_start = after.find('>').expect("tag closes") + 1;
        let end = after
            .find(close)
            .unwrap_or_else(|| panic!("{open} not closed"));
        out.push(&after[body_start..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// The texts of the cells of each `<tr>` opened by `row_open` in `table`: its header cell, then
/// its data cells.
fn row_texts(table: &str, row_open: &str) -> Vec<Vec<String>> {
    elements(table, row_open, "</tr>")
        .iter()
        .map(|r| {
            let mut cells = elements(r, "<th", "</th>");
            cells.extend(elements(r, "<td", "</td>"));
            cells.iter().map(|c| text(c)).collect()
        })
        .collect()
}

/// The cells of the Markdown table rows (after the heading and the `---` line).
fn markdown_rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| run |") && !l.starts_with("| --- |"))
        .map(|l| {
            l.trim_start_matches("| ")
                .trim_end_matches(" |")
                .split(" | ")
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn html_report_loads_in_chromium_with_every_row_figure_and_diagnosis() {
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed (.ci/run installs Debian's `chromium`)"
        );
        eprintln!(
            "skipped: no `chromium` on PATH (apt-get install --no-install-recommends chromium)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The second name holds markup characters: the page must show them as text.
    let names = ["seed-1", "lr-1e-2 <i>&co"];
    let runs: Vec<PathBuf> = names.iter().map(|n| d.join(n)).collect();
    let demo = demo();
    let callbacks = r#"callbacks=[{type="grad_norm"},{type="predictions"},{type="spectral"}]"#;
    for (run, extra) in runs.iter().zip([
        ["seed=1", "optim.transforms.1.lr=0.003"],
        ["seed=2", "optim.transforms.1.lr=0.01"],
    ]) {
        let mut args = vec!["train", demo.as_str(), "--threads", "2", "--out"];
        args.push(run.to_str().unwrap());
        for s in [
            "data.size=1200",
            "train.epochs=2",
            callbacks,
            extra[0],
            extra[1],
        ] {
            args.extend(["--set", s]);
        }
        rnnlab(&args, d);
    }
    let html_dir = d.join("html");
    let run_args: Vec<&str> = runs.iter().map(|r| r.to_str().unwrap()).collect();
    let md = rnnlab(
        &[
            &["report"][..],
            &run_args,
            &["--html", html_dir.to_str().unwrap()],
        ]
        .concat(),
        d,
    );
    let page = html_dir.join("report.html");
    let source = std::fs::read_to_string(&page).unwrap();

    // Self-contained: no script, no stylesheet or image to fetch; the only URL is SVG's namespace.
    for banned in [
        "<script", "<link", "<img", "<iframe", "src=", "url(", "@import",
    ] {
        assert!(!source.contains(banned), "report.html contains `{banned}`");
    }
    let urls = source.matches("://").count();
    let namespaces = source.matches("\"http://www.w3.org/2000/svg\"").count();
    assert_eq!(urls, namespaces, "report.html refers to a URL");

    // Load it: the DOM after the browser parsed it, and the console.
    let profile = tempfile::tempdir().unwrap();
    let (ok, dom, stderr) = run_with_limit(
        chromium_cmd(&chrome, profile.path(), &page, &["--dump-dom".into()]),
        d,
        Duration::from_secs(120),
    );
    assert!(ok, "chromium --dump-dom failed:\n{stderr}");
    let console: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(dom.contains("<title>rnnlab report: seed-1, lr-1e-2 &lt;i&gt;&amp;co</title>"));
    assert!(!dom.contains("<i>"), "a run name was parsed as markup");

    // The comparison table: one row per run, the same cells as the Markdown report's.
    let table = elements(&dom, "<table class=\"runs\"", "</table>");
    assert_eq!(table.len(), 1);
    let rows = row_texts(table[0], "<tr class=\"run\"");
    let md_rows = markdown_rows(&md);
    assert_eq!(md_rows.len(), 2, "{md}");
    assert_eq!(rows, md_rows);
    assert_eq!(rows[0][0], names[0]);
    assert_eq!(rows[1][0], names[1]);
    assert_eq!(rows[1][1], "2", "epochs");

    // Every figure, by its title; each curve holds a line per run.
    let labels: Vec<String> = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(runs[0].join("confusion.json")).unwrap(),
    )
    .unwrap()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels.len(), 2);
    let mut want: Vec<String> = [
        "val accuracy",
        "test accuracy",
        "val loss",
        "train loss",
        "gradient norm p50",
        "gradient norm p99",
        "learning rate (last step of the epoch)",
        "largest spectral radius over the recurrent gate blocks",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let curves = want.len() + labels.len();
    want.extend(
        labels
            .iter()
            .map(|l| format!("predicted share of class {l} on val")),
    );
    for n in names {
        for split in ["val", "test"] {
            want.push(format!("{n}: confusion matrix ({split}, final epoch)"));
        }
    }
    let svgs = elements(&dom, "<svg", "</svg>");
    let titles: Vec<String> = svgs
        .iter()
        .map(|s| {
            text(
                elements(s, "<title", "</title>")
                    .first()
                    .expect("svg title"),
            )
        })
        .collect();
    assert_eq!(titles, want);
    // Each curve figure draws both runs: plotters' first two palette colours, 2 px wide.
    for (svg, title) in svgs.iter().zip(&titles).take(curves) {
        for colour in ["#E6194B", "#3CB44B"] {
            assert!(
                svg.contains(&format!("stroke=\"{colour}\" stroke-width=\"2\"")),
                "`{title}` has no line in {colour}"
            );
        }
    }

    // Each run's diagnosis, the same causes as `rnnlab diagnose` finds.
    let articles = elements(&dom, "<article class=\"diagnosis\"", "</article>");
    assert_eq!(articles.len(), 2);
    for ((article, run), name) in articles.iter().zip(&runs).zip(names) {
        assert!(text(article).starts_with(name), "{}", text(article));
        let cli = rnnlab(&["diagnose", run.to_str().unwrap()], d);
        let holding: Vec<String> = cli
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .filter(|l| l.ends_with(" — holds"))
            .map(str::to_string)
            .collect();
        let shown: Vec<String> = elements(article, "<h4", "</h4>")
            .iter()
            .map(|h| text(h))
            .filter(|h| h.ends_with(" — holds"))
            .collect();
        assert_eq!(shown, holding);
        if holding.is_empty() {
            assert!(article.contains("No cause holds."));
        }
        assert!(article.contains("Checked and not holding"));
    }

    // Config differences: the keys set differently, not those set alike.
    let config = elements(&dom, "<table class=\"config\"", "</table>");
    assert_eq!(config.len(), 1);
    let config_rows = row_texts(config[0], "<tr");
    assert_eq!(config_rows[0], ["key", names[0], names[1]]);
    assert!(config_rows.contains(&vec!["seed".into(), "1".into(), "2".into()]));
    assert!(config_rows.contains(&vec![
        "optim.transforms.1.lr".into(),
        "0.003".into(),
        "0.01".into()
    ]));
    assert!(
        !config_rows.iter().any(|r| r[0] == "data.size"),
        "a key set alike is listed"
    );

    // A screenshot: the page is drawn, with the figures' colours.
    let shot = d.join("shot.png");
    let profile = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run_with_limit(
        chromium_cmd(
            &chrome,
            profile.path(),
            &page,
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,900".into(),
            ],
        ),
        d,
        Duration::from_secs(120),
    );
    assert!(ok, "chromium --screenshot failed:\n{stderr}");
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot written"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 900));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let non_white = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
    let shot_kept = std::env::temp_dir().join("rnnlab-html-report-test.png");
    let _ = std::fs::copy(&shot, &shot_kept);
    assert!(
        colours.len() > 200,
        "only {} colours in the screenshot ({})",
        colours.len(),
        shot_kept.display()
    );
    assert!(
        non_white > pixels.len() / 10,
        "only {non_white} of {} pixels are not white",
        pixels.len()
    );
    // The curves of the two runs are drawn in plotters' first two palette colours.
    for (name, rgb) in [("first run", [230, 25, 75]), ("second run", [60, 180, 75])] {
        let n = pixels
            .iter()
            .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) < 12))
            .count();
        assert!(n > 100, "the {name}'s curve colour covers only {n} pixels");
    }
}
