"""The checks kube-apiserver runs on a CustomResourceDefinition itself (apiextensions.k8s.io/v1).

Why here: a CRD that kube-apiserver would refuse must not be served by k3c either, or custom resources
would be stored under a schema no real cluster accepts: names, versions, the schema's structural
basics, its patterns (Go's RE2 syntax) and printer columns are checked on create and update.
"""

from __future__ import annotations

from typing import Any

from k3c.apiserver.errors import Cause

from . import patterns
from .fielderrors import forbidden, invalid, not_supported, required
from .names import dns1035_label_errors, dns1123_subdomain_errors
from .structural import EMBEDDED, INT_OR_STRING, PRESERVE_UNKNOWN, Node, Schema, properties, walk

__all__ = ["validate_crd"]

_PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_PRINTER_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
_VALID_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_EMPTY_TYPE = {"root": "must not be empty at the root", "item": "must not be empty for specified array items",
               "field": "must not be empty for specified object fields"}


def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """The basic checks kube-apiserver runs on a CustomResourceDefinition (apiextensions.k8s.io/v1).

    metadata.name (`<plural>.<group>`), spec.group, spec.scope, spec.names (plural/kind required;
    singular and listKind are defaulted first, as the v1 defaulting does), versions (names, uniqueness,
    exactly one storage version, a schema for every version), the schema's structural basics (type
    object at the root, types everywhere, array items, no additionalProperties next to properties,
    no nullable root, no uniqueItems), patterns Go's regexp compiles, the status-subresource root
    restriction and printer columns.
    """
    meta = _dict(crd.get("metadata"))
    spec = _dict(crd.get("spec"))
    names = _defaulted_names(_dict(spec.get("names")))
    group = spec.get("group") or ""
    if not isinstance(group, str):
        group = str(group)
    versions: list[Any] = spec["versions"] if isinstance(spec.get("versions"), list) else []
    return [*_name_errors(meta, f"{names.get('plural') or ''}.{group}"), *_group_errors(group),
            *_scope_errors(spec.get("scope") or ""), *_versions_errors(versions), *_names_errors(names)]


def _dict(v: Any) -> dict[str, Any]:
    return dict(v) if isinstance(v, dict) else {}


def _defaulted_names(names: dict[str, Any]) -> dict[str, Any]:
    """spec.names with singular and listKind defaulted from kind, as the v1 defaulting does."""
    kind = names.get("kind") or ""
    if kind and not names.get("singular"):
        names["singular"] = kind.lower()
    if kind and not names.get("listKind"):
        names["listKind"] = kind + "List"
    return names


def _name_errors(meta: dict[str, Any], expected: str) -> list[Cause]:
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        return [required("metadata.name", "name or generateName is required")]
    if not name:
        return []
    msgs = dns1123_subdomain_errors(name)
    if name != expected:
        msgs.append('must be spec.names.plural+"."+spec.group')
    return [invalid("metadata.name", name, m) for m in msgs]


def _group_errors(group: str) -> list[Cause]:
    if not group:
        return [required("spec.group")]
    if errs := dns1123_subdomain_errors(group):
        return [invalid("spec.group", group, ",".join(errs))]
    if len(group.split(".")) < 2:
        return [invalid("spec.group", group, "should be a domain with at least one dot")]
    return []


def _scope_errors(scope: Any) -> list[Cause]:
    if not scope:
        return [required("spec.scope")]
    if scope not in ("Cluster", "Namespaced"):
        return [not_supported("spec.scope", scope, ["Cluster", "Namespaced"])]
    return []


def _versions_errors(versions: list[Any]) -> list[Cause]:
    out: list[Cause] = []
    for i, ver in enumerate(versions):
        out += _version_errors(ver, f"spec.versions[{i}]")
    vnames = [ver.get("name") or "" for ver in versions if isinstance(ver, dict)]
    if versions and len(set(vnames)) != len(vnames):
        out.append(invalid("spec.versions", versions, "must contain unique version names"))
    if sum(1 for ver in versions if isinstance(ver, dict) and ver.get("storage")) != 1:
        out.append(invalid("spec.versions", versions,
                           "must have exactly one version marked as storage version"))
    return out


def _version_errors(ver: Any, vpath: str) -> list[Cause]:
    if not isinstance(ver, dict):
        return [invalid(vpath, ver, "must be an object")]
    out: list[Cause] = []
    vname = ver.get("name") or ""
    if errs := dns1035_label_errors(vname):
        out.append(invalid(f"{vpath}.name", vname, ",".join(errs)))
    subresources = _dict(ver.get("subresources"))
    schema = ver["schema"].get("openAPIV3Schema") if isinstance(ver.get("schema"), dict) else None
    if not isinstance(schema, dict):
        out.append(required(f"{vpath}.schema.openAPIV3Schema"))
    else:
        out.extend(_validate_crd_schema(schema, f"{vpath}.schema.openAPIV3Schema",
                                        status_enabled="status" in subresources))
    for j, col in enumerate(ver.get("additionalPrinterColumns") or []):
        out.extend(_validate_printer_column(col, f"{vpath}.additionalPrinterColumns[{j}]"))
    return out


