"""Errors that domain code raises, free of any transport.

Each class names the gRPC status it becomes (see `grpc_errors`), so handlers never
decide codes themselves and nothing reaches a caller as a bare UNKNOWN. Messages
are written for the caller: they say what is wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (``relatives[0].photos[1].image``) and what to fix."""

    field: str
    description: str


class KinshipError(Exception):
    """Base of every error that is meant to reach a caller."""

    #: Name of the grpc.StatusCode this error maps to.
    status_name = "INTERNAL"
    #: Machine-readable reason for google.rpc.ErrorInfo, e.g. "MODEL_NOT_FOUND".
    default_reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})


@dataclass
class _Violations:
    items: list[FieldViolation] = field(default_factory=list)


class InvalidArgument(KinshipError):
    """The request itself is wrong; retrying it unchanged will fail again."""

    status_name = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
    ):
        super().__init__(message, reason=reason)
        items = list(violations or [])
        if field is not None:
            items.insert(0, FieldViolation(field, message))
        self.violations = items


class NotFound(KinshipError):
    """Something the request names does not exist (a model id, a collection)."""

    status_name = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class FailedPrecondition(KinshipError):
    """The system is not in a state where the request can work (e.g. dimension mismatch with a collection)."""

    status_name = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class Unavailable(KinshipError):
    """A dependency (Milvus, another service) cannot be reached; retrying later may work."""

    status_name = "UNAVAILABLE"
    default_reason = "DEPENDENCY_UNAVAILABLE"


class ResourceExhausted(KinshipError):
    """A limit was hit (message size, pixels, faces)."""

    status_name = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(KinshipError):
    """The caller's deadline passed before the work finished."""

    status_name = "DEADLINE_EXCEEDED"
    default_reason = "DEADLINE_EXCEEDED"


class ConfigError(ValueError):
    """A setting is missing or invalid at start-up; the message names the setting."""


class PermissionDenied(KinshipError):
    """The caller is known but may not do this (another tenant's gallery, a role without the right)."""

    status_name = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(KinshipError):
    """The caller could not be identified (no or bad credentials)."""

    status_name = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"
