//! The module graph: reads every file under `src/` and checks that each `crate::` path (in `use`
//! lines and inline, test code included) points down the layer order of docs/architecture.md,
//! that the modules of one layer import each other without a cycle, and that the leaves import
//! nothing. A failure names the file and line of every offending path. Runs on the test thread;
//! needs nothing but the source tree.
//!
//! The order, bottom first (a module may use the layers below its own, and the modules of its
//! own layer as long as that makes no cycle):
//!
//! ```text
//! fmt, sys                                        leaves: import nothing from the crate
//! parse, aggregate
//! ingest, net, dump, flush, sink, source, admin   the components
//! config                                          composes the components' sections
//! server, flush_thread, daemon                    the threads and their assembly
//! ```
//!
//! `main.rs` (the binary) sits above all of them. A new top-level module must be given a layer
//! here before the test passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Bottom first.
const LAYERS: &[&[&str]] = &[
    &["fmt", "sys", "settings"],
    &["parse", "aggregate"],
    &["ingest", "net", "flush", "sink", "source", "admin"],
    &["config"],
    &["server", "flush_thread", "daemon"],
];

/// Modules that import nothing from the crate.
const LEAVES: &[&str] = &["fmt", "sys", "settings"];

/// One `crate::` path: where it is and which top-level module it names.
#[derive(Clone, Debug)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}` uses `crate::{}`", self.file, self.line, self.from, self.to)
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The source with comments, string and character literals blanked out (newlines kept, so
/// that byte offsets still give the right line).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = (i == 0 || !is_ident(b[i - 1])).then(|| raw_string_start(rest)).flatten()
        {
            // r"…", r#"…"#, br#"…"#: up to the quote followed by as many hashes.
            let open = rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat(b'#').take(hashes)).collect();
            let end = b[i + open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| i + open + p + close.len());
            for &c in &b[i..end] {
                blank(&mut out, c);
            }
            i = end;
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let n = if b[i] == b'\\' { 2 } else { 1 };
                for &c in &b[i..(i + n).min(b.len())] {
                    blank(&mut out, c);
                }
                i += n;
            }
            out.push(b' ');
            i += 1;
        } else if let Some(len) = (b[i] == b'\'').then(|| char_literal_len(rest)).flatten() {
            out.extend(std::iter::repeat(b' ').take(len));
            i += len;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out.truncate(b.len());
    String::from_utf8_lossy(&out).into_owned()
}

