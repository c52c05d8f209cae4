"""Keeping a stopped container's writable layer: which entries of an overlay upper directory move, and how."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from k3c.cri.snapshots import Mount
from k3c.cri.writablelayers import _drop_mountpoints, _move_entries, lower_dirs, upper_dir


def test_the_upper_and_lower_directories_of_a_snapshots_mounts():
    overlay = [Mount("overlay", "overlay", ("index=off", "workdir=/s/2/work", "upperdir=/s/2/fs",
                                            "lowerdir=/s/1/fs:/s/0/fs"))]
    assert upper_dir(overlay) == Path("/s/2/fs")
    assert lower_dirs(overlay) == [Path("/s/1/fs"), Path("/s/0/fs")]
    bare = [Mount("bind", "/s/3/fs", ("rw", "rbind"))]  # a snapshot without parent
    assert (upper_dir(bare), lower_dirs(bare)) == (Path("/s/3/fs"), [])


def test_runtime_mount_points_stay_behind_unless_they_hold_something(tmp_path: Path):
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    for d in ("proc", "data", "etc", "kept"):
        (upper / d).mkdir(parents=True)
    (upper / "etc/hosts").write_text("")  # runc's mount point
    (upper / "etc/motd").write_text("")  # the container's own empty file
    (upper / "kept/file").write_text("x")
    (lower / "sys").mkdir(parents=True)
    (upper / "sys").mkdir()  # the image has it: a copied-up directory, not a mount point
    _drop_mountpoints(upper, [lower], ["/proc", "/etc/hosts", "/data", "/kept", "/sys", "/dev/shm", "/"])
    assert sorted(os.listdir(upper)) == ["etc", "kept", "sys"]
    assert os.listdir(upper / "etc") == ["motd"]


def test_entries_move_keeping_what_they_are_and_replacing_what_was_there(tmp_path: Path):
    source, target = tmp_path / "source", tmp_path / "target"
    (source / "dir/sub").mkdir(parents=True)
    (source / "dir/sub/f").write_text("new")
    os.mkfifo(source / "gone")  # (a special file moves as it is: overlay's whiteouts are 0:0 devices)
    os.symlink("dir/sub/f", source / "link")
    os.chmod(source / "dir", 0o710)
    (target / "dir").mkdir(parents=True)
    (target / "dir/old").write_text("old")
    _move_entries(source, target)
    assert os.listdir(source) == []
    assert sorted(os.listdir(target)) == ["dir", "gone", "link"]
    assert os.listdir(target / "dir") == ["sub"] and (target / "link").read_text() == "new"
    assert os.stat(target / "dir").st_mode & 0o777 == 0o710
    assert stat.S_ISFIFO(os.stat(target / "gone", follow_symlinks=False).st_mode)


def test_a_kept_layer_is_a_leftover_only_once_its_object_is_gone():
    from tests.support.leftovers import Live, runtime_leftovers

    live = Live(active_snapshots={"k3c-rw-u1", "k3c-rw-gone", "stray"}, object_uids={"u1"})
    assert runtime_leftovers(live) == ["active snapshot k3c-rw-gone", "active snapshot stray"]
