//! What real clients send, read the way they mean it, through the real binary over real
//! sockets: set members holding `:` (IPv6 addresses, MACs, `ns:id` ids), tags that would break
//! the Graphite tag list, and tags written into names (InfluxDB, librato, SignalFx), down to the
//! flushed names and values, the bad-line reasons of the malformed forms, and the tags object of
//! the Kafka `tagged` record. Each test runs its own daemon on ephemeral ports (the test threads
//! send; the daemon's console output is read back by the harness in `common`).

mod common;

use common::kafka_emulator::Emulator;
use common::{Daemon, Flush};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The value of `name` in `f`, with a message naming what was flushed instead.
fn get(f: &Flush, name: &str) -> f64 {
    *f.get(name).unwrap_or_else(|| {
        let near: Vec<&String> = f.keys().filter(|k| !k.contains("statsd.")).collect();
        panic!("{name} not flushed; flushed: {near:?}")
    })
}

/// The bad lines counted under `reason` in `f` (0 when the reason was never counted).
fn bad(f: &Flush, reason: &str) -> f64 {
    f.get(&format!("stats_counts.statsd.bad_lines.{reason}")).copied().unwrap_or(0.0)
}

#[test]
fn set_members_are_never_split_over_udp_and_tcp() {
    let d = Daemon::start(&["--tcp", "127.0.0.1:0", "--flush-interval", "300ms"]);
    let lines = "ips:2001:db8::1|s\nips:2001:db8::2|s\nips:::1|s\nips:2001:db8::1|s\n\
                 mac:aa:bb:cc|s\nmac:aa:bb:cc|s\nmac:aa:bb:dd|s\n\
                 user:user:42|s|#t:1\nuser:user:43|s|#t:1\nuser:user:42|s|#t:1\n\
                 multi:a:b|s:2|c\nfast:x:y|s\n";
    d.send(lines);
    let f = d.flush_with("stats.sets.ips.count", WAIT);
    assert_eq!(get(&f, "stats.sets.ips.count"), 3.0, "2001:db8::1, 2001:db8::2, ::1");
    assert_eq!(get(&f, "stats.sets.mac.count"), 2.0);
    assert_eq!(get(&f, "stats.sets.user.count;t=1"), 2.0);
    assert_eq!(get(&f, "stats.sets.multi.count"), 1.0);
    assert_eq!(get(&f, "stats_counts.multi"), 2.0, "the segment after a set still counts");
    assert_eq!(get(&f, "stats.sets.fast.count"), 1.0);
    assert_eq!(get(&f, "stats_counts.statsd.bad_lines_seen"), 0.0);

    // The same lines on a stream take the stream path and count the same.
    let addr = d.listening("tcp").first().expect("a tcp listener").clone();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(lines.replace("ips:", "tips:").as_bytes()).unwrap();
    let f = d.flush_with("stats.sets.tips.count", WAIT);
    assert_eq!(get(&f, "stats.sets.tips.count"), 3.0);
    assert_eq!(get(&f, "stats.sets.mac.count"), 2.0);
    assert_eq!(get(&f, "stats.sets.user.count;t=1"), 2.0);
    assert_eq!(get(&f, "stats_counts.statsd.bad_lines_seen"), 0.0);
}

