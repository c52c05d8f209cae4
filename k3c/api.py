"""k3c's API vocabulary: the group, the resource types, and the finalizer, annotation and label keys.

Why one module: the CLI writes objects, the operator reconciles them, the daemon serves them and the test
harnesses clean them up; each must spell ``k3c.io/v1alpha1``, ``localcontainers`` or ``k3c.io/force-delete``
exactly as the others do, and a name spelt twice drifts. crds/*.yaml stays the source of truth of the schema
(tests/unit/test_api.py checks this module against it). A leaf: it imports nothing from k3c, and only
``typing`` (not ``dataclasses``, which brings ``inspect``: ~10 ms), so the CLI may import it at start-up.
"""

from __future__ import annotations

from typing import Final, NamedTuple

GROUP: Final = "k3c.io"
VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"


class Resource(NamedTuple):
    """One resource type: what its URLs (group, version, plural) and its objects (apiVersion, kind) say."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        """An object's ``apiVersion``: ``group/version``, or the bare version for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """``/apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]`` (``/api/V/...`` for the core group); without a
        namespace the cluster-wide path, which for a namespaced type lists every namespace."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{root}/namespaces/{namespace}/{self.plural}" if namespace else f"{root}/{self.plural}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path


# ---- k3c's own types (crds/*.yaml) ------------------------------------------------------------------
LOCAL_CONTAINERS: Final = Resource(GROUP, VERSION, "localcontainers", "LocalContainer")
VOLUMES: Final = Resource(GROUP, VERSION, "volumes", "Volume")
IMAGES: Final = Resource(GROUP, VERSION, "images", "Image")
IMAGE_TAGS: Final = Resource(GROUP, VERSION, "imagetags", "ImageTag")
IMAGE_PUSHES: Final = Resource(GROUP, VERSION, "imagepushes", "ImagePush")
IMAGE_BUILDS: Final = Resource(GROUP, VERSION, "imagebuilds", "ImageBuild")
BUILD_CACHES: Final = Resource(GROUP, VERSION, "buildcaches", "BuildCache")
NODE_POLICIES: Final = Resource(GROUP, VERSION, "nodepolicies", "NodePolicy")
NETWORKS: Final = Resource(GROUP, VERSION, "networks", "Network")
RESOURCES: Final = (LOCAL_CONTAINERS, VOLUMES, IMAGES, IMAGE_TAGS, IMAGE_PUSHES, IMAGE_BUILDS, BUILD_CACHES,
                    NODE_POLICIES, NETWORKS)

# ---- built-in types k3c reads and writes ------------------------------------------------------------
SECRETS: Final = Resource("", "v1", "secrets", "Secret")
CONFIG_MAPS: Final = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS: Final = Resource("", "v1", "events", "Event")
CUSTOM_RESOURCE_DEFINITIONS: Final = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition")
VALIDATING_WEBHOOK_CONFIGURATIONS: Final = Resource("admissionregistration.k8s.io", "v1",
                                                    "validatingwebhookconfigurations", "ValidatingWebhookConfiguration")
ENDPOINTS: Final = Resource("", "v1", "endpoints", "Endpoints")
SUBJECT_ACCESS_REVIEWS: Final = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview")
NODES: Final = Resource("", "v1", "nodes", "Node")
PODS: Final = Resource("", "v1", "pods", "Pod")
DAEMON_SETS: Final = Resource("apps", "v1", "daemonsets", "DaemonSet")

# ---- cluster mode: what manifests/ installs (`k3c install`) -----------------------------------------
#: The namespace of the node agents, and the name of their DaemonSet, Service and ServiceAccount.
AGENT_NAMESPACE: Final = "k3c-system"
AGENT_NAME: Final = "k3c-agent"
#: The agents' pods, as a label selector (the DaemonSet's selector and the Service's).
AGENT_SELECTOR: Final = f"app.kubernetes.io/name={AGENT_NAME}"
#: The Secret with the streams' serving certificate (tls.crt, tls.key, ca.crt) that `k3c install` makes.
AGENT_TLS_SECRET: Final = "k3c-agent-tls"
#: The aggregated group of the streams (logs, exec, attach, save/load, build logs) and its APIService.
#: A CRD cannot carry custom subresources, so on a cluster the node agents serve the streams as this
#: group/version; its paths mirror the parents' (``/apis/streams.k3c.io/v1alpha1/namespaces/NS/
#: localcontainers/NAME/exec``), and the CLI uses it when discovery lists it.
STREAMS_GROUP: Final = "streams.k3c.io"
STREAMS_VERSION: Final = "v1alpha1"
STREAMS_GROUP_VERSION: Final = f"{STREAMS_GROUP}/{STREAMS_VERSION}"
STREAMS_API_SERVICE: Final = f"{STREAMS_VERSION}.{STREAMS_GROUP}"
#: The agents' HTTPS stream port (the Service's targetPort).
STREAMS_PORT: Final = 6444

