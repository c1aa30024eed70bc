//! Series identity: turning a raw name and raw DogStatsD tags into the canonical key that names
//! a series in every sink. Runs on the ingest thread, but only when a raw key is seen for the
//! first time in an interval (an intern miss), so it may be thorough rather than fast.
//!
//! Canonical form: the sanitized name, then each tag as `;key=value`, deduplicated and sorted
//! bytewise: `api.req;env=prod;host=a`. Tags come from three places, all treated alike: Graphite
//! tags in the name (`name;k=v`), tags written into the name (InfluxDB, librato, SignalFx; see
//! `parse::split_name_tags`, when `name_tags` is on) and DogStatsD `|#k:v` tags (pystatsd JSON
//! tags arrive in that form too). Sanitizing follows etsy: whitespace runs become `_`, `/`
//! becomes `-`, and bytes outside `[A-Za-z0-9_.\-;=]` are removed; with sanitizing off the
//! bytes are kept but must be UTF-8.
//!
//! Then, sanitizing on or off, every tag is made one that carbon's tag database accepts, so the
//! Graphite name is never ambiguous: in a key, `;` `=` `!` `^` become `_`; in a value, `;`
//! becomes `_` (etsy 0.9.0 does the same: `#tag1:val;1` is `tag1=val_1`) and a leading `~`
//! becomes `_`; an empty value, or none (a bare `#canary`), is `true` (`canary=true`, as
//! Telegraf reads it: carbon refuses an empty value). A tag that is empty once sanitized is
//! dropped; one with a value but no key is a bad line (`empty_tag_key`).

use crate::parse::{split_name_tags, BadLine};

/// Limits and switches that shape a key; part of the aggregate config.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRules {
    pub sanitize: bool,
    /// Read InfluxDB, librato and SignalFx tags written into names as tags.
    pub name_tags: bool,
    pub max_name_bytes: usize,
    pub max_tags: usize,
}

impl Default for KeyRules {
    fn default() -> Self {
        KeyRules { sanitize: true, name_tags: true, max_name_bytes: 1024, max_tags: 64 }
    }
}

/// Most tags one line may carry, whatever `max_tags` says (the sort uses a stack array).
pub const TAGS_CAP: usize = 256;

/// The tags of one key as they are collected: each written as `k=v` into the caller's scratch
/// buffer, its range kept here on the stack.
struct TagList {
    ranges: [(u32, u32); TAGS_CAP],
    count: usize,
    limit: usize,
    sanitize: bool,
}

impl TagList {
    /// Adds one tag (`value` is `None` for a bare tag), sanitized and made carbon-safe.
    fn push(&mut self, key: &[u8], value: Option<&[u8]>, scratch: &mut Vec<u8>) -> Result<(), BadLine> {
        let start = scratch.len();
        push_component(key, self.sanitize, scratch)?;
        let key_end = scratch.len();
        for b in &mut scratch[start..key_end] {
            if matches!(*b, b';' | b'=' | b'!' | b'^') {
                *b = b'_';
            }
        }
        scratch.push(b'=');
        let value_start = scratch.len();
        if let Some(v) = value {
            push_component(v, self.sanitize, scratch)?;
        }
        let v = &mut scratch[value_start..];
        for b in v.iter_mut() {
            if *b == b';' {
                *b = b'_';
            }
        }
        if let Some(first @ b'~') = v.first_mut() {
            *first = b'_';
        }
        if key_end == start {
            scratch.truncate(start);
            return match value {
                // an empty tag ("a,,b", "#", or one sanitized to nothing) says nothing
                None => Ok(()),
                Some(_) => Err(BadLine::EmptyTagKey),
            };
        }
        if scratch.len() == value_start {
            scratch.extend_from_slice(b"true");
        }
        if self.count == self.limit {
            return Err(BadLine::TooManyTags);
        }
        self.ranges[self.count] = (start as u32, scratch.len() as u32);
        self.count += 1;
        Ok(())
    }

    /// Adds each tag of a `,`-separated list whose keys end at the first `sep`.
    fn push_list(&mut self, list: &[u8], sep: u8, scratch: &mut Vec<u8>) -> Result<(), BadLine> {
        for tag in list.split(|&b| b == b',') {
            match memchr::memchr(sep, tag) {
                Some(i) => self.push(&tag[..i], Some(&tag[i + 1..]), scratch)?,
                None => self.push(tag, None, scratch)?,
            }
        }
        Ok(())
    }
}