#[test]
fn tags_never_break_the_graphite_tag_list() {
    let d = Daemon::start(&["--flush-interval", "300ms"]);
    d.send(
        "{\"metric_name\":\"j\",\"metric_type\":\"counter\",\"k;x\":\"a;b\",\"e=q\":\"v\",\"empty\":\"\"}\n\
         tags:1|c|#k:x;j=y\ntags:2|c|#j:y,k:x\nt1:1|c|#tag1:val;1\neq:1|c|#a=b:c,d:e=f\n\
         bare:1|c|#canary\nbare:2|c|#canary:\ntilde:1|c|#k:~v\nsemi:1|c|#a;b:c\n\
         nokey:1|c|#:v\nnokey:1|c|#$$:v\ngone:1|c|#$$,k:v\n",
    );
    let f = d.flush_with("stats_counts.tags;k=x_j=y", WAIT);
    assert_eq!(get(&f, "stats_counts.tags;k=x_j=y"), 1.0, "';' in a value is '_': no second tag");
    assert_eq!(get(&f, "stats_counts.tags;j=y;k=x"), 2.0, "and no collision with the real pair");
    assert_eq!(get(&f, "stats_counts.t1;tag1=val_1"), 1.0, "etsy 0.9.0's own example");
    assert_eq!(get(&f, "stats_counts.eq;a_b=c;d=e=f"), 1.0, "no '=' in a key; kept in a value");
    assert_eq!(get(&f, "stats_counts.bare;canary=true"), 3.0, "a tag without a value is 'true'");
    assert_eq!(get(&f, "stats_counts.tilde;k=v"), 1.0, "'~' is sanitized away");
    assert_eq!(get(&f, "stats_counts.semi;a_b=c"), 1.0);
    assert_eq!(get(&f, "stats_counts.gone;k=v"), 1.0, "a tag sanitized to nothing is dropped");
    assert_eq!(get(&f, "stats_counts.j;e_q=v;empty=true;k_x=a_b"), 1.0, "pystatsd JSON tags alike");
    assert_eq!(bad(&f, "empty_tag_key"), 2.0);
    assert_eq!(get(&f, "stats_counts.statsd.bad_lines_seen"), 2.0);
    assert!(!f.keys().any(|k| k.starts_with("stats_counts.nokey")));
    // Every flushed tag is one carbon's tag database accepts.
    for name in f.keys() {
        for tag in name.split(';').skip(1) {
            let (k, v) = tag.split_once('=').unwrap_or_else(|| panic!("{name}: a tag without '='"));
            assert!(!k.is_empty() && !k.contains(['!', '^', '=']), "{name}");
            assert!(!v.is_empty() && !v.starts_with('~'), "{name}");
        }
    }
}

#[test]
fn carbon_safe_tags_with_sanitizing_off() {
    let d = Daemon::start(&["--flush-interval", "300ms", "--sanitize-keys", "false"]);
    d.send("raw:1|c|#k!^:~v;w\nraw:1|c|#a b:c d\nraw:1|c|#flag\n");
    let f = d.flush_with("stats_counts.raw;k__=_v_w", WAIT);
    assert_eq!(get(&f, "stats_counts.raw;k__=_v_w"), 1.0);
    assert_eq!(get(&f, "stats_counts.raw;a b=c d"), 1.0, "unsanitized bytes are kept");
    assert_eq!(get(&f, "stats_counts.raw;flag=true"), 1.0);
}

