//! The `kstatsd` binary: command line, logging, start-up and shutdown. Runs on the main thread,
//! which becomes the ingest thread once everything is bound.

use clap::Parser;
use kstatsd::config::{
    BackstopOverrides, Config, ConfigFormat, GraphiteOverrides, KafkaRestOverrides, Overrides, Secret,
};
use kstatsd::{daemon, sys};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A StatsD-compatible metrics aggregation daemon. Every option can also be set in the TOML
/// file given with --config, and as an environment variable (shown in brackets); a flag beats
/// the environment, which beats the file.
#[derive(Parser, Debug)]
#[command(name = "kstatsd", version, about, max_term_width = 100)]
struct Cli {
    /// Configuration file: TOML, or an etsy statsd config.js (by its .js extension).
    #[arg(long, env = "KSTATSD_CONFIG")]
    config: Option<PathBuf>,
    /// The --config file's syntax, whatever its extension: etsy (a config.js) or toml.
    #[arg(long, env = "KSTATSD_CONFIG_FORMAT", value_parser = ConfigFormat::parse)]
    config_format: Option<ConfigFormat>,
    /// Validate the configuration, print the effective one, and exit (binds nothing).
    #[arg(long)]
    check_config: bool,
    /// Log level: error, warn, info, debug.
    #[arg(long, env = "KSTATSD_LOG", default_value = "info")]
    log: String,

    /// UDP listen address (repeatable or comma-separated) [server.udp; default 127.0.0.1:8125].
    #[arg(long, env = "KSTATSD_UDP", value_delimiter = ',')]
    udp: Option<Vec<String>>,
    /// Socket receive buffer requested, e.g. 8MiB [server.recv_buffer].
    #[arg(long, env = "KSTATSD_RECV_BUFFER")]
    recv_buffer: Option<String>,
    /// Datagrams per recvmmsg call [server.recv_batch; default 64].
    #[arg(long, env = "KSTATSD_RECV_BATCH")]
    recv_batch: Option<usize>,
    /// Largest datagram kept whole; longer ones are cut and counted [server.max_datagram; 64KiB].
    #[arg(long, env = "KSTATSD_MAX_DATAGRAM")]
    max_datagram: Option<String>,
    /// Spin this long without traffic before parking in epoll: a duration, "always" or "never"
    /// [server.busy_poll; default 2ms].
    #[arg(long, env = "KSTATSD_BUSY_POLL")]
    busy_poll: Option<String>,
    /// Pin the ingest thread to this core [server.pin_ingest_core].
    #[arg(long, env = "KSTATSD_PIN_INGEST_CORE")]
    pin_ingest_core: Option<usize>,
    /// Pin the flush thread to this core [server.pin_flush_core].
    #[arg(long, env = "KSTATSD_PIN_FLUSH_CORE")]
    pin_flush_core: Option<usize>,
    /// Bound on the final flush at SIGTERM/SIGINT [server.shutdown_timeout; default 5s].
    #[arg(long, env = "KSTATSD_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<String>,
    /// TCP listen address, newline-framed lines (repeatable or comma-separated) [server.tcp].
    #[arg(long, env = "KSTATSD_TCP", value_delimiter = ',')]
    tcp: Option<Vec<String>>,
    /// Unix datagram socket file, fed like UDP (repeatable or comma-separated) [server.unix_dgram].
    #[arg(long, env = "KSTATSD_UNIX_DGRAM", value_delimiter = ',')]
    unix_dgram: Option<Vec<String>>,
    /// Unix stream socket file, fed like TCP (repeatable or comma-separated) [server.unix_stream].
    #[arg(long, env = "KSTATSD_UNIX_STREAM", value_delimiter = ',')]
    unix_stream: Option<Vec<String>>,
    /// How TCP connections are framed: auto (told apart by their first four bytes), newline, or
    /// length_prefix (DogStatsD's 4-byte little-endian lengths) [server.tcp_framing; default auto].
    #[arg(long, env = "KSTATSD_TCP_FRAMING", value_name = "auto|newline|length_prefix")]
    tcp_framing: Option<String>,
    /// How Unix stream connections are framed, as --tcp-framing [server.unix_stream_framing;
    /// default auto].
    #[arg(long, env = "KSTATSD_UNIX_STREAM_FRAMING", value_name = "auto|newline|length_prefix")]
    unix_stream_framing: Option<String>,
    /// Permission bits of the Unix socket files, octal [server.unix_mode; default 0666].
    #[arg(long, env = "KSTATSD_UNIX_MODE")]
    unix_mode: Option<String>,
    /// UDP listen address for pystatsd JSON messages (repeatable or comma-separated)
    /// [server.json_udp].
    #[arg(long, env = "KSTATSD_JSON_UDP", value_delimiter = ',')]
    json_udp: Option<Vec<String>>,
    /// Management port: IP:port, a bare port (loopback), or off; --admin alone is
    /// 127.0.0.1:8126 [server.admin; default 127.0.0.1:8126].
    #[arg(long, env = "KSTATSD_ADMIN", num_args = 0..=1, default_missing_value = "127.0.0.1:8126")]
    admin: Option<String>,
    /// Accept the mutating admin commands (del*, health up|down) [server.admin_allow_mutations;
    /// default true].
    #[arg(long, env = "KSTATSD_ADMIN_ALLOW_MUTATIONS")]
    admin_allow_mutations: Option<bool>,
    /// Longest line on a TCP / Unix stream connection; longer ones are dropped and counted
    /// [server.max_line_bytes; default 8KiB].
    #[arg(long, env = "KSTATSD_MAX_LINE_BYTES")]
    max_line_bytes: Option<String>,
    /// Stream connections open at once; more are refused and counted
    /// [server.max_tcp_connections; default 1000].
    #[arg(long, env = "KSTATSD_MAX_TCP_CONNECTIONS")]
    max_tcp_connections: Option<usize>,
    /// Close a stream connection silent this long; 0 never [server.tcp_idle_timeout; default 5m].
    #[arg(long, env = "KSTATSD_TCP_IDLE_TIMEOUT")]
    tcp_idle_timeout: Option<String>,
    /// Print every incoming metric whose name matches REGEX (all without one) to stderr
    /// [server.debug_dump].
    #[arg(short = 'd', long, env = "KSTATSD_DEBUG_DUMP", num_args = 0..=1, default_missing_value = "", value_name = "REGEX")]
    debug_dump: Option<String>,

