"""Pure functions behind registry and archive work: references like docker's (k3c.oci), credentials,
challenges, host settings (k3c.distribution), tar streams (k3c.archives)."""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import tarfile

import pytest

from k3c.archives.tarstream import TarReader, file_header, padding
from k3c.distribution import auth, hosts
from k3c.oci.reference import InvalidReference, is_image_id, normalize, object_name, parse

DIGEST = "sha256:" + "ab" * 32

# (input, normalized, familiar) — the cases of distribution/reference's normalize tests that k3c meets daily.
NORMALIZE = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    ("quay.io/org/app:v1.2_3", "quay.io/org/app:v1.2_3", "quay.io/org/app:v1.2_3"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST, "busybox@" + DIGEST),
    ("busybox:1.36@" + DIGEST, "docker.io/library/busybox@" + DIGEST, "busybox@" + DIGEST),
    ("[::1]:5000/app:t", "[::1]:5000/app:t", "[::1]:5000/app:t"),
    ("a__b/c-d.e", "docker.io/a__b/c-d.e:latest", "a__b/c-d.e:latest"),
]


@pytest.mark.parametrize(("text", "normalized", "familiar"), NORMALIZE)
def test_normalize_like_docker(text: str, normalized: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == normalized
    assert ref.familiar() == familiar
    assert normalize(normalized) == normalized  # idempotent


@pytest.mark.parametrize(("text", "message"), [
    ("", "invalid reference format"),
    ("Busybox", "repository name must be lowercase"),
    ("busybox:bad tag", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("-bad/name", "invalid reference format"),
    ("busybox@sha256:" + "a" * 63 + "g", "invalid reference format"),
    ("x/" + "a" * 260, "must not be more than 255 characters"),
])
def test_invalid_references_read_like_docker(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=re.escape(message)):
        parse(text)


def test_object_names_are_dns_subdomains_readable_deterministic_and_distinct() -> None:
    dns = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    names = {text: object_name(text) for text, _, _ in NORMALIZE}
    for text, name in names.items():
        assert dns.match(name) and len(name) <= 253, name
        assert name == object_name(normalize(text)), "same reference, same name"
    assert object_name("busybox").startswith("busybox.latest-")
    assert object_name("a/b:c") != object_name("a.b:c")
    assert object_name("x/" + "a" * 240 + ":T_a.g-").count(".") >= 1
    assert dns.match(object_name("x/" + "a" * 240 + ":T_a.g-"))


def test_image_ids() -> None:
    assert is_image_id("sha256:" + "0" * 64) and is_image_id("f" * 64)
    assert not is_image_id("busybox") and not is_image_id("sha256:abc")


def test_repository_and_registry_host() -> None:
    ref = parse("busybox")
    assert (ref.repository, ref.registry_host, ref.path, ref.object) == (
        "docker.io/library/busybox", "registry-1.docker.io", "library/busybox", "latest")
    assert parse("127.0.0.1:5000/x@" + DIGEST).object == DIGEST


# ------------------------------------------------------------------------------------------ credentials


def test_dockerconfig_roundtrip_and_lookup() -> None:
    cfg = auth.DockerConfig()
    cfg.set("127.0.0.1:5000", auth.Credentials("u", "p:w"))
    cfg.set("https://index.docker.io/v1/", auth.Credentials("hub", "pw"))
    again = auth.DockerConfig.from_secret({"data": cfg.secret_data()})
    assert again.lookup("127.0.0.1:5000") == auth.Credentials("u", "p:w")
    assert again.lookup("docker.io") == auth.Credentials("hub", "pw")
    assert again.lookup("registry-1.docker.io") == auth.Credentials("hub", "pw")
    assert "https://index.docker.io/v1/" in again.auths  # docker's own key, so docker reads it too
    assert again.lookup("other:1") is None
    assert again.remove("http://127.0.0.1:5000/") and again.lookup("127.0.0.1:5000") is None
    # docker writes only "auth"; kubectl create secret docker-registry writes both
    only_auth = auth.DockerConfig.from_json(b'{"auths": {"r.io": {"auth": "dXNlcjpwYXNz"}}}')
    assert only_auth.lookup("r.io") == auth.Credentials("user", "pass")


def test_challenges_parse() -> None:
    chs = auth.parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:samalba/my-app:pull,push", Basic realm="r x"')
    assert chs[0] == auth.Challenge("bearer", {"realm": "https://auth.docker.io/token",
                                               "service": "registry.docker.io",
                                               "scope": "repository:samalba/my-app:pull,push"})
    assert chs[1] == auth.Challenge("basic", {"realm": "r x"})
    assert auth.parse_challenges('Basic realm="k3c-test"') == [auth.Challenge("basic", {"realm": "k3c-test"})]
    assert auth.parse_challenges("Bearer realm=http://t/x,service=s") == [
        auth.Challenge("bearer", {"realm": "http://t/x", "service": "s"})]


# ------------------------------------------------------------------------------------------ hosts


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.3.4.5", True),
    ("[::1]:5000", True), ("10.0.0.1:5000", False), ("registry.example.com", False), ("localhostx:1", False),
])
def test_loopback_hosts_may_use_plain_http(host: str, loopback: bool) -> None:
    assert hosts.is_loopback(host) is loopback
    assert hosts.HostSettings(host).schemes() == (["https", "http"] if loopback else ["https"])


