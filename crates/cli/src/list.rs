//! `rnnlab list`: every registered plugin with its parameters and defaults, and the readers.

use std::fmt::Write;

use rnnlab_core::{ParamSpec, Registry, Table};

/// The listing as text.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    section(&mut out, "models ([model] type)", &r.models);
    section(&mut out, "cells ([model] cell.type)", &r.cells);
    section(
        &mut out,
        "transforms ([optim] transforms[].type, applied in order)",
        &r.transforms,
    );
    section(
        &mut out,
        "schedulers ([optim] scheduler.type)",
        &r.schedulers,
    );
    section(&mut out, "callbacks ([[callbacks]] type)", &r.callbacks);
    section(
        &mut out,
        "readers ([data] type; their keys go in [data])",
        &r.readers,
    );
    out
}

fn section<F: Clone>(out: &mut String, title: &str, table: &Table<F>) {
    let _ = writeln!(out, "{title}:");
    if !table.shared().is_empty() {
        let _ = writeln!(out, "  every {} also takes:", table.kind());
        params(out, table.shared());
    }
    for e in table.entries() {
        let _ = writeln!(out, "  {:<20} {}", e.spec.name, e.spec.doc);
        params(out, &e.spec.params);
    }
    out.push('\n');
}

fn params(out: &mut String, specs: &[ParamSpec]) {
    for p in specs {
        let default = p.default_shown();
        let _ = writeln!(out, "      {:<18} = {:<14} {}", p.name, default, p.doc);
    }
}
