"""ServiceAccounts as identities: tokens issued for them, checked against the objects they name.

- :class:`TokenAuthenticator` turns a bearer token into the ServiceAccount's user
  (``system:serviceaccount:NS:NAME`` in ``system:serviceaccounts``, ``system:serviceaccounts:NS`` and
  ``system:authenticated``), as kube's ServiceAccount token authenticator does: the signature and times
  (:mod:`k3c.apiserver.satokens`), then the objects. The ServiceAccount must still exist with the uid the
  token names; a legacy token's Secret must still exist and hold that very token; a bound token's Pod or
  Secret must still exist with its uid. Deleting any of them invalidates the token at once.
- :class:`TokenRequests` serves ``POST .../serviceaccounts/NAME/token`` (a TokenRequest,
  ``kubectl create token``) through the subresource seam.
- :class:`TokenSecrets` is kube's token controller: a Secret of type ``kubernetes.io/service-account-token``
  annotated with ``kubernetes.io/service-account.name`` gets ``token``, ``ca.crt`` and ``namespace``; when its
  ServiceAccount goes, so do the Secrets filled for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from k3c.apiserver import codec, errors, satokens
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.rest import ResourceAPI, WriteOptions
from k3c.apiserver.satokens import BoundRef, Claims, InvalidToken, Signer
from k3c.apiserver.storage import Store
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest, User

log = logging.getLogger(__name__)

TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"
#: kube's user extra keys for ServiceAccount tokens
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2**32
#: who the token controller's writes are made as
CONTROLLER = User("system:serviceaccount:kube-system:tokens-controller",
                  ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))


def service_account_user(namespace: str, name: str, uid: str = "",
                         extra: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"), uid, extra)


def _core(api: ResourceAPI, plural: str) -> ResourceType:
    rtype = api.registry.lookup("", "v1", plural)
    assert rtype is not None
    return rtype


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _secret_value(secret: Mapping[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(str((secret.get("data") or {}).get(key, "")))
    except ValueError:
        return b""


class TokenAuthenticator:
    """Bearer tokens of ServiceAccounts, checked against this server's objects."""

    def __init__(self, api: ResourceAPI, signer: Signer, audiences: tuple[str, ...] = satokens.API_AUDIENCES):
        self.store: Store = api.store
        self.signer = signer
        self.audiences = audiences
        self.accounts = _core(api, "serviceaccounts")
        self.secrets = _core(api, "secrets")
        self.pods = _core(api, "pods")

    def authenticate(self, token: str, audiences: tuple[str, ...] = ()) -> tuple[User, tuple[str, ...]]:
        """The user a token stands for and the audiences it was accepted for; InvalidToken if it stands for
        none (not ours, expired, meant for other audiences, or its objects are gone)."""
        claims = self.signer.verify(token, audiences or self.audiences)
        account = self.store.get(self.accounts.key(claims.namespace, claims.name))
        if account is None or _terminating(account.obj):
            raise InvalidToken("invalid bearer token, service account token has been invalidated")
        if _uid(account.obj) != claims.uid:
            raise InvalidToken(f"invalid bearer token, service account UID ({_uid(account.obj)}) does not match "
                               f"claim ({claims.uid})")
        if claims.legacy:
            self._check_secret(claims, token)
            return service_account_user(claims.namespace, claims.name, claims.uid), ()
        extra: list[tuple[str, tuple[str, ...]]] = []
        if claims.jti:
            extra.append((CREDENTIAL_ID, (f"JTI={claims.jti}",)))
        if claims.bound is not None:
            self._check_bound(claims.namespace, claims.bound)
            if claims.bound.kind == "Pod":
                extra += [(POD_NAME, (claims.bound.name,)), (POD_UID, (claims.bound.uid,))]
        return service_account_user(claims.namespace, claims.name, claims.uid, tuple(sorted(extra))), claims.audiences

    def _check_secret(self, claims: Claims, token: str) -> None:
        secret = self.store.get(self.secrets.key(claims.namespace, claims.secret))
        if secret is None or _terminating(secret.obj):
            raise InvalidToken("invalid bearer token, token has been invalidated")
        if not hmac.compare_digest(_secret_value(secret.obj, "token"), token.encode()):
            raise InvalidToken("invalid bearer token, token does not match server's copy")

    def _check_bound(self, namespace: str, ref: BoundRef) -> None:
        rtype = {"Pod": self.pods, "Secret": self.secrets}.get(ref.kind)
        entry = self.store.get(rtype.key(namespace, ref.name)) if rtype is not None else None
        if entry is None or _terminating(entry.obj) or _uid(entry.obj) != ref.uid:
            raise InvalidToken(f"invalid bearer token, {ref.kind.lower()} {ref.name!r} bound to this token has been "
                               "deleted or recreated")


