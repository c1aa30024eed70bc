//! Tags written into a metric name, the way statsd_exporter and Telegraf read them: InfluxDB
//! `name,k=v,k2=v2`, librato `name#k=v,k2=v2` and SignalFx `name[k=v,k2=v2].rest` (the name is
//! then `name.rest`). Runs on the ingest thread, but only when a raw name is first seen in an
//! interval (from the key canonicalization in `aggregate::key`), never per line: the interned
//! tables hash the raw name, punctuation and all, so a line with name tags costs what any other
//! line costs once its series exists.
//!
//! The style is the first of `,` `#` `[` `]` in the name. Anything that would read as a second
//! style is refused rather than guessed at: a `#`, `[` or `]` among InfluxDB or librato tags, a
//! `,` or `#` after a SignalFx `]`, or `#` inside the brackets ([`BadLine::MixedTagStyles`]); a
//! `[` without its `]`, a `]` first, nested or repeated brackets ([`BadLine::BadNameTags`]).

use super::BadLine;

/// A name with its tags taken out: the name is `head` followed by `tail` (only SignalFx has a
/// tail), `tags` a `,`-separated list of `key=value` (or bare `key`), unsanitized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameTags<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub tags: &'a [u8],
}

/// Finds the tags written into `name`. `Ok(None)`: the name has none of `,#[]`.
pub fn split_name_tags(name: &[u8]) -> Result<Option<NameTags<'_>>, BadLine> {
    let Some(i) = name.iter().position(|&b| matches!(b, b',' | b'#' | b'[' | b']')) else {
        return Ok(None);
    };
    let head = &name[..i];
    match name[i] {
        b',' | b'#' => {
            let tags = &name[i + 1..];
            if tags.iter().any(|&b| matches!(b, b'#' | b'[' | b']')) {
                return Err(BadLine::MixedTagStyles);
            }
            Ok(Some(NameTags { head, tail: b"", tags }))
        }
        b'[' => {
            let rest = &name[i + 1..];
            let close = memchr::memchr(b']', rest).ok_or(BadLine::BadNameTags)?;
            let (tags, tail) = (&rest[..close], &rest[close + 1..]);
            if tags.contains(&b'[') || tail.iter().any(|&b| matches!(b, b'[' | b']')) {
                return Err(BadLine::BadNameTags);
            }
            if tags.contains(&b'#') || tail.iter().any(|&b| matches!(b, b',' | b'#')) {
                return Err(BadLine::MixedTagStyles);
            }
            Ok(Some(NameTags { head, tail, tags }))
        }
        _ => Err(BadLine::BadNameTags), // a ']' before any '['
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Option<(String, String, String)>, BadLine> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        split_name_tags(s.as_bytes()).map(|o| o.map(|t| (text(t.head), text(t.tail), text(t.tags))))
    }

    fn some(head: &str, tail: &str, tags: &str) -> Result<Option<(String, String, String)>, BadLine> {
        Ok(Some((head.into(), tail.into(), tags.into())))
    }

    #[test]
    fn the_three_styles() {
        assert_eq!(split("api.req"), Ok(None));
        assert_eq!(split("api.req;env=prod"), Ok(None), "Graphite tags are not name tags");
        assert_eq!(split("api.req,env=prod,az=1"), some("api.req", "", "env=prod,az=1"));
        assert_eq!(split("api.req#env=prod,az=1"), some("api.req", "", "env=prod,az=1"));
        assert_eq!(split("api[env=prod,az=1].req"), some("api", ".req", "env=prod,az=1"));
        assert_eq!(split("api.req[env=prod]"), some("api.req", "", "env=prod"));
        assert_eq!(split("api,"), some("api", "", ""));
        assert_eq!(split(",k=v"), some("", "", "k=v"), "the empty name is refused later");
    }

    #[test]
    fn a_second_style_is_refused() {
        for s in ["a,k=v#j=w", "a#k=v#j=w", "a,k=v[j=w]", "a#k=v]", "a[k=v].b,j=w", "a[k=v]#j=w", "a[k#v]"] {
            assert_eq!(split(s), Err(BadLine::MixedTagStyles), "{s}");
        }
        for s in ["a[k=v", "a]k=v", "a[k=[v]]", "a[k=v]]", "a[k=v].b[j=w]"] {
            assert_eq!(split(s), Err(BadLine::BadNameTags), "{s}");
        }
    }
}
