#!/usr/bin/python3
"""Streaming benchmark: Sluice against rqbit, playing the same clips from the same capped swarm.

Run through scripts/bench-stream, which builds the release binary and enters a loopback-only
network namespace first. Six libtorrent seeders, each capped at 1.5 MB/s, seed a cached ~8 Mbit/s
H.264/AAC clip as an end-moov MP4 and as an MKV (one single-file torrent each, 2 MiB pieces).
For each container and each client (a fresh server and data dir every time) it measures:

  steps     wall time until ffmpeg has decoded one frame: at 0 % (counted from adding the
            torrent) and then after seeks to 30/60/90 % (each a new ffmpeg process; the torrent
            keeps downloading between steps, so later steps may find bytes already there)
  playback  a fresh server again; `ffmpeg -re` copies the stream at its own rate for --duration
            seconds; a rebuffer is each time it falls more than 0.5 s behind the clock
  RSS       peak resident set (VmHWM) of the server process

With --rounds N the steps run N times per client (fresh server and seeders each round, the
clients' order alternating) and the table shows each step's median; the seeders' limiter ticks
put single runs on a 0.5 s grid, so one round can land a whole tick either side.

Each step has a floor: ffmpeg runs the same command once against a local Range-logging file
server; the whole pieces covering the bytes it was sent, divided by the aggregate seeder rate,
plus two round trips, plus ffmpeg's own time for the step against that server.

The floor leaves out how a capped libtorrent seeder answers a new connection: its rate limiter
hands out quota on 0.5 s ticks, and its handshake, its bitfield and unchoke, and the first
blocks asked for each wait for a tick. So for each container a minimal client (handshake,
interested, one request the moment it is unchoked) also times connect -> first block against
six more fresh seeders, printed as a lower bound on any client's first frame.
"""

import argparse
import http.server
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
import urllib.parse

import libtorrent as lt

from benchlib import MIB, ROOT, Server, confined_to_loopback, http_call, log, start_seeders, stop_procs

PIECE = 2 * MIB
SEED_RATE = 1_500_000
SEEDERS = [f"127.0.9.{i}:6881" for i in range(2, 8)]
SLUICE_IP, RQBIT_IP, FILES_IP = "127.0.9.20", "127.0.9.21", "127.0.9.30"
FILES_PORT = 8000
CONTAINERS = ("mp4", "mkv")
STALL = 0.5


# ---- how soon a fresh seeder sends anything -------------------------------------------------


def _bt_message(msg_id, payload=b""):
    return (1 + len(payload)).to_bytes(4, "big") + bytes([msg_id]) + payload


def first_block_time(endpoint, info_hash, timeout=10.0):
    """Seconds from TCP connect to the first block from the seeder at `endpoint`, asking as
    early as the protocol allows: interested after its bitfield, a request when unchoked."""
    host, port = endpoint.rsplit(":", 1)
    reserved = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04])
    handshake = b"\x13BitTorrent protocol" + reserved + info_hash + b"-SB0001-" + os.urandom(12)
    request = _bt_message(6, (0).to_bytes(4, "big") * 2 + (16384).to_bytes(4, "big"))
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        start = time.monotonic()
        s.sendall(handshake)
        buf, shook, asked = b"", False, False
        while time.monotonic() - start < timeout:
            data = s.recv(65536)
            if not data:
                return None
            buf += data
            while True:
                if not shook:
                    if len(buf) < 68:
                        break
                    buf, shook = buf[68:], True
                    continue
                if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
                    break
                n = int.from_bytes(buf[:4], "big")
                msg, buf = buf[4:4 + n], buf[4 + n:]
                if not msg:
                    continue
                if msg[0] in (5, 14):  # bitfield, have all
                    s.sendall(_bt_message(2))
                elif msg[0] == 1 and not asked:  # unchoke
                    s.sendall(request)
                    asked = True
                elif msg[0] == 7:  # piece
                    return time.monotonic() - start
    return None