    /// Flush interval, e.g. 10s or 500ms [aggregate.flush_interval; default 10s].
    #[arg(long, env = "KSTATSD_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// Timer percentiles, e.g. 90,99.9,-10 [aggregate.percentiles; default 90].
    #[arg(long, env = "KSTATSD_PERCENTILES", value_delimiter = ',', allow_negative_numbers = true)]
    percentiles: Option<Vec<f64>>,
    /// Histogram rules as TOML, e.g. '[{ metric = "api.", bins = [10, 100, "inf"] }]'
    /// [aggregate.histograms].
    #[arg(long, env = "KSTATSD_HISTOGRAMS")]
    histograms: Option<String>,
    /// etsy's legacy namespace (stats.k, stats_counts.k) [aggregate.legacy_namespace; true].
    #[arg(long, env = "KSTATSD_LEGACY_NAMESPACE")]
    legacy_namespace: Option<bool>,
    /// Non-legacy global prefix [aggregate.global_prefix; default "stats"].
    #[arg(long, env = "KSTATSD_GLOBAL_PREFIX")]
    global_prefix: Option<String>,
    /// Non-legacy counter prefix [aggregate.prefix_counter; default "counters"].
    #[arg(long, env = "KSTATSD_PREFIX_COUNTER", visible_alias = "counters-prefix")]
    prefix_counter: Option<String>,
    /// Non-legacy timer prefix [aggregate.prefix_timer; default "timers"].
    #[arg(long, env = "KSTATSD_PREFIX_TIMER", visible_alias = "timers-prefix")]
    prefix_timer: Option<String>,
    /// Non-legacy gauge prefix [aggregate.prefix_gauge; default "gauges"].
    #[arg(long, env = "KSTATSD_PREFIX_GAUGE", visible_alias = "gauge-prefix")]
    prefix_gauge: Option<String>,
    /// Non-legacy set prefix [aggregate.prefix_set; default "sets"].
    #[arg(long, env = "KSTATSD_PREFIX_SET", visible_alias = "sets-prefix")]
    prefix_set: Option<String>,
    /// Suffix appended to every name [aggregate.global_suffix; default none].
    #[arg(long, env = "KSTATSD_GLOBAL_SUFFIX")]
    global_suffix: Option<String>,
    /// Prefix of kstatsd's own meta stats [aggregate.meta_prefix; default "statsd"].
    #[arg(long, env = "KSTATSD_META_PREFIX", visible_alias = "metadata-prefix")]
    meta_prefix: Option<String>,
    /// Stop reporting keys that saw no data in an interval [aggregate.delete_idle_stats; false].
    #[arg(long, env = "KSTATSD_DELETE_IDLE_STATS", num_args = 0..=1, default_missing_value = "true")]
    delete_idle_stats: Option<bool>,
    /// Per type: delete idle counters [aggregate.delete_counters; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_COUNTERS")]
    delete_counters: Option<bool>,
    /// Per type: delete idle timers [aggregate.delete_timers; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_TIMERS")]
    delete_timers: Option<bool>,
    /// Per type: delete idle sets [aggregate.delete_sets; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_SETS")]
    delete_sets: Option<bool>,
    /// Per type: delete idle gauges [aggregate.delete_gauges; = delete_idle_stats].
    #[arg(long, env = "KSTATSD_DELETE_GAUGES")]
    delete_gauges: Option<bool>,
    /// Delete a gauge after this many idle intervals [aggregate.gauges_max_ttl].
    #[arg(long, env = "KSTATSD_GAUGES_MAX_TTL")]
    gauges_max_ttl: Option<u32>,
    /// Also put counter rates (stats.k) in the JSON output [aggregate.counter_rates; false].
    #[arg(long, env = "KSTATSD_COUNTER_RATES", num_args = 0..=1, default_missing_value = "true")]
    counter_rates: Option<bool>,
    /// etsy's key sanitizing [aggregate.sanitize_keys; default true].
    #[arg(long, env = "KSTATSD_SANITIZE_KEYS")]
    sanitize_keys: Option<bool>,
    /// Read InfluxDB `name,k=v`, librato `name#k=v` and SignalFx `name[k=v]` tags written into
    /// names as tags [aggregate.name_tags; default true].
    #[arg(long, env = "KSTATSD_NAME_TAGS")]
    name_tags: Option<bool>,
    /// Longest metric name accepted, bytes [aggregate.max_name_bytes; default 1024].
    #[arg(long, env = "KSTATSD_MAX_NAME_BYTES")]
    max_name_bytes: Option<usize>,
    /// Most tags on one line [aggregate.max_tags; default 64].
    #[arg(long, env = "KSTATSD_MAX_TAGS")]
    max_tags: Option<usize>,
    /// Most distinct series per interval [aggregate.max_series; default 1000000].
    #[arg(long, env = "KSTATSD_MAX_SERIES")]
    max_series: Option<usize>,
    /// Most distinct set members per interval, all sets together [aggregate.max_set_members].
    #[arg(long, env = "KSTATSD_MAX_SET_MEMBERS")]
    max_set_members: Option<usize>,
    /// Most timer values and pending gauge deltas held per interval, all series together; past
    /// it timers are sketched, nothing is dropped [aggregate.max_samples; default 10000000].
    #[arg(long, env = "KSTATSD_MAX_SAMPLES")]
    max_samples: Option<usize>,