# ---- finalizers: the operator's cleanup before an object may go -------------------------------------
CONTAINER_FINALIZER: Final = "k3c.io/container"
VOLUME_FINALIZER: Final = "k3c.io/volume"
IMAGE_FINALIZER: Final = "k3c.io/image"
IMAGE_BUILD_FINALIZER: Final = "k3c.io/imagebuild"
NETWORK_FINALIZER: Final = "k3c.io/network"

# ---- annotations on k3c's objects -------------------------------------------------------------------
#: "true": delete a Volume still in use, or an Image containers still use.
FORCE_DELETE_ANNOTATION: Final = "k3c.io/force-delete"
#: A new value asks the operator for a fresh start of a LocalContainer now (`k3c start`, `k3c restart`).
START_REQUEST_ANNOTATION: Final = "k3c.io/start-request"
#: How a `k3c restart`'s start-request value begins (the operator only compares values; docker's event
#: stream tells a restart from a start).
RESTART_TOKEN_PREFIX: Final = "restart-"
#: ``SIGNAL/CONTAINER_ID/TOKEN``: a `k3c kill -s` of that CRI container, written just before the signal is
#: sent (k3c.containerlife.kill_patch): docker's ``kill`` event, and no restart of what it ends.
KILL_REQUEST_ANNOTATION: Final = "k3c.io/kill-request"
#: The anonymous Volumes `k3c run` created for a container (comma-separated), removed by `k3c rm -v`.
ANONYMOUS_VOLUMES_ANNOTATION: Final = "k3c.io/anonymous-volumes"
#: ``containerd`` on Image objects made for an image found there: if the image goes, the object goes.
ORIGIN_ANNOTATION: Final = "k3c.io/origin"
#: "true" on a LocalContainer a foreground `k3c run --rm` made: that CLI shows the output and removes the
#: object itself, so ``autoRemove`` waits a while after the exit (the CLI may attach only after it).
ATTACHED_RUN_ANNOTATION: Final = "k3c.io/attached-run"
#: The docker name of a LocalContainer or Volume (``proj_web_1``) when it is not the object's name: the
#: rules are k3c.dockerid's (a leaf beside this one, which spells the key too; a test holds them equal).
NAME_ANNOTATION: Final = "k3c.io/name"
#: A Network's or Volume's docker labels as given, JSON (``docker network create --label``): Kubernetes labels
#: cannot hold every docker label, so the valid ones are also the object's labels and this keeps all of them
#: verbatim (k3c.dockerid.label_metadata, which spells the key too).
LABELS_ANNOTATION: Final = "k3c.io/labels"
#: "true" on a Network created attachable (docker's swarm flag, which compose sets): every container may join
#: a k3c network anyway, so it is only kept to be shown back as given.
ATTACHABLE_ANNOTATION: Final = "k3c.io/attachable"
#: On a core Event about a container: its image, for docker's events of a container removed since
EVENT_IMAGE_ANNOTATION: Final = "k3c.io/image"
#: When the client created a LocalContainer, RFC 3339 with nanoseconds: ``metadata.creationTimestamp`` keeps
#: whole seconds only, and docker lists containers made in the same second in the order they were made.
CREATED_ANNOTATION: Final = "k3c.io/created"
#: The image ID (``sha256:…``) a LocalContainer's image had when a Docker API client created it: dockerd's
#: inspect shows ``Image`` from the create on, and docker-compose reads it to recreate a container that never
#: ran (status.imageID, what the node actually ran, wins once there is one).
IMAGE_ID_ANNOTATION: Final = "k3c.io/image-id"
#: Reasons of the core/v1 Events the operator records when a container's health check changes its status
#: (healthy/unhealthy); `k3c events` shows them as docker's ``health_status: STATUS``.
HEALTH_EVENT_REASONS: Final = {"healthy": "HealthStatusHealthy", "unhealthy": "HealthStatusUnhealthy"}

