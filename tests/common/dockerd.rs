//! A real Docker daemon for the end-to-end tests, started as `shared/spec/docker.md` shows:
//! Debian's `docker.io` without systemd (vfs storage, no iptables, no bridge) on a private
//! socket, data and exec roots in a temporary folder, plus a `bb:1` image imported from the
//! static busybox (no registry needed). Everything it started (containers, dockerd and the
//! containerd it spawned) is removed on drop. Every failure is an `Err` with the command and
//! what it printed, so a test can fail with a clear reason instead of skipping.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dockerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    child: Child,
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .chain([Path::new("/usr/sbin").join(cmd), Path::new("/sbin").join(cmd)])
        .find(|p| p.is_file())
}

impl Dockerd {
    /// Starts dockerd and waits (up to 30 s) until it answers `/_ping`.
    pub fn start() -> Result<Dockerd, String> {
        let dockerd = which("dockerd").ok_or(
            "dockerd not found: install Debian's docker.io (apt-get install docker.io busybox-static)",
        )?;
        which("docker").ok_or("the docker CLI is not found: install Debian's docker.io")?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("dockerd needs root here (run the test as root, as .ci/run does)".into());
        }
        // Short: a Unix socket path must fit in 108 bytes.
        let dir = PathBuf::from(format!(
            "/tmp/kd-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let args = [
            "--storage-driver=vfs".to_string(),
            "--iptables=false".into(),
            "--ip6tables=false".into(),
            "--bridge=none".into(),
            format!("--data-root={}", dir.join("data").display()),
            format!("--exec-root={}", dir.join("exec").display()),
            format!("--pidfile={}", dir.join("docker.pid").display()),
            "-H".into(),
            format!("unix://{}", sock.display()),
        ];
        let child = Command::new(&dockerd)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{} {}: {e}", dockerd.display(), args.join(" ")))?;
        let mut d = Dockerd { dir, sock, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!(
                    "dockerd {} exited with {status}; its log:\n{}",
                    args.join(" "),
                    d.log_tail()
                ));
            }
            if d.ping() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(format!("dockerd did not answer /_ping within 30s; its log:\n{}", d.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.sock) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200") && out.ends_with("OK")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// The last lines of dockerd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs `docker -H <our socket> args…`; its stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.url())
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "docker {} failed ({}): {}\ndockerd log:\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Imports the static busybox (Debian's busybox-static, `/bin/busybox`) as image `bb:1`,
    /// with `sh` and `sleep` links.
    pub fn import_busybox(&self) -> Result<(), String> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or("no /bin/busybox: install Debian's busybox-static")?;
        let root = self.dir.join("bb");
        std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
        std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| format!("copy busybox: {e}"))?;
        for link in ["sh", "sleep"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(link));
        }
        let tar = self.dir.join("bb.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(|e| format!("tar: {e}"))?;
        if !status.success() {
            return Err(format!("tar -C {} -cf {} . failed: {status}", root.display(), tar.display()));
        }
        self.docker(&["import", tar.to_str().unwrap(), "bb:1"]).map(|_| ())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        // SIGTERM lets dockerd stop the containerd it started; SIGKILL after 15 s.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
