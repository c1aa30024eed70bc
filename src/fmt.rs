//! Allocation-free writers for numbers and JSON strings, shared by every serializer (the sinks,
//! the management port's answers, the debug dump, the pystatsd JSON tags). They append to a
//! caller's buffer and never go through `format!`; each runs on the thread of its caller.

/// Appends `v` as a JSON/Graphite number: integers without a fraction, others in the shortest
/// form that reads back to the same f64 (ryu). Never goes through `format!`.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an unsigned integer.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `s` as a JSON string literal (quotes, backslashes and control bytes escaped).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_read_back_exactly() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(-5.0), "-5");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(861.6666666666666), "861.6666666666666");
        assert_eq!(num(0.07500000000000001), "0.07500000000000001");
        assert_eq!(num(f64::NAN), "null");
        let mut x: u64 = 88172645463325252;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                assert_eq!(num(v).parse::<f64>().unwrap(), v);
            }
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
