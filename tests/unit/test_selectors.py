"""Unit tests for k3c.apiserver.selectors: label/field selector parsing, matching and per-kind fields.

Messages are compared with what kube-apiserver (k8s.io/apimachinery labels/fields) says.
"""

from __future__ import annotations

import pytest

from k3c.apiserver.selectors import (
    DOES_NOT_EXIST,
    EQUALS,
    EXISTS,
    IN,
    NOT_EQUALS,
    FieldRequirement,
    Requirement,
    check_field_selector,
    escape_field_value,
    from_label_selector_dict,
    label_key_errors,
    label_value_errors,
    new_requirement,
    object_fields,
    parse_field_selector,
    parse_label_selector,
    supported_field_labels,
)

VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

# ------------------------------------------------------------------------------------ label parsing


@pytest.mark.parametrize(
    ("text", "requirements"),
    [
        ("", ()),
        ("a=b", (Requirement("a", EQUALS, ("b",)),)),
        ("a==b", (Requirement("a", "==", ("b",)),)),
        ("a!=b", (Requirement("a", NOT_EQUALS, ("b",)),)),
        ("a", (Requirement("a", EXISTS),)),
        ("!a", (Requirement("a", DOES_NOT_EXIST),)),
        ("a>3", (Requirement("a", "gt", ("3",)),)),
        ("a<30", (Requirement("a", "lt", ("30",)),)),
        ("a in (y,x,x)", (Requirement("a", IN, ("x", "y")),)),
        ("a notin (x)", (Requirement("a", "notin", ("x",)),)),
        ("a=", (Requirement("a", EQUALS, ("",)),)),
        ("a in ()", (Requirement("a", IN, ("",)),)),
        ("a in (,x)", (Requirement("a", IN, ("", "x")),)),
        ("a in (x,)", (Requirement("a", IN, ("", "x")),)),
        ("a in (x,,y)", (Requirement("a", IN, ("", "x", "y")),)),
        ("in in (in,notin)", (Requirement("in", IN, ("in", "notin")),)),
        ("example.com/app-name=My_v.1", (Requirement("example.com/app-name", EQUALS, ("My_v.1",)),)),
    ],
)
def test_parse_label_selector(text: str, requirements: tuple[Requirement, ...]) -> None:
    assert parse_label_selector(text).requirements == requirements


def test_parse_is_whitespace_tolerant_and_sorted_by_key() -> None:
    sel = parse_label_selector("  z notin ( a , b ) ,\tb  ==  1,a,!c ")
    assert [r.key for r in sel.requirements] == ["a", "b", "c", "z"]
    assert str(sel) == "a,b==1,!c,z notin (a,b)"


def test_selector_string_round_trips() -> None:
    text = "a in (x,y),b!=c,d>4"
    assert str(parse_label_selector(text)) == text
    assert parse_label_selector(str(parse_label_selector(text))) == parse_label_selector(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a notin", "unable to parse requirement: found '' expected: '('"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
        ("a in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        (
            "a>x",
            'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        ("-a", f'unable to parse requirement: <nil>: Invalid value: "-a": {NAME_RULE}'),
        ("a=b!", "found '!', expected: ',' or 'end of string'"),
        ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {VALUE_RULE}'),
        (
            "a=" + "v" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": must be no more than 63 bytes',
        ),
    ],
)
def test_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_label_selector(text)
    assert str(err.value).startswith(message)


def test_gt_with_negative_value_reports_both_problems() -> None:
    with pytest.raises(ValueError) as err:
        parse_label_selector("a>-1")
    # -1 is an integer but not a valid label value.
    assert str(err.value) == f'unable to parse requirement: values[0][a]: Invalid value: "-1": {VALUE_RULE}'


def test_invalid_key_messages() -> None:
    assert label_key_errors("ok.example/ok") == []
    assert label_key_errors("Caps.Are.Bad/x")[0].startswith("prefix part a lowercase RFC 1123 subdomain")
    assert label_key_errors("/x") == ["prefix part must be non-empty"]
    assert label_key_errors("p/")[0] == "name part must be non-empty"
    assert label_key_errors("a/b/c")[0].startswith("a valid label key must consist of")
    assert label_key_errors("k" * 64) == ["name part must be no more than 63 bytes"]
    assert label_key_errors("p" * 254 + "/x")[0] == "prefix part must be no more than 253 bytes"


def test_label_values() -> None:
    assert label_value_errors("") == []
    assert label_value_errors("a.b-c_d") == []
    assert label_value_errors("a\n") != []  # Go's $ does not match before a trailing newline
    assert label_value_errors("é") != []


