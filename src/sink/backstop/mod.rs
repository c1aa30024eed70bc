//! The Backstop sink: each flush POSTed as a JSON array of
//! `{"metric":…,"value":…,"measure_time":…}` to a Backstop publish URL (`…/publish/{name}`),
//! what docker-stats-to-backstop did. Names are the Graphite ones ([`Snapshot::for_each_flat`]
//! with counter rates and counts); Backstop prefixes them with `{name}.` and writes them to
//! carbon as plaintext lines.
//!
//! Two threads, as the Graphite sink: on the flush thread [`Sink::flush`] validates and
//! serializes the points into reused buffers and queues them in the [`Outbox`] (one body per
//! `max_body` bytes); the sink's worker thread (`kstatsd-backstop`) POSTs them with ureq.
//!
//! Backstop checks items one by one and answers 400 at the first bad one, after the items before
//! it were already written: so everything is validated here before sending (a finite value, a
//! name without whitespace or control bytes that fits carbon's 16,384-byte line once Backstop
//! has prefixed it; anything else is dropped and counted), and a 400 is never retried. 401, 403
//! and 404 (unknown prefix) are not retried either: retrying cannot fix them. 408, 429, 5xx and
//! connection errors are retried with capped backoff (`Retry-After` honoured up to
//! `max_backoff`).
//!
//! Credentials may sit in the URL (`https://user:pass@host/publish/x`): [`PublishUrl`] keeps
//! them apart, sends them as an `Authorization: Basic` header, and never prints them: its
//! `Display` and `Debug` show `<redacted>` instead, and ureq only ever sees the URL without them.

pub mod config;

use super::outbox::{Batch, Deliver, Dropped, Limits, Outbox, Outcome};
use super::{write_f64, write_json_str, write_u64, FlushReport, Sink, SinkError};
use crate::flush::{CounterNames, Naming, Snapshot};
pub use config::{BackstopConfig, BackstopSection};
use std::fmt;
use std::time::{Duration, Instant};

/// A Backstop publish URL with its credentials split off.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishUrl {
    scheme: String,
    /// `host[:port]/path…`, everything after the authority's `@`.
    rest: String,
    /// Percent-decoded user and password.
    credentials: Option<(String, String)>,
    /// The `{name}` of `/publish/{name}`: Backstop's prefix for every metric.
    source: String,
}

impl PublishUrl {
    /// Parses `http(s)://[user[:password]@]host[:port]/…/publish/{name}`.
    pub fn parse(url: &str) -> Result<PublishUrl, String> {
        let url = url.trim();
        let (scheme, after) = url
            .split_once("://")
            .ok_or_else(|| "is not a URL such as \"http://host:port/publish/name\"".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, path) = after.split_at(auth_end);
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(user)?, percent_decode(pass)?)), host)
            }
            None => (None, authority),
        };
        if host.is_empty() || host.starts_with(':') {
            return Err("has no host".into());
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let source = match path.trim_end_matches('/').rsplit_once("/publish/") {
            Some((_, name)) if !name.is_empty() && !name.contains('/') => name.to_string(),
            _ => return Err("must end in /publish/{name} (Backstop's publish endpoint)".into()),
        };
        Ok(PublishUrl { scheme, rest: format!("{host}{}", &after[auth_end..]), credentials, source })
    }

    /// The URL without credentials: what is sent to ureq and safe to print.
    pub fn without_credentials(&self) -> String {
        format!("{}://{}", self.scheme, self.rest)
    }

    /// The `Authorization` header value, when the URL carries credentials.
    pub fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Backstop's prefix for our metrics (the `{name}` of `/publish/{name}`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Redacted: `http://<redacted>@host/…` when the URL carries credentials.
impl fmt::Display for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.credentials {
            Some(_) => write!(f, "{}://<redacted>@{}", self.scheme, self.rest),
            None => write!(f, "{}://{}", self.scheme, self.rest),
        }
    }
}

