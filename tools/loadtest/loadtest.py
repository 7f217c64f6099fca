#!/usr/bin/env python3
"""Load test for `loc3r-serve serve` (not part of `make test`).

N concurrent clients for T seconds against a running server on loopback, in one of two modes:

- `asks` (default): each client loops over a mix of requests on one registered video: ask
  (JSON), ask (SSE stream), localize, and chat completions.
- `soak`: churn. Each client owns one video file (`--videos DIR`, files `soak-<i>.mp4` under
  the server's allow dir) and loops: register it (alternately a multipart upload of its bytes
  and a JSON path registration), ask, localize, delete it. With `--cache-mb 0` on the server
  every question also re-observes an evicted scene. Memory that does not come back shows as
  RSS growth here.

Reports requests/s, p50/p99 latency per route, errors by kind, and the server's RSS (from
/proc/PID/status, with --pid): at start and end, and in soak mode sampled every --sample-s
seconds, with the growth over the run and over its second half (the part that must be flat
once allocator pools and ONNX Runtime arenas have reached their working size).

    tools/loadtest/loadtest.py --url http://127.0.0.1:8080 --video-id ID --clients 64 --seconds 300 --pid PID
    tools/loadtest/loadtest.py --mode soak --url URL --videos build/loadtest/videos --clients 8 --seconds 600 --pid PID
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
import uuid


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
    ap.add_argument("--mode", choices=["asks", "soak"], default="asks")
    ap.add_argument("--video-id", help="asks mode: the registered video every client asks about")
    ap.add_argument("--videos", help="soak mode: directory with soak-<i>.mp4 for client i (the server's --allow-dir)")
    ap.add_argument("--frames", type=int, default=4, help="soak mode: frames to observe per registration")
    ap.add_argument("--sample-s", type=float, default=10, help="soak mode: RSS sampling period")
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
    if a.mode == "asks" and not a.video_id:
        sys.exit("loadtest: --mode asks needs --video-id")
    if a.mode == "soak" and not a.videos:
        sys.exit("loadtest: --mode soak needs --videos")
    lat = {}
    errors = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + a.seconds
    budget = [a.max_requests]

    def take_budget():
        with lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def record(name, kind, dt):
        with lock:
            if kind:
                errors[kind] = errors.get(kind, 0) + 1
            else:
                lat.setdefault(name, []).append(dt)

    class Client:
        """One keep-alive connection; a request that fails at the transport reconnects."""

        def __init__(self):
            self.conn = http.client.HTTPConnection(host, port, timeout=120)

        def call(self, name, method, path, body=None, extra_headers=None, ok_status=(200,), stream=False):
            t = time.monotonic()
            out = None
            try:
                hdrs = dict(headers)
                hdrs.update(extra_headers or {})
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                ok = r.status in ok_status and (not stream or b"event: end" in data)
                kind = None if ok else f"{name}:{r.status}"
                if ok and not stream and data:
                    out = json.loads(data)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                kind = f"{name}:{type(e).__name__}"
                self.conn.close()
                self.conn = http.client.HTTPConnection(host, port, timeout=120)
            record(name, kind, time.monotonic() - t)
            return out if kind is None else None

        def post_json(self, name, path, body, **kw):
            return self.call(name, "POST", path, body=json.dumps(body), stream=bool(body.get("stream")), **kw)

    def asks_client(i):
        vid = a.video_id
        mix = [
            ("ask", f"/v1/videos/{vid}/ask", {"question": "Where is the chair?", "max_new_tokens": a.max_new_tokens}),
            ("ask_sse", f"/v1/videos/{vid}/ask", {"question": "Which way am I facing?", "max_new_tokens": a.max_new_tokens, "stream": True}),
            ("localize", f"/v1/videos/{vid}/localize", {"situation": "I am sitting on the bed facing the window"}),
            ("chat", "/v1/chat/completions", {"video_id": vid, "max_tokens": a.max_new_tokens, "messages": [{"role": "user", "content": "Where is the door?"}]}),
        ]
        rnd = random.Random(i)
        c = Client()
        while time.monotonic() < stop_at and take_budget():
            name, path, body = rnd.choice(mix)
            c.post_json(name, path, body)
        c.conn.close()

    def multipart(file_bytes, frames):
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"frames\"\r\n\r\n{frames}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"v.mp4\"\r\n"
                "Content-Type: video/mp4\r\n\r\n").encode()
        return head + file_bytes + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"

    def soak_client(i):
        name = f"soak-{i}.mp4"
        with open(f"{a.videos}/{name}", "rb") as f:
            file_bytes = f.read()
        c = Client()
        n = 0
        while time.monotonic() < stop_at and take_budget():
            if n % 2 == 0:
                body, ctype = multipart(file_bytes, a.frames)
                reg = c.call("register_upload", "POST", "/v1/videos", body=body, extra_headers={"Content-Type": ctype}, ok_status=(201,))
            else:
                reg = c.post_json("register_path", "/v1/videos", {"path": name, "frames": a.frames}, ok_status=(201,))
            n += 1
            if reg is None:
                continue
            vid = reg["video_id"]
            c.post_json("ask", f"/v1/videos/{vid}/ask", {"question": "Where is the chair?", "max_new_tokens": a.max_new_tokens})
            c.post_json("localize", f"/v1/videos/{vid}/localize", {"situation": "I am sitting on the bed facing the window"})
            c.call("delete", "DELETE", f"/v1/videos/{vid}")
        c.conn.close()

    samples = []
    t0 = time.monotonic()
    done = threading.Event()

    def sampler():
        while True:
            samples.append((round(time.monotonic() - t0, 1), rss_kib(a.pid)))
            if done.wait(a.sample_s):
                samples.append((round(time.monotonic() - t0, 1), rss_kib(a.pid)))
                return

    rss0 = rss_kib(a.pid)
    sampling = threading.Thread(target=sampler) if a.pid and a.mode == "soak" else None
    if sampling:
        sampling.start()
    target = soak_client if a.mode == "soak" else asks_client
    threads = [threading.Thread(target=target, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    done.set()
    if sampling:
        sampling.join()
    rss1 = rss_kib(a.pid)

    def pct(xs, p):
        if not xs:
            return float("nan")
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    all_lat = [x for v in lat.values() for x in v]
    n_err = sum(errors.values())
    report = {
        "mode": a.mode,
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
    valid = [(t, r) for t, r in samples if r]
    if valid:
        mib = lambda kib: round(kib / 1024, 1)  # noqa: E731
        half = [r for t, r in valid if t >= wall / 2]
        report["rss_max_mib"] = mib(max(r for _, r in valid))
        report["rss_second_half_growth_mib"] = mib(half[-1] - half[0]) if len(half) > 1 else None
        report["rss_series_mib"] = [[t, mib(r)] for t, r in valid]
    print(json.dumps(report, indent=2))
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())