    /// Command run when a sink's flush fails, as a TOML array (no shell), e.g.
    /// '["/usr/local/bin/notify", "--urgent"]'; it gets KSTATSD_SINK and KSTATSD_ERROR
    /// [sinks.on_failure].
    #[arg(long, env = "KSTATSD_ON_FAILURE")]
    on_failure: Option<String>,
    /// The failure hook is killed after this long [sinks.on_failure_timeout; default 10s].
    #[arg(long, env = "KSTATSD_ON_FAILURE_TIMEOUT")]
    on_failure_timeout: Option<String>,

    /// Console sink: json, text or off [sinks.console.format; default json].
    #[arg(long, env = "KSTATSD_CONSOLE")]
    console: Option<String>,

    /// Graphite sink: carbon's host; any --graphite-* flag turns the sink on
    /// [sinks.graphite.host; default 127.0.0.1].
    #[arg(long, env = "KSTATSD_GRAPHITE_HOST")]
    graphite_host: Option<String>,
    /// Carbon's port [sinks.graphite.port; default 2003 plaintext, 2004 pickle].
    #[arg(long, env = "KSTATSD_GRAPHITE_PORT")]
    graphite_port: Option<u16>,
    /// plaintext or pickle [sinks.graphite.protocol; default plaintext].
    #[arg(long, env = "KSTATSD_GRAPHITE_PROTOCOL")]
    graphite_protocol: Option<String>,
    /// Bound on connecting and on writing one flush [sinks.graphite.timeout; default 10s].
    #[arg(long, env = "KSTATSD_GRAPHITE_TIMEOUT")]
    graphite_timeout: Option<String>,
    /// Bound on unsent flushes; the oldest are dropped past it [sinks.graphite.max_queue_bytes;
    /// default 64MiB].
    #[arg(long, env = "KSTATSD_GRAPHITE_MAX_QUEUE_BYTES")]
    graphite_max_queue_bytes: Option<String>,
    /// First retry delay [sinks.graphite.retry_backoff; default 100ms].
    #[arg(long, env = "KSTATSD_GRAPHITE_RETRY_BACKOFF")]
    graphite_retry_backoff: Option<String>,
    /// Longest retry delay [sinks.graphite.retry_backoff_max; default 10s].
    #[arg(long, env = "KSTATSD_GRAPHITE_RETRY_BACKOFF_MAX")]
    graphite_retry_backoff_max: Option<String>,