impl fmt::Debug for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublishUrl({self})")
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => out.push(v),
                None => return Err("has a bad %-escape in its credentials".into()),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "has credentials that are not UTF-8".into())
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | ((b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Carbon's longest line (Backstop forwards each item as `{source}.{metric} {value} {time}`).
const MAX_LINE: usize = 16_384;
/// Room for ` value time\n` in that line: a shortest-form f64 is at most 24 bytes.
const LINE_TAIL: usize = 1 + 24 + 1 + 20 + 1;

pub struct Backstop {
    outbox: Outbox,
    max_body: usize,
    /// Longest metric name Backstop can forward (16,384 minus `{source}.` and the tail).
    max_name: usize,
    name: String,
    item: Vec<u8>,
}

impl Backstop {
    /// Starts the worker thread.
    pub fn start(config: &BackstopConfig) -> std::io::Result<Backstop> {
        let limits = Limits {
            queue_bytes: config.max_queue_bytes,
            min_backoff: config.retry_backoff,
            max_backoff: config.retry_backoff_max,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(super::tls::tls_config(config.ca_file.as_ref()))
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let post =
            Post { agent, url: config.url.without_credentials(), authorization: config.url.authorization() };
        log::info!("backstop: publishing to {}", config.url);
        Ok(Backstop {
            outbox: Outbox::start("backstop", limits, post)?,
            max_body: config.max_request_bytes,
            max_name: MAX_LINE.saturating_sub(config.url.source().len() + 1 + LINE_TAIL),
            name: String::with_capacity(256),
            item: Vec::with_capacity(512),
        })
    }

    pub fn figures(&self) -> super::outbox::Figures {
        self.outbox.figures()
    }
}

/// Whether Backstop can forward `name` to carbon: not empty, no whitespace or control bytes
/// (it would split or break the plaintext line), short enough.
fn valid_name(name: &str, max: usize) -> Result<(), Dropped> {
    if name.is_empty()
        || name.bytes().any(|b| b <= b' ' || b == 0x7f)
        || (!name.is_ascii() && name.chars().any(char::is_whitespace))
    {
        return Err(Dropped::BadName);
    }
    if name.len() > max {
        return Err(Dropped::TooLong);
    }
    Ok(())
}

impl Sink for Backstop {
    fn name(&self) -> &'static str {
        "backstop"
    }

    fn flush(&mut self, snapshot: &Snapshot, naming: &Naming) -> Result<FlushReport, SinkError> {
        let started = Instant::now();
        let clock = snapshot.clock;
        let (outbox, item, max_body, max_name) = (&self.outbox, &mut self.item, self.max_body, self.max_name);
        let mut body = outbox.buffer();
        body.push(b'[');
        let (mut points, mut total_bytes) = (0u64, 0u64);
        let mut dropped = [0u64; Dropped::ALL.len()];
        let which = CounterNames { rate: true, count: true };
        snapshot.for_each_flat(naming, which, &mut self.name, &mut |n, v| {
            if !v.is_finite() {
                dropped[Dropped::BadValue as usize] += 1;
                return;
            }
            if let Err(why) = valid_name(n, max_name) {
                dropped[why as usize] += 1;
                return;
            }
            item.clear();
            item.extend_from_slice(b"{\"metric\":");
            write_json_str(item, n);
            item.extend_from_slice(b",\"value\":");
            write_f64(item, v);
            item.extend_from_slice(b",\"measure_time\":");
            write_u64(item, clock);
            item.push(b'}');
            // `[` + items + `,` separators + `]` must stay within max_body; a body always
            // takes at least one item.
            if points > 0 && body.len() + 1 + item.len() + 1 > max_body {
                body.push(b']');
                total_bytes += body.len() as u64;
                let full = std::mem::replace(&mut body, outbox.buffer());
                outbox.push(Batch { bytes: full, points });
                body.push(b'[');
                points = 0;
            }
            if points > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
            points += 1;
        });
        for why in Dropped::ALL {
            outbox.count_drop(why, dropped[why as usize]);
        }
        if points > 0 {
            body.push(b']');
            total_bytes += body.len() as u64;
            outbox.push(Batch { bytes: body, points });
        } else {
            outbox.recycle(body);
        }
        Ok(FlushReport { bytes: total_bytes, calculation_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
        self.outbox.meta(write);
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.outbox.shutdown(deadline)
    }
}

/// The HTTP side; lives on the worker thread.
struct Post {
    agent: ureq::Agent,
    /// Without credentials.
    url: String,
    authorization: Option<String>,
}

/// What a Backstop status means for the batch.
fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    let error = || format!("HTTP {status}: {}", body.trim().chars().take(200).collect::<String>());
    match status {
        200..=299 => Outcome::Delivered,
        400 => Outcome::Reject { why: Dropped::BadRequest, error: error() },
        401 | 403 => Outcome::Reject { why: Dropped::Unauthorized, error: error() },
        404 => Outcome::Reject { why: Dropped::NotFound, error: error() },
        408 | 429 | 500..=599 => Outcome::Retry { error: error(), after: retry_after },
        _ => Outcome::Reject { why: Dropped::Rejected, error: error() },
    }
}

impl Deliver for Post {
    fn deliver(&mut self, batch: &Batch, _deadline: Option<Instant>) -> Outcome {
        let mut req = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        match req.send(&batch.bytes[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| super::retry_after::parse(v, std::time::SystemTime::now()));
                let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                classify(status, &body, retry_after)
            }
            Err(e) => Outcome::Retry { error: format!("POST {}: {e}", self.url), after: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_off_their_credentials() {
        let u = PublishUrl::parse("http://alice:s%40cret@127.0.0.1:9000/publish/statsd").unwrap();
        assert_eq!(u.without_credentials(), "http://127.0.0.1:9000/publish/statsd");
        assert_eq!(u.to_string(), "http://<redacted>@127.0.0.1:9000/publish/statsd");
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(u.source(), "statsd");
        // base64("alice:s@cret")
        assert_eq!(u.authorization().unwrap(), "Basic YWxpY2U6c0BjcmV0");
        let plain = PublishUrl::parse("https://backstop.example.com/publish/custom").unwrap();
        assert_eq!(plain.to_string(), "https://backstop.example.com/publish/custom");
        assert_eq!(plain.authorization(), None);
        for bad in [
            "backstop:9000/publish/x",
            "ftp://h/publish/x",
            "http:///publish/x",
            "http://h/collectd",
            "http://h/publish/",
            "http://u:%zz@h/publish/x",
        ] {
            assert!(PublishUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn statuses_are_retried_or_not_as_backstop_means_them() {
        let kind = |s| match classify(s, "x", None) {
            Outcome::Delivered => "ok",
            Outcome::Retry { .. } => "retry",
            Outcome::Reject { why, .. } => why.key(),
        };
        assert_eq!(kind(200), "ok");
        assert_eq!(kind(400), "dropped_bad_request");
        assert_eq!(kind(401), "dropped_unauthorized");
        assert_eq!(kind(404), "dropped_not_found");
        assert_eq!(kind(302), "dropped_rejected");
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(kind(s), "retry");
        }
    }

    #[test]
    fn names_backstop_cannot_forward() {
        assert_eq!(valid_name("stats.a;k=v", 100), Ok(()));
        assert_eq!(valid_name("a b", 100), Err(Dropped::BadName));
        assert_eq!(valid_name("", 100), Err(Dropped::BadName));
        assert_eq!(valid_name("a\u{2003}", 100), Err(Dropped::BadName));
        assert_eq!(valid_name(&"a".repeat(101), 100), Err(Dropped::TooLong));
    }
}
