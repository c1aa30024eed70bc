//! What the HTTP sinks (Kafka REST Proxy, Backstop) share beneath their own answers: the one URL
//! grammar ([`url`]), the certificate authorities an https peer may present ([`tls`]), the
//! `Retry-After` header ([`retry_after`]), and the ureq agent each sink's worker thread builds
//! once and keeps (one keep-alive connection, no redirects, statuses as answers, not errors).

pub mod retry_after;
pub mod tls;
pub mod url;

use std::time::{Duration, SystemTime};

/// The agent a sink's worker thread POSTs with: `timeout` bounds connecting and each whole
/// request; the peer is addressed directly (the `HTTP(S)_PROXY` variables are not for it).
pub fn agent(timeout: Duration, tls: ureq::tls::TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(timeout))
        // A connection that cannot be opened carried nothing: never a reason to wait long.
        .timeout_connect(Some(timeout))
        .user_agent(concat!("kstatsd/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The wait an answer's `Retry-After` header asks for, when it has a readable one.
pub fn retry_after<B>(resp: &ureq::http::Response<B>) -> Option<Duration> {
    let value = resp.headers().get("retry-after")?.to_str().ok()?;
    retry_after::parse(value, SystemTime::now())
}
