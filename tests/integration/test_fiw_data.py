"""The FIW training families beside the project, read in place: the counts its README states, and a family split
whose held-out pairs stay inside held-out families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinship.training.fiw import family_split, image_pairs, load_fiw
from tests.conftest import require_path


@pytest.fixture(scope="module")
def fiw(shared_dir: Path):
    return load_fiw(require_path(shared_dir / "data" / "fiw-train", "the FIW training families"))


def test_fiw_as_its_readme_describes_it(fiw) -> None:
    assert len(fiw.images) == 15_822
    assert len({member[0] for member in fiw.image_member}) == 570
    assert len(fiw.families) == 556  # families with at least one kin pair
    assert len(fiw.pairs) == 4_823 - 46  # bb_or_ss (sibling sexes unknown) is skipped
    assert fiw.skipped_pairs == 46


def test_held_out_pairs_stay_in_held_out_families(fiw) -> None:
    split = family_split(fiw.families)
    test_families = [f for f, part in split.items() if part == "test"]
    pairs = image_pairs(fiw, test_families, np.random.default_rng(0))
    touched = {fiw.image_member[i][0] for p in pairs for i in (p.image1, p.image2)}
    assert touched <= set(test_families)
    assert {p.relation for p in pairs} == {"fd", "fs", "md", "ms", "bb", "ss", "sibs", "gfgd", "gfgs", "gmgd", "gmgs"}
    kin = sum(p.kin for p in pairs)
    assert kin > 500 and kin == len(pairs) - kin  # as many non-kin pairs as kin pairs
