"""Host-wide reservations of the subnets and ports tests pick, so concurrent test processes never share one.

The suite runs its modules in several pytest-xdist workers, and another checkout's suite may run at the
same moment. A pick that only checks what is in use now is not enough: a daemon's bridge gets its address
with its first pod, a hostPort is an iptables rule with no socket behind it, and a port found free is
unbound until the child process binds it. So every pick is also reserved here: a POSIX record lock on the
byte at offset ``number`` of one lock file per kind. The kernel arbitrates between processes and drops a
process's locks when it exits, however it ends, so a crashed run never leaves a reservation behind; a
process keeps what it reserved until then (a test process picks a few hundred at most).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from pathlib import Path

#: Where the lock files live: the FHS place for lock files (tmpfs, emptied at boot) if there is one.
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())


class Reservations:
    """Numbers of one kind (subnets, ports) reserved by this process among all processes on the host."""

    def __init__(self, kind: str) -> None:
        self.path = LOCK_DIR / f"k3c-test-{kind}.lock"
        self._fd: int | None = None  # never closed: closing any descriptor of the file drops all our locks
        self._mine: set[int] = set()  # record locks never conflict within one process: this set does
        self._guard = threading.Lock()

    def take(self, number: int) -> bool:
        """Reserve ``number`` for this process; False if this or another process already holds it."""
        with self._guard:
            if number in self._mine:
                return False
            try:
                fcntl.lockf(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, number)
            except OSError:  # EAGAIN/EACCES: another process holds it
                return False
            self._mine.add(number)
            return True

    def _file(self) -> int:
        if self._fd is None:
            try:  # (an existing file is opened without O_CREAT: /tmp's protected_regular refuses that)
                self._fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                    os.fchmod(fd, 0o666)  # (umask aside: a non-root run shares the file with root's)
                    self._fd = fd
                if self._fd is None:  # another process created it just now
                    self._fd = os.open(self.path, os.O_RDWR)
        return self._fd


SUBNETS = Reservations("subnets")
PORTS = Reservations("ports")
