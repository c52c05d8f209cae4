"""The API versions served: 1.41 (docker 20.10) down to 1.24, on ``/v1.NN/…`` paths and unversioned ones.

A client that names a version outside that range hears dockerd's 400, so it can tell it needs to
negotiate (the docker CLI and docker-py ask ``/_ping`` or ``/version`` first and then use 1.41).
"""

from __future__ import annotations

import re

from k3c.dockerapi.errors import BadParameter

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
#: the path prefix of a versioned request, as a route pattern (its value lands in ``match_info["version"]``)
VERSION_PREFIX = r"/v{version:[0-9]+\.[0-9]+}"
_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)$")


def _parsed(version: str) -> tuple[int, int]:
    m = _VERSION.match(version)
    if m is None:
        raise BadParameter(f"invalid API version {version!r}")
    return int(m.group(1)), int(m.group(2))


def check(version: str | None) -> None:
    """Refuse a requested version outside [MIN_API_VERSION, API_VERSION] with dockerd's messages."""
    if version is None:
        return
    asked = _parsed(version)
    if asked > _parsed(API_VERSION):
        raise BadParameter(f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
    if asked < _parsed(MIN_API_VERSION):
        raise BadParameter(f"client version {version} is too old. Minimum supported API version is "
                           f"{MIN_API_VERSION}, please upgrade your client to a newer version")
