"""`k3c apiserver` and `k3c kubeconfig` as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import yaml


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
