"""``docker stats``: a container's resource usage in docker's stats document, read from the node itself.

From the cgroups of the container's init process (``/proc/PID/cgroup``, each controller where
``/proc/self/mountinfo`` has it mounted: cgroup v1, the hybrid layout, or v2) and its network namespace's
``/proc/PID/net/dev``, with the host's ``/proc/stat`` for the system CPU time the CLI's percentage is
relative to, as dockerd's collector does. A container that is not running gets docker's zeroed document.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3c import dockerid

#: docker's time of a document never read (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_NS = 1_000_000_000


@dataclass(frozen=True)
class Target:
    """What a stats document is about: the container's init pid (0: not running), its name and ID."""

    pid: int
    name: str
    id: str
    host_network: bool

    @classmethod
    def of(cls, obj: dict[str, Any], pid: int) -> Target:
        return cls(pid, dockerid.docker_name(obj), dockerid.object_id(obj),
                   bool((obj.get("spec") or {}).get("hostNetwork")))


def document(target: Target, previous: dict[str, Any] | None) -> dict[str, Any]:
    """docker's stats JSON now; ``previous`` (the last document) becomes its ``pre*`` fields."""
    doc: dict[str, Any] = {
        "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {}, "blkio_stats": _empty_blkio(),
        "num_procs": 0, "storage_stats": {}, "cpu_stats": _empty_cpu(), "precpu_stats": _empty_cpu(),
        "memory_stats": {}, "name": "/" + target.name, "id": target.id,
    }
    if previous is not None:
        doc["preread"] = previous["read"]
        doc["precpu_stats"] = previous["cpu_stats"]
    if not target.pid:
        return doc
    try:
        groups = cgroups_of(target.pid)
        doc.update(_sample(groups))
        doc["read"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if not target.host_network:
            doc["networks"] = network_stats(target.pid)
    except (FileNotFoundError, ProcessLookupError):  # the container ended meanwhile
        doc["read"] = ZERO_TIME
    return doc


# ---- cgroups ----------------------------------------------------------------------------------------
def cgroup_mounts() -> dict[str, tuple[str, str]]:
    """Controller → (mount point, mount root) of the mounted cgroup hierarchies; ``""`` is cgroup v2."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, point, fstype = fields[3], fields[4], rest[0]
        if fstype == "cgroup2":
            mounts.setdefault("", (point, root))
        elif fstype == "cgroup":
            for option in rest[2].split(","):
                mounts.setdefault(option, (point, root))
    return mounts


def cgroups_of(pid: int) -> dict[str, Path]:
    """Controller → the directory of ``pid``'s cgroup in it (``""``: its cgroup v2 directory)."""
    mounts = cgroup_mounts()
    out: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts:
                point, root = mounts[controller]
                relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
                out[controller] = Path(point) / relative
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, OSError):
        return ""


