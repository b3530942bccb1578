#!/usr/bin/python3
"""A libtorrent peer for Sluice's interop tests and benchmark.

Run with Debian's interpreter (/usr/bin/python3), which is the one python3-libtorrent installs into.
Every session is confined to the loopback address it is given: no DHT, LSD, UPnP or NAT-PMP, and
no trackers unless a test names one (--tracker), so a test only ever talks to the peers and
trackers it names. `--encryption require` makes seed and leech insist on MSE/PE with RC4 both ways
(libtorrent's pe_forced, allowed level rc4). `--transport` picks the peer transports, both ways:
tcp (the default), utp (uTP only: TCP is neither accepted nor dialled) or both.

Subcommands:
  make-torrent  generate pseudo-random multi-file data from a seed and a .torrent for it
  seed          serve a torrent from a data dir (optionally with some pieces deliberately corrupted)
  leech         download a torrent (from a .torrent or a magnet link) from the given peers and exit 0
                once complete; --report-peers prints each peer it gets to know and where from,
                --no-pex turns its peer exchange (BEP 11, on by default in libtorrent) off
"""

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

import libtorrent as lt

MIB = 1 << 20
TRANSPORTS = ["tcp", "utp", "both"]


def die_with_parent():
    """Ask the kernel to kill us when the process that started us goes away (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_endpoint(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host, int(port)


def parse_setting(text):
    """KEY=VALUE for a libtorrent setting: an integer, true/false, or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    try:
        return key, int(value)
    except ValueError:
        return key, value


def session_for(listen_ip, listen_port, upload_rate=0, encryption="default", transport="tcp", tick_ms=0, extra=()):
    tcp = transport in ("tcp", "both")
    utp = transport in ("utp", "both")
    settings = {
        "listen_interfaces": f"{listen_ip}:{listen_port}",
        "outgoing_interfaces": listen_ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_tcp": tcp,
        "enable_outgoing_tcp": tcp,
        "enable_incoming_utp": utp,
        "enable_outgoing_utp": utp,
        "enable_ip_notifier": False,
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": upload_rate,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.storage_notification,
    }
    if tick_ms:
        # How often the rate limiter hands out quota (libtorrent's default: 500 ms).
        settings["tick_interval"] = tick_ms
    if encryption == "require":
        settings["in_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["out_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["allowed_enc_level"] = int(lt.enc_level.pe_rc4)
    # Anything else asked for on the command line (benchmark diagnostics), applied last.
    settings.update(dict(extra))
    ses = lt.session(settings)
    if upload_rate:
        # Loopback peers fall in libtorrent's unlimited "local" class: put everyone in the global
        # class so the rate cap applies.
        flt = lt.ip_filter()
        flt.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(flt)
    return ses


def wait_listening(ses, deadline):
    while time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.listen_succeeded_alert):
                return
            if isinstance(alert, lt.listen_failed_alert):
                sys.exit(f"lt_peer: listen failed: {alert.message()}")
    sys.exit("lt_peer: timed out waiting to listen")


# ---- make-torrent ----------------------------------------------------------------------------


