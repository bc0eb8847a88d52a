"""Validation of what callers send to the gallery.

Ids, regions and model ids are checked against strict character sets rather than
escaped: they end up in Milvus filter expressions and collection names, and a
caller with an exotic id is better told so than silently rewritten.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from kinship.runtime.errors import FieldViolation, InvalidArgument

from .model import GalleryRecord, SearchFilter

RECORD_ID_MAX = 128
REGION_MAX = 64
SOURCE_MAX = 128
MODEL_ID_MAX = 128
ID_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{RECORD_ID_MAX}}}")
REGION_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{REGION_MAX}}}")
# Model ids look like "sface-2021dec-int8bq@yunet-2023mar".
MODEL_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:@+/-]{{1,{MODEL_ID_MAX}}}")
ID_CHARS = 'letters, digits and "._:-"'

MIN_TOP_K, MAX_TOP_K = 1, 1000
MAX_QUERIES = 256
MAX_RECORDS_PER_UPSERT = 10_000
MAX_IDS_PER_REQUEST = 1000
MAX_REGIONS = 256
# Plausible birth years of people in a gallery; anything else is a data error.
BIRTH_YEAR_MIN, BIRTH_YEAR_MAX = 1800, 2200
NORM_TOLERANCE = 1e-3
#: Latest accepted captured_at / expires_at (2200-01-01, Unix seconds).
TIME_MAX = 7_258_118_400
# At most this many problems are spelled out in the error message (all are in the details).
_MESSAGE_PROBLEMS = 3


class Violations:
    """Collects every problem of a request, then raises them as one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = "; ".join(f"{v.field}: {v.description}" for v in self.items[:_MESSAGE_PROBLEMS])
        more = len(self.items) - _MESSAGE_PROBLEMS
        suffix = f" (and {more} more problems)" if more > 0 else ""
        raise InvalidArgument(f"invalid request: {shown}{suffix}", violations=self.items)


def check_id(value: str, field: str, problems: Violations) -> None:
    if not value:
        problems.add(field, "is required")
    elif not ID_PATTERN.fullmatch(value):
        problems.add(field, f"must be 1-{RECORD_ID_MAX} characters of {ID_CHARS}, got {_preview(value)}")


def check_model_id(value: str, field: str = "model_id", problems: Violations | None = None) -> None:
    own = problems is None
    problems = problems or Violations()
    if not value:
        problems.add(field, "is required: the id of the embedding model that made the vectors")
    elif not MODEL_ID_PATTERN.fullmatch(value):
        problems.add(
            field, f'must be 1-{MODEL_ID_MAX} characters of letters, digits and "._:@+/-", got {_preview(value)}'
        )
    if own:
        problems.raise_if_any()


def check_region(value: str, field: str, problems: Violations) -> None:
    if not REGION_PATTERN.fullmatch(value):
        problems.add(field, f"must be 1-{REGION_MAX} characters of {ID_CHARS}, got {_preview(value)}")


def check_id_list(values: Sequence[str], field: str, problems: Violations, *, required: bool) -> None:
    if required and not values:
        problems.add(field, "needs at least one id")
    if len(values) > MAX_IDS_PER_REQUEST:
        problems.add(field, f"has {len(values)} ids; at most {MAX_IDS_PER_REQUEST} per request")
        return
    for i, value in enumerate(values):
        check_id(value, f"{field}[{i}]", problems)


def check_vector(vector: np.ndarray, field: str, problems: Violations, dimension: int | None = None) -> None:
    """A usable embedding: non-empty, of the collection's length, finite and L2-normalised."""
    if vector.ndim != 1 or vector.size == 0:
        problems.add(field, "is empty; send the model's embedding")
        return
    if dimension is not None and vector.size != dimension:
        problems.add(
            field,
            f"has {vector.size} values but this model's collection holds {dimension}-dimensional embeddings; "
            "send vectors of the model named by model_id",
        )
        return
    if not np.all(np.isfinite(vector)):
        problems.add(field, "contains NaN or infinite values")
        return
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if abs(norm - 1.0) >= NORM_TOLERANCE:
        problems.add(field, f"must be L2-normalised (norm 1), its norm is {norm:.6g}")


def vector_problems(vectors: Sequence[np.ndarray], dimension: int | None) -> dict[int, str]:
    """`check_vector` for many vectors at once: the problem of each bad one, by position.

    Vectors of the expected length are checked as one matrix (a bulk enrolment checks
    thousands per second; one numpy call per vector cost the indexer as much CPU as
    writing them to Milvus); any other vector gets `check_vector`'s own message.
    """
    found: dict[int, str] = {}
    whole = [
        i
        for i, vector in enumerate(vectors)
        if vector.ndim == 1 and vector.size and (dimension is None or vector.size == dimension)
    ]
    sizes = {vectors[i].size for i in whole}
    if len(sizes) > 1:  # no dimension to hold them to: each on its own
        whole = []
    in_matrix = set(whole)
    for i, vector in enumerate(vectors):
        if i not in in_matrix:
            problems = Violations()
            check_vector(vector, "embedding", problems, dimension)
            if problems:
                found[i] = problems.items[0].description
    if whole:
        matrix = np.stack([vectors[i] for i in whole])
        # One float32 pass finds the suspects (NaN or inf make a row's sum of squares non-finite;
        # float32's rounding, about 1e-5 here, is far inside the tolerance); each suspect is then
        # judged by `check_vector` itself, so messages and borderline verdicts are unchanged.
        # A tenth of the CPU of a float64 copy of the batch.
        squares = np.einsum("ij,ij->i", matrix, matrix)
        with np.errstate(invalid="ignore"):
            suspects = ~np.isfinite(squares) | (np.abs(np.sqrt(squares) - 1.0) >= NORM_TOLERANCE / 2)
        for row in np.flatnonzero(suspects):
            problems = Violations()
            check_vector(matrix[row], "embedding", problems, dimension)
            if problems:
                found[whole[row]] = problems.items[0].description
    return found


