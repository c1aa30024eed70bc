//! A real carbon-cache (Debian `graphite-carbon`) for the Graphite tests: started in its own
//! directory under `target/tmp` on free loopback ports with the configuration of
//! `shared/testing.md` (`ENABLE_TAGS=False`, one-second retention for an hour), stopped by its
//! pid (SIGTERM, so it writes its cache out first) and restarted on the same ports. Points are
//! read back with `whisper-fetch --json`. A missing carbon is a failure, never a skip
//! (`.ci/run` installs it). Runs on the test's own thread.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Carbon {
    pub dir: PathBuf,
    pub line_port: u16,
    pub pickle_port: u16,
    query_port: u16,
    child: Option<Child>,
    starts: u32,
}

fn can_connect(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

impl Carbon {
    /// Starts carbon-cache on three free ports and waits until both receivers accept.
    pub fn start() -> Carbon {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "carbon-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("storage/whisper")).unwrap();
        fs::create_dir_all(dir.join("storage/log")).unwrap();
        let mut last = String::new();
        // A port picked as free may be taken by a parallel test before carbon binds it: retry.
        for _ in 0..3 {
            let mut c = Carbon {
                dir: dir.clone(),
                line_port: super::ports::free_port(),
                pickle_port: super::ports::free_port(),
                query_port: super::ports::free_port(),
                child: None,
                starts: 0,
            };
            match c.launch() {
                Ok(()) => return c,
                Err(e) => last = e,
            }
        }
        panic!("carbon-cache did not start: {last}");
    }

    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.display();
        let conf = format!(
            "[cache]\nSTORAGE_DIR={d}/storage/\nLOCAL_DATA_DIR={d}/storage/whisper/\nLOG_DIR={d}/storage/log/\n\
             PID_DIR={d}/storage/\nDATABASE=whisper\nENABLE_TAGS=False\nMAX_CREATES_PER_MINUTE=inf\n\
             MAX_UPDATES_PER_SECOND=inf\nWHISPER_AUTOFLUSH=True\nLINE_RECEIVER_INTERFACE=127.0.0.1\n\
             LINE_RECEIVER_PORT={}\nPICKLE_RECEIVER_INTERFACE=127.0.0.1\nPICKLE_RECEIVER_PORT={}\n\
             CACHE_QUERY_INTERFACE=127.0.0.1\nCACHE_QUERY_PORT={}\n",
            self.line_port, self.pickle_port, self.query_port
        );
        fs::write(self.dir.join("carbon.conf"), conf).unwrap();
        fs::write(self.dir.join("storage-schemas.conf"), "[default]\npattern = .*\nretentions = 1s:1h\n")
            .unwrap();
        self.starts += 1;
        let log = File::create(self.dir.join(format!("carbon-{}.log", self.starts))).unwrap();
        let child = Command::new("carbon-cache")
            .arg(format!("--config={}", self.dir.join("carbon.conf").display()))
            .args(["--debug", "start"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run carbon-cache (install graphite-carbon and python3-whisper): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if can_connect(self.line_port) && can_connect(self.pickle_port) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}; see {}", self.log_path().display()));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("not listening after 20s; see {}", self.log_path().display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("carbon-{}.log", self.starts))
    }

    /// Stops carbon with SIGTERM (it writes its cache to disk and exits), SIGKILL after 20 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: a plain kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts carbon again on the same ports and storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.launch().unwrap_or_else(|e| panic!("carbon-cache did not restart: {e}"));
    }

    /// The whisper file of a series: `a.b.c` → `a/b/c.wsp`; a tagged one (`a.b;k=v`) goes under
    /// `_tagged/` by the sha256 of its name, tags sorted (carbon's `TAG_HASH_FILENAMES`).
    pub fn whisper_path(&self, name: &str) -> PathBuf {
        let root = self.dir.join("storage/whisper");
        if !name.contains(';') {
            return root.join(format!("{}.wsp", name.replace('.', "/")));
        }
        let mut parts: Vec<&str> = name.split(';').collect();
        parts[1..].sort_unstable();
        let normalized = parts.join(";");
        let mut sha = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        sha.stdin.take().unwrap().write_all(normalized.as_bytes()).unwrap();
        let out = sha.wait_with_output().unwrap();
        let hex = String::from_utf8(out.stdout).unwrap();
        let hex = hex.split_whitespace().next().unwrap();
        root.join("_tagged").join(&hex[..3]).join(&hex[3..6]).join(format!("{hex}.wsp"))
    }

    /// The stored points of `name` from `from` (Unix seconds) on, by timestamp; `None` when
    /// carbon has not created its file yet.
    pub fn fetch(&self, name: &str, from: u64) -> Option<BTreeMap<u64, f64>> {
        let path = self.whisper_path(name);
        if !path.exists() {
            return None;
        }
        let out = Command::new("whisper-fetch")
            .arg(format!("--from={}", from.saturating_sub(1)))
            .arg("--json")
            .arg(&path)
            .output()
            .expect("cannot run whisper-fetch (install python3-whisper)");
        assert!(
            out.status.success(),
            "whisper-fetch {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (start, step) = (v["start"].as_u64().unwrap(), v["step"].as_u64().unwrap());
        Some(
            v["values"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.as_f64().map(|x| (start + i as u64 * step, x)))
                .collect(),
        )
    }

    /// Polls `fetch(name)` until `done` holds, or panics after `timeout`.
    pub fn wait_for(
        &self,
        name: &str,
        from: u64,
        timeout: Duration,
        done: impl Fn(&BTreeMap<u64, f64>) -> bool,
    ) -> BTreeMap<u64, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let points = self.fetch(name, from);
            if let Some(p) = &points {
                if done(p) {
                    return p.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "carbon never stored what was expected for {name} within {timeout:?}: {points:?} (carbon in {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        self.stop();
        // Keep the directory (logs, whisper files) when the test failed.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
