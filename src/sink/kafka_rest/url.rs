//! The REST Proxy address: parsed once at start-up (main thread) into a base URL that holds no
//! credentials, plus the user name and password that were written into it, if any. Every error
//! message here describes the problem without echoing the text, which may hold a password.

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
        let text = text.trim();
        let (https, rest) = if let Some(r) = strip_prefix_ci(text, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(text, "https://") {
            (true, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if rest.contains(['?', '#']) {
            return Err("must not carry a query or a fragment".into());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut creds = UrlCredentials::default();
        let host = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                creds.username = Some(percent_decode(user).ok_or("has a badly escaped user name")?);
                creds.password = match pass {
                    Some(p) => Some(percent_decode(p).ok_or("has a badly escaped password")?),
                    None => None,
                };
                host
            }
            None => authority,
        };
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
                Some(_) => return Err("has an invalid host".into()),
                None => None,
            }
        };
        if port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err("has an invalid port".into());
        }
        if path.contains(|c: char| c.is_whitespace()) {
            return Err("has whitespace in its path".into());
        }
        let prefix = path.trim_end_matches('/').to_string();
        Ok((ProxyUrl { https, authority: host.to_string(), prefix }, creds))
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

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    fn errors_never_echo_the_url() {
        for bad in [
            "ftp://user:secret@h",
            "http://user:secret@",
            "http://user:secret@h:99999",
            "http://user:sec%zzret@h",
            "http://user:secret@h/?q",
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("user"), "{e}");
        }
    }
}
