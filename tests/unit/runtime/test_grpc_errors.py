from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2

from kinship.runtime import errors, grpc_errors


def test_invalid_argument_carries_field_violations() -> None:
    err = errors.InvalidArgument("image is empty: send JPEG or PNG bytes", field="image")
    status = grpc_errors.to_rpc_status(err)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == "image is empty: send JPEG or PNG bytes"
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert [(v.field, v.description) for v in bad.field_violations] == [("image", err.message)]


def test_each_domain_error_has_its_own_code() -> None:
    pairs = {
        errors.InvalidArgument("x"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.NotFound("x"): grpc.StatusCode.NOT_FOUND,
        errors.FailedPrecondition("x"): grpc.StatusCode.FAILED_PRECONDITION,
        errors.Unavailable("x"): grpc.StatusCode.UNAVAILABLE,
        errors.ResourceExhausted("x"): grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.DeadlineExceeded("x"): grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    for err, code in pairs.items():
        assert grpc_errors.status_code_of(err) == code


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return ()


def test_client_side_translation_keeps_code_and_message() -> None:
    err = grpc_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.NOT_FOUND, "no collection for model m"), service="indexer"
    )
    assert isinstance(err, errors.NotFound)
    assert "no collection for model m" in err.message
    down = grpc_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"), service="embedder"
    )
    assert isinstance(down, errors.Unavailable)
    assert "embedder" in down.message
    odd = grpc_errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.INTERNAL, "boom at /srv/x.py"), service="indexer")
    # A dependency's internal failure stays INTERNAL (not UNAVAILABLE) and its words do not leak.
    assert grpc_errors.status_code_of(odd) == grpc.StatusCode.INTERNAL
    assert "INTERNAL" in odd.message and "boom" not in odd.message and "/srv" not in odd.message


def test_auth_failures_keep_their_meaning_across_a_hop() -> None:
    denied = grpc_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "searcher may not call Delete"), service="indexer"
    )
    assert grpc_errors.status_code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    assert "indexer" in denied.message and "may not call Delete" in denied.message
    unknown = grpc_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "no credentials"), service="embedder"
    )
    assert grpc_errors.status_code_of(unknown) == grpc.StatusCode.UNAUTHENTICATED


def test_a_dependency_at_capacity_is_reported_as_such_with_its_retry_hint() -> None:
    from grpc_status import rpc_status

    overloaded = errors.ResourceExhausted("the embedder has 16 calls at work; retry", reason="OVERLOADED")
    overloaded.retry_after_ms = 120  # type: ignore[attr-defined]
    status = rpc_status.to_status(grpc_errors.to_rpc_status(overloaded))

    class _WithDetails(_FakeRpcError):
        def trailing_metadata(self):
            return status.trailing_metadata

    err = grpc_errors.from_rpc_error(
        _WithDetails(grpc.StatusCode.RESOURCE_EXHAUSTED, "the embedder has 16 calls at work; retry"), service="embedder"
    )
    assert isinstance(err, errors.ResourceExhausted)
    assert err.message.startswith("embedder is at capacity") and err.reason == "OVERLOADED"
    assert err.retry_after_ms == 120
    # A plain size refusal stays what it was.
    plain = grpc_errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "image too big"), service="embedder"
    )
    assert plain.message == "image too big" and getattr(plain, "retry_after_ms", None) is None
