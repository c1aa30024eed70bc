//! The statsd / DogStatsD line parser. Runs on the ingest thread for every line.
//!
//! A line is `name:values|type[|field…]`, optionally followed by `:values|type[|field…]` segments
//! (etsy's multi-metric form), where `values` may pack several values separated by `:`
//! (DogStatsD), except in a set: a set member is every byte up to the `|` (`ips:2001:db8::1|s`
//! is one member, as DogStatsD defines it). Fields after the type are `@rate`, `#tags`, `c:container`, `Tts`; unknown fields
//! are skipped so newer clients keep working. The type and the `@`/`T` fields end at `|` or `:`
//! (a `:` there starts the next segment); tags and container ids end only at `|` because they
//! hold `:` themselves.
//!
//! Segments stand alone, as in etsy: a bad segment is recorded (by reason) and the good ones'
//! samples are kept, all in the caller's reusable [`LineBuf`]. Within a segment, packed values
//! are all or nothing. The common single-sample line costs three short scans, one type match and
//! one number parse.

use super::scan::{find, find2};
use super::{parse_f64, BadLine};
use memchr::memchr;

/// The aggregation a sample feeds. `ms`, `h` and `d` all aggregate as timers (protocol.md; etsy
/// 0.9.0 itself only knows `ms` and counts `h`/`d` as counters: a documented difference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Counter = 0,
    Timer = 1,
    Gauge = 2,
    Set = 3,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Counter, Kind::Timer, Kind::Gauge, Kind::Set];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Timer => "timer",
            Kind::Gauge => "gauge",
            Kind::Set => "set",
        }
    }
}

/// What one sample carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleValue {
    /// Counter increment (already scaled by 1/rate), gauge absolute value, timer value.
    Number(f64),
    /// A gauge value with a leading sign: added to the last known value.
    Delta(f64),
    /// A set member: the byte range within the line.
    Member { start: u32, end: u32 },
}

/// One value of one line, ready to record. `weight` is 1/rate (timers count it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub kind: Kind,
    pub value: SampleValue,
    pub weight: f64,
}

/// A parsed line: name and raw tags borrow the datagram; the samples are in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Metric { name: &'a [u8], tags: &'a [u8] },
    Event,
    ServiceCheck,
}

/// The caller's reusable buffers for one line: the samples of its good segments and the reason
/// for each bad segment (cleared by every `parse_line`; no allocation once warm).
#[derive(Debug, Default)]
pub struct LineBuf {
    pub samples: Vec<Sample>,
    pub bad: Vec<BadLine>,
    /// The pystatsd JSON parser's buffers (unused by this parser).
    pub json: super::JsonBuf,
}

/// A line the fast path read: its name is `line[..name_len]`, its raw DogStatsD tags
/// `line[tags.0..tags.1]` (empty when it has none), and it ends after `len` bytes (at a `\n` or
/// at the end of the text).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Simple {
    pub name_len: usize,
    pub tags: (usize, usize),
    pub sample: Sample,
    pub len: usize,
}

impl Simple {
    /// The name and the raw tags, borrowed from the line this was read from.
    #[inline(always)]
    pub fn name_tags<'a>(&self, line: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        (&line[..self.name_len], &line[self.tags.0..self.tags.1])
    }
}

/// [`parse_simple_prefix`] on one whole line (no `\n`).
#[inline(always)]
pub fn parse_simple(line: &[u8]) -> Option<Simple> {
    parse_simple_prefix(line).filter(|s| s.len == line.len())
}

