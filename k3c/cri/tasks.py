"""Async client for the few calls of containerd's Tasks service that CRI cannot make.

CRI's Exec runs a command with the container's own environment, working directory and user, and nothing
else: ``docker exec -e/-w/-u`` cannot be expressed through it. containerd's Tasks service can: its ``Exec``
takes a whole OCI process spec plus the paths of FIFOs the shim opens for the process's stdio. k3c uses it
for exec, ``Kill`` for ``docker kill -s`` and to forward signals to an attached container (``--sig-proxy``),
``Pause`` and ``Resume`` for ``docker pause``/``unpause`` (the cgroup freezer: CRI has no pause) and
``ListPids`` for ``docker top``.

Every call runs in containerd's ``k8s.io`` namespace, where the CRI plugin keeps its containers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2

from .channel import CRI_NAMESPACE, ServiceClient, namespace_metadata
from .errors import translate
from .proto import containerd_tasks_pb2 as tasks_pb
from .proto import containerd_tasks_pb2_grpc as tasks_grpc

__all__ = ["PROCESS_SPEC_TYPE_URL", "TasksClient"]

#: How containerd names a JSON-encoded OCI process spec inside a ``google.protobuf.Any``.
PROCESS_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

_Resp = TypeVar("_Resp")


class TasksClient(ServiceClient):
    """Tasks service of one containerd socket, in one containerd namespace.

    Create it inside the event loop that uses it (``grpc.aio`` binds channels to a loop); close with
    :meth:`close`. ``timeout`` bounds every call except :meth:`wait`, which lasts as long as the process.
    """

    def __init__(
        self, address: str | os.PathLike[str], *, namespace: str = CRI_NAMESPACE, timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(address, channel=channel)
        self.timeout = timeout
        self.stub = tasks_grpc.TasksStub(self.channel)
        self._metadata = namespace_metadata(namespace)

    async def _call(
        self, method: Callable[..., Awaitable[_Resp]], request: Any, timeout: float | None = -1.0
    ) -> _Resp:
        """One unary call in our namespace; ``timeout`` -1 means the client's default, None no deadline."""
        deadline = self.timeout if timeout is not None and timeout < 0 else timeout
        try:
            return await method(request, timeout=deadline, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            name = type(request).__name__.removesuffix("Request")
            raise translate(f"Tasks.{name}", err) from err

    async def exec(
        self,
        container_id: str,
        exec_id: str,
        process: dict[str, Any],
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
    ) -> None:
        """Create (not start) an exec process from an OCI ``process`` spec; stdio are FIFO paths or ''."""
        spec = any_pb2.Any(type_url=PROCESS_SPEC_TYPE_URL, value=json.dumps(process).encode())
        await self._call(
            self.stub.Exec,
            tasks_pb.ExecProcessRequest(
                container_id=container_id, exec_id=exec_id, spec=spec, terminal=terminal,
                stdin=stdin, stdout=stdout, stderr=stderr,
            ),
        )

    async def start(self, container_id: str, exec_id: str) -> int:
        """Start an exec process created by :meth:`exec`; returns its host pid."""
        resp = await self._call(self.stub.Start, tasks_pb.StartRequest(container_id=container_id, exec_id=exec_id))
        return resp.pid

    async def wait(self, container_id: str, exec_id: str = "") -> int:
        """Block until the process exits; returns its exit status (128+N when killed by signal N)."""
        resp = await self._call(
            self.stub.Wait, tasks_pb.WaitRequest(container_id=container_id, exec_id=exec_id), timeout=None
        )
        return resp.exit_status

    async def kill(self, container_id: str, signal: int, exec_id: str = "") -> None:
        """Send ``signal`` to the container's init process (exec_id '') or to one exec process."""
        await self._call(
            self.stub.Kill, tasks_pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=signal)
        )

    async def resize_pty(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        """Set the terminal size of a process started with a terminal."""
        await self._call(
            self.stub.ResizePty,
            tasks_pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id, width=width, height=height),
        )

    async def close_stdin(self, container_id: str, exec_id: str = "") -> None:
        """Close the process's stdin so that it reads EOF."""
        await self._call(
            self.stub.CloseIO, tasks_pb.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True)
        )

    async def delete_process(self, container_id: str, exec_id: str) -> None:
        """Forget an exited exec process; the shim waits (briefly) for its IO to drain first."""
        await self._call(
            self.stub.DeleteProcess,
            tasks_pb.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
        )

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the container (its cgroup freezer); containerd publishes /tasks/paused."""
        await self._call(self.stub.Pause, tasks_pb.PauseTaskRequest(container_id=container_id))

    async def resume(self, container_id: str) -> None:
        """Thaw a paused container; containerd publishes /tasks/resumed."""
        await self._call(self.stub.Resume, tasks_pb.ResumeTaskRequest(container_id=container_id))

    async def paused(self, container_id: str) -> bool:
        """Whether the container's task is paused (or being paused)."""
        resp = await self._call(self.stub.Get, tasks_pb.GetRequest(container_id=container_id))
        return resp.process.status in (tasks_pb.PAUSED, tasks_pb.PAUSING)

    async def list_pids(self, container_id: str) -> list[int]:
        """The host pids of every process of the container (its init and what it or exec started)."""
        resp = await self._call(self.stub.ListPids, tasks_pb.ListPidsRequest(container_id=container_id))
        return [p.pid for p in resp.processes]
