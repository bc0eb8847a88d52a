"""Signed checkpoints: each tampering a hash chain alone cannot show, and a forger without the private key."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kinship.audit import checkpoints, trail
from kinship.cli.main import main
from kinship.runtime import config
from kinship.security.gates import audit_sinks
from kinship.security.settings import server_settings


def _event(n: int) -> dict:
    return {
        "time": f"2026-11-27T10:00:{n:02d}.000Z",
        "caller": f"c{n % 3}",
        "case_id": f"case-{n}",
        "person_ids": [f"p{n}"],
        "rpc": "/kinship.v1.Indexer/Search",
        "outcome": "OK",
    }


@pytest.fixture
def keys(tmp_path) -> SimpleNamespace:
    private, public = checkpoints.keygen(tmp_path / "keys")
    return SimpleNamespace(private=private, public=public, key=checkpoints.load_private_key(private))


def _keyed_log(tmp_path: Path, key, count: int = 10, every: int = 3, start: int = 0) -> Path:
    """COUNT events with a checkpoint every EVERY of them, and one at the end."""
    log = tmp_path / "indexer.audit.jsonl"
    checkpointer = checkpoints.Checkpointer(
        key,
        log_name=log.name,
        sink=checkpoints.CheckpointFile(checkpoints.checkpoint_path(log)),
        every_events=every,
        every_seconds=3600,
    )
    sink = trail.FileSink(log, checkpointer)
    for n in range(start, start + count):
        sink.append(_event(n))
    sink.checkpoint()
    sink.close()
    return log


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _rehash(lines: list[dict]) -> list[dict]:
    """The chain recomputed from the first line on, as someone who can write the file would."""
    prev, out = trail.GENESIS, []
    for seq, line in enumerate(lines, start=1):
        body = {k: v for k, v in line.items() if k not in ("seq", "prev", "hash")}
        linked = trail.chain(body, seq, prev)
        prev = linked["hash"]
        out.append(linked)
    return out


def _save(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _verify(log: Path, keys, checkpoint_file: Path | None = None) -> checkpoints.AnchoredResult:
    return checkpoints.verify_anchored(log, [checkpoints.load_public_key(keys.public)], checkpoint_file)


def _events_index(lines: list[dict], n: int) -> int:
    """The index of the line of event N (0-based, checkpoint lines skipped)."""
    return [i for i, line in enumerate(lines) if "checkpoint" not in line][n]


# Writing ------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_replace_it(tmp_path) -> None:
    private, public = checkpoints.keygen(tmp_path / "k")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    key = checkpoints.load_private_key(private)
    assert checkpoints.key_id(key.public_key()) == checkpoints.key_id(checkpoints.load_public_key(public))
    with pytest.raises(FileExistsError):
        checkpoints.keygen(tmp_path / "k")
    with pytest.raises(checkpoints.AuditKeyError, match="public key"):
        checkpoints.load_private_key(public)


def test_a_keyed_sink_checkpoints_every_n_events_in_the_log_and_in_the_checkpoint_file(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key, count=10, every=3)
    lines = _lines(log)
    marks = [line for line in lines if "checkpoint" in line]
    # After events 3, 6, 9 and the one asked for at the end: one signature per checkpoint, not per event.
    assert len(marks) == 4 and len(lines) == 14
    assert [m["checkpoint"]["seq"] for m in marks] == [3, 7, 11, 13]
    external = [json.loads(x) for x in checkpoints.checkpoint_path(log).read_text().splitlines()]
    assert external == [m["checkpoint"] for m in marks]
    assert all(m["checkpoint"]["first"] == lines[0]["hash"] for m in marks)
    assert keys.private.read_bytes().decode() not in log.read_text()  # the key is never in the log
    # The chain holds as before (an old verifier checks the checkpoint lines' hashes too).
    plain = trail.verify(log)
    assert plain.ok and plain.events == 10 and plain.checkpoints == 4
    result = _verify(log, keys)
    assert result.ok, result
    assert (result.checkpoints, result.anchors, result.anchored_seq, result.unanchored) == (4, 4, 13, 0)
    # Queries and readers see the calls only.
    assert len(list(trail.read_events(log))) == 10
    assert len(list(trail.query(trail.read_events(log, checkpoints=True)))) == 10


def test_events_after_the_last_checkpoint_are_counted_as_not_covered(tmp_path, keys) -> None:
    log = tmp_path / "a.jsonl"
    sink = trail.FileSink(log, checkpoints.Checkpointer(keys.key, log_name=log.name, every_events=4))
    for n in range(6):
        sink.append(_event(n))
    empty = tmp_path / "a.checkpoints.jsonl"  # the checkpoint file before its first checkpoint
    empty.touch()
    result = checkpoints.verify_anchored(log, [keys.key.public_key()], empty)
    assert result.ok and result.anchored_seq == 4 and result.unanchored == 2
    assert any("2 events after seq 4" in w for w in result.warnings)


def test_a_checkpoint_follows_within_the_interval_without_another_event(tmp_path, keys) -> None:
    """The trail's writer wakes for a checkpoint that is due by time: the tail is not left uncovered."""
    log = tmp_path / "ranker.audit.jsonl"
    checkpointer = checkpoints.Checkpointer(
        keys.key,
        log_name=log.name,
        sink=checkpoints.CheckpointFile(checkpoints.checkpoint_path(log)),
        every_events=1000,
        every_seconds=0.2,
    )
    audit = trail.AuditTrail([trail.FileSink(log, checkpointer)])

    async def two() -> None:
        await audit.record(_event(1))
        await audit.record(_event(2))

    asyncio.run(two())
    assert not any("checkpoint" in line for line in _lines(log))
    deadline = time.monotonic() + 10
    while not any("checkpoint" in line for line in _lines(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = _verify(log, keys)
    assert result.ok and result.anchored_seq == 2 and result.unanchored == 0, result


def test_a_stream_sink_writes_checkpoints_into_its_own_chain(tmp_path, keys) -> None:
    out = io.StringIO()
    external = tmp_path / "ranker.stdout.checkpoints.jsonl"
    checkpointer = checkpoints.Checkpointer(
        keys.key, log_name="stdout:ranker", sink=checkpoints.CheckpointFile(external), every_events=2
    )
    sink = trail.StreamSink(out, checkpointer)
    for n in range(4):
        sink.append(_event(n))
    copy = tmp_path / "collected.jsonl"
    copy.write_text(out.getvalue())  # the log pipeline's lines of this one process
    lines = _lines(copy)
    assert all(line["stream"] == "audit" for line in lines) and sum("checkpoint" in x for x in lines) == 2
    assert _verify(copy, keys, external).ok
    # A copy kept in write-once storage serves as the checkpoint file: a cut-off end of the other is found.
    kept = tmp_path / "worm-copy.jsonl"
    kept.write_text(out.getvalue())
    assert _verify(copy, keys, kept).ok
    cut = _save(tmp_path / "cut.jsonl", lines[:-2])  # the last event and the checkpoint after it
    result = _verify(cut, keys, kept)
    assert not result.ok and "the end was cut off" in result.problem


# Tampering ----------------------------------------------------------------------


def test_an_edited_event_with_the_chain_rehashed_is_found(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    lines[_events_index(lines, 4)]["caller"] = "someone-else"
    edited = _save(tmp_path / "edited.jsonl", _rehash(lines))
    assert trail.verify(edited).ok  # what an unkeyed verification cannot see
    result = _verify(edited, keys, checkpoints.checkpoint_path(log))
    assert not result.ok
    assert "was changed" in result.problem and "after seq 3" in result.problem, result
    assert result.line == 7  # seq 7, the next that the checkpoint file names
    # The CLI says the same, exit 1.
    assert main(["audit", "verify", str(edited)]) == 0
    code = main(
        [
            "audit",
            "verify",
            str(edited),
            "--key",
            str(keys.public),
            "--checkpoints",
            str(checkpoints.checkpoint_path(log)),
        ]
    )
    assert code == 1


def test_an_edited_event_whose_in_log_checkpoints_were_dropped_is_found_against_the_checkpoint_file(
    tmp_path, keys
) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = [line for line in _lines(log) if "checkpoint" not in line]
    lines[7]["outcome"] = "PERMISSION_DENIED"
    edited = _save(tmp_path / "edited.jsonl", _rehash(lines))
    result = _verify(edited, keys, checkpoints.checkpoint_path(log))
    assert not result.ok and "names" in result.problem and "re-hashed" in result.problem, result


def test_a_deleted_event_is_found_with_or_without_the_chain_rehashed(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    del lines[_events_index(lines, 1)]
    cut = _save(tmp_path / "cut.jsonl", lines)
    plain = _verify(cut, keys, checkpoints.checkpoint_path(log))
    assert not plain.ok and "removed" in plain.problem
    rehashed = _save(tmp_path / "rehashed.jsonl", _rehash(lines))
    assert trail.verify(rehashed).ok
    result = _verify(rehashed, keys, checkpoints.checkpoint_path(log))
    assert not result.ok
    assert "covers 3 events but follows seq 2: 1 event was removed before it" in result.problem, result


def test_reordered_events_with_the_chain_rehashed_are_found(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    a, b = _events_index(lines, 3), _events_index(lines, 4)
    lines[a], lines[b] = lines[b], lines[a]
    swapped = _save(tmp_path / "swapped.jsonl", _rehash(lines))
    assert trail.verify(swapped).ok
    result = _verify(swapped, keys, checkpoints.checkpoint_path(log))
    assert not result.ok and "reordered" in result.problem and "after seq 3" in result.problem, result


def test_a_truncated_tail_is_found_against_the_checkpoint_file(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    # The last checkpoint line and the events before it back to the previous checkpoint: a clean chain.
    cut = _save(tmp_path / "cut.jsonl", lines[:-3])
    assert trail.verify(cut).ok
    result = _verify(cut, keys, checkpoints.checkpoint_path(log))
    assert not result.ok and "the end was cut off" in result.problem and "ends at seq 11" in result.problem, result
    emptied = _save(tmp_path / "emptied.jsonl", [])
    assert not _verify(emptied, keys, checkpoints.checkpoint_path(log)).ok


def test_a_log_needs_its_checkpoint_file_and_not_another_logs(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    missing = _verify(log, keys, tmp_path / "nowhere.jsonl")
    assert not missing.ok and "no checkpoint file" in missing.problem
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = _keyed_log(other_dir, keys.key, count=4, start=30)
    swapped = _verify(log, keys, checkpoints.checkpoint_path(other))
    assert not swapped.ok and "none of the" in swapped.problem


def test_a_changed_first_event_is_found(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    lines[0]["caller"] = "nobody"
    edited = _save(tmp_path / "edited.jsonl", _rehash(lines))
    result = _verify(edited, keys, checkpoints.checkpoint_path(log))
    assert not result.ok and "another first event" in result.problem


# Forgery ------------------------------------------------------------------------


def _forge(lines: list[dict], key: Ed25519PrivateKey, external: Path) -> list[dict]:
    """Re-signs every checkpoint after a re-hash with KEY, in the log and in the checkpoint file."""
    lines = _rehash([line for line in lines if "checkpoint" not in line])
    forged, statements = [], []
    for line in lines:
        forged.append(line)
        if line["seq"] % 3 == 0:
            forged.append({"time": line["time"], "checkpoint": {}})
    forged = _rehash(forged)
    first = forged[0]["hash"]
    for i, line in enumerate(forged):
        if "checkpoint" in line:
            before = forged[i - 1]
            statement = checkpoints.sign(
                key, log_name="indexer.audit.jsonl", first=first, seq=before["seq"], head=before["hash"], at=0
            )
            line["checkpoint"] = statement
            statements.append(statement)
            forged[i:] = _rehash(forged)[i:]
    external.write_text("".join(json.dumps(s) + "\n" for s in statements))
    return forged


def test_without_the_private_key_a_forged_checkpoint_is_refused(tmp_path, keys) -> None:
    log = _keyed_log(tmp_path, keys.key)
    lines = _lines(log)
    lines[_events_index(lines, 4)]["caller"] = "someone-else"
    # The forger's own key: everything is consistent, and nothing verifies with the real public key.
    forger = Ed25519PrivateKey.generate()
    external = tmp_path / "forged.checkpoints.jsonl"
    forged = _save(tmp_path / "forged.jsonl", _forge(lines, forger, external))
    assert checkpoints.verify_anchored(forged, [forger.public_key()], external).ok  # self-consistent forgery
    result = _verify(forged, keys, external)
    assert not result.ok and "not by the key given" in result.problem, result
    # A statement altered under the real key's id: its signature fails.
    original = [json.loads(x) for x in checkpoints.checkpoint_path(log).read_text().splitlines()]
    original[-1]["seq"] += 1
    altered = tmp_path / "altered.checkpoints.jsonl"
    altered.write_text("".join(json.dumps(s) + "\n" for s in original))
    result = _verify(log, keys, altered)
    assert not result.ok and "line 4" in result.problem and "does not verify" in result.problem, result
    # A checkpoint line in the log altered the same way, its chain re-hashed.
    lines = _lines(log)
    lines[3]["checkpoint"]["head"] = "0" * 64
    result = _verify(_save(tmp_path / "bad-line.jsonl", _rehash(lines)), keys, checkpoints.checkpoint_path(log))
    assert not result.ok and result.line == 4 and "does not verify" in result.problem, result


# The command line and the settings ----------------------------------------------


def test_cli_keygen_verify_with_the_key_and_an_old_trail_without(tmp_path, capsys) -> None:
    assert main(["audit", "keygen", str(tmp_path / "k")]) == 0
    assert main(["audit", "keygen", str(tmp_path / "k")]) == 2  # never replaced silently
    public = tmp_path / "k" / checkpoints.PUBLIC_KEY
    log = _keyed_log(tmp_path, checkpoints.load_private_key(tmp_path / "k" / checkpoints.PRIVATE_KEY))
    capsys.readouterr()
    assert main(["audit", "verify", str(log), "--key", str(public), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["anchored"] and report["anchors"] == 4 and report["unanchored"] == 0
    # An old, unkeyed trail verifies as before, with a warning that nothing anchors it.
    old = tmp_path / "old.jsonl"
    plain = trail.FileSink(old)
    for n in range(3):
        plain.append(_event(n))
    assert main(["audit", "verify", str(old)]) == 0
    captured = capsys.readouterr()
    assert "OK, 3 events" in captured.out and "unanchored" in captured.err
    assert main(["audit", "verify", str(old), "--key", str(public)]) == 1
    assert "no checkpoint file" in capsys.readouterr().err
    assert main(["audit", "verify", str(log), "--key", str(tmp_path / "missing.pub")]) == 2


def test_settings_turn_checkpoints_on_from_the_key_file(tmp_path, keys) -> None:
    values = {"audit_log": str(tmp_path / "ranker.audit.jsonl"), "audit_sink": "both"}
    settings = config.resolve(
        server_settings("ranker", 0),
        values,
        env={"KINSHIP_AUDIT_KEY_FILE": str(keys.private), "KINSHIP_AUDIT_CHECKPOINT_EVENTS": "5"},
    )
    file_sink, stream_sink = audit_sinks("ranker", settings)
    assert file_sink.checkpointer.every_events == 5 and file_sink.checkpointer.log_name == "ranker.audit.jsonl"
    assert file_sink.checkpointer.sink.path == tmp_path / "checkpoints" / "ranker.audit.checkpoints.jsonl"
    assert stream_sink.checkpointer is not None and stream_sink.checkpointer.sink is None
    plain = config.resolve(server_settings("ranker", 0), values, env={})
    assert all(sink.checkpointer is None for sink in audit_sinks("ranker", plain))
    with pytest.raises(config.ConfigError, match="public key"):
        config.resolve(server_settings("ranker", 0), {**values, "audit_key_file": str(keys.public)}, env={})


def test_a_process_that_exits_normally_leaves_its_last_events_covered(tmp_path, keys) -> None:
    log = tmp_path / "indexer.audit.jsonl"
    script = f"""
import asyncio
from pathlib import Path
from kinship.audit import checkpoints, trail
log = Path({str(log)!r})
key = checkpoints.load_private_key(Path({str(keys.private)!r}))
checkpointer = checkpoints.Checkpointer(
    key, log_name=log.name, sink=checkpoints.CheckpointFile(checkpoints.checkpoint_path(log)), every_seconds=3600
)
audit = trail.AuditTrail([trail.FileSink(log, checkpointer)])
async def main():
    for n in range(3):
        await audit.record({{"time": trail.now_iso(), "rpc": "/x/Search", "outcome": "OK", "n": n}})
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert "checkpoint" in _lines(log)[-1]
    result = _verify(log, keys)
    assert result.ok and result.events == 3 and result.unanchored == 0, result
