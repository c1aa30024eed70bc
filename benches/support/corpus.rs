//! The synthetic statsd traffic the benches and the profiling example share: datagrams of 20
//! lines over a chosen number of keys, counters : timers : gauges : sets = 4 : 3 : 2 : 1, with
//! optional DogStatsD tags and sample rates or 1 % malformed lines. Deterministic (xorshift).
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
    let target = min_bytes.max(keys as usize * 2 * 30);
    let (mut datagrams, mut bytes, mut lines, mut bad) = (Vec::new(), 0, 0, 0);
    while bytes < target as u64 {
        let mut d = Vec::with_capacity(1500);
        for _ in 0..20 {
            let x = rng.next();
            let k = x % keys;
            let v = (x >> 20) % 1000;
            if matches!(mix, Mix::Malformed) && (x >> 40) % 100 == 0 {
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
