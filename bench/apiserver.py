#!/usr/bin/env python3
"""Benchmark of the embedded API server (run on demand: `.venv/bin/python bench/apiserver.py`).

Starts `k3c apiserver` in a temporary directory on a free port and measures, from a separate process:
custom-object creates/s with 1 and 8 concurrent clients, the time to list 10,000 objects as JSON and as a
Table, watch delivery latency (p50/p99) with 100 concurrent watchers, and the server's resident memory with
10,000 objects stored. Prints a table and the aims from the issue next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script: tests.support from the repo
from tests.support.harness import APIServerProcess
from tests.support.sample_crds import WIDGET_CRD

W = "/apis/test.k3c.io/v1/namespaces/{ns}/widgets"


def widget(name: str, **annotations: str) -> dict:
    meta: dict = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": meta, "spec": {"size": 1, "shape": "x" * 64}}


class Bench:
    def __init__(self, srv: APIServerProcess):
        self.srv = srv
        self.ssl = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.crt"))
        self.headers = {"Authorization": f"Bearer {srv.token}"}

    def session(self, connections: int = 8) -> aiohttp.ClientSession:
        conn = aiohttp.TCPConnector(ssl=self.ssl, limit=connections + 4)
        return aiohttp.ClientSession(self.srv.url, headers=self.headers, connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=600))

    async def setup(self) -> None:
        async with self.session() as s:
            r = await s.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=yaml.safe_load(WIDGET_CRD))
            assert r.status == 201, await r.text()
            for ns in ("c1", "c8", "big", "watch"):
                r = await s.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": ns}})
                assert r.status == 201

    async def creates(self, ns: str, clients: int, total: int) -> float:
        """Objects created per second by `clients` concurrent clients, each on its own connection."""
        async with self.session(clients) as s:
            counter = iter(range(total))

            async def worker() -> None:
                for i in counter:
                    async with s.post(W.format(ns=ns), json=widget(f"w{i}")) as r:
                        assert r.status == 201, await r.text()
                        await r.read()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return total / (time.perf_counter() - t0)

    async def fill(self, ns: str, n: int) -> None:
        async with self.session(16) as s:
            counter = iter(range(n))

            async def worker() -> None:
                for i in counter:
                    async with s.post(W.format(ns=ns), json=widget(f"o{i:05d}")) as r:
                        assert r.status == 201
                        await r.read()

            await asyncio.gather(*(worker() for _ in range(16)))

    async def list_time(self, ns: str, table: bool, runs: int = 5) -> tuple[float, int]:
        headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"} if table else {}
        times, count = [], 0
        async with self.session(1) as s:
            for _ in range(runs):
                t0 = time.perf_counter()
                async with s.get(W.format(ns=ns), headers=headers) as r:
                    doc = json.loads(await r.read())
                times.append(time.perf_counter() - t0)
                count = len(doc["rows"] if table else doc["items"])
        return statistics.median(times), count

    async def watch_latency(self, watchers: int, writes: int) -> tuple[float, float]:
        """Latency from just before a write is sent to its event arriving, across all watchers."""
        latencies: list[float] = []
        ready = asyncio.Event()
        started = 0
        async with self.session(watchers + 2) as s:

            async def watcher() -> None:
                nonlocal started
                async with s.get(W.format(ns="watch"), params={"watch": "1", "resourceVersion": "0"}) as r:
                    started += 1
                    if started == watchers:
                        ready.set()
                    seen = 0
                    async for line in r.content:
                        ev = json.loads(line)
                        t = float(ev["object"]["metadata"]["annotations"]["bench/sent"])
                        latencies.append(time.time() - t)
                        seen += 1
                        if seen == writes:
                            return

            tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
            await asyncio.wait_for(ready.wait(), 60)
            await asyncio.sleep(0.5)
            for i in range(writes):
                async with s.post(W.format(ns="watch"), json=widget(f"wl{i}", **{"bench/sent": repr(time.time())})) as r:
                    assert r.status == 201
                await asyncio.sleep(0.02)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
        latencies.sort()
        return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="k3c-bench-") as tmp:
        srv = APIServerProcess(Path(tmp) / "data")
        srv.start()
        try:
            b = Bench(srv)
            await b.setup()
            r: dict[str, float] = {}
            r["creates_per_s_1"] = await b.creates("c1", 1, args.creates)
            r["creates_per_s_8"] = await b.creates("c8", 8, args.creates)
            await b.fill("big", args.objects)
            r["list_json_s"], n1 = await b.list_time("big", table=False)
            r["list_table_s"], n2 = await b.list_time("big", table=True)
            assert n1 == n2 == args.objects, (n1, n2)
            assert srv.proc is not None
            r["rss_mb"] = rss_mb(srv.proc.pid)
            p50, p99 = await b.watch_latency(args.watchers, args.watch_writes)
            r["watch_p50_ms"], r["watch_p99_ms"] = p50 * 1000, p99 * 1000
            return r
        finally:
            srv.stop()


def report(r: dict[str, float], args: argparse.Namespace) -> None:
    rows = [
        ("creates/s, 1 client", f"{r['creates_per_s_1']:.0f}", ""),
        ("creates/s, 8 clients", f"{r['creates_per_s_8']:.0f}", ">= 500"),
        (f"list {args.objects} objects, JSON", f"{r['list_json_s'] * 1000:.0f} ms", "< 1000 ms"),
        (f"list {args.objects} objects, Table", f"{r['list_table_s'] * 1000:.0f} ms", "< 1000 ms"),
        (f"watch latency p50, {args.watchers} watchers", f"{r['watch_p50_ms']:.1f} ms", ""),
        (f"watch latency p99, {args.watchers} watchers", f"{r['watch_p99_ms']:.1f} ms", "< 50 ms"),
        (f"resident memory, {args.objects} objects", f"{r['rss_mb']:.0f} MB", "< 300 MB"),
    ]
    print("| measure | k3c | aim |\n|---|---|---|")
    for name, value, aim in rows:
        print(f"| {name} | {value} | {aim} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--creates", type=int, default=2000)
    p.add_argument("--objects", type=int, default=10000)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--watch-writes", type=int, default=50)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    r = asyncio.run(run(args))
    report(r, args)
    if args.json:
        Path(args.json).write_text(json.dumps({**r, "host_cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
