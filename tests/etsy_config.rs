//! An etsy statsd `config.js` given to the real binary: statsd-kafka-backend's own example
//! (`tests/fixtures/etsy/statsd-kafka-backend/`) checked and run against the REST Proxy
//! emulator, POSTing where that backend did; `--check-config` printing TOML that reads back to
//! the same configuration; the one start-up warning about unused keys; code, unknown backends
//! and bad values refused with the key, line and column; `--config-format` beating the
//! extension. Needs nothing installed (etsy's own example is read in
//! `tests/etsy_config_differential.rs`). Runs on the test threads, the emulator's threads and
//! the daemon's log readers.

mod common;

use common::kafka_emulator::{Emulator, JSON_V1};
use common::Daemon;
use kstatsd::config::{parse_file, Config, Overrides};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kstatsd");
const T: Duration = Duration::from_secs(15);

/// Runs the binary; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("KSTATSD_CONFIG").env_remove("KSTATSD_CONFIG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A private directory under `target/tmp`.
fn tmp(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("etsy-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn kafka_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/etsy/statsd-kafka-backend/exampleConfig.js");
    std::fs::read_to_string(path).unwrap()
}

/// `--check-config` on `path` succeeds with no warning; returns the TOML it printed.
fn check_quietly(path: &str) -> String {
    let (code, out, err) = run(&["--check-config", "--config", path], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("WARN"), "no key goes unused: {err}");
    out
}

/// The printed TOML, written to a file and checked again, prints the same; and it builds the
/// same configuration as the config.js did.
fn reads_back(dir: &Path, js: &str, toml: &str) {
    let again = write(dir, "printed.toml", toml);
    let (code, out, err) = run(&["--check-config", "--config", &again], &[]);
    assert_eq!(code, Some(0), "{err}\n{toml}");
    assert_eq!(out, toml, "the printed TOML, read back, prints itself");
    let from_js = Config::load(Some(&PathBuf::from(js)), &Overrides::default()).unwrap();
    let from_toml = Config::build(parse_file(toml).unwrap(), &Overrides::default()).unwrap();
    assert_eq!(from_js, from_toml);
}

