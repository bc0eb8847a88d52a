from __future__ import annotations

import io
import json
import threading

from kinship.audit import trail
from kinship.cli.main import main
from kinship.security.gates import collect_ids
from kinship.v1 import indexer_pb2, ranker_pb2


def _event(n: int, **extra) -> dict:
    return {
        "time": f"2026-11-27T10:00:0{n}.000Z",
        "caller": f"c{n % 2}",
        "case_id": f"case-{n}",
        "person_ids": [f"p{n}"],
        "rpc": "/kinship.v1.Indexer/Search",
        "outcome": "OK",
        **extra,
    }


def _write(path, count=5) -> None:
    sink = trail.FileSink(path)
    for n in range(count):
        sink.append(_event(n))


def test_file_sink_chains_every_event_and_verify_passes(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    _write(path)
    events = list(trail.read_events(path))
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev"] == trail.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(events, events[1:], strict=False))
    result = trail.verify(path)
    assert result.ok and result.events == 5 and result.head == events[-1]["hash"]


def test_a_reopened_file_continues_the_chain(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    _write(path, 2)
    trail.FileSink(path).append(_event(9))
    assert trail.verify(path).ok and trail.verify(path).events == 3


def test_concurrent_writers_keep_one_chain(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    sinks = [trail.FileSink(path) for _ in range(4)]  # as several processes would, each with its own handle
    threads = [threading.Thread(target=lambda s=s: [s.append(_event(1)) for _ in range(10)]) for s in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trail.verify(path).ok and trail.verify(path).events == 40


def test_a_sink_that_keeps_its_file_open_follows_other_writers_and_a_rotated_file(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    mine, other = trail.FileSink(path), trail.FileSink(path)
    mine.append(_event(1))
    other.append(_event(2))  # appended behind `mine`'s back: its remembered head is stale now
    mine.append(_event(3))
    assert [e["seq"] for e in trail.read_events(path)] == [1, 2, 3] and trail.verify(path).ok
    path.rename(tmp_path / "a.1.jsonl")  # rotated away: the sink must not go on writing into the old file
    mine.append(_event(4))
    assert [e["seq"] for e in trail.read_events(path)] == [1] and trail.verify(path).ok
    assert trail.verify(tmp_path / "a.1.jsonl").events == 3
    mine.close()
    other.close()


def test_any_change_removal_or_reordering_is_found_and_located(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    _write(path)
    lines = path.read_text().splitlines()
    changed = json.loads(lines[2])
    changed["person_ids"] = ["someone-else"]
    cases = {
        "changed": ([*lines[:2], json.dumps(changed), *lines[3:]], 3, "changed"),
        "removed": ([*lines[:2], *lines[3:]], 3, "removed"),
        "reordered": ([lines[0], lines[2], lines[1], *lines[3:]], 2, "removed"),
        "garbage": ([*lines[:4], "not json"], 5, "not an audit event"),
    }
    for name, (content, line, words) in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text("\n".join(content) + "\n")
        result = trail.verify(bad)
        assert not result.ok and result.line == line and words in result.problem, (name, result)
    head = trail.verify(path).head
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")
    assert not trail.verify(cut, expect_head=head).ok


def test_stream_sink_writes_a_chain_of_json_lines() -> None:
    out = io.StringIO()
    sink = trail.StreamSink(out)
    sink.append(_event(1))
    sink.append(_event(2))
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert second["prev"] == first["hash"] == trail.event_hash(first)


def test_query_filters_by_caller_case_person_and_time(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    _write(path)
    events = list(trail.read_events(path))
    assert [e["seq"] for e in trail.query(events, caller="c1")] == [2, 4]
    assert [e["seq"] for e in trail.query(events, case_id="case-3")] == [4]
    assert [e["seq"] for e in trail.query(events, person_id="p0")] == [1]
    assert [e["seq"] for e in trail.query(events, since="2026-11-27T10:00:02Z", until="2026-11-27T10:00:03Z")] == [3, 4]


def test_cli_verify_and_query(tmp_path, capsys) -> None:
    path = tmp_path / "a.jsonl"
    _write(path)
    assert main(["audit", "verify", str(path)]) == 0
    assert "OK, 5 events" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    assert main(["audit", "verify", str(path)]) == 1
    assert "BROKEN at line 2" in capsys.readouterr().err
    assert main(["audit", "query", str(path), "--case-id", "case-4", "--json"]) == 0
    assert [json.loads(x)["case_id"] for x in capsys.readouterr().out.splitlines()] == ["case-4"]
    assert main(["audit", "query", str(path), "--since", "yesterday"]) == 2


def test_cli_certs_init_issue_and_token(tmp_path, capsys) -> None:
    assert main(["certs", "init", str(tmp_path), "--name", "ranker.svc"]) == 0
    assert main(["certs", "issue", str(tmp_path), "alice", "--role", "searcher", "--tenant", "agency-a"]) == 0
    assert (tmp_path / "alice.crt").exists() and (tmp_path / "alice.key").exists()
    assert main(["certs", "init", str(tmp_path)]) == 2  # an existing CA is not replaced silently
    capsys.readouterr()
    assert main(["certs", "token", str(tmp_path), "tina", "--role", "auditor"]) == 0
    assert capsys.readouterr().out.count(".") == 2  # header.claims.signature


def test_ids_are_collected_from_nested_messages_without_walking_vectors() -> None:
    reply = ranker_pb2.FindRelativesResponse(
        candidates=[ranker_pb2.Candidate(person_id="p1"), ranker_pb2.Candidate(person_id="p2")]
    )
    assert collect_ids(reply)["person_ids"] == ["p1", "p2"]
    upsert = indexer_pb2.UpsertRequest(
        records=[indexer_pb2.GalleryRecord(record_id="r1", person_id="p1", embedding=[0.1] * 512)]
    )
    assert collect_ids(upsert) == {"person_ids": ["p1"], "record_ids": ["r1"]}
    delete = indexer_pb2.DeleteRequest(person_ids=["p3"], record_ids=["r9"])
    assert collect_ids(delete) == {"person_ids": ["p3"], "record_ids": ["r9"]}


def test_ids_are_listed_once_each_in_order_also_across_the_messages_of_a_stream() -> None:
    hits = [
        indexer_pb2.SearchHit(record_id=f"r{i}", person_id=f"p{i // 2}", attributes={"region": "IT-MI"})
        for i in range(4)
    ]
    reply = indexer_pb2.SearchResponse(results=[indexer_pb2.QueryResult(hits=hits), indexer_pb2.QueryResult(hits=hits)])
    assert collect_ids(reply) == {"person_ids": ["p0", "p1"], "record_ids": ["r0", "r1", "r2", "r3"]}
    streamed = collect_ids(indexer_pb2.DeleteRequest(person_ids=["p1", "p2"]))
    collect_ids(indexer_pb2.DeleteRequest(person_ids=["p2", "p3"], record_ids=["r1"]), streamed)
    assert streamed == {"person_ids": ["p1", "p2", "p3"], "record_ids": ["r1"]}
    # Ten thousand records, the most one Upsert holds: every id kept, in the order sent.
    upsert = indexer_pb2.UpsertRequest(
        records=[indexer_pb2.GalleryRecord(record_id=f"r{i}", person_id=f"p{i}") for i in range(10_000)]
    )
    ids = collect_ids(upsert)
    assert ids["record_ids"] == [f"r{i}" for i in range(10_000)]
    assert ids["person_ids"] == [f"p{i}" for i in range(10_000)]


def test_a_streamed_request_is_let_go_once_it_has_passed_the_gate() -> None:
    # A bulk enrolment streams a million rows (2 GB at 512-d): the gate once kept every message
    # for the audit event, and the indexer's memory grew by the whole load until the stream ended.
    import asyncio
    import gc
    import weakref

    from kinship.security.gates import CallState, _checked_stream

    class Message:  # weakly referable, unlike protobuf's messages
        pass

    pending = [Message() for _ in range(3)]
    refs = [weakref.ref(m) for m in pending]
    call = CallState(method="/kinship.v1.Indexer/BulkEnrol", metadata={}, peer="ipv4:127.0.0.1:1")

    async def source():
        while pending:
            yield pending.pop(0)

    async def drain() -> int:
        count = 0
        async for _ in _checked_stream(source(), call):
            count += 1
        return count

    assert asyncio.run(drain()) == 3
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert call.streamed_ids == {"person_ids": [], "record_ids": []}


def test_a_streamed_change_is_audited_by_the_ids_it_names() -> None:
    import asyncio

    from kinship.security.gates import CallState, _checked_stream
    from kinship.v1 import indexer_pb2

    call = CallState(method="/kinship.v1.Indexer/Upsert", metadata={}, peer="ipv4:127.0.0.1:1")
    messages = [
        indexer_pb2.UpsertRequest(records=[indexer_pb2.GalleryRecord(record_id=f"r{i}", person_id=f"p{i}")])
        for i in range(2)
    ]

    async def source():
        for message in messages:
            yield message

    async def drain() -> None:
        async for _ in _checked_stream(source(), call):
            pass

    asyncio.run(drain())
    assert call.streamed_ids == {"person_ids": ["p0", "p1"], "record_ids": ["r0", "r1"]}


def test_concurrent_events_share_an_fsync_and_keep_one_unbroken_chain(tmp_path, monkeypatch) -> None:
    # One fsync per event capped every audited call at one per fsync: an indexer auditing
    # each Search answered 4 callers at a third of what Milvus could take.
    import asyncio
    import os

    syncs = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "indexer.audit.jsonl"
    audit = trail.AuditTrail([trail.FileSink(path)])

    async def burst() -> None:
        await asyncio.gather(*(audit.record({"rpc": "/kinship.v1.Indexer/Search", "n": n}) for n in range(50)))

    asyncio.run(burst())
    result = trail.verify(path)
    assert result.ok and result.events == 50
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["n"] for e in lines] == list(range(50))  # recorded order is chain order
    assert len(syncs) <= 3  # the first event alone (plus its new file's directory), the other 49 together


def test_a_failed_group_write_fails_every_caller_in_it_and_the_trail_keeps_working(tmp_path) -> None:
    import asyncio

    import pytest

    class Failing:
        fail = True

        def append_many(self, events):
            if self.fail:
                raise OSError("disk full")
            return list(events)

    sink = Failing()
    audit = trail.AuditTrail([sink])

    async def attempt() -> list:
        return await asyncio.gather(*(audit.record({"n": n}) for n in range(3)), return_exceptions=True)

    outcomes = asyncio.run(attempt())
    assert all(isinstance(o, OSError) for o in outcomes)
    sink.fail = False
    assert asyncio.run(attempt()) == [None, None, None]
    with pytest.raises(OSError):
        sink.fail = True
        asyncio.run(audit.record({"n": 9}))


def test_the_writer_thread_ends_when_idle_and_the_next_event_starts_another(tmp_path, monkeypatch) -> None:
    import asyncio
    import threading
    import time

    monkeypatch.setattr(trail, "_WRITER_IDLE_S", 0.05)
    path = tmp_path / "indexer.audit.jsonl"
    audit = trail.AuditTrail([trail.FileSink(path)])

    def writers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "audit-writer"]

    asyncio.run(audit.record({"n": 1}))
    deadline = time.monotonic() + 5
    while writers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writers() == []  # idle: no thread left behind
    asyncio.run(audit.record({"n": 2}))  # another loop, a new writer
    result = trail.verify(path)
    assert result.ok and result.events == 2


def _bulk_enrolment_event(outcome: str, responses: list) -> dict:
    """The audit event of a BulkEnrol stream of two batches (r0..r2, then r3 and a repeated r1)."""
    import asyncio

    from kinship.security.gates import Audit, CallState, _checked_stream

    call = CallState(method="/kinship.v1.Indexer/BulkEnrol", metadata={}, peer="ipv4:127.0.0.1:1")
    batches = [
        indexer_pb2.BulkEnrolRequest(records=[indexer_pb2.GalleryRecord(record_id=r, person_id=f"p-{r}") for r in ids])
        for ids in (["r0", "r1", "r2"], ["r3", "r1"])
    ]
    out = io.StringIO()

    async def scenario() -> None:
        async def source():
            for batch in batches:
                yield batch

        async for _ in _checked_stream(source(), call):
            pass
        await Audit(trail.AuditTrail([trail.StreamSink(out)]), "indexer").record(call, None, responses, outcome)

    asyncio.run(scenario())
    return json.loads(out.getvalue())


def test_a_bulk_enrolment_is_audited_by_the_ids_it_named_with_each_refused_record_and_the_count_stored() -> None:
    # Its event once listed only the refused records' ids, as if they were the records it stored.
    responses = [
        indexer_pb2.BulkEnrolResponse(
            received_total=3,
            enrolled_total=2,
            failed_total=1,
            failures=[indexer_pb2.EnrolFailure(record_id="r2", index=2, reason="not L2-normalised")],
        ),
        indexer_pb2.BulkEnrolResponse(
            received_total=5,
            enrolled_total=3,
            failed_total=2,
            failures=[indexer_pb2.EnrolFailure(record_id="r1", index=4, reason="repeats record 1")],
        ),
        indexer_pb2.BulkEnrolResponse(received_total=5, enrolled_total=3, failed_total=2, done=True),
    ]
    event = _bulk_enrolment_event("OK", responses)
    assert event["record_ids"] == ["r0", "r1", "r2", "r3"]
    assert event["person_ids"] == ["p-r0", "p-r1", "p-r2", "p-r3"]
    assert event["enrolled_count"] == 3
    assert event["refused_records"] == [{"index": 2, "record_id": "r2"}, {"index": 4, "record_id": "r1"}]


def test_a_bulk_enrolment_that_failed_after_storing_batches_still_names_what_it_changed() -> None:
    stored_first = [indexer_pb2.BulkEnrolResponse(received_total=3, enrolled_total=3)]
    event = _bulk_enrolment_event("UNAVAILABLE", stored_first)
    assert event["outcome"] == "UNAVAILABLE"
    assert event["enrolled_count"] == 3
    assert event["record_ids"] == ["r0", "r1", "r2", "r3"]  # named; the count says how many were stored
    nothing_stored = _bulk_enrolment_event("UNAVAILABLE", [])
    assert (nothing_stored["enrolled_count"], nothing_stored["record_ids"]) == (0, [])


def test_calls_refused_at_capacity_are_audited_as_one_event_per_rpc_per_interval() -> None:
    import asyncio

    from kinship.security.gates import Audit, ShedAudit

    out = io.StringIO()

    async def scenario() -> None:
        shed = ShedAudit(Audit(trail.AuditTrail([trail.StreamSink(out)]), "indexer"), interval=0.05)
        for n in range(5):
            shed.note("/kinship.v1.Indexer/Search", f"ipv4:10.0.0.{n % 2}:1", "OVERLOADED")
        for peer in [f"ipv4:10.0.1.{n}:1" for n in range(12)]:
            shed.note("/kinship.v1.Indexer/Upsert", peer, "OVERLOADED")
        assert out.getvalue() == ""  # nobody waits for the event: it comes after the interval
        await asyncio.sleep(0.2)
        shed.note("/kinship.v1.Indexer/Search", "ipv4:10.0.0.9:1", "OVERLOADED")
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["rpc"], e["refused_count"]) for e in events] == [
        ("/kinship.v1.Indexer/Search", 5),
        ("/kinship.v1.Indexer/Upsert", 12),
        ("/kinship.v1.Indexer/Search", 1),
    ]
    first = events[0]
    assert first["outcome"] == "RESOURCE_EXHAUSTED" and first["reason"] == "OVERLOADED"
    assert first["refused_by"] == "admission control" and first["caller"] == ""
    assert first["peers"] == ["ipv4:10.0.0.0:1", "ipv4:10.0.0.1:1"]
    assert first["refused_from"] <= first["refused_until"]
    assert len(events[1]["peers"]) == ShedAudit.MAX_PEERS
    assert [e["seq"] for e in events] == [1, 2, 3]  # in the one hash chain


def test_an_event_that_fits_a_line_is_written_as_it_is() -> None:
    search = _event(1, person_ids=[f"p{n}" for n in range(20)], record_ids=[f"r{n}" for n in range(20)])
    assert trail.in_parts(search) == [search]
    # Near the bound the size is measured, not guessed: a non-ASCII id that still fits stays whole.
    near = _event(1, person_ids=["é" * 100] * 20)
    assert trail.in_parts(near) == [near]


def test_a_long_event_is_written_in_parts_each_a_line_a_container_runtime_keeps_whole() -> None:
    import asyncio

    # A 3,000-record enrolment: its ids make a line of about 100 KB, which a container
    # runtime's log driver would cut at 16 KiB.
    people = [f"person-{n:06d}-of-a-long-enrolment" for n in range(3000)]
    records = [f"record-{n:06d}-of-a-long-enrolment" for n in range(3000)]
    refused = [{"index": n, "record_id": records[n]} for n in range(0, 3000, 7)]
    event = _event(
        1, rpc="/kinship.v1.Indexer/BulkEnrol", person_ids=people, record_ids=records, refused_records=refused
    )
    stream = io.StringIO()
    audit = trail.AuditTrail([trail.StreamSink(stream)])
    asyncio.run(audit.record(event))
    lines = stream.getvalue().splitlines()
    assert len(lines) > 10 and all(len(line.encode()) <= trail.MAX_LINE_BYTES for line in lines)
    parts = [json.loads(line) for line in lines]
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1)) and {p["parts"] for p in parts} == {len(parts)}
    # Together they list every id once, in order; every other field is the event's own.
    assert [i for p in parts for i in p["person_ids"]] == people
    assert [i for p in parts for i in p["record_ids"]] == records
    assert [r for p in parts for r in p["refused_records"]] == refused
    listed = set(trail._LISTED) | {"part", "parts", "seq", "prev", "hash", "stream"}
    assert all(
        {k: v for k, v in p.items() if k not in listed} == {k: v for k, v in event.items() if k not in listed}
        for p in parts
    )
    # Consecutive in one chain, and a query for a person finds the part that lists them.
    assert [p["seq"] for p in parts] == list(range(1, len(parts) + 1))
    (found,) = trail.query(parts, person_id=people[2500])
    assert people[2500] in found["person_ids"]


def test_the_parts_of_a_long_event_are_written_together_and_the_file_verifies(tmp_path) -> None:
    import asyncio

    path = tmp_path / "indexer.audit.jsonl"
    audit = trail.AuditTrail([trail.FileSink(path)])
    big = _event(1, record_ids=[f"r{n:05d}" for n in range(5000)])

    async def together() -> None:
        await asyncio.gather(audit.record(_event(0)), audit.record(big), audit.record(_event(2)))

    asyncio.run(together())
    assert trail.verify(path).ok
    events = list(trail.read_events(path))
    numbers = [e.get("part") for e in events]
    first = numbers.index(1)
    assert numbers[first : first + events[first]["parts"]] == list(range(1, events[first]["parts"] + 1))
    assert sum(len(e["record_ids"]) for e in events if "part" in e) == 5000
