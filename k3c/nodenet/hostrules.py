"""The host's iptables rules for the node's networks, in k3c's own chains only: isolation, forwarding, NAT.

One set per node, named after its default bridge (so two k3c daemons on one host never share them), written
per *network* rather than per container. The CNI bridge plugin's ``ipMasq`` and the firewall plugin would
add a chain or rules for every container, and each ``iptables`` call they make costs more as the ruleset
grows: a sandbox's set-up and teardown then cost ~100 ms more and grew with the number of containers. So
the networks' conflists use neither, and these rules do their work once per network:

- ``mangle`` ``K3C-ISO-<tag>`` and ``K3C-ISO2-<tag>``, jumped to first from ``FORWARD`` (isolation, like
  docker's two stages): a packet coming from one of the node's bridges and leaving by another goes to stage
  two, which drops whatever leaves by any of the node's bridges; an ``internal`` network's bridge may send
  to and receive from nothing but itself. ``mangle`` runs before ``filter``, so a verdict here cannot be
  overtaken by rules other software inserts later in front of ours.
- ``filter`` ``K3C-FWD-<tag>``, jumped to first from ``FORWARD``: what comes from or goes to a bridge is
  accepted (what the firewall plugin accepted per container), whatever the host's FORWARD policy (docker
  sets DROP) — isolation has already dropped what must not pass.
- ``nat`` ``K3C-NAT-<tag>``, jumped to first from ``POSTROUTING``: a network's traffic leaving its subnet is
  masqueraded (what ``ipMasq`` did per container), except multicast; ``internal`` networks get none.

The chains are rewritten whole in one ``iptables-restore --noflush`` transaction from the list of networks
(level-based: the same list gives the same rules, however often it runs); nothing else of the host's rules
is touched except the three jumps, added only if missing. ``k3c daemon`` writes them at start from the
networks set up on disk (:func:`k3c.nodenet.conflists.members`), the operator whenever a network comes or goes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


class RulesError(RuntimeError):
    """iptables refused; the message carries its error."""


@dataclass(frozen=True)
class Member:
    """One network as its rules need it."""

    bridge: str
    subnet: str
    internal: bool = False


@dataclass(frozen=True)
class Chain:
    table: str
    hook: str  #: the built-in chain that jumps to it, first
    name: str


def chains(tag: str) -> list[Chain]:
    """The node's chains (``tag``: its default bridge's name, at most 15 characters: names stay under
    iptables' 28), the jumped-to ones first in each table."""
    return [Chain("mangle", "FORWARD", f"K3C-ISO-{tag}"), Chain("mangle", "", f"K3C-ISO2-{tag}"),
            Chain("filter", "FORWARD", f"K3C-FWD-{tag}"), Chain("nat", "POSTROUTING", f"K3C-NAT-{tag}")]


def rules(tag: str, members: Sequence[Member]) -> dict[str, list[str]]:
    """Each table's chain declarations and rules, in ``iptables-restore`` syntax."""
    iso, iso2, fwd, nat = (c.name for c in chains(tag))
    mangle = [f":{iso} - [0:0]", f":{iso2} - [0:0]"]
    for m in members:
        if m.internal:
            mangle.append(f"-A {iso} -i {m.bridge} ! -o {m.bridge} -j DROP")
            mangle.append(f"-A {iso} -o {m.bridge} ! -i {m.bridge} -j DROP")
    mangle += [f"-A {iso} -i {m.bridge} ! -o {m.bridge} -j {iso2}" for m in members]
    mangle += [f"-A {iso2} -o {m.bridge} -j DROP" for m in members]
    filter_ = [f":{fwd} - [0:0]"]
    for m in members:
        filter_ += [f"-A {fwd} -i {m.bridge} -j ACCEPT", f"-A {fwd} -o {m.bridge} -j ACCEPT"]
    nat_ = [f":{nat} - [0:0]"]
    for m in members:
        if not m.internal:
            nat_ += [f"-A {nat} -s {m.subnet} -d {m.subnet} -j RETURN",
                     f"-A {nat} -s {m.subnet} ! -d 224.0.0.0/4 -j MASQUERADE"]
    return {"mangle": mangle, "filter": filter_, "nat": nat_}


def _iptables(table: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True, text=True)


def sync(tag: str, members: Sequence[Member]) -> None:
    """Make the chains say exactly what ``members`` need, and the jumps to them exist once."""
    text = "".join(f"*{table}\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
                   for table, lines in rules(tag, members).items())
    r = subprocess.run(["iptables-restore", "-w", "--noflush"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise RulesError(f"iptables-restore: {r.stderr.strip()}")
    for c in chains(tag):
        if c.hook and _iptables(c.table, "-C", c.hook, "-j", c.name).returncode != 0:
            r = _iptables(c.table, "-I", c.hook, "1", "-j", c.name)
            if r.returncode != 0:
                raise RulesError(f"iptables -t {c.table} -I {c.hook} 1 -j {c.name}: {r.stderr.strip()}")


def listed(tag: str) -> list[str]:
    """The chains' current rules (``iptables -S`` lines; empty if they do not exist)."""
    out: list[str] = []
    for c in chains(tag):
        r = _iptables(c.table, "-S", c.name)
        if r.returncode == 0:
            out += [line for line in r.stdout.splitlines() if line.startswith("-A ")]
    return out


def remove(tag: str) -> list[str]:
    """Drop the jumps and the chains (a node's clean-up); returns what was done."""
    done: list[str] = []
    for c in chains(tag):
        while c.hook and _iptables(c.table, "-D", c.hook, "-j", c.name).returncode == 0:
            done.append(f"iptables -t {c.table} -D {c.hook} -j {c.name}")
    for c in chains(tag):
        _iptables(c.table, "-F", c.name)
    for c in chains(tag):
        if _iptables(c.table, "-X", c.name).returncode == 0:
            done.append(f"iptables -t {c.table} -X {c.name}")
    return done
