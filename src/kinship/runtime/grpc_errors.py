"""Domain errors <-> gRPC status, with google.rpc.Status details.

Servers turn a `KinshipError` into its status code, a message and rich details
(`BadRequest` field violations, `ErrorInfo`), readable by any gRPC client through
grpcio-status. Clients turn a failed call back into the same domain error, so that an
INVALID_ARGUMENT from the embedder reaches the ranker's caller as INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from . import errors

T = TypeVar("T", bound=Message)

DOMAIN = "kinship-search"

_BY_STATUS: dict[grpc.StatusCode, type[errors.KinshipError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
}
#: A dependency's failures that a retry may cure: reported as UNAVAILABLE.
_TRANSIENT = {grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED}


def status_code_of(error: errors.KinshipError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.status_name)


#: Bytes of field violations sent at most. The details travel in one trailing-metadata
#: value, and clients refuse metadata over 16 KiB (grpc's default) with RESOURCE_EXHAUSTED,
#: which would hide the INVALID_ARGUMENT (e.g. a 1,000-record upsert with every record bad).
MAX_VIOLATION_BYTES = 6 * 1024


def _bounded_violations(violations) -> list[error_details_pb2.BadRequest.FieldViolation]:
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    used = 0
    for index, v in enumerate(violations):
        item = error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        size = item.ByteSize()
        if used + size > MAX_VIOLATION_BYTES and out:
            rest = len(violations) - index
            out.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="...", description=f"and {rest} more problems of the same request, not listed"
                )
            )
            break
        out.append(item)
        used += size
    return out


def to_rpc_status(error: errors.KinshipError) -> status_pb2.Status:
    """Builds the google.rpc.Status that carries `error` to the caller."""
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    violations = getattr(error, "violations", None)
    if violations:
        bad = error_details_pb2.BadRequest(field_violations=_bounded_violations(violations))
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    retry_after_ms = getattr(error, "retry_after_ms", None)
    if retry_after_ms is not None:
        # RetryInfo: the standard detail that tells a client when to try again (admission control).
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(int(retry_after_ms))
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    return status_pb2.Status(code=getattr(code_pb2, error.status_name), message=error.message, details=details)


async def abort_with(
    context: grpc.aio.ServicerContext, error: errors.KinshipError, trailing_metadata: tuple = ()
) -> None:
    """Ends the call with `error` (raises grpc's abort exception); `trailing_metadata` is added to its trailers."""
    status = rpc_status.to_status(to_rpc_status(error))
    if trailing_metadata:
        status = status._replace(trailing_metadata=(*status.trailing_metadata, *trailing_metadata))
    retry_after_ms = getattr(error, "retry_after_ms", None)
    if retry_after_ms is not None:
        # gRPC's retry policy reads this trailer as the server's pushback.
        status = status._replace(
            trailing_metadata=(*status.trailing_metadata, ("grpc-retry-pushback-ms", str(int(retry_after_ms))))
        )
    await context.abort_with_status(status)


def from_rpc_error(err: grpc.RpcError, *, service: str) -> errors.KinshipError:
    """Turns a failed client call into the matching domain error.

    The original message is kept, prefixed with the service that said it, so a
    caller of the ranker learns that e.g. the embedder refused a photo and why.
    """
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    reason = _error_reason(err)
    cls = _BY_STATUS.get(code)
    if cls is None:
        if code in _TRANSIENT:
            return errors.Unavailable(
                f"{service} did not finish the call ({code.name}); retry", reason="DEPENDENCY_FAILED"
            )
        # INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS ...: the dependency's own words may
        # hold internals (paths, stack hints), so the caller gets the code's meaning only.
        return errors.KinshipError(
            f"{service} failed internally ({code.name if code else 'unknown status'}); quote the request id when "
            "reporting it",
            reason="DEPENDENCY_INTERNAL",
        )
    if cls is errors.InvalidArgument:
        violations = _field_violations(err)
        return errors.InvalidArgument(details or f"{service} refused the request", violations=violations, reason=reason)
    if cls is errors.Unavailable:
        return errors.Unavailable(f"{service} is unavailable: {details}", reason=reason)
    if cls in (errors.PermissionDenied, errors.Unauthenticated):
        # Said inside the suite: name who refused, keep the reason (ROLE_NOT_ALLOWED, TENANT_MISMATCH, ...).
        return cls(f"{service} refused the call: {details}", reason=reason)
    if cls is errors.ResourceExhausted:
        # A dependency at capacity: say so, and pass its retry hint on (RetryInfo, pushback trailer).
        retry_after_ms = _retry_after_ms(err)
        if reason == "OVERLOADED" or retry_after_ms is not None:
            overloaded = errors.ResourceExhausted(f"{service} is at capacity: {details}", reason=reason or "OVERLOADED")
            overloaded.retry_after_ms = retry_after_ms  # type: ignore[attr-defined]
            return overloaded
    return cls(details or f"{service} failed with {code.name}", reason=reason)


def _retry_after_ms(err: grpc.RpcError) -> int | None:
    """The dependency's RetryInfo delay in milliseconds, if it sent one."""
    info = _status_detail(err, error_details_pb2.RetryInfo)
    return None if info is None else max(1, info.retry_delay.ToMilliseconds())


def _error_reason(err: grpc.RpcError) -> str | None:
    """The ErrorInfo reason the dependency sent, if any (kept across the hop)."""
    info = _status_detail(err, error_details_pb2.ErrorInfo)
    return None if info is None else info.reason or None


def _status_detail(err: grpc.RpcError, message_type: type[T]) -> T | None:
    """The first detail of `message_type` in the dependency's google.rpc.Status, if it sent one."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a status without parsable details is still a status
        return None
    for detail in status.details if status is not None else ():
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            return message
    return None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason or None
    return None


def _field_violations(err: grpc.RpcError) -> list[errors.FieldViolation]:
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a status without parsable details is still a status
        return []
    if status is None:
        return []
    out: list[errors.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(errors.FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out
