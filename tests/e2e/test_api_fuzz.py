"""Hostile requests against a real API server: every malformed request gets a 4xx Status, never a 5xx.

A property-based fuzz run (Hypothesis) over every resource kind the server serves (the built-ins and k3c's
CRDs, found through discovery): bodies with wrong types at every level of metadata/spec/status, deep and
huge nesting, bad content types and bad JSON/YAML/protobuf; patches of every type with bad shapes; bad
list/watch/write query parameters; bad names, namespaces, groups and subresources in paths. Each answer
must be below 500 and, when it is an error, a well-formed one-line ``metav1.Status`` whose code is the
HTTP status. The server's log must show no internal error afterwards.

Seeded and time-bounded: ``K3C_FUZZ_SEED`` (default 10), ``K3C_FUZZ_EXAMPLES`` (default 1500) and
``K3C_FUZZ_SECONDS`` (default 25, after which the remaining examples are skipped) size a run; e.g.
``K3C_FUZZ_EXAMPLES=20000 K3C_FUZZ_SECONDS=900`` for a long one. Failures are collected, not raised one
by one, so a run reports every distinct 5xx it found (with a request to replay each).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support.harness import REPO, APIServerProcess, RawClient, wait_until

SEED = int(os.environ.get("K3C_FUZZ_SEED", "10"))
EXAMPLES = int(os.environ.get("K3C_FUZZ_EXAMPLES", "1500"))
BUDGET = float(os.environ.get("K3C_FUZZ_SECONDS", "25"))
BASE = "fuzz-base"  # one stored object per kind, the target of updates and patches
BASE_NS = "fuzz-ns"  # the namespace they live in (fuzzed deletes never name either)


@dataclass(frozen=True)
class Kind:
    """One served resource, as discovery describes it, plus the field paths its schema knows."""

    group_version: str
    plural: str
    kind: str
    namespaced: bool
    paths: tuple[tuple[str, ...], ...]
    fields: dict[str, Any]  # what a valid object needs besides apiVersion, kind and metadata

    def valid(self, name: str) -> dict[str, Any]:
        return {"apiVersion": self.group_version, "kind": self.kind, "metadata": {"name": name},
                **json.loads(json.dumps(self.fields))}

    @property
    def root(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


@dataclass
class Findings:
    """What the run saw: answers that break the rules, by a short signature (first of each kept)."""

    failures: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, signature: str, detail: str) -> None:
        self.failures.setdefault(signature, detail)


# ---- the server and what it serves ------------------------------------------------------------------


def _schema_paths(schema: dict[str, Any], prefix: tuple[str, ...] = (), depth: int = 0) -> Iterator[tuple[str, ...]]:
    """Every property path of a structural schema (array items as ``0``), down to a few levels."""
    if depth > 6:
        return
    for name, sub in (schema.get("properties") or {}).items():
        path = (*prefix, name)
        yield path
        yield from _schema_paths(sub, path, depth + 1)
    if isinstance(schema.get("items"), dict):
        yield from _schema_paths(schema["items"], (*prefix, "0"), depth + 1)


def _minimal(schema: dict[str, Any]) -> Any:
    """A value of the schema's required fields only: enough for a stored base object."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _minimal(schema["properties"][k]) for k in schema.get("required", [])
                if k in (schema.get("properties") or {})}
    return {"string": "x", "integer": 1, "number": 1, "boolean": False, "array": []}.get(kind or "", "x")


