"""Isolation between the node's networks, as iptables rules in k3c's own chains only.

Two chains per node (named after its default bridge, so two k3c daemons on one host never share them) in
the ``mangle`` table, jumped to first from its ``FORWARD`` chain. ``mangle`` runs before ``filter``, where
the CNI firewall plugin accepts every packet of a container's address (``CNI-FORWARD``): a verdict here
cannot be overtaken by rules other software inserts later in front of ours. Like docker's two stages:

- ``K3C-ISO-<tag>``: a packet coming from one of the node's bridges and leaving by another bridge goes to
  stage two; an ``internal`` network's bridge may send to and receive from nothing but itself;
- ``K3C-ISO2-<tag>``: a packet leaving by any of the node's bridges is dropped.

Traffic within one bridge, to the host and out to the world (NAT by the bridge plugin) passes. The chains are
rewritten whole in one ``iptables-restore --noflush`` transaction from the list of networks (level-based:
the same list gives the same rules, however often it runs); nothing else of the host's rules is touched
except the one jump, added only if missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "mangle"
HOOK = "FORWARD"


class IsolationError(RuntimeError):
    """iptables refused; the message carries its error."""


@dataclass(frozen=True)
class Member:
    bridge: str
    internal: bool = False


def chains(tag: str) -> tuple[str, str]:
    """The node's two chains (``tag``: its default bridge's name, at most 15 characters)."""
    return f"K3C-ISO-{tag}", f"K3C-ISO2-{tag}"


def rules(tag: str, members: Sequence[Member]) -> list[str]:
    """The chains' rules, in ``iptables-restore`` syntax (the chain declarations first)."""
    first, second = chains(tag)
    lines = [f":{first} - [0:0]", f":{second} - [0:0]"]
    for m in members:
        if m.internal:
            lines.append(f"-A {first} -i {m.bridge} ! -o {m.bridge} -j DROP")
            lines.append(f"-A {first} -o {m.bridge} ! -i {m.bridge} -j DROP")
    for m in members:
        lines.append(f"-A {first} -i {m.bridge} ! -o {m.bridge} -j {second}")
    for m in members:
        lines.append(f"-A {second} -o {m.bridge} -j DROP")
    return lines


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", TABLE, *args], capture_output=True, text=True)


def sync(tag: str, members: Sequence[Member]) -> None:
    """Make the chains say exactly what ``members`` need, and the jump to them exist once."""
    text = "\n".join([f"*{TABLE}", *rules(tag, members), "COMMIT", ""])
    r = subprocess.run(["iptables-restore", "-w", "--noflush"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise IsolationError(f"iptables-restore: {r.stderr.strip()}")
    first, _ = chains(tag)
    if _iptables("-C", HOOK, "-j", first).returncode != 0:
        r = _iptables("-I", HOOK, "1", "-j", first)
        if r.returncode != 0:
            raise IsolationError(f"iptables -t {TABLE} -I {HOOK} 1 -j {first}: {r.stderr.strip()}")


def listed(tag: str) -> list[str]:
    """The chains' current rules (``iptables -S`` lines; empty if they do not exist)."""
    out: list[str] = []
    for chain in chains(tag):
        r = _iptables("-S", chain)
        if r.returncode == 0:
            out += [line for line in r.stdout.splitlines() if line.startswith("-A ")]
    return out


def remove(tag: str) -> list[str]:
    """Drop the jump and both chains (a node's clean-up); returns what was done."""
    done: list[str] = []
    first, second = chains(tag)
    while _iptables("-D", HOOK, "-j", first).returncode == 0:
        done.append(f"iptables -t {TABLE} -D {HOOK} -j {first}")
    for chain in (first, second):
        _iptables("-F", chain)
    for chain in (first, second):
        if _iptables("-X", chain).returncode == 0:
            done.append(f"iptables -t {TABLE} -X {chain}")
    return done
