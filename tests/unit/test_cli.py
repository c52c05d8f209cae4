"""The docker-style CLI's pure parts: flags, durations, ports, image names, templates, the lazy command
table and kubeconfig reading. tests/e2e/test_cli.py runs the commands against a real API server."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from k3c import dockerid
from k3c.cli import mountflags, networkflags, runflags
from k3c.cli.common import human_duration
from k3c.cli.ps import format_ports, normalize_image
from k3c.cli.template import Format, Template, TemplateError
from k3c.dockerview import docker_inspect, sort_newest_first

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.mark.parametrize("value,expected", [
    ("80", [{"containerPort": 80, "protocol": "TCP"}]),
    ("8080:80", [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]),
    ("127.0.0.1:8080:80", [{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1", "protocol": "TCP"}]),
    ("127.0.0.1::80", [{"containerPort": 80, "hostIP": "127.0.0.1", "protocol": "TCP"}]),
    ("8080:80/udp", [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
    ("[::1]:53:53/udp", [{"containerPort": 53, "hostPort": 53, "hostIP": "::1", "protocol": "UDP"}]),
    ("8000-8001:80-81", [{"containerPort": 80, "hostPort": 8000, "protocol": "TCP"},
                         {"containerPort": 81, "hostPort": 8001, "protocol": "TCP"}]),
])
def test_publish_forms(value, expected):
    assert networkflags.parse_publish(value) == expected


@pytest.mark.parametrize("value,message", [
    ("abc", "invalid containerPort: abc"), ("1.2.3:80:80", "invalid IP address"), ("80/xyz", "invalid proto"),
    ("8000-8002:80-81", "invalid ranges"), ("70000", "invalid containerPort"), ("8080:", "no port specified"),
])
def test_publish_errors(value, message):
    with pytest.raises(Exception, match=re.escape(message)):
        networkflags.parse_publish(value)


def test_volume_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mountflags.parse_volume("data:/data").spec == {"volume": "data", "mountPath": "/data"}
    assert mountflags.parse_volume("data:/data:ro").spec == {"volume": "data", "mountPath": "/data", "readOnly": True}
    assert mountflags.parse_volume("/srv:/srv:rw").spec == {"hostPath": "/srv", "mountPath": "/srv"}
    assert mountflags.parse_volume("./x:/x").spec == {"hostPath": str(tmp_path / "x"), "mountPath": "/x"}
    anon = mountflags.parse_volume("/cache")
    assert anon.anonymous and HEX64.match(anon.spec["volume"]) and anon.spec["mountPath"] == "/cache"
    named = mountflags.parse_volume("My_Vol:/d")  # docker's names: the object name is mapped from it
    assert named.docker_name == "My_Vol" and named.spec["volume"] == dockerid.object_name("My_Vol") != "My_Vol"
    assert mountflags.parse_volume("data:/data").docker_name == "data" and not anon.docker_name
    for bad in ("data:rel", "a:b:c:d", "data:/d:xx", "my vol:/d", "_v:/d", "rel"):
        with pytest.raises(Exception, match="invalid"):
            mountflags.parse_volume(bad)


def test_mount_volume_takes_docker_names():
    """`--mount type=volume,source=NAME` maps NAME as `-v NAME:` does; a name docker refuses, docker's words."""
    from k3c.cli.errors import CLIError

    named = mountflags.mount_entry(mountflags.parse_mount("type=volume,source=Proj_data,target=/d,readonly"))
    assert isinstance(named, mountflags.Mount) and named.docker_name == "Proj_data"
    assert named.spec == {"volume": dockerid.object_name("Proj_data"), "mountPath": "/d", "readOnly": True}
    plain = mountflags.mount_entry(mountflags.parse_mount("type=volume,src=data,dst=/d"))
    assert isinstance(plain, mountflags.Mount) and plain.spec["volume"] == plain.docker_name == "data"
    with pytest.raises(CLIError, match=re.escape('create bad name: "bad name" includes invalid characters')):
        mountflags.mount_entry(mountflags.parse_mount("type=volume,source=bad name,target=/d"))


