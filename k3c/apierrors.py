"""The failures a Kubernetes API server answers with, one exception class per meaning, for k3c's clients.

Why classes and not a code to compare: a caller says what it expects (``except NotFound:``, ``except
AlreadyExists:``) instead of repeating ``err.code == 404`` and ``err.reason == "AlreadyExists"``. Both
clients raise these: the CLI's blocking one (:mod:`k3c.kubeclient`) and the operator's asyncio one
(:mod:`k3c.reconcilers.kube`). :func:`from_status` is the one place an HTTP code and a ``metav1.Status``
body become a class; the classes follow apimachinery's ``StatusReason`` values.

``AlreadyExists`` is a ``Conflict`` (both are 409): ``except Conflict`` means "any 409", as
``IsConflict``-or-``IsAlreadyExists`` would in client-go, and ``except AlreadyExists`` only the create that
found the name taken. A leaf: only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIError", "AlreadyExists", "BadRequest", "Conflict", "Forbidden", "Gone", "Invalid", "NotFound",
    "ServerError", "TooManyRequests", "Unauthorized", "from_status",
]


class APIError(Exception):
    """The API server refused a request: HTTP ``code``, Status ``reason``, ``message`` and ``details``.

    ``status`` is the whole Status body as sent (empty when the answer was not JSON).
    """

    def __init__(self, code: int, reason: str = "", message: str = "",
                 status: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status: dict[str, Any] = dict(status or {})
        self.details: dict[str, Any] = dict(self.status.get("details") or {})


class BadRequest(APIError):
    """400: the request itself is malformed (a bad query parameter, an undecodable body)."""


class Unauthorized(APIError):
    """401: no credentials, or ones the server does not accept."""


class Forbidden(APIError):
    """403: authenticated, but not allowed (also a namespace being terminated)."""


class NotFound(APIError):
    """404: no such object; with no ``details.name``, no such resource type (its CRD is not served)."""


class Conflict(APIError):
    """409: the write lost a race (stale ``resourceVersion``, a uid precondition that no longer holds)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists: a create found the name taken."""


class Gone(APIError):
    """410 (reason Expired): the ``resourceVersion`` asked for has been compacted away; relist."""


class Invalid(APIError):
    """422: the object fails validation; ``details.causes`` names the fields."""


class TooManyRequests(APIError):
    """429: throttled; try again later."""


class ServerError(APIError):
    """5xx: the server failed (an internal error, a timeout, unavailable)."""


_BY_CODE: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid,
    429: TooManyRequests,
}


def from_status(code: int, status: Mapping[str, Any] | None = None, message: str = "") -> APIError:
    """The exception for an HTTP ``code`` and its Status body; ``message`` when the body carries none.

    A code with no class of its own (405, 406, 415, …) is a plain :class:`APIError`.
    """
    doc = status or {}
    reason = str(doc.get("reason") or "")
    text = str(doc.get("message") or message)
    if code == 409 and reason == "AlreadyExists":
        cls: type[APIError] = AlreadyExists
    elif code >= 500:
        cls = ServerError
    else:
        cls = _BY_CODE.get(code, APIError)
    return cls(code, reason, text, doc)
