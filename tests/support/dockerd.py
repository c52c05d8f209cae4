"""A private dockerd 20.10 (Debian's docker.io) to compare k3c's output with docker's, side by side.

Started as PLATFORM-NOTES describes: its own data and exec roots, socket, bridge (a fresh name and subnet)
and no iptables, so it touches nothing of the machine's or of other tests. Images come in with
``docker import`` of a busybox root filesystem (no registry needed). :meth:`close` removes its
containers, stops it and deletes the bridge.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.support.daemon_harness import pick_subnet
from tests.support.harness import wait_until

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client (another `docker` may be first on PATH)


def available() -> bool:
    return os.path.exists(DOCKERD) and os.path.exists(DOCKER) and os.geteuid() == 0


class Dockerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "d.sock"
        self.bridge = f"k3cdk{secrets.token_hex(3)}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        net = ipaddress.ip_network(pick_subnet())
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{net[1]}/{net.prefixlen}", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
             "-H", f"unix://{self.socket}", "--pidfile", str(self.base / "d.pid"), "--bridge", self.bridge,
             "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--oom-score-adjust", "0"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child has its own descriptor
        wait_until(lambda: self.docker("version", check=False).returncode == 0, 60, "dockerd to answer")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                            timeout=120)
        if check and cp.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {cp.returncode} {cp.stderr}")
        return cp

    def import_busybox(self, name: str, *changes: str) -> None:
        """``docker import`` of a root filesystem of /bin/busybox and its applets (``--change`` lines)."""
        root = self.base / "rootfs"
        (root / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/busybox", root / "bin" / "busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        archive = self.base / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        args = [a for change in changes for a in ("--change", change)]
        self.docker("import", *args, str(archive), name)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for _ in range(10):  # its overlay mounts go with it; what is left under data is plain files
            try:
                shutil.rmtree(self.base / "data")
                break
            except OSError:
                time.sleep(0.5)
