//! The arithmetic: one `/containers/{id}/stats?stream=false` answer (and the container's
//! `State.StartedAt`) → the per-container metrics of `docker.md`, with the maths `docker stats`
//! uses. Pure functions over parsed JSON; run on the poller's worker threads.
//!
//! - CPU % = Δ`total_usage` / Δ`system_cpu_usage` × online CPUs × 100. The baseline is the
//!   daemon's `precpu_stats` when it has one; Podman sends it empty, so the caller keeps the
//!   previous [`CpuSample`] of each container and passes it in. No baseline (first Podman poll),
//!   or a counter that went backwards (restart): no `cpu.percent` this time.
//! - memory used = `usage` − `total_inactive_file` (cgroup v1) or − `inactive_file` (v2), as
//!   `docker stats` shows it; `percent` = used / `limit` × 100; `cache` = `total_cache` (v1),
//!   `cache`, or `file` (v2); `active` = usage − cache.
//! - network: each field summed over the interfaces of `networks` (or the single `network` of
//!   pre-1.21 daemons); absent when the container has no network (`--network none`).
//! - block I/O: `io_service_bytes_recursive` summed by op (`Read`/`Write`, any case).
//!
//! A field the answer does not carry yields no metric (as docker-stats-to-backstop skipped nil
//! values) rather than a made-up zero.

use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

/// The CPU counters of one sample, kept between polls for Podman.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSample {
    pub total: f64,
    pub system: f64,
}

fn at<'v, 'a>(v: &'v Value<'a>, path: &[&str]) -> Option<&'v Value<'a>> {
    let mut v = v;
    for k in path {
        v = v.get(*k)?;
    }
    Some(v)
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    at(v, path)?.cast_f64().filter(|x| x.is_finite())
}

/// Whether the answer is a real sample: a container stopped between list and stats gets a
/// zeroed answer (`read` = 0001-01-01, no `system_cpu_usage`).
pub fn is_live(stats: &Value) -> bool {
    let read_ok = stats.get_str("read").map_or(true, |r| !r.starts_with("0001-"));
    read_ok && num(stats, &["cpu_stats", "system_cpu_usage"]).is_some_and(|s| s > 0.0)
}

