//! Day-2 operations against the real binary: the debug dump (`-d REGEX`), the failure hook (a
//! script that records its environment; a hook that hangs is killed), and SIGHUP reload (a good
//! file is applied without losing a counter's count; a bad one is refused and the old
//! configuration kept).

mod common;

use common::Daemon;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Stderr lines until one contains `needle` (panics after `WAIT`); returns them all.
fn stderr_until(d: &Daemon, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            d.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("no {needle:?} on stderr; saw {seen:#?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kstatsd-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_debug_dump_prints_matching_metrics_as_they_arrive() {
    let d = Daemon::start(&["-d", r"^dump\.", "--flush-interval", "1h"]);
    d.send("dump.a:1|c|@0.5\nother.b:2|c\ndump.s:x|s|#env:prod\ndump.g:-3|g\ndump.t:1:2|ms");
    d.send(r#"{"metric_name": "dump.j", "metric_type": "timer", "value": 4.5, "host": "a"}"#);
    let seen = stderr_until(&d, "debug-dump: dump.j");
    let dumped: Vec<&str> = seen.iter().filter_map(|l| l.strip_prefix("debug-dump: ")).collect();
    assert_eq!(
        dumped,
        [
            "dump.a c 2 @0.5",
            "dump.s s x #env:prod",
            "dump.g g -3",
            "dump.t ms 1",
            "dump.t ms 2",
            "dump.j ms 4.5 #host:a"
        ]
    );

    // Without a regex every metric is dumped; an invalid regex is a configuration error.
    let all = Daemon::start(&["-d", "--flush-interval", "1h"]);
    all.send("any.thing:1|c");
    stderr_until(&all, "debug-dump: any.thing c 1");
    let out = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--debug-dump", "(unclosed"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.debug_dump"));
}

mod hook {
    use super::*;
    use kstatsd::config::{parse_file, Config, Overrides};
    use kstatsd::daemon;
    use kstatsd::flush::{Naming, Snapshot};
    use kstatsd::sink::{FlushReport, Sink, SinkError};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Fails every flush: by returning an error while `mode` is 0, else by reporting a newer
    /// `last_exception` in its meta figures, as a sink that delivers on its own thread does.
    struct Failing {
        mode: Arc<AtomicU64>,
        last_exception: u64,
    }

    impl Sink for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn flush(&mut self, _: &Snapshot, _: &Naming) -> Result<FlushReport, SinkError> {
            // Both kinds of failure at once must still run the hook once.
            self.last_exception += 1;
            if self.mode.load(Ordering::Relaxed) == 0 {
                return Err(SinkError::Other("boom: the backend said no".into()));
            }
            Ok(FlushReport::default())
        }
        fn meta(&self, write: &mut dyn FnMut(&'static str, f64)) {
            write("last_exception", self.last_exception as f64);
        }
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Waits until `path` has `n` lines.
    fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let l = lines(path);
            if l.len() >= n {
                return l;
            }
            assert!(Instant::now() < deadline, "the hook wrote {l:?}, expected {n} lines");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_failure_hook_gets_its_environment_never_piles_up_and_is_killed_when_it_hangs() {
        let dir = tmp_dir("hook");
        let (script, out) = (dir.join("hook.sh"), dir.join("calls"));
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf '%s|%s|%s|%s\\n' \"$KSTATSD_SINK\" \"$KSTATSD_ERROR\" \"$1\" \"$$\" >> \"$2\"\nexec sleep 30\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let toml = format!(
            "[server]\nudp = [\"127.0.0.1:0\"]\nadmin = \"off\"\n[aggregate]\nflush_interval = \"1h\"\n\
             [sinks]\non_failure = [{:?}, \"--urgent\", {:?}]\non_failure_timeout = \"300ms\"\n\
             [sinks.console]\nformat = \"off\"\n",
            script.display().to_string(),
            out.display().to_string()
        );
        let config = Config::build(parse_file(&toml).unwrap(), &Overrides::default()).unwrap();
        let mode = Arc::new(AtomicU64::new(0));
        let sink = Failing { mode: Arc::clone(&mode), last_exception: 0 };
        let mut d = daemon::build(&config, vec![Box::new(sink)]).unwrap();

        // A failing flush runs the hook once, with the sink and the error in its environment.
        assert!(d.server.flush_now());
        let first = wait_lines(&out, 1);
        let fields: Vec<&str> = first[0].split('|').collect();
        assert_eq!(fields[..3], ["failing", "boom: the backend said no", "--urgent"]);
        let started = Instant::now();
        // It hangs: the next failure does not start another one.
        assert!(d.server.flush_now());
        assert!(d.server.wait_for_spare(), "the flush thread is not held up by the hook");
        // It is killed after its timeout.
        let proc = std::path::PathBuf::from(format!("/proc/{}", fields[3]));
        while proc.exists() {
            assert!(started.elapsed() < WAIT, "the hanging hook was never killed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(started.elapsed() >= Duration::from_millis(250), "killed after {:?}", started.elapsed());
        assert_eq!(lines(&out).len(), 1, "the second failure did not start a run while one was going");
        // A failure the sink only reports in its figures runs it too (once the watcher has
        // marked the killed run finished, which follows the kill by microseconds: flush again
        // until it runs).
        mode.store(1, Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        while lines(&out).len() < 2 {
            assert!(Instant::now() < deadline, "the hook never ran again");
            assert!(d.server.flush_now());
            assert!(d.server.wait_for_spare());
        }
        let all = wait_lines(&out, 2);
        assert_eq!(all.len(), 2, "one run per failing flush: {all:?}");
        assert!(all[1].starts_with("failing|failing reported a delivery failure at "), "{}", all[1]);
        // Leave no process behind: this run is killed at its timeout too.
        let second = std::path::PathBuf::from(format!("/proc/{}", all[1].rsplit('|').next().unwrap()));
        while second.exists() {
            assert!(Instant::now() < deadline + WAIT, "the second run was never killed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn hup(d: &Daemon) {
    let ok = Command::new("kill").arg("-HUP").arg(d.child.id().to_string()).status().unwrap();
    assert!(ok.success());
}

#[test]
fn sighup_applies_a_good_file_without_losing_counts_and_refuses_a_bad_one() {
    let dir = tmp_dir("reload");
    let path = dir.join("kstatsd.toml");
    let base = "[server]\nudp = [\"127.0.0.1:0\"]\n[aggregate]\nflush_interval = \"1h\"\n";
    std::fs::write(&path, format!("{base}percentiles = [90]\n")).unwrap();
    let d = Daemon::start_raw(&["--config", path.to_str().unwrap()]);
    for _ in 0..3 {
        d.send("rl.c:1|c");
    }
    d.send("rl.t:10|ms");

    // A good file: other prefixes, another percentile, a name limit, and a TCP listener more.
    std::fs::write(
        &path,
        "[server]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n[aggregate]\nflush_interval = \"1h\"\n\
         percentiles = [99]\nmax_name_bytes = 10\nlegacy_namespace = false\nglobal_prefix = \"svc\"\n",
    )
    .unwrap();
    hup(&d);
    let seen = stderr_until(&d, "configuration reloaded");
    let tcp =
        seen.iter().find_map(|l| l.split("tcp listening on ").nth(1)).expect("the new listener").to_string();
    assert!(!seen.iter().any(|l| l.contains("udp listening on")), "the unchanged UDP socket is not rebound");
    // The same UDP socket still takes traffic; the new limit and the new listener apply.
    d.send("rl.c:1|c\nrl.c:1|c\nrl.t:20|ms\nthis.name.is.too.long:1|c");
    let mut c = std::net::TcpStream::connect(tcp).unwrap();
    std::io::Write::write_all(&mut c, b"rl.c:4|c\n").unwrap();
    drop(c);

    // A bad file: refused with its line, the running configuration kept.
    std::fs::write(&path, format!("{base}percentiles = [90\n")).unwrap();
    hup(&d);
    let seen = stderr_until(&d, "reload refused");
    let why = seen.last().unwrap();
    assert!(why.contains(&format!("{}: line ", path.display())), "{why}");
    d.send("rl.c:1|c");

    let (status, flushes) = d.terminate(WAIT);
    assert!(status.success());
    let f = flushes.last().expect("the final flush");
    assert_eq!(
        f["svc.counters.rl.c.count"], 10.0,
        "3 before the reload, 2 + 4 (TCP) after, 1 after the refused one"
    );
    assert_eq!(f["svc.timers.rl.t.upper_99"], 20.0, "the new percentile, over values from both sides");
    assert!(!f.contains_key("svc.timers.rl.t.upper_90") && !f.contains_key("stats_counts.rl.c"));
    assert_eq!(f["svc.counters.statsd.bad_lines.name_too_long.count"], 1.0);
    assert_eq!(f["svc.counters.statsd.config_reloads.count"], 1.0);
    assert_eq!(f["svc.counters.statsd.config_reload_failures.count"], 1.0);
}

#[test]
fn sighup_replaces_the_sinks_without_losing_the_interval() {
    let dir = tmp_dir("reload-sinks");
    let path = dir.join("kstatsd.toml");
    let base = "[server]\nudp = [\"127.0.0.1:0\"]\n[aggregate]\nflush_interval = \"1h\"\n";
    std::fs::write(&path, format!("{base}[sinks.console]\nformat = \"json\"\n")).unwrap();
    let d = Daemon::start_raw(&["--config", path.to_str().unwrap()]);
    d.send("sw.c:1|c");
    std::fs::write(&path, format!("{base}[sinks.console]\nformat = \"text\"\n")).unwrap();
    hup(&d);
    stderr_until(&d, "configuration reloaded");
    d.send("sw.c:2|c");
    let (status, lines) = d.terminate_lines(WAIT);
    assert!(status.success());
    // The text console (graphite plaintext) took over, with the whole interval.
    let line =
        lines.iter().find(|l| l.starts_with("stats_counts.sw.c ")).unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(line.split(' ').nth(1), Some("3"), "{line}");
}