class TokenRequests:
    """The ``token`` subresource of ServiceAccounts: ``POST`` a TokenRequest, get a bound token back."""

    def __init__(self, api: ResourceAPI, signer: Signer, audiences: tuple[str, ...] = satokens.API_AUDIENCES):
        self.api = api
        self.signer = signer
        self.audiences = audiences

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        return {Route("", "serviceaccounts", "token"): self.create}

    async def create(self, sub: SubresourceRequest) -> web.StreamResponse:
        if sub.http.method != "POST":
            raise errors.method_not_allowed()
        body = codec.decode_object(await sub.http.read(), sub.http.headers.get("Content-Type"))
        account = await sub.parent()
        namespace, name = sub.namespace or "", sub.name or ""
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        seconds = spec.get("expirationSeconds") or DEFAULT_EXPIRATION
        if not isinstance(seconds, int) or seconds < MIN_EXPIRATION or seconds > MAX_EXPIRATION:
            why = "may not specify a duration less than 10 minutes" if isinstance(seconds, int) and \
                seconds < MIN_EXPIRATION else "may not specify a duration larger than 2^32 seconds"
            raise errors.invalid("TokenRequest", "authentication.k8s.io", name,
                                 [errors.Cause("spec.expirationSeconds", "FieldValueInvalid",
                                               f"Invalid value: {seconds}: {why}")])
        audiences = [a for a in spec.get("audiences") or [] if isinstance(a, str)] or list(self.audiences)
        ref = self._bound(namespace, name, spec.get("boundObjectRef"))
        token, expires = self.signer.bound(namespace, name, _uid(account), audiences, seconds, ref)
        when = dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        bound_doc = None if ref is None else {"kind": ref.kind, "apiVersion": "v1", "name": ref.name, "uid": ref.uid}
        answer = {
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": bound_doc},
            "status": {"token": token, "expirationTimestamp": when},
        }
        return web.json_response(answer, status=201)

    def _bound(self, namespace: str, account: str, doc: Any) -> BoundRef | None:
        """The object a TokenRequest binds its token to, checked as kube checks it."""
        if not isinstance(doc, dict) or not doc:
            return None
        kind, ref_name, ref_uid = str(doc.get("kind", "")), str(doc.get("name", "")), str(doc.get("uid") or "")
        if kind not in ("Pod", "Secret") or doc.get("apiVersion", "v1") != "v1":
            raise errors.bad_request(f"cannot bind token to object of type {doc.get('apiVersion', '')}, Kind={kind}")
        entry = self.api.get(_core(self.api, "pods" if kind == "Pod" else "secrets"), namespace, ref_name)
        if kind == "Pod" and (entry.obj.get("spec") or {}).get("serviceAccountName", "default") != account:
            raise errors.bad_request(f'cannot bind token for serviceaccount "{account}" to pod running with '
                                     "different serviceaccount name.")
        if ref_uid and ref_uid != _uid(entry.obj):
            raise errors.conflict(kind, "", ref_name,
                                  f"the UID in the bound object reference ({ref_uid}) does not match the UID in "
                                  "record. The object might have been deleted and then recreated")
        return BoundRef(kind, ref_name, _uid(entry.obj))


class TokenSecrets:
    """kube's token controller for legacy ServiceAccount token Secrets (one round of it: :meth:`sync`)."""

    def __init__(self, api: ResourceAPI, signer: Signer, ca_pem: bytes) -> None:
        self.api = api
        self.signer = signer
        self.ca_pem = ca_pem
        self.accounts = _core(api, "serviceaccounts")
        self.secrets = _core(api, "secrets")

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.accounts.prefix(), self.secrets.prefix()

    async def sync(self) -> None:
        for _key, entry in list(self.api.store.list_current(self.secrets.prefix())):
            secret = entry.obj
            meta = secret["metadata"]
            account_name = (meta.get("annotations") or {}).get(SA_NAME)
            if secret.get("type") != TOKEN_SECRET_TYPE or not account_name or _terminating(secret):
                continue
            try:
                await self._sync_one(secret, meta["namespace"], str(account_name))
            except errors.APIError as err:  # written or deleted meanwhile: the write wakes the next round
                log.info("token Secret %s/%s: %s", meta["namespace"], meta["name"], err.message)

    async def _sync_one(self, secret: dict[str, Any], namespace: str, account_name: str) -> None:
        meta = secret["metadata"]
        account = self.api.store.get(self.accounts.key(namespace, account_name))
        filled_for = (meta.get("annotations") or {}).get(SA_UID)
        if account is None or (filled_for and filled_for != _uid(account.obj)):
            if filled_for:  # its ServiceAccount is gone (or another one has its name now)
                await self.api.delete(self.secrets, namespace, meta["name"], WriteOptions(user=CONTROLLER),
                                      {"uid": meta.get("uid")})
            return  # (not yet filled: it waits for its ServiceAccount)
        uid = _uid(account.obj)
        data = secret.get("data") or {}
        if filled_for == uid and all(data.get(k) for k in ("token", "ca.crt", "namespace")):
            return
        token = self.signer.legacy(namespace, account_name, uid, meta["name"])
        patch = {"metadata": {"annotations": {SA_UID: uid}, "resourceVersion": meta.get("resourceVersion")},
                 "data": {"token": _b64(token.encode()), "ca.crt": _b64(self.ca_pem), "namespace": _b64(namespace.encode())}}
        await self.api.patch(self.secrets, namespace, meta["name"], "merge", patch,
                             WriteOptions(field_manager="kube-controller-manager", user=CONTROLLER))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
