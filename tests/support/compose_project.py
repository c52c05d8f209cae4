"""A docker-compose 1.29 project for k3c's tests and benchmark: three services, two networks, a volume.

``web`` is built from a Dockerfile (``build: .``) FROM the busybox image the caller loaded (no registry),
serves a page on a published port and mounts a named volume (with a label docker allows and Kubernetes
does not); ``db`` runs that image with an alias on an
extra network; ``app`` depends on both and sits on both networks. The networks' subnets and the host port
are reserved for this process (tests.support.reservations), so projects of parallel runs never meet, and
every long-running command exits at once on SIGTERM (a shell as PID 1 would otherwise wait out the grace).
:class:`Project` writes it into a directory and runs Debian's docker-compose on it against one socket.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.daemon_harness import TEST_IMAGE, pick_subnet
from tests.support.harness import free_port

COMPOSE = "/usr/bin/docker-compose"  # Debian's 1.29.2 (scripts/lib/deps.sh installs it for the tests)
PROJECT = "k3cproj"

DOCKERFILE = """FROM {image}
RUN mkdir -p /www && echo hello from web > /www/index.html
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
"""

COMPOSE_FILE = """version: "3.8"
services:
  web:
    build: .
    ports: ["{port}:8080"]
    environment:
      GREETING: hello
    volumes: ["data:/data"]
  db:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo db up; sleep 3600 & wait"]
    networks:
      default:
      backend:
        aliases: [database]
  app:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo app $$ROLE; sleep 3600 & wait"]
    environment: [ROLE=frontend]
    depends_on: [web, db]
    networks: [default, backend]
volumes:
  data:
    labels:
      com.example.description: "web's data, kept across restarts"
networks:
  default:
    ipam:
      config: [{{subnet: "{default_subnet}"}}]
  backend:
    ipam:
      config: [{{subnet: "{backend_subnet}"}}]
"""


class Project:
    """The compose project on disk and the way to run docker-compose on it against one socket."""

    def __init__(self, root: Path, sock: str, image: str = TEST_IMAGE, name: str = PROJECT) -> None:
        self.root, self.sock, self.image, self.name = root, sock, image, name
        self.port = free_port()
        self.subnets = {"default": pick_subnet(), "backend": pick_subnet()}
        root.mkdir(parents=True, exist_ok=True)
        (root / "Dockerfile").write_text(DOCKERFILE.format(image=image))
        (root / "docker-compose.yml").write_text(COMPOSE_FILE.format(
            port=self.port, image=image, default_subnet=self.subnets["default"],
            backend_subnet=self.subnets["backend"]))

    def env(self, **extra: str) -> dict[str, str]:
        # Debian's docker CLI first on PATH: compose execs `docker exec` for its own exec command.
        return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": os.environ.get("HOME", "/root"),
                "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": str(self.root / ".docker"),
                "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0",  # the classic POST /build
                "COMPOSE_PROJECT_NAME": self.name, **extra}

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        """docker-compose ARGS in the project's directory; a Python traceback (a client crash on an answer it
        did not expect) fails whatever the exit code."""
        cp = subprocess.run([COMPOSE, "--ansi", "never", *args], cwd=self.root, capture_output=True, text=True,
                            timeout=timeout, env=self.env(**env))
        if "Traceback" in cp.stderr:
            raise AssertionError(f"docker-compose {' '.join(args)} crashed:\n{cp.stderr}")
        return cp

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        cp = self.run(*args, **env)
        if cp.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed ({cp.returncode}):\n{cp.stderr}")
        return cp