BUILTIN_PATHS: dict[str, list[tuple[str, ...]]] = {
    "namespaces": [("spec",), ("spec", "finalizers"), ("spec", "finalizers", "0"), ("status",),
                   ("status", "phase")],
    "configmaps": [("data",), ("data", "k"), ("binaryData",), ("binaryData", "k"), ("immutable",)],
    "secrets": [("data",), ("data", "k"), ("stringData",), ("stringData", "k"), ("type",), ("immutable",)],
    "events": [("involvedObject",), ("involvedObject", "name"), ("reason",), ("message",), ("count",),
               ("firstTimestamp",), ("lastTimestamp",), ("eventTime",), ("series",), ("source",)],
}
META_PATHS = [("metadata",)] + [("metadata", f) for f in (
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
    "finalizers", "ownerReferences", "managedFields", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "selfLink")] + [("metadata", "labels", "a"), ("metadata", "annotations", "a"),
                                                   ("metadata", "finalizers", "0"), ("metadata", "ownerReferences", "0")]


def _install_crds(api: RawClient) -> dict[str, dict[str, Any]]:
    """k3c's CRDs, installed and served; their schemas by plural."""
    schemas = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        r = api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert r.status_code == 201, r.text
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schemas[crd["spec"]["names"]["plural"]] = version["schema"]["openAPIV3Schema"]
        root = f"/apis/{crd['spec']['group']}/{version['name']}"
        wait_until(lambda root=root, plural=crd["spec"]["names"]["plural"]: any(
            res["name"] == plural for res in api.get(root).json().get("resources", [])),
            10, f"{path.name} served")
    return schemas


#: What a stored base object needs beyond the required fields' minimal values.
BASE_FIELDS: dict[str, dict[str, Any]] = {
    "events": {"involvedObject": {"name": "x"}},
    "imagebuilds": {"spec": {"context": {"dir": "/nonexistent"}}},
    "imagetags": {"spec": {"source": "x", "targets": ["y"]}},
}


def _discover(api: RawClient, schemas: dict[str, dict[str, Any]]) -> list[Kind]:
    versions = ["v1"] + [v["groupVersion"] for g in api.get("/apis").json()["groups"] for v in g["versions"]]
    kinds = []
    for gv in versions:
        root = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        for res in api.get(root).json()["resources"]:
            if "/" in res["name"] or "get" not in res["verbs"]:  # (the reviews are answered, never stored)
                continue
            schema = schemas.get(res["name"]) if gv != "v1" else None
            paths = list(_schema_paths(schema)) if schema else BUILTIN_PATHS.get(res["name"], [("spec",)])
            fields = {f: v for f, v in _minimal(schema).items() if f not in ("metadata", "status")} if schema else {}
            fields.update(BASE_FIELDS.get(res["name"], {}))
            kinds.append(Kind(gv, res["name"], res["kind"], res["namespaced"], tuple(META_PATHS + paths), fields))
    return kinds


def _store_bases(api: RawClient, kinds: list[Kind]) -> None:
    r = api.post("/api/v1/namespaces", {"metadata": {"name": BASE_NS}})
    assert r.status_code == 201, r.text
    for k in kinds:
        if k.plural in ("namespaces", "customresourcedefinitions"):
            continue
        r = api.post(f"{k.root}/{_collection(k, BASE_NS)}", k.valid(BASE))
        assert r.status_code == 201, f"{k.plural}: {r.text}"


def _collection(k: Kind, namespace: str | None) -> str:
    return f"namespaces/{namespace}/{k.plural}" if k.namespaced and namespace is not None else k.plural


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[APIServerProcess, RawClient, list[Kind]]]:
    srv = APIServerProcess(tmp_path_factory.mktemp("fuzz") / "data")
    srv.start()
    try:
        api = RawClient(srv)
        schemas = _install_crds(api)
        kinds = _discover(api, schemas)
        assert {k.plural for k in kinds} >= {"namespaces", "configmaps", "secrets", "localcontainers", "images",
                                              "imagebuilds", "volumes", "customresourcedefinitions"}
        _store_bases(api, kinds)
        yield srv, api, kinds
    finally:
        srv.stop()


