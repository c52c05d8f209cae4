"""kube-apiserver semantics, checked at the HTTP level: versions, conflicts, status, finalizers, errors."""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from tests.support.harness import RawClient
from tests.support.sample_crds import WIDGET_CRD


@pytest.fixture(scope="module")
def api(apiserver):
    c = RawClient(apiserver)
    crd = yaml.safe_load(WIDGET_CRD)
    r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert r.status_code == 201, r.text
    return c


W = "/apis/test.k3c.io/v1/namespaces/default/widgets"


def make(api, name, size=1, **extra):
    body = {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": name, **extra},
            "spec": {"size": size}}
    r = api.post(W, body)
    assert r.status_code == 201, r.text
    return r.json()


def test_unauthenticated_requests_get_401(apiserver):
    for client in (RawClient(apiserver, token=None), RawClient(apiserver, token="wrong")):
        r = client.get("/api/v1/namespaces")
        assert r.status_code == 401
        body = r.json()
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


def test_crd_is_established_with_accepted_names(api):
    crd = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.k3c.io").json()
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    res = api.get("/apis/test.k3c.io/v1").json()
    names = {r["name"]: r for r in res["resources"]}
    assert names["widgets"]["shortNames"] == ["wd"] and names["widgets"]["singularName"] == "widget"
    assert names["widgets/status"]["verbs"] == ["get", "patch", "update"]
    groups = {g["name"] for g in api.get("/apis").json()["groups"]}
    assert {"test.k3c.io", "apiextensions.k8s.io"} <= groups


def test_create_sets_server_fields_and_generate_name(api):
    obj = make(api, "", generateName="gen-")
    meta = obj["metadata"]
    assert meta["name"].startswith("gen-") and len(meta["name"]) == 9
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    dup = api.post(W, {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": meta["name"]},
                       "spec": {"size": 1}})
    assert dup.status_code == 409 and dup.json()["reason"] == "AlreadyExists"


