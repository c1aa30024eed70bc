//! pystatsd JSON messages (Symantec pystatsd): one JSON object per line, such as
//! `{"metric_name": "user.latency", "metric_type": "timer", "value": 4.4, "env": "prod"}`.
//! Runs on the ingest thread for every line that starts with `{` in a datagram that does, on
//! streams, and for every line on a `json_udp` port.
//!
//! simd-json parses a mutable copy of the line (it unescapes strings in place) into a tape; the
//! copy, simd-json's own buffers and the tape are all kept in [`JsonBuf`] and reused, so a warm
//! parse allocates nothing. The tape is walked once: the metric fields are picked out, and every
//! other top-level key with a string, number or bool value becomes a tag, written as DogStatsD
//! raw tags (`key:value,…`) so that the series key is canonicalized exactly like a
//! `|#key:value` line's, with the same sanitizing (`aggregate::key`: no `;` in a key or value,
//! no `=` in a key, an empty value is `true`). A `,` in a tag, or a `:` in a tag key, cannot be
//! written in that form and is dropped (sanitizing would remove it anyway).
//!
//! Fields: `metric_name` and `metric_type` (strings) are required; `metric_type` is `counter`,
//! `gauge` (or pystatsd's historic `guage`), `timer`, `set` or `trace` (a counter of 1 per
//! message that keeps its tags). `value` is required for gauges, timers and sets; a counter adds
//! `value`, else `count`, else 1. Numbers may also be given as strings; a gauge value given as a
//! string with a sign (`"+3"`) is a delta, as in a statsd line.

use super::{parse_f64, BadLine, Kind, Sample, SampleValue};
use simd_json::tape::{Node, Tape};
use simd_json::StaticNode;
use std::fmt;

/// The reusable buffers of the JSON parser, and where the last message's pieces are left.
pub struct JsonBuf {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
    /// The metric name of the last message.
    pub name: Vec<u8>,
    /// Its tags, as DogStatsD raw tags (`k:v,k:v`).
    pub tags: Vec<u8>,
    /// Its set member; a set sample's `Member` range points into this.
    pub member: Vec<u8>,
}

impl Default for JsonBuf {
    fn default() -> Self {
        JsonBuf {
            input: Vec::new(),
            buffers: simd_json::Buffers::new(512),
            tape: None,
            name: Vec::new(),
            tags: Vec::new(),
            member: Vec::new(),
        }
    }
}

impl fmt::Debug for JsonBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonBuf").field("name", &self.name).field("tags", &self.tags).finish_non_exhaustive()
    }
}

/// A JSON scalar as the walk sees it.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Str(&'a str),
    Num(f64),
    Int(i128),
    Bool(bool),
    Null,
    /// An object or array (ignored as a tag; invalid as a metric field).
    Nested,
}

impl Scalar<'_> {
    /// Appends the value's text (for tags and set members).
    fn write(self, out: &mut Vec<u8>, drop_comma: bool) {
        match self {
            Scalar::Str(s) => {
                out.extend(s.bytes().filter(|&b| !(drop_comma && b == b',')));
            }
            Scalar::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Scalar::Num(x) => crate::fmt::write_f64(out, x),
            Scalar::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Scalar::Null | Scalar::Nested => {}
        }
    }

    /// The value as a number: a JSON number, or a string holding one.
    fn number(self) -> Result<f64, BadLine> {
        match self {
            Scalar::Num(x) => Ok(x),
            Scalar::Int(i) => Ok(i as f64),
            Scalar::Str(s) => parse_f64(s.as_bytes()).ok_or(BadLine::BadValue),
            _ => Err(BadLine::BadValue),
        }
    }
}

/// Parses one JSON message. On success the name, tags and (for sets) the member are left in
/// `buf` and the sample is returned; a `Member` range points into `buf.member`.
pub fn parse_json(line: &[u8], buf: &mut JsonBuf) -> Result<Sample, BadLine> {
    // simd-json reads a NUL after a number as the end of the input (its padding is zeros) and
    // would accept `[1\0 ]`; a NUL byte is never valid JSON (found by fuzz/json).
    if memchr::memchr(0, line).is_some() {
        return Err(BadLine::InvalidJson);
    }
    let JsonBuf { input, buffers, tape, name, tags, member } = buf;
    input.clear();
    input.extend_from_slice(line);
    name.clear();
    tags.clear();
    member.clear();
    let mut t: Tape<'_> = tape.take().unwrap_or_else(Tape::null).reset();
    // simd-json misreads a float with more than 19 digits before its exponent
    // (`41111111111111111111111111.4` comes back as 1.83e18), so a message holding one is
    // refused rather than recorded wrong.
    let long_digits = line
        .split(|&b| !(b.is_ascii_digit() || b == b'.'))
        .any(|run| run.iter().filter(|b| b.is_ascii_digit()).count() > 19);
    let result = match simd_json::fill_tape(input, buffers, &mut t) {
        Ok(()) => walk(&t.0, name, tags, member, long_digits),
        Err(_) => Err(BadLine::InvalidJson),
    };
    *tape = Some(t.reset());
    result
}

