//! The native Kafka sink (`[sinks.kafka]`) against a real Kafka-protocol broker (tansu, see
//! `tests/common/tansu.rs`), read back with confluent-kafka: every record the daemon printed on
//! its console arrives exactly once, in order, keyed by its host, through a frozen broker, a
//! broker down at start-up, one killed and restarted, a 100 k-series flush split into records,
//! three daemons sharing one topic, and SIGTERM. Each test runs real processes on loopback; the
//! test thread only sends, waits for events (console flushes, figures), and compares.
#![cfg(feature = "peers")]

mod common;

use common::tansu::{Record, Tansu};
use common::{parse_flush, Daemon, Flush};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

fn stat(f: &Flush, key: &str) -> f64 {
    f.get(&format!("stats.statsd.kafkaNativeStats.{key}")).copied().unwrap_or(0.0)
}

/// A daemon producing to `broker`, and every console flush it printed, in order.
struct Run {
    d: Option<Daemon>,
    flushes: Vec<Flush>,
}

impl Run {
    fn start(broker: &str, topic: &str, extra: &[&str]) -> Run {
        let mut args = vec!["--kafka-brokers", broker, "--kafka-topic", topic];
        args.extend_from_slice(extra);
        Run { d: Some(Daemon::start(&args)), flushes: Vec::new() }
    }

    fn d(&self) -> &Daemon {
        self.d.as_ref().unwrap()
    }

    fn send(&self, datagram: &str) {
        self.d().send(datagram);
    }

    /// Waits for the next flush and keeps it.
    fn next(&mut self) -> &Flush {
        let f = self.d().next_flush(T);
        self.flushes.push(f);
        self.flushes.last().unwrap()
    }

    /// Waits for flushes until one satisfies `pred`.
    fn until(&mut self, what: &str, pred: impl Fn(&Flush) -> bool) {
        for _ in 0..600 {
            if pred(self.next()) {
                return;
            }
        }
        panic!("no flush with {what}");
    }

    /// SIGTERM; the rest of the console flushes. Returns them all and the daemon's stderr.
    fn finish(mut self) -> (Vec<Flush>, Vec<String>) {
        let mut d = self.d.take().unwrap();
        let stderr = std::mem::replace(&mut d.stderr, std::sync::mpsc::channel().1);
        let (status, lines) = d.terminate_lines(T);
        assert!(status.success(), "{status}");
        self.flushes.extend(lines.iter().map(|l| parse_flush(l)));
        (self.flushes, stderr.iter().collect())
    }
}

/// The records of one key: all in one partition, in offset order.
fn of_key<'a>(records: &'a [Record], key: &str) -> Vec<&'a Record> {
    let mine: Vec<&Record> = records.iter().filter(|r| r.key.as_deref() == Some(key)).collect();
    if let Some(first) = mine.first() {
        assert!(mine.iter().all(|r| r.partition == first.partition), "{key}: records in several partitions");
        assert!(mine.windows(2).all(|w| w[0].offset < w[1].offset));
    }
    mine
}

fn sum(flushes: &[Flush], name: &str) -> f64 {
    flushes.iter().filter_map(|f| f.get(name)).sum()
}

/// Each record is one flush, in the order the daemon flushed them, none missing or twice.
fn assert_records_are_the_flushes(records: &[&Record], flushes: &[Flush]) {
    let values: Vec<Flush> = records.iter().map(|r| parse_flush(&r.value)).collect();
    if values.len() != flushes.len() {
        let names = |f: &Flush| f.get("stats.statsd.processing_time").copied();
        let r: Vec<_> = values.iter().map(names).collect();
        let c: Vec<_> = flushes.iter().map(names).collect();
        panic!(
            "{} records vs {} console flushes:\nrecords  {r:?}\nconsole {c:?}",
            values.len(),
            flushes.len()
        );
    }
    for (i, (v, f)) in values.iter().zip(flushes).enumerate() {
        assert_eq!(v, f, "record {i} is not flush {i}");
    }
}