def test_update_conflict_generation_and_noop(api):
    obj = make(api, "upd")
    stale = json.loads(json.dumps(obj))
    obj["spec"]["size"] = 2
    r = api.put(f"{W}/upd", obj)
    assert r.status_code == 200
    new = r.json()
    assert new["metadata"]["generation"] == 2
    assert int(new["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    stale["spec"]["size"] = 3
    r = api.put(f"{W}/upd", stale)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    new["metadata"]["labels"] = {"a": "b"}
    labelled = api.put(f"{W}/upd", new).json()
    assert labelled["metadata"]["generation"] == 2  # metadata-only change
    same = api.put(f"{W}/upd", labelled).json()
    assert same["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]  # no-op write


def test_status_subresource_semantics(api):
    make(api, "st")
    r = api.patch(f"{W}/st/status", {"status": {"phase": "Up"}, "spec": {"size": 50}}, "application/merge-patch+json")
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["status"] == {"phase": "Up"} and obj["spec"]["size"] == 1  # spec ignored on /status
    obj["status"] = {"phase": "Down"}
    obj["spec"]["size"] = 7
    main = api.put(f"{W}/st", obj).json()
    assert main["status"] == {"phase": "Up"} and main["spec"]["size"] == 7  # status ignored on main


def test_finalizers_keep_object_until_removed(api):
    make(api, "fin", finalizers=["test.k3c.io/hold"])
    r = api.delete(f"{W}/fin")
    assert r.status_code == 200
    obj = api.get(f"{W}/fin").json()
    assert obj["metadata"]["deletionTimestamp"]
    r = api.patch(f"{W}/fin", [{"op": "remove", "path": "/metadata/finalizers"}], "application/json-patch+json")
    assert r.status_code == 200, r.text
    assert api.get(f"{W}/fin").status_code == 404


def test_dry_run_stores_nothing(api):
    body = {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": "dry"}, "spec": {"size": 1}}
    r = api.post(W + "?dryRun=All", body)
    assert r.status_code == 201 and r.json()["spec"]["color"] == "red"
    assert api.get(f"{W}/dry").status_code == 404


def test_json_patch_test_op_fails_with_422(api):
    make(api, "jp")
    r = api.patch(f"{W}/jp", [{"op": "test", "path": "/spec/size", "value": 5}], "application/json-patch+json")
    assert r.status_code == 422 and r.json()["kind"] == "Status"
    r = api.patch(f"{W}/jp", {"spec": {"size": 2}}, "application/strategic-merge-patch+json")
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"


def test_server_side_apply_upserts(api):
    doc = "apiVersion: test.k3c.io/v1\nkind: Widget\nmetadata: {name: ssa}\nspec: {size: 4}\n"
    r = api.patch(f"{W}/ssa?fieldManager=test", doc, "application/apply-patch+yaml")
    assert r.status_code == 201, r.text
    r = api.patch(f"{W}/ssa?fieldManager=test", doc.replace("size: 4", "size: 6"), "application/apply-patch+yaml")
    assert r.status_code == 200 and r.json()["spec"]["size"] == 6
    r = api.patch(f"{W}/ssa", doc, "application/apply-patch+yaml")
    assert r.status_code == 400


def test_strategic_merge_on_builtin(api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "smp", "labels": {"a": "1"}}, "data": {"k": "v"}}
    assert api.post("/api/v1/namespaces/default/configmaps", cm).status_code == 201
    r = api.patch("/api/v1/namespaces/default/configmaps/smp", {"metadata": {"labels": {"b": "2"}}, "data": {"k": None}},
                  "application/strategic-merge-patch+json")
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "1", "b": "2"} and r.json().get("data", {}) == {}


def test_selectors_and_pagination(api):
    for i in range(5):
        make(api, f"page-{i}", labels={"batch": "p", "idx": str(i)})
    r = api.get(W, params={"labelSelector": "batch=p,idx in (1,3)"}).json()
    assert sorted(o["metadata"]["name"] for o in r["items"]) == ["page-1", "page-3"]
    r = api.get(W, params={"fieldSelector": "metadata.name=page-2"}).json()
    assert [o["metadata"]["name"] for o in r["items"]] == ["page-2"]
    bad = api.get(W, params={"fieldSelector": "spec.size=1"})
    assert bad.status_code == 400 and "field label not supported" in bad.json()["message"]
    seen, token = [], None
    while True:
        params = {"labelSelector": "batch=p", "limit": "2"}
        if token:
            params["continue"] = token
        page = api.get(W, params=params).json()
        seen += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] > 0
    assert seen == [f"page-{i}" for i in range(5)]


def test_table_output(api):
    make(api, "tbl", labels={"t": "1"})
    r = api.get(W, params={"labelSelector": "t=1"},
                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    t = r.json()
    assert t["kind"] == "Table"
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Size", "Color", "Ready", "Shape", "Age"]
    assert [c["priority"] for c in t["columnDefinitions"]][4] == 1
    assert t["rows"][0]["cells"][:3] == ["tbl", 1, "red"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def _watch(api, params, out, stop_after):
    with api.session.get(api.base + W, params={"watch": "true", **params}, stream=True, timeout=30, verify=api.ca) as r:
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
            if len(out) >= stop_after:
                return


def test_watch_replay_and_exactly_one_event_per_write(api):
    start = make(api, "wr-0")["metadata"]["resourceVersion"]
    for i in range(1, 4):
        make(api, f"wr-{i}")
    events: list = []
    t = threading.Thread(target=_watch, args=(api, {"resourceVersion": start, "fieldSelector": ""}, events, 4))
    t.start()
    time.sleep(0.3)
    api.delete(f"{W}/wr-1")
    t.join(10)
    names = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert names[:3] == [("ADDED", "wr-1"), ("ADDED", "wr-2"), ("ADDED", "wr-3")]
    assert names[3] == ("DELETED", "wr-1")
    revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revs == sorted(revs) and len(set(revs)) == 4
    assert events[3]["object"]["spec"]["size"] == 1  # DELETED carries the last state


def test_watch_synthetic_added_bookmarks_and_timeout(api):
    make(api, "wb", labels={"wb": "1"})
    t0 = time.monotonic()
    with api.session.get(api.base + W, params={"watch": "1", "labelSelector": "wb=1", "allowWatchBookmarks": "true",
                                               "timeoutSeconds": "3"}, stream=True, timeout=30, verify=api.ca) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert time.monotonic() - t0 < 6
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "wb"
    assert any(e["type"] == "BOOKMARK" for e in events[1:])
    with api.session.get(api.base + W, params={"watch": "1", "labelSelector": "wb=1", "timeoutSeconds": "2"},
                         stream=True, timeout=30, verify=api.ca) as r:
        plain = [json.loads(line) for line in r.iter_lines() if line]
    assert [e["type"] for e in plain] == ["ADDED"]  # no bookmarks unless asked for


#: 335 bytes of YAML whose aliases expand to 9**7 strings, 39 MB as JSON (a "billion laughs").
ALIAS_BOMB = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: bomb}
data: {}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_yaml_aliases_are_refused(api):
    """A YAML body may not repeat an object or array through an alias (nor nest one in itself): bodies are
    trees, as in JSON, so a few hundred bytes cannot expand to gigabytes on their way to storage."""
    cms = "/api/v1/namespaces/default/configmaps"
    assert len(ALIAS_BOMB) < 500
    for body in (ALIAS_BOMB, b"metadata: {name: loop}\nspec: &a [*a]\n",
                 b"metadata: {name: merged}\nx: &a {k: [v]}\ny: {<<: *a}\n"):
        r = api.request("POST", cms, data=body, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 400, r.text[:300]
        assert r.json()["reason"] == "BadRequest" and "alias" in r.json()["message"]
    r = api.request("PATCH", f"{cms}/bomb", data=ALIAS_BOMB, params={"fieldManager": "t"},
                    headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 400, r.text[:300]
    assert api.get(f"{cms}/bomb").status_code == 404
    plain = b"metadata: {name: anchored}\ndata: {a: &v shared, b: *v}\n"  # an alias of a string copies nothing
    r = api.request("POST", cms, data=plain, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201 and r.json()["data"] == {"a": "shared", "b": "shared"}, r.text


def test_bodies_over_3_mib_are_a_413_also_when_chunked(api):
    """kube-apiserver's limit for request bodies (MaxRequestBodyBytes, 3 MiB), whether or not the client
    announces the length."""
    def chunks():
        yield b'{"metadata": {"name": "chunked"}, "data": {"x": "'
        for _ in range(4):
            yield b"y" * (1024 * 1024)
        yield b'"}}'

    r = api.request("POST", "/api/v1/namespaces/default/configmaps", data=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    status = r.json()
    assert status["reason"] == "RequestEntityTooLarge" and status["message"] == \
        "Request entity too large: limit is 3145728"


def test_error_statuses_for_bad_input(api):
    r = api.request("POST", W, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    r = api.request("POST", W, data=b"a: [unclosed", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    r = api.request("POST", W, data=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "y" * (3 * 1024 * 1024)}}
    r = api.post("/api/v1/namespaces/default/configmaps", big)
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"
    r = api.get("/apis/nope.example.com/v1/things")
    assert r.status_code == 404 and r.json()["kind"] == "Status"
    r = api.post(W, {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": "Bad_Name"},
                     "spec": {"size": 1}})
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert "metadata.name" in r.json()["message"]
    r = api.post(W, {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": "nosize"}, "spec": {}})
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.size"
    r = api.post(W, ["not", "an", "object"])
    assert r.status_code == 400
    r = api.get(W + "/nope")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    assert api.get("/healthz").status_code == 200  # still serving


def test_namespace_lifecycle(api):
    assert api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}).status_code == 201
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert api.post("/api/v1/namespaces/gone/configmaps", cm).status_code == 201
    r = api.delete("/api/v1/namespaces/gone")
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
    deadline = time.monotonic() + 10
    while api.get("/api/v1/namespaces/gone").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.get("/api/v1/namespaces/gone/configmaps/c").status_code == 404
    r = api.post("/api/v1/namespaces/missing/configmaps", cm)
    assert r.status_code == 404
    assert api.delete("/api/v1/namespaces/default").status_code == 403


def test_pagination_is_a_consistent_snapshot(api):
    for i in range(4):
        make(api, f"snap-{i}", labels={"snap": "1"})
    page = api.get(W, params={"labelSelector": "snap=1", "limit": "2"}).json()
    rv = page["metadata"]["resourceVersion"]
    api.delete(f"{W}/snap-3")  # written after the first page: later pages must not see it
    make(api, "snap-9", labels={"snap": "1"})
    rest = api.get(W, params={"labelSelector": "snap=1", "limit": "10", "continue": page["metadata"]["continue"]}).json()
    assert [o["metadata"]["name"] for o in rest["items"]] == ["snap-2", "snap-3"]
    assert rest["metadata"]["resourceVersion"] == rv
    exact = api.get(W, params={"labelSelector": "snap=1", "resourceVersion": rv, "resourceVersionMatch": "Exact"}).json()
    assert [o["metadata"]["name"] for o in exact["items"]] == [f"snap-{i}" for i in range(4)]
    now = api.get(W, params={"labelSelector": "snap=1"}).json()
    assert [o["metadata"]["name"] for o in now["items"]] == ["snap-0", "snap-1", "snap-2", "snap-9"]


def test_delete_collection_and_crd_deletion_cascade(api):
    crd = yaml.safe_load(WIDGET_CRD.replace("widgets", "gadgets").replace("Widget", "Gadget")
                         .replace("widget", "gadget").replace("[wd]", "[gd]"))
    assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status_code == 201
    g = "/apis/test.k3c.io/v1/namespaces/default/gadgets"
    for i in range(3):
        body = {"apiVersion": "test.k3c.io/v1", "kind": "Gadget", "metadata": {"name": f"g{i}", "labels": {"i": str(i)}},
                "spec": {"size": 1}}
        assert api.post(g, body).status_code == 201
    r = api.delete(g, params={"labelSelector": "i in (0,1)"})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    assert [o["metadata"]["name"] for o in api.get(g).json()["items"]] == ["g2"]
    assert api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.k3c.io").status_code == 200
    assert api.get(g).status_code == 404
    assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status_code == 201
    assert api.get(g).json()["items"] == []  # no object outlived its CRD


def test_new_crd_is_served_before_its_watch_event_arrives(api):
    seen: list = []
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    rv = api.get(crds).json()["metadata"]["resourceVersion"]
    crd = yaml.safe_load(WIDGET_CRD.replace("widgets", "sprockets").replace("Widget", "Sprocket")
                         .replace("widget", "sprocket").replace("[wd]", "[sp]"))
    with api.session.get(api.base + crds, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5"},
                         stream=True, timeout=30, verify=api.ca) as r:
        assert api.post(crds, crd).status_code == 201
        for line in r.iter_lines():
            if not line:
                continue
            ev = json.loads(line)
            seen.append(ev["type"])
            # At the moment the event is seen, discovery and the resource itself must already answer.
            names = [x["name"] for x in api.get("/apis/test.k3c.io/v1").json()["resources"]]
            assert "sprockets" in names
            assert api.get("/apis/test.k3c.io/v1/namespaces/default/sprockets").status_code == 200
            break
    assert seen == ["ADDED"]


def test_events_expire_after_the_event_ttl(tmp_path):
    """kube-apiserver's --event-ttl: an Event last written longer ago than the TTL is deleted (watchers see
    DELETED), a later one stays until its own time; other objects are never touched."""
    from datetime import UTC, datetime

    from tests.support.harness import APIServerProcess

    srv = APIServerProcess(tmp_path / "data", extra_args=["--event-ttl", "6s"])
    srv.start()
    try:
        c = RawClient(srv)
        base = "/api/v1/namespaces/default/events"

        def event(name):
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                    "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
                    "reason": "Test", "message": name, "type": "Normal",
                    "firstTimestamp": stamp, "lastTimestamp": stamp}
            r = c.post(base, body)
            assert r.status_code == 201, r.text
            return r.json()["metadata"]["resourceVersion"]

        def names():
            return sorted(o["metadata"]["name"] for o in c.get(base).json()["items"])

        rv = event("first")
        assert c.post("/api/v1/namespaces/default/configmaps",
                      {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}).status_code == 201
        time.sleep(2)
        event("second")
        assert names() == ["first", "second"], "nothing expires before its TTL"
        deadline = time.monotonic() + 10
        while "first" in names() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert names() == ["second"], "the first went at its TTL, the second is not due yet"
        r = c.get(base + f"?watch=1&resourceVersion={rv}&timeoutSeconds=1", stream=True)
        seen = [(json.loads(line)["type"], json.loads(line)["object"]["metadata"]["name"])
                for line in r.iter_lines() if line]
        assert ("DELETED", "first") in seen
        deadline = time.monotonic() + 10
        while names() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert names() == []
        assert c.get("/api/v1/namespaces/default/configmaps/kept").status_code == 200
    finally:
        srv.stop()


PATTERN_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tokens.test.k3c.io
spec:
  group: test.k3c.io
  scope: Namespaced
  names: {plural: tokens, singular: token, kind: Token}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              word: {type: string, pattern: '^[a-z]+(-[a-z]+)*$'}
              run: {type: string, pattern: '^(a+)+$'}
"""


def test_crd_patterns_are_go_regexps(api):
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd = yaml.safe_load(PATTERN_CRD)
    field = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[word].pattern"
    bad = yaml.safe_load(PATTERN_CRD.replace("'^[a-z]+(-[a-z]+)*$'", "'^([a-z])\\1$'"))
    r = api.post(crds, bad)
    assert r.status_code == 422 and r.json()["reason"] == "Invalid", r.text
    assert r.json()["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": field,
        "message": 'Invalid value: "^([a-z])\\\\1$": must be a valid regular expression, but isn\'t: '
                   "error parsing regexp: invalid escape sequence: `\\1`"}]
    assert api.get(f"{crds}/tokens.test.k3c.io").status_code == 404

    r = api.post(crds, crd)
    assert r.status_code == 201, r.text
    stored = r.json()
    stored["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["word"][
        "pattern"] = "^(?=[a-z])"
    r = api.put(f"{crds}/tokens.test.k3c.io", stored)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == field
    assert "invalid or unsupported Perl syntax: `(?=`" in r.json()["message"]

    tokens = "/apis/test.k3c.io/v1/namespaces/default/tokens"

    def token(name, **spec):
        return {"apiVersion": "test.k3c.io/v1", "kind": "Token", "metadata": {"name": name}, "spec": spec}

    assert api.post(tokens, token("ok", word="two-words", run="aaa")).status_code == 201
    r = api.post(tokens, token("bad", word="Two-Words"))
    assert r.status_code == 422
    assert r.json()["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.word",
        "message": "Invalid value: \"Two-Words\": spec.word in body should match '^[a-z]+(-[a-z]+)*$'"}]
    started = time.monotonic()
    r = api.post(tokens, token("slow", run="a" * 200_000 + "b"))  # exponential for a backtracking engine
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.run"
    assert time.monotonic() - started < 10
