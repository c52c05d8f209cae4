"""The AdmissionReview v1 document (``admission.k8s.io/v1``): what a validating webhook is sent and answers.

Both ends of k3c's admission path speak it: the embedded API server sends requests the way kube-apiserver
does (:mod:`k3c.apiserver.admission`), and k3c's operator answers them (:mod:`k3c.reconcilers.webhookserver`),
as it will answer a real kube-apiserver in cluster mode. One module so the two ends cannot drift. A leaf:
only the standard library.
"""

from __future__ import annotations

from typing import Any, Final, NotRequired, TypedDict

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
#: The one review version k3c sends and answers (``admissionReviewVersions``).
REVIEW_VERSION: Final = "v1"

CREATE: Final = "CREATE"
UPDATE: Final = "UPDATE"
DELETE: Final = "DELETE"
CONNECT: Final = "CONNECT"
OPERATIONS: Final = (CREATE, UPDATE, DELETE, CONNECT)


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict):
    username: str
    groups: list[str]
    uid: NotRequired[str]
    extra: NotRequired[dict[str, list[str]]]


class Request(TypedDict):
    """``request`` of a review; ``subResource``/``namespace`` are absent when empty, as Go omits them."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: NotRequired[str]
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: NotRequired[str]
    name: str
    namespace: NotRequired[str]
    operation: str
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class Status(TypedDict, total=False):
    """The ``metav1.Status`` part of a refusal: what the client is told."""

    code: int
    reason: str
    message: str
    details: dict[str, Any]


class Response(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]


class ReviewError(ValueError):
    """A document that is not a well-formed AdmissionReview v1 (request or response)."""


def review(request: Request) -> dict[str, Any]:
    """The body POSTed to a webhook."""
    return {"apiVersion": API_VERSION, "kind": KIND, "request": request}


def answer(response: Response) -> dict[str, Any]:
    """The body a webhook answers with."""
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def allow(uid: str, warnings: list[str] | None = None) -> Response:
    out: Response = {"uid": uid, "allowed": True}
    if warnings:
        out["warnings"] = warnings
    return out


def deny(uid: str, code: int, reason: str, message: str) -> Response:
    return {"uid": uid, "allowed": False, "status": {"code": code, "reason": reason, "message": message}}


def _check_envelope(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ReviewError("expected an AdmissionReview object")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise ReviewError(f"expected webhook response of {API_VERSION}, Kind={KIND}, got "
                          f"{doc.get('apiVersion')}, Kind={doc.get('kind')}")
    return doc


def parse_request(doc: Any) -> Request:
    """The request of a review a webhook received; ReviewError if it is not one."""
    req = _check_envelope(doc).get("request")
    if not isinstance(req, dict) or not isinstance(req.get("uid"), str) or req.get("operation") not in OPERATIONS:
        raise ReviewError("the AdmissionReview has no valid request")
    for key in ("object", "oldObject"):
        if req.get(key) is not None and not isinstance(req[key], dict):
            raise ReviewError(f"request.{key} must be an object")
    return req  # type: ignore[return-value]


def parse_response(doc: Any, uid: str) -> Response:
    """The response of a webhook to the request ``uid``; ReviewError worded as kube-apiserver words it."""
    resp = _check_envelope(doc).get("response")
    if not isinstance(resp, dict):
        raise ReviewError("webhook response was absent")
    if resp.get("uid") != uid:
        raise ReviewError(f"expected response.uid={uid!r}, got {resp.get('uid')!r}")
    if not isinstance(resp.get("allowed"), bool):
        raise ReviewError("webhook response.allowed must be a boolean")
    status = resp.get("status")
    if status is not None and not isinstance(status, dict):
        raise ReviewError("webhook response.status must be an object")
    warnings = resp.get("warnings")
    if warnings is not None and not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        raise ReviewError("webhook response.warnings must be a list of strings")
    return resp  # type: ignore[return-value]
