"""``X-Registry-Auth``: the credentials a docker client sends with one pull or push, used for that call only.

The header is base64url JSON (``{"username", "password", "serveraddress"}`` or ``{"identitytoken"}``).
The operator reads registry credentials only from a dockerconfigjson Secret an object names
(``spec.authSecret``), so a call with credentials gets a Secret of its own in k3c's credentials namespace,
named for nothing but that call, which is deleted when the call ends; the Secret `k3c login` keeps is never
written. A header without credentials (clients send ``{}``) means the default credentials.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from k3c import apierrors
from k3c.api import SECRETS
from k3c.distribution.auth import SECRET_NAMESPACE, SECRET_TYPE, Credentials, DockerConfig
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter
from k3c.imagelife import auth_secret

HEADER = "X-Registry-Auth"
SECRET_PREFIX = "k3c-docker-call-"


def credentials(request: web.Request) -> Credentials | None:
    """The header's credentials, None when it carries none; a header that is not base64 JSON is a 400."""
    raw = request.headers.get(HEADER, "").strip()
    if not raw:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise BadParameter(f"invalid {HEADER} header: not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise BadParameter(f"invalid {HEADER} header: want a JSON object")
    username, password = str(doc.get("username") or ""), str(doc.get("password") or "")
    token = str(doc.get("identitytoken") or "")
    if not (username and password) and not token:
        return None
    return Credentials(username, password, token)


@contextlib.asynccontextmanager
async def call_secret(cluster: Cluster, request: web.Request, host: str) -> AsyncIterator[dict[str, str] | None]:
    """``spec.authSecret`` for this call's credentials for ``host`` (None: none sent), deleted on the way out."""
    creds = credentials(request)
    if creds is None:
        yield None
        return
    config = DockerConfig()
    config.set(host, creds)
    name = SECRET_PREFIX + uuid.uuid4().hex[:12]
    body = {"apiVersion": SECRETS.api_version, "kind": SECRETS.kind, "type": SECRET_TYPE,
            "metadata": {"name": name, "namespace": SECRET_NAMESPACE}, "data": config.secret_data()}
    await cluster.call(lambda c: c.create(SECRETS.path(SECRET_NAMESPACE), body))
    try:
        yield auth_secret(SECRET_NAMESPACE, name)
    finally:
        with contextlib.suppress(apierrors.APIError, OSError):
            await cluster.call(lambda c: c.delete(SECRETS.path(SECRET_NAMESPACE, name)))
