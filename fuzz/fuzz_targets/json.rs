//! Fuzzes the pystatsd JSON message parser. Properties: it never panics; what it accepts holds
//! only finite numbers (timers ≥ 0), UTF-8 name and tags, and a set member range inside the
//! member buffer; and serde_json is the oracle: a message it reads as an object is read the same
//! way (same name, same type, same number), and input it finds cut short is `invalid_json`.
//!
//! Not a property: that everything serde_json rejects is rejected. simd-json is lenient in
//! places that do not change the structure — a lone surrogate escape becomes U+0000, a number
//! too large for u64 followed by letters is read as a number — and kstatsd only reads a few
//! top-level fields; a NUL byte, which simd-json took for the end of its input, is refused
//! before parsing (found by this target).
#![no_main]

use kstatsd::parse::{parse_f64, parse_json, BadLine, JsonBuf, Kind, SampleValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::cell::RefCell;

thread_local! {
    // One buffer for every input, as the ingest thread keeps it: reuse must not leak state.
    static BUF: RefCell<JsonBuf> = RefCell::new(JsonBuf::default());
}

/// A JSON value as a number the way kstatsd reads one: a number, or a string holding one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_f64(s.as_bytes()),
        _ => None,
    }
}

/// What serde_json says the message is: (kind, number) for counters, gauges and timers.
fn reference(o: &serde_json::Map<String, Value>) -> Option<(Kind, Option<f64>)> {
    let Some(Value::String(ty)) = o.get("metric_type") else { return None };
    Some(match ty.as_str() {
        "counter" => (Kind::Counter, o.get("value").or(o.get("count")).map_or(Some(1.0), number)),
        "trace" => (Kind::Counter, Some(1.0)),
        "gauge" | "guage" => (Kind::Gauge, o.get("value").and_then(number)),
        "timer" => (Kind::Timer, o.get("value").and_then(number)),
        "set" => (Kind::Set, None),
        _ => return None,
    })
}

fuzz_target!(|line: &[u8]| {
    BUF.with(|b| {
        let buf = &mut *b.borrow_mut();
        let got = parse_json(line, buf);
        let oracle = serde_json::from_slice::<Value>(line);
        match &got {
            Ok(s) => {
                assert!(s.weight == 1.0);
                match s.value {
                    SampleValue::Number(v) | SampleValue::Delta(v) => {
                        assert!(v.is_finite());
                        if s.kind == Kind::Timer {
                            assert!(v >= 0.0);
                        }
                    }
                    SampleValue::Member { start, end } => {
                        assert!(s.kind == Kind::Set && start <= end && end as usize <= buf.member.len());
                    }
                }
                assert!(std::str::from_utf8(&buf.name).is_ok() && std::str::from_utf8(&buf.tags).is_ok());
                if let Ok(Value::Object(o)) = &oracle {
                    if let Some(Value::String(name)) = o.get("metric_name") {
                        assert_eq!(buf.name, name.as_bytes());
                    }
                    if let Some((kind, want)) = reference(o) {
                        assert_eq!(s.kind, kind);
                        if let (Some(w), SampleValue::Number(v) | SampleValue::Delta(v)) = (want, s.value) {
                            assert!(v == w || (v - w).abs() <= 1e-12 * w.abs(), "{v} != {w}");
                        }
                    }
                }
            }
            Err(why) => assert!(matches!(
                why,
                BadLine::InvalidJson
                    | BadLine::MissingField
                    | BadLine::UnknownType
                    | BadLine::BadValue
                    | BadLine::NegativeTimer
            )),
        }
        if let Err(e) = &oracle {
            if e.is_eof() {
                assert_eq!(got.err(), Some(BadLine::InvalidJson), "serde_json: {e}");
            }
        }
    });
});
