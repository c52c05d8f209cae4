"""Test harness for images: a real registry (Debian's docker-registry) and a real k3c image stack.

- :class:`RegistryProcess`: ``docker-registry serve`` on 127.0.0.1 and a free port, storage in a temp dir,
  htpasswd (basic) auth, optionally TLS with a CA made here; stopped by its PID.
- :class:`ImagesStack`: containerd in temp dirs (its own CNI names, nothing shared with a running k3c),
  the embedded API server with the image archive subresources (tests/support/images_apiserver.py), the CRDs, and
  the operator with only its image controller (``python -m k3c.operator --controllers images``, unless
  ``controllers`` says otherwise). With ``cluster``, another node of that stack's API server: its own
  containerd and operator, no API server of its own.
  Every process is started here and stopped by its own PID; the temp dirs go at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k3c.api import (
    CUSTOM_RESOURCE_DEFINITIONS,
    IMAGE_PUSHES,
    IMAGE_TAGS,
    IMAGES,
    KUBECONFIG_FILE,
    LOCAL_CONTAINERS,
)
from tests.support.daemon_harness import pick_subnet
from tests.support.harness import REPO, free_port, kubectl_env, wait_until

CRDS = REPO / "crds"


def _stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM that very process, SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


# ------------------------------------------------------------------------------------------ TLS material


def make_ca_and_cert(directory: Path, host: str = "127.0.0.1", dns_names: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` (and ``dns_names``) signed by it: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k3c test registry CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)),
                                                        *(x509.DNSName(d) for d in dns_names)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# ------------------------------------------------------------------------------------------ registry


@dataclass
class RegistryProcess:
    """``docker-registry serve`` on 127.0.0.1:<free port> with htpasswd auth (``users``; none: no auth)."""

    base: Path
    users: dict[str, str] | None = field(default_factory=lambda: {"k3c": "s3cret"})
    tls: bool = False
    token_auth: dict[str, str] | None = None  # realm, service, issuer, rootcertbundle
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    ca: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryProcess:
        self.base.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if self.token_auth:
            config["auth"] = {"token": self.token_auth}
        elif self.users:
            lines = [subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True, text=True).stdout
                     .strip() for u, p in self.users.items()]
            (self.base / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "k3c-test", "path": str(self.base / "htpasswd")}}
        if self.tls:
            self.ca, cert, key = make_ca_and_cert(self.base / "tls")
            config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        (self.base / "config.yml").write_text(yaml.safe_dump(config))
        log = self.base / "registry.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(self.base / "config.yml")],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class ImagesStack:
    """containerd + API server (with save/load) + CRDs + the image operator, all in ``base``."""

    base: Path
    node: str = "k3c-test-node"
    controllers: str = "images"  #: the operator's --controllers
    operator_args: list[str] = field(default_factory=list)  #: more flags for the operator
    operator_env: dict[str, str] = field(default_factory=dict)  #: more environment for the operator
    metrics_port: int | None = None  #: serve containerd's Prometheus metrics on 127.0.0.1:PORT
    containerd: Any = None
    apiserver: subprocess.Popen | None = None
    operator: subprocess.Popen | None = None
    port: int = field(default_factory=free_port)
    cluster: ImagesStack | None = None  #: join this stack's API server as another node

    @property
    def data_dir(self) -> Path:
        return self.cluster.data_dir if self.cluster is not None else self.base / "api"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / KUBECONFIG_FILE

    @property
    def socket(self) -> str:
        return str(self.containerd.config.socket_path)

    @property
    def certs_dir(self) -> Path:
        return self.containerd.config.registry_config_path

    def start(self) -> ImagesStack:
        self._start_containerd()
        if self.cluster is None:
            self._start_apiserver()
            self.install_crds()
        self._start_operator()
        return self

    def _start_containerd(self) -> None:
        from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess

        tag = uuid.uuid4().hex[:6]
        cfg = ContainerdConfig(root_dir=self.base / "ctd-root", state_dir=self.base / "ctd-state",
                               network_name=f"k3ci{tag}", bridge=f"k3ci{tag}", subnet=pick_subnet(),
                               metrics_address=f"127.0.0.1:{self.metrics_port}" if self.metrics_port else None)
        self.containerd = ContainerdProcess(cfg)
        asyncio.run(self.containerd.start())

    def _start_apiserver(self) -> None:
        log = self.base / "apiserver.log"
        with open(log, "ab") as out:
            self.apiserver = subprocess.Popen(
                [sys.executable, "-m", "tests.support.images_apiserver", str(self.data_dir), str(self.port),
                 self.socket], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _wait_port(self.port, self.apiserver, log)
        deadline = time.monotonic() + 15
        while not self.kubeconfig.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.02)

    def client(self) -> Any:
        from k3c import kubeclient

        return kubeclient.Client(kubeclient.load(str(self.kubeconfig)))

    def install_crds(self) -> None:
        client = self.client()
        for path in sorted(CRDS.glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            client.create(CUSTOM_RESOURCE_DEFINITIONS.path(), crd)
        deadline = time.monotonic() + 15
        for resource in (IMAGES, IMAGE_TAGS, IMAGE_PUSHES, LOCAL_CONTAINERS):
            while True:
                try:
                    client.get(resource.path())
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        client.close()

    def env(self) -> dict[str, str]:
        return {**os.environ, "K3C_KUBECONFIG": str(self.kubeconfig), "KUBECONFIG": str(self.kubeconfig)}

    def _start_operator(self) -> None:
        from k3c.daemon.supervisor import operator_command

        log = self.base / "operator.log"
        ctd = self.containerd.config
        with open(log, "ab") as out:
            self.operator = subprocess.Popen(
                [*operator_command(), "--controllers", self.controllers, "--kubeconfig", str(self.kubeconfig),
                 "--containerd-address", self.socket, "--node-name", self.node,
                 "--root-dir", str(self.base / "root"), "--containerd-root", str(ctd.root_dir),
                 "--containerd-state", str(ctd.state_dir), "--ready-file", str(self.base / "operator.ready"),
                 *self.operator_args],
                stdout=out, stderr=subprocess.STDOUT, env={**self.env(), **self.operator_env}, cwd=self.base)
        # Ready once the controllers have listed containerd: an image imported now becomes an object.
        deadline = time.monotonic() + 30
        while not (self.base / "operator.ready").exists():
            if self.operator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start: {log.read_text()[-3000:]}")
            time.sleep(0.05)

    def k3c(self, *args: str, input: str | bytes | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], input=input, capture_output=True,
                            text=text, env=self.env(), timeout=timeout, cwd=REPO)
        if check and cp.returncode != 0:
            raise AssertionError(f"k3c {' '.join(args)} failed ({cp.returncode}): {cp.stderr}{cp.stdout}")
        return cp

    def kubectl(self, kubectl: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cp = subprocess.run([kubectl, *args], capture_output=True, text=True, timeout=60,
                            env=kubectl_env(self.kubeconfig))
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {cp.stderr}")
        return cp

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "-a", self.socket, "-n", "k8s.io", *args], capture_output=True, text=True,
                              timeout=120, check=check)

    def containerd_images(self) -> dict[str, str]:
        """containerd's image names in k8s.io → target digest (ground truth, read with ctr)."""
        out = self.ctr("images", "ls").stdout.splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    def image_objects(self) -> list[dict[str, Any]]:
        client = self.client()
        try:
            return client.get(IMAGES.path()).get("items", [])
        finally:
            client.close()

    def wait(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        """:func:`harness.wait_until`, with the operator's log in the failure."""
        try:
            return wait_until(predicate, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{err}; operator log:\n"
                                 f"{(self.base / 'operator.log').read_text()[-4000:]}") from None

    def stop(self) -> None:
        _stop(self.operator, 20)
        _stop(self.apiserver)
        if self.containerd is not None:
            from k3c.daemon.containerd import cleanup_network

            asyncio.run(self.containerd.stop())
            cleanup_network(self.containerd.config)


def new_base(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove_base(base: Path) -> None:
    subprocess.run(["umount", "-R", str(base)], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def import_image(socket: str, name: str, image: Any) -> None:
    """Put an image into containerd directly (behind k3c's back), through the containerd API."""
    from k3c.cri.imagestore import ContainerdImages

    async def run() -> None:
        async with ContainerdImages(socket) as store:
            await store.import_image(name, image)

    asyncio.run(run())


def sized_image(megabytes: float, layers: int = 3, seed: str = "") -> Any:
    """A multi-layer image of incompressible data (``megabytes`` in all), gzip layers like a registry's."""
    import random

    from k3c.oci.layout import ImageConfig, build_image, build_layer

    rng = random.Random(seed or uuid.uuid4().hex)
    per = int(megabytes * 1_000_000 / layers)
    built = [build_layer({f"data/layer{i}.bin": rng.randbytes(per)}, compress=True) for i in range(layers)]
    return build_image(built, ImageConfig(cmd=["sh"], labels={"seed": seed}))


def json_dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
