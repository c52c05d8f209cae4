"""The Docker API's version range: dockerd's words for versions it does not serve (k3c/dockerapi/versions.py)."""

from __future__ import annotations

import pytest

from k3c.dockerapi import versions
from k3c.dockerapi.errors import BadParameter


@pytest.mark.parametrize("version", [None, "1.24", "1.30", "1.41"])
def test_served_versions_pass(version):
    versions.check(version)


@pytest.mark.parametrize(("version", "words"), [
    ("1.42", "client version 1.42 is too new. Maximum supported API version is 1.41"),
    ("2.0", "is too new"),
    ("1.23", "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade"),
    ("1.9", "is too old"),  # 1.9 < 1.24 as numbers, not as text
])
def test_other_versions_are_refused_as_dockerd_refuses_them(version, words):
    with pytest.raises(BadParameter, match=words.replace(".", r"\.")):
        versions.check(version)
