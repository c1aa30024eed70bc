//! Operating the daemon: the management port's protocol and answers ([`management`]), and over
//! HTTP the `[http]` section (`listen`, `--http`, `KSTATSD_HTTP`, its raw section and validation),
//! the `health` state that `/healthz` reports, and the server itself ([`http`]). The
//! configuration is validated on the main thread at start-up; the HTTP server runs on its own
//! thread, the management port's client handling on the ingest thread and its answers about the
//! known series on the flush thread.
//!
//! The `health` state is written by the ingest thread when the management port receives
//! `health up` / `health down`, and read by the HTTP thread; it is one relaxed atomic, so
//! neither ever waits for the other.

pub mod http;
pub mod management;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What `health` reports (up from the start).
#[derive(Clone, Debug)]
pub struct Health(Arc<AtomicBool>);

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(AtomicBool::new(true)))
    }
}

impl Health {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

crate::section! {
    /// `[http]`, and its flag.
    pub struct HttpSection {
        /// Serve /metrics (Prometheus text format) and /healthz on this IP:port, or off [http.listen;
        /// default off].
        #[arg(id = "HTTP", long = "http", env = "KSTATSD_HTTP")]
        pub listen: Option<String>,
    }
}

/// The validated section: where `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl HttpConfig {
    /// `None` (off, the default) when neither the file nor the flag gives an address, or when
    /// either says `"off"` (the flag first).
    pub fn validate(file: Option<HttpSection>, flags: &HttpSection) -> Result<Option<HttpConfig>, String> {
        let s = flags.clone().or(file.unwrap_or_default());
        match s.listen.as_deref().map(str::trim) {
            None | Some("off") => Ok(None),
            Some(a) => a
                .parse()
                .map(|listen| Some(HttpConfig { listen }))
                .map_err(|_| format!("http.listen: `{a}` is not an IP:port address (or \"off\")")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_the_flag_wins() {
        let file = HttpSection { listen: Some("127.0.0.1:9102".into()) };
        assert_eq!(HttpConfig::validate(None, &HttpSection::default()), Ok(None));
        let on = HttpConfig::validate(Some(file.clone()), &HttpSection::default()).unwrap().unwrap();
        assert_eq!(on.listen, "127.0.0.1:9102".parse().unwrap());
        assert_eq!(toml::to_string(&on).unwrap(), "listen = \"127.0.0.1:9102\"\n");
        let off = HttpSection { listen: Some("off".into()) };
        assert_eq!(HttpConfig::validate(Some(file.clone()), &off), Ok(None));
        let other = HttpSection { listen: Some("[::1]:9200".into()) };
        assert_eq!(HttpConfig::validate(Some(file), &other).unwrap().unwrap().listen.port(), 9200);
        let bad = HttpSection { listen: Some("localhost".into()) };
        assert!(HttpConfig::validate(None, &bad).unwrap_err().contains("http.listen"));
    }

    #[test]
    fn health_is_shared() {
        let h = Health::default();
        let other = h.clone();
        assert!(other.is_up());
        h.set(false);
        assert!(!other.is_up());
    }
}
