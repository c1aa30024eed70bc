//! The value types every configuration section is written in, and the rules they share: a
//! [`Period`] (a duration such as `"10s"`), a [`Size`] (`"8MiB"`), a [`Secret`] (never shown),
//! the [`ConfigError`] a validation returns, and the [`section!`](crate::section) macro that
//! declares a section's raw struct once, for the TOML file and for the command line at the same
//! time. Each value type reads the same text from a TOML value, a flag and an environment
//! variable, so a section declares an option once and both sources agree on its syntax.
//!
//! A leaf: it imports nothing from the crate, so every component may use it without depending
//! on `config`, which only composes the sections. Runs on the main thread at start-up and on the
//! reload thread at SIGHUP.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A configuration error, with a message that says what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// `Err(ConfigError(msg))`.
pub fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Declares a section's raw struct: every field an `Option`, read from the TOML file (serde,
/// unknown keys refused) and from flags and environment variables (`clap::Args`, to be
/// flattened into the command line), with [`or`](#method.or) to lay the flags over the file
/// field by field. Field attributes (`#[arg(…)]`, `#[serde(…)]`, doc comments, which are the
/// flag's `--help` text) pass through as written.
#[macro_export]
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : Option<$ty:ty>, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, PartialEq, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
        }

        impl $name {
            /// Every field `self` sets, else `base`'s: the flags laid over the file.
            pub fn or(self, base: $name) -> $name {
                $name { $( $field: self.$field.or(base.$field), )* }
            }

            /// The names of the fields that are set, in declaration order.
            pub fn set_fields(&self) -> Vec<&'static str> {
                let mut set = Vec::new();
                $( if self.$field.is_some() { set.push(stringify!($field)); } )*
                set
            }
        }
    };
}

/// `impl Deserialize` for a type with `FromStr`: the value is a string, parsed as a flag would
/// be, and the parse error is the deserialization error (`parse_file` names the key and line).
#[macro_export]
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A duration: `"10s"`, `"500ms"`, `"250us"`, `"1m"`, `"1h"`, `"1.5s"`, or a plain number of
/// seconds (as text, in a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

impl Period {
    /// The value, else `default`.
    pub fn or(p: Option<Period>, default: Duration) -> Duration {
        p.map_or(default, |p| p.0)
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        parse_duration(s).map(Period)
    }
}

crate::deserialize_from_str!(Period);

/// `"10s"`, `"500ms"`, `"250us"`, `"1m"`, `"1h"`, `"1.5s"`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration such as \"10s\" or \"500ms\""))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (use ns, us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

/// A duration as the file writes it back: whole milliseconds (`"10000ms"`) when it is one,
/// else microseconds or nanoseconds, so that it reads back to the same value.
pub fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_nanos() % 1_000 == 0 {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// `#[serde(serialize_with = "…")]` for a `Duration`: see [`duration_text`].
pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(*d))
}

/// `#[serde(serialize_with = "…")]` for numbers read as `f64`: a whole number prints as an
/// integer (`90`, not `90.0`), as it was most likely written.
pub fn ser_numbers<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| Number(*x)))
}

/// One number as [`ser_numbers`] prints it.
pub struct Number(pub f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.fract() == 0.0 && x.abs() < 1e15 {
            s.serialize_i64(x as i64)
        } else {
            s.serialize_f64(x)
        }
    }
}

/// A byte size: a number of bytes, or a string such as `"8MiB"`, `"64KiB"`, `"1GiB"`, `"900KB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The value (else `default`) as a `usize`, under the key `what`.
    pub fn or(s: Option<Size>, default: u64, what: &str) -> Result<usize, ConfigError> {
        let n = s.map_or(default, |s| s.0);
        usize::try_from(n).map_err(|_| ConfigError(format!("{what}: too large")))
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        parse_size(s).map(Size)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Size(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `"8MiB"`, `"64KiB"`, `"1GiB"`, `"900KB"`, `"4096"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size such as \"8MiB\""))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("`{s}` is too large"))
}

/// A string that may hold a credential (a password, a URL with `user:password@`): neither its
/// `Debug` nor its `Serialize` shows it, so no `{:?}` of a config and no printed config does.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

/// What a [`Secret`] prints as.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{REDACTED}\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// A network sink's `timeout` (default 10 s, at least 1 ms) under section `w`.
pub fn timeout(t: Option<Period>, w: &str) -> Result<Duration, ConfigError> {
    let timeout = Period::or(t, Duration::from_secs(10));
    if timeout < Duration::from_millis(1) {
        return err(format!("{w}.timeout must be at least 1ms"));
    }
    Ok(timeout)
}

/// A network sink's `retry_backoff` (default 100 ms, at least 1 ms) and `retry_backoff_max`
/// (default `max_default`, not below the first) under section `w`.
pub fn backoff(
    first: Option<Period>,
    max: Option<Period>,
    max_default: Duration,
    w: &str,
) -> Result<(Duration, Duration), ConfigError> {
    let retry_backoff = Period::or(first, Duration::from_millis(100));
    let retry_backoff_max = Period::or(max, max_default);
    if retry_backoff < Duration::from_millis(1) || retry_backoff_max < retry_backoff {
        return err(format!("{w}: retry_backoff must be at least 1ms and at most retry_backoff_max"));
    }
    Ok((retry_backoff, retry_backoff_max))
}

/// A sink's `max_queue_bytes` (default 64 MiB) under section `w`: at least one request of
/// `max_request_bytes`.
pub fn queue_bytes(v: Option<Size>, max_request_bytes: usize, w: &str) -> Result<usize, ConfigError> {
    let max_queue_bytes = Size::or(v, 64 << 20, &format!("{w}.max_queue_bytes"))?;
    if max_queue_bytes < max_request_bytes {
        return err(format!(
            "{w}.max_queue_bytes ({max_queue_bytes}) must be at least max_request_bytes ({max_request_bytes})"
        ));
    }
    Ok(max_queue_bytes)
}

/// A list option as given (repeated, or comma-separated in one value), cleaned of blanks.
pub fn split_list(v: Option<Vec<String>>) -> Vec<String> {
    v.unwrap_or_default()
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("900KiB"), Ok(900 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8 parsecs").is_err());
    }

    #[test]
    fn durations_print_back_to_the_same_value() {
        for d in ["10s", "250us", "1.5s", "7ns", "0"] {
            let v = parse_duration(d).unwrap();
            assert_eq!(parse_duration(&duration_text(v)), Ok(v), "{d}");
        }
        assert_eq!(duration_text(Duration::from_secs(2)), "2000ms");
    }

    #[test]
    fn a_size_reads_from_a_number_or_text_and_a_secret_never_shows() {
        #[derive(Deserialize)]
        struct T {
            a: Size,
            b: Size,
            s: Secret,
        }
        let t: T = toml::from_str("a = 4096\nb = \"64KiB\"\ns = \"hunter2\"").unwrap();
        assert_eq!((t.a, t.b), (Size(4096), Size(64 << 10)));
        assert_eq!(t.s.0, "hunter2");
        assert!(!format!("{:?}", t.s).contains("hunter2"));
        assert_eq!(toml::Value::try_from(&t.s).unwrap().as_str(), Some(REDACTED));
        assert!(toml::from_str::<T>("a = \"8 parsecs\"\nb = 1\ns = \"\"").is_err());
    }
}
