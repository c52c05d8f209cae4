"""ValidatingWebhookConfiguration (``admissionregistration.k8s.io/v1``): its rules, and its webhooks as records.

The structural schema (``schemas/validatingwebhookconfiguration.yaml``, served by
:mod:`k3c.apiserver.resources`) gives types, enums, ranges and kube-apiserver's defaults; :func:`validate`
adds the rules a schema cannot say, worded as kube-apiserver's ``ValidateValidatingWebhookConfiguration``
words them. :func:`webhooks_of` turns a stored (hence valid and defaulted) configuration into the
:class:`Webhook` records the admission path matches and calls.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from k3c.admissionreview import REVIEW_VERSION
from k3c.apiserver.errors import Cause
from k3c.apiserver.schema import fielderrors
from k3c.apiserver.schema.names import dns1123_subdomain_errors
from k3c.apiserver.selectors import LabelSelector, from_label_selector_dict

GROUP = "admissionregistration.k8s.io"
#: The review versions kube-apiserver accepts in ``admissionReviewVersions`` (it needs one it can send).
ACCEPTED_REVIEW_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True)
class Rule:
    operations: tuple[str, ...]
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    path: str
    port: int


@dataclass(frozen=True)
class Webhook:
    """One webhook of a stored configuration."""

    configuration: str
    name: str
    url: str | None
    service: ServiceRef | None
    ca_bundle: bytes | None
    rules: tuple[Rule, ...]
    failure_policy: str
    match_policy: str
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    side_effects: str
    timeout: int
    review_versions: tuple[str, ...]

    @property
    def speaks_v1(self) -> bool:
        return REVIEW_VERSION in self.review_versions


# ------------------------------------------------------------------------------------------ validation


def validate(obj: dict[str, Any]) -> list[Cause]:
    """kube-apiserver's rules beyond the schema (types are the schema's; odd shapes are skipped here)."""
    hooks = obj.get("webhooks")
    if not isinstance(hooks, list):
        return []
    causes: list[Cause] = []
    for i, hook in enumerate(hooks):
        if isinstance(hook, dict):
            causes += _validate_webhook(hook, f"webhooks[{i}]")
    return causes


def _validate_webhook(hook: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = hook.get("name")
    if isinstance(name, str) and name:
        errs = dns1123_subdomain_errors(name)
        if errs:
            causes += [fielderrors.invalid(f"{path}.name", name, e) for e in errs]
        elif name.count(".") < 2:
            causes.append(fielderrors.invalid(f"{path}.name", name,
                                              "should be a domain with at least three segments separated by dots"))
    versions = hook.get("admissionReviewVersions")
    if isinstance(versions, list):
        if not versions:
            causes.append(fielderrors.required(f"{path}.admissionReviewVersions",
                                               "must specify one of v1, v1beta1"))
        elif not any(v in ACCEPTED_REVIEW_VERSIONS for v in versions):
            causes.append(fielderrors.invalid(f"{path}.admissionReviewVersions", versions,
                                              "must include at least one of v1, v1beta1"))
    client = hook.get("clientConfig")
    if isinstance(client, dict):
        causes += _validate_client(client, f"{path}.clientConfig")
    for j, rule in enumerate(hook.get("rules") or []):
        if isinstance(rule, dict):
            causes += _validate_rule(rule, f"{path}.rules[{j}]")
    for field in ("namespaceSelector", "objectSelector"):
        selector = hook.get(field)
        if isinstance(selector, dict):
            causes += _validate_selector(selector, f"{path}.{field}")
    return causes


def _validate_client(client: dict[str, Any], path: str) -> list[Cause]:
    url, service = client.get("url"), client.get("service")
    if (url is None) == (service is None):
        return [fielderrors.required(path, "exactly one of url or service is required")]
    causes: list[Cause] = []
    if isinstance(url, str):
        causes += _validate_url(url, f"{path}.url")
    if isinstance(service, dict):
        sp = service.get("path")
        if isinstance(sp, str) and sp and not sp.startswith("/"):
            causes.append(fielderrors.invalid(f"{path}.service.path", sp, "must start with a '/'"))
    bundle = client.get("caBundle")
    if isinstance(bundle, str) and bundle:
        try:
            base64.b64decode(bundle, validate=True)
        except (binascii.Error, ValueError):
            causes.append(fielderrors.invalid(f"{path}.caBundle", "<bytes>", "illegal base64 data"))
    return causes


def _validate_url(url: str, path: str) -> list[Cause]:
    try:
        parts = urlsplit(url)
    except ValueError as err:
        return [fielderrors.invalid(path, url, f"url must be a valid URL: {err}")]
    if parts.scheme != "https":
        return [fielderrors.not_supported(path, parts.scheme, ["https"])]
    causes = []
    if not parts.hostname:
        causes.append(fielderrors.invalid(path, url, "host must be specified"))
    if parts.username is not None or parts.password is not None:
        causes.append(fielderrors.invalid(path, url, "user information is not permitted in the URL"))
    if parts.fragment or url.endswith("#"):
        causes.append(fielderrors.invalid(path, url, "fragments are not permitted in the URL"))
    if parts.query or "?" in url:
        causes.append(fielderrors.invalid(path, url, "query parameters are not permitted in the URL"))
    return causes


def _validate_rule(rule: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for field, what in (("operations", "operations"), ("apiGroups", "API groups"),
                        ("apiVersions", "API versions")):
        values = rule.get(field)
        if not isinstance(values, list):
            causes.append(fielderrors.required(f"{path}.{field}"))
        elif not values:
            causes.append(fielderrors.required(f"{path}.{field}"))
        elif "*" in values and len(values) > 1:
            causes.append(fielderrors.invalid(f"{path}.{field}", values,
                                              f"if '*' is present, must not specify other {what}"))
    resources = rule.get("resources")
    if not isinstance(resources, list) or not resources:
        causes.append(fielderrors.required(f"{path}.resources"))
        return causes
    if "*/*" in resources and len(resources) > 1:
        causes.append(fielderrors.invalid(f"{path}.resources", resources,
                                          "if '*/*' is present, must not specify other resources"))
    for k, res in enumerate(resources):
        if not isinstance(res, str) or not res:
            causes.append(fielderrors.required(f"{path}.resources[{k}]", "resource must be non-empty"))
        elif res.count("/") > 1 or res.startswith("/") or res.endswith("/"):
            causes.append(fielderrors.invalid(f"{path}.resources[{k}]", res,
                                              "must be RESOURCE or RESOURCE/SUBRESOURCE"))
    return causes


def _validate_selector(selector: dict[str, Any], path: str) -> list[Cause]:
    try:
        from_label_selector_dict(selector)
    except ValueError as err:
        return [Cause(path, "FieldValueInvalid", f"Invalid value: {err}")]
    return []


# ------------------------------------------------------------------------------------------ records


def webhooks_of(configuration: dict[str, Any]) -> list[Webhook]:
    """The webhooks of a stored configuration, in their order."""
    name = configuration.get("metadata", {}).get("name", "")
    return [_webhook(name, hook) for hook in configuration.get("webhooks") or []]


def _webhook(configuration: str, hook: dict[str, Any]) -> Webhook:
    client = hook.get("clientConfig") or {}
    svc = client.get("service")
    service = None
    if svc:
        service = ServiceRef(svc.get("namespace", ""), svc.get("name", ""), svc.get("path") or "",
                             int(svc.get("port") or 443))
    bundle = base64.b64decode(client["caBundle"]) if client.get("caBundle") else None
    rules = tuple(
        Rule(tuple(r.get("operations") or ()), tuple(r.get("apiGroups") or ()), tuple(r.get("apiVersions") or ()),
             tuple(r.get("resources") or ()), r.get("scope") or "*")
        for r in hook.get("rules") or []
    )
    try:
        ns_selector = from_label_selector_dict(hook.get("namespaceSelector") or {})
        obj_selector = from_label_selector_dict(hook.get("objectSelector") or {})
    except ValueError:  # stored before validation existed: match nothing rather than everything
        ns_selector = obj_selector = LabelSelector(nothing=True)
    return Webhook(
        configuration=configuration, name=hook.get("name", ""), url=client.get("url"), service=service,
        ca_bundle=bundle, rules=rules, failure_policy=hook.get("failurePolicy") or "Fail",
        match_policy=hook.get("matchPolicy") or "Equivalent", namespace_selector=ns_selector,
        object_selector=obj_selector, side_effects=hook.get("sideEffects") or "Unknown",
        timeout=int(hook.get("timeoutSeconds") or 10), review_versions=tuple(hook.get("admissionReviewVersions") or ()),
    )
