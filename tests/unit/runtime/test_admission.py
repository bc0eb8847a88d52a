"""Admission's decisions on their own: the bound, expired deadlines, the retry hint."""

from __future__ import annotations

import pytest

from kinship.runtime import errors, grpc_errors
from kinship.runtime.admission import Admission, Overloaded


def test_admits_up_to_the_bound_then_refuses_until_a_slot_frees() -> None:
    admission = Admission("embedder", 2)
    admission.enter(None)
    admission.enter(5.0)
    with pytest.raises(Overloaded) as caught:
        admission.enter(5.0)
    assert caught.value.status_name == "RESOURCE_EXHAUSTED"
    assert caught.value.reason == "OVERLOADED"
    admission.leave(0.1)
    admission.enter(5.0)
    assert (admission.admitted, admission.refused, admission.in_flight) == (3, 1, 2)


def test_a_call_whose_deadline_passed_is_dropped_before_work_even_with_free_slots() -> None:
    admission = Admission("indexer", 4)
    with pytest.raises(errors.DeadlineExceeded, match="dropped before any work"):
        admission.enter(-0.001)
    assert admission.in_flight == 0 and admission.expired == 1


def test_the_retry_hint_follows_the_recent_call_time_within_bounds() -> None:
    admission = Admission("ranker", 1, min_retry_ms=10, max_retry_ms=5000)
    assert admission.retry_after_ms == 10  # nothing measured yet: the floor
    for _ in range(200):
        admission.enter(None)
        admission.leave(0.200)
    assert 190 <= admission.retry_after_ms <= 200
    for _ in range(400):
        admission.enter(None)
        admission.leave(60.0)
    assert admission.retry_after_ms == 5000


def test_the_refusal_carries_retry_info_in_its_status() -> None:
    from google.rpc import error_details_pb2

    status = grpc_errors.to_rpc_status(Overloaded("full", retry_after_ms=250))
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 250
    # Other errors carry no retry hint.
    plain = grpc_errors.to_rpc_status(errors.InvalidArgument("bad", field="image"))
    assert not [d for d in plain.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]


def test_thousands_of_field_violations_fit_the_callers_metadata_limit() -> None:
    from google.rpc import error_details_pb2

    many = [errors.FieldViolation(f"records[{i}].record_id", "repeats an id of another record") for i in range(1000)]
    status = grpc_errors.to_rpc_status(errors.InvalidArgument("invalid request", violations=many))
    assert status.ByteSize() < 16 * 1024  # grpc's default limit on a caller's received metadata
    bad = error_details_pb2.BadRequest()
    [packed] = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    packed.Unpack(bad)
    assert bad.field_violations[0].field == "records[0].record_id"
    assert bad.field_violations[-1].description.startswith("and ")
    listed = len(bad.field_violations) - 1
    assert bad.field_violations[-1].description == f"and {1000 - listed} more problems of the same request, not listed"