    /// Backstop sink: the publish URL, http(s)://[user:password@]host[:port]/publish/NAME; any
    /// --backstop-* flag turns the sink on [sinks.backstop.url].
    #[arg(long, env = "KSTATSD_BACKSTOP_URL", hide_env_values = true)]
    backstop_url: Option<String>,
    /// Bound on one POST [sinks.backstop.timeout; default 10s].
    #[arg(long, env = "KSTATSD_BACKSTOP_TIMEOUT")]
    backstop_timeout: Option<String>,
    /// Largest POST body; a larger flush is split [sinks.backstop.max_request_bytes; 1MiB].
    #[arg(long, env = "KSTATSD_BACKSTOP_MAX_REQUEST_BYTES")]
    backstop_max_request_bytes: Option<String>,
    /// Bound on unsent bodies; the oldest are dropped past it [sinks.backstop.max_queue_bytes;
    /// default 64MiB].
    #[arg(long, env = "KSTATSD_BACKSTOP_MAX_QUEUE_BYTES")]
    backstop_max_queue_bytes: Option<String>,
    /// First retry delay [sinks.backstop.retry_backoff; default 100ms].
    #[arg(long, env = "KSTATSD_BACKSTOP_RETRY_BACKOFF")]
    backstop_retry_backoff: Option<String>,
    /// Longest retry delay [sinks.backstop.retry_backoff_max; default 10s].
    #[arg(long, env = "KSTATSD_BACKSTOP_RETRY_BACKOFF_MAX")]
    backstop_retry_backoff_max: Option<String>,
    /// For an https URL: a PEM file of the only CAs to trust, instead of the built-in public roots
    /// [sinks.backstop.ca_file].
    #[arg(long, env = "KSTATSD_BACKSTOP_CA_FILE")]
    backstop_ca_file: Option<String>,

    /// Backstop publish URL, as docker-stats-to-backstop's --backstop (same as --backstop-url).
    #[arg(long, env = "SRV_BACKSTOP", hide_env_values = true)]
    backstop: Option<String>,

    /// Docker stats source: the Engine's URL, unix:///var/run/docker.sock or http://host:port;
    /// any of --docker, --poll, --rules, --prefix turns it on [docker.url].
    #[arg(long, env = "SRV_DOCKER")]
    docker: Option<String>,
    /// Docker poll period, Go duration syntax: 500ms, 60s, 5m, 1h30m [docker.poll; default 5m].
    #[arg(long, env = "SRV_POLL")]
    poll: Option<String>,
    /// Container renaming rules, JSON: '[{"regexp":"(.*)\\..*","into":"$1","category":"web"}]';
    /// first match wins [docker.rules].
    #[arg(long, env = "SRV_RULES")]
    rules: Option<String>,
    /// Container renaming for names no rule matched, JSON: '{"regexp":"…","into":"$1.$2"}'
    /// [docker.prefix].
    #[arg(long, env = "SRV_PREFIX")]
    prefix: Option<String>,

