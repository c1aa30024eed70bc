#!/usr/bin/env python3
"""RSS per idle series: starts target/release/kstatsd, records its RSS when empty, sends N
distinct counters once (20 lines per datagram), waits a few 1 s flushes until they are all
known and idle, and prints (RSS now - RSS empty) / series, with the series count taken from
the daemon's own statsd.numStats. Usage: perf/idle_rss.py [N] [--name-len L] (default 200000
series named idle.series.k0000000, 20 bytes; --name-len pads each name to L bytes)."""
import argparse, json, re, socket, subprocess, sys, time

args = argparse.ArgumentParser()
args.add_argument("n", nargs="?", type=int, default=200_000)
args.add_argument("--name-len", type=int, default=20)
args = args.parse_args()
N = args.n
PAD = "x" * max(0, args.name_len - 20)
BIN = "target/release/kstatsd"


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def main():
    p = subprocess.Popen([BIN, "--udp", "127.0.0.1:0", "--admin", "off", "--flush-interval", "1s", "--console", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addr = None
    for line in p.stderr:
        m = re.search(r"udp listening on (\S+)", line)
        if m:
            host, port = m.group(1).rsplit(":", 1)
            addr = (host, int(port))
        if line.strip().endswith("ready"):
            break
    flushes = iter(p.stdout)
    next(flushes)  # one flush: the empty daemon has settled
    empty = rss_kib(p.pid)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    batch = []
    for i in range(N):
        batch.append(f"idle.series.{PAD}k{i:07d}:1|c")
        if len(batch) == 20:
            s.sendto("\n".join(batch).encode(), addr)
            batch = []
            if i % 2000 == 0:
                time.sleep(0.001)  # stay under the receive buffer
    for _ in range(4):  # the interval with the traffic, then idle ones
        flush = json.loads(next(flushes))
    series = flush["gauges"]["statsd.numStats"]
    now = rss_kib(p.pid)
    p.terminate()
    p.wait()
    print(f"{series:.0f} series known and idle: RSS {now} KiB, empty {empty} KiB, "
          f"{(now - empty) * 1024 / series:.0f} bytes per idle series")


main()
