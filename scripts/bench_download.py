#!/usr/bin/python3
"""Download benchmark: Sluice against libtorrent, fetching the same torrent from the same seeder.

Run through scripts/bench-download, which builds the release binary and enters a loopback-only
network namespace first. One libtorrent seeder serves a cached pseudo-random torrent; each client
downloads it N times (alternating, so neither always runs on a warmer machine) into a fresh
directory. Each downloader is measured as a whole process: wall time, user+sys CPU and peak RSS
from wait4(2).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import LT_PEER, MIB, PYTHON, ROOT, parse_size

GIB = 1 << 30

SEEDER = "127.0.0.2:6881"
SLUICE_LISTEN = "127.0.0.3:6882"
LT_LISTEN = "127.0.0.4:6883"


def fixture(bench_dir, size, piece):
    """The cached torrent, generated once per (size, piece size)."""
    name = f"bench-{size}-{piece}"
    base = os.path.join(bench_dir, name)
    done = os.path.join(base, "complete")
    if not os.path.exists(done):
        print(f"generating {size / GIB:.2f} GiB test torrent under {base} ...", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        subprocess.run(
            [PYTHON, LT_PEER, "make-torrent", "--dir", base, "--name", "payload",
             "--size", str(size), "--piece-size", str(piece), "--files", "4", "--seed", "42"],
            check=True, stdout=subprocess.DEVNULL,
        )
        open(done, "w").close()
    return os.path.join(base, "payload.torrent"), os.path.join(base, "data")


def measure(cmd, log_path):
    """Runs cmd to completion; returns (wall s, cpu s, max rss bytes)."""
    with open(log_path, "wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log_path, errors="replace") as log:
            tail = "".join(log.readlines()[-20:])
        sys.exit(f"{cmd[0]} failed with {proc.returncode}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def check_sizes(data, out):
    for dirpath, _, files in os.walk(data):
        for f in files:
            src = os.path.join(dirpath, f)
            dst = os.path.join(out, os.path.relpath(src, data))
            if not os.path.exists(dst) or os.path.getsize(dst) != os.path.getsize(src):
                sys.exit(f"download incomplete: {dst}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--piece-size", default="1MiB")
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--bench-dir", default=os.path.join(ROOT, ".bench"))
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    ap.add_argument("--encryption", choices=["default", "require"], default="default",
                    help="require: seeder and both clients insist on MSE/PE with RC4 (measures its cost)")
    ap.add_argument("--transport", choices=["tcp", "utp"], default="tcp",
                    help="utp: the seeder and the libtorrent client speak uTP only (Sluice races both)")
    args = ap.parse_args()
    enc = ["--encryption", args.encryption] if args.encryption != "default" else []
    lt_transport = ["--transport", args.transport]
    size, piece = parse_size(args.size), parse_size(args.piece_size)

    torrent, data = fixture(args.bench_dir, size, piece)
    logs = os.path.join(args.bench_dir, "logs")
    os.makedirs(logs, exist_ok=True)

    seeder_log = open(os.path.join(logs, "seeder.log"), "wb")
    seeder = subprocess.Popen(
        [PYTHON, LT_PEER, "seed", "--torrent", torrent, "--data", data, "--listen", SEEDER, *enc, *lt_transport],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=seeder_log,
    )
    try:
        line = seeder.stdout.readline().decode()
        if not line.startswith("ready"):
            sys.exit(f"seeder did not start (see {logs}/seeder.log)")

        clients = {
            "sluice": lambda out: [args.sluice, "download", torrent, "--out", out,
                                   "--peer", SEEDER, "--listen", SLUICE_LISTEN, "--loopback-only", *enc],
            "libtorrent": lambda out: [PYTHON, LT_PEER, "leech", "--torrent", torrent, "--out", out,
                                       "--peer", SEEDER, "--listen", LT_LISTEN, *enc, *lt_transport],
        }
        results = {name: [] for name in clients}
        for run in range(args.runs):
            order = list(clients) if run % 2 == 0 else list(reversed(clients))
            for name in order:
                out = os.path.join(args.bench_dir, f"out-{name}")
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                log = os.path.join(logs, f"{name}-{run}.log")
                wall, cpu, rss = measure(clients[name](out), log)
                check_sizes(data, out)
                shutil.rmtree(out, ignore_errors=True)
                results[name].append({"wall_s": wall, "cpu_s": cpu, "max_rss": rss})
                print(f"run {run + 1}/{args.runs} {name:>10}: {size / 1e6 / wall:8.1f} MB/s  "
                      f"cpu {cpu:6.2f} s  rss {rss / MIB:7.1f} MiB", file=sys.stderr)
    finally:
        seeder.kill()
        seeder.wait()
        seeder_log.close()

    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "mb_per_s": statistics.median(size / 1e6 / r["wall_s"] for r in runs),
            "cpu_s_per_gib": statistics.median(r["cpu_s"] for r in runs) / (size / GIB),
            "max_rss_mib": max(r["max_rss"] for r in runs) / MIB,
        }
    print(f"\n{args.runs} runs, {size / GIB:.2f} GiB torrent, {piece // 1024} KiB pieces, "
          f"one libtorrent {__import__('libtorrent').__version__} seeder on loopback, "
          f"encryption {args.encryption}, transport {args.transport}\n")
    print(f"{'client':<12}{'MB/s (median)':>16}{'CPU s/GiB':>12}{'peak RSS MiB':>14}")
    for name, s in summary.items():
        print(f"{name:<12}{s['mb_per_s']:>16.1f}{s['cpu_s_per_gib']:>12.2f}{s['max_rss_mib']:>14.1f}")
    a, b = summary["sluice"], summary["libtorrent"]
    print(f"{'ratio S/lt':<12}{a['mb_per_s'] / b['mb_per_s']:>16.2f}"
          f"{a['cpu_s_per_gib'] / b['cpu_s_per_gib']:>12.2f}{a['max_rss_mib'] / b['max_rss_mib']:>14.2f}")
    if args.json:
        print(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