    /// Serve /metrics (Prometheus text format) and /healthz on this IP:port, or off [http.listen;
    /// default off].
    #[arg(long, env = "KSTATSD_HTTP")]
    http: Option<String>,

    /// Kafka REST Proxy sink: the proxy's URL, http(s)://[user:password@]host[:port][/prefix];
    /// turns the sink on [sinks.kafka_rest.url].
    #[arg(long = "kafka-rest", env = "KSTATSD_KAFKA_REST", hide_env_values = true)]
    kafka_rest: Option<String>,
    /// Topic to produce to, for every Kafka sink configured [sinks.kafka_rest.topic,
    /// sinks.kafka.topic; required].
    #[arg(long, env = "KSTATSD_KAFKA_TOPIC")]
    kafka_topic: Option<String>,
    /// flat (one record per flush) or tagged (one per series), for every Kafka sink configured
    /// [sinks.kafka_rest.format, sinks.kafka.format; flat].
    #[arg(long, env = "KSTATSD_KAFKA_FORMAT")]
    kafka_format: Option<String>,
    /// application/vnd.kafka.json.v2+json, …json.v1+json or …binary.v2+json
    /// [sinks.kafka_rest.content_type; default json.v2].
    #[arg(long, env = "KSTATSD_KAFKA_CONTENT_TYPE")]
    kafka_content_type: Option<String>,
    /// Record key: hostname, none, or a fixed string, for every Kafka sink configured
    /// [sinks.kafka_rest.key, sinks.kafka.key; default hostname].
    #[arg(long, env = "KSTATSD_KAFKA_KEY")]
    kafka_key: Option<String>,
    /// Basic auth user name; the SASL user name of the native sink [sinks.kafka_rest.username,
    /// sinks.kafka.username].
    #[arg(long, env = "KSTATSD_KAFKA_USERNAME", hide_env_values = true)]
    kafka_username: Option<String>,
    /// Basic auth password; the SASL password of the native sink; prefer the variable to the flag
    /// [sinks.kafka_rest.password, sinks.kafka.password].
    #[arg(long, env = "KSTATSD_KAFKA_PASSWORD", hide_env_values = true)]
    kafka_password: Option<String>,
    /// Bound on one request; for the native sink, on one record's delivery
    /// [sinks.kafka_rest.timeout; default 5s; sinks.kafka.timeout; default 30s].
    #[arg(long, env = "KSTATSD_KAFKA_TIMEOUT")]
    kafka_timeout: Option<String>,
    /// Bound on each attempt after one timed out, until one is answered: longer than the
    /// proxy's producer gives a record [sinks.kafka_rest.resend_timeout; default 6m].
    #[arg(long, env = "KSTATSD_KAFKA_RESEND_TIMEOUT")]
    kafka_resend_timeout: Option<String>,
    /// Largest record value; larger flushes are split; for every Kafka sink configured
    /// [sinks.kafka_rest.max_record_bytes, sinks.kafka.max_record_bytes; 900KiB].
    #[arg(long, env = "KSTATSD_KAFKA_MAX_RECORD_BYTES")]
    kafka_max_record_bytes: Option<String>,
    /// Largest request body [sinks.kafka_rest.max_request_bytes; default 1000KiB].
    #[arg(long, env = "KSTATSD_KAFKA_MAX_REQUEST_BYTES")]
    kafka_max_request_bytes: Option<String>,
    /// Bound on unsent records, dropped past it; for every Kafka sink configured
    /// [sinks.kafka_rest.max_queue_bytes, sinks.kafka.max_queue_bytes; default 64MiB].
    #[arg(long, env = "KSTATSD_KAFKA_MAX_QUEUE_BYTES")]
    kafka_max_queue_bytes: Option<String>,
    /// First retry delay [sinks.kafka_rest.retry_backoff; default 100ms].
    #[arg(long, env = "KSTATSD_KAFKA_RETRY_BACKOFF")]
    kafka_retry_backoff: Option<String>,
    /// Longest retry delay [sinks.kafka_rest.retry_backoff_max; default 30s].
    #[arg(long, env = "KSTATSD_KAFKA_RETRY_BACKOFF_MAX")]
    kafka_retry_backoff_max: Option<String>,
    /// For an https URL (or the native sink with --kafka-tls): a PEM file of the only CAs to trust
    /// [sinks.kafka_rest.ca_file, sinks.kafka.ca_file].
    #[arg(long, env = "KSTATSD_KAFKA_CA_FILE")]
    kafka_ca_file: Option<String>,

