//! `loadgen`: the StatsD load generator of `perf/run`. One thread (optionally pinned with
//! `--core`) pre-builds a pool of datagrams from a fixed seed — keys of a chosen cardinality,
//! either short (`perf.k000123`) or shaped like real ones
//! (`checkout.timer.svc03.host0042.db.latency.metric_0012345`, 30–90 bytes, some with 2–4
//! DogStatsD tags), a counters:timers:gauges:sets type mix, realistic values — then blasts that pool
//! in a loop at a connected UDP target with `sendmmsg`, at full speed or at a target lines/s,
//! for a fixed duration. The send loop does no formatting and no allocation: it only hands
//! slices of pre-built `mmsghdr`s to the kernel. At the end it prints one JSON line with what it
//! sent (datagrams, lines, bytes, seconds, rates).
//!
//! Load shape: every key has one type, chosen from the mix by a hash of (seed, key), so a key is
//! always a counter, or always a timer, … as in real traffic. The pool walks all keys in a fresh
//! shuffled order per pass, so every key appears at least once per pass over the pool; the pool
//! holds `max(keys, --pool-lines)` lines, rounded up to whole datagrams.

#![forbid(unsafe_code)]

use kstatsd_perf::mmsg::{self, SendPool, MAX_BATCH};
use kstatsd_perf::{parse_duration, Args, JsonLine, Rng};
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELP: &str = "\
loadgen: blast StatsD lines over UDP with sendmmsg

  --target ADDR        where to send (default 127.0.0.1:8125)
  --duration D         how long to send: 10, 2.5s, 500ms (default 10s)
  --rate N             target lines/s; 0 = as fast as possible (default 0)
  --lines N            lines per datagram (default 20)
  --keys N             key cardinality (default 1000)
  --names SHAPE        short: perf.k000000 ..; real: dotted names of 30-90 bytes shaped like
                       <app>.<type>.svc01.host0042.<component>.<subject>.metric_0012345
                       (default short)
  --tagged PCT         percent of keys that carry 2-4 DogStatsD tags (|#env:prod,...);
                       default 30 with --names real, 0 with --names short
  --mix C:T:G:S        counters:timers:gauges:sets weights (default 4:3:2:1)
  --seed N             PRNG seed (default 42)
  --batch N            datagrams per sendmmsg call, 1..=1024 (default 64)
  --pool-lines N       minimum lines in the pre-built pool (default 65536)
  --set-members N      size of the set-member pool (default 100)
  --prefix P           key prefix of the short names (default perf.k)
  --core N             pin to this CPU
  --dump N             print the first N datagrams of the pool to stderr and exit
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Timer,
    Gauge,
    Set,
}

struct Config {
    target: SocketAddr,
    duration: Duration,
    rate: f64,
    lines: usize,
    keys: usize,
    mix: [u64; 4],
    seed: u64,
    batch: usize,
    pool_lines: usize,
    set_members: u64,
    prefix: String,
    names: Names,
    tagged_pct: u64,
    core: Option<usize>,
    dump: Option<usize>,
}

fn parse_mix(s: &str) -> Result<[u64; 4], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 4 {
        return Err(format!("--mix wants C:T:G:S, got `{s}`"));
    }
    let mut mix = [0u64; 4];
    for (m, p) in mix.iter_mut().zip(&parts) {
        *m = p.trim().parse().map_err(|_| format!("bad --mix weight `{p}`"))?;
    }
    if mix.iter().sum::<u64>() == 0 {
        return Err("--mix weights are all zero".into());
    }
    Ok(mix)
}

fn config() -> Result<Option<Config>, String> {
    let mut a = Args::from_env(&["help"])?;
    if a.switch("help") {
        print!("{HELP}");
        return Ok(None);
    }
    let c = Config {
        target: a.get("target", "127.0.0.1:8125".parse().unwrap())?,
        duration: parse_duration(&a.get("duration", "10s".to_string())?)?,
        rate: a.get("rate", 0.0)?,
        lines: a.get("lines", 20)?,
        keys: a.get("keys", 1000)?,
        mix: parse_mix(&a.get("mix", "4:3:2:1".to_string())?)?,
        seed: a.get("seed", 42)?,
        batch: a.get("batch", 64)?,
        pool_lines: a.get("pool-lines", 65536)?,
        set_members: a.get("set-members", 100)?,
        prefix: a.get("prefix", "perf.k".to_string())?,
        names: Names::parse(&a.get("names", "short".to_string())?)?,
        tagged_pct: 0,
        core: a.opt("core")?,
        dump: a.opt("dump")?,
    };
    let tagged: Option<u64> = a.opt("tagged")?;
    a.finish()?;
    let mut c = c;
    c.tagged_pct = tagged.unwrap_or(if c.names == Names::Real { 30 } else { 0 });
    if c.tagged_pct > 100 {
        return Err("--tagged is a percentage, 0..=100".into());
    }
    if c.lines == 0 || c.keys == 0 || c.set_members == 0 {
        return Err("--lines, --keys and --set-members must be at least 1".into());
    }
    if !(1..=MAX_BATCH).contains(&c.batch) {
        return Err(format!("--batch must be 1..={MAX_BATCH}"));
    }
    if !(c.rate.is_finite() && c.rate >= 0.0) {
        return Err("--rate must be >= 0".into());
    }
    Ok(Some(c))
}

