//! The reference etsy statsd 0.9.0 for the differential tests: found at `$KSTATSD_ETSY_DIR` or
//! `.ci/node/node_modules/statsd` (installed by `.ci/etsy.sh`; a missing etsy is a failure,
//! never a skip), run with a config.js the test writes, its graphite backend writing to a tiny
//! carbon emulator here (one connection per flush, so one connection read to its end is one
//! flush). Also what both differential tests share: driving a daemon interval by interval,
//! comparing two runs name by name, and writing a run's files for diagnosis.
//! Runs on the test's thread plus a carbon accept thread and two log readers per etsy.

use super::{ports, Flush};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for one flush from either daemon (the interval is 1 s).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(4);

/// Relative tolerance for the per-second rates (kstatsd uses the real elapsed time, etsy 1 s).
pub const RATE_TOLERANCE: f64 = 0.05;

/// Which names a comparison treats apart, for one naming scheme.
pub struct Rules {
    /// Depends on timing or on etsy's own backend: never compared.
    pub timing_dependent: fn(&str) -> bool,
    /// Under the daemon's own meta paths: kstatsd may flush more of these than etsy.
    pub meta: fn(&str) -> bool,
    /// A per-second rate (compared within [`RATE_TOLERANCE`]); gets etsy's whole flush.
    pub per_second: fn(&str, &Flush) -> bool,
}

/// Compares one interval; pushes one line per problem.
pub fn compare(i: usize, etsy: &Flush, ks: &Flush, rules: &Rules, problems: &mut Vec<String>) {
    for (name, &e) in etsy {
        if (rules.timing_dependent)(name) {
            continue;
        }
        let Some(&k) = ks.get(name) else {
            problems.push(format!("interval {i}: {name}: etsy {e:?}, kstatsd MISSING"));
            continue;
        };
        let same = if (rules.per_second)(name, etsy) && e != 0.0 {
            ((k - e) / e).abs() <= RATE_TOLERANCE
        } else {
            k == e || (k.is_nan() && e.is_nan())
        };
        if !same {
            problems.push(format!("interval {i}: {name}: etsy {e:?}, kstatsd {k:?}"));
        }
    }
    for (name, &k) in ks {
        if !etsy.contains_key(name) && !(rules.meta)(name) {
            problems.push(format!("interval {i}: {name}: etsy ABSENT, kstatsd {k:?}"));
        }
    }
}

/// Compares every interval and fails with the first 400 differences (the run's files are in
/// `dump`); returns how many names were compared.
pub fn assert_same(etsy: &[Flush], ks: &[Flush], rules: &Rules, dump: &Path) -> usize {
    let mut problems = Vec::new();
    for (i, (e, k)) in etsy.iter().zip(ks.iter()).enumerate() {
        compare(i, e, k, rules, &mut problems);
    }
    assert_eq!(etsy.len(), ks.len(), "both daemons ran every interval");
    let total = problems.len();
    let mut msg = String::new();
    for p in problems.iter().take(400) {
        msg.push_str(p);
        msg.push('\n');
    }
    if total > 400 {
        let _ = writeln!(msg, "... and {} more", total - 400);
    }
    assert!(
        problems.is_empty(),
        "kstatsd differs from etsy statsd 0.9.0 in {total} place(s) (inputs and both flushes of \
         every interval are in {}):\n{msg}",
        dump.display()
    );
    etsy.iter().map(|f| f.keys().filter(|n| !(rules.timing_dependent)(n)).count()).sum()
}

/// Waits for the daemon's first flush (a boundary), then for each interval sends its datagrams
/// at once and takes the next flush as that interval's result (also the next boundary).
pub fn drive(
    corpus: &[Vec<Vec<u8>>],
    send: impl Fn(&[u8]),
    mut next_flush: impl FnMut() -> Flush,
) -> Vec<Flush> {
    let _boundary = next_flush();
    let mut out = Vec::with_capacity(corpus.len());
    for datagrams in corpus {
        for (n, dg) in datagrams.iter().enumerate() {
            // A short pause now and then: a burst larger than the receive buffer (~200 KB
            // default) is dropped by the kernel while a daemon is busy.
            if n > 0 && n % 16 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            send(dg);
        }
        out.push(next_flush());
    }
    out
}

pub fn etsy_dir() -> PathBuf {
    let dir = match std::env::var_os("KSTATSD_ETSY_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/node/node_modules/statsd"),
    };
    if !dir.join("stats.js").is_file() {
        panic!(
            "etsy statsd 0.9.0 not found at {} (no stats.js): run `.ci/etsy.sh` to install it \
             (needs node and npm), or point KSTATSD_ETSY_DIR at an installed statsd package",
            dir.display()
        );
    }
    dir
}

/// One carbon connection's lines: (name, value text).
pub type CarbonFlush = Vec<(String, String)>;