def _names_errors(names: dict[str, Any]) -> list[Cause]:
    out = [required(f"spec.names.{f}") for f in ("plural", "singular", "kind", "listKind") if not names.get(f)]
    for field_name in ("plural", "singular"):
        v = names.get(field_name) or ""
        if v and (errs := dns1035_label_errors(v)):
            out.append(invalid(f"spec.names.{field_name}", v, ",".join(errs)))
    for field_name in ("kind", "listKind"):
        v = names.get(field_name) or ""
        if v and (errs := dns1035_label_errors(v.lower())):
            out.append(invalid(f"spec.names.{field_name}", v,
                               "may have mixed case, but should otherwise match: " + ",".join(errs)))
    for i, short in enumerate(names.get("shortNames") or []):
        if errs := dns1035_label_errors(str(short)):
            out.append(invalid(f"spec.names.shortNames[{i}]", short, ",".join(errs)))
    kind = names.get("kind") or ""
    if kind and kind == names.get("listKind"):
        out.append(invalid("spec.names.listKind", names["listKind"], "kind and listKind may not be the same"))
    for i, cat in enumerate(names.get("categories") or []):
        if errs := dns1035_label_errors(str(cat)):
            out.append(invalid(f"spec.names.categories[{i}]", cat, ",".join(errs)))
    return out


_ALLOWED_AT_ROOT_WITH_STATUS = {"description", "type", "required", "properties", "x-kubernetes-validations",
                                "x-kubernetes-preserve-unknown-fields", "$schema", "title", "example",
                                "externalDocs", "id"}


def _validate_crd_schema(schema: Schema, path: str, *, status_enabled: bool) -> list[Cause]:
    out: list[Cause] = []
    if status_enabled:
        if "type" in schema and schema.get("type") != "object":
            out.append(invalid(f"{path}.type", schema.get("type"),
                               'only "object" is allowed as the type at the root of the schema if the status '
                               "subresource is enabled"))
        elif any(k not in _ALLOWED_AT_ROOT_WITH_STATUS for k in schema):
            out.append(invalid(path, schema,
                               "only [description type required properties x-kubernetes-validations "
                               "x-kubernetes-preserve-unknown-fields] fields are allowed at the root of the "
                               "schema if the status subresource is enabled"))
    if schema.get("nullable") is True:
        out.append(forbidden(f"{path}.nullable", "nullable cannot be true at the root"))

    def check(node: Node) -> bool:
        out.extend(_schema_node_errors(node, path))
        return True

    walk(schema, check)
    return out


def _schema_node_errors(node: Node, root_path: str) -> list[Cause]:
    """Structure (outside the junctors) and, everywhere, a `pattern` Go's regexp compiles."""
    s = node.schema
    if s is None:
        return []
    path = node.schema_path(root_path)
    out = [] if node.nested else _structural_errors(s, path, node.level)
    pattern = s.get("pattern")
    if isinstance(pattern, str) and pattern and (error := patterns.compile_error(pattern)) is not None:
        out.append(invalid(f"{path}.pattern", pattern,
                           f"must be a valid regular expression, but isn't: {error}"))
    return out


def _structural_errors(s: Schema, path: str, level: str) -> list[Cause]:
    """The structural rules of one schema node; `level` is root, item or field."""
    out: list[Cause] = []
    typ = s.get("type")
    if typ is not None and (not isinstance(typ, str) or (typ and typ not in _VALID_TYPES)):
        out.append(not_supported(f"{path}.type", typ, _VALID_TYPES))
        typ = None
    if s.get("uniqueItems") is True:
        out.append(forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the runtime "
                                                    "complexity becomes quadratic"))
    props = properties(s)
    ap = s.get("additionalProperties")
    if props and ap is not None and ap is not False:
        out.append(forbidden(f"{path}.additionalProperties",
                             "additionalProperties and properties are mutual exclusive"))
    if typ == "array" and s.get("items") is None:
        out.append(required(f"{path}.items", "must be specified"))
    if level == "root" and ap is not None:
        out.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
    embedded = s.get(EMBEDDED) is True
    if embedded and typ != "object":
        if not typ:
            out.append(required(f"{path}.type", "must be object if x-kubernetes-embedded-resource is true"))
        else:
            out.append(invalid(f"{path}.type", typ,
                               "must be object if x-kubernetes-embedded-resource is true"))
    elif not typ and s.get(INT_OR_STRING) is not True and s.get(PRESERVE_UNKNOWN) is not True:
        out.append(required(f"{path}.type", _EMPTY_TYPE[level]))
    if level == "root" and typ and typ != "object":
        out.append(invalid(f"{path}.type", typ, "must be object at the root"))
    if s.get(PRESERVE_UNKNOWN) is False:
        out.append(invalid(f"{path}.{PRESERVE_UNKNOWN}", False, "must be true or undefined"))
    return out


def _validate_printer_column(col: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    if not isinstance(col, dict):
        return [invalid(path, col, "must be an object")]
    if not col.get("name"):
        out.append(required(f"{path}.name"))
    ctype = col.get("type") or ""
    if not ctype:
        out.append(required(f"{path}.type", f"must be one of {','.join(_PRINTER_COLUMN_TYPES)}"))
    elif ctype not in _PRINTER_COLUMN_TYPES:
        out.append(invalid(f"{path}.type", ctype, f"must be one of {','.join(_PRINTER_COLUMN_TYPES)}"))
    fmt = col.get("format") or ""
    if fmt and fmt not in _PRINTER_COLUMN_FORMATS:
        out.append(invalid(f"{path}.format", fmt, f"must be one of {','.join(_PRINTER_COLUMN_FORMATS)}"))
    if not col.get("jsonPath"):
        out.append(required(f"{path}.JSONPath"))
    return out
