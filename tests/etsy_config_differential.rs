//! One config.js, two daemons: etsy statsd 0.9.0 runs a config.js (listener, management port,
//! `flushInterval` with an exponent, percentiles, a histogram, idle deletion with `gaugesMaxTTL`,
//! `prefixStats`, the non-legacy namespace with every prefix and a suffix, comments, single
//! quotes, trailing commas, and a key kstatsd does not use), then the real `kstatsd` runs the
//! very same file on the same ports, and both get the same datagrams interval by interval.
//! Every name etsy's graphite backend flushes must come out of kstatsd with the same value
//! (rates within 5 %: kstatsd divides by the real elapsed time). kstatsd is also given
//! `--console json --counter-rates`, only to read its flushes on stdout: its console prints the
//! names its Graphite sink sends. The management port is the file's too. Also reads the `exampleConfig.js` that ships in the npm
//! `statsd@0.9.0` package.
//!
//! Etsy comes from `tests/common/etsy.rs` (installed by `.ci/etsy.sh`; missing, the test fails).
//! Each run's inputs and flushes are in `$CARGO_TARGET_TMPDIR/etsy_config_differential/`.
//! Runs on the test thread, the carbon emulator's thread and the daemons' log readers.
#![cfg(feature = "peers")]

mod common;

use common::etsy::{
    assert_same, drive, dump_run, etsy_dir, next_carbon_flush, Etsy, EtsyPorts, Rules, TempDir, FLUSH_TIMEOUT,
};
use common::{Daemon, Flush};
use kstatsd::config::{parse_file, Config, Overrides};
use std::process::Command;

/// The file both daemons run.
fn config_js(p: EtsyPorts) -> String {
    format!(
        r#"/* etsy statsd reads this with eval; kstatsd parses it */
{{
  port: {udp}, address: '127.0.0.1',
  mgmt_port: {mgmt}, mgmt_address: "127.0.0.1",
  flushInterval: 1e3,                     // one second
  percentThreshold: [ 90, 50 ],
  histogram: [ {{ metric: 'api', bins: [ 10, 100, 'inf' ] }}, ],
  deleteIdleStats: true,
  deleteCounters: false,                  // idle counters are still sent, as 0
  gaugesMaxTTL: 3,
  prefixStats: 'kmeta',
  backends: [ "./backends/graphite" ],
  graphiteHost: '127.0.0.1', graphitePort: {carbon},
  graphite: {{
    legacyNamespace: false, globalPrefix: 'app', prefixCounter: 'cnt', prefixTimer: 'tmr',
    prefixGauge: 'gge', prefixSet: 'st', globalSuffix: 'web1',
  }},
  title: 'etsy-config-differential',
  automaticConfigReload: false,
}}
"#,
        udp = p.udp,
        mgmt = p.mgmt,
        carbon = p.carbon
    )
}

/// Each interval's datagrams: gauges going idle across the TTL, timers and sets deleted when
/// idle, counters kept, rates, a histogram, sanitized names, two empty intervals.
fn corpus() -> Vec<Vec<Vec<u8>>> {
    let interval = |lines: &[&str]| lines.iter().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>();
    vec![
        interval(&[
            "c.hits:1|c",
            "c.hits:1|c\nc.hits:1|c",
            "c.rate:2|c|@0.5",
            "api.req:5|ms\napi.req:50|ms\napi.req:500|ms",
            "t.x:1|ms:2|ms:3.5|ms",
            "g.keep:5|g",
            "g.ttl:7|g",
            "s.u:a|s\ns.u:b|s\ns.u:a|s",
            "weird name/x:1|c",
            "bad.line:1",
        ]),
        interval(&["g.keep:+1.5|g", "c.hits:1|c", "t.x:3|ms"]),
        interval(&["c.hits:2|c"]),
        interval(&[]),
        interval(&["g.ttl:1|g", "s.u:z|s", "api.req:7|ms"]),
        interval(&[]),
    ]
}

