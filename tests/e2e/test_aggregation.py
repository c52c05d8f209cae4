"""APIService aggregation through the embedded API server, to a real HTTPS backend run by the test.

The backend trusts what an aggregated API server trusts: the front proxy's client certificate, verified
against ``requestheader-client-ca-file`` from ``kube-system/extension-apiserver-authentication``, its CN in
``requestheader-allowed-names``; and it believes the user in the ``X-Remote-*`` headers. The Service is
resolved through its Endpoints, as a cluster's endpoints controller would have written them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from k3c import servingcerts
from tests.support.harness import APIServerProcess, RawClient, free_port, run_kubectl, wait_until

GROUP, VERSION = "streams.k3c.io", "v1alpha1"
NS, SVC = "k3c-system", "k3c-agent"
ROOT = f"/apis/{GROUP}/{VERSION}"
LOG = f"{ROOT}/namespaces/default/localcontainers/c1/log"


@dataclass
class Backend:
    """An aggregated API server in a thread of the test: it records what reached it."""

    directory: Path
    requestheader_ca: str
    allowed_names: list[str]
    port: int = field(default_factory=free_port)
    seen: list[dict[str, Any]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    runner: web.AppRunner | None = None

    @property
    def material(self) -> servingcerts.ServingMaterial:
        return servingcerts.ensure(self.directory, [f"{SVC}.{NS}.svc"], "test-aggregated")

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.material.cert, self.material.key)
        ctx.load_verify_locations(cadata=self.requestheader_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # no front proxy certificate, no request
        return ctx

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), "")
        if cn not in self.allowed_names:
            return web.Response(status=401, text=f"front proxy {cn!r} not allowed")
        self.seen.append({"path": request.path_qs, "method": request.method, "headers": list(request.headers.items())})
        if request.path == ROOT:
            return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                                      "resources": [{"name": "localcontainers/log", "namespaced": True, "kind": "Log",
                                                     "verbs": ["get"]}]})
        if request.path.endswith("/exec") and request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse(protocols=["v5.channel.k8s.io"])
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(b"echo:" + msg.data)
                    await ws.close(code=1000)
            return ws
        if request.path == f"/openapi/v3{ROOT}":
            return web.json_response({"openapi": "3.0.0", "info": {"title": "backend", "version": "v"}, "paths": {}})
        if request.path == f"{ROOT}/images/busybox/load":  # an upload: the body streams through
            body = await request.read()
            return web.json_response({"received": len(body), "head": body[:4].decode()}, status=201)
        if request.path == LOG:
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for line in (b"line one\n", b"line two\n"):
                await resp.write(line)
                await asyncio.sleep(0.05)
            await resp.write_eof()
            return resp
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                  "reason": "NotFound", "message": "not here"}, status=404)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self._tls())
            self.loop.run_until_complete(site.start())
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _configmap(server: APIServerProcess) -> dict[str, str]:
    r = RawClient(server).get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _available(server: APIServerProcess) -> str:
    obj = RawClient(server).get(f"/apis/apiregistration.k8s.io/v1/apiservices/{VERSION}.{GROUP}").json()
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Available"),
                "")


@pytest.fixture(scope="module")
def aggregated(apiserver, tmp_path_factory) -> Iterator[tuple[APIServerProcess, Backend]]:
    data = _configmap(apiserver)
    backend = Backend(tmp_path_factory.mktemp("backend"), data["requestheader-client-ca-file"],
                      json.loads(data["requestheader-allowed-names"]))
    backend.start()
    kc = apiserver.kubeconfig
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SVC, "namespace": NS},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6444}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SVC, "namespace": NS},
         "subsets": [{"addresses": [{"ip": "127.0.0.1", "nodeName": "n1"}],
                      "ports": [{"name": "https", "port": backend.port}]}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"{VERSION}.{GROUP}"},
         "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 1000, "versionPriority": 15,
                  "service": {"namespace": NS, "name": SVC, "port": 443},
                  "caBundle": base64.b64encode(backend.material.ca_pem).decode()}},
    ]
    run_kubectl("kubectl", kc, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    wait_until(lambda: _available(apiserver) == "True", 20, "the APIService to be Available")
    yield apiserver, backend
    backend.stop()


def _headers(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


def test_request_reaches_the_backend_with_the_front_proxys_word(aggregated, kubectl):
    server, backend = aggregated
    backend.seen.clear()
    out = run_kubectl(kubectl, server.kubeconfig, "get", "--raw", LOG + "?follow=true")
    assert out.stdout == "line one\nline two\n"
    seen = backend.seen[-1]
    assert seen["path"] == LOG + "?follow=true"
    assert _headers(seen, "X-Remote-User") == ["admin"]
    assert _headers(seen, "X-Remote-Group") == ["system:masters", "system:authenticated"]
    assert _headers(seen, "Authorization") == []  # the client's credentials stay here
    assert _headers(seen, "Host") == [f"{SVC}.{NS}.svc"]


def test_service_account_is_authorized_here_and_named_there(aggregated, kubectl, tmp_path):
    server, backend = aggregated
    kc = server.kubeconfig
    sa = f"viewer-{Path(kubectl).name.replace('.', '-')}"
    run_kubectl(kubectl, kc, "-n", "default", "create", "serviceaccount", sa)
    token = run_kubectl(kubectl, kc, "-n", "default", "create", "token", sa).stdout.strip()
    client = RawClient(server, token=token)
    backend.seen.clear()
    denied = client.get(LOG, headers={"X-Remote-User": "admin"})
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        f'localcontainers.streams.k3c.io "c1" is forbidden: User "system:serviceaccount:default:{sa}" cannot get '
        f'resource "localcontainers/log" in API group "streams.k3c.io" in the namespace "default"')
    assert backend.seen == []
    run_kubectl(kubectl, kc, "-n", "default", "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": sa},
        "rules": [{"apiGroups": [GROUP], "resources": ["localcontainers/log"], "verbs": ["get"]}]}))
    run_kubectl(kubectl, kc, "-n", "default", "create", "rolebinding", sa, f"--role={sa}",
                f"--serviceaccount=default:{sa}")
    allowed = client.get(LOG, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert allowed.status_code == 200 and allowed.text == "line one\nline two\n"
    seen = backend.seen[-1]
    assert _headers(seen, "X-Remote-User") == [f"system:serviceaccount:default:{sa}"]  # not what the client said
    assert _headers(seen, "X-Remote-Group") == ["system:serviceaccounts", "system:serviceaccounts:default",
                                                "system:authenticated"]
    jti = _headers(seen, "X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id")
    assert len(jti) == 1 and jti[0].startswith("JTI=")
    assert _headers(seen, "X-Remote-Uid") and not _headers(seen, "Authorization")


def test_an_upload_streams_through(aggregated):
    server, _backend = aggregated
    body = b"tar!" + bytes(3 * 1024 * 1024)  # bigger than any one read

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = RawClient(server).post(f"{ROOT}/images/busybox/load", data=chunks(),
                               headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 201 and r.json() == {"received": len(body), "head": "tar!"}


def test_discovery_lists_the_aggregated_group(aggregated, kubectl):
    server, _backend = aggregated
    api = RawClient(server)
    groups = {g["name"]: g for g in api.get("/apis").json()["groups"]}
    assert groups[GROUP]["preferredVersion"] == {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    assert api.get(f"/apis/{GROUP}").json()["versions"] == [{"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}]
    assert api.get(ROOT).json()["resources"][0]["name"] == "localcontainers/log"  # the backend's own answer
    assert api.get("/openapi/v3").json()["paths"][f"apis/{GROUP}/{VERSION}"] == {
        "serverRelativeURL": f"/openapi/v3/apis/{GROUP}/{VERSION}"}
    assert api.get(f"/openapi/v3/apis/{GROUP}/{VERSION}").json()["info"]["title"] == "backend"
    listed = run_kubectl(kubectl, server.kubeconfig, "api-versions").stdout.split()
    assert f"{GROUP}/{VERSION}" in listed


def test_websocket_upgrade_is_joined(aggregated):
    server, _backend = aggregated

    async def exchange() -> tuple[str | None, bytes]:
        ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
        async with aiohttp.ClientSession() as session, session.ws_connect(
                server.url + f"{ROOT}/namespaces/default/localcontainers/c1/exec?command=sh",
                protocols=["v5.channel.k8s.io"], ssl=ctx,
                headers={"Authorization": f"Bearer {server.token}"}) as ws:
            await ws.send_bytes(b"\x00hi")
            msg = await ws.receive()
            return ws.protocol, msg.data

    protocol, data = asyncio.run(exchange())
    assert (protocol, data) == ("v5.channel.k8s.io", b"echo:\x00hi")


def test_a_refused_upgrade_is_passed_back_as_the_backend_answered(aggregated):
    """The backend's own Status reaches the client (kube-apiserver's upgrade-aware proxy copies a refusal),
    not a proxy's guess: here the backend's 404 "not here" for an attach it does not serve."""
    server, _backend = aggregated

    async def upgrade() -> tuple[int, str, dict[str, Any]]:
        ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
        headers = {"Authorization": f"Bearer {server.token}", "Connection": "Upgrade", "Upgrade": "websocket",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                   "Sec-WebSocket-Protocol": "v5.channel.k8s.io"}
        async with aiohttp.ClientSession() as session, session.get(
                server.url + f"{ROOT}/namespaces/default/localcontainers/c1/attach", headers=headers, ssl=ctx) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.json()

    status, content_type, body = asyncio.run(upgrade())
    assert (status, content_type.split(";")[0]) == (404, "application/json")
    assert (body["reason"], body["message"]) == ("NotFound", "not here")


def test_backend_down_is_a_503_and_unavailable(aggregated, tmp_path):
    server, backend = aggregated
    backend.stop()
    try:
        r = RawClient(server).get(LOG)
        assert r.status_code == 503
        assert r.json()["reason"] == "ServiceUnavailable"
        wait_until(lambda: _available(server) == "False", 30, "the APIService to be unavailable")
        r = RawClient(server).get(LOG)
        assert (r.status_code, r.json()["message"]) == (503, "service unavailable")
    finally:
        backend.start()
    wait_until(lambda: _available(server) == "True", 30, "the APIService to be available again")
    assert RawClient(server).get(LOG).status_code == 200
