"""k3c.api agrees with crds/ (the schema's source of truth), builds URLs as kube-apiserver lays them out, and
stays a leaf (like k3c.apierrors) so the CLI may import it at start-up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from k3c import api, apierrors, crds


def _manifests() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in crds.manifests()]


def test_every_crd_has_its_resource_and_every_resource_its_crd() -> None:
    from_crds = set()
    for crd in _manifests():
        spec = crd["spec"]
        (version,) = [v["name"] for v in spec["versions"] if v.get("storage")]
        from_crds.add((spec["group"], version, spec["names"]["plural"], spec["names"]["kind"]))
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert from_crds == {(r.group, r.version, r.plural, r.kind) for r in api.RESOURCES}
    assert {(g, v) for g, v, _, _ in from_crds} == {(api.GROUP, api.VERSION)}
    assert api.GROUP_VERSION == f"{api.GROUP}/{api.VERSION}"


def test_each_k3c_resource_has_its_own_name() -> None:
    assert len({r.plural for r in api.RESOURCES}) == len({r.kind for r in api.RESOURCES}) == len(api.RESOURCES)


def test_the_finalizers_the_operator_sets_are_in_the_k3c_io_domain_and_distinct() -> None:
    keys = [value for name, value in vars(api).items()
            if isinstance(value, str) and name.endswith(("_FINALIZER", "_ANNOTATION", "_LABEL"))]
    assert keys and all(k.startswith(f"{api.GROUP}/") for k in keys), keys
    finalizers = [v for n, v in vars(api).items() if n.endswith("_FINALIZER")]
    assert len(set(finalizers)) == len(finalizers) == 5


@pytest.mark.parametrize("resource,args,path", [
    (api.LOCAL_CONTAINERS, ("default", "web", "log"), "/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/web/log"),
    (api.LOCAL_CONTAINERS, ("dev",), "/apis/k3c.io/v1alpha1/namespaces/dev/localcontainers"),
    (api.LOCAL_CONTAINERS, (), "/apis/k3c.io/v1alpha1/localcontainers"),  # every namespace
    (api.IMAGES, (None, "-", "load"), "/apis/k3c.io/v1alpha1/images/-/load"),
    (api.IMAGES, ("", "img"), "/apis/k3c.io/v1alpha1/images/img"),  # "" is no namespace, as in Ref
    (api.SECRETS, ("kube-system", "auth"), "/api/v1/namespaces/kube-system/secrets/auth"),
    (api.EVENTS, ("default",), "/api/v1/namespaces/default/events"),
    (api.CUSTOM_RESOURCE_DEFINITIONS, (None, "images.k3c.io"),
     "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/images.k3c.io"),
])
def test_paths(resource: api.Resource, args: tuple, path: str) -> None:
    assert resource.path(*args) == path


def test_api_version_of_core_and_group_types() -> None:
    assert api.VOLUMES.api_version == "k3c.io/v1alpha1"
    assert api.SECRETS.api_version == "v1"
    assert api.CUSTOM_RESOURCE_DEFINITIONS.api_version == "apiextensions.k8s.io/v1"


def test_resources_are_values() -> None:
    """Frozen and hashable: usable as dict keys (the CLI's event stream keys its watches by them)."""
    with pytest.raises(AttributeError):
        api.VOLUMES.plural = "x"  # type: ignore[misc]
    assert {api.VOLUMES: 1}[api.Resource("k3c.io", "v1alpha1", "volumes", "Volume")] == 1


@pytest.mark.parametrize("module", [api, apierrors])
def test_leaf_modules_import_only_the_standard_library(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "dataclasses", "typing", "collections"}, imported
