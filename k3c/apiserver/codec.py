"""Request bodies in, response bodies out: the media types kube-apiserver speaks.

Bodies arrive as JSON, YAML or Kubernetes protobuf (kubectl sends protobuf for some built-ins); answers go
out as JSON, YAML, or a server-side-printed Table when the client asks for one (`kubectl get`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import yaml

from k3c.apiserver import errors

T = TypeVar("T")

MAX_BODY = 3 * 1024 * 1024
#: How deeply a body may nest objects and arrays. kube-apiserver's Go decoder allows 10,000 levels; k3c's
#: limit is what its own code can carry: orjson encodes at most 254 levels, Python recurses (deepcopy,
#: patches, schemas) a few frames per level. Real objects nest a dozen levels or so.
MAX_DEPTH = 100
JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}

try:
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _YamlLoader = yaml.SafeLoader


def media_type(content_type: str | None) -> str:
    return (content_type or JSON).split(";")[0].strip().lower() or JSON


def decode_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a create/update body. Anything that is not one object is a 400, as kube-apiserver says."""
    mt = media_type(content_type)
    if mt == PROTOBUF:
        from k3c.apiserver import protobuf  # only kubectl's built-in creates need it

        try:
            return check_depth(protobuf.decode(body))
        except ValueError as err:
            raise errors.bad_request(f"unable to decode protobuf body: {err}") from None
    if mt in (JSON, "*/*"):
        return check_depth(_expect_object(_load_json(body)))
    if mt in (YAML, "application/x-yaml", "text/yaml"):
        return check_depth(_expect_object(_load_yaml(body)))
    raise errors.unsupported_media_type(mt)


def decode_patch(body: bytes, mt: str) -> Any:
    if mt == "application/apply-patch+yaml":
        return check_depth(_expect_object(_load_yaml(body)))
    return check_depth(_load_json(body))


def check_depth(value: T) -> T:
    """``value`` itself, if it nests at most :data:`MAX_DEPTH` levels; a 400 otherwise (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > MAX_DEPTH:
            raise errors.bad_request(f"the object is nested too deeply: exceeded max depth of {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children)
    return value


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise errors.bad_request(f"couldn't decode request body as JSON: {err}") from None


def _load_yaml(body: bytes) -> Any:
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    try:
        value = yaml.load(body, Loader=_YamlLoader)  # a safe loader
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid YAML"
        raise errors.bad_request(f"couldn't decode request body as YAML: {first}") from None
    except RecursionError:
        raise errors.bad_request(f"the object is nested too deeply: exceeded max depth of {MAX_DEPTH}") from None
    return _refuse_aliases(value)


def _refuse_aliases(value: T) -> T:
    """``value`` if it is a tree; a 400 if an alias repeats a mapping or sequence (or nests one in itself).

    The YAML loader makes every alias the very object its anchor names, so a few hundred bytes can stand
    for millions of nodes ("billion laughs") that only blow up once the object is encoded or stored.
    kube-apiserver's YAML decoder refuses "excessive aliasing"; k3c refuses every alias that repeats a
    collection (directly or through a merge key), which no Kubernetes client sends: bodies are trees, as
    in JSON. An alias of a scalar copies nothing and stays allowed.
    """
    seen: set[int] = set()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if id(item) in seen:
            raise errors.bad_request("couldn't decode request body as YAML: aliases that repeat a mapping or "
                                     "sequence are not supported")
        seen.add(id(item))
        stack.extend(item.values() if isinstance(item, dict) else item)
    return value


def _expect_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.bad_request("Object 'Kind' is missing in the request body: expected a JSON or YAML object")
    return value


@dataclass(frozen=True)
class Accept:
    """What representation the client asked for."""

    table: bool = False
    yaml: bool = False
    partial_metadata: bool = False


def negotiate(accept_header: str | None) -> Accept:
    """Pick the first offered representation we can produce; protobuf-only clients get 406."""
    if not accept_header:
        return Accept()
    for part in accept_header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        as_ = params.get("as", "")
        if as_ == "Table" and params.get("g") == "meta.k8s.io":
            return Accept(table=True)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and params.get("g") == "meta.k8s.io":
            return Accept(partial_metadata=True)
        if as_ or params.get("g"):
            continue  # a representation we do not offer, e.g. aggregated discovery: try the next
        if mt in (JSON, "*/*", "application/*"):
            return Accept()
        if mt in (YAML, "application/x-yaml"):
            return Accept(yaml=True)
    if PROTOBUF in accept_header and JSON not in accept_header and "*/*" not in accept_header:
        raise errors.not_acceptable("application/json, application/yaml")
    return Accept()


def encode(obj: Any, accept: Accept) -> tuple[bytes, str]:
    if accept.yaml:
        return yaml.safe_dump(obj, sort_keys=False).encode(), YAML
    return orjson.dumps(obj), JSON
