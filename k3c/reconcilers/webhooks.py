"""k3c's admission webhooks: what the operator refuses up front, and their registration as ``k3c.io``.

- ``images.k3c.io`` (DELETE of Images, when this process runs the image controller): a reference a container
  uses, or the pause image, is refused with 409 and docker's conflict wording
  (:meth:`~k3c.reconcilers.imageobjects.ImageObjects.deletion_conflict`), unless forced with
  ``k3c.io/force-delete``: nothing is left Terminating.
- ``networks.k3c.io`` (CREATE, UPDATE and DELETE of Networks, always): the rules of :mod:`k3c.networkrules`,
  each refusal one line: a bad subnet, gateway or ip range, a subnet overlapping another Network's, a docker
  name taken or predefined (400/403/409); deleting ``bridge`` (403) or a Network a LocalContainer's
  ``spec.networks`` names (409, naming them). An update is judged only when it changes the spec or the
  docker name, so finalizer and status writes always pass and nothing is left Terminating. A LocalContainer
  naming a Network that does not exist is not refused here (that would put a webhook call on every
  container write): the CLI and the Docker API refuse it before writing, with docker's words.
- ``nodepolicy.k3c.io`` (CREATE and UPDATE of every kind :mod:`~k3c.reconcilers.nodepolicy` classifies):
  refused with 403 naming the field and the policy. Registered only while a policy in force is
  restricted (the node's flags, or a NodePolicy object, watched through kopf): a permissive node has nothing
  to refuse and spends no round trip on it.

Registration writes the ValidatingWebhookConfiguration ``k3c.io`` (idempotently, before kopf starts and so
before any controller writes) with this process's URL and CA. A node that joins an API server shared with
other nodes (``--webhooks-per-node``) registers ``k3c.io.<node>`` instead, so that the nodes' registrations do
not overwrite one another: each node refuses deleting its own Image objects (``objectSelector`` on the
``k3c.io/node`` label) while its containers use them, and judges the node policy only for objects placed on it
or not placed yet (one a restricted node could claim). It removes its configuration when it stops; one left by
a node that died fails its requests, as any webhook that is down. Its rules name k3c.io resources only, with
``failurePolicy: Fail``: while the operator is down those requests fail, and nothing else does. Start order is
API server → operator (webhook server up, then registration) → kopf and the controllers, so no request waits
on a webhook that cannot answer yet; one that comes before the image controller has listed containerd waits
for it (briefly), then is refused as unavailable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from k3c import admissionreview as ar
from k3c import api, dockerid, networkrules
from k3c.api import (
    GROUP,
    IMAGES,
    LOCAL_CONTAINERS,
    NETWORKS,
    NODE_LABEL,
    NODE_POLICIES,
    VALIDATING_WEBHOOK_CONFIGURATIONS,
    VERSION,
)
from k3c.apierrors import NotFound
from k3c.reconcilers import nodepolicy
from k3c.reconcilers.assembly import Assembly
from k3c.reconcilers.imagecontroller import ImageController
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.operatorconfig import OperatorConfig
from k3c.reconcilers.webhookserver import Handler, WebhookServer

log = logging.getLogger(__name__)

#: The configuration's name, and its webhooks'.
CONFIGURATION = "k3c.io"
IMAGES_WEBHOOK = "images.k3c.io"
NODE_POLICY_WEBHOOK = "nodepolicy.k3c.io"
NETWORKS_WEBHOOK = networkrules.WEBHOOK
#: How long a review waits for the image controller to finish starting (under the 10 s call timeout).
CONTROLLER_WAIT = 5.0
#: How long a stopping node waits to remove its configuration.
STOP_PATIENCE = 5.0

ImagesSource = Callable[[float], Awaitable[ImageController | None]]


class ImageDeletions:
    """``images.k3c.io``: refuse deleting an Image object whose image is in use."""

    def __init__(self, images: ImagesSource) -> None:
        self.images = images

    async def __call__(self, request: ar.Request) -> ar.Response:
        old = request.get("oldObject")
        if request["operation"] != ar.DELETE or old is None:
            return ar.allow(request["uid"])
        controller = await self.images(CONTROLLER_WAIT)
        if controller is None:
            return ar.deny(request["uid"], 503, "ServiceUnavailable",
                           "k3c's image controller is starting; try again")
        conflict = await controller.images.deletion_conflict(old)
        return ar.deny(request["uid"], 409, "Conflict", conflict) if conflict else ar.allow(request["uid"])


class NetworkChecks:
    """``networks.k3c.io``: refuse bad Networks, and removing one that is predefined or in use."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def __call__(self, request: ar.Request) -> ar.Response:
        uid, op = request["uid"], request["operation"]
        obj, old = request.get("object"), request.get("oldObject")
        namespace = request.get("namespace")
        refusal: networkrules.Refusal | None = None
        if op == ar.DELETE and old is not None:
            refusal = networkrules.delete_problem(old, await self.kube.list_objects(LOCAL_CONTAINERS, namespace))
        elif op in (ar.CREATE, ar.UPDATE) and obj is not None and _judged(obj, old):
            refusal = networkrules.create_problem(obj, await self.kube.list_objects(NETWORKS, namespace))
        return ar.deny(uid, refusal.code, refusal.reason, refusal.message) if refusal else ar.allow(uid)


