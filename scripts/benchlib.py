"""What the benchmark drivers share: HTTP calls, libtorrent seeders, server processes.

Imported by scripts/bench_stream.py, bench_magnet.py and bench_api.py (each run with
/usr/bin/python3 from the scripts directory, so this module is found beside them).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LT_PEER = os.path.join(ROOT, "tests", "interop", "lt_peer.py")
PYTHON = "/usr/bin/python3"
MIB = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def http_call(method, url, body=None, content_type="application/octet-stream", timeout=60):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def confined_to_loopback():
    """Whether this process sees no network interface but lo (a private network namespace)."""
    with open("/proc/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    return names == ["lo"], names


def wait_http(url, proc, log_path, timeout=30):
    """Returns once `url` answers (any status); raises with the log's tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            http_call("GET", url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    with open(log_path, errors="replace") as f:
        tail = "".join(f.readlines()[-20:])
    raise RuntimeError(f"server did not come up at {url}:\n{tail}")


# ---- libtorrent seeders ----------------------------------------------------------------------


def start_seeders(jobs, logs, tag="seed", rate=0, trackers=(), tick_ms=0, settings=(), peer_log=False):
    """One tests/interop/lt_peer.py seeder per (endpoint, torrent path, data dir), capped at
    `rate` bytes/s (0: none) with quota handed out every `tick_ms` (0: libtorrent's default)
    and any other libtorrent `settings` ("KEY=VALUE" strings); returns once all are
    listening. Logs go to logs/<tag>-<endpoint>.log, and with `peer_log` libtorrent's per-peer
    events (bandwidth grants, requests, cancels, blocks) to logs/<tag>-<endpoint>.peers."""
    seeders = []
    for endpoint, torrent, data in jobs:
        log_file = open(os.path.join(logs, f"{tag}-{endpoint.replace(':', '_')}.log"), "wb")
        cmd = [PYTHON, LT_PEER, "seed", "--torrent", torrent, "--data", data, "--listen", endpoint,
               "--upload-rate", str(rate)]
        if tick_ms:
            cmd += ["--tick-ms", str(tick_ms)]
        for setting in settings:
            cmd += ["--setting", setting]
        if peer_log:
            cmd += ["--peer-log", os.path.join(logs, f"{tag}-{endpoint.replace(':', '_')}.peers")]
        for tracker in trackers:
            cmd += ["--tracker", tracker]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file)
        seeders.append((p, log_file))
    for p, _ in seeders:
        if not p.stdout.readline().decode().startswith("ready"):
            stop_procs(seeders)
            sys.exit(f"a seeder did not start (see {logs})")
    return seeders


def stop_procs(procs):
    """Kills (process, log file or None) pairs and closes their logs."""
    for p, log_file in procs:
        p.kill()
        p.wait()
        if log_file:
            log_file.close()


# ---- servers under test ----------------------------------------------------------------------


class Server:
    """One client process with a fresh work dir; subclasses know its command line and API."""

    name = "?"

    def __init__(self, binary, work, log_path):
        self.binary, self.work, self.log_path = binary, work, log_path
        self.proc = self.log_file = None

    def command(self):
        raise NotImplementedError

    def probe_url(self):
        raise NotImplementedError

    def env(self):
        return None

    def start(self):
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=self.log_file, env=self.env())
        wait_http(self.probe_url(), self.proc, self.log_path)

    def peak_rss(self):
        """Peak resident set (VmHWM) in bytes, while the process runs."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file:
            self.log_file.close()
        shutil.rmtree(self.work, ignore_errors=True)
