"""Registry failures by meaning, worded like docker's so the CLI can print them as one line.

The distribution API answers errors as ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": ...}]}``;
callers branch on the class (retry a transient failure, stop at a permanent one), users read ``str()``.
"""

from __future__ import annotations

import json

__all__ = [
    "Denied",
    "NotFound",
    "RegistryError",
    "Unauthorized",
    "Unreachable",
    "from_response",
]


class RegistryError(Exception):
    """A registry request failed. ``status`` is the HTTP status (0 when none came), ``code`` the OCI code."""

    permanent = False

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class Unauthorized(RegistryError):
    """No or wrong credentials (HTTP 401 after authenticating, or a token server refusing them)."""

    permanent = True


class Denied(RegistryError):
    """Authenticated, but not allowed (HTTP 403 / DENIED)."""

    permanent = True


class NotFound(RegistryError):
    """Unknown repository, manifest or blob."""

    permanent = True


class Unreachable(RegistryError):
    """No HTTP answer at all: connection refused, DNS, TLS verification, timeout."""


_NOT_FOUND_CODES = {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}


def from_response(status: int, body: bytes, what: str) -> RegistryError:
    """The exception for a failed response: ``what`` says what was asked (``GET https://…/v2/…``)."""
    code, message = _first_error(body)
    text = f"{code.lower().replace('_', ' ')}: {message}" if code else (message or f"HTTP {status}")
    if status == 401 or code == "UNAUTHORIZED":
        return Unauthorized(f"{what}: {text}" if not code else text, status, code or "UNAUTHORIZED")
    if status == 403 or code == "DENIED":
        return Denied(text, status, code or "DENIED")
    if status == 404 or code in _NOT_FOUND_CODES:
        return NotFound(text, status, code or "NOT_FOUND")
    return RegistryError(f"{what}: {text}", status, code)


def _first_error(body: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return "", body[:200].decode(errors="replace").strip()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not errors:
        return "", ""
    first = errors[0] if isinstance(errors[0], dict) else {}
    return str(first.get("code", "")), str(first.get("message", ""))
