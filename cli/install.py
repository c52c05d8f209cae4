"""`k3c install` and `k3c uninstall`: k3c on a Kubernetes cluster, from manifests/.

``install`` renders the overlay of the nodes' runtime with ``kubectl kustomize`` (the kustomize that
``kubectl apply -k`` runs, so what is applied is what tests/e2e/test_manifests.py validates), sets the agents'
image and node selector, adds what is made per cluster (the streams' serving certificate, Secret
``k3c-system/k3c-agent-tls``, and its CA as the APIService's ``caBundle``; an existing Secret is kept, so a
second install keeps the CA the API server trusts), imports the agents' image into the node runtime on this
machine when it lacks it (:mod:`k3c.cli.agentimport`), applies every object by server-side apply (field
manager ``k3c-install``) and waits until every scheduled agent is ready. ``--runtime auto`` reads the chosen nodes'
``status.nodeInfo.containerRuntimeVersion``, as kim did: ``containerd://…-k3s…`` is k3s, other
``containerd://`` stock containerd; a cluster with both kinds takes one install per kind, each with its
``--node-selector``.

``uninstall`` removes in the order that lets every part clean up: k3c's objects first, while the agents can
still run their finalizers (containers stopped, volumes removed), then the agents, then the rest, CRDs and
the namespace last. Image objects are the exception: their finalizer removes the image from its node, and the
nodes' images are left alone, so they go only once no agent runs, without their finalizers.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from k3c import __version__
from k3c.api import (
    AGENT_NAME,
    AGENT_NAMESPACE,
    AGENT_SELECTOR,
    AGENT_TLS_SECRET,
    BUILD_CACHES,
    DAEMON_SETS,
    IMAGE_BUILDS,
    IMAGE_PUSHES,
    IMAGE_TAGS,
    IMAGES,
    LOCAL_CONTAINERS,
    NODE_POLICIES,
    NODES,
    PODS,
    SECRETS,
    STREAMS_API_SERVICE,
    VOLUMES,
    Resource,
)
from k3c.cli import agentimport
from k3c.cli.common import Subcommands, add_command, session
from k3c.cli.errors import CLIError
from k3c.kubeclient import Client

FIELD_MANAGER = "k3c-install"
#: Kubernetes' label on a Node: its host's name (k3c.api holds k3c's own keys only).
NODE_HOSTNAME_LABEL = "kubernetes.io/hostname"
DEFAULT_IMAGE = f"k3c.local/k3c-agent:{__version__}"
#: The names the API server's proxy reaches the streams by (the Service's DNS names).
SERVICE_HOSTS = (f"{AGENT_NAME}.{AGENT_NAMESPACE}.svc", f"{AGENT_NAME}.{AGENT_NAMESPACE}.svc.cluster.local")
#: k3c's kinds in the order uninstall removes them: users before what they use (containers before their
#: volumes, builds before their caches, an ImageTag before the ImagePushes it makes). Images come after the
#: agents (see the module's docstring).
OBJECT_ORDER = (LOCAL_CONTAINERS, IMAGE_BUILDS, IMAGE_TAGS, IMAGE_PUSHES, VOLUMES, BUILD_CACHES, NODE_POLICIES)


def register(sub: Subcommands) -> None:
    from k3c.manifests import RUNTIMES

    p = add_command(sub, "install", "Install k3c on a Kubernetes cluster: the CRDs, a node agent per node, "
                                    "roles and the streams API")
    p.add_argument("--runtime", choices=("auto", *RUNTIMES), default="auto",
                   help="The nodes' container runtime (default auto: read from the Nodes)")
    p.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="Run agents only on nodes with these labels (repeatable, or comma-separated)")
    p.add_argument("--image", default=DEFAULT_IMAGE,
                   help="The agents' image (default %(default)s; a k3c.local/ one is imported into the node "
                        "runtime on this machine when missing, others the nodes pull)")
    p.add_argument("--node-runtime-address", metavar="SOCK",
                   help="The node runtime's containerd socket on this machine, where the agents' image is "
                        "imported (default: k3s's or stock containerd's, by the runtime)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="How long to wait for the agents to be ready (default %(default)g; 0: do not wait)")
    p.set_defaults(func=install_cmd)
    p = add_command(sub, "uninstall", "Remove k3c from a Kubernetes cluster (the nodes' images stay)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="How long to wait for each step (default %(default)g)")
    p.add_argument("--force", action="store_true",
                   help="Drop the finalizers of objects no agent removed in time (their node's cleanup is skipped)")
    p.set_defaults(func=uninstall_cmd)


# ============================================================================================ rendering


def render(runtime: str) -> list[dict[str, Any]]:
    """The objects of manifests/overlays/``runtime``, as ``kubectl apply -k`` would send them."""
    import yaml

    from k3c.manifests import overlay

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise CLIError("k3c: kubectl is needed on PATH: its kustomize renders manifests/", 125)
    cp = subprocess.run([kubectl, "kustomize", str(overlay(runtime))], capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise CLIError(f"k3c: kubectl kustomize {overlay(runtime)}: {cp.stderr.strip()}", 125)
    return [d for d in yaml.safe_load_all(cp.stdout) if d]


def parse_selector(values: Iterable[str]) -> dict[str, str]:
    """``--node-selector`` values (``k=v``, repeatable or comma-separated) as a nodeSelector."""
    selector: dict[str, str] = {}
    for item in (part.strip() for v in values for part in v.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CLIError(f"k3c: invalid --node-selector {item!r}: want KEY=VALUE", 125)
        selector[key] = value
    return selector


def node_runtime(version: str) -> str:
    """A Node's ``containerRuntimeVersion`` as an overlay name; "" for a runtime k3c cannot share images with."""
    if not version.startswith("containerd://"):
        return ""
    return "k3s" if "-k3s" in version else "containerd"


