"""The REST verbs on stored objects, independent of HTTP: get, list, create, update, patch, delete.

This is where the semantics of kube-apiserver live: resourceVersion preconditions, no-op writes, the
status subresource, finalizers and graceful deletion, dry runs, schema pruning/defaulting/validation for
custom resources, field ownership of server-side apply (`fieldmanager`), Service addresses (`serviceips`),
and the side effects of CRDs (new types) and namespaces (cascading deletion).
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson

from k3c.apiserver import (
    codec,
    crds,
    errors,
    fieldmanager,
    goformat,
    gotypes,
    kubeschemas,
    lifecycle,
    openapi,
    schema,
    serviceips,
    strategic,
)
from k3c.apiserver.admission import Admission, Attributes, Refused
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.selectors import (
    EQUALS,
    check_field_selector,
    object_fields,
    parse_field_selector,
    parse_label_selector,
)
from k3c.apiserver.storage import Compacted, Entry, KeyExists, KeyNotFound, RevisionConflict, Store
from k3c.apiserver.subresources import ADMIN, User
from k3c.timefmt import now_rfc3339

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
#: A DELETE whose object keeps changing under it (writes landing while admission is asked) gives up after this
DELETE_ATTEMPTS = 10
#: SQLite's INTEGER (the revision column) is an int64.
MAX_REVISION = 2**63 - 1


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict, Warn, Ignore
    field_manager: str = ""
    force: bool = False
    user: User = ADMIN  # who asks (what admission webhooks are told)
    agent: str = ""  # the manager of an Update that names none: the User-Agent's product, as kube derives it

    def manager(self) -> str:
        return self.field_manager or self.agent or "unknown"


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class Result:
    """An object written or read, plus warnings for the `Warning` header."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    entry: Entry | None = None


@dataclass
class ListResult:
    items: list[Entry]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


def _match_fn(rtype: ResourceType, opts: ListOptions) -> Callable[[dict[str, Any]], bool]:
    """Compile label and field selectors into one predicate; unsupported fields are a 400."""
    try:
        labels = parse_label_selector(opts.label_selector) if opts.label_selector else None
        fields = parse_field_selector(opts.field_selector) if opts.field_selector else None
    except ValueError as err:
        raise errors.bad_request(str(err)) from None
    kind = rtype.kind if not rtype.group else ""
    if fields is not None:
        try:
            check_field_selector(fields, kind, rtype.api_version)
        except ValueError as err:
            raise errors.bad_request(str(err)) from None

    def match(obj: dict[str, Any]) -> bool:
        if labels is not None and not labels.matches(obj.get("metadata", {}).get("labels") or {}):
            return False
        return fields is None or fields.matches(object_fields(obj, kind))

    return match


def watched_key(rtype: ResourceType, namespace: str | None, opts: ListOptions) -> str | None:
    """The one storage key objects matching ``opts`` can have: the field selector pins ``metadata.name``
    and the namespace is known (or the kind is cluster-scoped). None when several keys could match."""
    if rtype.namespaced and not namespace:
        return None
    try:
        fields = parse_field_selector(opts.field_selector) if opts.field_selector else None
    except ValueError:
        return None
    names = [r.value for r in (fields.requirements if fields else ()) if r.field == "metadata.name"
             and r.operator == EQUALS]
    return rtype.key(namespace, names[0]) if names else None


