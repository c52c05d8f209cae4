"""k3c.apierrors: an HTTP code and a Status body become the class of their meaning, with every field kept."""

from __future__ import annotations

import pytest

from k3c import apierrors
from k3c.apierrors import (
    AlreadyExists,
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
    from_status,
)


def status(code: int, reason: str, message: str = "m", **details: object) -> dict[str, object]:
    """A metav1.Status as kube-apiserver (and k3c's) sends it."""
    doc: dict[str, object] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}
    if details:
        doc["details"] = details
    return doc


@pytest.mark.parametrize("code,reason,cls", [
    (400, "BadRequest", BadRequest),
    (401, "Unauthorized", Unauthorized),
    (403, "Forbidden", Forbidden),
    (404, "NotFound", NotFound),
    (409, "AlreadyExists", AlreadyExists),
    (409, "Conflict", Conflict),
    (410, "Expired", Gone),
    (410, "Gone", Gone),
    (422, "Invalid", Invalid),
    (429, "TooManyRequests", TooManyRequests),
    (500, "InternalError", ServerError),
    (503, "ServiceUnavailable", ServerError),
    (504, "Timeout", ServerError),
    (405, "MethodNotAllowed", APIError),
    (415, "UnsupportedMediaType", APIError),
])
def test_each_code_maps_to_the_class_of_its_meaning(code: int, reason: str, cls: type[APIError]) -> None:
    err = from_status(code, status(code, reason))
    assert type(err) is cls
    assert (err.code, err.reason, err.message) == (code, reason, "m")


def test_a_409_is_already_exists_only_by_its_reason() -> None:
    """The code alone cannot tell a taken name from a lost race; no reason at all is the race (Conflict)."""
    assert type(from_status(409, {})) is Conflict
    assert type(from_status(409, status(409, "Conflict"))) is Conflict
    taken = from_status(409, status(409, "AlreadyExists"))
    assert isinstance(taken, Conflict), "except Conflict still means any 409"
    assert not isinstance(from_status(409, status(409, "Conflict")), AlreadyExists)


def test_every_class_is_an_api_error_and_siblings_do_not_overlap() -> None:
    classes = [BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, Invalid, TooManyRequests, ServerError]
    assert all(issubclass(c, APIError) for c in [*classes, AlreadyExists])
    for a in classes:
        for b in classes:
            assert a is b or not issubclass(a, b), (a, b)
    assert set(apierrors.__all__) >= {c.__name__ for c in classes}


def test_details_and_the_whole_status_are_kept() -> None:
    body = status(404, "NotFound", 'localcontainers.k3c.io "web" not found', name="web", group="k3c.io",
                  kind="localcontainers")
    err = from_status(404, body)
    assert isinstance(err, NotFound)
    assert err.details == {"name": "web", "group": "k3c.io", "kind": "localcontainers"}
    assert err.status == body
    assert str(err) == 'localcontainers.k3c.io "web" not found'


def test_a_404_for_a_resource_type_has_no_name_in_its_details() -> None:
    """What the CLI tells apart: no such object (details.name) vs the CRDs are not installed (none)."""
    err = from_status(404, status(404, "NotFound", "the server could not find the requested resource"))
    assert isinstance(err, NotFound) and "name" not in err.details


def test_invalid_keeps_the_causes() -> None:
    causes = [{"reason": "FieldValueNotSupported", "message": "Unsupported value", "field": "spec.restartPolicy"}]
    err = from_status(422, status(422, "Invalid", "LocalContainer.k3c.io \"x\" is invalid", causes=causes))
    assert isinstance(err, Invalid) and err.details["causes"] == causes


@pytest.mark.parametrize("body,fallback,expected", [
    ({}, "upstream connect error", "upstream connect error"),  # not a Status: the raw body
    ({"message": ""}, "raw", "raw"),
    ({"message": "from the Status"}, "raw", "from the Status"),
    (None, "", ""),
])
def test_the_message_falls_back_when_the_body_has_none(body, fallback: str, expected: str) -> None:
    err = from_status(502, body, fallback)
    assert isinstance(err, ServerError) and err.message == expected and err.reason == ""
    assert err.status == (body or {}) and err.details == {}


def test_a_watch_error_event_object_maps_like_a_response() -> None:
    """A watch's ERROR event carries a Status with its own code (410 when the history was compacted)."""
    err = from_status(410, status(410, "Expired", "too old resource version: 1 (42)"))
    assert isinstance(err, Gone) and err.reason == "Expired"
