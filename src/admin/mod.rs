//! Operating the daemon: the management port's protocol and answers ([`management`]), and over
//! HTTP the `[http]` section (`listen`, `--http`, `KSTATSD_HTTP`), the `health` state that
//! `/healthz` reports, and the server itself ([`http`]). The configuration is validated on the
//! main thread at start-up; the HTTP server runs on its own thread, the management port's client
//! handling on the ingest thread and its answers about the known series on the flush thread.
//!
//! The `health` state is written by the ingest thread when the management port receives
//! `health up` / `health down`, and read by the HTTP thread; it is one relaxed atomic, so
//! neither ever waits for the other.

pub mod http;
pub mod management;

use serde::Deserialize;
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

/// `[http]` in the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<String>,
}

/// `--http ADDR` / `KSTATSD_HTTP`.
#[derive(Debug, Default, Clone)]
pub struct HttpOverrides {
    pub listen: Option<String>,
}

/// The validated section: where `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl HttpConfig {
    /// `None` (off, the default) when neither the file nor the flag gives an address, or when
    /// either says `"off"` (the flag first).
    pub fn build(file: Option<&HttpFile>, ov: &HttpOverrides) -> Result<Option<HttpConfig>, String> {
        let text = ov.listen.as_deref().or(file.and_then(|f| f.listen.as_deref()));
        match text.map(str::trim) {
            None | Some("off") => Ok(None),
            Some(a) => a
                .parse()
                .map(|listen| Some(HttpConfig { listen }))
                .map_err(|_| format!("http.listen: `{a}` is not an IP:port address (or \"off\")")),
        }
    }

    /// The section as TOML (`--check-config`).
    pub fn to_toml(&self) -> String {
        format!("[http]\nlisten = \"{}\"\n", self.listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_the_flag_wins() {
        let file = HttpFile { listen: Some("127.0.0.1:9102".into()) };
        assert_eq!(HttpConfig::build(None, &HttpOverrides::default()), Ok(None));
        let on = HttpConfig::build(Some(&file), &HttpOverrides::default()).unwrap().unwrap();
        assert_eq!(on.listen, "127.0.0.1:9102".parse().unwrap());
        assert_eq!(on.to_toml(), "[http]\nlisten = \"127.0.0.1:9102\"\n");
        let off = HttpOverrides { listen: Some("off".into()) };
        assert_eq!(HttpConfig::build(Some(&file), &off), Ok(None));
        let other = HttpOverrides { listen: Some("[::1]:9200".into()) };
        assert_eq!(HttpConfig::build(Some(&file), &other).unwrap().unwrap().listen.port(), 9200);
        let bad = HttpOverrides { listen: Some("localhost".into()) };
        assert!(HttpConfig::build(None, &bad).unwrap_err().contains("http.listen"));
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
