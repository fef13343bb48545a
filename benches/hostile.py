#!/usr/bin/env python3
"""Hostile clients against alo-node's client API: what the connection limits hold.

    python3 benches/hostile.py          # builds the release binary, then about 35 s
    python3 benches/hostile.py --json   # also every raw figure as JSON

Each scenario starts a fresh `target/release/alo-node --listen 127.0.0.1:0 --api 127.0.0.1:0`
(plus the flags it needs), measures, and kills it in a `finally` (no process is left running):

1. idle: 4,000 TCP connections to the API that send nothing. VmRSS before, ~1 s after they are
   open, and 12 s after they are open together with how many the server has closed by then.
2. big-head: 2,000 connections each sending `GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Big: ` and
   389 KiB of 'a' (no final CRLFCRLF), as far as the sockets accept. Peak VmRSS (sampled) and
   VmHWM, and what the clients got back (431 responses, closes, resets).
3. shutdown: `--demo-delay-ms 60000`, one request to /api/demo/apple in flight and one client
   that sent half a head, then SIGTERM: time to exit and exit code, with the default
   `--shutdown-timeout-ms`, with 1000, and with a second SIGTERM 0.5 s after the first.
4. emfile: the node under `ulimit -n 64`, 300 connections to the API, then all closed: the
   accept-failure WARN lines, and the time until GET /healthz answers 200 again.

Standard library only. Only 127.0.0.1 is used; every wait and loop is bounded in time.
"""

import calendar
import errno
import json
import os
import re
import resource
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "alo-node")

IDLE_CONNS = 4000
IDLE_WATCH_S = 12.0
BIG_CONNS = 2000
BIG_BYTES = 389 * 1024
BIG_DEADLINE_S = 30.0
EMFILE_LIMIT = 64
EMFILE_CONNS = 300

LEVEL = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s")

