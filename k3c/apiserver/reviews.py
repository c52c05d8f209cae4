"""The review kinds: questions the server answers from its authenticator and authorizer, storing nothing.

``authorization.k8s.io/v1``: SubjectAccessReview (may this user do this? what an aggregated API server asks
with the front proxy's user), SelfSubjectAccessReview (may I? ``kubectl auth can-i``),
LocalSubjectAccessReview (the namespaced form) and SelfSubjectRulesReview (what may I do here?
``kubectl auth can-i --list``). ``authentication.k8s.io/v1``: TokenReview (whose token is this?) and
SelfSubjectReview (who am I? ``kubectl auth whoami``). Each is a create that answers the object back with
its ``status`` filled in (201), as kube-apiserver's REST storage for them does; they are mounted as
collection-level routes of the subresource seam.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from k3c.apiserver import codec, errors
from k3c.apiserver.rbac import RBACAuthorizer
from k3c.apiserver.requestinfo import RequestInfo
from k3c.apiserver.satokens import InvalidToken
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest, User

AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"
TokenCheck = Callable[[str, tuple[str, ...]], tuple[User, tuple[str, ...]]]


def user_info(user: User) -> dict[str, Any]:
    """A user as the reviews' ``UserInfo`` writes it."""
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = {key: list(values) for key, values in user.extra}
    return info


