"""Durable, log-structured object storage on SQLite, in the manner of k3s's kine.

Why this shape: every write appends one row to a single table whose autoincrement id is the global
revision, so `metadata.resourceVersion` is simply that id, a watch can be replayed from any retained
revision by reading rows in id order, and compaction is deleting superseded rows below a horizon.

The current state of every key is also held in memory (raw JSON plus the parsed dict) so gets, lists
and watch fan-out never touch the disk; SQLite is the durable log behind it. Writes from concurrent
requests are group-committed: each request awaits the commit (WAL, synchronous=FULL) of the batch that
carries its row before it is answered and before its watch event is sent, so an acknowledged write
survives `kill -9`, and throughput does not collapse to one fsync per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""


class RowTransformer(Protocol):
    """How a row's value is kept on disk (Secrets encrypted: :mod:`k3c.apiserver.encryption`); memory, watches
    and every caller see the JSON."""

    def to_storage(self, key: str, raw: bytes) -> bytes: ...

    def from_storage(self, key: str, stored: bytes) -> bytes: ...


class _Plain:
    def to_storage(self, key: str, raw: bytes) -> bytes:
        return raw

    def from_storage(self, key: str, stored: bytes) -> bytes:
        return stored


class KeyExists(Exception):
    """A create found the key already present."""


class KeyNotFound(Exception):
    """An update or delete found no such key."""


class RevisionConflict(Exception):
    """An update or delete named a revision that is no longer the key's latest."""


class Compacted(Exception):
    """A replay asked for revisions that compaction has already removed."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"too old resource version: {requested} ({compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True)
class Entry:
    """The latest state of one key. `obj` is shared: callers must not mutate it."""

    revision: int
    raw: bytes
    obj: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One committed write, as a watch sees it. `prev` is the state it replaced (None on create)."""

    type: str  # ADDED, MODIFIED, DELETED
    key: str
    revision: int
    raw: bytes
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass
class _Pending:
    row: tuple[int, str, int, int, int, bytes]
    event: Event
    done: asyncio.Future[None]


def _set_rv(obj: dict[str, Any], rev: int) -> bytes:
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return orjson.dumps(obj)


