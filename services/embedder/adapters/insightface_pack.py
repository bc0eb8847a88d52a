"""insightface model packs: a folder of insightface ONNX files described by a small manifest.

A government deployment brings its own licensed pack (insightface's `buffalo_l`,
`antelopev2`, ...: an SCRFD or RetinaFace detector, an ArcFace-style recognizer and,
optionally, the `genderage` attribute model). The folder holds the files and
`kinship-pack.json`:

    {
      "pack_id": "buffalo-s",                      # letters, digits, . _ -
      "format": "insightface",
      "licence": "insightface: non-commercial research use only",
      "dimension": 512,                            # length of the recognizer's embedding
      "detector": {"file": "det_500m.onnx", "sha256": "...",
                   "input_size": 640, "score_threshold": 0.5},
      "recognizer": {"file": "w600k_mbf.onnx", "sha256": "...",
                     "preprocessing": {"channels": "rgb", "mean": [127.5, 127.5, 127.5],
                                       "std": [127.5, 127.5, 127.5]}},
      "attributes": {"file": "genderage.onnx", "sha256": "..."}     # optional
    }

Every file's sha256 is checked before use. Each model is loaded through
`insightface.model_zoo.get_model` on onnxruntime with the configured provider, which
also tells what the file is (a detector must load as SCRFD or RetinaFace, the
recognizer as ArcFaceONNX, the attribute model as Attribute). insightface's SCRFD
code detects; the recognizer runs on a session of our own over the same file with its
batch made dynamic, so all faces of a photo run at once (insightface's ArcFaceONNX
takes one scalar mean and std, the manifest may give one per channel).

The model id is `<pack_id>@<12 hex digits>`: a digest of everything that shapes an
embedding (both files' sha256, the preprocessing, the dimension), so vectors of two
packs, or of one pack after a file changed, never meet under one id.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinship.embedder.adapters.alignment import ArcFaceAligner
from kinship.embedder.adapters.model_pack import LoadedPack, ModelPackError, RuntimeOptions, read_verified, self_test
from kinship.embedder.adapters.onnx_models import create_session, prepare_model
from kinship.embedder.adapters.providers import check_session_providers
from kinship.embedder.adapters.sface import FACE_SIZE, OnnxRecognizer
from kinship.embedder.domain.pipeline import Detection, FaceAttributes, FacePipeline
from kinship.embedder.domain.service import ModelInfo, ServedModel
from kinship.runtime.errors import ConfigError
from kinship.runtime.logs import get_logger

log = get_logger("kinship.embedder.insightface_pack")

MANIFEST = "kinship-pack.json"
_PACK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PackFile:
    file: str
    sha256: str
    options: dict[str, Any]


@dataclass(frozen=True)
class PackManifest:
    folder: Path
    pack_id: str
    licence: str
    dimension: int
    detector: PackFile
    recognizer: PackFile
    attributes: PackFile | None
    channels: str  # "rgb" or "bgr"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def model_id(self) -> str:
        """`<pack_id>@<digest>`: changes whenever anything that shapes an embedding changes."""
        shaping = {
            "detector": self.detector.sha256,
            "recognizer": self.recognizer.sha256,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "dimension": self.dimension,
        }
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
        return f"{self.pack_id}@{digest[:12]}"

    def path(self, entry: PackFile) -> Path:
        return self.folder / entry.file


def _problem(folder: Path, what: str) -> ModelPackError:
    return ModelPackError(f"model pack {folder}: {what} (see {MANIFEST} in docs/model-packs.md)")


def _file_entry(folder: Path, raw: Any, key: str) -> PackFile:
    if not isinstance(raw, dict):
        raise _problem(folder, f"{key} must be an object with file and sha256")
    name, digest = raw.get("file"), raw.get("sha256")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise _problem(folder, f"{key}.file must be a file name inside the pack's folder, got {name!r}")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise _problem(folder, f"{key}.sha256 must be 64 lower-case hex digits (sha256sum {name}), got {digest!r}")
    return PackFile(name, digest, {k: v for k, v in raw.items() if k not in ("file", "sha256")})


def _triple(folder: Path, raw: Any, key: str, default: float) -> tuple[float, float, float]:
    if raw is None:
        return (default,) * 3
    values = [raw] * 3 if isinstance(raw, int | float) else raw
    if not isinstance(values, list) or len(values) != 3 or not all(isinstance(v, int | float) for v in values):
        raise _problem(folder, f"recognizer.preprocessing.{key} must be a number or three numbers, got {raw!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def read_manifest(folder: Path) -> PackManifest:
    """The folder's manifest, checked field by field; ModelPackError saying what to fix."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ModelPackError(f"model pack folder {folder} does not exist; check --model-packs")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _problem(folder, f"it has no {MANIFEST}; write one that names its detector and recognizer") from None
    except (OSError, ValueError) as exc:
        raise _problem(folder, f"{MANIFEST} cannot be read as JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise _problem(folder, f"{MANIFEST} must hold a JSON object")
    pack_id = raw.get("pack_id")
    if not isinstance(pack_id, str) or not _PACK_ID.match(pack_id):
        raise _problem(folder, f"pack_id must be 1-64 letters, digits, '.', '_' or '-', got {pack_id!r}")
    if raw.get("format", "insightface") != "insightface":
        raise _problem(folder, f"format {raw.get('format')!r} is not supported; only 'insightface' is")
    licence = raw.get("licence")
    if not isinstance(licence, str) or not licence.strip():
        raise _problem(folder, "licence must state the licence of the model files (deployments must know it)")
    dimension = raw.get("dimension")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= 4096:
        raise _problem(folder, f"dimension must be the embedding length (1-4096), got {dimension!r}")
    detector = _file_entry(folder, raw.get("detector"), "detector")
    recognizer = _file_entry(folder, raw.get("recognizer"), "recognizer")
    attributes = _file_entry(folder, raw["attributes"], "attributes") if raw.get("attributes") else None
    pre = recognizer.options.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise _problem(folder, "recognizer.preprocessing must be an object with channels, mean and std")
    channels = str(pre.get("channels", "rgb")).lower()
    if channels not in ("rgb", "bgr"):
        raise _problem(folder, f"recognizer.preprocessing.channels must be 'rgb' or 'bgr', got {channels!r}")
    mean = _triple(folder, pre.get("mean"), "mean", 127.5)
    std = _triple(folder, pre.get("std"), "std", 127.5)
    if any(s <= 0 for s in std):
        raise _problem(folder, "recognizer.preprocessing.std must be greater than 0")
    return PackManifest(
        folder, pack_id, licence.strip(), dimension, detector, recognizer, attributes, channels, mean, std
    )


class InsightfaceDetector:
    """FaceDetector over insightface's SCRFD / RetinaFace (their own decoding and NMS)."""

    def __init__(self, model, *, input_size: int):
        self._model = model
        self._size = input_size

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        boxes, points = self._model.detect(image_bgr, input_size=(self._size, self._size), max_num=0)
        if boxes is None or len(boxes) == 0:
            return []
        height, width = image_bgr.shape[:2]
        found = []
        for i, row in enumerate(boxes):
            x0, y0 = max(0.0, float(row[0])), max(0.0, float(row[1]))
            x1, y1 = min(float(width), float(row[2])), min(float(height), float(row[3]))
            if x1 <= x0 or y1 <= y0 or points is None:
                continue
            found.append(
                Detection(box=(x0, y0, x1, y1), landmarks=np.asarray(points[i], np.float32), score=float(row[4]))
            )
        return found


class InsightfaceAttributes:
    """AttributeEstimator over insightface's `genderage` model (gender 1 is male)."""

    def __init__(self, model):
        self._model = model

    def estimate(self, image_bgr: np.ndarray, detection: Detection) -> FaceAttributes:
        from insightface.app.common import Face

        face = Face(bbox=np.asarray(detection.box, np.float32))
        gender, age = self._model.get(image_bgr, face)
        return FaceAttributes(age=float(age), sex="male" if int(gender) == 1 else "female")


def _zoo_model(path: Path, runtime: RuntimeOptions, *, what: str, kinds: tuple[str, ...]):
    import onnxruntime
    from insightface.model_zoo import model_zoo

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = runtime.intra_op_threads
    options.inter_op_num_threads = runtime.inter_op_threads
    options.log_severity_level = 3
    try:
        model = model_zoo.get_model(str(path), providers=list(runtime.providers), sess_options=options)
    except Exception as exc:  # noqa: BLE001 - insightface and onnxruntime raise many types
        raise ModelPackError(f"insightface cannot load the {what} {path}: {exc}") from exc
    if model is None or type(model).__name__ not in kinds:
        got = type(model).__name__ if model is not None else "nothing it knows"
        raise ModelPackError(f"{path} is not a {what}: insightface loads it as {got} (expected {' or '.join(kinds)})")
    check_session_providers(model.session, list(runtime.providers))
    return model


def load_insightface_pack(folder: Path, runtime: RuntimeOptions | None = None) -> LoadedPack:
    """Reads the manifest, verifies each file, loads the models through insightface, runs them once."""
    runtime = runtime or RuntimeOptions()
    started = time.perf_counter()
    manifest = read_manifest(Path(folder))
    entries = [manifest.detector, manifest.recognizer] + ([manifest.attributes] if manifest.attributes else [])
    contents = {entry.file: read_verified(manifest.path(entry), entry.sha256) for entry in entries}
    input_size = int(manifest.detector.options.get("input_size", 640))
    threshold = float(manifest.detector.options.get("score_threshold", 0.5))
    if not 64 <= input_size <= 4096 or not 0 < threshold < 1:
        raise _problem(manifest.folder, "detector.input_size must be 64-4096 and score_threshold between 0 and 1")
    zoo_detector = _zoo_model(
        manifest.path(manifest.detector), runtime, what="face detector", kinds=("SCRFD", "RetinaFace")
    )
    zoo_detector.prepare(ctx_id=-1, det_thresh=threshold, input_size=(input_size, input_size))
    zoo_recognizer = _zoo_model(
        manifest.path(manifest.recognizer), runtime, what="face recognizer", kinds=("ArcFaceONNX",)
    )
    attributes = None
    if manifest.attributes is not None:
        zoo_attributes = _zoo_model(
            manifest.path(manifest.attributes), runtime, what="attribute model", kinds=("Attribute",)
        )
        if getattr(zoo_attributes, "taskname", "") != "genderage":
            raise _problem(manifest.folder, f"attributes {manifest.attributes.file} is not a genderage model")
        attributes = InsightfaceAttributes(zoo_attributes)
    try:
        prepared, _ = prepare_model(contents[manifest.recognizer.file], dynamic_batch=True)
        session = create_session(
            prepared,
            spinning=runtime.spinning,
            intra_op_threads=runtime.recognizer_threads or runtime.intra_op_threads,
            inter_op_threads=runtime.inter_op_threads,
            providers=list(runtime.providers),
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the pack cannot start
        raise ModelPackError(
            f"the recognizer {manifest.recognizer.file} cannot run with a dynamic batch: {exc}"
        ) from exc
    recognizer = OnnxRecognizer(
        session,
        dimension=manifest.dimension,
        input_name=session.get_inputs()[0].name,
        output_name=session.get_outputs()[0].name,
        rgb=manifest.channels == "rgb",
        mean=manifest.mean,
        std=manifest.std,
    )
    detector = InsightfaceDetector(zoo_detector, input_size=input_size)
    del zoo_recognizer  # loaded to prove what the file is; our batched session embeds
    info = ModelInfo(
        model_id=manifest.model_id,
        dimension=manifest.dimension,
        detector=manifest.detector.file,
        recognizer=manifest.recognizer.file,
        pack_id=manifest.pack_id,
        execution_provider=runtime.providers[0],
        has_attributes=attributes is not None,
        licence=manifest.licence,
    )
    multiscale = runtime.multiscale.__class__(**{**runtime.multiscale.__dict__, "input_size": input_size})
    pipeline = FacePipeline(
        detector, ArcFaceAligner(FACE_SIZE), recognizer, multiscale=multiscale, attributes=attributes
    )
    pack = LoadedPack(
        spec=None,
        model=ServedModel(info=info, pipeline=pipeline),
        detector=detector,
        recognizer=recognizer,
        load_seconds=0.0,
        detector_input_size=input_size,
    )
    self_test(pack)
    pack.load_seconds = time.perf_counter() - started
    log.info(
        "model pack loaded", model_id=info.model_id, folder=str(manifest.folder), seconds=round(pack.load_seconds, 3)
    )
    return pack


def write_manifest(
    folder: Path,
    *,
    pack_id: str,
    licence: str,
    detector: str,
    recognizer: str,
    dimension: int,
    attributes: str | None = None,
    preprocessing: dict | None = None,
) -> Path:
    """Writes kinship-pack.json for files already in `folder` (their sha256 computed here)."""
    folder = Path(folder)

    def entry(name: str, **extra) -> dict:
        return {"file": name, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(), **extra}

    document = {
        "pack_id": pack_id,
        "format": "insightface",
        "licence": licence,
        "dimension": dimension,
        "detector": entry(detector, input_size=640, score_threshold=0.5),
        "recognizer": entry(recognizer, **({"preprocessing": preprocessing} if preprocessing else {})),
    }
    if attributes:
        document["attributes"] = entry(attributes)
    path = folder / MANIFEST
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