/// Appends `(suffix, value)` for every metric `stats` yields; returns this sample's CPU counters
/// (the next poll's baseline when the daemon sends no `precpu_stats`). `uptime` is seconds since
/// `State.StartedAt`, when known.
pub fn container_metrics(
    stats: &Value,
    previous: Option<CpuSample>,
    uptime: Option<f64>,
    out: &mut Vec<(&'static str, f64)>,
) -> Option<CpuSample> {
    let mut push = |k: &'static str, v: Option<f64>| {
        if let Some(v) = v {
            out.push((k, v));
        }
    };
    // CPU
    let cpu = |k: &[&str]| num(stats, &[&["cpu_stats"], k].concat());
    let total = cpu(&["cpu_usage", "total_usage"]);
    let system = cpu(&["system_cpu_usage"]);
    push("cpu.total", total);
    push("cpu.system", system);
    push("cpu.kernel", cpu(&["cpu_usage", "usage_in_kernelmode"]));
    push("cpu.user", cpu(&["cpu_usage", "usage_in_usermode"]));
    let now = match (total, system) {
        (Some(total), Some(system)) => Some(CpuSample { total, system }),
        _ => None,
    };
    let pre = CpuSample {
        total: num(stats, &["precpu_stats", "cpu_usage", "total_usage"]).unwrap_or(0.0),
        system: num(stats, &["precpu_stats", "system_cpu_usage"]).unwrap_or(0.0),
    };
    let baseline = if pre.system > 0.0 { Some(pre) } else { previous };
    if let (Some(now), Some(base)) = (now, baseline) {
        let (d_total, d_system) = (now.total - base.total, now.system - base.system);
        if d_system > 0.0 && d_total >= 0.0 {
            let online = cpu(&["online_cpus"]).filter(|n| *n > 0.0).or_else(|| {
                let per = at(stats, &["cpu_stats", "cpu_usage", "percpu_usage"])?.as_array()?;
                (!per.is_empty()).then_some(per.len() as f64)
            });
            push("cpu.percent", Some(d_total / d_system * online.unwrap_or(1.0) * 100.0));
        }
    }
    // Memory
    let usage = num(stats, &["memory_stats", "usage"]);
    let mem_stat = |k: &str| num(stats, &["memory_stats", "stats", k]);
    let cache = mem_stat("total_cache").or_else(|| mem_stat("cache")).or_else(|| mem_stat("file"));
    let limit = num(stats, &["memory_stats", "limit"]);
    push("memory.usage", usage);
    push("memory.cache", cache);
    push("memory.active", usage.zip(cache).map(|(u, c)| (u - c).max(0.0)));
    push("memory.max_usage", num(stats, &["memory_stats", "max_usage"]));
    push("memory.limit", limit);
    if let Some(usage) = usage {
        let inactive = mem_stat("total_inactive_file").or_else(|| mem_stat("inactive_file"));
        let used = match inactive {
            Some(i) if i < usage => usage - i,
            _ => usage,
        };
        push("memory.used", Some(used));
        push("memory.percent", limit.filter(|l| *l > 0.0).map(|l| used / l * 100.0));
    }
    // Network
    const NET: [(&str, &str); 8] = [
        ("rx_bytes", "network.rx_bytes"),
        ("rx_packets", "network.rx_packets"),
        ("rx_errors", "network.rx_errors"),
        ("rx_dropped", "network.rx_dropped"),
        ("tx_bytes", "network.tx_bytes"),
        ("tx_packets", "network.tx_packets"),
        ("tx_errors", "network.tx_errors"),
        ("tx_dropped", "network.tx_dropped"),
    ];
    let interfaces: Vec<&Value> =
        match (stats.get("networks").and_then(|n| n.as_object()), stats.get("network")) {
            (Some(ifs), _) => ifs.values().collect(),
            (None, Some(single)) if single.is_object() => vec![single],
            _ => Vec::new(),
        };
    if !interfaces.is_empty() {
        for (field, name) in NET {
            push(name, Some(interfaces.iter().filter_map(|i| num(i, &[field])).sum()));
        }
    }
    // Block I/O
    if let Some(stats_obj) = stats.get("blkio_stats").filter(|b| b.is_object()) {
        let (mut read, mut write) = (0.0, 0.0);
        if let Some(ops) = stats_obj.get("io_service_bytes_recursive").and_then(|a| a.as_array()) {
            for op in ops {
                let v = num(op, &["value"]).unwrap_or(0.0);
                match op.get_str("op") {
                    Some(o) if o.eq_ignore_ascii_case("read") => read += v,
                    Some(o) if o.eq_ignore_ascii_case("write") => write += v,
                    _ => {}
                }
            }
        }
        push("blkio.read_bytes", Some(read));
        push("blkio.write_bytes", Some(write));
    }
    push("pids", num(stats, &["pids_stats", "current"]));
    push("uptime", uptime);
    now
}