class Reviews:
    """The six review resources, as one provider of collection-level routes."""

    def __init__(self, authorizer: RBACAuthorizer, check_token: TokenCheck) -> None:
        self.authorizer = authorizer
        self.check_token = check_token

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        return {
            Route(AUTHZ, "subjectaccessreviews", ""): self._subject_access,
            Route(AUTHZ, "selfsubjectaccessreviews", ""): self._self_subject_access,
            Route(AUTHZ, "localsubjectaccessreviews", ""): self._local_subject_access,
            Route(AUTHZ, "selfsubjectrulesreviews", ""): self._self_subject_rules,
            Route(AUTHN, "tokenreviews", ""): self._token,
            Route(AUTHN, "selfsubjectreviews", ""): self._self_subject,
        }

    async def _subject_access(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, spec = await _review(sub, "SubjectAccessReview", AUTHZ)
        user = _spec_user(spec, "SubjectAccessReview")
        return self._access(doc, user, _attributes(spec, "SubjectAccessReview"))

    async def _self_subject_access(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, spec = await _review(sub, "SelfSubjectAccessReview", AUTHZ)
        return self._access(doc, sub.user, _attributes(spec, "SelfSubjectAccessReview"))

    async def _local_subject_access(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, spec = await _review(sub, "LocalSubjectAccessReview", AUTHZ)
        user = _spec_user(spec, "LocalSubjectAccessReview")
        attributes = _attributes(spec, "LocalSubjectAccessReview")
        if not attributes.resource_request:
            raise _invalid("LocalSubjectAccessReview", "spec.nonResourceAttributes", "disallowed on this kind of "
                           "request")
        if attributes.namespace != sub.namespace:
            raise errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {sub.namespace}")
        return self._access(doc, user, attributes)

    def _access(self, doc: dict[str, Any], user: User, a: RequestInfo) -> web.Response:
        allowed, reason = self.authorizer.decide(user, a)
        status: dict[str, Any] = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return _answer(doc, status)

    async def _self_subject_rules(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, spec = await _review(sub, "SelfSubjectRulesReview", AUTHZ)
        namespace = spec.get("namespace") or ""
        if not isinstance(namespace, str) or not namespace:
            raise _invalid("SelfSubjectRulesReview", "spec.namespace", "must be specified", namespace)
        resource_rules: list[dict[str, Any]] = []
        url_rules: list[dict[str, Any]] = []
        if sub.user.privileged:
            resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            url_rules.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        rules, problems = self.authorizer.rules_for(sub.user, namespace)
        for rule in rules:
            d = rule.to_dict()
            if rule.non_resource_urls:
                url_rules.append({"verbs": d["verbs"], "nonResourceURLs": d["nonResourceURLs"]})
            else:
                resource_rules.append({k: v for k, v in d.items() if k != "nonResourceURLs"})
        status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": url_rules,
                                  "incomplete": bool(problems)}
        if problems:
            status["evaluationError"] = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        return _answer(doc, status)

    async def _token(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, spec = await _review(sub, "TokenReview", AUTHN)
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise _invalid("TokenReview", "spec.token", "Required value: token must not be empty", None)
        wanted = tuple(a for a in spec.get("audiences") or [] if isinstance(a, str))
        try:
            user, audiences = self.check_token(token, wanted)
        except InvalidToken as err:
            message = str(err)
            status: dict[str, Any] = {"user": {}}
            if message != "invalid bearer token":  # a token of ours, no longer valid: kube says why
                status["error"] = f"[{message}]"
            return _answer(doc, status)
        status = {"authenticated": True, "user": user_info(user)}
        if audiences:
            status["audiences"] = list(audiences)
        return _answer(doc, status)

    async def _self_subject(self, sub: SubresourceRequest) -> web.StreamResponse:
        doc, _spec = await _review(sub, "SelfSubjectReview", AUTHN)
        return _answer(doc, {"userInfo": user_info(sub.user)})


async def _review(sub: SubresourceRequest, kind: str, group: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The posted review and its spec; 405 for anything but a create, 400 for a body of another kind."""
    if sub.http.method != "POST":
        raise errors.method_not_allowed()
    doc = codec.decode_object(await sub.http.read(), sub.http.headers.get("Content-Type"))
    if doc.get("kind") not in (None, kind):
        raise errors.bad_request(f"the kind in the data ({doc.get('kind')}) does not match the expected kind ({kind})")
    doc["kind"] = kind
    doc["apiVersion"] = f"{group}/v1"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    doc["metadata"] = {**meta, "creationTimestamp": None}
    spec = doc.get("spec")
    if spec is None:
        spec = doc["spec"] = {}
    if not isinstance(spec, dict):
        raise errors.bad_request(f"{kind} in version \"v1\" cannot be handled as a {kind}: spec must be an object")
    return doc, spec


def _answer(doc: dict[str, Any], status: dict[str, Any]) -> web.Response:
    return web.json_response({**doc, "status": status}, status=201)


def _invalid(kind: str, field: str, why: str, value: Any = "null") -> errors.APIError:
    shown = "" if value is None else f'Invalid value: "{value}": '
    return errors.invalid(kind, AUTHN if kind in ("TokenReview", "SelfSubjectReview") else AUTHZ, "",
                          [errors.Cause(field, "FieldValueInvalid" if value is not None else "FieldValueRequired",
                                        f"{shown}{why}")])


def _spec_user(spec: dict[str, Any], kind: str) -> User:
    name = spec.get("user") or ""
    groups = tuple(g for g in spec.get("groups") or [] if isinstance(g, str))
    if not isinstance(name, str) or (not name and not groups):
        raise _invalid(kind, "spec.user", "at least one of user or group must be specified", "")
    extra_doc = spec.get("extra") if isinstance(spec.get("extra"), dict) else {}
    assert isinstance(extra_doc, dict)
    extra = tuple(sorted((str(k), tuple(str(v) for v in vs or [])) for k, vs in extra_doc.items()))
    return User(name, groups, str(spec.get("uid") or ""), extra)


def _attributes(spec: dict[str, Any], kind: str) -> RequestInfo:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra and nra:
        raise _invalid(kind, "spec.nonResourceAttributes", "cannot be specified in combination with "
                       "resourceAttributes", "")
    if isinstance(ra, dict) and ra:
        return RequestInfo(str(ra.get("verb") or ""), "", True, str(ra.get("group") or ""),
                           str(ra.get("version") or ""), str(ra.get("namespace") or ""),
                           str(ra.get("resource") or ""), str(ra.get("subresource") or ""), str(ra.get("name") or ""))
    if isinstance(nra, dict) and nra:
        return RequestInfo(str(nra.get("verb") or ""), str(nra.get("path") or ""))
    raise _invalid(kind, "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must "
                   "be specified")
