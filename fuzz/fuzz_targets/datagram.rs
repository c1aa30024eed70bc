//! Fuzzes the whole datagram → tables → flush → serialize path with small limits, so that the
//! limit paths run too. Properties: no panic; every non-empty line is counted exactly once (as a
//! metric, an event or a service check); the limits hold; every key is UTF-8 and every tag in it
//! one that carbon's tag database accepts (name tags on or off, sanitizing on or off); the flat JSON
//! rendering is UTF-8 and names every flushed series; reading the datagram in place (the fast
//! path finds each line's end itself) gives exactly what recording its lines one by one gives;
//! the same datagram in a second interval, on the keys the tables kept warm, records exactly
//! what it did on cold tables.
#![no_main]

use kstatsd::aggregate::{KeyRules, Limits, Tables};
use kstatsd::config::Config;
use kstatsd::flush::{CounterNames, FlushMeta, Flusher, Naming};
use kstatsd::ingest::{self, Format};
use kstatsd::parse::{Kind, LineBuf};
use kstatsd::sink::console::render_flat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let limits = Limits {
        key: KeyRules {
            sanitize: datagram.len() % 2 == 0,
            name_tags: datagram.len() % 3 != 0,
            max_name_bytes: 64,
            max_tags: 4,
        },
        max_series: 32,
        max_set_members: 16,
        max_samples: 64,
    };
    let mut tables = Tables::new(limits.clone());
    ingest::datagram(&mut tables, datagram, Format::Statsd, false, &mut LineBuf::default(), &mut None);
    let mut one_by_one = Tables::new(limits);
    for line in datagram.split(|&b| b == b'\n') {
        // A datagram that starts with `{` holds pystatsd JSON messages between statsd lines; a
        // stream line may be either.
        match datagram.first() {
            Some(b'{') => ingest::stream_line(&mut one_by_one, line, &mut LineBuf::default()),
            _ => ingest::statsd_line(&mut one_by_one, line, &mut LineBuf::default()),
        }
    }
    assert_eq!(tables.stats.metrics, one_by_one.stats.metrics);
    assert_eq!(tables.stats.bad, one_by_one.stats.bad);
    assert_eq!(tables.series_count(), one_by_one.series_count());
    assert_eq!(tables.held_series(), one_by_one.held_series());
    for (a, b) in tables.series().zip(one_by_one.series()) {
        assert_eq!((a.kind, a.key, a.slot), (b.kind, b.key, b.slot));
    }
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&tables.counters), bits(&one_by_one.counters));
    assert_eq!(tables.sets, one_by_one.sets);
    for (a, b) in tables.gauges.iter().zip(&one_by_one.gauges) {
        assert_eq!(a.absolute.map(f64::to_bits), b.absolute.map(f64::to_bits));
        assert_eq!(bits(&a.deltas), bits(&b.deltas));
    }
    for (a, b) in tables.timers_mut().iter().zip(one_by_one.timers_mut().iter()) {
        assert_eq!((bits(&a.values), a.count.to_bits()), (bits(&b.values), b.count.to_bits()));
        assert_eq!(a.sketched, b.sketched, "values past max_samples");
    }

    let lines = datagram
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .count() as u64;
    let st = &tables.stats;
    assert_eq!(st.packets, 1);
    assert_eq!(st.bytes, datagram.len() as u64);
    assert_eq!(st.metrics + st.events + st.service_checks, lines);
    assert!(tables.series_count() <= 32);
    for s in tables.series() {
        assert!(!s.key.is_empty() && s.name_len > 0 && s.name_len <= s.key.len());
        // every tag, wherever it came from, is one carbon's tag database accepts
        for tag in s.key[s.name_len..].split(';').skip(1) {
            let (k, v) = tag.split_once('=').expect("every tag has a value");
            assert!(!k.is_empty() && !k.contains([';', '!', '^', '=']), "{:?}", s.key);
            assert!(!v.is_empty() && !v.starts_with('~'), "{:?}", s.key);
        }
    }

    let cold = recorded(&mut tables);

    let mut config = Config::defaults().aggregate;
    config.limits = tables.limits().clone();
    let naming = Naming::new(&config);
    let mut flusher = Flusher::new(config);
    let snap = flusher.flush(&mut tables, &FlushMeta { interval: 1.0, clock: 1, ..FlushMeta::default() });
    let series = snap.counters.len() + snap.timers.len() + snap.gauges.len() + snap.sets.len();
    assert_eq!(snap.num_stats as usize, series);
    let mut out = Vec::new();
    render_flat(snap, &naming, CounterNames { rate: true, count: true }, &mut String::new(), &mut out);
    let text = std::str::from_utf8(&out).expect("flat JSON is UTF-8");
    assert!(text.starts_with("{\"gauges\":{") && text.ends_with("\"rateUnit\":\"seconds\"}"));

    // The next interval, on warm keys: the same lines record the same series and figures.
    tables.clear();
    ingest::datagram(&mut tables, datagram, Format::Statsd, false, &mut LineBuf::default(), &mut None);
    assert_eq!(recorded(&mut tables), cold);
});

/// What the tables recorded this interval: the counts by reason, then each series touched, in
/// order, with its accumulator's bits.
fn recorded(t: &mut Tables) -> Vec<String> {
    let mut out = vec![format!("{:?} {:?}", t.stats.metrics, t.stats.bad)];
    let live: Vec<(Kind, String, usize)> = t.series().map(|s| (s.kind, s.key.to_string(), s.slot)).collect();
    for (kind, key, slot) in live {
        let acc = match kind {
            Kind::Counter => format!("{:x}", t.counters[slot].to_bits()),
            Kind::Set => t.sets[slot].to_string(),
            Kind::Gauge => {
                let g = &t.gauges[slot];
                let deltas: Vec<u64> = g.deltas.iter().map(|d| d.to_bits()).collect();
                format!("{:?} {deltas:?}", g.absolute.map(f64::to_bits))
            }
            Kind::Timer => {
                let tm = &t.timers_mut()[slot];
                let values: Vec<u64> = tm.values.iter().map(|v| v.to_bits()).collect();
                format!("{values:?} {:x} {:?}", tm.count.to_bits(), tm.sketched)
            }
        };
        out.push(format!("{kind:?} {key} {acc}"));
    }
    out
}