# ---- strategies ---------------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # (lone surrogates: not JSON)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    TEXT, inner, max_size=4), max_leaves=12)
ODD_STRINGS = st.sampled_from([
    "", " ", "-", "..", ".", "a..b", "A_B", "a/b", "a%2Fb", "%2e%2e", "%00", "\x00", "ü", "a" * 300, "a" * 64,
    "-1", "0", "²", "1e999", "nan", "inf", "-inf", "99999999999999999999999", "0x10", "1.5", "true", "false",
    "!", "a=b", "a==b", "a!=b", "a in (b", "a in (b,c)", "notin", "!a", "a,b", "=", "metadata.name=x",
    "metadata.namespace!=", "spec.x=1", "a=b=c", "x" * 70 + "=v", "a/b/c=d", "All", "all", "Server",
    "MTIz", "eyJydiI6MSwic3RhcnQiOiIifQ==", "eyJydiI6LTEsInN0YXJ0IjpbXX0=", "e30=", "!!!", "{}", "[]",
])
WORDS = st.one_of(ODD_STRINGS, st.text(max_size=16))
NAMES = st.one_of(st.sampled_from(["fuzz-x", "default", "kube-system"]), ODD_STRINGS, st.text(max_size=12)).filter(
    lambda n: n not in (BASE, BASE_NS))
#: Names a DELETE may carry: none that the URL turns into the collection (``""``, ``.``, ``%2F``), which
#: kube-apiserver would delete as a whole too (the CRDs, the bases and their namespace must stay).
DELETE_NAMES = NAMES.filter(lambda n: any(p not in (".", "..") for p in urllib.parse.unquote(n).split("/") if p))
QUERY_KEYS = ["fieldSelector", "labelSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch",
              "watch", "timeoutSeconds", "dryRun", "fieldManager", "fieldValidation", "force",
              "allowWatchBookmarks", "sendInitialEvents", "propagationPolicy", "gracePeriodSeconds",
              "includeObject", "pretty", "orphanDependents", "follow", "tailLines"]
QUERIES = st.one_of(st.just([]), st.lists(st.tuples(st.sampled_from(QUERY_KEYS), WORDS), max_size=4))
FRESH_NAMES = st.from_regex(r"fuzz-[a-z0-9]{1,8}", fullmatch=True)
SUBRESOURCES = st.sampled_from(["", "", "", "status", "status", "scale", "log", "exec", "attach", "context",
                                "save", "load", "x", "status/x", "..", "%2e%2e"])
CONTENT_TYPES = st.sampled_from([
    *["application/json"] * 8, *["application/yaml"] * 3, "application/vnd.kubernetes.protobuf", "text/plain", "", "application/json; charset=utf-16", "*/*", "application/x-yaml", "text/yaml",
    "application/cbor", "application/json;;;", "garbage/ü", "multipart/form-data; boundary=x",
])
PATCH_TYPES = st.sampled_from([
    *["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
      "application/apply-patch+yaml"] * 4, "application/apply-patch+cbor", "application/json", "text/plain", "",
])
ACCEPTS = st.sampled_from([
    None, "application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
    "application/json;as=Table;v=v1;g=meta.k8s.io", "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", "application/json;as=Bogus;g=x",
    "text/html", "*/*", ";;", "application/json;g=meta.k8s.io;as=Table;v=v1beta1",
])


