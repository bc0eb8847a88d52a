"""The gallery in Milvus, through pymilvus `MilvusClient`.

Works against both backends the project supports (see docs/milvus-notes.md):
- Milvus Lite: a local `.db` file (the default). Lite allows ONE process per data
  file, so the indexer must be the only process that opens it; scale out by
  pointing every indexer replica at a Milvus server instead.
- A Milvus server (standalone or distributed) by `http(s)://host:port` URI.

Differences handled here: the primary key of a search hit is `hit["id"]` on the
server and `hit["record_id"]` on Lite; Lite drops a collection's description, so
the exact model id and the schema version are kept in collection properties; row
counts come from a `count(*)` query (the server's collection stats stay 0 until a
flush); scalar index types differ (Lite: INVERTED only; server 2.3: STL_SORT for
numbers, Trie for strings). Every index is declared at creation, because the server
refuses new indexes on a loaded collection. The server's version is read on every new
connection and checked against the supported range (`domain/server_version.py`): a
server outside it is refused (UnsupportedMilvus, FAILED_PRECONDITION) before any call.

The schema (version `SCHEMA_VERSION`, stored in the collection property
`kinship.schema_version` and checked whenever a collection is opened; see
docs/indexer.md):

| field        | type             | notes                                                       |
|--------------|------------------|-------------------------------------------------------------|
| key          | VARCHAR(193)     | primary key "<tenant>:<record_id>": a retried upsert        |
|              |                  | replaces, and tenants never overwrite each other's records  |
| record_id    | VARCHAR(128)     | the client-supplied record id                               |
| person_id    | VARCHAR(128)     | scalar index                                                |
| tenant       | VARCHAR(64)      | partition key: every read and write names one               |
| embedding    | FLOAT_VECTOR(d)  | vector index (HNSW by default, configurable), COSINE        |
| birth_year   | INT64            | -1 = unknown; scalar index                                  |
| sex          | INT64            | kinship.v1.Sex values; scalar index                         |
| region       | VARCHAR(64)      | scalar index                                                |
| source       | VARCHAR(128)     |                                                             |
| captured_at  | INT64            | Unix seconds, 0 = unknown                                   |
| enrolled_at  | INT64            | Unix seconds, set by the indexer                            |
| expires_at   | INT64            | Unix seconds, 0 = never; the retention purge erases expired |

Calls to Milvus run with the caller's remaining deadline as their timeout (capped by
the configured timeout) and are retried with exponential backoff and jitter on
transient failures while the deadline allows; every write is keyed by record id, so
a retried write is idempotent. A collection found released (after a Milvus restart)
is loaded again and the call retried.

Filter expressions are built here from typed fields only. Every string put into
one has already been validated against a strict character set, and `quote`
checks it again, so no caller text can change an expression's meaning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.constants import BOUNDED_TS as _BOUNDED_TS
from pymilvus.client.utils import check_status
from pymilvus.exceptions import MilvusUnavailableException
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from kinship.runtime import deadlines
from kinship.runtime.errors import DeadlineExceeded, FailedPrecondition, NotFound, Unavailable
from kinship.runtime.logs import get_logger
from kinship.runtime.tenancy import TENANT_PATTERN

from ..domain import server_version
from ..domain.model import (
    Attributes,
    CollectionInfo,
    CollectionStats,
    Consistency,
    GalleryRecord,
    Hit,
    SearchFilter,
    Sex,
)
from ..domain.rules import RECORD_ID_MAX, REGION_MAX, SOURCE_MAX, clamp_similarity
from .milvus_search_channel import SearchChannel

log = get_logger("kinship.indexer.milvus")

T = TypeVar("T")

COLLECTION_PREFIX = "faces_"
MODEL_ID_PROPERTY = "kinship.model_id"
SCHEMA_VERSION_PROPERTY = "kinship.schema_version"
#: Version of the collection schema this code reads and writes (see the table above).
#: 1: no tenant, captured_at or expires_at (before 2026-11). 2: the table above.
SCHEMA_VERSION = 2
TENANT_MAX = 64
KEY_MAX = TENANT_MAX + 1 + RECORD_ID_MAX
#: Stored captured_at of a photo whose capture time is not known; stored expires_at of a record kept forever.
NO_TIME = 0
#: Stored birth year of a person whose birth year is not known; birth-year filters exclude it.
UNKNOWN_BIRTH_YEAR = -1
_SANITIZED_MAX = 64
_HASH_CHARS = 12
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9._:-]+")
# Bytes of vector data per upsert message to Milvus: well under its 64 MiB gRPC limit and
# small enough that one failed message costs little to resend.
_UPSERT_BYTES = 8 * 1024 * 1024
# Rows per query page (the server's default query window is 16,384).
_QUERY_PAGE = 10_000
#: How long a call without a deadline keeps retrying transient Milvus failures.
NO_DEADLINE_RETRY_S = 30.0
# Retries: backoff doubles from the first delay up to the cap, each delay jittered to 50-100 %.
_BACKOFF_FIRST_S = 0.1
_BACKOFF_CAP_S = 2.0
# A retry is not started with less time than this left: it could not succeed, and the caller
# is better told what failed (UNAVAILABLE naming the URI) than DEADLINE_EXCEEDED.
_SHORTEST_TRY_S = 0.05
# How often a compaction's state is polled while Delete awaits it.
_COMPACTION_POLL_S = 0.5
#: Fields read for every search hit (besides its distance): what a `Hit` carries, no more,
#: since every output field costs Milvus a lookup per hit and the indexer a column to parse.
HIT_FIELDS = ("record_id", "person_id", "birth_year", "sex", "region", "source")
_RECORD_FIELDS = ["embedding", *HIT_FIELDS, "captured_at", "enrolled_at", "expires_at"]
_CONSISTENCY_LEVEL = {Consistency.BOUNDED: "Bounded", Consistency.STRONG: "Strong"}
# Default build and search parameters per vector index type; settings may override them.
_INDEX_DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "HNSW": ({"M": 16, "efConstruction": 128}, {"ef": 64}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 32}),
    "IVF_SQ8": ({"nlist": 1024}, {"nprobe": 32}),
    "FLAT": ({}, {}),
}
#: HNSW's ef at least this many times top_k (within Milvus's limit on ef).
HNSW_EF_PER_TOP_K = 4
HNSW_EF_MAX = 32768
# Scalar index per filtered field; the type depends on the backend (see the module docstring).
_SCALAR_INDEXED = {
    "person_id": "text",
    "tenant": "text",
    "birth_year": "number",
    "sex": "number",
    "region": "text",
    "expires_at": "number",
}


@dataclass(frozen=True)
class VectorIndex:
    """Which vector index new collections get, and the search parameters for it."""

    index_type: str = "HNSW"
    build_params: dict[str, Any] = field(default_factory=lambda: dict(_INDEX_DEFAULTS["HNSW"][0]))
    search_params: dict[str, Any] = field(default_factory=lambda: dict(_INDEX_DEFAULTS["HNSW"][1]))

    @classmethod
    def parse(cls, index_type: str, build_json: str = "", search_json: str = "") -> VectorIndex:
        """From settings: a type of `_INDEX_DEFAULTS` and optional JSON objects overriding its parameters."""
        kind = index_type.strip().upper()
        if kind not in _INDEX_DEFAULTS:
            raise ValueError(f"unknown vector index type {index_type!r}; use one of {', '.join(_INDEX_DEFAULTS)}")
        build, search = _INDEX_DEFAULTS[kind]
        return cls(kind, {**build, **_json_object(build_json)}, {**search, **_json_object(search_json)})

    def search_params_for(self, index_type: str, top_k: int) -> dict[str, Any]:
        """Search parameters for a collection whose index is `index_type` (it may predate the settings)."""
        params = dict(
            self.search_params if index_type == self.index_type else _INDEX_DEFAULTS.get(index_type, ({}, {}))[1]
        )
        if "ef" in params:
            # HNSW requires ef >= top_k, and a large top_k (the ranker's family pool of 1,000) needs ef well
            # above it: measured at 100k 256-d rows, ef = top_k found 0.92 of the true top 1,000, 4 x top_k 0.997.
            params["ef"] = max(int(params["ef"]), min(HNSW_EF_MAX, HNSW_EF_PER_TOP_K * top_k))
        return params


def _json_object(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object of index parameters, got {text!r}")
    return value


def collection_name(model_id: str) -> str:
    """Deterministic, Milvus-safe collection name for a model id.

    Readable part (non [A-Za-z0-9_] replaced, shortened) plus a hash of the exact id,
    so ids that sanitise alike ("a-b" and "a.b") still get different collections.
    """
    readable = re.sub(r"[^A-Za-z0-9_]", "_", model_id)[:_SANITIZED_MAX]
    digest = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{COLLECTION_PREFIX}{readable}_{digest}"


def quote(value: str) -> str:
    """A string literal for a filter expression; refuses anything outside the safe set."""
    if not _SAFE_LITERAL.fullmatch(value):
        raise ValueError(f"refusing to put {value!r} in a filter expression: only letters, digits and ._:- are allowed")
    return f'"{value}"'


def in_list(field: str, values: Sequence[str], *, negate: bool = False) -> str:
    operator = "not in" if negate else "in"
    return f"{field} {operator} [{', '.join(quote(v) for v in values)}]"


def tenant_expression(tenant: str) -> str:
    """The clause that confines a read or write to one tenant (Milvus prunes to its partition)."""
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ValueError(f"refusing tenant {tenant!r} in a filter expression")
    return f'tenant == "{tenant}"'


def filter_expression(flt: SearchFilter, tenant: str | None = None) -> str:
    """The Milvus boolean expression for a typed filter, confined to `tenant` when given."""
    parts: list[str] = [tenant_expression(tenant)] if tenant is not None else []
    if flt.restricts_birth_year:
        # Unknown birth years are stored as a sentinel that a range must never admit
        # (unless the filter keeps the unknown ones).
        years = [f"birth_year != {UNKNOWN_BIRTH_YEAR}"]
        if flt.birth_year_min is not None:
            years.append(f"birth_year >= {int(flt.birth_year_min)}")
        if flt.birth_year_max is not None:
            years.append(f"birth_year <= {int(flt.birth_year_max)}")
        if flt.include_unknown:
            parts.append(f"(birth_year == {UNKNOWN_BIRTH_YEAR} or ({' and '.join(years)}))")
        else:
            parts += years
    if flt.sex != Sex.UNSPECIFIED:
        if flt.include_unknown:
            parts.append(f"(sex == {int(Sex(flt.sex))} or sex == {int(Sex.UNSPECIFIED)})")
        else:
            parts.append(f"sex == {int(Sex(flt.sex))}")
    if flt.regions:
        parts.append(in_list("region", flt.regions))
    if flt.exclude_person_ids:
        parts.append(in_list("person_id", flt.exclude_person_ids, negate=True))
    return " and ".join(parts)


def records_expression(person_ids: Sequence[str], flt: SearchFilter, tenant: str | None = None) -> str:
    """The expression of GetRecords: these people's records (of `tenant`) that pass the typed filter."""
    people = in_list("person_id", person_ids)
    restriction = filter_expression(flt, tenant)
    return f"{people} and ({restriction})" if restriction else people


