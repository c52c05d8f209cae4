"""docker cp's path rules as k3c's CLI applies them (archive.PrepareArchiveCopy, SplitPathDirEntry, rebasing)."""

from __future__ import annotations

import pytest

from k3c.cli.cp import CopyInfo, prepare, rebased, split_cp_arg, split_dir_entry
from k3c.cli.errors import CLIError
from k3c.streams.archive import go_mode


def test_container_arguments_and_local_paths() -> None:
    assert split_cp_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_cp_arg("/abs:path") == ("", "/abs:path")
    assert split_cp_arg("./file:name") == ("", "./file:name")
    assert split_cp_arg("plain") == ("", "plain")


def test_split_dir_entry() -> None:
    assert split_dir_entry("/etc/.") == ("/etc", ".")
    assert split_dir_entry("a/b/") == ("a", "b")
    assert split_dir_entry("/etc") == ("/", "etc")
    assert split_dir_entry("file") == (".", "file")


def test_prepare_follows_dockers_cases() -> None:
    src_dir, src_file = CopyInfo("/srv/site", True, True), CopyInfo("/etc/hosts", True, False)
    assert prepare(src_dir, CopyInfo("/tmp/out", True, True)) == ("/tmp/out", None)
    assert prepare(src_dir, CopyInfo("/tmp/new")) == ("/tmp", "new")
    assert prepare(src_file, CopyInfo("/tmp/f", True, False)) == ("/tmp", "f")
    with pytest.raises(CLIError, match="cannot copy directory"):
        prepare(src_dir, CopyInfo("/tmp/f", True, False))
    with pytest.raises(CLIError, match="no such directory"):
        prepare(src_file, CopyInfo("/tmp/missing/"))


def test_rebase_member_names() -> None:
    assert rebased("site/sub/x", "site", "new") == "new/sub/x"
    assert rebased("site", "site", "new") == "new"
    assert rebased("sitemap", "site", "new") == "sitemap"
    assert rebased("./x", ".", "dst") == "dst/x" and rebased(".", ".", "dst") == "dst"


def test_go_file_modes() -> None:
    assert go_mode(0o040755) == (1 << 31) | 0o755
    assert go_mode(0o120777) == (1 << 27) | 0o777
    assert go_mode(0o104755) == (1 << 23) | 0o755
