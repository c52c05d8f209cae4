"""`k3c apiserver` and `k3c kubeconfig` as a user runs them."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import requests
import yaml

from tests.support.harness import APIServerProcess


def k3c(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True, timeout=30)


def test_kubeconfig_prints_the_servers_admin_config(apiserver):
    cp = k3c("kubeconfig", "--data-dir", str(apiserver.data_dir))
    assert cp.returncode == 0, cp.stderr
    doc = yaml.safe_load(cp.stdout)
    assert doc["clusters"][0]["cluster"]["server"] == apiserver.url
    assert doc["users"][0]["user"]["client-certificate-data"]


def test_kubeconfig_without_a_server_is_one_clear_line(tmp_path):
    cp = k3c("kubeconfig", "--data-dir", str(tmp_path / "nothing"))
    assert cp.returncode == 1
    assert cp.stderr.count("\n") == 1 and "no kubeconfig" in cp.stderr and "Traceback" not in cp.stderr


def test_bad_listen_address_is_a_usage_error():
    cp = k3c("apiserver", "--listen", "nonsense")
    assert cp.returncode != 0 and "HOST:PORT" in cp.stderr and "Traceback" not in cp.stderr


@pytest.mark.parametrize("stored", ["", " \n", "short"], ids=["empty", "whitespace", "short"])
def test_an_empty_or_short_token_never_authenticates(tmp_path, stored):
    """A token file left empty or cut short (a crash while writing it, a full disk) is replaced at start, and
    an empty presented token never matches anything."""
    srv = APIServerProcess(tmp_path / "data")
    srv.start()
    srv.stop()
    token_file = srv.data_dir / "tls" / "admin.token"
    token_file.write_text(stored)
    srv.start()
    try:
        ca = str(srv.data_dir / "tls" / "ca.crt")
        # (aiohttp strips spaces and tabs around a value; str.strip also strips U+3000, sent here as UTF-8)
        for header in (b"Bearer ", "Bearer \u3000".encode(), b"Bearer \xa0", f"Bearer {stored.strip()}".encode()):
            r = requests.get(srv.url + "/api/v1/namespaces", headers={"Authorization": header}, verify=ca, timeout=10)
            assert r.status_code == 401, f"{header!r} authenticated"
        token = token_file.read_text()
        assert len(token.strip()) >= 64 and token.strip() != stored.strip()  # 32 random bytes, in hex
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        r = requests.get(srv.url + "/api/v1/namespaces", headers={"Authorization": f"Bearer {token.strip()}"},
                         verify=ca, timeout=10)
        assert r.status_code == 200
    finally:
        srv.stop()
