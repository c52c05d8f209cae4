"""The API server's TLS material and admin token, as generated into a data directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from k3c.apiserver import certs


def _token_file(data_dir: Path) -> Path:
    return data_dir / "tls" / "admin.token"


def test_first_start_writes_a_long_private_token(tmp_path: Path) -> None:
    material = certs.ensure(tmp_path, ["127.0.0.1"])
    assert len(material.token) == 64 and int(material.token, 16) >= 0  # 32 random bytes, hex
    assert _token_file(tmp_path).read_text() == material.token
    assert stat.S_IMODE(_token_file(tmp_path).stat().st_mode) == 0o600
    assert certs.ensure(tmp_path, ["127.0.0.1"]).token == material.token  # kept across starts


@pytest.mark.parametrize("stored", ["", "   \n", "0123456789abcdef0123456789abcde"])
def test_a_token_shorter_than_32_bytes_is_replaced(tmp_path: Path, stored: str) -> None:
    certs.ensure(tmp_path, ["127.0.0.1"])
    _token_file(tmp_path).write_text(stored)
    _token_file(tmp_path).chmod(0o644)
    material = certs.ensure(tmp_path, ["127.0.0.1"])
    assert len(material.token) == 64 and material.token != stored.strip()
    assert _token_file(tmp_path).read_text() == material.token
    assert stat.S_IMODE(_token_file(tmp_path).stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "tls").iterdir() if p.name.startswith(".")) == []  # no temp file
