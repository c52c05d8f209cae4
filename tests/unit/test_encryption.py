"""Rows of Secrets as stored on disk: kube's aesgcm format, bound to their storage key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from k3c.apiserver.encryption import CONFIG_FILE, EncryptionConfigError, load_or_create

ROW = b'{"kind":"Secret","data":{"k":"c2VjcmV0"}}'


def test_secrets_are_sealed_with_the_first_key_and_bound_to_their_key(tmp_path: Path) -> None:
    enc = load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / CONFIG_FILE).stat().st_mode) == 0o600
    sealed = enc.to_storage("/secrets/ns/a", ROW)
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"c2VjcmV0" not in sealed
    assert sealed != enc.to_storage("/secrets/ns/a", ROW), "a fresh nonce per write"
    assert enc.from_storage("/secrets/ns/a", sealed) == ROW
    with pytest.raises(EncryptionConfigError, match="does not decrypt"):
        enc.from_storage("/secrets/ns/b", sealed)  # the storage key is the associated data
    assert enc.to_storage("/configmaps/ns/a", ROW) == ROW, "only the listed resources"
    assert enc.from_storage("/secrets/ns/old", ROW) == ROW, "plaintext rows read through identity"
    assert load_or_create(tmp_path).from_storage("/secrets/ns/a", sealed) == ROW, "the same key after a restart"


def test_rows_need_a_listed_key(tmp_path: Path) -> None:
    sealed = load_or_create(tmp_path).to_storage("/secrets/ns/a", ROW)
    config = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    config["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["name"] = "key2"
    config["resources"][0]["providers"].pop()  # no identity
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    enc = load_or_create(tmp_path)
    with pytest.raises(EncryptionConfigError, match="key1"):
        enc.from_storage("/secrets/ns/a", sealed)
    with pytest.raises(EncryptionConfigError, match="no identity"):
        enc.from_storage("/secrets/ns/old", ROW)


@pytest.mark.parametrize("config", [
    "kind: Other", "kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{kms: {}}]}]",
    "kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aesgcm: {keys: []}}]}]",
    "kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: "
    "[{aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}}]}]",
    "kind: EncryptionConfiguration\nresources: [{resources: ['*.*'], providers: [{identity: {}}]}]",
])
def test_unusable_configurations_are_refused(tmp_path: Path, config: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(config)
    with pytest.raises(EncryptionConfigError, match=CONFIG_FILE):
        load_or_create(tmp_path)
