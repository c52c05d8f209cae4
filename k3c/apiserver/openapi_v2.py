"""The Swagger 2.0 (OpenAPI v2) document kube-apiserver serves at `GET /openapi/v2`.

Why it exists: kubectl 1.27 and 1.28 download /openapi/v2 before `kubectl apply|create|replace|edit|diff`
with default validation and before `kubectl explain`, asking for protobuf only
(`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, then `/swagger-2.0.0.pb-v1`), and
give up with "error validating data: the server could not find the requested resource" when neither
answers. (1.29+ use /openapi/v3 alone.) What they read from the body, a gnostic `openapi.v2.Document`:

* field-validation support: cli-runtime's QueryParamVerifier takes, among `paths`, the first PATCH operation
  whose `x-kubernetes-group-version-kind` extension (YAML `{group, kind, version}`) is the object's GVK and
  looks for a query parameter named `fieldValidation`; when found kubectl sends `fieldValidation=Strict`
  and leaves validation to the server (this one validates). When the GVK is in no path it checks
  Namespace's and then whether the GVK is a custom resource, and fails otherwise;
* `definitions`, parsed by kube-openapi's proto models (`NewOpenAPIData`): every one must parse (`$ref`s
  resolve, arrays have one `items`, types are known) or the whole download counts as an error. Definitions
  carrying `x-kubernetes-group-version-kind` (a YAML list) are looked up by GVK: by client-side `kubectl
  apply`/`diff` to compute strategic merge patches of built-in kinds and by schema validation (unused
  here, since every GVK supports fieldValidation).

The document is derived from the OpenAPI v3 documents of `openapi.py` (one per group-version), converted
to v2 form: one source of truth for paths, parameters and schemas. Conversion drops what v2 cannot say
(`anyOf`, `oneOf`, `not`, `nullable`, ...) and sanitises schemas so kube-openapi's parser accepts them.

`swagger(types)` is the JSON-shaped document, `document(types)` its protobuf bytes and
`negotiate(accept, types)` picks one for an Accept header. Results are memoised on the types' content.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from . import discovery, openapi
from .proto import openapiv2_pb2 as pb
from .resources import ResourceType

__all__ = ["PROTOBUF", "swagger", "document", "json_document", "negotiate"]

# What kube-apiserver answers in Content-Type; clients ask with the `@v1.0` spelling (accepted too), which
# Go's mime parser rejects in a response.
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_PROTOBUF_ACCEPT = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF)

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_TYPES = {"string", "number", "integer", "boolean", "object", "array"}
_VERBS = ("get", "put", "post", "delete", "options", "head", "patch")
# Schema keywords v2 shares with v3 and copies as they are.
_SCHEMA_SCALARS = (
    "format", "title", "description", "default", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "maxProperties", "minProperties", "required", "enum", "readOnly", "example",
)


# --------------------------------------------------------------------------------------------------
# v3 -> v2 (JSON-shaped)
# --------------------------------------------------------------------------------------------------


def _ref(ref: str) -> str:
    return _V2_REF + ref[len(_V3_REF):] if ref.startswith(_V3_REF) else ref


def _schema(s: Any) -> dict[str, Any]:
    """One v3 schema node in v2 form."""
    if not isinstance(s, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(s.get("$ref"), str):
        out["$ref"] = _ref(s["$ref"])
    all_of = [x for x in s.get("allOf") or [] if isinstance(x, dict)]
    if len(all_of) == 1 and set(all_of[0]) == {"$ref"} and "$ref" not in out:
        # kube-apiserver's v3 wraps a $ref with siblings in allOf; v2 puts the siblings next to $ref.
        out["$ref"] = _ref(all_of[0]["$ref"])
    elif all_of:
        out["allOf"] = [_schema(x) for x in all_of]
    t = s.get("type")
    if isinstance(t, str) and t in _TYPES:
        out["type"] = t
    for k in _SCHEMA_SCALARS:
        if k in s and s[k] is not None:
            out[k] = s[k]
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: _schema(v) for k, v in s["properties"].items()}
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out["additionalProperties"] = _schema(ap)
    elif isinstance(ap, bool):
        out["additionalProperties"] = ap
    items = s.get("items")
    if isinstance(items, dict):
        out["items"] = _schema(items)
    elif isinstance(items, list) and len(items) == 1:
        out["items"] = _schema(items[0])
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {}  # kube-openapi rejects an array without exactly one item schema
    for k, v in s.items():
        if k.startswith("x-"):
            out[k] = v
    return out


def _param(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: p[k] for k in ("name", "in", "description", "required") if k in p}
    sch = p.get("schema") or {}
    for k in ("type", "format", "uniqueItems"):
        if k in sch:
            out[k] = sch[k]
    return out


def _content_schema(content: dict[str, Any]) -> dict[str, Any] | None:
    for media in content.values():
        if isinstance(media, dict) and "schema" in media:
            return _schema(media["schema"])
    return None


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("tags", "summary", "description", "operationId", "deprecated"):
        if k in op:
            out[k] = op[k]
    params: list[dict[str, Any]] = []
    body = op.get("requestBody")
    if isinstance(body, dict):
        content = body.get("content") or {}
        out["consumes"] = list(content)
        bp: dict[str, Any] = {"name": "body", "in": "body", "required": bool(body.get("required"))}
        sch = _content_schema(content)
        if sch is not None:
            bp["schema"] = sch
        params.append(bp)
    else:
        out["consumes"] = ["*/*"]
    params.extend(_param(p) for p in op.get("parameters") or [])
    if params:
        out["parameters"] = params
    produces: list[str] = []
    responses: dict[str, Any] = {}
    for code, resp in (op.get("responses") or {}).items():
        r: dict[str, Any] = {"description": resp.get("description", "")}
        content = resp.get("content") or {}
        for mt in content:
            if mt not in produces:
                produces.append(mt)
        sch = _content_schema(content)
        if sch is not None:
            r["schema"] = sch
        responses[code] = r
    out["produces"] = produces
    out["schemes"] = ["https"]
    out["responses"] = responses
    for k, v in op.items():
        if k.startswith("x-"):
            out[k] = v
    return out


def _path_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {verb: _operation(item[verb]) for verb in _VERBS if isinstance(item.get(verb), dict)}
    if item.get("parameters"):
        out["parameters"] = [_param(p) for p in item["parameters"]]
    return out


def _walk_refs(x: Any, known: set[str]) -> None:
    """Drop `$ref`s to definitions that do not exist (kube-openapi rejects the whole document for one)."""
    if isinstance(x, dict):
        r = x.get("$ref")
        if isinstance(r, str) and (not r.startswith(_V2_REF) or r[len(_V2_REF):] not in known):
            del x["$ref"]
        for v in x.values():
            _walk_refs(v, known)
    elif isinstance(x, list):
        for v in x:
            _walk_refs(v, known)


def _build(types: list[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for gvp in sorted({openapi.gv_path(rt.group, rt.version) for rt in types}):
        v3 = openapi.document(gvp, types)
        for p, item in v3.get("paths", {}).items():
            paths[p] = _path_item(item)
        for name, s in (v3.get("components") or {}).get("schemas", {}).items():
            definitions[name] = _schema(s)
    _walk_refs(paths, set(definitions))
    _walk_refs(definitions, set(definitions))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": discovery.version()["gitVersion"]},
        "paths": {k: paths[k] for k in sorted(paths)},
        "definitions": {k: definitions[k] for k in sorted(definitions)},
    }


# --------------------------------------------------------------------------------------------------
# JSON-shaped -> protobuf (gnostic openapi.v2 messages)
# --------------------------------------------------------------------------------------------------


def _yaml(value: Any) -> str:
    text = yaml.dump(value, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=True, allow_unicode=True)
    return text[: -len("...\n")] if text.endswith("\n...\n") else text


def _any(value: Any) -> pb.Any:
    return pb.Any(yaml=_yaml(value))


def _extensions(d: dict[str, Any]) -> list[pb.NamedAny]:
    return [pb.NamedAny(name=k, value=_any(v)) for k, v in d.items() if k.startswith("x-")]


def _pb_schema(d: dict[str, Any]) -> pb.Schema:
    s = pb.Schema()
    if "$ref" in d:
        s._ref = d["$ref"]
    for key, field in (("format", "format"), ("title", "title"), ("description", "description"),
                       ("pattern", "pattern")):
        if isinstance(d.get(key), str):
            setattr(s, field, d[key])
    for key, field in (("multipleOf", "multiple_of"), ("maximum", "maximum"), ("minimum", "minimum")):
        if isinstance(d.get(key), (int, float)) and not isinstance(d[key], bool):
            setattr(s, field, float(d[key]))
    for key, field in (("maxLength", "max_length"), ("minLength", "min_length"), ("maxItems", "max_items"),
                       ("minItems", "min_items"), ("maxProperties", "max_properties"),
                       ("minProperties", "min_properties")):
        if isinstance(d.get(key), int) and not isinstance(d[key], bool):
            setattr(s, field, d[key])
    for key, field in (("exclusiveMaximum", "exclusive_maximum"), ("exclusiveMinimum", "exclusive_minimum"),
                       ("uniqueItems", "unique_items"), ("readOnly", "read_only")):
        if isinstance(d.get(key), bool):
            setattr(s, field, d[key])
    if "default" in d:
        s.default.CopyFrom(_any(d["default"]))
    if "example" in d:
        s.example.CopyFrom(_any(d["example"]))
    if isinstance(d.get("required"), list):
        s.required.extend(str(x) for x in d["required"])
    if isinstance(d.get("enum"), list):
        s.enum.extend(_any(x) for x in d["enum"])
    if "type" in d:
        s.type.value.append(d["type"])
    if isinstance(d.get("properties"), dict):
        s.properties.SetInParent()
        for name, sub in d["properties"].items():
            s.properties.additional_properties.add(name=name, value=_pb_schema(sub))
    ap = d.get("additionalProperties")
    if isinstance(ap, dict):
        s.additional_properties.schema.CopyFrom(_pb_schema(ap))
    elif isinstance(ap, bool):
        s.additional_properties.boolean = ap
    if isinstance(d.get("items"), dict):
        s.items.schema.append(_pb_schema(d["items"]))
    for sub in d.get("allOf") or []:
        s.all_of.append(_pb_schema(sub))
    s.vendor_extension.extend(_extensions(d))
    return s


def _pb_param(d: dict[str, Any]) -> pb.ParametersItem:
    item = pb.ParametersItem()
    where = d.get("in")
    if where == "body":
        bp = item.parameter.body_parameter
        bp.name = d.get("name", "body")
        setattr(bp, "in", "body")
        bp.required = bool(d.get("required"))
        bp.description = d.get("description", "")
        if "schema" in d:
            bp.schema.CopyFrom(_pb_schema(d["schema"]))
        return item
    nb = item.parameter.non_body_parameter
    sub = nb.path_parameter_sub_schema if where == "path" else nb.query_parameter_sub_schema
    sub.name = d.get("name", "")
    setattr(sub, "in", where or "query")
    sub.description = d.get("description", "")
    sub.required = bool(d.get("required"))
    sub.type = d.get("type", "")
    sub.format = d.get("format", "")
    sub.unique_items = bool(d.get("uniqueItems"))
    return item


def _pb_operation(d: dict[str, Any]) -> pb.Operation:
    op = pb.Operation(
        tags=d.get("tags", []), summary=d.get("summary", ""), description=d.get("description", ""),
        operation_id=d.get("operationId", ""), produces=d.get("produces", []), consumes=d.get("consumes", []),
        schemes=d.get("schemes", []), deprecated=bool(d.get("deprecated")),
    )
    op.parameters.extend(_pb_param(p) for p in d.get("parameters", []))
    op.responses.SetInParent()
    for code, r in d.get("responses", {}).items():
        resp = pb.Response(description=r.get("description", ""))
        if "schema" in r:
            resp.schema.schema.CopyFrom(_pb_schema(r["schema"]))
        op.responses.response_code.add(name=code, value=pb.ResponseValue(response=resp))
    op.vendor_extension.extend(_extensions(d))
    return op


def _to_proto(doc: dict[str, Any]) -> pb.Document:
    out = pb.Document(swagger=doc["swagger"], info=pb.Info(**doc["info"]))
    out.paths.SetInParent()
    for path, item in doc["paths"].items():
        pi = pb.PathItem()
        for verb in _VERBS:
            if verb in item:
                getattr(pi, verb).CopyFrom(_pb_operation(item[verb]))
        pi.parameters.extend(_pb_param(p) for p in item.get("parameters", []))
        out.paths.path.add(name=path, value=pi)
    out.definitions.SetInParent()
    for name, s in doc["definitions"].items():
        out.definitions.additional_properties.add(name=name, value=_pb_schema(s))
    return out


# --------------------------------------------------------------------------------------------------
# Public API, memoised
# --------------------------------------------------------------------------------------------------

@dataclass
class _Entry:
    """One document and its two serializations, each made when first asked for."""

    swagger: dict[str, Any]
    protobuf: bytes | None = None
    json: bytes | None = None


_Key = tuple[tuple[Any, ...], ...]
_CACHE: OrderedDict[_Key, _Entry] = OrderedDict()
_CACHE_SIZE = 8


def _key(types: list[ResourceType]) -> _Key:
    """Everything of the types the document depends on; schemas by digest of their canonical JSON."""
    out = []
    for rt in types:
        digest = b""
        if rt.schema is not None:
            raw = orjson.dumps(rt.schema, option=orjson.OPT_SORT_KEYS, default=str)
            digest = hashlib.blake2b(raw, digest_size=16).digest()
        out.append((rt.group, rt.version, rt.plural, rt.kind, rt.list_kind, rt.namespaced, rt.has_status,
                    rt.strategic_merge, tuple(rt.verbs), digest))
    return tuple(out)


def _entry(types: list[ResourceType]) -> _Entry:
    key = _key(types)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    doc = _build(types)
    hit = _Entry(doc)
    _CACHE[key] = hit
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return hit


def swagger(types: list[ResourceType]) -> dict[str, Any]:
    """The Swagger 2.0 document as a JSON-shaped dict (shared and cached: do not modify it)."""
    return _entry(types).swagger


def document(types: list[ResourceType]) -> bytes:
    """The document as a serialized gnostic `openapi.v2.Document` (what kubectl asks for)."""
    entry = _entry(types)
    if entry.protobuf is None:
        entry.protobuf = _to_proto(entry.swagger).SerializeToString(deterministic=True)
    return entry.protobuf


def json_document(types: list[ResourceType]) -> bytes:
    """The document as JSON bytes (for `Accept: application/json`, e.g. `kubectl get --raw /openapi/v2`)."""
    entry = _entry(types)
    if entry.json is None:
        entry.json = orjson.dumps(entry.swagger)
    return entry.json


def negotiate(accept: str, types: list[ResourceType]) -> tuple[bytes, str]:
    """(body, Content-Type) for `GET /openapi/v2` with this Accept header: protobuf when asked for, else JSON."""
    for media in (accept or "").split(","):
        if media.split(";", 1)[0].strip().lower() in _PROTOBUF_ACCEPT:
            return document(types), PROTOBUF
    return json_document(types), "application/json"
