"""How the aggregator names the user to a backend and finds the backend (kube's header escaping and
endpoint routing)."""

from __future__ import annotations

import pytest

from k3c.apiserver.backends import escape_extra_key, forwarded, remote_headers
from k3c.apiserver.services import EndpointsServices, ServiceUnavailable
from k3c.apiserver.subresources import User


def test_remote_headers_are_the_front_proxys():
    user = User("system:serviceaccount:n:sa", ("g1", "g2"), "uid-1",
                (("authentication.kubernetes.io/credential-id", ("JTI=x",)), ("scopes", ("a", "b"))))
    assert remote_headers(user) == [
        ("X-Remote-User", "system:serviceaccount:n:sa"), ("X-Remote-Uid", "uid-1"),
        ("X-Remote-Group", "g1"), ("X-Remote-Group", "g2"),
        ("X-Remote-Extra-authentication.kubernetes.io%2Fcredential-id", "JTI=x"),
        ("X-Remote-Extra-scopes", "a"), ("X-Remote-Extra-scopes", "b")]
    assert escape_extra_key("a%b c") == "a%25b%20c"


def test_a_client_cannot_speak_for_the_front_proxy():
    kept = forwarded([("Accept", "json"), ("X-Remote-User", "admin"), ("x-remote-group", "system:masters"),
                      ("Authorization", "Bearer t"), ("Impersonate-User", "u"), ("Connection", "close")])
    assert kept == [("Accept", "json")]


def _store(objects):
    return EndpointsServices(lambda plural, namespace, name: objects.get((plural, namespace, name)))


def test_endpoints_routing_picks_the_named_port():
    service = {"spec": {"ports": [{"name": "metrics", "port": 8080}, {"name": "https", "port": 443}]}}
    endpoints = {"subsets": [{"addresses": [{"ip": "10.0.0.7"}],
                              "ports": [{"name": "metrics", "port": 9090}, {"name": "https", "port": 6444}]}]}
    services = _store({("services", "s", "agent"): service, ("endpoints", "s", "agent"): endpoints})
    assert services.resolve("s", "agent", 443) == ("10.0.0.7", 6444)
    with pytest.raises(ServiceUnavailable, match="no service port 444"):
        services.resolve("s", "agent", 444)
    with pytest.raises(ServiceUnavailable, match='service "other" not found'):
        services.resolve("s", "other", 443)
    empty = _store({("services", "s", "agent"): service, ("endpoints", "s", "agent"): {"subsets": []}})
    with pytest.raises(ServiceUnavailable, match="no endpoints available"):
        empty.resolve("s", "agent", 443)
