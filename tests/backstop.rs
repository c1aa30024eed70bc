//! The Backstop sink end to end: the real `kstatsd` binary POSTing every flush to an HTTP server
//! in the test that checks each body as Backstop's `/publish/:name` does (a JSON array of
//! objects with `metric`, `value` and `measure_time`) and answers what the test scripts: 200,
//! 400 (bad payload), 401 (basic auth), 404 (unknown prefix), 500. What is retried (500,
//! connection refused) and what is not (400, 401, 404), what is counted, and that the
//! credentials of the URL are sent as basic auth but never printed.

mod common;

use common::http::{accept_loop, read_request};
use common::{Daemon, Flush};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// One POST as the server saw it.
#[derive(Clone, Debug)]
struct Post {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    /// The body parsed as Backstop does: (metric, value, measure_time) per item.
    items: Vec<(String, f64, u64)>,
    status: u16,
}

#[derive(Default)]
struct State {
    posts: Vec<Post>,
    /// Statuses to answer, in order; 200 once empty.
    script: VecDeque<u16>,
    /// Basic auth the server wants (`Basic …`); anything else gets a 401.
    auth: Option<String>,
}

/// A small HTTP/1.1 server (keep-alive, Content-Length bodies) that plays Backstop.
#[derive(Clone)]
struct Backstop {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Backstop {
    fn start(auth: Option<&str>) -> Backstop {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), auth)
    }

    fn start_on(listener: TcpListener, auth: Option<&str>) -> Backstop {
        let b = Backstop {
            port: listener.local_addr().unwrap().port(),
            state: Arc::new((Mutex::new(State::default()), Condvar::new())),
        };
        b.state.0.lock().unwrap().auth = auth.map(|a| format!("Basic {a}"));
        let server = b.clone();
        accept_loop(listener, move |conn| server.serve(conn));
        b
    }

    fn url(&self, userinfo: &str, name: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}/publish/{name}", self.port)
    }

    fn script(&self, statuses: &[u16]) {
        self.state.0.lock().unwrap().script.extend(statuses);
    }

    fn serve(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some(req) = read_request(&mut reader) {
            assert_eq!(req.method, "POST");
            let authorization = req.header("authorization").map(str::to_string);
            let content_type = req.header("content-type").map(str::to_string);
            let (path, body) = (req.path, req.body);

            let (lock, cvar) = &*self.state;
            let mut st = lock.lock().unwrap();
            // What Backstop answers, in its order: auth, JSON, prefix, fields.
            let items = backstop_items(&body);
            let status = if st.auth.is_some() && authorization != st.auth {
                401
            } else if items.is_err() {
                400
            } else {
                st.script.pop_front().unwrap_or(200)
            };
            let text = match status {
                200 => "ok",
                400 => "missing fields",
                401 => "Not authorized",
                404 => "unknown prefix",
                _ => "Internal Server Error",
            };
            st.posts.push(Post {
                path,
                authorization,
                content_type,
                body,
                items: items.unwrap_or_default(),
                status,
            });
            cvar.notify_all();
            drop(st);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            if conn.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    /// Waits until `done` holds for the posts so far.
    fn wait(&self, what: &str, done: impl Fn(&[Post]) -> bool) -> Vec<Post> {
        let (lock, cvar) = &*self.state;
        let deadline = Instant::now() + T;
        let mut st = lock.lock().unwrap();
        while !done(&st.posts) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not seen within {T:?}; posts: {:#?}", st.posts);
            st = cvar.wait_timeout(st, left).unwrap().0;
        }
        st.posts.clone()
    }
}

/// Backstop's checks on a publish body: a JSON array of objects that each have a (truthy)
/// `metric`, `value` and `measure_time`. Stricter than Backstop on types: the metric a string
/// without whitespace, the value a number, the time an integer.
fn backstop_items(body: &[u8]) -> Result<Vec<(String, f64, u64)>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("not an array")?;
    let mut items = Vec::new();
    for item in arr {
        let obj = item.as_object().ok_or("item not an object")?;
        assert_eq!(obj.len(), 3, "{item}");
        let metric = obj.get("metric").and_then(|m| m.as_str()).ok_or("metric")?;
        if metric.is_empty() || metric.chars().any(char::is_whitespace) {
            return Err(format!("bad metric {metric:?}"));
        }
        let value = obj.get("value").and_then(|m| m.as_f64()).ok_or("value")?;
        let time = obj.get("measure_time").and_then(|m| m.as_u64()).ok_or("measure_time")?;
        items.push((metric.to_string(), value, time));
    }
    Ok(items)
}

