"""Exceptions for runtime calls, so callers branch on meaning instead of on ``grpc.StatusCode``.

Reconcilers mostly need to tell "it is already gone" (:class:`NotFoundError`) and "it already exists"
(:class:`AlreadyExistsError`) from "the runtime is down" (:class:`RuntimeUnavailableError`) and everything
else. :func:`translate` turns a ``grpc.aio.AioRpcError`` into one of these, keeping the original as cause.
"""

from __future__ import annotations

import grpc


class RuntimeCallError(RuntimeError):
    """A call to containerd or its CRI plugin failed; ``code`` and ``details`` are gRPC's."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


class NotFoundError(RuntimeCallError):
    """The sandbox, container, image or blob does not exist (gRPC NOT_FOUND)."""


class AlreadyExistsError(RuntimeCallError):
    """The object exists already (gRPC ALREADY_EXISTS), e.g. a blob being written twice."""


class RuntimeUnavailableError(RuntimeCallError):
    """containerd is not answering (gRPC UNAVAILABLE) or the call ran past its deadline."""


_BY_CODE: dict[grpc.StatusCode, type[RuntimeCallError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RuntimeUnavailableError,
}


def translate(method: str, err: grpc.aio.AioRpcError) -> RuntimeCallError:
    """Map a failed gRPC call to the matching :class:`RuntimeCallError` subclass (raise it ``from err``)."""
    code = err.code()
    cls = _BY_CODE.get(code, RuntimeCallError)
    return cls(method, code, err.details() or "")
