"""k3c.dockerid: docker's IDs and names for k3c's objects (the rules of notes' docker identity)."""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3c import api, dockerid

DOCKER_NAMES = st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{0,300}\Z")


def _obj(name: str, uid: str, docker: str | None = None) -> dict:
    meta: dict = {"name": name, "uid": uid}
    if docker is not None:
        meta["annotations"] = {dockerid.NAME_ANNOTATION: docker}
    return {"metadata": meta}


def test_the_id_is_the_sha256_of_the_uid() -> None:
    uid = "5f0c7a1e-3b2d-4c55-9f00-1234567890ab"
    assert dockerid.container_id(uid) == hashlib.sha256(uid.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", dockerid.container_id(uid))
    assert dockerid.object_id(_obj("web", uid)) == dockerid.container_id(uid)


def test_the_annotation_is_the_apis_vocabulary() -> None:
    assert dockerid.NAME_ANNOTATION == api.NAME_ANNOTATION == "k3c.io/name"


@pytest.mark.parametrize("name", ["web", "a", "web-1", "web.example", "0abc", "x" * 253])
def test_a_valid_object_name_maps_to_itself(name: str) -> None:
    assert dockerid.object_name(name) == name


@pytest.mark.parametrize("docker,expected_body", [
    ("proj_web_1", "proj-web-1"),
    ("Web", "web"),
    ("my_App.V2", "my-app.v2"),
    ("a_", "a"),
    ("a..b", "a.b"),
    ("a._b", "a.b"),
    ("a-.b", "a.b"),
    ("x" * 254, "x" * 246),
])
def test_other_docker_names_map_to_a_body_and_a_hash_suffix(docker: str, expected_body: str) -> None:
    suffix = hashlib.sha256(docker.encode()).hexdigest()[:6]
    assert dockerid.object_name(docker) == f"{expected_body}-{suffix}"


def test_names_that_differ_only_in_case_or_underscores_get_different_objects() -> None:
    names = {dockerid.object_name(n) for n in ("web", "Web", "WEB", "a_b", "a-b", "A_b")}
    assert len(names) == 6


@given(DOCKER_NAMES)
def test_every_docker_name_maps_to_a_valid_object_name(name: str) -> None:
    assert dockerid.valid_docker_name(name)
    mapped = dockerid.object_name(name)
    assert dockerid.valid_object_name(mapped), mapped
    assert dockerid.object_name(mapped) == mapped  # a mapped name is a name of its own


@pytest.mark.parametrize("name,ok", [
    ("proj_web_1", True), ("Web.1", True), ("a", True), ("9", True),
    ("_web", False), ("-web", False), (".web", False), ("", False), ("we b", False), ("web/1", False),
    ("wéb", False),
])
def test_docker_name_rules(name: str, ok: bool) -> None:
    assert dockerid.valid_docker_name(name) is ok


def test_the_docker_name_is_the_annotation_else_the_object_name() -> None:
    assert dockerid.docker_name(_obj("proj-web-1-abcdef", "u", "proj_web_1")) == "proj_web_1"
    assert dockerid.docker_name(_obj("web", "u")) == "web"
    assert dockerid.docker_name({"metadata": {"name": "web", "annotations": None}}) == "web"


def test_lookup_follows_dockers_order() -> None:
    a = _obj("proj-web-1-abcdef", "uid-a", "proj_web_1")
    b = _obj("web", "uid-b")
    objs = [a, b]
    a_id, b_id = dockerid.object_id(a), dockerid.object_id(b)
    assert dockerid.lookup(objs, a_id) == [a]
    assert dockerid.lookup(objs, "proj_web_1") == [a]
    assert dockerid.lookup(objs, "proj-web-1-abcdef") == [a]
    assert dockerid.lookup(objs, "web") == [b]
    assert dockerid.lookup(objs, b_id[:5]) == [b]
    assert dockerid.lookup(objs, "nosuch") == []
    assert dockerid.lookup(objs, "") == []


def test_a_name_wins_over_an_id_prefix_and_a_common_prefix_is_ambiguous() -> None:
    objs = [_obj(f"c{i}", f"uid-{i}") for i in range(40)]
    ids = [dockerid.object_id(o) for o in objs]
    first = ids[0][0]
    sharing = [o for o, i in zip(objs, ids, strict=True) if i.startswith(first)]
    assert len(sharing) > 1  # 40 IDs over 16 first digits
    assert dockerid.lookup(objs, first) == sharing
    named = _obj(first, "uid-named")  # a container named like another's ID prefix
    assert dockerid.lookup([*objs, named], first) == [named]


def test_the_module_is_a_leaf() -> None:
    tree = ast.parse(Path(dockerid.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "functools", "hashlib", "_sha256", "_sha2", "json", "random", "re",
                        "collections", "typing"}, imported


def test_ids_are_sha256_of_the_uid_whichever_implementation_computes_them() -> None:
    import hashlib

    assert dockerid.container_id("8d0e-uid") == hashlib.sha256(b"8d0e-uid").hexdigest()


def test_docker_labels_round_trip_where_kubernetes_labels_cannot() -> None:
    labels = {"com.docker.compose.project": "proj", "description": "web's data, kept", "free text": "x"}
    meta = dockerid.label_metadata(labels)
    assert meta["labels"] == {"com.docker.compose.project": "proj"}  # what selectors can see
    assert dockerid.docker_labels(meta) == labels
    assert dockerid.docker_labels({"labels": {"a": "b"}}) == {"a": "b"}  # written without a docker client
    assert dockerid.label_metadata({}) == {}
    assert dockerid.LABELS_ANNOTATION == api.LABELS_ANNOTATION
