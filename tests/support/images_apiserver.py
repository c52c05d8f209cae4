"""The embedded API server with the image archive subresources, as `k3c daemon` will run it (test helper).

Usage: python -m tests.support.images_apiserver DATA_DIR PORT CONTAINERD_SOCKET
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from k3c.apiserver.server import APIServer, ServerConfig
from k3c.archives.subresource import ArchiveEndpoints


async def main(data_dir: str, port: int, containerd: str) -> None:
    server = APIServer(ServerConfig(data_dir=Path(data_dir), host="127.0.0.1", port=port, bookmark_interval=1.0))
    server.handler.mount(ArchiveEndpoints(containerd))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
