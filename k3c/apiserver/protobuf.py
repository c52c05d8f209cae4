"""Kubernetes protobuf bodies <-> the JSON-shaped dicts the API server works with.

Since 1.32, kubectl's typed client sends the bodies of `kubectl create namespace|configmap|secret ...`
(and of other `create` subcommands) as `application/vnd.kubernetes.protobuf`, and it does not retry with
JSON when the server answers 415.  The server therefore has to read that format.  `decode` turns such a
body into the dict the JSON form would have given (same camelCase names, RFC 3339 times, base64 bytes),
except that unset fields are always left out where kubectl's JSON sometimes writes null (notably
`metadata.creationTimestamp`); `encode` does the reverse for the same kinds.

The wire format: the 4 magic bytes ``k8s\\0``, then a runtime.Unknown message whose typeMeta names the
apiVersion/kind and whose `raw` holds the object's own message.  The messages are described by k3c's own
.proto files in k3c/apiserver/proto; their field names are the Kubernetes JSON names.
"""

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, EncodeError, Message

from .proto import k8s_authn_v1_pb2 as authn
from .proto import k8s_authz_v1_pb2 as authz
from .proto import k8s_core_v1_pb2 as core
from .proto import k8s_meta_v1_pb2 as meta
from .proto import k8s_rbac_v1_pb2 as rbac
from .proto import k8s_runtime_pb2 as runtime

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_CORE_V1_KINDS: dict[str, type[Message]] = {
    "Namespace": core.Namespace,
    "ConfigMap": core.ConfigMap,
    "Secret": core.Secret,
    "Event": core.Event,
    "ServiceAccount": core.ServiceAccount,
}
#: the other kinds kubectl sends as protobuf, by apiVersion: RBAC's, the reviews and TokenRequest
_GROUP_KINDS: dict[str, dict[str, type[Message]]] = {
    "rbac.authorization.k8s.io/v1": {
        "Role": rbac.Role, "ClusterRole": rbac.ClusterRole, "RoleBinding": rbac.RoleBinding,
        "ClusterRoleBinding": rbac.ClusterRoleBinding,
    },
    "authorization.k8s.io/v1": {
        "SubjectAccessReview": authz.SubjectAccessReview,
        "LocalSubjectAccessReview": authz.LocalSubjectAccessReview,
        "SelfSubjectAccessReview": authz.SelfSubjectAccessReview,
        "SelfSubjectRulesReview": authz.SelfSubjectRulesReview,
    },
    "authentication.k8s.io/v1": {
        "TokenRequest": authn.TokenRequest,
        "TokenReview": authn.TokenReview,
        "SelfSubjectReview": authn.SelfSubjectReview,
    },
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# JSON precision of metav1.Time (whole seconds) and metav1.MicroTime (always six fractional digits).
_TIME_FORMATS: dict[str, str] = {
    meta.Time.DESCRIPTOR.full_name: "seconds",
    meta.MicroTime.DESCRIPTOR.full_name: "microseconds",
}
_FIELDS_V1 = meta.FieldsV1.DESCRIPTOR.full_name


def _descriptor(message: Message | type[Message]) -> Descriptor:
    """A message's descriptor. The stubs allow upb's class besides the pure-Python one; at run time it is
    upb's, which passes this isinstance (Descriptor's metaclass admits it) and has the same accessors."""
    descriptor = message.DESCRIPTOR
    assert isinstance(descriptor, Descriptor)
    return descriptor


def _message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field (protobuf leaves it None on scalar fields only)."""
    assert field.message_type is not None
    return field.message_type


def _fields(message: type[Message], *names: str) -> set[FieldDescriptor]:
    return {_descriptor(message).fields_by_name[name] for name in names}


# Scalars that are pointers in the Go types: a zero value sent on the wire is meaningful and appears in
# JSON.  Every other string/integer field is a plain Go value with `omitempty`, so its zero means unset
# (Go's protobuf encoder writes those zeros anyway).  All bool fields of these kinds are pointers.
_KEEP_ZERO: frozenset[FieldDescriptor] = frozenset(
    _fields(meta.ObjectMeta, "deletionGracePeriodSeconds")
    | _fields(meta.DeleteOptions, "gracePeriodSeconds", "propagationPolicy")
    | _fields(meta.Preconditions, "uid", "resourceVersion")
)

# Python types accepted for each scalar field type when encoding (bools are not integers here).
_JSON_TYPES: dict[int, tuple[type, str]] = {
    FieldDescriptor.TYPE_STRING: (str, "a string"),
    FieldDescriptor.TYPE_INT64: (int, "an integer"),
    FieldDescriptor.TYPE_INT32: (int, "an integer"),
    FieldDescriptor.TYPE_BOOL: (bool, "a boolean"),
}

_OMIT = object()  # marks a field value that the JSON form leaves out


def _message_class(api_version: str, kind: str) -> type[Message]:
    if kind == "DeleteOptions":  # Kubernetes registers DeleteOptions in every group version
        return meta.DeleteOptions
    if api_version == "v1" and kind in _CORE_V1_KINDS:
        return _CORE_V1_KINDS[kind]
    if kind in _GROUP_KINDS.get(api_version, {}):
        return _GROUP_KINDS[api_version][kind]
    raise ValueError(f"protobuf body of unsupported kind {kind!r} (apiVersion {api_version!r})")


# ---------------------------------------------------------------- decoding: protobuf -> JSON-shaped dict


def decode(body: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf body into the dict its JSON form would give."""
    if not body.startswith(MAGIC):
        raise ValueError("protobuf body does not start with the Kubernetes magic bytes 'k8s\\x00'")
    envelope = _parse(runtime.Unknown(), bytes(body[len(MAGIC) :]), "envelope")
    if envelope.contentEncoding:
        raise ValueError(f"protobuf body has unsupported contentEncoding {envelope.contentEncoding!r}")
    if envelope.contentType not in ("", PROTOBUF):
        raise ValueError(f"protobuf envelope holds unsupported contentType {envelope.contentType!r}")
    type_meta = _to_dict(envelope.typeMeta)
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if not kind:
        raise ValueError("protobuf envelope does not name the object's kind")
    obj = _parse(_message_class(api_version, kind)(), envelope.raw, kind)
    try:
        return {"apiVersion": api_version, "kind": kind, **_to_dict(obj)}
    except UnicodeDecodeError as exc:  # raised by protobuf for a bad map key or value
        raise ValueError(f"protobuf {kind} holds a string that is not valid UTF-8") from exc


_M = TypeVar("_M", bound=Message)


def _parse(message: _M, data: bytes, what: str) -> _M:
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"malformed protobuf {what}: {exc}") from exc
    return message