#[test]
fn tags_written_into_names_are_tags() {
    let d = Daemon::start(&["--flush-interval", "300ms", "--max-tags", "3"]);
    // One datagram (no flush can split it); it starts with '{', so its JSON lines are messages.
    d.send(
        "{\"metric_name\":\"jn,env=prod\",\"metric_type\":\"counter\",\"value\":2}\n\
         {\"metric_name\":\"jm,env=prod\",\"metric_type\":\"counter\",\"az\":\"1\"}\n\
         influx.req,env=prod,az=1:1|c\ninflux.req,az=1,env=prod:10|c\nlibrato.req#env=prod,az=1:2|c\n\
         sfx[env=prod,az=1].req:3|c\ndog.req:4|c|#az:1,env:prod\nlat,env=prod:5|ms\nlat,env=prod:7|ms\n\
         users,env=prod:u:1|s\nflag,canary:1|c\nsan,k=a;b,u=h/p:1|c\nlevel#env=prod:-2|g\n\
         mix,env=prod:1|c|#az:1\nmix2,env=prod#az=1:1|c\nsfx2[env=prod:1|c\nsfx3[a=1].b,c=2:1|c\n\
         nk,=v:1|c\nmany,a=1,b=2,c=3,d=4:1|c\n",
    );
    let f = d.flush_with("stats_counts.influx.req;az=1;env=prod", WAIT);
    assert_eq!(get(&f, "stats_counts.influx.req;az=1;env=prod"), 11.0, "tag order does not split it");
    assert_eq!(get(&f, "stats_counts.librato.req;az=1;env=prod"), 2.0);
    assert_eq!(get(&f, "stats_counts.sfx.req;az=1;env=prod"), 3.0, "SignalFx: name[tags].rest");
    assert_eq!(get(&f, "stats_counts.dog.req;az=1;env=prod"), 4.0);
    assert_eq!(get(&f, "stats.timers.lat.count;env=prod"), 2.0);
    assert_eq!(get(&f, "stats.timers.lat.upper;env=prod"), 7.0);
    assert_eq!(get(&f, "stats.sets.users.count;env=prod"), 1.0);
    assert_eq!(get(&f, "stats_counts.flag;canary=true"), 1.0);
    assert_eq!(get(&f, "stats_counts.san;k=a_b;u=h-p"), 1.0, "sanitized like any tag");
    assert_eq!(get(&f, "stats.gauges.level;env=prod"), -2.0);
    assert_eq!(get(&f, "stats_counts.jn;env=prod"), 2.0, "a pystatsd name with name tags");
    assert_eq!(bad(&f, "mixed_tag_styles"), 4.0, "with |#, ',' then '#', ',' after ']', with JSON tags");
    assert_eq!(bad(&f, "bad_name_tags"), 1.0);
    assert_eq!(bad(&f, "empty_tag_key"), 1.0);
    assert_eq!(bad(&f, "too_many_tags"), 1.0, "max_tags counts name tags");
    assert_eq!(get(&f, "stats_counts.statsd.bad_lines_seen"), 7.0);
    let ours = |k: &&String| !k.contains("statsd.");
    assert!(!f.keys().filter(ours).any(|k| k.contains("mix") || k.contains("sfx2") || k.contains("many")));
}

#[test]
fn name_tags_off_keeps_etsys_reading() {
    let d = Daemon::start(&["--flush-interval", "300ms", "--name-tags", "false"]);
    d.send("foo,env=prod:1|c\nsfx[env=prod].req:2|c\nmix,env=prod:3|c|#az:1\nlib#a=1:4|c\n");
    let f = d.flush_with("stats_counts.fooenv=prod", WAIT);
    assert_eq!(get(&f, "stats_counts.fooenv=prod"), 1.0);
    assert_eq!(get(&f, "stats_counts.sfxenv=prod.req"), 2.0);
    assert_eq!(get(&f, "stats_counts.mixenv=prod;az=1"), 3.0);
    assert_eq!(get(&f, "stats_counts.liba=1"), 4.0);
    assert_eq!(get(&f, "stats_counts.statsd.bad_lines_seen"), 0.0);
}

/// The Kafka `tagged` record carries the same sanitized tags, name tags included, as a JSON
/// object.
#[test]
fn kafka_tagged_records_carry_name_tags_and_sanitized_tags() {
    let emu = Emulator::start();
    let dir = std::env::temp_dir().join(format!("kstatsd-client-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kafka.toml");
    std::fs::write(
        &config,
        format!(
            "[aggregate]\nflush_interval = \"200ms\"\n[sinks.kafka_rest]\nurl = \"{}\"\ntopic = \"metrics\"\n\
             format = \"tagged\"\n",
            emu.url()
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--config", config.to_str().unwrap()]);
    d.send("influx.req,env=prod,az=1:3|c\ntags:1|c|#k:x;j=y,canary\nsfx[host=h1].lat:5|ms\n");
    let records = emu.wait_for(WAIT, "the tagged records", |s| {
        let values: Vec<serde_json::Value> =
            s.accepted.iter().filter_map(|r| serde_json::from_str(&r.value).ok()).collect();
        let find = |n: &str| values.iter().find(|v| v["name"] == n).cloned();
        Some((find("influx.req")?, find("tags")?, find("sfx.lat")?))
    });
    let (influx, tags, sfx) = records;
    assert_eq!(influx["tags"], serde_json::json!({"az": "1", "env": "prod"}));
    assert_eq!(influx["values"]["count"], 3.0);
    assert_eq!(tags["tags"], serde_json::json!({"canary": "true", "k": "x_j=y"}));
    assert_eq!(sfx["tags"], serde_json::json!({"host": "h1"}));
    assert_eq!(sfx["type"], "timer");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
