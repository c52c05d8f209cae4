"""The admission path: refusing a write up front, before it is stored, through validating webhooks.

kube-apiserver's validating admission phase, which runs after a write was defaulted and validated and
before storage. :meth:`Admission.validate` is the one call :mod:`k3c.apiserver.rest` makes on every create,
update (patches and status writes too) and delete (a deletecollection, per object): it finds the
webhooks of the stored ValidatingWebhookConfigurations that match (:mod:`~k3c.apiserver.webhookmatch`),
sends each an AdmissionReview v1 (:mod:`k3c.admissionreview`) in parallel (:mod:`~k3c.apiserver.webhookcall`),
and turns the first refusal into the client's answer: the webhook's status, its message prefixed
``admission webhook "NAME" denied the request: ``, 400 when it gave no code. A webhook that cannot be
asked fails the request (500) or is skipped, as its ``failurePolicy`` says. Webhook configurations
themselves are never sent to webhooks, so a broken one can always be fixed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from k3c import admissionreview as ar
from k3c.apiserver import errors
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.services import NoServices, ServiceResolver
from k3c.apiserver.storage import Event, Store
from k3c.apiserver.subresources import User
from k3c.apiserver.webhookcall import CallError, WebhookClients
from k3c.apiserver.webhookconfig import GROUP, Webhook, webhooks_of
from k3c.apiserver.webhookmatch import Attributes, matched_version, selectors_match

log = logging.getLogger(__name__)

__all__ = ["Admission", "Attributes", "Refused"]

_CONFIGS = f"/{GROUP}/validatingwebhookconfigurations/"


class Refused(errors.APIError):
    """A write the admission path refused: a webhook's denial, or a failed call under ``failurePolicy: Fail``."""

    @classmethod
    def of(cls, err: errors.APIError) -> Refused:
        return cls(err.code, err.reason, err.message, err.details)


class Admission:
    """The validating webhooks of one server (read from its storage, cached until a configuration changes)."""

    def __init__(self, store: Store, registry: ResourceTypes, services: ServiceResolver | None = None) -> None:
        self.store = store
        self.registry = registry
        self.clients = WebhookClients(services or NoServices())
        self._hooks: list[Webhook] | None = None
        store.listeners.append(self._forget)

    def _forget(self, event: Event) -> None:
        if event.key.startswith(_CONFIGS):
            self._hooks = None

    def webhooks(self) -> list[Webhook]:
        """Every webhook, ordered by configuration name, then by its place in it (as kube-apiserver)."""
        if self._hooks is None:
            self._hooks = [h for _k, entry in self.store.list_current(_CONFIGS) for h in webhooks_of(entry.obj)]
        return self._hooks

    async def close(self) -> None:
        await self.clients.close()

    async def validate(self, a: Attributes) -> list[str]:
        """Ask every matching webhook about ``a``; returns their warnings, raises the first refusal."""
        if a.rtype.group == GROUP:
            return []
        matched = [(hook, target) for hook in self.webhooks()
                   if (target := matched_version(hook, a, self.registry.versions_of(a.rtype.group, a.rtype.plural)))
                   is not None and selectors_match(hook, a, self._namespace_labels)]
        if not matched:
            return []
        results = await asyncio.gather(*(self._ask(hook, target, a) for hook, target in matched))
        for result in results:
            if isinstance(result, errors.APIError):
                raise result
        return [w for result in results if isinstance(result, list) for w in result]

    def _namespace_labels(self, name: str) -> Mapping[str, str]:
        entry = self.store.get(f"/namespaces/{name}")
        return ((entry.obj.get("metadata") or {}).get("labels") or {}) if entry is not None else {}

    async def _ask(self, hook: Webhook, target: ResourceType, a: Attributes) -> list[str] | Refused:
        """One webhook: its warnings, or the error to answer with."""
        if a.dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
            return Refused.of(errors.bad_request(f'admission webhook "{hook.name}" does not support dry run'))
        request = _request(target, a)
        try:
            if not hook.speaks_v1:
                raise CallError(f"webhook does not accept {ar.API_VERSION} AdmissionReviews")
            answer = await self.clients.call(hook, ar.review(request))
            response = ar.parse_response(answer, request["uid"])
        except (CallError, ar.ReviewError) as err:
            if hook.failure_policy == "Ignore":
                log.warning('failed calling webhook "%s", failing open: %s', hook.name, err)
                return []
            return Refused.of(errors.internal(f'failed calling webhook "{hook.name}": {err}'))
        if not response["allowed"]:
            return _denial(hook.name, response.get("status") or {})
        return list(response.get("warnings") or [])


def _gvk(t: ResourceType) -> ar.GroupVersionKind:
    return {"group": t.group, "version": t.version, "kind": t.kind}


def _gvr(t: ResourceType) -> ar.GroupVersionResource:
    return {"group": t.group, "version": t.version, "resource": t.plural}


def _request(target: ResourceType, a: Attributes) -> ar.Request:
    request: ar.Request = {
        "uid": str(uuid.uuid4()), "kind": _gvk(target), "resource": _gvr(target),
        "requestKind": _gvk(a.rtype), "requestResource": _gvr(a.rtype), "name": a.name,
        "operation": a.operation, "userInfo": _user_info(a.user),
        "object": _as_target(a.obj, target), "oldObject": _as_target(a.old, target), "dryRun": a.dry_run,
        "options": a.options,
    }
    if a.subresource:
        request["subResource"] = request["requestSubResource"] = a.subresource
    if a.namespace:
        request["namespace"] = a.namespace
    return request


def _as_target(obj: dict[str, Any] | None, target: ResourceType) -> dict[str, Any] | None:
    """The object in the version the webhook is told about (all versions share one shape here)."""
    if obj is None or obj.get("apiVersion") == target.api_version:
        return obj
    return {**obj, "apiVersion": target.api_version}


def _denial(name: str, status: ar.Status) -> Refused:
    """kube-apiserver's ToStatusErr: the webhook's status, never below 400, its message attributed."""
    code = status.get("code") or 0
    code = code if isinstance(code, int) and code >= 400 else 400
    denied = f'admission webhook "{name}" denied the request'
    message = status.get("message") or status.get("reason") or ""
    reason = status.get("reason") or ""
    details = status.get("details")
    return Refused(code, reason, f"{denied}: {message}" if message else f"{denied} without explanation",
                   details if isinstance(details, dict) else None)


def _user_info(user: User) -> ar.UserInfo:
    """The requester as an AdmissionReview names it (uid and extra only when the user has them)."""
    info: ar.UserInfo = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = {key: list(values) for key, values in user.extra}
    return info
