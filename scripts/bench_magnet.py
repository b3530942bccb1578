#!/usr/bin/python3
"""Magnet benchmark: Sluice against rqbit, from adding a magnet to the first verified byte.

Run through scripts/bench-magnet, which builds the release binary and enters a loopback-only
network namespace first. Six libtorrent seeders serve a cached multi-file torrent and announce it
to opentracker on loopback; the magnet names the info-hash and that tracker only (no x.pe, no
DHT, no LSD), so each client has to announce, connect to the peers the tracker returns, fetch
the info dictionary (BEP 9) and then the first piece of the largest file.

Each run starts a fresh server with an empty data dir and measures, from just before the add:
  metadata   when the add call returned with the file list (both APIs wait for the metadata)
  first byte when the first body byte of the largest file's HTTP stream arrived; both servers
             stream only pieces they verified, so this is the first verified byte
A first round that warms the seeders up is not counted; runs alternate the order of the clients. For Sluice the log's timestamps also give the tracker's
first answer, the first metadata peer connected, metadata complete and the first piece verified.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

from benchlib import MIB, LT_PEER, PYTHON, ROOT, Server, confined_to_loopback, http_call, log, parse_size
from benchlib import start_seeders as start_lt_seeders
from benchlib import stop_procs as stop

OPENTRACKER = "/usr/bin/opentracker"

TRACKER_IP, TRACKER_PORT = "127.0.0.65", 7070
SEEDERS = [f"127.0.0.{i}:6881" for i in range(66, 72)]
SLUICE_IP, RQBIT_IP = "127.0.0.72", "127.0.0.73"


def fixture(bench_dir, size, piece):
    """The cached torrent: (torrent path, data dir, summary)."""
    base = os.path.join(bench_dir, "magnet", f"payload-{size}-{piece}")
    done = os.path.join(base, "summary.json")
    if not os.path.exists(done):
        log(f"generating a {size / MIB:.0f} MiB torrent under {base} ...")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        out = subprocess.run(
            [PYTHON, LT_PEER, "make-torrent", "--dir", base, "--name", "payload", "--size", str(size),
             "--piece-size", str(piece), "--files", "4", "--seed", "7"],
            check=True, capture_output=True, text=True).stdout
        with open(done, "w") as f:
            f.write(out)
    with open(done) as f:
        summary = json.load(f)
    return summary["torrent"], summary["data"], summary


def first_byte(url, timeout):
    """Blocks until the first body byte of `url` arrives."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        if not resp.read(1):
            raise RuntimeError(f"empty body from {url}")


# ---- tracker and seeders ---------------------------------------------------------------------


