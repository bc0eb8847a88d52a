"""Enrolment: images -> faces -> gallery records, streamed, resumable, reported.

The pipeline (`enrol`): files are read and hashed in order; byte-identical files are
enrolled once (the later ones are reported as duplicates, never an error); batches of
images go to the embedder's EmbedBatch, at most `in_flight` at once; the most prominent
face of each image becomes a record, streamed to the indexer's BulkEnrol: its identity
vector to the identity model's stream and, when the embedder serves a kinship model bound
to that identity model, its kinship vector to the kinship model's stream and its combined
[kinship; identity] vector (`kinship.family_vectors.combined_vectors`) to the family
model's stream (`family_model_id(kinship model)`, the collection the ranker's family
query searches), all under the same record id: a record is enrolled once every stream
acknowledged it. A face without a kinship vector gets no combined vector. A refused file (unreadable, undecodable, no face, refused by the indexer) is
reported with the reason and the run goes on.

Resuming. The record id is the person id plus a digest of the image's bytes, so sending a
record again replaces it: a re-run never stores a photo twice, whatever happened before.
With a journal (a file; `kinship enroll` keeps one by default) every record the indexer
acknowledged in every stream is appended to it at once, so a run stopped part way (Ctrl-C,
a crash, a lost connection) is resumed by running it again: what the journal holds is not
embedded again. A run that gets to the end removes its journal, so a later run enrols
everything again (after a deletion, say). The journal is the caller's record, not the
gallery's: it is keyed by indexer address, tenant and models, and a gallery wiped between
an interrupted run and its resumption is not noticed (start again without the journal).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kinship.family_vectors import combined_vectors, family_model_id
from kinship.v1 import common_pb2, embedder_pb2, indexer_pb2

from . import errors
from .types import SEXES, most_prominent

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
#: Images per EmbedBatch call and bytes at most in one (under the 16 MiB message limit).
BATCH_SIZE = 16
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: EmbedBatch calls at once: enough to keep the embedder's workers busy while one batch
#: travels; more only queues at its admission control.
IN_FLIGHT = 3


class EnrolError(ValueError):
    """Bad enrolment input (a missing file, a bad manifest row, a kinship model as the model)."""


@dataclass
class EnrolItem:
    """One image to enrol as one record of `person_id`."""

    path: Path
    person_id: str
    attributes: common_pb2.PersonAttributes = field(default_factory=common_pb2.PersonAttributes)


# --- inputs -------------------------------------------------------------------------------


def attributes(
    birth_year: int | None = None, sex: str | None = None, region: str = "", source: str = ""
) -> common_pb2.PersonAttributes:
    attrs = common_pb2.PersonAttributes(region=region or "", source=source or "")
    if birth_year is not None:
        attrs.birth_year = birth_year
    if sex:
        if sex.lower() not in SEXES:
            raise EnrolError(f"sex must be f or m, got {sex!r}")
        attrs.sex = SEXES[sex.lower()]
    return attrs


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _copy(attrs: common_pb2.PersonAttributes) -> common_pb2.PersonAttributes:
    out = common_pb2.PersonAttributes()
    out.CopyFrom(attrs)
    return out


def items_from_paths(
    paths: Sequence[str | Path],
    *,
    person_id: str | None = None,
    defaults: common_pb2.PersonAttributes | None = None,
    person_per_file: bool = False,
) -> list[EnrolItem]:
    """Files and folders -> items. In a folder, loose images belong to the person named by the
    file's stem and images in a sub-folder to the person named by the sub-folder; `person_id`
    names one person for all; `person_per_file` makes each image its own person, named by the
    file's stem, in sub-folders too (a data set of relation folders, say)."""
    if person_id and person_per_file:
        raise EnrolError("give a person id for every image or one person per file, not both")
    defaults = defaults or common_pb2.PersonAttributes()
    items: list[EnrolItem] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = [(img, person_id or img.stem) for img in _images_in(path)]
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found += [(img, img.stem if person_per_file else person_id or sub.name) for img in _images_in(sub)]
            if not found:
                raise EnrolError(f"{path} holds no {', '.join(sorted(IMAGE_SUFFIXES))} images")
            items += [EnrolItem(img, pid, _copy(defaults)) for img, pid in found]
        elif path.is_file():
            items.append(EnrolItem(path, person_id or path.stem, _copy(defaults)))
        else:
            raise EnrolError(f"{path} does not exist")
    return items


