"""The RBAC authorizer: Roles, ClusterRoles and their bindings decide what a user may do, as kube's does.

Every request of a user outside ``system:masters`` is checked (see :mod:`k3c.apiserver.requestinfo` for what
it asks): a ClusterRoleBinding grants its ClusterRole's rules everywhere, a RoleBinding grants its Role's (or
a ClusterRole's) rules inside its namespace only, and nonResourceURLs count only from ClusterRoleBindings.
Rules match as kube's ``RuleAllows`` does: ``*`` wildcards for verbs, groups, resources and URLs, ``*/sub``
for a subresource of any resource, ``resourceNames`` only for requests naming an object, and a URL rule
ending in ``*`` as a prefix. RBAC only allows: a request no rule allows is refused, and the reason names the
bindings whose role is missing, as kube's does.

The bindings and roles are read from storage into an index, rebuilt only after a write to one of the four
RBAC kinds, so a check is a few dictionary lookups and no parse.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from k3c.apiserver import errors
from k3c.apiserver.requestinfo import RequestInfo
from k3c.apiserver.storage import Event, Store
from k3c.apiserver.subresources import User

GROUP = "rbac.authorization.k8s.io"
_PREFIX = f"/{GROUP}/"


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule, its lists as tuples."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Rule:
        def strings(key: str) -> tuple[str, ...]:
            value = doc.get(key) or ()
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
        return cls(strings("verbs"), strings("apiGroups"), strings("resources"), strings("resourceNames"),
                   strings("nonResourceURLs"))

    def to_dict(self) -> dict[str, list[str]]:
        """The rule as the API writes it (empty lists left out)."""
        doc = {"verbs": self.verbs, "apiGroups": self.api_groups, "resources": self.resources,
               "resourceNames": self.resource_names, "nonResourceURLs": self.non_resource_urls}
        return {key: list(value) for key, value in doc.items() if value}

    def allows(self, a: RequestInfo) -> bool:
        if not _verb_matches(self.verbs, a.verb):
            return False
        if not a.resource_request:
            return any(_url_matches(rule, a.path) for rule in self.non_resource_urls)
        return (_in(self.api_groups, a.group) and _resource_matches(self.resources, a.resource, a.subresource)
                and (not self.resource_names or (a.name != "" and a.name in self.resource_names)))


def _in(values: tuple[str, ...], wanted: str) -> bool:
    return "*" in values or wanted in values


def _verb_matches(verbs: tuple[str, ...], verb: str) -> bool:
    return "*" in verbs or verb in verbs


def _resource_matches(resources: tuple[str, ...], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for rule in resources:
        if rule in ("*", combined):
            return True
        if subresource and rule == f"*/{subresource}":
            return True
    return False


def _url_matches(rule: str, path: str) -> bool:
    if rule == "*" or rule == path:
        return True
    return rule.endswith("*") and path.startswith(rule[:-1])


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str  # User, Group, ServiceAccount
    name: str
    namespace: str = ""

    def applies_to(self, user: User, binding_namespace: str) -> bool:
        if self.kind == "User":
            return self.name == user.name
        if self.kind == "Group":
            return self.name in user.groups
        if self.kind == "ServiceAccount":
            namespace = self.namespace or binding_namespace
            return user.name == f"system:serviceaccount:{namespace}:{self.name}"
        return False

    def describe(self, binding_namespace: str) -> str:
        """As kube's ``describeSubject`` names it in an "allowed by" reason."""
        if self.kind == "ServiceAccount":
            return f'{self.kind} "{self.name}/{self.namespace or binding_namespace}"'
        return f'{self.kind} "{self.name}"'


@dataclass(frozen=True, slots=True)
class Binding:
    """A RoleBinding (``namespace`` set) or a ClusterRoleBinding."""

    name: str
    namespace: str
    role_kind: str  # Role or ClusterRole
    role_name: str
    subjects: tuple[Subject, ...]

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Binding:
        meta = obj.get("metadata") or {}
        ref = obj.get("roleRef") or {}
        subjects = tuple(Subject(str(s.get("kind", "")), str(s.get("name", "")), str(s.get("namespace") or ""))
                         for s in obj.get("subjects") or [] if isinstance(s, dict))
        return cls(str(meta.get("name", "")), str(meta.get("namespace") or ""), str(ref.get("kind", "")),
                   str(ref.get("name", "")), subjects)

    def subject_for(self, user: User) -> Subject | None:
        return next((s for s in self.subjects if s.applies_to(user, self.namespace)), None)

    def describe(self, subject: Subject) -> str:
        """As kube's binding describers name the source of an allowing rule."""
        if self.namespace:
            return (f'RoleBinding "{self.name}/{self.namespace}" of {self.role_kind} "{self.role_name}" to '
                    f"{subject.describe(self.namespace)}")
        return f'ClusterRoleBinding "{self.name}" of {self.role_kind} "{self.role_name}" to {subject.describe("")}'


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass
class _Index:
    cluster_roles: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    roles: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict)
    cluster_bindings: list[Binding] = field(default_factory=list)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)  # by namespace