/// The fast path, for the shape of almost every line a client sends: one segment with one value,
/// `name:number|type` or `name:member|s`, then optionally `|@rate`, then optionally `|#tags`,
/// and nothing else. One scan for `:`, the number parsed while scanning for `|` (no second
/// pass over it), the type compared in place, the tags found with one scan for `|` or `\n`.
/// Returns `None` for anything else (several values or segments, other fields or another
/// order, a signed rate, an exponent, more than 15 digits, a negative timer, a `\r` before the
/// `\n`), which then goes through [`parse_line`] and gets exactly the same result (a property
/// test and the `line` fuzz target check that).
///
/// `rest` is the unread part of a datagram: the line ends where its last field ends, which must
/// be at a `\n` or at the end of `rest`, so the caller needs no separate newline search (9 %
/// less time at 100 keys in `profile_ingest` than a split, then a parse). Tags, rates and sets
/// used to take the full parser; reading them here took the realistic mix (a quarter of its
/// lines tagged) from 827 to 648 instructions per line at 1 k keys.
#[inline(always)]
pub fn parse_simple_prefix(rest: &[u8]) -> Option<Simple> {
    let colon = find2(rest, 0, b':', b'\n')?;
    if rest[colon] != b':' || colon == 0 || rest[0] == b'_' {
        return None;
    }
    let number = SimpleNumber::scan(rest, colon + 1);
    let numeric = rest.get(number.end) == Some(&b'|') && number.fits();
    // otherwise only a set member: every byte up to the first `|`, `:` included
    let bar = match numeric {
        true => number.end,
        false => find2(rest, number.end, b'|', b'\n').filter(|&i| rest[i] == b'|')?,
    };
    let (kind, type_len) = match rest.get(bar + 1..) {
        Some([b'c', ..]) => (Kind::Counter, 1),
        Some([b'm', b's', ..]) => (Kind::Timer, 2),
        Some([b'h' | b'd', ..]) => (Kind::Timer, 1),
        Some([b'g', ..]) => (Kind::Gauge, 1),
        Some([b's', ..]) => (Kind::Set, 1),
        _ => return None,
    };
    if !numeric && kind != Kind::Set {
        return None;
    }
    let mut pos = bar + 1 + type_len;
    let (weight, tags) = match rest.get(pos) {
        None | Some(b'\n') => (1.0, (0, 0)),
        Some(b'|') => simple_fields(rest, &mut pos)?,
        _ => return None,
    };
    let value = match kind {
        Kind::Set => SampleValue::Member { start: (colon + 1) as u32, end: bar as u32 },
        _ => number.value(kind, weight)?,
    };
    Some(Simple { name_len: colon, tags, sample: Sample { kind, value, weight }, len: pos })
}

/// The fast path's fields after the type, at the `|` at `rest[*pos]`: `|@rate`, then `|#tags`,
/// either or both, and then the line's end. Returns the weight (1/rate) and the tags' range,
/// and moves `pos` to the line's end.
#[inline(always)]
fn simple_fields(rest: &[u8], pos: &mut usize) -> Option<(f64, (usize, usize))> {
    let mut weight = 1.0;
    if rest.get(*pos + 1) == Some(&b'@') {
        let rate = SimpleNumber::scan(rest, *pos + 2);
        if rate.signed || !rate.fits() || rate.mantissa == 0 {
            return None;
        }
        weight = 1.0 / rate.magnitude();
        *pos = rate.end;
    }
    let mut tags = (0, 0);
    if rest.get(*pos..*pos + 2) == Some(&b"|#"[..]) {
        let end = find2(rest, *pos + 2, b'|', b'\n').unwrap_or(rest.len());
        if rest[end - 1] == b'\r' {
            return None;
        }
        tags = (*pos + 2, end);
        *pos = end;
    }
    matches!(rest.get(*pos), None | Some(b'\n')).then_some((weight, tags))
}

/// A number of the fast path's shape, scanned once: digits with at most one `.`, and a sign.
struct SimpleNumber {
    /// Index of the first byte after the number.
    end: usize,
    mantissa: u64,
    /// Index of the `.`, or `usize::MAX`.
    dot: usize,
    signed: bool,
    neg: bool,
    digits: usize,
}

impl SimpleNumber {
    /// Scans the number that starts at `line[start]` (it may be empty).
    #[inline(always)]
    fn scan(line: &[u8], start: usize) -> SimpleNumber {
        let mut i = start;
        let signed = matches!(line.get(i), Some(b'+' | b'-'));
        let neg = line.get(i) == Some(&b'-');
        i += usize::from(signed);
        let digits_start = i;
        let mut mantissa: u64 = 0;
        let mut dot = usize::MAX;
        while let Some(&b) = line.get(i) {
            let d = b.wrapping_sub(b'0');
            if d <= 9 {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(d as u64);
            } else if b == b'.' && dot == usize::MAX {
                dot = i;
            } else {
                break;
            }
            i += 1;
        }
        let digits = i - digits_start - usize::from(dot != usize::MAX);
        SimpleNumber { end: i, mantissa, dot, signed, neg, digits }
    }