def _deep(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


DEEP = st.builds(_deep, st.integers(100, 1100), SCALARS, st.booleans())


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Put ``value`` at ``path``, making objects on the way (replacing whatever is in the way)."""
    cur: Any = doc
    for part in path[:-1]:
        nxt = cur.get(part) if isinstance(cur, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[path[-1]] = value


def _mostly(value: Any, otherwise: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``value`` nine times in ten."""
    return st.integers(0, 9).flatmap(lambda i: otherwise if i == 0 else st.just(value))


@st.composite
def objects(draw: st.DrawFn, k: Kind) -> dict[str, Any]:
    """An object of the kind with random values (wrong types, deep nesting) at some of its field paths."""
    doc = k.valid(draw(st.one_of(FRESH_NAMES, FRESH_NAMES, st.just(BASE), NAMES)))
    doc["apiVersion"] = draw(_mostly(k.group_version, st.sampled_from(["v2", ""]) | JSON))
    doc["kind"] = draw(_mostly(k.kind, st.just("Other") | JSON))
    if draw(st.integers(0, 5)) == 0:
        doc["metadata"] = draw(SCALARS | st.lists(SCALARS, max_size=2))
    for path in draw(st.lists(st.sampled_from(k.paths), max_size=3)):
        _set(doc, path, draw(JSON))
    if draw(st.integers(0, 9)) == 0:
        _set(doc, draw(st.sampled_from(k.paths)), draw(DEEP))
    return doc


def _encode(doc: Any, ctype: str, draw: st.DrawFn) -> bytes:
    if "yaml" in ctype:
        try:
            return yaml.safe_dump(doc).encode()
        except RecursionError:
            return b"a: 1"
    if "protobuf" in ctype:
        return b"k8s\x00" + draw(st.binary(max_size=64))
    try:
        return json.dumps(doc).encode()
    except RecursionError:
        return b"{}"


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([
        b"", b"null", b"1", b'"x"', b"[]", b"{", b'{"a":1,}', b"\xff\xfe", b"{}" * 3, b"\x00",
        b'{"metadata": 1}', b'{"metadata": "x"}', b'{"metadata": [1]}', b'{"metadata": true}',
        b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000, b"[" * 2000,
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        b"a: !!python/object:os.system x", b"--- 1\n--- 2\n", b"? [a]\n: b", b"a: [" * 500,
        b"- " * 300 + b"x", b"metadata: {name: x}\nmetadata: {name: y}", b"k8s\x00" + b"\n\x02v1\x12\x03Pod",
        b"k8s\x00", b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": 1}}',
    ]),
    st.builds(lambda n: b'{"metadata":{"name":"big"},"data":{"k":"' + b"x" * n + b'"}}',
              st.sampled_from([3 * 1024 * 1024 - 100, 3 * 1024 * 1024 + 1])),
)
JSON_PATCH_OPS = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]) | JSON},
    optional={"path": st.sampled_from(["", "/", "/metadata", "/metadata/name", "/metadata/labels/a", "/spec",
                                       "/spec/a/b", "/status", "/~2", "/-", "/metadata/finalizers/-",
                                       "/metadata/finalizers/9", "/kind", "/apiVersion"]) | JSON,
              "from": st.sampled_from(["/metadata", "/spec", "/x"]) | JSON, "value": JSON | DEEP}),
    max_size=3)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def replay(self) -> str:
        q = urllib.parse.urlencode(self.query)
        return (f"{self.method} {self.path}{'?' + q if q else ''} headers={self.headers} "
                f"body[:200]={self.body[:200]!r}")


def _quote(name: str) -> str:
    """A path segment: percent-encoded, unless it already is (``%2E%2E`` stays, to reach the server so)."""
    return name if re.fullmatch(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~-])+", name) else urllib.parse.quote(name, safe="")