def items_from_manifest(manifest: str | Path, defaults: common_pb2.PersonAttributes | None = None) -> list[EnrolItem]:
    """A CSV with columns path,person_id[,birth_year,sex,region,source]; paths relative to the CSV."""
    manifest = Path(manifest)
    defaults = defaults or common_pb2.PersonAttributes()
    try:
        text = manifest.read_text()
    except OSError as exc:
        raise EnrolError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from exc
    rows = list(csv.DictReader(text.splitlines()))
    missing = {"path", "person_id"} - set(rows[0].keys() if rows else [])
    if missing:
        raise EnrolError(
            f"manifest {manifest} needs the columns path and person_id (missing: {', '.join(sorted(missing))})"
        )
    items = []
    for line, row in enumerate(rows, start=2):
        try:
            year = int(row["birth_year"]) if row.get("birth_year") else None
        except ValueError as exc:
            raise EnrolError(
                f"manifest {manifest} line {line}: birth_year {row['birth_year']!r} is not a year"
            ) from exc
        sex = (row.get("sex") or "").strip().lower() or None
        if sex and sex not in SEXES:
            raise EnrolError(f"manifest {manifest} line {line}: sex must be f or m, got {row['sex']!r}")
        attrs = _copy(defaults)
        attrs.MergeFrom(attributes(year, sex, row.get("region") or "", row.get("source") or ""))
        items.append(EnrolItem((manifest.parent / row["path"]).resolve(), row["person_id"], attrs))
    return items


def record_id_of(person_id: str, image: bytes) -> str:
    """Derived from the content: the same photo of the same person is always the same record."""
    return f"{person_id}:{hashlib.sha256(image).hexdigest()[:16]}"


def choose_models(models: Sequence[embedder_pb2.ModelInfo], model_id: str = "") -> tuple[str, str]:
    """(identity model, the kinship model bound to it or "") from ListModels; `model_id` "" = the default."""
    served = {m.model_id: m for m in models}
    if model_id:
        if model_id not in served:
            raise EnrolError(f"the embedder does not serve model {model_id!r}; it serves {', '.join(sorted(served))}")
        identity = served[model_id]
    else:
        defaults = [m for m in models if m.is_default]
        if not defaults:
            raise EnrolError("the embedder names no default model; give a model id")
        identity = defaults[0]
    if identity.kind == embedder_pb2.MODEL_KIND_KINSHIP:
        raise EnrolError(
            f"{identity.model_id} is a kinship model; enrol with the identity model it is bound to "
            f"({identity.bound_model_id}): its kinship vectors are stored beside the identity vectors"
        )
    kinship = [
        m.model_id
        for m in models
        if m.kind == embedder_pb2.MODEL_KIND_KINSHIP and m.bound_model_id == identity.model_id
    ]
    return identity.model_id, (kinship[0] if kinship else "")


# --- journal ------------------------------------------------------------------------------


def default_journal_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kinship-search" / "enrol-journals"


