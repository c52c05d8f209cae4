"""Reading the protobuf OpenAPI v2 (Swagger) document the way kubectl 1.27/1.28's cli-runtime does, so tests
check what kubectl concludes from it rather than the document's bytes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from k3c.apiserver.proto import openapiv2_pb2 as pb

GVK = "x-kubernetes-group-version-kind"


def vendor_extension(extensions: Iterable[Any], name: str) -> Any:
    """The YAML value of the vendor extension ``name``, or None."""
    for e in extensions:
        if e.name == name:
            return yaml.safe_load(e.value.yaml)
    return None


def supports_query_param(doc: pb.Document, group: str, version: str, kind: str, param: str) -> bool:
    """cli-runtime's supportsQueryParam: the first PATCH for the GVK decides; raises when there is none."""
    for named in doc.paths.path:
        op = named.value.patch
        if not named.value.HasField("patch"):
            continue
        gvk = vendor_extension(op.vendor_extension, GVK)
        if gvk != {"group": group, "kind": kind, "version": version}:
            continue
        return any(p.parameter.non_body_parameter.query_parameter_sub_schema.name == param for p in op.parameters)
    raise LookupError(f"path not found for {group}/{version} {kind}")