def file_plan(total, count, rng):
    """Sizes of `count` files summing to `total`: one tiny file, the rest of uneven sizes."""
    if count == 1:
        return [total]
    tiny = min(total // 2, rng.randint(1, 999))
    weights = [rng.randint(2, 9) for _ in range(count - 1)]
    rest = total - tiny
    sizes = [rest * w // sum(weights) for w in weights]
    sizes[0] += rest - sum(sizes)
    sizes.insert(rng.randrange(count), tiny)
    return sizes


def write_random(path, size, rng):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 4 * MIB)
            out.write(rng.randbytes(n))
            left -= n


def cmd_make_torrent(args):
    total = parse_size(args.size)
    rng = random.Random(args.seed)
    root = os.path.join(args.dir, "data", args.name)
    if os.path.exists(root):
        shutil.rmtree(root)
    names = []
    for i, size in enumerate(file_plan(total, args.files, rng)):
        rel = f"file{i}.bin" if i % 2 == 0 else os.path.join(f"dir{i}", f"file{i}.bin")
        write_random(os.path.join(root, rel), size, rng)
        names.append((rel, size))

    fs = lt.file_storage()
    lt.add_files(fs, root)
    flags = 0 if args.hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, parse_size(args.piece_size), flags=flags)
    ct.set_creator("sluice lt_peer.py")
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    lt.set_piece_hashes(ct, os.path.dirname(root))
    torrent_path = os.path.join(args.dir, args.name + ".torrent")
    with open(torrent_path, "wb") as out:
        out.write(lt.bencode(ct.generate()))

    ti = lt.torrent_info(torrent_path)
    files = ti.files()
    summary = {
        "torrent": torrent_path,
        "data": os.path.dirname(root),
        "name": args.name,
        "total_size": ti.total_size(),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "info_hash": str(ti.info_hash()),
        "files": [
            {
                "path": files.file_path(i),
                "size": files.file_size(i),
                "pad": bool(files.file_flags(i) & lt.file_storage.flag_pad_file),
            }
            for i in range(files.num_files())
        ],
    }
    print(json.dumps(summary))


# ---- seed ------------------------------------------------------------------------------------


def corrupt_copy(ti, data, pieces, work):
    """Copy `data` into `work` and flip bytes in each given piece, so it no longer hashes right."""
    dst = os.path.join(work, "data")
    shutil.copytree(data, dst)
    files = ti.files()
    for piece in pieces:
        if not 0 <= piece < ti.num_pieces():
            sys.exit(f"lt_peer: piece {piece} out of range")
        for sl in ti.map_block(piece, 0, ti.piece_size(piece)):
            if files.file_flags(sl.file_index) & lt.file_storage.flag_pad_file:
                continue
            path = os.path.join(dst, files.file_path(sl.file_index))
            with open(path, "r+b") as f:
                f.seek(sl.offset)
                chunk = bytearray(f.read(sl.size))
                for i in range(0, len(chunk), 997):
                    chunk[i] ^= 0xA5
                f.seek(sl.offset)
                f.write(chunk)
    return dst


PEER_LOG_EVENTS = ("REQUEST_BANDWIDTH", "ASSIGN_BANDWIDTH", "==> PIECE", "<== REQUEST", "<== CANCEL", "==> REJECT",
                   "SEND_BUFFER_WATERMARK", ">>> WROTE", "<== INTERESTED", "==> CHOKE", "==> UNCHOKE")


def log_peer_event(out, message):
    """One line per event of interest: unix time, then the message from the peer's address on."""
    if any(k in message for k in PEER_LOG_EVENTS):
        at = message.find("[", message.find("]") + 1)
        out.write(f"{time.time():.4f} {message[at:] if at >= 0 else message}\n")


