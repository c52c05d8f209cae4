"""Subresources served from outside the API server core: the one seam the streaming services plug into.

k3c adds subresources to its objects that plain Kubernetes storage cannot answer: a LocalContainer's
``log``/``exec``/``attach`` (:mod:`k3c.streams.server`), an Image's ``save``/``load``
(:mod:`k3c.archives.subresource`), an ImageBuild's ``log``/``context`` (:mod:`k3c.builder.logs`). Each service
is a *provider*: it declares which (group, resource, subresource) it serves (:meth:`Provider.routes`) and
answers a :class:`SubresourceRequest`, which carries everything it may use: the object's namespace and
name, the aiohttp request (to answer, stream, or upgrade to a websocket), the authenticated user, and a
:class:`ParentReader` for the objects the subresource belongs to. Providers import this module and
:mod:`k3c.apiserver.errors` (the Status vocabulary) and nothing else of the API server; an import-linter
contract in pyproject.toml holds them to it.

One interface, two hosts:

- today the embedded API server hosts the providers in-process: ``APIHandler.mount`` routes
  ``/apis/G/V/[namespaces/NS/]RESOURCE/NAME/SUBRESOURCE`` to them, with a reader on its own storage
  (:mod:`k3c.apiserver.storereader`);
- in cluster mode a standalone aggregated API server (a group such as ``streams.k3c.io``, registered
  with an APIService) is to host the very same providers. Its reader reads the parent objects through a
  Kubernetes client: ``get`` is a GET, ``revision`` a LIST's resourceVersion, ``last_state`` and ``changes``
  a watch from a resourceVersion; the user is the one the front proxy vouches for.

That is why the reader is abstract and asynchronous, and speaks in object dicts and resourceVersion
strings rather than storage rows and revisions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from k3c.apiserver import errors
from k3c.apiserver.goformat import quote
from k3c.apiserver.schema.names import dns1123_label_errors, dns1123_subdomain_errors

#: The name of a collection-level subresource URL (``images/-/load``), which names no object.
COLLECTION = "-"


@dataclass(frozen=True, slots=True)
class Route:
    """What a provider serves: ``subresource`` of the objects of ``group``/``resource`` (a plural)."""

    group: str
    resource: str
    subresource: str


@dataclass(frozen=True, slots=True)
class User:
    """Who the host authenticated: kube's user.Info (name, uid, groups, extra), as the authorizer, a
    SubjectAccessReview and the front proxy's ``X-Remote-*`` headers carry it."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (key, values) pairs: kept hashable

    @property
    def privileged(self) -> bool:
        """Whether the user is in ``system:masters``, which kube-apiserver allows everything unasked."""
        return "system:masters" in self.groups


#: The embedded server's admin: the client certificate it issued (CN=admin, O=system:masters), its admin
#: bearer token, or a process allowed to open the 0600/0660 unix socket.
ADMIN = User("admin", ("system:masters", "system:authenticated"))


class Changes(Protocol):
    """Writes to one object, noticed while a :meth:`ParentReader.changes` context is open."""

    async def wait(self, timeout: float) -> bool:
        """Whether the object was written (or deleted) within ``timeout`` seconds of the previous wait."""
        ...


class ParentReader(ABC):
    """Reads the objects of the resource a subresource belongs to: any name, not only the request's."""

    @abstractmethod
    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        """The object as stored; an ``errors.APIError`` 404 (kube's NotFound Status) if there is none."""

    @abstractmethod
    async def revision(self) -> str:
        """The resourceVersion of the resource now: a point in its history for :meth:`last_state`."""

    @abstractmethod
    async def last_state(self, namespace: str | None, name: str, since: str) -> dict[str, Any] | None:
        """The object's last state written after resourceVersion ``since``, even once it is deleted (the
        deletion keeps the final object: ``k3c run --rm`` learns an exit code from it); None if nothing was
        written since, or that history is gone."""

    @abstractmethod
    def changes(self, namespace: str | None, name: str) -> AbstractAsyncContextManager[Changes]:
        """Notice writes to one object while the context is open (a build log follower ends with it)."""


@dataclass(frozen=True)
class SubresourceRequest:
    """One request for a subresource, as the host hands it to the provider.

    Its namespace is a DNS-1123 label and its name a DNS-1123 subdomain (or :data:`COLLECTION`), as
    kube-apiserver requires of the objects' names: one cannot be made otherwise (a 400 Status), so a
    provider may use them in paths on the node without ``..`` or ``/`` ever reaching the filesystem.
    """

    route: Route
    namespace: str | None  # None for a cluster-scoped resource
    name: str | None  # None for a collection-level URL (``images/-/load`` uses the name ``-`` instead)
    http: web.Request
    user: User
    parents: ParentReader

    def __post_init__(self) -> None:
        check_names(self.namespace, self.name)

    async def parent(self) -> dict[str, Any]:
        """The object the subresource belongs to; an ``errors.APIError`` 404 if there is none."""
        return await self.parents.get(self.namespace, self.name or "")


def check_names(namespace: str | None, name: str | None) -> None:
    """A 400 Status unless ``namespace`` and ``name`` could name an object (see :class:`SubresourceRequest`)."""
    if namespace is not None and (problems := dns1123_label_errors(namespace)):
        raise errors.bad_request(f"Namespace parameter invalid: {quote(namespace)}: {'; '.join(problems)}")
    if name is not None and name != COLLECTION and (problems := dns1123_subdomain_errors(name)):
        raise errors.bad_request(f"Name parameter invalid: {quote(name)}: {'; '.join(problems)}")


SubresourceHandler = Callable[[SubresourceRequest], Awaitable[web.StreamResponse]]


class Provider(Protocol):
    """A service serving subresources; the host mounts it and calls its handlers."""

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        """The routes this provider serves, each with its handler."""
        ...