    /// Native Kafka sink: bootstrap brokers, HOST:PORT (repeatable or comma-separated); turns the
    /// sink on [sinks.kafka.brokers]. The shared --kafka-topic, --kafka-format, --kafka-key,
    /// --kafka-timeout, --kafka-max-record-bytes, --kafka-max-queue-bytes, --kafka-username,
    /// --kafka-password and --kafka-ca-file apply to it too.
    #[arg(long, env = "KSTATSD_KAFKA_BROKERS", value_delimiter = ',')]
    kafka_brokers: Option<Vec<String>>,
    /// all (idempotent), 1 or 0 [sinks.kafka.acks; default all].
    #[arg(long, env = "KSTATSD_KAFKA_ACKS")]
    kafka_acks: Option<String>,
    /// none, gzip, snappy, lz4 or zstd [sinks.kafka.compression; default none].
    #[arg(long, env = "KSTATSD_KAFKA_COMPRESSION")]
    kafka_compression: Option<String>,
    /// SASL: plain, scram-sha-256 or scram-sha-512, with --kafka-username and --kafka-password
    /// [sinks.kafka.sasl_mechanism].
    #[arg(long, env = "KSTATSD_KAFKA_SASL_MECHANISM")]
    kafka_sasl_mechanism: Option<String>,
    /// TLS to the brokers (true/false) [sinks.kafka.tls; default false].
    #[arg(long, env = "KSTATSD_KAFKA_TLS")]
    kafka_tls: Option<bool>,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            udp: self.udp.clone(),
            recv_buffer: self.recv_buffer.clone(),
            recv_batch: self.recv_batch,
            max_datagram: self.max_datagram.clone(),
            busy_poll: self.busy_poll.clone(),
            pin_ingest_core: self.pin_ingest_core,
            pin_flush_core: self.pin_flush_core,
            shutdown_timeout: self.shutdown_timeout.clone(),
            flush_interval: self.flush_interval.clone(),
            percentiles: self.percentiles.clone(),
            histograms: self.histograms.clone(),
            legacy_namespace: self.legacy_namespace,
            global_prefix: self.global_prefix.clone(),
            prefix_counter: self.prefix_counter.clone(),
            prefix_timer: self.prefix_timer.clone(),
            prefix_gauge: self.prefix_gauge.clone(),
            prefix_set: self.prefix_set.clone(),
            global_suffix: self.global_suffix.clone(),
            meta_prefix: self.meta_prefix.clone(),
            delete_idle_stats: self.delete_idle_stats,
            delete_counters: self.delete_counters,
            delete_timers: self.delete_timers,
            delete_sets: self.delete_sets,
            delete_gauges: self.delete_gauges,
            gauges_max_ttl: self.gauges_max_ttl,
            counter_rates: self.counter_rates,
            sanitize_keys: self.sanitize_keys,
            name_tags: self.name_tags,
            max_name_bytes: self.max_name_bytes,
            max_tags: self.max_tags,
            max_series: self.max_series,
            max_set_members: self.max_set_members,
            max_samples: self.max_samples,
            tcp: self.tcp.clone(),
            unix_dgram: self.unix_dgram.clone(),
            unix_stream: self.unix_stream.clone(),
            tcp_framing: self.tcp_framing.clone(),
            unix_stream_framing: self.unix_stream_framing.clone(),
            unix_mode: self.unix_mode.clone(),
            json_udp: self.json_udp.clone(),
            admin: self.admin.clone(),
            admin_allow_mutations: self.admin_allow_mutations,
            max_line_bytes: self.max_line_bytes.clone(),
            max_tcp_connections: self.max_tcp_connections,
            tcp_idle_timeout: self.tcp_idle_timeout.clone(),
            debug_dump: self.debug_dump.clone(),
            on_failure: self.on_failure.clone(),
            on_failure_timeout: self.on_failure_timeout.clone(),
            console: self.console.clone(),
            graphite: GraphiteOverrides {
                host: self.graphite_host.clone(),
                port: self.graphite_port,
                protocol: self.graphite_protocol.clone(),
                timeout: self.graphite_timeout.clone(),
                max_queue_bytes: self.graphite_max_queue_bytes.clone(),
                retry_backoff: self.graphite_retry_backoff.clone(),
                retry_backoff_max: self.graphite_retry_backoff_max.clone(),
            },
            backstop: BackstopOverrides {
                url: self.backstop_url.clone().or_else(|| self.backstop.clone()).map(Secret),
                timeout: self.backstop_timeout.clone(),
                max_request_bytes: self.backstop_max_request_bytes.clone(),
                max_queue_bytes: self.backstop_max_queue_bytes.clone(),
                retry_backoff: self.backstop_retry_backoff.clone(),
                retry_backoff_max: self.backstop_retry_backoff_max.clone(),
                ca_file: self.backstop_ca_file.clone(),
            },
            docker: kstatsd::source::docker::DockerOverrides {
                url: self.docker.clone(),
                poll: self.poll.clone(),
                rules: self.rules.clone(),
                prefix: self.prefix.clone(),
            },
            http: kstatsd::admin::HttpOverrides { listen: self.http.clone() },
            kafka_rest: KafkaRestOverrides {
                url: self.kafka_rest.clone().map(Secret),
                topic: self.kafka_topic.clone(),
                format: self.kafka_format.clone(),
                content_type: self.kafka_content_type.clone(),
                key: self.kafka_key.clone(),
                username: self.kafka_username.clone().map(Secret),
                password: self.kafka_password.clone().map(Secret),
                timeout: self.kafka_timeout.clone(),
                resend_timeout: self.kafka_resend_timeout.clone(),
                max_record_bytes: self.kafka_max_record_bytes.clone(),
                max_request_bytes: self.kafka_max_request_bytes.clone(),
                max_queue_bytes: self.kafka_max_queue_bytes.clone(),
                retry_backoff: self.kafka_retry_backoff.clone(),
                retry_backoff_max: self.kafka_retry_backoff_max.clone(),
                ca_file: self.kafka_ca_file.clone(),
            },
            config_format: self.config_format,
            kafka: kstatsd::sink::kafka::KafkaOverrides {
                brokers: self.kafka_brokers.clone(),
                acks: self.kafka_acks.clone(),
                compression: self.kafka_compression.clone(),
                sasl_mechanism: self.kafka_sasl_mechanism.clone(),
                tls: self.kafka_tls,
            },
        }
    }
}

