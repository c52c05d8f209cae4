"""The ``kube-system/extension-apiserver-authentication`` ConfigMap: how aggregated API servers trust requests.

kube-apiserver's cluster-authentication-trust controller publishes it for the servers behind the aggregator
(``system:auth-delegator``'s users read it through the ``extension-apiserver-authentication-reader`` Role):
``client-ca-file`` is the CA of client certificates it accepts, ``requestheader-client-ca-file`` the front
proxy's CA, ``requestheader-allowed-names`` the CNs a front proxy certificate may have, and the
``requestheader-*-headers`` the headers that carry the user (lists as JSON text, as kube writes them). The
embedded server writes it at every start, so a rotated CA is published at once.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from k3c.apiserver import lifecycle
from k3c.apiserver.certs import FRONT_PROXY_CLIENT, FrontProxy
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.storage import Store

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"
USER_HEADERS = ("X-Remote-User",)
UID_HEADERS = ("X-Remote-Uid",)
GROUP_HEADERS = ("X-Remote-Group",)
EXTRA_PREFIXES = ("X-Remote-Extra-",)


def data(client_ca: bytes, front_proxy: FrontProxy) -> dict[str, str]:
    """The ConfigMap's data."""
    return {
        "client-ca-file": client_ca.decode(),
        "requestheader-client-ca-file": front_proxy.ca_cert.read_text(),
        "requestheader-allowed-names": json.dumps([FRONT_PROXY_CLIENT]),
        "requestheader-username-headers": json.dumps(list(USER_HEADERS)),
        "requestheader-uid-headers": json.dumps(list(UID_HEADERS)),
        "requestheader-group-headers": json.dumps(list(GROUP_HEADERS)),
        "requestheader-extra-headers-prefix": json.dumps(list(EXTRA_PREFIXES)),
    }


async def publish(store: Store, registry: ResourceTypes, content: dict[str, str]) -> None:
    """Create the ConfigMap, or give it ``content`` back if it differs."""
    rtype = registry.lookup("", "v1", "configmaps")
    assert rtype is not None
    key = rtype.key(NAMESPACE, NAME)
    cur = store.get(key)
    if cur is None:
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": dict(content)}
        lifecycle.prepare_create(rtype, obj, NAMESPACE)
        await store.create(key, obj)
    elif cur.obj.get("data") != content:
        obj = copy.deepcopy(cur.obj)
        obj["data"] = dict(content)
        await store.update(key, obj, expect=cur.revision)
