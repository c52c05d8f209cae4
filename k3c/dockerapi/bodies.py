"""Request bodies and query parameters read as dockerd reads them: JSON objects, docker's booleans and filters.

A malformed body or parameter is the client's mistake: 400 with what was wrong, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from k3c.dockerapi.errors import BadParameter

#: The largest JSON body read whole (a create with every field is a few KB). The app takes bodies of any size,
#: since build contexts, archives and image loads are streams read in chunks; JSON is read at once.
MAX_JSON_BODY = 4 * 1024 * 1024


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``; one over :data:`MAX_JSON_BODY` is refused."""
    raw = bytearray()
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > MAX_JSON_BODY:
            raise BadParameter(f"request body larger than {MAX_JSON_BODY // (1024 * 1024)} MiB")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise BadParameter(f"invalid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadParameter(f"invalid JSON: want an object, got {type(doc).__name__}")
    return doc


def flag(request: web.Request, name: str) -> bool:
    """docker's boolean query parameters: absent, ``0``, ``false`` or ``no`` are false."""
    return request.query.get(name, "").lower() not in ("", "0", "false", "no")


def integer(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise BadParameter(f"invalid value for {name}: {value!r}") from None


def terminal_size(request: web.Request) -> tuple[int, int]:
    """(width, height) from ``?h=&w=``, as docker's resize endpoints take it."""
    height, width = integer(request, "h"), integer(request, "w")
    if height is None or width is None or height < 0 or width < 0:
        raise BadParameter("resize needs h and w, both non-negative integers")
    return width, height


def filters(request: web.Request, known: tuple[str, ...] | None = None,
            wording: str = "invalid filter") -> dict[str, list[str]]:
    """``filters={"label": ["a=b"]}``, or the older ``{"label": {"a=b": true}}``, as key → values; a key
    outside ``known`` is refused with dockerd's words for that endpoint (``wording 'key'``)."""
    out = _filters(request)
    unknown = sorted(set(out) - set(known)) if known is not None else []
    if unknown:
        raise BadParameter(f"{wording} '{unknown[0]}'")
    return out


def _filters(request: web.Request) -> dict[str, list[str]]:
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise BadParameter(f"invalid filter: {err}") from None
    if not isinstance(doc, dict):
        raise BadParameter("invalid filter: want an object")
    out: dict[str, list[str]] = {}
    for key, values in doc.items():
        if isinstance(values, dict):
            out[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            raise BadParameter(f"invalid filter {key!r}")
    return out


def typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``doc[key]`` if it is of ``kind`` (None if absent or null); else 400 in Go's words, as dockerd's decoder."""
    value = doc.get(key)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is int)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadParameter(f"json: cannot unmarshal {type(value).__name__} into {where}.{key} of type {names}")
    return value


def strings(doc: dict[str, Any], key: str, where: str) -> list[str] | None:
    """``doc[key]`` as a list of strings (None if absent or null); else 400."""
    value = typed(doc, key, list, where)
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise BadParameter(f"json: cannot unmarshal {where}.{key}: want a list of strings")
    return [str(v) for v in value]
