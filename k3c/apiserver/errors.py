"""API errors as kube-apiserver words them: a `metav1.Status` with code, reason and message.

Every failure a handler can produce is an `APIError`; the HTTP layer turns it into the Status body, so
clients (kubectl, client-go, the Python client, kopf) read the same reasons they would from a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k3c.apiserver.goformat import escape_unprintable


@dataclass(frozen=True)
class Cause:
    """One field-level problem, as `details.causes[]` of an Invalid status."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueTypeInvalid, ...
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


class APIError(Exception):
    """An error answer: HTTP code, Status reason, message and optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        message = escape_unprintable(message)  # one line of valid UTF-8, whatever a request put in it
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def not_found(plural: str, group: str, name: str) -> APIError:
    q = f"{plural}.{group}" if group else plural
    return APIError(404, "NotFound", f'{q} "{name}" not found', _details(name, group, plural))


def already_exists(plural: str, group: str, name: str) -> APIError:
    q = f"{plural}.{group}" if group else plural
    return APIError(409, "AlreadyExists", f'{q} "{name}" already exists', _details(name, group, plural))


def conflict(plural: str, group: str, name: str, why: str) -> APIError:
    q = f"{plural}.{group}" if group else plural
    return APIError(
        409, "Conflict", f'Operation cannot be fulfilled on {q} "{name}": {why}', _details(name, group, plural)
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> APIError:
    """422 Invalid, worded `Kind.group "name" is invalid: field: message, ...` like kube-apiserver."""
    q = f"{kind}.{group}" if group else kind
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    msg = f'{q} "{name}" is invalid: '
    msg += parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(name, group, kind)
    details["causes"] = [c.to_dict() for c in causes]
    return APIError(422, "Invalid", msg, details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format: "{content_type}"')


def not_acceptable(accept: str) -> APIError:
    return APIError(406, "NotAcceptable", f"only the following media types are accepted: {accept}")


def expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def too_large() -> APIError:
    return APIError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def gone_resource(message: str) -> APIError:
    return APIError(404, "NotFound", message)
