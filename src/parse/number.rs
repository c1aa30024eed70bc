//! Number parsing for statsd values and sample rates. Runs on the ingest thread, once per value.
//!
//! Almost every value a client sends is a short decimal integer, so the fast path folds up to 15
//! digits into an integer (exact in an f64) with no allocation and no UTF-8 check; anything else
//! (fraction, exponent, more digits) goes to the standard library's correctly rounded parser, so
//! the result is always the same f64 that JavaScript's `Number()` gives etsy statsd. `nan`, `inf`,
//! hex, empty strings and values that overflow to infinity are rejected: the caller counts them.

/// Parses a decimal number with an optional sign, fraction and exponent. `None` when the bytes
/// are not such a number or the value is not finite.
#[inline]
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 16 {
        return parse_slow(s);
    }
    // Up to 15 digits with at most one '.': the mantissa is an exact integer below 2^53 and
    // 10^frac is exact, so one IEEE division gives the correctly rounded value, the same f64 as
    // the general parser (Clinger's fast path).
    let mut mantissa: u64 = 0;
    let mut n_digits = 0;
    let mut frac: Option<usize> = None;
    for (i, &b) in digits.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa * 10 + d as u64;
            n_digits += 1;
        } else if b == b'.' && frac.is_none() {
            frac = Some(digits.len() - i - 1);
        } else {
            return parse_slow(s);
        }
    }
    if n_digits == 0 || n_digits > 15 {
        return parse_slow(s);
    }
    let v = match frac {
        None | Some(0) => mantissa as f64,
        Some(f) => mantissa as f64 / POW10[f],
    };
    Some(if neg { -v } else { v })
}

/// Exact powers of ten (all below 2^53 · 2^k with no rounding up to 10^15).
pub(crate) const POW10: [f64; 16] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

/// The general case: validates the alphabet (so `inf`, `nan`, `0x10` and spaces are refused) and
/// needs a digit before any exponent, then defers to `str::parse::<f64>`.
#[cold]
fn parse_slow(s: &[u8]) -> Option<f64> {
    let body = match s.first()? {
        b'-' | b'+' => &s[1..],
        _ => s,
    };
    let mantissa_end = body.iter().position(|&b| b == b'e' || b == b'E').unwrap_or(body.len());
    let mantissa = &body[..mantissa_end];
    if !mantissa.iter().any(u8::is_ascii_digit) || !mantissa.iter().all(|&b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    if mantissa_end < body.len() {
        let exp = &body[mantissa_end + 1..];
        let exp = exp.strip_prefix(b"-").or_else(|| exp.strip_prefix(b"+")).unwrap_or(exp);
        if exp.is_empty() || !exp.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::parse_f64;

    #[test]
    fn accepts_decimal_forms() {
        for (s, v) in [
            ("0", 0.0),
            ("42", 42.0),
            ("-2", -2.0),
            ("+5", 5.0),
            ("0.25", 0.25),
            ("20.5", 20.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("1e3", 1000.0),
            ("1E-2", 0.01),
            ("-1.5e+2", -150.0),
            ("1234567890123456789", 1234567890123456789.0),
            ("0.001", 0.001),
        ] {
            assert_eq!(parse_f64(s.as_bytes()), Some(v), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_finite_decimal() {
        for s in [
            "", "-", "+", "abc", "nan", "NaN", "inf", "-inf", "Infinity", "0x10", " 1", "1 ", "1e", "e5",
            ".", "1..2", "1e999", "--1", "1,5", "1_000", "١",
        ] {
            assert_eq!(parse_f64(s.as_bytes()), None, "{s:?}");
        }
    }

    /// The decimal fast path and the standard parser agree bit for bit.
    #[test]
    fn decimal_fast_path_matches_std() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 15) as usize + 1;
            let mantissa = (x >> 8) % 10u64.pow(digits as u32);
            let text = format!("{mantissa:0digits$}");
            let dot = (x >> 60) as usize % (digits + 1);
            let s = format!("{}{}.{}", if x & 1 == 1 { "-" } else { "" }, &text[..dot], &text[dot..]);
            assert_eq!(parse_f64(s.as_bytes()), Some(s.parse::<f64>().unwrap()), "{s}");
        }
        for s in ["0.1", "0.2", "0.3", "20.540", "202187.749968", "0.07500000000000001", "9.999999999999999"]
        {
            assert_eq!(parse_f64(s.as_bytes()), Some(s.parse::<f64>().unwrap()), "{s}");
        }
    }

    /// The fast path and the standard parser agree on every integer they both take.
    #[test]
    fn fast_path_matches_std() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 1_000_000_000_000_000) as i64 * if x & 1 == 0 { 1 } else { -1 };
            let s = n.to_string();
            assert_eq!(parse_f64(s.as_bytes()), Some(s.parse::<f64>().unwrap()), "{s}");
        }
    }
}
