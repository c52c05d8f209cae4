"""k3c.distribution and k3c.archives against real components: Debian's docker-registry (basic auth, token
auth, TLS) and containerd.

No API server here: the client, push, pull-into-content and the archives are exercised directly, the way
the operator and the API server's save/load use them. Every process is started by the fixtures and
stopped by its PID.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from k3c.archives.formats import ArchiveError
from k3c.archives.load import load
from k3c.archives.save import save
from k3c.cri.content import list_statuses
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network
from k3c.distribution.auth import Credentials
from k3c.distribution.client import RegistryClient
from k3c.distribution.errors import NotFound, Unauthorized, Unreachable
from k3c.distribution.hosts import HostSettings, RegistriesConfig
from k3c.distribution.pull import pull_image
from k3c.distribution.push import push_image
from k3c.oci.layout import (
    MEDIA_INDEX,
    Descriptor,
    ImageConfig,
    OCIImage,
    build_image,
    build_layer,
    canonical_json,
    sha256_digest,
    write_oci_archive,
)
from k3c.oci.reference import parse
from tests.support.daemon_harness import pick_subnet
from tests.support.images_harness import RegistryProcess, make_ca_and_cert, new_base, remove_base, sized_image

pytestmark = [pytest.mark.containerd, pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("htpasswd")),
    reason="needs docker-registry and apache2-utils",
)]

USER, PASSWORD = "k3c", "s3cret"
GOOD = Credentials(USER, PASSWORD)


class Env:
    def __init__(self, base: Path, socket: str, registry: RegistryProcess) -> None:
        self.base = base
        self.socket = socket
        self.registry = registry
        self.loop = asyncio.new_event_loop()
        self.store: ContainerdImages = self.run(self._store())

    async def _store(self) -> ContainerdImages:
        return ContainerdImages(self.socket)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def client(self, host: str | None = None, creds: Credentials | None = GOOD,
               settings: HostSettings | None = None) -> RegistryClient:
        async def make() -> RegistryClient:
            return RegistryClient(host or self.registry.host, credentials=creds, settings=settings)

        return self.run(make())


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    base = new_base("k3creg-")
    tag = uuid.uuid4().hex[:6]
    cfg = ContainerdConfig(root_dir=base / "root", state_dir=base / "state", network_name=f"k3cr{tag}",
                           bridge=f"k3cr{tag}", subnet=pick_subnet())
    proc = ContainerdProcess(cfg)
    registry = RegistryProcess(base / "registry")
    e = None
    try:
        asyncio.run(proc.start())
        registry.start()
        e = Env(base, str(cfg.socket_path), registry)
        yield e
    finally:
        if e is not None:
            e.run(e.store.close())
            e.loop.close()
        registry.stop()
        asyncio.run(proc.stop())
        cleanup_network(cfg)
        remove_base(base)


def _import(env: Env, name: str, image: OCIImage) -> None:
    env.run(env.store.import_image(name, image))


def _forget(env: Env, name: str, image: OCIImage) -> None:
    """Remove an image completely: its name and the ID reference CRI adds to every image it sees."""
    env.run(env.store.delete(name))
    env.run(env.store.delete(image.id, sync=True))


def _states(result: Any) -> list[str]:
    return sorted(b.state for b in result.blobs)


# ------------------------------------------------------------------------------------------ push / pull


@pytest.mark.parametrize("chunk_size", [None, 300_000], ids=["monolithic", "chunked"])
def test_push_then_pull_gives_same_digest(env: Env, chunk_size: int | None) -> None:
    image = sized_image(1.5, layers=2, seed=f"push-{chunk_size}")
    _import(env, "k3c.test/push:src", image)
    target = parse(f"{env.registry.host}/lib/push-{chunk_size or 0}:v1")
    client = env.client()
    try:
        seen: list[tuple[str, str, int]] = []
        result = env.run(push_image(env.store, client, "k3c.test/push:src", target, chunk_size=chunk_size,
                                    report=lambda b: seen.append((b.digest, b.state, b.current))))
        assert result.digest == image.target.digest
        assert _states(result) == ["Pushed", "Pushed", "Pushed"]
        assert any(s == "Pushing" and 0 < cur for _, s, cur in seen), "byte progress was reported"
        assert env.run(client.head_manifest(target.path, "v1")) == image.target.digest
        again = env.run(push_image(env.store, client, "k3c.test/push:src", target))
        assert _states(again) == ["Layer already exists"] * 3
        name = f"k3c.test/pulled-{chunk_size or 0}:v1"
        desc = env.run(pull_image(env.store, client, target, name=name))
        assert desc.digest == image.target.digest
        assert env.run(env.store.get(name)).target.digest == image.target.digest
    finally:
        env.run(client.close())


def test_uncompressed_layers_are_pushed_gzip(env: Env) -> None:
    """As docker does: an uncompressed layer (k3c's builds, docker archives) goes to the registry gzipped; the
    config, so the image ID, is the same, and pulling it back gives the pushed digest. The gzip form's digest
    is remembered on the local blob, so pushing again compresses nothing and sends nothing."""
    import gzip

    from k3c.distribution.compress import GZIP_LABEL

    layers = [build_layer({f"data/{i}.txt": (f"line {i}\n" * 40_000).encode()}) for i in range(2)]
    image = build_image(layers, ImageConfig(cmd=["sh"]))
    _import(env, "k3c.test/plain:src", image)
    target = parse(f"{env.registry.host}/lib/plain:v1")
    client = env.client()
    try:
        result = env.run(push_image(env.store, client, "k3c.test/plain:src", target))
        assert result.digest != image.target.digest, "the pushed manifest names the gzip layers"
        pushed = env.run(client.get_manifest("lib/plain", "v1"))
        doc = json.loads(pushed.data)
        assert pushed.digest == result.digest and doc["config"]["digest"] == image.id
        local = image.manifest["layers"]
        for mine, theirs in zip(local, doc["layers"], strict=True):
            assert theirs["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
            blob = b"".join(env.run(_collect(client.fetch_blob("lib/plain", theirs["digest"]))))
            assert len(blob) == theirs["size"] < mine["size"] // 10, "compressed"
            assert sha256_digest(gzip.decompress(blob)) == mine["digest"], "it unpacks to the same diff ID"
            label = env.run(env.store.info(mine["digest"])).labels[GZIP_LABEL]
            assert label == f"{theirs['digest']},{theirs['size']}"
        again = env.run(push_image(env.store, client, "k3c.test/plain:src", target))
        assert again.digest == result.digest and _states(again) == ["Layer already exists"] * 3
        other = env.run(push_image(env.store, client, "k3c.test/plain:src", parse(f"{env.registry.host}/lib/else:v1")))
        assert other.digest == result.digest, "compressed again (the other repository lacks it): same bytes"
        desc = env.run(pull_image(env.store, client, target, name="k3c.test/plain:pulled"))
        assert desc.digest == result.digest
        config = json.loads(env.run(env.store.read(image.id)))
        assert config["rootfs"]["diff_ids"] == [d["digest"] for d in local]
        assert not list(Path(tempfile.gettempdir()).glob("k3c-push-*")), "no temporary files left"
    finally:
        env.run(client.close())


async def _collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [c async for c in chunks]


def test_cross_repository_mount(env: Env) -> None:
    image = sized_image(0.5, layers=1, seed="mount")
    _import(env, "k3c.test/mount:src", image)
    client = env.client()
    try:
        src = parse(f"{env.registry.host}/team/a:1")
        env.run(push_image(env.store, client, "k3c.test/mount:src", src))
        _forget(env, "k3c.test/mount:src", image)
        env.run(pull_image(env.store, client, src, name="k3c.test/mount:pulled"))  # labels the blob's source
        info = env.run(env.store.info(image.manifest["layers"][0]["digest"]))
        assert info.labels.get(f"containerd.io/distribution.source.{env.registry.host}") == "team/a"
        result = env.run(push_image(env.store, client, "k3c.test/mount:pulled", parse(f"{env.registry.host}/team/b:1")))
        assert "Mounted from team/a" in _states(result)
    finally:
        env.run(client.close())


def _platform_image(arch: str) -> OCIImage:
    layer = build_layer({"arch": arch.encode()}, compress=True)  # pushed as is (see the gzip test below)
    return build_image([layer], ImageConfig(architecture=arch, cmd=["true"]))


def _index(images: list[OCIImage]) -> OCIImage:
    blobs: dict[str, bytes] = {}
    manifests = []
    for img in images:
        blobs.update(img.blobs)
        manifests.append(img.target.to_json())
    data = canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests})
    blobs[sha256_digest(data)] = data
    return OCIImage(Descriptor(MEDIA_INDEX, sha256_digest(data), len(data)), blobs)


def test_index_push_and_partial_index(env: Env) -> None:
    index = _index([_platform_image("amd64"), _platform_image("arm64")])
    _import(env, "k3c.test/multi:all", index)
    client = env.client()
    try:
        result = env.run(push_image(env.store, client, "k3c.test/multi:all", parse(f"{env.registry.host}/multi:all")))
        assert result.digest == index.target.digest and result.media_type == MEDIA_INDEX
        got = env.run(client.get_manifest("multi", "all"))
        assert got.data == index.blobs[index.target.digest]
        # only one platform local (as after a CRI pull): that manifest alone is pushed
        amd = _platform_image("amd64")
        partial = _index([amd, _platform_image("s390x")])
        _import(env, "k3c.test/multi:amd", amd)
        data = partial.blobs[partial.target.digest]

        async def name_partial() -> None:
            lease = await env.store.create_lease()
            await env.store.write(partial.target.digest, data, gc_labels(MEDIA_INDEX, data), lease=lease)
            await env.store.put("k3c.test/multi:partial", partial.target, lease=lease)
            await env.store.delete_lease(lease)

        env.run(name_partial())
        result = env.run(push_image(env.store, client, "k3c.test/multi:partial",
                                    parse(f"{env.registry.host}/multi:partial")))
        assert result.media_type != MEDIA_INDEX
        assert result.digest == amd.target.digest
    finally:
        env.run(client.close())


def test_errors_are_clear(env: Env) -> None:
    bad = env.client(creds=Credentials(USER, "wrong"))
    anon = env.client(creds=None)
    down = env.client(host="127.0.0.1:1")
    good = env.client()
    try:
        with pytest.raises(Unauthorized):
            env.run(bad.ping())
        with pytest.raises(Unauthorized):
            env.run(anon.get_manifest("lib/none", "latest"))
        with pytest.raises(Unreachable, match="connection refused"):
            env.run(down.ping())
        with pytest.raises(NotFound, match="manifest unknown"):
            env.run(good.get_manifest("lib/none", "latest"))
    finally:
        for c in (bad, anon, down, good):
            env.run(c.close())


# ------------------------------------------------------------------------------------------ token auth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """distribution's token protocol: GET /token?service=&scope= with basic auth → a signed JWT (ES256, x5c)."""

    def __init__(self, base: Path, address: str = "127.0.0.1") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        _, cert_path, key_path = make_ca_and_cert(base, "127.0.0.1")
        self.cert_path = cert_path
        self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        self.issued: list[list[str]] = []
        self.authorizations: list[str] = []  #: the Authorization header of each token request ('' if none)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                creds = self.headers.get("Authorization", "")
                server.authorizations.append(creds)
                ok = creds == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if creds and not ok:
                    self.send_response(401)
                    self.end_headers()
                    return
                scopes = query.get("scope", []) if ok else []
                server.issued.append(scopes)
                body = json.dumps({"token": server.token(query.get("service", [""])[0], scopes),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://{address}:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, service: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "k3c-test-issuer", "sub": USER, "aud": service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_bearer_token_auth(env: Env) -> None:
    tokens = TokenServer(env.base / "token")
    registry = RegistryProcess(env.base / "token-registry", token_auth={
        "realm": f"http://127.0.0.1:{tokens.port}/token", "service": "k3c-test-registry",
        "issuer": "k3c-test-issuer", "rootcertbundle": str(tokens.cert_path)})
    try:
        registry.start()
        image = sized_image(0.3, layers=1, seed="token")
        _import(env, "k3c.test/token:v1", image)
        client = env.client(host=registry.host)
        try:
            result = env.run(push_image(env.store, client, "k3c.test/token:v1", parse(f"{registry.host}/tok/app:v1")))
            assert result.digest == image.target.digest
            assert any("repository:tok/app:pull,push" in s for s in tokens.issued)
            _forget(env, "k3c.test/token:v1", image)
            env.run(pull_image(env.store, client, parse(f"{registry.host}/tok/app:v1"), name="k3c.test/token:back"))
        finally:
            env.run(client.close())
        wrong = env.client(host=registry.host, creds=Credentials(USER, "nope"))
        try:
            with pytest.raises(Unauthorized, match="incorrect username or password"):
                env.run(wrong.get_manifest("tok/app", "v1"))
        finally:
            env.run(wrong.close())
    finally:
        registry.stop()
        tokens.stop()


def _routable_address() -> str | None:
    """This host's IPv4 address on its default route (not loopback), if it has one."""
    route = subprocess.run(["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True).stdout
    words = route.split()
    if "dev" not in words:
        return None
    dev = words[words.index("dev") + 1]
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev, "scope", "global"], capture_output=True,
                           text=True).stdout.split()
    return addrs[addrs.index("inet") + 1].split("/")[0] if "inet" in addrs else None


def test_credentials_go_only_to_an_https_or_insecure_token_realm(env: Env) -> None:
    """A registry (here the real docker-registry with token auth, on loopback) may name any realm in its
    Bearer challenge: basic credentials go to it over plain HTTP only if its host is loopback or marked
    insecure in k3c-registries. The token server is the test's own: docker-registry has none."""
    address = _routable_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address for a plain-HTTP token realm")
    tokens = TokenServer(env.base / "plain-token", address)
    registry = RegistryProcess(env.base / "plain-realm-registry", token_auth={
        "realm": tokens.realm, "service": "k3c-test-registry", "issuer": "k3c-test-issuer",
        "rootcertbundle": str(tokens.cert_path)})
    try:
        registry.start()
        image = sized_image(0.1, layers=1, seed="plain-realm")
        _import(env, "k3c.test/plain-realm:v1", image)
        ref = parse(f"{registry.host}/tok/plain:v1")
        client = env.client(host=registry.host)
        try:
            with pytest.raises(Unauthorized, match=f"credentials not sent to the token realm {tokens.realm}: it "
                                                   f"is not HTTPS .*mark {address}:{tokens.port} insecure"):
                env.run(push_image(env.store, client, "k3c.test/plain-realm:v1", ref))
        finally:
            env.run(client.close())
        assert not any(tokens.authorizations), "the credentials went to the realm"
        insecure = RegistriesConfig(insecure={f"{address}:{tokens.port}"}).for_host(registry.host)
        client = env.client(host=registry.host, settings=insecure)
        try:
            env.run(push_image(env.store, client, "k3c.test/plain-realm:v1", ref))
        finally:
            env.run(client.close())
        assert tokens.authorizations[-1].startswith("Basic "), "a realm marked insecure gets them"
    finally:
        registry.stop()
        tokens.stop()


def test_tls_with_named_ca(env: Env) -> None:
    registry = RegistryProcess(env.base / "tls-registry", tls=True)
    try:
        registry.start()
        assert registry.ca is not None
        # 127.0.0.1 is loopback, so without a CA k3c (like docker) would accept any certificate; a non-loopback
        # name must be verified. The CA named for it makes the handshake verify, and a wrong CA fails.
        with_ca = env.client(host=registry.host, settings=HostSettings(registry.host, ca_pem=registry.ca.read_text()))
        other_ca = make_ca_and_cert(env.base / "other-ca")[0].read_text()
        wrong_ca = env.client(host=registry.host, settings=HostSettings(registry.host, ca_pem=other_ca))
        try:
            env.run(with_ca.ping())
            assert with_ca._base == f"https://{registry.host}"
            with pytest.raises(Unreachable, match="certificate verify failed|x509"):
                env.run(wrong_ca.ping())
        finally:
            env.run(with_ca.close())
            env.run(wrong_ca.close())
    finally:
        registry.stop()


# ------------------------------------------------------------------------------------------ archives


async def _file_chunks(path: Path, size: int = 65536) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def _save(env: Env, names: list[str], fmt: str, out: Path) -> None:
    async def run() -> None:
        with open(out, "wb") as f:
            async for chunk in await save(env.store, names, fmt):
                f.write(chunk)

    env.run(run())


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_load_round_trip(env: Env, fmt: str) -> None:
    image = sized_image(2.5, layers=2, seed=f"archive-{fmt}")  # layers above the in-memory threshold
    name = f"docker.io/library/archive-{fmt}:v1"
    _import(env, name, image)
    out = env.base / f"save-{fmt}.tar"
    _save(env, [name, f"archive-{fmt}:v1"], fmt, out)
    # the archive is what other tools read: skopeo inspects it in the same format
    raw = subprocess.run(["skopeo", "inspect", "--config", "--raw", f"{fmt}:{out}"], capture_output=True, text=True)
    assert raw.returncode == 0, raw.stderr
    assert sha256_digest(raw.stdout.encode()) == image.id
    _forget(env, name, image)
    loaded = env.run(load(env.store, _file_chunks(out)))
    assert [(i.name, i.id) for i in loaded] == [(name, image.id)]
    record = env.run(env.store.get(name))
    if fmt == "oci-archive":
        assert record.target.digest == image.target.digest  # byte for byte
    assert env.run(list_statuses(env.store)) == []


def test_save_of_a_partial_index_is_the_local_platform(env: Env) -> None:
    """An index of which only one platform is local (as after a CRI pull) saves as that platform's image:
    an archive naming blobs it lacks would be unreadable."""
    amd = _platform_image("amd64")
    partial = _index([amd, _platform_image("s390x")])
    name = "docker.io/library/partial-save:v1"
    _import(env, "k3c.test/partial-save:amd", amd)
    data = partial.blobs[partial.target.digest]

    async def name_partial() -> None:
        lease = await env.store.create_lease()
        await env.store.write(partial.target.digest, data, gc_labels(MEDIA_INDEX, data), lease=lease)
        await env.store.put(name, partial.target, lease=lease)
        await env.store.delete_lease(lease)

    env.run(name_partial())
    out = env.base / "partial.tar"
    _save(env, [name], "oci-archive", out)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"], capture_output=True, text=True)
    assert raw.returncode == 0, raw.stderr
    assert sha256_digest(raw.stdout.encode()) == amd.target.digest


def test_load_what_skopeo_and_docker_write(env: Env) -> None:
    image = sized_image(1.2, layers=2, seed="skopeo")
    oci = env.base / "skopeo-src.tar"
    write_oci_archive(oci, {"docker.io/library/skopeo:v1": image})
    docker_archive = env.base / "skopeo-docker.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{oci}", f"docker-archive:{docker_archive}:skopeo:v2"],
                   check=True)
    loaded = env.run(load(env.store, _file_chunks(docker_archive, 999)))
    assert [(i.name, i.id) for i in loaded] == [("docker.io/library/skopeo:v2", image.id)]
    gz = env.base / "skopeo-docker.tar.gz"
    gz.write_bytes(__import__("gzip").compress(docker_archive.read_bytes()))  # docker save | gzip
    assert [i.id for i in env.run(load(env.store, _file_chunks(gz)))] == [image.id]


def test_broken_archives_name_nothing(env: Env) -> None:
    image = sized_image(2.5, layers=1, seed="broken")
    src = env.base / "broken-src.tar"
    write_oci_archive(src, {"docker.io/library/broken:v1": image})
    data = src.read_bytes()
    truncated = env.base / "truncated.tar"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ArchiveError, match="truncated"):
        env.run(load(env.store, _file_chunks(truncated)))
    not_tar = env.base / "not.tar"
    not_tar.write_bytes(b"hello" * 1000)
    with pytest.raises(ArchiveError):
        env.run(load(env.store, _file_chunks(not_tar)))
    # an index naming a blob the archive lacks
    index = json.loads(image.blobs[image.target.digest])
    index["layers"][0]["digest"] = "sha256:" + hashlib.sha256(b"other").hexdigest()
    bad = OCIImage(image.target, dict(image.blobs))
    tampered = canonical_json(index)
    bad.blobs[sha256_digest(tampered)] = tampered
    bad.target = Descriptor(image.target.media_type, sha256_digest(tampered), len(tampered))
    write_oci_archive(env.base / "missing.tar", {"docker.io/library/broken:v1": bad})
    with pytest.raises(ArchiveError, match="missing"):
        env.run(load(env.store, _file_chunks(env.base / "missing.tar")))
    assert env.run(env.store.get("docker.io/library/broken:v1")) is None
    assert env.run(list_statuses(env.store)) == []
    with pytest.raises(ArchiveError, match="does not exist"):
        env.run(save(env.store, ["nothing-here:v9"], "docker-archive"))


