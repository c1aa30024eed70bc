//! The one URL grammar of the HTTP sinks (the Kafka REST Proxy's base URL, Backstop's publish
//! URL), parsed once when the configuration is built (main thread at start-up, the ingest thread
//! at a reload): `http(s)://[user[:password]@]host[:port][/path][?query]`.
//!
//! The credentials are percent-decoded and kept apart, so that the address itself is safe to
//! print and to hand to ureq, and they go out as an `Authorization: Basic` header instead. A
//! fragment is refused (it is never sent). The host must be a name, an IPv4 address or an IPv6
//! address in brackets, the port a number up to 65535, the path free of whitespace. What a sink
//! adds on top (the proxy refuses a query because it appends `/topics/{topic}`; Backstop needs
//! `/publish/{name}`) is that sink's own rule. No error message echoes the text: it may hold a
//! password.

use base64::Engine as _;
use percent_encoding::percent_decode_str;

/// An `http(s)` URL with its credentials taken out.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// `host`, `host:port` or `[v6]:port`.
    pub authority: String,
    /// `""` or `/…`, as written.
    pub path: String,
    /// What follows `?`, when there is one.
    pub query: Option<String>,
    /// Percent-decoded user name and password (`None` when the URL has no `@`).
    pub username: Option<String>,
    pub password: Option<String>,
}

impl HttpUrl {
    /// Parses `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let text = text.trim();
        let (https, rest) = if let Some(r) = strip_prefix_ci(text, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(text, "https://") {
            (true, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if rest.contains('#') {
            return Err("must not carry a fragment".into());
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (rest, None),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (mut username, mut password) = (None, None);
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            username = Some(percent_decode(user).ok_or("has a badly escaped user name")?);
            password = match pass {
                Some(p) => Some(percent_decode(p).ok_or("has a badly escaped password")?),
                None => None,
            };
        }
        check_authority(host)?;
        if path.contains(char::is_whitespace)
            || query.as_deref().is_some_and(|q| q.contains(char::is_whitespace))
        {
            return Err("has whitespace in its path".into());
        }
        Ok(HttpUrl { https, authority: host.to_string(), path: path.to_string(), query, username, password })
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The URL without credentials: what goes to ureq, and safe to print.
    pub fn without_credentials(&self) -> String {
        let query = self.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}://{}{}{query}", self.scheme(), self.authority, self.path)
    }

    /// The `Authorization` header value, when the URL carries credentials.
    pub fn authorization(&self) -> Option<String> {
        let user = self.username.as_deref()?;
        Some(basic_authorization(user, self.password.as_deref().unwrap_or("")))
    }
}

/// Never the credentials.
impl std::fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = if self.username.is_some() { "<redacted>@" } else { "" };
        let query = self.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        write!(f, "HttpUrl({}://{redacted}{}{}{query})", self.scheme(), self.authority, self.path)
    }
}

/// `Basic base64(user:password)` (RFC 7617).
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `host`, `host:port` or `[v6]` / `[v6]:port`, with a port that fits 16 bits.
fn check_authority(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err("has an invalid host".into());
    }
    let port = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("has an invalid host")?;
        if addr.is_empty() {
            return Err("has an invalid host".into());
        }
        match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("has an invalid host")?),
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(':') => Some(p),
            Some(("", _)) => return Err("has no host".into()),
            Some(_) => return Err("has an invalid host".into()),
            None => None,
        }
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has an invalid port".into());
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    // The crate passes a malformed escape through as it is; the URL is then refused instead.
    let malformed = s
        .match_indices('%')
        .any(|(i, _)| !s.as_bytes().get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
    if malformed {
        return None;
    }
    percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_and_decoded() {
        let u = HttpUrl::parse(" https://us%40er:p%3Ass@proxy.example:8082/kafka/?a=1 ").unwrap();
        assert_eq!(u.without_credentials(), "https://proxy.example:8082/kafka/?a=1");
        assert_eq!((u.username.as_deref(), u.password.as_deref()), (Some("us@er"), Some("p:ss")));
        assert_eq!(u.authorization().unwrap(), basic_authorization("us@er", "p:ss"));
        assert!(!format!("{u:?}").contains("p:ss") && format!("{u:?}").contains("<redacted>@"));
        let u = HttpUrl::parse("HTTP://[::1]:8082").unwrap();
        assert_eq!(
            (u.https, u.authority.as_str(), u.path.as_str(), u.query.as_deref()),
            (false, "[::1]:8082", "", None)
        );
        assert_eq!(u.authorization(), None);
        assert_eq!(HttpUrl::parse("http://u@h").unwrap().authorization(), Some(basic_authorization("u", "")));
    }

    #[test]
    fn basic_authorization_is_rfc_base64() {
        // RFC 7617's example, and the padding cases of RFC 4648.
        assert_eq!(basic_authorization("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_authorization("alice", "s@cret"), "Basic YWxpY2U6c0BjcmV0");
        assert_eq!(basic_authorization("f", ""), "Basic Zjo=");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "secret.example:9000/x",
            "ftp://user:secret@h",
            "http://user:secret@",
            "http:///x",
            "http://:80/x",
            "http://user:secret@h:99999",
            "http://user:secret@h:port",
            "http://user:sec%zzret@h",
            "http://user:sec%e9ret@h",
            "http://user:secret@h/#frag",
            "http://user:secret@h/a b",
            "http://user:secret@[::1/x",
        ] {
            let e = HttpUrl::parse(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("user"), "{bad}: {e}");
        }
    }
}