def limiter_latency(torrent_path, data, logs, container, tick_ms, settings=()):
    """Median and range of connect -> first block over six fresh capped seeders."""
    info_hash = bytes.fromhex(str(lt.torrent_info(torrent_path).info_hash()))
    seeders = start_seeders([(e, torrent_path, data) for e in SEEDERS], logs, f"probe-{container}", SEED_RATE,
                             tick_ms=tick_ms, settings=settings)
    try:
        times = [None] * len(SEEDERS)

        def one(i):
            try:
                times[i] = first_block_time(SEEDERS[i], info_hash)
            except OSError:
                pass

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(SEEDERS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop_procs(seeders)
    got = sorted(t for t in times if t is not None)
    return (statistics.median(got), got[0], got[-1]) if got else None


# ---- fixture ---------------------------------------------------------------------------------


def make_fixture(bench_dir, seconds, bitrate):
    """The cached clips and their torrents: {container: (torrent path, data dir, file name)}."""
    base = os.path.join(bench_dir, "stream", f"clip-{seconds}s-{bitrate // 1000}k")
    data = os.path.join(base, "data")
    done = os.path.join(base, "complete")
    if not os.path.exists(done):
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(data)
        log(f"generating a {seconds} s {bitrate / 1e6:.1f} Mbit/s clip under {base} ...")
        audio = 192_000
        video = bitrate - audio
        mp4 = os.path.join(data, "clip.mp4")
        # Temporal noise keeps x264 at the target rate instead of far below it on a test pattern.
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
             "-vf", "noise=alls=10:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
             "-b:v", str(video), "-maxrate", str(video), "-bufsize", str(2 * video), "-g", "50",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", str(audio), "-shortest", mp4],
            check=True,
        )
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", mp4, "-c", "copy",
                        os.path.join(data, "clip.mkv")], check=True)
        for container in CONTAINERS:
            name = f"clip.{container}"
            fs = lt.file_storage()
            fs.add_file(name, os.path.getsize(os.path.join(data, name)))
            ct = lt.create_torrent(fs, PIECE, flags=lt.create_torrent.v1_only)
            ct.set_creator("sluice bench_stream.py")
            lt.set_piece_hashes(ct, data)
            with open(os.path.join(base, name + ".torrent"), "wb") as out:
                out.write(lt.bencode(ct.generate()))
        open(done, "w").close()
    return {c: (os.path.join(base, f"clip.{c}.torrent"), data, f"clip.{c}") for c in CONTAINERS}


