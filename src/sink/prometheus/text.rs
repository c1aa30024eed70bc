//! The pieces of the Prometheus text exposition format 0.0.4 that the exporter writes: metric
//! and label names made valid, label values and help text escaped, and sample values in the
//! float syntax Prometheus parses (`NaN`, `+Inf`, shortest round-trip decimals). Pure functions
//! over reused buffers, called on the flush thread while a flush is rendered.

use crate::fmt::write_f64;

/// Appends `raw` as a metric name: every byte outside `[A-Za-z0-9_]` becomes `_` (a multi-byte
/// UTF-8 character gives one `_` per byte), and a name that starts with a digit gets a leading
/// `_`. This is statsd_exporter's escaping; the result always matches
/// `[a-zA-Z_:][a-zA-Z0-9_:]*` (colons are left to recording rules, so none is produced).
pub fn push_name(out: &mut String, raw: &str) {
    if raw.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push('_');
    }
    for &b in raw.as_bytes() {
        out.push(if b.is_ascii_alphanumeric() || b == b'_' { b as char } else { '_' });
    }
}

/// Appends one of the daemon's own figure names (`dockerStats.errors`) in Prometheus's snake
/// case (`docker_stats_errors`): escaped like [`push_name`], and an upper-case letter becomes
/// `_` and its lower case.
pub fn push_snake(out: &mut String, raw: &str) {
    for &b in raw.as_bytes() {
        if b.is_ascii_uppercase() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(b.to_ascii_lowercase() as char);
        } else {
            out.push(if b.is_ascii_alphanumeric() || b == b'_' { b as char } else { '_' });
        }
    }
}

/// Appends `raw` as a label name: escaped like a metric name; `quantile` and `le` (which the
/// exporter adds to summaries and histograms) and names that start with `__` (reserved by
/// Prometheus) get a `tag_` prefix. An empty name stays empty (the caller drops the tag).
pub fn push_label_name(out: &mut String, raw: &str) {
    if raw.is_empty() {
        return;
    }
    let start = out.len();
    push_name(out, raw);
    let written = &out[start..];
    if written == "quantile" || written == "le" || written.starts_with("__") {
        out.insert_str(start, "tag_");
    }
}

/// Appends a label value with `\`, `"` and newline escaped, as the format requires.
pub fn push_label_value(out: &mut String, raw: &str) {
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `# HELP` text with `\` and newline escaped (quotes stay as they are in help text).
pub fn push_help(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

/// Appends a sample value: `NaN`, `+Inf`, `-Inf`, or the number (integers without a fraction,
/// others in the shortest form that reads back to the same f64).
pub fn push_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        write_f64(out, v);
    }
}

/// A number as a label value (`quantile="0.99"`, `le="0.25"`), rounded to 12 significant digits
/// first so that `99.9 / 100` reads `0.999`, not `0.9990000000000001`.
pub fn label_number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let rounded: f64 = format!("{v:.12e}").parse().unwrap_or(v);
    let mut out = Vec::new();
    write_f64(&mut out, rounded);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes one sample line: `name{labels,extra} value\n`. `labels` is the rendered label list of
/// the series (`a="1",b="2"`, possibly empty), `extra` one more label (`quantile="0.9"`) or empty.
pub fn push_sample(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &str, extra: &str, v: f64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    if !labels.is_empty() || !extra.is_empty() {
        out.push(b'{');
        out.extend_from_slice(labels.as_bytes());
        if !labels.is_empty() && !extra.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(extra.as_bytes());
        out.push(b'}');
    }
    out.push(b' ');
    push_value(out, v);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> String {
        let mut s = String::new();
        push_name(&mut s, raw);
        s
    }

    fn label(raw: &str) -> String {
        let mut s = String::new();
        push_label_name(&mut s, raw);
        s
    }

    #[test]
    fn names_are_escaped_like_statsd_exporter() {
        assert_eq!(name("api.request-time"), "api_request_time");
        assert_eq!(name("9lives"), "_9lives");
        assert_eq!(name("a:b"), "a_b");
        assert_eq!(name("Ok_Name09"), "Ok_Name09");
        assert_eq!(name("é"), "__", "one underscore per byte");
        let valid = |s: &str| {
            let b = s.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        };
        for raw in ["x", "0", ".", "a b\tc", "\"\\\n", "ünï.cödé", "1.2.3", "_"] {
            assert!(valid(&name(raw)), "{raw:?} → {:?}", name(raw));
        }
    }

    #[test]
    fn the_daemons_names_are_snake_case() {
        let snake = |raw: &str| {
            let mut s = String::from("kstatsd_");
            push_snake(&mut s, raw);
            s
        };
        assert_eq!(snake("dockerStats.errors"), "kstatsd_docker_stats_errors");
        assert_eq!(snake("connections_opened"), "kstatsd_connections_opened");
        assert_eq!(snake("HTTPErrors"), "kstatsd_h_t_t_p_errors");
    }

    #[test]
    fn label_names_avoid_the_reserved_ones() {
        assert_eq!(label("env"), "env");
        assert_eq!(label("host-name"), "host_name");
        assert_eq!(label("le"), "tag_le");
        assert_eq!(label("quantile"), "tag_quantile");
        assert_eq!(label("__name__"), "tag___name__");
        assert_eq!(label("1st"), "_1st");
        assert_eq!(label(""), "");
    }

    #[test]
    fn values_and_help_are_escaped() {
        let mut s = String::new();
        push_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
        let mut h = Vec::new();
        push_help(&mut h, "x\\y\n\"z\"");
        assert_eq!(String::from_utf8(h).unwrap(), "x\\\\y\\n\"z\"");
    }

    #[test]
    fn numbers() {
        let v = |x: f64| {
            let mut out = Vec::new();
            push_value(&mut out, x);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(v(15.0), "15");
        assert_eq!(v(0.25), "0.25");
        assert_eq!(v(f64::NAN), "NaN");
        assert_eq!(v(f64::INFINITY), "+Inf");
        assert_eq!(v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(label_number(99.9 / 100.0), "0.999");
        assert_eq!(label_number(0.5), "0.5");
        assert_eq!(label_number(10.0 / 1000.0), "0.01");
        assert_eq!(label_number(f64::INFINITY), "+Inf");
    }

    #[test]
    fn samples() {
        let mut out = Vec::new();
        push_sample(&mut out, "a", "", "", "", 1.0);
        push_sample(&mut out, "a", "_sum", "x=\"1\"", "", 2.0);
        push_sample(&mut out, "a", "", "x=\"1\"", "quantile=\"0.9\"", 3.0);
        push_sample(&mut out, "a", "_bucket", "", "le=\"+Inf\"", 4.0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a 1\na_sum{x=\"1\"} 2\na{x=\"1\",quantile=\"0.9\"} 3\na_bucket{le=\"+Inf\"} 4\n"
        );
    }
}
