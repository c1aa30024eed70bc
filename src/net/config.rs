//! The inputs' and the ingest loop's configuration, `[server]`: listeners (UDP, pystatsd JSON,
//! TCP, Unix sockets, the management port), socket and stream limits, busy polling, thread pins,
//! the shutdown bound and the debug dump. The raw section is read from the file and from the
//! command line alike; [`ServerConfig::validate`] turns it into typed values (the defaults are
//! here). It sits in `net`, below `server`, because binding the inputs ([`super::bind`]) reads it
//! and `net` must not import what sits above it. Runs on the main thread at start-up and on the
//! reload thread at SIGHUP; `crate::config` only composes it.

use super::framing::Framing;
use crate::settings::{duration_text, err, ser_duration, split_list, ConfigError, Period, Size};
use serde::{Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

crate::section! {
    /// `[server]`, and the flags that override it.
    pub struct ServerSection {
        /// UDP listen address (repeatable or comma-separated) [server.udp; default 127.0.0.1:8125].
        #[arg(long, env = "KSTATSD_UDP", value_delimiter = ',')]
        pub udp: Option<Vec<String>>,
        /// Socket receive buffer requested, e.g. 64MiB [server.recv_buffer; default 32MiB].
        #[arg(long, env = "KSTATSD_RECV_BUFFER")]
        pub recv_buffer: Option<Size>,
        /// Datagrams per recvmmsg call [server.recv_batch; default 64].
        #[arg(long, env = "KSTATSD_RECV_BATCH")]
        pub recv_batch: Option<usize>,
        /// Largest datagram kept whole; longer ones are cut and counted [server.max_datagram; 64KiB].
        #[arg(long, env = "KSTATSD_MAX_DATAGRAM")]
        pub max_datagram: Option<Size>,
        /// Spin this long without traffic before parking in epoll: a duration, "always" or "never"
        /// [server.busy_poll; default 2ms].
        #[arg(long, env = "KSTATSD_BUSY_POLL")]
        pub busy_poll: Option<BusyPoll>,
        /// Pin the ingest thread to this core [server.pin_ingest_core].
        #[arg(long, env = "KSTATSD_PIN_INGEST_CORE")]
        pub pin_ingest_core: Option<usize>,
        /// Pin the flush thread to this core [server.pin_flush_core].
        #[arg(long, env = "KSTATSD_PIN_FLUSH_CORE")]
        pub pin_flush_core: Option<usize>,
        /// Bound on the final flush at SIGTERM/SIGINT [server.shutdown_timeout; default 5s].
        #[arg(long, env = "KSTATSD_SHUTDOWN_TIMEOUT")]
        pub shutdown_timeout: Option<Period>,
        /// TCP listen address, newline-framed lines (repeatable or comma-separated) [server.tcp].
        #[arg(long, env = "KSTATSD_TCP", value_delimiter = ',')]
        pub tcp: Option<Vec<String>>,
        /// Unix datagram socket file, fed like UDP (repeatable or comma-separated) [server.unix_dgram].
        #[arg(long, env = "KSTATSD_UNIX_DGRAM", value_delimiter = ',')]
        pub unix_dgram: Option<Vec<String>>,
        /// Unix stream socket file, fed like TCP (repeatable or comma-separated) [server.unix_stream].
        #[arg(long, env = "KSTATSD_UNIX_STREAM", value_delimiter = ',')]
        pub unix_stream: Option<Vec<String>>,
        /// How TCP connections are framed: auto (told apart by their first four bytes), newline, or
        /// length_prefix (DogStatsD's 4-byte little-endian lengths) [server.tcp_framing; default auto].
        #[arg(long, env = "KSTATSD_TCP_FRAMING", value_name = "auto|newline|length_prefix")]
        pub tcp_framing: Option<String>,
        /// How Unix stream connections are framed, as --tcp-framing [server.unix_stream_framing;
        /// default auto].
        #[arg(long, env = "KSTATSD_UNIX_STREAM_FRAMING", value_name = "auto|newline|length_prefix")]
        pub unix_stream_framing: Option<String>,
        /// Permission bits of the Unix socket files, octal [server.unix_mode; default 0666].
        #[arg(long, env = "KSTATSD_UNIX_MODE")]
        pub unix_mode: Option<String>,
        /// UDP listen address for pystatsd JSON messages (repeatable or comma-separated)
        /// [server.json_udp].
        #[arg(long, env = "KSTATSD_JSON_UDP", value_delimiter = ',')]
        pub json_udp: Option<Vec<String>>,
        /// Management port: IP:port, a bare port (loopback), or off; --admin alone is
        /// 127.0.0.1:8126 [server.admin; default 127.0.0.1:8126].
        #[arg(long, env = "KSTATSD_ADMIN", num_args = 0..=1, default_missing_value = "127.0.0.1:8126")]
        pub admin: Option<String>,
        /// Accept the mutating admin commands (del*, health up|down) [server.admin_allow_mutations;
        /// default true].
        #[arg(long, env = "KSTATSD_ADMIN_ALLOW_MUTATIONS")]
        pub admin_allow_mutations: Option<bool>,
        /// Longest line on a TCP / Unix stream connection; longer ones are dropped and counted
        /// [server.max_line_bytes; default 8KiB].
        #[arg(long, env = "KSTATSD_MAX_LINE_BYTES")]
        pub max_line_bytes: Option<Size>,
        /// Stream connections open at once; more are refused and counted
        /// [server.max_tcp_connections; default 1000].
        #[arg(long, env = "KSTATSD_MAX_TCP_CONNECTIONS")]
        pub max_tcp_connections: Option<usize>,
        /// Close a stream connection silent this long; 0 never [server.tcp_idle_timeout; default 5m].
        #[arg(long, env = "KSTATSD_TCP_IDLE_TIMEOUT")]
        pub tcp_idle_timeout: Option<Period>,
        /// Print every incoming metric whose name matches REGEX (all without one) to stderr
        /// [server.debug_dump].
        #[arg(
            short = 'd',
            long,
            env = "KSTATSD_DEBUG_DUMP",
            num_args = 0..=1,
            default_missing_value = "",
            value_name = "REGEX"
        )]
        pub debug_dump: Option<String>,
    }
}

