"""The small sample gallery that `make run` (`kinship serve all --sample-gallery`) enrols.

Its photos come from packages the project installs (never downloaded): insightface's
sample images (a group photo of 6 people, a portrait of Tom Hanks) and scikit-image's
public-domain NASA portrait of astronaut Eileen Collins. The faces of the group photo
are cut out into one image per person, so the gallery has 8 people, and a mirrored,
rescaled copy of the portrait serves as an example query ("an earlier photo of the
missing person"). Enrolment runs once per data directory; later runs only print the
example commands.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from kinship.runtime.clients import sync_channel
from kinship.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

from .client_commands import EnrolItem, enrol, kinship_model_for

MARGIN = 0.6  # extra context around a face box, as a fraction of its size


def _packaged(package: str, *parts: str) -> bytes:
    return resources.files(package).joinpath(*parts).read_bytes()


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def build_sample_images(sample_dir: Path, embedder_address: str) -> tuple[list[EnrolItem], dict[str, Path]]:
    """Writes the gallery and query images; returns what to enrol and the example files."""
    gallery = sample_dir / "gallery"
    queries = sample_dir / "queries"
    group_bytes = _packaged("insightface", "data", "images", "t1.jpg")
    group = _decode(group_bytes)
    with sync_channel(embedder_address) as channel:
        reply = embedder_pb2_grpc.EmbedderStub(channel).Embed(embedder_pb2.EmbedRequest(image=group_bytes), timeout=120)
    items: list[EnrolItem] = []
    height, width = group.shape[:2]
    # Left to right, so the person ids follow the photo.
    for n, face in enumerate(sorted(reply.faces, key=lambda f: f.box.x_min), start=1):
        b = face.box
        pad_x, pad_y = (b.x_max - b.x_min) * MARGIN, (b.y_max - b.y_min) * MARGIN
        x0, y0 = int(max(0, b.x_min - pad_x)), int(max(0, b.y_min - pad_y))
        x1, y1 = int(min(width, b.x_max + pad_x)), int(min(height, b.y_max + pad_y))
        path = _write(gallery / f"group-person-{n}.jpg", group[y0:y1, x0:x1])
        items.append(EnrolItem(path, f"group-person-{n}", common_pb2.PersonAttributes(source="sample")))

    hanks = _decode(_packaged("insightface", "data", "images", "Tom_Hanks_54745.png"))
    items.append(
        EnrolItem(
            _write(gallery / "tom-hanks.png", hanks),
            "tom-hanks",
            common_pb2.PersonAttributes(birth_year=1956, sex=common_pb2.SEX_MALE, region="US", source="sample"),
        )
    )
    astronaut = _decode(_packaged("skimage", "data", "astronaut.png"))
    items.append(
        EnrolItem(
            _write(gallery / "eileen-collins.png", astronaut),
            "eileen-collins",
            common_pb2.PersonAttributes(birth_year=1956, sex=common_pb2.SEX_FEMALE, region="US", source="sample"),
        )
    )
    # A different photo of someone in the gallery: mirrored and rescaled.
    query = cv2.resize(cv2.flip(hanks, 1), None, fx=1.3, fy=1.3, interpolation=cv2.INTER_CUBIC)
    examples = {
        "group": _write(sample_dir / "group.jpg", group),
        "self": _write(queries / "tom-hanks-mirrored.jpg", query),
        "gallery": gallery,
    }
    return items, examples


def _served_kinship_model(embedder_address: str) -> str:
    """The kinship model the embedder serves beside its default identity model ("" when none)."""
    with sync_channel(embedder_address) as channel:
        models = embedder_pb2_grpc.EmbedderStub(channel).ListModels(embedder_pb2.ListModelsRequest(), timeout=30).models
    return kinship_model_for(models, "")[1]


def ensure_sample_gallery(data_dir: Path, addresses: dict[str, str]) -> None:
    """Enrols the sample gallery on the first run, and again when a newly trained kinship model is served.

    The marker names the kinship model the gallery was enrolled with and whether its
    combined vectors (the family query's collection) were written: after `kinship train`
    the gallery needs that model's vectors too, and a gallery enrolled before the SDK
    wrote combined vectors needs those (re-enrolling replaces records).
    """
    sample_dir = data_dir / "sample"
    marker = sample_dir / ".enrolled"
    kinship_model = _served_kinship_model(addresses["embedder"])
    enrolled_with = marker.read_text().splitlines()[1:3] if marker.exists() else []
    wanted = [f"kinship model: {kinship_model or 'none'}", f"family vectors: {'yes' if kinship_model else 'none'}"]
    if not marker.exists() or enrolled_with != wanted:
        why = (
            "first run"
            if not marker.exists()
            else "a new kinship model is served"
            if enrolled_with[:1] != wanted[:1]
            else "the family query's combined vectors are missing"
        )
        print(f"kinship: enrolling the sample gallery ({why})...", file=sys.stderr, flush=True)
        items, _ = build_sample_images(sample_dir, addresses["embedder"])
        report = enrol(items, addresses["embedder"], addresses["indexer"], progress=False)
        if report["skipped"]:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in report["skipped"])
            print(f"kinship: some sample images were not enrolled: {reasons}", file=sys.stderr)
        marker.write_text(
            f"{len(report['enrolled'])} records in {report['collection']}\n"
            f"kinship model: {report['kinship_model_id'] or 'none'}\n"
            f"family vectors: {'yes' if report['family_model_id'] else 'none'}\n"
        )
        print(f"kinship: sample gallery enrolled: {len(report['enrolled'])} people", file=sys.stderr)
    print_examples(sample_dir)


def print_examples(sample_dir: Path) -> None:
    q = sample_dir / "queries" / "tom-hanks-mirrored.jpg"
    print(
        "\nTry, in another terminal (from this folder; or activate .venv and drop the .venv/bin/ prefix):\n"
        "  .venv/bin/kinship status\n"
        f"  .venv/bin/kinship embed {sample_dir / 'group.jpg'}\n"
        f"  .venv/bin/kinship find --relative self={q} --top-n 5\n"
        f"  .venv/bin/kinship find --relative self={q} --sex m --born-from 1950 --born-to 1960 --json\n"
        f"  .venv/bin/kinship enroll {sample_dir / 'gallery'} --source sample\n"
        "  grpcurl -plaintext 127.0.0.1:50053 list      # reflection, if you have grpcurl\n",
        file=sys.stderr,
        flush=True,
    )
