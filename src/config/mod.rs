//! Configuration, composed: the TOML file is one table per component (`[server]`,
//! `[aggregate]`, `[sinks.*]`, `[docker]`, `[http]`), and the command line is the same sections'
//! flags and `KSTATSD_…` variables, flattened into one `clap` command ([`Overrides`]). Each
//! section, its defaults and its checks live with the component that owns it (the Graphite
//! sink's in `sink/graphite/config.rs`, and so on); the value types they share are in
//! [`crate::settings`]. This module only reads the file (TOML, or etsy statsd's config.js through
//! [`etsy`]), lays the flags over it section by section, calls each section's `validate`, and
//! prints the result back as TOML ([`Config::to_toml`], through `Serialize`, credentials
//! redacted). Runs on the main thread at start-up and on the reload thread at SIGHUP.

use crate::admin::{HttpConfig, HttpSection};
pub use crate::flush::config::{
    AggregateConfig, AggregateSection, BinFile, FailureHook, HistogramFile, HookCommand, HookSection,
};
pub use crate::net::config::{BusyPoll, ServerConfig, ServerSection, DEFAULT_ADMIN};
use crate::settings::duration_text;
pub use crate::settings::{parse_duration, parse_size, ConfigError, Period, Secret, Size};
use crate::sink::backstop::config::{BackstopConfig, BackstopSection};
use crate::sink::console::{ConsoleFormat, ConsoleSection};
use crate::sink::graphite::config::{GraphiteConfig, GraphiteSection};
use crate::sink::kafka::config::{KafkaConfig, KafkaSection};
use crate::sink::kafka_rest::config::{KafkaRestConfig, KafkaRestSection};
use crate::source::docker::config::{DockerConfig, DockerSection};
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;

pub mod etsy;
pub use etsy::ConfigFormat;

/// The file: one table per component, each that component's raw section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub aggregate: AggregateSection,
    #[serde(default)]
    pub sinks: SinksFile,
    /// `[docker]`: the Docker Engine stats source.
    pub docker: Option<DockerSection>,
    /// `[http]`: `/metrics` and `/healthz`.
    pub http: Option<HttpSection>,
}

/// `[sinks]`: a table per sink (the section turns the sink on), and the failure hook's keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksFile {
    pub console: Option<ConsoleSection>,
    pub kafka_rest: Option<KafkaRestSection>,
    pub kafka: Option<KafkaSection>,
    pub graphite: Option<GraphiteSection>,
    pub backstop: Option<BackstopSection>,
    /// The failure hook ([`HookSection`]): a command and its arguments, run without a shell.
    pub on_failure: Option<HookCommand>,
    pub on_failure_timeout: Option<Period>,
}

/// The flags and environment variables: every component's section, flattened into the command
/// line. A field that is set beats the file's.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// The --config file's syntax, whatever its extension: etsy (a config.js) or toml.
    #[arg(long, env = "KSTATSD_CONFIG_FORMAT", value_parser = ConfigFormat::parse)]
    pub config_format: Option<ConfigFormat>,
    #[command(flatten)]
    pub server: ServerSection,
    #[command(flatten)]
    pub aggregate: AggregateSection,
    #[command(flatten)]
    pub hook: HookSection,
    #[command(flatten)]
    pub console: ConsoleSection,
    #[command(flatten)]
    pub graphite: GraphiteSection,
    #[command(flatten)]
    pub backstop: BackstopSection,
    #[command(flatten)]
    pub docker: DockerSection,
    #[command(flatten)]
    pub http: HttpSection,
    #[command(flatten)]
    pub kafka_rest: KafkaRestSection,
    #[command(flatten)]
    pub kafka: KafkaSection,
}

/// The validated configuration: each component's typed section.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub aggregate: AggregateConfig,
    pub console: Option<ConsoleFormat>,
    pub kafka_rest: Option<KafkaRestConfig>,
    /// `[sinks.kafka]`: the native Kafka producer.
    pub kafka: Option<KafkaConfig>,
    pub graphite: Option<GraphiteConfig>,
    pub backstop: Option<BackstopConfig>,
    /// `[docker]`: poll the Docker Engine for container stats.
    pub docker: Option<DockerConfig>,
    /// `[http]`: serve `/metrics` (the Prometheus sink) and `/healthz`; off by default.
    pub http: Option<HttpConfig>,
    /// `sinks.on_failure`: run when a sink's flush fails (at most once per interval per sink).
    pub on_failure: Option<FailureHook>,
}