def _int(path: Path) -> int:
    text = _read(path)
    try:
        return int(text)
    except ValueError:
        return 0


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (``memory.stat``, ``cpu.stat``) as a dict."""
    out: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _sample(groups: dict[str, Path]) -> dict[str, Any]:
    v1 = "memory" in groups or "cpuacct" in groups
    sample = _sample_v1(groups) if v1 else _sample_v2(groups.get("", Path("/nonexistent")))
    sample["cpu_stats"]["system_cpu_usage"], sample["cpu_stats"]["online_cpus"] = system_cpu()
    return sample


def _sample_v1(groups: dict[str, Path]) -> dict[str, Any]:
    acct = groups.get("cpuacct", Path("/nonexistent"))
    ticks = _keyed(acct / "cpuacct.stat")
    percpu = [int(v) for v in _read(acct / "cpuacct.usage_percpu").split()]
    cpu_dir = groups.get("cpu", acct)
    throttled = _keyed(cpu_dir / "cpu.stat")
    mem = groups.get("memory", Path("/nonexistent"))
    limit = _int(mem / "memory.limit_in_bytes")
    pids = groups.get("pids", Path("/nonexistent"))
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": _int(acct / "cpuacct.usage"), "percpu_usage": percpu,
                          "usage_in_kernelmode": ticks.get("system", 0) * _NS // _CLOCK_TICKS,
                          "usage_in_usermode": ticks.get("user", 0) * _NS // _CLOCK_TICKS},
            "throttling_data": {"periods": throttled.get("nr_periods", 0),
                                "throttled_periods": throttled.get("nr_throttled", 0),
                                "throttled_time": throttled.get("throttled_time", 0)},
        },
        "memory_stats": {
            "usage": _int(mem / "memory.usage_in_bytes"), "max_usage": _int(mem / "memory.max_usage_in_bytes"),
            "stats": _keyed(mem / "memory.stat"), "failcnt": _int(mem / "memory.failcnt"),
            "limit": _capped_limit(limit),
        },
        "pids_stats": _pids(pids / "pids.current", pids / "pids.max"),
        "blkio_stats": _blkio_v1(groups.get("blkio", Path("/nonexistent"))),
    }


def _sample_v2(group: Path) -> dict[str, Any]:
    cpu = _keyed(group / "cpu.stat")
    limit_text = _read(group / "memory.max")
    rbytes = wbytes = 0
    for line in _read(group / "io.stat").splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        rbytes += int(fields.get("rbytes", 0))
        wbytes += int(fields.get("wbytes", 0))
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000,
                          "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                          "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
            "throttling_data": {"periods": cpu.get("nr_periods", 0), "throttled_periods": cpu.get("nr_throttled", 0),
                                "throttled_time": cpu.get("throttled_usec", 0) * 1000},
        },
        "memory_stats": {"usage": _int(group / "memory.current"), "stats": _keyed(group / "memory.stat"),
                         "limit": _capped_limit(int(limit_text) if limit_text.isdigit() else 0)},
        "pids_stats": _pids(group / "pids.current", group / "pids.max"),
        "blkio_stats": {**_empty_blkio(), "io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": rbytes},
            {"major": 0, "minor": 0, "op": "write", "value": wbytes}]},
    }


def _capped_limit(limit: int) -> int:
    """No memory limit reads as a huge number: docker reports the machine's memory then."""
    total = machine_memory()
    return total if limit <= 0 or (total and limit > total) else limit


def machine_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _pids(current: Path, maximum: Path) -> dict[str, int]:
    out = {"current": _int(current)}
    limit = _read(maximum)
    if limit.isdigit():
        out["limit"] = int(limit)
    return out


def _blkio_v1(group: Path) -> dict[str, Any]:
    """Bytes and operations per device, CFQ's recursive files where the kernel has them, else throttle's."""
    cfq = (group / "blkio.io_serviced_recursive").exists()
    files = {"io_service_bytes_recursive": "blkio.io_service_bytes_recursive" if cfq else
             "blkio.throttle.io_service_bytes",
             "io_serviced_recursive": "blkio.io_serviced_recursive" if cfq else "blkio.throttle.io_serviced"}
    out = _empty_blkio()
    for key, name in files.items():
        entries = []
        for line in _read(group / name).splitlines():
            fields = line.split()
            if len(fields) == 3 and ":" in fields[0]:
                major, minor = fields[0].split(":")
                entries.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
        out[key] = entries
    return out


def _empty_blkio() -> dict[str, Any]:
    keys = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
            "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive")
    return dict.fromkeys(keys)


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def system_cpu() -> tuple[int, int]:
    """(The host's CPU time in ns since boot, the number of online CPUs), from ``/proc/stat`` as dockerd reads it."""
    total, cpus = 0, 0
    for line in _read(Path("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            total = sum(int(v) for v in line.split()[1:8]) * _NS // _CLOCK_TICKS
        elif line.startswith("cpu"):
            cpus += 1
    return total, cpus


# ---- network ----------------------------------------------------------------------------------------
def network_stats(pid: int) -> dict[str, dict[str, int]]:
    """Interface → docker's counters, from the container's network namespace (the loopback left out)."""
    out: dict[str, dict[str, int]] = {}
    for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, counters = line.partition(":")
        values = [int(v) for v in counters.split()]
        if name.strip() == "lo" or len(values) < 12:
            continue
        out[name.strip()] = {
            "rx_bytes": values[0], "rx_packets": values[1], "rx_errors": values[2], "rx_dropped": values[3],
            "tx_bytes": values[8], "tx_packets": values[9], "tx_errors": values[10], "tx_dropped": values[11],
        }
    return out
