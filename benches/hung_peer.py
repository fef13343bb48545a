#!/usr/bin/env python3
"""Helper of benches/hung-peer.sh: one timed run, and the report over several runs.

`run`: starts wrk against node 1's API, samples node 1's /stats (`groups.files.gets`) every
250 ms, sends SIGSTOP to node 3 at --stop-at seconds (unless --no-stop), and when wrk has
finished sends SIGCONT and waits (bounded) for node 1's peer_health to show node 3 up again.
Writes one JSON file with the samples, the derived numbers and node 1's log lines of the
stopped period.

`report`: reads the JSON files of several runs and prints Markdown tables.

Everything is bounded in time: wrk runs --duration seconds and is killed if it overstays; the
wait for the peer to come back is at most --up-wait seconds.
"""

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

TICK = 0.25


def get_json(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def rate_between(samples, a, b):
    """Mean req/s between the samples nearest to times a and b."""
    sa = min(samples, key=lambda s: abs(s[0] - a))
    sb = min(samples, key=lambda s: abs(s[0] - b))
    if sb[0] <= sa[0]:
        return None
    return (sb[1] - sa[1]) / (sb[0] - sa[0])


def windows(samples):
    """250 ms windows: (start, end, req/s) between consecutive samples."""
    out = []
    for (t0, g0), (t1, g1) in zip(samples, samples[1:]):
        if t1 > t0:
            out.append((t0, t1, (g1 - g0) / (t1 - t0)))
    return out


def windows_1s(samples):
    """Sliding 1 s windows: (start, end, req/s), one ending at each sample."""
    out = []
    for i, (t1, g1) in enumerate(samples):
        cands = [s for s in samples[:i] if t1 - s[0] >= 0.99]
        if not cands:
            continue
        t0, g0 = cands[-1]
        out.append((t0, t1, (g1 - g0) / (t1 - t0)))
    return out


def recovery(ws, samples, t_stop, thr):
    """Seconds from t_stop to the end of the first window, after the dip, that reaches thr and
    whose next second also averages at least thr. 0.0 if no window after the stop fell below
    thr; None if it never came back."""
    after = [w for w in ws if w[1] > t_stop]
    dip = next((i for i, w in enumerate(after) if w[2] < thr), None)
    if dip is None:
        return 0.0
    for w in after[dip + 1:]:
        if w[2] < thr:
            continue
        nxt = rate_between(samples, w[0], w[0] + 1.0)
        if nxt is None or nxt >= thr or w[0] + 1.0 > samples[-1][0]:
            return w[1] - t_stop
    return None


def classify(lines):
    kinds = {"origin_load": 0, "info_other": 0, "warn": 0, "error": 0, "other": 0}
    notable = []
    for line in lines:
        level = re.search(r"\b(TRACE|DEBUG|INFO|WARN|ERROR)\b", line)
        level = level.group(1) if level else None
        if level == "INFO" and re.search(r"\borigin load\b", line):
            kinds["origin_load"] += 1
            continue
        if level == "INFO":
            kinds["info_other"] += 1
        elif level == "WARN":
            kinds["warn"] += 1
        elif level == "ERROR":
            kinds["error"] += 1
        else:
            kinds["other"] += 1
        notable.append(line)
    return kinds, notable


def log_time(line):
    """A tracing line's UTC timestamp as a Unix time, or None."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", line)
    if not m:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + float(m.group(2) or 0)


def marked_down_after(r):
    """Seconds from SIGSTOP to node 1's "peer marked down" line."""
    for line in r.get("log_notable", []):
        if "marked down" in line and (t := log_time(line)) is not None:
            return t - r["wall_stop"]
    return None


def read_lines(path, start, end):
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start))
    return [l for l in data.decode("utf-8", "replace").splitlines() if l.strip()]


def peer_entry(stats, url):
    for p in stats.get("peer_health", []):
        if p.get("url") == url:
            return p
    return None