/// Where the management port listens unless `admin` says otherwise (etsy's port, on loopback);
/// `admin = "off"` disables it.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8126);

/// How long the ingest loop keeps spinning on empty sockets before it parks in `epoll_wait`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BusyPoll {
    Always,
    For(Duration),
}

impl FromStr for BusyPoll {
    type Err = String;
    fn from_str(s: &str) -> Result<BusyPoll, String> {
        match s {
            "always" => Ok(BusyPoll::Always),
            "never" => Ok(BusyPoll::For(Duration::ZERO)),
            d => Period::from_str(d)
                .map(|p| BusyPoll::For(p.0))
                .map_err(|e| format!("{e} (or \"always\", \"never\")")),
        }
    }
}

crate::deserialize_from_str!(BusyPoll);

impl Serialize for BusyPoll {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BusyPoll::Always => s.serialize_str("always"),
            BusyPoll::For(d) => s.serialize_str(&duration_text(*d)),
        }
    }
}

/// The validated `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub udp: Vec<SocketAddr>,
    pub recv_buffer: usize,
    pub recv_batch: usize,
    pub max_datagram: usize,
    pub busy_poll: BusyPoll,
    pub pin_ingest_core: Option<usize>,
    pub pin_flush_core: Option<usize>,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_timeout: Duration,
    /// Newline-framed TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// Unix datagram socket files (one or more lines per datagram, as UDP).
    pub unix_dgram: Vec<PathBuf>,
    /// Unix stream socket files (framed as `unix_stream_framing` says).
    pub unix_stream: Vec<PathBuf>,
    /// How TCP connections are framed: newlines, length prefixes, or told apart (the default).
    #[serde(serialize_with = "ser_framing")]
    pub tcp_framing: Framing,
    /// How Unix stream connections are framed (the same choice).
    #[serde(serialize_with = "ser_framing")]
    pub unix_stream_framing: Framing,
    /// Permission bits of the socket files.
    #[serde(serialize_with = "ser_mode")]
    pub unix_mode: u32,
    /// UDP listeners where every line is a pystatsd JSON message.
    pub json_udp: Vec<SocketAddr>,
    /// The management port (default [`DEFAULT_ADMIN`]); `None` when `admin = "off"`.
    #[serde(serialize_with = "ser_admin")]
    pub admin: Option<SocketAddr>,
    /// Whether `del*` and `health down|up` are accepted on the management port.
    pub admin_allow_mutations: bool,
    /// Longest line accepted on a stream (TCP, Unix stream); longer ones are dropped and counted.
    pub max_line_bytes: usize,
    /// Stream connections (TCP and Unix stream) open at once; more are refused and counted.
    pub max_tcp_connections: usize,
    /// A stream connection silent this long is closed; `None`: never.
    #[serde(serialize_with = "ser_idle")]
    pub tcp_idle_timeout: Option<Duration>,
    /// `--debug-dump`: print every metric whose name matches this regex to stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_dump: Option<String>,
}

fn ser_framing<S: Serializer>(f: &Framing, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.name())
}

fn ser_mode<S: Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{m:04o}"))
}

fn ser_admin<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str("off"),
    }
}

