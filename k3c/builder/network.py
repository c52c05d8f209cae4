"""The network RUN steps use: a CRI pod sandbox of the builder's own, kept while the engine runs.

Why a pod sandbox: it is exactly what a container gets from k3c (its own network namespace on k3c's CNI
bridge, an IP from the same IPAM, NAT to the outside), created by the same code path CRI uses for every
container, and removed the same way (no netns, IP lease or iptables rule of our own to track). A RUN joins
its network namespace, so ``RUN apt-get …`` reaches the network as in ``docker build``, and sees none of
the host's interfaces or loopback services. It is made with seccomp ``RuntimeDefault``, so its OCI spec
also carries the profile containerd gives containers, which RUN steps take (:mod:`k3c.builder.confinement`).

It is made on the first RUN that needs it (about a third of a second, once per engine lifetime, not per
build) and removed on :meth:`BuildNetwork.close`; one left by a crash is found by its label on
:meth:`BuildNetwork.start` and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from k3c.builder.engine import finish_anyway
from k3c.cri.errors import NotFoundError, RuntimeCallError, RuntimeUnavailableError
from k3c.cri.restarts import while_unavailable
from k3c.cri.runtime import CRIClient, pb

__all__ = ["BuildNetwork", "NetworkUnavailable", "SandboxInfo"]

log = logging.getLogger(__name__)

#: Label on the builder's sandbox (value: the engine's root dir, so two stacks on one machine never meet).
LABEL = "k3c.io/builder-network"
SANDBOX_NAMESPACE = "k3c-system"


class NetworkUnavailable(Exception):
    """No sandbox could be made (no pause image, CNI failing…); the message says why."""


@dataclass(frozen=True)
class SandboxInfo:
    """What RUN steps take from the builder's sandbox."""

    netns: str  #: path of its network namespace
    runtime_spec: dict[str, Any]  #: the OCI spec containerd generated for it (seccomp and all)


class BuildNetwork:
    """One pod sandbox whose network namespace RUN steps join."""

    def __init__(self, containerd_address: str, owner: str, *, channel: grpc.aio.Channel | None = None) -> None:
        self.address = containerd_address
        self.channel = channel  #: containerd's gRPC channel to use (None: dial our own)
        self.owner = owner
        self._cri: CRIClient | None = None
        self._sandbox: str | None = None
        self._info: SandboxInfo | None = None
        self._lock = asyncio.Lock()
        self._strays: asyncio.Task[None] | None = None

    def _client(self) -> CRIClient:
        if self._cri is None:
            self._cri = CRIClient(self.address, timeout=60, channel=self.channel)
        return self._cri

    async def start(self) -> None:
        """Remove a sandbox an earlier engine (same owner) left behind (a failure is only logged: the
        next start tries again, and a build still gets its own sandbox)."""
        try:
            for sid in await self._mine():
                await self._remove(sid)
        except RuntimeCallError as err:
            log.warning("cannot remove an earlier build network: %s", err)

    async def sandbox(self) -> SandboxInfo:
        """The sandbox's network namespace and spec, making the sandbox first if needed."""
        async with self._lock:
            if self._info is None:
                # finished even if our caller is cancelled: a sandbox made but not recorded would outlive us
                await finish_anyway(self._create_and_keep())
            assert self._info is not None
            return self._info

    async def _create_and_keep(self) -> None:
        self._sandbox, self._info = await self._create()

    async def close(self) -> None:
        if self._strays is not None:
            self._strays.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._strays
        async with self._lock:
            if self._sandbox is not None:
                try:
                    await asyncio.shield(self._remove(self._sandbox))
                except RuntimeCallError as err:  # found by its label on the next start
                    log.warning("cannot remove the build network %s: %s", self._sandbox[:12], err)
                self._sandbox, self._info = None, None
            if self._cri is not None:
                await self._cri.close()
                self._cri = None

    async def _mine(self) -> list[str]:
        sandboxes = await self._client().list_pod_sandbox(pb.PodSandboxFilter(label_selector={LABEL: self._label()}))
        return [sb.id for sb in sandboxes]

    def _label(self) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, self.owner).hex  # label values are at most 63 characters

    async def _create(self) -> tuple[str, SandboxInfo]:
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="k3c-builder", uid=uuid.uuid4().hex, namespace=SANDBOX_NAMESPACE),
            hostname="k3c-build", labels={LABEL: self._label()},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))),
        )
        try:
            sid = await self._client().run_pod_sandbox(config)
        except RuntimeCallError as err:
            # containerd died or the call broke off: it may have made the sandbox all the same (CRI recovers it
            # NOTREADY), and not only when the error says UNAVAILABLE; removing strays is harmless otherwise
            self._remove_strays_later()
            raise NetworkUnavailable(str(err)) from None
        try:
            status = await self._client().pod_sandbox_status(sid, verbose=True)
            spec = _runtime_spec(status.info.get("info", "{}"))
            info = SandboxInfo(_netns_path(spec), spec)
        except (RuntimeCallError, ValueError) as err:
            try:
                await self._remove(sid)
            except RuntimeCallError:
                self._remove_strays_later()
            raise NetworkUnavailable(f"cannot read the sandbox's network namespace: {err}") from None
        log.info("build network: sandbox %s, network namespace %s", sid[:12], info.netns)
        return sid, info

    def _remove_strays_later(self) -> None:
        """A sandbox of ours containerd's death left unrecorded would hold a netns and an IP until the
        engine's next start: remove every sandbox of ours but the current one once containerd answers."""
        if self._strays is None or self._strays.done():
            self._strays = asyncio.get_running_loop().create_task(self._remove_strays())

    async def _remove_strays(self, patience: float = 60.0) -> None:
        async def once() -> None:
            async with self._lock:  # (not one being made right now: that is made under the lock)
                for sid in await self._mine():
                    if sid != self._sandbox:
                        await self._remove(sid)

        try:
            await while_unavailable(once, patience)
        except RuntimeUnavailableError:
            return
        except RuntimeCallError as err:
            log.warning("cannot remove an earlier build network: %s", err)

    async def _remove(self, sid: str) -> None:
        try:
            await self._client().stop_pod_sandbox(sid)
            await self._client().remove_pod_sandbox(sid)
        except NotFoundError:
            pass


def _runtime_spec(info_json: str) -> dict[str, Any]:
    """The OCI runtime spec in containerd's verbose sandbox info."""
    spec = json.loads(info_json).get("runtimeSpec")
    if not isinstance(spec, dict):
        raise ValueError("no runtime spec in the sandbox's status")
    return spec


def _netns_path(spec: dict[str, Any]) -> str:
    """The network namespace path in the sandbox's OCI runtime spec."""
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network" and ns.get("path"):
            return str(ns["path"])
    raise ValueError("no network namespace path in the sandbox's runtime spec")
