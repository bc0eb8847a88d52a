"""Signed checkpoints: what anchors the hash chain to a key that the log's writer alone holds.

A hash chain shows an edit only to someone who did not recompute it: whoever can rewrite
the file can change an event and re-hash everything after it. A checkpoint is a statement
signed with an Ed25519 private key, "this log, whose first event hashes to F, held S
events ending in the hash H at time T", written

- into the log itself, as one more chained line (`{"checkpoint": {...}, "time", "seq",
  "prev", "hash"}`) every `every_events` events and whenever an event has waited
  `every_seconds` uncovered (also with no further event: the trail's writer thread wakes
  for it), and
- to a second sink outside the log's file (`CheckpointFile`: one JSON statement a line,
  appended and fsynced), which the deployment ships to write-once storage.

The verifier needs only the public key (`verify_anchored`). Without the private key nobody
can make a checkpoint that verifies, so a re-hashed chain contradicts the checkpoints after
the edit, a removed event shifts the count a checkpoint states, and a cut-off end is found
against the checkpoint sink's last statement. Events after the last checkpoint are covered
by no signature: at most `every_seconds` of them, and the verifier says how many.

The key is read from a file (`KINSHIP_AUDIT_KEY_FILE`, a Kubernetes Secret in a cluster)
and never written anywhere: a statement names the key only by its id (the first 16 hex
digits of the SHA-256 of the raw public key).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import trail

log = logging.getLogger(__name__)

#: Signed bytes start with this: a checkpoint signature can mean nothing else.
DOMAIN = b"kinship-search audit checkpoint v1\n"
VERSION = 1
PRIVATE_KEY = "audit-signing.key"
PUBLIC_KEY = "audit-signing.pub"
DEFAULT_EVERY_EVENTS = 1000
DEFAULT_EVERY_SECONDS = 60.0
#: A checkpoint that failed to be written is tried again after this long (not in a loop).
_RETRY_S = 1.0


class AuditKeyError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key (the message says which)."""


