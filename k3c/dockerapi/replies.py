"""JSON answers as docker's clients parse them: ``Content-Type: application/json`` exactly, no charset.

The docker CLI reads an error body as ``{"message": …}`` only when the media type is exactly that;
with a charset parameter it prints the raw JSON instead.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def reply(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(doc).encode(), status=status, content_type="application/json")