def cmd_seed(args):
    die_with_parent()
    ip, port = args.listen
    ti = lt.torrent_info(args.torrent)
    data = args.data
    work = None
    if args.corrupt_pieces:
        work = tempfile.mkdtemp(prefix="lt-corrupt-", dir=args.work_dir)
        pieces = [int(p) for p in args.corrupt_pieces.split(",") if p]
        data = corrupt_copy(ti, data, pieces, work)

    extra = list(args.setting)
    peer_log = open(args.peer_log, "w", buffering=1) if args.peer_log else None
    if peer_log:
        mask = lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
        extra.append(("alert_mask", int(mask | lt.alert.category_t.peer_log_notification)))
    ses = session_for(ip, port, parse_size(args.upload_rate), args.encryption, args.transport, args.tick_ms, extra)
    if args.corrupt_pieces:
        # Trust the data without checking it, so the bad pieces are served as they are.
        ses.apply_settings({"disable_hash_checks": True})
    deadline = time.monotonic() + 60
    wait_listening(ses, deadline)
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = data
    params.flags = (params.flags | lt.torrent_flags.seed_mode) & ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    params.trackers = args.tracker
    handle = ses.add_torrent(params)
    while time.monotonic() < deadline:
        st = handle.status()
        if st.is_seeding:
            break
        if st.errc.value():
            sys.exit(f"lt_peer: torrent error: {st.errc.message()}")
        ses.wait_for_alert(100)
        ses.pop_alerts()
    else:
        sys.exit("lt_peer: timed out waiting to seed")
    print(f"ready {ip}:{ses.listen_port()}", flush=True)

    stop = time.monotonic() + args.max_seconds
    next_report = 0
    try:
        while time.monotonic() < stop:
            ses.wait_for_alert(20 if peer_log else (200 if args.report else 1000))
            if args.report and time.monotonic() >= next_report:
                next_report = time.monotonic() + 0.2
                print(f"uploaded {handle.status().total_payload_upload}", flush=True)
            for alert in ses.pop_alerts():
                if peer_log and isinstance(alert, lt.peer_log_alert):
                    log_peer_event(peer_log, alert.message())
                if args.verbose and alert.category() & lt.alert.category_t.error_notification:
                    print(f"lt_peer: {alert.message()}", file=sys.stderr, flush=True)
            if os.getppid() == 1:
                break
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


# ---- leech -----------------------------------------------------------------------------------


def cmd_leech(args):
    die_with_parent()
    ip, port = args.listen
    ses = session_for(ip, port, encryption=args.encryption, transport=args.transport)
    start = time.monotonic()
    deadline = start + args.timeout
    wait_listening(ses, deadline)
    if args.magnet:
        # Metadata from the peers (BEP 9): the link's x.pe and --peer.
        params = lt.parse_magnet_uri(args.magnet)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.out
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    if args.no_pex:
        params.flags |= lt.torrent_flags.disable_pex
    handle = ses.add_torrent(params)
    for peer in args.peer:
        handle.connect_peer(peer)
    first_byte = None
    hash_failures = 0
    last_report = start
    reported = {}
    while True:
        if args.report_peers:
            report_peers(handle, reported, start)
        st = handle.status()
        if first_byte is None and st.total_wanted_done > 0:
            first_byte = time.monotonic() - start
        if st.is_seeding:
            break
        if st.errc.value():
            sys.exit(f"lt_peer: torrent error: {st.errc.message()}")
        now = time.monotonic()
        if now > deadline:
            sys.exit(f"lt_peer: timed out at {st.progress * 100:.1f}%, {hash_failures} hash failures")
        if now - last_report >= 1:
            last_report = now
            print(
                f"progress {st.progress * 100:.1f}% {st.download_rate / MIB:.1f} MiB/s "
                f"peers {st.num_peers}",
                file=sys.stderr,
                flush=True,
            )
            if st.num_peers == 0:
                for peer in args.peer:
                    handle.connect_peer(peer)
        ses.wait_for_alert(50)
        hash_failures += sum(isinstance(a, lt.hash_failed_alert) for a in ses.pop_alerts())
    elapsed = time.monotonic() - start
    total = st.total_wanted
    # Remove the torrent so every write is flushed before we report success.
    ses.remove_torrent(handle)
    flush_deadline = time.monotonic() + 30
    while time.monotonic() < flush_deadline:
        ses.wait_for_alert(200)
        if any(isinstance(a, lt.torrent_removed_alert) for a in ses.pop_alerts()):
            break
    print(
        json.dumps(
            {
                "seconds": round(elapsed, 3),
                "first_byte_seconds": None if first_byte is None else round(first_byte, 3),
                "bytes": total,
                "hash_failures": hash_failures,
                "mib_per_s": round(total / MIB / elapsed, 2) if elapsed > 0 else None,
            }
        ),
        flush=True,
    )


