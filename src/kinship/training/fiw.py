"""FIW (Families In the Wild) laid out as in ../shared/data/fiw-train, read in place.

    DIR/images/<family>/<member>/<photo>_face<k>.jpg   aligned 112x112 crops
    DIR/members.csv    family,member,...,sex (M, F or blank)
    DIR/pairs.csv      family,member1,member2,relation,...  member-level POSITIVE kin pairs;
                       member1 is the elder for parent-child and grandparent codes

What kinship training needs from it, and why each choice:

- **Splits by family.** Relatives share faces, backgrounds and photo sessions, so a
  figure is honest only on families never seen in training. `family_split` assigns
  each family by a salted hash of its id: the same family lands in the same part on
  every machine and run, and adding families never moves the others.
- **Cross-photo pairs.** FIW cuts several members out of one group photo (`P00001_face0`
  and `P00001_face1` of one family are the same picture). Two faces of one photo share
  lighting, camera and compression: the same-photo bias that made KinFaceW-trained
  models learn the data set instead of kinship. `image_pairs` leaves such positives
  out by default.
- **Negatives** are drawn the way a search meets them: the same relation code (so the
  same sexes and generations) with the two members taken from two different families.

Images are never copied: only paths are read here (research use only; see the data
set's README for its terms).
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinship.runtime.errors import ConfigError

#: FIW's relation codes: parent-child, siblings (sibs = brother and sister), grandparent-grandchild.
FIW_CODES = ("fd", "fs", "md", "ms", "bb", "ss", "sibs", "gfgd", "gfgs", "gmgd", "gmgs")
SPLIT_SALT = "kinship-fiw-split-v1"
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class MemberPair:
    relation: str  # one of FIW_CODES
    family: str
    elder: str  # member id (member1 of pairs.csv)
    younger: str  # member id (member2)


@dataclass(frozen=True)
class FiwDataset:
    root: Path
    images: tuple[str, ...]  # paths relative to root/images, sorted
    image_member: tuple[tuple[str, str], ...]  # (family, member) per image
    image_photo: tuple[str, ...]  # "<family>/<photo id>" per image: faces cut from one picture share it
    sex: dict[tuple[str, str], str]  # (family, member) -> "M", "F" or ""
    pairs: tuple[MemberPair, ...]
    skipped_pairs: int  # rows with another code (bb_or_ss) or a member without images

    @property
    def families(self) -> tuple[str, ...]:
        """Families with at least one kin pair (556 of FIW-train's 570)."""
        return tuple(sorted({p.family for p in self.pairs}))

    def images_of(self) -> dict[tuple[str, str], list[int]]:
        out: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, member in enumerate(self.image_member):
            out[member].append(index)
        return out


def load_fiw(root: Path | str) -> FiwDataset:
    """Reads the layout above; ConfigError naming what is missing or malformed."""
    root = Path(root).expanduser().resolve()
    for needed in ("images", "members.csv", "pairs.csv"):
        if not (root / needed).exists():
            raise ConfigError(f"{root} has no {needed}: a FIW data set needs images/, members.csv and pairs.csv")
    images = sorted(str(p.relative_to(root / "images")) for p in (root / "images").glob("*/*/*.jpg"))
    if not images:
        raise ConfigError(f"{root / 'images'} holds no <family>/<member>/<photo>.jpg files")
    members = tuple(tuple(name.split("/")[:2]) for name in images)
    photos = tuple(f"{name.split('/')[0]}/{name.split('/')[2].split('_')[0]}" for name in images)
    sex = {}
    with (root / "members.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                sex[(row["family"], row["member"])] = (row.get("sex") or "").upper()
            except KeyError as exc:
                raise ConfigError(f"{root / 'members.csv'} needs the columns family and member ({exc})") from None
    having = set(members)
    pairs, skipped = [], 0
    with (root / "pairs.csv").open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                family, elder, younger, relation = row["family"], row["member1"], row["member2"], row["relation"]
            except KeyError as exc:
                raise ConfigError(
                    f"{root / 'pairs.csv'}:{line}: needs the columns family, member1, member2, relation ({exc})"
                ) from None
            if relation not in FIW_CODES or (family, elder) not in having or (family, younger) not in having:
                skipped += 1
                continue
            pairs.append(MemberPair(relation, family, elder, younger))
    if not pairs:
        raise ConfigError(f"{root / 'pairs.csv'} has no pair of the codes {', '.join(FIW_CODES)} with images")
    return FiwDataset(root, tuple(images), members, photos, sex, tuple(pairs), skipped)


def family_split(families, *, test: float = 0.2, validation: float = 0.15, salt: str = SPLIT_SALT) -> dict[str, str]:
    """Each family -> "train", "validation" or "test", by a salted hash of its id (stable, order-free)."""
    if not (0 <= test < 1 and 0 <= validation < 1 and test + validation < 1):
        raise ValueError(f"test ({test}) and validation ({validation}) must be shares that leave some training")
    out = {}
    for family in families:
        x = int(hashlib.sha256(f"{salt}:{family}".encode()).hexdigest()[:8], 16) / 2**32
        out[family] = "test" if x < test else ("validation" if x < test + validation else "train")
    return out


@dataclass(frozen=True)
class ImagePair:
    relation: str
    kin: bool
    image1: int  # the elder's (or first sibling's) image, index into FiwDataset.images
    image2: int


def image_pairs(
    dataset: FiwDataset,
    families,
    rng: np.random.Generator,
    *,
    per_pair: int = 4,
    cross_photo: bool = True,
) -> list[ImagePair]:
    """Kin pairs of `families` (up to `per_pair` image pairs per member pair) and as many non-kin per relation.

    A non-kin pair takes the elder of one member pair and the younger of another of the
    same relation code from a different family; both families are among `families`,
    so a held-out part's pairs never touch a training family.
    """
    wanted = set(families)
    images_of = dataset.images_of()
    by_relation: dict[str, list[MemberPair]] = defaultdict(list)
    for pair in dataset.pairs:
        if pair.family in wanted:
            by_relation[pair.relation].append(pair)
    out: list[ImagePair] = []
    for relation in sorted(by_relation):
        items = by_relation[relation]
        positives = []
        for pair in items:
            options = [
                (i, j)
                for i in images_of[(pair.family, pair.elder)]
                for j in images_of[(pair.family, pair.younger)]
                if not cross_photo or dataset.image_photo[i] != dataset.image_photo[j]
            ]
            for k in rng.permutation(len(options))[:per_pair]:
                positives.append(ImagePair(relation, True, *options[k]))
        out += positives
        if len({p.family for p in items}) < 2:
            continue  # no other family to draw a non-kin pair from
        negatives = 0
        while negatives < len(positives):
            a, b = items[rng.integers(len(items))], items[rng.integers(len(items))]
            if a.family == b.family:
                continue
            i = int(rng.choice(images_of[(a.family, a.elder)]))
            j = int(rng.choice(images_of[(b.family, b.younger)]))
            out.append(ImagePair(relation, False, i, j))
            negatives += 1
    return out