/// One line per event on stderr: `kstatsd[LEVEL]: message`.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            // Not `eprintln!`: it panics when stderr is gone (a log collector that died), and a
            // log line must never take the daemon down (`tests/faults.rs`).
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "kstatsd[{}]: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log.parse().unwrap_or(log::LevelFilter::Info);
    let _ = log::set_boxed_logger(Box::new(StderrLogger(level))).map(|()| log::set_max_level(level));

    let config = match Config::load(cli.config.as_ref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kstatsd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    match run(config, cli.config.clone(), cli.overrides()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config, path: Option<PathBuf>, overrides: Overrides) -> std::io::Result<()> {
    match sys::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            log::info!("open files limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
    let sinks = kstatsd::sink::start_all(&config.sink_sections())?;
    let mut d = daemon::build(&config, sinks)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&d.stop))?;
        signal_hook::low_level::pipe::register(sig, d.wake.try_clone()?)?;
    }
    // SIGHUP reloads the file (its default action would end the process).
    let reload = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, d.wake.try_clone()?)?;
    d.server.enable_reload(kstatsd::server::reload::Reloader::new(path, overrides, reload));
    if let Some(core) = config.server.pin_ingest_core {
        sys::pin_current_thread(core, "ingest");
    }
    log::info!("ready");
    d.server.run()
}