impl Config {
    /// Reads `path` (if any; TOML, or an etsy config.js by its extension or
    /// `ov.config_format`), applies `ov`, validates.
    pub fn load(path: Option<&PathBuf>, ov: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                if ov.config_format.unwrap_or_else(|| ConfigFormat::of(p)) == ConfigFormat::Etsy {
                    return etsy::load(&text, ov)
                        .map_err(|e| ConfigError(format!("{}: {}", p.display(), e.0)));
                }
                parse_file(&text).map_err(|e| ConfigError(format!("{}: {}", p.display(), e.0)))?
            }
            None => FileConfig::default(),
        };
        Config::build(file, ov)
    }

    /// The built-in defaults (what `kstatsd` with no arguments runs).
    pub fn defaults() -> Config {
        Config::build(FileConfig::default(), &Overrides::default()).expect("defaults are valid")
    }

    /// Lays the flags over the file, section by section, and validates each section.
    pub fn build(file: FileConfig, ov: &Overrides) -> Result<Config, ConfigError> {
        let s = file.sinks;
        let server = ServerConfig::validate(ov.server.clone().or(file.server))?;
        let hook = HookSection { on_failure: s.on_failure, on_failure_timeout: s.on_failure_timeout };
        let on_failure = FailureHook::validate(ov.hook.clone().or(hook))?;
        let aggregate = AggregateConfig::validate(ov.aggregate.clone().or(file.aggregate))?;
        // The shared `--kafka-…` flags apply to every Kafka sink configured: with the native one
        // on and no REST proxy anywhere, they are the native sink's alone.
        let kafka = KafkaConfig::validate(s.kafka, &ov.kafka, &ov.kafka_rest)?;
        let kafka_rest = match (&kafka, &s.kafka_rest, &ov.kafka_rest.url) {
            (Some(_), None, None) => None,
            _ => KafkaRestConfig::validate(s.kafka_rest, &ov.kafka_rest)?,
        };
        let graphite = GraphiteConfig::validate(s.graphite, &ov.graphite)?;
        let backstop = BackstopConfig::validate(s.backstop, &ov.backstop)?;
        let docker = DockerConfig::validate(file.docker, &ov.docker).map_err(ConfigError)?;
        let http = HttpConfig::validate(file.http, &ov.http).map_err(ConfigError)?;
        // The console is the default sink only when no other sink is configured.
        let other_sinks = kafka_rest.is_some()
            || kafka.is_some()
            || graphite.is_some()
            || backstop.is_some()
            || http.is_some();
        let console =
            ConsoleFormat::validate(ov.console.clone().or(s.console.unwrap_or_default()), other_sinks)?;
        Ok(Config {
            server,
            aggregate,
            console,
            kafka_rest,
            kafka,
            graphite,
            backstop,
            docker,
            http,
            on_failure,
        })
    }

    /// The effective configuration as TOML, for `--check-config` and the admin `config` command:
    /// a kstatsd file that loads back to the same configuration. Sink credentials (passwords,
    /// user names, credentials in URLs) are redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

/// The file's shape: `[server]`, `[aggregate]`, `[sinks]` with the hook's keys and a table per
/// sink (the console's always, `format = "off"` included), `[docker]`, `[http]`.
impl Serialize for Config {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Console {
            format: &'static str,
        }
        #[derive(Serialize)]
        struct Sinks<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            on_failure: Option<&'a [String]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            on_failure_timeout: Option<String>,
            console: Console,
            #[serde(skip_serializing_if = "Option::is_none")]
            kafka_rest: Option<&'a KafkaRestConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kafka: Option<&'a KafkaConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            graphite: Option<&'a GraphiteConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            backstop: Option<&'a BackstopConfig>,
        }
        #[derive(Serialize)]
        struct Shown<'a> {
            server: &'a ServerConfig,
            aggregate: &'a AggregateConfig,
            sinks: Sinks<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            docker: Option<&'a DockerConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            http: Option<&'a HttpConfig>,
        }
        Shown {
            server: &self.server,
            aggregate: &self.aggregate,
            sinks: Sinks {
                on_failure: self.on_failure.as_ref().map(|h| h.command.as_slice()),
                on_failure_timeout: self.on_failure.as_ref().map(|h| duration_text(h.timeout)),
                console: Console { format: ConsoleFormat::name(self.console) },
                kafka_rest: self.kafka_rest.as_ref(),
                kafka: self.kafka.as_ref(),
                graphite: self.graphite.as_ref(),
                backstop: self.backstop.as_ref(),
            },
            docker: self.docker.as_ref(),
            http: self.http.as_ref(),
        }
        .serialize(s)
    }
}

