"""Go's renderings of values (strconv.Quote, fmt %v, json.Marshal), as the server's messages use them."""

from __future__ import annotations

import pytest

from k3c.apiserver import lifecycle
from k3c.apiserver.goformat import format_number, marshal_json, quote
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.selectors import parse_label_selector


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
    ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
    ("é 😀", '"é 😀"'),  # printable characters stay as they are
    ("\u00a0\u200b\u2028\U000e0001", '"\\u00a0\\u200b\\u2028\\U000e0001"'),
])
def test_quote_is_strconv_quote(text, quoted):
    assert quote(text) == quoted


@pytest.mark.parametrize(("value", "shown"), [
    (3, "3"), (True, "true"), (2.5, "2.5"), (100.0, "100"), (1e6, "1e+06"), (123456.0, "123456"),
    (1e-5, "1e-05"), (0.0001, "0.0001"), (-0.0, "-0"), (float("inf"), "+Inf"),
])
def test_format_number_is_percent_v(value, shown):
    assert format_number(value) == shown


def test_marshal_json_is_encoding_json():
    assert marshal_json({"b": [1, 2.0, None], "a": "<&>"}) == '{"a":"\\u003c\\u0026\\u003e","b":[1,2,null]}'


def test_selectors_and_names_quote_like_go():
    with pytest.raises(ValueError) as err:
        parse_label_selector("a=b\x01")
    assert 'Invalid value: "b\\x01": a valid label' in str(err.value)
    configmaps = ResourceType(group="", version="v1", plural="configmaps", kind="ConfigMap", namespaced=True)
    [cause] = lifecycle.validate_name(configmaps, 'a\\"b')
    assert cause.message.startswith('Invalid value: "a\\\\\\"b": a lowercase RFC 1123 subdomain')
