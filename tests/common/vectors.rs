//! The recorded etsy vectors (`tests/fixtures/vectors`, what etsy statsd 0.9.0 flushed): where
//! they are, and how their etsy config
//! maps onto kstatsd's TOML. Shared by the in-process replay and the over-UDP replay.

use serde_json::Value;
use std::path::PathBuf;

pub fn vectors_dir() -> PathBuf {
    std::env::var_os("KSTATSD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors")))
}

/// Maps a vector's etsy config onto kstatsd's TOML.
pub fn toml_for(etsy: &Value) -> String {
    let mut a = Vec::new();
    if let Some(p) = etsy.get("percentThreshold") {
        a.push(format!("percentiles = {p}"));
    }
    if let Some(h) = etsy.get("histogram") {
        let rules: Vec<String> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{{ metric = {}, bins = {} }}", r["metric"], r["bins"]))
            .collect();
        a.push(format!("histograms = [{}]", rules.join(", ")));
    }
    if let Some(d) = etsy.get("deleteIdleStats") {
        a.push(format!("delete_idle_stats = {d}"));
    }
    if let Some(g) = etsy.get("graphite") {
        for (etsy_key, ours) in [
            ("legacyNamespace", "legacy_namespace"),
            ("globalPrefix", "global_prefix"),
            ("prefixCounter", "prefix_counter"),
            ("prefixTimer", "prefix_timer"),
            ("prefixGauge", "prefix_gauge"),
            ("prefixSet", "prefix_set"),
            ("globalSuffix", "global_suffix"),
        ] {
            if let Some(v) = g.get(etsy_key) {
                a.push(format!("{ours} = {v}"));
            }
        }
    }
    format!("[aggregate]\n{}\n", a.join("\n"))
}

/// Is `name` one of kstatsd's own meta names (which the vectors leave out or do not know)?
pub fn is_meta(name: &str) -> bool {
    name.contains("statsd.")
}

pub fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set KSTATSD_VECTORS to the vectors folder)", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// One flush of a vector: what etsy flushed, name → value, with etsy's names spelled the way
/// kstatsd deliberately differs (see [`kstatsd_name`]).
pub fn wanted(flush: &Value) -> std::collections::BTreeMap<String, f64> {
    flush["flushed"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (kstatsd_name(k), x.as_f64().unwrap()))
        .collect()
}

/// The one deliberate difference in the vectors' names: a bare tag (`#x`), which etsy writes as
/// `;x` and carbon's tag database refuses, is `;x=true` in kstatsd (docs/protocol.md).
pub fn kstatsd_name(etsy: &str) -> String {
    let mut parts = etsy.split(';');
    let mut name = parts.next().unwrap_or_default().to_string();
    for tag in parts {
        name.push(';');
        name.push_str(tag);
        if !tag.contains('=') {
            name.push_str("=true");
        }
    }
    name
}

/// Compares one of kstatsd's flushes with etsy's: every etsy name must be there with an equal
/// value (`equal` decides, so rates can get a margin), and kstatsd may add only its own meta
/// names. Appends one line per difference to `failures`.
pub fn compare(
    i: usize,
    want: &std::collections::BTreeMap<String, f64>,
    got: &std::collections::BTreeMap<String, f64>,
    equal: &dyn Fn(&str, f64, f64) -> bool,
    failures: &mut Vec<String>,
) {
    for (name, w) in want {
        match got.get(name) {
            Some(g) if equal(name, *g, *w) => {}
            Some(g) => failures.push(format!("flush {i}: {name}: etsy {w}, kstatsd {g}")),
            None => failures.push(format!("flush {i}: {name}: etsy {w}, kstatsd has nothing")),
        }
    }
    for name in got.keys().filter(|n| !want.contains_key(*n) && !is_meta(n)) {
        failures.push(format!("flush {i}: {name}: kstatsd flushed it, etsy did not"));
    }
}