    /// Whether the mantissa is exact in an f64 (at most 15 digits), so one division is exact.
    #[inline(always)]
    fn fits(&self) -> bool {
        (1..=15).contains(&self.digits)
    }

    /// The absolute value, correctly rounded (the same f64 as [`parse_f64`]).
    #[inline(always)]
    fn magnitude(&self) -> f64 {
        match self.dot {
            usize::MAX => self.mantissa as f64,
            d => self.mantissa as f64 / super::number::POW10[self.end - d - 1],
        }
    }

    /// The sample value for `kind` at `weight` (1/rate), as [`push_values`] computes it; `None`
    /// for a negative timer, which the full parser counts.
    #[inline(always)]
    fn value(&self, kind: Kind, weight: f64) -> Option<SampleValue> {
        let x = if self.neg { -self.magnitude() } else { self.magnitude() };
        Some(match kind {
            Kind::Timer if self.neg => return None,
            Kind::Gauge if self.signed => SampleValue::Delta(x),
            Kind::Counter => SampleValue::Number(x * weight),
            _ => SampleValue::Number(x),
        })
    }
}

/// Parses one line (no `\n`). `Err` means the line as a whole is bad (no `:`, empty name, a
/// malformed event). Otherwise each `:`-separated segment stands alone, as in etsy: a bad one is
/// recorded in `out.bad` and the good ones' samples are in `out.samples` (possibly none).
#[inline]
pub fn parse_line<'a>(line: &'a [u8], out: &mut LineBuf) -> Result<Parsed<'a>, BadLine> {
    out.samples.clear();
    out.bad.clear();
    if line.first() == Some(&b'_') {
        if let Some(p) = parse_event_or_check(line) {
            return p;
        }
    }
    let colon = find(line, 0, b':').ok_or(BadLine::NoValue)?;
    let name = &line[..colon];
    if name.is_empty() {
        return Err(BadLine::EmptyName);
    }
    let mut tags: Option<&[u8]> = None;
    let mut pos = colon + 1;
    loop {
        // values, up to the first '|'; the type, up to '|' or ':' (after an error the segment is
        // still scanned to its end)
        let bar = find(line, pos, b'|');
        let end = bar.map_or(line.len(), |bar| find_end(line, bar + 1));
        let ty = bar.map(|bar| &line[bar + 1..end]);
        // an empty segment ("a:1|c::2|c", "a::") is one bad line, as in etsy; a set member may
        // start with ':' (`ips:::1|s` is the member `::1`)
        if line.get(pos) == Some(&b':') && ty != Some(b"s") {
            out.bad.push(BadLine::NoType);
            pos += 1;
            continue;
        }
        let (Some(bar), Some(ty)) = (bar, ty) else {
            out.bad.push(BadLine::NoType);
            break;
        };
        let values = (pos, bar);
        let mut bad = None;
        let kind = match ty {
            b"c" => Kind::Counter,
            b"g" => Kind::Gauge,
            b"ms" | b"h" | b"d" => Kind::Timer,
            b"s" => Kind::Set,
            b"" => {
                bad = Some(BadLine::NoType);
                Kind::Counter
            }
            _ => {
                bad = Some(BadLine::UnknownType);
                Kind::Counter
            }
        };
        pos = end;
        let mut rate = None;
        // fields: "|x…" until the segment ends at the line's end or a ':' after a field
        while line.get(pos) == Some(&b'|') {
            pos += 1;
            match line.get(pos) {
                Some(b'@') => {
                    let end = find_end(line, pos + 1);
                    // the first rate counts, as in etsy
                    match parse_f64(&line[pos + 1..end]) {
                        // 1/rate must be finite too (`@1e-320` is refused)
                        Some(r) if r > 0.0 && (1.0 / r).is_finite() => {
                            rate.get_or_insert(r);
                        }
                        _ => {
                            bad.get_or_insert(BadLine::BadSampleRate);
                        }
                    }
                    pos = end;
                }
                Some(b'#') => {
                    let end = find_bar(line, pos + 1);
                    if tags.is_some() {
                        bad.get_or_insert(BadLine::DuplicateTags);
                    } else {
                        tags = Some(&line[pos + 1..end]);
                    }
                    pos = end;
                }
                Some(b'T') => {
                    let end = find_end(line, pos + 1);
                    let ts = &line[pos + 1..end];
                    if ts.is_empty() || ts.len() > 12 || !ts.iter().all(u8::is_ascii_digit) {
                        bad.get_or_insert(BadLine::BadTimestamp);
                    }
                    pos = end;
                }
                // `c:<container id>` and any unknown field: skipped up to the next '|'
                _ => pos = find_bar(line, pos),
            }
        }
        let seg_start = out.samples.len();
        match bad {
            None => {
                let rate = rate.unwrap_or(1.0);
                if let Err(why) = push_values(line, values, kind, rate, &mut out.samples) {
                    out.samples.truncate(seg_start);
                    out.bad.push(why);
                }
            }
            Some(why) => out.bad.push(why),
        }
        match line.get(pos) {
            Some(b':') => pos += 1,
            _ => break,
        }
    }
    Ok(Parsed::Metric { name, tags: tags.unwrap_or(b"") })
}

