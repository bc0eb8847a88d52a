"""The gallery in Milvus, through pymilvus `MilvusClient`.

Works against both backends the project supports (see docs/milvus-notes.md):
- Milvus Lite: a local `.db` file (the default). Lite allows ONE process per data
  file, so the indexer must be the only process that opens it; scale out by
  pointing every indexer replica at a Milvus server instead.
- A Milvus server (standalone or distributed) by `http(s)://host:port` URI.

Differences handled here: the primary key of a search hit is `hit["id"]` on the
server and `hit["record_id"]` on Lite; Lite drops a collection's description, so
the exact model id is kept in a collection property; row counts come from a
`count(*)` query (the server's collection stats stay 0 until a flush). Only the
vector field is indexed (HNSW, COSINE, declared at creation because the server
refuses new indexes on a loaded collection); scalar filters run without indexes,
since scalar index types differ between the backends (Lite: INVERTED only; server
2.3: STL_SORT/Trie).

Filter expressions are built here from typed fields only. Every string put into
one has already been validated against a strict character set, and `quote`
checks it again, so no caller text can change an expression's meaning.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from kinship.runtime.errors import FailedPrecondition, NotFound, Unavailable
from kinship.runtime.logs import get_logger

from ..domain.model import Attributes, CollectionInfo, GalleryRecord, Hit, SearchFilter, Sex
from ..domain.rules import RECORD_ID_MAX, REGION_MAX, SOURCE_MAX, clamp_similarity

log = get_logger("kinship.indexer.milvus")

COLLECTION_PREFIX = "faces_"
MODEL_ID_PROPERTY = "kinship.model_id"
#: Stored birth year of a person whose birth year is not known; birth-year filters exclude it.
UNKNOWN_BIRTH_YEAR = -1
_SANITIZED_MAX = 64
_HASH_CHARS = 12
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9._:-]+")
# Rows per upsert call: keeps each pymilvus message well under gRPC size limits.
_UPSERT_CHUNK = 2000
# HNSW build parameters; `ef` at search time is at least top_k (Milvus requires it).
_HNSW = {"M": 16, "efConstruction": 128}
_MIN_EF = 64
_CONSISTENCY = "Strong"  # an acknowledged upsert is visible to the next search
_HIT_FIELDS = ["person_id", "birth_year", "sex", "region", "source"]
_RECORD_FIELDS = ["record_id", "person_id", "embedding", *(f for f in _HIT_FIELDS if f != "person_id")]


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


def filter_expression(flt: SearchFilter) -> str:
    """The Milvus boolean expression for a typed filter; "" when it restricts nothing."""
    parts: list[str] = []
    if flt.restricts_birth_year:
        # Unknown birth years are stored as a sentinel that a range must never admit.
        parts.append(f"birth_year != {UNKNOWN_BIRTH_YEAR}")
        if flt.birth_year_min is not None:
            parts.append(f"birth_year >= {int(flt.birth_year_min)}")
        if flt.birth_year_max is not None:
            parts.append(f"birth_year <= {int(flt.birth_year_max)}")
    if flt.sex != Sex.UNSPECIFIED:
        parts.append(f"sex == {int(Sex(flt.sex))}")
    if flt.regions:
        parts.append(in_list("region", flt.regions))
    if flt.exclude_person_ids:
        parts.append(in_list("person_id", flt.exclude_person_ids, negate=True))
    return " and ".join(parts)


def records_expression(person_ids: Sequence[str], flt: SearchFilter) -> str:
    """The expression of GetRecords: these people's records that pass the typed filter."""
    people = in_list("person_id", person_ids)
    restriction = filter_expression(flt)
    return f"{people} and ({restriction})" if restriction else people


def redact_uri(uri: str) -> str:
    """The URI without user:password, fit for messages and logs."""
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return uri