# ------------------------------------------------------------------------------------ label matching


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a==b", {"a": "b", "x": "y"}, True),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a!=b", {"a": "c"}, True),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {"a": "z"}, False),
        ("a in (x,y)", {}, False),
        ("a notin (x)", {}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("a", {"b": "1"}, False),
        ("!a", {}, True),
        ("!a", {"a": ""}, False),
        ("a=", {"a": ""}, True),
        ("a=", {}, False),
        ("a>3", {"a": "4"}, True),
        ("a>3", {"a": "3"}, False),
        ("a>3", {"a": "+10"}, True),
        ("a>3", {"a": "x"}, False),
        ("a>3", {"a": " 4"}, False),
        ("a>3", {"a": "1_0"}, False),
        ("a>3", {}, False),
        ("a<3", {"a": "-7"}, True),
        ("a<3", {"a": "99999999999999999999"}, False),
        ("a=b,c", {"a": "b"}, False),
        ("a=b,c", {"a": "b", "c": "d"}, True),
    ],
)
def test_label_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_matches_accepts_none_labels() -> None:
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


def test_new_requirement_validates() -> None:
    assert new_requirement("a", IN, ["x"]) == Requirement("a", IN, ("x",))
    with pytest.raises(ValueError, match="exact-match compatibility requires one single value"):
        new_requirement("a", EQUALS, ["x", "y"])
    with pytest.raises(ValueError, match="values set must be empty for exists and does not exist"):
        new_requirement("a", EXISTS, ["x"])
    with pytest.raises(ValueError, match='operator: Unsupported value: "~"'):
        new_requirement("a", "~", [])


def test_new_requirement_aggregates_errors() -> None:
    with pytest.raises(ValueError) as err:
        new_requirement("-k", IN, [])
    text = str(err.value)
    assert text.startswith('[key: Invalid value: "-k": ') and text.endswith(
        "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty]"
    )


# ----------------------------------------------------------------------------- metav1.LabelSelector


def test_from_label_selector_dict() -> None:
    sel = from_label_selector_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "gone", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    assert [r.key for r in sel.requirements] == ["app", "env", "gone", "team", "tier"]
    assert sel.matches({"app": "web", "tier": "b", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "b", "team": "x", "gone": "1"})
    assert not sel.matches({"app": "web", "tier": "b", "team": "x", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "c", "team": "x"})