def rules_of(obj: Mapping[str, Any]) -> tuple[Rule, ...]:
    return tuple(Rule.of(r) for r in obj.get("rules") or [] if isinstance(r, dict))


class RBACAuthorizer:
    """Answers "may this user do this?" from the RBAC objects in one server's storage."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: _Index | None = None
        store.listeners.append(self._forget)

    def _forget(self, event: Event) -> None:
        if event.key.startswith(_PREFIX):
            self._index = None

    def _current(self) -> _Index:
        if self._index is None:
            index = _Index()
            for _key, entry in self.store.list_current(f"{_PREFIX}clusterroles/"):
                index.cluster_roles[entry.obj["metadata"]["name"]] = rules_of(entry.obj)
            for _key, entry in self.store.list_current(f"{_PREFIX}roles/"):
                meta = entry.obj["metadata"]
                index.roles[(meta.get("namespace", ""), meta["name"])] = rules_of(entry.obj)
            for _key, entry in self.store.list_current(f"{_PREFIX}clusterrolebindings/"):
                index.cluster_bindings.append(Binding.of(entry.obj))
            for _key, entry in self.store.list_current(f"{_PREFIX}rolebindings/"):
                binding = Binding.of(entry.obj)
                index.bindings.setdefault(binding.namespace, []).append(binding)
            self._index = index
        return self._index

    def _role_rules(self, index: _Index, binding: Binding) -> tuple[Rule, ...] | errors.APIError:
        if binding.role_kind == "ClusterRole":
            rules = index.cluster_roles.get(binding.role_name)
            return rules if rules is not None else errors.not_found("clusterrole", GROUP, binding.role_name)
        if binding.role_kind == "Role" and binding.namespace:
            rules = index.roles.get((binding.namespace, binding.role_name))
            return rules if rules is not None else errors.not_found("role", GROUP, binding.role_name)
        return errors.not_found(binding.role_kind.lower(), GROUP, binding.role_name)

    def _applicable(self, user: User, namespace: str) -> Iterator[tuple[Binding, Subject]]:
        """The bindings that grant ``user`` anything for a request in ``namespace`` (cluster-wide ones first)."""
        index = self._current()
        scopes: Iterable[Binding] = index.cluster_bindings
        if namespace:
            scopes = [*index.cluster_bindings, *index.bindings.get(namespace, ())]
        for binding in scopes:
            subject = binding.subject_for(user)
            if subject is not None:
                yield binding, subject

    def decide(self, user: User, a: RequestInfo) -> tuple[bool, str]:
        """kube's authorizer chain here: ``system:masters`` may do anything (no reason given), then RBAC."""
        if user.privileged:
            return True, ""
        decision = self.authorize(user, a)
        return decision.allowed, decision.reason

    def authorize(self, user: User, a: RequestInfo) -> Decision:
        """Allowed, with kube's "allowed by" reason, or not, with the missing roles as the reason."""
        index = self._current()
        problems: list[str] = []
        namespace = a.namespace if a.resource_request else ""
        for binding, subject in self._applicable(user, namespace):
            rules = self._role_rules(index, binding)
            if isinstance(rules, errors.APIError):
                problems.append(rules.message)
                continue
            if any(rule.allows(a) for rule in rules):
                return Decision(True, f"RBAC: allowed by {binding.describe(subject)}")
        if not problems:
            return Decision(False)
        aggregate = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        return Decision(False, f"RBAC: {aggregate}")

    def rules_for(self, user: User, namespace: str) -> tuple[list[Rule], list[str]]:
        """Every rule granting ``user`` something in ``namespace`` (a SelfSubjectRulesReview), and the
        problems met on the way (bindings to missing roles)."""
        index = self._current()
        rules: list[Rule] = []
        problems: list[str] = []
        for binding, _subject in self._applicable(user, namespace):
            found = self._role_rules(index, binding)
            if isinstance(found, errors.APIError):
                problems.append(found.message)
            else:
                rules.extend(r for r in found if not (binding.namespace and r.non_resource_urls))
        return rules, problems


def forbidden(user: User, a: RequestInfo, reason: str) -> errors.APIError:
    """The 403 kube-apiserver answers a refused request with, worded as its authorization filter words it."""
    if not a.resource_request:
        message = f'User "{user.name}" cannot {a.verb} path "{a.path}"'
        return _forbidden("", "", "", message, reason)
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    message = f'User "{user.name}" cannot {a.verb} resource "{resource}" in API group "{a.group}"'
    message += f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    return _forbidden(a.group, a.resource, a.name, message, reason)


def _forbidden(group: str, resource: str, name: str, message: str, reason: str) -> errors.APIError:
    """apimachinery's NewForbidden: ``resource.group "name" is forbidden: ...``, shorter without them."""
    why = f"{message}: {reason}" if reason else message
    qualified = f"{resource}.{group}" if group else resource
    if not qualified and not name:
        text = f"forbidden: {why}"
    elif not name:
        text = f"{qualified} is forbidden: {why}"
    else:
        text = f'{qualified} "{name}" is forbidden: {why}'
    details: dict[str, Any] = {"kind": resource} if resource else {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return errors.APIError(403, "Forbidden", text, details)
