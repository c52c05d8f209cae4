"""The operator process opens its connections once (k3c/reconcilers/connections.py, eventfeed.py).

One ``python -m k3c.operator`` with all three controllers (containers, images, builds) runs against a
private containerd and API server (tests/support/images_harness.py's stack), and is observed from outside:

- containerd's own Prometheus metrics (``grpc_server_started_total`` minus ``grpc_server_handled_total``
  of Events/Subscribe) count the event subscriptions open on it: exactly one, also after containerd was
  restarted (the old stream is gone, the new one works: an image imported afterwards gets its object);
- a ``sitecustomize`` on the operator's PYTHONPATH records every aiohttp session the process creates
  with its User-Agent: exactly one is the reconcilers' (``k3c-operator``); kopf's own sessions, for its
  watches, are kopf's business.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from k3c.oci.layout import busybox_image
from k3c.oci.reference import normalize
from tests.support.harness import free_port
from tests.support.images_harness import ImagesStack, import_image, new_base, remove_base

pytestmark = pytest.mark.skipif(not all(shutil.which(b) for b in ("containerd", "ctr")),
                                reason="needs containerd and ctr")

SESSION_PROBE = '''\
import os

import aiohttp

_init = aiohttp.ClientSession.__init__


def _recording_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    with open(os.environ["K3C_TEST_SESSIONS"], "a") as f:
        f.write(f"{os.getpid()} {self.headers.get('User-Agent', '-')}\\n")


aiohttp.ClientSession.__init__ = _recording_init
'''


@pytest.fixture(scope="module")
def stack() -> Iterator[ImagesStack]:
    base = new_base("k3cwire-")
    probe = base / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(SESSION_PROBE)
    st = ImagesStack(base / "stack", controllers="containers,images,builds", metrics_port=free_port(),
                     operator_args=["--pool-size", "0"],
                     operator_env={"PYTHONPATH": str(probe), "K3C_TEST_SESSIONS": str(base / "sessions")})
    try:
        st.start()
        yield st
    finally:
        st.stop()
        remove_base(base)


def open_subscriptions(st: ImagesStack) -> int:
    """Event subscriptions open on containerd right now, by its own count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{st.metrics_port}/v1/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = {"started": 0, "handled": 0}
    for kind, value in re.findall(
            r'^grpc_server_(started|handled)_total\{[^}]*grpc_method="Subscribe"[^}]*\} (\d+)$', text, re.M):
        total[kind] += int(value)
    return total["started"] - total["handled"]


def sessions(base: Path) -> list[str]:
    return (base.parent / "sessions").read_text().splitlines()


def test_one_kube_session(stack: ImagesStack) -> None:
    lines = sessions(stack.base)
    ours = [line for line in lines if line.endswith(" k3c-operator")]
    assert len({line.split()[0] for line in lines}) == 1, lines  # one process: the operator
    assert len(ours) == 1, lines


def test_one_event_subscription_also_after_a_containerd_restart(stack: ImagesStack) -> None:
    stack.wait(lambda: open_subscriptions(stack) == 1, 10, "one event subscription")
    assert open_subscriptions(stack) == 1
    asyncio.run(stack.containerd.stop())
    asyncio.run(stack.containerd.start())
    name = "k3c.test/wiring:after-restart"
    stack.wait(lambda: open_subscriptions(stack) == 1, 30, "the operator to subscribe again")
    import_image(stack.socket, name, busybox_image())
    stack.wait(lambda: any(o["spec"]["reference"] == normalize(name) for o in stack.image_objects()), 20,
               "the Image object of an image imported after the restart")
    assert open_subscriptions(stack) == 1
    assert len([line for line in sessions(stack.base) if line.endswith(" k3c-operator")]) == 1