#[test]
fn flat_records_are_the_console_flushes_byte_for_byte_keyed_by_the_host_every_increment_once() {
    let t = Tansu::start();
    let d =
        Daemon::start(&["--flush-interval", "300ms", "--kafka-brokers", &t.addr(), "--kafka-topic", "flat"]);
    for i in 0..200 {
        d.send("hits:1|c");
        if i % 50 == 0 {
            d.send(&format!("lat:{i}|ms|#env:prod\nq:{i}|g"));
        }
    }
    let (status, lines) = d.terminate_lines(T);
    assert!(status.success());
    let records = t.records("flat");
    let host = hostname();
    let mine = of_key(&records, &host);
    assert_eq!(mine.len(), records.len(), "every record keyed by the host name");
    let values: Vec<&str> = mine.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, lines, "the records are the console flushes, byte for byte, in order");
    let flushes: Vec<Flush> = lines.iter().map(|l| parse_flush(l)).collect();
    assert_eq!(sum(&flushes, "stats_counts.hits"), 200.0, "every increment once");
    assert_eq!(sum(&flushes, "stats.timers.lat.count;env=prod"), 4.0);
    // The clock in each record is the flush's, in seconds; Kafka's timestamp is when it was made.
    for r in &mine {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let clock = v["clock"].as_i64().unwrap();
        assert!((r.timestamp / 1000 - clock).abs() <= 5, "clock {clock} vs timestamp {}", r.timestamp);
    }
}

#[test]
fn tagged_records_are_one_per_series_with_tags_clock_and_the_host_key() {
    let t = Tansu::start();
    let mut run = Run::start(&t.addr(), "tagged", &["--flush-interval", "1s", "--kafka-format", "tagged"]);
    run.send("api.hits:3|c|#env:prod,az:b\napi.hits:4|c|#env:prod,az:b\nq:12|g\nusers:x|s\nusers:y|s");
    run.until("the series delivered", |f| stat(f, "records_sent") >= 4.0);
    let (flushes, _) = run.finish();
    let records = t.records("tagged");
    let mine = of_key(&records, &hostname());
    assert_eq!(mine.len(), records.len(), "every record keyed by the host name");
    let values: Vec<serde_json::Value> =
        mine.iter().map(|r| serde_json::from_str(&r.value).unwrap()).collect();
    let hits: Vec<&serde_json::Value> = values.iter().filter(|v| v["name"] == "api.hits").collect();
    let first = hits.first().expect("a record for api.hits");
    assert_eq!(first["type"], "counter");
    assert_eq!(first["tags"], serde_json::json!({"env": "prod", "az": "b"}));
    assert_eq!(first["values"]["count"], 7, "{first}");
    assert!(first["values"]["rate"].as_f64().unwrap() > 0.0, "{first}");
    let total: f64 = hits.iter().map(|v| v["values"]["count"].as_f64().unwrap()).sum();
    assert_eq!(total, 7.0, "every increment once");
    let q = values.iter().find(|v| v["name"] == "q").unwrap();
    assert_eq!((&q["type"], &q["values"]["value"]), (&serde_json::json!("gauge"), &serde_json::json!(12)));
    let users = values.iter().find(|v| v["name"] == "users").unwrap();
    assert_eq!(users["values"]["count"], 2);
    // One clock per flush, the flushes' own, in order.
    let mut clocks: Vec<i64> = values.iter().map(|v| v["clock"].as_i64().unwrap()).collect();
    assert!(clocks.windows(2).all(|w| w[0] <= w[1]), "clocks in order: {clocks:?}");
    clocks.dedup();
    assert_eq!(
        clocks.len(),
        flushes.len(),
        "one clock per flush (1s interval: each its own second): {clocks:?}"
    );
}

#[test]
fn a_frozen_broker_loses_nothing_duplicates_nothing_and_keeps_the_order() {
    let t = Tansu::start();
    let mut run =
        Run::start(&t.addr(), "frozen", &["--flush-interval", "200ms", "--shutdown-timeout", "30s"]);
    run.send("before:1|c");
    run.until("a first delivery", |f| stat(f, "records_sent") >= 1.0);
    t.freeze();
    let mut sent = 0;
    for _ in 0..6 {
        for _ in 0..25 {
            run.send("frozen.hits:1|c");
            sent += 1;
        }
        run.next();
    }
    let stalled = run.flushes.last().unwrap().clone();
    assert!(stat(&stalled, "queue_bytes") > 0.0, "records wait in librdkafka's queue while frozen");
    t.thaw();
    let want = run.flushes.len() as f64;
    run.until("every flush so far delivered", |f| stat(f, "records_sent") >= want);
    let (flushes, _) = run.finish();
    let records = t.records("frozen");
    let mine = of_key(&records, &hostname());
    assert_records_are_the_flushes(&mine, &flushes);
    assert_eq!(sum(&flushes, "stats_counts.frozen.hits"), sent as f64);
    assert_eq!(stat(flushes.last().unwrap(), "records_dropped"), 0.0);
}

