#!/usr/bin/env python3
"""Load test for `loc3r-serve serve` (not part of `make test`).

N concurrent clients for T seconds against a running server on loopback. Each client
loops over a mix of requests on one registered video: ask (JSON), ask (SSE stream),
localize, and chat completions. Reports requests/s, p50/p99 latency, errors by kind,
and the server's RSS at start and end (from /proc/PID/status, with --pid).

    tools/loadtest/loadtest.py --url http://127.0.0.1:8080 --video-id ID --clients 64 --seconds 300 --pid PID
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse


def rss_kib(pid):
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--video-id", required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-requests", type=int, default=10_000_000, help="stop after this many requests in all")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--api-key")
    ap.add_argument("--pid", type=int, help="server pid, for RSS")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadtest: only loopback targets are allowed")
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    vid = a.video_id
    mix = [
        ("ask", f"/v1/videos/{vid}/ask", {"question": "Where is the chair?", "max_new_tokens": a.max_new_tokens}),
        ("ask_sse", f"/v1/videos/{vid}/ask", {"question": "Which way am I facing?", "max_new_tokens": a.max_new_tokens, "stream": True}),
        ("localize", f"/v1/videos/{vid}/localize", {"situation": "I am sitting on the bed facing the window"}),
        ("chat", "/v1/chat/completions", {"video_id": vid, "max_tokens": a.max_new_tokens, "messages": [{"role": "user", "content": "Where is the door?"}]}),
    ]
    lat = {name: [] for name, _, _ in mix}
    errors = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + a.seconds
    budget = [a.max_requests]

    def client(i):
        rnd = random.Random(i)
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while time.monotonic() < stop_at:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            name, path, body = rnd.choice(mix)
            t = time.monotonic()
            try:
                conn.request("POST", path, body=json.dumps(body), headers=headers)
                r = conn.getresponse()
                data = r.read()
                ok = r.status == 200 and (not body.get("stream") or b"event: end" in data)
                kind = None if ok else f"{name}:{r.status}"
            except Exception as e:  # noqa: BLE001 - every failure is counted
                kind = f"{name}:{type(e).__name__}"
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
            dt = time.monotonic() - t
            with lock:
                if kind:
                    errors[kind] = errors.get(kind, 0) + 1
                else:
                    lat[name].append(dt)
        conn.close()

    rss0 = rss_kib(a.pid)
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    rss1 = rss_kib(a.pid)

    def pct(xs, p):
        if not xs:
            return float("nan")
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    all_lat = [x for v in lat.values() for x in v]
    n_err = sum(errors.values())
    report = {
        "clients": a.clients,
        "seconds": round(wall, 1),
        "requests": len(all_lat) + n_err,
        "requests_per_s": round((len(all_lat) + n_err) / wall, 1),
        "p50_ms": round(pct(all_lat, 50), 1),
        "p99_ms": round(pct(all_lat, 99), 1),
        "errors": n_err,
        "errors_by_kind": errors,
        "per_route": {k: {"n": len(v), "p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)} for k, v in lat.items()},
        "rss_start_mib": rss0 and round(rss0 / 1024, 1),
        "rss_end_mib": rss1 and round(rss1 / 1024, 1),
        "rss_growth_pct": (rss0 and rss1) and round(100 * (rss1 - rss0) / rss0, 1),
    }
    print(json.dumps(report, indent=2))
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())
