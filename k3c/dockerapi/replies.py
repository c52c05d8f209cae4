"""JSON answers as docker's clients parse them: ``Content-Type: application/json`` exactly, no charset.

The docker CLI reads an error body as ``{"message": …}`` only when the media type is exactly that;
with a charset parameter it prints the raw JSON instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def reply(doc: Any, status: int = 200) -> web.Response:
    """``doc`` as JSON, by orjson: ~5 times json's speed, on every answer (a container list's rows)."""
    return web.Response(body=orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type="application/json")
