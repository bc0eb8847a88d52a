"""A kinship data set laid out like KinFaceW: `pairs.csv` with folds, and an `images/` folder.

    DIR/pairs.csv     relation,fold,kin,image1,image2   (image paths relative to DIR/images)
    DIR/images/...    face photos (pre-cropped faces are fine: they are padded before detection)

`image1` is the relative (the parent, or the first sibling), `image2` the person
sought (the child). Relation codes: fd, fs, md, ms (parent-child, as in KinFaceW-I
and -II), and bb, ss, bs (brother-brother, sister-sister, brother-sister) where a
data set has siblings. Research data sets are read in place and never copied.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from kinship.runtime.errors import ConfigError


@dataclass(frozen=True)
class RelationCode:
    """What one relation code of a data set means for calibration."""

    code: str
    relative: str  # "father", "mother", "brother", "sister"
    person_sex: str  # sex of the person sought: "male" or "female"
    calibration: str  # the most specific calibration name it feeds, e.g. "father-son"


RELATION_CODES = {
    "fs": RelationCode("fs", "father", "male", "father-son"),
    "fd": RelationCode("fd", "father", "female", "father-daughter"),
    "ms": RelationCode("ms", "mother", "male", "mother-son"),
    "md": RelationCode("md", "mother", "female", "mother-daughter"),
    "bb": RelationCode("bb", "brother", "male", "brother"),
    "ss": RelationCode("ss", "sister", "female", "sister"),
    "bs": RelationCode("bs", "brother", "female", "sibling"),
}


@dataclass(frozen=True)
class Pair:
    relation: str
    fold: int
    kin: bool
    relative: int  # index into KinshipDataset.images
    person: int


@dataclass(frozen=True)
class KinshipDataset:
    root: Path
    name: str
    images: tuple[str, ...]  # paths relative to root/images, sorted
    pairs: tuple[Pair, ...]

    @property
    def folds(self) -> tuple[int, ...]:
        return tuple(sorted({p.fold for p in self.pairs}))

    @property
    def relations(self) -> tuple[str, ...]:
        return tuple(sorted({p.relation for p in self.pairs}))

    def image_path(self, index: int) -> Path:
        return self.root / "images" / self.images[index]

    def digest(self) -> str:
        """sha256 over pairs.csv and every image used, in order: names the exact data an artifact came from."""
        hasher = hashlib.sha256()
        hasher.update((self.root / "pairs.csv").read_bytes())
        for index, name in enumerate(self.images):
            hasher.update(name.encode())
            hasher.update(self.image_path(index).read_bytes())
        return hasher.hexdigest()


def load_dataset(root: Path | str) -> KinshipDataset:
    """Reads DIR/pairs.csv; ConfigError naming the problem when the layout is not as documented."""
    root = Path(root).expanduser().resolve()
    table = root / "pairs.csv"
    if not table.is_file():
        raise ConfigError(f"{root} has no pairs.csv: a data set needs pairs.csv and images/ (see kinship train --help)")
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"relation", "fold", "kin", "image1", "image2"}
    if not rows or not needed <= set(rows[0]):
        raise ConfigError(f"{table} must have the columns {', '.join(sorted(needed))}")
    names = sorted({r["image1"] for r in rows} | {r["image2"] for r in rows})
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in names if not (root / "images" / name).is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} images named in {table} are missing under {root / 'images'}, e.g. {missing[0]}"
        )
    pairs = []
    for line, r in enumerate(rows, start=2):
        if r["relation"] not in RELATION_CODES:
            raise ConfigError(
                f"{table}:{line}: relation {r['relation']!r} is not one of {', '.join(sorted(RELATION_CODES))}"
            )
        try:
            pairs.append(Pair(r["relation"], int(r["fold"]), r["kin"] == "1", index[r["image1"]], index[r["image2"]]))
        except ValueError:
            raise ConfigError(f"{table}:{line}: fold must be a whole number, got {r['fold']!r}") from None
    return KinshipDataset(root=root, name=root.name, images=tuple(names), pairs=tuple(pairs))
