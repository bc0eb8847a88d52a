"""The combined [kinship; identity] vector that one family query searches (issue 26).

Milvus 2.3.5, the supported server, holds one vector field per collection and has no
multi-vector hybrid search, so the gallery keeps, beside the identity and kinship
collections, a third collection per kinship model (`family_model_id`) whose vector is

    combined = [unit(kinship); unit(identity)] / sqrt(2)        (unit length, COSINE index)

under the same record id and attributes. Every combined vector has the same norm, so
COSINE ranking over that collection is inner-product ranking, and the ranker's family
query [Q; P] (see services/ranker/domain/family_query.py) finds the records with the
highest calibrated fused score before its bounds. Whoever enrols writes it (Upsert or
BulkEnrol with `family_model_id(kinship model)`); erasure with an empty model id
removes it with the others. A gallery without that collection is searched as before
(the per-photo union).
"""

from __future__ import annotations

import math

import numpy as np

#: Prefix of the combined collection's model id, before the kinship model id.
FAMILY_MODEL_PREFIX = "family:"
_HALF = 1.0 / math.sqrt(2.0)


def family_model_id(kinship_model_id: str) -> str:
    """The model id under which the combined vectors of `kinship_model_id`'s gallery are stored."""
    return FAMILY_MODEL_PREFIX + kinship_model_id


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0.0, 1.0, norms)


def combined_vectors(kinship: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """(n, dk + di) float32 unit rows [unit(kinship); unit(identity)] / sqrt(2), one per record."""
    kinship = np.atleast_2d(np.asarray(kinship, dtype=np.float64))
    identity = np.atleast_2d(np.asarray(identity, dtype=np.float64))
    if len(kinship) != len(identity):
        raise ValueError(f"{len(kinship)} kinship rows for {len(identity)} identity rows")
    return (np.concatenate([_unit(kinship), _unit(identity)], axis=1) * _HALF).astype(np.float32)


def split_combined(combined: np.ndarray, kinship_dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """The unit kinship and identity rows back from combined rows."""
    combined = np.atleast_2d(np.asarray(combined, dtype=np.float64))
    return _unit(combined[:, :kinship_dimension]), _unit(combined[:, kinship_dimension:])