def validate_records(records: Sequence[GalleryRecord], dimension: int | None) -> None:
    """Checks an upsert batch; `dimension` is that of the model's collection, None when it is new."""
    problems = Violations()
    if not records:
        problems.add("records", "needs at least one record")
    if len(records) > MAX_RECORDS_PER_UPSERT:
        problems.add("records", f"has {len(records)} records; send at most {MAX_RECORDS_PER_UPSERT} per request")
    problems.raise_if_any()
    # A new collection takes the length of the first vector; the rest must agree with it.
    expected = dimension if dimension is not None else records[0].embedding.size or None
    seen: dict[str, int] = {}
    bad_vectors = vector_problems([record.embedding for record in records], expected)
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if record.record_id in seen:
            problems.add(f"{where}.record_id", f"repeats {record.record_id!r} of records[{seen[record.record_id]}]")
        else:
            seen[record.record_id] = i
        check_record(record, where, problems, expected, vector_problem=bad_vectors.get(i, ""))
    problems.raise_if_any()


def check_record(
    record: GalleryRecord,
    where: str,
    problems: Violations,
    dimension: int | None,
    *,
    vector_problem: str | None = None,
) -> None:
    """One record's own rules (ids, vector, attributes, times); bulk enrolment reports them per record.

    `vector_problem`: the embedding's problem found by `vector_problems` ("" when it is
    fine); None checks the embedding here.
    """
    check_id(record.record_id, f"{where}.record_id", problems)
    check_id(record.person_id, f"{where}.person_id", problems)
    vector_field = f"{where}.embedding (record {record.record_id!r})"
    if vector_problem is None:
        check_vector(record.embedding, vector_field, problems, dimension)
    elif vector_problem:
        problems.add(vector_field, vector_problem)
    attrs = record.attributes
    if attrs.birth_year is not None and not BIRTH_YEAR_MIN <= attrs.birth_year <= BIRTH_YEAR_MAX:
        problems.add(
            f"{where}.attributes.birth_year",
            f"must be between {BIRTH_YEAR_MIN} and {BIRTH_YEAR_MAX} or unset, got {attrs.birth_year}",
        )
    if attrs.region:
        check_region(attrs.region, f"{where}.attributes.region", problems)
    if len(attrs.source) > SOURCE_MAX or not attrs.source.isprintable():
        problems.add(
            f"{where}.attributes.source",
            f"must be at most {SOURCE_MAX} printable characters, got {_preview(attrs.source)}",
        )
    for name in ("captured_at", "expires_at"):
        value = getattr(record, name)
        if value is not None and not 0 < value < TIME_MAX:
            problems.add(f"{where}.{name}", f"must be a time after 1970 and before 2200 or unset, got {value}")


def validate_filter(flt: SearchFilter, field: str, problems: Violations) -> None:
    low, high = flt.birth_year_min, flt.birth_year_max
    if low is not None and high is not None and low > high:
        problems.add(f"{field}.birth_year", f"min {low} is greater than max {high}")
    if len(flt.regions) > MAX_REGIONS:
        problems.add(f"{field}.regions", f"has {len(flt.regions)} regions; at most {MAX_REGIONS}")
    else:
        for i, region in enumerate(flt.regions):
            check_region(region, f"{field}.regions[{i}]", problems)
    check_id_list(flt.exclude_person_ids, f"{field}.exclude_person_ids", problems, required=False)


def validate_search(queries: Sequence[np.ndarray], top_k: int, flt: SearchFilter) -> None:
    """Checks what does not depend on the collection (its dimension is checked later)."""
    problems = Violations()
    if not queries:
        problems.add("queries", "needs at least one query embedding")
    elif len(queries) > MAX_QUERIES:
        problems.add("queries", f"has {len(queries)} queries; at most {MAX_QUERIES} per request")
    if not MIN_TOP_K <= top_k <= MAX_TOP_K:
        problems.add("top_k", f"must be between {MIN_TOP_K} and {MAX_TOP_K}, got {top_k}")
    validate_filter(flt, "filter", problems)
    problems.raise_if_any()


def validate_queries(queries: Iterable[np.ndarray], dimension: int) -> None:
    problems = Violations()
    for i, query in enumerate(queries):
        check_vector(query, f"queries[{i}].embedding", problems, dimension)
    problems.raise_if_any()


def _preview(value: str, limit: int = 40) -> str:
    """The offending value, shortened, for a message (repr keeps control characters visible)."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return repr(shown) + (f" ({len(value)} characters)" if len(value) > limit else "")


def clamp_similarity(value: float) -> float:
    """Cosine similarity in [-1, 1]; float rounding in the index can step just outside."""
    if math.isnan(value):
        return -1.0
    return max(-1.0, min(1.0, value))