fn ser_idle<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(d.unwrap_or(Duration::ZERO)))
}

impl ServerConfig {
    /// Validates `[server]` with its flags laid over it.
    pub fn validate(s: ServerSection) -> Result<ServerConfig, ConfigError> {
        let addrs = |v: Vec<String>, what: &str| -> Result<Vec<SocketAddr>, ConfigError> {
            v.iter()
                .map(|a| {
                    a.parse().map_err(|_| ConfigError(format!("{what}: `{a}` is not an IP:port address")))
                })
                .collect()
        };
        let udp =
            addrs(split_list(Some(s.udp.unwrap_or_else(|| vec!["127.0.0.1:8125".into()]))), "server.udp")?;
        // 32 MiB: at 100 k new series, a fresh daemon's first interval runs behind a sender at
        // 4–6 M lines/s for a moment, and 8 MiB dropped datagrams there (docs/inputs.md).
        let recv_buffer = Size::or(s.recv_buffer, 32 << 20, "server.recv_buffer")?;
        let max_datagram = Size::or(s.max_datagram, 65_536, "server.max_datagram")?;
        if !(512..=(1 << 20)).contains(&max_datagram) {
            return err("server.max_datagram must be between 512 bytes and 1MiB");
        }
        let recv_batch = s.recv_batch.unwrap_or(64);
        if !(1..=1024).contains(&recv_batch) {
            return err("server.recv_batch must be between 1 and 1024");
        }
        let busy_poll = s.busy_poll.unwrap_or(BusyPoll::For(Duration::from_millis(2)));
        let shutdown_timeout = Period::or(s.shutdown_timeout, Duration::from_secs(5));
        let tcp = addrs(split_list(s.tcp), "server.tcp")?;
        let json_udp = addrs(split_list(s.json_udp), "server.json_udp")?;
        let unix_dgram: Vec<PathBuf> = split_list(s.unix_dgram).into_iter().map(PathBuf::from).collect();
        let unix_stream: Vec<PathBuf> = split_list(s.unix_stream).into_iter().map(PathBuf::from).collect();
        let framing = |v: Option<&str>, key: &str| {
            let text = v.unwrap_or("auto");
            Framing::parse(text).ok_or_else(|| {
                ConfigError(format!("server.{key}: `{text}` is not auto, newline or length_prefix"))
            })
        };
        let tcp_framing = framing(s.tcp_framing.as_deref(), "tcp_framing")?;
        let unix_stream_framing = framing(s.unix_stream_framing.as_deref(), "unix_stream_framing")?;
        let mode_text = s.unix_mode.as_deref().unwrap_or("0666");
        let digits = mode_text.trim().trim_start_matches("0o");
        let unix_mode = u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| {
            ConfigError(format!("server.unix_mode: `{mode_text}` is not an octal mode such as \"0660\""))
        })?;
        let admin = match s.admin.as_deref().map(str::trim) {
            None => Some(DEFAULT_ADMIN),
            Some("") | Some("off") => None,
            Some(a) => Some(match a.parse::<u16>() {
                // A bare port binds loopback.
                Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
                Err(_) => a.parse().map_err(|_| {
                    ConfigError(format!("server.admin: `{a}` is not an IP:port address, a port, or \"off\""))
                })?,
            }),
        };
        let max_line_bytes = Size::or(s.max_line_bytes, 8 << 10, "server.max_line_bytes")?;
        if !(16..=(16 << 20)).contains(&max_line_bytes) {
            return err("server.max_line_bytes must be between 16 bytes and 16MiB");
        }
        let max_tcp_connections = s.max_tcp_connections.unwrap_or(1000);
        if !(1..=1_000_000).contains(&max_tcp_connections) {
            return err("server.max_tcp_connections must be between 1 and 1000000");
        }
        let idle = Period::or(s.tcp_idle_timeout, Duration::from_secs(300));
        if let Some(re) = &s.debug_dump {
            regex::bytes::Regex::new(re).map_err(|e| ConfigError(format!("server.debug_dump: {e}")))?;
        }
        Ok(ServerConfig {
            udp,
            recv_buffer,
            recv_batch,
            max_datagram,
            busy_poll,
            pin_ingest_core: s.pin_ingest_core,
            pin_flush_core: s.pin_flush_core,
            shutdown_timeout,
            tcp,
            unix_dgram,
            unix_stream,
            tcp_framing,
            unix_stream_framing,
            unix_mode,
            json_udp,
            admin,
            admin_allow_mutations: s.admin_allow_mutations.unwrap_or(true),
            max_line_bytes,
            max_tcp_connections,
            tcp_idle_timeout: (!idle.is_zero()).then_some(idle),
            debug_dump: s.debug_dump,
        })
    }
}