fn kstatsd(url: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--udp",
        "127.0.0.1:0",
        "--console",
        "json",
        "--counter-rates",
        "--flush-interval",
        "1",
        "--backstop-url",
        url,
        "--backstop-retry-backoff",
        "50ms",
        "--backstop-retry-backoff-max",
        "200ms",
    ];
    args.extend_from_slice(extra);
    Daemon::start_raw(&args)
}

fn parse_line(line: &str) -> (u64, Flush) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (v["clock"].as_u64().unwrap(), common::parse_flush(line))
}

/// The next console flush where the sink's figure `key` passes `ok`, within `T`.
fn flush_where(d: &Daemon, key: &str, ok: impl Fn(f64) -> bool) -> Flush {
    let name = format!("stats.statsd.backstopStats.{key}");
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no flush with {name} as expected");
        let f = d.next_flush(left);
        if f.get(&name).is_some_and(|v| ok(*v)) {
            return f;
        }
    }
}

#[test]
fn every_point_is_published_with_basic_auth_and_the_password_is_never_printed() {
    // base64("alice:s3cr@t")
    let server = Backstop::start(Some("YWxpY2U6czNjckB0"));
    let url = server.url("alice:s3cr%40t@", "statsd");
    let d = kstatsd(&url, &["--sanitize-keys", "false"]);
    d.send("bs.hits:3|c\nbs.hits:2|c|@0.5\nbs.lat:10|ms\nbs.lat:30|ms\nbs.temp:-4.5|g\nbs.users:x|s\nbs.req:1|c|#env:prod\nbad name:1|c");
    let posts = server.wait("the traffic", |p| {
        p.iter().any(|p| p.items.iter().any(|(m, v, _)| m == "stats_counts.bs.hits" && *v == 7.0))
    });
    let post = posts
        .iter()
        .find(|p| p.items.iter().any(|(m, v, _)| m == "stats_counts.bs.hits" && *v == 7.0))
        .unwrap()
        .clone();
    assert_eq!(post.status, 200);
    assert_eq!(post.path, "/publish/statsd");
    assert_eq!(post.authorization.as_deref(), Some("Basic YWxpY2U6czNjckB0"));
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert!(posts.iter().all(|p| p.status == 200), "{posts:#?}");
    // The sink posts one flush at a time and counts a post as sent before it takes the next, so
    // once a later post arrives, every flush from now on reports the traffic's post as sent.
    let traffic_at = posts.iter().position(|p| p.body == post.body).unwrap();
    server.wait("a post after the traffic", |p| p.len() > traffic_at + 1);
    let logs: Vec<String> = d.stderr.try_iter().collect();
    let (status, lines) = d.terminate_lines(T);
    assert!(status.success());

    // The POST carries exactly the flush the console printed (same snapshot, same names).
    let clock = post.items[0].2;
    assert!(post.items.iter().all(|(_, _, t)| *t == clock));
    let (_, flush) = lines
        .iter()
        .map(|l| parse_line(l))
        .find(|(c, f)| *c == clock && f.get("stats_counts.bs.hits") == Some(&7.0))
        .expect("the console flush of that clock");
    let mut published: Flush = post.items.iter().map(|(m, v, _)| (m.clone(), *v)).collect();
    assert_eq!(published.len(), post.items.len(), "a name published twice");
    // `bad name` cannot go to Backstop (it writes plaintext lines to carbon): dropped, counted.
    let want: Flush = flush.iter().filter(|(n, _)| !n.contains(' ')).map(|(n, v)| (n.clone(), *v)).collect();
    assert_eq!(flush.len() - want.len(), 2, "rate and count of `bad name`");
    for (name, v) in [
        ("stats.timers.bs.lat.mean", 20.0),
        ("stats.gauges.bs.temp", -4.5),
        ("stats.sets.bs.users.count", 1.0),
        ("stats_counts.bs.req;env=prod", 1.0),
    ] {
        assert_eq!(published.get(name), Some(&v), "{name}");
    }
    assert_eq!(published, want);
    let later = parse_line(lines.last().unwrap()).1;
    // The two names of `bad name` are dropped from every post that carries them (the idle
    // counter is still reported after its interval).
    let dropped = later["stats.statsd.backstopStats.dropped_bad_name"];
    assert!(dropped >= 2.0 && dropped % 2.0 == 0.0, "{dropped}");
    assert!(later["stats.statsd.backstopStats.sent"] >= published.len() as f64);
    published.clear();

    // The password never shows: not in the logs (start-up included), not in --check-config, not
    // in --help.
    let logs = logs.join("\n");
    assert!(!logs.contains("s3cr"), "{logs}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--udp", "127.0.0.1:0", "--admin", "off", "--backstop-url", &url, "--log", "debug"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut startup = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.ends_with("ready");
        startup.push(line);
        if ready {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let startup = startup.join("\n");
    assert!(startup.contains("backstop: publishing to http://<redacted>@127.0.0.1"), "{startup}");
    assert!(!startup.contains("s3cr"), "{startup}");
    let check = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .args(["--check-config", "--backstop-url", &url])
        .output()
        .unwrap();
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(check.status.success());
    assert!(text.contains("[sinks.backstop]\nurl = \"http://<redacted>@127.0.0.1:"), "{text}");
    assert!(!text.contains("s3cr") && !text.contains("alice"), "{text}");
    let help = Command::new(env!("CARGO_BIN_EXE_kstatsd"))
        .arg("--help")
        .env("KSTATSD_BACKSTOP_URL", &url)
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--backstop-url") && !help.contains("s3cr"), "{help}");
}

#[test]
fn a_500_or_a_refused_connection_is_retried_until_published_and_a_400_never_is() {
    // Nothing listens yet: the first flushes queue up and are retried.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/publish/statsd");
    let d = kstatsd(&url, &[]);
    d.send("early.hits:1|c");
    let f = flush_where(&d, "retried", |n| n > 0.0);
    assert_eq!(f["stats.statsd.backstopStats.sent"], 0.0);
    assert!(f["stats.statsd.backstopStats.queued_flushes"] >= 1.0);

    let server = Backstop::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), None);
    server.script(&[500, 500]);
    // The queued flushes arrive, the first after two 500s (the same body three times).
    let posts = server.wait("early.hits", |p| {
        p.iter().any(|p| {
            p.status == 200 && p.items.iter().any(|(m, v, _)| m == "stats_counts.early.hits" && *v == 1.0)
        })
    });
    assert_eq!((posts[0].status, posts[1].status, posts[2].status), (500, 500, 200));
    assert!(posts[0].body == posts[1].body && posts[1].body == posts[2].body);

    // A 400 is dropped at once: that body is never posted again.
    server.script(&[400]);
    let n = server.state.0.lock().unwrap().posts.len();
    let posts = server.wait("a 400 and two more posts", |p| p.len() >= n + 3);
    let refused = posts.iter().find(|p| p.status == 400).unwrap();
    assert_eq!(posts.iter().filter(|p| p.body == refused.body).count(), 1);
    let f = flush_where(&d, "dropped_bad_request", |n| n > 0.0);
    assert_eq!(f["stats.statsd.backstopStats.dropped_bad_request"], refused.items.len() as f64);
    assert!(f["stats.statsd.backstopStats.retried"] >= 2.0);
    let (status, _) = d.terminate_lines(T);
    assert!(status.success());
}

