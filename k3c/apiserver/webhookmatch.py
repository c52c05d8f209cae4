"""Which webhooks a request is sent to: kube-apiserver's rule, scope, matchPolicy and selector matching.

A webhook is asked about a request when one of its rules names the request's operation, group, version,
resource (``*``, ``RESOURCE/SUBRESOURCE``, ``RESOURCE/*``, ``*/*``) and scope, or — with ``matchPolicy:
Equivalent`` — would name it through another served version of the same resource; and when the
namespace's labels match ``namespaceSelector`` (cluster-scoped objects always do; a Namespace is matched
by its own labels) and the object's or the old object's labels match ``objectSelector``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k3c.apiserver.resources import ResourceType
from k3c.apiserver.subresources import User
from k3c.apiserver.webhookconfig import Rule, Webhook


@dataclass(frozen=True)
class Attributes:
    """One write under admission (kube's ``admission.Attributes``)."""

    operation: str  # CREATE, UPDATE, DELETE
    rtype: ResourceType  # the served version the request came through
    subresource: str
    #: the object's namespace; for a Namespace, its own name (as kube-apiserver sets it); "" otherwise
    namespace: str
    name: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    dry_run: bool
    options: dict[str, Any]
    user: User

    @property
    def is_namespace(self) -> bool:
        return self.rtype.group == "" and self.rtype.plural == "namespaces"


def _rule_matches(rule: Rule, a: Attributes, version: str) -> bool:
    if "*" not in rule.operations and a.operation not in rule.operations:
        return False
    if "*" not in rule.groups and a.rtype.group not in rule.groups:
        return False
    if "*" not in rule.versions and version not in rule.versions:
        return False
    if not _scope_matches(rule.scope, a):
        return False
    for spec in rule.resources:
        res, _, sub = spec.partition("/")
        if (res == "*" or res == a.rtype.plural) and (sub == "*" or sub == a.subresource):
            return True
    return False


def _scope_matches(scope: str, a: Attributes) -> bool:
    if scope == "Namespaced":
        return not a.is_namespace and bool(a.namespace)
    if scope == "Cluster":
        return a.is_namespace or not a.namespace
    return True


def matched_version(hook: Webhook, a: Attributes, versions: Iterable[ResourceType]) -> ResourceType | None:
    """The version the webhook is told about (the request's own, or an equivalent its rules name), or None."""
    if any(_rule_matches(r, a, a.rtype.version) for r in hook.rules):
        return a.rtype
    if hook.match_policy != "Equivalent":
        return None
    for other in versions:
        if other.version != a.rtype.version and any(_rule_matches(r, a, other.version) for r in hook.rules):
            return other
    return None


def _labels(obj: dict[str, Any] | None) -> Mapping[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def selectors_match(hook: Webhook, a: Attributes, namespace_labels: Callable[[str], Mapping[str, str]]) -> bool:
    if not hook.namespace_selector.empty():
        if a.is_namespace:
            labels = _labels(a.obj if a.obj is not None else a.old)
            if not hook.namespace_selector.matches(labels):
                return False
        elif a.namespace and not hook.namespace_selector.matches(namespace_labels(a.namespace)):
            return False
    if hook.object_selector.empty():
        return True
    return any(o is not None and hook.object_selector.matches(_labels(o)) for o in (a.obj, a.old))
