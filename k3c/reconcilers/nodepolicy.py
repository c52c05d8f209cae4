"""The node policy: which spec fields of k3c's kinds let a writer reach the node, and when they may be set.

Whoever may create a LocalContainer or an ImageBuild could otherwise get root on the node. So every spec
field of every k3c kind is classified here (:data:`FIELDS`): *safe* (what docker lets any user of a
shared host do inside a container), or *governed*, with how its value is judged (set at all, a node path,
a git URL that may point at the node, a credentials Secret). A field that is not classified — one added to
a CRD later, e.g. devices, a host PID namespace, an unconfined seccomp profile — is governed: a
restricted policy refuses it until someone classifies it (tests/unit/test_nodepolicy.py walks the CRDs
and fails for such a field).

A :class:`Policy` is the node's (``k3c daemon --node-policy``) or a NodePolicy object's. Permissive allows
everything (embedded mode's default: like docker.sock, whoever reaches the API is root on the node);
restricted refuses a governed field that is set unless the policy allows it (``allow``: ``KIND.FIELD``;
``hostPaths``: node directories), and lets ``authSecret`` name only Secrets of the object's own namespace
(namespaced kinds) or of the credentials namespace (the cluster-scoped Image, ImageTag, ImagePush).
:func:`refusal` checks an object against every policy in force; on update only what changed is judged, so
an object made before a policy can still be stopped and deleted. Pure: no I/O but ``os.path.realpath``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from k3c.api import GROUP_VERSION
from k3c.distribution.auth import SECRET_NAMESPACE

#: How a field is judged (see :class:`Field`).
SAFE, GOVERNED, NODE_PATH, GIT_URL, CREDENTIALS = "safe", "governed", "node path", "git url", "credentials"


def _set(value: Any) -> bool:
    """A field counts only when set to something: false, "", [] and {} ask for nothing."""
    return value not in (None, False, "", [], {})


@dataclass(frozen=True)
class Field:
    how: str
    #: for GOVERNED: whether the value asks for what the field governs (default: any value that is set)
    when: Callable[[Any], bool] = _set


S, G = Field(SAFE), Field(GOVERNED)

#: Every spec field of every k3c kind but NodePolicy, by kind and path (``[]`` for list items). A path
#: classifies everything under it.
FIELDS: dict[str, dict[str, Field]] = {
    "LocalContainer": {
        "spec.image": S, "spec.command": S, "spec.args": S, "spec.env": S, "spec.workingDir": S,
        "spec.user": S, "spec.tty": S, "spec.stdin": S, "spec.stdinOnce": S,
        "spec.ports": S,  # host ports, as any docker user may publish
        "spec.volumes[].volume": S, "spec.volumes[].mountPath": S, "spec.volumes[].readOnly": S,
        "spec.volumes[].hostPath": Field(NODE_PATH),
        "spec.labels": S, "spec.restartPolicy": S, "spec.memory": S, "spec.cpus": S,
        "spec.privileged": G, "spec.readOnlyRootFilesystem": S,
        "spec.capAdd": G, "spec.capDrop": S,
        "spec.hostNetwork": G,
        "spec.networks": S,  # k3c's own bridges; the network reconciler keeps them off the host's routes
        "spec.hostname": S, "spec.dns": S, "spec.autoRemove": S, "spec.stopTimeout": S, "spec.state": S,
        "spec.nodeName": S,
        "spec.volumes[].propagation": S,  # only a host path's mounts can reach the node, and those are governed
        "spec.publishAll": S, "spec.expose": S,  # host ports, as spec.ports
        "spec.init": S,  # k3c's own init binary, read-only
        "spec.healthcheck": S,  # runs in the container, as exec does
        "spec.logOptions": S,  # the container's own log files
        "spec.tmpfs": S,  # memory of the container's own cgroup
        "spec.devices": G,  # the node's devices
        "spec.shmSize": S, "spec.extraHosts": S, "spec.dnsSearch": S, "spec.dnsOptions": S,
        "spec.ulimits": S,  # set by the runtime, which cannot raise a hard limit beyond its own
        "spec.pidsLimit": S, "spec.memorySwap": S, "spec.cpuShares": S, "spec.cpusetCpus": S,
        "spec.noNewPrivileges": S,  # only ever takes privileges away
        "spec.seccompProfile": G,  # unconfined, or a profile that may allow any system call
        "spec.apparmorProfile": G,  # unconfined, or a profile of the node's choosing
        "spec.pidMode": Field(GOVERNED, lambda v: v == "host"),  # sees and signals the node's processes
        "spec.ipcMode": Field(GOVERNED, lambda v: v == "host"),  # the node's shared memory and semaphores
        "spec.groupAdd": S, "spec.pullPolicy": S, "spec.platform": S, "spec.stopSignal": S,
    },
    "ImageBuild": {
        "spec.context.dir": Field(NODE_PATH),
        "spec.context.git.url": Field(GIT_URL),
        "spec.context.git.ref": S, "spec.context.git.subPath": S,
        "spec.context.upload.digest": S,  # a tar the client uploaded, kept where the server says
        "spec.dockerfile": S,  # a path inside the context (the builder keeps it there)
        "spec.dockerfileInline": S, "spec.buildArgs": S, "spec.target": S, "spec.tags": S, "spec.labels": S,
        "spec.network": Field(GOVERNED, lambda v: v == "host"),  # RUN in the node's network namespace
        "spec.noCache": S, "spec.pull": S, "spec.push": S, "spec.platform": S, "spec.ttlSecondsAfterFinished": S,
        "spec.secrets": S,  # Secrets of the build's own namespace only
        "spec.nodeName": S,
        # entitlements (`k3c build --allow network.host`, as BuildKit's), planned by the build hardening:
        "spec.allow": G,
    },
    "Volume": {"spec.driver": S, "spec.nodeName": S},
    # subnets that overlap the host's routes or another network are refused by the network reconciler
    "Network": {"spec.driver": S, "spec.subnet": S, "spec.gateway": S, "spec.ipRange": S, "spec.internal": S,
                "spec.enableDNS": S, "spec.options": S, "spec.nodeName": S},
    "Image": {"spec.reference": S, "spec.pullRequest": S, "spec.nodeName": S,
              "spec.authSecret": Field(CREDENTIALS)},
    "ImageTag": {"spec.source": S, "spec.targets": S, "spec.push": S, "spec.authSecret": Field(CREDENTIALS)},
    "ImagePush": {"spec.image": S, "spec.destination": S, "spec.chunkSize": S, "spec.nodeName": S,
                  "spec.authSecret": Field(CREDENTIALS)},
    "BuildCache": {"spec.pruneRequest": S},
}
#: Kinds that live in a namespace (their authSecret may name only that namespace's Secrets).
NAMESPACED = frozenset({"LocalContainer", "ImageBuild", "Volume"})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:")  # git@host:repo (ssh)
_REMOTE_SCHEMES = ("https", "http", "ssh", "git")


@dataclass(frozen=True)
class Policy:
    source: str  #: how a refusal names the policy
    restricted: bool
    allow: frozenset[str] = frozenset()
    host_paths: tuple[str, ...] = ()
    credentials_namespace: str = SECRET_NAMESPACE

    @classmethod
    def from_flags(cls, mode: str, allow: Iterable[str] = (), host_paths: Iterable[str] = (),
                   credentials_namespace: str = SECRET_NAMESPACE) -> Policy:
        return cls(f"(k3c daemon --node-policy={mode})", mode == "restricted", frozenset(allow),
                   tuple(host_paths), credentials_namespace)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Policy:
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        return cls(f'({GROUP_VERSION} NodePolicy "{name}")', (spec.get("mode") or "restricted") == "restricted",
                   frozenset(spec.get("allow") or ()), tuple(spec.get("hostPaths") or ()),
                   spec.get("credentialsNamespace") or SECRET_NAMESPACE)

    def judge(self, kind: str, key: str, value: Any, how: Field | None, namespace: str) -> str:
        """Why this policy refuses ``value`` at ``key`` ("" if it does not)."""
        if not self.restricted or not _set(value) or f"{kind}.{key}" in self.allow:
            return ""
        how = how or G  # not classified: governed
        if how.how == SAFE:
            return ""
        if how.how == NODE_PATH:
            return "" if isinstance(value, str) and self._under_host_paths(value) else "is not allowed"
        if how.how == GIT_URL:
            return "" if isinstance(value, str) and self._git_url_allowed(value) else "is not allowed"
        if how.how == CREDENTIALS:
            return self._credentials(kind, value, namespace)
        return "is not allowed" if how.when(value) else ""

    def _under_host_paths(self, path: str) -> bool:
        if not path.startswith("/"):
            return False
        candidates = {os.path.normpath(path), os.path.realpath(path)}
        return all(any(c == p.rstrip("/") or c.startswith(p.rstrip("/") + "/") for p in self.host_paths)
                   for c in candidates)

    def _git_url_allowed(self, url: str) -> bool:
        m = _SCHEME.match(url)
        if m:
            scheme = m.group(1).lower()
            if scheme == "file":
                return self._under_host_paths(url[len("file://"):])
            return scheme in _REMOTE_SCHEMES
        if _SCP_LIKE.match(url):
            return True
        return self._under_host_paths(url)  # a path on the node

    def _credentials(self, kind: str, value: Any, namespace: str) -> str:
        allowed = namespace if kind in NAMESPACED else self.credentials_namespace
        named = (value.get("namespace") if isinstance(value, dict) else None) or \
            (namespace if kind in NAMESPACED else SECRET_NAMESPACE)
        return "" if named == allowed else f'may only name Secrets in namespace "{allowed}"'


def _walk(table: dict[str, Field], value: Any, path: str, key: str) -> Iterator[tuple[str, str, Any, Field | None]]:
    """(reported path, classification key, value, classification or None) of every field set in ``value``."""
    if key in table:
        yield path, key, value, table[key]
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(table, v, f"{path}.{k}", f"{key}.{k}")
    elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
        for i, item in enumerate(value):
            yield from _walk(table, item, f"{path}[{i}]", f"{key}[]")
    else:
        yield path, key, value, None


def refusal(kind: str, obj: dict[str, Any], old: dict[str, Any] | None, policies: Iterable[Policy]) -> str | None:
    """The first refusal of ``obj`` (an update of ``old``) by the policies, worded
    ``node policy: FIELD is not allowed (POLICY)``, or None when every policy allows it."""
    table = FIELDS.get(kind)
    if table is None:
        return None
    policies = list(policies)
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    before = {p: v for p, _k, v, _f in _walk(table, (old or {}).get("spec") or {}, "spec", "spec")}
    for path, key, value, how in _walk(table, obj.get("spec") or {}, "spec", "spec"):
        if old is not None and path in before and before[path] == value:
            continue  # an update is judged on what it changes
        for policy in policies:
            why = policy.judge(kind, key, value, how, namespace)
            if why:
                return f"node policy: {path} {why} {policy.source}"
    return None


@dataclass
class Policies:
    """The policies in force on this node: its own (flags) and every NodePolicy object (from the watch)."""

    node: Policy
    objects: dict[str, Policy] = field(default_factory=dict)

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if event_type == "DELETED":
            self.objects.pop(name, None)
        elif name:
            self.objects[name] = Policy.from_object(obj)

    def in_force(self) -> list[Policy]:
        return [self.node, *(self.objects[n] for n in sorted(self.objects))]

    @property
    def restricted(self) -> bool:
        """Whether any policy can refuse anything (only then is the webhook registered)."""
        return any(p.restricted for p in self.in_force())
