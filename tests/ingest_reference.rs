//! The ingest path against a slow, obvious reference: random datagrams (good and bad statsd
//! lines, DogStatsD fields, multi-metric lines, pystatsd JSON, `\r\n`, empty lines, stray bytes)
//! are ingested by `ingest::datagram` and by a reference that splits the datagram on `\n` and
//! hands every line to the full parser, one by one, with no fast path and no in-place line
//! finding. Both must leave exactly the same tables: the same counts by reason, the same series
//! in the same order, the same accumulators bit for bit.

use kstatsd::aggregate::{KeyRules, Limits, Tables};
use kstatsd::ingest::{self, Format};
use kstatsd::parse::{parse_json, parse_line, BadLine, LineBuf, Parsed};

/// A deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
}

const NAMES: &[&str] = &[
    "a",
    "api.requests",
    "web-01.svc.host0042.component.requests.metric_0012345",
    "a b",
    "a/b",
    "x,env=prod",
    "y#k=v",
    "z[k=v]",
    "_under",
    "ünï",
    "",
    "_e{1,1}",
    "_sc",
];
const VALUES: &[&str] =
    &["1", "0", "-2", "+3.5", "12.25", "1e3", "abc", "", "007", "1:2:3", "9999999999999999", "-0"];
const TYPES: &[&str] = &["c", "g", "ms", "h", "d", "s", "zz", "", "m"];
const FIELDS: &[&str] = &[
    "|@0.5",
    "|@0.1",
    "|@x",
    "|@0",
    "|#env:prod,az:z1",
    "|#b:2,a:1",
    "|#",
    "|c:abc",
    "|T1700000000",
    "|Tx",
    "|q",
];
const JSON: &[&str] = &[
    r#"{"metric_name":"j.c","metric_type":"counter","value":2}"#,
    r#"{"metric_name":"j.g","metric_type":"gauge","value":1.5,"tags":{"a":"b"}}"#,
    r#"{"metric_name":"j.t","metric_type":"timer","value":3}"#,
    r#"{"metric_name":"j.s","metric_type":"set","value":"m"}"#,
    r#"{"metric_name":"j.x"}"#,
    r#"{not json"#,
];

/// One random line: usually a metric line, sometimes JSON, an event, or noise.
fn line(rng: &mut Rng) -> String {
    match rng.next() % 20 {
        0 => return rng.pick(JSON).to_string(),
        1 => {
            return rng.pick(&["_e{1,2}:t|xy", "_sc|check|0", "_sc||9", "foo", ":1|c", "{a:1|c"]).to_string()
        }
        _ => {}
    }
    let mut s = rng.pick(NAMES).to_string();
    let segments = if rng.one_in(6) { 2 } else { 1 };
    for _ in 0..segments {
        s.push(':');
        let ty = rng.pick(TYPES);
        if ty == "s" {
            s.push_str(rng.pick(&["u1", "u2", "2001:db8::1", "", "x"]));
        } else {
            s.push_str(rng.pick(VALUES));
        }
        if !rng.one_in(25) {
            s.push('|');
            s.push_str(ty);
        }
        while rng.one_in(3) {
            s.push_str(rng.pick(FIELDS));
        }
    }
    if rng.one_in(40) {
        // a stray byte anywhere
        let at = (rng.next() % (s.len() as u64 + 1)) as usize;
        let at = (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.insert(at, ['|', ':', '#', '@', '\r', ' ', '{'][(rng.next() % 7) as usize]);
    }
    s
}

fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let mut d = String::new();
    if rng.one_in(10) {
        d.push_str(rng.pick(JSON));
        d.push('\n');
    }
    for i in 0..1 + rng.next() % 24 {
        if i > 0 {
            d.push_str(rng.pick(&["\n", "\n", "\n", "\r\n", "\n\n", "\n\r\n"]));
        }
        d.push_str(&line(rng));
    }
    if rng.one_in(4) {
        d.push('\n');
    }
    d.into_bytes()
}

/// The reference: every line on its own, through the full parsers only.
fn reference(tables: &mut Tables, datagram: &[u8]) {
    let mut buf = LineBuf::default();
    tables.stats.packets += 1;
    tables.stats.bytes += datagram.len() as u64;
    let mixed = datagram.first() == Some(&b'{');
    for line in datagram.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if mixed && line[0] == b'{' {
            tables.stats.metrics += 1;
            match parse_json(line, &mut buf.json) {
                Ok(sample) => {
                    let j = &buf.json;
                    if let Err(why) = tables.record(&j.name, &j.tags, &j.member, &[sample]) {
                        tables.stats.count_bad(why);
                    }
                }
                Err(why) => tables.stats.count_bad(why),
            }
            continue;
        }
        match parse_line(line, &mut buf) {
            Ok(Parsed::Metric { name, tags }) => {
                tables.stats.metrics += 1;
                for &why in &buf.bad {
                    tables.stats.count_bad(why);
                }
                if !buf.samples.is_empty() {
                    if let Err(why) = tables.record(name, tags, line, &buf.samples) {
                        tables.stats.count_bad(why);
                    }
                }
            }
            Ok(Parsed::Event) => tables.stats.events += 1,
            Ok(Parsed::ServiceCheck) => tables.stats.service_checks += 1,
            Err(why) => {
                tables.stats.metrics += 1;
                tables.stats.count_bad(why);
            }
        }
    }
}

