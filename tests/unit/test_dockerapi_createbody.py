"""A docker create body as a LocalContainer spec (k3c/dockerapi/createbody.py): the mapping and the allowlist."""

from __future__ import annotations

import pytest

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
    ({"Image": "b", "HostConfig": {"Devices": [{"PathOnHost": "/dev/fuse"}]}}, "HostConfig.Devices"),
    ({"Image": "b", "Healthcheck": {"Test": ["CMD", "true"]}}, "Config.Healthcheck"),
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
