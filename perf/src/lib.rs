//! Shared pieces of the kstatsd perf tools (`loadgen`, `nullrecv`), each a single-threaded
//! process driven by `perf/run`: a tiny command-line parser (no clap, to keep this crate's build
//! small on a 2-core box), the seeded PRNG that makes load reproducible, duration parsing and a
//! minimal JSON writer for the one summary line each tool prints. All `unsafe` code (syscall
//! wrappers, pinning, signals) is confined to [`mmsg`]; everything else forbids it.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod mmsg;

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

/// xorshift64* (Vigna): fast, tiny, good enough for load shapes, and fully determined by the seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded by `seed` (a zero seed is remapped: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 once, so nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias is negligible for our `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parses `10`, `10s`, `2.5s`, `500ms`, `1m` into a `Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration `{s}`"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Command-line options as `--name value`, `--name=value` or bare `--switch`.
/// Every option must be consumed by `get`/`opt`/`switch`; `finish` rejects leftovers.
pub struct Args {
    items: Vec<(String, Option<String>)>,
}

impl Args {
    /// Reads `std::env::args`; `switches` lists the options that take no value.
    pub fn from_env(switches: &[&str]) -> Result<Args, String> {
        Self::parse(std::env::args().skip(1), switches)
    }

    /// Parses an argument list (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>, switches: &[&str]) -> Result<Args, String> {
        let mut items = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument `{a}`"));
            };
            if let Some((n, v)) = name.split_once('=') {
                items.push((n.to_string(), Some(v.to_string())));
            } else if switches.contains(&name) {
                items.push((name.to_string(), None));
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                items.push((name.to_string(), Some(v)));
            }
        }
        Ok(Args { items })
    }

    /// True if the bare switch `--name` was given.
    pub fn switch(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|(n, _)| n != name);
        before != self.items.len()
    }

    /// The last value of `--name`, parsed; `None` if absent.
    pub fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        let mut found = None;
        let mut err = None;
        self.items.retain(|(n, v)| {
            if n != name {
                return true;
            }
            match v {
                Some(v) => found = Some(v.clone()),
                None => err = Some(format!("--{name} needs a value")),
            }
            false
        });
        if let Some(e) = err {
            return Err(e);
        }
        match found {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| format!("bad value `{v}` for --{name}")),
        }
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    /// Errors on any option nobody asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.items.first() {
            None => Ok(()),
            Some((n, _)) => Err(format!("unknown option --{n}")),
        }
    }
}

/// Builds one flat JSON object, in insertion order.
#[derive(Default)]
pub struct JsonLine {
    buf: String,
}

impl JsonLine {
    /// An empty object.
    pub fn new() -> JsonLine {
        JsonLine::default()
    }

    fn key(&mut self, k: &str) {
        self.buf.push(if self.buf.is_empty() { '{' } else { ',' });
        push_json_str(&mut self.buf, k);
        self.buf.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_json_str(&mut self.buf, v);
        self
    }

    /// Adds an integer field.
    pub fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Adds a float field (non-finite values become `null`).
    pub fn num(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.buf, "{v:.3}");
        } else {
            self.buf.push_str("null");
        }
        self
    }

    /// Adds an optional integer field (`null` when absent).
    pub fn opt_int(mut self, k: &str, v: Option<u64>) -> Self {
        self.key(k);
        match v {
            Some(v) => {
                let _ = write!(self.buf, "{v}");
            }
            None => self.buf.push_str("null"),
        }
        self
    }

    /// Adds a raw, already-valid JSON value.
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }

    /// The finished object.
    pub fn finish(mut self) -> String {
        if self.buf.is_empty() {
            self.buf.push('{');
        }
        self.buf.push('}');
        self.buf
    }
}

fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
            let u = a.unit();
            b.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn args_parse_and_reject_leftovers() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut a = Args::parse(v(&["--keys", "5", "--rate=7", "--help"]), &["help"]).unwrap();
        assert!(a.switch("help"));
        assert_eq!(a.get("keys", 1u64).unwrap(), 5);
        assert_eq!(a.get("rate", 0u64).unwrap(), 7);
        assert_eq!(a.get("lines", 20u64).unwrap(), 20);
        a.finish().unwrap();
        let a = Args::parse(v(&["--nope", "1"]), &[]).unwrap();
        assert!(a.finish().is_err());
        assert!(Args::parse(v(&["--keys"]), &[]).is_err());
    }

    #[test]
    fn json_line_escapes() {
        let j = JsonLine::new().str("a\"b", "c\n").int("n", 3).num("x", 1.5).opt_int("z", None).finish();
        assert_eq!(j, r#"{"a\"b":"c\u000a","n":3,"x":1.500,"z":null}"#);
    }
}