/// The type of key `k`: a hash of (seed, k) dropped into the weighted mix.
fn kind_of(seed: u64, k: usize, mix: &[u64; 4]) -> Kind {
    let mut r = Rng::new(seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut x = r.below(mix.iter().sum());
    for (i, &w) in mix.iter().enumerate() {
        if x < w {
            return [Kind::Counter, Kind::Timer, Kind::Gauge, Kind::Set][i];
        }
        x -= w;
    }
    Kind::Set
}

/// The shape of the generated metric names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Names {
    /// `perf.k000123`: short, so the parser's and the tables' fixed costs dominate.
    Short,
    /// Dotted names of 30–90 bytes, as applications send them.
    Real,
}

impl Names {
    fn parse(s: &str) -> Result<Names, String> {
        match s {
            "short" => Ok(Names::Short),
            "real" => Ok(Names::Real),
            _ => Err(format!("--names wants short or real, got `{s}`")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Names::Short => "short",
            Names::Real => "real",
        }
    }
}

const APPS: &[&str] = &[
    "api",
    "web",
    "auth",
    "search",
    "billing",
    "checkout",
    "payments",
    "inventory",
    "notifications",
    "recommendations",
    "gateway",
    "ledger",
];
const COMPONENTS: &[&str] = &[
    "db",
    "cache",
    "http",
    "queue",
    "worker",
    "rpc",
    "scheduler",
    "grpc_client",
    "kafka_consumer",
    "object_store",
    "session",
    "pool",
];
const SUBJECTS: &[&str] = &[
    "requests",
    "errors",
    "latency",
    "bytes_in",
    "bytes_out",
    "connections",
    "retries",
    "queue_depth",
    "hits",
    "misses",
];
/// Tag keys and their values; a tagged key draws 2–4 distinct keys.
const TAGS: &[(&str, &[&str])] = &[
    ("env", &["prod", "staging", "dev"]),
    ("region", &["us-east-1", "eu-west-1", "ap-southeast-2"]),
    ("az", &["a", "b", "c"]),
    ("version", &["1.4.2", "1.5.0", "2.0.1"]),
    ("status_code", &["200", "404", "500", "503"]),
    ("method", &["GET", "POST", "PUT"]),
];
/// The longest realistic name; optional segments are dropped until a name fits.
const MAX_REAL_NAME: usize = 90;

/// The metric name of key `k` (type word and all), and its tag suffix (`|#a:b,c:d` or empty).
/// Both are fixed per key, so the number of distinct series is exactly `--keys`.
fn key_name(c: &Config, k: usize, kind: Kind, width: usize) -> (String, String) {
    let mut r = Rng::new(c.seed ^ 0x5EED_0000_0000 ^ (k as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let name = match c.names {
        Names::Short => format!("{}{:0width$}", c.prefix, k),
        Names::Real => {
            let pick = |r: &mut Rng, l: &[&'static str]| l[r.below(l.len() as u64) as usize];
            let app = pick(&mut r, APPS);
            let kind_word = match kind {
                Kind::Counter => "count",
                Kind::Timer => "timer",
                Kind::Gauge => "gauge",
                Kind::Set => "set",
            };
            let svc = 1 + r.below(20);
            let host = r.below(1000);
            // Zero to two components, then a subject most of the time.
            let mut optional: Vec<&str> = Vec::with_capacity(3);
            for _ in 0..r.below(3) {
                optional.push(pick(&mut r, COMPONENTS));
            }
            if r.below(10) < 8 {
                optional.push(pick(&mut r, SUBJECTS));
            }
            loop {
                let mut n = format!("{app}.{kind_word}.svc{svc:02}.host{host:04}");
                for seg in &optional {
                    n.push('.');
                    n.push_str(seg);
                }
                let _ = write!(n, ".metric_{k:0width$}", width = width.max(7));
                if n.len() <= MAX_REAL_NAME || optional.is_empty() {
                    break n;
                }
                optional.remove(0);
            }
        }
    };
    let mut tags = String::new();
    if r.below(100) < c.tagged_pct {
        let n = 2 + r.below(3) as usize;
        let mut order: Vec<usize> = (0..TAGS.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, r.below(i as u64 + 1) as usize);
        }
        for (i, &t) in order[..n].iter().enumerate() {
            let (key, values) = TAGS[t];
            tags.push_str(if i == 0 { "|#" } else { "," });
            tags.push_str(key);
            tags.push(':');
            tags.push_str(values[r.below(values.len() as u64) as usize]);
        }
    }
    (name, tags)
}

/// Appends one line (no newline) for key `k` of kind `kind`.
fn push_line(out: &mut Vec<u8>, name: &str, tags: &str, kind: Kind, rng: &mut Rng, set_members: u64) {
    let mut s = String::with_capacity(name.len() + tags.len() + 24);
    s.push_str(name);
    s.push(':');
    match kind {
        Kind::Counter => {
            // Mostly `:1|c`, some larger increments, one in ten sampled.
            let v = if rng.below(10) < 7 { 1 } else { 1 + rng.below(20) };
            let _ = write!(s, "{v}|c");
            if rng.below(10) == 0 {
                s.push_str("|@0.1");
            }
        }
        Kind::Timer => {
            // Latency-like: skewed towards small values, 0..1000 ms with two decimals.
            let u = rng.unit();
            let _ = write!(s, "{:.2}|ms", 1000.0 * u * u * u);
        }
        Kind::Gauge => {
            if rng.below(10) == 0 {
                // A relative update.
                let sign = if rng.below(2) == 0 { '+' } else { '-' };
                let _ = write!(s, "{sign}{}|g", 1 + rng.below(50));
            } else if rng.below(2) == 0 {
                let _ = write!(s, "{}|g", rng.below(100_000));
            } else {
                let _ = write!(s, "{:.1}|g", rng.unit() * 100.0);
            }
        }
        Kind::Set => {
            let _ = write!(s, "u{}|s", rng.below(set_members));
        }
    }
    s.push_str(tags);
    out.extend_from_slice(s.as_bytes());
}

struct Pool {
    data: Vec<u8>,
    bounds: Vec<(usize, usize)>,
    kind_lines: [u64; 4],
    tagged_lines: u64,
    name_bytes: (usize, usize, f64),
}

fn build_pool(c: &Config) -> Result<Pool, String> {
    let width = (c.keys - 1).to_string().len().max(6);
    let kinds: Vec<Kind> = (0..c.keys).map(|k| kind_of(c.seed, k, &c.mix)).collect();
    let keys: Vec<(String, String)> = (0..c.keys).map(|k| key_name(c, k, kinds[k], width)).collect();
    let lens = keys.iter().map(|(n, _)| n.len());
    let name_bytes = (
        lens.clone().min().unwrap_or(0),
        lens.clone().max().unwrap_or(0),
        lens.sum::<usize>() as f64 / c.keys as f64,
    );
    let total_lines = c.pool_lines.max(c.keys).div_ceil(c.lines) * c.lines;
    let mut rng = Rng::new(c.seed);
    let mut order: Vec<usize> = (0..c.keys).collect();
    let mut next = order.len(); // forces a shuffle before the first line
    let mut data = Vec::with_capacity(total_lines * (name_bytes.2 as usize + 16));
    let mut bounds = Vec::with_capacity(total_lines / c.lines);
    let mut kind_lines = [0u64; 4];
    let mut tagged_lines = 0u64;
    for d in 0..total_lines / c.lines {
        let start = data.len();
        for l in 0..c.lines {
            if next == order.len() {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                next = 0;
            }
            let k = order[next];
            next += 1;
            if l > 0 {
                data.push(b'\n');
            }
            kind_lines[kinds[k] as usize] += 1;
            let (name, tags) = &keys[k];
            tagged_lines += !tags.is_empty() as u64;
            push_line(&mut data, name, tags, kinds[k], &mut rng, c.set_members);
        }
        if data.len() - start > 65507 {
            return Err(format!(
                "datagram {d} is {} bytes, over the UDP limit; use fewer --lines",
                data.len() - start
            ));
        }
        bounds.push((start, data.len()));
    }
    Ok(Pool { data, bounds, kind_lines, tagged_lines, name_bytes })
}

fn run(c: Config) -> Result<(), String> {
    if let Some(core) = c.core {
        mmsg::pin_to_core(core).map_err(|e| format!("pinning to core {core}: {e}"))?;
    }
    let pool = build_pool(&c)?;
    if let Some(n) = c.dump {
        for &(s, e) in pool.bounds.iter().take(n) {
            eprintln!("{}\n--", String::from_utf8_lossy(&pool.data[s..e]));
        }
        return Ok(());
    }
    // prefix[i] = bytes in datagrams 0..i, so a batch's byte count is one subtraction.
    let mut prefix = Vec::with_capacity(pool.bounds.len() + 1);
    prefix.push(0u64);
    for &(s, e) in &pool.bounds {
        prefix.push(prefix.last().unwrap() + (e - s) as u64);
    }
    let pool_bytes = *prefix.last().unwrap();
    let max_datagram = pool.bounds.iter().map(|&(s, e)| e - s).max().unwrap_or(0);
    let (kind_lines, tagged_lines, name_bytes) = (pool.kind_lines, pool.tagged_lines, pool.name_bytes);
    let mut pool = SendPool::new(pool.data, &pool.bounds);
    let n_pool = pool.len();

    let bind: SocketAddr = if c.target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    sock.connect(c.target).map_err(|e| format!("connect {}: {e}", c.target))?;
    let fd = sock.as_raw_fd();

    let dgrams_per_s = c.rate / c.lines as f64;
    let (mut sent, mut bytes, mut calls, mut errors, mut refused, mut short) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut pos = 0usize;
    let start = Instant::now();
    let deadline = start + c.duration;
    let mut now = start;
    // The hot loop: one clock read and one sendmmsg per batch; in rate mode, sleep or spin
    // while ahead of the schedule and cap the batch at what is due, so bursts stay small.
    while now < deadline {
        let mut n = c.batch.min(n_pool - pos);
        if dgrams_per_s > 0.0 {
            let due = (now - start).as_secs_f64() * dgrams_per_s;
            let ahead = sent as f64 - due;
            if ahead >= 1.0 {
                let wait = ahead / dgrams_per_s;
                if wait > 200e-6 {
                    std::thread::sleep(Duration::from_secs_f64(wait - 100e-6));
                } else {
                    std::hint::spin_loop();
                }
                now = Instant::now();
                continue;
            }
            n = n.min((-ahead) as usize + 1);
        }
        match pool.send(fd, pos, n) {
            Ok(k) => {
                calls += 1;
                if k < n {
                    short += 1;
                }
                sent += k as u64;
                bytes += prefix[pos + k] - prefix[pos];
                pos = (pos + k) % n_pool;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                errors += 1;
                if errors > 1000 {
                    return Err(format!("sendmmsg keeps failing: {e}"));
                }
            }
        }
        now = Instant::now();
    }
    let secs = (now - start).as_secs_f64();
    let lines = sent * c.lines as u64;
    let (cpu_user, cpu_sys) = mmsg::self_cpu_seconds();
    let total_kind: u64 = kind_lines.iter().sum();
    let frac = |i: usize| kind_lines[i] as f64 / total_kind as f64;
    println!(
        "{}",
        JsonLine::new()
            .str("tool", "loadgen")
            .str("target", &c.target.to_string())
            .opt_int("core", c.core.map(|x| x as u64))
            .int("seed", c.seed)
            .int("keys", c.keys as u64)
            .int("lines_per_datagram", c.lines as u64)
            .str("mix", &format!("{}:{}:{}:{}", c.mix[0], c.mix[1], c.mix[2], c.mix[3]))
            .raw(
                "pool_kind_fraction",
                &format!(
                    "{{\"counters\":{:.3},\"timers\":{:.3},\"gauges\":{:.3},\"sets\":{:.3}}}",
                    frac(0),
                    frac(1),
                    frac(2),
                    frac(3)
                )
            )
            .str("names", c.names.as_str())
            .raw(
                "name_bytes",
                &format!(
                    "{{\"min\":{},\"max\":{},\"mean\":{:.1}}}",
                    name_bytes.0, name_bytes.1, name_bytes.2
                )
            )
            .num("tagged_line_fraction", tagged_lines as f64 / total_kind as f64)
            .int("pool_datagrams", n_pool as u64)
            .num("avg_datagram_bytes", pool_bytes as f64 / n_pool as f64)
            .int("max_datagram_bytes", max_datagram as u64)
            .num("target_lines_per_s", c.rate)
            .int("batch", c.batch as u64)
            .int("datagrams", sent)
            .int("lines", lines)
            .int("bytes", bytes)
            .num("seconds", secs)
            .num("datagrams_per_s", sent as f64 / secs)
            .num("lines_per_s", lines as f64 / secs)
            .num("bytes_per_s", bytes as f64 / secs)
            .int("sendmmsg_calls", calls)
            .int("short_sends", short)
            .int("refused", refused)
            .int("errors", errors)
            .num("cpu_user_s", cpu_user)
            .num("cpu_sys_s", cpu_sys)
            .finish()
    );
    Ok(())
}

fn main() -> ExitCode {
    match config() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(c)) => match run(c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn config(names: Names, keys: usize, lines: usize, tagged_pct: u64) -> Config {
        Config {
            target: "127.0.0.1:8125".parse().unwrap(),
            duration: Duration::from_secs(1),
            rate: 0.0,
            lines,
            keys,
            mix: [4, 3, 2, 1],
            seed: 42,
            batch: 64,
            pool_lines: 1000,
            set_members: 100,
            prefix: "perf.k".into(),
            names,
            tagged_pct,
            core: None,
            dump: None,
        }
    }

    /// Every line of the pool, split off its datagram.
    fn lines(p: &Pool) -> Vec<&str> {
        p.bounds.iter().flat_map(|&(s, e)| std::str::from_utf8(&p.data[s..e]).unwrap().split('\n')).collect()
    }

    #[test]
    fn real_names_are_dotted_30_to_90_bytes_and_one_per_key() {
        let c = config(Names::Real, 100_000, 20, 30);
        let p = build_pool(&c).unwrap();
        let all = lines(&p);
        assert_eq!(all.len(), 100_000);
        let mut series = HashSet::new();
        let (mut tagged, mut with_subject) = (0, 0);
        for l in &all {
            let (name, rest) = l.split_once(':').unwrap();
            assert!((30..=90).contains(&name.len()), "{name} is {} bytes", name.len());
            let segs: Vec<&str> = name.split('.').collect();
            assert!(segs.len() >= 5, "{name}");
            assert!(APPS.contains(&segs[0]), "{name}");
            let ty = rest.split('|').nth(1).unwrap();
            let word = match ty {
                "c" => "count",
                "ms" => "timer",
                "g" => "gauge",
                "s" => "set",
                _ => panic!("type {ty} in {l}"),
            };
            assert_eq!(segs[1], word, "{l}");
            assert!(segs[2].starts_with("svc") && segs[3].starts_with("host"), "{name}");
            assert!(segs.last().unwrap().starts_with("metric_"), "{name}");
            with_subject += SUBJECTS.contains(&segs[segs.len() - 2]) as usize;
            let tags = rest.split_once("|#").map(|(_, t)| t);
            if let Some(t) = tags {
                let n = t.split(',').count();
                assert!((2..=4).contains(&n), "{l}");
                assert!(t.split(',').all(|kv| kv.contains(':')), "{l}");
                tagged += 1;
            }
            series.insert((name, tags));
        }
        // Each key appears once per pass and is its own series (name and tags fixed per key).
        assert_eq!(series.len(), 100_000);
        assert!((25_000..35_000).contains(&tagged), "{tagged} tagged lines");
        assert!((70_000..90_000).contains(&with_subject), "{with_subject} with a subject");
        let n = (p.name_bytes.0, p.name_bytes.1);
        assert!(n.0 >= 30 && n.1 <= 90 && p.name_bytes.2 > 45.0, "{:?}", p.name_bytes);
    }

    #[test]
    fn short_names_carry_no_tags_by_default() {
        let p = build_pool(&config(Names::Short, 1000, 20, 0)).unwrap();
        let all = lines(&p);
        assert_eq!(all.len(), 1000);
        assert!(all.iter().all(|l| l.starts_with("perf.k") && !l.contains("|#")));
        assert_eq!(all.iter().map(|l| l.split(':').next().unwrap()).collect::<HashSet<_>>().len(), 1000);
        assert_eq!(p.tagged_lines, 0);
    }

    #[test]
    fn the_same_seed_builds_the_same_pool() {
        let a = build_pool(&config(Names::Real, 5000, 20, 30)).unwrap();
        let b = build_pool(&config(Names::Real, 5000, 20, 30)).unwrap();
        assert_eq!(a.data, b.data);
    }
}