def chosen_nodes(nodes: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    """The nodes whose labels ``selector`` matches (every node for an empty one)."""
    return [n for n in nodes if selector.items() <= (n["metadata"].get("labels") or {}).items()]


def runtime_of(nodes: list[dict[str, Any]], selector: dict[str, str]) -> str:
    """The one runtime of the nodes ``selector`` chooses; a clear error when there are none or several."""
    chosen = chosen_nodes(nodes, selector)
    if not chosen:
        raise CLIError("k3c: no node matches --node-selector" if selector else
                       "k3c: the cluster has no nodes: name the runtime with --runtime", 125)
    by_runtime: dict[str, list[str]] = {}
    for n in chosen:
        version = ((n.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion", "")
        runtime = node_runtime(version)
        if not runtime:
            raise CLIError(f"k3c: node {n['metadata']['name']} runs {version or 'an unknown runtime'}: "
                           "k3c shares images with containerd only", 125)
        by_runtime.setdefault(runtime, []).append(n["metadata"]["name"])
    if len(by_runtime) > 1:
        which = "; ".join(f"{r}: {', '.join(sorted(ns))}" for r, ns in sorted(by_runtime.items()))
        raise CLIError(f"k3c: the nodes run different runtimes ({which}): install once per kind of node, "
                       "with --runtime and --node-selector", 125)
    return next(iter(by_runtime))


@dataclass(frozen=True)
class StreamsTLS:
    """The streams' serving certificate and key, and the CA the API server verifies them with (PEM)."""

    ca: bytes
    cert: bytes
    key: bytes

    def secret(self) -> dict[str, Any]:
        data = {"ca.crt": self.ca, "tls.crt": self.cert, "tls.key": self.key}
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": AGENT_TLS_SECRET, "namespace": AGENT_NAMESPACE,
                             "labels": {AGENT_SELECTOR.partition("=")[0]: AGENT_NAME, "app.kubernetes.io/part-of": "k3c"}},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def streams_tls(client: Client) -> StreamsTLS:
    """The Secret's material when it is complete (the API server already trusts its CA), else new: a
    certificate for serving the streams and for calling the other agents (client auth)."""
    import tempfile
    from pathlib import Path

    from k3c import servingcerts
    from k3c.apierrors import NotFound

    try:
        data = client.get(SECRETS.path(AGENT_NAMESPACE, AGENT_TLS_SECRET)).get("data") or {}
    except NotFound:
        data = {}
    if all(data.get(k) for k in ("ca.crt", "tls.crt", "tls.key")) and _authenticates_peers(data["tls.crt"]):
        return StreamsTLS(*(base64.b64decode(data[k]) for k in ("ca.crt", "tls.crt", "tls.key")))
    with tempfile.TemporaryDirectory(prefix="k3c-install-") as d:
        m = servingcerts.ensure(Path(d), list(SERVICE_HOSTS), AGENT_NAME, client_auth=True)
        return StreamsTLS(m.ca_pem, m.cert.read_bytes(), m.key.read_bytes())


def _authenticates_peers(cert_b64: str) -> bool:
    """Whether the certificate may also be a client's: an agent presents it to the agent of another node
    (k3c.aggregated.peers). Earlier installs made serving-only ones, replaced with a new CA."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert = x509.load_pem_x509_certificate(base64.b64decode(cert_b64))
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages


def customize(docs: list[dict[str, Any]], image: str, selector: dict[str, str],
              tls: StreamsTLS) -> list[dict[str, Any]]:
    """The rendered objects with this cluster's parts: image, node selector, the TLS Secret, the caBundle."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "DaemonSet" and name == AGENT_NAME:
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                c["image"] = image
            if selector:
                pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **selector}
        elif kind == "APIService" and name == STREAMS_API_SERVICE:
            doc["spec"]["caBundle"] = base64.b64encode(tls.ca).decode()
            doc["spec"].pop("insecureSkipTLSVerify", None)
        out.append(doc)
        if kind == "Namespace" and name == AGENT_NAMESPACE:
            out.append(tls.secret())
    return out


# ============================================================================================ the API


class Discovery:
    """Each kind's resource, from the API server's discovery (one request per group/version)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._found: dict[str, dict[str, str]] = {}

    def resource(self, api_version: str, kind: str) -> Resource:
        if api_version not in self._found:
            path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            listed = self.client.get(path).get("resources", [])
            self._found[api_version] = {r["kind"]: r["name"] for r in listed if "/" not in r["name"]}
        group, _, version = api_version.rpartition("/")
        plural = self._found[api_version].get(kind)
        if plural is None:
            raise CLIError(f"k3c: the cluster does not serve {kind} ({api_version})", 125)
        return Resource(group, version, plural, kind)

    def path(self, doc: dict[str, Any]) -> str:
        meta = doc["metadata"]
        return self.resource(doc["apiVersion"], doc["kind"]).path(meta.get("namespace"), meta["name"])


def apply(client: Client, discovery: Discovery, doc: dict[str, Any]) -> None:
    client.request("PATCH", discovery.path(doc), doc, "application/apply-patch+yaml",
                   {"fieldManager": FIELD_MANAGER, "force": "true"})


def _wait(what: Callable[[], tuple[bool, str]], timeout: float, failure: str, hint: str = "",
          interval: float = 0.5) -> None:
    """Poll ``what`` (done, how far) until done; after ``timeout`` seconds a CLIError with the last state."""
    deadline = time.monotonic() + timeout
    while True:
        done, state = what()
        if done:
            return
        if time.monotonic() >= deadline:
            raise CLIError(f"k3c: {failure} after {timeout:g}s: {state}{hint}", 1)
        time.sleep(interval)


def agents_ready(ds: dict[str, Any]) -> tuple[bool, str]:
    """Whether the DaemonSet controller reports every scheduled agent of the current spec ready."""
    st = ds.get("status") or {}
    if st.get("observedGeneration", 0) < ds["metadata"].get("generation", 1):
        return False, "the DaemonSet controller has not seen the current spec yet"
    desired, ready = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
    updated = st.get("updatedNumberScheduled", 0)
    if desired == 0:
        return False, "no node runs an agent (does --node-selector match a node?)"
    return ready >= desired and updated >= desired, f"{ready}/{desired} agents ready, {updated} up to date"


# ============================================================================================ commands


def install_cmd(args: argparse.Namespace) -> int:
    client = session(args).client
    selector = parse_selector(args.node_selector)
    runtime = args.runtime
    nodes = client.get(NODES.path()).get("items", []) if runtime == "auto" else _nodes(client)
    if runtime == "auto":
        runtime = runtime_of(nodes, selector)
    docs = customize(render(runtime), args.image, selector, streams_tls(client))
    agentimport.ensure(args.image, runtime, args.node_runtime_address,
                       {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(NODE_HOSTNAME_LABEL, "")
                        for n in chosen_nodes(nodes, selector)})
    discovery = Discovery(client)
    for doc in docs:
        apply(client, discovery, doc)
    print(f"k3c installed for {runtime} nodes ({len(docs)} objects, image {args.image})")
    if args.timeout > 0:
        ds_path = DAEMON_SETS.path(AGENT_NAMESPACE, AGENT_NAME)
        _wait(lambda: agents_ready(client.get(ds_path)), args.timeout, "the agents are not ready")
        print("k3c agents ready:", agents_ready(client.get(ds_path))[1])
    return 0


def uninstall_cmd(args: argparse.Namespace) -> int:
    from k3c.apierrors import NotFound

    client = session(args).client
    for resource in OBJECT_ORDER:  # while the agents still run their finalizers
        _remove_all(client, resource, args.timeout, args.force)
    try:
        client.delete(DAEMON_SETS.path(AGENT_NAMESPACE, AGENT_NAME))
    except NotFound:
        pass
    agents = PODS.path(AGENT_NAMESPACE)
    _wait(lambda: _none_left(client.get(agents, labelSelector=AGENT_SELECTOR).get("items", [])),
          args.timeout, "agent pods are still running")
    for obj in _items(client, IMAGES):  # no agent runs any more: the nodes keep their images
        _drop_finalizers(client, IMAGES, obj)
        _delete(client, IMAGES, obj)
    discovery = Discovery(client)
    rest = [d for d in render("containerd") if d["kind"] != "DaemonSet"]
    rest.insert(1, {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": AGENT_TLS_SECRET, "namespace": AGENT_NAMESPACE}})
    for doc in reversed(rest):  # kustomize's order, reversed: the APIService first, the namespace last
        try:
            client.delete(discovery.path(doc))
        except NotFound:
            pass
    print("k3c uninstalled (the nodes' images are still there)")
    return 0


def _nodes(client: Client) -> list[dict[str, Any]]:
    """The cluster's Nodes, or none when this user may not list them (only the import's hint needs them)."""
    from k3c.apierrors import Forbidden

    try:
        items: list[dict[str, Any]] = client.get(NODES.path()).get("items", [])
    except Forbidden:
        return []
    return items


def _items(client: Client, resource: Resource) -> list[dict[str, Any]]:
    from k3c.apierrors import NotFound

    try:
        items: list[dict[str, Any]] = client.get(resource.path()).get("items", [])
    except NotFound:  # its CRD is gone already
        return []
    return items


def _none_left(items: list[dict[str, Any]]) -> tuple[bool, str]:
    names = sorted(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}".lstrip("/") for o in items)
    return not names, ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _delete(client: Client, resource: Resource, obj: dict[str, Any]) -> None:
    from k3c.apierrors import NotFound

    with contextlib.suppress(NotFound):
        client.delete(resource.path(obj["metadata"].get("namespace"), obj["metadata"]["name"]))


def _drop_finalizers(client: Client, resource: Resource, obj: dict[str, Any]) -> None:
    from k3c.apierrors import NotFound

    if obj["metadata"].get("finalizers"):
        with contextlib.suppress(NotFound):
            client.merge_patch(resource.path(obj["metadata"].get("namespace"), obj["metadata"]["name"]),
                               {"metadata": {"finalizers": None}})


def _remove_all(client: Client, resource: Resource, timeout: float, force: bool) -> None:
    """Delete every object of ``resource`` and wait until their finalizers have run (or drop them: force)."""
    for obj in _items(client, resource):
        _delete(client, resource, obj)
    try:
        _wait(lambda: _none_left(_items(client, resource)), timeout, f"{resource.plural} are still being removed",
              " (are the agents running? `k3c uninstall --force` drops their finalizers)")
    except CLIError:
        if not force:
            raise
        for obj in _items(client, resource):
            _drop_finalizers(client, resource, obj)
