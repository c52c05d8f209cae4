"""The operator process's connections: opened once at start, shared by every controller, closed once at stop.

As containerd's Go client builds all its service clients on one gRPC connection, the operator dials
containerd once and puts CRI (runtime and image service), the containerd images/content/leases services
and the Events service on that one channel; the build engines share it too. The reconcilers' own writes
to the API server go through one :class:`~k3c.reconcilers.kube.Kube` session (kopf keeps its own sessions
for the watches). The single containerd event subscription is :class:`~k3c.reconcilers.eventfeed.EventFeed`'s,
made with :attr:`Connections.events`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from k3c.cri.channel import dial
from k3c.cri.containerspecs import SpecClient
from k3c.cri.events import EventSubscriber
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import CRIClient
from k3c.cri.tasks import TasksClient
from k3c.reconcilers.kube import Kube
from k3c.reconcilers.operatorconfig import OperatorConfig

#: Deadline of every CRI call but pulls (each pull sets its own, see CRIClient.pull_image).
CRI_TIMEOUT = 30.0
#: How long start-up waits for containerd's CRI plugin to answer.
READY_TIMEOUT = 30.0


@dataclass
class Connections:
    kube: Kube
    channel: grpc.aio.Channel  #: the one gRPC channel to containerd
    cri: CRIClient
    images: ContainerdImages
    events: EventSubscriber
    specs: SpecClient  #: containers' OCI specs (what CRI cannot set)
    tasks: TasksClient  #: signals CRI cannot send (a container's stop signal)
    #: whether :meth:`close` closes ``kube`` (not when the process made it for its webhooks too)
    owns_kube: bool = True

    @classmethod
    async def open(cls, config: OperatorConfig, kube: Kube | None = None) -> Connections:
        """Open everything (inside the event loop that will use it) and wait until containerd answers;
        ``kube``: the process's session, if it has one already (it stays open at :meth:`close`)."""
        address = config.containerd_address
        channel = dial(address)
        conns = cls(kube=kube or Kube(config.kubeconfig), owns_kube=kube is None, channel=channel,
                    cri=CRIClient(address, timeout=CRI_TIMEOUT, channel=channel),
                    images=ContainerdImages(address, channel=channel),
                    events=EventSubscriber(address, channel=channel),
                    specs=SpecClient(address, channel=channel), tasks=TasksClient(address, channel=channel))
        try:
            await conns.wait_ready()
        except BaseException:
            await conns.close()
            raise
        return conns

    async def wait_ready(self) -> None:
        """Return once containerd's CRI plugin answers (raises after :data:`READY_TIMEOUT`)."""
        await self.cri.wait_ready(timeout=READY_TIMEOUT)

    async def close(self) -> None:
        await self.channel.close()
        if self.owns_kube:
            await self.kube.close()
