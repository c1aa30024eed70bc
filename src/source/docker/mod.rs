//! The Docker Engine stats source (what docker-stats-to-backstop did): a poller on its own
//! thread (`kstatsd-docker`) that, every `poll` period, lists the running containers
//! (`GET /containers/json`), reads each one's stats (`/containers/{id}/stats?stream=false`, and
//! `State.StartedAt` from `/containers/{id}/json`) with at most [`MAX_IN_FLIGHT`] requests in
//! flight, turns them into metrics ([`stats`]), renames containers by rule ([`rules`]) and
//! publishes the set into a [`Feed`] that the flush thread records as gauges at every flush.
//! The ingest thread is never involved.
//!
//! Names: `<name>.cpu.percent`, `<name>.memory.used`, … per container (`<name>` is the container
//! name rewritten by the first matching rule, or its id when it has none), and
//! `<hostname>.containers.{total,<category>}`, `<hostname>.metrics.duration` (ns) per host.
//!
//! Faults (daemon down, a container gone between list and stats, garbage or truncated JSON, a
//! slow daemon hitting `timeout`): counted in `<meta_prefix>.dockerStats.errors`, one log line
//! per poll at most, and the next period tries again. When the listing itself fails the set is
//! emptied (the container series stop rather than repeat stale values).
//!
//! The API version is negotiated from `GET /version` (the daemon's `ApiVersion`, capped at
//! [`MAX_API`]); it is asked again after a failed listing (the daemon may have been upgraded).

pub mod config;
pub mod http;
pub mod rules;
pub mod stats;

pub use config::{DockerConfig, DockerSection};

use super::{Feed, Gauges};
use http::EngineAddr;
use rules::Renamer;
use simd_json::prelude::*;
use stats::CpuSample;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Requests in flight at once during a poll (each `stats?stream=false` takes about a second:
/// the daemon samples twice).
pub const MAX_IN_FLIGHT: usize = 8;
/// Newest API version asked for; older daemons are asked for their own.
pub const MAX_API: (u32, u32) = (1, 47);

// ---------------------------------------------------------------------------------------------
// The poller
// ---------------------------------------------------------------------------------------------

/// Starts the poller thread; the returned feed goes to the flush thread (a
/// [`super::Recorder`]). The thread ends once the recorder is dropped.
pub fn start(config: &DockerConfig) -> std::io::Result<Feed> {
    let feed = Feed::new("dockerStats");
    let host = crate::sys::hostname().unwrap_or_else(|| "localhost".into());
    let mut poller = Poller::new(config.clone(), host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let theirs = feed.clone();
    log::info!("docker: polling {} every {:?}", config.url, config.poll);
    std::thread::Builder::new().name("kstatsd-docker".into()).spawn(move || {
        while !theirs.is_closed() {
            let started = Instant::now();
            let poll = poller.poll_once();
            if let Some(first) = &poll.first_error {
                log::warn!("docker: {} error(s) in this poll; first: {first}", poll.errors);
            }
            theirs.publish(Some(poll.gauges), poll.errors);
            let next = started + poller.config.poll;
            while !theirs.is_closed() {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(200)));
            }
        }
    })?;
    Ok(feed)
}

