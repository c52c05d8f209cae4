"""The pure LocalContainer → CRI mapping (no runtime needed): docker's flag semantics in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3c.api import CRI_NETWORKS_ANNOTATION, CRI_SANDBOX_SPEC_ANNOTATION
from k3c.cri.runtime import pb
from k3c.reconcilers import criconfig
from k3c.reconcilers.criconfig import RestartPolicy, SpecError, UserSpec


def obj(**spec: object) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"image": "busybox", **spec}}


@pytest.mark.parametrize(("text", "expected"), [
    ("64m", 64 * 1024**2), ("1g", 1024**3), ("512Mi", 512 * 1024**2), ("1.5g", int(1.5 * 1024**3)),
    ("10485760", 10485760), ("8M", 8 * 1024**2),
])
def test_memory_sizes(text: str, expected: int) -> None:
    assert criconfig.parse_memory(text) == expected


def test_memory_too_small_or_invalid() -> None:
    with pytest.raises(SpecError, match="minimum"):
        criconfig.parse_memory("1m")
    with pytest.raises(SpecError, match="invalid"):
        criconfig.parse_memory("lots")


@pytest.mark.parametrize(("policy", "code", "count", "restart"), [
    ("no", 1, 0, False), ("always", 0, 5, True), ("unless-stopped", 0, 0, True),
    ("on-failure", 0, 0, False), ("on-failure", 2, 100, True), ("on-failure:2", 1, 1, True),
    ("on-failure:2", 1, 2, False),
])
def test_restart_policies(policy: str, code: int, count: int, restart: bool) -> None:
    assert RestartPolicy.parse(policy).should_restart(code, count) is restart


def test_restart_backoff_doubles_and_caps() -> None:
    assert [criconfig.restart_delay(n) for n in range(3)] == [0.1, 0.2, 0.4]
    assert criconfig.restart_delay(30) == 60.0


def test_container_config_maps_docker_flags() -> None:
    o = obj(command=["/bin/sh"], args=["-c", "echo hi"], env=[{"name": "A", "value": "1"}], workingDir="/w",
            tty=True, stdin=True, labels={"team": "x"}, memory="64m", cpus="1.5", readOnlyRootFilesystem=True,
            capAdd=["net_admin"], capDrop=["CAP_CHOWN"])
    mounts = [pb.Mount(container_path="/data", host_path="/v", readonly=True)]
    c = criconfig.container_config(o, image="sha256:abc", node="n1", attempt=2, mounts=mounts,
                                   user=UserSpec(uid=1000, gid=100))
    assert (c.metadata.name, c.metadata.attempt, c.image.image) == ("web", 2, "sha256:abc")
    assert (list(c.command), list(c.args), c.working_dir) == (["/bin/sh"], ["-c", "echo hi"], "/w")
    assert [(e.key, e.value) for e in c.envs] == [("A", "1")]
    assert c.tty and c.stdin and not c.stdin_once
    assert c.labels["team"] == "x" and c.labels["k3c.io/uid"] == "u-1" and c.labels["k3c.io/node"] == "n1"
    assert c.log_path == "ns_web_u-1.log"
    res = c.linux.resources
    assert (res.memory_limit_in_bytes, res.cpu_period, res.cpu_quota) == (64 * 1024**2, 100000, 150000)
    sec = c.linux.security_context
    assert sec.readonly_rootfs and not sec.privileged
    assert list(sec.capabilities.add_capabilities) == ["NET_ADMIN"]
    assert list(sec.capabilities.drop_capabilities) == ["CHOWN"]
    assert (sec.run_as_user.value, sec.run_as_group.value) == (1000, 100)
    assert "/proc/kcore" in sec.masked_paths
    assert sec.seccomp.profile_type == pb.SecurityProfile.RuntimeDefault


def test_own_sandbox_only_when_needed() -> None:
    assert not criconfig.needs_own_sandbox(obj()["spec"])
    for extra in ({"ports": [{"containerPort": 80}]}, {"hostname": "h"}, {"dns": ["1.1.1.1"]},
                  {"hostNetwork": True}, {"privileged": True}):
        assert criconfig.needs_own_sandbox(obj(**extra)["spec"]), extra


def test_networks_other_than_the_default_need_an_own_sandbox() -> None:
    assert not criconfig.needs_own_sandbox(obj(networks=[{"name": "bridge"}])["spec"]), "the pool's network"
    assert criconfig.needs_own_sandbox(obj(networks=[{"name": "front"}])["spec"])
    assert criconfig.needs_own_sandbox(obj(networks=[{"name": "none"}])["spec"])
    assert criconfig.needs_own_sandbox(obj(networks=[{"name": "bridge"}, {"name": "front"}])["spec"])


def test_a_sandboxs_networks_and_their_resolver() -> None:
    sb = criconfig.own_sandbox_spec(obj(networks=[{"name": "front"}]), [], ["k3c-a", "k3c-b"], ["10.89.0.1"])
    cfg = criconfig.sandbox_config(sb, "n1", Path("/logs"))
    assert cfg.annotations[CRI_NETWORKS_ANNOTATION] == "k3c-a,k3c-b" and list(cfg.dns_config.servers) == ["10.89.0.1"]
    assert criconfig.SandboxSpec.from_json(cfg.annotations[CRI_SANDBOX_SPEC_ANNOTATION]) == sb
    own_dns = criconfig.own_sandbox_spec(obj(dns=["192.0.2.53"]), [], ["k3c-a"], ["10.89.0.1"])
    assert own_dns.dns == ["192.0.2.53"], "--dns wins over the network's resolver"
    default = criconfig.sandbox_config(criconfig.own_sandbox_spec(obj(hostname="h"), []), "n1", Path("/logs"))
    assert CRI_NETWORKS_ANNOTATION not in default.annotations, "no annotation: the default network"


def test_sandbox_config_round_trips_through_its_annotation() -> None:
    ports = [criconfig.PortSpec(container_port=80, host_port=8080, host_ip="127.0.0.1")]
    sb = criconfig.own_sandbox_spec(obj(hostname="h1", dns=["192.0.2.53"]), ports)
    cfg = criconfig.sandbox_config(sb, "n1", Path("/logs"))
    again = criconfig.SandboxSpec.from_json(cfg.annotations[CRI_SANDBOX_SPEC_ANNOTATION])
    assert again == sb
    assert (cfg.hostname, list(cfg.dns_config.servers), cfg.log_directory) == ("h1", ["192.0.2.53"], "/logs")
    [pm] = cfg.port_mappings
    assert (pm.container_port, pm.host_port, pm.host_ip, pm.protocol) == (80, 8080, "127.0.0.1", pb.TCP)


def test_spec_hash_ignores_what_does_not_shape_the_container() -> None:
    base = criconfig.spec_hash(obj()["spec"])
    for same in ({"state": "Stopped"}, {"restartPolicy": "always"}, {"stopTimeout": 0}, {"autoRemove": True}):
        assert criconfig.spec_hash(obj(**same)["spec"]) == base, same
    assert criconfig.spec_hash(obj(env=[{"name": "A"}])["spec"]) != base


def test_command_line_and_port_summary() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port", "80"]}
    assert criconfig.command_line({}, image) == "/entry serve --port 80"
    assert criconfig.command_line({"args": ["x y"]}, image) == "/entry 'x y'"
    assert criconfig.command_line({"command": ["sh"]}, image) == "sh"  # --entrypoint drops the image's CMD
    ports = [{"hostIP": "0.0.0.0", "hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
             {"hostIP": "127.0.0.1", "hostPort": 5353, "containerPort": 53, "protocol": "UDP"}]
    assert criconfig.port_summary(ports) == "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