/// Appends the canonical key for (`name`, `tags`) to `out` (which starts empty) and returns the
/// length of its name part; the rest of `out` is the tag part (`;k=v…`). `scratch` is a reused
/// buffer for sorting the tags: this allocates nothing once the buffers are warm.
pub fn canonical_key(
    name: &[u8],
    tags: &[u8],
    rules: &KeyRules,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<usize, BadLine> {
    if name.len() > rules.max_name_bytes {
        return Err(BadLine::NameTooLong);
    }
    if tags.is_empty() && !name.is_empty() && is_plain(name) {
        // nothing to sanitize, no tags in any style: the name is its own key
        out.extend_from_slice(name);
        return Ok(name.len());
    }
    let written = if rules.name_tags { split_name_tags(name)? } else { None };
    let (head, tail, name_tags) = match written {
        Some(_) if !tags.is_empty() => return Err(BadLine::MixedTagStyles),
        Some(t) => (t.head, t.tail, t.tags),
        None => (name, &b""[..], &b""[..]),
    };
    push_component(head, rules.sanitize, out)?;
    push_component(tail, rules.sanitize, out)?;
    // A `;` in the name starts Graphite tags (`name;k=v`): etsy puts them after the stat too.
    let name_len = memchr::memchr(b';', out).unwrap_or(out.len());
    if name_len == 0 {
        return Err(BadLine::EmptyName);
    }
    if tags.is_empty() && name_tags.is_empty() && name_len == out.len() {
        return Ok(name_len);
    }
    // Each tag is written as "k=v" into `scratch`, its range kept on the stack; the ranges are
    // then sorted and deduplicated and the tags appended to `out` as ";k=v".
    scratch.clear();
    let mut list = TagList {
        ranges: [(0, 0); TAGS_CAP],
        count: 0,
        limit: rules.max_tags.min(TAGS_CAP),
        sanitize: rules.sanitize,
    };
    for tag in out[name_len..].split(|&b| b == b';') {
        match memchr::memchr(b'=', tag) {
            Some(i) => list.push(&tag[..i], Some(&tag[i + 1..]), scratch)?,
            None => list.push(tag, None, scratch)?,
        }
    }
    out.truncate(name_len);
    list.push_list(name_tags, b'=', scratch)?;
    list.push_list(tags, b':', scratch)?;
    let tag = |r: &(u32, u32)| &scratch[r.0 as usize..r.1 as usize];
    let ranges = &mut list.ranges[..list.count];
    ranges.sort_unstable_by(|a, b| tag(a).cmp(tag(b)));
    for (i, r) in ranges.iter().enumerate() {
        if i > 0 && tag(&ranges[i - 1]) == tag(r) {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(tag(r));
    }
    Ok(name_len)
}

/// The bytes that sanitizing keeps as they are.
const KEPT: [bool; 256] = {
    let mut kept = [false; 256];
    let mut b = 0;
    while b < 256 {
        kept[b] =
            matches!(b as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b';' | b'=');
        b += 1;
    }
    kept
};

/// The bytes of a name that is its own canonical key: those sanitizing keeps, except `;` and `=`
/// (Graphite tags).
const PLAIN: [bool; 256] = {
    let mut plain = KEPT;
    plain[b';' as usize] = false;
    plain[b'=' as usize] = false;
    plain
};

/// Whether every byte of `name` is [`PLAIN`], eight lookups at a time: one pass instead of the
/// name-tag search, the sanitizer and the `;` search, which were most of a new series' cost.
fn is_plain(name: &[u8]) -> bool {
    let mut words = name.chunks_exact(8);
    let whole = words.by_ref().all(|w| w.iter().fold(true, |ok, &b| ok & PLAIN[b as usize]));
    whole && words.remainder().iter().all(|&b| PLAIN[b as usize])
}

/// Writes one name or tag component, sanitized (or UTF-8 checked when sanitizing is off). A
/// component that sanitizing leaves as it is, the usual case, is copied whole: byte by byte it
/// cost about 2,200 instructions per new 60-byte name, most of the cost of a new series
/// (`profile_ingest 100000 realistic 1` under callgrind).
fn push_component(src: &[u8], sanitize: bool, out: &mut Vec<u8>) -> Result<(), BadLine> {
    if !sanitize {
        std::str::from_utf8(src).map_err(|_| BadLine::InvalidUtf8)?;
        out.extend_from_slice(src);
        return Ok(());
    }
    if src.iter().all(|&b| KEPT[b as usize]) {
        out.extend_from_slice(src);
        return Ok(());
    }
    let mut in_space = false;
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        let space = if b < 0x80 { usize::from(is_js_space(b)) } else { unicode_space_len(&src[i..]) };
        if space > 0 {
            if !in_space {
                out.push(b'_');
            }
            in_space = true;
            i += space;
            continue;
        }
        i += 1;
        in_space = false;
        match b {
            b'/' => out.push(b'-'),
            _ if KEPT[b as usize] => out.push(b),
            _ => {}
        }
    }
    Ok(())
}

/// The ASCII part of JavaScript's `\s`.
fn is_js_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The length of the UTF-8 encoded non-ASCII whitespace `\s` matches in JavaScript at the start
/// of `s` (U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF), or 0.
fn unicode_space_len(s: &[u8]) -> usize {
    match s {
        [0xC2, 0xA0, ..] => 2,
        [0xE1, 0x9A, 0x80, ..] | [0xE3, 0x80, 0x80, ..] | [0xEF, 0xBB, 0xBF, ..] => 3,
        [0xE2, 0x80, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF, ..] | [0xE2, 0x81, 0x9F, ..] => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, tags: &str) -> Result<(String, usize), BadLine> {
        let mut out = Vec::new();
        let n =
            canonical_key(name.as_bytes(), tags.as_bytes(), &KeyRules::default(), &mut out, &mut Vec::new())?;
        Ok((String::from_utf8(out).unwrap(), n))
    }

    #[test]
    fn a_plain_name_is_what_it_looks_like_at_every_length() {
        let bytes = b"az09AZ_.-;=/ ,#[]\xc3\xa9";
        let mut rng = crate::aggregate::sketch::tests::Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let len = (rng.next() % 40) as usize;
            let name: Vec<u8> = (0..len).map(|_| bytes[(rng.next() % bytes.len() as u64) as usize]).collect();
            let want = name.iter().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
            assert_eq!(is_plain(&name), want, "{:?}", String::from_utf8_lossy(&name));
        }
    }

    #[test]
    fn sanitizes_like_etsy() {
        assert_eq!(key("my key/with$odd chars", "").unwrap().0, "my_key-withodd_chars");
        assert_eq!(key("tab\tkey", "").unwrap().0, "tab_key");
        assert_eq!(key("a  \t b", "").unwrap().0, "a_b");
        assert_eq!(key("ok.name-1_x", "").unwrap().0, "ok.name-1_x");
        assert_eq!(key("ünï", "").unwrap().0, "n");
        assert_eq!(key("a\u{a0}b\u{3000} c", "").unwrap().0, "a_b_c", "Unicode spaces, as JS \\s");
        assert_eq!(key("$$$", ""), Err(BadLine::EmptyName));
    }

    #[test]
    fn tags_are_canonical() {
        assert_eq!(key("tag.c", "env:prod,host:a").unwrap(), ("tag.c;env=prod;host=a".into(), 5));
        assert_eq!(key("tag.c", "host:a,env:prod").unwrap().0, "tag.c;env=prod;host=a");
        assert_eq!(key("g", "x").unwrap().0, "g;x=true", "a bare tag gets a value carbon accepts");
        assert_eq!(key("g", "x,x,,y").unwrap().0, "g;x=true;y=true");
        assert_eq!(key("g", "url:http://a/b").unwrap().0, "g;url=http--a-b");
        // Graphite tags in the name join the DogStatsD ones
        assert_eq!(key("san.ttag;env=prod", "").unwrap(), ("san.ttag;env=prod".into(), 8));
        assert_eq!(key("a;z=1;b=2", "m:x").unwrap().0, "a;b=2;m=x;z=1");
        assert_eq!(key(";x=1", ""), Err(BadLine::EmptyName));
        assert_eq!(key("a;k", "").unwrap().0, "a;k=true");
    }

    /// Every tag is one carbon's tag database accepts (non-empty key without `;!^=`, non-empty
    /// value without `;`, not starting with `~`), whatever the client sent, so that the Graphite
    /// name reads back as exactly the tags that were sent.
    #[test]
    fn tags_never_break_the_graphite_tag_list() {
        // etsy 0.9.0's own test: `#tag1:val;1` is `tag1=val_1`
        assert_eq!(key("t", "tag1:val;1").unwrap().0, "t;tag1=val_1");
        assert_eq!(key("tags", "k:x;j=y").unwrap().0, "tags;k=x_j=y", "no second tag appears");
        assert_ne!(key("tags", "k:x;j=y").unwrap().0, key("tags", "j:y,k:x").unwrap().0);
        assert_eq!(key("t", "a=b:c").unwrap().0, "t;a_b=c", "no '=' in a key");
        assert_eq!(key("t", "a:b=c").unwrap().0, "t;a=b=c", "'=' in a value is unambiguous");
        assert_eq!(key("t", "k:").unwrap().0, "t;k=true");
        assert_eq!(key("t", "k:~x").unwrap().0, "t;k=x", "sanitizing removes '~'");
        assert_eq!(key("t", "k:$$").unwrap().0, "t;k=true");
        assert_eq!(key("t", ":v"), Err(BadLine::EmptyTagKey));
        assert_eq!(key("t", "$$:v"), Err(BadLine::EmptyTagKey));
        assert_eq!(key("t", "$$,k:v").unwrap().0, "t;k=v", "a tag sanitized to nothing is dropped");
        // Graphite tags in the name follow the same rules
        assert_eq!(key("t;=v", ""), Err(BadLine::EmptyTagKey));
        assert_eq!(key("t;k=v=w", "").unwrap().0, "t;k=v=w");
        // with sanitizing off, the carbon rules still hold
        let raw = KeyRules { sanitize: false, ..KeyRules::default() };
        let raw_key = |name: &str, tags: &str| {
            let mut out = Vec::new();
            canonical_key(name.as_bytes(), tags.as_bytes(), &raw, &mut out, &mut Vec::new())
                .map(|_| String::from_utf8(out).unwrap())
        };
        assert_eq!(raw_key("t", "k!^=:~v;w").unwrap(), "t;k___=_v_w");
        assert_eq!(raw_key("t", "k:v~,a b:c d").unwrap(), "t;a b=c d;k=v~");
        assert_eq!(raw_key("t", "k").unwrap(), "t;k=true");
        for (name, tags) in [("t", "k:x;j=y"), ("t;a=;b", "=x:~;,!:^"), ("t", "a:b:c")] {
            for k in [key(name, tags).map(|k| k.0), raw_key(name, tags)].into_iter().flatten() {
                for tag in k.split(';').skip(1) {
                    let (tk, tv) = tag.split_once('=').unwrap();
                    assert!(!tk.is_empty() && !tk.contains([';', '!', '^', '=']), "{k}");
                    assert!(!tv.is_empty() && !tv.starts_with('~'), "{k}");
                }
            }
        }
    }

    #[test]
    fn tags_written_into_names() {
        assert_eq!(key("api.req,env=prod,az=1", "").unwrap(), ("api.req;az=1;env=prod".into(), 7));
        assert_eq!(key("api.req#env=prod,az=1", "").unwrap().0, "api.req;az=1;env=prod");
        assert_eq!(key("api[env=prod,az=1].req", "").unwrap().0, "api.req;az=1;env=prod");
        // the same series as the DogStatsD spelling
        assert_eq!(key("api.req,env=prod,az=1", "").unwrap(), key("api.req", "az:1,env:prod").unwrap());
        // sanitized and made carbon-safe like any tag
        assert_eq!(key("a,k=x;y,bare,u=http://h/p", "").unwrap().0, "a;bare=true;k=x_y;u=http--h-p");
        assert_eq!(key("a,=v", ""), Err(BadLine::EmptyTagKey));
        assert_eq!(key("a,k=v", "j:w"), Err(BadLine::MixedTagStyles));
        assert_eq!(key("a,k=v#j=w", ""), Err(BadLine::MixedTagStyles));
        assert_eq!(key("a[k=v", ""), Err(BadLine::BadNameTags));
        assert_eq!(key(",k=v", ""), Err(BadLine::EmptyName));
        // Graphite tags stay in the name part, and join the others
        assert_eq!(key("a;g=1,k=v", "").unwrap().0, "a;g=1;k=v");
        // off: etsy's reading, the punctuation sanitized away
        let off = KeyRules { name_tags: false, ..KeyRules::default() };
        let mut out = Vec::new();
        canonical_key(b"foo,env=prod", b"j:w", &off, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(out, b"fooenv=prod;j=w");
        out.clear();
        canonical_key(b"api[env=prod].req", b"", &off, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(out, b"apienv=prod.req");
    }

    #[test]
    fn limits() {
        let rules = KeyRules { sanitize: true, name_tags: true, max_name_bytes: 4, max_tags: 2 };
        let mut out = Vec::new();
        assert_eq!(
            canonical_key(b"abcde", b"", &rules, &mut out, &mut Vec::new()),
            Err(BadLine::NameTooLong)
        );
        out.clear();
        assert_eq!(
            canonical_key(b"a", b"x,y,z", &rules, &mut out, &mut Vec::new()),
            Err(BadLine::TooManyTags)
        );
        let raw = KeyRules { sanitize: false, ..KeyRules::default() };
        out.clear();
        assert_eq!(canonical_key(b"a\xff", b"", &raw, &mut out, &mut Vec::new()), Err(BadLine::InvalidUtf8));
        out.clear();
        assert_eq!(canonical_key(b"a b", b"k:v", &raw, &mut out, &mut Vec::new()), Ok(3));
        assert_eq!(out, b"a b;k=v");
    }
}
