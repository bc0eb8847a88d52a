"""What the ranker needs from outside the process: the embedder and the gallery.

Real implementations talk gRPC (`kinship.ranker.adapters.grpc_clients`); unit tests
use hand-written fakes. Implementations raise `kinship.runtime.errors` domain errors
(InvalidArgument, NotFound, Unavailable, ...), never transport exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .model import EmbeddedImage, ExcludedUnknown, GalleryRecord, SearchFilter, SearchHit, ServedModel


class FaceEmbedder(Protocol):
    async def embed(
        self, image: bytes, model_id: str, additional_model_ids: Sequence[str] = (), *, pre_aligned: bool = False
    ) -> EmbeddedImage:
        """Every face found in the encoded `image` ("" = the embedder's default model); each face also
        carries its vector from every model in `additional_model_ids` (DetectedFace.additional).
        `pre_aligned`: the image is one aligned 112x112 face crop (one face, no detection); the
        ranker passes it only when set."""

    async def list_models(self) -> list[ServedModel]:
        """The models the embedder serves."""


class GalleryIndex(Protocol):
    async def search(
        self,
        model_id: str,
        queries: Sequence[np.ndarray],
        top_k: int,
        search_filter: SearchFilter,
    ) -> list[list[SearchHit]]:
        """Nearest records for each query, one list of hits per query in query order."""

    async def get_records(
        self, model_id: str, person_ids: Sequence[str], search_filter: SearchFilter
    ) -> list[GalleryRecord]:
        """The records of the given people that pass `search_filter` (at most 1000 ids per call); people
        with no such record are absent. Records carry their vector in `embedding`, whatever the model."""

    async def excluded_unknown(self, model_id: str, query: np.ndarray, search_filter: SearchFilter) -> ExcludedUnknown:
        """Records of the filter's tenant that its birth-year or sex restriction leaves out only because
        that fact is unknown (counted by the indexer beside a one-hit search for `query`)."""

    async def record_counts(self, tenant: str) -> dict[str, int]:
        """Model id -> records of `tenant` in that model's collection (the indexer's Stats), every collection."""