#[test]
fn a_broker_down_at_start_up_gets_every_flush_once_it_is_up() {
    let port = common::ports::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut run = Run::start(&addr, "late", &["--flush-interval", "200ms", "--shutdown-timeout", "30s"]);
    for _ in 0..3 {
        run.send("late.hits:2|c");
        run.next();
    }
    assert_eq!(stat(run.flushes.last().unwrap(), "records_sent"), 0.0);
    let t = Tansu::on_port(port);
    let want = run.flushes.len() as f64;
    run.until("the queued flushes delivered", |f| stat(f, "records_sent") >= want);
    let (flushes, _) = run.finish();
    let records = t.records("late");
    assert_records_are_the_flushes(&of_key(&records, &hostname()), &flushes);
    assert_eq!(sum(&flushes, "stats_counts.late.hits"), 6.0);
}

/// The broker is killed (its memory storage goes with it) and started again on the same port:
/// what it had acknowledged is gone, and the producer carries on into the new broker, in order,
/// with nothing twice.
///
/// Not shown: that every record queued during the outage arrives. tansu 0.6.0 acknowledges the
/// records librdkafka produces to the restarted broker before a metadata request has created
/// the topic there again, and does not keep them (the test makes that request at once, but
/// librdkafka may be quicker); and with the idempotent producer (acks = all) it refuses every
/// batch of the old producer id with UNKNOWN_PRODUCER_ID, so this runs with acks = 1. See
/// docs/kafka.md.
#[test]
fn a_killed_and_restarted_broker_loses_what_it_held_and_the_producer_carries_on_in_order() {
    let mut t = Tansu::start();
    let args = ["--flush-interval", "200ms", "--shutdown-timeout", "30s", "--kafka-acks", "1"];
    let mut run = Run::start(&t.addr(), "restart", &args);
    run.send("gone:1|c");
    run.until("two deliveries", |f| stat(f, "records_sent") >= 2.0);
    let acknowledged = stat(run.flushes.last().unwrap(), "records_sent") as usize;
    t.kill();
    for _ in 0..3 {
        run.send("kept.hits:5|c");
        run.next();
    }
    t.restart();
    // librdkafka still knows the topic and produces at once; tansu needs a metadata request to
    // create it again.
    t.create_topic("restart");
    let want = run.flushes.len() as f64 + 5.0;
    run.until("more deliveries after the restart", |f| stat(f, "records_sent") >= want);
    let (flushes, log) = run.finish();
    let records = t.records("restart");
    let mine = of_key(&records, &hostname());
    assert!(!mine.is_empty(), "nothing reached the restarted broker: {log:?}");
    // The records are a run of the last flushes, none of those acknowledged before the kill.
    let from = flushes.len() - mine.len();
    assert!(from >= acknowledged, "records from flush {from}, {acknowledged} acknowledged before the kill");
    assert_records_are_the_flushes(&mine, &flushes[from..]);
    assert_eq!(stat(flushes.last().unwrap(), "records_dropped"), 0.0, "{log:?}");
}

/// The same with the idempotent producer (acks = all): tansu 0.6.0 forgets the producer ids it
/// handed out, answers UNKNOWN_PRODUCER_ID until the records time out, then fences the bumped
/// epoch. The sink then starts a new producer (a new id) and delivery resumes, in order, with
/// what was given up counted.
#[test]
fn a_killed_and_restarted_broker_with_the_idempotent_producer_gets_a_new_producer_and_delivery_resumes() {
    let mut t = Tansu::start();
    let args = ["--flush-interval", "200ms", "--shutdown-timeout", "30s", "--kafka-timeout", "1s"];
    let mut run = Run::start(&t.addr(), "restart-idempotent", &args);
    run.until("two deliveries", |f| stat(f, "records_sent") >= 2.0);
    let acknowledged = stat(run.flushes.last().unwrap(), "records_sent");
    t.kill();
    for _ in 0..3 {
        run.send("kept.hits:5|c");
        run.next();
    }
    t.restart();
    t.create_topic("restart-idempotent");
    run.until("deliveries again", |f| stat(f, "records_sent") >= acknowledged + 5.0);
    let (flushes, log) = run.finish();
    assert!(log.iter().any(|l| l.contains("a new one takes over")), "{log:?}");
    let records = t.records("restart-idempotent");
    let mine = of_key(&records, &hostname());
    // What arrives is a run of the last flushes, in order, each once.
    let from = flushes.len() - mine.len();
    assert!(from >= acknowledged as usize);
    assert_records_are_the_flushes(&mine, &flushes[from..]);
    let last = flushes.last().unwrap();
    assert!(stat(last, "records_dropped") > 0.0, "what the old producer held is counted: {log:?}");
}