def test_env_file_and_env_merge(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=from-file\n  B=spaced value \nFROM_HOST\nMISSING\nQ=\"quoted\"\n")
    env = runflags.build_env(["A=override", "C=3", "FROM_HOST"], [str(f)], {"FROM_HOST": "h"})
    assert env == [{"name": "A", "value": "override"}, {"name": "B", "value": "spaced value "},
                   {"name": "FROM_HOST", "value": "h"}, {"name": "Q", "value": '"quoted"'},
                   {"name": "C", "value": "3"}]


def test_memory_and_cpus():
    assert runflags.parse_memory("256m") == str(256 * 1024 ** 2)
    assert runflags.parse_memory("1g") == str(1024 ** 3)
    assert runflags.parse_memory("1.5GiB") == str(int(1.5 * 1024 ** 3))
    assert runflags.parse_memory("4096") == "4096"
    with pytest.raises(Exception, match="invalid size"):
        runflags.parse_memory("1x")
    assert runflags.parse_cpus("0.5") == "0.5"
    with pytest.raises(Exception, match="rational number"):
        runflags.parse_cpus("abc")


def test_human_duration_reads_like_docker():
    assert [human_duration(s) for s in (0.2, 1, 59, 60, 150, 3600, 7200, 86400 * 3, 86400 * 20)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "2 minutes", "About an hour",
        "2 hours", "3 days", "2 weeks"]


def test_port_display_groups_ranges_like_docker():
    ports = [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
             {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
             {"containerPort": 7000, "hostPort": 7000, "protocol": "TCP"},
             {"containerPort": 7001, "hostPort": 7001, "protocol": "TCP"}]
    assert format_ports(ports) == ("127.0.0.1:53->53/udp, 0.0.0.0:7000-7001->7000-7001/tcp, "
                                   "0.0.0.0:8080->80/tcp")


def test_image_normalization():
    assert normalize_image("busybox") == "docker.io/library/busybox:latest"
    assert normalize_image("me/app:1") == "docker.io/me/app:1"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"


def test_template_subset():
    data = {"Name": "/web", "State": {"Status": "running", "Running": True},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}},
            "Mounts": [{"Destination": "/a"}, {"Destination": "/b"}], "Labels": {"x.y": "z"}}
    assert Template("{{.State.Status}}").render(data) == "running"
    assert Template("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").render(data) == "10.0.0.2"
    assert Template("{{range .Mounts}}{{.Destination}} {{end}}").render(data) == "/a /b "
    assert Template('{{index .Labels "x.y"}}|{{json .State}}').render(data) == 'z|{"Status":"running","Running":true}'
    assert Template("{{if .State.Running}}up{{else}}down{{end}} {{.Name | upper}}").render(data) == "up /WEB"
    assert Template("{{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}").render(data) == "x.y=z"
    assert Template("{{.Missing}}").render(data) == "<no value>"
    with pytest.raises(TemplateError):
        Template("{{.Name").render(data) if False else Template("{{if .Name}}x").render(data)
    with pytest.raises(TemplateError):
        Template("{{nosuchfunc .Name}}").render(data)


def test_table_format_headers_and_alignment():
    fmt = Format.parse("table {{.Names}}\\t{{.Image}}", "")
    out = fmt.render([{"Names": "a", "Image": "busybox"}, {"Names": "longer-name", "Image": "x"}],
                     {"Names": "NAMES", "Image": "IMAGE"})
    assert out == "NAMES         IMAGE\na             busybox\nlonger-name   x\n"


def test_lazy_command_table_matches_the_modules():
    """`k3c CMD` imports only CMD's module: the table saying which module that is must be complete and true."""
    import argparse

    from k3c.cli import main as cli_main

    full = cli_main.build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli_main.COMMANDS), "every command is in COMMANDS, and nothing else"
    for command, module in cli_main.COMMANDS.items():
        only = cli_main.build_parser(module)
        only_sub = next(a for a in only._actions if isinstance(a, argparse._SubParsersAction))
        assert command in only_sub.choices, f"{command} is registered by k3c.cli.{module}"
    assert cli_main.command_module(["-n", "dev", "--kubeconfig=/k", "build", "."]) == "build"
    assert cli_main.command_module(["--context", "c", "-ndev", "ps"]) == "ps"
    assert cli_main.command_module(["--help"]) is None and cli_main.command_module(["bogus"]) is None


