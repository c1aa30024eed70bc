//! The synthetic statsd traffic the benches and the profiling example share: datagrams of 20
//! lines over a chosen number of keys, counters : timers : gauges : sets = 4 : 3 : 2 : 1, with
//! optional DogStatsD tags and sample rates or 1 % malformed lines, with short names
//! (`bench.c123`) or names shaped like real ones (`api.timer.svc01.host0042.component.requests.
//! metric_0012345`, 50–70 bytes). Deterministic (xorshift).
#![allow(dead_code)]

/// A deterministic xorshift64 generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy)]
pub enum Mix {
    /// counters : timers : gauges : sets = 4 : 3 : 2 : 1, no tags, no rates.
    Plain,
    /// The same with DogStatsD tags on every line and a sample rate on a third of them.
    Tagged,
    /// Plain with 1 % malformed lines.
    Malformed,
    /// Realistic names, dotted, 50–70 bytes: `<app>.<type>.svc01.host0042.component.requests.
    /// metric_0012345`, a quarter of the keys with 2–4 DogStatsD tags (fixed per key).
    Realistic,
}

const APPS: [&str; 8] = ["api", "web", "checkout", "search", "auth", "billing", "ingest", "mail"];

/// A realistic name for key `k` of kind word `ty`, and its tags (empty for three keys in four).
fn realistic(k: u64, ty: &str) -> (String, String) {
    let app = APPS[(k % 8) as usize];
    let name =
        format!("{app}.{ty}.svc{:02}.host{:04}.component.requests.metric_{k:07}", k % 13, (k / 7) % 10_000);
    let tags = match k % 12 {
        0 => format!("|#env:prod,az:z{}", k % 3),
        1 => format!("|#env:prod,az:z{},service:{app}", k % 3),
        2 => format!("|#env:staging,az:z{},service:{app},version:1.{}", k % 3, k % 20),
        _ => String::new(),
    };
    (name, tags)
}

pub struct Corpus {
    pub datagrams: Vec<Vec<u8>>,
    pub bytes: u64,
    pub lines: u64,
    pub bad: u64,
}

/// Datagrams of 20 lines (about 0.5–1 KB) over `keys` keys, at least `min_bytes` in all and
/// enough that every key appears about twice.
pub fn corpus(keys: u64, mix: Mix, min_bytes: usize) -> Corpus {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ keys);
    let line_bytes = if matches!(mix, Mix::Realistic) { 75 } else { 30 };
    let target = min_bytes.max(keys as usize * 2 * line_bytes);
    let (mut datagrams, mut bytes, mut lines, mut bad) = (Vec::new(), 0, 0, 0);
    while bytes < target as u64 {
        let mut d = Vec::with_capacity(1500);
        for _ in 0..20 {
            let x = rng.next();
            let k = x % keys;
            let v = (x >> 20) % 1000;
            if matches!(mix, Mix::Realistic) {
                let (line, ty) = match (x >> 8) % 10 {
                    0..=3 => (format!("{v}|c"), "count"),
                    4..=6 => (format!("{v}.{}|ms", v % 10), "timer"),
                    7..=8 => (format!("{v}|g"), "gauge"),
                    _ => (format!("u{}|s", v % 64), "set"),
                };
                let (name, tags) = realistic(k, ty);
                d.extend_from_slice(format!("{name}:{line}{tags}\n").as_bytes());
            } else if matches!(mix, Mix::Malformed) && (x >> 40) % 100 == 0 {
                d.extend_from_slice(format!("bench.bad{k}:{v}|zz\n").as_bytes());
                bad += 1;
            } else {
                let line = match (x >> 8) % 10 {
                    0..=3 => format!("bench.c{k}:{v}|c"),
                    4..=6 => format!("bench.t{k}:{v}.{}|ms", v % 10),
                    7..=8 => format!("bench.g{k}:{v}|g"),
                    _ => format!("bench.s{k}:u{}|s", v % 64),
                };
                d.extend_from_slice(line.as_bytes());
                if matches!(mix, Mix::Tagged) {
                    if (x >> 30) % 3 == 0 && !line.ends_with("|g") && !line.ends_with("|s") {
                        d.extend_from_slice(b"|@0.5");
                    }
                    d.extend_from_slice(format!("|#env:prod,az:z{}", k % 3).as_bytes());
                }
                d.push(b'\n');
            }
            lines += 1;
        }
        bytes += d.len() as u64;
        datagrams.push(d);
    }
    Corpus { datagrams, bytes, lines, bad }
}