#[test]
fn a_flush_of_100k_series_is_split_into_records_under_kafkas_message_max_bytes() {
    let t = Tansu::start();
    let mut run = Run::start(
        &t.addr(),
        "big",
        &["--flush-interval", "1s", "--tcp", "127.0.0.1:0", "--shutdown-timeout", "30s"],
    );
    let tcp = run.d().listening("tcp")[0].clone();
    let mut s = std::net::TcpStream::connect(&tcp).unwrap();
    let lines: String = (0..100_000).map(|i| format!("big.series.number.{i}:1|c\n")).collect();
    s.write_all(lines.as_bytes()).unwrap();
    drop(s);
    let received = |fl: &[Flush]| sum(fl, "stats_counts.statsd.metrics_received");
    while received(&run.flushes) < 100_000.0 {
        run.next();
    }
    // Counters seen once are flushed (as 0) in the next intervals too: that flush holds all.
    run.next();
    let want = run.flushes.len() as f64;
    run.until("everything delivered", |f| stat(f, "records_sent") >= want);
    let (flushes, _) = run.finish();
    let records = t.records("big");
    let mine = of_key(&records, &hostname());
    // Kafka's default message.max.bytes (what a real broker refuses above; tansu enforces none).
    assert!(mine.iter().all(|r| r.value.len() <= 900 << 10 && r.value.len() < 1_000_000));
    // Records of one flush share its clock (1 s interval: one second each): put back together.
    let mut by_clock: BTreeMap<i64, (usize, Flush)> = BTreeMap::new();
    for r in &mine {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let e = by_clock.entry(v["clock"].as_i64().unwrap()).or_default();
        e.0 += 1;
        for (k, x) in parse_flush(&r.value) {
            assert!(e.1.insert(k.clone(), x).is_none(), "{k} twice in one flush");
        }
    }
    let merged: Vec<Flush> = by_clock.values().map(|(_, f)| f.clone()).collect();
    assert_eq!(merged, flushes, "the records put back together are the console flushes");
    let parts = by_clock.values().map(|(n, _)| *n).max().unwrap();
    assert!(parts >= 3, "a 100k-series flush is several records: {parts}");
    let total: f64 = flushes
        .iter()
        .flat_map(|f| f.iter())
        .filter(|(k, _)| k.starts_with("stats_counts.big."))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 100_000.0, "every line once");
}

#[test]
fn three_daemons_with_their_own_keys_share_one_topic_in_order_and_the_sum_is_exact() {
    let t = Tansu::start();
    let hosts = ["host-a", "host-b", "host-c"];
    let mut runs: Vec<Run> = hosts
        .iter()
        .map(|h| {
            Run::start(
                &t.addr(),
                "fleet",
                &["--flush-interval", "300ms", "--kafka-key", h, "--shutdown-timeout", "30s"],
            )
        })
        .collect();
    for round in 0..4 {
        for (i, run) in runs.iter_mut().enumerate() {
            for _ in 0..(i + 1) * 10 {
                run.send("fleet.requests:1|c");
            }
            if round % 2 == 1 {
                run.next();
            }
        }
    }
    let mut all = 0.0;
    for (i, run) in runs.into_iter().enumerate() {
        let (flushes, _) = run.finish();
        let records = t.records("fleet");
        let mine = of_key(&records, hosts[i]);
        assert_records_are_the_flushes(&mine, &flushes);
        let n = sum(&flushes, "stats_counts.fleet.requests");
        assert_eq!(n, ((i + 1) * 40) as f64, "{}", hosts[i]);
        all += n;
    }
    let records = t.records("fleet");
    let total: f64 = records
        .iter()
        .map(|r| parse_flush(&r.value).get("stats_counts.fleet.requests").copied().unwrap_or(0.0))
        .sum();
    assert_eq!(total, all);
    assert_eq!(total, 240.0, "the sum over the hosts is exact");
}

#[test]
fn sigterm_delivers_what_was_aggregated() {
    let t = Tansu::start();
    let d =
        Daemon::start(&["--flush-interval", "1h", "--kafka-brokers", &t.addr(), "--kafka-topic", "final"]);
    // Nothing is flushed for an hour: the only flush is SIGTERM's.
    d.send("final.c:7|c");
    let (status, lines) = d.terminate_lines(T);
    assert!(status.success());
    let last = lines.last().expect("the final flush on the console");
    assert_eq!(parse_flush(last).get("stats_counts.final.c"), Some(&7.0), "{last}");
    let records = t.records("final");
    let values: Vec<&str> = records.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, [last.as_str()], "the final flush reached the broker before exit");
}