def _judged(obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """A create, or an update of what the rules read (the spec, the docker name)."""
    return old is None or obj.get("spec") != old.get("spec") or dockerid.docker_name(obj) != dockerid.docker_name(old)


class NodePolicyCheck:
    """``nodepolicy.k3c.io``: refuse creates and updates the policies in force refuse (``node``: only of
    objects placed on that node or not placed yet)."""

    def __init__(self, policies: nodepolicy.Policies, node: str | None = None) -> None:
        self.policies = policies
        self.node = node

    async def __call__(self, request: ar.Request) -> ar.Response:
        obj = request.get("object")
        if request["operation"] not in (ar.CREATE, ar.UPDATE) or obj is None:
            return ar.allow(request["uid"])
        placed = (obj.get("spec") or {}).get("nodeName")
        if self.node is not None and placed and placed != self.node:
            return ar.allow(request["uid"])  # another node's to judge
        why = nodepolicy.refusal(request["kind"]["kind"], obj, request.get("oldObject"), self.policies.in_force())
        return ar.deny(request["uid"], 403, "Forbidden", why) if why else ar.allow(request["uid"])


def _governed_plurals() -> list[str]:
    kinds = {r.kind: r.plural for r in api.RESOURCES}
    return sorted(kinds[k] for k in nodepolicy.FIELDS)


def _rule(operations: list[str], resources: list[str]) -> dict[str, Any]:
    return {"operations": operations, "apiGroups": [GROUP], "apiVersions": [VERSION], "resources": resources,
            "scope": "*"}


def _webhook(server: WebhookServer, name: str, rules: list[dict[str, Any]],
             objects: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "clientConfig": {"url": server.url(name), "caBundle": server.ca_bundle},
            "rules": rules, "failurePolicy": "Fail", "matchPolicy": "Equivalent", "sideEffects": "None",
            "timeoutSeconds": 10, "admissionReviewVersions": [ar.REVIEW_VERSION],
            "namespaceSelector": {}, "objectSelector": objects or {}}


class Webhooks:
    """The webhook server of one operator process, the handlers it serves, and their registration."""

    def __init__(self, server: WebhookServer, kube: Kube, images: ImagesSource | None,
                 policies: nodepolicy.Policies, register: bool, node: str | None = None) -> None:
        self.server = server
        self.kube = kube
        self.images = images
        self.policies = policies
        self.register_configuration = register
        self.node = node
        self.configuration = CONFIGURATION if node is None else f"{CONFIGURATION}.{node}"
        self._lock = asyncio.Lock()

    def _served(self, all_of_them: bool = False) -> dict[str, tuple[Handler, list[dict[str, Any]]]]:
        """The webhooks to register now (``all_of_them``: every one this process can answer)."""
        served: dict[str, tuple[Handler, list[dict[str, Any]]]] = {}
        if self.images is not None:
            served[IMAGES_WEBHOOK] = (ImageDeletions(self.images), [_rule([ar.DELETE], [IMAGES.plural])])
        served[NETWORKS_WEBHOOK] = (NetworkChecks(self.kube), [_rule([ar.CREATE, ar.UPDATE, ar.DELETE],
                                                                     [NETWORKS.plural])])
        if self.policies.restricted or all_of_them:
            served[NODE_POLICY_WEBHOOK] = (NodePolicyCheck(self.policies, self.node),
                                           [_rule([ar.CREATE, ar.UPDATE], _governed_plurals())])
        return served

    async def start(self) -> None:
        """Listen, read the NodePolicy objects, register."""
        served = self._served(all_of_them=True)
        await self.server.start({name: handler for name, (handler, _rules) in served.items()})
        try:
            for obj in await self.kube.list_objects(NODE_POLICIES):
                self.policies.observe("ADDED", obj)
        except NotFound:
            log.warning("NodePolicy is not served: only the node's own policy applies")
        await self.register()

    async def policy_changed(self, event_type: str | None, obj: dict[str, Any]) -> None:
        """A NodePolicy watch event: keep the policies current; register again when that changes whether
        the node-policy webhook is needed."""
        before = self.policies.restricted
        self.policies.observe(event_type, obj)
        if self.policies.restricted != before:
            await self.register()

    async def stop(self) -> None:
        """Stop answering; a node's own configuration goes first, so that nothing calls it in vain."""
        if self.node is not None and self.register_configuration:
            ref = Ref(VALIDATING_WEBHOOK_CONFIGURATIONS, "", self.configuration)
            try:
                await asyncio.wait_for(self.kube.delete(ref), STOP_PATIENCE)  # (gone already is fine)
            except Exception as err:  # (the API server may be gone first: nothing to tell it then)
                log.warning("cannot remove the admission webhooks %s: %s", self.configuration, err)
        await self.server.stop()

    def _objects(self, webhook: str) -> dict[str, Any] | None:
        """A node's image webhook sees only its own Image objects (one per node and image, labelled)."""
        if webhook == IMAGES_WEBHOOK and self.node is not None:
            return {"matchLabels": {NODE_LABEL: self.node}}
        return None

    async def register(self) -> None:
        """Write ``k3c.io`` (or this node's) with the webhooks served now (a process serving none leaves it alone)."""
        if not self.register_configuration:
            return
        served = self._served()
        if not served:
            return
        webhooks = [_webhook(self.server, name, rules, self._objects(name)) for name, (_handler, rules) in served.items()]
        async with self._lock:
            await _upsert(self.kube, {"apiVersion": VALIDATING_WEBHOOK_CONFIGURATIONS.api_version,
                                      "kind": VALIDATING_WEBHOOK_CONFIGURATIONS.kind,
                                      "metadata": {"name": self.configuration}, "webhooks": webhooks})
        log.info("registered admission webhooks %s at %s", ", ".join(served), self.server.url("…"))


def for_process(config: OperatorConfig, assembly: Assembly, kube: Kube) -> Webhooks:
    """The webhooks of an operator process, writing through its one API session ``kube``."""
    server = WebhookServer(config.webhook_cert_dir, config.webhook_host, config.webhook_port)
    images = assembly.image_controller if config.runs("images") else None
    node = nodepolicy.Policy.from_flags(config.node_policy, config.node_policy_allow, config.node_policy_host_paths,
                                        config.credentials_namespace)
    return Webhooks(server, kube, images, nodepolicy.Policies(node), config.register_webhooks,
                    config.node_name if config.webhooks_per_node else None)


async def _upsert(kube: Kube, body: dict[str, Any]) -> None:
    ref = Ref(VALIDATING_WEBHOOK_CONFIGURATIONS, "", body["metadata"]["name"])
    for _ in range(5):
        current = await kube.get(ref)
        if current is None:
            try:
                await kube.create(VALIDATING_WEBHOOK_CONFIGURATIONS, "", body)
                return
            except Exception:
                continue
        if current.get("webhooks") == body["webhooks"]:
            return
        replacement = {**body, "metadata": {**body["metadata"],
                                            "resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            await kube.request("PUT", ref.path(), replacement)
            return
        except NotFound:
            continue
        except Exception as err:
            log.debug("replacing %s: %s", ref.path(), err)
    raise RuntimeError(f"cannot register the admission webhooks ({ref.path()} keeps changing)")
