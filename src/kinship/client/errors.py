"""Typed exceptions for failed calls, read from the rich status details the services send.

Every service ends a failed call with a google.rpc.Status in the `grpc-status-details-bin`
trailer (see kinship.runtime.grpc_errors): an `ErrorInfo` (machine-readable reason and
metadata), for a bad request a `BadRequest` (one violation per field at fault), and for an
admission refusal a `RetryInfo` (when to try again). `from_rpc_error` turns a failed call
into the matching subclass of `KinshipClientError` with those details as attributes.

Each exception is also a `grpc.RpcError` with `code()` and `details()`, so code written
against plain gRPC stubs keeps working.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kinship.runtime.errors import FieldViolation

__all__ = [
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "KinshipClientError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]


class KinshipClientError(grpc.RpcError):
    """A call the suite refused or could not answer.

    Attributes: `status` (grpc.StatusCode), `message` (the service's words: what is wrong
    and what to fix), `reason` (ErrorInfo reason, e.g. "MODEL_NOT_FOUND"; "" when none was
    sent), `metadata` (ErrorInfo metadata), `violations` (BadRequest field violations),
    `retry_after` (seconds, from RetryInfo; None when none), `method` (the RPC),
    `request_id` (sent as x-request-id: quote it when reporting a problem), `attempts`.
    """

    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        status: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
        retry_after: float | None = None,
        method: str = "",
        request_id: str = "",
        attempts: int = 1,
    ):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])
        self.retry_after = retry_after
        self.method = method
        self.request_id = request_id
        self.attempts = attempts

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.message

    def __str__(self) -> str:
        text = f"{self.status.name}: {self.message}"
        if self.violations:
            text += " [" + "; ".join(f"{v.field}: {v.description}" for v in self.violations) + "]"
        return text


class InvalidArgument(KinshipClientError):
    """The request is wrong; `violations` names each field at fault. Sending it unchanged fails again."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KinshipClientError):
    """Something the request names does not exist (a model id, a collection, a person)."""

    status = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(KinshipClientError):
    """The suite is not in a state where the request can work (e.g. a model the ranker does not score with)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(KinshipClientError):
    """A service (or what it depends on) could not be reached; retrying later may work."""

    status = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(KinshipClientError):
    """A limit was hit: a service at capacity (`retry_after` says when to come back), a size, a rate."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(KinshipClientError):
    """The call's deadline passed before the answer came."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDenied(KinshipClientError):
    """The caller is known but may not do this (its role, another tenant's gallery, a missing case id)."""

    status = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(KinshipClientError):
    """The caller could not be identified: no or a bad certificate or token."""

    status = grpc.StatusCode.UNAUTHENTICATED


class Internal(KinshipClientError):
    """The service failed in a way the caller cannot fix (INTERNAL, UNKNOWN, ...); quote `request_id`."""

    status = grpc.StatusCode.INTERNAL


_BY_STATUS: dict[grpc.StatusCode, type[KinshipClientError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
        PermissionDenied,
        Unauthenticated,
    )
}


def from_rpc_error(
    err: grpc.RpcError, *, method: str = "", request_id: str = "", attempts: int = 1
) -> KinshipClientError:
    """The typed exception for a failed call, with its ErrorInfo, BadRequest and RetryInfo details."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (err.details() if callable(getattr(err, "details", None)) else str(err)) or code.name
    reason, metadata, violations, retry_after = "", {}, [], None
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - malformed details: the status code and message still stand
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    cls = _BY_STATUS.get(code, Internal)
    return cls(
        message,
        status=code if cls is Internal else None,
        reason=reason,
        metadata=metadata,
        violations=violations,
        retry_after=retry_after,
        method=method,
        request_id=request_id,
        attempts=attempts,
    )
