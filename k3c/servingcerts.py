"""A private CA and a serving certificate signed by it, made once into a directory and kept.

For the HTTPS endpoints k3c serves to an API server (the operator's admission webhooks; in cluster mode the
agent's): the API server verifies them against the CA, which it is given as a ``caBundle``. Generated on
first use (keys 0600, directory 0700) and reused across restarts, so a registered caBundle stays valid; the
serving certificate is made again when it no longer names every host asked for or is near its end. A leaf:
only ``cryptography`` and the standard library.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)
#: A serving certificate this close to its end is made again at start.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServingMaterial:
    ca_cert: Path
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (a key, a token): created 0600, so it is never readable by others, not even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM (its file is 0600: see :func:`write_private`)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY))


def subject_alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    """The SAN extension naming ``hosts``: IP addresses as such, anything else as a DNS name."""
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def ensure(directory: Path, hosts: list[str], name: str, client_auth: bool = False) -> ServingMaterial:
    """The CA (``ca.crt``/``ca.key``) and serving pair (``tls.crt``/``tls.key``) in ``directory`` for
    ``hosts``; ``name`` goes into their common names. ``client_auth``: the pair may also authenticate its
    holder as a TLS client (the node agents' one certificate, which they serve with and call each other with)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    m = ServingMaterial(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    ca_key_path = directory / "ca.key"
    if not m.ca_cert.exists() or not ca_key_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (_builder(_name(f"{name}-ca"), _name(f"{name}-ca"), ca_key)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(_usage(ca=True), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        write_private(ca_key_path, key_pem(ca_key))
        m.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        m.cert.unlink(missing_ok=True)
    if not _current(m, hosts, client_auth):
        _issue(m, ca_key_path, hosts, name, client_auth)
    return m


def _current(m: ServingMaterial, hosts: list[str], client_auth: bool) -> bool:
    """Whether the serving pair exists, is signed by this CA, names every host, has the usages asked for and
    is not near its end."""
    if not m.cert.exists() or not m.key.exists():
        return False
    cert = x509.load_pem_x509_certificate(m.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(m.ca_cert.read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    if client_auth and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return all(h in present for h in hosts)


def _issue(m: ServingMaterial, ca_key_path: Path, hosts: list[str], name: str, client_auth: bool) -> None:
    ca = x509.load_pem_x509_certificate(m.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(name), ca.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]
                                                 + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(subject_alt_names(sorted(set(hosts))), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(m.key, key_pem(key))
    m.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
