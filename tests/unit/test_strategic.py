"""Unit tests for k3c.apiserver.strategic: strategic merge patch and JSON merge patch.

Expected results follow k8s.io/apimachinery/pkg/util/strategicpatch as kube-apiserver applies it
(including list-order behaviour, which clients can observe).
"""

from __future__ import annotations

import copy

import pytest

from k3c.apiserver.strategic import merge_patch, strategic_merge

META = {"metadata.ownerReferences": "uid", "metadata.finalizers": ""}
# A generic schema for ordering tests: `items` merges by name, `ints` is a set of scalars.
GEN = {"items": "name", "ints": "", "items.items": "name"}


def owner(uid: str, **extra: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm-{uid}", "uid": uid, **extra}


def names(items: list[dict]) -> list[object]:
    return [i["name"] for i in items]


# ------------------------------------------------------------------------------------------------ maps


def test_maps_merge_and_null_deletes() -> None:
    orig = {"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}}
    patch = {"metadata": {"labels": {"y": None, "z": "3"}}, "data": None}
    assert strategic_merge(orig, patch, META) == {"metadata": {"name": "a", "labels": {"x": "1", "z": "3"}}}


def test_null_for_missing_key_is_ignored() -> None:
    assert strategic_merge({"a": 1}, {"b": None}, {}) == {"a": 1}


def test_new_subtree_drops_nulls() -> None:
    got = strategic_merge({}, {"metadata": {"labels": {"a": "1", "b": None}}}, META)
    assert got == {"metadata": {"labels": {"a": "1"}}}


def test_type_change_replaces_value() -> None:
    assert strategic_merge({"a": "text"}, {"a": {"b": 1}}, {}) == {"a": {"b": 1}}
    assert strategic_merge({"a": {"b": 1}}, {"a": [1]}, {}) == {"a": [1]}
    assert strategic_merge({"a": 1}, {"a": True}, {}) == {"a": True}


def test_scalars_replace() -> None:
    assert strategic_merge({"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}, {}) == {"a": 2.5, "b": "y"}


def test_inputs_are_not_mutated() -> None:
    orig = {"metadata": {"labels": {"a": "1"}, "ownerReferences": [owner("u1")]}}
    patch = {"metadata": {"labels": {"a": None}, "ownerReferences": [{"uid": "u1", "$patch": "delete"}]}}
    o, p = copy.deepcopy(orig), copy.deepcopy(patch)
    strategic_merge(orig, patch, META)
    assert (orig, patch) == (o, p)


def test_map_patch_replace() -> None:
    orig = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    patch = {"metadata": {"labels": {"$patch": "replace", "c": "3", "d": None}}}
    assert strategic_merge(orig, patch, META) == {"metadata": {"labels": {"c": "3"}}}


def test_map_patch_delete_leaves_empty_map() -> None:
    orig = {"metadata": {"labels": {"a": "1"}, "name": "n"}}
    got = strategic_merge(orig, {"metadata": {"labels": {"$patch": "delete"}}}, META)
    assert got == {"metadata": {"labels": {}, "name": "n"}}


def test_top_level_patch_delete() -> None:
    assert strategic_merge({"a": 1}, {"$patch": "delete"}, {}) == {}


def test_directive_map_for_absent_key_is_dropped() -> None:
    # Upstream quirk: removeDirectives drops a map carrying $patch when the key is new.
    assert strategic_merge({"a": 1}, {"labels": {"$patch": "replace", "x": "1"}}, {}) == {"a": 1}


@pytest.mark.parametrize("directive", ["merge", "bogus"])
def test_unknown_map_patch_type(directive: str) -> None:
    with pytest.raises(ValueError, match=f"unknown patch type: {directive} in map: map"):
        strategic_merge({"a": {"b": 1}}, {"a": {"$patch": directive}}, {})


@pytest.mark.parametrize(
    "patch",
    [
        {"$foo": 1},
        {"metadata": {"$unknown": "x"}},
        {"new": {"deep": {"$weird": 1}}},
        {"metadata": {"ownerReferences": [{"uid": "u9", "$x": 1}]}},
    ],
)
def test_unknown_dollar_keys_raise(patch: dict) -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1")]}}
    with pytest.raises(ValueError, match="unknown strategic merge patch directive"):
        strategic_merge(orig, patch, META)


def test_directive_keys_are_stripped_from_new_content() -> None:
    patch = {"spec": {"$retainKeys": ["a"], "a": 1, "$setElementOrder/l": [1], "l": [1]}}
    assert strategic_merge({}, patch, {}) == {"spec": {"a": 1, "l": [1]}}


def test_non_object_arguments_rejected() -> None:
    with pytest.raises(ValueError):
        strategic_merge({}, [], {})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- $retainKeys


def test_retain_keys_clears_unlisted_fields() -> None:
    orig = {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}, "extra": True}}
    patch = {"strategy": {"$retainKeys": ["type", "extra"], "type": "RollingUpdate"}}
    assert strategic_merge(orig, patch, {}) == {"strategy": {"type": "RollingUpdate", "extra": True}}


def test_retain_keys_null_values_need_not_be_listed() -> None:
    orig = {"s": {"a": 1, "b": 2}}
    assert strategic_merge(orig, {"s": {"$retainKeys": ["a"], "b": None}}, {}) == {"s": {"a": 1}}


@pytest.mark.parametrize("patch", [{"$retainKeys": ["a"], "b": 1}, {"$retainKeys": "a"}])
def test_retain_keys_errors(patch: dict) -> None:
    with pytest.raises(ValueError, match="invalid patch format of retainKeys"):
        strategic_merge({"a": 1}, patch, {})


# --------------------------------------------------------------------------------- merge lists of maps


def test_owner_references_merge_by_uid() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1"), owner("u2")]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "u2", "controller": True}]}}
    got = strategic_merge(orig, patch, META)["metadata"]["ownerReferences"]
    assert got == [owner("u1"), owner("u2", controller=True)]


def test_new_merge_list_items_come_first() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1")]}}
    got = strategic_merge(orig, {"metadata": {"ownerReferences": [owner("u2")]}}, META)
    assert [o["uid"] for o in got["metadata"]["ownerReferences"]] == ["u2", "u1"]


def test_new_list_item_has_nulls_and_directives_removed() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1")]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "u2", "controller": None, "name": "n"}]}}
    got = strategic_merge(orig, patch, META)["metadata"]["ownerReferences"]
    assert got[0] == {"uid": "u2", "name": "n"}


def test_merge_list_patch_delete_item() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1"), owner("u2"), owner("u3")]}}
    patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u2"}]}}
    got = strategic_merge(orig, patch, META)["metadata"]["ownerReferences"]
    assert [o["uid"] for o in got] == ["u1", "u3"]


def test_merge_list_delete_missing_item_is_noop() -> None:
    orig = {"items": [{"name": "a"}]}
    assert strategic_merge(orig, {"items": [{"$patch": "delete", "name": "zz"}]}, GEN) == orig


def test_merge_list_patch_replace() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1"), owner("u2")]}}
    patch = {"metadata": {"ownerReferences": [{"$patch": "replace"}, owner("u9", blockOwnerDeletion=None)]}}
    assert strategic_merge(orig, patch, META)["metadata"]["ownerReferences"] == [owner("u9")]


def test_merge_list_patch_merge_directive_rejected() -> None:
    with pytest.raises(ValueError, match="merging lists cannot yet be specified in the patch"):
        strategic_merge({"items": [{"name": "a"}]}, {"items": [{"$patch": "merge"}]}, GEN)


def test_merge_list_unknown_item_directive() -> None:
    with pytest.raises(ValueError, match="unknown patch type: nope"):
        strategic_merge({"items": [{"name": "a"}]}, {"items": [{"$patch": "nope", "name": "a"}]}, GEN)


def test_empty_patch_list_leaves_merge_list_alone() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1")], "finalizers": ["f"]}}
    assert strategic_merge(orig, {"metadata": {"ownerReferences": [], "finalizers": []}}, META) == orig


def test_null_removes_merge_list() -> None:
    orig = {"metadata": {"name": "x", "ownerReferences": [owner("u1")]}}
    assert strategic_merge(orig, {"metadata": {"ownerReferences": None}}, META) == {"metadata": {"name": "x"}}


def test_missing_merge_key_in_patch_item() -> None:
    with pytest.raises(ValueError, match="does not contain declared merge key: uid"):
        strategic_merge(
            {"metadata": {"ownerReferences": [owner("u1")]}},
            {"metadata": {"ownerReferences": [{"name": "x"}]}},
            META,
        )


def test_delete_item_without_merge_key() -> None:
    with pytest.raises(ValueError, match="does not contain declared merge key: name"):
        strategic_merge({"items": [{"name": "a"}]}, {"items": [{"$patch": "delete"}]}, GEN)


def test_nested_merge_lists_use_dotted_paths() -> None:
    orig = {"items": [{"name": "a", "items": [{"name": "x", "v": 1}]}]}
    patch = {"items": [{"name": "a", "items": [{"name": "x", "w": 2}, {"name": "y"}]}]}
    got = strategic_merge(orig, patch, GEN)
    assert got == {"items": [{"name": "a", "items": [{"name": "x", "v": 1, "w": 2}, {"name": "y"}]}]}


def test_maps_in_list_without_merge_key_cannot_merge() -> None:
    with pytest.raises(ValueError, match="cannot merge lists without merge key for ints"):
        strategic_merge({"ints": [{"a": 1}]}, {"ints": [{"a": 2}]}, GEN)


def test_list_element_types_must_match() -> None:
    with pytest.raises(ValueError, match="list element types are not identical"):
        strategic_merge({"ints": [1, 2]}, {"ints": ["3"]}, GEN)


def test_lists_of_lists_unsupported() -> None:
    with pytest.raises(ValueError, match="lists of lists are not supported"):
        strategic_merge({"ints": [[1]]}, {"ints": [[2]]}, GEN)


# -------------------------------------------------------------------------------------- scalar lists


def test_primitive_merge_list_is_a_set() -> None:
    orig = {"metadata": {"finalizers": ["a", "b"]}}
    got = strategic_merge(orig, {"metadata": {"finalizers": ["b", "c", "c"]}}, META)
    assert got["metadata"]["finalizers"] == ["a", "b", "c"]  # c follows b, which it followed in the patch


def test_primitive_merge_list_puts_unanchored_new_items_first() -> None:
    orig = {"metadata": {"finalizers": ["a", "b"]}}
    got = strategic_merge(orig, {"metadata": {"finalizers": ["c"]}}, META)
    assert got["metadata"]["finalizers"] == ["c", "a", "b"]


def test_numbers_compare_by_value_bools_do_not() -> None:
    got = strategic_merge({"ints": [1, 2]}, {"ints": [2.0, 3]}, GEN)
    assert got == {"ints": [1, 2, 3]} and isinstance(got["ints"][1], int)
    with pytest.raises(ValueError, match="not identical"):
        strategic_merge({"ints": [1]}, {"ints": [True]}, GEN)


def test_delete_from_primitive_list() -> None:
    orig = {"metadata": {"finalizers": ["a", "b", "a", "c"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}
    assert strategic_merge(orig, patch, META)["metadata"]["finalizers"] == ["b", "c"]


def test_delete_from_primitive_list_without_merge_strategy() -> None:
    assert strategic_merge({"l": [1, 2, 3]}, {"$deleteFromPrimitiveList/l": [2]}, {}) == {"l": [1, 3]}


def test_delete_from_primitive_list_never_adds() -> None:
    assert strategic_merge({"x": 1}, {"$deleteFromPrimitiveList/ints": [1]}, GEN) == {"x": 1}
    assert strategic_merge({"ints": None}, {"$deleteFromPrimitiveList/ints": [1]}, GEN) == {"ints": None}


def test_add_and_delete_in_one_patch() -> None:
    orig = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}
    assert strategic_merge(orig, patch, META)["metadata"]["finalizers"] == ["c", "b"]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("$deleteFromPrimitiveListX/ints", "invalid patch format of primitive list"),
        ("$deleteFromPrimitiveList", "invalid patch format of primitive list"),
        ("$setElementOrderX/ints", "invalid patch format of setElementOrder list"),
    ],
)
def test_malformed_directive_prefixes(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        strategic_merge({"ints": [1]}, {key: [1]}, GEN)


def test_non_merge_list_is_replaced_wholesale() -> None:
    orig = {"spec": {"finalizers": ["kubernetes", "x"]}, "metadata": {"managedFields": [{"manager": "a"}]}}
    patch = {"spec": {"finalizers": ["y"]}, "metadata": {"managedFields": [{"manager": "b", "x": None}]}}
    got = strategic_merge(orig, patch, META)
    assert got == {"spec": {"finalizers": ["y"]}, "metadata": {"managedFields": [{"manager": "b"}]}}


def test_non_merge_list_replaced_even_by_empty_list() -> None:
    assert strategic_merge({"spec": {"finalizers": ["k"]}}, {"spec": {"finalizers": []}}, META) == {
        "spec": {"finalizers": []}
    }


# --------------------------------------------------------------------------------- $setElementOrder


def test_set_element_order_reorders_scalars_only() -> None:
    got = strategic_merge({"ints": [1, 3]}, {"$setElementOrder/ints": [3, 2, 1]}, GEN)
    assert got == {"ints": [3, 1]}


def test_set_element_order_with_added_scalar() -> None:
    got = strategic_merge({"ints": [1, 2, 4]}, {"$setElementOrder/ints": [1, 2, 3], "ints": [3]}, GEN)
    assert got == {"ints": [1, 2, 3, 4]}


def test_set_element_order_keeps_server_only_items_in_place() -> None:
    orig = {
        "items": [
            {"name": 1, "o": "a"},
            {"name": 2},
            {"name": 7},
            {"name": 9},
            {"name": 8},
            {"name": 3},
            {"name": 4},
        ]
    }
    patch = {"$setElementOrder/items": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}
    assert names(strategic_merge(orig, patch, GEN)["items"]) == [2, 1, 7, 9, 8, 4, 3]


def test_set_element_order_with_delete_and_add() -> None:
    # Upstream's in-place slice edits make server-only item 4 land before the new item 3.
    orig = {"items": [{"name": 1}, {"name": 2, "o": "b"}, {"name": 4, "o": "c"}]}
    patch = {
        "$setElementOrder/items": [{"name": 2}, {"name": 3}],
        "items": [{"name": 3}, {"name": 1, "$patch": "delete"}],
    }
    assert strategic_merge(orig, patch, GEN)["items"] == [
        {"name": 2, "o": "b"},
        {"name": 4, "o": "c"},
        {"name": 3},
    ]


def test_set_element_order_with_delete_and_adds_conflict_variant() -> None:
    orig = {"items": [{"name": 1, "o": "a"}, {"name": 4, "o": "c"}]}
    patch = {
        "$setElementOrder/items": [{"name": 2}, {"name": 3}],
        "items": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}],
    }
    assert names(strategic_merge(orig, patch, GEN)["items"]) == [4, 2, 3]