def unknown_expression(flt: SearchFilter, fact: str, tenant: str | None = None) -> str:
    """Records whose `fact` ("birth_year" or "sex") is unknown and that pass the filter's regions and exclusions."""
    unknown = {"birth_year": f"birth_year == {UNKNOWN_BIRTH_YEAR}", "sex": f"sex == {int(Sex.UNSPECIFIED)}"}[fact]
    rest = filter_expression(SearchFilter(regions=flt.regions, exclude_person_ids=flt.exclude_person_ids), tenant)
    return f"{rest} and {unknown}" if rest else unknown


def expired_expression(now: int) -> str:
    """Records whose expiry time has come (0 means never)."""
    return f"expires_at > {NO_TIME} and expires_at <= {int(now)}"


def record_key(tenant: str, record_id: str) -> str:
    """The primary key of a record: unique per tenant (tenant ids have no ':', so the split is unambiguous)."""
    return f"{tenant}:{record_id}"


def is_lite(uri: str) -> bool:
    """A Milvus Lite file rather than a server URI."""
    return "://" not in uri or uri.endswith(".db")


def redact_uri(uri: str) -> str:
    """The URI without user:password, fit for messages and logs."""
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return uri


class KeysBeingWritten:
    """Keys this process is writing now: a write naming any of them waits for the one before.

    Milvus 2.3 has no upsert that keeps a partition-key collection right, so a record is
    replaced by reading whether it exists, deleting it, and inserting it. Two writes of one
    record at once (a client retrying a call still in progress, two streams naming one record)
    would both read it absent and both insert: a duplicate row. Within one indexer process the
    second now waits; writes from several indexer replicas to one record at the same moment
    can still race (docs/indexer.md). Writes of different records never wait on each other.
    """

    def __init__(self, longest_wait: float = NO_DEADLINE_RETRY_S) -> None:
        self._changed = threading.Condition()
        self._keys: set[Hashable] = set()
        self._longest_wait = longest_wait  # for a caller without a deadline

    @contextlib.contextmanager
    def holding(self, keys: Sequence[Hashable], operation: str) -> Iterator[None]:
        wanted = set(keys)
        until = time.monotonic() + deadlines.remaining(self._longest_wait)
        with self._changed:
            while not self._keys.isdisjoint(wanted):
                left = until - time.monotonic()
                if left <= 0:
                    raise DeadlineExceeded(
                        f"the call's deadline passed while another write of the same records was in progress "
                        f"(could not {operation}): send it again"
                    )
                self._changed.wait(left)
            self._keys |= wanted
        try:
            yield
        finally:
            with self._changed:
                self._keys -= wanted
                self._changed.notify_all()