/// The number after `key:` in the file.
fn config_port(path: &std::path::Path, key: &str) -> u16 {
    let text = std::fs::read_to_string(path).unwrap();
    let rest = text.split(&format!("{key}: ")).nth(1).unwrap();
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn timing_dependent(name: &str) -> bool {
    ["numStats", "processing_time", "timestamp_lag", "graphiteStats"].iter().any(|p| name.contains(p))
}

fn meta(name: &str) -> bool {
    name.starts_with("kmeta.") || name.contains(".kmeta.")
}

fn per_second(name: &str, _etsy: &Flush) -> bool {
    name.ends_with(".rate.web1") || name.contains(".count_ps")
}

#[test]
fn one_config_js_gives_etsys_names_and_numbers() {
    let corpus = corpus();
    let tmp = TempDir::new("etsy-config-differential");
    let mut etsy = Etsy::start(&tmp.0, config_js);
    etsy.wait_up();
    let (sock, addr, rx, log) =
        (etsy.sock.try_clone().unwrap(), etsy.udp, etsy.flushes.take().unwrap(), etsy.log.clone());
    let e_flushes = drive(
        &corpus,
        |dg| {
            sock.send_to(dg, addr).unwrap();
        },
        || next_carbon_flush(&rx, &log),
    );
    let config = etsy.config.clone();
    drop(etsy);

    // The same file: kstatsd binds the ports etsy just left.
    let d =
        Daemon::start_raw(&["--config", config.to_str().unwrap(), "--console", "json", "--counter-rates"]);
    assert_eq!(d.udp, addr, "`port` and `address` give the listener");
    let mgmt = format!("127.0.0.1:{}", config_port(&config, "mgmt_port"));
    assert_eq!(d.listening("admin"), vec![mgmt], "`mgmt_port` and `mgmt_address` give the management port");
    let warned: Vec<&String> = d.startup_log.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warned.len(), 1, "{:?}", d.startup_log);
    assert!(
        warned[0].contains("config.js: 1 key(s) kstatsd does not use, ignored: title ("),
        "{}",
        warned[0]
    );
    let k_flushes = drive(&corpus, |dg| d.send_bytes(dg), || d.next_flush(FLUSH_TIMEOUT));
    drop(d);

    let dump = dump_run("etsy_config_differential", &corpus, &e_flushes, &k_flushes);
    // The harness worked: etsy saw each interval's datagrams in that interval's flush.
    for (i, (e, sent)) in e_flushes.iter().zip(&corpus).enumerate() {
        let got = e.get("app.cnt.kmeta.packets_received.count.web1").copied();
        assert_eq!(got, Some(sent.len() as f64), "harness: interval {i}, see {}", dump.display());
    }
    // The idle rules did act (gaugesMaxTTL 3: an idle gauge is sent twice more, then forgotten).
    let has = |i: usize, name: &str| e_flushes[i].contains_key(name);
    assert!(has(2, "app.gge.g.ttl.web1") && !has(3, "app.gge.g.ttl.web1") && has(4, "app.gge.g.ttl.web1"));
    assert!(has(3, "app.gge.g.keep.web1") && !has(4, "app.gge.g.keep.web1"));
    assert!(!has(2, "app.tmr.t.x.count.web1") && has(3, "app.cnt.c.hits.count.web1"));
    assert_eq!(e_flushes[0].get("app.tmr.api.req.histogram.bin_100.web1"), Some(&1.0));
    let compared = assert_same(&e_flushes, &k_flushes, &Rules { timing_dependent, meta, per_second }, &dump);
    eprintln!("etsy config.js differential: {} intervals, {compared} names compared", e_flushes.len());
}

#[test]
fn etsys_own_example_config_js_is_read_as_is() {
    let example = etsy_dir().join("exampleConfig.js");
    let text = std::fs::read_to_string(&example).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    assert!(text.trim_start().starts_with("/*"), "the file opens with its long comment");
    let out = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--config"])
        .arg(&example)
        .env_remove("KSTATSD_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("WARN"), "every key of etsy's example is used: {stderr}");
    for line in [
        "udp = [\"0.0.0.0:8125\"]\n",
        "admin = \"127.0.0.1:8126\"\n",
        "[sinks.graphite]\naddress = \"graphite.example.com:2003\"\nprotocol = \"plaintext\"\n",
        "[sinks.console]\nformat = \"off\"\n",
    ] {
        assert!(stdout.contains(line), "{line}\nnot in:\n{stdout}");
    }
    let from_js = Config::load(Some(&example), &Overrides::default()).unwrap();
    let from_toml = Config::build(parse_file(&stdout).unwrap(), &Overrides::default()).unwrap();
    assert_eq!(from_js, from_toml, "the printed TOML is the same configuration");
    // Everything but the listeners, the console and the sink is kstatsd's default.
    assert_eq!(from_js.aggregate, Config::defaults().aggregate);
}