pub struct Etsy {
    child: Child,
    /// Where etsy receives (the config's `port` on 127.0.0.1).
    pub udp: SocketAddr,
    /// A socket to send to it from.
    pub sock: UdpSocket,
    /// Each flush its graphite backend wrote (taken by the driver).
    pub flushes: Option<Receiver<CarbonFlush>>,
    up: Receiver<()>,
    /// Its stdout and stderr lines.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The config.js it runs.
    pub config: PathBuf,
}

/// The ports a config.js for [`Etsy::start`] must use: free now, below the ephemeral range, so
/// that a second daemon can bind the same ones once etsy is gone.
#[derive(Clone, Copy, Debug)]
pub struct EtsyPorts {
    pub udp: u16,
    pub mgmt: u16,
    pub carbon: u16,
}

impl Etsy {
    /// Writes `config(ports)` to `tmp/etsy_config.js` and starts etsy on it (see
    /// [`Etsy::wait_up`]).
    pub fn start(tmp: &Path, config: impl FnOnce(EtsyPorts) -> String) -> Etsy {
        let dir = etsy_dir();
        let carbon = ports::tcp_listener();
        let carbon_port = carbon.local_addr().unwrap().port();
        let (tx, flushes) = channel();
        thread::spawn(move || carbon_accept(carbon, tx));
        let udp_port = ports::free_port();
        let mgmt_port = ports::free_port();
        let text = config(EtsyPorts { udp: udp_port, mgmt: mgmt_port, carbon: carbon_port });
        let config = tmp.join("etsy_config.js");
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("stats.js"))
            .arg(&config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` for etsy statsd (is nodejs installed?): {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (up_tx, up) = channel();
        log_reader(child.stdout.take().unwrap(), Arc::clone(&log), Some(up_tx));
        log_reader(child.stderr.take().unwrap(), Arc::clone(&log), None);
        Etsy {
            child,
            udp: SocketAddr::from(([127, 0, 0, 1], udp_port)),
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            flushes: Some(flushes),
            up,
            log,
            config,
        }
    }

    /// Waits for etsy's "server is up".
    pub fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.up.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return,
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "etsy statsd did not come up (exit: {:?}); its output:\n{}",
                    self.child.try_wait(),
                    self.log.lock().unwrap().join("\n")
                ),
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "etsy statsd exited ({status}) before it was up; its output:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
        }
    }
}

impl Drop for Etsy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_reader<R: Read + Send + 'static>(r: R, log: Arc<Mutex<Vec<String>>>, up: Option<Sender<()>>) {
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if line.contains("server is up") {
                if let Some(up) = &up {
                    let _ = up.send(());
                }
            }
            let mut log = log.lock().unwrap();
            if log.len() < 2000 {
                log.push(line);
            }
        }
    });
}

/// The carbon emulator: etsy's graphite backend opens one connection per flush and closes it
/// after writing `name value timestamp` lines, so one connection read to its end is one flush.
fn carbon_accept(listener: TcpListener, tx: Sender<CarbonFlush>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if tx.send(read_carbon(stream)).is_err() {
            return;
        }
    }
}

fn read_carbon(mut stream: TcpStream) -> CarbonFlush {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let (name, value) = (parts.next()?, parts.next()?);
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Etsy's next flush, as name → value; a duplicate name or a value that is not a number fails.
pub fn next_carbon_flush(rx: &Receiver<CarbonFlush>, log: &Mutex<Vec<String>>) -> Flush {
    let lines = rx.recv_timeout(FLUSH_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "no flush from etsy statsd within {FLUSH_TIMEOUT:?} ({e:?}); its output:\n{}",
            log.lock().unwrap().join("\n")
        )
    });
    let mut flush = BTreeMap::new();
    for (name, text) in lines {
        let value: f64 =
            text.parse().unwrap_or_else(|_| panic!("etsy flushed {name} = {text:?}, not a number"));
        if flush.insert(name.clone(), value).is_some() {
            panic!("etsy flushed {name} twice in one flush: the corpus has colliding names");
        }
    }
    flush
}

/// Writes each interval's datagrams and both flushes under `$CARGO_TARGET_TMPDIR/<name>`;
/// returns the directory.
pub fn dump_run(name: &str, corpus: &[Vec<Vec<u8>>], etsy: &[Flush], ks: &[Flush]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::create_dir_all(&dir);
    for (i, datagrams) in corpus.iter().enumerate() {
        let mut input = String::new();
        for dg in datagrams {
            let _ = writeln!(input, "{:?}", String::from_utf8_lossy(dg));
        }
        let _ = std::fs::write(dir.join(format!("interval_{i}.input.txt")), input);
        for (who, flushes) in [("etsy", etsy), ("kstatsd", ks)] {
            let mut text = String::new();
            if let Some(f) = flushes.get(i) {
                for (name, v) in f {
                    let _ = writeln!(text, "{name} {v:?}");
                }
            }
            let _ = std::fs::write(dir.join(format!("interval_{i}.{who}.txt")), text);
        }
    }
    dir
}

/// A private directory for the config files, removed at the end (also on panic).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("kstatsd-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
