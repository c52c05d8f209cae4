"""Build entitlements, as BuildKit's: what a build may do beyond a container's confinement only if allowed.

k3c knows one, ``network.host``: RUN steps in the node's network namespace (``RUN --network=host``, or
``docker build --network host`` for every RUN). A Dockerfile is untrusted input, so it cannot grant itself
the host's network: whoever starts the build does, with ``k3c build --allow network.host`` (docker buildx's
flag) or ``spec.allow`` on the ImageBuild. ``--network host`` on the command line asks for it too, as buildx
does. Without it the build fails with BuildKit's words, "network.host is not allowed", before any step
runs, even when an identical build is cached (BuildKit checks when it loads the build, before its cache).

``security.insecure`` (privileged RUN steps) is not supported.
"""

from __future__ import annotations

from collections.abc import Collection

from k3c.builder.engine import BuildFailed

__all__ = ["NETWORK_HOST", "SECURITY_INSECURE", "SUPPORTED", "require"]

NETWORK_HOST = "network.host"
SECURITY_INSECURE = "security.insecure"
#: The entitlements a k3c build can be allowed.
SUPPORTED = (NETWORK_HOST,)


def require(entitlement: str, allowed: Collection[str]) -> None:
    """BuildFailed (BuildKit's wording) unless ``entitlement`` was allowed."""
    if entitlement not in allowed:
        raise BuildFailed(f"{entitlement} is not allowed")
