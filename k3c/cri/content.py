"""containerd content-store operations the image wrapper lacks: streamed writes and the list of active ingests.

Why here: pulls and loads move blobs of hundreds of MB, which must flow from the network or an archive
into containerd without being held in memory (:func:`write_stream`), and a pull's per-layer progress is
exactly containerd's list of active ingests (:func:`list_statuses`, ``Content.ListStatuses``; k3c's
trimmed content proto has no stub for it, so the call is made by method path with the few bytes of its
request encoded here and the response's repeated ``Status`` decoded with the existing message class).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from k3c.cri.errors import RuntimeCallError, translate
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.proto import containerd_content_pb2 as content_pb

__all__ = ["Ingest", "abort_ingest", "list_statuses", "write_stream"]

_LIST_STATUSES = "/containerd.services.content.v1.Content/ListStatuses"

#: Bytes per Write message: large enough to keep per-message overhead low, far below gRPC's 16 MiB cap.
WRITE_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Ingest:
    """An active write into the content store: ``ref`` (writer's name), bytes so far, expected size/digest."""

    ref: str
    offset: int
    total: int
    expected: str


def _encode_filters(filters: list[str]) -> bytes:
    out = bytearray()
    for f in filters:
        data = f.encode()
        out += b"\x0a" + _varint(len(data)) + data
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _decode_statuses(raw: bytes) -> list[content_pb.Status]:
    """``ListStatusesResponse``: field 1, repeated length-delimited ``Status``."""
    out: list[content_pb.Status] = []
    i = 0
    while i < len(raw):
        key, i = _read_varint(raw, i)
        wire = key & 7
        if wire == 2:
            length, i = _read_varint(raw, i)
            if key >> 3 == 1:
                out.append(content_pb.Status.FromString(raw[i:i + length]))
            i += length
        elif wire == 0:
            _, i = _read_varint(raw, i)
        else:
            raise ValueError(f"unexpected wire type {wire} in ListStatusesResponse")
    return out


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = raw[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


async def list_statuses(store: ContainerdImages, filters: list[str] | None = None) -> list[Ingest]:
    """Active ingests in the store's namespace (e.g. the layers a pull is downloading right now)."""
    call = store.channel.unary_unary(_LIST_STATUSES, request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
    try:
        raw = await call(_encode_filters(filters or []), timeout=store.timeout, metadata=store._md())
    except grpc.aio.AioRpcError as err:
        raise translate("Content.ListStatuses", err) from err
    return [Ingest(s.ref, s.offset, s.total, s.expected) for s in _decode_statuses(raw)]


Progress = Callable[[int], None]


async def write_stream(
    store: ContainerdImages,
    chunks: AsyncIterable[bytes],
    *,
    expected: str = "",
    total: int = 0,
    labels: Mapping[str, str] | None = None,
    lease: str | None = None,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """Stream bytes into the content store and commit them; returns ``(digest, size)``.

    With ``expected`` containerd verifies the digest (and an existing blob is not written again: the
    commit answers ALREADY_EXISTS, which is success here). Without it, the digest is computed on the way
    (archives name their layers by path, not by digest). ``progress`` gets the byte count so far.
    On any failure the ingest is aborted, so nothing half-written stays in the store.
    """
    ref = f"k3c-ingest-{uuid.uuid4().hex}"
    sha = hashlib.sha256()
    state: dict[str, Any] = {"offset": 0, "error": None}

    async def requests() -> AsyncIterator[content_pb.WriteContentRequest]:
        try:
            async for chunk in _rechunk(chunks):
                sha.update(chunk)
                yield content_pb.WriteContentRequest(action=content_pb.WRITE, ref=ref, total=total,
                                                     expected=expected, offset=state["offset"], data=chunk)
                state["offset"] += len(chunk)
                if progress is not None:
                    progress(state["offset"])
        except Exception as err:  # the source failed: remember why, gRPC would only say "cancelled"
            state["error"] = err
            raise
        digest = expected or "sha256:" + sha.hexdigest()
        yield content_pb.WriteContentRequest(action=content_pb.COMMIT, ref=ref, total=state["offset"],
                                             expected=digest, offset=state["offset"], labels=dict(labels or {}))

    call = store.content.Write(requests(), timeout=None, metadata=store._md(lease))
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            await abort_ingest(store, ref)
            if state["error"] is not None:
                raise state["error"] from None
            if not await store.written_anyway(err, expected):
                raise translate("Content.Write", err) from err
    except BaseException:
        call.cancel()
        await asyncio.shield(abort_ingest(store, ref))
        if state["error"] is not None:  # gRPC turns a failing request iterator into a cancellation
            raise state["error"] from None
        raise
    return expected or "sha256:" + sha.hexdigest(), state["offset"]


async def abort_ingest(store: ContainerdImages, ref: str, attempts: int = 20) -> None:
    """Abort an ingest and make sure it stays gone.

    containerd may still be handling the cancelled Write when the first Abort arrives (which then finds
    nothing) and create the ingest afterwards; so look again, briefly, until the ingest is really absent.
    """
    for _ in range(attempts):
        await store._abort(ref)
        try:
            active = await list_statuses(store, [f'ref=="{ref}"'])
        except RuntimeCallError:
            return
        if not any(i.ref == ref for i in active):
            return
        await asyncio.sleep(0.05)


async def _rechunk(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Coalesce small network reads into ~1 MiB messages (fewer gRPC messages, same bytes)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        while len(buf) >= WRITE_CHUNK:
            yield bytes(buf[:WRITE_CHUNK])
            del buf[:WRITE_CHUNK]
    if buf:
        yield bytes(buf)
