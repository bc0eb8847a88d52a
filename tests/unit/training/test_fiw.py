"""Reading FIW's layout, splitting it by family and drawing cross-photo image pairs (a hand-made tree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinship.runtime.errors import ConfigError
from kinship.training.fiw import family_split, image_pairs, load_fiw

# family -> member -> photo files; F1's father and son share the group photo P1.
TREE = {
    "F1": {"MID1": ["P1_face0", "P2_face0"], "MID2": ["P1_face1", "P3_face0"]},
    "F2": {"MID1": ["P4_face0"], "MID2": ["P5_face0"]},
    "F3": {"MID1": ["P6_face0"], "MID2": ["P6_face1"]},
}


def _write(root: Path) -> Path:
    for family, members in TREE.items():
        for member, photos in members.items():
            folder = root / "images" / family / member
            folder.mkdir(parents=True)
            for photo in photos:
                (folder / f"{photo}.jpg").write_bytes(b"not read here")
    members = ["family,member,n_images,sex"] + [f"{f},{m},1,{'M'}" for f in TREE for m in TREE[f]]
    (root / "members.csv").write_text("\n".join(members) + "\n")
    pairs = ["family,member1,member2,relation"] + [f"{f},MID1,MID2,fs" for f in TREE] + ["F1,MID1,MID2,bb_or_ss"]
    (root / "pairs.csv").write_text("\n".join(pairs) + "\n")
    return root


def test_load_reads_members_photos_and_pairs(tmp_path: Path) -> None:
    dataset = load_fiw(_write(tmp_path))
    assert len(dataset.images) == 8 and dataset.families == ("F1", "F2", "F3")
    assert dataset.skipped_pairs == 1  # bb_or_ss: sibling sexes unknown
    first = dataset.images.index("F1/MID1/P1_face0.jpg")
    second = dataset.images.index("F1/MID2/P1_face1.jpg")
    assert dataset.image_photo[first] == dataset.image_photo[second] == "F1/P1"
    assert dataset.sex[("F2", "MID2")] == "M"


def test_pairs_leave_out_same_photo_positives_and_draw_negatives_across_families(tmp_path: Path) -> None:
    dataset = load_fiw(_write(tmp_path))
    pairs = image_pairs(dataset, dataset.families, np.random.default_rng(0), per_pair=10)
    positives = [p for p in pairs if p.kin]
    negatives = [p for p in pairs if not p.kin]
    # F1: 2 x 2 image pairs less the one inside photo P1; F2: 1; F3: only a same-photo pair, so none.
    assert len(positives) == 4 and len(negatives) == 4
    assert all(dataset.image_photo[p.image1] != dataset.image_photo[p.image2] for p in positives)
    family = [m[0] for m in dataset.image_member]
    assert all(family[p.image1] != family[p.image2] for p in negatives)
    with_same_photo = image_pairs(dataset, dataset.families, np.random.default_rng(0), per_pair=10, cross_photo=False)
    assert sum(p.kin for p in with_same_photo) == 6


def test_pairs_of_held_out_families_never_touch_another_family(tmp_path: Path) -> None:
    dataset = load_fiw(_write(tmp_path))
    pairs = image_pairs(dataset, ["F1", "F2"], np.random.default_rng(1))
    assert {dataset.image_member[i][0] for p in pairs for i in (p.image1, p.image2)} <= {"F1", "F2"}


def test_family_split_is_stable_and_keeps_shares() -> None:
    families = [f"F{i:04d}" for i in range(2000)]
    split = family_split(families)
    assert split == family_split(list(reversed(families)))  # order-free
    assert family_split(families[:10]) == {f: split[f] for f in families[:10]}  # adding families moves none
    shares = {part: sum(v == part for v in split.values()) / len(families) for part in ("train", "validation", "test")}
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["validation"] - 0.15) < 0.03
    with pytest.raises(ValueError):
        family_split(families, test=0.6, validation=0.5)


def test_missing_layout_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="members.csv"):
        (tmp_path / "images").mkdir()
        load_fiw(tmp_path)


def _member_pairs(families: int, relations: tuple[str, ...]) -> list[tuple[str, list[int], list[int], str]]:
    return [(f"F{f:03d}", [2 * f], [2 * f + 1], r) for f in range(families) for r in relations]


@pytest.mark.parametrize("by_relation", [False, True])
def test_a_training_batch_never_holds_two_pairs_of_one_family(by_relation: bool) -> None:
    from kinship.training.head_training import _batches

    pairs = _member_pairs(40, ("fs", "fd", "bb"))
    batches = _batches(pairs, 16, by_relation, np.random.default_rng(0))
    for batch in batches:
        families = [pairs[k][0] for k in batch]
        assert len(families) == len(set(families)), batch
        assert 2 <= len(batch) <= 16
    used = [k for batch in batches for k in batch]
    assert len(used) == len(set(used))
    # Each relation group of 40 families fills two batches of 16 and one of 8: nothing is dropped.
    if by_relation:
        assert len(used) == len(pairs)


def test_relation_batches_hold_one_relation_each_and_come_in_shuffled_order() -> None:
    from kinship.training.head_training import _batches

    pairs = _member_pairs(40, ("fs", "fd", "bb", "ss"))
    batches = _batches(pairs, 16, True, np.random.default_rng(0))
    relations = [{pairs[k][3] for k in batch} for batch in batches]
    assert all(len(r) == 1 for r in relations)
    order = [r.pop() for r in relations]
    assert sorted(set(order)) == ["bb", "fd", "fs", "ss"]
    # Shuffled: the relations interleave (grouped, 12 batches of 4 relations would change relation 3 times).
    changes = sum(a != b for a, b in zip(order, order[1:], strict=False))
    assert changes > 3
