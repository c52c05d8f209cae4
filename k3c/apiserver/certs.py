"""TLS material for the API server: a private CA, a serving certificate and an admin client certificate.

Generated once, on first start, into the data directory (keys 0600) and reused afterwards, so a kubeconfig
handed out earlier keeps working across restarts. The admin client certificate carries the
`system:masters` organisation, as a kubeadm/k3s admin kubeconfig does. The CA is also the client CA: any
certificate it signed for client use authenticates as its CN, in the groups of its Os (kube's x509
authenticator).

A second, separate CA is the front proxy's (kube-apiserver's ``--requestheader-client-ca-file``): its one
client certificate, CN ``front-proxy-client``, is what the aggregator presents to aggregated API servers
(``--proxy-client-cert-file``). It is never trusted for the API server's own clients.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k3c.servingcerts import key_pem, subject_alt_names, write_private

VALIDITY = dt.timedelta(days=3650)
#: The admin token's random bytes; a stored token shorter than this (a crash while writing it, a full disk)
#: is replaced at start.
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Material:
    """Paths of the generated files and the admin bearer token."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    token: str


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, subject: x509.Name, usage: x509.ObjectIdentifier,
    hosts: list[str] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    b = _builder(subject, ca.subject, key)
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    b = b.add_extension(x509.KeyUsage(
        digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    ), critical=True)
    b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    # from the CA's key, the same public key as its certificate's, with a type the extension accepts
    issuer = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    b = b.add_extension(issuer, critical=False)
    if hosts:
        b = b.add_extension(subject_alt_names(hosts), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


@dataclass(frozen=True)
class FrontProxy:
    """The front proxy's CA and the client certificate the aggregator presents with it."""

    ca_cert: Path
    client_cert: Path
    client_key: Path


#: The front proxy client certificate's CN: what ``requestheader-allowed-names`` lists.
FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure(data_dir: Path, hosts: list[str]) -> Material:
    """Create the CA, server and client material if absent; return where it is."""
    pki = data_dir / "tls"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    m = Material(
        ca_cert=pki / "ca.crt", server_cert=pki / "server.crt", server_key=pki / "server.key",
        client_cert=pki / "admin.crt", client_key=pki / "admin.key", token="",
    )
    token_file = pki / "admin.token"
    if not m.ca_cert.exists():
        _generate(m, hosts)
    elif not _covers(m.server_cert, hosts):
        _regenerate_server(m, hosts)
    return Material(**{**m.__dict__, "token": _ensure_token(token_file)})


def ensure_front_proxy(data_dir: Path) -> FrontProxy:
    """The front proxy's CA and client certificate, made once beside the server's own (keys 0600)."""
    pki = data_dir / "tls"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    fp = FrontProxy(pki / "front-proxy-ca.crt", pki / "front-proxy-client.crt", pki / "front-proxy-client.key")
    if not (fp.ca_cert.exists() and fp.client_cert.exists() and fp.client_key.exists()):
        ca, ca_key = _new_ca("k3c-front-proxy-ca")
        write_private(fp.ca_cert.with_suffix(".key"), key_pem(ca_key))
        cert, key = _leaf(ca, ca_key, _name(FRONT_PROXY_CLIENT), ExtendedKeyUsageOID.CLIENT_AUTH)
        write_private(fp.client_key, key_pem(key))
        fp.client_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fp.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))  # last: it marks the set complete
    return fp


def issue_client(m: Material, user: str, groups: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A client certificate (PEM) and its key (PEM) signed by the client CA: it authenticates as ``user``
    in ``groups`` (CN and Os), as a kubeadm ``kubeconfig user`` certificate does."""
    ca = x509.load_pem_x509_certificate(m.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(m.ca_cert.with_suffix(".key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    subject = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert, key = _leaf(ca, ca_key, subject, ExtendedKeyUsageOID.CLIENT_AUTH)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def _ensure_token(path: Path) -> str:
    """The stored admin token, or a new one if there is none or it is too short to be one of ours."""
    try:
        token = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        token = ""
    if len(token.encode()) >= TOKEN_BYTES:
        return token
    token = secrets.token_hex(TOKEN_BYTES)
    _replace_private(path, token.encode())
    return token


def _replace_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) so that a crash leaves the old file or the whole new one: a temporary
    file beside it, synced, then renamed over it, and the directory synced."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _new_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(cn)
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def _generate(m: Material, hosts: list[str]) -> None:
    ca, ca_key = _new_ca("k3c-ca")
    write_private(m.ca_cert.with_suffix(".key"), key_pem(ca_key))
    m.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _regenerate_server(m, hosts)
    cert, key = _leaf(ca, ca_key, _name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    m.client_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(m.client_key, key_pem(key))


def _regenerate_server(m: Material, hosts: list[str]) -> None:
    ca = x509.load_pem_x509_certificate(m.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(m.ca_cert.with_suffix(".key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    all_hosts = sorted(set(hosts) | {"127.0.0.1", "localhost", "::1", "kubernetes", "kubernetes.default"})
    cert, key = _leaf(ca, ca_key, _name("k3c-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, all_hosts)
    m.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(m.server_key, key_pem(key))


def _covers(cert_path: Path, hosts: list[str]) -> bool:
    """Whether the existing serving certificate names every host we listen on."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return all(h in present for h in hosts)