def test_from_label_selector_dict_empty_and_none() -> None:
    assert from_label_selector_dict({}).matches({"any": "thing"})
    assert from_label_selector_dict({}).empty()
    nothing = from_label_selector_dict(None)
    assert not nothing.matches({}) and not nothing.empty()


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid label selector operator',
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values set can't be empty"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "values set must be empty",
        ),
        ({"matchLabels": {"a": "bad value"}}, 'values[0][a]: Invalid value: "bad value"'),
        ({"matchLabels": {"a": 1}}, "must be strings"),
    ],
)
def test_from_label_selector_dict_errors(d: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        from_label_selector_dict(d)
    assert message in str(err.value)


# ------------------------------------------------------------------------------------ field selectors


@pytest.mark.parametrize(
    ("text", "requirements"),
    [
        ("", ()),
        ("metadata.name=foo", (FieldRequirement("metadata.name", EQUALS, "foo"),)),
        ("metadata.name==foo", (FieldRequirement("metadata.name", EQUALS, "foo"),)),
        ("type!=Opaque", (FieldRequirement("type", NOT_EQUALS, "Opaque"),)),
        ("b=2,a=1", (FieldRequirement("a", EQUALS, "1"), FieldRequirement("b", EQUALS, "2"))),
        ("a=", (FieldRequirement("a", EQUALS, ""),)),
        ("a!=", (FieldRequirement("a", NOT_EQUALS, ""),)),
        ("a=x\\,y", (FieldRequirement("a", EQUALS, "x,y"),)),
        ("a=x\\=y\\\\", (FieldRequirement("a", EQUALS, "x=y\\"),)),
        ("a=b\\,c", (FieldRequirement("a", EQUALS, "b,c"),)),
        ("=", ()),
        ("==,,a=1,", (FieldRequirement("a", EQUALS, "1"),)),
        (" a = b ", (FieldRequirement(" a ", EQUALS, " b "),)),
        ("=v", (FieldRequirement("", EQUALS, "v"),)),
    ],
)
def test_parse_field_selector(text: str, requirements: tuple[FieldRequirement, ...]) -> None:
    assert parse_field_selector(text).requirements == requirements


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("x=1,a", "invalid selector: 'x=1,a'; can't understand 'a'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a!=b==c", "invalid field selector: unescaped character in value: 61"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b\\\\,c", "invalid selector: 'a=b\\\\,c'; can't understand 'c'"),  # \\ then a real comma
        ("a=b\\c", "invalid field selector: invalid escape sequence: \\c"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_field_selector(text)
    assert str(err.value) == message


def test_field_selector_matching_and_fields() -> None:
    sel = parse_field_selector("metadata.name=a,status.phase!=Terminating")
    assert sel.fields() == {"metadata.name", "status.phase"}
    assert sel.matches({"metadata.name": "a", "status.phase": "Active"})
    assert not sel.matches({"metadata.name": "a", "status.phase": "Terminating"})
    assert not sel.matches({"metadata.name": "b", "status.phase": "Active"})
    # A missing field reads as the empty string.
    assert parse_field_selector("x=").matches({})
    assert not parse_field_selector("x!=").matches({})
    assert parse_field_selector("").matches({}) and parse_field_selector("").empty()


def test_escape_round_trip() -> None:
    value = "a,b=c\\d"
    sel = parse_field_selector("f=" + escape_field_value(value))
    assert sel.requirements == (FieldRequirement("f", EQUALS, value),)
    assert parse_field_selector(str(sel)) == sel


# ---------------------------------------------------------------------------------- per-kind fields


def test_supported_field_labels() -> None:
    assert supported_field_labels("ConfigMap") == {"metadata.name", "metadata.namespace"}
    assert supported_field_labels("Namespace") == {"metadata.name", "status.phase"}
    assert supported_field_labels("Secret") == {"metadata.name", "metadata.namespace", "type"}
    assert "reportingComponent" in supported_field_labels("Event")
    assert supported_field_labels("Event", "events.k8s.io/v1") == {"metadata.name", "metadata.namespace"}
    assert supported_field_labels("Widget", "example.com/v1") == {"metadata.name", "metadata.namespace"}


def test_check_field_selector() -> None:
    check_field_selector(parse_field_selector("type=Opaque,metadata.name=x"), "Secret")
    with pytest.raises(ValueError, match="^field label not supported: metadata.namespace$"):
        check_field_selector(parse_field_selector("metadata.namespace=x"), "Namespace")
    with pytest.raises(ValueError, match="^field label not supported: spec.x$"):
        check_field_selector(parse_field_selector("z=1,spec.x=1"), "Widget", "example.com/v1")
    check_field_selector(parse_field_selector("=,metadata.name=a"), "ConfigMap")  # dropped terms are fine


def test_object_fields_configmap_and_custom_resource() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
    assert object_fields(cm, "ConfigMap") == {"metadata.name": "c", "metadata.namespace": "ns"}
    cluster_cr = {"apiVersion": "example.com/v1", "kind": "Event", "metadata": {"name": "w"}, "reason": "x"}
    assert object_fields(cluster_cr, "Event") == {"metadata.name": "w", "metadata.namespace": ""}


def test_object_fields_namespace_and_secret() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}, "status": {"phase": "Active"}}
    assert object_fields(ns, "Namespace") == {"metadata.name": "n", "status.phase": "Active"}
    assert object_fields({"metadata": {"name": "n"}}, "Namespace") == {
        "metadata.name": "n",
        "status.phase": "",
    }
    secret = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"}
    assert object_fields(secret, "Secret") == {
        "metadata.name": "s",
        "metadata.namespace": "d",
        "type": "kubernetes.io/tls",
    }


def test_object_fields_event() -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "namespace": "default",
            "name": "p",
            "uid": "u-1",
            "apiVersion": "v1",
            "resourceVersion": "42",
            "fieldPath": "spec.containers{c}",
        },  # fmt: skip
        "reason": "Started",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node"},
        "reportingComponent": "kubelet-x",
    }
    fields = object_fields(event, "Event")
    assert fields == {
        "metadata.name": "e1",
        "metadata.namespace": "default",
        "involvedObject.kind": "Pod",
        "involvedObject.namespace": "default",
        "involvedObject.name": "p",
        "involvedObject.uid": "u-1",
        "involvedObject.apiVersion": "v1",
        "involvedObject.resourceVersion": "42",
        "involvedObject.fieldPath": "spec.containers{c}",
        "reason": "Started",
        "reportingComponent": "kubelet-x",
        "source": "kubelet",
        "type": "Normal",
    }
    assert set(fields) == supported_field_labels("Event")
    assert parse_field_selector("involvedObject.name=p,type=Normal").matches(fields)


def test_event_source_falls_back_to_reporting_component() -> None:
    event = {"metadata": {"name": "e"}, "reportingComponent": "ctrl", "source": {}}
    fields = object_fields(event, "Event")
    assert fields["source"] == "ctrl" and fields["involvedObject.name"] == "" and fields["reason"] == ""