# Keys -----------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(folder: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Writes FOLDER/audit-signing.key (PKCS#8 PEM, 0600) and FOLDER/audit-signing.pub; refuses to replace them."""
    folder = Path(folder)
    private_path, public_path = folder / PRIVATE_KEY, folder / PUBLIC_KEY
    if not force and (private_path.exists() or public_path.exists()):
        raise FileExistsError(
            f"{private_path} or {public_path} exists: checkpoints already signed with it would no longer "
            "verify against a new key (--force replaces it; keep the old public key to verify old trails)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with contextlib.suppress(FileNotFoundError):
        private_path.unlink()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key {path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = " (that is the public key: the writer needs the private one)" if b"PUBLIC KEY" in data else ""
        raise AuditKeyError(f"{path} is not an unencrypted PEM private key{hint}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} is not an Ed25519 key (make one with `kinship audit keygen DIR`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key of a PEM file; a private key file gives its public half."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read the key {path}: {exc.strerror or exc}") from exc
    try:
        if b"PRIVATE KEY" in data:
            key: Any = serialization.load_pem_private_key(data, password=None).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path} is not a PEM key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path} is not an Ed25519 key (the audit keys come from `kinship audit keygen DIR`)")
    return key


# Statements -----------------------------------------------------------------------


def _signed_bytes(statement: dict[str, Any]) -> bytes:
    return DOMAIN + trail.canonical({k: v for k, v in statement.items() if k != "sig"})


def sign(key: Ed25519PrivateKey, *, log_name: str, first: str, seq: int, head: str, at: float) -> dict[str, Any]:
    statement = {
        "v": VERSION,
        "log": log_name,
        "first": first,
        "seq": seq,
        "head": head,
        "time": trail.now_iso(at),
        "key_id": key_id(key.public_key()),
    }
    statement["sig"] = base64.b64encode(key.sign(_signed_bytes(statement))).decode()
    return statement


def check_signature(statement: Any, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None where the statement is well formed and signed by one of `keys` (by id), else what is wrong."""
    if not isinstance(statement, dict):
        return "not a checkpoint statement"
    missing = [k for k in ("v", "first", "seq", "head", "time", "key_id", "sig") if k not in statement]
    if missing:
        return f"a checkpoint without {', '.join(missing)}"
    if statement["v"] != VERSION or not isinstance(statement["seq"], int):
        return f"a checkpoint of an unknown form (v {statement['v']!r})"
    public = keys.get(statement["key_id"])
    if public is None:
        ids = ", ".join(sorted(keys))
        return (
            f"a checkpoint signed by key {statement['key_id']!r}, not by the key given ({ids}): forged, or signed "
            "with another key (pass that key's public half too)"
        )
    try:
        signature = base64.b64decode(str(statement["sig"]), validate=True)
        public.verify(signature, _signed_bytes(statement))
    except (InvalidSignature, ValueError):
        return f"a checkpoint whose signature does not verify with key {statement['key_id']}: forged or altered"
    return None


# The second sink ------------------------------------------------------------------


def checkpoint_path(log_path: Path, folder: Path | None = None) -> Path:
    """Where the checkpoints of `log_path` go: FOLDER (default: LOG's folder/checkpoints)/NAME.checkpoints.jsonl."""
    log_path = Path(log_path)
    stem = log_path.name.removesuffix(".jsonl")
    return Path(folder if folder is not None else log_path.parent / "checkpoints") / f"{stem}.checkpoints.jsonl"


class CheckpointFile:
    """Appends one statement a line to a file of its own: open, flock, write, fsync, close.

    Opened per checkpoint (one every N events or T seconds) so that the file may live on a
    mount the deployment swaps or ships; several processes may share it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, statement: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, trail.canonical(statement) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def read_checkpoint_file(path: Path) -> list[tuple[int, Any]]:
    """(line number, statement) for each statement; a line that is not JSON is returned as None.

    The file may also be a copy of an audit log (a stream shipped to write-once storage):
    its checkpoint lines give their statements, and its events are passed over.
    """
    found: list[tuple[int, Any]] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                found.append((number, None))
                continue
            if isinstance(item, dict) and "hash" in item and "prev" in item:  # a line of a log
                if "checkpoint" in item:
                    found.append((number, item["checkpoint"]))
                continue
            found.append((number, item))
    return found


# The writer's side ----------------------------------------------------------------


class Checkpointer:
    """When a sink's next checkpoint is due, and the signed line it writes.

    One per sink (each sink has its own chain). Counts the events its sink wrote since its
    last checkpoint; a checkpoint is due at `every_events` of them, or once the oldest has
    waited `every_seconds`. A sink calls `line` under its lock and `written` after its
    fsync; the statement then goes to the second sink.
    """

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        log_name: str,
        sink: CheckpointFile | None = None,
        every_events: int = DEFAULT_EVERY_EVENTS,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        clock=time.monotonic,
    ):
        if every_events < 1 or every_seconds <= 0:
            raise ValueError("checkpoints need every_events >= 1 and every_seconds > 0")
        self._key = key
        self.key_id = key_id(key.public_key())
        self.log_name = log_name
        self.sink = sink
        self.every_events = every_events
        self.every_seconds = every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.uncovered = 0  # events this sink wrote since its last checkpoint
        self._oldest: float | None = None  # when the first of them was written
        self._retry_at = 0.0

    def count(self, events: int) -> None:
        """`events` more were chained (called under the sink's lock, before the write)."""
        with self._lock:
            if events and self._oldest is None:
                self._oldest = self._clock()
            self.uncovered += events

    def due(self) -> bool:
        with self._lock:
            if not self.uncovered or self._clock() < self._retry_at:
                return False
            return self.uncovered >= self.every_events or self._clock() - (self._oldest or 0.0) >= self.every_seconds

    def wait(self) -> float | None:
        """Seconds until a checkpoint is due by time alone; None while every event is covered."""
        with self._lock:
            if not self.uncovered or self._oldest is None:
                return None
            at = max(self._oldest + self.every_seconds, self._retry_at)
            return max(0.0, at - self._clock())

    def line(self, *, first: str, seq: int, head: str) -> dict[str, Any]:
        """The unchained log line of a checkpoint of `seq` events ending in `head`."""
        now = time.time()
        statement = sign(self._key, log_name=self.log_name, first=first, seq=seq, head=head, at=now)
        return {"time": statement["time"], "checkpoint": statement}

    def written(self, statement: dict[str, Any]) -> None:
        """The checkpoint line is durable in the log: count afresh, and send the statement to the second sink."""
        with self._lock:
            self.uncovered, self._oldest = 0, None
        if self.sink is None:
            return
        try:
            self.sink.append(statement)
        except OSError as exc:
            # The log holds the checkpoint; the next one supersedes this (the last names the count).
            log.error("audit checkpoint not written to %s: %s", self.sink.path, exc)

    def nothing_to_cover(self) -> None:
        """The log is empty (replaced under the writer): what was counted is in another file now."""
        with self._lock:
            self.uncovered, self._oldest = 0, None

    def failed(self) -> None:
        """Writing the checkpoint line failed: try again after a pause, not at once."""
        with self._lock:
            self._retry_at = self._clock() + _RETRY_S


# Verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class AnchoredResult:
    ok: bool
    events: int
    head: str
    problem: str | None = None
    line: int | None = None
    checkpoints: int = 0  #: signed checkpoint lines in the log that verified
    anchors: int = 0  #: statements of the checkpoint file that verified and match the log
    anchored_seq: int = 0  #: the chain position the last verified checkpoint covers
    unanchored: int = 0  #: events after it, covered by no signature
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _n(count: int) -> str:
    return "1 event was" if count == 1 else f"{count} events were"


def _short(digest: str) -> str:
    return f"{digest[:16]}..."


def verify_anchored(
    path: Path, public_keys: Sequence[Ed25519PublicKey], checkpoints: Path | None = None
) -> AnchoredResult:
    """The chain (as `trail.verify`), every checkpoint's signature, and the chain against every checkpoint.

    `checkpoints` is the checkpoint file (default `checkpoint_path(path)`); it must exist: the
    end of the log can be checked only against it. Stops at the first problem and says
    which: a forged checkpoint, events changed and re-hashed, events removed, a cut-off end.
    """
    keys = {key_id(k): k for k in public_keys}
    checkpoints = Path(checkpoints) if checkpoints is not None else checkpoint_path(path)
    try:
        external = read_checkpoint_file(checkpoints)
    except FileNotFoundError:
        return AnchoredResult(
            False,
            0,
            trail.GENESIS,
            f"no checkpoint file {checkpoints}: the end of the log can be checked only against it (pass "
            "--checkpoints FILE, e.g. the copy kept in write-once storage)",
        )
    for number, statement in external:
        problem = check_signature(statement, keys)
        if problem:
            return AnchoredResult(False, 0, trail.GENESIS, f"{checkpoints} line {number}: {problem}", None)

    # good: the last chain position a checkpoint confirmed; covered: the events up to it.
    state: dict[str, Any] = {
        "first": None,
        "wanted": {},
        "good": 0,
        "covered": 0,
        "events": 0,
        "seq": 0,
        "checkpoints": 0,
        "anchors": 0,
    }

    def inspect(number: int, event: dict[str, Any], seq: int, prev: str) -> str | None:
        state["seq"] = seq
        if "checkpoint" not in event:
            state["events"] += 1
        if seq == 1:
            state["first"] = event["hash"]
            for line_no, statement in external:
                if statement["first"] == state["first"]:
                    state["wanted"].setdefault(statement["seq"], []).append((line_no, statement))
        statement = event.get("checkpoint")
        if statement is not None:
            problem = check_signature(statement, keys)
            if problem:
                return problem
            if statement["first"] != state["first"]:
                return (
                    "a signed checkpoint of another first event: the first event was changed (and the chain "
                    "re-hashed), or lines of another log were put here"
                )
            if statement["seq"] != seq - 1:
                gap = statement["seq"] - (seq - 1)
                what = f"{_n(gap)} removed before it" if gap > 0 else f"{_n(-gap)} inserted before it"
                return (
                    f"the signed checkpoint at seq {seq} covers {statement['seq']} events but follows seq {seq - 1}: "
                    f"{what} (after seq {state['good']}, the last a checkpoint confirms), and the chain re-hashed"
                )
            if statement["head"] != prev:
                return (
                    f"the signed checkpoint at seq {seq} names head {_short(statement['head'])} but the event before "
                    f"it hashes to {_short(prev)}: an event after seq {state['good']} (the last a checkpoint "
                    "confirms) was changed and the chain re-hashed"
                )
            state["checkpoints"] += 1
            state["good"], state["covered"] = seq - 1, state["events"]
        for line_no, statement in state["wanted"].get(seq, ()):
            if statement["head"] != event["hash"]:
                return (
                    f"seq {seq} hashes to {_short(event['hash'])}, but the signed checkpoint of {statement['time']} "
                    f"({checkpoints} line {line_no}) names {_short(statement['head'])}: an event after seq "
                    f"{state['good']} (the last a checkpoint confirms) and at or before seq {seq} was changed, "
                    "removed, inserted or reordered, and the chain re-hashed"
                )
            state["anchors"] += 1
            state["good"], state["covered"] = seq, state["events"]
        return None

    result = trail.verify(path, inspect=inspect)
    base = {
        "events": result.events,
        "head": result.head,
        "checkpoints": state["checkpoints"],
        "anchors": state["anchors"],
    }
    if not result.ok:
        return AnchoredResult(False, problem=result.problem, line=result.line, **base)
    last_seq = state["seq"]
    if state["first"] is None:
        if external:
            return AnchoredResult(
                False,
                problem=f"the log is empty, but {checkpoints} holds {len(external)} checkpoints: every event was removed",
                **base,
            )
        return AnchoredResult(False, problem="the log is empty and nothing anchors it", **base)
    theirs = [s for _, s in external if s["first"] == state["first"]]
    if external and not theirs:
        return AnchoredResult(
            False,
            problem=(
                f"none of the {len(external)} checkpoints in {checkpoints} is of this log's first event (hash "
                f"{_short(state['first'])}): the first event was changed and the chain re-hashed, or these are "
                "another log's checkpoints"
            ),
            line=1,
            **base,
        )
    if theirs:
        last = max(theirs, key=lambda s: s["seq"])
        if last["seq"] > last_seq:
            return AnchoredResult(
                False,
                problem=(
                    f"the end was cut off: the last checkpoint in {checkpoints} ({last['time']}) covers seq "
                    f"{last['seq']} ending in {_short(last['head'])}, the log ends at seq {last_seq}: "
                    f"{last['seq'] - last_seq} lines are missing at the end"
                ),
                **base,
            )
    if not base["checkpoints"] and not base["anchors"]:
        return AnchoredResult(
            False, problem="no signed checkpoint covers this log (was it written with KINSHIP_AUDIT_KEY_FILE?)", **base
        )
    unanchored = state["events"] - state["covered"]
    warnings = []
    if unanchored:
        warnings.append(
            f"{unanchored} events after seq {state['good']} (the last checkpoint) are covered by no signature "
            "yet: the writer signs a checkpoint within its interval (KINSHIP_AUDIT_CHECKPOINT_SECONDS)"
        )
    if not theirs:
        warnings.append(f"{checkpoints} holds no checkpoint yet: only the log's own checkpoints were checked")
    return AnchoredResult(True, anchored_seq=state["good"], unanchored=unanchored, warnings=tuple(warnings), **base)


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    return [load_public_key(p) for p in paths]