fn walk(
    nodes: &[Node<'_>],
    name: &mut Vec<u8>,
    tags: &mut Vec<u8>,
    member: &mut Vec<u8>,
    long_digits: bool,
) -> Result<Sample, BadLine> {
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return Err(BadLine::InvalidJson);
    };
    let (mut metric_name, mut metric_type, mut value, mut count) = (None, None, None, None);
    let mut i = 1;
    for _ in 0..len {
        let Some(Node::String(key)) = nodes.get(i) else {
            return Err(BadLine::InvalidJson);
        };
        let (val, width) = match nodes.get(i + 1) {
            Some(Node::String(s)) => (Scalar::Str(s), 1),
            Some(Node::Static(s)) => (
                match *s {
                    StaticNode::I64(v) => Scalar::Int(v.into()),
                    StaticNode::U64(v) => Scalar::Int(v.into()),
                    StaticNode::F64(_) if long_digits => return Err(BadLine::BadValue),
                    StaticNode::F64(v) => Scalar::Num(v),
                    StaticNode::Bool(b) => Scalar::Bool(b),
                    StaticNode::Null => Scalar::Null,
                },
                1,
            ),
            Some(Node::Object { count, .. } | Node::Array { count, .. }) => (Scalar::Nested, 1 + count),
            None => return Err(BadLine::InvalidJson),
        };
        i += 1 + width;
        match *key {
            "metric_name" => metric_name = Some(val),
            "metric_type" => metric_type = Some(val),
            "value" => value = Some(val),
            "count" => count = Some(val),
            "" => {}
            _ => {
                if matches!(val, Scalar::Null | Scalar::Nested) {
                    continue;
                }
                if !tags.is_empty() {
                    tags.push(b',');
                }
                tags.extend(key.bytes().filter(|&b| b != b',' && b != b':'));
                tags.push(b':');
                val.write(tags, true);
            }
        }
    }
    let Some(Scalar::Str(n)) = metric_name else {
        return Err(BadLine::MissingField);
    };
    name.extend_from_slice(n.as_bytes());
    let Some(Scalar::Str(ty)) = metric_type else {
        return Err(BadLine::MissingField);
    };
    let number = |v: Option<Scalar<'_>>| v.ok_or(BadLine::MissingField)?.number();
    let (kind, value) = match ty {
        "counter" => {
            let n = match (value, count) {
                (Some(v), _) => v.number()?,
                (None, Some(c)) => c.number()?,
                (None, None) => 1.0,
            };
            (Kind::Counter, SampleValue::Number(n))
        }
        "trace" => (Kind::Counter, SampleValue::Number(1.0)),
        "gauge" | "guage" => match value {
            Some(Scalar::Str(s)) if s.starts_with(['+', '-']) => {
                (Kind::Gauge, SampleValue::Delta(parse_f64(s.as_bytes()).ok_or(BadLine::BadValue)?))
            }
            v => (Kind::Gauge, SampleValue::Number(number(v)?)),
        },
        "timer" => {
            let v = number(value)?;
            if v < 0.0 {
                return Err(BadLine::NegativeTimer);
            }
            (Kind::Timer, SampleValue::Number(v))
        }
        "set" => {
            match value {
                None => return Err(BadLine::MissingField),
                Some(Scalar::Null | Scalar::Nested) => return Err(BadLine::BadValue),
                Some(v) => v.write(member, false),
            }
            (Kind::Set, SampleValue::Member { start: 0, end: member.len() as u32 })
        }
        _ => return Err(BadLine::UnknownType),
    };
    Ok(Sample { kind, value, weight: 1.0 })
}

#[cfg(test)]
mod tests {

    /// A number with more than 19 digits (found by the `json` fuzz target): simd-json
    /// reads `41111111111111111111111111.4` as 1.83e18, so such a message is refused as a bad
    /// value instead of recorded wrong. Shorter numbers are read exactly.
    #[test]
    fn a_number_of_more_than_19_digits_is_refused_not_misread() {
        let mut buf = JsonBuf::default();
        let value = |v: &str| {
            format!(r#"{{"metric_name": "a", "metric_type": "gauge", "value": {v}, "env": "dev"}}"#)
        };
        let mut parse = |v: &str| parse_json(value(v).as_bytes(), &mut buf).map(|s| s.value);
        assert_eq!(parse("41111111111111111111111111.4"), Err(BadLine::BadValue));
        assert_eq!(parse("4111111111111111111.4"), Err(BadLine::BadValue));
        assert_eq!(parse("411111111111111111.4"), Ok(SampleValue::Number(411111111111111111.4)));
        let quoted = parse("\"41111111111111111111111111.4\"");
        assert_eq!(quoted, Ok(SampleValue::Number(41111111111111111111111111.4)), "a string is read exactly");
    }

    use super::*;

    fn parse(s: &str) -> Result<(String, String, Sample, String), BadLine> {
        let mut buf = JsonBuf::default();
        let sample = parse_json(s.as_bytes(), &mut buf)?;
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).unwrap();
        Ok((text(&buf.name), text(&buf.tags), sample, text(&buf.member)))
    }

