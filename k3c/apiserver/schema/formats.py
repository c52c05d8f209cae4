"""The string `format`s kube-apiserver checks in custom resources (kube-openapi's strfmt registry).

Formats are compared normalized without '-' (`date-time` = `datetime`); the ones kube-apiserver does
not check (password, isbn, creditcard, ssn, k8s-*-name and unknown names) pass anything.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import re

__all__ = ["valid_string_format"]

_UUID_RES = {
    "uuid": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid3": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid4": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
    "uuid5": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
}
_DATE_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_EMAIL_RE = re.compile(r"^(?:[^@\s<>]+|.*<[^@\s<>]+@[^@\s<>]+>)$")
_MAC_RE = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
    r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2,9})$"
)
_DURATION_RE = re.compile(
    r"^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$|^0$"
    r"|^\d+\s*(?:ns|us|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)$"
)
_HEXCOLOR_RE = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGBCOLOR_RE = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")
_BSON_RE = re.compile(r"^[0-9a-fA-F]{24}$")


def valid_string_format(fmt: str, s: str) -> bool | None:
    """True/False when `fmt` is one kube-apiserver checks, None when the format is ignored."""
    f = fmt.replace("-", "")
    if f in _UUID_RES:
        return _UUID_RES[f].fullmatch(s) is not None
    if f == "datetime":
        m = _DATE_TIME_RE.fullmatch(s)
        if not m:
            return False
        try:
            _dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
        except ValueError:
            return False
        return True
    if f == "date":
        try:
            _dt.date.fromisoformat(s)
            return re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None
        except ValueError:
            return False
    if f == "byte":
        try:
            base64.b64decode(s, validate=True)
            return True
        except (ValueError, TypeError):
            return False
    if f in ("ipv4", "ipv6"):
        try:
            ip = ipaddress.ip_address(s)
        except ValueError:
            return False
        return ip.version == 4 if f == "ipv4" else ":" in s
    if f == "cidr":
        try:
            ipaddress.ip_network(s, strict=False)
            return "/" in s
        except ValueError:
            return False
    if f == "mac":
        return _MAC_RE.fullmatch(s) is not None
    if f == "hostname":
        return _HOSTNAME_RE.fullmatch(s) is not None
    if f == "email":
        return _EMAIL_RE.fullmatch(s) is not None and "@" in s
    if f == "uri":
        return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", s) or s.startswith("/"))
    if f == "duration":
        return _DURATION_RE.fullmatch(s) is not None
    if f == "hexcolor":
        return _HEXCOLOR_RE.fullmatch(s) is not None
    if f == "rgbcolor":
        m = _RGBCOLOR_RE.fullmatch(s)
        return m is not None and all(int(g) <= 255 for g in m.groups())
    if f == "bsonobjectid":
        return _BSON_RE.fullmatch(s) is not None
    return None  # password, isbn*, creditcard, ssn, k8s-*-name and unknown formats: not checked here
