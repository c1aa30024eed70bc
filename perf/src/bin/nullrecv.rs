//! `nullrecv`: the baseline receiver of `perf/run`, i.e. what the kernel alone costs. One
//! thread (optionally pinned with `--core`) binds a UDP socket with a large receive buffer
//! (`SO_RCVBUFFORCE` when root, 8 MiB by default), then busy-polls non-blocking `recvmmsg` and
//! does nothing with the data but count datagrams, bytes and lines (`'\n'` count + 1 per
//! non-empty datagram, the way a StatsD server splits them). Whatever rate kstatsd reaches on the
//! same core is compared with this one. It exits after `--duration` or on SIGTERM/SIGINT and
//! prints one JSON summary line. `--mock-flush S` also prints a kstatsd-shaped flush object
//! every S seconds (and one at exit), so `perf/run` can exercise its daemon path without kstatsd.
//!
//! Hot loop: `recvmmsg` → count → repeat; the clock is read once per non-empty batch and once
//! per 256 empty polls, the stop flag (an atomic set by the signal handler) once per iteration.

#![forbid(unsafe_code)]

use kstatsd_perf::mmsg::{self, RecvBatch, MAX_BATCH};
use kstatsd_perf::{parse_duration, Args, JsonLine};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
nullrecv: busy-poll recvmmsg and only count datagrams and lines (the baseline)

  --bind ADDR          where to listen (default 127.0.0.1:8125)
  --duration D         stop after D (10, 2.5s, 500ms); 0 = until SIGTERM/SIGINT (default 0)
  --rcvbuf BYTES       receive buffer; SO_RCVBUFFORCE if allowed (default 8388608; 0 = leave)
  --batch N            datagrams per recvmmsg, 1..=1024 (default 64)
  --buf-size N         bytes per datagram buffer (default 2048; longer ones are truncated, counted)
  --core N             pin to this CPU
  --mock-flush D       every D, print {\"gauges\":{\"stats_counts.statsd.metrics_received\":N,...},...}
                       like kstatsd --console json (for testing perf/run without kstatsd)
";

struct Config {
    bind: SocketAddr,
    duration: Duration,
    rcvbuf: usize,
    batch: usize,
    buf_size: usize,
    core: Option<usize>,
    mock_flush: Option<Duration>,
}

fn config() -> Result<Option<Config>, String> {
    let mut a = Args::from_env(&["help"])?;
    if a.switch("help") {
        print!("{HELP}");
        return Ok(None);
    }
    let c = Config {
        bind: a.get("bind", "127.0.0.1:8125".parse().unwrap())?,
        duration: parse_duration(&a.get("duration", "0".to_string())?)?,
        rcvbuf: a.get("rcvbuf", 8 << 20)?,
        batch: a.get("batch", 64)?,
        buf_size: a.get("buf-size", 2048)?,
        core: a.opt("core")?,
        mock_flush: a.opt::<String>("mock-flush")?.map(|s| parse_duration(&s)).transpose()?,
    };
    a.finish()?;
    if !(1..=MAX_BATCH).contains(&c.batch) || c.buf_size == 0 {
        return Err(format!("--batch must be 1..={MAX_BATCH} and --buf-size at least 1"));
    }
    if c.mock_flush == Some(Duration::ZERO) {
        return Err("--mock-flush must be > 0".into());
    }
    Ok(Some(c))
}

fn mock_flush(received: u64) {
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{{\"gauges\":{{\"stats_counts.statsd.metrics_received\":{received},\
         \"stats_counts.statsd.bad_lines_seen\":0}},\"clock\":{clock}}}"
    );
    let _ = out.flush();
}

fn run(c: Config) -> Result<(), String> {
    mmsg::install_stop_handler().map_err(|e| format!("signal handler: {e}"))?;
    if let Some(core) = c.core {
        mmsg::pin_to_core(core).map_err(|e| format!("pinning to core {core}: {e}"))?;
    }
    let sock = UdpSocket::bind(c.bind).map_err(|e| format!("bind {}: {e}", c.bind))?;
    let fd = sock.as_raw_fd();
    let (rcvbuf, forced) = if c.rcvbuf > 0 {
        mmsg::set_rcvbuf(fd, c.rcvbuf).map_err(|e| format!("SO_RCVBUF: {e}"))?
    } else {
        (mmsg::rcvbuf(fd).map_err(|e| format!("SO_RCVBUF: {e}"))?, false)
    };
    let mut batch = RecvBatch::new(c.batch, c.buf_size);

    let (mut dgrams, mut lines, mut bytes, mut truncated) = (0u64, 0u64, 0u64, 0u64);
    let (mut batches, mut empty_polls, mut idle) = (0u64, 0u64, 0u32);
    let mut flushed_lines = 0u64;
    let start = Instant::now();
    let deadline = (!c.duration.is_zero()).then(|| start + c.duration);
    let mut next_flush = c.mock_flush.map(|d| start + d);
    let (mut first, mut last): (Option<Instant>, Instant) = (None, start);
    let mut now;
    while !mmsg::stop_requested() {
        match batch.recv(fd) {
            Ok(n) => {
                for i in 0..n {
                    let d = batch.datagram(i);
                    bytes += d.len() as u64;
                    if !d.is_empty() {
                        lines += memchr::memchr_iter(b'\n', d).count() as u64 + 1;
                    }
                    truncated += batch.truncated(i) as u64;
                }
                dgrams += n as u64;
                batches += 1;
                now = Instant::now();
                if n > 0 {
                    first.get_or_insert(now);
                    last = now;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                empty_polls += 1;
                idle += 1;
                std::hint::spin_loop();
                if idle < 256 {
                    continue;
                }
                idle = 0;
                now = Instant::now();
            }
            Err(e) => return Err(format!("recvmmsg: {e}")),
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let (Some(at), Some(every)) = (next_flush, c.mock_flush) {
            if now >= at {
                mock_flush(lines - flushed_lines);
                flushed_lines = lines;
                next_flush = Some(at + every);
            }
        }
    }
    if c.mock_flush.is_some() {
        mock_flush(lines - flushed_lines);
    }
    let secs = start.elapsed().as_secs_f64();
    let active = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    let per = |x: u64| if active > 0.0 { x as f64 / active } else { 0.0 };
    let (cpu_user, cpu_sys) = mmsg::self_cpu_seconds();
    println!(
        "{}",
        JsonLine::new()
            .str("tool", "nullrecv")
            .str("bind", &c.bind.to_string())
            .opt_int("core", c.core.map(|x| x as u64))
            .int("rcvbuf", rcvbuf as u64)
            .str(
                "rcvbuf_set_by",
                if c.rcvbuf == 0 {
                    "default"
                } else if forced {
                    "SO_RCVBUFFORCE"
                } else {
                    "SO_RCVBUF"
                }
            )
            .int("batch", c.batch as u64)
            .int("datagrams", dgrams)
            .int("lines", lines)
            .int("bytes", bytes)
            .int("truncated", truncated)
            .int("recvmmsg_batches", batches)
            .int("empty_polls", empty_polls)
            .num("seconds", secs)
            .num("active_seconds", active)
            .num("datagrams_per_s_active", per(dgrams))
            .num("lines_per_s_active", per(lines))
            .num("cpu_user_s", cpu_user)
            .num("cpu_sys_s", cpu_sys)
            .finish()
    );
    Ok(())
}

fn main() -> ExitCode {
    match config() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(c)) => match run(c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nullrecv: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("nullrecv: {e}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
