"""The URLs of ``streams.k3c.io/v1alpha1``: which k3c object a path names, its discovery, and its node.

A CRD cannot carry custom subresources, so in cluster mode the streams of k3c's objects live in a group of
their own, served by every node's agent behind one APIService. Its paths mirror the parents' exactly,
only the group differs (``/apis/streams.k3c.io/v1alpha1/namespaces/NS/localcontainers/NAME/exec`` is
``/apis/k3c.io/v1alpha1/namespaces/NS/localcontainers/NAME/exec`` of the embedded server), so the CLI
switches by the group alone and the providers serve the same routes (``k3c.io``, plural, subresource) in
both hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from k3c.api import (
    IMAGE_BUILDS,
    IMAGES,
    LOCAL_CONTAINERS,
    STREAMS_GROUP,
    STREAMS_GROUP_VERSION,
    STREAMS_VERSION,
    Resource,
)
from k3c.apiserver import errors, requestinfo
from k3c.apiserver.subresources import COLLECTION, Route, check_names

#: The objects whose subresources are streamed, and whether they live in a namespace.
PARENTS: dict[str, tuple[Resource, bool]] = {
    LOCAL_CONTAINERS.plural: (LOCAL_CONTAINERS, True),
    IMAGE_BUILDS.plural: (IMAGE_BUILDS, True),
    IMAGES.plural: (IMAGES, False),
}

#: The verbs discovery lists for a subresource (what its requests are authorized as).
VERBS = {"exec": "create", "attach": "create", "context": "create", "load": "create", "pause": "create",
         "unpause": "create", "kill": "create", "commit": "create"}


@dataclass(frozen=True)
class Target:
    """What a stream URL names: the parent's resource, its namespace and name, and the subresource."""

    resource: Resource
    namespace: str | None
    name: str
    subresource: str

    @property
    def route(self) -> Route:
        return Route(self.resource.group, self.resource.plural, self.subresource)

    @property
    def parent_path(self) -> str:
        """The same subresource's URL on the parent's own group (``k3c.io``)."""
        return self.resource.path(self.namespace, self.name, self.subresource)

    def request_info(self, method: str, query: MultiMapping[str], websocket: bool) -> requestinfo.RequestInfo:
        """What the request does to the parent, as kube-apiserver reads it from the parent's URL."""
        return requestinfo.parse(method, self.parent_path, query, websocket)


def parse(parts: list[str]) -> Target:
    """``[namespaces, NS,] PLURAL, NAME, SUB`` (after ``/apis/streams.k3c.io/v1alpha1``) as a Target;
    a 404 Status for anything else, a 400 for names that could name no object."""
    namespace = None
    if len(parts) == 5 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    parent = PARENTS.get(parts[0]) if len(parts) == 3 else None
    if parent is None or parent[1] != (namespace is not None):
        raise errors.gone_resource("the server could not find the requested resource")
    check_names(namespace, parts[1])
    return Target(parent[0], namespace, parts[1], parts[2])


def node_of(obj: dict[str, Any]) -> str:
    """The node an object is on: the one that claimed it, else the one asked for ("" for neither)."""
    return str((obj.get("status") or {}).get("node") or (obj.get("spec") or {}).get("nodeName") or "")


def names_an_object(target: Target) -> bool:
    """Whether the URL names an existing object (a context is uploaded before its ImageBuild exists, and
    ``images/-/...`` names none)."""
    return target.name != COLLECTION and target.subresource != "context"


# ---- discovery -------------------------------------------------------------------------------------


def _group() -> dict[str, Any]:
    gv = {"groupVersion": STREAMS_GROUP_VERSION, "version": STREAMS_VERSION}
    return {"name": STREAMS_GROUP, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]}


def api_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group()}


def resource_list(routes: Iterable[Route]) -> dict[str, Any]:
    """The APIResourceList: one entry per served subresource (like ``pods/exec``), with its verbs."""
    resources = []
    for route in sorted(routes, key=lambda r: (r.resource, r.subresource)):
        parent = PARENTS.get(route.resource)
        if parent is None:
            continue
        resource, namespaced = parent
        verb = VERBS.get(route.subresource, "get")
        resources.append({"name": f"{route.resource}/{route.subresource}", "singularName": "",
                          "namespaced": namespaced, "kind": resource.kind, "verbs": [verb]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": STREAMS_GROUP_VERSION,
            "resources": resources}


def openapi_path() -> str:
    """This group/version's OpenAPI v3 document, relative to the server."""
    return f"/openapi/v3/apis/{STREAMS_GROUP_VERSION}"


def openapi_index() -> dict[str, Any]:
    """``/openapi/v3``: the one group/version served here."""
    return {"paths": {f"apis/{STREAMS_GROUP_VERSION}": {"serverRelativeURL": openapi_path()}}}


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI v3 document of the streams: one path per subresource, with no schema (a stream's body is
    bytes or a websocket, as pods/exec's is in kube's document)."""
    paths: dict[str, Any] = {}
    for route in sorted(routes, key=lambda r: (r.resource, r.subresource)):
        parent = PARENTS.get(route.resource)
        if parent is None:
            continue
        resource, namespaced = parent
        prefix = "/namespaces/{namespace}" if namespaced else ""
        path = f"/apis/{STREAMS_GROUP_VERSION}{prefix}/{route.resource}/{{name}}/{route.subresource}"
        method = "post" if VERBS.get(route.subresource) == "create" else "get"
        paths[path] = {method: {"description": f"{route.subresource} of a {resource.kind}",
                                "operationId": f"{method}{resource.kind}{route.subresource.capitalize()}",
                                "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": STREAMS_VERSION}, "paths": paths,
            "components": {"schemas": {}}}