def _to_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        converted = _field_to_json(field, value)
        if converted is not _OMIT:
            out[field.name] = converted
    return out


def _field_to_json(field: FieldDescriptor, value: Any) -> Any:
    if _is_map(field):
        key_field, value_field = _message_type(field).fields
        return {_to_json(key_field, k): _to_json(value_field, v) for k, v in value.items()}
    if field.is_repeated:
        return [_to_json(field, item) for item in value]
    return _OMIT if _is_zero(field, value) else _to_json(field, value)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_zero(field: FieldDescriptor, value: Any) -> bool:
    if field.type == FieldDescriptor.TYPE_MESSAGE:  # structs are never omitted, except zero times (null)
        return _message_type(field).full_name in _TIME_FORMATS and not (value.seconds or value.nanos)
    if field.type == FieldDescriptor.TYPE_BOOL or field in _KEEP_ZERO:
        return False
    return not value


def _to_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_to_json(_message_type(field), value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type == FieldDescriptor.TYPE_STRING and isinstance(value, bytes):
        raise ValueError(f"protobuf field {_name(field)} is not valid UTF-8")
    return value


def _name(field: FieldDescriptor) -> str:
    """Readable field name for messages; a map's key/value field is named after the map itself."""
    owner = field.containing_type
    assert owner is not None  # set on every field of a message
    if owner.GetOptions().map_entry:
        parent = owner.containing_type
        assert parent is not None  # a map's entry message is nested in the message holding the map
        map_field = next(f for f in parent.fields if f.message_type is owner)
        return f"{parent.name}.{map_field.name}"
    return f"{owner.name}.{field.name}"


def _message_to_json(descriptor: Descriptor, value: Any) -> Any:
    """``value``: a message of the type ``descriptor`` describes (Time, FieldsV1 or any other)."""
    if descriptor.full_name in _TIME_FORMATS:
        return _format_time(value.seconds, value.nanos, _TIME_FORMATS[descriptor.full_name])
    if descriptor.full_name == _FIELDS_V1:
        try:
            return json.loads(value.Raw)
        except ValueError as exc:
            raise ValueError(f"managedFields fieldsV1 is not valid JSON: {exc}") from exc
    return _to_dict(value)


def _format_time(seconds: int, nanos: int, timespec: str) -> str:
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError as exc:
        raise ValueError(f"protobuf timestamp out of range: {seconds}s") from exc
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


# ---------------------------------------------------------------- encoding: JSON-shaped dict -> protobuf


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a JSON-shaped Kubernetes object of a supported kind as a Kubernetes protobuf body."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ValueError("object to encode needs string 'apiVersion' and 'kind'")
    message = _message_class(api_version, kind)()
    fields = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    try:
        _fill(message, fields)
        raw = message.SerializeToString(deterministic=True)
    except (TypeError, EncodeError) as exc:
        raise ValueError(f"cannot encode {kind}: {exc}") from exc
    envelope = runtime.Unknown(typeMeta=runtime.TypeMeta(apiVersion=api_version, kind=kind), raw=raw)
    return MAGIC + envelope.SerializeToString(deterministic=True)


def _fill(message: Message, data: Any) -> None:
    descriptor = _descriptor(message)
    if not isinstance(data, dict):
        raise ValueError(f"{descriptor.name} must be a JSON object, got {type(data).__name__}")
    message.SetInParent()  # an empty {} still counts as present
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            raise ValueError(f"{descriptor.name} has no field {key!r}")
        if value is not None:  # JSON null means unset
            _set_field(message, field, value)


def _set_field(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        _fill_map(target, field, value)
    elif field.is_repeated:
        if not isinstance(value, list):
            raise ValueError(f"{_name(field)} must be a JSON array")
        for item in value:
            _append(target, field, item)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill_message(target, value)
    else:
        setattr(message, field.name, _from_json(field, value))


def _fill_map(target: Any, field: FieldDescriptor, value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{_name(field)} must be a JSON object")
    key_field, value_field = _message_type(field).fields
    for key, item in value.items():
        target[_from_json(key_field, key)] = _from_json(value_field, item)


def _append(target: Any, field: FieldDescriptor, item: Any) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill_message(target.add(), item)
    else:
        target.append(_from_json(field, item))


def _fill_message(target: Any, value: Any) -> None:
    """``target``: a message field's message, filled from its JSON form (Time, FieldsV1 or any other)."""
    name = target.DESCRIPTOR.full_name
    if name in _TIME_FORMATS:
        target.seconds, target.nanos = _parse_time(value)
    elif name == _FIELDS_V1:
        target.Raw = json.dumps(value, separators=(",", ":")).encode()
    else:
        _fill(target, value)


def _from_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise ValueError(f"{_name(field)} must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{_name(field)} is not valid base64: {exc}") from exc
    expected, what = _JSON_TYPES[field.type]
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise ValueError(f"{_name(field)} must be {what}, got {type(value).__name__}")
    return value


def _parse_time(value: Any) -> tuple[int, int]:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {value!r}")
    delta = moment - _EPOCH
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000