def _check_decodable(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """A 400, as kube-apiserver's decoding answers it, for a field of a type its Go struct cannot hold."""
    problem = gotypes.unmarshal_error(gotypes.kind_struct(rtype.kind, builtin=not rtype.group), obj)
    if problem:
        raise errors.bad_request(
            f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: {problem}'
        )


def _encode_continue(revision: int, last_key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": revision, "start": last_key})).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = data["rv"], data["start"]
        if type(revision) is not int or not 0 < revision <= MAX_REVISION or not isinstance(start, str):
            raise ValueError(token)
    except Exception:
        raise errors.bad_request("continue key is not valid: invalid continue token") from None
    return revision, start


def parse_resource_version(value: str) -> int:
    """A resourceVersion from a request: a revision that storage can hold (an int64), else a 400."""
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_REVISION:
        raise errors.bad_request(f"invalid resource version {goformat.quote(value)}")
    return int(value)


class ResourceAPI:
    """The verbs, over one Store and one ResourceTypes."""

    def __init__(self, store: Store, registry: ResourceTypes, admission: Admission | None = None):
        self.store = store
        self.registry = registry
        self.admission = admission or Admission(store, registry)
        self.background: set[asyncio.Task[None]] = set()

    # ---- reads ----------------------------------------------------------------------------------
    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Entry:
        entry = self.store.get(rtype.key(namespace, name))
        if entry is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        return entry

    def list_objects(self, rtype: ResourceType, namespace: str | None, opts: ListOptions) -> ListResult:
        match = _match_fn(rtype, opts)
        revision = self.store.revision
        start = ""
        exact = opts.resource_version_match == "Exact" and opts.resource_version not in ("", "0")
        if opts.continue_token:
            revision, start = _decode_continue(opts.continue_token)
        elif exact:
            revision = parse_resource_version(opts.resource_version)
            if revision > self.store.revision:
                raise errors.APIError(504, "Timeout", f"Too large resource version: {revision}, "
                                      f"current: {self.store.revision}")
        items: list[Entry] = []
        try:
            if opts.continue_token or exact:
                it = iter(list(self.store.list_at(rtype.prefix(namespace), revision, start)))
            else:
                it = self.store.list_current(rtype.prefix(namespace), start_after=start)
        except Compacted:
            if opts.continue_token:
                raise errors.expired("The provided continue parameter is too old to display a consistent list "
                                     "result. You can start a new list without the continue parameter.") from None
            raise errors.expired(f"too old resource version: {revision} ({self.store.compact_revision})") from None
        last_key = ""
        for key, entry in it:
            if not match(entry.obj):
                continue
            if opts.limit and len(items) >= opts.limit:
                remaining = 1 + sum(1 for _k, e in it if match(e.obj))
                return ListResult(items, revision, _encode_continue(revision, last_key), remaining)
            items.append(entry)
            last_key = key
        return ListResult(items, revision)

    def list_matcher(self, rtype: ResourceType, opts: ListOptions) -> Callable[[dict[str, Any]], bool]:
        return _match_fn(rtype, opts)

    # ---- create ---------------------------------------------------------------------------------
    async def create(
        self, rtype: ResourceType, namespace: str | None, obj: dict[str, Any], opts: WriteOptions,
        managed: list[dict[str, Any]] | None = None,
    ) -> Result:
        """Create an object; `managed` are its managedFields when an apply creates it."""
        self._check_type(rtype, obj)
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        assert isinstance(meta, dict)  # (_check_type: its Go type)
        causes = lifecycle.validate_metadata(rtype, meta)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, str(meta.get("name", "")), causes)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns
            if not namespace:
                raise errors.bad_request("the server could not find the requested resource: namespace is required")
            self._check_namespace_open(rtype, namespace, str(meta.get("name") or meta.get("generateName") or ""))
        lifecycle.prepare_create(rtype, obj, namespace)
        name = obj["metadata"].get("name", "")
        causes = lifecycle.validate_name(rtype, name)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, name, causes)
        warnings = self._admit(rtype, obj, opts, name)
        warnings += await self._validating_admission("CREATE", rtype, "", namespace, name, obj, None, opts)
        if rtype.kind == "CustomResourceDefinition":
            crds.prepare(obj, self.registry)
        key = rtype.key(namespace, name)
        if self.store.get(key) is not None:
            raise errors.already_exists(rtype.plural, rtype.group, name)
        self._allocate(rtype, key, obj, None)  # no await from here to the write: no one takes the same
        _set_managed(obj, managed if managed is not None else
                     fieldmanager.track(rtype, None, obj, opts.manager(), subresource="", now=now_rfc3339()))
        if opts.dry_run:
            return Result(obj, warnings)
        if rtype.kind == "CustomResourceDefinition":
            crds.register(obj, self.registry)
        try:
            entry = await self.store.create(key, obj)
        except KeyExists:
            raise errors.already_exists(rtype.plural, rtype.group, name) from None
        return Result(entry.obj, warnings, entry)

    def _check_type(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """The body's fields have the types kube would decode, and its kind and apiVersion are the URL's."""
        _check_decodable(rtype, obj)
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != rtype.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")
        if av and av != rtype.api_version:
            raise errors.bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({rtype.api_version})"
            )
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind

    def _check_namespace_open(self, rtype: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(f"/namespaces/{namespace}")
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns.obj.get("metadata", {}).get("deletionTimestamp"):
            raise errors.APIError(
                403, "Forbidden",
                f'{rtype.qualified} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
            )

    def _admit(self, rtype: ResourceType, obj: dict[str, Any], opts: WriteOptions, name: str) -> list[str]:
        """Prune, default and validate against the schema (custom resources) or the built-in rules."""
        warnings = [w for w in (rtype.stored_only_warning(),) if w]
        causes = lifecycle.validate_builtin(rtype, obj)
        if rtype.schema is not None:
            warnings += _unknown_fields(schema.prune(obj, rtype.schema), opts)
            schema.apply_defaults(obj, rtype.schema)
            causes += schema.validate(obj, rtype.schema)
        elif rtype.kube_schema:  # kube's decoder drops what its Go types do not know
            model = openapi.model_name(rtype.group, rtype.version, rtype.kind)
            warnings += _unknown_fields(schema.prune(obj, kubeschemas.structural(model)), opts)
        if rtype.kind == "CustomResourceDefinition":
            causes += schema.validate_crd(obj)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, name, causes)
        return warnings

    async def _validating_admission(
        self, operation: str, rtype: ResourceType, subresource: str, namespace: str | None, name: str,
        obj: dict[str, Any] | None, old: dict[str, Any] | None, opts: WriteOptions,
        preconditions: dict[str, Any] | None = None,
    ) -> list[str]:
        """kube-apiserver's validating admission phase (:mod:`k3c.apiserver.admission`): after defaulting
        and validation, before storage; returns the webhooks' warnings or raises their refusal."""
        kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}[operation]
        options: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
        if opts.dry_run:
            options["dryRun"] = ["All"]
        if operation != "DELETE" and opts.field_manager:
            options["fieldManager"] = opts.field_manager
        if preconditions:
            options["preconditions"] = preconditions
        ns = name if rtype.kind == "Namespace" and not rtype.group else (namespace or "") if rtype.namespaced else ""
        return await self.admission.validate(Attributes(operation, rtype, subresource, ns, name, obj, old,
                                                        opts.dry_run, options, opts.user))
    def _allocate(self, rtype: ResourceType, key: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """A Service's clusterIP and node ports, free among the stored Services (see `serviceips`)."""
        if rtype.kind != "Service" or rtype.group:
            return
        others = (e.obj for k, e in self.store.list_current(rtype.prefix()) if k != key)
        causes = serviceips.allocate(obj, old, others)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, obj["metadata"].get("name", ""), causes)

    # ---- update ---------------------------------------------------------------------------------
    async def update(
        self, rtype: ResourceType, namespace: str | None, name: str, obj: dict[str, Any],
        opts: WriteOptions, subresource: str = "",
    ) -> Result:
        self._check_type(rtype, obj)
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        key = rtype.key(namespace, name)
        cur = self.store.get(key)
        if cur is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        rv = meta.get("resourceVersion")
        if rv:
            if parse_resource_version(str(rv)) != cur.revision:
                raise errors.conflict(
                    rtype.plural, rtype.group, name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
        causes = lifecycle.validate_metadata(rtype, meta)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, name, causes)
        return await self._store_update(rtype, key, cur, obj, opts, subresource, name)

    async def _store_update(
        self, rtype: ResourceType, key: str, cur: Entry, obj: dict[str, Any], opts: WriteOptions,
        subresource: str, name: str, managed: list[dict[str, Any]] | None = None,
    ) -> Result:
        old = cur.obj
        obj.setdefault("metadata", {})["name"] = name
        if rtype.namespaced:
            obj["metadata"]["namespace"] = old["metadata"].get("namespace")
        lifecycle.prepare_update(rtype, obj, old, subresource)
        warnings = self._admit(rtype, obj, opts, name)
        if rtype.kind == "CustomResourceDefinition":
            crds.prepare(obj, self.registry)
        self._allocate(rtype, key, obj, old)
        _set_managed(obj, managed if managed is not None else
                     fieldmanager.track(rtype, old, obj, opts.manager(), subresource=subresource, now=now_rfc3339()))
        obj["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        warnings += await self._validating_admission("UPDATE", rtype, subresource, old["metadata"].get("namespace"),
                                                     name, obj, old, opts)
        if obj == old:
            return Result(old, warnings, cur)  # a no-op write stores and announces nothing
        if opts.dry_run:
            return Result(obj, warnings)
        if lifecycle.finalized(obj):
            return Result(await self._remove(rtype, key, cur), warnings)
        if rtype.kind == "CustomResourceDefinition":
            crds.register(obj, self.registry)
        try:
            entry = await self.store.update(key, obj, expect=cur.revision)
        except (KeyNotFound, RevisionConflict):
            raise errors.conflict(
                rtype.plural, rtype.group, name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ) from None
        return Result(entry.obj, warnings, entry)

    # ---- patch ----------------------------------------------------------------------------------
    async def patch(
        self, rtype: ResourceType, namespace: str | None, name: str, patch_type: str, patch: Any,
        opts: WriteOptions, subresource: str = "",
    ) -> Result:
        key = rtype.key(namespace, name)
        cur = self.store.get(key)
        if cur is None:
            if patch_type == "apply":
                if not opts.field_manager:
                    raise errors.bad_request("PATCH, fieldManager: Required value: is required for apply patch")
                if not isinstance(patch, dict):
                    raise errors.bad_request("the patch must be a JSON object")
                obj = copy.deepcopy(patch)
                self._check_type(rtype, obj)
                if obj.get("metadata") is None:
                    obj["metadata"] = {}
                obj["metadata"]["name"] = name
                _, managers = fieldmanager.apply(rtype, {}, patch, opts.field_manager, force=opts.force,
                                                 subresource=subresource, now=now_rfc3339())
                return await self.create(rtype, namespace, obj, opts, fieldmanager.encode(managers))
            raise errors.not_found(rtype.plural, rtype.group, name)
        if patch_type == "strategic" and not rtype.strategic_merge:
            raise errors.unsupported_media_type("application/strategic-merge-patch+json")
        if patch_type == "apply" and not opts.field_manager:
            raise errors.bad_request("PATCH, fieldManager: Required value: is required for apply patch")
        managed = None
        if patch_type == "apply":
            if not isinstance(patch, dict):
                raise errors.bad_request("the patch must be a JSON object")
            patched, managers = fieldmanager.apply(rtype, cur.obj, patch, opts.field_manager, force=opts.force,
                                                   subresource=subresource, now=now_rfc3339())
            managed = fieldmanager.encode(managers)
        else:
            patched = self._apply_patch(rtype, cur.obj, patch_type, patch, name)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not result in an object")
        codec.check_depth(patched)
        _check_decodable(rtype, patched)
        meta = patched.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        rv = meta.get("resourceVersion")
        if rv and str(rv) != str(cur.revision):
            raise errors.conflict(
                rtype.plural, rtype.group, name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if meta.get("name", name) != name:
            raise errors.bad_request("metadata.name: Invalid value: the name in a patch cannot be changed")
        self._check_type(rtype, patched)
        causes = lifecycle.validate_metadata(rtype, meta)
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, name, causes)
        return await self._store_update(rtype, key, cur, patched, opts, subresource, name, managed)

    def _apply_patch(self, rtype: ResourceType, obj: dict[str, Any], patch_type: str, patch: Any, name: str) -> Any:
        original = copy.deepcopy(obj)
        try:
            if patch_type == "json":
                if not isinstance(patch, list):
                    raise errors.bad_request("json patch must be a list of operations")
                return jsonpatch.apply_patch(original, patch)
            if not isinstance(patch, dict):
                raise errors.bad_request("the patch must be a JSON object")
            if patch_type == "merge":
                return strategic.merge_patch(original, patch)
            if patch_type == "strategic":
                return strategic.strategic_merge(original, patch, rtype.strategic_merge_keys())
        except jsonpatch.JsonPatchTestFailed as err:
            cause = errors.Cause("", "FieldValueInvalid", str(err))
            raise errors.invalid(rtype.kind, rtype.group, name, [cause]) from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError) as err:
            raise errors.APIError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {err}"
            ) from None
        raise errors.unsupported_media_type(patch_type)

    # ---- delete ---------------------------------------------------------------------------------
    async def delete(
        self, rtype: ResourceType, namespace: str | None, name: str, opts: WriteOptions,
        preconditions: dict[str, Any] | None = None,
    ) -> Result:
        key = rtype.key(namespace, name)
        cur = self.store.get(key)
        if cur is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        self._check_preconditions(rtype, name, cur, preconditions or {})
        if rtype.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise errors.APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        await self._validating_admission("DELETE", rtype, "", namespace, name, None, cur.obj, opts, preconditions)
        for _ in range(DELETE_ATTEMPTS):
            # The object may have changed while admission was asked (an operator's status write): the latest
            # is deleted, as kube-apiserver's retried update does, unless the caller's preconditions fail.
            cur = self.store.get(key)
            if cur is None:
                raise errors.not_found(rtype.plural, rtype.group, name)
            self._check_preconditions(rtype, name, cur, preconditions or {})
            try:
                return await self._delete_entry(rtype, key, cur, opts)
            except RevisionConflict:
                continue
        raise errors.conflict(rtype.plural, rtype.group, name, "the object has been modified")

    async def _delete_entry(self, rtype: ResourceType, key: str, cur: Entry, opts: WriteOptions) -> Result:
        """Remove ``cur`` (or mark it terminating when finalizers hold it); RevisionConflict if it changed."""
        meta = cur.obj.get("metadata", {})
        name = meta.get("name", "")
        needs_finalizing = bool(meta.get("finalizers")) or rtype.kind == "Namespace"
        if not needs_finalizing:
            if opts.dry_run:
                return Result(cur.obj)
            if rtype.kind == "CustomResourceDefinition":
                await self._drop_custom_resources(name)
            try:
                removed = await self.store.delete(key, expect=cur.revision)
            except KeyNotFound:
                raise errors.not_found(rtype.plural, rtype.group, name) from None
            if rtype.kind == "CustomResourceDefinition":
                self.registry.remove_crd(name)
            return Result(removed.obj)
        if meta.get("deletionTimestamp"):
            return Result(cur.obj)  # already terminating: deleting again changes nothing
        obj = copy.deepcopy(cur.obj)
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        if rtype.kind == "Namespace":
            obj.setdefault("status", {})["phase"] = "Terminating"
        if opts.dry_run:
            return Result(obj)
        entry = await self.store.update(key, obj, expect=cur.revision)
        if rtype.kind == "Namespace":
            self._spawn(self._finalize_namespace(name))
        return Result(entry.obj, entry=entry)

    def _check_preconditions(self, rtype: ResourceType, name: str, cur: Entry, pre: dict[str, Any]) -> None:
        meta = cur.obj.get("metadata", {})
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                rtype.plural, rtype.group, name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(cur.revision):
            raise errors.conflict(
                rtype.plural, rtype.group, name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {cur.revision}",
            )

    async def _remove(self, rtype: ResourceType, key: str, cur: Entry) -> dict[str, Any]:
        try:
            entry = await self.store.delete(key, expect=cur.revision)
        except (KeyNotFound, RevisionConflict):
            name = cur.obj.get("metadata", {}).get("name", "")
            raise errors.conflict(rtype.plural, rtype.group, name, "the object has been modified") from None
        if rtype.kind == "CustomResourceDefinition":
            self.registry.remove_crd(cur.obj["metadata"]["name"])
        return entry.obj

    async def delete_collection(
        self, rtype: ResourceType, namespace: str | None, list_opts: ListOptions, opts: WriteOptions
    ) -> list[dict[str, Any]]:
        selectors = ListOptions(list_opts.label_selector, list_opts.field_selector)
        listed = self.list_objects(rtype, namespace, selectors)
        out = []
        refused: Refused | None = None
        for entry in listed.items:
            meta = entry.obj["metadata"]
            try:
                res = await self.delete(rtype, meta.get("namespace"), meta["name"], opts)
            except Refused as err:  # the others may still go, as with kube-apiserver's parallel workers
                refused = refused or err
                continue
            except errors.APIError as err:
                if err.code in (404, 403):
                    continue
                raise
            out.append(res.obj)
        if refused is not None:
            raise refused
        return out

    # ---- cascades -------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _drop_custom_resources(self, crd_name: str) -> None:
        """Deleting a CRD deletes every object of it, in every version's shared storage."""
        crd_type = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        entry = self.store.get(crd_type.key(None, crd_name)) if crd_type else None
        if entry is None:
            return
        for rtype in crds.types_of(entry.obj):
            for key, cur in list(self.store.list_current(rtype.prefix())):
                try:
                    await self.store.delete(key, expect=cur.revision)
                except (KeyNotFound, RevisionConflict):
                    continue
            break  # all versions share one storage prefix

    async def _finalize_namespace(self, name: str) -> None:
        """The namespace controller: delete everything in it, wait for finalizers, then remove it."""
        opts = WriteOptions()
        while True:
            remaining = 0
            for rtype in self._namespaced_storage_types():
                for _key, entry in list(self.store.list_current(rtype.prefix(name))):
                    remaining += 1
                    if not entry.obj["metadata"].get("deletionTimestamp"):
                        try:
                            await self.delete(rtype, name, entry.obj["metadata"]["name"], opts)
                        except errors.APIError:
                            pass
            if remaining == 0:
                break
            await asyncio.sleep(0.2)
        key = f"/namespaces/{name}"
        cur = self.store.get(key)
        if cur is not None:
            await self.store.delete(key)

    def _namespaced_storage_types(self) -> list[ResourceType]:
        seen: dict[str, ResourceType] = {}
        for t in self.registry.all():
            if t.namespaced:
                seen.setdefault(t.storage_resource, t)
        return list(seen.values())


def _unknown_fields(unknown: list[str], opts: WriteOptions) -> list[str]:
    """Pruned fields as `fieldValidation` wants them: a 400 (Strict), warnings (Warn) or nothing (Ignore)."""
    if unknown and opts.field_validation == "Strict":
        msgs = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise errors.bad_request(f"strict decoding error: {msgs}")
    return [f'unknown field "{u}"' for u in unknown] if opts.field_validation == "Warn" else []


def _set_managed(obj: dict[str, Any], managed: list[dict[str, Any]]) -> None:
    """Store managedFields; none at all is no key (so a write that changes nothing stays a no-op)."""
    if managed:
        obj["metadata"]["managedFields"] = managed
    else:
        obj["metadata"].pop("managedFields", None)