/// Index of the next '|' or ':' at or after `from`, or the line's end.
#[inline]
fn find_end(line: &[u8], from: usize) -> usize {
    find2(line, from, b'|', b':').unwrap_or(line.len())
}

/// Index of the next '|' at or after `from`, or the line's end.
#[inline]
fn find_bar(line: &[u8], from: usize) -> usize {
    find(line, from, b'|').unwrap_or(line.len())
}

/// Parses the `:`-separated values of one segment into samples of `kind`.
#[inline]
fn push_values(
    line: &[u8],
    (start, end): (usize, usize),
    kind: Kind,
    rate: f64,
    samples: &mut Vec<Sample>,
) -> Result<(), BadLine> {
    let weight = 1.0 / rate;
    let mut pos = start;
    loop {
        let stop = find(&line[..end], pos, b':').unwrap_or(end);
        let v = &line[pos..stop];
        let value = match kind {
            Kind::Counter => {
                let x = parse_f64(v).ok_or(BadLine::BadValue)? * weight;
                if !x.is_finite() {
                    return Err(BadLine::BadValue); // 1e300|c|@1e-10 overflows
                }
                SampleValue::Number(x)
            }
            Kind::Timer => {
                let x = parse_f64(v).ok_or(BadLine::BadValue)?;
                if x < 0.0 {
                    return Err(BadLine::NegativeTimer);
                }
                SampleValue::Number(x)
            }
            Kind::Gauge => {
                let x = parse_f64(v).ok_or(BadLine::BadValue)?;
                match v.first() {
                    Some(b'+' | b'-') => SampleValue::Delta(x),
                    _ => SampleValue::Number(x),
                }
            }
            // a set member is never split: every byte up to the '|' (DogStatsD's definition; an
            // empty member is "0", as in etsy: `fields[0] || '0'`)
            Kind::Set => SampleValue::Member { start: start as u32, end: end as u32 },
        };
        samples.push(Sample { kind, value, weight });
        if stop == end || kind == Kind::Set {
            return Ok(());
        }
        pos = stop + 1;
    }
}

/// Recognises `_e{title_len,text_len}:title|text|…` and `_sc|name|status|…`. `None` means the
/// line only starts with `_` and is an ordinary metric name.
#[cold]
fn parse_event_or_check(line: &[u8]) -> Option<Result<Parsed<'static>, BadLine>> {
    if let Some(rest) = line.strip_prefix(b"_sc|") {
        let mut fields = rest.split(|&b| b == b'|');
        let name_ok = fields.next().is_some_and(|n| !n.is_empty());
        let status_ok = matches!(fields.next(), Some(b"0" | b"1" | b"2" | b"3"));
        return Some(if name_ok && status_ok { Ok(Parsed::ServiceCheck) } else { Err(BadLine::BadEvent) });
    }
    let rest = line.strip_prefix(b"_e{")?;
    Some(parse_event(rest).map(|()| Parsed::Event).ok_or(BadLine::BadEvent))
}

