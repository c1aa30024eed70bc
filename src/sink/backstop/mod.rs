//! The Backstop sink: each flush POSTed as a JSON array of
//! `{"metric":…,"value":…,"measure_time":…}` to a Backstop publish URL (`…/publish/{name}`),
//! what docker-stats-to-backstop did. Names are the Graphite ones ([`Snapshot::for_each_flat`]
//! with counter rates and counts); Backstop prefixes them with `{name}.` and writes them to
//! carbon as plaintext lines.
//!
//! An "encode + deliver" on the delivery engine ([`super::outbox`]): on the flush thread
//! `flush` validates and serializes the points into reused buffers ([`encode`], one body
//! per `max_request_bytes`) and queues them; the sink's worker thread (`kstatsd-backstop`) POSTs
//! them ([`deliver`]) and the engine retries, bounds, counts (`backstopStats.*`) and logs.
//!
//! Credentials may sit in the URL (`https://user:pass@host/publish/x`): [`PublishUrl`] keeps
//! them apart, sends them as an `Authorization: Basic` header, and never prints them: its
//! `Display` and `Debug` show `<redacted>` instead, and ureq only ever sees the URL without them.

pub mod config;
mod deliver;
mod encode;

pub use config::{BackstopConfig, BackstopSection};

use super::http::url::HttpUrl;
use super::outbox::{Backoff, Limits, Names, Outbox, Queued, Spelling, Whole};
use std::fmt;

/// A Backstop publish URL with its credentials split off (the sinks' one URL grammar,
/// [`HttpUrl`], plus Backstop's own rule: the path ends in `/publish/{name}`).
#[derive(Clone, PartialEq, Eq)]
pub struct PublishUrl {
    url: HttpUrl,
    /// The `{name}` of `/publish/{name}`: Backstop's prefix for every metric.
    source: String,
}

impl PublishUrl {
    /// Parses `http(s)://[user[:password]@]host[:port]/…/publish/{name}[?query]`.
    pub fn parse(url: &str) -> Result<PublishUrl, String> {
        let url = HttpUrl::parse(url)?;
        let source = match url.path.trim_end_matches('/').rsplit_once("/publish/") {
            Some((_, name)) if !name.is_empty() && !name.contains('/') => name.to_string(),
            _ => return Err("must end in /publish/{name} (Backstop's publish endpoint)".into()),
        };
        Ok(PublishUrl { url, source })
    }

    /// The URL without credentials: what is sent to ureq and safe to print.
    pub fn without_credentials(&self) -> String {
        self.url.without_credentials()
    }

    /// The `Authorization` header value, when the URL carries credentials.
    pub fn authorization(&self) -> Option<String> {
        self.url.authorization()
    }

    pub fn has_credentials(&self) -> bool {
        self.url.username.is_some()
    }

    pub fn is_https(&self) -> bool {
        self.url.https
    }

    /// Backstop's prefix for our metrics (the `{name}` of `/publish/{name}`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Redacted: `http://<redacted>@host/…` when the URL carries credentials.
impl fmt::Display for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = self.url.without_credentials();
        match bare.split_once("://") {
            Some((scheme, rest)) if self.has_credentials() => write!(f, "{scheme}://<redacted>@{rest}"),
            _ => f.write_str(&bare),
        }
    }
}

impl fmt::Debug for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublishUrl({self})")
    }
}

/// The Backstop sink: its encoder on the delivery engine.
pub type Backstop = Queued<encode::Encoder>;

impl Backstop {
    /// Starts the worker thread.
    pub fn start(config: &BackstopConfig) -> std::io::Result<Backstop> {
        let limits = Limits {
            queue_bytes: config.max_queue_bytes,
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
        };
        let agent = super::http::agent(config.timeout, super::http::tls::tls_config(config.ca_file.as_ref()));
        let url = config.url.without_credentials();
        log::info!("backstop: publishing to {}", config.url);
        let names = Names { name: "backstop", peer: format!("POST {url}"), spelling: Spelling::POINTS };
        let post = deliver::Post { agent, url, authorization: config.url.authorization() };
        let encoder = encode::Encoder::new(config.max_request_bytes, config.url.source());
        Ok(Queued::with(encoder, Outbox::start(names, limits, Whole(post))?))
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
        // A query is kept and sent (the sinks' one grammar allows it).
        let q = PublishUrl::parse("http://h:1/publish/x?tenant=a").unwrap();
        assert_eq!((q.source(), q.without_credentials().as_str()), ("x", "http://h:1/publish/x?tenant=a"));
        for bad in [
            "backstop:9000/publish/x",
            "ftp://h/publish/x",
            "http:///publish/x",
            "http://h/collectd",
            "http://h/publish/",
            "http://u:%zz@h/publish/x",
            "http://h:99999/publish/x",
            "http://h/publish/x#f",
        ] {
            assert!(PublishUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
