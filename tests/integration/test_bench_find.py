"""Served equals exhaustive (issue 26): FindRelatives through the real suite (gRPC, Milvus Lite, the shipped
artifact, FIW held-out families) ranks a small gallery exactly as the exhaustive scorer does, and the
family query's pool holds every true child the per-photo union holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinship.bench.find import run_bench
from tests.conftest import require_path

pytestmark = pytest.mark.shared


@pytest.mark.timeout(600)
def test_served_equals_exhaustive_on_a_small_gallery(shared_dir: Path, tmp_path: Path) -> None:
    dataset = require_path(shared_dir / "data" / "fiw-train", "the FIW training families")
    result = run_bench(
        gallery_size=400,
        families=4,
        milvus_uri="",
        dataset_dir=dataset,
        cache=tmp_path / "embeddings.npz",
        real_faces=60,
        seed=3,
        progress=lambda step: None,
    )
    assert result["gallery"] == 400 and result["families"] == 4
    assert result["distractors"]["synthetic"] > 0 and result["distractors"]["real_faces"] > 0
    for parents in ("one_parent", "two_parents", "two_parents_sex_unknown"):
        r = result[parents]
        assert r["served_vs_exhaustive_top100"] == 1.0, r
        assert r["served_order_equals_exhaustive"] == 1.0, r
        assert r["max_abs_log10_lr_difference"] < 1e-9, r
        assert r["served"] == r["exhaustive"]
        assert r["per_photo_adds_recall"] == 0.0
