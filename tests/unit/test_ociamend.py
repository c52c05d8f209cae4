"""The OCI spec edits for what CRI cannot say (k3c/reconcilers/ociamend.py) and signal names (k3c/signals.py)."""

from __future__ import annotations

import pytest

from k3c.reconcilers import ociamend
from k3c.signals import signal_number


def base() -> dict:
    return {"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]},
            "mounts": [{"destination": "/dev/shm", "type": "bind", "source": "/sandbox/shm"},
                       {"destination": "/etc/hosts", "type": "bind", "source": "/sandbox/hosts"}]}


def test_ulimits_replace_the_runtime_default_of_their_type() -> None:
    oci = base()
    ociamend.amend(oci, {"ulimits": [{"name": "nofile", "soft": 10, "hard": -1},
                                     {"name": "core", "soft": 0, "hard": 0}]})
    assert oci["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": ociamend.RLIM_INFINITY},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]


def test_pids_limit_tmpfs_and_shm() -> None:
    oci = base()
    spec = {"pidsLimit": 5, "shmSize": "8m", "tmpfs": [{"mountPath": "/run", "options": "size=1m,exec"}]}
    assert ociamend.needs_amendment(spec) and not ociamend.needs_amendment({"pidsLimit": -1})
    ociamend.amend(oci, spec)
    assert oci["linux"]["resources"]["pids"] == {"limit": 5}
    by_dest = {m["destination"]: m for m in oci["mounts"]}
    assert by_dest["/dev/shm"]["type"] == "tmpfs" and "size=8388608" in by_dest["/dev/shm"]["options"]
    assert by_dest["/run"]["options"] == ["noexec", "nosuid", "nodev", "size=1048576", "exec"]
    assert by_dest["/etc/hosts"]["type"] == "bind"


def test_an_updated_pids_limit_is_set_or_lifted() -> None:
    oci: dict = {"linux": {"resources": {"pids": {"limit": 10}, "memory": {"limit": 1}}}}
    ociamend.set_pids_limit(oci, 20)
    assert oci["linux"]["resources"] == {"pids": {"limit": 20}, "memory": {"limit": 1}}
    ociamend.set_pids_limit(oci, None)
    assert oci["linux"]["resources"]["pids"] == {"limit": -1}  # runc's "max"
    plain: dict = {"linux": {"resources": {}}}
    ociamend.set_pids_limit(plain, 0)
    assert plain == {"linux": {"resources": {}}}  # never had one: nothing to lift


def test_shm_size_is_refused_with_the_nodes_ipc() -> None:
    with pytest.raises(ociamend.AmendError, match="ipcMode host"):
        ociamend.amend(base(), {"shmSize": "8m", "ipcMode": "host"})


@pytest.mark.parametrize("spec", [{"shmSize": "lots"}, {"tmpfs": [{"mountPath": "/x", "options": "size=big"}]},
                                  {"ulimits": [{"name": "nofile", "soft": 20, "hard": 10}]}])
def test_bad_values_are_refused(spec: dict) -> None:
    with pytest.raises(ociamend.AmendError):
        ociamend.amend(base(), spec)


@pytest.mark.parametrize(("text", "number"), [("SIGINT", 2), ("int", 2), ("15", 15), ("SIGRTMIN+3", 37),
                                              ("RTMAX-1", 63), ("USR1", 10)])
def test_signal_names(text: str, number: int) -> None:
    assert signal_number(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "65", "RTMIN+40", ""])
def test_bad_signal_names(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid signal"):
        signal_number(text)


def test_docker_seccomp_profile_becomes_the_oci_one() -> None:
    import json
    import platform

    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(platform.machine(), "SCMP_ARCH_X")
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": arch, "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_NOPE", "subArchitectures": []}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"name": "personality", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ]}
    oci = {"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}}}
    ociamend.amend(oci, {"seccompProfile": json.dumps(profile)})
    seccomp = oci["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO" and seccomp["defaultErrnoRet"] == 1
    assert seccomp["architectures"] == [arch, "SCMP_ARCH_X86"]
    assert [r["names"] for r in seccomp["syscalls"]] == [["read", "write"], ["chown"], ["personality"]]
    assert seccomp["syscalls"][2]["args"] == [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]
    with pytest.raises(ociamend.AmendError):
        ociamend.amend({}, {"seccompProfile": "{not json"})


def test_platform_must_be_the_nodes() -> None:
    import platform

    from k3c.reconcilers import criconfig

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    for ok in ("", "linux", f"linux/{arch}", f"LINUX/{arch}/v8"):
        criconfig.check_platform({"platform": ok})
    for bad in ("windows", "linux/s390x" if arch != "s390x" else "linux/amd64", "linux/a/b/c"):
        with pytest.raises(criconfig.SpecError):
            criconfig.check_platform({"platform": bad})