#[test]
fn a_401_or_a_404_is_not_retried_and_is_counted() {
    let server = Backstop::start(Some("dXNlcjpyaWdodA==")); // user:right
    let d = kstatsd(&server.url("user:wrong@", "nosuch"), &[]);
    let posts = server.wait("two posts", |p| p.len() >= 2);
    assert!(posts.iter().all(|p| p.status == 401));
    // Each flush is posted once: two posts, two different bodies.
    assert_ne!(posts[0].body, posts[1].body);
    let f = flush_where(&d, "dropped_unauthorized", |n| n > 0.0);
    assert_eq!(f["stats.statsd.backstopStats.retried"], 0.0);
    let logs = d.log_until(|l| l.contains("HTTP 401"), T);
    assert!(logs.iter().any(|l| l.contains("HTTP 401")), "{logs:?}");
    assert!(!logs.iter().any(|l| l.contains("wrong")), "{logs:?}");
    drop(d);

    // Backstop's 404 for a prefix it does not know.
    let server = Backstop::start(None);
    server.script(&[404, 404, 404]);
    let d = kstatsd(&server.url("", "nosuch"), &[]);
    let posts = server.wait("three posts", |p| p.len() >= 3);
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>()[..3], [404, 404, 404]);
    assert!(posts[0].body != posts[1].body && posts[1].body != posts[2].body, "a 404 was retried");
    let f = flush_where(&d, "dropped_not_found", |n| n > 0.0);
    assert_eq!(f["stats.statsd.backstopStats.retried"], 0.0);
}