/// `Some(hashes)` when `s` starts a raw string literal (`r"`, `r#"`, `br"`, …) that is not the
/// tail of an identifier.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of the character literal (`'a'`, `'\n'`, `'\''`, `'\u{1F600}'`) that `s` starts
/// with; `None` for a lifetime (`'a`).
fn char_literal_len(s: &[u8]) -> Option<usize> {
    let end = match *s.get(1)? {
        b'\\' => 3 + s.get(3..)?.iter().position(|&c| c == b'\'')?,
        lead => {
            let len = match lead {
                0..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            (s.get(1 + len) == Some(&b'\'')).then_some(1 + len)?
        }
    };
    Some(end + 1)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The top-level modules a path after `crate::` names: `sink::Sink` gives `sink`,
/// `{fmt::write_f64, sink::{self, Sink}}` gives `fmt` and `sink`.
fn heads(after: &str) -> Vec<String> {
    let after = after.trim_start();
    if let Some(group) = after.strip_prefix('{') {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(heads(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(heads(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let name: String = after.bytes().take_while(|&c| is_ident(c)).map(char::from).collect();
    if name.is_empty() || name == "self" {
        Vec::new()
    } else {
        vec![name]
    }
}

/// The module path of a file under `src/`: `sink/graphite/mod.rs` is `[sink, graphite]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// Every `crate::` path in `src`, and the `super::` paths that climb out of their top-level
/// module, by the top-level module they start in.
fn imports(src: &Path) -> Vec<Import> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    // `#[macro_export]` macros live at the crate root (`crate::section!`): each belongs to the
    // top-level module that defines it.
    let mut macros = BTreeMap::new();
    for path in &files {
        let Some(owner) = module_path(path.strip_prefix(src).unwrap()).first().cloned() else { continue };
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        for part in code.split("#[macro_export]").skip(1) {
            if let Some(rest) = part.trim_start().strip_prefix("macro_rules!") {
                let name: String =
                    rest.trim_start().bytes().take_while(|&c| is_ident(c)).map(char::from).collect();
                macros.insert(name, owner.clone());
            }
        }
    }
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).unwrap();
        let module = module_path(rel);
        // The crate root and the binary may name any module.
        let Some(from) = module.first().filter(|m| m.as_str() != "main").cloned() else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        let code = code_only(&text);
        let shown = PathBuf::from("src").join(rel).display().to_string();
        let line_of = |at: usize| code[..at].bytes().filter(|&c| c == b'\n').count() + 1;
        let bytes = code.as_bytes();
        let mut push = |at: usize, to: String| {
            let to = macros.get(&to).cloned().unwrap_or(to);
            if to != from {
                out.push(Import { file: shown.clone(), line: line_of(at), from: from.clone(), to });
            }
        };
        // Inline `mod x { … }` blocks open around the position being read: their brace depths.
        let (mut depth, mut inline_mods, mut mod_opens) = (0usize, Vec::new(), false);
        let boundary = |at: usize| at == 0 || !(is_ident(bytes[at - 1]) || bytes[at - 1] == b':');
        for at in 0..bytes.len() {
            let rest = &code[at..];
            match bytes[at] {
                b'{' => {
                    depth += 1;
                    if std::mem::take(&mut mod_opens) {
                        inline_mods.push(depth);
                    }
                }
                b'}' => {
                    if inline_mods.last() == Some(&depth) {
                        inline_mods.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                b';' => mod_opens = false,
                _ if !boundary(at) || (at > 0 && bytes[at - 1] == b'$') => {}
                _ if rest.starts_with("mod ") => mod_opens = true,
                _ if rest.starts_with("crate::") => {
                    for to in heads(&rest["crate::".len()..]) {
                        push(at, to);
                    }
                }
                _ if rest.starts_with("super::") => {
                    // Climbing as many levels as the module is deep names a top-level module.
                    let mut path = rest;
                    let mut up = 0;
                    while let Some(r) = path.strip_prefix("super::") {
                        up += 1;
                        path = r;
                    }
                    if up >= module.len() + inline_mods.len() {
                        for to in heads(path) {
                            push(at, to);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Every violation of the layer order, the leaves and acyclicity, one per line.
fn violations(src: &Path) -> String {
    let all = imports(src);
    let mut report = String::new();
    let mut unknown = BTreeSet::new();
    for i in &all {
        for m in [&i.from, &i.to] {
            if layer_of(m).is_none() && unknown.insert(m.clone()) {
                let _ = writeln!(report, "{i}: module `{m}` has no layer (add it to LAYERS)");
            }
        }
        let (Some(from), Some(to)) = (layer_of(&i.from), layer_of(&i.to)) else { continue };
        if LEAVES.contains(&i.from.as_str()) {
            let _ = writeln!(report, "{i}: `{}` is a leaf and imports nothing from the crate", i.from);
        } else if to > from {
            let _ = writeln!(
                report,
                "{i}: `{}` (layer {to}: {:?}) is above `{}` (layer {from}: {:?})",
                i.to, LAYERS[to], i.from, LAYERS[from]
            );
        }
    }
    // Cycles, among all edges (within a layer they are allowed only without one).
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in &all {
        edges.entry(i.from.as_str()).or_default().entry(i.to.as_str()).or_insert(i);
    }
    for cycle in cycles(&edges) {
        let names: Vec<&str> = cycle.iter().map(|i| i.from.as_str()).collect();
        let _ = writeln!(report, "cycle {} → {}:", names.join(" → "), names[0]);
        for i in cycle {
            let _ = writeln!(report, "    {i}");
        }
    }
    report
}

/// One cycle through each strongly connected group of modules (found by depth-first search),
/// as the imports that close it.
fn cycles<'a>(edges: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Import>>) -> Vec<Vec<&'a Import>> {
    let mut found: Vec<Vec<&Import>> = Vec::new();
    let mut in_a_cycle: BTreeSet<&str> = BTreeSet::new();
    for &start in edges.keys() {
        if in_a_cycle.contains(start) {
            continue;
        }
        // Depth-first from `start`, looking for a way back to it.
        let mut stack: Vec<(&str, Vec<&Import>)> = vec![(start, Vec::new())];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            let Some(next) = edges.get(at) else { continue };
            if let Some(back) = next.get(start) {
                let mut cycle = path.clone();
                cycle.push(*back);
                in_a_cycle.extend(cycle.iter().map(|i| i.from.as_str()));
                found.push(cycle);
                break;
            }
            for (&to, &import) in next {
                if seen.insert(to) {
                    let mut p = path.clone();
                    p.push(import);
                    stack.push((to, p));
                }
            }
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_follow_the_layers_without_a_cycle() {
    let report = violations(&src_dir());
    assert!(report.is_empty(), "forbidden imports in src/:\n{report}");
}

/// The checker itself, on a tree made for it: an upward import, a cycle within a layer, a leaf
/// that imports, an unknown module; and none of the paths hidden in comments or strings counts.
#[test]
fn the_checker_finds_each_kind_of_violation() {
    let dir = std::env::temp_dir().join(format!("kstatsd-module-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod flush;\npub mod server;\n");
    write("main.rs", "use kstatsd::server;\nfn main() {}\n");
    write("flush/mod.rs", "//! uses crate::server in a comment only\nuse crate::parse::Kind;\nmod thread;\n");
    write("flush/thread.rs", "fn f() {\n    let s = \"crate::daemon\";\n    crate::server::run();\n}\n");
    write(
        "sink/mod.rs",
        "use crate::{fmt::write_f64, source::Feed};\nmod tests {\n    use super::write_f64;\n}\n",
    );
    write("source/mod.rs", "pub fn f() { super::sink::x(); }\n");
    write("fmt.rs", "use crate::parse::Kind;\n");
    write("server/mod.rs", "use crate::parse::Kind;\nuse crate::nowhere::X;\n");
    write("parse/mod.rs", "fn f<'a>(c: char) -> bool { c == '\"' }\nuse crate::aggregate::Tables;\n");
    write("aggregate/mod.rs", "use r#\"crate::sink\"#;\n");
    let report = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    assert!(has("src/flush/thread.rs:3: `flush` uses `crate::server`: `server` (layer 4"), "{report}");
    assert!(has("src/fmt.rs:1: `fmt` uses `crate::parse`: `fmt` is a leaf"), "{report}");
    assert!(
        has("src/server/mod.rs:2: `server` uses `crate::nowhere`: module `nowhere` has no layer"),
        "{report}"
    );
    assert!(has("cycle sink → source → sink:") || has("cycle source → sink → source:"), "{report}");
    assert!(has("    src/sink/mod.rs:1: `sink` uses `crate::source`"), "{report}");
    assert!(has("    src/source/mod.rs:1: `source` uses `crate::sink`"), "{report}");
    assert!(!has("crate::daemon") && !has("flush/mod.rs"), "comments and strings do not count: {report}");
    assert!(!has("`aggregate` uses"), "a raw string is not a path: {report}");
    assert!(!has("`server` uses `crate::parse`") && !has("`parse` uses"), "downward is fine: {report}");
    assert!(!has("main"), "the binary may use anything: {report}");
    assert_eq!(lines.len(), 6, "{report}");
}