def report_peers(handle, reported, start):
    """Print `peer IP:PORT source BITS outgoing 0|1 at SECONDS` for each connected peer whose source
    bits (peer_info: tracker 1, dht 2, pex 4, lsd 8, resume 16, incoming 32) are new."""
    for p in handle.get_peer_info():
        endpoint = f"{p.ip[0]}:{p.ip[1]}"
        if reported.get(endpoint) == p.source:
            continue
        reported[endpoint] = p.source
        outgoing = int(bool(p.flags & lt.peer_info.outgoing_connection))
        print(
            f"peer {endpoint} source {p.source} outgoing {outgoing} at {time.monotonic() - start:.2f}",
            file=sys.stderr,
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    mk = sub.add_parser("make-torrent", help="generate data and a .torrent")
    mk.add_argument("--dir", required=True, help="output dir: <dir>/<name>.torrent and <dir>/data/<name>/")
    mk.add_argument("--name", default="payload")
    mk.add_argument("--size", required=True, help="total payload size, e.g. 64MiB")
    mk.add_argument("--seed", type=int, default=1)
    mk.add_argument("--files", type=int, default=4)
    mk.add_argument("--piece-size", default="256KiB")
    mk.add_argument("--hybrid", action="store_true", help="v1+v2 hybrid torrent (with pad files)")
    mk.add_argument("--tracker", action="append", default=[], help="announce URL (repeatable: one tier each)")
    mk.set_defaults(func=cmd_make_torrent)

    sd = sub.add_parser("seed", help="seed a torrent on IP:PORT until killed")
    sd.add_argument("--torrent", required=True)
    sd.add_argument("--data", required=True, help="save path holding the torrent's files")
    sd.add_argument("--listen", required=True, type=parse_endpoint)
    sd.add_argument("--upload-rate", default="0", help="bytes/s cap, e.g. 2MiB (0 = none)")
    sd.add_argument("--corrupt-pieces", default="", help="comma-separated piece indices to serve corrupted")
    sd.add_argument("--work-dir", default=None, help="where the corrupted copy goes (default: $TMPDIR)")
    sd.add_argument("--max-seconds", type=float, default=3600)
    sd.add_argument("--verbose", action="store_true")
    sd.add_argument("--report", action="store_true", help="print 'uploaded <payload bytes>' lines")
    sd.add_argument("--tracker", action="append", default=[], help="also announce to this tracker (repeatable)")
    sd.add_argument("--encryption", choices=["default", "require"], default="default")
    sd.add_argument("--transport", choices=TRANSPORTS, default="tcp", help="peer transports, both ways")
    sd.add_argument("--tick-ms", type=int, default=0, help="rate limiter tick (0: libtorrent's 500 ms)")
    sd.add_argument("--peer-log", default=None,
                    help="write libtorrent's per-peer log of bandwidth grants, bytes written, requests, cancels, "
                         "blocks and (un)chokes "
                         "to this file (unix time first; a diagnostic)")
    sd.add_argument("--setting", action="append", default=[], type=parse_setting,
                    help="any other libtorrent setting, KEY=VALUE (repeatable; e.g. send_buffer_low_watermark=1048576)")
    sd.set_defaults(func=cmd_seed)

    lc = sub.add_parser("leech", help="download a torrent from the given peers")
    src = lc.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent")
    src.add_argument("--magnet", help="a magnet link instead of --torrent")
    lc.add_argument("--out", required=True)
    lc.add_argument("--peer", action="append", required=True, type=parse_endpoint)
    lc.add_argument("--listen", required=True, type=parse_endpoint)
    lc.add_argument("--timeout", type=float, default=600)
    lc.add_argument("--encryption", choices=["default", "require"], default="default")
    lc.add_argument("--report-peers", action="store_true", help="print each peer and its sources on stderr")
    lc.add_argument("--no-pex", action="store_true", help="no peer exchange for this torrent")
    lc.add_argument("--transport", choices=TRANSPORTS, default="tcp", help="peer transports, both ways")
    lc.set_defaults(func=cmd_leech)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
