"""The pure parts of `top` and `stats`: ps output cut as dockerd cuts it, docker's CLI arithmetic and units."""

from __future__ import annotations

import pytest

from k3c.cli.stats import memory_used, stats_row
from k3c.streams import top
from k3c.units import bytes_size, human_size

PS = """UID        PID  PPID  C STIME TTY          TIME CMD
root         1     0  0 06:00 ?        00:00:01 /sbin/init
root       420     1  0 06:01 ?        00:00:00 sh -c sleep 5 & sleep 6
root       421   420  0 06:01 ?        00:00:00 sleep 5
"""


def test_ps_output_keeps_the_containers_rows_and_the_command_whole() -> None:
    listing = top.parse_ps_output(PS, {420, 421})
    assert listing["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert listing["Processes"] == [["root", "420", "1", "0", "06:01", "?", "00:00:00", "sh -c sleep 5 & sleep 6"],
                                    ["root", "421", "420", "0", "06:01", "?", "00:00:00", "sleep 5"]]


def test_ps_output_without_a_pid_column_and_renamed_pid_columns_are_refused() -> None:
    with pytest.raises(top.TopError, match="Couldn't find PID field in ps output"):
        top.parse_ps_output("COMMAND\nsleep\n", {1})
    with pytest.raises(top.TopError, match='specifying "pid,comm=PID" is not allowed'):
        top.parse_ps_args("-o pid,comm=PID")
    assert top.parse_ps_args("-o pid=PID") == ["-o", "pid=PID"]
    assert top.parse_ps_args("aux") == ["aux"]


def test_stats_row_is_dockers_arithmetic() -> None:
    doc = {
        "id": "a" * 64, "name": "/web",
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 18_000_000_000},
        "memory_stats": {"usage": 10 * 1024 * 1024, "limit": 64 * 1024 * 1024,
                         "stats": {"total_inactive_file": 2 * 1024 * 1024}},
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 12_345_678},
                                                       {"op": "Total", "value": 12_349_774}]},
        "pids_stats": {"current": 3},
    }
    row = stats_row("web", doc, trunc=True)
    assert (row.Container, row.Name, row.ID) == ("web", "web", "a" * 12)
    assert (row.CPUPerc, row.MemUsage, row.MemPerc) == ("100.00%", "8MiB / 64MiB", "12.50%")
    assert (row.NetIO, row.BlockIO, row.PIDs) == ("1.5kB / 0B", "4.1kB / 12.3MB", "3")
    stopped = stats_row("x", {"id": "b" * 64, "name": "/x"}, trunc=False)
    assert (stopped.ID, stopped.CPUPerc, stopped.MemUsage, stopped.PIDs) == ("b" * 64, "0.00%", "0B / 0B", "0")


def test_memory_without_inactive_cache_and_units() -> None:
    assert memory_used({"usage": 100, "stats": {"inactive_file": 40}}) == 60
    assert memory_used({"usage": 100, "stats": {"total_inactive_file": 400}}) == 100
    assert bytes_size(1536) == "1.5KiB" and bytes_size(7.7 * 1024 ** 3) == "7.7GiB" and bytes_size(0) == "0B"
    assert human_size(1234, 3) == "1.23kB" and human_size(1234) == "1.234kB"


def test_changes_in_dockers_order() -> None:
    from k3c.streams.changes import in_docker_order

    found = {"/tmp": "C", "/tmp/new": "A", "/etc": "C", "/etc/group": "D", "/etc/passwd": "C", "/a": "A"}
    assert in_docker_order(found) == [("A", "/a"), ("C", "/etc"), ("C", "/etc/passwd"), ("D", "/etc/group"),
                                      ("C", "/tmp"), ("A", "/tmp/new")]
