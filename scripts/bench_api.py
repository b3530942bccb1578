#!/usr/bin/python3
"""API benchmark: latency and throughput of the status routes while streams play.

Run through scripts/bench-api, which builds the release binary, installs wrk and enters a
loopback-only network namespace first. One `sluice serve` knows --torrents torrents, all added
through /api/v1: --streams of them are real (one libtorrent seeder each, capped at --seed-rate)
and each is read by a client pacing itself at --stream-rate; the rest are generated .torrent
files nobody seeds (series-like: 1 to 20 files each), which go idle after the disconnect
timeout (set to --idle-timeout for the run) as a real library's do.

Each round measures, for --duration seconds each:
  streams only              the streams' achieved rates with no API load
  POST /torrents list       TorrServer's list (every torrent's status)
  POST /cache get           TorrServer's cache, cycling over the streamed torrents' hashes
  GET /api/v1/torrents      Sluice's own list
Each route is loaded twice with wrk:
  polling   --poll-clients connections, each sending a request about --poll-interval ms
            (0.5-1.5x, random) after the previous answer: apps polling far more often than
            Lampa or the web UI do (TorrServer clients poll /cache about once a second; the
            issue asks that /cache bear polling every 100 ms). The p99 target is judged here.
  flat out  --connections connections on --threads threads, closed loop, each sending its next
            request as soon as the previous answer arrived: the throughput the server can give
            while the streams play. On 2 shared cores its latency is mostly queueing behind the
            other connections; it is printed, not judged.
Latency is wrk's, from sending the request to the last byte of the answer. Stream rates are bytes a reader took in over the window; "lag" is how
far the worst reader fell behind its schedule (it catches up when the bytes come).
"""

import argparse
import hashlib
import http.client
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import LT_PEER, MIB, PYTHON, ROOT, Server, confined_to_loopback, http_call, log, parse_size
from benchlib import start_seeders, stop_procs

SLUICE_IP = "127.0.100.1"
SEEDER_IPS = [f"127.0.100.{10 + i}" for i in range(64)]
LUA = os.path.join(ROOT, "scripts", "bench_api.lua")
TARGET_P99_MS = 5.0
KEEP_RATE = 0.95


# ---- fixture ---------------------------------------------------------------------------------


def bencode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"


def filler_torrent(i):
    """A .torrent nobody seeds: a 'season' of 1 to 20 episodes of 50 MiB, 4 MiB pieces."""
    piece = 4 * MIB
    episodes = i % 20 + 1
    files = [{"length": 50 * MIB, "path": ["Season 1", f"Episode {e + 1:02d}.mkv"]} for e in range(episodes)]
    total = 50 * MIB * episodes
    count = (total + piece - 1) // piece
    pieces = b"".join(hashlib.sha1(f"{i}/{p}".encode()).digest() for p in range(count))
    info = {"name": f"Bench Show {i:03d}", "piece length": piece, "pieces": pieces, "files": files}
    return bencode({"info": info, "created by": "sluice bench_api.py"})


def stream_fixture(bench_dir, count, size):
    """The streamed torrents, cached: [(torrent path, data dir)]."""
    base = os.path.join(bench_dir, "api", f"streams-{size}")
    out = []
    for i in range(count):
        name = f"stream{i}"
        done = os.path.join(base, name + ".done")
        if not os.path.exists(done):
            log(f"generating {name} ({size / MIB:.0f} MiB) under {base} ...")
            subprocess.run([PYTHON, LT_PEER, "make-torrent", "--dir", base, "--name", name, "--size", str(size),
                            "--files", "1", "--piece-size", "1MiB", "--seed", str(1000 + i)],
                           check=True, stdout=subprocess.DEVNULL)
            open(done, "w").close()
        out.append((os.path.join(base, name + ".torrent"), os.path.join(base, "data")))
    return out


# ---- the server and its streams --------------------------------------------------------------


class Sluice(Server):
    name = "sluice"
    http = f"{SLUICE_IP}:8090"

    def command(self):
        return [self.binary, "serve", "--listen", self.http, "--peer-listen", f"{SLUICE_IP}:6881",
                "--data-dir", self.work, "--loopback-only", "--no-dht", "--no-lsd"]

    def env(self):
        return dict(os.environ, SLUICE_LOG=os.environ.get("SLUICE_LOG", "warn"), NO_COLOR="1")

    def probe_url(self):
        return f"http://{self.http}/echo"

    def url(self, path):
        return f"http://{self.http}{path}"

    def add(self, torrent, peers=()):
        _, body = http_call("POST", self.url("/api/v1/torrents"), torrent)
        info_hash = json.loads(body)["info_hash"]
        if peers:
            http_call("POST", self.url(f"/api/v1/torrents/{info_hash}/peers"), json.dumps(list(peers)).encode(),
                      "application/json")
        return info_hash

    def states(self):
        _, body = http_call("GET", self.url("/api/v1/torrents"))
        counts = {}
        for t in json.loads(body)["torrents"]:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        return counts