class Store:
    """The key/value log. All methods run on the event loop; only commits go to a worker thread."""

    def __init__(self, path: Path, retain: int = 20000, transformer: RowTransformer | None = None):
        self.path = path
        self.retain = retain  # how many revisions of history compaction keeps
        self.transformer: RowTransformer = transformer or _Plain()
        # Secrets live here: the file (and SQLite's -wal/-shm, which copy its mode) is for root alone.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        # Rows compaction deletes are overwritten, not left in free pages (older plaintext Secrets among them).
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.executescript(SCHEMA)
        # Replays read through their own connection so they never see a half-written batch.
        self.reader = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k3c-sqlite")
        self.objects: dict[str, Entry] = {}
        self.revision = 0  # last assigned revision
        self.committed = 0  # last revision durable on disk and announced to watchers
        self.compact_revision = 0
        self.listeners: list[Callable[[Event], None]] = []
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._load()

    # ---- start-up -------------------------------------------------------------------------------
    def _load(self) -> None:
        """Rebuild the in-memory view from the log: the newest row of every key that is not deleted."""
        self.objects.clear()
        rows = self.db.execute(
            "SELECT k.name, k.id, k.value, k.deleted FROM kine k "
            "JOIN (SELECT name, MAX(id) AS id FROM kine GROUP BY name) m ON k.id = m.id"
        )
        for name, rev, value, deleted in rows:
            if not deleted:
                raw = self._read(name, value)
                self.objects[name] = Entry(rev, raw, orjson.loads(raw))
        top = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM kine").fetchone()[0]
        seq = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='kine'").fetchone()
        self.revision = self.committed = max(top, seq[0] if seq else 0)
        row = self.db.execute("SELECT v FROM meta WHERE k='compact_revision'").fetchone()
        self.compact_revision = row[0] if row else 0

    def _read(self, key: str, value: bytes) -> bytes:
        return self.transformer.from_storage(key, bytes(value))

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.reader.close()
        self.db.close()

    # ---- reads ----------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        return self.objects.get(key)

    def list_current(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, Entry]]:
        """Entries under prefix in key order, optionally only those after a key (for continue tokens)."""
        keys = sorted(k for k in self.objects if k.startswith(prefix) and k > start_after)
        for k in keys:
            entry = self.objects.get(k)
            if entry is not None:
                yield k, entry

    def count(self, prefix: str) -> int:
        return sum(1 for k in self.objects if k.startswith(prefix))

    # ---- writes ---------------------------------------------------------------------------------
    async def create(self, key: str, obj: dict[str, Any]) -> Entry:
        if key in self.objects:
            raise KeyExists(key)
        rev = self.revision + 1
        raw = _set_rv(obj, rev)
        return await self._append(key, rev, raw, obj, created=True, deleted=False, prev=None)

    def _current(self, key: str, expect: int | None) -> Entry:
        """The key's entry, if it exists and (with ``expect``) is still the revision the caller saw."""
        cur = self.objects.get(key)
        if cur is None:
            raise KeyNotFound(key)
        if expect is not None and expect != cur.revision:
            raise RevisionConflict(key)
        return cur

    async def update(self, key: str, obj: dict[str, Any], expect: int | None = None) -> Entry:
        """Replace the key's value; `expect` is the revision the caller based its change on."""
        cur = self._current(key, expect)
        rev = self.revision + 1
        raw = _set_rv(obj, rev)
        return await self._append(key, rev, raw, obj, created=False, deleted=False, prev=cur)

    async def delete(self, key: str, expect: int | None = None) -> Entry:
        """Remove the key; the tombstone (and the DELETED event) carries the last state."""
        cur = self._current(key, expect)
        rev = self.revision + 1
        obj = orjson.loads(cur.raw)
        raw = _set_rv(obj, rev)
        return await self._append(key, rev, raw, obj, created=False, deleted=True, prev=cur)

    async def _append(
        self, key: str, rev: int, raw: bytes, obj: dict[str, Any], *,
        created: bool, deleted: bool, prev: Entry | None,
    ) -> Entry:
        self.revision = rev
        entry = Entry(rev, raw, obj)
        if deleted:
            self.objects.pop(key, None)
        else:
            self.objects[key] = entry
        etype = "DELETED" if deleted else ("ADDED" if created else "MODIFIED")
        event = Event(etype, key, rev, raw, obj, prev.obj if prev else None)
        row = (rev, key, int(created), int(deleted), prev.revision if prev else 0, self.transformer.to_storage(key, raw))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(row, event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done
        return entry

    async def _flush(self) -> None:
        """Commit everything queued so far in one transaction, then announce it, in revision order."""
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._writer, self._write_rows, [p.row for p in batch])
            except Exception as err:  # disk full, I/O error: nothing of this batch is acknowledged
                log.error("storage commit failed: %s", err)
                failed = batch + self._pending
                self._pending = []
                self._load()  # memory must again equal what is durable
                for p in failed:
                    if not p.done.done():
                        p.done.set_exception(err)
                return
            for p in batch:
                self.committed = p.event.revision
                for listener in list(self.listeners):
                    listener(p.event)
                if not p.done.done():
                    p.done.set_result(None)

    def _write_rows(self, rows: list[tuple[int, str, int, int, int, bytes]]) -> None:
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "INSERT INTO kine (id, name, created, deleted, prev_revision, value) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise

    # ---- history --------------------------------------------------------------------------------
    def list_at(self, prefix: str, revision: int, start_after: str = "") -> Iterator[tuple[str, Entry]]:
        """Entries under prefix as they were at `revision` (consistent pagination, exact-version lists)."""
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        if revision >= self.committed and not self._pending:
            yield from self.list_current(prefix, start_after)
            return
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.reader.execute(
            "SELECT k.name, k.id, k.value FROM kine k JOIN (SELECT name, MAX(id) AS id FROM kine "
            "WHERE id <= ? AND name > ? AND name >= ? AND name < ? GROUP BY name) m ON k.id = m.id "
            "WHERE k.deleted = 0 ORDER BY k.name",
            (revision, start_after, prefix, end),
        ).fetchall()
        for name, rev, value in rows:
            raw = self._read(name, value)
            yield name, Entry(rev, raw, orjson.loads(raw))

    def history(self, prefix: str, after: int, upto: int) -> Iterator[Event]:
        """Committed events under prefix with after < revision <= upto, oldest first (watch replay)."""
        if after < self.compact_revision:
            raise Compacted(after, self.compact_revision)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.reader.execute(
            "SELECT id, name, created, deleted, prev_revision, value FROM kine "
            "WHERE id > ? AND id <= ? AND name >= ? AND name < ? ORDER BY id",
            (after, upto, prefix, end),
        ).fetchall()
        return self._events(rows)

    def key_history(self, key: str, after: int, upto: int) -> Iterator[Event]:
        """:meth:`history` of one key (a watch of one object): its own rows through the (name, id) index,
        not every row under its prefix, so waiting on one of many busy objects stays cheap."""
        if after < self.compact_revision:
            raise Compacted(after, self.compact_revision)
        rows = self.reader.execute(
            "SELECT id, name, created, deleted, prev_revision, value FROM kine "
            "WHERE name = ? AND id > ? AND id <= ? ORDER BY id",
            (key, after, upto),
        ).fetchall()
        return self._events(rows)

    def _events(self, rows: list[tuple[int, str, int, int, int, bytes]]) -> Iterator[Event]:
        for rev, name, created, deleted, prev_rev, value in rows:
            prev = None
            if prev_rev:
                prow = self.reader.execute("SELECT value FROM kine WHERE id = ?", (prev_rev,)).fetchone()
                prev = orjson.loads(self._read(name, prow[0])) if prow else None
            etype = "DELETED" if deleted else ("ADDED" if created else "MODIFIED")
            raw = self._read(name, value)
            yield Event(etype, name, rev, raw, orjson.loads(raw), prev)

    async def compact(self) -> int:
        """Drop history older than `retain` revisions, keeping every key's current row. Returns rows removed."""
        horizon = self.committed - self.retain
        if horizon <= self.compact_revision:
            return 0
        removed = await asyncio.get_running_loop().run_in_executor(self._writer, self._compact_rows, horizon)
        self.compact_revision = horizon
        return removed

    def _compact_rows(self, horizon: int) -> int:
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "DELETE FROM kine WHERE id <= ? AND (deleted = 1 OR id < "
                "(SELECT MAX(k2.id) FROM kine k2 WHERE k2.name = kine.name))",
                (horizon,),
            )
            removed = cur.rowcount
            cur.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('compact_revision', ?)", (horizon,))
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        return removed
