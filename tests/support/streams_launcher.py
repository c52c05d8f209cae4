"""Test-only: k3c's embedded API server with the log/exec/attach subresources on a given containerd.

The stream tests cannot wait for the daemon, so they run this: the same APIServer and StreamService the
daemon wires together, without the operator (the tests create containers through CRI themselves and
write the LocalContainer objects an operator would). Stops on SIGTERM/SIGINT.

    python -m tests.support.streams_launcher --data-dir D --port P --containerd SOCKET [--fifo-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import signal
from pathlib import Path

from k3c.apiserver.server import APIServer, ServerConfig
from k3c.streams.server import StreamService


async def serve(args: argparse.Namespace) -> None:
    server = APIServer(ServerConfig(data_dir=Path(args.data_dir), port=args.port))
    streams = StreamService(args.containerd, args.containerd, fifo_dir=args.fifo_dir)
    server.handler.mount(streams)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"streams test server on {server.config.url}", flush=True)
    await stop.wait()
    await streams.close()
    await server.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--containerd", required=True)
    p.add_argument("--fifo-dir", default=None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` shows where a hung test is stuck
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
