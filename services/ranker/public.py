"""What applications (training, bench, the CLI) may use of the ranker: its scoring and calibration code, so
that what is trained and measured is scored exactly as the ranker scores it, and the bounds it puts on a
question (Limits), so that the CLI's help states them.

Everything else in kinship.ranker is the service's own (the import contract in pyproject.toml).
"""

from __future__ import annotations

from kinship.ranker.domain.calibration import calibration_name, log10_lr
from kinship.ranker.domain.family_query import family_queries
from kinship.ranker.domain.model import GalleryRecord, PersonAttributes
from kinship.ranker.domain.scoring import RelativeFaces, ScoringConfig, relative_faces, score_candidates
from kinship.ranker.domain.validation import Limits

__all__ = [
    "GalleryRecord",
    "Limits",
    "PersonAttributes",
    "RelativeFaces",
    "ScoringConfig",
    "calibration_name",
    "family_queries",
    "log10_lr",
    "relative_faces",
    "score_candidates",
]
