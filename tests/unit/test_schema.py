"""Structural-schema handling of custom resources: pruning, defaulting, validation wording, CRD checks."""

from __future__ import annotations

import copy
import time

import pytest

from k3c.apiserver import errors
from k3c.apiserver.errors import Cause
from k3c.apiserver.schema import apply_defaults, prune, validate, validate_crd
from tests.support.sample_crds import LOCALCONTAINER_CRD

SCHEMA = LOCALCONTAINER_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def obj(**spec):
    base = {"image": "nginx:1.27"}
    base.update(spec)
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer",
            "metadata": {"name": "web", "namespace": "default"}, "spec": base}


def by_field(causes: list[Cause]) -> dict[str, Cause]:
    return {c.field: c for c in causes}


# ----------------------------------------------------------------------------------------------- prune


def test_prune_removes_unknown_fields_and_reports_sorted_paths():
    o = obj(foo=1, ports=[{"containerPort": 80, "bogus": True}], command=["a"])
    o["top"] = "x"
    o["status"] = {"phase": "Running", "extra": 1}
    pruned = prune(o, SCHEMA)
    assert pruned == ["spec.foo", "spec.ports[0].bogus", "status.extra", "top"]
    assert "foo" not in o["spec"] and "top" not in o
    assert o["spec"]["ports"] == [{"containerPort": 80}]
    assert o["status"] == {"phase": "Running"}
    assert o["spec"]["command"] == ["a"]