def media_seconds(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


# ---- the Range-logging file server -----------------------------------------------------------


class RangeLog:
    """The requests each tagged step made: [start offset, body bytes sent, header length], in order."""

    def __init__(self):
        self.tag = None
        self.ranges = {}
        self.lock = threading.Lock()

    def begin(self, start, head_len):
        entry = [start, 0, head_len]
        with self.lock:
            self.ranges.setdefault(self.tag, []).append(entry)
        return entry


def file_server(root, addr, range_log):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            # A small send buffer keeps what the kernel holds beyond what ffmpeg read small.
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            super().setup()

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.serve(body=True)

        def do_HEAD(self):
            self.serve(body=False)

        def serve(self, body):
            rel = urllib.parse.unquote(self.path.split("?")[0]).lstrip("/")
            path = os.path.join(root, rel)
            if "/" in rel or not os.path.isfile(path):
                self.send_error(404)
                return
            size = os.path.getsize(path)
            start, end = 0, size - 1
            rng = self.headers.get("Range", "")
            status, extra = "200 OK", ""
            if rng.startswith("bytes="):
                first, _, last = rng[6:].split(",")[0].partition("-")
                start = int(first) if first else max(0, size - int(last))
                end = min(size - 1, int(last)) if first and last else size - 1
                if start >= size:
                    self.wfile.write(f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n"
                                     "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
                    return
                status, extra = "206 Partial Content", f"Content-Range: bytes {start}-{end}/{size}\r\n"
            head = (f"HTTP/1.1 {status}\r\n{extra}Accept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {end - start + 1}\r\nConnection: close\r\n\r\n").encode()
            self.close_connection = True
            entry = range_log.begin(start, len(head)) if body else None
            try:
                self.wfile.write(head)
                if not body:
                    return
                with open(path, "rb") as f:
                    f.seek(start)
                    left = end - start + 1
                    while left:
                        chunk = f.read(min(left, 64 * 1024))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        entry[1] += len(chunk)
                        left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(addr, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def pieces_touched(ranges, file_size):
    pieces = set()
    for start, length in ranges:
        if length > 0:
            pieces.update(range(start // PIECE, (start + length - 1) // PIECE + 1))
    return sorted(p for p in pieces if p * PIECE < file_size)


def piece_bytes(pieces, file_size):
    return sum(min(PIECE, file_size - p * PIECE) for p in pieces)


def loopback_rtt(addr):
    times = []
    for _ in range(20):
        t = time.perf_counter()
        with socket.create_connection(addr, timeout=5):
            times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---- ffmpeg ----------------------------------------------------------------------------------


def first_frame(url, at, timeout):
    """Seconds until ffmpeg, seeking to `at`, has decoded one video frame; None if it failed."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{at:.3f}", "-i", url, "-frames:v", "1", "-f", "null", "-"]
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  ffmpeg timed out after {timeout} s at {at:.1f} s: {url}")
        return None
    if p.returncode != 0:
        log(f"  ffmpeg failed at {at:.1f} s: {p.stderr.strip()[-400:]}")
        return None
    return time.monotonic() - start


def ffmpeg_reads(url, at, port, timeout):
    """Body bytes ffmpeg took in on each connection to `port`, in connect order; None without strace.

    What the server sent overstates it by whatever the sockets held when ffmpeg hung up (megabytes
    on loopback), so count ffmpeg's own recvfrom calls instead.
    """
    if not shutil.which("strace"):
        return None
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{at:.3f}", "-i", url, "-frames:v", "1", "-f", "null", "-"]
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,recvfrom,close", "-o", trace.name] + cmd,
                           capture_output=True, timeout=timeout)
        if p.returncode != 0:
            return None
        conns, open_fds, pending = [], {}, {}
        for line in trace:
            pid, _, call = line.partition(" ")
            call = call.strip()
            if call.startswith("connect(") and f"htons({port})" in call:
                open_fds[call[8:].split(",")[0]] = len(conns)
                conns.append(0)
            elif call.startswith("recvfrom(") or call.startswith("<... recvfrom resumed>"):
                if call.startswith("recvfrom("):
                    fd = call[9:].split(",")[0]
                    if call.endswith("<unfinished ...>"):
                        pending[pid] = fd
                        continue
                else:
                    fd = pending.pop(pid, None)
                ret = call.rsplit("= ", 1)[-1].split()[0]
                if fd in open_fds and ret.isdigit():
                    conns[open_fds[fd]] += int(ret)
            elif call.startswith("close("):
                open_fds.pop(call[6:].split(")")[0], None)
    return conns


def playback(url, seconds):
    """Copies `seconds` of the stream at its own rate; returns (rebuffers, stall seconds, ok).

    `-re` reads a packet only once the clock reaches it, so its lag behind the clock is how late
    the data came; a 64 KiB receive buffer keeps the reader from holding its own read-ahead. Each rise of the lag more than STALL above its running floor is a rebuffer;
    its stall time is the rise's peak. `-re` then catches up, which is stricter than a player
    that would carry the delay forward as buffer.
    """
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-stats_period", "0.1", "-progress", "pipe:1", "-nostats",
           "-re", "-recv_buffer_size", str(64 * 1024), "-i", url, "-t", str(seconds), "-c", "copy", "-f", "null", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    deadline = time.monotonic() + seconds + 180

    def reader():
        for line in proc.stdout:
            if line.startswith("out_time_us="):
                value = line.split("=", 1)[1].strip()
                if value.lstrip("-").isdigit() and int(value) > 0:
                    samples.append((time.monotonic(), int(value) / 1e6))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    timed_out = proc.poll() is None
    if timed_out:
        proc.kill()
    proc.wait()
    t.join(timeout=5)
    err = proc.stderr.read().strip()
    if timed_out:
        samples.append((time.monotonic(), samples[-1][1] if samples else 0.0))
    rebuffers, stall, floor, peak = 0, 0.0, None, None
    for wall, media in samples:
        lag = wall - media
        floor = lag if floor is None else min(floor, lag)
        over = lag - floor
        if peak is None and over > STALL:
            rebuffers += 1
            peak = over
        elif peak is not None:
            peak = max(peak, over)
            if over < STALL / 2:
                stall += peak
                peak = None
    if peak is not None:
        stall += peak
    reached = samples[-1][1] if samples else 0.0
    ok = not timed_out and proc.returncode == 0 and reached >= seconds - 2
    if not ok:
        log(f"  playback ended at {reached:.1f}/{seconds} s (rc {proc.returncode}): {err[-400:]}")
    return rebuffers, stall, ok


# ---- clients ---------------------------------------------------------------------------------


class Sluice(Server):
    name = "sluice"
    http = f"{SLUICE_IP}:8090"
    storage = "disk"
    encryption = "allow"

    def command(self):
        return [self.binary, "serve", "--listen", self.http, "--peer-listen", f"{SLUICE_IP}:6881",
                "--data-dir", self.work, "--loopback-only", "--storage", self.storage,
                "--encryption", self.encryption]

    def probe_url(self):
        return f"http://{self.http}/api/v1/torrents/0/files/0/stream/x"

    def add(self, torrent, peers, file_name):
        _, body = http_call("POST", f"http://{self.http}/api/v1/torrents", torrent)
        added = json.loads(body)
        info_hash = added["info_hash"]
        http_call("POST", f"http://{self.http}/api/v1/torrents/{info_hash}/peers", json.dumps(peers).encode())
        return f"http://{self.http}/api/v1/torrents/{info_hash}/files/0/stream/{file_name}"


class Rqbit(Server):
    name = "rqbit"
    http = f"{RQBIT_IP}:3030"

    def command(self):
        return [self.binary, "--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward",
                "--disable-lsd", "--disable-trackers", "--listen-ip", RQBIT_IP, "--listen-port", "4240",
                "--http-api-listen-addr", self.http,
                "server", "start", "--disable-persistence", os.path.join(self.work, "data")]

    def env(self):
        home = os.path.join(self.work, "home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_DATA_HOME=home)
        env.setdefault("RUST_LOG", "info")
        return env

    def probe_url(self):
        return f"http://{self.http}/"

    def add(self, torrent, peers, file_name):
        query = urllib.parse.urlencode({"overwrite": "true", "initial_peers": ",".join(peers)})
        _, body = http_call("POST", f"http://{self.http}/torrents?{query}", torrent)
        added = json.loads(body)
        ident = added["id"] if added.get("id") is not None else added["details"]["info_hash"]
        return f"http://{self.http}/torrents/{ident}/stream/0/{file_name}"


# ---- the run ---------------------------------------------------------------------------------


def run_steps(cls, binary, work, logs, container, torrent, file_name, steps, timeout, tag=""):
    """One round of steps on a fresh server: {"steps": {pct: seconds or None}, "rss": bytes}."""
    result = {"steps": {}, "rss": None}
    server = cls(binary, work, os.path.join(logs, f"{cls.name}-{container}-steps{tag}.log"))
    try:
        server.start()
        t0 = time.monotonic()
        url = server.add(torrent, list(SEEDERS), file_name)
        for pct, at in steps:
            step_start = t0 if pct == 0 else time.monotonic()
            took = first_frame(url, at, timeout)
            result["steps"][pct] = None if took is None else time.monotonic() - step_start
            shown = "failed" if took is None else f"{result['steps'][pct]:.2f} s"
            log(f"  {cls.name:>6} {container} {'first frame' if pct == 0 else f'seek {pct} %'}: {shown}")
        result["rss"] = server.peak_rss()
    finally:
        server.stop()
    return result


def merge_rounds(rounds):
    """Each step's median over the rounds (None if any round failed it), with every round's
    figure under "rounds"."""
    result = {"steps": {}, "rounds": {}, "rss": max(filter(None, (r["rss"] for r in rounds)), default=None)}
    for pct in rounds[0]["steps"]:
        got = [r["steps"][pct] for r in rounds]
        result["rounds"][pct] = got
        result["steps"][pct] = None if None in got else statistics.median(got)
    return result


def run_playback(cls, binary, work, logs, container, torrent, file_name, duration, result):
    """Paced playback on a fresh server, recorded into `result`."""
    if duration <= 0:
        result.update(rebuffers=None, stall=None, playback_ok=None)
        return
    peers = list(SEEDERS)
    server = cls(binary, work, os.path.join(logs, f"{cls.name}-{container}-playback.log"))
    try:
        server.start()
        url = server.add(torrent, peers, file_name)
        rebuffers, stall, ok = playback(url, duration)
        result.update(rebuffers=rebuffers, stall=stall, playback_ok=ok)
        log(f"  {cls.name:>6} {container} playback {duration} s: {rebuffers} rebuffers, {stall:.2f} s stalled")
        rss = server.peak_rss()
        result["rss"] = max(filter(None, [result["rss"], rss]), default=None)
    finally:
        server.stop()


def step_floor(url, at, size, range_log, rtt, timeout):
    """The floor of one step: what ffmpeg reads from a local file server, and how long it takes there."""
    range_log.tag = url, at
    reads = ffmpeg_reads(url, at, FILES_PORT, timeout)
    range_log.tag = None
    time.sleep(0.5)
    requests = range_log.ranges.pop((url, at), [])
    if reads is not None and len(reads) == len(requests):
        ranges = [(start, max(0, got - head)) for (start, _, head), got in zip(requests, reads)]
        exact = True
    else:
        ranges = [(start, sent) for start, sent, _ in requests]
        exact = False
    times = []
    for _ in range(3):
        took = first_frame(url, at, timeout)
        if took is None:
            sys.exit(f"ffmpeg cannot read {url} at {at:.1f} s from the local file server")
        times.append(took)
    range_log.ranges.pop(None, None)
    pieces = pieces_touched(ranges, size)
    nbytes = piece_bytes(pieces, size)
    ffmpeg_s = statistics.median(times)
    return {
        "pieces": len(pieces), "bytes": nbytes, "ffmpeg_s": ffmpeg_s, "ranges": ranges, "exact": exact,
        "floor_s": nbytes / (len(SEEDERS) * SEED_RATE) + 2 * rtt + ffmpeg_s,
    }


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--rqbit", default=None, help="rqbit binary (9.1); without it the run is Sluice-only")
    ap.add_argument("--rqbit-unavailable", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bench-dir", default=os.path.join(ROOT, ".bench"))
    ap.add_argument("--clip-seconds", type=int, default=300, help="clip length (default 300 s, ~300 MB)")
    ap.add_argument("--bitrate", type=int, default=8_000_000, help="clip bit rate in bit/s")
    ap.add_argument("--duration", type=int, default=120, help="seconds of paced playback (default 120; 0 skips it)")
    ap.add_argument("--containers", default=",".join(CONTAINERS), help="which clips to run (default mp4,mkv)")
    ap.add_argument("--clients", default="sluice,rqbit", help="which clients to run (default sluice,rqbit)")
    ap.add_argument("--sluice-storage", choices=("disk", "ram"), default="disk",
                    help="Sluice's storage mode (ram: the default 256 MiB budget)")
    ap.add_argument("--sluice-encryption", choices=("allow", "prefer", "require", "off"), default="allow",
                    help="Sluice's peer encryption policy (default allow, as Sluice's own default)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of steps per client, fresh seeders each, order alternating; medians reported")
    ap.add_argument("--seeder-tick-ms", type=int, default=0,
                    help="the seeders' rate limiter tick in ms (default 0: libtorrent's own, 500 ms)")
    ap.add_argument("--seeder-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="any other libtorrent setting for the seeders (repeatable; a diagnostic: "
                         "e.g. send_buffer_low_watermark=1048576)")
    ap.add_argument("--seeder-peer-log", action="store_true",
                    help="the seeders log their per-peer events (bandwidth grants, requests, cancels, blocks) "
                         "next to their logs, as <tag>-<endpoint>.peers; slows them a little (a diagnostic)")
    ap.add_argument("--quick", action="store_true", help="60 s clip, steps 0 and 60 %%, 20 s playback")
    ap.add_argument("--timeout", type=int, default=300, help="seconds one ffmpeg step may take")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args()
    percents = [0, 30, 60, 90]
    if args.quick:
        args.clip_seconds, percents = 60, [0, 60]
        args.duration = min(args.duration, 20)

    rqbit_reason = args.rqbit_unavailable
    if rqbit_reason is None and not args.rqbit:
        rqbit_reason = "no rqbit binary (cargo install rqbit --locked --version 9.1.0)"
    confined, interfaces = confined_to_loopback()
    if rqbit_reason is None and not confined:
        rqbit_reason = f"not in a loopback-only network namespace (interfaces: {', '.join(interfaces)})"
    rqbit_version = None
    if rqbit_reason is None:
        try:
            rqbit_version = subprocess.run([args.rqbit, "--version"], capture_output=True, text=True,
                                           check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            rqbit_reason = f"{args.rqbit} --version failed: {e}"
    Sluice.storage, Sluice.encryption = args.sluice_storage, args.sluice_encryption
    log(f"Sluice storage: {args.sluice_storage}, encryption: {args.sluice_encryption}")
    wanted = set(args.clients.split(","))
    clients = [(Sluice, args.sluice)] if "sluice" in wanted else []
    if rqbit_reason is None and "rqbit" in wanted:
        clients.append((Rqbit, args.rqbit))
    elif "rqbit" in wanted:
        print(f"rqbit unavailable: {rqbit_reason}", flush=True)

    fixture = make_fixture(args.bench_dir, args.clip_seconds, args.bitrate)
    logs = os.path.join(args.bench_dir, "stream", "logs")
    os.makedirs(logs, exist_ok=True)
    work = tempfile.mkdtemp(prefix="work-", dir=os.path.join(args.bench_dir, "stream"))

    range_log = RangeLog()
    data_dir = next(iter(fixture.values()))[1]
    files = file_server(data_dir, (FILES_IP, FILES_PORT), range_log)
    rtt = loopback_rtt((FILES_IP, FILES_PORT))

    results = {}
    try:
        for order, container in enumerate(c for c in CONTAINERS if c in args.containers.split(",")):
            torrent_path, data, file_name = fixture[container]
            local = os.path.join(data, file_name)
            size = os.path.getsize(local)
            length = media_seconds(local)
            steps = [(p, length * p / 100) for p in percents]
            entry = results[container] = {"size": size, "seconds": length, "floor": {}, "clients": {}}

            url = f"http://{FILES_IP}:{FILES_PORT}/{file_name}"
            for pct, at in steps:
                entry["floor"][pct] = step_floor(url, at, size, range_log, rtt, args.timeout)
            log(f"{container}: {size / 1e6:.0f} MB, {length:.0f} s; floors "
                + ", ".join(f"{p} %: {f['pieces']} pieces {f['floor_s']:.2f} s" for p, f in entry["floor"].items()))
            entry["limiter"] = limiter_latency(torrent_path, data, logs, container, args.seeder_tick_ms,
                                               args.seeder_setting)
            if entry["limiter"]:
                log("  a fresh seeder's first block comes %.2f s after connect (median; %.2f-%.2f)" % entry["limiter"])

            with open(torrent_path, "rb") as f:
                torrent = f.read()
            rounds = {cls.name: [] for cls, _ in clients}

            def with_fresh_seeders(cls, phase, run):
                # Fresh seeders for each client and round: a libtorrent seeder left idle after
                # the previous client saves up quota and sends its first burst ticks sooner, a
                # head start for whichever client runs second.
                seeders = start_seeders([(e, torrent_path, data) for e in SEEDERS], logs,
                                        f"seed-{container}-{cls.name}-{phase}", SEED_RATE,
                                        tick_ms=args.seeder_tick_ms, settings=args.seeder_setting,
                                        peer_log=args.seeder_peer_log)
                try:
                    return run()
                finally:
                    stop_procs(seeders)

            for r in range(args.rounds):
                if args.rounds > 1:
                    log(f"  round {r + 1} of {args.rounds}")
                ordered = clients if (order + r) % 2 == 0 else list(reversed(clients))
                for cls, binary in ordered:
                    tag = f"-round{r + 1}" if args.rounds > 1 else ""
                    rounds[cls.name].append(with_fresh_seeders(cls, f"steps{tag}", lambda: run_steps(
                        cls, binary, os.path.join(work, cls.name), logs, container, torrent, file_name,
                        steps, args.timeout, tag)))
            for cls, binary in (clients if order % 2 == 0 else list(reversed(clients))):
                result = entry["clients"][cls.name] = merge_rounds(rounds[cls.name])
                with_fresh_seeders(cls, "playback", lambda: run_playback(
                    cls, binary, os.path.join(work, cls.name), logs, container, torrent, file_name,
                    args.duration, result))
    finally:
        files.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    report(results, clients, percents, args, rqbit_version, rqbit_reason, rtt)
    if args.json:
        print(json.dumps(results, indent=2, default=str))


def report(results, clients, percents, args, rqbit_version, rqbit_reason, rtt):
    names = [cls.name for cls, _ in clients]
    has_rqbit = "rqbit" in names
    print(f"\n{len(SEEDERS)} libtorrent {lt.__version__} seeders x {SEED_RATE / 1e6:.1f} MB/s on loopback, "
          f"{PIECE // MIB} MiB pieces, {args.clip_seconds} s clip at {args.bitrate / 1e6:.1f} Mbit/s; "
          f"limiter tick {args.seeder_tick_ms or 500} ms; "
          + (f"seeder settings {' '.join(args.seeder_setting)}; " if args.seeder_setting else "")
          + f"loopback RTT {rtt * 1e3:.2f} ms; rqbit: {rqbit_version or 'unavailable (' + rqbit_reason + ')'}")
    print("floor = whole pieces ffmpeg reads / aggregate seeder rate + 2 RTT + ffmpeg's time on a local server")
    if not all(f["exact"] for e in results.values() for f in e["floor"].values()):
        print("WARNING: no strace: floors count what the file server sent, which overstates what ffmpeg read")
    print("first frame counts from adding the torrent; seeks are fresh ffmpeg runs while the torrent downloads")
    if args.rounds > 1:
        print(f"each client figure is the median of {args.rounds} rounds (fresh server and seeders each); "
              "Sluice's range follows the table")
    print()
    head = f"{'file':<5}{'step':<13}{'pieces':>7}{'floor s':>9}{'sluice s':>10}"
    if has_rqbit:
        head += f"{'rqbit s':>9}"
    head += f"{'S/floor':>9}"
    if has_rqbit:
        head += f"{'S/rqbit':>9}"
    print(head + "  target")
    misses = 0
    for container, entry in results.items():
        for pct in percents:
            fl = entry["floor"][pct]
            s = entry["clients"]["sluice"]["steps"].get(pct) if "sluice" in names else None
            r = entry["clients"]["rqbit"]["steps"].get(pct) if has_rqbit else None
            row = f"{container:<5}{'first frame' if pct == 0 else f'seek {pct} %':<13}{fl['pieces']:>7}"
            row += f"{fl['floor_s']:>9.2f}{fmt(s, '.2f', 'fail'):>10}"
            if has_rqbit:
                row += f"{fmt(r, '.2f', 'fail'):>9}"
            ratio = None if s is None else s / fl["floor_s"]
            row += f"{fmt(ratio, '.2f'):>9}"
            if has_rqbit:
                row += f"{fmt(None if s is None or not r else s / r, '.2f'):>9}"
            ok = ratio is not None and ratio <= 1.3 and (not has_rqbit or r is None or s < r)
            misses += not ok
            print(row + ("  ok" if ok else "  MISS"))
    if args.rounds > 1 and "sluice" in names:
        print("\nSluice per round (s):")
        for container, entry in results.items():
            for pct in percents:
                got = entry["clients"]["sluice"]["rounds"][pct]
                step = "first frame" if pct == 0 else f"seek {pct} %"
                print(f"{container:<5}{step:<13}" + " ".join(fmt(g, ".2f", "fail") for g in got))
    limited = [(c, e) for c, e in results.items() if e.get("limiter")]
    if limited and 0 in percents:
        print("\nno first frame comes before the seeders' first block, which their rate limiter's ticks")
        print("delay (left out of the floor above): a minimal client's connect -> first block against six")
        print("fresh capped seeders (median, min-max), and each client's first frame against it:")
        for container, entry in limited:
            lim, lo, hi = entry["limiter"]
            row = f"{container:<5}first block {lim:.2f} s ({lo:.2f}-{hi:.2f})"
            for name in names:
                s = entry["clients"][name]["steps"].get(0)
                row += f"; {name} {fmt(s, '.2f', 'fail')} s ({fmt(None if s is None else s / lim, '.2f')}x)"
            print(row)
    if args.duration <= 0:
        print(f"\nplayback skipped (--duration 0)\nSluice targets missed: {misses}")
        return
    print(f"\nplayback: {args.duration} s at the clip's rate from a fresh server; rebuffer = > {STALL} s behind")
    print(f"{'file':<5}{'client':<8}{'rebuffers':>10}{'stall s':>9}{'peak RSS MiB':>14}  target")
    for container, entry in results.items():
        for name in names:
            c = entry["clients"][name]
            ok = c["rebuffers"] == 0 and c["playback_ok"]
            if name == "sluice":
                misses += not ok
            print(f"{container:<5}{name:<8}{c['rebuffers']:>10}{c['stall']:>9.2f}"
                  f"{fmt(c['rss'] and c['rss'] / MIB, '.1f'):>14}  "
                  + ("" if name != "sluice" else "ok" if ok else "MISS")
                  + ("" if c["playback_ok"] else " (playback did not finish)"))
    print(f"\nSluice targets missed: {misses}")


if __name__ == "__main__":
    main()
