"""Impersonation: a user allowed to may act as another (``Impersonate-*`` headers, ``kubectl --as``).

As kube-apiserver's impersonation filter: ``Impersonate-User`` names the user (a
``system:serviceaccount:NS:NAME`` name is the ServiceAccount), ``Impersonate-Group`` (repeatable) its groups,
``Impersonate-Uid`` its uid and ``Impersonate-Extra-KEY`` its extra values. The requester needs the verb
``impersonate`` on each of them: ``users``, ``groups`` and ``serviceaccounts`` of the core group,
``uids`` and ``userextras/KEY`` of ``authentication.k8s.io``, named by the value. The impersonated user is
in ``system:authenticated`` (a ServiceAccount named without groups also in its ServiceAccount groups), and
the request goes on as that user, its ``Impersonate-*`` headers dropped.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from k3c.apiserver import errors
from k3c.apiserver.rbac import forbidden
from k3c.apiserver.requestinfo import RequestInfo
from k3c.apiserver.subresources import User

USER = "Impersonate-User"
GROUP = "Impersonate-Group"
UID = "Impersonate-Uid"
EXTRA = "Impersonate-Extra-"
_SA_PREFIX = "system:serviceaccount:"
AUTHENTICATED = "system:authenticated"
AUTHN_GROUP = "authentication.k8s.io"

#: decides whether ``user`` may do what the RequestInfo says: (allowed, reason)
Decide = Callable[[User, RequestInfo], tuple[bool, str]]


@dataclass(frozen=True)
class Requested:
    """What the headers ask to be."""

    name: str
    groups: tuple[str, ...]
    uid: str
    extra: tuple[tuple[str, tuple[str, ...]], ...]


def requested(headers: CIMultiDictProxy[str]) -> Requested | None:
    """The impersonation the headers ask for; None without any ``Impersonate-*`` header (400 for groups,
    extra or uid without a user, as kube answers)."""
    name = headers.get(USER, "")
    groups = tuple(headers.getall(GROUP, ()))
    uid = headers.get(UID, "")
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        if key.lower().startswith(EXTRA.lower()):
            extra.setdefault(urllib.parse.unquote(key[len(EXTRA):]).lower(), []).append(value)
    if not name:
        if groups or extra or uid:
            raise errors.bad_request("requested impersonation of groups, extra or uid without impersonating a user")
        return None
    return Requested(name, groups, uid, tuple(sorted((k, tuple(v)) for k, v in extra.items())))


def _checks(wanted: Requested) -> list[RequestInfo]:
    """The ``impersonate`` requests the requester must be allowed, one per value asked for."""
    checks: list[RequestInfo] = []
    if wanted.name.startswith(_SA_PREFIX) and wanted.name.count(":") == 3:
        namespace, sa_name = wanted.name[len(_SA_PREFIX):].split(":")
        checks.append(RequestInfo("impersonate", "", True, "", "", namespace, "serviceaccounts", "", sa_name))
    else:
        checks.append(RequestInfo("impersonate", "", True, "", "", "", "users", "", wanted.name))
    checks += [RequestInfo("impersonate", "", True, "", "", "", "groups", "", g) for g in wanted.groups]
    if wanted.uid:
        checks.append(RequestInfo("impersonate", "", True, AUTHN_GROUP, "", "", "uids", "", wanted.uid))
    checks += [RequestInfo("impersonate", "", True, AUTHN_GROUP, "", "", "userextras", key, value)
               for key, values in wanted.extra for value in values]
    return checks


def impersonate(requester: User, wanted: Requested, decide: Decide) -> User:
    """The user to act as, once each part is allowed; a 403 Status for the first part that is not."""
    for check in _checks(wanted):
        allowed, reason = decide(requester, check)
        if not allowed:
            raise forbidden(requester, check, reason)
    groups = list(wanted.groups)
    if wanted.name.startswith(_SA_PREFIX) and not groups and wanted.name.count(":") == 3:
        namespace = wanted.name.split(":")[2]
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    if AUTHENTICATED not in groups and wanted.name != "system:anonymous":
        groups.append(AUTHENTICATED)
    return User(wanted.name, tuple(groups), wanted.uid, wanted.extra)
