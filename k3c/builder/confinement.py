"""What confines a RUN step as containers are confined: containerd's seccomp profile, AppArmor, devices, pids.

Why containerd's own seccomp profile: a RUN must get what every container k3c runs gets (the containers'
CRI config asks for ``RuntimeDefault``), no less and no different. containerd generates that profile for
this kernel and architecture (and for the capabilities in the spec) when it makes a sandbox or a
container. The builder's pod sandbox (:mod:`k3c.builder.network`) is made with ``RuntimeDefault`` too, and
the profile in its OCI spec (CRI's verbose status) is taken as it is: with Docker's default capabilities,
the ones a RUN has, it is the profile a container gets. On a kernel without seccomp the spec has none, as
containers then have none.

AppArmor: where it is enabled, containerd confines containers with its profile
:data:`CONTAINERD_APPARMOR_PROFILE`. CRI gives sandboxes none, so it is detected here: the kernel's
AppArmor switched on and containerd's profile loaded (containerd loads it with the first container it
makes). runc fails on a profile the kernel does not know, so a profile not loaded yet is not named.

Devices: all denied but runc's defaults (``/dev/null`` and friends), as containerd's spec says.
Processes: a pids cgroup limit, :data:`DEFAULT_PIDS_LIMIT` unless configured; docker and BuildKit set
none by default, containers.conf (podman and buildah, k3c's fallback engine) sets 2048, and so does k3c,
so a fork bomb in a Dockerfile ends with "can't fork" instead of taking every PID of the node.

New privileges stay allowed (``noNewPrivileges`` false), as BuildKit allows them: ``sudo`` and other setuid
programs in Dockerfiles must keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTAINERD_APPARMOR_PROFILE", "DEFAULT_PIDS_LIMIT", "Confinement", "apparmor_profile", "seccomp_of"]

#: The AppArmor profile containerd's CRI gives containers (its ``RuntimeDefault``).
CONTAINERD_APPARMOR_PROFILE = "cri-containerd.apparmor.d"
#: RUN steps' pids limit unless configured (containers.conf's default, as podman and buildah).
DEFAULT_PIDS_LIMIT = 2048
#: containerd's device cgroup rule for a container: deny all (runc then allows its default devices).
DENY_ALL_DEVICES = [{"allow": False, "access": "rwm"}]

_SECURITYFS = Path("/sys/kernel/security")
_APPARMOR_MODULE = Path("/sys/module/apparmor/parameters/enabled")


@dataclass(frozen=True)
class Confinement:
    """The confinement of one RUN, applied to its runc spec by :meth:`apply`."""

    seccomp: dict[str, Any] | None  #: the OCI ``linux.seccomp`` containers get; None: none (no seccomp here)
    apparmor: str = ""  #: the AppArmor profile to run under; "": none (AppArmor off or profile not loaded)
    pids_limit: int = DEFAULT_PIDS_LIMIT  #: 0: no limit

    def apply(self, spec: dict[str, Any]) -> None:
        """Set seccomp, AppArmor, the device rule and the pids limit in an OCI runtime spec."""
        process, linux = spec["process"], spec["linux"]
        process["noNewPrivileges"] = False
        if self.apparmor:
            process["apparmorProfile"] = self.apparmor
        if self.seccomp is not None:
            linux["seccomp"] = self.seccomp
        resources = linux.setdefault("resources", {})
        resources["devices"] = list(DENY_ALL_DEVICES)
        if self.pids_limit > 0:
            resources["pids"] = {"limit": self.pids_limit}


def seccomp_of(runtime_spec: dict[str, Any]) -> dict[str, Any] | None:
    """The seccomp section of an OCI runtime spec containerd generated (None when it has none)."""
    seccomp = (runtime_spec.get("linux") or {}).get("seccomp")
    return dict(seccomp) if seccomp else None


def apparmor_profile(securityfs: Path = _SECURITYFS, module: Path = _APPARMOR_MODULE) -> str:
    """:data:`CONTAINERD_APPARMOR_PROFILE` if AppArmor is on and that profile is loaded, else ""."""
    try:
        if not module.read_text().startswith("Y"):
            return ""
        loaded = (securityfs / "apparmor" / "profiles").read_text()
    except OSError:  # no AppArmor in this kernel (or no securityfs)
        return ""
    names = {line.rsplit(" (", 1)[0] for line in loaded.splitlines()}
    return CONTAINERD_APPARMOR_PROFILE if CONTAINERD_APPARMOR_PROFILE in names else ""