/// `title_len,text_len}:title|text…` with the lengths in bytes, both titles present.
fn parse_event(rest: &[u8]) -> Option<()> {
    let close = memchr(b'}', rest)?;
    let comma = memchr(b',', &rest[..close])?;
    let title_len: usize = std::str::from_utf8(&rest[..comma]).ok()?.parse().ok()?;
    let text_len: usize = std::str::from_utf8(&rest[comma + 1..close]).ok()?.parse().ok()?;
    let body = rest.get(close + 1..)?.strip_prefix(b":")?;
    let after_title = body.get(title_len..)?.strip_prefix(b"|")?;
    let after_text = after_title.get(text_len..)?;
    (title_len > 0 && (after_text.is_empty() || after_text[0] == b'|')).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line's name, tags and samples; `Err` with the first reason when nothing in the line
    /// was good.
    fn parse(s: &str) -> Result<(String, String, Vec<Sample>), BadLine> {
        let (p, samples, bad) = parse_all(s);
        let p = p?;
        if samples.is_empty() && !bad.is_empty() {
            return Err(bad[0]);
        }
        assert!(bad.is_empty(), "{s}: partly bad: {bad:?}");
        Ok(p)
    }

    type Name = (String, String, Vec<Sample>);

    fn parse_all(s: &str) -> (Result<Name, BadLine>, Vec<Sample>, Vec<BadLine>) {
        let mut out = LineBuf::default();
        let r = parse_line(s.as_bytes(), &mut out).map(|p| match p {
            Parsed::Metric { name, tags } => (
                String::from_utf8(name.to_vec()).unwrap(),
                String::from_utf8(tags.to_vec()).unwrap(),
                out.samples.clone(),
            ),
            Parsed::Event => ("<event>".into(), String::new(), vec![]),
            Parsed::ServiceCheck => ("<sc>".into(), String::new(), vec![]),
        });
        (r, out.samples, out.bad)
    }

    fn num(kind: Kind, x: f64, weight: f64) -> Sample {
        Sample { kind, value: SampleValue::Number(x), weight }
    }

    #[test]
    fn every_type() {
        assert_eq!(parse("a:1|c").unwrap().2, vec![num(Kind::Counter, 1.0, 1.0)]);
        assert_eq!(parse("a:2.5|ms").unwrap().2, vec![num(Kind::Timer, 2.5, 1.0)]);
        assert_eq!(parse("a:3|h").unwrap().2, vec![num(Kind::Timer, 3.0, 1.0)]);
        assert_eq!(parse("a:4|d").unwrap().2, vec![num(Kind::Timer, 4.0, 1.0)]);
        assert_eq!(parse("a:5|g").unwrap().2, vec![num(Kind::Gauge, 5.0, 1.0)]);
        let g = parse("a:-5|g").unwrap().2;
        assert_eq!(g[0].value, SampleValue::Delta(-5.0));
        assert_eq!(parse("a:+5|g").unwrap().2[0].value, SampleValue::Delta(5.0));
        assert_eq!(parse("a:xyz|s").unwrap().2[0].value, SampleValue::Member { start: 2, end: 5 });
    }

    #[test]
    fn sample_rates_scale_counters_and_weight_timers() {
        assert_eq!(parse("a:2|c|@0.5").unwrap().2, vec![num(Kind::Counter, 4.0, 2.0)]);
        assert_eq!(parse("a:0.25|c|@0.25").unwrap().2, vec![num(Kind::Counter, 1.0, 4.0)]);
        assert_eq!(parse("t:10|ms|@0.1").unwrap().2, vec![num(Kind::Timer, 10.0, 1.0 / 0.1)]);
        // a rate above 1 is accepted and scales down, as etsy does
        assert_eq!(parse("a:4|c|@2").unwrap().2, vec![num(Kind::Counter, 2.0, 0.5)]);
    }

    #[test]
    fn multi_value_and_packed_lines() {
        let s = parse("a:1|c:2|c:3|ms").unwrap().2;
        assert_eq!(
            s,
            vec![num(Kind::Counter, 1.0, 1.0), num(Kind::Counter, 2.0, 1.0), num(Kind::Timer, 3.0, 1.0)]
        );
        let s = parse("a:1:2:3|ms|@0.5").unwrap().2;
        assert_eq!(
            s,
            vec![num(Kind::Timer, 1.0, 2.0), num(Kind::Timer, 2.0, 2.0), num(Kind::Timer, 3.0, 2.0)]
        );
        let s = parse("a:1|c|@0.5:2|c").unwrap().2;
        assert_eq!(s, vec![num(Kind::Counter, 2.0, 2.0), num(Kind::Counter, 2.0, 1.0)]);
    }

    /// A set member is everything between the first `:` and the first `|`: IPv6 addresses, MACs
    /// and `ns:id` ids are one member each (etsy would split them into bad segments).
    #[test]
    fn set_members_are_never_split() {
        let member = |s: &str| {
            let (_, _, samples) = parse(s).unwrap();
            assert_eq!(samples.len(), 1, "{s}");
            match samples[0].value {
                SampleValue::Member { start, end } => s[start as usize..end as usize].to_string(),
                v => panic!("{s}: {v:?}"),
            }
        };
        assert_eq!(member("ips:2001:db8::1|s"), "2001:db8::1");
        assert_eq!(member("ips:::1|s"), "::1");
        assert_eq!(member("mac:aa:bb:cc|s"), "aa:bb:cc");
        assert_eq!(member("user:user:42|s|#t:1"), "user:42");
        assert_eq!(parse("user:user:42|s|#t:1").unwrap().1, "t:1");
        assert_eq!(member("u:a:b|s|@0.5"), "a:b");
        assert_eq!(member("u:|s"), "", "the empty member (recorded as \"0\")");
        // the segment after a set still starts at the next ':'
        let (_, samples, bad) = parse_all("u:a:b|s:2|c");
        assert!(bad.is_empty());
        assert_eq!(samples[0].value, SampleValue::Member { start: 2, end: 5 });
        assert_eq!(samples[1], num(Kind::Counter, 2.0, 1.0));
        // packing still applies to every other type, and an empty segment is still bad
        assert_eq!(parse("a:1:2|c").unwrap().2.len(), 2);
        let (_, samples, bad) = parse_all("a:1|c::2|c");
        assert_eq!((samples.len(), bad), (2, vec![BadLine::NoType]));
    }

    /// Found by fuzz/line: `1c::` is two empty segments, two bad lines as etsy counts them, also
    /// when no `|` follows (the set rule looks for the type first).
    #[test]
    fn empty_segments_without_a_type_are_each_a_bad_line() {
        assert_eq!(parse_all("1c::").2, vec![BadLine::NoType, BadLine::NoType]);
        assert_eq!(parse_all("a:").2, vec![BadLine::NoType]);
        assert_eq!(parse_all("a:1|c::").2, vec![BadLine::NoType, BadLine::NoType]);
        let (_, samples, bad) = parse_all("a:::x|s");
        assert_eq!((samples.len(), bad), (1, vec![]), "the member '::x'");
    }

    #[test]
    fn dogstatsd_fields() {
        let (name, tags, s) = parse("api.req:1|c|@0.5|#env:prod,host:a|c:abc123|T1700000000").unwrap();
        assert_eq!((name.as_str(), tags.as_str()), ("api.req", "env:prod,host:a"));
        assert_eq!(s, vec![num(Kind::Counter, 2.0, 2.0)]);
        let (_, tags, s) = parse("x:5|ms|#a,b:c:d|zz:unknown|@1").unwrap();
        assert_eq!(tags, "a,b:c:d");
        assert_eq!(s, vec![num(Kind::Timer, 5.0, 1.0)]);
        // container id field holding colons does not start a new segment
        assert_eq!(parse("x:1|c|c:ab:cd").unwrap().2.len(), 1);
        assert_eq!(parse("x:1|g|#").unwrap().1, "");
    }

    #[test]
    fn events_and_service_checks() {
        assert_eq!(parse("_e{5,4}:title|text").unwrap().0, "<event>");
        assert_eq!(parse("_e{5,4}:title|text|#t:1|p:low").unwrap().0, "<event>");
        assert_eq!(parse("_sc|db.up|0|#env:prod").unwrap().0, "<sc>");
        assert_eq!(parse("_e{9,4}:title|text"), Err(BadLine::BadEvent));
        assert_eq!(parse("_e{x,4}:title|text"), Err(BadLine::BadEvent));
        assert_eq!(parse("_sc|db.up|7"), Err(BadLine::BadEvent));
        assert_eq!(parse("_sc||0"), Err(BadLine::BadEvent));
        // an ordinary name starting with '_'
        assert_eq!(parse("_internal:1|c").unwrap().0, "_internal");
    }

    #[test]
    fn bad_lines_by_reason() {
        for (line, why) in [
            ("foo", BadLine::NoValue),
            (":1|c", BadLine::EmptyName),
            ("foo:1", BadLine::NoType),
            ("foo:1|", BadLine::NoType),
            ("foo:1|x", BadLine::UnknownType),
            ("foo:1|cc", BadLine::UnknownType),
            ("bar:abc|c", BadLine::BadValue),
            ("quux:|c", BadLine::BadValue),
            ("n:nan|g", BadLine::BadValue),
            ("n:inf|ms", BadLine::BadValue),
            ("n:0x10|c", BadLine::BadValue),
            ("baz:-1|ms", BadLine::NegativeTimer),
            ("qux:1|c|@x", BadLine::BadSampleRate),
            ("qux:1|c|@0", BadLine::BadSampleRate),
            ("qux:1|c|@-0.5", BadLine::BadSampleRate),
            ("qux:1|c|@", BadLine::BadSampleRate),
            ("qux:1|ms|@1e-320", BadLine::BadSampleRate),
            ("qux:1e300|c|@1e-10", BadLine::BadValue),
            ("t:1|c|Tabc", BadLine::BadTimestamp),
            ("t:1|c|#a|#b", BadLine::DuplicateTags),
            ("a:1:|ms", BadLine::BadValue),
        ] {
            assert_eq!(parse(line).map(|p| p.2), Err(why), "{line}");
        }
    }

    /// etsy's multi-metric lines: each segment stands alone, the good ones count.
    #[test]
    fn a_bad_segment_does_not_spoil_the_others() {
        let (_, samples, bad) = parse_all("a:1|c:x|c:2|c");
        assert_eq!(samples, vec![num(Kind::Counter, 1.0, 1.0), num(Kind::Counter, 2.0, 1.0)]);
        assert_eq!(bad, vec![BadLine::BadValue]);
        let (_, samples, bad) = parse_all("a:1|c:2");
        assert_eq!((samples.len(), bad), (1, vec![BadLine::NoType]));
        let (_, samples, bad) = parse_all("a:1|q|@0.5:2|ms|@x:3|g");
        assert_eq!(samples, vec![num(Kind::Gauge, 3.0, 1.0)]);
        assert_eq!(bad, vec![BadLine::UnknownType, BadLine::BadSampleRate]);
        let (_, samples, bad) = parse_all("a:1|c::2|c");
        assert_eq!((samples.len(), bad), (2, vec![BadLine::NoType]), "an empty segment is one bad line");
        assert_eq!(
            parse("a:1|c|@0.5|@0.25").unwrap().2,
            vec![num(Kind::Counter, 2.0, 2.0)],
            "first rate wins"
        );
        let (_, samples, bad) = parse_all("a:x|c:y|c");
        assert_eq!((samples.len(), bad), (0, vec![BadLine::BadValue, BadLine::BadValue]));
    }

    /// The fast path says nothing, or exactly what the full parser says.
    #[test]
    fn the_fast_path_agrees_with_the_full_parser() {
        // name ':' value '|' type [suffix], each part drawn from valid and invalid pieces
        let names: [&[u8]; 6] = [b"a", b"b.c", b"", b"_x", b"a:b", b"n m"];
        let values: [&[u8]; 17] = [
            b"1",
            b"-2",
            b"+3",
            b"2.5",
            b"-0.25",
            b".5",
            b"7.",
            b"",
            b"-",
            b".",
            b"1.2.3",
            b"1e3",
            b"1234567890123456",
            b"123456789012345",
            b"user7",
            b"a:b",
            b"x|y",
        ];
        let types: [&[u8]; 9] = [b"c", b"ms", b"g", b"h", b"d", b"s", b"x", b"", b"cc"];
        let suffixes: [&[u8]; 16] = [
            b"",
            b"",
            b"",
            b"|@0.5",
            b"|@.25",
            b"|@0",
            b"|@+1",
            b"|#t:1",
            b"|#t:1,u\r",
            b"|#",
            b"|@0.1|#env:prod,az:a",
            b"|#t:1|@0.5",
            b"|#a|#b",
            b"|@0.5:2|c",
            b":2|c",
            b"|",
        ];
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut out = LineBuf::default();
        let (mut agreed, mut tagged, mut rated) = (0, 0, 0);
        for _ in 0..100_000 {
            let mut line = Vec::new();
            line.extend_from_slice(names[next(names.len())]);
            line.push(b':');
            line.extend_from_slice(values[next(values.len())]);
            line.push(b'|');
            line.extend_from_slice(types[next(types.len())]);
            line.extend_from_slice(suffixes[next(suffixes.len())]);
            if let Some(simple) = parse_simple(&line) {
                let full = parse_line(&line, &mut out);
                let (name, tags) = simple.name_tags(&line);
                assert_eq!(full, Ok(Parsed::Metric { name, tags }), "{:?}", String::from_utf8_lossy(&line));
                assert_eq!(out.samples, vec![simple.sample], "{:?}", String::from_utf8_lossy(&line));
                assert!(out.bad.is_empty());
                agreed += 1;
                tagged += usize::from(!tags.is_empty());
                rated += usize::from(simple.sample.weight != 1.0);
            }
            // in a datagram, with more lines after it
            let mut rest = line.clone();
            rest.extend_from_slice(b"\nb:1|c");
            match parse_simple_prefix(&rest) {
                Some(s) => assert_eq!((Some(s), rest[s.len]), (parse_simple(&line), b'\n')),
                None => assert_eq!(parse_simple(&line), None),
            }
        }
        assert!(agreed > 2_000, "the fast path was exercised ({agreed} lines)");
        assert!(tagged > 500 && rated > 500, "with tags ({tagged}) and rates ({rated})");
        let sample = |l: &[u8]| parse_simple(l).map(|s| s.sample);
        assert_eq!(sample(b"api.req:12.5|ms"), Some(num(Kind::Timer, 12.5, 1.0)));
        assert_eq!(sample(b"g:-3|g").map(|s| s.value), Some(SampleValue::Delta(-3.0)));
        assert_eq!(sample(b"a:3|c|@0.5"), Some(num(Kind::Counter, 6.0, 2.0)));
        assert_eq!(sample(b"a:3|ms|@0.5"), Some(num(Kind::Timer, 3.0, 2.0)));
        let tagged = parse_simple(b"a.b:1|c|@0.5|#env:prod,az:z1").unwrap();
        assert_eq!(tagged.name_tags(b"a.b:1|c|@0.5|#env:prod,az:z1"), (&b"a.b"[..], &b"env:prod,az:z1"[..]));
        assert_eq!(parse_simple(b"a:1|c|#x|@0.5"), None, "a rate after the tags takes the full parser");
        assert_eq!(sample(b"s:u1|s").map(|s| s.value), Some(SampleValue::Member { start: 2, end: 4 }));
        assert_eq!(
            sample(b"s:a:b|s").map(|s| s.value),
            Some(SampleValue::Member { start: 2, end: 5 }),
            "a member with ':' is one member"
        );
        assert_eq!(sample(b"s:-1|s").map(|s| s.value), Some(SampleValue::Member { start: 2, end: 4 }));
    }

    #[test]
    fn never_panics_on_prefixes_of_valid_lines() {
        let line = "api.req:1:2|ms|@0.5|#env:prod,h|c:x|T17:3|c|@0.1";
        let mut out = LineBuf::default();
        for end in 0..=line.len() {
            let _ = parse_line(&line.as_bytes()[..end], &mut out);
        }
    }
}