class MilvusGallery:
    """`GalleryStore` over pymilvus. Thread-safe; every method but `search_soon` and
    `known_dimension` blocks (run it off the event loop).

    The client is created on first use, so that an unreachable server leaves the
    indexer up and NOT_SERVING instead of failing at start.
    """

    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        timeout: float = 10.0,
        vector_index: VectorIndex | None = None,
        shards: int = 2,
    ):
        self._uri = uri
        self._shown_uri = redact_uri(uri)
        self._token = token
        self._timeout = timeout
        self._lite = is_lite(uri)
        self._vector_index = vector_index or VectorIndex()
        # Shards of new collections (server only): Milvus ingests each through its own pipeline.
        self._shards = shards
        self._client_lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._client: MilvusClient | None = None
        # Searches on the event loop's own channel to where the client connects (see search_soon).
        self._search_channel: SearchChannel | None = None
        self._upsert_works: bool | None = None
        # What Milvus reported when the client connected (checked against the supported range then).
        self._server_version = ""
        self._writing = KeysBeingWritten(max(timeout, NO_DEADLINE_RETRY_S))
        # Collections this process is creating: not to be loaded (or read) until every index exists.
        self._creating: set[str] = set()
        # Collections are never dropped by the indexer, so what is learnt about one stays true;
        # an entry is forgotten when Milvus says the collection is gone.
        self._dimensions: dict[str, int] = {}
        self._index_types: dict[str, str] = {}
        self._model_of_collection: dict[str, str | None] = {}

    @property
    def uri(self) -> str:
        return self._shown_uri

    # GalleryStore ------------------------------------------------------------------

    def ping(self) -> None:
        """Milvus answers, and every gallery collection has this code's schema version."""
        self._models_by_collection(retry=False)

    def server_version(self, *, retry: bool = True) -> str:
        """The version Milvus reports, read when connecting (a server outside the supported range
        is refused there: UnsupportedMilvus, FAILED_PRECONDITION); Unavailable while it does not answer."""
        if not self._server_version:
            reported = self._call(
                "read the server version",
                lambda c, t: self._server_version or str(c.get_server_version(timeout=t)),
                retry=retry,
            )
            self._server_version = self._server_version or reported
        return self._server_version

    def model_ids(self) -> list[str]:
        return sorted(self._models_by_collection().values())

    def dimension(self, model_id: str) -> int | None:
        if model_id in self._dimensions:
            return self._dimensions[model_id]
        name = collection_name(model_id)
        if not self._call(f"look up collection {name}", lambda c, t: c.has_collection(name, timeout=t)):
            return None
        description = self._call(f"describe collection {name}", lambda c, t: c.describe_collection(name, timeout=t))
        properties = description.get("properties", {})
        stored_model = properties.get(MODEL_ID_PROPERTY)
        if stored_model != model_id:
            raise FailedPrecondition(
                f"Milvus collection {name} exists but holds model {stored_model!r}, not {model_id!r}; "
                "it was not made by the indexer: rename or drop it"
            )
        check_schema_version(name, model_id, properties)
        index = self._call(f"describe the index of {name}", lambda c, t: c.describe_index(name, "embedding", timeout=t))
        # A collection opened again after a restart may be released; loading a loaded one is a no-op.
        self._call(f"load collection {name}", lambda c, t: self._load_when_complete(c, name, t))
        dimension = _vector_dimension(description)
        self._index_types[model_id] = str((index or {}).get("index_type", self._vector_index.index_type))
        self._dimensions[model_id] = dimension
        return dimension

    def upsert(self, model_id: str, dimension: int, tenant: str, records: Sequence[GalleryRecord]) -> str:
        name = collection_name(model_id)
        if self.dimension(model_id) is None:
            self._create_collection(model_id, name, dimension)
        now = int(time.time())
        rows = Columns.of(records, tenant, now)
        per_message = max(1, _UPSERT_BYTES // (4 * dimension + 512))
        replace = self._replace_function()
        # Where rows are replaced by a read, a delete and an insert (Milvus 2.3), two writes of one
        # record at once would both find it absent and both insert it: here the second waits.
        writing = (
            contextlib.nullcontext()
            if self._upsert_works
            else self._writing.holding([(name, key) for key in rows.strings["key"]], f"write into {name}")
        )
        written = 0
        try:
            with writing:
                for start in range(0, len(rows), per_message):
                    chunk = rows.slice(start, start + per_message)
                    self._call(f"upsert into {name}", lambda c, t, chunk=chunk: replace(c, name, chunk, t), model_id)
                    written += len(chunk)
        except (Unavailable, DeadlineExceeded) as exc:
            if written:
                # Honest about partial success: the caller may resend everything (idempotent by record id).
                raise type(exc)(
                    f"{exc.message}; {written} of {len(rows)} records were written before the failure; "
                    "send the whole request again (records are replaced by record_id, so nothing is duplicated)",
                    reason=exc.reason,
                    metadata={"written_count": str(written), "record_count": str(len(rows))},
                ) from exc
            raise
        return name

    def search(
        self, model_id: str, tenant: str, queries: np.ndarray, top_k: int, flt: SearchFilter, consistency: Consistency
    ) -> list[list[Hit]]:
        name = collection_name(model_id)
        params = self._vector_index.search_params_for(self._index_types.get(model_id, ""), top_k)
        return self._call(
            f"search {name}",
            lambda c, t: _search_columns(
                c,
                name,
                queries,
                top_k,
                filter_expression(flt, tenant),
                {"metric_type": "COSINE", "params": params},
                _CONSISTENCY_LEVEL[consistency],
                t,
            ),
            model_id,
        )

    def known_dimension(self, model_id: str) -> int | None:
        return self._dimensions.get(model_id)

    def search_soon(
        self, model_id: str, tenant: str, queries: np.ndarray, top_k: int, flt: SearchFilter, consistency: Consistency
    ) -> Awaitable[list[list[Hit]] | None] | None:
        """The search sent on the event loop's own channel to Milvus and awaited there.

        A search through `search` costs two thread switches (to a gallery thread and back)
        on top of the call; this way the indexer's event loop sends the request and reads the
        answer itself (milvus_search_channel.py). None where it cannot be sent without blocking
        (no connection yet, a collection not yet opened by this process, no search channel, no
        time left); the awaitable gives None where the call failed: `search` then answers,
        retrying within the deadline and saying what failed.
        """
        channel = self._search_channel
        index_type = self._index_types.get(model_id)
        timeout = deadlines.remaining(self._timeout)
        if channel is None or index_type is None or timeout <= 0:
            return None
        params = self._vector_index.search_params_for(index_type, top_k)
        request = _search_request(
            collection_name(model_id),
            queries,
            top_k,
            filter_expression(flt, tenant),
            {"metric_type": "COSINE", "params": params},
            _CONSISTENCY_LEVEL[consistency],
        )
        call = channel.search(request, timeout)
        return None if call is None else _hits_when_answered(call, len(queries))

    def get_records(
        self,
        model_id: str,
        tenant: str,
        person_ids: Sequence[str],
        flt: SearchFilter,
        consistency: Consistency,
        *,
        with_embeddings: bool = True,
    ) -> list[GalleryRecord]:
        name = collection_name(model_id)
        fields = _RECORD_FIELDS if with_embeddings else [f for f in _RECORD_FIELDS if f != "embedding"]
        rows = self._call(
            f"read records from {name}",
            lambda c, t: c.query(
                name,
                filter=records_expression(person_ids, flt, tenant),
                output_fields=fields,
                consistency_level=_CONSISTENCY_LEVEL[consistency],
                timeout=t,
            ),
            model_id,
        )
        return [_record(row, tenant) for row in rows]

    def person_ids(self, model_id: str, tenant: str, flt: SearchFilter) -> list[str]:
        """Every person id of `tenant` with a record that passes `flt`, sorted (a Strong read).

        One query where the rows fit one (Milvus caps a query's results), else pymilvus's
        query iterator, which pages by primary key (Milvus returns no order to page on).
        """
        name = collection_name(model_id)
        expression = filter_expression(flt, tenant)
        rows_matching = self._count(model_id, expression)

        def read(client: MilvusClient, timeout: float) -> set[str]:
            if rows_matching < _QUERY_PAGE:
                rows = client.query(
                    name,
                    filter=expression,
                    output_fields=["person_id"],
                    limit=_QUERY_PAGE,
                    consistency_level="Strong",
                    timeout=timeout,
                )
                return {row["person_id"] for row in rows}
            found: set[str] = set()
            iterator = client.query_iterator(
                name, batch_size=_QUERY_PAGE, filter=expression, output_fields=["person_id"], timeout=timeout
            )
            try:
                while batch := iterator.next():
                    found.update(row["person_id"] for row in batch)
            finally:
                iterator.close()
            return found

        return sorted(self._call(f"list the people of {name}", read, model_id))

    def count_unknown(self, model_id: str, tenant: str, flt: SearchFilter, fact: str) -> int:
        """Records of `tenant` whose `fact` is unknown and that pass the filter's regions and exclusions."""
        return self._count(model_id, unknown_expression(flt, fact, tenant))

    def delete(self, model_id: str, tenant: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        clauses = []
        if person_ids:
            clauses.append(in_list("person_id", person_ids))
        if record_ids:
            clauses.append(in_list("record_id", record_ids))
        return self._delete_matching(model_id, f"{tenant_expression(tenant)} and ({' or '.join(clauses)})")

    def purge_expired(self, model_id: str, now: int) -> int:
        # Opened as a search opens it: after a restart the purge is the first call and finds it released.
        if self.dimension(model_id) is None:  # dropped since it was listed
            return 0
        erased = self._delete_matching(model_id, expired_expression(now))
        if erased:
            log.info("retention purge", collection=collection_name(model_id), erased=erased)
        return erased

    def compact(self, model_id: str) -> None:
        """Flushes, then compacts and waits until Milvus reports the compaction completed."""
        name = collection_name(model_id)
        self._call(f"flush {name}", lambda c, t: c.flush(name, timeout=t), model_id)
        job = self._call(f"compact {name}", lambda c, t: c.compact(name, timeout=t), model_id)
        while True:
            state = self._call(
                f"read the compaction state of {name}", lambda c, t: c.get_compaction_state(job, timeout=t), model_id
            )
            if str(state).lower() in ("completed", "compactionstate.completed", "2"):
                return
            if deadlines.remaining(self._timeout * 60) <= _COMPACTION_POLL_S:
                raise DeadlineExceeded(
                    f"compaction of {name} (job {job}) was still {state} when the deadline came; the rows are "
                    "deleted (invisible to every read) and Milvus finishes reclaiming them on its own"
                )
            time.sleep(_COMPACTION_POLL_S)  # polling a job Milvus runs; bounded by the deadline above

    def flush(self, model_id: str) -> None:
        name = collection_name(model_id)
        self._call(f"flush {name}", lambda c, t: c.flush(name, timeout=t), model_id)

    def list_collections(self) -> list[CollectionInfo]:
        infos = []
        for name, model_id in self._models_by_collection().items():
            dimension = self.dimension(model_id)
            if dimension is None:  # dropped since it was listed
                continue
            infos.append(
                CollectionInfo(
                    model_id=model_id,
                    name=name,
                    dimension=dimension,
                    record_count=self._count(model_id, ""),
                    schema_version=SCHEMA_VERSION,
                )
            )
        return infos

    def stats(self, model_id: str, tenant: str) -> CollectionStats:
        name = collection_name(model_id)
        dimension = self.dimension(model_id) or 0
        index = self._call(f"describe the index of {name}", lambda c, t: c.describe_index(name, "embedding", timeout=t))
        index = dict(index or {})
        build = {k: v for k, v in index.items() if k in ("M", "efConstruction", "nlist", "m", "nbits")}
        if isinstance(index.get("params"), dict):
            build.update(index["params"])
        total = self._count(model_id, "")
        indexed = int(index.get("indexed_rows", 0) or 0)
        return CollectionStats(
            collection=CollectionInfo(model_id, name, dimension, total, SCHEMA_VERSION),
            tenant_record_count=self._count(model_id, tenant_expression(tenant)),
            index_type=str(index.get("index_type", "")),
            index_params=json.dumps(build, sort_keys=True),
            indexed_rows=indexed,
            pending_index_rows=int(index.get("pending_index_rows", 0) or 0),
            index_state=str(index.get("state", "")),
        )

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
            channel, self._search_channel = self._search_channel, None
        if channel is not None:
            channel.close()
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection must not fail shutdown
                client.close()

    # Internals ---------------------------------------------------------------------

    def _count(self, model_id: str, expression: str) -> int:
        name = collection_name(model_id)
        rows = self._call(
            f"count records of {name}",
            lambda c, t: c.query(
                name, filter=expression, output_fields=["count(*)"], consistency_level="Strong", timeout=t
            ),
            model_id,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def _delete_matching(self, model_id: str, expression: str) -> int:
        """Deletes every row matching `expression`, page by page; returns the exact number deleted."""
        name = collection_name(model_id)
        erased = 0
        while True:
            # Find the keys first (delete's own count differs between backends); Strong sees every write.
            rows = self._call(
                f"find records to delete in {name}",
                lambda c, t: c.query(
                    name,
                    filter=expression,
                    output_fields=["key"],
                    limit=_QUERY_PAGE,
                    consistency_level="Strong",
                    timeout=t,
                ),
                model_id,
            )
            keys = sorted({row["key"] for row in rows})
            if not keys:
                return erased
            self._call(f"delete from {name}", lambda c, t, keys=keys: c.delete(name, ids=keys, timeout=t), model_id)
            erased += len(keys)
            if len(rows) < _QUERY_PAGE:
                return erased

    def _connect(self) -> MilvusClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = MilvusClient(
                        uri=self._uri, token=self._token, timeout=deadlines.remaining(self._timeout)
                    )
                except Exception as exc:  # noqa: BLE001 - any failure to open Milvus means it is unavailable
                    raise Unavailable(
                        f"cannot connect to Milvus at {self._shown_uri}: {_describe(exc)} "
                        "(check --milvus-uri / KINSHIP_MILVUS_URI; a Milvus Lite file admits one process only)"
                    ) from exc
                try:
                    self._server_version = self._supported_version(self._client)
                except BaseException:
                    # Connected but refused (or the version unread): the next call connects and checks again.
                    client, self._client = self._client, None
                    with contextlib.suppress(Exception):
                        client.close()
                    raise
                handler = _handler_of(self._client)
                self._search_channel = SearchChannel.following(handler, self._token) if handler else None
                log.info(
                    "connected to milvus",
                    uri=self._shown_uri,
                    version=self._server_version,
                    search_channel=self._search_channel is not None,
                )
            return self._client

    def _supported_version(self, client: MilvusClient) -> str:
        """The version the just-opened client's server reports, once it is in the supported range.

        Checked on every connection, not only at start: an indexer that started while Milvus was
        down must not begin writing to a server of a version no test has run.
        """
        try:
            reported = str(client.get_server_version(timeout=deadlines.remaining(self._timeout)))
        except Exception as exc:  # noqa: BLE001 - a server that cannot say its version is not usable yet
            raise Unavailable(
                f"Milvus at {self._shown_uri} did not tell its version: {_describe(exc)}; retry shortly"
            ) from exc
        server_version.check(reported, self._shown_uri)
        return reported

    def _call(
        self,
        operation: str,
        function: Callable[[MilvusClient, float], T],
        model_id: str | None = None,
        *,
        retry: bool = True,
    ) -> T:
        """Runs `function(client, timeout)` within the caller's deadline, retrying transient failures.

        Failures become domain errors that name the URI: a missing collection NOT_FOUND, a
        passed deadline DEADLINE_EXCEEDED, anything else UNAVAILABLE.
        """
        attempt = 0
        # A caller without a deadline still gets an answer: its retries stop after a bounded time
        # (long enough for Milvus to load a collection it came back with released).
        no_deadline = deadlines.CALL_DEADLINE.get() is None
        retry_until = time.monotonic() + max(self._timeout, NO_DEADLINE_RETRY_S) if no_deadline else None
        while True:
            timeout = deadlines.remaining(self._timeout)
            if timeout <= 0:
                raise DeadlineExceeded(
                    f"the call's deadline passed before Milvus at {self._shown_uri} could {operation}"
                    + (f" (after {attempt} retries)" if attempt else "")
                )
            try:
                return function(self._connect(), timeout)
            except Unavailable as exc:  # could not connect at all
                failure: Exception = exc
                transient = True
            except grpc.RpcError as exc:  # from the calls made on pymilvus's stub directly
                failure, transient = exc, exc.code() in _TRANSIENT_CODES
            except MilvusException as exc:
                if model_id is not None and _is_missing_collection(exc):
                    self._forget(model_id)
                    raise NotFound(
                        f"the collection of model {model_id!r} is gone from Milvus at {self._shown_uri}",
                        reason="MODEL_NOT_FOUND",
                    ) from exc
                if model_id is not None and _is_not_loaded(exc):
                    # Milvus restarted and came back with the collection released: load it, then retry.
                    name = collection_name(model_id)
                    log.warning("collection not loaded; loading it", collection=name)
                    failure, transient = exc, True
                    with contextlib.suppress(MilvusException, Unavailable):
                        self._load_when_complete(self._connect(), name, max(0.1, deadlines.remaining(self._timeout)))
                else:
                    failure, transient = exc, _is_transient(exc)
            if not (retry and transient):
                raise _unavailable(self._shown_uri, operation, failure)
            delay = min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)
            left = deadlines.remaining(self._timeout)
            if retry_until is not None:
                left = min(left, retry_until - time.monotonic())
            if left <= delay + _SHORTEST_TRY_S:  # no time for a try worth making: say what failed
                raise _unavailable(self._shown_uri, operation, failure, attempts=attempt + 1)
            log.info("retrying milvus call", operation=operation, attempt=attempt + 1, error=_describe(failure))
            time.sleep(delay)  # backoff before a retry, bounded by the caller's deadline
            attempt += 1

    def _load_when_complete(self, client: MilvusClient, name: str, timeout: float) -> None:
        """Loads a collection once every index of the schema exists.

        The server refuses new indexes on a loaded collection, so loading one that another
        thread or process is still creating would break its creation: that is reported as
        a transient failure instead (the caller retries).
        """
        missing = set(_SCALAR_INDEXED) | {"embedding"}
        missing -= set(client.list_indexes(name, timeout=timeout))
        if name in self._creating or missing:
            raise Unavailable(
                f"collection {name} is still being created in Milvus at {self._shown_uri} "
                f"(indexes missing: {', '.join(sorted(missing)) or 'none yet'}); retry shortly"
            )
        client.load_collection(name, timeout=timeout)

    def _replace_function(self) -> Callable[[MilvusClient, str, Columns, float], object]:
        """How rows are inserted-or-replaced on this backend.

        Milvus 2.3's upsert puts rows in the wrong partition of a partition-key collection
        (a tenant filter then misses them; measured on 2.3.5), so there the keys that exist
        are looked up (a Strong read: it sees every acknowledged write), those rows deleted and
        the new ones inserted. A failure in between leaves the call unacknowledged, and
        resending it restores the rows. Lite and 2.4+ upsert.

        Only keys that exist are deleted: Milvus 2.3 logs a delete against the segments
        being filled whether or not the key is there, and a segment whose delete log passes
        a fifth of its rows is rewritten and indexed again. Deleting every key of a
        million-row bulk load so rewrote both of its 500k-row segments after the load
        (docs/benchmarks.md); a load of new records now deletes nothing.
        """
        if self._upsert_works is None:
            version = self.server_version()
            self._upsert_works = self._lite or not _older_than(version, (2, 4))
            log.info("milvus server version", version=version, native_upsert=self._upsert_works)
        if self._upsert_works:
            return lambda client, name, rows, timeout: _write_columns(client, "upsert", name, rows, timeout)

        def delete_then_insert(client: MilvusClient, name: str, rows: Columns, timeout: float) -> object:
            tenant = rows.strings["tenant"][0]  # one call writes one tenant's records
            found = client.query(
                name,
                filter=f"{tenant_expression(tenant)} and {in_list('key', rows.strings['key'])}",
                output_fields=["key"],
                consistency_level="Strong",
                timeout=timeout,
            )
            if found:
                client.delete(name, ids=[row["key"] for row in found], timeout=timeout)
            return _write_columns(client, "insert", name, rows, timeout)

        return delete_then_insert

    def _forget(self, model_id: str) -> None:
        self._dimensions.pop(model_id, None)
        self._index_types.pop(model_id, None)
        self._model_of_collection.pop(collection_name(model_id), None)

    def _models_by_collection(self, *, retry: bool = True) -> dict[str, str]:
        names = [
            n
            for n in self._call("list collections", lambda c, t: c.list_collections(timeout=t), retry=retry)
            if n.startswith(COLLECTION_PREFIX)
        ]
        for name in names:
            if name not in self._model_of_collection:
                description = self._call(
                    f"describe collection {name}", lambda c, t, n=name: c.describe_collection(n, timeout=t), retry=retry
                )
                properties = description.get("properties", {})
                model_id = properties.get(MODEL_ID_PROPERTY)
                if model_id:
                    check_schema_version(name, model_id, properties)
                self._model_of_collection[name] = model_id
        # Collections without the property were not made by the indexer: not part of the gallery.
        return {name: self._model_of_collection[name] for name in names if self._model_of_collection.get(name)}

    def _create_collection(self, model_id: str, name: str, dimension: int) -> None:
        with self._create_lock:
            if self._call(f"look up collection {name}", lambda c, t: c.has_collection(name, timeout=t)):
                existing = self.dimension(model_id)  # another call created it meanwhile
                if existing != dimension:
                    raise FailedPrecondition(
                        f"model {model_id!r} holds {existing}-dimensional embeddings, these have {dimension}"
                    )
                return
            schema, index_params = self._schema(model_id, dimension)
            self._creating.add(name)
            try:
                self._create(name, model_id, schema, index_params)
            except Unavailable:
                # Milvus Lite can answer the index-state poll that ends pymilvus's create_collection
                # with "no index on collection" just after creating the indexes (seen once in the
                # integration suite). Where the collection exists, the load below waits, within
                # the deadline, until every index is listed, and says which are missing if not.
                if not self._call(f"look up collection {name}", lambda c, t: c.has_collection(name, timeout=t)):
                    raise
                log.warning(
                    "collection created but its creation reported a failure; awaiting its indexes", collection=name
                )
            finally:
                self._creating.discard(name)
            self._call(f"load collection {name}", lambda c, t: self._load_when_complete(c, name, t))
            log.info(
                "created collection",
                collection=name,
                model_id=model_id,
                dimension=dimension,
                schema_version=SCHEMA_VERSION,
                index_type=self._vector_index.index_type,
            )
        self._dimensions[model_id] = dimension
        self._index_types[model_id] = self._vector_index.index_type
        self._model_of_collection[name] = model_id

    def _create(self, name: str, model_id: str, schema: Any, index_params: Any) -> None:
        shards = {} if self._lite else {"num_shards": self._shards}
        self._call(
            f"create collection {name}",
            lambda c, t: c.create_collection(
                name,
                schema=schema,
                index_params=index_params,
                consistency_level="Bounded",
                **shards,
                properties={MODEL_ID_PROPERTY: model_id, SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION)},
                timeout=t,
            ),
            retry=False,
        )

    def _schema(self, model_id: str, dimension: int) -> tuple[Any, Any]:
        """The collection schema of `SCHEMA_VERSION` and every index, vector and scalar."""
        schema = MilvusClient.create_schema(
            auto_id=False,
            enable_dynamic_field=False,
            partition_key_field="tenant",
            description=f"kinship-search gallery of model {model_id}, schema v{SCHEMA_VERSION}",
        )
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=KEY_MAX)
        schema.add_field("record_id", DataType.VARCHAR, max_length=RECORD_ID_MAX)
        schema.add_field("person_id", DataType.VARCHAR, max_length=RECORD_ID_MAX)
        schema.add_field("tenant", DataType.VARCHAR, max_length=TENANT_MAX, is_partition_key=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("birth_year", DataType.INT64)
        schema.add_field("sex", DataType.INT64)
        schema.add_field("region", DataType.VARCHAR, max_length=REGION_MAX)
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_MAX)
        schema.add_field("captured_at", DataType.INT64)
        schema.add_field("enrolled_at", DataType.INT64)
        schema.add_field("expires_at", DataType.INT64)
        index_params = MilvusClient.prepare_index_params()
        index_params.add_index(
            field_name="embedding",
            index_type=self._vector_index.index_type,
            metric_type="COSINE",
            params=self._vector_index.build_params,
        )
        for field_name, kind in _SCALAR_INDEXED.items():
            index_params.add_index(field_name=field_name, index_type=_scalar_index_type(kind, lite=self._lite))
        return schema, index_params