/// Records not acknowledged within `timeout` are dropped and counted. After a timeout the
/// idempotent producer bumps its epoch, which tansu 0.6.0 answers with PRODUCER_FENCED, a fatal
/// error: a new producer takes over (what the old one held is counted `fatal`), and records
/// are delivered again.
#[test]
fn a_frozen_broker_past_the_timeout_drops_the_records_counts_them_and_delivery_resumes() {
    let t = Tansu::start();
    let mut run =
        Run::start(&t.addr(), "late-acks", &["--flush-interval", "200ms", "--kafka-timeout", "500ms"]);
    run.until("a first delivery", |f| stat(f, "records_sent") >= 1.0);
    let before = stat(run.flushes.last().unwrap(), "records_sent");
    t.freeze();
    run.until("records dropped after the timeout", |f| stat(f, "records_dropped.timeout") >= 3.0);
    t.thaw();
    run.until("deliveries again after the thaw", |f| stat(f, "records_sent") >= before + 3.0);
    let (flushes, log) = run.finish();
    let last = flushes.last().unwrap();
    let drops: Vec<(&String, &f64)> =
        last.iter().filter(|(k, _)| k.contains("kafkaNativeStats.records_dropped")).collect();
    let (timeout, fatal) = (stat(last, "records_dropped.timeout"), stat(last, "records_dropped.fatal"));
    assert_eq!(stat(last, "records_dropped"), timeout + fatal, "{drops:?} {log:?}");
    assert!(stat(last, "last_exception") > 0.0);
    let lines: Vec<&String> = log.iter().filter(|l| l.contains("records_dropped.timeout")).collect();
    // One line per flush interval at most: far fewer lines than records dropped.
    assert!(!lines.is_empty() && (lines.len() as f64) < timeout, "{lines:?}");
}

#[test]
fn a_full_queue_refuses_new_records_and_counts_them() {
    let t = Tansu::start();
    let args = [
        "--flush-interval",
        "100ms",
        "--kafka-max-record-bytes",
        "4KiB",
        "--kafka-max-queue-bytes",
        "8KiB",
        "--shutdown-timeout",
        "30s",
    ];
    let mut run = Run::start(&t.addr(), "full", &args);
    run.until("a first delivery", |f| stat(f, "records_sent") >= 1.0);
    t.freeze();
    run.until("records refused", |f| stat(f, "records_dropped.queue_full") >= 3.0);
    let stalled = run.flushes.last().unwrap().clone();
    assert!(stat(&stalled, "queue_bytes") <= 8192.0, "the queue stays within max_queue_bytes");
    t.thaw();
    let (flushes, log) = run.finish();
    // What was queued is delivered, in order: the records are the flushes less those refused.
    let records = t.records("full");
    let mine = of_key(&records, &hostname());
    let values: Vec<Flush> = mine.iter().map(|r| parse_flush(&r.value)).collect();
    let mut at = 0;
    for v in &values {
        at += flushes[at..].iter().position(|f| f == v).expect("each record is a later flush") + 1;
    }
    // A flush's own figures cannot count its own record: the sink's figures at exit (logged after
    // the last flush) account for every flush.
    let at_exit = |key: &str| -> f64 {
        let head = format!("sink kafkaNative at exit: {key} = ");
        let found =
            log.iter().rev().find_map(|l| l.split_once(head.as_str()).map(|(_, v)| v.trim().to_string()));
        found.unwrap_or_else(|| panic!("no `{head}` line in {log:?}")).parse().unwrap()
    };
    assert!(at_exit("records_dropped.queue_full") >= 3.0);
    assert_eq!(
        values.len() as f64 + at_exit("records_dropped"),
        flushes.len() as f64,
        "sent or dropped, each once"
    );
}

#[test]
fn check_config_prints_the_section_with_credentials_redacted() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--kafka-brokers", "k1:9092,k2:9093", "--kafka-topic", "metrics"])
        .args([
            "--kafka-sasl-mechanism",
            "scram-sha-256",
            "--kafka-username",
            "alice",
            "--kafka-password",
            "s3cret",
        ])
        .args(["--kafka-compression", "zstd"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("[sinks.kafka]\nbrokers = [\"k1:9092\", \"k2:9093\"]\ntopic = \"metrics\"\n"),
        "{text}"
    );
    assert!(
        text.contains("compression = \"zstd\"") && text.contains("sasl_mechanism = \"scram-sha-256\""),
        "{text}"
    );
    assert!(
        text.contains("password = \"<redacted>\"") && !text.contains("s3cret") && !text.contains("alice"),
        "{text}"
    );
    assert!(
        !text.contains("[sinks.kafka_rest]"),
        "the shared flags alone do not turn the REST sink on: {text}"
    );
}
