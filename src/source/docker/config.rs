//! The Docker stats source's configuration: `[docker]`, and docker-stats-to-backstop's own flags
//! and variables (`--docker`/`SRV_DOCKER`, `--poll`/`SRV_POLL`, `--rules`/`SRV_RULES`,
//! `--prefix`/`SRV_PREFIX`). The raw section is read from the file and the command line alike
//! (durations in Go's syntax, rules as TOML tables in the file and JSON on the command line);
//! [`DockerConfig::validate`] turns it into typed values (the defaults are here). Runs on the
//! main thread at start-up and on the reload thread at SIGHUP; `crate::config` only composes it.

use super::http::EngineAddr;
use super::rules::{self, Renamer, RuleSpec};
use crate::settings::ser_duration;
use serde::{Deserialize, Serialize, Serializer};
use std::str::FromStr;
use std::time::Duration;

crate::section! {
    /// `[docker]`, and the flags that override it: any of them turns the source on.
    pub struct DockerSection {
        /// Docker stats source: the Engine's URL, unix:///var/run/docker.sock or http://host:port;
        /// any of --docker, --poll, --rules, --prefix turns it on [docker.url].
        #[arg(id = "DOCKER", long = "docker", env = "SRV_DOCKER")]
        pub url: Option<String>,
        /// Docker poll period, Go duration syntax: 500ms, 60s, 5m, 1h30m [docker.poll; default 5m].
        #[arg(long, env = "SRV_POLL")]
        pub poll: Option<GoPeriod>,
        /// Bound on each request to the Engine [docker.timeout; default 30s].
        #[arg(skip)]
        pub timeout: Option<GoPeriod>,
        /// Container renaming rules, JSON: '[{"regexp":"(.*)\\..*","into":"$1","category":"web"}]';
        /// first match wins [docker.rules].
        #[arg(long, env = "SRV_RULES")]
        pub rules: Option<Rules>,
        /// Container renaming for names no rule matched, JSON: '{"regexp":"…","into":"$1.$2"}'
        /// [docker.prefix].
        #[arg(long, env = "SRV_PREFIX")]
        pub prefix: Option<PrefixRule>,
    }
}

/// A duration in Go's syntax ([`parse_go_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoPeriod(pub Duration);

impl FromStr for GoPeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<GoPeriod, String> {
        parse_go_duration(s).map(GoPeriod)
    }
}

crate::deserialize_from_str!(GoPeriod);

/// The renaming rules: TOML tables in the file, a JSON array as a flag (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Rules(pub Vec<RuleSpec>);

impl FromStr for Rules {
    type Err = String;
    fn from_str(json: &str) -> Result<Rules, String> {
        if json.trim().is_empty() {
            return Ok(Rules(Vec::new()));
        }
        rules::parse_rules_json(json).map(Rules)
    }
}

/// The fallback rule: a TOML table in the file, a JSON object as a flag (empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRule(pub Option<RuleSpec>);

impl FromStr for PrefixRule {
    type Err = String;
    fn from_str(json: &str) -> Result<PrefixRule, String> {
        if json.trim().is_empty() {
            return Ok(PrefixRule(None));
        }
        rules::parse_prefix_json(json).map(|r| PrefixRule(Some(r)))
    }
}

impl<'de> Deserialize<'de> for PrefixRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PrefixRule, D::Error> {
        RuleSpec::deserialize(d).map(|r| PrefixRule(Some(r)))
    }
}

/// The validated `[docker]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DockerConfig {
    #[serde(serialize_with = "ser_url")]
    pub url: EngineAddr,
    #[serde(serialize_with = "ser_duration")]
    pub poll: Duration,
    /// Bound on each request (connect, send, read).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub rules: Vec<RuleSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<RuleSpec>,
}

fn ser_url<S: Serializer>(url: &EngineAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url.to_string())
}