def check_schema_version(name: str, model_id: str, properties: dict) -> None:
    """FailedPrecondition naming the migration when a collection was made by another schema version."""
    stored = properties.get(SCHEMA_VERSION_PROPERTY)
    version = int(stored) if stored and str(stored).isdigit() else 1
    if version == SCHEMA_VERSION:
        return
    if version < SCHEMA_VERSION:
        raise FailedPrecondition(
            f"Milvus collection {name} (model {model_id!r}) has gallery schema version {version}; this indexer "
            f"reads and writes version {SCHEMA_VERSION} (fields tenant, captured_at and expires_at were added in 2). "
            "Migrate it: export its records (GetRecords with the previous indexer), drop the collection, "
            "and enrol them again through this indexer",
            reason="SCHEMA_VERSION_MISMATCH",
            metadata={"collection": name, "found": str(version), "expected": str(SCHEMA_VERSION)},
        )
    raise FailedPrecondition(
        f"Milvus collection {name} (model {model_id!r}) has gallery schema version {version}, newer than this "
        f"indexer's {SCHEMA_VERSION}: run the indexer release that made it",
        reason="SCHEMA_VERSION_MISMATCH",
        metadata={"collection": name, "found": str(version), "expected": str(SCHEMA_VERSION)},
    )


@dataclass(frozen=True)
class Columns:
    """Records as the columns of a Milvus write: one list per scalar field, one matrix of vectors.

    Built column by column (no dict per row): at bulk-enrolment rates the per-row
    Python objects cost more CPU than Milvus spends storing the rows.
    """

    strings: dict[str, list[str]]
    ints: dict[str, list[int]]
    vectors: np.ndarray

    @classmethod
    def of(cls, records: Sequence[GalleryRecord], tenant: str, now: int) -> Columns:
        attrs = [record.attributes for record in records]
        strings = {
            "key": [record_key(tenant, record.record_id) for record in records],
            "record_id": [record.record_id for record in records],
            "person_id": [record.person_id for record in records],
            "tenant": [tenant] * len(records),
            "region": [a.region for a in attrs],
            "source": [a.source for a in attrs],
        }
        ints = {
            "birth_year": [UNKNOWN_BIRTH_YEAR if a.birth_year is None else int(a.birth_year) for a in attrs],
            "sex": [int(a.sex) for a in attrs],
            "captured_at": [NO_TIME if r.captured_at is None else int(r.captured_at) for r in records],
            "enrolled_at": [now] * len(records),
            "expires_at": [NO_TIME if r.expires_at is None else int(r.expires_at) for r in records],
        }
        vectors = np.stack([np.asarray(record.embedding, dtype=np.float32) for record in records])
        return cls(strings, ints, vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def slice(self, start: int, stop: int) -> Columns:
        return Columns(
            {k: v[start:stop] for k, v in self.strings.items()},
            {k: v[start:stop] for k, v in self.ints.items()},
            self.vectors[start:stop],
        )

    def rows(self) -> list[dict]:
        """The same records as pymilvus row dicts."""
        names = [*self.strings, *self.ints]
        values = zip(*self.strings.values(), *self.ints.values(), strict=True)
        return [
            {**dict(zip(names, row, strict=True)), "embedding": v} for row, v in zip(values, self.vectors, strict=True)
        ]


def _handler_of(client: MilvusClient) -> Any:
    """pymilvus's connection handler (address, credentials, stub), or None where the client has none."""
    return getattr(client, "_get_connection", lambda: None)()


def _stub_of(client: MilvusClient) -> Any:
    """pymilvus's gRPC stub (its connection and credentials), or None where its handler has none."""
    return getattr(_handler_of(client), "_stub", None)


def _write_columns(client: MilvusClient, operation: str, name: str, rows: Columns, timeout: float) -> object:
    """Inserts or upserts rows as one column-wise request.

    pymilvus converts row dicts value by value (about 1 ms per 512-d row, measured with
    pymilvus 3.0.2), which would cap ingest near 1,000 rows/s; building the request's
    columns directly costs about a tenth of that. Falls back to pymilvus's own call where
    its gRPC handler is not the one this was written against.
    """
    stub = _stub_of(client)
    if stub is None:
        return getattr(client, operation)(name, rows.rows(), timeout=timeout)
    fields = [
        schema_pb2.FieldData(
            field_name=field,
            type=DataType.VARCHAR,
            scalars=schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=values)),
        )
        for field, values in rows.strings.items()
    ]
    fields += [
        schema_pb2.FieldData(
            field_name=field,
            type=DataType.INT64,
            scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=values)),
        )
        for field, values in rows.ints.items()
    ]
    fields.append(
        schema_pb2.FieldData(
            field_name="embedding",
            type=DataType.FLOAT_VECTOR,
            vectors=schema_pb2.VectorField(dim=rows.vectors.shape[1], float_vector=_float_array(rows.vectors)),
        )
    )
    if operation == "upsert":
        request = milvus_pb2.UpsertRequest(collection_name=name, fields_data=fields, num_rows=len(rows))
        response = stub.Upsert(request, timeout=timeout)
    else:
        request = milvus_pb2.InsertRequest(collection_name=name, fields_data=fields, num_rows=len(rows))
        response = stub.Insert(request, timeout=timeout)
    check_status(response.status)
    return response