@st.composite
def hostile_requests(draw: st.DrawFn, kinds: list[Kind]) -> Request:
    k = draw(st.sampled_from(kinds))
    action = draw(st.sampled_from(["create", "create", "update", "patch", "patch", "patch", "get", "list",
                                   "watch", "delete", "deletecollection", "path"]))
    namespace = BASE_NS if draw(st.integers(0, 3)) else draw(NAMES)
    base = f"{k.root}/{_collection(k, _quote(namespace))}"
    query = draw(QUERIES)
    headers = {}
    accept = draw(ACCEPTS)
    if accept is not None:
        headers["Accept"] = accept
    body = b""
    if action == "create":
        path, method = base, "POST"
    elif action in ("update", "patch"):
        name = BASE if draw(st.booleans()) else draw(NAMES)
        sub = draw(st.sampled_from(["", "", "status"]))
        path = f"{base}/{_quote(name)}" + (f"/{sub}" if sub else "")
        method = "PUT" if action == "update" else "PATCH"
    elif action == "get":
        path, method = f"{base}/{_quote(draw(st.sampled_from([BASE]) | NAMES))}", "GET"
    elif action == "list":
        path, method = base, "GET"
    elif action == "watch":
        path, method = base, "GET"
        query = [("watch", "true"), ("timeoutSeconds", "1"), *query]
    elif action == "delete":
        path, method = f"{base}/{_quote(draw(DELETE_NAMES))}", "DELETE"
    elif action == "deletecollection":
        path, method = base, "DELETE"
        query = [*query, ("dryRun", "All")]  # the bases and k3c's CRDs stay
    else:
        group = draw(st.sampled_from(["/api/v1", "/api/v2", "/apis/k3c.io/v1alpha1", "/apis/k3c.io/v9",
                                      "/apis/nope.example.com/v1", "/apis/k3c.io", "/apis", "/openapi/v3/apis/x",
                                      "/openapi/v2", "/apis/" + _quote(draw(WORDS))]))
        parts = draw(st.lists(st.one_of(st.sampled_from(["namespaces", k.plural, "watch", "fuzz-x", "status"]),
                                        NAMES.map(_quote)), max_size=6))
        path = "/".join([group, *parts])
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]))
        sub = draw(SUBRESOURCES)
        if sub and parts:
            path += "/" + sub
        if method == "DELETE":
            query = [*query, ("dryRun", "All")]  # (the path may name a collection)
    if method in ("POST", "PUT", "DELETE") and (method != "DELETE" or draw(st.booleans())):
        ctype = draw(CONTENT_TYPES)
        if draw(st.integers(0, 3)) == 0:
            body = draw(RAW_BODIES)
        elif method == "DELETE":
            body = _encode(draw(st.fixed_dictionaries({}, optional={
                "kind": JSON, "apiVersion": JSON, "preconditions": JSON, "dryRun": JSON,
                "propagationPolicy": JSON, "gracePeriodSeconds": JSON})), ctype, draw)
        else:
            body = _encode(draw(objects(k)), ctype, draw)
        headers["Content-Type"] = ctype
    elif method == "PATCH":
        ctype = draw(PATCH_TYPES)
        if draw(st.integers(0, 3)) == 0:
            body = draw(RAW_BODIES)
        elif "json-patch" in ctype:
            body = json.dumps(draw(JSON_PATCH_OPS)).encode()
        else:
            body = _encode(draw(objects(k) | JSON), "yaml" if "yaml" in ctype else "json", draw)
        headers["Content-Type"] = ctype
        if "apply" in ctype and draw(st.booleans()):
            query = [("fieldManager", "fuzz"), *query]
    return Request(method, path, query, headers, body)


# ---- the checks ---------------------------------------------------------------------------------------


def _check(req: Request, resp: requests.Response, findings: Findings) -> None:
    """No 5xx; an error answer is a one-line Status whose code is the HTTP status."""
    code = resp.status_code
    if code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = resp.text[:300]
    if code == 504 and isinstance(body, dict) and str(body.get("message")).startswith("Too large resource version"):
        return  # kube-apiserver's own answer to a resourceVersion from the future (reason Timeout)
    if code >= 500:
        message = body.get("message", "") if isinstance(body, dict) else text
        findings.add(f"{code} {str(message)[:120]}", f"{code} {text}\n    replay: {req.replay()}")
        return
    if req.method == "HEAD":
        return
    ok = (isinstance(body, dict) and body.get("kind") == "Status" and body.get("apiVersion") == "v1"
          and body.get("status") == "Failure" and body.get("code") == code and isinstance(body.get("reason"), str)
          and body.get("reason") and isinstance(body.get("message"), str) and "\n" not in body["message"])
    if not ok:
        findings.add(f"{code} malformed Status {req.method} {text[:60]}",
                     f"{code} {resp.headers.get('Content-Type')} {text}\n    replay: {req.replay()}")


