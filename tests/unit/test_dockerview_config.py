"""dockerview.image_defaults: dockerd's create-time merge of a container's config with its image's."""

from __future__ import annotations

from k3c.dockerview import docker_inspect, image_defaults

IMAGE = {"Cmd": ["httpd", "-f"], "Entrypoint": ["/init"], "Env": ["PATH=/bin", "LANG=C"], "WorkingDir": "/srv",
         "User": "www", "Labels": {"from": "image", "both": "image"}}


def test_the_image_fills_in_what_the_container_did_not_ask_for():
    merged = image_defaults({"env": [{"name": "LANG", "value": "fr"}, {"name": "X", "value": "1"}],
                             "labels": {"both": "container"}}, IMAGE)
    assert merged == {"Entrypoint": ["/init"], "Cmd": ["httpd", "-f"], "Env": ["LANG=fr", "X=1", "PATH=/bin"],
                      "WorkingDir": "/srv", "User": "www", "Labels": {"from": "image", "both": "container"}}


def test_a_command_or_an_entrypoint_replaces_the_images():
    assert image_defaults({"args": ["sh"]}, IMAGE)["Cmd"] == ["sh"]
    assert image_defaults({"args": ["sh"]}, IMAGE)["Entrypoint"] == ["/init"]
    # an entrypoint drops the image's Cmd, as dockerd does
    given = image_defaults({"command": ["/bin/echo"]}, IMAGE)
    assert (given["Entrypoint"], given["Cmd"]) == (["/bin/echo"], None)


def test_without_the_image_only_what_was_asked_is_shown():
    assert image_defaults({"args": ["a"], "workingDir": "/w"}, None) == {
        "Entrypoint": None, "Cmd": ["a"], "Env": [], "WorkingDir": "/w", "User": "", "Labels": {}}


def test_inspect_path_and_args_come_from_the_merged_command():
    obj = {"metadata": {"name": "web", "uid": "u1"}, "spec": {"image": "web:latest"}}
    doc = docker_inspect(obj, image=IMAGE)
    assert (doc["Path"], doc["Args"]) == ("/init", ["httpd", "-f"])
    assert doc["Config"]["Cmd"] == ["httpd", "-f"] and doc["Config"]["WorkingDir"] == "/srv"
    assert docker_inspect(obj)["Path"] == ""