def _search_columns(
    client: MilvusClient,
    name: str,
    queries: np.ndarray,
    top_k: int,
    expression: str,
    search_params: dict[str, Any],
    consistency_level: str,
    timeout: float,
) -> list[list[Hit]]:
    """Searches with one request built here and reads the hits straight from the result's columns.

    Through pymilvus (its request checks, its interceptors, then a dict per hit) a search
    cost the calling thread 1.72 ms of CPU at the median, this way 1.18 (docs/benchmarks.md);
    on a shared machine that CPU is taken from Milvus. The request is the one pymilvus sends (the same
    parameters, consistency level and guarantee timestamp). Falls back to pymilvus's own
    call where its gRPC handler is not the one this was written against.
    """
    stub = _stub_of(client)
    if stub is None:
        results = client.search(
            name,
            data=list(np.asarray(queries, dtype=np.float32)),
            limit=top_k,
            filter=expression,
            output_fields=list(HIT_FIELDS),
            search_params=search_params,
            consistency_level=consistency_level,
            timeout=timeout,
        )
        return [[_hit(hit) for hit in hits] for hits in results]
    request = _search_request(name, queries, top_k, expression, search_params, consistency_level)
    response = stub.Search(request, timeout=timeout)
    check_status(response.status)
    return _hits_of(response.results, len(queries))


