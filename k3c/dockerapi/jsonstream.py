"""docker's JSON message streams: one JSON object per line in a 200 chunked body, the way pull, push and build answer.

Once the 200 is sent a failure can only be said in the body: ``{"errorDetail": {"message": …}, "error": …}``,
which the docker CLI prints and exits 1 on, and docker-py raises. Layer progress uses docker's
``{"status", "progressDetail", "progress", "id"}`` shape, so clients draw their usual bars.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from k3c.units import progress_bar


class JSONStream:
    """The body of one streaming answer; ``start`` sends the headers, ``send`` one message."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self.response.prepare(self.request)

    async def send(self, doc: dict[str, Any]) -> None:
        await self.start()
        await self.response.write(json.dumps(doc).encode() + b"\r\n")

    async def status(self, text: str, ident: str = "") -> None:
        await self.send({"status": text, **({"id": ident} if ident else {})})

    async def error(self, message: str) -> None:
        await self.send({"errorDetail": {"message": message}, "error": message})

    async def finish(self) -> web.StreamResponse:
        await self.start()
        await self.response.write_eof()
        return self.response


def layer_message(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's state (digest, size, current, state as the operator writes them) as docker's progress message."""
    state = str(layer.get("state") or "")
    doc: dict[str, Any] = {"status": state, "progressDetail": {}, "id": str(layer["digest"]).removeprefix("sha256:")[:12]}
    current, total = int(layer.get("current") or 0), int(layer.get("size") or 0)
    if state in ("Downloading", "Pushing") and total > 0:
        doc["progressDetail"] = {"current": current, "total": total}
        doc["progress"] = progress_bar(current, total)
    return doc


class LayerChanges:
    """Only the layers whose state or progress moved since the last call, in first-seen order."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}

    def new(self, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for layer in layers:
            mark = (str(layer.get("state") or ""), int(layer.get("current") or 0))
            if self._seen.get(layer["digest"]) != mark:
                self._seen[layer["digest"]] = mark
                out.append(layer_message(layer))
        return out
