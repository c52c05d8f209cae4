"""``docker top``: the host's ``ps`` over a container's processes, its output cut into titles and rows.

As dockerd does it: ``ps ARGS -q PID,PID,...`` (``-ef`` by default), and if ``ps`` refuses ``-q`` with those
options, ``ps ARGS`` alone; the header gives the titles and the column of the PID, and only the rows of the
container's pids are kept. The last column (the command) keeps its spaces.
"""

from __future__ import annotations

import asyncio
import re
from typing import TypedDict

DEFAULT_PS_ARGS = "-ef"
#: ``ps -o pid=PID`` style renames of the PID column would hide it from the filter: only ``pid=`` may.
_RENAMED_PID = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")


class TopError(Exception):
    """``ps`` could not be run or read; the message is one line for the user."""


class ProcessList(TypedDict):
    """docker's ContainerTopOKBody."""

    Titles: list[str]
    Processes: list[list[str]]


def parse_ps_args(ps_args: str) -> list[str]:
    """The words of ``ps_args`` (split on spaces, as dockerd does); renaming a column to PID is refused."""
    for key, value in _RENAMED_PID.findall(ps_args):
        if key != "pid":
            raise TopError(f'specifying "{key}={value}" is not allowed')
    return [word for word in ps_args.split(" ") if word]


async def run_ps(args: list[str], pids: list[int]) -> ProcessList:
    """Run ``ps`` and keep the rows of ``pids``."""
    listed = ",".join(str(p) for p in pids)
    code, out, err = await _ps([*args, "-q", listed]) if pids else (1, b"", b"")
    if code != 0:
        code, out, err = await _ps(args)
        if code != 0:
            first = err.decode(errors="replace").split("\n", 1)[0] or f"exit status {code}"
            raise TopError(f"ps: {first}")
    return parse_ps_output(out.decode(errors="replace"), set(pids))


async def _ps(args: list[str]) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err


def parse_ps_output(output: str, pids: set[int]) -> ProcessList:
    """Titles from the header; the rows whose PID column is one of ``pids``, the last cell taking the rest."""
    lines = output.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise TopError("Couldn't find PID field in ps output")
    at = titles.index("PID")
    rows: list[list[str]] = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= at:
            continue
        try:
            pid = int(fields[at])
        except ValueError as err:
            raise TopError(f"Unexpected pid '{fields[at]}': {err}") from None
        if pid in pids:
            cut = len(titles) - 1
            rows.append(fields[:cut] + [" ".join(fields[cut:])] if len(fields) > cut else fields)
    return {"Titles": titles, "Processes": rows}
