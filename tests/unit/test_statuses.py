"""The status TypedDicts of k3c.reconcilers.statuses name exactly the fields crds/ declares, with the same
shapes (nested records and lists included) and, where both enumerate them, the same allowed values: a field
added to a CRD, or a typo in a TypedDict, fails here rather than as a pruned field at run time."""

from __future__ import annotations

import types
from typing import Any, Literal, get_args, get_origin, get_type_hints, is_typeddict

import pytest
import yaml

from k3c import crds
from k3c.reconcilers import statuses

STATUS_OF_KIND = {
    "LocalContainer": statuses.LocalContainerStatus,
    "Volume": statuses.VolumeStatus,
    "Network": statuses.NetworkStatus,
    "Image": statuses.ImageStatus,
    "ImageTag": statuses.ImageTagStatus,
    "ImagePush": statuses.ImagePushStatus,
    "ImageBuild": statuses.ImageBuildStatus,
    "BuildCache": statuses.BuildCacheStatus,
}
SCALARS = {str: "string", int: "integer", bool: "boolean"}


def _status_schemas() -> dict[str, dict[str, Any]]:
    """The status schema of every CRD that has a status (a configuration kind, NodePolicy, has none)."""
    out = {}
    for path in crds.manifests():
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
        status = version["schema"]["openAPIV3Schema"]["properties"].get("status")
        if status is not None:
            out[crd["spec"]["names"]["kind"]] = status
    return out


def _without_none(hint: Any) -> Any:
    if get_origin(hint) is types.UnionType:
        rest = [a for a in get_args(hint) if a is not type(None)]
        assert len(rest) == 1, hint
        return rest[0]
    return hint


def _mismatches(schema: dict[str, Any], hint: Any, where: str) -> list[str]:
    """Where ``hint`` (a field's type) and ``schema`` (its CRD schema) disagree."""
    hint = _without_none(hint)
    origin = get_origin(hint)
    if is_typeddict(hint):
        fields = get_type_hints(hint)
        declared = schema.get("properties") or {}
        if schema.get("type") != "object" or set(fields) != set(declared):
            return [f"{where}: {hint.__name__} has {sorted(fields)}, the CRD {sorted(declared)}"]
        return [m for name, h in fields.items() for m in _mismatches(declared[name], h, f"{where}.{name}")]
    if origin is list:
        if schema.get("type") != "array":
            return [f"{where}: a list, the CRD says {schema.get('type')}"]
        return _mismatches(schema["items"], get_args(hint)[0], f"{where}[]")
    if origin is dict:
        return [] if schema.get("type") == "object" else [f"{where}: a dict, the CRD says {schema.get('type')}"]
    if origin is Literal:
        if schema.get("type") != "string":
            return [f"{where}: a string literal, the CRD says {schema.get('type')}"]
        if "enum" in schema and set(get_args(hint)) != set(schema["enum"]):
            return [f"{where}: {sorted(get_args(hint))}, the CRD's enum {sorted(schema['enum'])}"]
        return []
    if SCALARS.get(hint) != schema.get("type"):
        return [f"{where}: {hint}, the CRD says {schema.get('type')}"]
    return []


def test_every_crd_has_its_status_typeddict() -> None:
    assert set(_status_schemas()) == set(STATUS_OF_KIND)


@pytest.mark.parametrize("kind", sorted(STATUS_OF_KIND))
def test_status_typeddict_matches_the_crd(kind: str) -> None:
    assert _mismatches(_status_schemas()[kind], STATUS_OF_KIND[kind], f"{kind}.status") == []


def test_a_disagreement_is_reported_where_it_is() -> None:
    volume = _status_schemas()["Volume"]
    volume["properties"]["phase"]["enum"].remove("Failed")
    assert _mismatches(volume, statuses.VolumeStatus, "Volume.status") == [
        "Volume.status.phase: ['Failed', 'InUse', 'Pending', 'Ready'], the CRD's enum ['InUse', 'Pending', 'Ready']"]
    nested = _status_schemas()["Image"]
    nested["properties"]["pull"]["properties"]["layers"]["items"]["properties"].pop("state")
    assert _mismatches(nested, statuses.ImageStatus, "Image.status") == [
        "Image.status.pull.layers[]: LayerProgress has ['current', 'digest', 'size', 'state'], "
        "the CRD ['current', 'digest', 'size']"]