/// Seconds since the Unix epoch of an RFC 3339 time as the Engine writes it
/// (`2026-11-22T01:09:21.623148815Z`, or with a `+hh:mm` offset). `None` for the zero time
/// (`0001-01-01…`) and anything unparsable.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, sec) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if y < 1970 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/docker/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn metrics(
        json: &mut [u8],
        previous: Option<CpuSample>,
    ) -> (BTreeMap<&'static str, f64>, Option<CpuSample>) {
        let v = simd_json::to_borrowed_value(json).unwrap();
        let mut out = Vec::new();
        let sample = container_metrics(&v, previous, Some(12.5), &mut out);
        let map: BTreeMap<_, _> = out.iter().copied().collect();
        assert_eq!(map.len(), out.len(), "no metric twice: {out:?}");
        (map, sample)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// Recorded from Debian's docker.io 20.10 on a cgroup v1 host: a busy container
    /// (`while :; do :; done`) on 2 CPUs, `--network none`.
    #[test]
    fn cgroup_v1_recorded_answer() {
        let (m, sample) = metrics(&mut fixture("stats_cgroup_v1.json"), None);
        assert_eq!(m["cpu.total"], 7282796072.0);
        assert_eq!(m["cpu.system"], 8451840000000.0);
        assert_eq!(m["cpu.kernel"], 10000000.0);
        assert_eq!(m["cpu.user"], 7270000000.0);
        // (7282796072 − 6320287023) / (8451840000000 − 8449840000000) × 2 × 100
        assert!(close(m["cpu.percent"], 96.2509049), "{}", m["cpu.percent"]);
        assert_eq!(m["memory.usage"], 593920.0);
        assert_eq!(m["memory.cache"], 0.0);
        assert_eq!(m["memory.active"], 593920.0);
        assert_eq!(m["memory.max_usage"], 4083712.0);
        assert_eq!(m["memory.limit"], 25276063744.0);
        assert_eq!(m["memory.used"], 593920.0, "total_inactive_file is 0");
        assert!(close(m["memory.percent"], 593920.0 / 25276063744.0 * 100.0));
        assert!(!m.contains_key("network.rx_bytes"), "--network none: no interfaces, no network metrics");
        assert_eq!((m["blkio.read_bytes"], m["blkio.write_bytes"]), (0.0, 0.0));
        assert_eq!(m["pids"], 1.0);
        assert_eq!(m["uptime"], 12.5);
        assert_eq!(sample, Some(CpuSample { total: 7282796072.0, system: 8451840000000.0 }));
    }

    /// A cgroup v2 answer (Docker 24 on a unified hierarchy): no `max_usage`, memory stats keyed
    /// `inactive_file`/`file`, no `percpu_usage`, two interfaces, blkio ops in lower case.
    #[test]
    fn cgroup_v2_answer() {
        let (m, _) = metrics(&mut fixture("stats_cgroup_v2.json"), None);
        // (2_000_000_000 − 1_500_000_000) / (20_000_000_000 − 19_000_000_000) × 4 × 100
        assert!(close(m["cpu.percent"], 200.0), "{}", m["cpu.percent"]);
        assert!(!m.contains_key("memory.max_usage"));
        assert_eq!(m["memory.usage"], 10_485_760.0);
        assert_eq!(m["memory.cache"], 4_194_304.0, "v2: `file`");
        assert_eq!(m["memory.active"], 10_485_760.0 - 4_194_304.0);
        assert_eq!(m["memory.used"], 10_485_760.0 - 2_097_152.0, "usage − inactive_file");
        assert!(close(m["memory.percent"], (10_485_760.0 - 2_097_152.0) / 1_073_741_824.0 * 100.0));
        assert_eq!(m["network.rx_bytes"], 1000.0 + 24.0);
        assert_eq!(m["network.tx_packets"], 7.0 + 1.0);
        assert_eq!(m["network.rx_dropped"], 3.0);
        assert_eq!(m["blkio.read_bytes"], 8192.0 + 4096.0);
        assert_eq!(m["blkio.write_bytes"], 512.0);
        assert_eq!(m["pids"], 5.0);
    }

    /// Podman's compat API: empty `precpu_stats`, null `memory_stats.stats`. The first poll has
    /// no CPU % (no baseline); the second uses the previous sample kept by the caller.
    #[test]
    fn podman_answers_use_the_previous_sample() {
        let (first, sample) = metrics(&mut fixture("stats_podman_1.json"), None);
        assert!(!first.contains_key("cpu.percent"), "no baseline yet");
        assert_eq!(first["memory.used"], first["memory.usage"], "no inactive_file to subtract");
        assert!(!first.contains_key("memory.cache") && !first.contains_key("memory.active"));
        let (second, _) = metrics(&mut fixture("stats_podman_2.json"), sample);
        // (1_250_000_000 − 1_000_000_000) / (60_000_000_000 − 59_000_000_000) × 1 (online_cpus 0, 1 percpu) × 100
        assert!(close(second["cpu.percent"], 25.0), "{}", second["cpu.percent"]);
        assert_eq!(second["network.rx_bytes"], 2048.0);
    }

    #[test]
    fn a_counter_that_went_backwards_gives_no_percent_and_zeroed_answers_are_not_live() {
        let mut json = fixture("stats_podman_2.json");
        let later = CpuSample { total: 9e18, system: 1.0 };
        let (m, _) = metrics(&mut json, Some(later));
        assert!(!m.contains_key("cpu.percent"));
        let mut zero = br#"{"read":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":0}},"memory_stats":{}}"#.to_vec();
        assert!(!is_live(&simd_json::to_borrowed_value(&mut zero).unwrap()));
        assert!(is_live(&simd_json::to_borrowed_value(&mut fixture("stats_cgroup_v1.json")).unwrap()));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        let t = parse_rfc3339("2026-11-22T01:09:21.623148815Z").unwrap();
        assert!(close(t, 1_795_309_761.623_149), "{t}");
        assert_eq!(parse_rfc3339("2026-11-22T03:09:21+02:00"), parse_rfc3339("2026-11-22T01:09:21Z"));
        for bad in ["0001-01-01T00:00:00Z", "", "yesterday", "2026-13-01T00:00:00Z", "2026-11-22T01:09:21"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
