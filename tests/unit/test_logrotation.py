"""Reading logs across rotated files (k3c/streams/logs.py) as the operator rotates them (k3c/reconcilers/logrotation.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from k3c.reconcilers import logrotation
from k3c.streams.logs import LogOptions, read_log, rotated_files


def entry(n: int) -> bytes:
    return f"2026-01-01T00:00:{n:02d}.000000000Z stdout F line-{n}\n".encode()


def read(path: Path, **options: object) -> list[str]:
    async def collect() -> list[str]:
        async def running() -> bool:
            return False
        return [data.decode() async for _, data in read_log(str(path), LogOptions(**options), running)]  # type: ignore[arg-type]
    return "".join(asyncio.run(collect())).split()


def test_reads_oldest_first_and_tails_across_files(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    (tmp_path / "c.log.2").write_bytes(entry(0) + entry(1))
    (tmp_path / "c.log.1").write_bytes(entry(2) + entry(3))
    path.write_bytes(entry(4))
    (tmp_path / "other.log.1").write_bytes(entry(9))
    assert rotated_files(str(path)) == [str(tmp_path / "c.log.2"), str(tmp_path / "c.log.1")]
    assert read(path) == [f"line-{n}" for n in range(5)]
    assert read(path, tail=3) == ["line-2", "line-3", "line-4"]
    assert read(path, tail=1) == ["line-4"]


def test_rotation_rule() -> None:
    assert logrotation.rotation({"logOptions": {"maxSize": "1k", "maxFile": 3}}) == logrotation.Rotation(1024, 3)
    assert logrotation.rotation({"logOptions": {"maxFile": 3}}) is None