class Journal:
    """Record ids the indexer acknowledged, one JSON line each, appended and flushed at once.

    A folder holds one file per (indexer, tenant, identity model, kinship model); `key`
    picks it. A line cut short by a crash is ignored on reading.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else default_journal_dir()
        self.path: Path | None = None
        self._file = None

    def open(self, key: str) -> set[str]:
        """Selects the key's file and returns the record ids it holds."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{digest}.jsonl"
        done: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("record_id"), str):
                    done.add(entry["record_id"])
        self._key = key
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        return done

    def add(self, record_id: str, path: str) -> None:
        assert self._file is not None, "journal not opened"
        self._file.write(json.dumps({"key": self._key, "record_id": record_id, "path": path}) + "\n")
        self._file.flush()

    def close(self, *, finished: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if finished and self.path is not None:
            self.path.unlink(missing_ok=True)


# --- progress and report ------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolProgress:
    """Where a run is: `done` of `total` images settled (None when the input had no length)."""

    done: int
    total: int | None
    enrolled: int
    already: int
    duplicates: int
    refused: int
    elapsed_s: float
    #: Images embedded and settled per second (skipped ones are not counted).
    rate: float
    #: Seconds left at that rate (None when not known yet).
    eta_s: float | None


@dataclass
class EnrolReport:
    model_id: str = ""
    collection: str = ""
    kinship_model_id: str = ""
    kinship_collection: str = ""
    #: The combined [kinship; identity] vectors' model (`family_model_id(kinship_model_id)`), "" without kinship.
    family_model_id: str = ""
    family_collection: str = ""
    #: {path, person_id, record_id} per image stored.
    enrolled: list[dict] = field(default_factory=list)
    #: {path, person_id, record_id}: in the journal of an earlier, interrupted run; not sent again.
    already_enrolled: list[dict] = field(default_factory=list)
    #: {path, person_id, same_as, same_as_person_id}: the same bytes as an earlier file of this run.
    duplicates: list[dict] = field(default_factory=list)
    #: {path, reason}: not enrolled, and why.
    refused: list[dict] = field(default_factory=list)
    journal: str = ""
    seconds: float = 0.0

    @property
    def person_ids(self) -> list[str]:
        """The people whose records are in the gallery after the run (enrolled now or by an interrupted run)."""
        return sorted({e["person_id"] for e in (*self.enrolled, *self.already_enrolled)})

    @property
    def images_per_second(self) -> float:
        return (len(self.enrolled) + len(self.refused)) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready; `skipped` is the refused list under the name `kinship enroll --json` has always used."""
        return {
            "model_id": self.model_id,
            "collection": self.collection,
            "kinship_model_id": self.kinship_model_id,
            "kinship_collection": self.kinship_collection,
            "family_model_id": self.family_model_id,
            "family_collection": self.family_collection,
            "person_count": len(self.person_ids),
            "person_ids": self.person_ids,
            "enrolled": self.enrolled,
            "skipped": self.refused,
            "already_enrolled": self.already_enrolled,
            "duplicates": self.duplicates,
            "journal": self.journal,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


# --- the pipeline -------------------------------------------------------------------------

#: (method, request, timeout) -> response: the client's unary call with its retry rule.
UnaryCall = Callable[[str, object, float | None], Awaitable[object]]
#: (model_id, async iterator of requests) -> async iterator of responses.
StreamCall = Callable[[object], object]


@dataclass
class _Pending:
    item: EnrolItem
    record_id: str
    acks_left: int


class _Run:
    def __init__(self, report: EnrolReport, total: int | None, progress, journal: Journal | None):
        self.report = report
        self.total = total
        self.progress = progress
        self.journal = journal
        self.started = time.monotonic()
        self.pending: dict[str, _Pending] = {}
        self.failure: BaseException | None = None
        self.tasks: set[asyncio.Task] = set()

    def fail(self, error: BaseException) -> None:
        """The first failure of a batch or a stream ends the run: the others stop at once."""
        if self.failure is None:
            self.failure = error
            for task in list(self.tasks):
                task.cancel()

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def tell(self) -> None:
        if self.progress is None:
            return
        r = self.report
        worked = len(r.enrolled) + len(r.refused)
        done = worked + len(r.already_enrolled) + len(r.duplicates)
        elapsed = time.monotonic() - self.started
        rate = worked / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if self.total is not None and rate > 0 else None
        self.progress(
            EnrolProgress(
                done=done,
                total=self.total,
                enrolled=len(r.enrolled),
                already=len(r.already_enrolled),
                duplicates=len(r.duplicates),
                refused=len(r.refused),
                elapsed_s=elapsed,
                rate=rate,
                eta_s=eta,
            )
        )

    def refuse(self, path: Path, reason: str) -> None:
        self.report.refused.append({"path": str(path), "reason": reason})
        self.tell()

    def acknowledge(self, record_id: str, failure: str | None) -> None:
        pending = self.pending.get(record_id)
        if pending is None:  # already refused by the other stream
            return
        if failure is not None:
            del self.pending[record_id]
            self.refuse(pending.item.path, f"refused by the indexer: {failure}")
            return
        pending.acks_left -= 1
        if pending.acks_left == 0:
            del self.pending[record_id]
            item = pending.item
            self.report.enrolled.append({"path": str(item.path), "person_id": item.person_id, "record_id": record_id})
            if self.journal is not None:
                self.journal.add(record_id, str(item.path))
            self.tell()


async def enrol(
    items: Iterable[EnrolItem],
    *,
    unary: UnaryCall,
    bulk_enrol: StreamCall,
    indexer_target: str,
    model_id: str = "",
    tenant: str = "",
    journal: Journal | None = None,
    progress: Callable[[EnrolProgress], None] | None = None,
    batch_size: int = BATCH_SIZE,
    in_flight: int = IN_FLIGHT,
    pre_aligned: bool = False,
    timeout: float | None = 120.0,
) -> EnrolReport:
    """Runs the pipeline (see the module's docstring) over the client's calls; returns the report."""
    if batch_size < 1 or in_flight < 1:
        raise EnrolError("batch_size and in_flight must be at least 1")
    report = EnrolReport()
    total = len(items) if isinstance(items, Sized) else None
    listed = await unary("/kinship.v1.Embedder/ListModels", embedder_pb2.ListModelsRequest(), timeout)
    identity, kinship = choose_models(listed.models, model_id)
    family = family_model_id(kinship) if kinship else ""
    report.model_id, report.kinship_model_id, report.family_model_id = identity, kinship, family
    #: What the embedder makes, and what the indexer stores (those plus the combined vectors).
    models = [identity] + ([kinship] if kinship else [])
    stored = models + ([family] if family else [])
    done_before: set[str] = set()
    if journal is not None:
        # The family model is part of the key: a journal of a run that wrote no combined
        # vectors is not taken as done by one that does.
        # So is pre-alignment (only when set, so that earlier journals keep their keys): the same
        # files embedded the other way are other vectors.
        key = [indexer_target, tenant, identity, kinship, family] + (["pre-aligned"] if pre_aligned else [])
        done_before = journal.open(json.dumps(key))
        report.journal = str(journal.path)
    run = _Run(report, total, progress, journal)
    streams = {m: _Stream(m, tenant, bulk_enrol, run) for m in stored}
    slots = asyncio.Semaphore(in_flight)
    finished = False

    async def embed_batch(batch: list[tuple[EnrolItem, str, bytes]]) -> None:
        try:
            request = embedder_pb2.EmbedBatchRequest(
                items=[
                    embedder_pb2.EmbedRequest(
                        image=image, model_id=identity, additional_model_ids=models[1:], pre_aligned=pre_aligned
                    )
                    for _, _, image in batch
                ]
            )
            reply = await unary("/kinship.v1.Embedder/EmbedBatch", request, timeout)
            records: dict[str, list[indexer_pb2.GalleryRecord]] = {m: [] for m in stored}
            for (item, record_id, _), result in zip(batch, reply.results, strict=True):
                reason = _refusal(result, models)
                if reason:
                    run.refuse(item.path, reason)
                    continue
                faces = result.response.faces
                face = faces[most_prominent(faces)]
                vectors = {identity: face.embedding, **{e.model_id: e.values for e in face.additional_embeddings}}
                if family:
                    vectors[family] = combined_vectors(vectors[kinship], vectors[identity])[0].tolist()
                run.pending[record_id] = _Pending(item, record_id, acks_left=len(stored))
                for m in stored:
                    records[m].append(
                        indexer_pb2.GalleryRecord(
                            record_id=record_id,
                            person_id=item.person_id,
                            embedding=vectors[m],
                            attributes=item.attributes,
                        )
                    )
            for m in stored:
                if records[m]:
                    await streams[m].send(records[m])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            run.fail(exc)
            raise
        finally:
            slots.release()

    seen: dict[str, EnrolItem] = {}
    batch: list[tuple[EnrolItem, str, bytes]] = []
    batch_bytes = 0

    async def launch() -> None:
        nonlocal batch, batch_bytes
        await slots.acquire()
        run.check()
        task = asyncio.ensure_future(embed_batch(batch))
        task.add_done_callback(_retrieved)
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)
        batch, batch_bytes = [], 0

    try:
        for stream in streams.values():
            stream.start()
        for item in items:
            run.check()
            try:
                image = await asyncio.to_thread(Path(item.path).read_bytes)
            except OSError as exc:
                run.refuse(item.path, f"cannot read: {exc.strerror or exc}")
                continue
            digest = hashlib.sha256(image).hexdigest()
            first = seen.get(digest)
            if first is not None:
                report.duplicates.append(
                    {
                        "path": str(item.path),
                        "person_id": item.person_id,
                        "same_as": str(first.path),
                        "same_as_person_id": first.person_id,
                    }
                )
                run.tell()
                continue
            seen[digest] = item
            record_id = f"{item.person_id}:{digest[:16]}"
            if record_id in done_before:
                report.already_enrolled.append(
                    {"path": str(item.path), "person_id": item.person_id, "record_id": record_id}
                )
                run.tell()
                continue
            if batch and (len(batch) >= batch_size or batch_bytes + len(image) > MAX_BATCH_BYTES):
                await launch()
            batch.append((item, record_id, image))
            batch_bytes += len(image)
        if batch:
            await launch()
        while run.tasks:
            await asyncio.wait(set(run.tasks))
        run.check()
        for stream in streams.values():
            await stream.close()
        await asyncio.wait([s.reader for s in streams.values()])
        run.check()
        finished = True
    finally:
        for task in list(run.tasks):
            task.cancel()
        for stream in streams.values():
            stream.cancel()
        if journal is not None:
            journal.close(finished=finished)
    listed = await unary("/kinship.v1.Indexer/ListCollections", indexer_pb2.ListCollectionsRequest(), timeout)
    names = {c.model_id: c.name for c in listed.collections}
    report.collection = names.get(identity, "")
    report.kinship_collection = names.get(kinship, "") if kinship else ""
    report.family_collection = names.get(family, "") if family else ""
    report.seconds = time.monotonic() - run.started
    return report


def _retrieved(task: asyncio.Task) -> None:
    """Marks a task's exception as seen: the run raises it once, through `_Run.check`."""
    if not task.cancelled():
        task.exception()


def _refusal(result: embedder_pb2.EmbedBatchResult, models: list[str]) -> str:
    """Why an image's EmbedBatch answer gives no record ("" when it gives one)."""
    if result.WhichOneof("outcome") == "error":
        return f"{result.error.status}: {result.error.message}"
    faces = result.response.faces
    if not faces:
        return "no face found"
    served = {m.model_id for m in faces[0].additional_embeddings} | {result.response.model_id}
    missing = [m for m in models if m not in served]
    return f"the embedder returned no {', '.join(missing)} vector" if missing else ""


class _Stream:
    """One BulkEnrol stream: records go in as they are embedded, acknowledgements settle them."""

    def __init__(self, model_id: str, tenant: str, bulk_enrol: StreamCall, run: _Run):
        self.model_id, self.tenant = model_id, tenant
        self._bulk_enrol = bulk_enrol
        self._run = run
        # Bounded: embedding waits when the indexer is behind, instead of piling records up.
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        self._sent: list[str] = []
        self._settled = 0
        self._closed = False
        self.reader: asyncio.Task | None = None
        self._call = None

    def start(self) -> None:
        self._call = self._bulk_enrol(self._requests())
        self.reader = asyncio.ensure_future(self._read())
        self.reader.add_done_callback(_retrieved)

    async def _requests(self):
        while True:
            records = await self._queue.get()
            if records is None:
                return
            yield indexer_pb2.BulkEnrolRequest(model_id=self.model_id, tenant=self.tenant, records=records)

    async def send(self, records: list[indexer_pb2.GalleryRecord]) -> None:
        self._sent += [r.record_id for r in records]
        await self._queue.put(records)

    async def close(self) -> None:
        self._closed = True
        await self._queue.put(None)

    async def _read(self) -> None:
        try:
            async for reply in self._call:
                failures = {f.index: f.reason for f in reply.failures}
                while self._settled < reply.received_total:
                    index = self._settled
                    self._run.acknowledge(self._sent[index], failures.get(index))
                    self._settled += 1
                if reply.done:
                    return
            raise ConnectionError(f"the indexer ended the BulkEnrol stream of {self.model_id} without its last answer")
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as exc:
            error = errors.from_rpc_error(exc, method="/kinship.v1.Indexer/BulkEnrol")
            self._run.fail(error)
            raise error from exc
        except BaseException as exc:
            self._run.fail(exc)
            raise

    def cancel(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
        cancel = getattr(self._call, "cancel", None)
        if cancel is not None:
            cancel()