class Reader(threading.Thread):
    """Reads one stream at `rate` bytes/s, from the start again at its end, reconnecting on errors."""

    CHUNK = 64 * 1024

    def __init__(self, host, port, path, rate):
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.rate = host, port, path, rate
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.total = 0
        self.errors = 0
        self.worst_lag = 0.0
        self.rebase()

    def rebase(self):
        """Starts the schedule anew (after warm-up)."""
        with self.lock:
            self.t0, self.scheduled = time.monotonic(), 0

    def sample(self):
        """(bytes so far, worst lag since the last sample); resets the worst lag."""
        with self.lock:
            sample = self.total, self.worst_lag
            self.worst_lag = 0.0
        return sample

    def run(self):
        pos = 0
        while not self.stopping.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.connect()
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.CHUNK)
                conn.request("GET", self.path, headers={"Range": f"bytes={pos}-"})
                resp = conn.getresponse()
                if resp.status not in (200, 206):
                    raise http.client.HTTPException(f"status {resp.status}")
                while not self.stopping.is_set():
                    with self.lock:
                        ahead = self.scheduled - self.rate * (time.monotonic() - self.t0)
                    if ahead > 0:
                        time.sleep(ahead / self.rate)
                        continue
                    data = resp.read1(self.CHUNK)
                    if not data:
                        pos = 0
                        break
                    pos += len(data)
                    with self.lock:
                        self.total += len(data)
                        self.scheduled += len(data)
                        lag = (self.rate * (time.monotonic() - self.t0) - self.scheduled) / self.rate
                        self.worst_lag = max(self.worst_lag, lag)
            except (OSError, http.client.HTTPException) as e:
                self.errors += 1
                if not self.stopping.is_set():
                    log(f"  stream {self.path}: {e}; reconnecting")
                    time.sleep(0.5)
            finally:
                conn.close()


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_ticks():
    """(steal, total) CPU ticks of the whole machine so far: time the hypervisor gave to others."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def window(readers, pid, seconds, load=None):
    """Figures over `seconds`, or while `load()` runs: {rates (per stream, B/s), lag, cpu (server
    CPU seconds per second), load (what `load()` returned)}."""
    before = [r.sample()[0] for r in readers]
    cpu = cpu_seconds(pid)
    steal = steal_ticks()
    t = time.monotonic()
    result = load() if load else time.sleep(seconds)
    elapsed = time.monotonic() - t
    cpu = cpu_seconds(pid) - cpu
    steal_end = steal_ticks()
    stolen = (steal_end[0] - steal[0]) / max(1, steal_end[1] - steal[1])
    after = [r.sample() for r in readers]
    rates = [(a[0] - b) / elapsed for a, b in zip(after, before)]
    return {"rates": rates, "lag": max(a[1] for a in after), "cpu": cpu / elapsed, "cpu_s": cpu, "steal": stolen,
            "wrk": result}


# ---- load ------------------------------------------------------------------------------------


def wrk(wrk_bin, url, bodies_path, args, paced):
    env = dict(os.environ, BENCH_API_BODIES=bodies_path or "",
               BENCH_API_DELAY_MS=str(args.poll_interval if paced else 0))
    connections = args.poll_clients if paced else args.connections
    cmd = [wrk_bin, "-t", str(args.threads), "-c", str(connections), "-d", f"{args.duration}s",
           "--timeout", "10s", "-s", LUA, url]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_API "):
            return json.loads(line[len("BENCH_API "):])
    raise RuntimeError(f"wrk gave no summary (rc {p.returncode}): {p.stdout[-800:]} {p.stderr[-800:]}")


def machine():
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return os.cpu_count(), load, model


def fmt_ms(us):
    return f"{us / 1000:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--bench-dir", default=os.path.join(ROOT, ".bench"))
    ap.add_argument("--torrents", type=int, default=200, help="torrents known (default 200)")
    ap.add_argument("--streams", type=int, default=10, help="of which streamed (default 10)")
    ap.add_argument("--stream-rate", type=parse_size, default=1_000_000, help="bytes/s per stream (default 1 MB/s)")
    ap.add_argument("--stream-size", default="64MiB", help="size of each streamed torrent (default 64MiB)")
    ap.add_argument("--seed-rate", type=parse_size, default=2_000_000,
                    help="each seeder's upload cap, bytes/s (default 2 MB/s; 0: none)")
    ap.add_argument("--idle-timeout", type=int, default=5, help="disconnect_timeout for the run, s (default 5)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per window (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all windows (default 3)")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (default 4)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--poll-clients", type=int, default=10, help="polling connections (default 10)")
    ap.add_argument("--poll-interval", type=int, default=100,
                    help="ms each polling connection waits between requests (default 100)")
    ap.add_argument("--modes", default="polling,flat", help="which loads (default polling,flat)")
    ap.add_argument("--routes", default="list,cache,v1", help="which routes (default list,cache,v1)")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args()
    if not 0 < args.streams <= min(args.torrents, len(SEEDER_IPS)):
        sys.exit(f"--streams must be 1..{min(args.torrents, len(SEEDER_IPS))}")
    confined, interfaces = confined_to_loopback()
    if not confined:
        sys.exit(f"not in a loopback-only network namespace (interfaces: {', '.join(interfaces)}); "
                 "run scripts/bench-api")
    if not os.access(args.wrk, os.X_OK):
        sys.exit(f"no wrk at {args.wrk} (apt-get install wrk)")

    cpus, load_start, model = machine()
    fixture = stream_fixture(args.bench_dir, args.streams, parse_size(args.stream_size))
    logs = os.path.join(args.bench_dir, "api", "logs")
    os.makedirs(logs, exist_ok=True)
    work = tempfile.mkdtemp(prefix="work-", dir=os.path.join(args.bench_dir, "api"))
    endpoints = [f"{SEEDER_IPS[i]}:6881" for i in range(args.streams)]
    seeders = []
    readers = []
    server = Sluice(args.sluice, os.path.join(work, "sluice"), os.path.join(logs, "sluice.log"))
    results = []
    try:
        seeders = start_seeders([(e, t, d) for e, (t, d) in zip(endpoints, fixture)], logs, rate=args.seed_rate)
        server.start()
        http_call("PATCH", server.url("/api/v1/settings"), json.dumps({"disconnect_timeout": args.idle_timeout})
                  .encode(), "application/json")
        streamed = []
        for endpoint, (torrent, _) in zip(endpoints, fixture):
            with open(torrent, "rb") as f:
                streamed.append(server.add(f.read(), [endpoint]))
        t = time.monotonic()
        for i in range(args.torrents - args.streams):
            server.add(filler_torrent(i))
        log(f"added {args.torrents} torrents ({args.torrents - args.streams} through /api/v1 in "
            f"{time.monotonic() - t:.1f} s)")
        host, port = SLUICE_IP, 8090
        readers = [Reader(host, port, f"/api/v1/torrents/{h}/files/0/stream", args.stream_rate) for h in streamed]
        for r in readers:
            r.start()
        # Warm-up: the streams get going, the unstreamed torrents go idle.
        deadline = time.monotonic() + args.idle_timeout + 60
        while True:
            time.sleep(1)
            states = server.states()
            moving = all(r.total > 2 * args.stream_rate for r in readers)
            active = sum(n for state, n in states.items() if state != "closed")
            if (moving and active <= args.streams) or time.monotonic() > deadline:
                break
        log(f"warm-up done: torrent states {states}")
        for r in readers:
            r.rebase()

        bench = os.path.join(work, "bodies")
        os.makedirs(bench)
        routes = {
            "list": ("POST /torrents list", "/torrents", ['{"action":"list"}']),
            "cache": ("POST /cache get", "/cache", [json.dumps({"action": "get", "hash": h}) for h in streamed]),
            "v1": ("GET /api/v1/torrents", "/api/v1/torrents", None),
        }
        chosen = [routes[k] for k in args.routes.split(",")]
        for label, path, bodies in chosen:
            body = bodies[0].encode() if bodies else None
            status, reply = http_call("POST" if body else "GET", server.url(path), body, "application/json")
            log(f"{label}: {status}, {len(reply)} bytes")
        for rnd in range(args.rounds):
            w = window(readers, server.proc.pid, args.duration)
            results.append(dict(w, round=rnd + 1, route="streams only", mode=""))
            log(f"round {rnd + 1} streams only: min {min(w['rates']) / 1e6:.2f} MB/s, worst lag {w['lag']:.2f} s")
            for (label, path, bodies), mode in itertools.product(chosen, args.modes.split(",")):
                bodies_path = None
                if bodies:
                    bodies_path = os.path.join(bench, path.strip("/").replace("/", "_") + ".txt")
                    with open(bodies_path, "w") as f:
                        f.write("\n".join(bodies) + "\n")
                paced = mode == "polling"
                w = window(readers, server.proc.pid, args.duration,
                           lambda: wrk(args.wrk, server.url(path), bodies_path, args, paced))
                results.append(dict(w, round=rnd + 1, route=label, mode=mode))
                log(f"round {rnd + 1} {label} {mode}: "
                    f"{w['wrk']['requests'] / (w['wrk']['duration_us'] / 1e6):.0f} req/s, "
                    f"p99 {fmt_ms(w['wrk']['p99_us'])} ms; streams min {min(w['rates']) / 1e6:.2f} MB/s")
        rss = server.peak_rss()
    finally:
        for r in readers:
            r.stopping.set()
        server.stop()
        stop_procs(seeders)
        shutil.rmtree(work, ignore_errors=True)
    _, load_end, _ = machine()
    report(results, args, (cpus, load_start, load_end, model), rss, sum(r.errors for r in readers))
    if args.json:
        print(json.dumps(results, indent=2))


def report(results, args, host, rss, stream_errors):
    cpus, load_start, load_end, model = host
    print(f"\nmachine: {cpus} CPUs ({model}), load average {load_start} at start, {load_end} at end")
    print(f"sluice serve (release): {args.torrents} torrents known, {args.streams} streamed at "
          f"{args.stream_rate / 1e6:.2f} MB/s each from libtorrent seeders capped at {args.seed_rate / 1e6:.1f} MB/s; "
          f"wrk polling: {args.poll_clients} connections each every {args.poll_interval} ms; flat out: "
          f"{args.connections} connections / {args.threads} thread(s), closed loop; {args.duration} s windows"
          + (f"; peak RSS {rss / MIB:.0f} MiB" if rss else ""))
    print(f"target: p99 < {TARGET_P99_MS:.0f} ms under polling while every stream keeps >= {KEEP_RATE:.0%} of its "
          "rate (flat-out latency is shown, not judged)\n")
    print("cpu % = the server's CPU over the window (100 = one core); us/req = that CPU per request; steal % =\n"
          "the machine's CPU time the hypervisor gave to other guests (latency outliers follow it)\n")
    print(f"{'route':<22}{'load':<9}{'rnd':>4}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errs':>6}"
          f"{'resp B':>9}{'cpu %':>7}{'us/req':>8}{'stream MB/s min/mean':>22}{'lag s':>7}{'steal %':>8}")
    for r in results:
        rates = r["rates"]
        row = f"{r['route']:<22}{r['mode']:<9}{r['round']:>4}"
        w = r.get("wrk")
        if w:
            errors = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["status_errors"] + w["timeouts"]
            row += (f"{w['requests'] / (w['duration_us'] / 1e6):>9.0f}{fmt_ms(w['p50_us']):>8}{fmt_ms(w['p90_us']):>8}"
                    f"{fmt_ms(w['p99_us']):>8}{fmt_ms(w['max_us']):>8}{errors:>6}{w['bytes'] // max(1, w['requests']):>9}"
                    f"{r['cpu'] * 100:>7.0f}{r['cpu_s'] * 1e6 / max(1, w['requests']):>8.0f}")
        else:
            row += f"{'-':>9}{'-':>8}{'-':>8}{'-':>8}{'-':>8}{'-':>6}{'-':>9}{r['cpu'] * 100:>7.0f}{'-':>8}"
        row += f"{min(rates) / 1e6:>15.2f} / {statistics.mean(rates) / 1e6:.2f}{r['lag']:>7.2f}{r['steal'] * 100:>8.1f}"
        print(row)
    print("\nsummary over rounds: median (min-max); the target is judged on the median p99")
    misses = 0
    for route, mode in dict.fromkeys((r["route"], r["mode"]) for r in results):
        rows = [r for r in results if r["route"] == route and r["mode"] == mode]
        mins = [min(r["rates"]) for r in rows]
        kept = all(m >= KEEP_RATE * args.stream_rate for m in mins)
        line = f"  {route:<22}{mode:<9}"
        ok = kept
        if rows[0].get("wrk"):
            rps = [r["wrk"]["requests"] / (r["wrk"]["duration_us"] / 1e6) for r in rows]
            p99 = [r["wrk"]["p99_us"] / 1000 for r in rows]
            ok = ok and (mode != "polling" or statistics.median(p99) < TARGET_P99_MS)
            cost = [r["cpu_s"] * 1e6 / max(1, r["wrk"]["requests"]) for r in rows]
            line += (f"{statistics.median(rps):.0f} req/s ({min(rps):.0f}-{max(rps):.0f}), "
                     f"p99 {statistics.median(p99):.2f} ms ({min(p99):.2f}-{max(p99):.2f}), "
                     f"{statistics.median(cost):.0f} us CPU/req ({min(cost):.0f}-{max(cost):.0f}), ")
        line += f"slowest stream {statistics.median(mins) / 1e6:.2f} MB/s ({min(mins) / 1e6:.2f}-{max(mins) / 1e6:.2f})"
        misses += not ok
        print(line + ("  ok" if ok else "  MISS"))
    if stream_errors:
        print(f"stream reconnects: {stream_errors}")
    print(f"targets missed: {misses}")


if __name__ == "__main__":
    main()