def _search_request(
    name: str,
    queries: np.ndarray,
    top_k: int,
    expression: str,
    search_params: dict[str, Any],
    consistency_level: str,
) -> milvus_pb2.SearchRequest:
    """The request pymilvus sends for a search (the same parameters, consistency level and guarantee timestamp)."""
    vectors = np.ascontiguousarray(queries, dtype="<f4")
    placeholder = common_pb2.PlaceholderGroup(
        placeholders=[
            common_pb2.PlaceholderValue(
                tag="$0", type=common_pb2.PlaceholderType.FloatVector, values=[row.tobytes() for row in vectors]
            )
        ]
    )
    params = {**search_params.get("params", {}), "metric_type": search_params["metric_type"]}
    level = common_pb2.ConsistencyLevel.Value(consistency_level)
    return milvus_pb2.SearchRequest(
        collection_name=name,
        dsl=expression,
        dsl_type=common_pb2.DslType.BoolExprV1,
        output_fields=HIT_FIELDS,
        search_params=[
            common_pb2.KeyValuePair(key="topk", value=str(top_k)),
            common_pb2.KeyValuePair(key="round_decimal", value="-1"),
            common_pb2.KeyValuePair(key="ignore_growing", value="False"),
            common_pb2.KeyValuePair(key="metric_type", value=search_params["metric_type"]),
            common_pb2.KeyValuePair(key="params", value=json.dumps(params)),
        ],
        placeholder_group=placeholder.SerializeToString(),
        nq=len(vectors),
        # Strong: Milvus picks the newest timestamp (0); Bounded: its configured staleness (2).
        guarantee_timestamp=0 if level == common_pb2.ConsistencyLevel.Strong else _BOUNDED_TS,
        consistency_level=level,
        use_default_consistency=False,
    )


