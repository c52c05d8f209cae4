"""A docker create body as a LocalContainer spec (k3c/dockerapi/createbody.py): the mapping and the allowlist."""

from __future__ import annotations

import pytest

from k3c import dockerid
from k3c.dockerapi.createbody import container_spec, is_zero
from k3c.dockerapi.errors import BadParameter


def test_zero_values_are_what_clients_send_for_nothing():
    assert all(is_zero(v) for v in (None, "", 0, False, [], {}, [0, 0], {"Type": "", "Config": {}}))
    assert not any(is_zero(v) for v in ("x", 1, True, ["a"], {"Type": "syslog"}, [0, 1]))


def test_fields_map_onto_the_spec():
    req = container_spec({
        "Image": "busybox", "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"], "Env": ["A=1", "B=x=y"],
        "Tty": True, "OpenStdin": True, "Labels": {"l": "v"}, "StopTimeout": 3, "WorkingDir": "/w",
        "HostConfig": {"Binds": ["/host:/in:ro", "my_data:/data"], "PortBindings": {"80/tcp": [{"HostPort": ""}],
                       "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}, "NetworkMode": "host",
                       "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}, "Memory": 67108864,
                       "NanoCpus": 1500000000, "CapAdd": ["NET_ADMIN"], "AutoRemove": True},
    })
    spec = req.spec
    assert spec["command"] == ["/bin/sh"] and spec["args"] == ["-c", "true"]
    assert spec["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}]
    assert spec["tty"] and spec["stdin"] and spec["labels"] == {"l": "v"} and spec["stopTimeout"] == 3
    assert spec["volumes"][0] == {"mountPath": "/in", "hostPath": "/host", "readOnly": True}
    assert spec["volumes"][1]["mountPath"] == "/data" and req.volumes == {spec["volumes"][1]["volume"]: "my_data"}
    assert spec["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                             {"containerPort": 53, "protocol": "UDP", "hostPort": 5353, "hostIP": "127.0.0.1"}]
    assert spec["hostNetwork"] is True and spec["restartPolicy"] == "on-failure:2"
    assert spec["memory"] == "67108864" and spec["cpus"] == "1.5" and spec["autoRemove"] is True


@pytest.mark.parametrize(("body", "words"), [
    ({"Image": "b", "HostConfig": {"Runtime": "kata"}}, "HostConfig.Runtime"),
    ({"Image": "b", "HostConfig": {"Sysctls": {"net.ipv4.ip_forward": "1"}}}, "HostConfig.Sysctls"),
    ({"Image": "b", "HostConfig": {"OomScoreAdj": 500}}, "HostConfig.OomScoreAdj"),
    ({"Image": "b", "Healthcheck": {"Test": ["WHAT", "true"]}}, "Config.Healthcheck"),
    ({"Image": "b", "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}, "soft limit"),
    ({"Image": "b", "HostConfig": {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}}, "invalid ulimit type"),
    ({"Image": "b", "HostConfig": {"ExtraHosts": ["nocolon"]}}, "bad format for add-host"),
    ({"Image": "b", "HostConfig": {"PidMode": "container:x"}}, "--pid container:x"),
    ({"Image": "b", "HostConfig": {"SecurityOpt": ["label=disable"]}}, "not supported by k3c"),
    ({"Image": "b", "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"mode": "non-blocking"}}}},
     "unknown log opt 'mode'"),
    ({"Image": "b", "HostConfig": {"MemorySwap": 100}}, "Memory limit when using Memoryswap"),
    ({"Image": "b", "HostConfig": {"Mounts": [{"Type": "volume", "Target": "/v"}]}}, "anonymous"),
    ({"Image": "b", "StopSignal": "SIGNOPE"}, "Invalid signal"),
    ({"Image": "b", "Healthcheck": {"Interval": 5}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Image": "b", "HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": "1"}}]}},
     "Mount.TmpfsOptions.SizeBytes"),
    ({"Image": "b", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/nonexistent-k3c", "Target": "/x"}]}},
     "bind source path does not exist"),
    ({"Image": "b", "HostConfig": {"LogConfig": {"Type": "syslog"}}}, "HostConfig.LogConfig"),
    ({"Image": "b", "HostConfig": "x"}, "cannot unmarshal"),
    ({"Image": "b", "Env": ["A", 1]}, "Config.Env"),
    ({"Image": "b", "Tty": "yes"}, "Config.Tty"),
    ({"Image": "b", "StopTimeout": True}, "Config.StopTimeout"),
    ({"Image": "b", "HostConfig": {"Binds": ["relative"]}}, "invalid volume specification"),
    ({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "invalid restart policy"),
    ({}, "config cannot be empty"),
    ({"Image": "b", "HostConfig": {"PortBindings": {"80/tcp": "8080"}}}, "PortBindings"),
    ({"Image": "b", "HostConfig": {"PortBindings": {"80/tcp": ["8080"]}}}, "PortBindings"),
    ({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": "3"}}},
     "MaximumRetryCount"),
])
def test_what_is_not_honoured_is_refused_by_name(body, words):
    with pytest.raises(BadParameter, match=words.replace(".", r"\.")):
        container_spec(body)


#: the same run options as `k3c run` flags and as the create body docker's CLI sends for them
RUN_FLAGS = ["--stop-signal", "SIGKILL", "--init", "--health-cmd", "true", "--health-interval", "1500ms",
             "--health-retries", "2", "--tmpfs", "/t:size=1m", "--mount", "type=tmpfs,target=/m,tmpfs-size=2048",
             "--mount", "type=volume,source=Named_v,target=/nv,readonly", "--device", "/dev/null:/dev/xnull:r",
             "--shm-size", "128m", "--add-host", "gw:host-gateway", "--add-host", "h1:10.1.2.3",
             "--dns-search", "example.com", "--dns-option", "ndots:2", "--ulimit", "nofile=100:200",
             "--pids-limit", "50", "-m", "64m", "--memory-swap", "128m", "-c", "512", "--cpuset-cpus", "0",
             "--security-opt", "no-new-privileges", "--pid", "host", "--ipc", "shareable", "--group-add", "10",
             "--log-opt", "max-size=1m", "--log-opt", "max-file=2"]
BODY = {
    "Image": "img", "StopSignal": "SIGKILL",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_500_000_000, "Retries": 2},
    "HostConfig": {
        "Init": True, "Tmpfs": {"/t": "size=1m"}, "ShmSize": 128 * 1024 * 1024, "Memory": 64 * 1024 * 1024,
        "Mounts": [{"Type": "tmpfs", "Target": "/m", "TmpfsOptions": {"SizeBytes": 2048}},
                   {"Type": "volume", "Source": "Named_v", "Target": "/nv", "ReadOnly": True}],
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "r"}],
        "ExtraHosts": ["gw:host-gateway", "h1:10.1.2.3"], "DnsSearch": ["example.com"], "DnsOptions": ["ndots:2"],
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}], "PidsLimit": 50, "MemorySwap": 128 * 1024 * 1024,
        "CpuShares": 512, "CpusetCpus": "0", "SecurityOpt": ["no-new-privileges"], "PidMode": "host",
        "IpcMode": "shareable", "GroupAdd": ["10"],
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
    },
}


def test_run_options_make_the_spec_k3c_run_makes():
    from k3c.cli import runflags
    from k3c.cli.main import build_parser

    args = build_parser().parse_args(["create", *RUN_FLAGS, "img"])
    cli = runflags.build_container(args, "c1", "default", False, environ={}).obj["spec"]
    req = container_spec(BODY)
    mine = {k: v for k, v in cli.items() if k not in ("state", "nodeName")}
    assert req.spec == mine
    assert req.volumes == {dockerid.object_name("Named_v"): "Named_v"}
    assert mine["healthcheck"] == {"test": ["CMD-SHELL", "true"], "interval": "1500ms", "retries": 2}


def test_inspect_shows_the_run_options_back_in_dockers_keys():
    from k3c.dockerview import docker_inspect

    seen = docker_inspect({"metadata": {"name": "c1", "uid": "u"}, "spec": container_spec(BODY).spec})
    host, config = seen["HostConfig"], seen["Config"]
    assert config["StopSignal"] == "SIGKILL"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 1_500_000_000, "Retries": 2}
    for key in ("Init", "ShmSize", "Devices", "ExtraHosts", "DnsSearch", "DnsOptions", "Ulimits", "PidsLimit",
                "MemorySwap", "CpuShares", "CpusetCpus", "SecurityOpt", "PidMode", "IpcMode", "GroupAdd",
                "LogConfig"):
        assert host[key] == BODY["HostConfig"][key], key
    assert host["Tmpfs"] == {"/t": "size=1m", "/m": "size=2048"}
