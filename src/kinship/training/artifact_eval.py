"""`kinship eval --artifact`: measure one fixed artifact on a folder of pairs; nothing is fitted there.

    DIR/pairs.csv   relation,kin,image1,image2[,fold]   (fold is ignored; image paths relative to DIR/images)
    DIR/images/...  photos to detect, or with --aligned crops already aligned to 112x112 (FIW's are)

or a FIW folder (members.csv, pairs.csv by member), whose pairs are drawn from the
families of one part of the salted family split (default: test, the families the
shipped artifact never saw), exactly as `kinship train` draws its test pairs.

Faces go through what the embedder serves: the artifact's network (for a head, grafted
onto the identity graph: one run gives both vectors) on onnxruntime. Pairs are scored
with the artifact's calibration and accuracy thresholds; the identity cosine of the
same crops is the baseline (its accuracy at its own best threshold on these pairs,
so the comparison favours the baseline).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from kinship.artifacts import KinshipArtifact
from kinship.runtime.errors import ConfigError

from .fiw import FIW_CODES, ImagePair, family_split, image_pairs, load_fiw
from .head_training import CODE_CALIBRATIONS, measure, score_pairs

#: Codes of other data sets that mean a FIW code (KinFaceW-style siblings).
ALIASES = {"bs": "sibs", "sb": "sibs"}
Progress = Callable[[int, int], None]


def read_pairs(folder: Path) -> tuple[list[str], list[ImagePair]]:
    """images (relative paths) and pairs of a pairs.csv folder; ConfigError naming what is wrong."""
    table = folder / "pairs.csv"
    if not table.is_file() or not (folder / "images").is_dir():
        raise ConfigError(f"{folder} needs pairs.csv (relation,kin,image1,image2) and images/")
    images: dict[str, int] = {}
    pairs = []
    with table.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                relation = ALIASES.get(row["relation"].strip(), row["relation"].strip())
                kin = row["kin"].strip().lower() in ("1", "true", "yes")
                first, second = row["image1"].strip(), row["image2"].strip()
            except (KeyError, AttributeError):
                raise ConfigError(f"{table}:{line}: needs the columns relation, kin, image1, image2") from None
            if relation not in CODE_CALIBRATIONS:
                raise ConfigError(f"{table}:{line}: relation {relation!r} is not one of {', '.join(FIW_CODES)}")
            for name in (first, second):
                if not (folder / "images" / name).is_file():
                    raise ConfigError(f"{table}:{line}: {folder / 'images' / name} does not exist")
                images.setdefault(name, len(images))
            pairs.append(ImagePair(relation, kin, images[first], images[second]))
    if not pairs:
        raise ConfigError(f"{table} holds no pairs")
    return list(images), pairs


def fiw_pairs(folder: Path, part: str, seed: int = 0, per_pair: int = 4) -> tuple[list[str], list[ImagePair]]:
    """The pairs `kinship train` measures on (seed 0: the shipped artifact's test pairs)."""
    dataset = load_fiw(folder)
    parts = family_split(dataset.families)
    families = [f for f, p in parts.items() if part == "all" or p == part]
    pairs = image_pairs(dataset, families, np.random.default_rng(seed + 2), per_pair=per_pair)
    used = sorted({i for p in pairs for i in (p.image1, p.image2)})
    position = {image: k for k, image in enumerate(used)}
    return [dataset.images[i] for i in used], [
        ImagePair(p.relation, p.kin, position[p.image1], position[p.image2]) for p in pairs
    ]


def _crop(pack, path: Path, aligned: bool) -> tuple[np.ndarray, bool]:
    """The aligned 112x112 crop of an image, and whether a face was found (always True with --aligned)."""
    from kinship.embedder.public import FACE_SIZE, ArcFaceAligner

    from .features import _most_prominent, as_photo

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"{path} cannot be decoded as an image")
    if aligned:
        return cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA), True
    photo = as_photo(image) if max(image.shape[:2]) < 200 else image
    found = pack.detector.detect(photo)
    if not found:
        return cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC), False
    return ArcFaceAligner(FACE_SIZE).align(photo, _most_prominent(found).landmarks), True


def evaluate_artifact(
    artifact: KinshipArtifact,
    folder: Path,
    *,
    aligned: bool = False,
    part: str = "test",
    threads: int = 2,
    progress: Progress | None = None,
) -> dict:
    from kinship.embedder.public import DEFAULT_PACK, RuntimeOptions, load_kinship_model, load_pack

    folder = Path(folder)
    fiw = (folder / "members.csv").is_file()
    names, pairs = fiw_pairs(folder, part) if fiw else read_pairs(folder)
    aligned = aligned or fiw  # FIW's crops are aligned
    pack = load_pack(DEFAULT_PACK, runtime=RuntimeOptions(intra_op_threads=threads))
    loaded = load_kinship_model(artifact, pack, intra_op_threads=threads)
    identity = np.zeros((len(names), pack.model.info.dimension), np.float32)
    kinship = np.zeros((len(names), artifact.dimension), np.float32)
    undetected = 0
    batch = 32
    for start in range(0, len(names), batch):
        chunk = [_crop(pack, folder / "images" / n, aligned) for n in names[start : start + batch]]
        undetected += sum(1 for _, ok in chunk if not ok)
        crops = [c for c, _ in chunk]
        if loaded.joint is not None:
            rows = loaded.joint.embed_batch(crops)
            ident, kin = rows[:, slice(*loaded.joint.identity_columns)], rows[:, slice(*loaded.joint.kinship_columns)]
        else:
            ident, kin = pack.recognizer.embed_batch(crops), loaded.recognizer.embed_batch(crops)
        end = start + len(crops)
        identity[start:end] = ident / np.linalg.norm(ident, axis=1, keepdims=True)
        kinship[start:end] = kin / np.linalg.norm(kin, axis=1, keepdims=True)
        if progress:
            progress(end, len(names))
    scores = score_pairs(pairs, lambda images: kinship[images], identity)
    result = measure(artifact.calibration, dict(artifact.training.get("thresholds", {})), scores)
    result["artifact"] = {
        "artifact_id": artifact.artifact_id,
        "shipped": artifact.shipped,
        "format": artifact.format,
        "calibration_id": artifact.calibration.calibration_id,
    }
    result["dataset"] = {
        "path": str(folder),
        "kind": "fiw" if fiw else "pairs.csv",
        "part": part if fiw else None,
        "images": len(names),
        "pairs": len(pairs),
        "aligned": aligned,
        "undetected": undetected,
    }
    return result