def test_set_element_order_for_new_list() -> None:
    patch = {
        "$setElementOrder/items": [{"name": "b"}, {"name": "a"}],
        "items": [{"name": "b"}, {"name": "a"}],
    }
    assert names(strategic_merge({}, patch, GEN)["items"]) == ["b", "a"]


def test_set_element_order_ignored_when_list_absent_everywhere() -> None:
    assert strategic_merge({"x": 1}, {"$setElementOrder/items": [{"name": "a"}]}, GEN) == {"x": 1}


def test_set_element_order_must_agree_with_patch_order() -> None:
    orig = {"items": [{"name": 1}, {"name": 3}, {"name": 2}]}
    patch = {
        "$setElementOrder/items": [{"name": 1}, {"name": 2}, {"name": 3}],
        "items": [{"name": 3, "v": 3}, {"name": 1, "v": 1}],
    }
    with pytest.raises(ValueError, match="doesn't match \\$setElementOrder list"):
        strategic_merge(orig, patch, GEN)


def test_set_element_order_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="expected a \\[\\]interface \\{\\}, but received a string"):
        strategic_merge({"ints": [1]}, {"$setElementOrder/ints": "1"}, GEN)


def test_set_element_order_for_owner_references() -> None:
    orig = {"metadata": {"ownerReferences": [owner("u1"), owner("u2")]}}
    patch = {"metadata": {"$setElementOrder/ownerReferences": [{"uid": "u2"}, {"uid": "u3"}, {"uid": "u1"}],
                          "ownerReferences": [owner("u3")]}}  # fmt: skip
    got = strategic_merge(orig, patch, META)["metadata"]["ownerReferences"]
    assert [o["uid"] for o in got] == ["u2", "u3", "u1"]


def test_kubectl_style_finalizer_removal() -> None:
    orig = {"metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {
        "metadata": {"$setElementOrder/finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}
    }
    assert strategic_merge(orig, patch, META)["metadata"]["finalizers"] == ["c", "a"]


# ---------------------------------------------------------------------------------------- merge_patch


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386(target: dict, patch: dict, result: dict) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_keeps_nulls_inside_arrays_and_does_not_alias() -> None:
    patch = {"a": [{"x": None}], "m": {"k": [1]}}
    got = merge_patch({}, patch)
    assert got == {"a": [{"x": None}], "m": {"k": [1]}}
    got["m"]["k"].append(2)
    assert patch["m"]["k"] == [1]


def test_merge_patch_does_not_mutate_original() -> None:
    orig = {"a": {"b": 1}}
    merge_patch(orig, {"a": {"b": None}})
    assert orig == {"a": {"b": 1}}


def test_merge_patch_requires_object() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        merge_patch({"a": 1}, ["x"])  # type: ignore[arg-type]
