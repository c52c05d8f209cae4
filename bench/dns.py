#!/usr/bin/env python3
"""Benchmark of name resolution on a user network (run on demand, as root: `.venv/bin/python bench/dns.py`).

p50 and p99 of 1000 lookups (``--count``), one after the other, each a fresh UDP query and its answer.

- ``bench/dns.py CONTAINER [--lookup NAME]``: from inside a running container's network, through the
  nameserver its /etc/resolv.conf names (its network's gateway, where k3c's resolver listens), asking for
  NAME (default: the container's own docker name). The queries are sent with dnspython by this script
  re-run in the container's network namespace (``nsenter --net``), so the path is the container's own
  (its veth, the bridge, the resolver) but the stub is dnspython, not the image's libc (a busybox image has
  no tool that could time 1000 lookups itself); ``--nameserver`` asks another address instead. Needs:
  root, ``nsenter``, a `k3c daemon` (``--kubeconfig``, else the CLI's rules) and the container running on
  a DNS-enabled network, i.e. the network plumbing of issue 15 (``k3c run --network NET``); on the default
  network ``bridge`` the nameserver is the host's.
- ``bench/dns.py --local``: no container: a resolver (k3c.netdns.server) on a loopback address in this
  process, its table holding one container, asked the same way; the resolver's own cost.

Prints the figures as one markdown table row; ``--json FILE`` also writes every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, where this very file, dns.py, would hide
# dnspython's `dns`: the repository takes its place (for k3c and tests.support).
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.resolver

#: Seconds to wait for each answer (a lost one ends the run: it would be the p99).
TIMEOUT = 2.0


def lookups(server: str, port: int, name: str, count: int) -> list[float]:
    """Seconds each of ``count`` A lookups of ``name`` took (a failed or empty one stops the run)."""
    import socket

    query = dns.message.make_query(name, "A")
    samples = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # (dnspython waits on a socket it is given by select, with the timeout)
        for _ in range(count):
            started = time.perf_counter()
            try:
                reply = dns.query.udp(query, server, TIMEOUT, port, sock=sock)
            except dns.exception.Timeout:
                raise SystemExit(f"{name}: no answer from {server}:{port} within {TIMEOUT:g} s") from None
            samples.append(time.perf_counter() - started)
            if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
                raise SystemExit(f"{name} did not resolve through {server}:{port}: "
                                 f"{dns.rcode.to_text(reply.rcode())}, {len(reply.answer)} answers")
    return samples


def container_pid(container_id: str) -> int:
    """A process of the container: one whose cgroup path names its CRI container ID."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if container_id in (entry / "cgroup").read_text():
                    return int(entry.name)
            except OSError:
                continue
    raise SystemExit(f"no process of container {container_id[:12]} found (is it running, on this host?)")


def in_container(ref: str, name: str | None, count: int, kubeconfig: str | None,
                 nameserver: str | None = None) -> tuple[list[float], str]:
    from k3c import api, dockerid, kubeclient

    try:
        client = kubeclient.Client(kubeclient.load(kubeconfig))
        items = client.get(api.LOCAL_CONTAINERS.path(client.conn.namespace)).get("items") or []
    except (kubeclient.ConfigError, ConnectionError) as err:
        raise SystemExit(f"bench/dns.py: {err}") from None
    found = dockerid.lookup(items, ref)
    if len(found) != 1:
        raise SystemExit(f"no such container: {ref}")
    obj = found[0]
    status = obj.get("status") or {}
    if status.get("phase") != "Running" or not status.get("containerID"):
        raise SystemExit(f"container {ref} is not running")
    pid = container_pid(status["containerID"])
    if nameserver is None:
        resolv = dns.resolver.Resolver(configure=False)
        resolv.read_resolv_conf(f"/proc/{pid}/root/etc/resolv.conf")
        nameserver = str(resolv.nameservers[0])
    server = nameserver
    target = name or dockerid.docker_name(obj)
    nets = [n.get("name") for n in status.get("networks") or []]
    where = f"container {ref} (networks {', '.join(map(str, nets)) or 'unknown'}), nameserver {server}"
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, __file__, "--inside",
                          "--server", server, "--lookup", target, "--count", str(count)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"lookups in the container's network failed: {out.stderr.strip() or out.stdout}")
    return json.loads(out.stdout), f"{target} from {where}"


def local(count: int) -> tuple[list[float], str]:
    """A resolver in this process on a loopback address, one container in its table."""
    from k3c.netdns.names import NameTable
    from k3c.netdns.server import Answerer, NetworkResolver
    from k3c.netdns.upstream import Upstream
    from tests.support.netdns import LoopThread, address_and_port, container

    loop = LoopThread()
    table = NameTable()
    table.put(container("web", "u1", attached=[{"name": "front", "ip": "10.30.0.2"}]))
    resolver = NetworkResolver(Answerer(("default", "front"), table, Upstream([])), *address_and_port())
    loop.run(resolver.start())
    try:
        return lookups(resolver.address, resolver.port, "web", count), \
            f"web from a local resolver at {resolver.address}:{resolver.port}"
    finally:
        loop.run(resolver.close())
        loop.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("container", nargs="?", help="a running container on a DNS-enabled network")
    p.add_argument("--lookup", help="the name to look up (default: the container's own docker name)")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--kubeconfig", help="the k3c daemon's kubeconfig (default: the CLI's rules)")
    p.add_argument("--nameserver", help="ask this address instead of the container's resolv.conf nameserver")
    p.add_argument("--local", action="store_true", help="an in-process resolver instead of a container")
    p.add_argument("--json", type=Path, help="also write every sample (seconds) here")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # (re-run in the netns)
    p.add_argument("--server", help=argparse.SUPPRESS)  # (the nameserver, in the netns)
    args = p.parse_args()
    if args.inside:
        print(json.dumps(lookups(args.server, 53, args.lookup, args.count)))
        return
    if not args.local and not args.container:
        p.error("name a container, or --local")
    if not args.local and os.geteuid() != 0:
        p.error("entering a container's network namespace needs root")
    samples, what = local(args.count) if args.local else in_container(args.container, args.lookup, args.count,
                                                                        args.kubeconfig, args.nameserver)
    ordered = sorted(samples)
    p50, p99 = statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(f"| lookups | what | p50 ms | p99 ms |\n|---|---|---|---|\n"
          f"| {len(samples)} | {what} | {p50 * 1e3:.3f} | {p99 * 1e3:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"what": what, "samples": samples}))


if __name__ == "__main__":
    main()