pub const DEFAULT_URL: &str = "unix:///var/run/docker.sock";
/// docker-stats-to-backstop's default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl DockerConfig {
    /// Validates `[docker]` (`file`) under its flags; `None` when neither is given.
    pub fn validate(
        file: Option<DockerSection>,
        flags: &DockerSection,
    ) -> Result<Option<DockerConfig>, String> {
        if file.is_none() && flags.set_fields().is_empty() {
            return Ok(None);
        }
        let s = flags.clone().or(file.unwrap_or_default());
        let url_text = s.url.as_deref().unwrap_or(DEFAULT_URL);
        let url = EngineAddr::parse(url_text).map_err(|e| format!("docker.url: {e}"))?;
        let positive = |what: &str, v: Option<GoPeriod>, d: Duration| match v.map_or(d, |p| p.0) {
            v if v.is_zero() => Err(format!("docker.{what}: must be more than 0")),
            v => Ok(v),
        };
        let poll = positive("poll", s.poll, DEFAULT_POLL)?;
        let timeout = positive("timeout", s.timeout, DEFAULT_TIMEOUT)?;
        let rules = s.rules.map(|r| r.0).unwrap_or_default();
        let prefix = s.prefix.and_then(|p| p.0);
        Renamer::new(&rules, prefix.as_ref()).map_err(|e| format!("docker.rules: {e}"))?;
        Ok(Some(DockerConfig { url, poll, timeout, rules, prefix }))
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), e.g. `300ms`, `1.5h`, `1h30m`; `0`
/// alone. Negative durations are refused (a poll period cannot be one).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration such as 500ms, 60s, 5m or 1h30m");
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !s.is_empty() {
        let n = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let num = &s[..n];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        s = &s[n..];
        let u = s.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(s.len());
        let scale = match &s[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("`{text}`: missing unit (ns, us, ms, s, m, h)")),
            other => return Err(format!("`{text}`: unknown unit `{other}` (ns, us, ms, s, m, h)")),
        };
        nanos += value * scale;
        s = &s[u..];
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(parse_go_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_go_duration("60s").unwrap(), ms(60_000));
        assert_eq!(parse_go_duration("5m").unwrap(), ms(300_000));
        assert_eq!(parse_go_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_go_duration("1.5h").unwrap(), ms(5_400_000));
        assert_eq!(parse_go_duration("2h45m30.5s").unwrap(), ms(9_930_500));
        assert_eq!(parse_go_duration("1µs").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_go_duration("1μs").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_go_duration("3us7ns").unwrap(), Duration::from_nanos(3007));
        assert_eq!(parse_go_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "1d", "-1s", "s", "1..5s", "1h 30m", "abc", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_from_flags_file_and_defaults() {
        let none = DockerSection::default();
        assert_eq!(DockerConfig::validate(None, &none).unwrap(), None);
        let on = DockerConfig::validate(Some(DockerSection::default()), &none).unwrap().unwrap();
        assert_eq!(on.url, EngineAddr::Unix("/var/run/docker.sock".into()));
        assert_eq!(on.poll, Duration::from_secs(300));
        let file: DockerSection = toml::from_str(
            "url = \"http://127.0.0.1:2375\"\npoll = \"1h30m\"\nrules = [{ regexp = \"(.*)\\\\..*\\\\.(.*)\\\\..*\", into = \"$1.$2\", category = \"web\" }]\n",
        )
        .unwrap();
        let c = DockerConfig::validate(Some(file.clone()), &none).unwrap().unwrap();
        assert_eq!(c.poll, Duration::from_secs(5400));
        assert_eq!(c.rules[0].category, "web");
        let flags = DockerSection {
            url: Some("unix:///tmp/d.sock".into()),
            poll: Some("500ms".parse().unwrap()),
            rules: Some(r#"[{"regexp":"x","category":"c"}]"#.parse().unwrap()),
            prefix: Some(r#"{"regexp":"a","into":"b"}"#.parse().unwrap()),
            timeout: None,
        };
        let c = DockerConfig::validate(Some(file), &flags).unwrap().unwrap();
        assert_eq!(
            (c.poll, c.rules.len(), c.rules[0].category.as_str()),
            (Duration::from_millis(500), 1, "c")
        );
        assert!(toml::to_string(&c).unwrap().contains("poll = \"500ms\""));
        let bad = |flags: DockerSection| DockerConfig::validate(None, &flags).unwrap_err();
        let poll = DockerSection { poll: Some("0".parse().unwrap()), ..Default::default() };
        assert!(bad(poll).contains("more than 0"));
        assert!(
            bad(DockerSection { url: Some("ftp://x".into()), ..Default::default() }).contains("docker.url")
        );
        let rules =
            DockerSection { rules: Some("[{\"regexp\":\"(\"}]".parse().unwrap()), ..Default::default() };
        assert!(bad(rules).contains("rules"));
    }
}
