//! Series identity: turning a raw name and raw DogStatsD tags into the canonical key that names
//! a series in every sink. Runs on the ingest thread, but only when a raw key is seen for the
//! first time in an interval (an intern miss), so it may be thorough rather than fast.
//!
//! Canonical form: the sanitized name, then each tag as `;key=value` (or `;key`), tags sanitized
//! like names, deduplicated and sorted bytewise: `api.req;env=prod;host=a`. Sanitizing follows
//! etsy: whitespace runs become `_`, `/` becomes `-`, and bytes outside `[A-Za-z0-9_.\-;=]` are
//! removed. With sanitizing off, the bytes are kept but must be UTF-8.

use crate::parse::BadLine;

/// Limits and switches that shape a key; part of the aggregate config.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRules {
    pub sanitize: bool,
    pub max_name_bytes: usize,
    pub max_tags: usize,
}

impl Default for KeyRules {
    fn default() -> Self {
        KeyRules { sanitize: true, max_name_bytes: 1024, max_tags: 64 }
    }
}

/// Most tags one line may carry, whatever `max_tags` says (the sort uses a stack array).
pub const TAGS_CAP: usize = 256;

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
    push_component(name, rules.sanitize, out)?;
    // A `;` in the name starts Graphite tags (`name;k=v`): etsy puts them after the stat too.
    let name_len = memchr::memchr(b';', out).unwrap_or(out.len());
    if name_len == 0 {
        return Err(BadLine::EmptyName);
    }
    if tags.is_empty() && name_len == out.len() {
        return Ok(name_len);
    }
    // Each tag is written as "k=v" into `scratch`, its range kept on the stack; the ranges are
    // then sorted and deduplicated and the tags appended to `out` as ";k=v".
    scratch.clear();
    let mut ranges = [(0u32, 0u32); TAGS_CAP];
    let mut count = 0;
    let limit = rules.max_tags.min(TAGS_CAP);
    for tag in out[name_len..].split(|&b| b == b';').filter(|t| !t.is_empty()) {
        if count == limit {
            return Err(BadLine::TooManyTags);
        }
        let start = scratch.len();
        scratch.extend_from_slice(tag);
        ranges[count] = (start as u32, scratch.len() as u32);
        count += 1;
    }
    out.truncate(name_len);
    for tag in tags.split(|&b| b == b',').filter(|t| !t.is_empty()) {
        let start = scratch.len();
        match memchr::memchr(b':', tag) {
            Some(i) => {
                push_component(&tag[..i], rules.sanitize, scratch)?;
                scratch.push(b'=');
                push_component(&tag[i + 1..], rules.sanitize, scratch)?;
            }
            None => push_component(tag, rules.sanitize, scratch)?,
        }
        if scratch.len() == start {
            continue; // an empty tag ("a,,b" or "#") says nothing
        }
        if count == limit {
            return Err(BadLine::TooManyTags);
        }
        ranges[count] = (start as u32, scratch.len() as u32);
        count += 1;
    }
    let tag = |r: &(u32, u32)| &scratch[r.0 as usize..r.1 as usize];
    let ranges = &mut ranges[..count];
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

/// Writes one name or tag component, sanitized (or UTF-8 checked when sanitizing is off).
fn push_component(src: &[u8], sanitize: bool, out: &mut Vec<u8>) -> Result<(), BadLine> {
    if !sanitize {
        std::str::from_utf8(src).map_err(|_| BadLine::InvalidUtf8)?;
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
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b';' | b'=' => out.push(b),
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
        assert_eq!(key("g", "x").unwrap().0, "g;x");
        assert_eq!(key("g", "x,x,,y").unwrap().0, "g;x;y");
        assert_eq!(key("g", "url:http://a/b").unwrap().0, "g;url=http--a-b");
        // Graphite tags in the name join the DogStatsD ones
        assert_eq!(key("san.ttag;env=prod", "").unwrap(), ("san.ttag;env=prod".into(), 8));
        assert_eq!(key("a;z=1;b=2", "m:x").unwrap().0, "a;b=2;m=x;z=1");
        assert_eq!(key(";x=1", ""), Err(BadLine::EmptyName));
    }

    #[test]
    fn limits() {
        let rules = KeyRules { sanitize: true, max_name_bytes: 4, max_tags: 2 };
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
