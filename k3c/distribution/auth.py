"""Registry credentials: kept in a ``kubernetes.io/dockerconfigjson`` Secret, used for basic and token auth.

Why a Secret of that type: it is the format kubelet's ``imagePullSecrets`` and ``kubectl create secret
docker-registry`` use, so the same credentials work for k3c, for kubectl users and for tools reading them.
``k3c login`` writes ``kube-system/k3c-registry-auth`` (:data:`SECRET_NAMESPACE`/:data:`SECRET_NAME`);
pulls, pushes and tags read it unless an object names another Secret.

Registries ask for credentials with a ``WWW-Authenticate`` challenge on a 401: ``Basic`` (send them on
every request) or ``Bearer realm=…,service=…,scope=…`` (trade them at the realm for a short-lived token
per repository scope, distribution's token protocol; an identity token is a refresh token for OAuth2).
:class:`Authenticator` answers either kind and caches tokens per scope set. The realm is named by the
registry, so it may be anywhere: credentials go to it only where the host settings let them travel
(HTTPS, or plain HTTP to a loopback or insecure host); elsewhere the token request is refused, not sent.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RegistryError, Unauthorized, Unreachable

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DOCKER_HUB_KEY",
    "SECRET_NAME",
    "SECRET_NAMESPACE",
    "SECRET_TYPE",
    "Authenticator",
    "Challenge",
    "Credentials",
    "DockerConfig",
    "parse_challenges",
]

SECRET_NAMESPACE = "kube-system"
SECRET_NAME = "k3c-registry-auth"
SECRET_TYPE = "kubernetes.io/dockerconfigjson"
SECRET_KEY = ".dockerconfigjson"
#: docker keeps Docker Hub's credentials under this legacy key; other hosts under ``host[:port]``.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``docker login`` stores for one registry (an identity token replaces the password for OAuth2)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def server_key(server: str) -> str:
    """The key a registry's entry has in ``auths``: bare ``host[:port]``, Docker Hub's legacy URL."""
    host = re.sub(r"^[a-z]+://", "", server.strip()).split("/", 1)[0]
    return DOCKER_HUB_KEY if host in _HUB_ALIASES else host


@dataclass(slots=True)
class DockerConfig:
    """The ``.dockerconfigjson`` document: ``{"auths": {server: {"auth": base64(user:pass), ...}}}``."""

    auths: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> DockerConfig:
        if not raw:
            return cls()
        doc = json.loads(raw)
        return cls(dict(doc.get("auths") or {}))

    @classmethod
    def from_secret(cls, secret: dict[str, Any] | None) -> DockerConfig:
        """From a Secret object as the API returns it (``data`` values are base64)."""
        data = (secret or {}).get("data") or {}
        raw = data.get(SECRET_KEY)
        return cls.from_json(base64.b64decode(raw) if raw else None)

    def to_json(self) -> bytes:
        return json.dumps({"auths": self.auths}, sort_keys=True, indent=1).encode()

    def secret_data(self) -> dict[str, str]:
        """``data`` of the Secret holding this document."""
        return {SECRET_KEY: base64.b64encode(self.to_json()).decode()}

    def lookup(self, host: str) -> Credentials | None:
        """Credentials for a registry host (``docker.io`` finds Docker Hub's legacy entry)."""
        want = server_key(host)
        for key, entry in self.auths.items():
            if server_key(key) == want:
                return _entry_credentials(entry)
        return None

    def set(self, server: str, creds: Credentials) -> None:
        entry: dict[str, Any] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
        if creds.username:
            entry["username"] = creds.username
            entry["password"] = creds.password
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
        self.remove(server)
        self.auths[server_key(server)] = entry

    def remove(self, server: str) -> bool:
        want = server_key(server)
        doomed = [k for k in self.auths if server_key(k) == want]
        for k in doomed:
            del self.auths[k]
        return bool(doomed)


def _entry_credentials(entry: dict[str, Any]) -> Credentials:
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth") and not (user and password):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return Credentials(user, password, entry.get("identitytoken", ""))


# ------------------------------------------------------------------------------------------ challenges


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="…",service="…", Basic realm="…"`` into challenges (RFC 7235, as registries use it)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9-]*)\s*", rest)
        if not m:
            break
        scheme, rest = m.group(1).lower(), rest[m.end():]
        params: dict[str, str] = {}
        while rest:
            pm = _PARAM_RE.match(rest)
            if not pm or (pm.group(2) is None and re.match(r"[A-Za-z][A-Za-z0-9-]*\s+[A-Za-z]", rest)):
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end():]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Answers one registry's challenges with the given credentials; caches bearer tokens per scope set."""

    def __init__(self, credentials: Credentials | None,
                 may_send_credentials: Callable[[str], bool] = lambda url: url.startswith("https://")) -> None:
        self.credentials = credentials
        #: whether credentials may go to a token realm's URL (:meth:`HostSettings.may_send_credentials`)
        self.may_send_credentials = may_send_credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}

    @property
    def challenged(self) -> bool:
        return self._challenge is not None

    def header(self, scopes: Iterable[str]) -> str | None:
        """The Authorization header to send with a request needing ``scopes``, if one is known."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self.credentials.basic() if self.credentials else None
        token = self._tokens.get(tuple(sorted(scopes)))
        if token is not None and token.expires > time.monotonic():
            return f"Bearer {token.value}"
        return None

    async def respond(self, session: aiohttp.ClientSession, www_authenticate: str, scopes: Iterable[str]) -> bool:
        """Handle a 401's challenge; True if a retry with :meth:`header` can succeed."""
        challenges = {c.scheme: c for c in parse_challenges(www_authenticate)}
        wanted = tuple(sorted(scopes))
        if "bearer" in challenges:
            ch = challenges["bearer"]
            self._challenge = ch
            extra = ch.params.get("scope")
            scope_list = sorted(set(wanted) | ({extra} if extra else set()))
            self._tokens[wanted] = await self._fetch_token(session, ch, scope_list)
            return True
        if "basic" in challenges:
            if self.credentials is None or (self._challenge is not None and self._challenge.scheme == "basic"):
                return False  # no credentials, or they were just refused
            self._challenge = challenges["basic"]
            return True
        return False

    async def _fetch_token(self, session: aiohttp.ClientSession, ch: Challenge, scopes: list[str]) -> _Token:
        import aiohttp

        realm = ch.params.get("realm")
        if not realm:
            raise RegistryError("bearer challenge without realm")
        creds = self.credentials
        if creds is not None and (creds.username or creds.identity_token) and not self.may_send_credentials(realm):
            host = urllib.parse.urlsplit(realm).netloc.rpartition("@")[2]
            raise Unauthorized(f"credentials not sent to the token realm {realm}: it is not HTTPS (mark {host} "
                               "insecure in the k3c-registries ConfigMap to allow it)", 401, "UNAUTHORIZED")
        params: list[tuple[str, str]] = [("service", ch.params.get("service", ""))]
        params += [("scope", s) for s in scopes]
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "service": ch.params.get("service", ""), "scope": " ".join(scopes), "client_id": "k3c"}
                resp_ctx = session.post(realm, data=form)
            else:
                headers = {"Authorization": creds.basic()} if creds and creds.username else {}
                resp_ctx = session.get(realm, params=params, headers=headers)
            async with resp_ctx as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unreachable(f"token server {realm}: {err}") from None
        if status in (401, 403):
            raise Unauthorized("unauthorized: incorrect username or password", status, "UNAUTHORIZED")
        if status >= 400:
            raise RegistryError(f"token server {realm} answered HTTP {status}", status)
        doc = json.loads(body or b"{}")
        value = doc.get("token") or doc.get("access_token")
        if not value:
            raise RegistryError(f"token server {realm} returned no token")
        ttl = max(10, int(doc.get("expires_in") or 60))
        return _Token(value, time.monotonic() + ttl - 5)
