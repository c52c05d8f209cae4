"""`k3c container`: docker's management command, the container commands again under one group.

docker 20.10 has every container command twice: `docker ps` and `docker container ls` (aliases `ps`,
`list`), `docker rm` and `docker container rm`, and so on. The group registers the same parsers the
top-level commands use, from their own modules, so both spellings behave alike by construction.
"""

from __future__ import annotations

from k3c.cli.common import Subcommands, add_group


def register(sub: Subcommands) -> None:
    from k3c.cli import containers, control, cp, filesystems, prune, ps, stats, streams

    csub = add_group(sub, "container", "Manage containers")
    for module in (containers, streams, control, stats, cp, filesystems):
        module.register(csub)
    ps.add_ps_command(csub, "ls", ("ps", "list"))
    ps.add_inspect_command(csub, containers_only=True)
    ps.add_port_command(csub, "k3c container")
    prune.add_container_prune(csub)