def start_tracker(work, info_hash):
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "whitelist.txt"), "w") as f:
        f.write(info_hash + "\n")
    proc = subprocess.Popen([OPENTRACKER, "-i", TRACKER_IP, "-p", str(TRACKER_PORT), "-P", str(TRACKER_PORT),
                             "-d", work, "-w", "whitelist.txt"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def scrape_complete(info_hash):
    escaped = "".join(f"%{info_hash[i:i + 2]}" for i in range(0, 40, 2))
    try:
        _, body = http_call("GET", f"http://{TRACKER_IP}:{TRACKER_PORT}/scrape?info_hash={escaped}", timeout=2)
    except OSError:
        return 0
    m = re.search(rb"8:completei(\d+)e", body)
    return int(m.group(1)) if m else 0


def start_seeders(torrent, data, logs, tracker, rate):
    return start_lt_seeders([(e, torrent, data) for e in SEEDERS], logs, rate=rate, trackers=[tracker])


# ---- clients ---------------------------------------------------------------------------------


class Sluice(Server):
    name = "sluice"
    http = f"{SLUICE_IP}:8090"
    encryption = "allow"

    def command(self):
        return [self.binary, "serve", "--listen", self.http, "--peer-listen", f"{SLUICE_IP}:6881",
                "--data-dir", self.work, "--loopback-only", "--no-dht", "--no-lsd", "--encryption", self.encryption]

    def env(self):
        return dict(os.environ, SLUICE_LOG=os.environ.get("SLUICE_LOG", "sluice=info,warn"), NO_COLOR="1")

    def probe_url(self):
        return f"http://{self.http}/api/v1/torrents/0/files/0/stream/x"

    def add(self, magnet):
        """(stream URL of the largest file) once the metadata is known."""
        body = json.dumps({"magnet": magnet}).encode()
        deadline = time.monotonic() + 120
        while True:
            _, reply = http_call("POST", f"http://{self.http}/api/v1/torrents", body, "application/json", timeout=120)
            added = json.loads(reply)
            if not added.get("pending"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no metadata after 120 s")
        largest = max(added["files"], key=lambda f: f["length"])
        return f"http://{self.http}/api/v1/torrents/{added['info_hash']}/files/{largest['index']}/stream"


class Rqbit(Server):
    name = "rqbit"
    http = f"{RQBIT_IP}:3030"

    def command(self):
        return [self.binary, "--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward",
                "--disable-lsd", "--listen-ip", RQBIT_IP, "--listen-port", "4240",
                "--http-api-listen-addr", self.http,
                "server", "start", "--disable-persistence", os.path.join(self.work, "data")]

    def env(self):
        home = os.path.join(self.work, "home")
        os.makedirs(home, exist_ok=True)
        return dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_DATA_HOME=home,
                    RUST_LOG="info")

    def probe_url(self):
        return f"http://{self.http}/"

    def add(self, magnet):
        _, reply = http_call("POST", f"http://{self.http}/torrents?overwrite=true", magnet.encode(), timeout=120)
        added = json.loads(reply)
        ident = added["id"] if added.get("id") is not None else added["details"]["info_hash"]
        files = added["details"]["files"]
        largest = max(range(len(files)), key=lambda i: files[i]["length"])
        return f"http://{self.http}/torrents/{ident}/stream/{largest}"


# Sluice log lines that mark the phases (matched against the message text).
PHASES = [
    ("peers", "magnet: first peers learnt"),
    ("peer", "magnet: first metadata peer connected"),
    ("metadata", "metadata fetched"),
    ("piece", "first piece verified"),
]
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+)Z")


def sluice_phases(log_path, t0_wall):
    """Seconds from the add to each phase's first log line."""
    found = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = STAMP.match(line)
            if not m:
                continue
            for key, text in PHASES:
                if key not in found and text in line:
                    stamp = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
                    found[key] = stamp.timestamp() - t0_wall
    return found


def run_once(cls, binary, work, logs, tag, magnet, timeout):
    server = cls(binary, os.path.join(work, cls.name), os.path.join(logs, f"{cls.name}-{tag}.log"))
    result = {}
    try:
        server.start()
        t0_wall, t0 = time.time(), time.monotonic()
        url = server.add(magnet)
        result["metadata"] = time.monotonic() - t0
        first_byte(url, timeout)
        result["first_byte"] = time.monotonic() - t0
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        log(f"  {cls.name} failed: {e} (log: {server.log_path})")
        result["error"] = str(e)
    finally:
        server.stop()
    if cls is Sluice:
        result["phases"] = sluice_phases(server.log_path, t0_wall)
    return result


def fmt(v):
    return "-" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--rqbit", default=None, help="rqbit binary (9.1); without it the run is Sluice-only")
    ap.add_argument("--bench-dir", default=os.path.join(ROOT, ".bench"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="128MiB")
    ap.add_argument("--piece-size", default="1MiB")
    ap.add_argument("--seed-rate", type=int, default=1_500_000, help="each seeder's upload cap, bytes/s (0: none)")
    ap.add_argument("--clients", default="sluice,rqbit")
    ap.add_argument("--timeout", type=int, default=120, help="seconds one run may take")
    ap.add_argument("--sluice-encryption", choices=("allow", "prefer", "require", "off"), default="allow",
                    help="Sluice's peer encryption policy (default allow, Sluice's own default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    Sluice.encryption = args.sluice_encryption

    confined, interfaces = confined_to_loopback()
    if not confined:
        sys.exit(f"not in a loopback-only network namespace (interfaces: {', '.join(interfaces)}); "
                 "run scripts/bench-magnet")
    wanted = args.clients.split(",")
    clients = []
    if "sluice" in wanted:
        clients.append((Sluice, args.sluice))
    rqbit_version = None
    if "rqbit" in wanted and args.rqbit:
        rqbit_version = subprocess.run([args.rqbit, "--version"], capture_output=True, text=True).stdout.strip()
        clients.append((Rqbit, args.rqbit))
    elif "rqbit" in wanted:
        print("rqbit unavailable: no binary (cargo install rqbit --locked --version 9.1.0)")

    torrent, data, summary = fixture(args.bench_dir, parse_size(args.size), parse_size(args.piece_size))
    info_hash = summary["info_hash"]
    tracker = f"http://{TRACKER_IP}:{TRACKER_PORT}/announce"
    magnet = f"magnet:?xt=urn:btih:{info_hash}&tr={urllib.parse.quote(tracker, safe='')}"
    logs = os.path.join(args.bench_dir, "magnet", "logs")
    os.makedirs(logs, exist_ok=True)
    work = tempfile.mkdtemp(prefix="work-", dir=os.path.join(args.bench_dir, "magnet"))

    tracker_proc = start_tracker(os.path.join(work, "opentracker"), info_hash)
    seeders = []
    results = {cls.name: [] for cls, _ in clients}
    try:
        seeders = start_seeders(torrent, data, logs, tracker, args.seed_rate)
        deadline = time.monotonic() + 60
        while scrape_complete(info_hash) < len(SEEDERS):
            if time.monotonic() > deadline:
                sys.exit(f"the tracker counts {scrape_complete(info_hash)} of {len(SEEDERS)} seeders after 60 s")
            time.sleep(0.2)
        # Freshly started seeders answer the very first connections slowly (0.5-1.2 s more
        # for either client): one round that is not counted.
        for cls, binary in clients:
            r = run_once(cls, binary, work, logs, "warmup", magnet, args.timeout)
            log(f"warm-up {cls.name:>6}: first byte {fmt(r.get('first_byte'))} s (not counted)")
        for run in range(args.runs):
            ordered = clients if run % 2 == 0 else list(reversed(clients))
            for cls, binary in ordered:
                r = run_once(cls, binary, work, logs, f"run{run}", magnet, args.timeout)
                results[cls.name].append(r)
                phases = r.get("phases") or {}
                extra = "".join(f" {k} {fmt(phases.get(k))}" for k, _ in PHASES) if phases else ""
                log(f"run {run + 1} {cls.name:>6}: metadata {fmt(r.get('metadata'))} s, "
                    f"first byte {fmt(r.get('first_byte'))} s{extra}")
    finally:
        stop(seeders)
        tracker_proc.kill()
        tracker_proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    largest = max(f["size"] for f in summary["files"])
    print(f"\n{len(SEEDERS)} libtorrent seeders (cap {args.seed_rate / 1e6:.1f} MB/s each) found only through "
          f"opentracker; {summary['total_size'] / MIB:.0f} MiB in {len(summary['files'])} files, "
          f"{summary['piece_length'] // 1024} KiB pieces, largest file {largest / MIB:.1f} MiB; "
          f"rqbit: {rqbit_version or 'not run'}; Sluice encryption: {args.sluice_encryption}")
    print("seconds from adding the magnet; first byte = first verified byte of the largest file over HTTP\n")
    print(f"{'client':<8}{'run':>4}{'metadata':>10}{'first byte':>12}   sluice phases (peers learnt/peer connected/metadata/piece verified)")
    medians = {}
    for name, runs in results.items():
        for i, r in enumerate(runs):
            ph = r.get("phases") or {}
            phases = " / ".join(fmt(ph.get(k)) for k, _ in PHASES) if name == "sluice" else ""
            print(f"{name:<8}{i + 1:>4}{fmt(r.get('metadata')):>10}{fmt(r.get('first_byte')):>12}   {phases}")
        ok = [r for r in runs if "first_byte" in r]
        failed = len(runs) - len(ok)
        med_meta = statistics.median(r["metadata"] for r in ok) if ok else None
        med_first = statistics.median(r["first_byte"] for r in ok) if ok else None
        medians[name] = (med_meta, med_first)
        print(f"{name:<8}{'med':>4}{fmt(med_meta):>10}{fmt(med_first):>12}   "
              + (f"({failed} failed)" if failed else ""))
    s, r = medians.get("sluice"), medians.get("rqbit")
    if s and r and s[1] and r[1]:
        ratio = s[1] / r[1]
        print(f"\nSluice/rqbit first byte (medians): {ratio:.2f}  metadata: {s[0] / r[0]:.2f}  "
              f"target <= 1.00: {'ok' if ratio <= 1.0 else 'MISS'}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
