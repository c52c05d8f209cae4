"""The HTTP face of the API server: kube-apiserver's URL layout mapped onto the REST verbs.

One catch-all aiohttp handler parses `/api/v1/...` and `/apis/G/V/...` paths itself (the set of
resources changes at run time with CRDs), negotiates the representation and turns every `APIError`
into a `metav1.Status` answer. Nothing here knows storage details; that is `rest.ResourceAPI`.
Subresources the core does not serve itself go to the providers mounted with `APIHandler.mount`
(see `subresources`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from k3c.apiserver import codec, discovery, errors, goformat, gotypes, openapi, openapi_v2, tables
from k3c.apiserver.authn import user_of
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.rest import (
    ListOptions,
    ResourceAPI,
    Result,
    WriteOptions,
    parse_resource_version,
    watched_key,
)
from k3c.apiserver.storage import Compacted
from k3c.apiserver.storereader import StoreReader
from k3c.apiserver.subresources import Provider, Route, SubresourceHandler, SubresourceRequest
from k3c.apiserver.watch import Overflow, WatchHub

log = logging.getLogger(__name__)


@dataclass
class Target:
    """What a resource URL names."""

    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str
    watch_path: bool  # the legacy /watch/ prefix


@dataclass
class Settings:
    server_address: str = "127.0.0.1:6443"
    bookmark_interval: float = 60.0


def status_response(err: errors.APIError) -> web.Response:
    return web.Response(status=err.code, body=orjson.dumps(err.status()), content_type="application/json")


def _success_status(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": meta.get("name"), "group": rtype.group or None, "kind": rtype.plural,
                    "uid": meta.get("uid")},
    }


class APIHandler:
    def __init__(self, api: ResourceAPI, hub: WatchHub, registry: ResourceTypes, settings: Settings):
        self.api = api
        self.hub = hub
        self.registry = registry
        self.settings = settings
        self.subresources: dict[Route, SubresourceHandler] = {}
        #: the aggregated groups' versions (APIServices), listed in discovery beside the served ones
        self.aggregated_groups: Callable[[], Mapping[str, list[str]]] = dict

    def mount(self, provider: Provider) -> None:
        """Serve the provider's subresources (a later provider of the same route replaces the earlier)."""
        self.subresources.update(provider.routes())

    # ---- entry ----------------------------------------------------------------------------------
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except errors.APIError as err:
            return status_response(err)
        except web.HTTPRequestEntityTooLarge:
            return status_response(errors.too_large())
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as err:  # the server answers, logs, and keeps serving
            log.exception("internal error on %s %s", request.method, request.path)
            return status_response(errors.internal(str(err)))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return self._json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3",
                                         "/readyz", "/version"]})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if parts == ["version"]:
            return self._json(discovery.version())
        if head == "openapi":
            return self._openapi(request, parts[1:])
        if head == "api":
            if len(parts) == 1:
                return self._json(discovery.api_versions(self.settings.server_address))
            return await self._group_version(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return self._json(discovery.api_group_list(self.registry, self.aggregated_groups()))
            if len(parts) == 2:
                return self._json_or_404(discovery.api_group(self.registry, parts[1], self.aggregated_groups()))
            return await self._group_version(request, parts[1], parts[2], parts[3:])
        raise errors.gone_resource("the server could not find the requested resource")

    def _json(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers)

    def _json_or_404(self, doc: Any) -> web.Response:
        if doc is None:
            raise errors.gone_resource("the server could not find the requested resource")
        return self._json(doc)

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        if rest == ["v2"]:  # kubectl 1.27/1.28 need it (see openapi_v2)
            body, ctype = openapi_v2.negotiate(request.headers.get("Accept", ""), self.registry.all())
            return web.Response(body=body, headers={"Content-Type": ctype})
        if rest == ["v3"]:
            index = openapi.index(self.registry.all())
            for group, versions in self.aggregated_groups().items():  # (their documents are their servers')
                for version in versions:
                    path = openapi.gv_path(group, version)
                    index["paths"].setdefault(path, {"serverRelativeURL": f"/openapi/v3/{path}"})
            return self._json(index)
        if rest and rest[0] == "v3" and len(rest) > 1:
            gv_path = "/".join(rest[1:])
            types = self.registry.all()
            if gv_path not in openapi.index(types)["paths"]:
                raise errors.gone_resource("the server could not find the requested resource")
            return self._json(openapi.document(gv_path, types), headers={"Cache-Control": "no-cache"})
        raise errors.gone_resource("the server could not find the requested resource")

    async def _group_version(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        if not rest:
            return self._json_or_404(discovery.resource_list(self.registry, group, version))
        target = self._resolve(group, version, rest)
        # a provider's subresource, or a collection it answers whole (the reviews: created, never stored)
        if target.subresource or target.name is None:
            route = Route(target.rtype.group, target.rtype.plural, target.subresource)
            custom = self.subresources.get(route)
            if custom is not None:
                parents = StoreReader(self.api, self.hub, target.rtype)
                sub = SubresourceRequest(route, target.namespace, target.name, request, user_of(request), parents)
                return await custom(sub)
        if target.subresource:
            if target.subresource != "status" or not target.rtype.has_status:
                raise errors.gone_resource("the server could not find the requested resource")
        method = request.method
        watch = target.watch_path or _flag(request.query.get("watch"))
        if method == "GET":
            if watch:
                return await self._watch(request, target)
            if target.name is None:
                return self._list(request, target)
            return self._get(request, target)
        if method == "POST":
            return await self._create(request, target)
        if method == "PUT":
            return await self._update(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE":
            return await self._delete(request, target)
        raise errors.method_not_allowed()

    def _resolve(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        if not rest:
            raise errors.gone_resource("the server could not find the requested resource")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            inner = self.registry.lookup(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.gone_resource("the server could not find the requested resource")
        rtype = self.registry.lookup(group, version, rest[0])
        if rtype is None or (namespace is not None and not rtype.namespaced):
            raise errors.gone_resource("the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        if name is not None and rtype.namespaced and namespace is None:
            raise errors.gone_resource("the server could not find the requested resource")
        return Target(rtype, namespace, name, rest[2] if len(rest) > 2 else "", watch_path)

    # ---- reads ----------------------------------------------------------------------------------
    def _get(self, request: web.Request, t: Target) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        entry = self.api.get(t.rtype, t.namespace, t.name or "")
        if accept.table:
            doc = tables.table(t.rtype, [entry.obj], include_object=request.query.get("includeObject", "Metadata"),
                               list_meta={"resourceVersion": str(entry.revision)})
            return self._json(doc)
        if accept.partial_metadata:
            return self._json({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": entry.obj.get("metadata", {})})
        if accept.yaml:
            body, ctype = codec.encode(entry.obj, accept)
            return web.Response(body=body, content_type=ctype)
        return web.Response(body=entry.raw, content_type="application/json")

    def _list(self, request: web.Request, t: Target) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        opts = _list_options(request)
        res = self.api.list_objects(t.rtype, t.namespace, opts)
        meta: dict[str, Any] = {"resourceVersion": str(res.revision)}
        if res.continue_token:
            meta["continue"] = res.continue_token
            meta["remainingItemCount"] = res.remaining
        if accept.table:
            doc = tables.table(t.rtype, (e.obj for e in res.items),
                               include_object=request.query.get("includeObject", "Metadata"), list_meta=meta)
            return self._json(doc)
        if accept.partial_metadata:
            return self._json({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                               "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                          "metadata": e.obj.get("metadata", {})} for e in res.items]})
        if accept.yaml:
            doc = {"apiVersion": t.rtype.api_version, "kind": t.rtype.list_kind, "metadata": meta,
                   "items": [e.obj for e in res.items]}
            body, ctype = codec.encode(doc, accept)
            return web.Response(body=body, content_type=ctype)
        head = orjson.dumps({"apiVersion": t.rtype.api_version, "kind": t.rtype.list_kind, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(e.raw for e in res.items) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        accept = codec.negotiate(request.headers.get("Accept"))
        opts = _list_options(request)
        if t.name is not None:
            sel = f"metadata.name={t.name}"
            opts.field_selector = f"{opts.field_selector},{sel}" if opts.field_selector else sel
        match = self.api.list_matcher(t.rtype, opts)
        q = request.query
        rv = q.get("resourceVersion", "")
        initial = _flag(q.get("sendInitialEvents"))
        start = parse_resource_version(rv) if rv and rv != "0" else None
        if start is not None and not initial and start < self.api.store.compact_revision:
            raise errors.expired(f"too old resource version: {start} ({self.api.store.compact_revision})")
        timeout = _timeout_seconds(q.get("timeoutSeconds"))
        bookmarks = _flag(q.get("allowWatchBookmarks"))
        resp = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        stream = _WatchStream(resp, t.rtype, accept.table, request.query.get("includeObject", "Metadata"))
        events = self.hub.watch(t.rtype.prefix(t.namespace), match, start, initial=initial,
                                bookmark_every=self.settings.bookmark_interval if bookmarks else None,
                                key=watched_key(t.rtype, t.namespace, opts))
        try:
            async with asyncio.timeout(timeout):
                async for ev in events:
                    if ev.type == "BOOKMARK":
                        if bookmarks:
                            await stream.bookmark(ev.revision, ev.initial_end)
                        continue
                    await stream.event(ev.type, ev.raw, ev.obj)
        except (TimeoutError, Overflow, ConnectionResetError):
            pass
        except Compacted as err:
            await stream.error(errors.expired(str(err)))
        finally:
            await events.aclose()
        return resp

    # ---- writes ---------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > codec.MAX_BODY:
            raise errors.too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(65536):  # read() may return early: loop to EOF
            size += len(chunk)
            if size > codec.MAX_BODY:
                raise errors.too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, request: web.Request, t: Target, res: Result, status: int = 200) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        headers = {"Warning": ", ".join(_warning(w) for w in res.warnings)} if res.warnings else None
        if accept.table:
            return self._json(tables.table(t.rtype, [res.obj]), status, headers)
        if res.entry is not None and not accept.yaml and res.entry.obj is res.obj:
            return web.Response(status=status, body=res.entry.raw, content_type="application/json", headers=headers)
        body, ctype = codec.encode(res.obj, accept)
        return web.Response(status=status, body=body, content_type=ctype, headers=headers)

    async def _create(self, request: web.Request, t: Target) -> web.Response:
        if t.name is not None or t.subresource:
            raise errors.method_not_allowed()
        if t.rtype.namespaced and t.namespace is None:
            raise errors.gone_resource("the server could not find the requested resource")
        obj = codec.decode_object(await self._body(request), request.headers.get("Content-Type"))
        res = await self.api.create(t.rtype, t.namespace, obj, _write_options(request))
        return self._answer(request, t, res, 201)

    async def _update(self, request: web.Request, t: Target) -> web.Response:
        if t.name is None:
            raise errors.method_not_allowed()
        obj = codec.decode_object(await self._body(request), request.headers.get("Content-Type"))
        res = await self.api.update(t.rtype, t.namespace, t.name, obj, _write_options(request), t.subresource)
        return self._answer(request, t, res)

    async def _patch(self, request: web.Request, t: Target) -> web.Response:
        if t.name is None:
            raise errors.method_not_allowed()
        mt = codec.media_type(request.headers.get("Content-Type"))
        patch_type = codec.PATCH_TYPES.get(mt)
        if patch_type is None or patch_type == "apply-cbor":
            raise errors.APIError(
                415, "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                + (", application/strategic-merge-patch+json" if t.rtype.strategic_merge else ""),
            )
        patch = codec.decode_patch(await self._body(request), mt)
        existed = self.api.store.get(t.rtype.key(t.namespace, t.name)) is not None
        res = await self.api.patch(t.rtype, t.namespace, t.name, patch_type, patch, _write_options(request),
                                   t.subresource)
        return self._answer(request, t, res, 200 if existed else 201)

    async def _delete(self, request: web.Request, t: Target) -> web.Response:
        body = await self._body(request)
        opts = _write_options(request)
        preconditions: dict[str, Any] = {}
        if body.strip():
            doc = _delete_options(body, request.headers.get("Content-Type"))
            preconditions = doc.get("preconditions") or {}
            if "All" in (doc.get("dryRun") or []):
                opts.dry_run = True
        if t.name is None:
            items = await self.api.delete_collection(t.rtype, t.namespace, _list_options(request), opts)
            return self._json({"apiVersion": t.rtype.api_version, "kind": t.rtype.list_kind,
                               "metadata": {"resourceVersion": str(self.api.store.revision)}, "items": items})
        if t.subresource:
            raise errors.method_not_allowed()
        res = await self.api.delete(t.rtype, t.namespace, t.name, opts, preconditions)
        terminating = bool(res.obj.get("metadata", {}).get("deletionTimestamp")) and res.entry is not None
        if t.rtype.group or terminating or t.rtype.kind == "Namespace":
            return self._answer(request, t, res)
        return self._json(_success_status(t.rtype, res.obj))


class _WatchStream:
    """Writes watch events as newline-delimited JSON, as objects or as one-row Tables."""

    def __init__(self, resp: web.StreamResponse, rtype: ResourceType, table: bool, include_object: str):
        self.resp = resp
        self.rtype = rtype
        self.table = table
        self.include = include_object

    async def event(self, etype: str, raw: bytes, obj: dict[str, Any]) -> None:
        if self.table:
            doc = tables.table(self.rtype, [obj], include_object=self.include,
                               list_meta={"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")})
            line = orjson.dumps({"type": etype, "object": doc})
        else:
            line = b'{"type":"' + etype.encode() + b'","object":' + raw + b"}"
        await self.resp.write(line + b"\n")

    async def bookmark(self, revision: int, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version, "metadata": meta}
        await self.resp.write(orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n")

    async def error(self, err: errors.APIError) -> None:
        await self.resp.write(orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n")


def _warning(text: str) -> str:
    """One ``Warning`` header value as kube-apiserver writes it: a quoted string, in which characters a header
    cannot carry (the field names of a hostile body may hold newlines) become spaces, as Go's net/http does."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _delete_options(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A DELETE's body, a DeleteOptions: 400 for fields of the wrong type or a dry run other than All."""
    doc = codec.decode_object(body, content_type)
    problem = gotypes.unmarshal_error(gotypes.DELETE_OPTIONS, doc)
    if problem:
        raise errors.bad_request(f'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: {problem}')
    for value in doc.get("dryRun") or []:
        if value != "All":
            raise errors.bad_request(f'Invalid dry run value: {_quoted(value)}: supported values: "All"')
    return doc


def _quoted(value: Any) -> str:
    return goformat.quote(value) if isinstance(value, str) else goformat.marshal_json(value)


def _flag(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


def _timeout_seconds(v: str | None) -> float | None:
    """A watch's ``timeoutSeconds``: an int64 as kube decodes it, 0 (or none) for no limit of the client's."""
    if not v:
        return None
    if not v.isascii() or not v.isdigit() or int(v) >= 2**63:
        raise errors.bad_request(f"invalid value for timeoutSeconds: {goformat.quote(v)}: must be a non-negative "
                                 "integer")
    return int(v) or None


def _list_options(request: web.Request) -> ListOptions:
    q = request.query
    limit = q.get("limit", "0") or "0"
    if not (limit.isascii() and limit.isdigit()):
        raise errors.bad_request(f"invalid limit: {limit!r}")
    return ListOptions(q.get("labelSelector", ""), q.get("fieldSelector", ""), int(limit), q.get("continue", ""),
                       q.get("resourceVersion", ""), q.get("resourceVersionMatch", ""))


def _write_options(request: web.Request) -> WriteOptions:
    q = request.query
    dry = q.getall("dryRun", [])
    if any(d != "All" for d in dry):
        bad = next(d for d in dry if d != "All")
        raise errors.bad_request(f'Invalid dry run value: {goformat.quote(bad)}: supported values: "All"')
    validation = q.get("fieldValidation", "Warn") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f"fieldValidation: Unsupported value: {goformat.quote(validation)}: supported values: \"Ignore\", "
            "\"Strict\", \"Warn\""
        )
    manager = q.get("fieldManager", "")
    if len(manager) > 128:
        raise errors.bad_request("fieldManager: Too long: may not be longer than 128")
    agent = request.headers.get("User-Agent", "").split("/", 1)[0][:128]  # kube's default field manager
    return WriteOptions(bool(dry), validation, manager, _flag(q.get("force")), user=user_of(request), agent=agent)