def cmd_run(a):
    stats_url = f"http://127.0.0.1:{a.api1}/stats"
    env = dict(os.environ, KEYS=str(a.keys))
    wrk_cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{a.duration}s",
               "--timeout", "10s", "--latency", "-s", a.lua, f"http://127.0.0.1:{a.api1}"]
    samples, gaps = [], 0
    t_stop = off_stop = None
    wall_stop = None
    t0 = time.monotonic()
    wrk = subprocess.Popen(wrk_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = t0 + a.duration + 15
    tick = 0
    try:
        while wrk.poll() is None and time.monotonic() < deadline:
            target = t0 + tick * TICK
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            tick += 1
            try:
                gets = get_json(stats_url)["groups"]["files"]["gets"]
                samples.append((time.monotonic() - t0, gets))
            except Exception:
                gets = None
                gaps += 1
            if not a.no_stop and t_stop is None and time.monotonic() - t0 >= a.stop_at:
                off_stop = os.path.getsize(a.log1)
                os.kill(a.node3_pid, signal.SIGSTOP)
                t_stop = time.monotonic() - t0
                wall_stop = time.time()
        if wrk.poll() is None:
            wrk.kill()
        wrk_out = wrk.communicate(timeout=10)[0].decode("utf-8", "replace")
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    t_end = time.monotonic() - t0
    try:
        samples.append((time.monotonic() - t0, get_json(stats_url)["groups"]["files"]["gets"]))
    except Exception:
        gaps += 1

    result = {"stopped": not a.no_stop, "duration": a.duration, "connections": a.connections,
              "threads": a.threads, "keys": a.keys, "stats_gaps": gaps, "wrk": wrk_out,
              "samples": samples}

    if not a.no_stop:
        off_cont = os.path.getsize(a.log1)
        os.kill(a.node3_pid, signal.SIGCONT)
        t_cont = time.monotonic() - t0
        lines = read_lines(a.log1, off_stop, off_cont)
        kinds, notable = classify(lines)
        result.update({"t_stop": t_stop, "t_cont": t_cont, "wall_stop": wall_stop,
                       "stopped_for": t_cont - t_stop, "log_lines": len(lines),
                       "log_kinds": kinds, "log_notable": notable[:20]})
        # Bounded wait for node 1 to see node 3 up again.
        t_up = None
        end = time.monotonic() + a.up_wait
        while time.monotonic() < end:
            try:
                p = peer_entry(get_json(stats_url), a.node3_url)
                if p and p.get("state") == "up":
                    t_up = time.monotonic() - t0 - t_cont
                    break
            except Exception:
                pass
            time.sleep(0.25)
        result["up_after_cont"] = t_up
        time.sleep(0.5)
        # node 1's log lines after SIGCONT, up to now (the "peer is up again" line).
        result["log_after_cont"] = classify(read_lines(a.log1, off_cont, os.path.getsize(a.log1)))[1][:10]
    else:
        t_stop = a.stop_at

    final = get_json(stats_url, timeout=2)
    result["peer_health_node3"] = peer_entry(final, a.node3_url)
    result["final_group"] = final["groups"]["files"]

    result.update({"t_stop": t_stop, "t_end": t_end, "pre_window": a.pre_window})
    derive(result)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(summary_line(result, a.out))


def derive(r):
    """The numbers of a run, from its samples: only windows that end before wrk's end count."""
    t_stop, pre_window = r["t_stop"], r["pre_window"]
    t_end = min(r["t_end"], r["duration"] + 0.05)
    samples = [s for s in r["samples"] if s[0] <= t_end]
    ws = windows(samples)
    w1 = windows_1s(samples)
    pre = rate_between(samples, t_stop - pre_window, t_stop)
    after = [w for w in ws if w[1] > t_stop]
    after1 = [w for w in w1 if w[0] >= t_stop - 0.01]
    low = min(after, key=lambda w: w[2])
    low1 = min(after1, key=lambda w: w[2])
    last = samples[-1][0]
    r.update({
        "pre_rate": pre,
        "low_250ms": {"start": low[0] - t_stop, "rate": low[2]},
        "low_1s": {"start": low1[0] - t_stop, "rate": low1[2]},
        "back_50": recovery(ws, samples, t_stop, 0.5 * pre),
        "back_90": recovery(ws, samples, t_stop, 0.9 * pre),
        "rate_stop_to_end": rate_between(samples, t_stop, last),
        "rate_stop3_to_end": rate_between(samples, t_stop + 3, last),
        "windows_1s_aligned": [
            (k, rate_between(samples, t_stop + k, t_stop + k + 1.0))
            for k in range(-int(t_stop), int(last - t_stop))
            if t_stop + k >= 0 and t_stop + k + 1.0 <= last + 0.05
        ],
        "windows_250ms": [(round(w[0] - t_stop, 3), round(w[2])) for w in ws],
    })
    return r


def fmt_s(v):
    return "never" if v is None else f"{v:.2f} s"


def summary_line(r, name):
    pre = r["pre_rate"]
    s = f"{os.path.basename(name)}: pre {pre:.0f} req/s"
    s += f", lowest 250 ms {r['low_250ms']['rate']:.0f} ({r['low_250ms']['rate'] / pre:.0%})"
    s += f", lowest 1 s {r['low_1s']['rate']:.0f} ({r['low_1s']['rate'] / pre:.0%})"
    if r["stopped"]:
        s += f", back to 50% {fmt_s(r['back_50'])}, to 90% {fmt_s(r['back_90'])}"
        s += f", log lines {r['log_lines']} {r['log_kinds']}, up after SIGCONT {fmt_s(r['up_after_cont'])}"
    return s


def wrk_numbers(text):
    req = re.search(r"(\d+) requests in ([\d.]+)s", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    err = re.search(r"Socket errors: (.*)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    p99 = re.search(r"\s99%\s+(\S+)", text)
    return {
        "requests": int(req.group(1)) if req else None,
        "rps": float(rps.group(1)) if rps else None,
        "socket_errors": err.group(1).strip() if err else "none",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "p99": p99.group(1) if p99 else None,
    }


def cmd_report(a):
    runs = []
    for p in a.files:
        with open(p) as f:
            runs.append((p, derive(json.load(f))))
    base = next((r for _, r in runs if not r["stopped"]), None)
    print("| run | pre-stop req/s | lowest 250 ms window | lowest 1 s window | back to >=50% | back to >=90% "
          "| mean req/s stop+3 s..end (vs pre; vs baseline) | wrk requests / non-2xx / socket errors / p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for p, r in runs:
        pre = r["pre_rate"]
        w = wrk_numbers(r["wrk"])
        name = "baseline (no SIGSTOP)" if not r["stopped"] else os.path.basename(p).removesuffix(".json")
        b50 = fmt_s(r["back_50"]) if r["stopped"] else "-"
        b90 = fmt_s(r["back_90"]) if r["stopped"] else "-"
        print(f"| {name} | {pre:,.0f} | {r['low_250ms']['rate']:,.0f} ({r['low_250ms']['rate'] / pre:.0%}) "
              f"| {r['low_1s']['rate']:,.0f} ({r['low_1s']['rate'] / pre:.0%}) | {b50} | {b90} "
              f"| {r['rate_stop3_to_end']:,.0f} ({r['rate_stop3_to_end'] / pre:.0%}"
              + (f"; {r['rate_stop3_to_end'] / base['rate_stop3_to_end']:.0%}" if base and r["stopped"] else "")
              + ") "
              f"| {w['requests']:,} / {w['non2xx']} / {w['socket_errors']} / {w['p99']} |")
    print()
    print("| run | stopped for | node-1 log lines while stopped | origin load (INFO) | other INFO | WARN | ERROR "
          "| SIGSTOP to 'marked down' | node 3 in node 1's peer_health after SIGCONT | up again after SIGCONT |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p, r in runs:
        if not r["stopped"]:
            continue
        k = r["log_kinds"]
        h = r["peer_health_node3"] or {}
        print(f"| {os.path.basename(p).removesuffix('.json')} | {r['stopped_for']:.1f} s | {r['log_lines']} "
              f"| {k['origin_load']} | {k['info_other']} | {k['warn']} | {k['error'] + k['other']} "
              f"| {fmt_s(marked_down_after(r))} "
              f"| state={h.get('state')}, marked_down={h.get('marked_down')}, marked_up={h.get('marked_up')}, "
              f"failures={h.get('failures')} | {fmt_s(r['up_after_cont'])} |")
    print()
    print("1 s windows, req/s (time relative to SIGSTOP, or to t=5 s in the baseline):")
    for p, r in runs:
        ws = " ".join(f"{t:+.0f}:{v:,.0f}" for t, v in r["windows_1s_aligned"] if v is not None)
        print(f"  {os.path.basename(p).removesuffix('.json')}: {ws}")
    print()
    print("node 1's log lines while node 3 was stopped, apart from 'origin load' (first ones of each run):")
    for p, r in runs:
        for line in r.get("log_notable", [])[:5]:
            print(f"  {os.path.basename(p).removesuffix('.json')}: {line[:300]}")
        for line in r.get("log_after_cont", [])[:3]:
            print(f"  {os.path.basename(p).removesuffix('.json')} (after SIGCONT): {line[:300]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--api1", type=int, required=True)
    r.add_argument("--node3-pid", type=int, required=True)
    r.add_argument("--node3-url", required=True)
    r.add_argument("--log1", required=True)
    r.add_argument("--lua", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--keys", type=int, default=10000)
    r.add_argument("--duration", type=int, default=15)
    r.add_argument("--stop-at", type=float, default=5.0)
    r.add_argument("--pre-window", type=float, default=2.5)
    r.add_argument("--connections", type=int, default=48)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--up-wait", type=float, default=45.0)
    r.add_argument("--no-stop", action="store_true")
    r.set_defaults(fn=cmd_run)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
