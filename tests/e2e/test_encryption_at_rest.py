"""Secrets are encrypted at rest in the storage log, as kube-apiserver's EncryptionConfiguration does it.

A real API server and kubectl: what kubectl writes comes back as written, across restarts, while the SQLite
database and its write-ahead log hold no byte of the secret data, in the current row nor in older ones.
"""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import yaml

from tests.support.harness import APIServerProcess, run_kubectl

PREFIX = b"k8s:enc:aesgcm:v1:key1:"


def _stored_bytes(data_dir: Path) -> bytes:
    """Everything SQLite keeps on disk: the database, its WAL and shared-memory index."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("state.db*")))


def _secret_data(kubectl: str, srv: APIServerProcess, name: str) -> dict[str, str]:
    out = run_kubectl(kubectl, srv.kubeconfig, "get", "secret", name, "-o", "yaml").stdout
    return yaml.safe_load(out)["data"]


def test_secret_data_is_encrypted_at_rest(tmp_path: Path, kubectl: str) -> None:
    srv = APIServerProcess(tmp_path / "data")
    srv.start()
    try:
        first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
        run_kubectl(kubectl, srv.kubeconfig, "create", "secret", "generic", "db", f"--from-literal=password={first}")
        # an older revision (the update), and a deleted Secret (its tombstone carries its last state)
        run_kubectl(kubectl, srv.kubeconfig, "patch", "secret", "db", "-p",
                    yaml.safe_dump({"stringData": {"password": second}}))
        run_kubectl(kubectl, srv.kubeconfig, "create", "secret", "generic", "gone", f"--from-literal=k={first}")
        run_kubectl(kubectl, srv.kubeconfig, "delete", "secret", "gone")
        assert _secret_data(kubectl, srv, "db") == {"password": base64.b64encode(second.encode()).decode()}

        secrets = [s.encode() for s in (first, second)]
        needles = secrets + [base64.b64encode(s) for s in secrets]
        stored = _stored_bytes(srv.data_dir)
        assert [n for n in needles if n in stored] == [], "no plaintext of the data in the db or its WAL"
        assert PREFIX in stored, "Secret rows carry kube's aesgcm prefix"

        config_file = srv.data_dir / "encryption-config.yaml"
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        config = yaml.safe_load(config_file.read_text())
        assert config["kind"] == "EncryptionConfiguration" and config["resources"][0]["resources"] == ["secrets"]

        srv.stop()
        srv.start()
        assert _secret_data(kubectl, srv, "db") == {"password": base64.b64encode(second.encode()).decode()}
        assert [n for n in needles if n in _stored_bytes(srv.data_dir)] == []
    finally:
        srv.stop()


def test_plaintext_rows_still_read_and_identity_first_turns_encryption_off(tmp_path: Path, kubectl: str) -> None:
    """kube's way of switching: with ``identity`` first, new rows are plaintext; every listed provider reads."""
    srv = APIServerProcess(tmp_path / "data")
    srv.start()
    try:
        run_kubectl(kubectl, srv.kubeconfig, "create", "secret", "generic", "sealed", "--from-literal=k=sealed-v")
        srv.stop()
        config_file = srv.data_dir / "encryption-config.yaml"
        config = yaml.safe_load(config_file.read_text())
        providers = config["resources"][0]["providers"]
        config["resources"][0]["providers"] = providers[::-1]  # identity first, the aesgcm key still listed
        config_file.write_text(yaml.safe_dump(config))
        srv.start()
        run_kubectl(kubectl, srv.kubeconfig, "create", "secret", "generic", "plain", "--from-literal=k=plain-v")
        assert base64.b64encode(b"plain-v") in _stored_bytes(srv.data_dir), "identity writes plaintext"
        srv.stop()
        config["resources"][0]["providers"] = providers  # aesgcm first again
        config_file.write_text(yaml.safe_dump(config))
        srv.start()
        assert _secret_data(kubectl, srv, "sealed") == {"k": base64.b64encode(b"sealed-v").decode()}
        assert _secret_data(kubectl, srv, "plain") == {"k": base64.b64encode(b"plain-v").decode()}
    finally:
        srv.stop()