_nodes = []  # every node started, so that the last `finally` can kill any left


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Node:
    """One alo-node process with stdout and stderr in files."""

    def __init__(self, args, nofile=None):
        self.dir = tempfile.mkdtemp(prefix="alo-hostile-")
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        base = [BIN, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", *args]
        if nofile is not None:
            # `exec` keeps the PID: the shell becomes the node.
            cmd = ["sh", "-c", f'ulimit -n {int(nofile)} && exec "$0" "$@"', *base]
        else:
            cmd = base
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _nodes.append(self)
        self.pid = self.proc.pid
        self.api = self._wait_for_api(10.0)

    def _wait_for_api(self, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alo-node exited at start: {self.stderr_text()}")
            with open(self.out_path, encoding="utf-8", errors="replace") as f:
                m = re.search(r"client API at http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                return ("127.0.0.1", int(m.group(1)))
            time.sleep(0.05)
        raise RuntimeError("alo-node did not print its client API address within 10 s")

    def status(self):
        """VmRSS and VmHWM in KiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
        return out

    def rss_kib(self):
        return self.status()["VmRSS"]

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def stderr_text(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def log_lines(self):
        return [l for l in self.stderr_text().splitlines() if l.strip()]

    def log_counts(self):
        counts = {"lines": 0, "INFO": 0, "WARN": 0, "ERROR": 0, "other": 0}
        for line in self.log_lines():
            counts["lines"] += 1
            m = LEVEL.match(line)
            counts[m.group(1) if m and m.group(1) in counts else "other"] += 1
        return counts

    def wait_exit(self, limit):
        """Seconds (monotonic clock) at which the process exited, or None within `limit`."""
        fd = os.pidfd_open(self.pid)
        try:
            r, _, _ = select.select([fd], [], [], limit)
            t = time.monotonic()
        finally:
            os.close(fd)
        if not r:
            return None
        self.proc.wait(timeout=5)
        return t

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if self in _nodes:
            _nodes.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_all():
    for node in list(_nodes):
        try:
            node.kill()
        except Exception as e:  # keep killing the others
            log(f"could not kill node {node.pid}: {e}")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(max(soft, want), hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_conns(addr, n, limit=20.0, batch=100, server_count=None):
    """`n` non-blocking TCP connections to `addr`, established (or failed) within `limit` s.

    Connects `batch` at a time. The node listens with a backlog of 128 (std's and mio's value):
    a burst larger than that overflows the accept queue, the kernel drops SYNs (the client
    retries after 1 s) or the final ACK (the client believes it is connected, the server never
    sees it). So with `server_count` (a callable: connections the server holds) each batch waits,
    at most 2 s, until the server has accepted it. Returns (connected sockets, not connected)."""
    deadline = time.monotonic() + limit
    done, failed = [], 0
    sel = selectors.DefaultSelector()
    try:
        while len(done) + failed < n and time.monotonic() < deadline:
            for _ in range(min(batch, n - len(done) - failed - len(sel.get_map()))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                rc = s.connect_ex(addr)
                if rc == 0:
                    done.append(s)
                elif rc in (errno.EINPROGRESS, errno.EAGAIN):
                    sel.register(s, selectors.EVENT_WRITE)
                else:
                    failed += 1
                    s.close()
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    s = key.fileobj
                    sel.unregister(s)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        done.append(s)
                    else:
                        failed += 1
                        s.close()
            if server_count is not None:
                wait_until = min(deadline, time.monotonic() + 2.0)
                while server_count() < len(done) and time.monotonic() < wait_until:
                    time.sleep(0.01)
        for key in list(sel.get_map().values()):
            failed += 1
            key.fileobj.close()
    finally:
        sel.close()
    return done, failed


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def healthz(addr, timeout=1.0):
    try:
        with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/healthz", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, urllib.error.URLError):
        return None


def log_time(line):
    """The UTC timestamp at the start of a node log line, as a Unix time."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", line)
    if not m:
        return None
    base = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return base + float(m.group(2) or 0)


def mib(kib):
    return kib / 1024.0


# ---------------------------------------------------------------------------------------------
# 1. idle connections


def scenario_idle():
    node = Node([])
    socks = []
    try:
        time.sleep(0.5)
        rss0, fds0 = node.rss_kib(), node.fds()
        t_start = time.monotonic()
        socks, failed = open_conns(node.api, IDLE_CONNS, server_count=lambda: node.fds() - fds0)
        t_open = time.monotonic()
        log(f"idle: {len(socks)} connections open ({failed} failed) in {t_open - t_start:.2f} s")
        time.sleep(1.0)
        rss1, fds1 = node.rss_kib(), node.fds()

        # Watch them until 12 s after they were all open: a read of b'' or an error is a close.
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        closed_at, got_data = [], 0
        while True:
            left = t_open + IDLE_WATCH_S - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    got_data += 1
                    continue
                closed_at.append(time.monotonic() - t_open)
                sel.unregister(s)
        sel.close()
        rss2, fds2 = node.rss_kib(), node.fds()
        closed_at.sort()
        res = {
            "conns": len(socks),
            "connect_failed": failed,
            "open_s": t_open - t_start,
            "accepted_by_server": fds1 - fds0,
            "rss_before_kib": rss0,
            "rss_open_kib": rss1,
            "per_conn_bytes": (rss1 - rss0) * 1024 / max(1, len(socks)),
            "node_fds": [fds0, fds1, fds2],
            "closed_after_12s": len(closed_at),
            "first_close_s": closed_at[0] if closed_at else None,
            "last_close_s": closed_at[-1] if closed_at else None,
            "conns_that_got_bytes": got_data,
            "rss_12s_kib": rss2,
        }
        close_all(socks)
        socks = []
        time.sleep(0.3)
        res["log"] = node.log_counts()
        return res
    finally:
        close_all(socks)
        node.kill()


# ---------------------------------------------------------------------------------------------
# 2. huge unfinished heads


def scenario_big_head():
    node = Node([])
    socks = []
    try:
        time.sleep(0.5)
        rss0, fds0 = node.rss_kib(), node.fds()
        payload = memoryview(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * BIG_BYTES)
        socks, failed = open_conns(node.api, BIG_CONNS, server_count=lambda: node.fds() - fds0)
        accepted = node.fds() - fds0
        log(f"big-head: {len(socks)} connections open ({failed} failed), {accepted} accepted")
        state = {}
        sel = selectors.DefaultSelector()
        for s in socks:
            state[s] = {"sent": 0, "recv": bytearray(), "end": None}
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        t0 = time.monotonic()
        peak_rss, samples, next_sample = 0, [], t0
        last_progress = t0
        while sel.get_map():
            now = time.monotonic()
            if now >= next_sample:
                r = node.rss_kib()
                peak_rss = max(peak_rss, r)
                samples.append((round(now - t0, 2), r))
                next_sample = now + 0.05
            if now - t0 > BIG_DEADLINE_S:
                break
            for key, ev in sel.select(timeout=0.05):
                s, st = key.fileobj, state[key.fileobj]
                if ev & selectors.EVENT_READ:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        data = None
                    except OSError as e:
                        st["end"] = ("reset" if e.errno == errno.ECONNRESET else e.strerror,
                                     now - t0)
                        sel.unregister(s)
                        continue
                    if data == b"":
                        st["end"] = ("eof", now - t0)
                        sel.unregister(s)
                        continue
                    if data:
                        st["recv"] += data
                        last_progress = now
                if ev & selectors.EVENT_WRITE:
                    try:
                        n = s.send(payload[st["sent"]:])  # as much as the socket takes
                        st["sent"] += n
                        last_progress = now
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        st["end"] = ("reset" if e.errno in (errno.ECONNRESET, errno.EPIPE)
                                     else e.strerror, now - t0)
                        # Whatever was answered before the reset is still readable.
                        try:
                            st["recv"] += s.recv(65536)
                        except OSError:
                            pass
                        sel.unregister(s)
                        continue
                    if st["sent"] >= len(payload):
                        sel.modify(s, selectors.EVENT_READ)
            if now - last_progress > 5.0:
                break  # nothing moved for 5 s: what is left hangs on the server
        t_end = time.monotonic() - t0
        sel.close()
        st_end = node.status()
        peak_rss = max(peak_rss, st_end["VmRSS"])
        open_left = sum(1 for st in state.values() if st["end"] is None)
        statuses = {}
        for st in state.values():
            first = bytes(st["recv"][:64]).split(b"\r\n", 1)[0]
            m = re.match(rb"HTTP/1\.[01] (\d{3})", first)
            k = m.group(1).decode() if m else ("none" if not first else "other")
            statuses[k] = statuses.get(k, 0) + 1
        ends = {}
        for st in state.values():
            k = st["end"][0] if st["end"] else "still open"
            ends[k] = ends.get(k, 0) + 1
        end_times = sorted(st["end"][1] for st in state.values() if st["end"])
        sent = sorted(st["sent"] for st in state.values())
        close_all(socks)
        socks = []
        time.sleep(1.0)
        rss_after = node.rss_kib()
        res = {
            "conns": len(state),
            "connect_failed": failed,
            "accepted_by_server": accepted,
            "rss_before_kib": rss0,
            "peak_rss_sampled_kib": peak_rss,
            "vmhwm_kib": st_end["VmHWM"],
            "rss_at_end_kib": st_end["VmRSS"],
            "rss_1s_after_close_kib": rss_after,
            "responses": statuses,
            "ends": ends,
            "last_end_s": end_times[-1] if end_times else None,
            "loop_s": t_end,
            "sent_bytes_min_median_max": [sent[0], sent[len(sent) // 2], sent[-1]],
            "payload_bytes": len(payload),
            "still_open": open_left,
            "rss_samples": len(samples),
        }
        res["log"] = node.log_counts()
        return res
    finally:
        close_all(socks)
        node.kill()


# ---------------------------------------------------------------------------------------------
# 3. SIGTERM with a stuck client


def read_outcome(s, limit=0.2):
    """What a client socket holds now: 'status NNN', 'eof', 'reset', or 'open'."""
    s.setblocking(False)
    r, _, _ = select.select([s], [], [], limit)
    if not r:
        return "open, nothing received"
    try:
        data = s.recv(65536)
    except OSError as e:
        return "reset" if e.errno == errno.ECONNRESET else e.strerror
    if not data:
        return "closed, nothing received"
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return f"got {m.group(1).decode()}" if m else f"got {data[:20]!r}"


def scenario_sigterm(timeout_ms=None, second_signal=False, clients=True):
    args = ["--demo-delay-ms", "60000"]
    if timeout_ms is not None:
        args += ["--shutdown-timeout-ms", str(timeout_ms)]
    node = Node(args)
    socks = []
    try:
        inflight = half = None
        if clients:
            inflight = socket.create_connection(node.api, timeout=2)
            inflight.sendall(b"GET /api/demo/apple HTTP/1.1\r\nHost: x\r\n\r\n")
            half = socket.create_connection(node.api, timeout=2)
            half.sendall(b"GET /api/demo/banana HTTP/1.1\r\nHost: x\r\n")
            socks = [inflight, half]
        time.sleep(0.5)
        alive_before = node.proc.poll() is None
        t0 = time.monotonic()
        os.kill(node.pid, signal.SIGTERM)
        t1 = None
        if second_signal:
            time.sleep(0.5)
            t1 = time.monotonic()
            os.kill(node.pid, signal.SIGTERM)
        t_exit = node.wait_exit(30.0)
        res = {
            "shutdown_timeout_ms": timeout_ms if timeout_ms is not None else "default",
            "second_sigterm": second_signal,
            "clients": clients,
            "alive_before": alive_before,
            "exited": t_exit is not None,
            "exit_s_after_first": (t_exit - t0) if t_exit else None,
            "exit_s_after_second": (t_exit - t1) if (t_exit and t1) else None,
            "exit_code": node.proc.returncode if t_exit else None,
        }
        if clients:
            res["inflight_client"] = read_outcome(inflight)
            res["half_head_client"] = read_outcome(half)
        res["log"] = node.log_counts()
        res["log_tail"] = node.log_lines()[-4:]
        return res
    finally:
        close_all(socks)
        node.kill()


# ---------------------------------------------------------------------------------------------
# 4. descriptor exhaustion


def scenario_emfile():
    node = Node([], nofile=EMFILE_LIMIT)
    socks = []
    try:
        time.sleep(0.3)
        limit_line = next((l for l in node.log_lines() if "open file limit" in l), "")
        ok_before = healthz(node.api)
        # All at once and without waiting for the server: it cannot accept them all.
        socks, failed = open_conns(node.api, EMFILE_CONNS, limit=5.0, batch=EMFILE_CONNS)
        opened = len(socks)
        log(f"emfile: {len(socks)} connections open ({failed} not established within 5 s)")
        time.sleep(1.0)
        fds_exhausted = node.fds()
        during = healthz(node.api, timeout=1.0)
        warn_during = node.log_counts()["WARN"]
        close_all(socks)
        socks = []
        t0, wall0 = time.monotonic(), time.time()
        recovered, tries = None, 0
        while time.monotonic() - t0 < 20.0:
            tries += 1
            if healthz(node.api, timeout=3.0) == 200:
                recovered = time.monotonic() - t0
                break
            time.sleep(0.1)
        time.sleep(0.5)
        lines = node.log_lines()
        # The node's own view: its last "accepting connections again", from the log's timestamp.
        again = [log_time(l) for l in lines if "accepting connections again" in l]
        again_after = [t - wall0 for t in again if t is not None and t >= wall0 - 0.05]
        res = {
            "nofile": EMFILE_LIMIT,
            "limit_log_line": limit_line.split("INFO", 1)[-1].strip(),
            "healthz_before": ok_before,
            "conns": opened,
            "not_established_5s": failed,
            "node_accepting_again_s_after_close": max(again_after) if again_after else None,
            "node_fds_exhausted": fds_exhausted,
            "healthz_during": during,
            "warn_lines_while_exhausted": warn_during,
            "recovered_s_after_close": recovered,
            "healthz_tries": tries,
            "accept_failed_lines": sum("accepting a connection failed" in l for l in lines),
            "accepting_again_lines": sum("accepting connections again" in l for l in lines),
            "accept_lines": [l.split(" ", 1)[-1] for l in lines if "accepting" in l],
        }
        res["log"] = node.log_counts()
        return res
    finally:
        close_all(socks)
        node.kill()


# ---------------------------------------------------------------------------------------------


def fmt_s(x):
    return "did not exit" if x is None else f"{x:.2f} s"


def fmt_log(c):
    return f"{c['lines']} ({c['INFO']} INFO, {c['WARN']} WARN, {c['ERROR']} ERROR)"


def report(r):
    rows = []
    i = r["idle"]
    rows.append((
        f"1. {i['conns']:,} idle connections (nothing sent)",
        f"opened in {i['open_s']:.1f} s, {i['accepted_by_server']:,} held by the node; RSS {mib(i['rss_before_kib']):.1f} → {mib(i['rss_open_kib']):.1f} MiB 1 s after open "
        f"(+{i['per_conn_bytes'] / 1024:.1f} KiB/conn); closed by the server after 12 s: "
        f"{i['closed_after_12s']:,}/{i['conns']:,} (first {fmt_opt(i['first_close_s'])}, last "
        f"{fmt_opt(i['last_close_s'])} after open); RSS then {mib(i['rss_12s_kib']):.1f} MiB",
        fmt_log(i["log"]),
    ))
    b = r["big_head"]
    rows.append((
        f"2. {b['conns']:,} × 389 KiB unfinished heads",
        f"{b['accepted_by_server']:,} accepted; RSS {mib(b['rss_before_kib']):.1f} MiB before; peak sampled {mib(b['peak_rss_sampled_kib']):.1f} "
        f"MiB, VmHWM {mib(b['vmhwm_kib']):.1f} MiB; 1 s after the clients left "
        f"{mib(b['rss_1s_after_close_kib']):.1f} MiB; responses {fmt_dict(b['responses'])}; "
        f"connection ends {fmt_dict(b['ends'])} (last at {fmt_opt(b['last_end_s'])}); bytes sent "
        f"per client min/median/max {'/'.join(f'{x:,}' for x in b['sent_bytes_min_median_max'])} "
        f"of {b['payload_bytes']:,}",
        fmt_log(b["log"]),
    ))
    for s in r["sigterm"]:
        if s["second_sigterm"]:
            what = "3. second SIGTERM 0.5 s after the first (default timeout)"
            fig = (f"exit {fmt_s(s['exit_s_after_second'])} after the 2nd signal "
                   f"({fmt_s(s['exit_s_after_first'])} after the 1st), code {s['exit_code']}")
        elif not s["clients"]:
            what = "3. SIGTERM, no clients (reference)"
            fig = f"exit {fmt_s(s['exit_s_after_first'])}, code {s['exit_code']}"
        else:
            what = f"3. SIGTERM, stuck clients, --shutdown-timeout-ms {s['shutdown_timeout_ms']}"
            fig = f"exit {fmt_s(s['exit_s_after_first'])}, code {s['exit_code']}"
        if s["clients"]:
            fig += (f"; in-flight client: {s['inflight_client']}; half-head client: "
                    f"{s['half_head_client']}")
        rows.append((what, fig, fmt_log(s["log"])))
    e = r["emfile"]
    rows.append((
        f"4. ulimit -n {e['nofile']}, {EMFILE_CONNS} connections, then closed",
        f"{e['conns']} connected, {e['not_established_5s']} not within 5 s; "
        f"node fds at exhaustion {e['node_fds_exhausted']}; /healthz during: "
        f"{e['healthz_during'] or 'no answer in 1 s'}; accept-failure WARN lines "
        f"{e['accept_failed_lines']}, 'accepting connections again' {e['accepting_again_lines']}; "
        f"/healthz 200 {fmt_s(e['recovered_s_after_close']) if e['recovered_s_after_close'] is not None else 'NOT within 20 s'} "
        f"after the clients closed (node logged 'accepting connections again' "
        f"{fmt_opt(e['node_accepting_again_s_after_close'])} after)",
        fmt_log(e["log"]),
    ))
    print()
    print("| scenario | figures | node log lines |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def fmt_opt(x):
    return "-" if x is None else f"{x:.2f} s"


def fmt_dict(d):
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def main():
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    log("cargo build --release -p alo-node")
    subprocess.run(["cargo", "build", "--release", "-p", "alo-node"], cwd=ROOT, check=True)
    nofile = raise_nofile(IDLE_CONNS + BIG_CONNS + 200)
    if nofile < IDLE_CONNS + 100:
        sys.exit(f"RLIMIT_NOFILE is {nofile}: too low for {IDLE_CONNS} connections")
    results = {}
    try:
        log("1. idle connections")
        results["idle"] = scenario_idle()
        log("2. unfinished big heads")
        results["big_head"] = scenario_big_head()
        log("3. SIGTERM")
        results["sigterm"] = [
            scenario_sigterm(None, clients=False),
            scenario_sigterm(None),
            scenario_sigterm(1000),
            scenario_sigterm(None, second_signal=True),
        ]
        log("4. descriptor exhaustion")
        results["emfile"] = scenario_emfile()
    finally:
        kill_all()
    if "--json" in sys.argv[1:]:
        print(json.dumps(results, indent=1, default=str))
    report(results)


if __name__ == "__main__":
    main()