# ---- labels on k3c's and built-in objects -----------------------------------------------------------
#: On the Secret carrying a build's ``--secret`` values: the ImageBuild it belongs to.
BUILD_SECRET_LABEL: Final = "k3c.io/build-secret-for"
#: On an ImagePush an ImageTag created: the ImageTag's name.
IMAGE_TAG_OWNER_LABEL: Final = "k3c.io/imagetag"
#: On an Image of one node's store, in cluster mode (``kubectl get images -l k3c.io/node=N``): the node.
NODE_LABEL: Final = "k3c.io/node"

# ---- labels and annotations on containerd's objects (CRI sandboxes, containers, images) ---------------
#: On every sandbox and container k3c creates: how the operator finds its own at start-up.
CRI_MANAGED_LABEL: Final = "k3c.io/managed"
CRI_NODE_LABEL: Final = "k3c.io/node"
CRI_UID_LABEL: Final = "k3c.io/uid"
CRI_NAMESPACE_LABEL: Final = "k3c.io/namespace"
CRI_NAME_LABEL: Final = "k3c.io/name"
#: On sandboxes of the warm pool (generic: no ports, hostname, DNS or host network of their own).
CRI_POOL_LABEL: Final = "k3c.io/pool"
#: Sandbox annotation holding the sandbox's spec as JSON, to rebuild its config after a restart.
CRI_SANDBOX_SPEC_ANNOTATION: Final = "k3c.io/sandbox-spec"
#: Sandbox annotation: its networks, the node's conflist names in interface order (``none``: loopback only;
#: absent: the default network), read by the ``k3c-cni`` dispatcher (k3c.nodenet.dispatcher).
CRI_NETWORKS_ANNOTATION: Final = "k3c.io/networks"
#: Container annotation: hash of the spec fields that shaped the container (a change means recreate).
CRI_SPEC_HASH_ANNOTATION: Final = "k3c.io/spec-hash"
#: On an image a build tagged in containerd: ``namespace/name`` of its ImageBuild.
IMAGE_BUILD_LABEL: Final = "k3c.io/imagebuild"

# ---- networks -----------------------------------------------------------------------------------------
#: docker's default network: today's bridge of the node, always there; containers without networks use it.
DEFAULT_NETWORK: Final = "bridge"
#: Pseudo-networks a container may name instead (docker --network host / none); no Network object is theirs.
HOST_NETWORK: Final = "host"
NO_NETWORK: Final = "none"

# ---- where the local k3c publishes its API ----------------------------------------------------------
DEFAULT_ROOT_DIR: Final = "/var/lib/k3c"
#: The admin kubeconfig the API server writes into its data directory.
KUBECONFIG_FILE: Final = "kubeconfig.yaml"
DEFAULT_KUBECONFIG: Final = f"{DEFAULT_ROOT_DIR}/{KUBECONFIG_FILE}"
#: The API server's unix socket beside that kubeconfig (plain HTTP; its file mode is its access control).
SOCKET_FILE: Final = "k3c.sock"

# ---- where a node keeps the output of its containers ------------------------------------------------
#: Under the node's root dir. The operator has CRI write each LocalContainer's output there and the
#: streams server reads it from there: both derive the file from the object (status.logPath only reports
#: it; whoever may write the object may write that field too).
CONTAINER_LOGS_DIR: Final = "logs"


def container_log_file(namespace: str, name: str, uid: str) -> str:
    """One log file per object in :data:`CONTAINER_LOGS_DIR`, appended to across restarts (like docker's)."""
    return f"{namespace}_{name}_{uid}.log"


def streams_path(parent: Resource, namespace: str | None, name: str, sub: str) -> str:
    """The aggregated path of a k3c object's subresource: ``parent``'s own path with the streams' group."""
    return Resource(STREAMS_GROUP, STREAMS_VERSION, parent.plural, parent.kind).path(namespace, name, sub)