def test_registries_config_and_containerd_hosts_toml(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    cfg = hosts.RegistriesConfig.from_configmap({"data": {hosts.CONFIGMAP_KEY: (
        f'insecure: ["10.0.0.5:5000"]\nconfigs:\n  "reg.example:5443":\n    tls: {{ca_file: {ca}}}\n')}})
    insecure = cfg.for_host("10.0.0.5:5000")
    assert insecure.insecure and insecure.schemes() == ["https", "http"]
    secure = cfg.for_host("reg.example:5443")
    assert secure.ca_pem == "PEM" and secure.schemes() == ["https"]
    assert cfg.hosts() == {"10.0.0.5:5000", "reg.example:5443"}
    toml = hosts.hosts_toml(secure, "/x/ca.crt")
    assert 'server = "https://reg.example:5443"' in toml and 'ca = "/x/ca.crt"' in toml and "http://" not in toml
    toml = hosts.hosts_toml(insecure, None)
    assert "skip_verify = true" in toml and '[host."http://10.0.0.5:5000"]' in toml
    with pytest.raises(ValueError):
        hosts.RegistriesConfig.from_text("- just a list")


# ------------------------------------------------------------------------------------------ tar streams


def _tar(entries: dict[str, bytes], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("dir/link.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../" + next(iter(entries))
        tar.addfile(link)
    return buf.getvalue()


async def _read(data: bytes, piece: int = 777) -> dict[str, bytes | str]:
    async def source():
        for i in range(0, len(data), piece):
            yield data[i:i + piece]

    reader = TarReader(source())
    out: dict[str, bytes | str] = {}
    async for m in reader.members():
        out[m.name] = await reader.read_all(m) if m.is_file else f"-> {m.linkname}"
    return out


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_tar_reader_streams_members_with_long_names(fmt: int) -> None:
    long = "blobs/sha256/" + "c" * 64 + "/" + "d" * 120
    entries = {"a.json": b'{"x":1}', long: bytes(range(256)) * 40, "empty": b""}
    got = asyncio.run(_read(_tar(entries, fmt)))
    assert {k: v for k, v in got.items() if isinstance(v, bytes)} == entries
    assert got["dir/link.tar"] == "-> ../a.json"
    assert asyncio.run(_read(gzip.compress(_tar(entries, fmt)), piece=5)) == got  # gzip recognised


def test_tar_reader_reports_truncation_and_garbage() -> None:
    data = _tar({"big": b"x" * 5000}, tarfile.PAX_FORMAT)
    with pytest.raises(ValueError, match="truncated"):
        asyncio.run(_read(data[:3000]))
    with pytest.raises(ValueError, match="not a tar archive"):
        asyncio.run(_read(b"this is not a tar file at all" * 40))


def test_tar_writer_output_is_read_by_tarfile() -> None:
    name = "x/" + "y" * 150
    data = file_header(name, 3) + b"abc" + padding(3) + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember(name)
        assert tar.extractfile(member).read() == b"abc"  # type: ignore[union-attr]


def test_tar_reader_caps_long_headers_and_refuses_negative_sizes() -> None:
    """A PAX or GNU long-name header is held in memory whole: more than 1 MiB is refused before it is read."""
    for kind in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
        header = tarfile.TarInfo("././@LongLink")
        header.type, header.size = kind, (1 << 20) + 1
        data = header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 2048  # the payload itself never comes
        with pytest.raises(ValueError, match=r"tar header of 1048577 bytes \(more than 1048576\)"):
            asyncio.run(_read(data))
    pax = tarfile.TarInfo("f")
    pax.pax_headers = {"size": "-5"}
    with pytest.raises(ValueError, match="negative size"):
        asyncio.run(_read(pax.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * 1024))


@pytest.mark.parametrize(("realm", "insecure", "registry_insecure", "allowed"), [
    ("https://auth.example.com/token", set(), False, True),
    ("http://127.0.0.1:5001/token", set(), False, True),
    ("http://localhost/token", set(), False, True),
    ("http://auth.example.com/token", set(), False, False),
    ("http://10.0.0.5:5001/token", {"10.0.0.5:5000"}, False, False),
    ("http://10.0.0.5:5001/token", {"10.0.0.5:5001"}, False, True),
    ("http://10.0.0.5:5001/token", {"10.0.0.5"}, False, True),
    ("http://10.0.0.5:5001/token", set(), True, True),  # the insecure registry's own host
    ("http://[fd00::2]:5001/token", {"[fd00::2]:5001"}, False, True),
    ("ftp://10.0.0.5/token", {"10.0.0.5"}, False, False),
])
def test_credentials_travel_in_the_clear_only_to_loopback_or_insecure_hosts(
        realm: str, insecure: set[str], registry_insecure: bool, allowed: bool) -> None:
    from k3c.distribution.hosts import HostSettings

    settings = HostSettings("10.0.0.5:5000", insecure=registry_insecure, insecure_hosts=frozenset(insecure))
    assert settings.may_send_credentials(realm) is allowed


def test_per_node_object_names_start_with_the_node_and_keep_nodes_apart() -> None:
    """Cluster mode: one Image object per (node, reference), the node first so a node's images sort together."""
    dns = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    assert object_name("busybox", "node-a").startswith("node-a.busybox.latest-")
    assert object_name("busybox", "node-a") != object_name("busybox", "node-b") != object_name("busybox")
    assert object_name("busybox", "n.example") != object_name("example.busybox", "n"), "hash covers the node"
    for node in ("n1", "worker-" + "x" * 240, "a.b.c"):
        for ref in ("busybox", "x/" + "a" * 240 + ":T_a.g-", "127.0.0.1:5000/x@" + DIGEST):
            name = object_name(ref, node)
            assert dns.match(name) and len(name) <= 253, name
            assert name == object_name(normalize(ref), node)