#[test]
fn the_kafka_backend_example_is_checked_as_that_backend_posted() {
    let dir = tmp("kafka-check");
    let js = write(&dir, "config.js", &kafka_example());
    let toml = check_quietly(&js);
    for line in [
        "[sinks.kafka_rest]\nurl = \"http://localhost:8082\"\ntopic = \"test-metrics\"\nformat = \"flat\"\n\
         content_type = \"application/vnd.kafka.json.v1+json\"\nkey = \"none\"\n",
        "[sinks.console]\nformat = \"off\"\n",
        "udp = [\"0.0.0.0:8125\"]\n",
        "admin = \"127.0.0.1:8126\"\n",
    ] {
        assert!(toml.contains(line), "{line}\nnot in:\n{toml}");
    }
    assert!(!toml.contains("[sinks.graphite]"), "{toml}");
    reads_back(&dir, &js, &toml);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_kafka_backend_example_runs_against_a_rest_proxy() {
    let emu = Emulator::start();
    emu.with(|s| s.topics = vec!["test-metrics".into()]);
    let dir = tmp("kafka-run");
    // The example, pointed at the emulator: the backend POSTed to restProxyUrl + "/" + kafkaTopic.
    let text = kafka_example().replace("http://localhost:8082", &emu.url());
    assert!(text.contains(&format!("\"{}/topics\"", emu.url())), "{text}");
    let js = write(&dir, "config.js", &text);
    let d = Daemon::start_raw(&["--udp", "127.0.0.1:0", "--flush-interval", "200ms", "--config", &js]);
    assert!(!d.startup_log.iter().any(|l| l.contains("WARN")), "{:?}", d.startup_log);
    d.send("etsyconf.hits:3|c\netsyconf.lat:5|ms\netsyconf.lat:7|ms\netsyconf.g:-2|g");
    let value = emu.wait_for(T, "a record with the counter", |s| {
        s.accepted.iter().find(|r| r.value.contains("stats_counts.etsyconf.hits")).map(|r| r.value.clone())
    });
    let v: serde_json::Value = serde_json::from_str(&value).unwrap();
    let g = &v["gauges"];
    assert_eq!(g["stats_counts.etsyconf.hits"], 3.0, "{value}");
    assert_eq!(g["stats.timers.etsyconf.lat.upper"], 7.0, "{value}");
    assert_eq!(g["stats.timers.etsyconf.lat.count"], 2.0, "{value}");
    assert_eq!(g["stats.gauges.etsyconf.g"], -2.0, "{value}");
    assert!(g.get("stats.etsyconf.hits").is_none(), "the backend sent no counter rates: {value}");
    assert_eq!((v["durationUnit"].as_str(), v["rateUnit"].as_str()), (Some("milliseconds"), Some("seconds")));
    let requests = emu.with(|s| s.requests.clone());
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/topics/test-metrics"));
        assert_eq!(r.content_type, JSON_V1);
        assert!(r.records.iter().all(|rec| rec.key.is_none()), "the backend sent no key");
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every key etsy documents that kstatsd maps, in etsy's own syntax.
const EVERY_MAPPED_KEY: &str = r#"/* every option kstatsd maps, in the forms etsy's documentation uses */
({
  servers: [
    { server: './servers/udp', address: '127.0.0.1', port: 8125 },
    { server: "./servers/udp", address: '::1', address_ipv6: true, port: 8127, },
    { server: './servers/tcp', address: '127.0.0.1', port: 8125 },
    { server: './servers/tcp', socket: '/tmp/kstatsd-etsy-config.sock', socket_mod: 0660 },
  ],
  mgmt_address: "127.0.0.1", mgmt_port: 8126,
  flushInterval: 2.5e3,                      // milliseconds
  percentThreshold: [ 90, 99.9, -10 ],
  histogram: [ { metric: 'render', bins: [ 0.01, 0.1, 1, 10, 'inf'] },
               { metric: '', bins: [ 50, 100, 150, 200, 'inf'] } ],
  deleteIdleStats: true, deleteCounters: false, deleteTimers: true, deleteSets: true,
  deleteGauges: true, gaugesMaxTTL: 3,
  prefixStats: 'kmeta', keyNameSanitize: true, dumpMessages: true,
  backends: [ './backends/graphite', './backends/console', './node_modules/statsd-kafka-backend/kafka-backend' ],
  graphiteHost: 'carbon.example', graphitePort: 2003, graphiteProtocol: 'pickle', graphitePicklePort: 2114,
  graphite: { legacyNamespace: false, globalPrefix: 'app', prefixCounter: 'c', prefixTimer: 't',
              prefixGauge: 'g', prefixSet: 's', globalSuffix: 'web1' },
  restProxyUrl: 'https://proxy.example:8082/topics', kafkaTopic: 'statsd-metrics',
  kafka: { legacyNamespace: false, globalPrefix: 'app', prefixCounter: 'c', prefixTimer: 't',
           prefixGauge: 'g', prefixSet: 's' },
  debug: false, flush_counts: true, automaticConfigReload: false, healthStatus: 'up',
});
"#;

#[test]
fn check_config_prints_toml_that_reads_back_to_the_same_configuration() {
    let dir = tmp("round-trip");
    // statsd-kafka-backend has no globalSuffix: with a suffix the two backends would disagree.
    let js = write(&dir, "config.js", &EVERY_MAPPED_KEY.replace(", globalSuffix: 'web1'", ""));
    let toml = check_quietly(&js);
    for line in [
        "udp = [\"127.0.0.1:8125\", \"[::1]:8127\"]\n",
        "tcp = [\"127.0.0.1:8125\"]\n",
        "unix_stream = [\"/tmp/kstatsd-etsy-config.sock\"]\n",
        "unix_mode = \"0660\"\n",
        "admin = \"127.0.0.1:8126\"\n",
        "debug_dump = \"\"\n",
        "flush_interval = \"2500ms\"\npercentiles = [90, 99.9, -10]\n",
        "[[aggregate.histograms]]\nmetric = \"render\"\nbins = [0.01, 0.1, 1, 10, \"inf\"]\n\n\
         [[aggregate.histograms]]\nmetric = \"\"\nbins = [50, 100, 150, 200, \"inf\"]\n",
        "legacy_namespace = false\nglobal_prefix = \"app\"\nprefix_counter = \"c\"\nprefix_timer = \"t\"\n\
         prefix_gauge = \"g\"\nprefix_set = \"s\"\nglobal_suffix = \"\"\nmeta_prefix = \"kmeta\"\n",
        "delete_counters = false\ndelete_timers = true\ndelete_sets = true\ndelete_gauges = true\n\
         gauges_max_ttl = 2\n",
        "sanitize_keys = true\n",
        "[sinks.console]\nformat = \"json\"\n",
        "[sinks.kafka_rest]\nurl = \"https://proxy.example:8082\"\ntopic = \"statsd-metrics\"\n",
        "[sinks.graphite]\naddress = \"carbon.example:2114\"\nprotocol = \"pickle\"\n",
    ] {
        assert!(toml.contains(line), "{line}\nnot in:\n{toml}");
    }
    reads_back(&dir, &js, &toml);
    // With graphite alone, its globalSuffix is kept.
    let graphite_only = EVERY_MAPPED_KEY.replace(", './node_modules/statsd-kafka-backend/kafka-backend'", "");
    let js = write(&dir, "graphite.js", &graphite_only);
    let (code, toml, err) = run(&["--check-config", "--config", &js], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(toml.contains("global_suffix = \"web1\"\n") && !toml.contains("[sinks.kafka_rest]"), "{toml}");
    let warned: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(warned[0].contains("kafka (unused: the kafka backend is not loaded)"), "{err}");
    assert!(warned[0].contains("restProxyUrl/kafkaTopic (unused"), "{err}");
    reads_back(&dir, &js, &toml);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unused_keys_are_listed_in_one_warning_at_start_up() {
    let dir = tmp("warning");
    let js = write(
        &dir,
        "config.js",
        "{ port: 8125, address: '127.0.0.1', backends: ['./backends/console'], title: 'statsd', debug: true,\n  \
         calculatedTimerMetrics: ['count'], keyFlush: { interval: 10000 }, someOtherBackendsKey: 1 }\n",
    );
    let d = Daemon::start_raw(&["--udp", "127.0.0.1:0", "--config", &js]);
    let warned: Vec<&String> = d.startup_log.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warned.len(), 1, "{:?}", d.startup_log);
    assert!(
        warned[0].starts_with("kstatsd[WARN]: config.js: 5 key(s) kstatsd does not use, ignored: "),
        "{}",
        warned[0]
    );
    for key in
        ["title", "debug (use --log debug)", "calculatedTimerMetrics", "keyFlush", "someOtherBackendsKey"]
    {
        assert!(warned[0].contains(key), "{key}: {}", warned[0]);
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn code_unknown_backends_and_bad_values_are_refused_with_key_line_and_column() {
    let dir = tmp("refused");
    for (text, says) in [
        (
            "{\n  port: process.env.STATSD_PORT\n}",
            "line 2, column 9: `port`: `process.env.STATSD_PORT` is code, not a value",
        ),
        (
            "{ graphite: {\n    globalSuffix: require('os').hostname().split('.')[0] } }",
            "line 2, column 19: `graphite.globalSuffix`: `require('os').hostname().split('.')[0]` is code",
        ),
        (
            "{ graphiteHost: 'carbon' + '.example' }",
            "line 1, column 17: `graphiteHost`: `'carbon' + '.example'` is code",
        ),
        (
            "{ backends: [ './backends/repeater' ] }",
            "line 1, column 15: `backends[0]`: `./backends/repeater` is not a backend kstatsd has",
        ),
        ("{ flushInterval: '10s' }", "line 1, column 18: `flushInterval`: expected a number, found a string"),
        ("{ port: 8125,, }", "line 1, column 14: expected a key, found `,`"),
        (
            "{ percentThreshold: [100.5] }",
            "(`percentThreshold` at line 1, column 21 gives aggregate.percentiles)",
        ),
    ] {
        let js = write(&dir, "config.js", text);
        let (code, out, err) = run(&["--check-config", "--config", &js], &[]);
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(out.is_empty(), "{out}");
        let want_start = format!("kstatsd: invalid configuration: {js}: ");
        assert!(err.starts_with(&want_start) && err.contains(says), "{text}\n got: {err}\nwant: {says}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_format_flag_beats_the_extension() {
    let dir = tmp("format");
    let conf = write(&dir, "statsd.conf", "{ port: 9125, address: '127.0.0.1', backends: [] }");
    let (code, _, err) = run(&["--check-config", "--config", &conf], &[]);
    assert_eq!(code, Some(2), "read as TOML by its extension: {err}");
    for (args, env) in [
        (vec!["--check-config", "--config-format", "etsy", "--config", &conf], vec![]),
        (vec!["--check-config", "--config", &conf], vec![("KSTATSD_CONFIG_FORMAT", "etsy")]),
    ] {
        let (code, out, err) = run(&args, &env);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("udp = [\"127.0.0.1:9125\"]\n"), "{out}");
    }
    let toml_js = write(&dir, "kstatsd.js", "[server]\nudp = [\"127.0.0.1:9126\"]\n");
    let (code, out, err) = run(&["--check-config", "--config-format", "toml", "--config", &toml_js], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("udp = [\"127.0.0.1:9126\"]\n"), "{out}");
    let (code, _, err) = run(&["--check-config", "--config-format", "yaml", "--config", &toml_js], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`yaml` is not etsy or toml"), "{err}");
    // Flags beat a config.js as they beat a TOML file.
    let (code, out, err) = run(
        &[
            "--check-config",
            "--config",
            &write(&dir, "c.js", "{ flushInterval: 1000 }"),
            "--flush-interval",
            "3s",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("flush_interval = \"3000ms\"\n"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reads_the_config_js_again() {
    let dir = tmp("reload");
    let file = |interval: u32| {
        format!("{{ port: 8125, address: '127.0.0.1', flushInterval: {interval}, backends: ['./backends/console'] }}")
    };
    let js = write(&dir, "config.js", &file(3_600_000));
    let d = Daemon::start_raw(&["--udp", "127.0.0.1:0", "--config", &js]);
    write(&dir, "config.js", &file(100));
    Command::new("kill").arg("-HUP").arg(d.child.id().to_string()).status().unwrap();
    // An hour-long interval flushes nothing; after the reload, 100 ms intervals do.
    d.send("reloaded.c:4|c");
    let f = d.flush_with("stats_counts.reloaded.c", T);
    assert_eq!(f["stats_counts.reloaded.c"], 4.0);
    let log = d.log_until(|l| l.contains("configuration reloaded"), T);
    assert!(log.iter().any(|l| l.contains("configuration reloaded")), "{log:?}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_recorded_vectors_etsy_config_gives_the_aggregate_its_replay_uses() {
    // A vector's `etsy_config` is what etsy statsd 0.9.0 ran when it was recorded; as JSON it is
    // also a config.js. Read as one, it must give the aggregation the vector replays check.
    let mut seen = 0;
    for entry in std::fs::read_dir(common::vectors::vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let vector: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let etsy = &vector["etsy_config"];
        let js = serde_json::to_string_pretty(etsy).unwrap();
        let from_js = kstatsd::config::etsy::load(&js, &Overrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}\n{js}", path.display()));
        let toml = common::vectors::toml_for(etsy);
        let from_toml = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(from_js.aggregate, from_toml.aggregate, "{}:\n{js}\n{toml}", path.display());
        seen += 1;
    }
    assert!(seen >= 9, "{seen} vectors");
}