def test_prune_keeps_type_meta_and_reduces_metadata_to_object_meta():
    o = obj()
    o["metadata"].update({"labels": {"a": "b"}, "whatever": 1, "creationTimestamp": None,
                          "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u", "bad": 1}]})
    pruned = prune(o, SCHEMA)
    assert pruned == ["metadata.ownerReferences[0].bad", "metadata.whatever"]
    assert o["apiVersion"] == "k3c.io/v1alpha1" and o["kind"] == "LocalContainer"
    assert o["metadata"] == {"name": "web", "namespace": "default", "labels": {"a": "b"},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u"}]}


def test_prune_maps_and_preserve_unknown_fields():
    o = obj(env={"A": "1", "B": "2"},
            volumes={"data": {"path": "/d", "junk": 1}},
            annotationsTemplate={"free": {"form": [1, 2]}, "owner": {"name": "me", "extra": "x"}})
    pruned = prune(o, SCHEMA)
    assert o["spec"]["env"] == {"A": "1", "B": "2"}
    assert o["spec"]["volumes"] == {"data": {"path": "/d"}}
    # unknown fields under x-kubernetes-preserve-unknown-fields stay, known properties inside are still pruned
    assert o["spec"]["annotationsTemplate"] == {"free": {"form": [1, 2]}, "owner": {"name": "me"}}
    assert pruned == ["spec.annotationsTemplate.owner.extra", "spec.volumes.data.junk"]


def test_prune_int_or_string_and_scalars_untouched():
    o = obj(memory="512Mi")
    assert prune(o, SCHEMA) == []
    assert o["spec"]["memory"] == "512Mi"
    o = obj(memory=1024)
    assert prune(o, SCHEMA) == []
    assert o["spec"]["memory"] == 1024


def test_prune_embedded_resource_keeps_its_type_meta_and_prunes_its_metadata():
    o = obj(sidecar={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s", "nope": 1}, "spec": {"x": 1}})
    assert prune(o, SCHEMA) == ["spec.sidecar.metadata.nope"]
    assert o["spec"]["sidecar"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s"}, "spec": {"x": 1}}


def test_prune_object_without_properties_drops_everything_inside():
    schema = {"type": "object", "properties": {"spec": {"type": "object"}}}
    o = {"apiVersion": "a/v1", "kind": "K", "metadata": {}, "spec": {"a": 1, "b": {"c": 2}}}
    assert prune(o, schema) == ["spec.a", "spec.b"]
    assert o["spec"] == {}


def test_prune_not_root_drops_type_meta_silently():
    schema = {"type": "object", "properties": {"phase": {"type": "string"}}}
    o = {"apiVersion": "x", "phase": "p", "z": 1}
    assert prune(o, schema, is_root=False) == ["z"]
    assert o == {"phase": "p"}


def test_prune_without_schema_is_a_no_op():
    o = obj(anything=1)
    assert prune(o, None) == []
    assert o["spec"]["anything"] == 1


# -------------------------------------------------------------------------------------------- defaults


def test_defaults_fill_absent_fields_recursively():
    o = obj(ports=[{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
            volumes={"data": {"path": "/d"}})
    apply_defaults(o, SCHEMA)
    spec = o["spec"]
    assert spec["replicas"] == 1
    assert spec["restartPolicy"] == "Never"
    assert spec["ports"] == [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]
    assert spec["volumes"]["data"] == {"path": "/d", "readOnly": False}
    # a defaulted object gets its own nested defaults
    assert spec["healthcheck"] == {"interval": "30s"}
    assert "status" not in o and "cpus" not in spec


def test_defaults_do_not_override_present_values():
    o = obj(replicas=3, restartPolicy="Always", healthcheck={"interval": "5s"})
    apply_defaults(o, SCHEMA)
    assert o["spec"]["replicas"] == 3
    assert o["spec"]["restartPolicy"] == "Always"
    assert o["spec"]["healthcheck"] == {"interval": "5s"}


def test_defaults_null_handling():
    o = obj(replicas=None, cpus=None, labels=None, healthcheck=None, command=None)
    apply_defaults(o, SCHEMA)
    spec = o["spec"]
    assert spec["replicas"] == 1  # non-nullable null with a default: defaulted
    assert "cpus" not in spec and "command" not in spec  # non-nullable null without default: dropped
    assert spec["labels"] is None  # nullable null: kept
    assert spec["healthcheck"] is None  # nullable: null is a value, not "absent"


def test_defaults_are_deep_copies():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["a"]}}}}}
    o1, o2 = {"spec": {}}, {"spec": {}}
    apply_defaults(o1, schema)
    o1["spec"]["tags"].append("mutated")
    apply_defaults(o2, schema)
    assert o2["spec"]["tags"] == ["a"]
    assert schema["properties"]["spec"]["properties"]["tags"]["default"] == ["a"]


# ------------------------------------------------------------------------------------------ validation


def test_valid_object_has_no_causes():
    o = obj(name="web-1", replicas=2, cpus=0.5, memory="1Gi", restartPolicy="Always",
            createdAfter="2024-05-01T10:00:00Z", ports=[{"containerPort": 80, "hostPort": 8080}],
            env={"A": "x"}, capabilities=["NET_ADMIN"], network={"mode": "host"}, user="bob",
            sidecar={"apiVersion": "v1", "kind": "Pod"}, labels=None)
    assert validate(o, SCHEMA) == []


def test_type_error_wording():
    causes = validate(obj(replicas="string"), SCHEMA)
    assert causes == [Cause("spec.replicas", "FieldValueTypeInvalid",
                            'Invalid value: "string": spec.replicas in body must be of type integer: "string"')]


def test_required_and_nested_paths():
    o = obj(ports=[{"containerPort": 80}, {"hostPort": 70000}])
    del o["spec"]["image"]
    got = by_field(validate(o, SCHEMA))
    assert got["spec.image"] == Cause("spec.image", "FieldValueRequired", "Required value")
    assert got["spec.ports[1].containerPort"].reason == "FieldValueRequired"
    assert got["spec.ports[1].hostPort"] == Cause(
        "spec.ports[1].hostPort", "FieldValueInvalid",
        "Invalid value: 70000: spec.ports[1].hostPort in body should be less than or equal to 65535")


def test_enum_wording():
    got = validate(obj(restartPolicy="Sometimes"), SCHEMA)
    assert got == [Cause("spec.restartPolicy", "FieldValueNotSupported",
                         'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"')]


def test_string_constraints():
    got = by_field(validate(obj(image="", name="Way-Too-Long-Name"), SCHEMA))
    assert got["spec.image"].message == 'Invalid value: "": spec.image in body should be at least 1 chars long'
    # kube-openapi stops at the first failing string check: maxLength before pattern
    assert got["spec.name"] == Cause("spec.name", "FieldValueTooLong", "Too long: may not be more than 12 bytes")
    got = validate(obj(name="Bad"), SCHEMA)
    assert got == [Cause("spec.name", "FieldValueInvalid",
                         "Invalid value: \"Bad\": spec.name in body should match '^[a-z][a-z0-9-]*$'")]


def test_number_bounds_wording():
    got = by_field(validate(obj(replicas=-1, cpus=0), SCHEMA))
    assert got["spec.replicas"].message == (
        "Invalid value: -1: spec.replicas in body should be greater than or equal to 0")
    assert got["spec.cpus"].message == "Invalid value: 0: spec.cpus in body should be greater than 0"
    got = validate(obj(cpus=3.75), SCHEMA)
    assert got[0].message == "Invalid value: 3.75: spec.cpus in body should be less than or equal to 2.5"


def test_int_is_accepted_for_number_and_integral_float_for_integer():
    assert validate(obj(cpus=1), SCHEMA) == []
    assert validate(obj(replicas=2.0), SCHEMA) == []
    got = validate(obj(replicas=2.5), SCHEMA)
    assert got[0].message == 'Invalid value: "number": spec.replicas in body must be of type integer: "number"'
    got = validate(obj(replicas=True), SCHEMA)
    assert got[0].message == 'Invalid value: "boolean": spec.replicas in body must be of type integer: "boolean"'


def test_int_or_string():
    assert validate(obj(memory=512), SCHEMA) == []
    assert validate(obj(memory="512Mi"), SCHEMA) == []
    got = validate(obj(memory=True), SCHEMA)
    assert got[0] == Cause("spec.memory", "FieldValueTypeInvalid",
                           'Invalid value: "boolean": spec.memory in body must be of type integer,string: "boolean"')
    assert any(c.field == "<nil>" and "must validate at least one schema (anyOf)" in c.message for c in got)


def test_array_and_map_constraints():
    ports = [{"containerPort": p} for p in (1, 2, 3, 4)]
    got = by_field(validate(obj(ports=ports, env={"LONGVALUE": "123456789"}), SCHEMA))
    assert got["spec.ports"] == Cause("spec.ports", "FieldValueTooMany", "Too many: 4: must have at most 3 items")
    assert got["spec.env.LONGVALUE"] == Cause("spec.env.LONGVALUE", "FieldValueTooLong",
                                              "Too long: may not be more than 8 bytes")


def test_format_and_int32_range():
    got = validate(obj(createdAfter="yesterday"), SCHEMA)
    assert got == [Cause("spec.createdAfter", "FieldValueTypeInvalid",
                         'Invalid value: "yesterday": spec.createdAfter in body must be of type date-time: '
                         '"yesterday"')]
    got = validate(obj(ports=[{"containerPort": 80, "hostPort": -(2**40)}]), SCHEMA)
    assert Cause("<nil>", "FieldValueInvalid", 'Invalid value: "": Checked value must be of type integer with '
                 "format int32 in spec.ports[0].hostPort") in got


def test_nullable():
    assert validate(obj(labels=None, healthcheck=None), SCHEMA) == []
    got = validate(obj(command=None), SCHEMA)
    assert got == [Cause("spec.command", "FieldValueTypeInvalid",
                         'Invalid value: "null": spec.command in body must be of type array: "null"')]


def test_one_of_and_not_are_reported_like_kube_openapi():
    got = validate(obj(network={}), SCHEMA)
    assert got[0] == Cause("<nil>", "FieldValueInvalid", 'Invalid value: "": "spec.network" must validate one and '
                                                         "only one schema (oneOf). Found none valid")
    assert Cause("spec.network.mode", "FieldValueRequired", "Required value") in got
    got = validate(obj(network={"mode": "a", "ref": "b"}), SCHEMA)
    assert got == [Cause("<nil>", "FieldValueInvalid", 'Invalid value: "": "spec.network" must validate one and '
                                                       "only one schema (oneOf). Found 2 valid alternatives")]
    got = validate(obj(user="root"), SCHEMA)
    assert got == [Cause("<nil>", "FieldValueInvalid",
                         'Invalid value: "": "spec.user" must not validate the schema (not)')]


def test_cel_rules_are_ignored():
    # `user: admin` would fail the CEL rule; it is not evaluated (and does not crash)
    assert validate(obj(user="admin", replicas=0), SCHEMA) == []


def test_list_type_map_and_set_duplicates():
    got = validate(obj(ports=[{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}],
                       capabilities=["A", "B", "A"]), SCHEMA)
    assert Cause("spec.ports[1]", "FieldValueDuplicate", 'Duplicate value: {"containerPort":80}') in got
    assert Cause("spec.capabilities[2]", "FieldValueDuplicate", 'Duplicate value: "A"') in got


def test_embedded_resource_needs_type_meta():
    got = by_field(validate(obj(sidecar={"metadata": {"name": "x"}}), SCHEMA))
    assert got["spec.sidecar.apiVersion"] == Cause("spec.sidecar.apiVersion", "FieldValueRequired", "Required value")
    assert got["spec.sidecar.kind"].reason == "FieldValueRequired"


def test_wrong_type_at_object_level_and_path_prefix():
    got = validate(obj(ports="80"), SCHEMA)
    assert got == [Cause("spec.ports", "FieldValueTypeInvalid",
                         'Invalid value: "string": spec.ports in body must be of type array: "string"')]
    status_schema = SCHEMA["properties"]["status"]
    got = validate({"conditions": [{"status": "True"}]}, status_schema, path="status")
    assert got == [Cause("status.conditions[0].type", "FieldValueRequired", "Required value")]


def test_causes_make_kube_apiserver_message():
    causes = validate(obj(replicas="x", restartPolicy="Sometimes"), SCHEMA)
    err = errors.invalid("LocalContainer", "k3c.io", "web", causes)
    assert err.code == 422
    assert err.message == (
        'LocalContainer.k3c.io "web" is invalid: [spec.replicas: Invalid value: "string": spec.replicas in body '
        'must be of type integer: "string", spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
        '"Always", "OnFailure", "Never"]')


def test_full_pipeline_prune_default_validate():
    o = obj(unknown=True, ports=[{"containerPort": 8080}])
    assert prune(o, SCHEMA) == ["spec.unknown"]
    apply_defaults(o, SCHEMA)
    assert validate(o, SCHEMA) == []
    assert o["spec"]["ports"][0]["protocol"] == "TCP"


# ------------------------------------------------------------------------------------------ CRD checks


def test_valid_crd_passes():
    assert validate_crd(LOCALCONTAINER_CRD) == []


def crd_with(mutate) -> list[Cause]:
    c = copy.deepcopy(LOCALCONTAINER_CRD)
    mutate(c)
    return validate_crd(c)


def test_crd_name_must_be_plural_dot_group():
    def m(c):
        c["metadata"]["name"] = "containers.k3c.io"
    assert crd_with(m) == [Cause("metadata.name", "FieldValueInvalid",
                                 'Invalid value: "containers.k3c.io": must be spec.names.plural+"."+spec.group')]


def test_crd_required_spec_fields():
    def m(c):
        del c["spec"]["group"]
        del c["spec"]["scope"]
        del c["spec"]["names"]["plural"]
        del c["spec"]["names"]["kind"]
        del c["spec"]["names"]["singular"]
    got = by_field(crd_with(m))
    for f in ("spec.group", "spec.scope", "spec.names.plural", "spec.names.kind", "spec.names.singular",
              "spec.names.listKind"):
        assert got[f].reason == "FieldValueRequired", f
        assert got[f].message == "Required value"


def test_crd_singular_and_list_kind_are_defaulted():
    def m(c):
        del c["spec"]["names"]["singular"]
    assert crd_with(m) == []


def test_crd_scope_and_group_values():
    def m(c):
        c["spec"]["scope"] = "Global"
        c["spec"]["group"] = "k3c"
        c["metadata"]["name"] = "localcontainers.k3c"
    got = by_field(crd_with(m))
    assert got["spec.scope"] == Cause("spec.scope", "FieldValueNotSupported",
                                      'Unsupported value: "Global": supported values: "Cluster", "Namespaced"')
    assert got["spec.group"].message == 'Invalid value: "k3c": should be a domain with at least one dot'


@pytest.mark.parametrize("storage_flags", [[False], [True, True]])
def test_crd_needs_exactly_one_storage_version(storage_flags):
    def m(c):
        base = c["spec"]["versions"][0]
        c["spec"]["versions"] = []
        for i, flag in enumerate(storage_flags):
            v = copy.deepcopy(base)
            v["name"] = f"v{i + 1}"
            v["storage"] = flag
            c["spec"]["versions"].append(v)
    got = crd_with(m)
    assert [c.field for c in got] == ["spec.versions"]
    assert got[0].message.endswith(": must have exactly one version marked as storage version")


def test_crd_without_versions():
    def m(c):
        c["spec"]["versions"] = []
    got = crd_with(m)
    assert got == [Cause("spec.versions", "FieldValueInvalid",
                         "Invalid value: []: must have exactly one version marked as storage version")]


def test_crd_schema_required_and_structural():
    def m(c):
        del c["spec"]["versions"][0]["schema"]
    assert crd_with(m) == [Cause("spec.versions[0].schema.openAPIV3Schema", "FieldValueRequired", "Required value")]

    def m2(c):
        s = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        s["properties"]["spec"]["properties"]["image"] = {"description": "no type"}
        s["properties"]["spec"]["properties"]["command"] = {"type": "array"}
    got = by_field(crd_with(m2))
    p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties"
    assert got[f"{p}[image].type"].message == "Required value: must not be empty for specified object fields"
    assert got[f"{p}[command].items"].message == "Required value: must be specified"


def test_crd_root_type_must_be_object():
    def m(c):
        c["spec"]["versions"][0]["subresources"] = {}
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {"type": "string"}
    got = crd_with(m)
    assert Cause("spec.versions[0].schema.openAPIV3Schema.type", "FieldValueInvalid",
                 'Invalid value: "string": must be object at the root') in got

    def m2(c):
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"] = "array"
    got = crd_with(m2)
    assert got[0].field == "spec.versions[0].schema.openAPIV3Schema.type"
    assert got[0].message == ('Invalid value: "array": only "object" is allowed as the type at the root of the '
                              "schema if the status subresource is enabled")


def test_crd_version_name_and_printer_columns():
    def m(c):
        v = c["spec"]["versions"][0]
        v["name"] = "V1"
        v["additionalPrinterColumns"] = [{"name": "X", "type": "text", "jsonPath": ".spec.x"}, {"name": "Y"}]
    got = by_field(crd_with(m))
    assert got["spec.versions[0].name"].message.startswith(
        'Invalid value: "V1": a DNS-1035 label must consist of lower case alphanumeric characters')
    assert got["spec.versions[0].additionalPrinterColumns[0].type"].message == (
        'Invalid value: "text": must be one of boolean,date,integer,number,string')
    assert got["spec.versions[0].additionalPrinterColumns[1].type"].reason == "FieldValueRequired"
    assert got["spec.versions[0].additionalPrinterColumns[1].JSONPath"].reason == "FieldValueRequired"


# ------------------------------------------------------------------------ patterns: Go's regexp (RE2)

NAME_PATTERN = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[name].pattern"


def crd_with_name_pattern(pattern: str) -> list[Cause]:
    def m(c):
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["name"][
            "pattern"] = pattern
    return crd_with(m)


@pytest.mark.parametrize(("pattern", "shown", "error"), [
    ("^(a)\\1$", '"^(a)\\\\1$"', "invalid escape sequence: `\\1`"),  # backreference
    ("^(?=a)", '"^(?=a)"', "invalid or unsupported Perl syntax: `(?=`"),  # lookahead
    ("^(?<!a)b", '"^(?<!a)b"', "invalid or unsupported Perl syntax: `(?<!`"),  # lookbehind
    ("^a++$", '"^a++$"', "invalid nested repetition operator: `++`"),  # possessive
    ("+", '"+"', "missing argument to repetition operator: `+`"),
    ("^(a", '"^(a"', "missing closing ): `^(a`"),
    ("a{1001}", '"a{1001}"', "invalid repeat count: `{1001}`"),
    ("\\C", '"\\\\C"', "invalid escape sequence: `\\C`"),  # RE2's any-byte escape, which Go lacks
])
def test_crd_pattern_must_be_a_go_regexp(pattern, shown, error):
    assert crd_with_name_pattern(pattern) == [Cause(
        NAME_PATTERN, "FieldValueInvalid",
        f"Invalid value: {shown}: must be a valid regular expression, but isn't: error parsing regexp: {error}")]


def test_crd_patterns_are_checked_everywhere_in_the_schema():
    def m(c):
        spec = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["command"]["items"]["pattern"] = "(a)\\1"
        spec["properties"]["env"]["additionalProperties"]["pattern"] = "(?!x)"
        spec["properties"]["memory"]["anyOf"][1]["pattern"] = "a**"
    p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties"
    assert [c.field for c in crd_with(m)] == [f"{p}[command].items.pattern", f"{p}[memory].anyOf[1].pattern",
                                              f"{p}[env].additionalProperties.pattern"]


def test_crd_with_re2_patterns_passes():
    assert crd_with_name_pattern("^(?i)[a-z]+(?P<n>\\d{1,3})?\\z") == []


def string_schema(pattern: str) -> dict:
    return {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}


def test_pattern_matches_with_go_semantics():
    s = string_schema("^[a-z]+\\d{2}$")
    assert validate({"s": "abc12"}, s) == []
    assert validate({"s": "xx abc12"}, s) != []
    # `$` is the end of the text (Python's `$` would also match before a final newline)
    assert validate({"s": "abc12\n"}, s) == [Cause(
        "s", "FieldValueInvalid", "Invalid value: \"abc12\\n\": s in body should match '^[a-z]+\\d{2}$'")]
    # \d is ASCII only, as in Go
    assert validate({"s": "abc\u0661\u0662"}, s) != []
    assert validate({"s": "abc12"}, string_schema("[0-9]")) == []  # unanchored, like MatchString


def test_pathological_pattern_runs_in_linear_time():
    # A backtracking engine takes exponential time here; RE2 answers at once.
    s = string_schema("^(a+)+$")
    started = time.monotonic()
    got = validate({"s": "a" * 100_000 + "b"}, s)
    assert time.monotonic() - started < 5
    assert [(c.field, c.message.endswith("s in body should match '^(a+)+$'")) for c in got] == [("s", True)]
    assert validate({"s": "a" * 100_000}, s) == []


def test_pattern_go_refuses_never_matches_an_object():
    # A CRD stored before its pattern was checked: kube-openapi reports the pattern as invalid.
    got = validate({"s": "aa"}, string_schema("^(a)\\1$"))
    assert got == [Cause("s", "FieldValueInvalid",
                         "Invalid value: \"aa\": s in body should match '^(a)\\1$, but pattern is invalid: "
                         "error parsing regexp: invalid escape sequence: `\\1`'")]
    # patternProperties use RE2 too: the backreference matches no key, so `aa` is a forbidden property
    s = {"type": "object", "patternProperties": {"^(a)\\1$": {"type": "integer"}}, "additionalProperties": False}
    assert [c.message for c in validate({"aa": "x"}, s)] == ['Invalid value: "aa": .aa in body is a forbidden property']