def test_kubeconfig_json_fast_path_and_yaml(tmp_path):
    """k3c writes its kubeconfig as JSON (read without a YAML parser); k3s/kubeadm ones are YAML."""
    from k3c import kubeclient

    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
           "users": [{"name": "c", "user": {"token": "t0k"}}],
           "contexts": [{"name": "c", "context": {"cluster": "c", "user": "c", "namespace": "dev"}}]}
    (tmp_path / "json").write_text(json.dumps(doc, indent=2))
    (tmp_path / "yaml").write_text(yaml.safe_dump(doc))
    for name in ("json", "yaml"):
        conn = kubeclient.load(str(tmp_path / name))
        assert (conn.server, conn.namespace, conn.token) == ("https://127.0.0.1:6443", "dev", "t0k")
    (tmp_path / "bad").write_text("clusters: [unclosed")
    with pytest.raises(kubeclient.ConfigError, match="invalid kubeconfig"):
        kubeclient.load(str(tmp_path / "bad"))


def test_inspect_shows_the_run_flags_in_dockers_hostconfig_fields() -> None:
    obj = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": {
        "image": "busybox", "memorySwap": "-1", "shmSize": "128m", "pidsLimit": 50, "cpuShares": 512,
        "ulimits": [{"name": "nofile", "soft": 100, "hard": 200}], "noNewPrivileges": True,
        "seccompProfile": "unconfined", "extraHosts": [{"name": "db", "ip": "10.0.0.5"}], "ipcMode": "host",
        "init": True, "tmpfs": [{"mountPath": "/run", "options": "size=1m"}], "stopSignal": "SIGUSR1",
        "logOptions": {"maxSize": "1m", "maxFile": 3}, "devices": [{"hostPath": "/dev/null"}]}}
    doc = docker_inspect(obj)
    hc = doc["HostConfig"]
    assert (hc["MemorySwap"], hc["ShmSize"], hc["PidsLimit"], hc["CpuShares"]) == (-1, 128 << 20, 50, 512)
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert hc["SecurityOpt"] == ["no-new-privileges", "seccomp=unconfined"]
    assert (hc["ExtraHosts"], hc["IpcMode"], hc["Init"], hc["Tmpfs"]) == (["db:10.0.0.5"], "host", True,
                                                                          {"/run": "size=1m"})
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}
    assert hc["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/null", "CgroupPermissions": "rwm"}]
    assert doc["Config"]["StopSignal"] == "SIGUSR1"
    plain = docker_inspect({"metadata": {"name": "p"}, "spec": {"image": "busybox"}})
    assert "Init" not in plain["HostConfig"] and "Tmpfs" not in plain["HostConfig"]
    assert (plain["HostConfig"]["ShmSize"], plain["HostConfig"]["Ulimits"], plain["HostConfig"]["MemorySwap"]) == \
        (64 << 20, None, 0)


def test_ps_orders_containers_of_one_second_by_their_precise_creation_time():
    def obj(name, created, precise=None):
        annotations = {"k3c.io/created": precise} if precise else {}
        return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}}

    items = [obj("zz", "2026-12-07T09:00:01Z", "2026-12-07T09:00:01.100000000Z"),
             obj("aa", "2026-12-07T09:00:01Z", "2026-12-07T09:00:01.900000000Z"),
             obj("mm", "2026-12-07T09:00:01Z", "2026-12-07T09:00:01.500000000Z"),
             obj("old", "2026-12-07T09:00:00Z", "2026-12-07T09:00:00.999999999Z"),
             obj("newer", "2026-12-07T09:00:02Z"),
             obj("kubectl-b", "2026-12-07T08:59:59Z"), obj("kubectl-a", "2026-12-07T08:59:59Z")]
    order = [o["metadata"]["name"] for o in sort_newest_first(items)]
    assert order == ["newer", "aa", "mm", "zz", "old", "kubectl-b", "kubectl-a"]


def test_created_containers_carry_their_precise_creation_time():
    import time

    from k3c.cli.main import build_parser
    from k3c.timefmt import parse_rfc3339_ns

    before = time.time_ns()
    args = build_parser().parse_args(["create", "img"])
    req = runflags.build_container(args, "c1", "default", False, environ={})
    stamp = parse_rfc3339_ns(req.obj["metadata"]["annotations"]["k3c.io/created"])
    assert before <= stamp <= time.time_ns()