class MilvusGallery:
    """`GalleryStore` over pymilvus. Thread-safe; every method blocks (run it off the event loop).

    The client is created on first use, so that an unreachable server leaves the
    indexer up and NOT_SERVING instead of failing at start.
    """

    def __init__(self, uri: str, *, token: str = "", timeout: float = 10.0):
        self._uri = uri
        self._shown_uri = redact_uri(uri)
        self._token = token
        self._timeout = timeout
        self._client_lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._client: MilvusClient | None = None
        # Collections are never dropped by the indexer, so what is learnt about one stays true;
        # an entry is forgotten when Milvus says the collection is gone.
        self._dimensions: dict[str, int] = {}
        self._model_of_collection: dict[str, str | None] = {}

    @property
    def uri(self) -> str:
        return self._shown_uri

    # GalleryStore ------------------------------------------------------------------

    def ping(self) -> None:
        with self._errors("list collections"):
            self._connect().list_collections(timeout=self._timeout)

    def model_ids(self) -> list[str]:
        return sorted(self._models_by_collection().values())

    def dimension(self, model_id: str) -> int | None:
        if model_id in self._dimensions:
            return self._dimensions[model_id]
        name = collection_name(model_id)
        client = self._connect()
        with self._errors(f"describe collection {name}"):
            if not client.has_collection(name, timeout=self._timeout):
                return None
            description = client.describe_collection(name, timeout=self._timeout)
            stored_model = description.get("properties", {}).get(MODEL_ID_PROPERTY)
            if stored_model != model_id:
                raise FailedPrecondition(
                    f"Milvus collection {name} exists but holds model {stored_model!r}, not {model_id!r}; "
                    "it was not made by the indexer: rename or drop it"
                )
            # A collection opened again after a restart may be released; loading a loaded one is a no-op.
            client.load_collection(name, timeout=self._timeout)
        dimension = _vector_dimension(description)
        self._dimensions[model_id] = dimension
        return dimension

    def upsert(self, model_id: str, dimension: int, records: Sequence[GalleryRecord]) -> str:
        name = collection_name(model_id)
        if self.dimension(model_id) is None:
            self._create_collection(model_id, name, dimension)
        now = int(time.time())
        rows = [_row(record, now) for record in records]
        client = self._connect()
        with self._errors(f"upsert into {name}", model_id):
            for start in range(0, len(rows), _UPSERT_CHUNK):
                client.upsert(name, rows[start : start + _UPSERT_CHUNK], timeout=self._timeout)
        return name

    def search(self, model_id: str, queries: np.ndarray, top_k: int, flt: SearchFilter) -> list[list[Hit]]:
        name = collection_name(model_id)
        with self._errors(f"search {name}", model_id):
            results = self._connect().search(
                name,
                data=queries.astype(np.float32).tolist(),
                limit=top_k,
                filter=filter_expression(flt),
                output_fields=_HIT_FIELDS,
                search_params={"metric_type": "COSINE", "params": {"ef": max(top_k, _MIN_EF)}},
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
        return [[_hit(hit) for hit in hits] for hits in results]

    def get_records(self, model_id: str, person_ids: Sequence[str], flt: SearchFilter) -> list[GalleryRecord]:
        name = collection_name(model_id)
        with self._errors(f"read records from {name}", model_id):
            rows = self._connect().query(
                name,
                filter=records_expression(person_ids, flt),
                output_fields=_RECORD_FIELDS,
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
        return [_record(row) for row in rows]

    def delete(self, model_id: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        name = collection_name(model_id)
        clauses = []
        if person_ids:
            clauses.append(in_list("person_id", person_ids))
        if record_ids:
            clauses.append(in_list("record_id", record_ids))
        client = self._connect()
        with self._errors(f"delete from {name}", model_id):
            # Find the matching keys first: delete's own count differs between backends.
            rows = client.query(
                name,
                filter=" or ".join(clauses),
                output_fields=["record_id"],
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
            keys = sorted({row["record_id"] for row in rows})
            if keys:
                client.delete(name, ids=keys, timeout=self._timeout)
        return len(keys)

    def list_collections(self) -> list[CollectionInfo]:
        client = self._connect()
        infos = []
        for name, model_id in self._models_by_collection().items():
            dimension = self.dimension(model_id)
            if dimension is None:  # dropped since it was listed
                continue
            with self._errors(f"count records of {name}", model_id):
                rows = client.query(
                    name, filter="", output_fields=["count(*)"], consistency_level=_CONSISTENCY, timeout=self._timeout
                )
            count = int(rows[0]["count(*)"]) if rows else 0
            infos.append(CollectionInfo(model_id=model_id, name=name, dimension=dimension, record_count=count))
        return infos

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection must not fail shutdown
                client.close()

    # Internals ---------------------------------------------------------------------

    def _connect(self) -> MilvusClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = MilvusClient(uri=self._uri, token=self._token, timeout=self._timeout)
                except Exception as exc:  # noqa: BLE001 - any failure to open Milvus means it is unavailable
                    raise Unavailable(
                        f"cannot connect to Milvus at {self._shown_uri}: {_describe(exc)} "
                        "(check --milvus-uri / KINSHIP_MILVUS_URI; a Milvus Lite file admits one process only)"
                    ) from exc
                log.info("connected to milvus", uri=self._shown_uri)
            return self._client

    def _models_by_collection(self) -> dict[str, str]:
        client = self._connect()
        with self._errors("list collections"):
            names = [n for n in client.list_collections(timeout=self._timeout) if n.startswith(COLLECTION_PREFIX)]
            for name in names:
                if name not in self._model_of_collection:
                    description = client.describe_collection(name, timeout=self._timeout)
                    self._model_of_collection[name] = description.get("properties", {}).get(MODEL_ID_PROPERTY)
        # Collections without the property were not made by the indexer: not part of the gallery.
        return {name: self._model_of_collection[name] for name in names if self._model_of_collection.get(name)}

    def _create_collection(self, model_id: str, name: str, dimension: int) -> None:
        client = self._connect()
        with self._create_lock, self._errors(f"create collection {name}"):
            if client.has_collection(name, timeout=self._timeout):  # another call created it meanwhile
                existing = self.dimension(model_id)
                if existing != dimension:
                    raise FailedPrecondition(
                        f"model {model_id!r} holds {existing}-dimensional embeddings, these have {dimension}"
                    )
                return
            schema = MilvusClient.create_schema(
                auto_id=False, enable_dynamic_field=False, description=f"kinship-search gallery of model {model_id}"
            )
            schema.add_field("record_id", DataType.VARCHAR, is_primary=True, max_length=RECORD_ID_MAX)
            schema.add_field("person_id", DataType.VARCHAR, max_length=RECORD_ID_MAX)
            schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimension)
            schema.add_field("birth_year", DataType.INT64)
            schema.add_field("sex", DataType.INT64)
            schema.add_field("region", DataType.VARCHAR, max_length=REGION_MAX)
            schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_MAX)
            schema.add_field("enrolled_at", DataType.INT64)
            index_params = client.prepare_index_params()
            index_params.add_index(field_name="embedding", index_type="HNSW", metric_type="COSINE", params=_HNSW)
            client.create_collection(
                name,
                schema=schema,
                consistency_level=_CONSISTENCY,
                properties={MODEL_ID_PROPERTY: model_id},
                timeout=self._timeout,
            )
            # Index before load (the server refuses index changes on a loaded collection).
            # sync=False: pymilvus's wait for the build calls AllocTimestamp, which Milvus
            # Lite does not implement (it logs a traceback); load_collection waits instead.
            client.create_index(name, index_params, timeout=self._timeout, sync=False)
            client.load_collection(name, timeout=self._timeout)
            log.info("created collection", collection=name, model_id=model_id, dimension=dimension)
        self._dimensions[model_id] = dimension
        self._model_of_collection[name] = model_id

    @contextlib.contextmanager
    def _errors(self, operation: str, model_id: str | None = None) -> Iterator[None]:
        """Turns pymilvus failures into domain errors that name the URI."""
        try:
            yield
        except MilvusException as exc:
            if model_id is not None and _is_missing_collection(exc):
                self._dimensions.pop(model_id, None)
                self._model_of_collection.pop(collection_name(model_id), None)
                raise NotFound(
                    f"the collection of model {model_id!r} is gone from Milvus at {self._shown_uri}",
                    reason="MODEL_NOT_FOUND",
                ) from exc
            raise Unavailable(f"Milvus at {self._shown_uri} failed to {operation}: {_describe(exc)}") from exc


def _vector_dimension(description: dict) -> int:
    for field in description.get("fields", []):
        if field.get("type") == DataType.FLOAT_VECTOR:
            return int(field["params"]["dim"])
    raise FailedPrecondition(f"Milvus collection {description.get('collection_name')} has no float vector field")


def _row(record: GalleryRecord, now: int) -> dict:
    attrs = record.attributes
    return {
        "record_id": record.record_id,
        "person_id": record.person_id,
        "embedding": np.asarray(record.embedding, dtype=np.float32).tolist(),
        "birth_year": UNKNOWN_BIRTH_YEAR if attrs.birth_year is None else int(attrs.birth_year),
        "sex": int(attrs.sex),
        "region": attrs.region,
        "source": attrs.source,
        "enrolled_at": now,
    }


def _attributes(fields: dict) -> Attributes:
    birth_year = int(fields["birth_year"])
    sex = int(fields["sex"])
    return Attributes(
        birth_year=None if birth_year == UNKNOWN_BIRTH_YEAR else birth_year,
        sex=Sex(sex) if sex in Sex._value2member_map_ else Sex.UNSPECIFIED,
        region=fields["region"],
        source=fields["source"],
    )


def _hit(hit: dict) -> Hit:
    entity = hit.get("entity") or {}
    # The server names the primary key "id", Lite uses the field's own name.
    record_id = hit.get("id") or hit.get("record_id") or entity.get("record_id")
    return Hit(
        record_id=str(record_id),
        person_id=entity["person_id"],
        similarity=clamp_similarity(float(hit["distance"])),
        attributes=_attributes(entity),
    )


def _record(row: dict) -> GalleryRecord:
    return GalleryRecord(
        record_id=row["record_id"],
        person_id=row["person_id"],
        embedding=np.asarray(row["embedding"], dtype=np.float32),
        attributes=_attributes(row),
    )


def _is_missing_collection(exc: MilvusException) -> bool:
    text = str(getattr(exc, "message", "") or exc).lower()
    return "collection" in text and ("not found" in text or "not exist" in text or "can't find" in text)


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)