/// One poll's outcome.
#[derive(Debug, Default)]
pub struct Poll {
    pub gauges: Gauges,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Poll {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

struct Container {
    id: String,
    /// The first name without its `/`, or the id.
    name: String,
}

/// What one container's requests gave.
type Fetched = Result<(Vec<(&'static str, f64)>, Option<CpuSample>, Option<String>), String>;

pub struct Poller {
    pub config: DockerConfig,
    renamer: Renamer,
    hostname: String,
    /// `/v1.xx`, once negotiated.
    api: Option<String>,
    /// Each container's previous CPU counters (Podman sends no `precpu_stats`).
    previous: HashMap<String, CpuSample>,
    /// Every category a rule names, reported (as 0) even when no container has it.
    categories: Vec<String>,
}

impl Poller {
    pub fn new(config: DockerConfig, hostname: String) -> Result<Poller, String> {
        let renamer = Renamer::new(&config.rules, config.prefix.as_ref())?;
        let mut categories: Vec<String> =
            config.rules.iter().map(|r| r.category.clone()).filter(|c| !c.is_empty()).collect();
        categories.sort();
        categories.dedup();
        let hostname = clean_name(&hostname);
        Ok(Poller { config, renamer, hostname, api: None, previous: HashMap::new(), categories })
    }

    /// One poll: list, fetch, compute, rename. Never panics on what the daemon answers.
    pub fn poll_once(&mut self) -> Poll {
        let started = Instant::now();
        let mut poll = Poll::default();
        let containers = match self.list() {
            Ok(c) => c,
            Err(e) => {
                self.api = None;
                poll.error(e);
                return poll;
            }
        };
        let api = self.api.clone().unwrap_or_default();
        let fetched = self.fetch_all(&api, &containers);
        let mut counts: BTreeMap<&str, u64> = self.categories.iter().map(|c| (c.as_str(), 0)).collect();
        let mut previous = HashMap::with_capacity(containers.len());
        for (c, result) in containers.iter().zip(fetched) {
            let (metrics, sample, soft_error) = match result {
                Ok(r) => r,
                Err(e) => {
                    poll.error(e);
                    continue;
                }
            };
            if let Some(e) = soft_error {
                poll.error(e);
            }
            if let Some(s) = sample {
                previous.insert(c.id.clone(), s);
            }
            let (prefix, category) = self.renamer.apply(&c.name);
            let prefix = clean_name(&prefix);
            if !category.is_empty() {
                *counts.entry(category).or_default() += 1;
            }
            for (suffix, v) in metrics {
                poll.gauges.push((format!("{prefix}.{suffix}"), v));
            }
        }
        self.previous = previous;
        let host = &self.hostname;
        poll.gauges.push((format!("{host}.containers.total"), containers.len() as f64));
        for (category, n) in counts {
            poll.gauges.push((format!("{host}.containers.{category}"), n as f64));
        }
        poll.gauges.push((format!("{host}.metrics.duration"), started.elapsed().as_nanos() as f64));
        poll
    }

    fn get_json<T>(
        &self,
        path: &str,
        f: impl FnOnce(&simd_json::BorrowedValue) -> Result<T, String>,
    ) -> Result<T, String> {
        get_json(&self.config.url, path, self.config.timeout, f)
    }

    /// Negotiates the API version when needed, then lists the running containers.
    fn list(&mut self) -> Result<Vec<Container>, String> {
        if self.api.is_none() {
            let v = self.get_json("/version", |v| {
                let version = v.get_str("ApiVersion").ok_or("/version: no ApiVersion")?;
                let parsed =
                    parse_api(version).ok_or_else(|| format!("/version: bad ApiVersion {version:?}"))?;
                // Ours when the daemon is newer, unless it no longer speaks it.
                let oldest = v.get_str("MinAPIVersion").and_then(parse_api).unwrap_or((1, 12));
                let (major, minor) = if parsed.min(MAX_API) < oldest { parsed } else { parsed.min(MAX_API) };
                Ok(format!("/v{major}.{minor}"))
            })?;
            log::info!("docker: {} speaks API {}", self.config.url, &v[2..]);
            self.api = Some(v);
        }
        let api = self.api.as_deref().unwrap_or_default();
        self.get_json(&format!("{api}/containers/json"), |v| {
            let list = v.as_array().ok_or("/containers/json: not an array")?;
            let mut out = Vec::with_capacity(list.len());
            for c in list {
                let id = c.get_str("Id").ok_or("/containers/json: a container without Id")?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!("/containers/json: bad container Id {id:?}"));
                }
                let name = c
                    .get("Names")
                    .and_then(|n| n.as_array())
                    .and_then(|n| n.first())
                    .and_then(|n| n.as_str())
                    .map(|n| n.trim_start_matches('/'))
                    .filter(|n| !n.is_empty())
                    .unwrap_or(id);
                out.push(Container { id: id.to_string(), name: name.to_string() });
            }
            Ok(out)
        })
    }

    /// Fetches every container's stats with at most [`MAX_IN_FLIGHT`] requests at once.
    fn fetch_all(&self, api: &str, containers: &[Container]) -> Vec<Fetched> {
        let results: Vec<Mutex<Option<Fetched>>> = containers.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = containers.len().min(MAX_IN_FLIGHT);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = containers.get(i) else { break };
                    let r = self.fetch_one(api, c);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| Err("not fetched".into()))
            })
            .collect()
    }

    fn fetch_one(&self, api: &str, c: &Container) -> Fetched {
        let what = |e: String| format!("container {}: {e}", c.name);
        let stats_path = format!("{api}/containers/{}/stats?stream=false", c.id);
        let previous = self.previous.get(&c.id).copied();
        let (metrics, sample) = self
            .get_json(&stats_path, |v| {
                if !stats::is_live(v) {
                    return Err("gone (stopped between list and stats)".to_string());
                }
                let mut out = Vec::with_capacity(32);
                let sample = stats::container_metrics(v, previous, None, &mut out);
                Ok((out, sample))
            })
            .map_err(what)?;
        let mut metrics = metrics;
        let inspect = self.get_json(&format!("{api}/containers/{}/json", c.id), |v| {
            let started = v.get("State").and_then(|s| s.get_str("StartedAt")).unwrap_or("");
            Ok(stats::parse_rfc3339(started))
        });
        let soft = match inspect {
            Ok(Some(started)) => {
                let now =
                    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                metrics.push(("uptime", (now - started).max(0.0)));
                None
            }
            Ok(None) => None,
            Err(e) => Some(what(e)),
        };
        Ok((metrics, sample, soft))
    }
}

/// `GET path`, expecting 200 and a JSON body, handed to `f`.
fn get_json<T>(
    endpoint: &EngineAddr,
    path: &str,
    timeout: Duration,
    f: impl FnOnce(&simd_json::BorrowedValue) -> Result<T, String>,
) -> Result<T, String> {
    let mut r = http::get(endpoint, path, timeout)?;
    if r.status != 200 {
        let body = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).trim().to_string();
        return Err(format!("GET {path}: HTTP {} {body}", r.status));
    }
    let v = simd_json::to_borrowed_value(&mut r.body).map_err(|e| format!("GET {path}: bad JSON: {e}"))?;
    f(&v)
}