async def _hits_when_answered(call: Awaitable[milvus_pb2.SearchResults], queries: int) -> list[list[Hit]] | None:
    """The hits of a search sent on the search channel; None where it failed.

    Cancelling the caller cancels the call (grpc.aio does so for an awaited call).
    """
    try:
        response = await call
        check_status(response.status)
        return _hits_of(response.results, queries)
    except (grpc.RpcError, MilvusException) as exc:
        log.info("search on the event loop failed; retrying on a gallery thread", error=_describe(exc))
        return None


def _hits_of(data: schema_pb2.SearchResultData, queries: int) -> list[list[Hit]]:
    """The hits of each query from a search result's columns (hits of all queries, concatenated)."""
    if not any(data.topks):  # no hit for any query: Milvus sends no columns then
        return [[] for _ in range(queries)]
    columns = {column.field_name: column.scalars for column in data.fields_data}
    missing = [f for f in HIT_FIELDS if f not in columns]
    if missing:
        raise MilvusException(message=f"Milvus left out the search output fields {missing}")
    record_ids = columns["record_id"].string_data.data
    person_ids = columns["person_id"].string_data.data
    birth_years = columns["birth_year"].long_data.data
    sexes = columns["sex"].long_data.data
    regions = columns["region"].string_data.data
    sources = columns["source"].string_data.data
    scores = data.scores
    hits: list[list[Hit]] = []
    start = 0
    for count in data.topks:
        hits.append(
            [
                Hit(
                    record_id=record_ids[i],
                    person_id=person_ids[i],
                    similarity=clamp_similarity(scores[i]),
                    attributes=_attributes_of(birth_years[i], sexes[i], regions[i], sources[i]),
                )
                for i in range(start, start + count)
            ]
        )
        start += count
    hits.extend([] for _ in range(queries - len(hits)))
    return hits