/// Parses the TOML text; errors name the line (and, for a value that does not parse, its key).
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let Some(sp) = e.span() else { return ConfigError(e.message().to_string()) };
        let start = sp.start.min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        ConfigError(format!("line {line}: {}{}", value_key(text, start), e.message()))
    })
}

/// `section.key: ` when `at` is in the value of a `key = value` line (a value that does not
/// parse: the message then names its key, as a validation error would), else nothing.
fn value_key(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let Some((key, _)) = text[line_start..at].split_once('=') else { return String::new() };
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return String::new();
    }
    let header = text[..line_start].lines().rev().map(str::trim).find(|l| l.starts_with('['));
    match header.and_then(|h| h.strip_prefix('[')).and_then(|h| h.split(']').next()) {
        Some(section) => format!("{}.{key}: ", section.trim()),
        None => format!("{key}: "),
    }
}

impl Config {
    /// The sink sections, for [`crate::sink::start_all`].
    pub fn sink_sections(&self) -> crate::sink::Sections<'_> {
        crate::sink::Sections {
            console: self.console,
            graphite: self.graphite.as_ref(),
            backstop: self.backstop.as_ref(),
            kafka_rest: self.kafka_rest.as_ref(),
            kafka: self.kafka.as_ref(),
            counter_rates: self.aggregate.counter_rates,
            meta_prefix: &self.aggregate.meta_prefix,
            flush_interval: self.aggregate.flush_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::summarize::{BinEdge, Percentile};
    use crate::sink::graphite::config::GraphiteProtocol;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[test]
    fn graphite_section_keys_and_flags() {
        let build = |text: &str, ov: &Overrides| Config::build(parse_file(text).unwrap(), ov);
        let none = Overrides::default();
        let c = Config::defaults();
        assert!(c.graphite.is_none() && c.backstop.is_none());
        // The section alone turns the sink on, with its defaults, and the console off.
        let c = build("[sinks.graphite]\n", &none).unwrap();
        let g = c.graphite.clone().unwrap();
        assert_eq!((g.address(), g.protocol), ("127.0.0.1:2003".into(), GraphiteProtocol::Plaintext));
        assert_eq!((g.timeout, g.max_queue_bytes), (Duration::from_secs(10), 64 << 20));
        assert_eq!(c.console, None);
        assert_eq!(build(&c.to_toml(), &none).unwrap(), c);
        let g = build("[sinks.graphite]\nprotocol = \"pickle\"", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "127.0.0.1:2004");
        // The deviantART flags: --graphite-port replaces the port of the file's address.
        let ov = Overrides {
            graphite: GraphiteSection { port: Some(2113), ..GraphiteSection::default() },
            ..Overrides::default()
        };
        let g = build("[sinks.graphite]\naddress = \"carbon.example:2013\"", &ov).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "carbon.example:2113");
        let g = build("[sinks.graphite]\nhost = \"::1\"\nport = 2003", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "[::1]:2003");
        let g = build("[sinks.graphite]\naddress = \"[::1]\"", &none).unwrap().graphite.unwrap();
        assert_eq!(g.address(), "[::1]:2003");
        // A flag alone turns it on; an explicit console stays on.
        let ov = Overrides {
            graphite: GraphiteSection { host: Some("carbon".into()), ..GraphiteSection::default() },
            ..Overrides::default()
        };
        let c = build("[sinks.console]\nformat = \"text\"", &ov).unwrap();
        assert_eq!(
            (c.graphite.unwrap().address(), c.console),
            ("carbon:2003".into(), Some(ConsoleFormat::Text))
        );
        for (bad, says) in [
            ("address = \"a:1\"\nhost = \"b\"", "not both"),
            ("protocol = \"udp\"", "plaintext or pickle"),
            ("address = \"a:b\"", "port number"),
            ("address = \"::1:2003\"", "brackets"),
            ("port = 0", "must not be 0"),
            ("max_queue_bytes = 10", "at least 1KiB"),
            ("retry_backoff = \"1s\"\nretry_backoff_max = \"10ms\"", "at most retry_backoff_max"),
            ("hosts = \"a\"", "unknown field"),
        ] {
            let e = parse_file(&format!("[sinks.graphite]\n{bad}"))
                .and_then(|f| Config::build(f, &none))
                .expect_err(bad);
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn backstop_credentials_never_leave_the_config() {
        let text = "[sinks.backstop]\nurl = \"https://bob:p%40ss@backstop.example:8443/publish/statsd\"";
        let c = Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap();
        let b = c.backstop.clone().unwrap();
        assert_eq!(b.url.without_credentials(), "https://backstop.example:8443/publish/statsd");
        assert_eq!((b.max_request_bytes, b.max_queue_bytes), (1 << 20, 64 << 20));
        assert_eq!(c.console, None);
        let toml = c.to_toml();
        assert!(toml.contains("url = \"https://<redacted>@backstop.example:8443/publish/statsd\""), "{toml}");
        for shown in [toml, format!("{c:?}")] {
            assert!(
                !shown.contains("p%40ss") && !shown.contains("p@ss") && !shown.contains("bob"),
                "{shown}"
            );
        }
        // The redacted TOML still reads back (with a placeholder user).
        let again = Config::build(parse_file(&c.to_toml()).unwrap(), &Overrides::default()).unwrap();
        let b2 = again.backstop.unwrap();
        assert_eq!(b2.url.without_credentials(), b.url.without_credentials());
        assert_eq!(
            (b2.timeout, b2.max_request_bytes, b2.retry_backoff_max),
            (b.timeout, b.max_request_bytes, b.retry_backoff_max)
        );
        // Errors about the URL never echo it.
        let ov = Overrides {
            backstop: BackstopSection {
                url: Some(Secret("http://bob:hunter2@h/collectd".into())),
                ..BackstopSection::default()
            },
            ..Overrides::default()
        };
        let e = Config::build(FileConfig::default(), &ov).unwrap_err();
        assert!(e.0.contains("/publish/{name}") && !e.0.contains("hunter2"), "{e}");
        let e =
            Config::build(parse_file("[sinks.backstop]\ntimeout = \"1s\"").unwrap(), &Overrides::default())
                .unwrap_err();
        assert!(e.0.contains("sinks.backstop.url is required"), "{e}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::Args;
        Overrides::augment_args(clap::Command::new("kstatsd")).debug_assert();
    }

    #[test]
    fn flags_parse_into_the_sections_and_beat_the_file_key_by_key() {
        use clap::{Args, FromArgMatches};
        let cmd = Overrides::augment_args(clap::Command::new("kstatsd"));
        let args = [
            "kstatsd",
            "--graphite-max-queue-bytes",
            "2MiB",
            "--flush-interval",
            "250ms",
            "--kafka-brokers",
            "a:1,b:2",
            "--kafka-topic",
            "t",
            "--backstop",
            "http://h/publish/x",
        ];
        let ov = Overrides::from_arg_matches(&cmd.clone().try_get_matches_from(args).unwrap()).unwrap();
        let file = "[sinks.graphite]\nhost = \"carbon\"\nmax_queue_bytes = \"1MiB\"\n\
                    [aggregate]\nflush_interval = \"1s\"\npercentiles = [99]\n";
        let c = Config::build(parse_file(file).unwrap(), &ov).unwrap();
        let g = c.graphite.unwrap();
        assert_eq!(
            (g.host.as_str(), g.max_queue_bytes),
            ("carbon", 2 << 20),
            "the file's host, the flag's size"
        );
        assert_eq!(c.aggregate.flush_interval, Duration::from_millis(250));
        assert_eq!(c.aggregate.percentiles, vec![Percentile::new(99.0)]);
        let k = c.kafka.unwrap();
        assert_eq!((k.brokers.len(), k.topic.as_str()), (2, "t"));
        assert_eq!(c.backstop.unwrap().url.without_credentials(), "http://h/publish/x");
        let e =
            cmd.try_get_matches_from(["kstatsd", "--graphite-timeout", "5 parsecs"]).unwrap_err().to_string();
        assert!(e.contains("--graphite-timeout") && e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_key_and_line() {
        let e =
            parse_file("[server]\nudp = []\n\n[aggregate]\nflush_interval = \"5 parsecs\"\n").unwrap_err();
        assert!(e.0.starts_with("line 5: aggregate.flush_interval: `5 parsecs`: unknown unit"), "{e}");
        let e = parse_file("[sinks.graphite]\nprotocol = \"udp\"").unwrap_err();
        assert_eq!(e.0, "line 2: sinks.graphite.protocol: `udp` is not plaintext or pickle");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.server.udp, vec!["127.0.0.1:8125".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.server.recv_buffer, 32 << 20);
        assert_eq!(c.aggregate.flush_interval, Duration::from_secs(10));
        assert_eq!(c.aggregate.percentiles, vec![Percentile::new(90.0)]);
        assert!(c.aggregate.legacy_namespace);
        assert!(!c.aggregate.delete_counters && !c.aggregate.counter_rates);
        assert_eq!(c.console, Some(ConsoleFormat::Json));
    }

    #[test]
    fn the_issue_example_parses() {
        let text = r#"
[server]
udp = ["127.0.0.1:8125"]
recv_buffer = "8MiB"
pin_ingest_core = 0          # optional
[aggregate]
flush_interval = "10s"
percentiles = [90]
histograms = [{ metric = "api.", bins = [10, 100, "inf"] }]
legacy_namespace = true
delete_idle_stats = false
counter_rates = false
[sinks.console]
format = "json"              # json | text
"#;
        let c = Config::build(parse_file(text).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(c.server.pin_ingest_core, Some(0));
        assert_eq!(
            c.aggregate.histograms[0].bins,
            vec![BinEdge::Finite(10.0), BinEdge::Finite(100.0), BinEdge::Inf]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_a_line() {
        let e = parse_file("[aggregate]\nflush_intervall = \"1s\"\n").unwrap_err();
        assert!(e.0.starts_with("line 2: unknown field `flush_intervall`"), "{e}");
        let bad = |text: &str| {
            parse_file(text).and_then(|f| Config::build(f, &Overrides::default())).unwrap_err().0
        };
        assert!(bad("[server]\nudp = [\"nope\"]").contains("not an IP:port"));
        assert!(bad("[aggregate]\nflush_interval = \"5 parsecs\"").contains("unknown unit"));
        assert!(bad("[aggregate]\npercentiles = [0]").contains("percentiles"));
        assert!(bad("[aggregate]\nhistograms = [{ metric = \"a\", bins = [\"x\"] }]").contains("bins"));
        assert!(bad("[sinks.console]\nformat = \"xml\"").contains("json, text or off"));
    }

    #[test]
    fn overrides_beat_the_file_and_delete_idle_sets_each_type() {
        let file = parse_file(
            "[aggregate]\nflush_interval = \"10s\"\ndelete_idle_stats = true\ndelete_gauges = false",
        )
        .unwrap();
        let ov = Overrides {
            aggregate: AggregateSection {
                flush_interval: Some("250ms".parse().unwrap()),
                percentiles: Some(vec![90.0, 99.9, -10.0]),
                histograms: Some("[{ metric = \"db\", bins = [0.01, \"inf\"] }]".parse().unwrap()),
                ..AggregateSection::default()
            },
            server: ServerSection {
                udp: Some(vec!["127.0.0.1:1,127.0.0.1:2".into()]),
                ..ServerSection::default()
            },
            console: ConsoleSection { format: Some("off".into()) },
            ..Overrides::default()
        };
        let c = Config::build(file, &ov).unwrap();
        assert_eq!(c.aggregate.flush_interval, Duration::from_millis(250));
        assert_eq!(c.aggregate.percentiles.len(), 3);
        assert_eq!(c.server.udp.len(), 2);
        assert_eq!(c.aggregate.histograms[0].names, vec!["bin_0_01", "bin_inf"]);
        assert!(c.aggregate.delete_counters && c.aggregate.delete_timers && c.aggregate.delete_sets);
        assert!(!c.aggregate.delete_gauges);
        assert_eq!(c.console, None);
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::defaults();
        let again = Config::build(parse_file(&c.to_toml()).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn inputs_admin_and_hook_keys() {
        let build = |text: &str, ov: &Overrides| Config::build(parse_file(text).unwrap(), ov);
        let text = "[server]\ntcp = [\"127.0.0.1:8125\"]\nunix_dgram = [\"/run/k/dsd.sock\"]\n\
                    unix_stream = [\"/run/k/s.sock\"]\nunix_mode = \"0620\"\njson_udp = [\"127.0.0.1:5090\"]\n\
                    admin = \"8126\"\nadmin_allow_mutations = false\nmax_line_bytes = \"1KiB\"\n\
                    max_tcp_connections = 10\ntcp_idle_timeout = \"0\"\ndebug_dump = \"^api\\\\.\"\n\
                    [sinks]\non_failure = [\"send_nsca\", \"-H\", \"nagios\"]\non_failure_timeout = \"2s\"\n";
        let c = build(text, &Overrides::default()).unwrap();
        let s = &c.server;
        assert_eq!(s.admin, Some("127.0.0.1:8126".parse().unwrap()), "a bare port binds loopback");
        assert_eq!((s.unix_mode, s.max_line_bytes, s.max_tcp_connections), (0o620, 1024, 10));
        assert_eq!(s.tcp_idle_timeout, None, "0 never times out");
        assert_eq!(s.debug_dump.as_deref(), Some("^api\\."));
        let hook = c.on_failure.clone().unwrap();
        assert_eq!((hook.command.len(), hook.timeout), (3, Duration::from_secs(2)));
        // every key survives the effective config's round trip
        assert_eq!(build(&c.to_toml(), &Overrides::default()).unwrap(), c);
        let ov = Overrides {
            server: ServerSection { admin: Some("off".into()), ..ServerSection::default() },
            hook: HookSection {
                on_failure: Some("[\"/bin/notify\", \"x y\"]".parse().unwrap()),
                ..HookSection::default()
            },
            ..Overrides::default()
        };
        let c = build(text, &ov).unwrap();
        assert_eq!(c.server.admin, None);
        assert_eq!(build(&c.to_toml(), &Overrides::default()).unwrap().server.admin, None, "off round-trips");
        assert_eq!(Config::defaults().server.admin, Some(DEFAULT_ADMIN), "on, on loopback, by default");
        assert_eq!(c.on_failure.unwrap().command, vec!["/bin/notify", "x y"]);
        let bad = |t: &str| build(t, &Overrides::default()).unwrap_err().0;
        assert!(bad("[server]\nunix_mode = \"999\"").contains("octal"));
        assert!(bad("[server]\nadmin = \"nope\"").contains("server.admin"));
        assert!(bad("[server]\ndebug_dump = \"(\"").contains("server.debug_dump"));
        assert!(bad("[server]\nmax_line_bytes = 1").contains("max_line_bytes"));
        assert!(bad("[sinks]\non_failure = [\"\"]").contains("on_failure"));
    }
}

/// `[sinks.kafka_rest]` through the whole composition (its flags, the console default).
#[cfg(test)]
mod kafka_rest_tests {
    use super::*;
    use crate::sink::console::ConsoleFormat;
    use crate::sink::kafka_rest::config::{KafkaContentType, KafkaFormat, RecordKey};
    use std::time::Duration;

    fn build(toml: &str, ov: KafkaRestSection) -> Result<Config, ConfigError> {
        Config::build(parse_file(toml)?, &Overrides { kafka_rest: ov, ..Overrides::default() })
    }

    const MIN: &str = "[sinks.kafka_rest]\nurl = \"http://127.0.0.1:8082\"\ntopic = \"metrics\"\n";

    #[test]
    fn defaults_and_the_console_default() {
        let c = build(MIN, KafkaRestSection::default()).unwrap();
        let k = c.kafka_rest.as_ref().unwrap();
        assert_eq!(k.url.base(), "http://127.0.0.1:8082");
        assert_eq!(
            (k.format, k.content_type, &k.key),
            (KafkaFormat::Flat, KafkaContentType::JsonV2, &RecordKey::Hostname)
        );
        assert_eq!((k.timeout, k.resend_timeout), (Duration::from_secs(5), Duration::from_secs(360)));
        // A default request fits Karapace's body limit: aiohttp refuses a body of 1 MiB or more.
        assert_eq!(
            (k.max_record_bytes, k.max_request_bytes, k.max_queue_bytes),
            (900 << 10, 1000 << 10, 64 << 20)
        );
        assert!(k.max_request_bytes < 1 << 20);
        assert_eq!(
            (k.retry_backoff, k.retry_backoff_max),
            (Duration::from_millis(100), Duration::from_secs(30))
        );
        assert_eq!(c.console, None, "the console is the default only when no other sink is configured");
        let c =
            build(&format!("{MIN}[sinks.console]\nformat = \"json\""), KafkaRestSection::default()).unwrap();
        assert_eq!(c.console, Some(ConsoleFormat::Json));
        assert_eq!(Config::defaults().kafka_rest, None);
    }

    #[test]
    fn flags_configure_it_alone_and_beat_the_file() {
        let ov = KafkaRestSection {
            url: Some(Secret("https://u:p@proxy:8082/".into())),
            topic: Some("t.1".into()),
            format: Some(KafkaFormat::Tagged),
            key: Some("none".into()),
            ..KafkaRestSection::default()
        };
        let k = build("", ov.clone()).unwrap().kafka_rest.unwrap();
        assert_eq!((k.url.base().as_str(), k.topic.as_str()), ("https://proxy:8082", "t.1"));
        assert_eq!((k.format, &k.key), (KafkaFormat::Tagged, &RecordKey::None));
        assert_eq!((k.username, k.password), (Some(Secret("u".into())), Some(Secret("p".into()))));
        let k = build(MIN, ov).unwrap().kafka_rest.unwrap();
        assert_eq!(k.topic, "t.1");
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        let bad = |extra: &str| build(&format!("{MIN}{extra}"), KafkaRestSection::default()).unwrap_err().0;
        assert!(bad("format = \"csv\"").contains("flat or tagged"));
        assert!(bad("content_type = \"application/json\"").contains("application/vnd.kafka.json.v2+json"));
        assert!(bad("key = \"\"").contains("none"));
        assert!(bad("max_record_bytes = 100").contains("between 1KiB"));
        assert!(bad("max_record_bytes = \"2MiB\"\nmax_request_bytes = \"2MiB\"")
            .contains("max_request_bytes must be"));
        assert!(bad("max_queue_bytes = \"960KiB\"").contains("at least max_request_bytes"));
        assert!(bad("retry_backoff = \"1s\"\nretry_backoff_max = \"10ms\"").contains("retry_backoff"));
        assert!(bad("password = \"x\"").contains("no username"));
        assert!(bad("timeout = \"0s\"").contains("timeout"));
        assert!(bad("timeout = \"10s\"\nresend_timeout = \"5s\"").contains("resend_timeout must be at least"));
        assert!(bad("colour = \"blue\"").contains("unknown field"));
        let e = build("[sinks.kafka_rest]\ntopic = \"metrics\"", KafkaRestSection::default()).unwrap_err();
        assert!(e.0.contains("url is required"), "{e}");
        let e =
            build("[sinks.kafka_rest]\nurl = \"http://h:1\"\ntopic = \"a b\"", KafkaRestSection::default());
        assert!(e.unwrap_err().0.contains("not a Kafka topic name"));
        let e = build("", KafkaRestSection { topic: Some("metrics".into()), ..KafkaRestSection::default() });
        assert!(e.unwrap_err().0.contains("--kafka-topic"));
        // A binary record is a third larger once base64-encoded: the default request grows.
        let c = build(
            &format!(
                "{MIN}content_type = \"application/vnd.kafka.binary.v2+json\"\nmax_record_bytes = \"4MiB\""
            ),
            KafkaRestSection::default(),
        );
        assert!(c.unwrap().kafka_rest.unwrap().max_request_bytes > (4 << 20) * 4 / 3);
    }

    #[test]
    fn the_effective_config_redacts_credentials_and_round_trips_the_rest() {
        let text = "[sinks.kafka_rest]\nurl = \"http://al%69ce:s3cret@127.0.0.1:8082/k\"\ntopic = \"metrics\"\n\
                    format = \"tagged\"\nkey = \"rack-7\"\ntimeout = \"1500ms\"\nmax_queue_bytes = \"8MiB\"\n";
        let c = build(text, KafkaRestSection::default()).unwrap();
        let shown = c.to_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice") && !shown.contains("al%69ce"),
            "{shown}"
        );
        assert!(shown.contains("url = \"http://127.0.0.1:8082/k\""), "{shown}");
        assert!(format!("{c:?}").find("s3cret").is_none());
        let mut again =
            build(&shown.replace("\"<redacted>\"", "\"x\""), KafkaRestSection::default()).unwrap();
        let k = again.kafka_rest.as_mut().unwrap();
        assert_eq!(k.username, Some(Secret("x".into())));
        k.username = Some(Secret("alice".into()));
        k.password = Some(Secret("s3cret".into()));
        assert_eq!(again, c);
    }
}
