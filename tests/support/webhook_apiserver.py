"""The embedded API server with Services mapped to local addresses, for webhook tests (test helper).

In embedded mode no Service can be looked up (nothing runs Pods), so a webhook configured by
``clientConfig.service`` needs the resolver seam of :mod:`k3c.apiserver.services`; this launcher maps each
``--service NAMESPACE/NAME=HOST:PORT`` given, as a test's stand-in for a cluster's Service routing.

Usage: python -m tests.support.webhook_apiserver --data-dir D --listen 127.0.0.1:PORT [--service ...]...
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from k3c.apiserver.server import APIServer, ServerConfig
from k3c.apiserver.services import StaticServices


def _service(value: str) -> tuple[tuple[str, str], tuple[str, int]]:
    ref, _, address = value.partition("=")
    namespace, _, name = ref.partition("/")
    host, _, port = address.rpartition(":")
    return (namespace, name), (host, int(port))


async def main(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    server = APIServer(ServerConfig(data_dir=Path(args.data_dir), host=host, port=int(port), bookmark_interval=1.0),
                       services=StaticServices(dict(args.service)))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--service", action="append", type=_service, default=[])
    asyncio.run(main(p.parse_args()))