def _float_array(vectors: np.ndarray) -> schema_pb2.FloatArray:
    """A FloatArray parsed from the packed wire form (field 1, little-endian float32): a copy
    of the bytes instead of a Python float per value (about 13 times faster at 512 dimensions)."""
    raw = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return schema_pb2.FloatArray.FromString(b"\x0a" + _varint(len(raw)) + raw)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _older_than(version: str, minimum: tuple[int, int]) -> bool:
    """Whether a server version such as "v2.3.5" or "v2.3.5-lite" is below `minimum` (unknown: not older)."""
    match = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return bool(match) and (int(match.group(1)), int(match.group(2))) < minimum


def _scalar_index_type(kind: str, *, lite: bool) -> str:
    if lite:
        return "INVERTED"  # the only scalar index Milvus Lite has
    return "STL_SORT" if kind == "number" else "Trie"  # what Milvus 2.3 has (2.4+ keeps both)


def _unavailable(uri: str, operation: str, failure: Exception, attempts: int = 0) -> Unavailable:
    tried = f" (tried {attempts + 1} times)" if attempts else ""
    if isinstance(failure, Unavailable):
        message = f"{failure.message}{tried}"
    else:
        message = f"Milvus at {uri} failed to {operation}: {_describe(failure)}{tried}"
    error = Unavailable(message)
    error.__cause__ = failure
    return error


def _vector_dimension(description: dict) -> int:
    for entry in description.get("fields", []):
        if entry.get("type") == DataType.FLOAT_VECTOR:
            return int(entry["params"]["dim"])
    raise FailedPrecondition(f"Milvus collection {description.get('collection_name')} has no float vector field")


def _attributes(fields: dict) -> Attributes:
    return _attributes_of(fields["birth_year"], fields["sex"], fields["region"], fields["source"])


def _attributes_of(birth_year: int, sex: int, region: str, source: str) -> Attributes:
    return Attributes(
        birth_year=None if birth_year == UNKNOWN_BIRTH_YEAR else int(birth_year),
        sex=Sex(sex) if sex in Sex._value2member_map_ else Sex.UNSPECIFIED,
        region=region,
        source=source,
    )


def _time(value: Any) -> int | None:
    return None if value in (None, NO_TIME) else int(value)


def _hit(hit: dict) -> Hit:
    entity = hit.get("entity") or {}
    return Hit(
        record_id=entity["record_id"],
        person_id=entity["person_id"],
        similarity=clamp_similarity(float(hit["distance"])),
        attributes=_attributes(entity),
    )


def _record(row: dict, tenant: str) -> GalleryRecord:
    return GalleryRecord(
        record_id=row["record_id"],
        person_id=row["person_id"],
        embedding=np.asarray(row.get("embedding", ()), dtype=np.float32),
        attributes=_attributes(row),
        captured_at=_time(row.get("captured_at")),
        expires_at=_time(row.get("expires_at")),
        enrolled_at=_time(row.get("enrolled_at")),
        tenant=tenant,
    )


def _is_missing_collection(exc: MilvusException) -> bool:
    text = _describe(exc).lower()
    return "collection" in text and ("not found" in text or "not exist" in text or "can't find" in text)


def _is_not_loaded(exc: MilvusException) -> bool:
    text = _describe(exc).lower()
    # The server: "collection not loaded"; Lite: "... is in state 'released'; call load() before ...".
    return "not loaded" in text or "collection not load" in text or "call load()" in text


# Words of pymilvus/Milvus messages for failures that a later try may not meet.
_TRANSIENT_WORDS = (
    "unavailable",
    "connect",
    "deadline",
    "timeout",
    "timed out",
    "not ready",
    "not healthy",
    "service not",
    "rate limit",
    "retry",
    "node not",
    "no available",
    "channel",
    "shard",
)


# gRPC codes of failures that a later try may not meet (pymilvus maps the same ones to retries).
_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def _is_transient(exc: MilvusException) -> bool:
    if isinstance(exc, MilvusUnavailableException):
        return True
    text = _describe(exc).lower()
    return any(word in text for word in _TRANSIENT_WORDS)


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)
