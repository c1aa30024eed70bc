//! The REST Proxy address: parsed once at start-up (main thread) with the sinks' one URL grammar
//! ([`HttpUrl`]) into a base URL that holds no credentials, plus the user name and password that
//! were written into it, if any. The proxy's own rule on top: no query, since the produce URL
//! is the base followed by `/topics/{topic}`. Error messages never echo the text.

use crate::sink::http::url::HttpUrl;

/// `http(s)://host[:port][/prefix]`, with the credentials taken out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    pub https: bool,
    /// `host`, `host:port`, `[v6]:port`.
    pub authority: String,
    /// A path prefix without its trailing slash (`""` or `/kafka`).
    pub prefix: String,
}

/// What a URL carried besides the address.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UrlCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ProxyUrl {
    /// Parses `text`; credentials in `user:password@` are percent-decoded and returned apart.
    pub fn parse(text: &str) -> Result<(ProxyUrl, UrlCredentials), String> {
        let u = HttpUrl::parse(text)?;
        if u.query.is_some() {
            return Err("must not carry a query or a fragment".into());
        }
        let prefix = u.path.trim_end_matches('/').to_string();
        let creds = UrlCredentials { username: u.username, password: u.password };
        Ok((ProxyUrl { https: u.https, authority: u.authority, prefix }, creds))
    }

    /// The base, without credentials: safe to log and to print.
    pub fn base(&self) -> String {
        format!("{}://{}{}", if self.https { "https" } else { "http" }, self.authority, self.prefix)
    }

    /// `{base}/topics/{topic}`.
    pub fn produce(&self, topic: &str) -> String {
        format!("{}/topics/{topic}", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let (u, c) = ProxyUrl::parse("https://us%40er:p%3Ass@proxy.example:8082/kafka/").unwrap();
        assert_eq!(u.base(), "https://proxy.example:8082/kafka");
        assert_eq!(u.produce("metrics"), "https://proxy.example:8082/kafka/topics/metrics");
        assert_eq!(c.username.as_deref(), Some("us@er"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        let (u, c) = ProxyUrl::parse("HTTP://127.0.0.1:8082").unwrap();
        assert_eq!(u.base(), "http://127.0.0.1:8082");
        assert_eq!(c, UrlCredentials::default());
        let (u, _) = ProxyUrl::parse("http://[::1]:8082").unwrap();
        assert_eq!(u.authority, "[::1]:8082");
    }

    #[test]
    fn a_query_is_refused_without_echoing_the_url() {
        for bad in ["http://user:secret@h/?q", "http://user:secret@h?q=1", "http://user:secret@h/#f"] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("user"), "{e}");
        }
    }
}