def _send(session: requests.Session, srv: APIServerProcess, req: Request) -> requests.Response:
    url = srv.url + req.path
    if req.query:
        url += "?" + urllib.parse.urlencode(req.query)
    resp = session.request(req.method, url, data=req.body, headers=req.headers, timeout=30, stream=True,
                            verify=str(srv.data_dir / "tls" / "ca.crt"))
    if resp.status_code < 400:
        resp.close()  # a watch streams on: its answer's status is all that is checked
    return resp


def test_hostile_requests_never_get_a_5xx(served: tuple[APIServerProcess, RawClient, list[Kind]]) -> None:
    srv, api, kinds = served
    findings = Findings()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(hostile_requests(kinds))
    def run(req: Request) -> None:
        if time.monotonic() - findings.started > BUDGET:
            return
        findings.requests += 1
        try:
            try:
                resp = _send(api.session, srv, req)
            except requests.ConnectionError:  # a kept-alive connection the server closed after its last answer
                resp = _send(api.session, srv, req)
        except requests.RequestException as err:
            findings.add(f"no answer: {type(err).__name__}", f"{err}\n    replay: {req.replay()}")
            return
        _check(req, resp, findings)

    run()
    assert srv.proc is not None and srv.proc.poll() is None, f"the server died: {srv.log_tail()}"
    report = "\n".join(f"- {detail}" for detail in list(findings.failures.values())[:25])
    assert not findings.failures, f"{len(findings.failures)} kinds of bad answers in {findings.requests} " \
                                  f"requests (seed {SEED}):\n{report}"
    log = srv.log_path.read_text() if srv.log_path else ""
    assert "Traceback" not in log, f"internal errors in the server log:\n{log[-4000:]}"
    assert findings.requests >= min(EXAMPLES, 100), f"only {findings.requests} requests in {BUDGET} s"


@pytest.mark.parametrize("meta", [1, "x", [1], True])
def test_metadata_of_the_wrong_type_is_a_400(served: tuple[APIServerProcess, RawClient, list[Kind]],
                                             meta: Any) -> None:
    _srv, api, _kinds = served
    for path in ("/api/v1/namespaces/default/configmaps", "/apis/k3c.io/v1alpha1/namespaces/default/volumes",
                 "/api/v1/namespaces"):
        r = api.post(path, {"metadata": meta})
        assert r.status_code == 400, r.text
        status = r.json()
        assert status["kind"] == "Status" and status["reason"] == "BadRequest"
        assert "cannot unmarshal" in status["message"] and "metadata" in status["message"]


def test_deep_nesting_is_a_400(served: tuple[APIServerProcess, RawClient, list[Kind]]) -> None:
    _srv, api, _kinds = served
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    for path, body in (("/api/v1/namespaces", b'{"metadata":{"name":"deep"},"spec":' + deep + b"}"),
                       ("/apis/k3c.io/v1alpha1/namespaces/default/localcontainers",
                        b'{"metadata":{"name":"deep"},"spec":{"image":"x","env":' + deep + b"}}")):
        r = api.request("POST", path, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "BadRequest" and "nest" in r.json()["message"]


@pytest.mark.parametrize("query", [
    "watch=1&timeoutSeconds=nan", "watch=1&timeoutSeconds=-1", "watch=1&timeoutSeconds=1.5", "limit=%C2%B2",
    "watch=1&resourceVersion=99999999999999999999999", "resourceVersion=%C2%B2&resourceVersionMatch=Exact",
    "continue=eyJydiI6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTksInN0YXJ0IjoiIn0=",
])
def test_bad_query_values_are_a_400(served: tuple[APIServerProcess, RawClient, list[Kind]], query: str) -> None:
    _srv, api, _kinds = served
    r = api.get(f"/api/v1/namespaces/{BASE_NS}/configmaps?{query}", timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "BadRequest"
