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
        KeyRules {
            sanitize: true,
            max_name_bytes: 1024,
            max_tags: 64,
        }
    }
}

/// Appends the canonical key for (`name`, `tags`) to `out` (which starts empty) and returns the
/// length of its name part; the rest of `out` is the tag part (`;k=v…`).
pub fn canonical_key(
    name: &[u8],
    tags: &[u8],
    rules: &KeyRules,
    out: &mut Vec<u8>,
) -> Result<usize, BadLine> {
    if name.len() > rules.max_name_bytes {
        return Err(BadLine::NameTooLong);
    }
    push_component(name, rules.sanitize, out)?;
    let name_len = out.len();
    if name_len == 0 {
        return Err(BadLine::EmptyName);
    }
    if tags.is_empty() {
        return Ok(name_len);
    }
    // Each tag is written as ";k=v" after the name, then the tag part is sorted and deduplicated.
    let mut count = 0;
    for tag in tags.split(|&b| b == b',') {
        let start = out.len();
        out.push(b';');
        match memchr::memchr(b':', tag) {
            Some(i) => {
                push_component(&tag[..i], rules.sanitize, out)?;
                out.push(b'=');
                push_component(&tag[i + 1..], rules.sanitize, out)?;
            }
            None => push_component(tag, rules.sanitize, out)?,
        }
        if out.len() == start + 1 {
            out.truncate(start); // an empty tag ("a,,b" or "#") says nothing
            continue;
        }
        count += 1;
        if count > rules.max_tags {
            return Err(BadLine::TooManyTags);
        }
    }
    sort_tags(out, name_len);
    Ok(name_len)
}

/// Sorts and deduplicates the `;tag` items after `name_len` in place (tiny lists: a scratch copy
/// is fine here, this only runs on an intern miss).
fn sort_tags(out: &mut Vec<u8>, name_len: usize) {
    let tail = out.split_off(name_len);
    let mut items: Vec<&[u8]> = tail
        .split(|&b| b == b';')
        .filter(|t| !t.is_empty())
        .collect();
    items.sort_unstable();
    items.dedup();
    for t in items {
        out.push(b';');
        out.extend_from_slice(t);
    }
}

/// Writes one name or tag component, sanitized (or UTF-8 checked when sanitizing is off).
fn push_component(src: &[u8], sanitize: bool, out: &mut Vec<u8>) -> Result<(), BadLine> {
    if !sanitize {
        std::str::from_utf8(src).map_err(|_| BadLine::InvalidUtf8)?;
        out.extend_from_slice(src);
        return Ok(());
    }
    let mut in_space = false;
    for &b in src {
        if is_js_space(b) {
            if !in_space {
                out.push(b'_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match b {
            b'/' => out.push(b'-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b';' | b'=' => {
                out.push(b)
            }
            _ => {}
        }
    }
    Ok(())
}

/// The ASCII part of JavaScript's `\s`.
fn is_js_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, tags: &str) -> Result<(String, usize), BadLine> {
        let mut out = Vec::new();
        let n = canonical_key(
            name.as_bytes(),
            tags.as_bytes(),
            &KeyRules::default(),
            &mut out,
        )?;
        Ok((String::from_utf8(out).unwrap(), n))
    }

    #[test]
    fn sanitizes_like_etsy() {
        assert_eq!(
            key("my key/with$odd chars", "").unwrap().0,
            "my_key-withodd_chars"
        );
        assert_eq!(key("tab\tkey", "").unwrap().0, "tab_key");
        assert_eq!(key("a  \t b", "").unwrap().0, "a_b");
        assert_eq!(key("ok.name-1_x", "").unwrap().0, "ok.name-1_x");
        assert_eq!(key("ünï", "").unwrap().0, "n");
        assert_eq!(key("$$$", ""), Err(BadLine::EmptyName));
    }

    #[test]
    fn tags_are_canonical() {
        assert_eq!(
            key("tag.c", "env:prod,host:a").unwrap(),
            ("tag.c;env=prod;host=a".into(), 5)
        );
        assert_eq!(
            key("tag.c", "host:a,env:prod").unwrap().0,
            "tag.c;env=prod;host=a"
        );
        assert_eq!(key("g", "x").unwrap().0, "g;x");
        assert_eq!(key("g", "x,x,,y").unwrap().0, "g;x;y");
        assert_eq!(key("g", "url:http://a/b").unwrap().0, "g;url=http--a-b");
    }

    #[test]
    fn limits() {
        let rules = KeyRules {
            sanitize: true,
            max_name_bytes: 4,
            max_tags: 2,
        };
        let mut out = Vec::new();
        assert_eq!(
            canonical_key(b"abcde", b"", &rules, &mut out),
            Err(BadLine::NameTooLong)
        );
        out.clear();
        assert_eq!(
            canonical_key(b"a", b"x,y,z", &rules, &mut out),
            Err(BadLine::TooManyTags)
        );
        let raw = KeyRules {
            sanitize: false,
            ..KeyRules::default()
        };
        out.clear();
        assert_eq!(
            canonical_key(b"a\xff", b"", &raw, &mut out),
            Err(BadLine::InvalidUtf8)
        );
        out.clear();
        assert_eq!(canonical_key(b"a b", b"k:v", &raw, &mut out), Ok(3));
        assert_eq!(out, b"a b;k=v");
    }
}
