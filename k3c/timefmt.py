"""Times as text, the forms k3c reads and writes: RFC 3339, Go durations and docker's ``--since``.

One module for every time format so they cannot drift apart: Kubernetes' ``metav1.Time`` (whole seconds)
and ``MicroTime`` (microseconds, also docker's ``Created``/``StartedAt`` and OCI's ``created``), CRI's
log lines with nanoseconds, Go durations (``--event-ttl``, HEALTHCHECK, ``--since 10m``) and docker's
``--since``. Python's datetime stops at microseconds, but CRI log lines carry nanoseconds and
``docker logs -t`` prints all nine digits; precise times are therefore plain integers of nanoseconds since
the epoch here. A leaf, standard library only: the CLI parses ``--since`` with it, the API server expires
Events, the builder reads HEALTHCHECK and the reconcilers stamp status.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time

NS = 1_000_000_000

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\d*(Z|z|[+-]\d{2}:?\d{2})?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS}


def parse_rfc3339_ns(text: str) -> int:
    """``2024-05-01T10:00:00.123456789+02:00`` (or ``Z``; none: local) → ns since the epoch; ValueError if not."""
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    tz: dt.tzinfo | None = dt.UTC if zone else None  # no zone: local time, as docker reads --since
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    base = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    return int(base.timestamp()) * NS + int((frac or "0").ljust(9, "0"))


def format_rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch → ``2024-05-01T08:00:00.123456789Z`` (UTC, nine digits, like docker -t)."""
    seconds, nanos = divmod(ns, NS)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def format_rfc3339(seconds: float) -> str:
    """Seconds since the epoch → ``2024-05-01T08:00:00Z``: ``metav1.Time`` (UTC, whole seconds)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """Now as ``metav1.Time``: creation/deletion timestamps, conditions' lastTransitionTime."""
    return format_rfc3339(time.time())


def format_micro_ns(ns: int) -> str:
    """Nanoseconds since the epoch → ``2024-05-01T08:00:00.123456Z`` (``metav1.MicroTime``, docker's
    ``StartedAt``); '' for 0, containerd's "not set" (a container that never started or finished)."""
    if not ns:
        return ""
    seconds, nanos = divmod(ns, NS)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos // 1000:06d}Z"


def now_micro() -> str:
    """Now as ``metav1.MicroTime``: Events' eventTime, containers' start and finish, OCI's ``created``."""
    return format_micro_ns(time.time_ns())


def parse_duration_ns(text: str) -> int:
    """A Go duration (``10m``, ``1h30m``, ``1.5s``, ``300ms``) → nanoseconds; ValueError if not one."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"not a duration: {text!r}")
    return int(total)


def format_duration_ns(ns: int) -> str:
    """Nanoseconds as a Go duration in the largest unit that keeps them exact (``30s``, ``1500ms``, ``7ns``):
    a docker API duration (an integer) as spec fields take it."""
    for unit in ("h", "m", "s", "ms", "us"):
        if ns and ns % _UNITS_NS[unit] == 0:
            return f"{ns // _UNITS_NS[unit]}{unit}"
    return f"{ns}ns"


def parse_since(text: str, now_ns: int | None = None) -> int:
    """docker's ``--since``: a duration before now, RFC 3339 (or a date), or a unix timestamp → epoch ns.

    Raises ValueError with docker's wording for anything else.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        whole, _, frac = value.partition(".")
        return int(whole) * NS + int(frac.ljust(9, "0") if frac else 0)
    try:
        return now_ns - parse_duration_ns(value)
    except ValueError:
        pass
    try:
        return parse_rfc3339_ns(value)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return parse_rfc3339_ns(value + "T00:00:00")
    raise ValueError(f'invalid value for "since": failed to parse value as time or duration: "{text}"')


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def since(value: str | None, now: float | None = None) -> float | None:
    """Seconds elapsed since an RFC 3339 timestamp."""
    t = _epoch(value) if value else None
    if t is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - t)


@functools.lru_cache(maxsize=4096)
def _epoch(value: str) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch, remembered: a container list asks the age of every
    container on every call, from the same few timestamps."""
    t = parse_time(value)
    return None if t is None else t.timestamp()
