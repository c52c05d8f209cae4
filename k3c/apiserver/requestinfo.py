"""What a request asks to do, read from its method and URL alone, as kube-apiserver's RequestInfoFactory reads it.

Authorization runs before any handler knows whether the resource exists (kube answers 403 for a resource
it does not serve, too), so the attributes come from the URL's shape: ``/api/v1/...`` and
``/apis/GROUP/VERSION/...`` are resource requests, everything else (``/healthz``, ``/apis``, ``/openapi/v3``)
is a non-resource request checked by path. The verb follows the method, with kube's refinements: a GET
without a name is ``list`` (``watch`` with ``?watch=true`` or under ``/watch/``), a DELETE without a name is
``deletecollection``, and a list or watch selecting one ``metadata.name`` is authorized for that name.

One addition kube made for websockets: a GET upgraded to a websocket on ``exec``, ``attach`` or
``portforward`` runs something, so it needs ``create`` (kube's AuthorizePodWebsocketUpgradeCreatePermission),
as the SPDY POST always did.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import MultiMapping

#: Subresources that start something in a container: authorized as ``create`` however they are asked for.
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """kube's RequestInfo: a resource request names group/version/resource (and maybe a namespace, a name and
    a subresource); any other request is its path."""

    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def parse(method: str, path: str, query: MultiMapping[str], websocket: bool = False) -> RequestInfo:
    """The attributes of one request (``query`` the decoded query string; ``websocket`` an Upgrade to one)."""
    verb = _METHOD_VERBS.get(method, method.lower())
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return RequestInfo(verb, path)
    rest = parts[1:]
    group = ""
    if parts[0] == "apis":
        if len(rest) < 3:
            return RequestInfo(verb, path)
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest[0] == "watch":  # the legacy /watch/ prefix: a watch whatever the method
        verb, rest = "watch", rest[1:]
        if not rest:
            return RequestInfo(verb, path, True, group, version)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]  # /namespaces/NS/RESOURCE/...: the resource is what follows
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        verb = "watch" if _flag(query.get("watch")) else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    if verb in ("list", "watch") and not name:
        name = _selected_name(query.get("fieldSelector", ""))
    if websocket and verb == "get" and subresource in CONNECT_SUBRESOURCES:
        verb = "create"
    return RequestInfo(verb, path, True, group, version, namespace, resource, subresource, name)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _selected_name(selector: str) -> str:
    """The name a field selector requires exactly (``metadata.name=x``), so a list or watch of one object is
    authorized as that object: kube does this for rules with resourceNames."""
    for term in selector.split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""