/// A name that etsy's key sanitizing leaves as it is (so the series the flusher knows carry
/// exactly this name and can be deleted by it): whitespace runs become `_`, `/` becomes `-`,
/// anything but ASCII letters, digits, `_`, `.` and `-` is dropped.
pub fn clean_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_space = false;
    for c in name.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match c {
            '/' => out.push('-'),
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => out.push(c),
            _ => {}
        }
    }
    out
}

/// `"1.41"` → `(1, 41)`.
fn parse_api(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn names_survive_key_sanitizing() {
        assert_eq!(clean_name("web.api-1_x"), "web.api-1_x");
        assert_eq!(clean_name("a b\t c/d:e;f=g\u{e9}"), "a_b_c-defg");
    }

    /// A fake Engine on a Unix socket answering from a script: path → (status, body).
    fn fake_engine(dir: &std::path::Path, answer: fn(&str) -> (u16, String)) -> EngineAddr {
        let path = dir.join("engine.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, body) = answer(&path);
                    if status == 0 {
                        std::thread::sleep(Duration::from_secs(2)); // a hung daemon
                        return;
                    }
                    let _ =
                        write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                });
            }
        });
        EngineAddr::Unix(path)
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/docker/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    fn poller(url: EngineAddr) -> Poller {
        let config = DockerConfig {
            url,
            poll: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            rules: rules::parse_rules_json(r#"[{"regexp":"^web\\.x\\.(.*)\\.1$","into":"web.$1","category":"web"},{"regexp":"^db","category":"db"}]"#).unwrap(),
            prefix: None,
        };
        Poller::new(config, "host1".into()).unwrap()
    }

    /// A poll against a fake daemon: two listed containers, one answers the recorded cgroup v1
    /// stats, the other vanished (404), the third answers garbage, the fourth hangs. Each failure
    /// is one counted error; the good one is renamed and counted in its category.
    #[test]
    fn a_poll_with_one_good_container_and_every_kind_of_failure() {
        let dir = std::env::temp_dir().join(format!("kstatsd-docker-poll-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ep = fake_engine(&dir, |path| {
            match path {
            "/version" => (200, r#"{"ApiVersion":"1.43","MinAPIVersion":"1.12"}"#.into()),
            "/v1.43/containers/json" => (
                200,
                r#"[{"Id":"aaa","Names":["/web.x.api.1"]},{"Id":"bbb","Names":["/db1"]},{"Id":"ccc","Names":[]},{"Id":"ddd","Names":["/slow"]}]"#.into(),
            ),
            "/v1.43/containers/aaa/stats?stream=false" => (200, fixture("stats_cgroup_v1.json")),
            "/v1.43/containers/aaa/json" => (200, r#"{"State":{"StartedAt":"2020-01-01T00:00:00Z"}}"#.into()),
            "/v1.43/containers/bbb/stats?stream=false" => (404, r#"{"message":"No such container: bbb"}"#.into()),
            "/v1.43/containers/ccc/stats?stream=false" => (200, "{\"read\": tru".into()),
            "/v1.43/containers/ddd/stats?stream=false" => (0, String::new()),
            _ => (404, "{}".into()),
        }
        });
        let mut p = poller(ep);
        let poll = p.poll_once();
        let m: BTreeMap<_, _> = poll.gauges.iter().cloned().collect();
        assert_eq!(poll.errors, 3, "{poll:?}");
        assert!(poll.first_error.is_some());
        assert!(m["web.api.cpu.percent"] > 90.0);
        assert!(m["web.api.uptime"] > 1e8);
        assert_eq!(m["host1.containers.total"], 4.0);
        assert_eq!(m["host1.containers.web"], 1.0);
        assert_eq!(m["host1.containers.db"], 0.0, "db1 vanished before its stats were read");
        assert!(m["host1.metrics.duration"] > 0.0);
        assert!(!m.keys().any(|k| k.starts_with("db1.") || k.starts_with("ccc.") || k.starts_with("slow.")));
        assert_eq!(p.api.as_deref(), Some("/v1.43"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_daemon_that_is_down_or_answers_garbage_is_one_error_and_no_series() {
        let mut p = poller(EngineAddr::Unix("/nonexistent/docker.sock".into()));
        let poll = p.poll_once();
        assert_eq!((poll.errors, poll.gauges.len()), (1, 0));
        assert!(poll.first_error.unwrap().contains("connect"));

        let dir = std::env::temp_dir().join(format!("kstatsd-docker-garbage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ep = fake_engine(&dir, |path| match path {
            "/version" => (200, r#"{"ApiVersion":"1.99"}"#.into()),
            _ => (200, "<html>".into()),
        });
        let mut p = poller(ep);
        let poll = p.poll_once();
        assert_eq!((poll.errors, poll.gauges.len()), (1, 0));
        assert!(poll.first_error.unwrap().contains("/v1.47/containers/json: bad JSON"), "capped at MAX_API");
        assert_eq!(p.api, None, "renegotiated next time");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
