"""Kubernetes' own OpenAPI definitions of its built-in kinds, for the built-ins k3c serves from them.

Why: a Deployment, Pod or Service here must look to clients exactly as it does on kube-apiserver:
`kubectl explain` walks its schema, client-side `kubectl apply` computes strategic merge patches from
its `x-kubernetes-patch-*` extensions, `kubectl apply --server-side` and kpt read its list types. Writing
those schemas by hand would be thousands of lines copied from Go types; the pinned PyPI package
`kubernetes-validate` ships them, generated from kube's own OpenAPI document, one JSON file per
Kubernetes version. We read the version this server reports (`discovery.KUBE_VERSION`), once, when a
built-in served from it is first needed, and turn it back into kube-apiserver's OpenAPI v3 form:

* types are single names again (the package writes `["string", "null"]` for optional fields);
* a `$ref` with siblings goes into an `allOf`, as kube-apiserver publishes it, and points into
  `#/components/schemas/`;
* IntOrString and Quantity are strings (with format `int-or-string`), as in kube's own document;
* the `enum`s the package adds to `apiVersion` and `kind` go: kube's schema has none.

From that form come the three views the server needs: `definition` (OpenAPI documents), `structural`
(the kind's schema with every reference inlined, for pruning unknown fields as kube's decoder drops them)
and `merge_keys` (strategic merge patch's list rules, by dotted path).
"""

from __future__ import annotations

import copy
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from .discovery import KUBE_VERSION

__all__ = ["PACKAGE", "definition", "names", "structural", "merge_keys", "schema_file"]

PACKAGE = "kubernetes_validate"
_PKG_REF = "#/$defs/"
_V3_REF = "#/components/schemas/"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"

Schema = dict[str, Any]


def schema_file() -> Path:
    """The package's definitions of this server's Kubernetes version.

    Found without importing the package (its validator pulls in modules the server has no use for).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Python package {PACKAGE} (kubernetes-validate) is not installed")
    major, minor = KUBE_VERSION
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "kubernetes-json-schema" / f"v{major}.{minor}.0-local" / "_definitions.json"


@cache
def _definitions() -> dict[str, Schema]:
    raw = orjson.loads(schema_file().read_bytes())["$defs"]
    out = {name: _convert(s) for name, s in raw.items()}
    out[_INT_OR_STRING] = {"description": raw[_INT_OR_STRING].get("description", ""), "type": "string",
                           "format": "int-or-string"}
    out[_QUANTITY] = {"description": raw[_QUANTITY].get("description", ""), "type": "string"}
    for s in out.values():
        for field in ("apiVersion", "kind"):
            prop = s.get("properties", {}).get(field)
            if isinstance(prop, dict):
                prop.pop("enum", None)
    return out


def _convert(s: Any) -> Any:
    """One node of the package's JSON Schema in kube-apiserver's OpenAPI v3 form."""
    if isinstance(s, list):
        return [_convert(x) for x in s]
    if not isinstance(s, dict):
        return s
    out: Schema = {}
    for k, v in s.items():
        if k == "type" and isinstance(v, list):
            kinds = [t for t in v if t != "null"]
            if kinds:
                out[k] = kinds[0]
        elif k == "$ref":
            continue
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: _convert(p) for name, p in v.items()}
        else:
            out[k] = _convert(v)
    ref = s.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PKG_REF):
        target = {"$ref": _V3_REF + ref[len(_PKG_REF):]}
        if not out:
            return target
        out["allOf"] = [target]
    return out


def names() -> set[str]:
    return set(_definitions())


def definition(name: str) -> Schema | None:
    """kube-apiserver's OpenAPI v3 schema of one definition (shared: copy it before changing it)."""
    return _definitions().get(name)


@cache
def structural(name: str) -> Schema:
    """The definition with every reference inlined: a structural schema the pruning walk can follow.

    Objects whose fields the schema leaves open (FieldsV1, RawExtension) keep whatever they hold.
    """
    return _inline(copy.deepcopy(_definitions()[name]), (name,))


def _target(s: Schema) -> str | None:
    ref = s.get("$ref")
    if ref is None and isinstance(s.get("allOf"), list) and len(s["allOf"]) == 1:
        ref = s["allOf"][0].get("$ref")
    return ref[len(_V3_REF):] if isinstance(ref, str) and ref.startswith(_V3_REF) else None


def _inline(s: Schema, seen: tuple[str, ...]) -> Schema:
    target = _target(s)
    if target is not None:
        s.pop("$ref", None)
        s.pop("allOf", None)
        if target in seen:  # a recursive type (none among the served kinds): keep its data as it is
            s[_PRESERVE] = True
            return s
        s = {**copy.deepcopy(_definitions()[target]), **s}
        return _inline(s, (*seen, target))
    if isinstance(s.get("properties"), dict):
        s["properties"] = {k: _inline(v, seen) for k, v in s["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            s[key] = _inline(s[key], seen)
    if s.get("type") == "object" and "properties" not in s and "additionalProperties" not in s:
        s[_PRESERVE] = True
    return s


@cache
def merge_keys(name: str) -> dict[str, str]:
    """Strategic merge patch's list rules of a kind: dotted path of a merged list -> its merge key ("" for
    lists of scalars merged as sets), in the form `strategic.strategic_merge` takes."""
    out: dict[str, str] = {}
    _collect(structural(name), "", out)
    return out


def _collect(s: Schema, path: str, out: dict[str, str]) -> None:
    strategy = str(s.get("x-kubernetes-patch-strategy", ""))
    if s.get("type") == "array" and "merge" in strategy.split(","):
        out[path] = str(s.get("x-kubernetes-patch-merge-key", ""))
    for k, v in (s.get("properties") or {}).items():
        if isinstance(v, dict):
            _collect(v, f"{path}.{k}" if path else k, out)
    if isinstance(s.get("items"), dict):  # items add no segment; lists inside map values have no path
        _collect(s["items"], path, out)