def test_load_streams_a_large_manifest_and_reads_it_back(env: Env) -> None:
    """A manifest above the in-memory threshold (1 MiB) goes to the content store while reading, like a
    layer; it is still read back as a manifest (children checked, GC labels set), up to the 4 MiB cap."""
    image = sized_image(0.2, layers=1, seed="big-manifest")
    manifest = json.loads(image.blobs[image.target.digest])
    manifest["annotations"] = {"padding": "p" * (2 << 20)}
    data = canonical_json(manifest)
    big = OCIImage(Descriptor(image.target.media_type, sha256_digest(data), len(data)),
                   {**{k: v for k, v in image.blobs.items() if k != image.target.digest}, sha256_digest(data): data})
    write_oci_archive(env.base / "big-manifest.tar", {"docker.io/library/big-manifest:v1": big})
    loaded = env.run(load(env.store, _file_chunks(env.base / "big-manifest.tar")))
    assert [(i.name, i.digest, i.id) for i in loaded] == [("docker.io/library/big-manifest:v1", big.target.digest,
                                                           image.id)]
    info = env.run(env.store.info(big.target.digest))
    assert info is not None and info.labels.get("containerd.io/gc.ref.content.config") == image.id
    manifest["annotations"] = {"padding": "p" * (5 << 20)}
    data = canonical_json(manifest)
    huge = OCIImage(Descriptor(image.target.media_type, sha256_digest(data), len(data)),
                    {**big.blobs, sha256_digest(data): data})
    write_oci_archive(env.base / "huge-manifest.tar", {"docker.io/library/huge-manifest:v1": huge})
    with pytest.raises(ArchiveError, match=f"manifest {huge.target.digest} is larger than 4 MiB"):
        env.run(load(env.store, _file_chunks(env.base / "huge-manifest.tar")))
    assert env.run(env.store.get("docker.io/library/huge-manifest:v1")) is None