    fn num(kind: Kind, v: f64) -> Sample {
        Sample { kind, value: SampleValue::Number(v), weight: 1.0 }
    }

    #[test]
    fn the_protocol_example() {
        let (name, tags, sample, _) = parse(
            r#"{"metric_name": "user.latency", "metric_type": "guage", "value": 4.4, "stage": "Init app", "host": "192.44.2.2", "env": "development"}"#,
        )
        .unwrap();
        assert_eq!(name, "user.latency");
        assert_eq!(tags, "stage:Init app,host:192.44.2.2,env:development");
        assert_eq!(sample, num(Kind::Gauge, 4.4));
    }

    #[test]
    fn every_type() {
        let p = |s: &str| parse(s).map(|x| x.2);
        assert_eq!(p(r#"{"metric_name":"a","metric_type":"counter"}"#), Ok(num(Kind::Counter, 1.0)));
        assert_eq!(
            p(r#"{"metric_name":"a","metric_type":"counter","count":3}"#),
            Ok(num(Kind::Counter, 3.0))
        );
        assert_eq!(
            p(r#"{"metric_name":"a","metric_type":"counter","value":2,"count":3}"#),
            Ok(num(Kind::Counter, 2.0))
        );
        assert_eq!(p(r#"{"metric_name":"a","metric_type":"trace","value":9}"#), Ok(num(Kind::Counter, 1.0)));
        assert_eq!(p(r#"{"metric_name":"a","metric_type":"gauge","value":-2}"#), Ok(num(Kind::Gauge, -2.0)));
        assert_eq!(
            p(r#"{"metric_name":"a","metric_type":"gauge","value":"-2"}"#),
            Ok(Sample { kind: Kind::Gauge, value: SampleValue::Delta(-2.0), weight: 1.0 })
        );
        assert_eq!(
            p(r#"{"metric_name":"a","metric_type":"timer","value":"12.5"}"#),
            Ok(num(Kind::Timer, 12.5))
        );
        let (_, _, s, member) = parse(r#"{"metric_name":"a","metric_type":"set","value":"u1"}"#).unwrap();
        assert_eq!((s.kind, member.as_str()), (Kind::Set, "u1"));
        let (_, _, _, member) = parse(r#"{"metric_name":"a","metric_type":"set","value":42}"#).unwrap();
        assert_eq!(member, "42");
    }

    #[test]
    fn tags_take_scalars_and_skip_nested_values() {
        let (_, tags, _, _) = parse(
            r#"{"metric_type":"counter","n":1,"f":1.5,"b":true,"z":null,"o":{"x":1},"a":[1,2],"metric_name":"a","s":"x,y","k:e":"v:w"}"#,
        )
        .unwrap();
        assert_eq!(tags, "n:1,f:1.5,b:true,s:xy,ke:v:w");
    }

    #[test]
    fn bad_messages_are_counted_by_reason() {
        assert_eq!(parse("{").unwrap_err(), BadLine::InvalidJson);
        assert_eq!(parse("[1]").unwrap_err(), BadLine::InvalidJson);
        assert_eq!(parse(r#"{"metric_name":"a"} x"#).unwrap_err(), BadLine::InvalidJson);
        assert_eq!(parse("{\"a\":[1,2\0\0 ],\"metric_name\":\"a\"}").unwrap_err(), BadLine::InvalidJson);
        assert_eq!(parse(r#"{"metric_type":"counter"}"#).unwrap_err(), BadLine::MissingField);
        assert_eq!(parse(r#"{"metric_name":1,"metric_type":"counter"}"#).unwrap_err(), BadLine::MissingField);
        assert_eq!(parse(r#"{"metric_name":"a"}"#).unwrap_err(), BadLine::MissingField);
        assert_eq!(parse(r#"{"metric_name":"a","metric_type":"gauge"}"#).unwrap_err(), BadLine::MissingField);
        assert_eq!(
            parse(r#"{"metric_name":"a","metric_type":"histo","value":1}"#).unwrap_err(),
            BadLine::UnknownType
        );
        assert_eq!(
            parse(r#"{"metric_name":"a","metric_type":"timer","value":"x"}"#).unwrap_err(),
            BadLine::BadValue
        );
        assert_eq!(
            parse(r#"{"metric_name":"a","metric_type":"timer","value":-1}"#).unwrap_err(),
            BadLine::NegativeTimer
        );
        assert_eq!(
            parse(r#"{"metric_name":"a","metric_type":"set","value":[1]}"#).unwrap_err(),
            BadLine::BadValue
        );
    }

    #[test]
    fn the_buffers_are_reused() {
        let mut buf = JsonBuf::default();
        for i in 0..100 {
            let line =
                format!(r#"{{"metric_name":"m{i}","metric_type":"timer","value":{i},"host":"h\"{i}"}}"#);
            let s = parse_json(line.as_bytes(), &mut buf).unwrap();
            assert_eq!(s, num(Kind::Timer, i as f64));
            assert_eq!(buf.name, format!("m{i}").as_bytes());
            assert_eq!(buf.tags, format!("host:h\"{i}").as_bytes());
        }
    }
}