fn assert_same(fast: &mut Tables, slow: &mut Tables, what: &[u8]) {
    let what = String::from_utf8_lossy(what);
    assert_eq!(fast.stats, slow.stats, "{what:?}");
    assert_eq!(fast.series_count(), slow.series_count(), "{what:?}");
    assert_eq!(fast.held_series(), slow.held_series(), "{what:?}");
    for (a, b) in fast.series().zip(slow.series()) {
        assert_eq!((a.kind, a.key, a.name_len, a.slot), (b.kind, b.key, b.name_len, b.slot), "{what:?}");
    }
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&fast.counters), bits(&slow.counters), "{what:?}");
    assert_eq!(fast.sets, slow.sets, "{what:?}");
    for (a, b) in fast.gauges.iter().zip(&slow.gauges) {
        assert_eq!(a.absolute.map(f64::to_bits), b.absolute.map(f64::to_bits), "{what:?}");
        assert_eq!(bits(&a.deltas), bits(&b.deltas), "{what:?}");
    }
    let (ta, tb) = (fast.timers_mut().to_vec(), slow.timers_mut().to_vec());
    assert_eq!(ta.len(), tb.len());
    for (a, b) in ta.iter().zip(&tb) {
        assert_eq!((bits(&a.values), a.count.to_bits()), (bits(&b.values), b.count.to_bits()), "{what:?}");
    }
}

fn limits(rng: &mut Rng) -> Limits {
    Limits {
        key: KeyRules {
            sanitize: !rng.one_in(3),
            name_tags: !rng.one_in(3),
            max_name_bytes: if rng.one_in(4) { 16 } else { 200 },
            max_tags: 4,
        },
        max_series: if rng.one_in(4) { 8 } else { 10_000 },
        max_set_members: if rng.one_in(4) { 4 } else { 10_000 },
        max_samples: if rng.one_in(4) { 16 } else { 100_000 },
    }
}

#[test]
fn the_ingest_path_agrees_with_a_line_by_line_reference_on_random_datagrams() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut buf = LineBuf::default();
    let mut bad_seen = 0;
    for _ in 0..300 {
        let limits = limits(&mut rng);
        let (mut fast, mut slow) = (Tables::new(limits.clone()), Tables::new(limits));
        // A few datagrams into the same tables, so that hits, limits and later spellings of a
        // series are compared too.
        // Now and then an interval ends between them, and the next starts on warm keys.
        for _ in 0..1 + rng.next() % 8 {
            if rng.one_in(4) {
                fast.clear();
                slow.clear();
            }
            let d = random_datagram(&mut rng);
            ingest::datagram(&mut fast, &d, Format::Statsd, false, &mut buf, &mut None);
            reference(&mut slow, &d);
            assert_same(&mut fast, &mut slow, &d);
        }
        bad_seen += fast.stats.bad_total();
    }
    assert!(bad_seen > 100, "the random datagrams must exercise bad lines too: {bad_seen}");
}

/// The same with tables large enough that the ingest path batches its lookups (past 16 Ki raw
/// keys): lines in a batch must be recorded in order, each under its own key.
#[test]
fn with_large_tables_the_batched_ingest_agrees_with_the_reference() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = LineBuf::default();
    let (mut fast, mut slow) = (Tables::new(Limits::default()), Tables::new(Limits::default()));
    for chunk in 0..1_000 {
        let fill: String = (0..20).map(|i| format!("fill.k{}:{i}|c\n", chunk * 20 + i)).collect();
        ingest::datagram(&mut fast, fill.as_bytes(), Format::Statsd, false, &mut buf, &mut None);
        reference(&mut slow, fill.as_bytes());
    }
    assert_same(&mut fast, &mut slow, b"the filling");
    for _ in 0..100 {
        let mut all = Vec::new();
        for _ in 0..20 {
            let d = random_datagram(&mut rng);
            ingest::datagram(&mut fast, &d, Format::Statsd, false, &mut buf, &mut None);
            reference(&mut slow, &d);
            all.extend_from_slice(&d);
            all.push(b'\n');
        }
        assert_same(&mut fast, &mut slow, &all);
    }
    assert!(fast.series_count() > 20_000);
}

#[test]
fn the_reference_sees_what_a_user_would() {
    // The oracle itself, on a datagram whose result is known by hand.
    let mut t = Tables::new(Limits::default());
    reference(&mut t, b"a:1|c\r\n\na:2|c|@0.5\nb:x|c\n_sc|c|0\n");
    assert_eq!((t.stats.metrics, t.stats.bad(BadLine::BadValue), t.stats.service_checks), (3, 1, 1));
    assert_eq!(t.counters, vec![5.0]);
}
