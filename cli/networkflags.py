"""`-p`, `--expose`, `--add-host` and `--dns-search`: docker's network flags → LocalContainer spec entries.

Pure functions with docker's syntax and wording: a bad value raises argparse.ArgumentTypeError (the parser
prints it as docker's flag parser would, exit 125) or, for what docker checks after parsing, a CLIError.
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from k3c import runoptions
from k3c.cli.errors import CLIError
from k3c.cli.goflags import parse_uint

PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


# ---- -p/--publish ------------------------------------------------------------------------------------
def _port_range(text: str, what: str, allow_empty: bool = False) -> list[int]:
    if text == "" and allow_empty:
        return []
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise _bad(f"invalid {what}: {text}") from None
    if not (0 < first <= last <= 65535):
        raise _bad(f"invalid {what}: {text}")
    return list(range(first, last + 1))


def _split_publish(raw: str) -> tuple[str, str, str]:
    """docker's nat.splitParts: [ip:][hostPort:]containerPort, the IP possibly IPv6 in brackets."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_publish(value: str) -> list[dict[str, Any]]:
    """-p forms: 80, 8080:80, 127.0.0.1:8080:80, 127.0.0.1::80, 8080:80/udp, [::1]:8080:80, 8000-8001:80-81."""
    raw, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto.lower() not in PROTOCOLS:
        raise _bad(f"invalid proto: {proto}")
    ip, host, container = _split_publish(raw)
    ip = ip.strip("[]")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _bad(f"invalid IP address: {ip}") from None
    if not container:
        raise _bad(f"no port specified: {value}<empty>")
    cports = _port_range(container, "containerPort")
    hports = _port_range(host, "hostPort", allow_empty=True)
    if hports and len(hports) != len(cports):
        raise _bad(f"invalid ranges specified for container and host Ports: {container} and {host}")
    out = []
    for i, cport in enumerate(cports):
        entry: dict[str, Any] = {"containerPort": cport, "protocol": PROTOCOLS[proto.lower()]}
        if hports:
            entry["hostPort"] = hports[i]
        if ip:
            entry["hostIP"] = ip
        out.append(entry)
    return out


# ---- --expose ----------------------------------------------------------------------------------------
def _expose_range(ports: str) -> tuple[int, int]:
    """docker's nat.ParsePortRange."""
    if not ports:
        raise ValueError("Empty string specified for ports.")
    lo, sep, hi = ports.partition("-")
    start = parse_uint(lo, 16)
    end = parse_uint(hi.split("-")[0], 16) if sep else start
    if end < start:
        raise ValueError(f"Invalid range specified for the Port: {ports}")
    return start, end


def parse_expose(values: list[str]) -> list[dict[str, Any]]:
    """--expose 80, 80/udp, 8000-8010/tcp → spec.expose entries, in order, each port once."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for value in values:
        if ":" in value:
            raise CLIError(f"invalid port format for --expose: {value}", 125)
        port, _, proto = value.partition("/")
        if not value or not port:
            port, proto = "", ""
        proto = proto or "tcp"
        try:
            start, end = _expose_range(port)
        except ValueError as err:
            raise CLIError(f"invalid range format for --expose: {value}, error: {err}", 125) from None
        if proto.lower() not in PROTOCOLS:
            raise CLIError(f"invalid proto for --expose: {value} (tcp, udp or sctp)", 125)
        if start == 0:
            raise CLIError(f"invalid port for --expose: {value} (0 is not a port)", 125)
        for number in range(start, end + 1):
            protocol = PROTOCOLS[proto.lower()]
            out.setdefault((number, protocol), {"containerPort": number, "protocol": protocol})
    return list(out.values())


# ---- --add-host, --dns-search ------------------------------------------------------------------------
def parse_add_host(value: str) -> dict[str, str]:
    """NAME:IP (split at the first colon, so IPv6 works) or NAME:host-gateway."""
    try:
        return runoptions.extra_host(value)
    except ValueError as err:
        raise _bad(str(err)) from None


def parse_dns_search(value: str) -> str:
    """A search domain (docker's ValidateDNSSearch); "." stands for none."""
    try:
        return runoptions.dns_search(value)
    except ValueError as err:
        raise _bad(str(err)) from None
