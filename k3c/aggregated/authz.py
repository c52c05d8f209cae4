"""Whether the caller may use a stream: a SubjectAccessReview of the parent's own subresource.

The API server in front has authorized the request for ``streams.k3c.io`` already; the agent asks again
for what the stream really does, in the parent's group: ``exec`` on ``localcontainers`` in ``k3c.io``,
with the verb kube-apiserver would have checked had the embedded server served it (a websocket ``exec`` is
``create``). So one RBAC rule governs a stream in both modes, and a role granting the aggregated group
alone does not open a shell. Allowed answers are remembered a few seconds, as kube's delegating
authorizer does, so a ``logs -f`` reconnect or a burst of ``exec`` costs one review.
"""

from __future__ import annotations

import time
from typing import Any

from k3c import api, apierrors
from k3c.aggregated.reader import status_error
from k3c.apiserver.rbac import forbidden
from k3c.apiserver.requestinfo import RequestInfo
from k3c.apiserver.subresources import User
from k3c.kubeasync import AsyncKube

#: How long an allowed review is believed (kube's default --authorization-webhook-cache-authorized-ttl).
ALLOWED_TTL = 10.0


def review(user: User, info: RequestInfo) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``user`` may do what ``info`` describes."""
    attributes = {"verb": info.verb, "group": info.group, "version": info.version, "resource": info.resource,
                  "subresource": info.subresource, "name": info.name, "namespace": info.namespace}
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups),
                            "resourceAttributes": {k: v for k, v in attributes.items() if v}}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra}
    return {"apiVersion": api.SUBJECT_ACCESS_REVIEWS.api_version, "kind": api.SUBJECT_ACCESS_REVIEWS.kind,
            "spec": spec}


class Authorizer:
    """SubjectAccessReviews through the agent's own client (it needs ``system:auth-delegator``'s right)."""

    def __init__(self, kube: AsyncKube) -> None:
        self.kube = kube
        self._allowed: dict[tuple[User, RequestInfo], float] = {}

    async def authorize(self, user: User, info: RequestInfo) -> None:
        """Return if allowed; else raise the 403 Status kube-apiserver would have answered."""
        key = (user, info)
        now = time.monotonic()
        if self._allowed.get(key, 0.0) > now:
            return
        try:
            answer = await self.kube.request("POST", api.SUBJECT_ACCESS_REVIEWS.path(), review(user, info))
        except apierrors.APIError as err:
            raise status_error(err) from None
        status = answer.get("status") or {}
        if not status.get("allowed") or status.get("denied"):
            raise forbidden(user, info, str(status.get("reason") or ""))
        self._allowed = {k: t for k, t in self._allowed.items() if t > now}
        self._allowed[key] = now + ALLOWED_TTL
