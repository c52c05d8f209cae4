"""The name formats of apimachinery's validation package that CRDs and embedded resources must follow.

A CRD's names and versions are DNS-1035 labels, its group and name DNS-1123 subdomains, the kind of an
embedded resource a (mixed-case) DNS-1035 label; the messages are kube-apiserver's, regex included.
"""

from __future__ import annotations

import re

__all__ = ["dns1035_label_errors", "dns1123_label_errors", "dns1123_subdomain_errors"]

_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1035_RE = re.compile(_DNS1035_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)


def dns1035_label_errors(value: str) -> list[str]:
    """validation.IsDNS1035Label: empty when `value` is one."""
    return _format_errors(value, 63, _DNS1035_RE, _DNS1035_FMT,
                          "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                          "with an alphabetic character, and end with an alphanumeric character",
                          "my-name", "abc-123")


def dns1123_label_errors(value: str) -> list[str]:
    """validation.IsDNS1123Label (a namespace's name): empty when `value` is one."""
    return _format_errors(value, 63, _DNS1123_LABEL_RE, _DNS1123_LABEL_FMT,
                          "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                          "and must start and end with an alphanumeric character", "my-name", "123-abc")


def dns1123_subdomain_errors(value: str) -> list[str]:
    """validation.IsDNS1123Subdomain: empty when `value` is one."""
    return _format_errors(value, 253, _DNS1123_SUBDOMAIN_RE, _DNS1123_SUBDOMAIN_FMT,
                          "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                          "or '.', and must start and end with an alphanumeric character", "example.com")


def _format_errors(value: str, max_len: int, regex: re.Pattern[str], fmt: str, msg: str,
                   *examples: str) -> list[str]:
    errs = []
    if len(value) > max_len:
        errs.append(f"must be no more than {max_len} characters")
    if not regex.fullmatch(value):
        shown = "".join((" or " if i else "") + f"'{e}', " for i, e in enumerate(examples))
        errs.append(f"{msg} (e.g. {shown}regex used for validation is '{fmt}')")  # validation.RegexError
    return errs
