"""Async client for the CRI (Kubernetes Container Runtime Interface, ``runtime.v1``) served by containerd.

k3c runs every container as a CRI pod sandbox plus containers, exactly like a kubelet would, so that the
runtime side needs no k3c-specific code in containerd. :class:`CRIClient` is a deliberately thin wrapper:
one method per RPC, requests and responses are the generated protobuf messages (module :data:`pb`), and
the only things it adds are

- a per-call deadline, so a wedged runtime surfaces as :class:`~k3c.cri.errors.RuntimeUnavailableError`
  instead of hanging a reconciler forever (calls that legitimately take long, such as stopping a container
  with a grace period or ExecSync with a timeout, get that extra time on top; a pull's deadline is its
  caller's choice);
- errors translated to :mod:`k3c.cri.errors` so callers can branch on "not found";
- a few unwrapping conveniences (returning the id instead of a one-field response).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from .channel import ServiceClient
from .errors import NotFoundError, RuntimeCallError, translate
from .proto import cri_api_pb2 as pb
from .proto import cri_api_pb2_grpc as pb_grpc

__all__ = ["CRIClient", "pb"]

#: The CRI API version k3c speaks (the ``runtime.v1`` package).
CRI_API_VERSION = "v1"
#: Default deadline of :meth:`CRIClient.pull_image`, in seconds.
PULL_TIMEOUT = 600.0

_Resp = TypeVar("_Resp")


class CRIClient(ServiceClient):
    """RuntimeService + ImageService of one containerd socket.

    Create it inside the event loop that will use it (``grpc.aio`` binds channels to a loop), and close it
    with :meth:`close` or ``async with``. ``timeout`` is the deadline in seconds of every call except
    :meth:`pull_image`, whose deadline each caller chooses (layers can be large).
    """

    def __init__(
        self,
        address: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(address, channel=channel)
        self.timeout = timeout
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)

    async def _call(
        self,
        method: Callable[..., Awaitable[_Resp]],
        request: Any,
        *,
        extra_timeout: float | None = 0.0,
        wait_for_ready: bool | None = None,
    ) -> _Resp:
        """Invoke one unary RPC with the client's deadline (+ ``extra_timeout``; None: no deadline)."""
        timeout = None if extra_timeout is None else self.timeout + extra_timeout
        try:
            return await method(request, timeout=timeout, wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as err:
            name = type(request).__name__.removesuffix("Request")
            raise translate(name, err) from err

    # ---- runtime ----

    async def version(self, *, wait_for_ready: bool | None = None) -> pb.VersionResponse:
        """Runtime name/version; answering at all means containerd's CRI plugin is initialised."""
        return await self._call(
            self.runtime.Version, pb.VersionRequest(version=CRI_API_VERSION), wait_for_ready=wait_for_ready
        )

    async def status(self, verbose: bool = False) -> pb.StatusResponse:
        """RuntimeReady/NetworkReady conditions (NetworkReady is false until a CNI config is loaded)."""
        return await self._call(self.runtime.Status, pb.StatusRequest(verbose=verbose))

    async def wait_ready(self, timeout: float = 15.0, interval: float = 0.02) -> pb.VersionResponse:
        """Poll :meth:`version` until the CRI plugin answers; raise the last error after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.version()
            except RuntimeCallError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(interval)

    # ---- pod sandboxes ----

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str:
        """Create and start a sandbox (pause container + network namespace + CNI); returns its id."""
        # Network setup (CNI ADD, iptables for port maps) can take a while on a busy host.
        resp = await self._call(
            self.runtime.RunPodSandbox,
            pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler),
            extra_timeout=30.0,
        )
        return resp.pod_sandbox_id

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        """Stop every container of the sandbox and tear its network down (idempotent in containerd)."""
        await self._call(
            self.runtime.StopPodSandbox,
            pb.StopPodSandboxRequest(pod_sandbox_id=pod_sandbox_id),
            extra_timeout=30.0,
        )

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        """Remove a stopped sandbox and its containers."""
        await self._call(
            self.runtime.RemovePodSandbox,
            pb.RemovePodSandboxRequest(pod_sandbox_id=pod_sandbox_id),
            extra_timeout=30.0,
        )

    async def pod_sandbox_status(
        self, pod_sandbox_id: str, verbose: bool = False
    ) -> pb.PodSandboxStatusResponse:
        """State, IP and (verbose) containerd's JSON ``info`` of a sandbox."""
        return await self._call(
            self.runtime.PodSandboxStatus,
            pb.PodSandboxStatusRequest(pod_sandbox_id=pod_sandbox_id, verbose=verbose),
        )

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        """All sandboxes, optionally filtered by id, state or labels."""
        resp = await self._call(self.runtime.ListPodSandbox, pb.ListPodSandboxRequest(filter=filter))
        return list(resp.items)

    # ---- containers ----

    async def create_container(
        self, pod_sandbox_id: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig
    ) -> str:
        """Create a container in a sandbox (its image must be local); returns the container id."""
        resp = await self._call(
            self.runtime.CreateContainer,
            pb.CreateContainerRequest(
                pod_sandbox_id=pod_sandbox_id, config=config, sandbox_config=sandbox_config
            ),
            extra_timeout=30.0,  # the first use of an image unpacks its layers
        )
        return resp.container_id

    async def start_container(self, container_id: str) -> None:
        """Start a created container."""
        await self._call(self.runtime.StartContainer, pb.StartContainerRequest(container_id=container_id))

    async def stop_container(self, container_id: str, timeout: int = 10) -> None:
        """SIGTERM (the image's stop signal), then SIGKILL after ``timeout`` seconds."""
        await self._call(
            self.runtime.StopContainer,
            pb.StopContainerRequest(container_id=container_id, timeout=timeout),
            extra_timeout=float(timeout),
        )

    async def remove_container(self, container_id: str) -> None:
        """Remove a container (containerd force-stops it first if it still runs)."""
        await self._call(self.runtime.RemoveContainer, pb.RemoveContainerRequest(container_id=container_id))

    async def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        """All containers, optionally filtered by id, sandbox, state or labels."""
        resp = await self._call(self.runtime.ListContainers, pb.ListContainersRequest(filter=filter))
        return list(resp.containers)

    async def container_status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatusResponse:
        """State, exit code, timestamps; with ``verbose`` also containerd's JSON ``info`` (pid, spec)."""
        return await self._call(
            self.runtime.ContainerStatus,
            pb.ContainerStatusRequest(container_id=container_id, verbose=verbose),
        )

    async def update_container_resources(
        self, container_id: str, linux: pb.LinuxContainerResources, annotations: dict[str, str] | None = None
    ) -> None:
        """Change CPU/memory limits of a running container (``docker update``)."""
        await self._call(
            self.runtime.UpdateContainerResources,
            pb.UpdateContainerResourcesRequest(
                container_id=container_id, linux=linux, annotations=annotations
            ),
        )

    async def reopen_container_log(self, container_id: str) -> None:
        """Make containerd reopen the log file (after k3c rotated it: containerd never rotates)."""
        await self._call(
            self.runtime.ReopenContainerLog, pb.ReopenContainerLogRequest(container_id=container_id)
        )

    # ---- exec / attach / port-forward ----

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse:
        """Run a command to completion in a container; stdout, stderr and exit code come back at once.

        ``timeout`` (seconds, 0 = none) is enforced by containerd; the gRPC deadline is extended by it.
        """
        return await self._call(
            self.runtime.ExecSync,
            pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
            extra_timeout=None if timeout <= 0 else float(timeout),
        )

    async def exec(self, request: pb.ExecRequest) -> str:
        """Prepare an interactive exec; returns the one-shot streaming URL (websocket, ``v4.channel.k8s.io``)."""
        return (await self._call(self.runtime.Exec, request)).url

    async def attach(self, request: pb.AttachRequest) -> str:
        """Prepare an attach to the container's stdio; returns the one-shot streaming URL."""
        return (await self._call(self.runtime.Attach, request)).url

    async def port_forward(self, pod_sandbox_id: str, ports: list[int]) -> str:
        """Prepare a port-forward into the sandbox's network namespace; returns the one-shot streaming URL."""
        return (
            await self._call(
                self.runtime.PortForward, pb.PortForwardRequest(pod_sandbox_id=pod_sandbox_id, port=ports)
            )
        ).url

    # ---- images ----

    async def list_images(self, image: str = "") -> list[pb.Image]:
        """Images CRI knows (containerd namespace ``k8s.io``), optionally only those matching ``image``."""
        flt = pb.ImageFilter(image=pb.ImageSpec(image=image)) if image else None
        resp = await self._call(self.images.ListImages, pb.ListImagesRequest(filter=flt))
        return list(resp.images)

    async def image_status(self, image: str, verbose: bool = False) -> pb.Image | None:
        """The local image for a reference or id, or None if it is not local.

        Check this before :meth:`pull_image`: CRI's PullImage always contacts the registry.
        """
        resp = await self._call(
            self.images.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        )
        return resp.image if resp.HasField("image") else None

    async def image_chain_id(self, image: str) -> str | None:
        """The chain ID of a local image's layers (its top snapshot's name), or None if it is not local."""
        resp = await self._call(
            self.images.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=True)
        )
        if not resp.HasField("image"):
            return None
        try:
            info = json.loads(resp.info.get("info") or "{}")
        except ValueError:
            return None
        return str(info.get("chainID") or "") or None

    async def pull_image(self, image: str, auth: pb.AuthConfig | None = None, *,
                         timeout: float | None = PULL_TIMEOUT) -> str:
        """Pull (and unpack) an image from its registry; returns the image id (config digest).

        ``timeout`` is this call's own deadline (None: none), not the client's: one client serves callers
        that bound a pull (a container start) and callers that let the user cancel it (an Image object)."""
        try:
            resp = await self.images.PullImage(
                pb.PullImageRequest(image=pb.ImageSpec(image=image), auth=auth), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            raise translate("PullImage", err) from err
        return resp.image_ref

    async def remove_image(self, image: str) -> None:
        """Remove an image by reference or id; a missing image is not an error (CRI semantics)."""
        try:
            await self._call(self.images.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image=image)))
        except NotFoundError:
            pass

    async def image_fs_info(self) -> list[pb.FilesystemUsage]:
        """Usage of the filesystem holding image layers (snapshotter)."""
        resp = await self._call(self.images.ImageFsInfo, pb.ImageFsInfoRequest())
        return list(resp.image_filesystems)


async def wait_for_image(cri: CRIClient, name: str, image_id: str, timeout: float = 10.0) -> str:
    """Wait until CRI's ImageStatus shows ``name`` as ``image_id`` (the config digest), and return it.

    CRI learns of images imported through containerd's Images API from containerd's event stream,
    asynchronously: a RunPodSandbox or CreateContainer before that would try to *pull* the image.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = await cri.image_status(name)
        if current is not None and current.id == image_id:
            return image_id
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRI did not see imported image {name} within {timeout} s")
        await asyncio.sleep(0.01)
