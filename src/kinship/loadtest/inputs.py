"""Request bodies for a load test: from JSON, from real photos and families, or synthetic.

Every source builds a small pool of requests once, serialized, and the run cycles
through it, so that building requests costs nothing while the clock runs.

- `--data` / `--data-file`: the protobuf JSON mapping (an object, or an array of them), as ghz;
- `--images PATH`: real photos (a file or a folder), for Embed, and for FindRelatives
  (each photo as an earlier photo of the missing person, `self`);
- `--families DIR`: a data set laid out like KinFaceW-I (`pairs.csv`, `images/`): each
  kin pair's parent photo as the father or mother, for FindRelatives;
- synthetic: generated images for Embed (textures, no faces: they measure decoding and
  detection only), random unit vectors for Search and Upsert;
- otherwise the empty request (health checks, ListModels, DescribeScoring ...).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from kinship.runtime.errors import InvalidArgument

from .targets import Method

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
POOL_SIZE = 64


@dataclass
class InputOptions:
    data: str | None = None
    data_file: Path | None = None
    images: Path | None = None
    families: Path | None = None
    model_id: str | None = None
    dimension: int | None = None
    image_size: tuple[int, int] = (640, 480)
    batch: int = 1
    top_k: int = 10
    relatives: int = 1
    seed: int = 0


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InvalidArgument(f"--images {path} is neither a file nor a folder", field="images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InvalidArgument(f"--images {path} holds no .jpg/.png/.bmp/.webp file", field="images")
    return files


def family_photos(dataset: Path, limit: int = POOL_SIZE) -> list[tuple[str, bytes]]:
    """(relation, parent photo) of kin pairs in a KinFaceW-I-like data set: 'father' or 'mother'."""
    pairs = dataset / "pairs.csv"
    if not pairs.is_file():
        raise InvalidArgument(
            f"--families {dataset} has no pairs.csv (expected the KinFaceW-I layout: pairs.csv, images/)",
            field="families",
        )
    out: list[tuple[str, bytes]] = []
    with pairs.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("kin") != "1":
                continue
            relation = "father" if row["relation"].startswith("f") else "mother"
            out.append((relation, (dataset / "images" / row["image1"]).read_bytes()))
            if len(out) >= limit:
                break
    if not out:
        raise InvalidArgument(f"--families {dataset}: pairs.csv lists no kin pair (kin=1)", field="families")
    return out


def synthetic_image(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    """A JPEG of smooth colour gradients and noise: something to decode and scan, with no face."""
    import cv2

    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        (np.sin(xx / rng.uniform(20, 80) + rng.uniform(0, 6)) + np.cos(yy / rng.uniform(20, 80))) * 60 + 128
        for _ in range(3)
    ]
    image = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    ok, encoded = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok, "OpenCV could not encode a JPEG"
    return encoded.tobytes()


def unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _from_json(method: Method, options: InputOptions) -> list[bytes]:
    text = options.data if options.data is not None else Path(options.data_file).read_text()
    source = "--data" if options.data is not None else f"--data-file {options.data_file}"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{source} is not JSON: {exc}", field="data") from exc
    items = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for index, item in enumerate(items):
        try:
            message = json_format.ParseDict(item, method.request_class())
        except json_format.ParseError as exc:
            raise InvalidArgument(
                f"{source} item {index} is not a {method.request_class.DESCRIPTOR.full_name} in the protobuf "
                f"JSON mapping: {exc}",
                field="data",
            ) from exc
        out.append(message.SerializeToString())
    if not out:
        raise InvalidArgument(f"{source} is an empty array", field="data")
    return out


def _photo_pool(options: InputOptions, rng: np.random.Generator) -> list[bytes]:
    if options.images is not None:
        files = image_files(Path(options.images))
        order = random.Random(options.seed).sample(files, min(len(files), POOL_SIZE))
        return [p.read_bytes() for p in order]
    return [synthetic_image(rng, options.image_size) for _ in range(8)]


def build_requests(method: Method, options: InputOptions, model_info: tuple[str, int] | None = None) -> list[bytes]:
    """The serialized requests the run cycles through.

    `model_info` is (model id, dimension) of a gallery collection, for Search and Upsert
    when --model-id/--dimension are not given (the caller asks the indexer).
    """
    if options.data is not None or options.data_file is not None:
        return _from_json(method, options)
    rng = np.random.default_rng(options.seed)
    full = method.full_name
    if full == "kinship.v1.Embedder/Embed":
        return [method.request_class(image=image).SerializeToString() for image in _photo_pool(options, rng)]
    if full in ("kinship.v1.Indexer/Search", "kinship.v1.Indexer/Upsert"):
        model_id, dimension = _model(options, model_info, full)
        if full.endswith("Search"):
            return [
                method.request_class(
                    model_id=model_id,
                    queries=[{"embedding": v.tolist()} for v in unit_vectors(rng, options.batch, dimension)],
                    top_k=options.top_k,
                ).SerializeToString()
                for _ in range(POOL_SIZE)
            ]
        requests = []
        for _ in range(POOL_SIZE):
            records = []
            for vector in unit_vectors(rng, options.batch, dimension):
                person = f"loadtest-{int(rng.integers(0, 2**63)):016x}"
                records.append({"record_id": person + "-0", "person_id": person, "embedding": vector.tolist()})
            requests.append(method.request_class(model_id=model_id, records=records).SerializeToString())
        return requests
    if full in ("kinship.v1.KinshipRanker/FindRelatives", "kinship.v1.KinshipRanker/CompareKinship"):
        return _ranker_requests(method, options)
    return [method.request_class().SerializeToString()]


def _model(options: InputOptions, model_info: tuple[str, int] | None, full: str) -> tuple[str, int]:
    model_id = options.model_id or (model_info[0] if model_info else None)
    dimension = options.dimension or (model_info[1] if model_info else None)
    if not model_id or not dimension:
        raise InvalidArgument(
            f"{full} needs a gallery model: pass --model-id and --dimension, or point at an indexer that "
            "holds a collection (its first is used)",
            field="model_id",
        )
    return model_id, dimension


def _ranker_requests(method: Method, options: InputOptions) -> list[bytes]:
    if method.name != "FindRelatives":
        raise InvalidArgument(
            f"{method.full_name} needs a body: pass --data or --data-file (protobuf JSON)", field="data"
        )
    from kinship.v1 import common_pb2

    if options.families is not None:
        relatives: Sequence[tuple[str, bytes]] = family_photos(Path(options.families))
    elif options.images is not None:
        relatives = [("self", p.read_bytes()) for p in image_files(Path(options.images))[:POOL_SIZE]]
    else:
        raise InvalidArgument(
            "FindRelatives needs real faces: pass --families DIR (KinFaceW-I layout), --images PATH, or --data",
            field="families",
        )
    relation = {
        "father": common_pb2.RELATION_FATHER,
        "mother": common_pb2.RELATION_MOTHER,
        "self": common_pb2.RELATION_SELF,
    }
    per_request = max(1, options.relatives)
    requests = []
    for start in range(0, len(relatives), per_request):
        group = relatives[start : start + per_request]
        requests.append(
            method.request_class(
                relatives=[
                    {"label": f"{name}-{i}", "relation": relation[name], "photos": [{"image": image}]}
                    for i, (name, image) in enumerate(group)
                ],
                top_n=options.top_k,
            ).SerializeToString()
        )
    return requests
