//! Fuzzes the statsd/DogStatsD line parser. Properties: it never panics; the fast path agrees
//! with the full parser whenever it answers; what the full parser returns points
//! inside the line and holds only finite numbers (timers ≥ 0, rates > 0); and wherever the
//! etsy grammar and ours coincide (no tags, no packed values, no DogStatsD fields), a slow
//! reference parser written the way etsy does it (split on ':' then '|') counts the same good
//! samples and bad segments. A set member is every byte up to its `|`, `:` included.
#![no_main]

use kstatsd::parse::{parse_line, parse_simple, parse_simple_prefix, BadLine, Kind, LineBuf, Parsed, SampleValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if line.contains(&b'\n') {
        return; // lines never hold a newline: the datagram splitter removed it
    }
    let mut out = LineBuf::default();
    let parsed = parse_line(line, &mut out);
    match parsed {
        Ok(Parsed::Metric { name, tags }) => {
            assert!(!name.is_empty() && line.starts_with(name) && line.get(name.len()) == Some(&b':'));
            assert!(tags.is_empty() || line.windows(tags.len()).any(|w| w == tags));
            for s in &out.samples {
                assert!(s.weight.is_finite() && s.weight > 0.0);
                match s.value {
                    SampleValue::Number(v) | SampleValue::Delta(v) => {
                        assert!(v.is_finite());
                        if s.kind == Kind::Timer {
                            assert!(v >= 0.0);
                        }
                    }
                    SampleValue::Member { start, end } => {
                        assert_eq!(s.kind, Kind::Set);
                        assert!(start <= end && (end as usize) <= line.len());
                        // a member is never split: it runs up to the '|' before its type
                        assert_eq!(line.get(end as usize), Some(&b'|'));
                        assert!(!line[start as usize..end as usize].contains(&b'|'));
                    }
                }
            }
        }
        Ok(Parsed::Event | Parsed::ServiceCheck) => assert!(line.starts_with(b"_")),
        Err(why) => assert!(matches!(why, BadLine::NoValue | BadLine::EmptyName | BadLine::BadEvent)),
    }
    // The fast path says nothing, or exactly what the full parser says.
    if let Some(simple) = parse_simple(line) {
        let (name, tags) = simple.name_tags(line);
        assert_eq!(parsed, Ok(Parsed::Metric { name, tags }));
        assert_eq!(out.samples, vec![simple.sample]);
        assert!(out.bad.is_empty());
    }
    // Read in place in a datagram, with a line after it, the fast path finds the same line.
    let mut rest = line.to_vec();
    rest.extend_from_slice(b"\nnext:1|c");
    if let Some(simple) = parse_simple_prefix(&rest) {
        assert_eq!((Some(simple), rest[simple.len]), (parse_simple(line), b'\n'));
    }
    if let Some((good, bad)) = reference(line) {
        assert!(matches!(parsed, Ok(Parsed::Metric { .. })), "{:?}", String::from_utf8_lossy(line));
        assert_eq!((out.samples.len(), out.bad.len()), (good, bad), "{:?}", String::from_utf8_lossy(line));
    }
});

/// etsy's algorithm on the subset where it and kstatsd must agree; `None` outside that subset.
/// Returns (good samples, bad segments).
fn reference(line: &[u8]) -> Option<(usize, usize)> {
    let s = std::str::from_utf8(line).ok()?;
    if s.contains('#') || s.starts_with('_') {
        return None;
    }
    let (name, rest) = s.split_once(':')?;
    if name.is_empty() {
        return None;
    }
    let bits: Vec<&str> = rest.split(':').collect();
    // A set member may start with ':' (`ips:::1|s`): where empty segments run into a set,
    // etsy counts bad segments and kstatsd one member, a documented difference.
    for (i, bit) in bits.iter().enumerate() {
        let next = bits[i..].iter().find(|b| !b.is_empty());
        if bit.is_empty() && next.is_some_and(|b| b.split('|').nth(1) == Some("s")) {
            return None;
        }
    }
    let (mut good, mut bad) = (0, 0);
    for bit in bits {
        if bit.is_empty() {
            bad += 1; // an empty segment
            continue;
        }
        let fields: Vec<&str> = bit.split('|').collect();
        // one value, a type, at most one '@rate' field: nothing else is in the common grammar
        if fields.len() < 2 || fields.len() > 3 || (fields.len() == 3 && !fields[2].starts_with('@')) {
            return None;
        }
        let ok = (|| {
            let kind = match fields[1] {
                "c" | "g" | "ms" | "h" | "d" | "s" => fields[1],
                _ => return false,
            };
            if let Some(rate) = fields.get(2) {
                match number(&rate[1..]) {
                    Some(r) if r > 0.0 => {}
                    _ => return false,
                }
            }
            match kind {
                "s" => true,
                "ms" | "h" | "d" => number(fields[0]).is_some_and(|v| v >= 0.0),
                _ => number(fields[0]).is_some(),
            }
        })();
        if ok {
            good += 1;
        } else {
            bad += 1;
        }
    }
    Some((good, bad))
}

/// `[+-]?(digits[.digits*] | .digits)([eE][+-]?digits)?`, finite.
fn number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - f;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == e {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}
